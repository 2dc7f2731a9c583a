"""``codexgate traces compact|recover|stats``: maintenance of the trace folder the sink writes."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from addons.trace_sink import SPOOL_DIR, compact, recover
from codexgate.cli import CliError

DEFAULT_TRACES = "codexgate-data/traces"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("traces", help="maintain the trace Parquet folder (compact, recover, stats)")
    tsub = p.add_subparsers(dest="traces_command", metavar="ACTION")
    tsub.required = True

    c = tsub.add_parser("compact", help="merge each date partition's small files")
    _traces_arg(c)
    c.add_argument("--date", help="only this partition (YYYY-MM-DD)")
    c.set_defaults(func=run_compact)

    r = tsub.add_parser("recover", help="convert spools left by gateways that are no longer running")
    _traces_arg(r)
    r.set_defaults(func=run_recover)

    s = tsub.add_parser("stats", help="files, rows and bytes per date partition; spool bytes pending")
    _traces_arg(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=run_stats)


def _traces_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--traces",
        default=os.environ.get("CODEXGATE_TRACES", DEFAULT_TRACES),
        help="trace folder (default: $CODEXGATE_TRACES or ./codexgate-data/traces)",
    )


def _traces_dir(args: argparse.Namespace) -> Path:
    path = Path(args.traces)
    if not path.is_dir():
        raise CliError(f"trace folder {path} does not exist")
    return path


def run_compact(args: argparse.Namespace) -> int:
    traces = _traces_dir(args)
    if args.date and not (traces / f"date={args.date}").is_dir():
        raise CliError(f"no partition date={args.date} in {traces}")
    result = compact(traces, date=args.date)
    if result.files_in == 0:
        print(f"nothing to compact in {traces}")
    else:
        print(
            f"merged {result.files_in} files ({result.rows} rows) into {result.files_out} "
            f"in {result.partitions} partition(s)"
        )
    return 0


def run_recover(args: argparse.Namespace) -> int:
    rows = recover(_traces_dir(args))
    print(f"recovered {rows} rows")
    return 0


def _stats(traces: Path) -> dict:
    partitions = []
    for part in sorted(traces.glob("date=*")):
        files = sorted(part.glob("*.parquet"))
        partitions.append(
            {
                "date": part.name.removeprefix("date="),
                "files": len(files),
                "rows": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
                "bytes": sum(f.stat().st_size for f in files),
            }
        )
    spool = traces / SPOOL_DIR
    segments = list(spool.glob("*/seg-*.log")) if spool.is_dir() else []
    return {
        "partitions": partitions,
        "files": sum(p["files"] for p in partitions),
        "rows": sum(p["rows"] for p in partitions),
        "bytes": sum(p["bytes"] for p in partitions),
        "spool_segments": len(segments),
        "spool_bytes": sum(s.stat().st_size for s in segments),
    }


def run_stats(args: argparse.Namespace) -> int:
    stats = _stats(_traces_dir(args))
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{'date':<12} {'files':>6} {'rows':>12} {'bytes':>14}")
    for p in stats["partitions"]:
        print(f"{p['date']:<12} {p['files']:>6} {p['rows']:>12} {p['bytes']:>14}")
    print(f"{'total':<12} {stats['files']:>6} {stats['rows']:>12} {stats['bytes']:>14}")
    print(f"spool pending: {stats['spool_bytes']} bytes in {stats['spool_segments']} segment(s)")
    return 0
