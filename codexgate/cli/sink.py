"""``codexgate traces compact|recover|stats``: maintenance of the trace Parquet files.

``--traces`` defaults to ``$CODEXGATE_TRACES``, else ``./codexgate-data/traces``. All three are
safe while gateways are writing to the same directory: ``recover`` only touches the spools of
dead gateways, ``compact`` never merges a file whose spool segment still exists. ``stats`` also
shows what waits in ``_rejected/`` (rows that do not fit the schema, unreadable spool bytes), and
``recover`` prints one line per segment that left something there.
"""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path

from codexgate.cli import CliError
from codexgate.sink import compact, convert, recover, spool, stats

DEFAULT_TRACES = Path("codexgate-data") / "traces"


def register(subparsers: argparse._SubParsersAction) -> None:
    traces = subparsers.add_parser(
        "traces", help="maintain the trace Parquet files (compact, recover, stats)"
    )
    sub = traces.add_subparsers(dest="traces_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("compact", help="merge each date partition's small Parquet files into one")
    _traces_arg(p)
    p.add_argument("--date", type=_date, help="only this partition (YYYY-MM-DD)")
    p.add_argument(
        "--target-rows", type=int, default=1_000_000, help="rows per merged file at most (default 1000000)"
    )
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("recover", help="convert the spools of gateways that are no longer running")
    _traces_arg(p)
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("stats", help="files, rows and bytes per date partition; spool backlog")
    _traces_arg(p)
    p.set_defaults(func=cmd_stats)


def _traces_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--traces",
        type=Path,
        default=Path(os.environ.get("CODEXGATE_TRACES", DEFAULT_TRACES)),
        help="traces directory (default: $CODEXGATE_TRACES or ./codexgate-data/traces)",
    )


def _date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _existing(traces: Path) -> Path:
    if not traces.is_dir():
        raise CliError(f"no traces directory at {traces}")
    return traces


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # converted meanwhile
        return 0


def cmd_compact(args: argparse.Namespace) -> int:
    traces = _existing(args.traces)
    if args.target_rows < 1:
        raise CliError("--target-rows must be at least 1")
    if args.date and not (traces / f"date={args.date}").is_dir():
        raise CliError(f"no partition date={args.date} in {traces}")
    try:
        result = compact.compact(traces, args.date, args.target_rows)
    except compact.CompactionBusy as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot compact {traces}: {exc.strerror or exc}") from None
    if result.finished:
        print(f"finished {result.finished} interrupted compaction(s)")
    for merge in result.merges:
        print(f"{merge.partition}: merged {len(merge.inputs)} files ({merge.rows} rows) into {merge.output}")
        for name in merge.inputs:
            print(f"  - {name}")
    if not result.merges:
        print("nothing to compact")
    else:
        print(
            f"{result.files_in} files -> {result.files_out} in {result.partitions} partition(s), "
            f"{result.rows} rows"
        )
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    traces = _existing(args.traces)
    try:
        result = recover.recover_all(traces)
    except OSError as exc:
        raise CliError(f"cannot recover the spool under {traces}: {exc.strerror or exc}") from None
    print(
        f"recovered {result.rows} rows from {result.segments} segment(s) of "
        f"{len(result.instances)} stopped gateway(s)"
    )
    for line in result.problems:
        print(line)
    if result.torn_bytes:
        print(
            f"{result.torn_bytes} bytes of unreadable spool records (torn, corrupt or oversized) kept in "
            f"{traces / convert.REJECTED_DIR}"
        )
    if result.rejected:
        print(f"{result.rejected} rows did not fit the trace schema; kept in {traces / convert.REJECTED_DIR}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    traces = _existing(args.traces)
    parts = stats.partition_stats(traces)
    print(f"{'partition':<17} {'files':>6} {'rows':>10} {'bytes':>11}")
    for p in parts:
        print(f"{p.partition:<17} {p.files:>6} {p.rows:>10} {_size(p.bytes):>11}")
    total_bytes = sum(p.bytes for p in parts)
    print(
        f"{'total':<17} {sum(p.files for p in parts):>6} {sum(p.rows for p in parts):>10} "
        f"{_size(total_bytes):>11}"
    )
    root = spool.spool_root(traces)
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        segments = spool.list_segments(directory)
        state = "running" if spool.is_live(directory) else "stopped (run `codexgate traces recover`)"
        size = sum(_file_size(s) for s in segments)
        print(f"spool {directory.name}: {len(segments)} segment(s), {_size(size)}, {state}")
    rejected = stats.rejected_stats(traces)
    if rejected.files:
        print(
            f"rejected: {rejected.rows} row(s) that do not fit the trace schema and {rejected.spans} "
            f"unreadable spool span(s) in {rejected.files} file(s), {_size(rejected.bytes)}, waiting in "
            f"{traces / convert.REJECTED_DIR}"
        )
    return 0
