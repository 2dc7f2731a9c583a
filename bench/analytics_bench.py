"""Analytics benchmark: generate 1 M and 10 M metadata-only traces, time the dashboard's core queries.

    .venv/bin/python bench/analytics_bench.py [--sizes 1000000,10000000] [--repeat 5] [--keep DIR]

Data is generated in a child process (``python -m analytics.synth --no-bodies``) so this process's
peak RSS (``resource.getrusage``) is the query side's; the generator's peak is printed separately.
Each query runs once cold (first scan, metadata not cached) and then ``--repeat`` times; the median
is reported against the 1 s target.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics import queries  # noqa: E402
from analytics.db import TraceStore  # noqa: E402

TARGET_S = 1.0
DAYS = 7


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux: KiB


def _disk_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*.parquet"))


def generate(folder: Path, n: int, start: datetime) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "analytics.synth", "--traces", str(folder), "--calls", str(n), "--no-bodies",
         "--seed", "42", "--days", str(DAYS), "--start", start.strftime("%Y-%m-%d")],
        cwd=ROOT, check=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def dataset(base: Path, n: int, start: datetime, reuse: bool) -> Path:
    """``base/traces-N`` with N traces from ``start``: reused when ``reuse`` and already there,
    else generated (and timed)."""
    folder = base / f"traces-{n}"
    if reuse and any(folder.rglob("*.parquet")):
        print("  reusing existing data")
    else:
        gen_s = generate(folder, n, start)
        print(f"  generated in {gen_s:.1f}s ({n / gen_s:,.0f} rows/s)")
    return folder


def time_query(fn: Callable[[], pl.DataFrame], repeat: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    frame = fn()
    cold = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return cold, statistics.median(runs), frame.height


def bench_size(folder: Path, n: int, repeat: int, start: datetime) -> list[tuple[str, float, float, int]]:
    store = TraceStore(folder)
    since, until = start, start + timedelta(days=DAYS)
    cases: list[tuple[str, Callable[[], pl.DataFrame]]] = [
        ("spend by team by day", lambda: queries.spend(store, ["team"], since, until, bucket="day")),
        ("latency p50/p95/p99 by model", lambda: queries.latency(store, ["model"], since, until)),
        ("top 20 sessions by cost", lambda: queries.top_sessions(store, 20, since, until)),
        ("spend one day (pruned)", lambda: queries.spend(store, ["team"], since, since + timedelta(days=1))),
    ]
    results = []
    for name, fn in cases:
        cold, median, rows = time_query(fn, repeat)
        results.append((name, cold, median, rows))
        flag = "ok" if median < TARGET_S else "MISS"
        print(f"  {name:32s} cold {cold:6.3f}s  median {median:6.3f}s  rows {rows:5d}  [{flag}]", flush=True)
    store.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keep", type=Path, help="generate into (and keep) this folder; reuse data already there"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    start = datetime(2026, 11, 2, tzinfo=UTC)
    base = args.keep or Path(tempfile.mkdtemp(prefix="codexgate-bench-"))
    try:
        for n in sizes:
            print(f"== {n:,} traces (metadata only, {DAYS} days)", flush=True)
            folder = dataset(base, n, start, reuse=args.keep is not None)
            files = list(folder.rglob("*.parquet"))
            size = _disk_bytes(folder)
            print(f"  on disk: {size / 1e6:,.1f} MB in {len(files)} files ({size / n:.0f} bytes/row)")
            bench_size(folder, n, args.repeat, start)
            print(f"  peak RSS so far: queries {_rss_mb(resource.RUSAGE_SELF):,.0f} MB, "
                  f"generator {_rss_mb(resource.RUSAGE_CHILDREN):,.0f} MB", flush=True)  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
