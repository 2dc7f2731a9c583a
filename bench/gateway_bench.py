"""Latency the gateway adds, side by side in one run: direct to the simulated provider,
through mitmdump with a no-op addon, and through the gateway (all on loopback).

Prints p50/p99 of request latency (small non-streaming Responses call) and of SSE
time-to-first-byte (streaming Responses call) at 1 and 16 concurrent connections, the
latency each proxy adds over direct, and the gateway/no-op ratio of added latency.

    .venv/bin/python bench/gateway_bench.py [--requests 400] [--rounds 5]

Targets are measured in interleaved rounds (A, B, C, A, B, C, ...) so machine drift hits
all of them alike; figures are medians over rounds of each round's percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codexgate.cli.demo_setup import create_demo_vault  # noqa: E402
from codexgate.cli.launch import free_port, wait_port  # noqa: E402

MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
BODY = json.dumps({"model": "gpt-5-codex", "input": "benchmark: say hi", "stream": False}).encode()
STREAM_BODY = json.dumps({"model": "gpt-5-codex", "input": "benchmark: say hi", "stream": True}).encode()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_batch(url: str, headers: dict[str, str], n: int, conc: int, stream: bool) -> list[float]:
    """Latency (ms) of n calls at the given concurrency; for streams, time to first body byte."""
    out: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=conc, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                t0 = time.perf_counter()
                async with session.post(url, data=STREAM_BODY if stream else BODY, headers=headers) as resp:
                    if stream:
                        await resp.content.readany()
                        out.append((time.perf_counter() - t0) * 1000)
                        await resp.read()
                    else:
                        await resp.read()
                        out.append((time.perf_counter() - t0) * 1000)
                    if resp.status != 200:
                        raise RuntimeError(f"{url}: HTTP {resp.status}")

        await asyncio.gather(*(worker() for _ in range(conc)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="calls per target per round and concurrency")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="codexgate-bench-"))
    openai_key, anthropic_key = secrets.token_hex(16), secrets.token_hex(16)
    procs: list[subprocess.Popen] = []
    try:
        sim_port = free_port()
        env = {**os.environ, "SIM_OPENAI_KEY": openai_key, "SIM_ANTHROPIC_KEY": anthropic_key}
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "codexgate.simprovider",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(sim_port),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                cwd=ROOT,
            )
        )
        wait_port(sim_port)
        sim_url = f"http://127.0.0.1:{sim_port}"
        demo = create_demo_vault(tmp, sim_url, openai_key, anthropic_key)
        noop_port, gw_port = free_port(), free_port()
        common = [
            "-q",
            "--listen-host",
            "127.0.0.1",
            "--set",
            "connection_strategy=lazy",
            "--set",
            f"confdir={tmp}/conf",
        ]
        procs.append(
            subprocess.Popen(
                [
                    MITMDUMP,
                    *common,
                    "-s",
                    str(ROOT / "bench" / "noop_addon.py"),
                    "--mode",
                    f"reverse:{sim_url}@{noop_port}",
                ]
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    MITMDUMP,
                    *common,
                    "-s",
                    str(ROOT / "addons" / "gateway.py"),
                    "--mode",
                    f"reverse:{sim_url}@{gw_port}",
                    "--set",
                    f"codexgate_vault={demo.path}",
                    "--set",
                    f"codexgate_vault_key_file={demo.key_file}",
                    "--set",
                    f"codexgate_traces={tmp}/traces",
                ]
            )
        )
        relayless_port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    MITMDUMP,
                    *common,
                    "-s",
                    str(ROOT / "addons" / "gateway.py"),
                    "--mode",
                    f"reverse:{sim_url}@{relayless_port}",
                    "--set",
                    f"codexgate_vault={demo.path}",
                    "--set",
                    f"codexgate_vault_key_file={demo.key_file}",
                    "--set",
                    f"codexgate_traces={tmp}/traces2",
                    "--set",
                    "codexgate_drain_seconds=0",
                ]
            )
        )
        wait_port(noop_port)
        wait_port(gw_port)
        wait_port(relayless_port)
        targets = {
            "direct": (f"{sim_url}/v1/responses", {"authorization": f"Bearer {openai_key}"}),
            "mitmdump no-op": (
                f"http://127.0.0.1:{noop_port}/v1/responses",
                {"authorization": f"Bearer {openai_key}"},
            ),
            "gateway": (
                f"http://127.0.0.1:{gw_port}/v1/responses",
                {"authorization": f"Bearer {demo.developer_key}"},
            ),
            "gateway, no relay": (
                f"http://127.0.0.1:{relayless_port}/v1/responses",
                {"authorization": f"Bearer {demo.developer_key}"},
            ),
        }
        for url, headers in targets.values():  # warm-up
            asyncio.run(run_batch(url, headers, 50, 4, False))
        results: dict[tuple[str, int, bool], list[tuple[float, float]]] = {}
        for _ in range(args.rounds):
            for conc in (1, 16):
                for stream in (False, True):
                    for name, (url, headers) in targets.items():
                        lat = asyncio.run(run_batch(url, headers, args.requests, conc, stream))
                        results.setdefault((name, conc, stream), []).append((pct(lat, 0.5), pct(lat, 0.99)))

        def med(name: str, conc: int, stream: bool, i: int) -> float:
            return statistics.median(r[i] for r in results[(name, conc, stream)])

        print(f"requests per target per round: {args.requests}, rounds: {args.rounds} (medians over rounds)")
        for stream in (False, True):
            what = "SSE time to first byte" if stream else "request latency (non-streaming)"
            print(f"\n== {what} ==")
            print(
                f"{'conc':>4}  {'target':<18} {'p50 ms':>8} {'p99 ms':>8} {'p50 added':>10} {'p99 added':>10}"
            )
            for conc in (1, 16):
                d50, d99 = med("direct", conc, stream, 0), med("direct", conc, stream, 1)
                added = {}
                for name in targets:
                    p50, p99 = med(name, conc, stream, 0), med(name, conc, stream, 1)
                    added[name] = (p50 - d50, p99 - d99)
                    print(f"{conc:>4}  {name:<18} {p50:8.2f} {p99:8.2f} {p50 - d50:10.2f} {p99 - d99:10.2f}")
                n50 = added["mitmdump no-op"][0]
                for gw_name in ("gateway", "gateway, no relay"):
                    g50 = added[gw_name][0]
                    ratio = g50 / n50 if n50 > 0 else float("nan")
                    print(f"      {gw_name}: added p50 = {ratio:.2f}x the no-op's, {g50:.2f} ms over direct")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
