"""Named, parameterised analytics queries over the trace store, returning Polars frames.

Every function takes a ``TraceStore``, an optional ``[since, until)`` range (``start_time``; the
range also prunes the date partitions read) and a ``ViewerScope`` that is ANDed into the query.
User values only ever travel as ``?`` parameters; group-by columns come from ``DIMENSIONS`` (a
whitelist) and time buckets from ``BUCKETS``. The SQL text lives in the ``*_SQL`` constants; its
``{placeholders}`` are filled only with whitelisted fragments and the store's relation text.

Each query is two steps: ``<name>_statement(...)`` builds a ``Statement`` (SQL text, ``?``
parameters, column renames) and ``<name>(...)`` runs it as a Polars frame. The command-line
report runs the very same statement with ``Statement.rows()`` (names + tuples, no Polars), so
importing this module needs neither Polars nor PyArrow (nor DuckDB: ``TraceStore`` is only a type
here).

Costs: ``cost_usd`` sums priced calls only and stays NULL when nothing in a group was priced (never a
silent 0); ``unpriced_requests`` counts calls that used tokens but had no price.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec

from analytics.access import ALL, ViewerScope, scope_where
from analytics.budgets import Budget, period_bounds
from codexgate.core.timeutil import TimeArg, as_utc
from codexgate.wire import Outcome

if TYPE_CHECKING:
    import polars as pl

    from analytics.db import TraceStore

# dimension name -> column (or expression over columns)
DIMENSIONS: dict[str, str] = {
    "org": "org",
    "team": "team",
    "project": "project",
    "developer": "developer",
    "key_id": "key_id",
    "model": "gen_ai_request_model",
    "response_model": "gen_ai_response_model",
    "provider": "provider",
    "provider_name": "gen_ai_provider_name",
    "outcome": "outcome",
    "route": "route",
    "mode": "mode",
    "originator": "originator",
    "request_kind": "request_kind",
    "status_code": "status_code",
}
TAG_PREFIX = "tag:"
BUCKETS = ("hour", "day", "week")
# UTC buckets by integer arithmetic on epoch milliseconds: several times faster than date_trunc on
# TIMESTAMPTZ (which goes through ICU). Weeks start on Monday (1970-01-01 was a Thursday).
_DAY_MS = "(epoch_ms(start_time) // 86400000)"
BUCKET_EXPRESSIONS: dict[str, str] = {
    "hour": "to_timestamp((epoch_ms(start_time) // 3600000) * 3600)",
    "day": f"to_timestamp({_DAY_MS} * 86400)",
    "week": f"to_timestamp(({_DAY_MS} - ({_DAY_MS} + 3) % 7) * 86400)",
}
_TAG_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

ERROR_OUTCOMES = (Outcome.UPSTREAM_ERROR.value, Outcome.GATEWAY_ERROR.value, Outcome.INCOMPLETE.value)

# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------

SPEND_SQL = """
SELECT {dims}
    count(*) AS requests,
    count(*) FILTER (WHERE outcome = 'ok') AS ok_requests,
    CAST(coalesce(sum(gen_ai_usage_input_tokens), 0) AS BIGINT) AS input_tokens,
    CAST(coalesce(sum(gen_ai_usage_cache_read_input_tokens), 0) AS BIGINT) AS cached_tokens,
    CAST(coalesce(sum(gen_ai_usage_output_tokens), 0) AS BIGINT) AS output_tokens,
    CAST(coalesce(sum(gen_ai_usage_reasoning_output_tokens), 0) AS BIGINT) AS reasoning_tokens,
    CAST(sum(cost_usd) FILTER (WHERE cost_known) AS DOUBLE) AS cost_usd,
    CAST(sum(input_cost_usd) FILTER (WHERE cost_known) AS DOUBLE) AS input_cost_usd,
    CAST(sum(output_cost_usd) FILTER (WHERE cost_known) AS DOUBLE) AS output_cost_usd,
    count(*) FILTER (WHERE cost_known) AS priced_requests,
    count(*) FILTER (WHERE NOT cost_known
        AND (gen_ai_usage_input_tokens IS NOT NULL OR gen_ai_usage_output_tokens IS NOT NULL)) AS unpriced_requests,
    CAST(coalesce(sum(gen_ai_usage_input_tokens) FILTER (WHERE NOT cost_known), 0) AS BIGINT)
        AS unpriced_input_tokens,
    CAST(coalesce(sum(gen_ai_usage_output_tokens) FILTER (WHERE NOT cost_known), 0) AS BIGINT)
        AS unpriced_output_tokens
