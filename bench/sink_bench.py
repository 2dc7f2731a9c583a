"""Trace sink benchmark: write rate on an event loop, loop lag, Parquet conversion, bytes per trace.

    .venv/bin/python bench/sink_bench.py [--seconds 10] [--rate 5000] [--dir DIR]

Rows come from ``analytics.synth.generate_rows(bodies=True)`` (the real trace shape), keeping
those whose request body is 6-14 KB (~10 KB), cycled with fresh trace_ids and start times.
Three runs of ``--seconds`` each on an asyncio loop, with the sink's defaults (flush every 5 s or
10,000 rows, fsync every 0.2 s):

* ``max``: the writer calls ``write()`` as fast as it can, yielding to the loop after every row;
* ``paced``: the writer offers ``--rate`` rows/s, one row per loop iteration;
* ``baseline``: ``paced`` with a stand-in whose ``write`` only encodes the row: the lag this
  machine shows anyway (other processes, the writer itself), to read the other figures against.

A probe task sleeps 1 ms in a loop and records its oversleep (loop lag: what every other flow on
the gateway would wait). Sustained rate = rows / (write time + time ``close()`` needs to drain the
spool into Parquet), so a sink whose conversion falls behind is charged for its backlog. Then a
closed segment of 10,000 rows is converted alone to time Parquet conversion, and each distinct
sample row once (shuffled) to measure bytes per trace without repeats for zstd to exploit.

``first``: a fresh sink's first conversion (in its own thread) while the probe runs: the stall a
gateway sees in its first seconds (a lazy import on that path, e.g. pandas via a pyarrow
Python->Arrow conversion, would hold the GIL for the length of the import). Run it in a fresh
process to see a true first conversion; here it is the first of this process, before the others.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics.synth import generate_rows  # noqa: E402
from codexgate.sink import TraceSink, convert, spool  # noqa: E402


def sample_rows(n: int = 400) -> list[dict[str, Any]]:
    rows = []
    for row in generate_rows(4 * n, bodies=True, start=datetime(2026, 1, 1, tzinfo=UTC), days=1):
        if 6_000 <= len(row["request_body"] or "") <= 14_000:
            rows.append(row)
            if len(rows) == n:
                break
    return rows


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def probe(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - t0 - 0.001)


def fresh(row: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {**row, "trace_id": uuid.uuid4().hex, "start_time": now, "end_time": now}


class EncodeOnly:
    """Baseline: the same writer and probe, but ``write`` only encodes (no spool, no thread)."""

    def __init__(self, traces: Path, on_error: Any = None) -> None:
        pass

    def start(self) -> None:
        pass

    def write(self, row: dict[str, Any]) -> None:
        spool.encode(row)

    def close(self) -> None:
        pass


async def run(
    traces: Path, rows: list[dict[str, Any]], seconds: float, rate: float | None, sink_type: Any = TraceSink
) -> dict[str, Any]:
    errors: list[str] = []
    sink = sink_type(traces, on_error=errors.append)
    sink.start()
    lags: list[float] = []
    write_times: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(lags, stop))
    await asyncio.sleep(0.1)
    written = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate is not None and written >= (now - t0) * rate:
            await asyncio.sleep(0.0005)  # ahead of the offered rate
            continue
        row = fresh(rows[written % len(rows)])
        w0 = time.perf_counter()
        sink.write(row)
        write_times.append(time.perf_counter() - w0)
        written += 1
        await asyncio.sleep(0)  # one write per loop iteration, as one flow's trace would be
    write_s = time.perf_counter() - t0
    stop.set()
    await prober
    c0 = time.perf_counter()
    sink.close()
    drain_s = time.perf_counter() - c0
    parquet = list(traces.glob("date=*/*.parquet"))
    return {
        "written": written,
        "write_s": write_s,
        "drain_s": drain_s,
        "offered_per_s": written / write_s,
        "sustained_per_s": written / (write_s + drain_s),
        "write_us_p50": percentile(write_times, 0.5) * 1e6,
        "write_us_p99": percentile(write_times, 0.99) * 1e6,
        "lag_ms_p50": percentile(lags, 0.5) * 1e3,
        "lag_ms_p99": percentile(lags, 0.99) * 1e3,
        "lag_ms_max": max(lags) * 1e3,
        "stalls_over_5ms": sum(1 for x in lags if x > 0.005),
        "probes": len(lags),
        "parquet_bytes_per_trace": sum(p.stat().st_size for p in parquet) / max(written, 1),
        "files": len(parquet),
        "errors": errors,
    }


async def first_conversion(traces: Path, rows: list[dict[str, Any]], n: int = 500) -> dict[str, Any]:
    """Loop lag while a just-started sink converts its first segment in its own thread."""
    sink = TraceSink(traces, flush_interval_s=3600)
    sink.start()
    before = set(sys.modules)
    for i in range(n):
        sink.write(fresh(rows[i % len(rows)]))
    lags: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(lags, stop))
    await asyncio.sleep(0.05)
    lags.clear()
    t0 = time.perf_counter()
    sink._rotate()  # hand the segment to the conversion thread, as the sync thread does on its interval
    while spool.list_segments(sink.spool_dir):
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    stop.set()
    await prober
    sink.close()
    return {
        "rows": n,
        "seconds": elapsed,
        "lag_ms_p99": percentile(lags, 0.99) * 1e3,
        "lag_ms_max": max(lags, default=0.0) * 1e3,
        "imported": sorted(m for m in set(sys.modules) - before if "." not in m),
    }


def conversion(traces: Path, rows: list[dict[str, Any]], n: int = 10_000) -> dict[str, float]:
    directory = traces / spool.SPOOL_DIR / "bench"
    directory.mkdir(parents=True)
    segment = directory / "seg-bench-000001.log"
    with open(segment, "wb") as f:
        for i in range(n):
            f.write(spool.encode(fresh(rows[i % len(rows)])))
    size = segment.stat().st_size
    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    done = convert.convert_segment(traces, segment, "bench")
    elapsed = time.perf_counter() - t0
    cpu = time.thread_time() - cpu0
    out = sum(f.stat().st_size for f in done.files)
    return {
        "rows": done.rows,
        "seconds": elapsed,
        "rows_per_s": done.rows / elapsed,
        "spool_mb_per_s": size / elapsed / 1e6,
        "thread_cpu_s": cpu,
        "spool_bytes_per_trace": size / n,
        "parquet_bytes_per_trace": out / n,
    }


def unique_bytes(traces: Path, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Bytes per trace for each sample row once, shuffled (no repeats for zstd to find)."""
    directory = traces / spool.SPOOL_DIR / "unique"
    directory.mkdir(parents=True)
    segment = directory / "seg-unique-000001.log"
    shuffled = random.Random(0).sample(rows, len(rows))
    segment.write_bytes(b"".join(spool.encode(fresh(r)) for r in shuffled))
    size = segment.stat().st_size
    done = convert.convert_segment(traces, segment, "unique")
    return {
        "spool_bytes_per_trace": size / len(rows),
        "parquet_bytes_per_trace": sum(f.stat().st_size for f in done.files) / len(rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--dir", type=Path, help="work directory, kept (default: a temporary one, removed)")
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="sink-bench-"))
    try:
        return measure(args, base)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


