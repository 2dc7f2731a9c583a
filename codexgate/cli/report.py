"""``codexgate report spend|latency|errors|guardrails|sessions``: analytics from the command line.

Reads the trace Parquet files with DuckDB (no server needed) and prints a table, CSV, JSON or
writes Parquet. ``--traces`` defaults to ``$CODEXGATE_TRACES``, else ``./codexgate-data/traces``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from analytics import queries
from analytics.access import ViewerScope
from analytics.budgets import Budget, budgets_from_vault
from analytics.db import TracesNotFound, TraceStore
from codexgate.cli import CliError

DEFAULT_TRACES = Path("codexgate-data") / "traces"
FORMATS = ("table", "csv", "json", "parquet")
_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# columns shown by --format table (other formats get every column)
_TABLE_COLUMNS = {
    "spend": [
        "requests",
        "input_tokens",
        "cached_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost_usd",
        "unpriced_requests",
    ],
    "latency": [
        "requests",
        "duration_p50_ms",
        "duration_p95_ms",
        "duration_p99_ms",
        "ttft_p50_ms",
        "ttft_p95_ms",
        "ttfb_p50_ms",
        "ttfb_p95_ms",
    ],
    "errors": [
        "requests",
        "error_rate",
        "refusal_rate",
        "status_429",
        "status_5xx",
        "retried",
        "fallbacks",
        "guardrail_flagged",
        "guardrail_blocked",
    ],
    "sessions": [
        "session_id",
        "team",
        "developer",
        "model",
        "started",
        "calls",
        "turns",
        "cost_usd",
        "wall_s",
        "errors",
    ],
}


# ---------------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------------


def parse_time(text: str, *, now: datetime | None = None, end: bool = False) -> datetime:
    """``7d`` / ``24h`` / ``30m`` / ``2w`` ago, ``today``, ``now``, a date or an ISO datetime (UTC if no zone).

    A bare date as an end (``--until``) means the end of that day."""
    now = now or datetime.now(UTC)
    value = text.strip().lower()
    if value == "now":
        return now
    if value == "today":
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return day + timedelta(days=1) if end else day
    m = _RELATIVE.match(value)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            start = datetime(d.year, d.month, d.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"cannot read time {text!r}: use e.g. 7d, 24h, today, 2026-11-01 or 2026-11-01T09:00"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _by(text: str | None, default: list[str]) -> list[str]:
    if text is None:
        return default
    return [part.strip() for part in text.split(",") if part.strip()]


def _traces_dir(args: argparse.Namespace) -> Path:
    if args.traces:
        return Path(args.traces)
    env = os.environ.get("CODEXGATE_TRACES")
    return Path(env) if env else DEFAULT_TRACES


def _scope(args: argparse.Namespace) -> ViewerScope:
    return ViewerScope(org=args.org, team=args.team, developer=args.developer)


# ---------------------------------------------------------------------------------------------
# progress and output
# ---------------------------------------------------------------------------------------------


@contextmanager
def progress(label: str, *, delay: float = 0.4) -> Iterator[None]:
    """A spinner on stderr while a long scan runs (only when stderr is a terminal)."""
    if not sys.stderr.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def spin() -> None:
        frames = "|/-\\"
        i = 0
        if done.wait(delay):
            return
        while not done.wait(0.1):
            sys.stderr.write(f"\r{frames[i % 4]} {label} {time.monotonic() - started:4.1f}s")
            sys.stderr.flush()
            i += 1
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists joined with commas (for CSV and tables)."""
    exprs = [
        pl.col(name).list.eval(pl.element().cast(pl.String)).list.join(",").alias(name)
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.List)
    ]
    return frame.with_columns(exprs) if exprs else frame


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def emit(
    frame: pl.DataFrame,
    fmt: str,
    output: Path | None,
    table_columns: list[str] | None = None,
    n_dims: int = 0,
) -> None:
    """Write ``frame`` in ``fmt``. The table format shows the ``n_dims`` leading group columns and
    ``table_columns`` (every column when None); other formats carry every column."""
    if fmt == "parquet":
        if output is None:
            raise CliError("--format parquet needs --output FILE")
        frame.write_parquet(output, compression="zstd")
        return
    if fmt == "csv":
        text = _flat(frame).write_csv()
    elif fmt == "json":
        text = json.dumps(frame.to_dicts(), default=_json_default, indent=1) + "\n"
    else:
        shown = frame
        if table_columns:
            keep = frame.columns[:n_dims] + [c for c in table_columns if c in frame.columns[n_dims:]]
            shown = frame.select(keep)
        text = _table(_flat(shown))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


