"""Report CLI benchmark: the whole ``codexgate report`` process against a bare DuckDB process
running the same SQL, at 1 M and 10 M metadata-only traces.

    .venv/bin/python bench/report_bench.py [--sizes 1000000,10000000] [--rounds 7] [--keep DIR]
                                           [--cases spend-day,spend,latency,sessions]

Data is generated in a child process (``python -m analytics.synth --no-bodies``, 7 days from
2026-12-01) into ``DIR/traces-N`` and reused from there with ``--keep``.

For each case the SQL and its parameters come from ``analytics.queries`` (the very statement the
CLI runs, relation text included), written into a small script that does only
``import duckdb; duckdb.connect().sql(SQL, params=...).fetchall()``: the floor for that query from
Python. Both are started as whole processes, interleaved (report, bare, report, bare, ...) after
one warm-up pair each, their output thrown away. Wall seconds (perf_counter around the child) and
CPU seconds (the child's user + system) are printed as medians, with the median of the per-pair
ratios report/bare. Before timing, each case checks that both processes return the same number of
rows. It prints figures only; nothing here judges them.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics import queries  # noqa: E402
from analytics.db import TraceStore  # noqa: E402
from bench.analytics_bench import dataset  # noqa: E402  (the same synthetic data, 42 as seed)
from codexgate.cli.report import parse_time  # noqa: E402

DAYS = 7
START = datetime(2026, 12, 1, tzinfo=UTC)
CODEXGATE = Path(sys.executable).parent / "codexgate"

BARE = """import datetime
import duckdb

con = duckdb.connect(":memory:")
con.execute("SET GLOBAL TimeZone = 'UTC'")
rows = con.sql({sql!r}, params={params!r}).fetchall()
print(len(rows))
"""


@dataclass(frozen=True)
class Case:
    name: str
    cli: list[str]  # after ``codexgate report``, before --traces and the range
    statement: Callable[[TraceStore, datetime, datetime], queries.Statement]


CASES = [
    Case("spend-day", ["spend", "--by", "team", "--bucket", "day"],
         lambda s, lo, hi: queries.spend_statement(s, ["team"], lo, hi, "day")),
    Case("spend", ["spend", "--by", "team"], lambda s, lo, hi: queries.spend_statement(s, ["team"], lo, hi)),
    Case("latency", ["latency", "--by", "model"],
         lambda s, lo, hi: queries.latency_statement(s, ["model"], lo, hi)),
    Case("sessions", ["sessions", "--limit", "20"],
         lambda s, lo, hi: queries.top_sessions_statement(s, 20, lo, hi)),
]  # fmt: skip


def run_once(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one whole child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bench_case(case: Case, folder: Path, script_dir: Path, rounds: int) -> None:
    since_text, until_text = (
        START.strftime("%Y-%m-%d"),
        (START + timedelta(days=DAYS - 1)).strftime("%Y-%m-%d"),
    )
    since, until = parse_time(since_text), parse_time(until_text, end=True)  # as the CLI reads them
    with TraceStore(folder) as store:
        statement = case.statement(store, since, until)
    bare = script_dir / f"bare_{case.name}.py"
    bare.write_text(BARE.format(sql=statement.sql, params=statement.params))
    report = [str(CODEXGATE), "report", *case.cli, "--traces", str(folder), "--since", since_text,
              "--until", until_text]  # fmt: skip
    bare_cmd = [sys.executable, str(bare)]
    # same answer size from both (the report as JSON, the bare script prints its row count)
    got = len(
        json.loads(subprocess.run([*report, "--format", "json"], capture_output=True, check=True).stdout)
    )
    want = int(subprocess.run(bare_cmd, capture_output=True, check=True).stdout)
    if got != want:
        raise SystemExit(f"{case.name}: the report returned {got} rows, the bare query {want}")
    run_once(report)  # warm-up (page cache, .pyc)
    run_once(bare_cmd)
    a_wall, a_cpu, b_wall, b_cpu = [], [], [], []
    for _ in range(rounds):
        wall, cpu = run_once(report)
        a_wall.append(wall)
        a_cpu.append(cpu)
        wall, cpu = run_once(bare_cmd)
        b_wall.append(wall)
        b_cpu.append(cpu)
    ratio_wall = statistics.median(a / b for a, b in zip(a_wall, b_wall, strict=True))
    ratio_cpu = statistics.median(a / b for a, b in zip(a_cpu, b_cpu, strict=True))
    print(f"  {case.name:10s} rows {got:5d}  wall: report {statistics.median(a_wall):6.3f}s  "
          f"bare {statistics.median(b_wall):6.3f}s  ratio {ratio_wall:5.2f}x   "
          f"cpu: report {statistics.median(a_cpu):6.3f}s  bare {statistics.median(b_cpu):6.3f}s  "
          f"ratio {ratio_cpu:5.2f}x", flush=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--rounds", type=int, default=7, help="timed pairs per case (medians reported)")
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument(
        "--keep", type=Path, help="generate into (and keep) this folder; reuse data already there"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    wanted = args.cases.split(",")
    unknown = set(wanted) - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    cases = [c for c in CASES if c.name in wanted]
    base = args.keep or Path(tempfile.mkdtemp(prefix="codexgate-report-bench-"))
    script_dir = Path(tempfile.mkdtemp(prefix="codexgate-report-bare-"))
    try:
        for n in sizes:
            print(f"== {n:,} traces (metadata only, {DAYS} days from {START:%Y-%m-%d})", flush=True)
            folder = dataset(base, n, START, reuse=args.keep is not None)
            size = sum(f.stat().st_size for f in folder.rglob("*.parquet"))
            print(f"  on disk: {size / 1e6:,.1f} MB; {args.rounds} interleaved pairs per case, medians")
            for case in cases:
                bench_case(case, folder, script_dir, args.rounds)
    finally:
        shutil.rmtree(script_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