FROM {traces}
WHERE {where}
GROUP BY ALL
ORDER BY {order}
"""

LATENCY_SQL = """
SELECT {dim_names} requests, mean_duration_ms,
    d[1] AS duration_p50_ms, d[2] AS duration_p95_ms, d[3] AS duration_p99_ms,
    ft[1] AS ttft_p50_ms, ft[2] AS ttft_p95_ms, ft[3] AS ttft_p99_ms,
    fb[1] AS ttfb_p50_ms, fb[2] AS ttfb_p95_ms, fb[3] AS ttfb_p99_ms
FROM (
    SELECT {dims}
        count(*) AS requests,
        avg(duration_ms) AS mean_duration_ms,
        quantile_cont(duration_ms, [0.5, 0.95, 0.99]) AS d,
        quantile_cont(ttft_ms, [0.5, 0.95, 0.99]) AS ft,
        quantile_cont(ttfb_ms, [0.5, 0.95, 0.99]) AS fb
    FROM {traces}
    WHERE {where} AND outcome = 'ok'
    GROUP BY ALL
)
ORDER BY {order}
"""

ERRORS_SQL = """
SELECT {dims}
    count(*) AS requests,
    count(*) FILTER (WHERE outcome = 'ok') AS ok,
    count(*) FILTER (WHERE outcome IN ('upstream_error', 'gateway_error', 'incomplete')) AS errors,
    count(*) FILTER (WHERE outcome IN ('upstream_error', 'gateway_error', 'incomplete')) / count(*) AS error_rate,
    count(*) FILTER (WHERE outcome = 'refused') AS refused,
    count(*) FILTER (WHERE outcome = 'refused') / count(*) AS refusal_rate,
    count(*) FILTER (WHERE outcome = 'client_aborted') AS client_aborted,
    count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) AS status_4xx,
    count(*) FILTER (WHERE status_code = 429) AS status_429,
    count(*) FILTER (WHERE status_code BETWEEN 500 AND 599) AS status_5xx,
    count(*) FILTER (WHERE attempt_count > 1) AS retried,
    CAST(coalesce(sum(greatest(attempt_count - 1, 0)), 0) AS BIGINT) AS retries,
    count(*) FILTER (WHERE fallback_used) AS fallbacks,
    count(*) FILTER (WHERE len(guardrail_findings) > 0) AS guardrail_flagged,
    count(*) FILTER (WHERE guardrail_blocked) AS guardrail_blocked
FROM {traces}
WHERE {where}
GROUP BY ALL
ORDER BY {order}
"""

# One row per route target (provider, upstream model, upstream API) over every attempt of the
# calls in range: how often it was tried, served, failed and why the relay moved on.
TARGET_ATTEMPTS_SQL = """
SELECT a.provider AS provider, a.model AS upstream_model, coalesce(a.upstream_api, 'native') AS upstream_api,
    count(*) FILTER (WHERE coalesce(a.decision, '') <> 'skipped') AS attempts,
    count(*) FILTER (WHERE a.decision = 'served') AS served,
    count(*) FILTER (WHERE a.decision = 'served' AND moved) AS served_after_fallback,
    count(*) FILTER (WHERE a.decision IN ('retry', 'fallback', 'gave_up', 'cut')) AS failures,
    count(*) FILTER (WHERE a.decision = 'retry') AS retried,
    count(*) FILTER (WHERE a.decision = 'fallback') AS fell_back,
    count(*) FILTER (WHERE a.decision = 'gave_up') AS gave_up,
    count(*) FILTER (WHERE a.decision = 'cut') AS cut,
    count(*) FILTER (WHERE a.decision = 'skipped') AS skipped_open_circuit,
    median(a.latency_ms) FILTER (WHERE a.decision IN ('retry', 'fallback', 'gave_up', 'cut')) AS failure_latency_p50_ms,
    mode(a.error) FILTER (WHERE a.error IS NOT NULL) AS top_error
