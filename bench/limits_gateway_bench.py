"""Gateway overhead with limits on vs off, side by side in one run (all on loopback):

- direct to the simulated provider;
- the gateway, a key with no limits (the addon only finds that no level applies);
- the same gateway, a key with limits on three levels (key, developer, team: budget, RPM, TPM,
  concurrency, all far from refusing), SQLite ledger (the default);
- a second gateway with the Redis ledger (a real redis-server), the same limited key.

Prints p50/p99 of request latency (non-streaming Responses call) and SSE time to first byte
(streaming) at 1 and 16 concurrent connections, and the p50/p99 the limits add over the
unlimited key. Targets run in interleaved rounds; figures are medians over rounds.

    .venv/bin/python bench/limits_gateway_bench.py [--requests 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway_bench import pct, run_batch  # noqa: E402

from codexgate.cli.demo_setup import create_demo_vault  # noqa: E402
from codexgate.cli.launch import free_port, start_gateway_process, start_sim_process, stop  # noqa: E402
from codexgate.core.vault import Vault  # noqa: E402
from tests.helpers.redis import REDIS_SERVER, redis_server  # noqa: E402

HUGE = {"budget_usd": 1e9, "period": "day", "rpm": 10**8, "tpm": 10**12, "max_concurrent": 10**6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="calls per target per round and concurrency")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="codexgate-limits-bench-"))
    openai_key, anthropic_key = secrets.token_hex(16), secrets.token_hex(16)
    procs = []
    try:
        sim_port = free_port()
        procs.append(start_sim_process(sim_port, {"SIM_OPENAI_KEY": openai_key, "SIM_ANTHROPIC_KEY": anthropic_key}))
        sim_url = f"http://127.0.0.1:{sim_port}"
        demo = create_demo_vault(tmp, sim_url, openai_key, anthropic_key)
        v = Vault.load(demo.path, demo.secret)
        bob = demo.key_ids["bob"]
        v.sections["limits"] = {
            "version": 1,
            "levels": {f"key:{bob}": HUGE, "developer:acme/bob": HUGE, "team:acme/mobile": HUGE},
        }
        demo.save(v)
        base = {"codexgate_vault": str(demo.path), "codexgate_vault_key_file": str(demo.key_file),
                "connection_strategy": "lazy", "confdir": str(tmp / "conf")}
        gw_port = free_port()
        procs.append(start_gateway_process(
            {**base, "codexgate_traces": str(tmp / "t1" / "traces")}, tmp / "gw.log", port=gw_port,
            reverse_target=sim_url, quiet=True,
        ))
        gw = f"http://127.0.0.1:{gw_port}/v1/responses"
        targets = {
            "direct": (f"{sim_url}/v1/responses", {"authorization": f"Bearer {openai_key}"}),
            "gateway, no limits": (gw, {"authorization": f"Bearer {demo.keys['alice']}"}),
            "gateway, limits sqlite": (gw, {"authorization": f"Bearer {demo.keys['bob']}"}),
        }
        with redis_server(tmp / "redis") if REDIS_SERVER else _none() as redis_url:
            if redis_url:
                r_port = free_port()
                procs.append(start_gateway_process(
                    {**base, "codexgate_traces": str(tmp / "t2" / "traces"), "codexgate_ledger": redis_url},
                    tmp / "gw-redis.log", port=r_port, reverse_target=sim_url, quiet=True,
                ))
                targets["gateway, limits redis"] = (
                    f"http://127.0.0.1:{r_port}/v1/responses", {"authorization": f"Bearer {demo.keys['bob']}"}
                )
            for url, headers in targets.values():  # warm-up
                asyncio.run(run_batch(url, headers, 30, 4, False))
            results: dict[tuple[str, int, bool], list[tuple[float, float]]] = {}
            for _ in range(args.rounds):
                for conc in (1, 16):
                    for stream in (False, True):
                        for name, (url, headers) in targets.items():
                            lat = asyncio.run(run_batch(url, headers, args.requests, conc, stream))
                            results.setdefault((name, conc, stream), []).append((pct(lat, 0.5), pct(lat, 0.99)))
        _report(results, list(targets), args)
    finally:
        for p in procs:
            stop(p)


class _none:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _report(results: dict, names: list[str], args: argparse.Namespace) -> None:
    def med(name: str, conc: int, stream: bool, i: int) -> float:
        return statistics.median(r[i] for r in results[(name, conc, stream)])

    print(f"requests per target per round: {args.requests}, rounds: {args.rounds} (medians over rounds)")
    for stream in (False, True):
        print(f"\n== {'SSE time to first byte' if stream else 'request latency (non-streaming)'} ==")
        print(f"{'conc':>4}  {'target':<24} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs no-limits':>17} {'p99 vs no-limits':>17}")
        for conc in (1, 16):
            o50, o99 = med("gateway, no limits", conc, stream, 0), med("gateway, no limits", conc, stream, 1)
            for name in names:
                p50, p99 = med(name, conc, stream, 0), med(name, conc, stream, 1)
                extra = f"{p50 - o50:17.2f} {p99 - o99:17.2f}" if name.startswith("gateway, limits") else ""
                print(f"{conc:>4}  {name:<24} {p50:8.2f} {p99:8.2f} {extra}")


if __name__ == "__main__":
    main()
