"""Added latency of the limits check per request: ``reserve`` + ``settle`` on the SQLite and the
Redis ledger, awaited from an asyncio loop exactly as the gateway addon will, with five levels
(org, team, project, developer, key) each carrying a budget and rate limits that never refuse.

Prints p50/p99 of reserve+settle at concurrency 1, and reservations/s (each one settled) with
N concurrent tasks. Not a test: figures only.

    .venv/bin/python bench/limits_bench.py [--requests 2000] [--concurrency 16] [--backends sqlite,redis]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codexgate.limits.config import Level, LevelLimits  # noqa: E402
from codexgate.limits.estimate import Estimate  # noqa: E402
from codexgate.limits.ledger import Ledger, Reservation  # noqa: E402
from codexgate.limits.redis_ledger import RedisLedger  # noqa: E402
from codexgate.limits.sqlite_ledger import SqliteLedger  # noqa: E402
from tests.helpers.redis import REDIS_SERVER, redis_server  # noqa: E402

LEVELS = [
    Level("org", "acme", LevelLimits(budget_usd=1e9, period="month", tpm=10**12)),
    Level("team", "acme/core", LevelLimits(budget_usd=1e9, period="day", rpm=10**9, tz="America/Los_Angeles")),
    Level("project", "acme/web", LevelLimits(max_concurrent=10**6)),
    Level("developer", "acme/alice", LevelLimits(rpm=10**9, tpm=10**12)),
    Level("key", "k_bench", LevelLimits(budget_usd=1e9, period="total", max_concurrent=10**6)),
]
EST = Estimate(10_000, 2_000, 0.03)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def one(ledger: Ledger) -> float:
    t = time.perf_counter()
    r = await ledger.reserve(LEVELS, EST, datetime.now(UTC))
    assert isinstance(r, Reservation), r
    await ledger.settle(r, 0.02, 9_000)
    return time.perf_counter() - t


async def bench(name: str, ledger: Ledger, n: int, conc: int) -> dict[str, float]:
    for _ in range(50):  # warm-up: connection, prepared statements, scripts loaded
        await one(ledger)
    cpu0 = time.process_time()
    lat = [await one(ledger) for _ in range(n)]
    cpu = (time.process_time() - cpu0) / n
    per = max(1, n // conc)

    async def worker() -> None:
        for _ in range(per):
            await one(ledger)

    t = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(conc)])
    wall = time.perf_counter() - t
    work = await service_time(ledger, min(n, 500))
    await ledger.close()
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": pct(lat, 0.99) * 1e3,
        "max_ms": max(lat) * 1e3,
        "seq_per_s": n / sum(lat),
        "conc_per_s": per * conc / wall,
        "work_ms": work * 1e3,
        "cpu_ms": cpu * 1e3,
    }


async def service_time(ledger: Ledger, n: int) -> float:
    """Median time of the ledger's own work per reserve+settle, without the thread hop or the
    network: SQLite timed inside its worker thread; Redis from the server's command stats."""
    if isinstance(ledger, SqliteLedger):
        def loop() -> list[float]:
            out = []
            for _ in range(n):
                t = time.perf_counter()
                r = ledger._reserve(LEVELS, EST, datetime.now(UTC))
                assert isinstance(r, Reservation)
                ledger._settle(r, 0.02, 9_000)
                out.append(time.perf_counter() - t)
            return out

        return statistics.median(await asyncio.get_running_loop().run_in_executor(ledger._pool, loop))
    r = ledger._r  # type: ignore[attr-defined]
    await r.config_resetstat()
    for _ in range(n):
        await one(ledger)
    stats = (await r.info("commandstats"))["cmdstat_evalsha"]
    return 2 * stats["usec_per_call"] / 1e6  # two scripts (reserve, settle) per call


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--backends", default="sqlite,redis")
    ap.add_argument("--redis-url", help="use this Redis instead of starting redis-server")
    a = ap.parse_args()
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="limits-bench-") as tmp:
        for backend in a.backends.split(","):
            if backend == "sqlite":
                for durability in ("normal", "full"):
                    led = SqliteLedger(Path(tmp) / f"ledger-{durability}.sqlite3", durability=durability)
                    rows[f"sqlite (WAL, sync={durability.upper()})"] = asyncio.run(
                        bench(backend, led, a.requests, a.concurrency)
                    )
            elif backend == "redis":
                if a.redis_url:
                    url = a.redis_url
                    rows["redis"] = asyncio.run(bench(backend, RedisLedger(url, prefix="bench:"), a.requests, a.concurrency))
                elif REDIS_SERVER is None:
                    print("redis-server not installed: skipping redis", file=sys.stderr)
                else:
                    with redis_server(Path(tmp) / "redis") as url:
                        rows["redis (loopback)"] = asyncio.run(
                            bench(backend, RedisLedger(url), a.requests, a.concurrency)
                        )
    print(f"limits ledger: reserve+settle on {len(LEVELS)} levels, {a.requests} sequential calls, "
          f"then {a.concurrency} concurrent tasks")
    head = f"{'backend':<26}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'seq/s':>9}{f'x{a.concurrency} /s':>10}{'work ms':>9}{'cpu ms':>8}"
    print(head)
    print("work ms: the ledger's own work per call (SQLite in its thread; Redis server-side script time)")
    print("cpu ms: this process's CPU time per call (event loop + ledger thread), independent of machine load")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores while measuring)")
    for name, r in rows.items():
        print(f"{name:<26}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['max_ms']:>9.2f}{r['seq_per_s']:>9.0f}"
              f"{r['conc_per_s']:>10.0f}{r['work_ms']:>9.3f}{r['cpu_ms']:>8.3f}")


if __name__ == "__main__":
    main()