def _table(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "(no traces in this range)\n"
    rounded = frame.with_columns(
        [
            pl.col(n).round(4 if ("cost" in n or "usd" in n) else (3 if "rate" in n or "ratio" in n else 1))
            for n, t in frame.schema.items()
            if t in (pl.Float64, pl.Float32)
        ]
    )
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="ASCII_MARKDOWN",
        fmt_str_lengths=60,
        tbl_width_chars=10_000,
        thousands_separator=False,
    ):
        return str(rounded) + "\n"


# ---------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------


def _run(
    args: argparse.Namespace, name: str, query: Callable[[TraceStore], pl.DataFrame], n_dims: int = 0
) -> int:
    traces = _traces_dir(args)
    output = Path(args.output) if args.output else None
    if args.format == "parquet" and output is None:
        raise CliError("--format parquet needs --output FILE")
    try:
        store = TraceStore(traces)
        store.files()
        with progress(f"scanning {traces}"):
            frame = query(store)
    except TracesNotFound as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    emit(frame, args.format, output, _TABLE_COLUMNS.get(name), n_dims)
    return 0


def _range(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until, end=True) if args.until else None
    if since and until and since >= until:
        raise CliError("--since must be before --until")
    return since, until


def cmd_spend(args: argparse.Namespace) -> int:
    since, until = _range(args)
    scope = _scope(args)
    if args.vault:
        budgets = load_vault_budgets(Path(args.vault), args.vault_key_file)
        if not budgets:
            raise CliError(f"no budgets configured on keys or teams in {args.vault}")
        now = parse_time(args.as_of) if args.as_of else None
        return _run(args, "budgets", lambda s: queries.budget_status(s, budgets, now=now, scope=scope))
    by = _by(args.by, ["team"])
    n_dims = len(by) + (1 if args.bucket else 0)
    return _run(args, "spend", lambda s: queries.spend(s, by, since, until, args.bucket, scope), n_dims)


def cmd_latency(args: argparse.Namespace) -> int:
    since, until = _range(args)
    by = _by(args.by, ["model", "provider"])
    return _run(args, "latency", lambda s: queries.latency(s, by, since, until, _scope(args)), len(by))


def cmd_errors(args: argparse.Namespace) -> int:
    since, until = _range(args)
    scope = _scope(args)
    if args.detail == "refusals":
        by = _by(args.by, [])
        return _run(args, "refusals", lambda s: queries.refusal_reasons(s, by, since, until, scope))
    if args.detail == "status":
        by = _by(args.by, [])
        return _run(args, "status", lambda s: queries.status_codes(s, by, since, until, scope))
    by = _by(args.by, ["model"])
    return _run(args, "errors", lambda s: queries.errors(s, by, since, until, scope), len(by))


def cmd_guardrails(args: argparse.Namespace) -> int:
    since, until = _range(args)
    by = _by(args.by, [])
    return _run(args, "guardrails", lambda s: queries.guardrails(s, by, since, until, _scope(args)))


def cmd_sessions(args: argparse.Namespace) -> int:
    since, until = _range(args)
    scope = _scope(args)
    if args.session:
        query = queries.turn_cost if args.turns else queries.session_cost
        # a session id given explicitly is looked up over every date unless a range was given
        lo = since if args.since_given else None
        return _run(args, "session", lambda s: query(s, args.session, scope, lo, until))
    if args.limit < 1:
        raise CliError("--limit must be >= 1")
    return _run(
        args,
        "sessions",
        lambda s: queries.top_sessions(s, args.limit, since, until, scope, order_by=args.order),
    )


