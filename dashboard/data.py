"""Data access for the dashboard: one cached ``TraceStore`` per traces folder (``st.cache_resource``)
and cached query results (``st.cache_data``), always with the viewer's scope; the sidebar time range.

The traces folder comes from ``CODEXGATE_TRACES`` (default ``./codexgate-data/traces``). All SQL lives
in ``analytics``; this module only names the query to run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import streamlit as st

from analytics import dashboard_queries, queries, sessions
from analytics.access import ViewerScope
from analytics.db import TracesNotFound, TraceStore

TRACES_ENV = "CODEXGATE_TRACES"
DEFAULT_TRACES = "./codexgate-data/traces"

QUERIES: dict[str, Callable[..., pl.DataFrame]] = {
    "spend": queries.spend,
    "latency": queries.latency,
    "errors": queries.errors,
    "refusal_reasons": queries.refusal_reasons,
    "status_codes": queries.status_codes,
    "guardrails": queries.guardrails,
    "cache_hit_ratio": queries.cache_hit_ratio,
    "distinct_values": queries.distinct_values,
    "list_sessions": sessions.list_sessions,
    "session_calls": sessions.session_calls,
    "outcomes_over_time": dashboard_queries.outcomes_over_time,
    "recent_failures": dashboard_queries.recent_failures,
    "recent_guardrail_findings": dashboard_queries.recent_guardrail_findings,
}


def use_app_navigation() -> None:
    """Run pages through ``app.py``'s ``st.navigation`` even when the first request of a fresh server
    is a page URL such as ``/replay``.

    Streamlit treats a ``pages/`` folder beside the entry script as a legacy multipage app until some
    run has called ``st.navigation``; until then ``/replay`` would run this page file alone (no titles,
    no wide layout). Clearing that flag and rerunning makes the entry script run, which picks the
    page by its ``url_path``. Has no effect when a page runs standalone (AppTest)."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def traces_dir() -> str:
    return str(Path(os.environ.get(TRACES_ENV) or DEFAULT_TRACES).expanduser().resolve())


@st.cache_resource(show_spinner=False)
def _store(path: str) -> TraceStore:
    return TraceStore(path)


def store() -> TraceStore:
    return _store(traces_dir())


def require_store() -> TraceStore:
    """The trace store; a friendly message (and the page stops) when there are no traces yet."""
    trace_store = store()
    try:
        trace_store.files()
    except TracesNotFound:
        st.info(
            f"No traces yet in `{trace_store.traces_dir}`. Send some Codex traffic through the gateway, "
            f"or point `{TRACES_ENV}` at a traces folder (for a demo: "
            "`python -m analytics.synth --traces DIR --calls 5000`).",
            icon="📭",
        )
        st.stop()
    return trace_store


def _scope_key(scope: ViewerScope) -> tuple[str | None, str | None, str | None, str]:
    return (scope.org, scope.team, scope.developer, scope.label)


@st.cache_data(ttl=60, show_spinner=False, max_entries=512)
def _cached(
    name: str, path: str, scope_key: tuple[Any, ...], args: tuple[Any, ...], kwargs: tuple[Any, ...]
) -> pl.DataFrame:
    scope = ViewerScope(*scope_key)
    return QUERIES[name](_store(path), *args, scope=scope, **dict(kwargs))


def run(name: str, scope: ViewerScope, *args: Any, **kwargs: Any) -> pl.DataFrame:
    """Run the named analytics query with the viewer's scope (cached for a minute)."""
    return _cached(name, traces_dir(), _scope_key(scope), tuple(args), tuple(sorted(kwargs.items())))


def clear_cache() -> None:
    _cached.clear()


# ---------------------------------------------------------------------------------------------
# time range
# ---------------------------------------------------------------------------------------------


def _persisted_date(key: str, default: date) -> date:
    saved = st.session_state.get(key + "_saved")
    return saved if isinstance(saved, date) else default


def _save(key: str) -> None:
    st.session_state[key + "_saved"] = st.session_state[key]


def time_range(default_days: int = 7) -> tuple[datetime, datetime]:
    """Sidebar since/until dates (UTC, until inclusive) as a ``[since, until)`` datetime range."""
    today = datetime.now(UTC).date()
    with st.sidebar:
        st.subheader("Time range (UTC)")
        since_day = st.date_input(
            "Since",
            value=_persisted_date("range_since", today - timedelta(days=default_days)),
            key="range_since",
            on_change=_save,
            args=("range_since",),
        )
        until_day = st.date_input(
            "Until (inclusive)",
            value=_persisted_date("range_until", today),
            key="range_until",
            on_change=_save,
            args=("range_until",),
        )
        if st.button("Refresh data", key="refresh_data"):
            clear_cache()
    since = datetime.combine(since_day, time(), tzinfo=UTC)
    until = datetime.combine(until_day, time(), tzinfo=UTC) + timedelta(days=1)
    if until <= since:
        st.sidebar.error("'Until' is before 'Since'.")
        st.stop()
    return since, until


def bucket_for(since: datetime, until: datetime) -> str:
    """A time bucket that gives a readable number of points for the range."""
    span = until - since
    if span <= timedelta(days=3):
        return "hour"
    if span <= timedelta(days=120):
        return "day"
    return "week"
