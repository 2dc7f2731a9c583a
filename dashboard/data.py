"""Data access for the dashboard: one cached ``TraceStore`` per traces folder (``st.cache_resource``)
and cached query results (``st.cache_data``), always with the viewer's scope; the sidebar time range.

The live traces folder comes from ``CODEXGATE_TRACES`` (default ``./codexgate-data/traces``). A synthetic
history (``codexgate demo`` writes one) comes from ``CODEXGATE_SYNTHETIC_TRACES``: a folder whose parent
holds ``SYNTHETIC.json`` with ``"synthetic": true``. The sidebar offers both; the choice is in the URL
(``?data=synthetic``) so links keep it, and every page showing a synthetic folder carries a
"synthetic data" badge. A folder is never both: live and synthetic traces are never mixed.

All SQL lives in ``analytics``; this module only names the query to run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import polars as pl
import streamlit as st

from analytics import dashboard_queries, queries, sessions
from analytics.access import ViewerScope
from analytics.budgets import Budget, budgets_from_vault
from analytics.db import TracesNotFound, TraceStore

TRACES_ENV = "CODEXGATE_TRACES"
SYNTHETIC_ENV = "CODEXGATE_SYNTHETIC_TRACES"
DEFAULT_TRACES = "./codexgate-data/traces"
SYNTHETIC_LABEL = "SYNTHETIC.json"
SOURCE_PARAM = "data"  # ?data=synthetic
SYNTHETIC, LIVE = "synthetic", "live"

QUERIES: dict[str, Callable[..., pl.DataFrame]] = {
    "spend": queries.spend,
    "latency": queries.latency,
    "errors": queries.errors,
    "target_attempts": queries.target_attempts,
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


def live_traces_dir() -> str:
    return str(Path(os.environ.get(TRACES_ENV) or DEFAULT_TRACES).expanduser().resolve())


def synthetic_label(folder: str | Path) -> dict[str, Any] | None:
    """The ``SYNTHETIC.json`` label beside a traces folder when it marks it synthetic, else None."""
    try:
        label = json.loads((Path(folder).parent / SYNTHETIC_LABEL).read_text())
    except (OSError, ValueError):
        return None
    return label if isinstance(label, dict) and label.get("synthetic") is True else None


def synthetic_traces_dir() -> str | None:
    """The labelled synthetic history folder, when one is configured (None otherwise, or when it is
    the live folder: the two are never the same)."""
    value = os.environ.get(SYNTHETIC_ENV)
    if not value:
        return None
    folder = str(Path(value).expanduser().resolve())
    return folder if folder != live_traces_dir() and synthetic_label(folder) is not None else None


def source() -> str:
    """``synthetic`` when the viewer chose the synthetic history (URL ``?data=synthetic``, else the
    sidebar choice of this session), else ``live``."""
    if synthetic_traces_dir() is None:
        return LIVE
    try:
        from_link = st.query_params.get(SOURCE_PARAM)
        if from_link in (
            SYNTHETIC,
            LIVE,
        ):  # a link's choice sticks for the session (pages may rewrite the URL)
            st.session_state["data_source_saved"] = from_link
        wanted = from_link or st.session_state.get("data_source_saved")
    except Exception:  # noqa: BLE001 - no Streamlit context (plain script)
        wanted = None
    return SYNTHETIC if wanted == SYNTHETIC else LIVE


def traces_dir() -> str:
    """The traces folder the pages read: the live one, or the synthetic history when chosen."""
    if source() == SYNTHETIC:
        return synthetic_traces_dir() or live_traces_dir()
    return live_traces_dir()


def source_params() -> dict[str, str]:
    """Query parameters that keep the data source in a link (empty for live data)."""
    return {SOURCE_PARAM: SYNTHETIC} if source() == SYNTHETIC else {}


def link(page: str, **params: Any) -> str:
    """A relative link to a dashboard page keeping the data source, e.g. ``/replay?session=…&step=1``."""
    query = urlencode({**{k: str(v) for k, v in params.items() if v is not None}, **source_params()})
    return f"/{page}" + (f"?{query}" if query else "")


def _choose_source(synthetic: str) -> None:
    """The sidebar's data-source switch (only when a synthetic history is configured)."""
    current = source()
    options = [LIVE, SYNTHETIC]
    labels = {LIVE: "Live traces", SYNTHETIC: "Synthetic history (demo)"}
    with st.sidebar:
        choice = st.radio(
            "Data",
            options,
            index=options.index(current),
            format_func=labels.get,
            key="data_source",
            help=f"Live: {live_traces_dir()}. Synthetic: {synthetic} (generated, labelled, never mixed in).",
        )
    if choice != current:
        st.session_state["data_source_saved"] = choice
        if choice == SYNTHETIC:
            st.query_params[SOURCE_PARAM] = SYNTHETIC
        else:
            st.query_params.pop(SOURCE_PARAM, None)
        st.rerun()