FROM (
    SELECT unnest(attempts) AS a,
        len(list_filter(attempts, lambda x: x.decision IN ('fallback', 'skipped'))) > 0 AS moved
    FROM {traces}
    WHERE {where} AND attempts IS NOT NULL
)
GROUP BY ALL
ORDER BY {order}
"""

REFUSAL_REASONS_SQL = """
SELECT {dim_names} refusal_reason,
    count(*) AS refused,
    count(*) / any_value(total) AS refusal_rate,
    any_value(total) AS requests
FROM (
    SELECT *, count(*) OVER ({partition}) AS total
    FROM (SELECT {dims} refusal_reason FROM {traces} WHERE {where})
)
WHERE refusal_reason IS NOT NULL
GROUP BY ALL
ORDER BY {order}
"""

STATUS_CODES_SQL = """
SELECT {dims} status_code, count(*) AS requests
FROM {traces}
WHERE {where}
GROUP BY ALL
ORDER BY {order}
"""

GUARDRAILS_SQL = """
SELECT {dims}
    f.guardrail AS guardrail, f.stage AS stage, f.entity AS entity, f.action AS action,
    count(*) AS findings,
    count(DISTINCT trace_id) AS calls,
    count(DISTINCT trace_id) FILTER (WHERE guardrail_blocked) AS blocked_calls
FROM (
    SELECT *, unnest(guardrail_findings) AS f
    FROM {traces}
    WHERE {where} AND len(guardrail_findings) > 0
)
GROUP BY ALL
ORDER BY {order}
"""

# Two phases: rank sessions on one cheap metric, then compute the full row for the winners only.
TOP_SESSIONS_SQL = """
WITH ranked AS (
    SELECT session_id
    FROM {traces}
    WHERE {where} AND session_id IS NOT NULL
    GROUP BY session_id
    ORDER BY {rank_metric} DESC NULLS LAST, session_id
    LIMIT ?
)
SELECT
    session_id,
    arg_min(org, start_time) AS org,
    arg_min(team, start_time) AS team,
    arg_min(developer, start_time) AS developer,
    arg_min(gen_ai_request_model, start_time) AS model,
    min(start_time) AS started,
    max(end_time) AS ended,
    epoch_ms(max(end_time)) / 1000.0 - epoch_ms(min(start_time)) / 1000.0 AS wall_s,
    count(*) AS calls,
    count(DISTINCT turn_id) AS turns,
    CAST(sum(cost_usd) FILTER (WHERE cost_known) AS DOUBLE) AS cost_usd,
    count(*) FILTER (WHERE NOT cost_known
        AND (gen_ai_usage_input_tokens IS NOT NULL OR gen_ai_usage_output_tokens IS NOT NULL)) AS unpriced_calls,
    CAST(coalesce(sum(gen_ai_usage_input_tokens), 0) AS BIGINT) AS input_tokens,
    CAST(coalesce(sum(gen_ai_usage_cache_read_input_tokens), 0) AS BIGINT) AS cached_tokens,
    CAST(coalesce(sum(gen_ai_usage_output_tokens), 0) AS BIGINT) AS output_tokens,
    sum(duration_ms) / 1000.0 AS model_time_s,
    count(*) FILTER (WHERE outcome IN ('upstream_error', 'gateway_error', 'incomplete')) AS errors,
    count(*) FILTER (WHERE outcome = 'refused') AS refused
