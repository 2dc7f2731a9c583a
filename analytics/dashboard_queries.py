"""Time series and recent examples for the dashboard's Errors and Guardrails pages.

Same conventions as ``analytics.queries``: the viewer's scope is ANDed into every query, user values
travel as ``?`` parameters, the time bucket comes from ``queries.BUCKET_EXPRESSIONS`` (a whitelist).
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from analytics.access import ALL, ViewerScope, scope_where
from analytics.db import TraceStore
from analytics.queries import BUCKET_EXPRESSIONS
from codexgate.core.timeutil import as_utc

OUTCOMES_OVER_TIME_SQL = """
SELECT {bucket} AS bucket,
    count(*) FILTER (WHERE outcome IN ('upstream_error', 'gateway_error', 'incomplete')) AS errors,
    count(*) FILTER (WHERE outcome = 'refused') AS refused,
    count(*) FILTER (WHERE outcome = 'client_aborted') AS client_aborted,
    count(*) FILTER (WHERE len(guardrail_findings) > 0) AS guardrail_flagged,
    count(*) FILTER (WHERE guardrail_blocked) AS guardrail_blocked,
    count(*) AS requests
FROM {traces}
WHERE {where}
GROUP BY 1
ORDER BY 1
"""

RECENT_FAILURES_SQL = """
SELECT start_time, outcome, status_code, error_type, refusal_reason, error_message,
    gen_ai_request_model AS model, provider, team, developer, session_id, call_index, attempt_count,
    fallback_used
FROM {traces}
WHERE {where} AND outcome <> 'ok'
ORDER BY start_time DESC
LIMIT ?
"""

RECENT_GUARDRAIL_SQL = """
SELECT start_time, f.guardrail AS guardrail, f.stage AS stage, f.entity AS entity, f.action AS action,
    f.score AS score, f.message AS message, guardrail_blocked AS blocked, team, developer, session_id,
    call_index
FROM (
    SELECT *, unnest(guardrail_findings) AS f
    FROM {traces}
    WHERE {where} AND len(guardrail_findings) > 0
)
ORDER BY start_time DESC
LIMIT ?
"""


def _check_bucket(bucket: str) -> str:
    if bucket not in BUCKET_EXPRESSIONS:
        raise ValueError(f"bucket must be one of {tuple(BUCKET_EXPRESSIONS)}, not {bucket!r}")
    return BUCKET_EXPRESSIONS[bucket]


def outcomes_over_time(
    store: TraceStore,
    bucket: str = "hour",
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    scope: ViewerScope = ALL,
) -> pl.DataFrame:
    """Per time bucket: errors, refusals, client aborts, guardrail-flagged and -blocked calls, requests."""
    lo, hi = as_utc(since), as_utc(until)
    where, params = scope_where(scope, lo, hi)
    sql = OUTCOMES_OVER_TIME_SQL.format(
        bucket=_check_bucket(bucket), traces=store.relation(lo, hi), where=where
    )
    return store.query(sql, params)


def recent_failures(
    store: TraceStore,
    limit: int = 50,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    scope: ViewerScope = ALL,
) -> pl.DataFrame:
    """The latest calls that did not end ``ok`` (errors, refusals, aborts), newest first."""
    lo, hi = as_utc(since), as_utc(until)
    where, params = scope_where(scope, lo, hi)
    sql = RECENT_FAILURES_SQL.format(traces=store.relation(lo, hi), where=where)
    return store.query(sql, [*params, int(limit)])


def recent_guardrail_findings(
    store: TraceStore,
    limit: int = 50,
    since: datetime | date | None = None,
    until: datetime | date | None = None,
    scope: ViewerScope = ALL,
) -> pl.DataFrame:
    """The latest guardrail findings (one row per finding), newest first."""
    lo, hi = as_utc(since), as_utc(until)
    where, params = scope_where(scope, lo, hi)
    sql = RECENT_GUARDRAIL_SQL.format(traces=store.relation(lo, hi), where=where)
    return store.query(sql, [*params, int(limit)])