def synthetic_badge() -> None:
    """The visible mark on every page that shows the synthetic history."""
    label = synthetic_label(traces_dir()) or {}
    days = label.get("days")
    st.warning(
        "**🧪 SYNTHETIC DATA** — a generated history"
        + (f" ({days} days)" if days else "")
        + ", not real traffic. Switch to *Live traces* in the sidebar for what went through the gateway.",
        icon="🧪",
    )
    st.sidebar.caption("🧪 Showing **synthetic data**")


@st.cache_resource(show_spinner=False)
def _store(path: str) -> TraceStore:
    return TraceStore(path)


def store() -> TraceStore:
    return _store(traces_dir())


def require_store() -> TraceStore:
    """The trace store; a friendly message (and the page stops) when there are no traces yet. Draws the
    data-source switch when a synthetic history is configured, and the synthetic-data badge when it is
    the one shown."""
    synthetic = synthetic_traces_dir()
    if synthetic is not None:
        _choose_source(synthetic)
        if source() == SYNTHETIC:
            synthetic_badge()
    elif synthetic_label(traces_dir()) is not None:  # CODEXGATE_TRACES itself names a synthetic history
        synthetic_badge()
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


# ---------------------------------------------------------------------------------------------
# budgets and links
# ---------------------------------------------------------------------------------------------


def budgets() -> tuple[list[Budget], str | None]:
    """The budgets of the data shown, and why there are none (None when there are some): the vault's
    for live traces, the label's for the synthetic history (its teams are not in the vault)."""
    if source() == SYNTHETIC:
        label = synthetic_label(traces_dir()) or {}
        try:
            found = [Budget(**b) for b in label.get("budgets") or []]
        except (TypeError, ValueError) as exc:
            return [], f"The synthetic history's budgets cannot be read: {exc}"
        return (found, None) if found else ([], "The synthetic history has no budgets.")
    if not os.environ.get("CODEXGATE_VAULT"):
        return [], "No budgets are configured (set CODEXGATE_VAULT and its key to read them from the vault)."
    from dashboard import auth

    try:
        vault = auth.load_vault()
        found = budgets_from_vault(vault) if vault is not None else []
    except Exception as exc:  # noqa: BLE001 - unreadable vault: one line, not a traceback
        return [], f"The vault cannot be read: {exc}"
    return (found, None) if found else ([], "No budgets are configured in the vault.")


def replay_button(session_id: str, label: str, step: int = 1, key: str | None = None) -> None:
    """A one-click link into Replay at ``step`` of a session, keeping the data source. Inside the app
    it navigates in place (the sign-in stays); a standalone page (AppTest) gets a plain link."""
    params = {"session": session_id, "step": str(step), **source_params()}
    try:
        st.page_link("pages/replay.py", label=label, icon="▶️", query_params=params)
    except Exception:  # noqa: BLE001 - no st.navigation (standalone page): a plain link instead
        st.markdown(f"[▶ {label}]({link('replay', session=session_id, step=step)})")
