"""Trace sink benchmark: thread vs process conversion, side by side: write rate on an event loop,
loop lag, Parquet conversion, bytes per trace.

    .venv/bin/python bench/sink_bench.py [--seconds 10] [--rate 5000] [--dir DIR] [--modes thread,process]

Rows come from ``analytics.synth.generate_rows(bodies=True)`` (the real trace shape), keeping
those whose request body is 6-14 KB (~10 KB), cycled with fresh trace_ids and start times.

Each ``TraceSink(convert_in=...)`` mode (``thread``: the sink's conversion thread, in the writer's
process; ``process``: the supervised converter process) gets the same runs, and a table at the end
puts them side by side. Runs of ``--seconds`` each on an asyncio loop, with the sink's defaults
(flush every 5 s or 10,000 rows, fsync every 0.2 s):

* ``max``: the writer calls ``write()`` as fast as it can, yielding to the loop after every row;
* ``paced``: the writer offers ``--rate`` rows/s, one row per loop iteration;
* ``baseline`` (once): ``paced`` with a stand-in whose ``write`` only encodes the row: the lag
  this machine shows anyway (other processes, the writer itself), to read the other figures against.

A probe task sleeps 1 ms in a loop and records its oversleep (loop lag: what every other flow on
the gateway would wait). Sustained rate = rows / (write time + time ``close()`` needs to drain the
spool into Parquet), so a sink whose conversion falls behind is charged for its backlog.

``convert``: a fresh sink holding 10,000 spooled rows hands them to its converter while the probe
runs and nothing is written: the conversion rate (wall clock, segment handed over -> segment gone)
and, most important, the lag the writer's loop sees while conversion runs. ``first``: the same with
500 rows, first thing in the process: the stall a gateway sees in its first seconds (a lazy import
on that path, e.g. pandas via a pyarrow Python->Arrow conversion, would hold the GIL for the length
of the import). ``convert_segment`` is also timed alone in this process (no sink), and each distinct
sample row converted once (shuffled) to measure bytes per trace without repeats for zstd.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import threading
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

    def __init__(self, traces: Path, on_error: Any = None, convert_in: str = "") -> None:
        pass

    def start(self) -> None:
        pass

    def write(self, row: dict[str, Any]) -> None:
        spool.encode(row)

    def close(self) -> None:
        pass


async def run(
    traces: Path,
    rows: list[dict[str, Any]],
    seconds: float,
    rate: float | None,
    sink_type: Any = TraceSink,
    convert_in: str = "thread",
) -> dict[str, Any]:
    errors: list[str] = []
    sink = sink_type(traces, on_error=errors.append, convert_in=convert_in)
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


async def converting(
    traces: Path, rows: list[dict[str, Any]], n: int = 500, convert_in: str = "thread"
) -> dict[str, Any]:
    """Loop lag while a just-started sink converts ``n`` spooled rows (its first conversion)."""
    sink = TraceSink(traces, flush_interval_s=3600, flush_rows=10 * n, convert_in=convert_in)
    sink.start()
    if sink._converter is not None:
        sink._converter.recover()  # the child is up: time its conversion, not its start-up
    before = set(sys.modules)
    for i in range(n):
        sink.write(fresh(rows[i % len(rows)]))
    lags: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(lags, stop))
    await asyncio.sleep(0.05)
    lags.clear()
    t0 = time.perf_counter()
    # hand the segment over from another thread, as the sync thread does (rotating fsyncs the segment:
    # tens of ms for 10,000 rows, which would block this loop and be counted as conversion lag)
    rotator = threading.Thread(target=sink._rotate)
    rotator.start()
    while spool.list_segments(sink.spool_dir):
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - t0
    stop.set()
    await prober
    rotator.join()
    sink.close()
    return {
        "rows": n,
        "seconds": elapsed,
        "rows_per_s": n / elapsed,
        "lag_ms_p50": percentile(lags, 0.5) * 1e3,
        "lag_ms_p99": percentile(lags, 0.99) * 1e3,
        "lag_ms_max": max(lags, default=0.0) * 1e3,
        "stalls_over_5ms": sum(1 for x in lags if x > 0.005),
        "probes": len(lags),
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


def report(name: str, r: dict[str, Any]) -> None:
    if name.endswith("max"):
        print(
            f"[{name}] {r['written']} traces in {r['write_s']:.1f} s: offered {r['offered_per_s']:,.0f}/s, "
            f"sustained {r['sustained_per_s']:,.0f}/s (close() drained the backlog in {r['drain_s']:.2f} s)"
        )
    elif name.endswith("paced"):
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--dir", type=Path, help="work directory, kept (default: a temporary one, removed)")
    parser.add_argument("--modes", default="thread,process", help="convert_in modes, comma-separated")
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
    modes = [m for m in args.modes.split(",") if m]
    table: dict[str, dict[str, float]] = {m: {} for m in modes}
    for mode in modes:
        f = asyncio.run(converting(base / f"first-{mode}", rows, 500, mode))
        print(
            f"[{mode} first] first conversion after start ({f['rows']} rows, {f['seconds']:.2f} s): "
            f"loop lag p99 {f['lag_ms_p99']:.2f} ms, max {f['lag_ms_max']:.2f} ms; "
            f"modules imported meanwhile: {', '.join(f['imported']) or 'none'}"
        )
        table[mode]["first conversion: loop lag max (ms)"] = f["lag_ms_max"]
    baseline = asyncio.run(run(base / "baseline", rows, args.seconds, args.rate, EncodeOnly))
    report("baseline", baseline)
    paced = f"paced {args.rate:,.0f}/s"
    for mode in modes:
        for name, rate in (("max", None), ("paced", args.rate)):
            r = asyncio.run(run(base / f"{name}-{mode}", rows, args.seconds, rate, TraceSink, mode))
            report(f"{mode} {name}", r)
            if name == "max":
                table[mode]["sustained flat out (traces/s)"] = r["sustained_per_s"]
                table[mode]["flat out: loop lag p99 (ms)"] = r["lag_ms_p99"]
                table[mode]["flat out: loop lag max (ms)"] = r["lag_ms_max"]
            else:
                table[mode][f"{paced}: loop lag p99 (ms)"] = r["lag_ms_p99"]
                table[mode][f"{paced}: loop lag max (ms)"] = r["lag_ms_max"]
                table[mode][f"{paced}: probes over 5 ms"] = r["stalls_over_5ms"]
    for mode in modes:
        v = asyncio.run(converting(base / f"convert-{mode}", rows, 10_000, mode))
        print(
            f"[{mode} convert] {v['rows']:,} spooled rows to Parquet in {v['seconds']:.2f} s "
            f"({v['rows_per_s']:,.0f} rows/s); loop lag meanwhile p50 {v['lag_ms_p50']:.2f} ms, "
            f"p99 {v['lag_ms_p99']:.2f} ms, max {v['lag_ms_max']:.2f} ms; "
            f"{v['stalls_over_5ms']} of {v['probes']} probes over 5 ms"
        )
        table[mode]["conversion (rows/s, wall)"] = v["rows_per_s"]
        table[mode]["while converting: loop lag p50 (ms)"] = v["lag_ms_p50"]
        table[mode]["while converting: loop lag p99 (ms)"] = v["lag_ms_p99"]
        table[mode]["while converting: loop lag max (ms)"] = v["lag_ms_max"]
        table[mode]["while converting: probes over 5 ms"] = v["stalls_over_5ms"]
    c = conversion(base / "convert", rows)
    print(
        f"[convert_segment alone] {c['rows']:,} rows in {c['seconds']:.2f} s: {c['rows_per_s']:,.0f} rows/s, "
        f"{c['spool_mb_per_s']:.0f} MB/s of spool ({c['thread_cpu_s']:.2f} s CPU in the calling thread)"
    )
    u = unique_bytes(base / "unique", rows)
    print(
        f"[bytes] spool {u['spool_bytes_per_trace']:,.0f} bytes/trace, Parquet "
        f"{u['parquet_bytes_per_trace']:,.0f} bytes/trace ({len(rows)} distinct rows, shuffled; the "
        f"cycled runs above compress further: {c['parquet_bytes_per_trace']:,.0f} bytes/trace)"
    )
    print()
    print(f"{'convert_in':44}" + "".join(f"{m:>12}" for m in modes))
    for key in table[modes[0]]:
        print(
            f"{key:44}" + "".join(f"{table[m][key]:>12,.{0 if table[m][key] >= 100 else 2}f}" for m in modes)
        )
    print(
        f"{'baseline (encode only, paced): lag p99 / max':44}"
        f"{baseline['lag_ms_p99']:>12.2f}{baseline['lag_ms_max']:>12.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
