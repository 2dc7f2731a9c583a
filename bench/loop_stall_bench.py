"""Event-loop stalls at a steady load below capacity: what a Codex user feels as jitter.

    .venv/bin/python bench/loop_stall_bench.py [--seconds 60] [--load 0.8] [--size 40] [--stream-share 0.5]

Starts the simulated provider and the gateway (loop-lag probe on), measures the gateway's
capacity (16 connections flat out, 40 KB Codex-shaped bodies, half of them streamed), then sends
calls at ``--load`` × that rate with fixed spacing (open loop: a slow gateway does not slow the
sender) for ``--seconds``, from the first second on. Prints the probe's longest stall per
second (p50, p95, max, seconds over 5 ms: how late a timer fired, i.e. a whole loop iteration,
queueing included) and its longest single callback per second (the longest piece of work that
held the loop), the start-up seconds apart (while calls wait at the start-up gate, then serving
before the steady run), and the latency the calls saw. Then the same steady load, at the same
calls per second, through a no-op mitmdump carrying the same probe (``bench/looplag_probe.py``):
what mitmproxy's own loop does at that rate, side by side (``--no-baseline`` skips it). Figures
are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway_bench import codex_body, pct, run_batch  # noqa: E402

from addons.looplag import read_lag_file  # noqa: E402
from codexgate.cli import launch  # noqa: E402
from codexgate.cli.demo_setup import create_demo_vault  # noqa: E402


async def steady(
    url: str, key: str, rate: float, seconds: float, size_kb: int, stream_share: float
) -> list[float]:
    """Open-loop calls at ``rate`` per second; returns each call's latency in ms (to the end)."""
    bodies = {s: [codex_body(size_kb, k, s) for k in range(8)] for s in (False, True)}
    lat: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        stream = (i % 100) < stream_share * 100
        t0 = time.perf_counter()
        headers = {
            "authorization": f"Bearer {key}",
            "content-type": "application/json",
            "session-id": f"s{i % 16}",
        }
        try:
            async with session.post(url, data=bodies[stream][i % 8], headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    kinds[f"HTTP {resp.status}"] = kinds.get(f"HTTP {resp.status}", 0) + 1
        except aiohttp.ClientError as exc:
            errors += 1
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
        lat.append((time.perf_counter() - t0) * 1000)

    # up to 32 connections, as a team of Codex sessions would hold; a call waits for a free one
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, session)))
        await asyncio.gather(*tasks)
    if errors:
        print(f"  {errors} calls failed: {kinds}")
    return lat


