"""Trace sink benchmark: sustained write rate from an event loop, loop lag, conversion throughput.

    .venv/bin/python bench/sink_bench.py [--seconds 10] [--rate 5000] [--rows 2000] [--keep DIR]

Rows come from ``analytics.synth.generate_rows(bodies=True)`` (real trace shape, request bodies of
~20 KB) and are cycled with fresh trace_ids. Two runs, each ``--seconds`` long, on an asyncio loop:

* ``paced``: the writer offers ``--rate`` rows/s (it catches up every 1 ms tick);
* ``max``: the writer writes as fast as it can, yielding to the loop every 8 rows.

A probe task sleeps 1 ms in a loop and records its oversleep (loop lag). After the run the sink is
closed (it drains the spool into Parquet); sustained rate = rows / (write time + drain time), so a
sink that falls behind is charged for its backlog. Then a closed segment of ``--rows`` rows is
converted alone to time Parquet conversion.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from addons import trace_spool  # noqa: E402
from addons.trace_sink import TraceSink, convert_segment  # noqa: E402
from analytics.synth import generate_rows  # noqa: E402

STALL_TARGET_MS = 5.0
RATE_TARGET = 5_000


def _rows(n: int) -> list[dict[str, Any]]:
    return list(generate_rows(n, bodies=True, start=datetime.now(UTC).replace(microsecond=0), days=1))


def _dir_bytes(path: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in path.glob(pattern) if p.is_file())


async def _probe(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - t0) * 1000.0 - 1.0)


async def _writer(sink: TraceSink, rows: list[dict[str, Any]], rate: float | None, seconds: float) -> int:
    written = 0
    t0 = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return written
        # paced: catch up at most 10 rows per tick, so a late tick does not become a burst that
        # the lag probe would blame on the sink
        due = 8 if rate is None else min(10, int(rate * elapsed) - written)
        for _ in range(max(0, due)):
            row = dict(rows[written % len(rows)])
            row["trace_id"] = uuid.uuid4().hex
            sink.write(row)
            written += 1
        await (asyncio.sleep(0) if rate is None else asyncio.sleep(0.001))


async def _run(traces: Path, rows: list[dict[str, Any]], rate: float | None, seconds: float) -> dict:
    sink = TraceSink(traces, flush_interval_s=1.0)
    sink.start()
    lags: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(_probe(lags, stop))
    t0 = time.perf_counter()
    written = await _writer(sink, rows, rate, seconds)
    write_s = time.perf_counter() - t0
    stop.set()
    await probe
    pending = _dir_bytes(traces / "_spool", "*/seg-*.log")
    t1 = time.perf_counter()
    sink.close()
    drain_s = time.perf_counter() - t1
    lags.sort()
    return {
        "written": written,
        "write_s": write_s,
        "drain_s": drain_s,
        "pending_mb": pending / 1e6,
        "lag_p50": lags[len(lags) // 2],
        "lag_p99": lags[int(len(lags) * 0.99)],
        "lag_max": lags[-1],
        "stalls": sum(1 for x in lags if x > STALL_TARGET_MS),
        "probes": len(lags),
        "parquet_bytes": _dir_bytes(traces, "date=*/*.parquet"),
    }


def _conversion(traces: Path, rows: list[dict[str, Any]]) -> tuple[float, float, int]:
    spool = traces / "_spool" / "bench"
    spool.mkdir(parents=True)
    segment = spool / "seg-00000001.log"
    with segment.open("wb") as f:
        for row in rows:
            f.write(trace_spool.encode(row))
    size = segment.stat().st_size
    t0 = time.perf_counter()
    n = convert_segment(traces, segment, "bench")
    return n / (time.perf_counter() - t0), size, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=RATE_TARGET)
    ap.add_argument("--rows", type=int, default=2000, help="distinct synthetic rows (cycled)")
    ap.add_argument("--keep", type=Path, help="write under this folder and keep it")
    ap.add_argument("--switch-interval-ms", type=float, help="sys.setswitchinterval for the run")
    args = ap.parse_args()
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    print(f"GIL switch interval {sys.getswitchinterval() * 1000:.1f} ms")

    t0 = time.perf_counter()
    rows = _rows(args.rows)
    spool_per_row = statistics.fmean(len(trace_spool.encode(r)) for r in rows)
    body = statistics.fmean(len(r["request_body"] or "") for r in rows)
    print(
        f"{len(rows)} synthetic rows in {time.perf_counter() - t0:.1f}s; "
        f"request_body {body / 1024:.1f} KiB avg, spool record {spool_per_row / 1024:.1f} KiB avg"
    )
    base = args.keep or Path(tempfile.mkdtemp(prefix="sink-bench-"))
    try:
        for label, rate in (("paced", args.rate), ("max", None)):
            traces = base / label
            r = asyncio.run(_run(traces, rows, rate, args.seconds))
            sustained = r["written"] / (r["write_s"] + r["drain_s"])
            offered = f"{rate:.0f}/s" if rate else "unbounded"
            print(
                f"\n[{label}] offered {offered}: wrote {r['written']} rows in {r['write_s']:.1f}s "
                f"({r['written'] / r['write_s']:.0f}/s); spool pending at end {r['pending_mb']:.1f} MB, "
                f"drained in {r['drain_s']:.2f}s"
            )
            print(f"  sustained traces/s: {sustained:.0f}  (target >= {RATE_TARGET})")
            print(
                f"  loop lag ms: p50 {r['lag_p50']:.3f}  p99 {r['lag_p99']:.3f}  max {r['lag_max']:.2f}  "
                f"stalls > {STALL_TARGET_MS:.0f} ms: {r['stalls']}/{r['probes']}"
            )
            print(
                f"  bytes/trace: parquet {r['parquet_bytes'] / r['written']:.0f}, spool {spool_per_row:.0f} "
                f"(compression x{spool_per_row * r['written'] / r['parquet_bytes']:.1f})"
            )
        conv_rate, size, n = _conversion(base / "conversion", rows)
        print(
            f"\nparquet conversion of one {size / 1e6:.0f} MB segment ({n} rows): "
            f"{conv_rate:.0f} rows/s, {conv_rate * size / n / 1e6:.0f} MB/s of spool"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
