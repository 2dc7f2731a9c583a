"""``codexgate report spend|latency|errors|guardrails|sessions``: analytics from the command line.

Reads the trace Parquet files with DuckDB (no server needed) and prints a table, CSV, JSON or
writes Parquet. ``--traces`` defaults to ``$CODEXGATE_TRACES``, else ``./codexgate-data/traces``.

The text formats work on plain rows (column names + tuples from DuckDB) so that a report imports
neither Polars nor PyArrow: they would cost more start-up time than the query itself. Only
``--format parquet`` builds a Polars frame. DuckDB is imported when a report runs, not for
``--help``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from analytics import queries
from analytics.access import ViewerScope
from analytics.budgets import Budget, budgets_from_vault
from codexgate.cli import CliError

if TYPE_CHECKING:
    import polars as pl

    from analytics.db import TraceStore

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


class Result(Protocol):
    """What a report handler hands to ``_run``: one query, as rows (text formats) or as a frame."""

    def rows(self) -> queries.Rows: ...

    def frame(self) -> pl.DataFrame: ...


_TABLE_STR_CHARS = 60  # longer strings are cut (with "...") in the table format


def _float_decimals(column: str) -> int:
    """Decimals a float column is rounded to in the table format."""
    if "cost" in column or "usd" in column:
        return 4
    return 3 if ("rate" in column or "ratio" in column) else 1


def _round(value: float, decimals: int) -> float:
    """Scale, round half to even, scale back (the table format's rounding, sign of zero kept)."""
    if not math.isfinite(value):
        return value
    scale = 10.0**decimals
    scaled = value * scale
    return math.copysign(float(round(scaled)), scaled) / scale


def _digits(value: float) -> tuple[str, str, int]:
    """``value``'s shortest round-trip digits: (sign, significant digits, position of the decimal
    point among them), e.g. ``-0.0125`` -> ``("-", "125", -1)``."""
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exp or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return ("-" if math.copysign(1.0, value) < 0 else ""), stripped.rstrip("0") or "0", point


def _shortest(value: float) -> str:
    """Shortest round-trip digits, never in exponent form, no ``.0`` on whole numbers
    (``1e-07`` -> ``0.0000001``, ``1e6`` -> ``1000000``)."""
    sign, digits, point = _digits(value)
    if value == 0:
        return sign + "0"
    if point <= 0:
        return sign + "0." + "0" * -point + digits
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return sign + digits[:point] + "." + digits[point:]


def _exp(value: float, decimals: int | None = None) -> str:
    """Exponent form without padding or a plus sign: ``1.5e7`` (shortest digits), or with
    ``decimals`` digits after the point: ``1.2346e-7``."""
    if decimals is not None:
        mantissa, _, exp = f"{value:.{decimals}e}".partition("e")
        return f"{mantissa}e{int(exp)}"
    sign, digits, point = _digits(value)
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{point - 1 if value else 0}"


def _table_float(value: float) -> str:
    """A float as the table format shows it: ``1000.0``, ``0.0069``, ``1.2346e7``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    bound = 999999.0
    if value == math.trunc(value) and abs(value) < bound:
        return f"{value:.1f}"
    plain = _shortest(value)
    if len(plain) > 9:
        if not 0.000001 <= abs(value) <= bound:
            return _exp(value, 4)
        return _trim_zeros(f"{value:.6f}")
    return _exp(value) if value == math.trunc(value) else plain


def _trim_zeros(text: str) -> str:
    if not text.endswith("0"):
        return text
    text = text.rstrip("0")
    return text + "0" if text.endswith(".") else text


def _csv_float(value: float) -> str:
    """A float as the CSV format writes it: shortest round-trip digits, exponent form below 1e-5
    and from 1e16 (``1e-7``, ``1e+16``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, _, exp = text.partition("e")
    power = int(exp)
    if power == -5:
        return _shortest(value)
    return f"{mantissa}e{'-' if power < 0 else '+'}{abs(power)}"


def _clock(value: datetime) -> str:
    """``HH:MM:SS`` plus the fraction of a second in 3 or 6 digits, as far as it is not zero."""
    text = value.strftime("%H:%M:%S")
    if value.microsecond:
        text += (
            f".{value.microsecond // 1000:03d}"
            if value.microsecond % 1000 == 0
            else f".{value.microsecond:06d}"
        )
    return text


def _joined(value: list[Any] | tuple[Any, ...]) -> str:
    """A list as text: its non-null items joined with commas."""
    return ",".join(str(v) for v in value if v is not None)


def _table_cell(value: Any, decimals: int) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _table_float(_round(value, decimals))
    if isinstance(value, datetime):
        zone = value.tzname()
        text = f"{value:%Y-%m-%d} {_clock(value)}"
        return f"{text} {zone}" if zone else text
    if isinstance(value, list | tuple):
        value = _joined(value)
    text = value.isoformat() if isinstance(value, date) else str(value)
    if len(text) > _TABLE_STR_CHARS:
        return text[:_TABLE_STR_CHARS] + "..."
    return text


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _csv_float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f%z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return _joined(value)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def render_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown-style pipe table: floats rounded (4 decimals for cost/usd columns, 3 for rates and
    ratios, 1 otherwise), lists joined with commas, NULL as ``null``, long strings cut."""
    if not rows:
        return "(no traces in this range)\n"
    decimals = [_float_decimals(c) for c in columns]
    cells = [[_table_cell(v, d) for v, d in zip(row, decimals, strict=True)] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def render_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV with a header row: NULL as an empty field, lists joined with commas, datetimes in ISO
    form with microseconds and offset, booleans as ``true``/``false``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_csv_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


def render_json(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON list of objects: NULL as null, datetimes and dates in ISO form."""
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    return json.dumps(records, default=_json_default, indent=1) + "\n"


def emit(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str,
    output: Path | None,
    table_columns: list[str] | None = None,
    n_dims: int = 0,
) -> None:
    """Write the rows in the text format ``fmt`` (table, csv or json). The table shows the
    ``n_dims`` leading group columns and ``table_columns`` (every column when None); csv and json
    carry every column."""
    if fmt == "csv":
        text = render_csv(columns, rows)
    elif fmt == "json":
        text = render_json(columns, rows)
    else:
        if table_columns:
            shown = list(columns[:n_dims]) + [c for c in table_columns if c in columns[n_dims:]]
            if shown != list(columns):
                index = [list(columns).index(c) for c in shown]
                columns, rows = shown, [tuple(row[i] for i in index) for row in rows]
        text = render_table(columns, rows)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)


# ---------------------------------------------------------------------------------------------
# handlers
# ---------------------------------------------------------------------------------------------


class _BudgetResult:
    """``queries.budget_status`` as a ``Result`` (rows for text, a frame for Parquet)."""

    def __init__(self, store: TraceStore, budgets: list[Budget], now: datetime | None, scope: ViewerScope):
        self._args = (store, budgets, now, scope)

    def rows(self) -> queries.Rows:
        return queries.budget_status_rows(*self._args)

    def frame(self) -> pl.DataFrame:
        return queries.budget_status(*self._args)


def _run(args: argparse.Namespace, name: str, query: Callable[[TraceStore], Result], n_dims: int = 0) -> int:
    from analytics.db import TracesNotFound, TraceStore

    traces = _traces_dir(args)
    output = Path(args.output) if args.output else None
    if args.format == "parquet" and output is None:
        raise CliError("--format parquet needs --output FILE")
    try:
        store = TraceStore(traces)
        store.files()
        with progress(f"scanning {traces}"):
            result = query(store)
            if args.format == "parquet":
                frame = result.frame()
            else:
                columns, rows = result.rows()
    except TracesNotFound as exc:
        raise CliError(str(exc)) from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.format == "parquet":
        frame.write_parquet(output, compression="zstd")
    else:
        emit(columns, rows, args.format, output, _TABLE_COLUMNS.get(name), n_dims)
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
        return _run(args, "budgets", lambda s: _BudgetResult(s, budgets, now, scope))
    by = _by(args.by, ["team"])
    n_dims = len(by) + (1 if args.bucket else 0)
    return _run(
        args, "spend", lambda s: queries.spend_statement(s, by, since, until, args.bucket, scope), n_dims
    )


def cmd_latency(args: argparse.Namespace) -> int:
    since, until = _range(args)
    by = _by(args.by, ["model", "provider"])
    return _run(
        args, "latency", lambda s: queries.latency_statement(s, by, since, until, _scope(args)), len(by)
    )


def cmd_errors(args: argparse.Namespace) -> int:
    since, until = _range(args)
    scope = _scope(args)
    if args.detail == "refusals":
        by = _by(args.by, [])
        return _run(args, "refusals", lambda s: queries.refusal_reasons_statement(s, by, since, until, scope))
    if args.detail == "status":
        by = _by(args.by, [])
        return _run(args, "status", lambda s: queries.status_codes_statement(s, by, since, until, scope))
    by = _by(args.by, ["model"])
    return _run(args, "errors", lambda s: queries.errors_statement(s, by, since, until, scope), len(by))


def cmd_guardrails(args: argparse.Namespace) -> int:
    since, until = _range(args)
    by = _by(args.by, [])
    return _run(args, "guardrails", lambda s: queries.guardrails_statement(s, by, since, until, _scope(args)))


def cmd_sessions(args: argparse.Namespace) -> int:
    since, until = _range(args)
    scope = _scope(args)
    if args.session:
        query = queries.turn_cost_statement if args.turns else queries.session_cost_statement
        # a session id given explicitly is looked up over every date unless a range was given
        lo = since if args.since_given else None
        return _run(args, "session", lambda s: query(s, args.session, scope, lo, until))
    if args.limit < 1:
        raise CliError("--limit must be >= 1")
    return _run(
        args,
        "sessions",
        lambda s: queries.top_sessions_statement(s, args.limit, since, until, scope, order_by=args.order),
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