# ---------------------------------------------------------------------------------------------
# budgets from the vault
# ---------------------------------------------------------------------------------------------


def load_vault_budgets(vault_path: Path, key_file: str | None) -> list[Budget]:
    """Budgets configured on keys (``budget_usd``/``budget_period``) and teams in the vault."""
    try:
        from codexgate.core import vault as vault_mod
    except ModuleNotFoundError:
        raise CliError("--vault needs codexgate.core.vault, which this build does not include") from None
    if not vault_path.exists():
        raise CliError(f"vault not found: {vault_path}")
    try:
        secret = vault_mod.load_secret(Path(key_file) if key_file else None)
        vault = vault_mod.Vault.load(vault_path, secret)
    except CliError:
        raise
    except Exception as exc:  # wrong key, corrupt file: one line for the user
        raise CliError(f"cannot open vault {vault_path}: {exc}") from None
    try:
        return budgets_from_vault(vault)
    except ValueError as exc:
        raise CliError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------


class _SinceAction(argparse.Action):
    def __call__(
        self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: str | None = None
    ):
        namespace.since = values
        namespace.since_given = True


def _common(p: argparse.ArgumentParser, *, by_help: str | None, default_since: str | None = "7d") -> None:
    p.add_argument(
        "--traces", help="traces folder (default: $CODEXGATE_TRACES, else ./codexgate-data/traces)"
    )
    if by_help:
        dims = ", ".join([*queries.DIMENSIONS, "tag:<name>"])
        p.add_argument("--by", help=f"{by_help}; comma-separated, from: {dims}")
    p.add_argument(
        "--since",
        default=default_since,
        action=_SinceAction,
        help=f"start: 7d, 24h, today, 2026-11-01, 2026-11-01T09:00 (default: {default_since or 'all'})",
    )
    p.set_defaults(since_given=False)
    p.add_argument("--until", help="end (exclusive; a bare date includes that day); default: now")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--output", "-o", help="write to FILE instead of stdout (required for parquet)")
    p.add_argument("--org", help="restrict to one organisation")
    p.add_argument("--team", help="restrict to one team")
    p.add_argument("--developer", help="restrict to one developer")


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report", help="spend, latency, errors, guardrails and sessions from traces"
    )
    sub = report.add_subparsers(dest="report", metavar="REPORT")
    sub.required = True

    p = sub.add_parser("spend", help="tokens and cost per group (and per time bucket), or against budgets")
    _common(p, by_help="group by (default: team)")
    p.add_argument("--bucket", choices=queries.BUCKETS, help="also split by hour, day or week")
    p.add_argument("--vault", help="show spend against the budgets configured on keys/teams in this vault")
    p.add_argument("--as-of", help="with --vault: evaluate the budget periods at this time (default: now)")
    p.add_argument(
        "--vault-key-file",
        default=os.environ.get("CODEXGATE_VAULT_KEY_FILE"),
        help="file holding the vault key (default: $CODEXGATE_VAULT_KEY_FILE, else $CODEXGATE_VAULT_KEY)",
    )
    p.set_defaults(func=cmd_spend)

    p = sub.add_parser("latency", help="p50/p95/p99 duration, time to first token and first byte")
    _common(p, by_help="group by (default: model,provider)")
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser("errors", help="error/refusal rates, status codes, retries, fallbacks, guardrail hits")
    _common(p, by_help="group by (default: model; none for --detail)")
    p.add_argument("--detail", choices=("summary", "refusals", "status"), default="summary")
    p.set_defaults(func=cmd_errors)

    p = sub.add_parser("guardrails", help="guardrail findings per guardrail, entity and action")
    _common(p, by_help="group by (default: none)")
    p.set_defaults(func=cmd_guardrails)

    p = sub.add_parser("sessions", help="costliest sessions, or one session's calls / turns")
    _common(p, by_help=None)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--order", choices=tuple(queries.SESSION_ORDERS), default="cost")
    p.add_argument("--session", help="show this session's calls in order")
    p.add_argument("--turns", action="store_true", help="with --session: one row per turn")
    p.set_defaults(func=cmd_sessions)