FROM {traces}
WHERE {where} AND session_id IN (SELECT session_id FROM ranked)
GROUP BY session_id
ORDER BY {order}
"""

CACHE_HIT_SQL = """
SELECT {dims}
    CAST(coalesce(sum(gen_ai_usage_input_tokens), 0) AS BIGINT) AS input_tokens,
    CAST(coalesce(sum(gen_ai_usage_cache_read_input_tokens), 0) AS BIGINT) AS cached_tokens,
    CAST(sum(gen_ai_usage_cache_read_input_tokens) AS DOUBLE)
        / nullif(CAST(sum(gen_ai_usage_input_tokens) AS DOUBLE), 0) AS cache_hit_ratio,
    count(*) AS requests
FROM {traces}
WHERE {where} AND gen_ai_usage_input_tokens IS NOT NULL
GROUP BY ALL
ORDER BY {order}
"""

SESSION_CALLS_SQL = """
SELECT
    call_index, start_time, end_time, turn_id, request_kind, subagent,
    gen_ai_request_model AS model, provider, outcome, status_code, refusal_reason, error_type,
    gen_ai_usage_input_tokens AS input_tokens,
    gen_ai_usage_cache_read_input_tokens AS cached_tokens,
    gen_ai_usage_output_tokens AS output_tokens,
    gen_ai_usage_reasoning_output_tokens AS reasoning_tokens,
    cost_usd, cost_known, duration_ms, ttfb_ms, ttft_ms, attempt_count, fallback_used,
    list_transform(coalesce(tool_calls, []), lambda c: c.name) AS tool_names,
    sum(coalesce(cost_usd, 0)) OVER (ORDER BY start_time, call_index
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cumulative_cost_usd,
    epoch_ms(start_time) - epoch_ms(min(start_time) OVER ()) AS offset_ms,
    trace_id
FROM {traces}
WHERE {where} AND session_id = ?
ORDER BY start_time, call_index
"""

TURN_COST_SQL = """
SELECT
    row_number() OVER (ORDER BY started) - 1 AS turn_no, *
FROM (
    SELECT
        turn_id,
        min(start_time) AS started,
        max(end_time) AS ended,
        count(*) AS calls,
        CAST(sum(cost_usd) FILTER (WHERE cost_known) AS DOUBLE) AS cost_usd,
        count(*) FILTER (WHERE NOT cost_known
            AND (gen_ai_usage_input_tokens IS NOT NULL OR gen_ai_usage_output_tokens IS NOT NULL)) AS unpriced_calls,
        CAST(coalesce(sum(gen_ai_usage_input_tokens), 0) AS BIGINT) AS input_tokens,
        CAST(coalesce(sum(gen_ai_usage_cache_read_input_tokens), 0) AS BIGINT) AS cached_tokens,
        CAST(coalesce(sum(gen_ai_usage_output_tokens), 0) AS BIGINT) AS output_tokens,
        CAST(coalesce(sum(gen_ai_usage_reasoning_output_tokens), 0) AS BIGINT) AS reasoning_tokens,
        sum(duration_ms) AS model_time_ms,
        CAST(coalesce(sum(len(tool_calls)), 0) AS BIGINT) AS tool_calls,
        count(*) FILTER (WHERE outcome <> 'ok') AS failed_calls
    FROM {traces}
    WHERE {where} AND session_id = ?
    GROUP BY turn_id
)
ORDER BY started
"""

BUDGET_SPEND_SQL = """
SELECT
    count(*) AS requests,
    CAST(coalesce(sum(cost_usd) FILTER (WHERE cost_known), 0) AS DOUBLE) AS spent_usd,
    count(*) FILTER (WHERE NOT cost_known
        AND (gen_ai_usage_input_tokens IS NOT NULL OR gen_ai_usage_output_tokens IS NOT NULL)) AS unpriced_requests
FROM {traces}
WHERE {where} AND {target}
"""

BUDGET_CROSSING_SQL = """
SELECT min(start_time) AS crossed_at FROM (
    SELECT start_time,
        sum(cost_usd) OVER (ORDER BY start_time ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
    FROM {traces}
    WHERE {where} AND {target} AND cost_known
)
WHERE running >= ?
"""

DISTINCT_SQL = """
SELECT {column} AS value, count(*) AS requests
FROM {traces}
WHERE {where} AND {column} IS NOT NULL
GROUP BY 1
ORDER BY 1
"""

# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

Rows = tuple[list[str], list[tuple[Any, ...]]]  # column names, one tuple per row


@dataclass(frozen=True)
class Statement:
    """One named query ready to run on ``store``: SQL text, its ``?`` parameters in order, and the
    renames from SQL aliases to public column names (``tag_0`` -> ``tag:env``)."""

    store: TraceStore
    sql: str
    params: list[Any]
    renames: dict[str, str] = field(default_factory=dict)

    def frame(self) -> pl.DataFrame:
        """The result as a Polars frame (dashboard, notebooks, Parquet export)."""
        frame = self.store.query(self.sql, self.params)
        return frame.rename(self.renames) if self.renames else frame

    def rows(self) -> Rows:
        """The result as column names and tuples of Python values, without Polars or PyArrow."""
        columns, rows = self.store.query_rows(self.sql, self.params)
        return [self.renames.get(c, c) for c in columns], rows


P = ParamSpec("P")


def _as_frame(build: Callable[P, Statement]) -> Callable[P, pl.DataFrame]:
    """The query that runs ``build``'s statement as a Polars frame, with the same arguments:
    ``spend = _as_frame(spend_statement)``. The command-line report calls ``build`` itself."""

    def run(*args: P.args, **kwargs: P.kwargs) -> pl.DataFrame:
        return build(*args, **kwargs).frame()

    run.__name__ = run.__qualname__ = build.__name__.removesuffix("_statement")
    run.__doc__ = build.__doc__
    run.__module__ = build.__module__
    # inspect.signature (help, IDEs) shows the arguments and what this returns
    run.__signature__ = inspect.signature(build).replace(return_annotation="pl.DataFrame")  # type: ignore[attr-defined]
    return run


@dataclass(frozen=True)
class _Dims:
    select: str  # "expr AS name, ..." with a trailing comma, or ""
    partition: str  # "PARTITION BY <dims>" or ""
    names: list[str]  # output column names in SQL
    params: list[Any]
    renames: dict[str, str]  # SQL alias -> public name


def _dims(by: Sequence[str], bucket: str | None = None) -> _Dims:
    exprs: list[str] = []
    names: list[str] = []
    params: list[Any] = []
    renames: dict[str, str] = {}
    if bucket is not None:
        if bucket not in BUCKETS:
            raise ValueError(f"bucket must be one of {BUCKETS} or None, not {bucket!r}")
        exprs.append(f"{BUCKET_EXPRESSIONS[bucket]} AS bucket")
        names.append("bucket")
    seen: set[str] = set()
    for i, dim in enumerate(by):
        if dim in seen:
            raise ValueError(f"duplicate group-by dimension {dim!r}")
        seen.add(dim)
        if dim.startswith(TAG_PREFIX):
            tag = dim[len(TAG_PREFIX) :]
            if not _TAG_NAME.match(tag):
                raise ValueError(f"invalid tag name {tag!r}")
            alias = f"tag_{i}"
            exprs.append(f"list_filter(tags, lambda t: t.key = ?)[1].value AS {alias}")
            params.append(tag)
            renames[alias] = dim
            names.append(alias)
        elif dim in DIMENSIONS:
            exprs.append(f"{DIMENSIONS[dim]} AS {dim}")
            names.append(dim)
        else:
            allowed = ", ".join([*DIMENSIONS, TAG_PREFIX + "<name>"])
            raise ValueError(f"cannot group by {dim!r}; use one of: {allowed}")
    select = "".join(e + ", " for e in exprs)
    partition = ("PARTITION BY " + ", ".join(names)) if names else ""
    return _Dims(select, partition, names, params, renames)


def _statement(
    store: TraceStore,
    template: str,
    *,
    by: Sequence[str] = (),
    bucket: str | None = None,
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
    order: str | None = None,
    tail_params: Sequence[Any] = (),
    fill: dict[str, str] | None = None,
) -> Statement:
    lo, hi = as_utc(since), as_utc(until)
    dims = _dims(by, bucket)
    where, where_params = scope_where(scope, lo, hi)
    dims_order = ", ".join(f"{n} NULLS LAST" for n in dims.names)
    order_sql = (order or "{dims_order}").replace("{dims_order}", dims_order or "1")
    sql = template.format(
        dims=dims.select,
        dim_names="".join(n + ", " for n in dims.names),
        partition=dims.partition,
        traces=store.relation(lo, hi),
        where=where,
        order=order_sql,
        **(fill or {}),
    )
    # dims appear once per SELECT level that names them: count their placeholders to order params
    dim_params = dims.params * template.count("{dims}") if dims.params else []
    return Statement(store, sql, [*dim_params, *where_params, *tail_params], dims.renames)


# ---------------------------------------------------------------------------------------------
# Public queries: ``<name>_statement`` builds, ``<name> = _as_frame(...)`` runs it as a Polars frame
# ---------------------------------------------------------------------------------------------


def spend_statement(
    store: TraceStore,
    by: Sequence[str] = ("team",),
    since: TimeArg = None,
    until: TimeArg = None,
    bucket: str | None = None,
    scope: ViewerScope = ALL,
) -> Statement:
    """Requests, tokens (input incl. cached, cached, output incl. reasoning, reasoning) and cost per group
    (and per time ``bucket``). Unpriced calls are counted in ``unpriced_*``, never as $0."""
    order = "bucket, cost_usd DESC NULLS LAST" if bucket else "cost_usd DESC NULLS LAST, requests DESC"
    if by and not bucket:
        order += ", {dims_order}"
    return _statement(
        store, SPEND_SQL, by=by, bucket=bucket, since=since, until=until, scope=scope, order=order
    )


spend = _as_frame(spend_statement)


def latency_statement(
    store: TraceStore,
    by: Sequence[str] = ("model", "provider"),
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
) -> Statement:
    """p50/p95/p99 (``quantile_cont``) of duration, time to first token and time to first byte (ms)
    of ``ok`` calls, with the mean duration and the number of calls."""
    return _statement(store, LATENCY_SQL, by=by, since=since, until=until, scope=scope)


latency = _as_frame(latency_statement)


def errors_statement(
    store: TraceStore,
    by: Sequence[str] = ("model",),
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
) -> Statement:
    """Error and refusal rates, status classes, retries (attempt_count > 1), fallbacks, guardrail hits."""
    return _statement(store, ERRORS_SQL, by=by, since=since, until=until, scope=scope)


errors = _as_frame(errors_statement)


def target_attempts_statement(
    store: TraceStore,
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
) -> Statement:
    """Attempts per route target (``provider``, ``upstream_model``, ``upstream_api``): tried,
    served, served after the call fell back from another target, failures by the relay's
    decision (retry, fallback, gave_up, cut), skipped while its circuit was open, the median
    latency of its failures and its most frequent error. Rows without decisions (written before
    routing recorded them) count as attempts only."""
    order = "failures DESC, attempts DESC, provider, upstream_model NULLS FIRST, upstream_api"
    return _statement(store, TARGET_ATTEMPTS_SQL, since=since, until=until, scope=scope, order=order)


target_attempts = _as_frame(target_attempts_statement)


def refusal_reasons_statement(
    store: TraceStore,
    by: Sequence[str] = (),
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
) -> Statement:
    """Refusals per ``refusal_reason`` (and group), with their rate among all the group's requests."""
    order = ("{dims_order}, " if by else "") + "refused DESC, refusal_reason"
    return _statement(store, REFUSAL_REASONS_SQL, by=by, since=since, until=until, scope=scope, order=order)


refusal_reasons = _as_frame(refusal_reasons_statement)


def status_codes_statement(
    store: TraceStore,
    by: Sequence[str] = (),
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
) -> Statement:
    """Requests per HTTP status sent to the client (NULL: none was sent)."""
    order = ("{dims_order}, " if by else "") + "status_code NULLS LAST"
    return _statement(store, STATUS_CODES_SQL, by=by, since=since, until=until, scope=scope, order=order)


status_codes = _as_frame(status_codes_statement)


def guardrails_statement(
    store: TraceStore,
    by: Sequence[str] = (),
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
) -> Statement:
    """Guardrail findings per guardrail / stage / entity / action (one row per finding kind)."""
    order = ("{dims_order}, " if by else "") + "findings DESC, guardrail, entity, action, stage"
    return _statement(store, GUARDRAILS_SQL, by=by, since=since, until=until, scope=scope, order=order)


guardrails = _as_frame(guardrails_statement)


# order_by -> (ranking aggregate, final ORDER BY)
SESSION_ORDERS: dict[str, tuple[str, str]] = {
    "cost": ("sum(cost_usd) FILTER (WHERE cost_known)", "cost_usd DESC NULLS LAST"),
    "calls": ("count(*)", "calls DESC"),
    "duration": ("max(end_time) - min(start_time)", "wall_s DESC"),
    "errors": (
        "count(*) FILTER (WHERE outcome IN ('upstream_error', 'gateway_error', 'incomplete'))",
        "errors DESC",
    ),
    "tokens": ("sum(gen_ai_usage_input_tokens)", "input_tokens DESC"),
}


def top_sessions_statement(
    store: TraceStore,
    limit: int = 20,
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
    *,
    order_by: str = "cost",
) -> Statement:
    """The ``limit`` sessions with the highest cost (or calls / duration / errors / tokens), one row
    each: identity, model, start/end, calls, turns, cost, tokens, model time, errors, refusals."""
    if order_by not in SESSION_ORDERS:
        raise ValueError(f"order_by must be one of {tuple(SESSION_ORDERS)}, not {order_by!r}")
    if limit < 1:
        raise ValueError("limit must be >= 1")
    lo, hi = as_utc(since), as_utc(until)
    where, where_params = scope_where(scope, lo, hi)
    rank_metric, order = SESSION_ORDERS[order_by]
    sql = TOP_SESSIONS_SQL.format(
        traces=store.relation(lo, hi), where=where, rank_metric=rank_metric, order=order + ", session_id"
    )
    return Statement(store, sql, [*where_params, int(limit), *where_params])


top_sessions = _as_frame(top_sessions_statement)


def cache_hit_ratio_statement(
    store: TraceStore,
    by: Sequence[str] = ("team",),
    since: TimeArg = None,
    until: TimeArg = None,
    scope: ViewerScope = ALL,
    bucket: str | None = None,
) -> Statement:
    """sum(cached input tokens) / sum(input tokens) over calls that reported usage."""
    return _statement(store, CACHE_HIT_SQL, by=by, bucket=bucket, since=since, until=until, scope=scope)


cache_hit_ratio = _as_frame(cache_hit_ratio_statement)


def session_cost_statement(
    store: TraceStore,
    session_id: str,
    scope: ViewerScope = ALL,
    since: TimeArg = None,
    until: TimeArg = None,
) -> Statement:
    """Every call of one session in order: tokens, cost (and running total), latency, tool names."""
    return _statement(
        store, SESSION_CALLS_SQL, since=since, until=until, scope=scope, tail_params=[session_id], order="1"
    )


session_cost = _as_frame(session_cost_statement)


def turn_cost_statement(
    store: TraceStore,
    session_id: str,
    scope: ViewerScope = ALL,
    since: TimeArg = None,
    until: TimeArg = None,
) -> Statement:
    """One row per turn of a session, in order: calls, tokens, cost, model time, tool calls."""
    return _statement(
        store, TURN_COST_SQL, since=since, until=until, scope=scope, tail_params=[session_id], order="1"
    )


turn_cost = _as_frame(turn_cost_statement)


def distinct_values_statement(
    store: TraceStore, dimension: str, since: TimeArg = None, until: TimeArg = None, scope: ViewerScope = ALL
) -> Statement:
    """The values of one whitelisted dimension (for filters and pickers) with their request counts."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}")
    return _statement(
        store, DISTINCT_SQL, since=since, until=until, scope=scope, fill={"column": DIMENSIONS[dimension]}
    )


distinct_values = _as_frame(distinct_values_statement)


# ---------------------------------------------------------------------------------------------
# Budgets: a few small queries per budget, assembled in Python
# ---------------------------------------------------------------------------------------------

BUDGET_STATUS_COLUMNS = (
    "scope_kind",
    "name",
    "period",
    "period_start",
    "period_end",
    "amount_usd",
    "spent_usd",
    "remaining_usd",
    "used_fraction",
    "burn_usd_per_hour",
    "projected_exhaustion",
    "status",
    "requests",
    "unpriced_requests",
)


def budget_status_rows(
    store: TraceStore,
    budgets: Sequence[Budget],
    now: datetime | None = None,
    scope: ViewerScope = ALL,
) -> Rows:
    """The rows of ``budget_status`` (same arguments) as ``BUDGET_STATUS_COLUMNS`` and tuples."""
    now = as_utc(now) or datetime.now(UTC)
    rows: list[tuple[Any, ...]] = []
    for budget in budgets:
        if budget.scope_kind == "team" and not _team_in_scope(budget, scope):
            continue
        start, end = period_bounds(budget.period, now)
        if budget.scope_kind == "key":
            target, target_params = "key_id = ?", [budget.name]
        elif budget.org is not None:
            target, target_params = "(org = ? AND team = ?)", [budget.org, budget.team]
        else:
            target, target_params = "team = ?", [budget.team]
        upto = now + timedelta(microseconds=1)
        where, where_params = scope_where(scope, start, upto)
        traces = store.relation(start, upto)
        _, spent_rows = store.query_rows(
            BUDGET_SPEND_SQL.format(traces=traces, where=where, target=target),
            [*where_params, *target_params],
        )
        requests, spent_usd, unpriced = spent_rows[0]
        if requests == 0 and budget.scope_kind == "key" and not scope.unrestricted:
            continue  # a restricted viewer sees key budgets only for keys with traffic in scope
        spent = float(spent_usd)
        remaining = budget.amount_usd - spent
        elapsed_h = max((now - start).total_seconds() / 3600.0, 1e-9)
        burn = spent / elapsed_h
        projected: datetime | None = None
        status = "ok"
        if remaining <= 0:
            status = "exhausted"
            _, crossed = store.query_rows(
                BUDGET_CROSSING_SQL.format(traces=traces, where=where, target=target),
                [*where_params, *target_params, budget.amount_usd],
            )
            projected = crossed[0][0]
        elif burn > 0:
            eta = now + timedelta(hours=remaining / burn)
            if eta < end:
                projected, status = eta, "at_risk"
        rows.append(
            (
                budget.scope_kind,
                budget.name,
                budget.period,
                start,
                end,
                float(budget.amount_usd),
                spent,
                remaining,
                spent / budget.amount_usd,
                burn,
                projected,
                status,
                int(requests),
                int(unpriced),
            )
        )
    return list(BUDGET_STATUS_COLUMNS), rows


def budget_status(
    store: TraceStore,
    budgets: Sequence[Budget],
    now: datetime | None = None,
    scope: ViewerScope = ALL,
) -> pl.DataFrame:
    """Spend of each budget in its current period (up to ``now``), remaining amount, burn rate
    (USD/hour since the period began) and the projected exhaustion time at that rate — NULL when the
    budget is not on track to run out before the period ends; for an exhausted budget, the time
    its running spend crossed the amount. Team budgets outside ``scope`` are left out."""
    import polars as pl

    _, rows = budget_status_rows(store, budgets, now, scope)
    utc = pl.Datetime("us", "UTC")
    dtypes = [pl.String] * 3 + [utc] * 2 + [pl.Float64] * 5 + [utc, pl.String, pl.Int64, pl.Int64]
    return pl.DataFrame(rows, schema=dict(zip(BUDGET_STATUS_COLUMNS, dtypes, strict=True)), orient="row")


def _team_in_scope(budget: Budget, scope: ViewerScope) -> bool:
    if scope.developer is not None:
        return scope.team is not None and scope.team == budget.team and scope.org in (None, budget.org)
    if scope.team is not None and scope.team != budget.team:
        return False
    if scope.org is not None and budget.org is not None and scope.org != budget.org:
        return False
    return True