def measure(args: argparse.Namespace, base: Path) -> int:
    t = time.perf_counter()
    rows = sample_rows()
    bodies = [len(r["request_body"]) for r in rows]
    print(
        f"{len(rows)} synthetic rows, request body median {statistics.median(bodies) / 1000:.1f} KB "
        f"(generated in {time.perf_counter() - t:.1f} s); work dir {base}"
    )
    f = asyncio.run(first_conversion(base / "first", rows))
    print(
        f"[first] first conversion after start ({f['rows']} rows, {f['seconds']:.2f} s in the sink's thread): "
        f"loop lag p99 {f['lag_ms_p99']:.2f} ms, max {f['lag_ms_max']:.2f} ms; "
        f"modules imported meanwhile: {', '.join(f['imported']) or 'none'}"
    )
    runs = (("max", None, TraceSink), ("paced", args.rate, TraceSink), ("baseline", args.rate, EncodeOnly))
    for name, rate, sink_type in runs:
        r = asyncio.run(run(base / name, rows, args.seconds, rate, sink_type))
        if name == "max":
            print(
                f"[{name}] {r['written']} traces in {r['write_s']:.1f} s: offered {r['offered_per_s']:,.0f}/s, "
                f"sustained {r['sustained_per_s']:,.0f}/s (close() drained the backlog in {r['drain_s']:.2f} s)"
            )
        elif name == "paced":
            print(
                f"[{name}] {r['written']} traces in {r['write_s']:.1f} s: offered {r['offered_per_s']:,.0f}/s; "
                f"everything was Parquet {r['drain_s']:.2f} s after the last write (close() converting "
                "the last segment)"
            )
        print(f"[{name}] write() p50 {r['write_us_p50']:.0f} us, p99 {r['write_us_p99']:.0f} us")
        print(
            f"[{name}] loop lag p50 {r['lag_ms_p50']:.2f} ms, p99 {r['lag_ms_p99']:.2f} ms, "
            f"max {r['lag_ms_max']:.2f} ms; {r['stalls_over_5ms']} of {r['probes']} probes over 5 ms"
        )
        if name != "baseline":
            print(f"[{name}] Parquet {r['parquet_bytes_per_trace']:,.0f} bytes/trace in {r['files']} files")
        if r["errors"]:
            print(f"[{name}] errors: {r['errors']}")
    c = conversion(base / "convert", rows)
    print(
        f"[convert] {c['rows']:,} rows in {c['seconds']:.2f} s: {c['rows_per_s']:,.0f} rows/s, "
        f"{c['spool_mb_per_s']:.0f} MB/s of spool ({c['thread_cpu_s']:.2f} s CPU in the calling thread)"
    )
    u = unique_bytes(base / "unique", rows)
    print(
        f"[bytes] spool {u['spool_bytes_per_trace']:,.0f} bytes/trace, Parquet "
        f"{u['parquet_bytes_per_trace']:,.0f} bytes/trace ({len(rows)} distinct rows, shuffled; the "
        f"cycled runs above compress further: {c['parquet_bytes_per_trace']:,.0f} bytes/trace)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