def measure(lag_file: Path, url: str, key: str, rate: float, args: argparse.Namespace) -> None:
    """One steady run through ``url``; prints its latency and the probe's stalls (start-up apart)."""
    skip = len(read_lag_file(lag_file)) if lag_file.exists() else 0
    lat = asyncio.run(steady(url, key, rate, args.seconds, args.size, args.stream_share))
    rows = read_lag_file(lag_file)
    steady_rows = rows[skip:]
    during = [r.stall_ms for r in steady_rows]
    print(f"  calls: {len(lat)}, latency p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms")
    starting = [r for r in rows[:skip] if not r.serving]
    served = [r for r in rows[:skip] if r.serving]
    if starting:
        print(
            f"  start-up, calls held at the gate ({len(starting)} s): longest stall "
            f"{max(r.stall_ms for r in starting):.1f} ms, longest callback {max(r.callback_ms for r in starting):.1f} ms"
        )
    if served:
        first = served[:5]
        print(
            f"  serving before the steady run ({len(served)} s, the capacity run among them): longest stall "
            f"{max(r.stall_ms for r in served):.1f} ms (first 5 s: {max(r.stall_ms for r in first):.1f} ms), "
            f"longest callback {max(r.callback_ms for r in served):.1f} ms "
            f"(first 5 s: {max(r.callback_ms for r in first):.1f} ms)"
        )
    if during:
        print(
            f"  steady run, longest stall per second ({len(during)} s): p50 {pct(during, 0.5):.1f} ms, "
            f"p95 {pct(during, 0.95):.1f} ms, max {max(during):.1f} ms; "
            f"seconds with a stall over 5 ms: {sum(m > 5 for m in during)}"
        )
        callbacks = [r.callback_ms for r in steady_rows]
        print(
            f"  longest single callback per second (one piece of work holding the loop, queueing apart): "
            f"p50 {pct(callbacks, 0.5):.1f} ms, p95 {pct(callbacks, 0.95):.1f} ms, max {max(callbacks):.1f} ms; "
            f"seconds with a callback over 5 ms: {sum(m > 5 for m in callbacks)}"
        )
        pauses = [r.gc_max_ms for r in steady_rows]
        over = [r for r in steady_rows if r.stall_ms > 5]
        by_gc = sum(r.gc_max_ms >= 0.8 * r.stall_ms for r in over)
        print(
            f"  garbage collector in the same seconds: longest pause per second p50 {pct(pauses, 0.5):.1f} ms, "
            f"p95 {pct(pauses, 0.95):.1f} ms, max {max(pauses):.1f} ms; collecting "
            f"{statistics.mean(r.gc_ms for r in steady_rows) / 10:.1f}% of the time; of the seconds over 5 ms, "
            f"{by_gc} had a collection at least 80% as long as their longest stall"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--load", type=float, default=0.8, help="share of the measured capacity")
    ap.add_argument("--size", type=int, default=40, help="body size in KB")
    ap.add_argument("--stream-share", type=float, default=0.5)
    ap.add_argument("--rate", type=float, default=0, help="calls per second (skips the capacity measurement)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the no-op mitmdump at the same rate")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="codexgate-stall-"))
    keys = {"SIM_OPENAI_KEY": secrets.token_hex(16), "SIM_ANTHROPIC_KEY": secrets.token_hex(16)}
    procs = []
    try:
        sim_port, gw_port = launch.free_ports(2)
        procs.append(launch.start_sim_process(sim_port, keys))
        sim_url = f"http://127.0.0.1:{sim_port}"
        demo = create_demo_vault(tmp, sim_url, keys["SIM_OPENAI_KEY"], keys["SIM_ANTHROPIC_KEY"])
        lag_file = tmp / "looplag.csv"
        procs.append(
            launch.start_gateway_process(
                {
                    "connection_strategy": "lazy",
                    "confdir": f"{tmp}/conf",
                    "codexgate_vault": str(demo.path),
                    "codexgate_vault_key_file": str(demo.key_file),
                    "codexgate_traces": f"{tmp}/traces",
                    "codexgate_looplag_file": str(lag_file),
                },
                tmp / "gateway.log",
                port=gw_port,
                reverse_target=sim_url,
                quiet=True,
            )
        )
        url = f"http://127.0.0.1:{gw_port}/v1/responses"
        rate = args.rate
        if not rate:
            rates = []
            for stream in (False, True):
                _, rps = asyncio.run(run_batch(url, demo.developer_key, 300, 16, stream, args.size))
                rates.append(rps)
            capacity = statistics.mean(rates)
            rate = capacity * args.load
            print(f"capacity (16 connections, {args.size} KB, stream and not): {capacity:.0f} calls/s")
        print(f"steady load: {rate:.0f} calls/s for {args.seconds:.0f} s, {args.stream_share:.0%} streamed")
        print("gateway:")
        measure(lag_file, url, demo.developer_key, rate, args)
        if not args.no_baseline:
            (noop_port,) = launch.free_ports(1)
            noop_lag = tmp / "looplag-noop.csv"
            import subprocess  # noqa: PLC0415 - only for the baseline, which the launcher does not start

            cmd = [launch.MITMDUMP, "-q", "-s", str(ROOT / "bench" / "noop_addon.py"),
                   "-s", str(ROOT / "bench" / "looplag_probe.py"), "--listen-host", "127.0.0.1",
                   "--mode", f"reverse:{sim_url}@{noop_port}", "--set", f"confdir={tmp}/conf",
                   "--set", "connection_strategy=lazy", "--set", f"codexgate_looplag_file={noop_lag}"]  # fmt: skip
            procs.append(subprocess.Popen(cmd, env=launch.clean_env(), stdout=subprocess.DEVNULL))
            launch.wait_port(noop_port, proc=procs[-1])
            time.sleep(3)  # its start-up seconds, reported apart as the gateway's are
            print("no-op mitmdump, same probe, same calls per second:")
            measure(
                noop_lag, f"http://127.0.0.1:{noop_port}/v1/responses", keys["SIM_OPENAI_KEY"], rate, args
            )
    finally:
        for p in procs:
            launch.stop(p)


if __name__ == "__main__":
    main()
