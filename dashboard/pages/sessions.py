"""Sessions: a searchable list of Codex sessions; each links to its Replay (``?session=ID&step=1``)."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import auth, data

ORDERS = {"Most recent": "recent", "Most expensive": "cost", "Most calls": "calls", "Most errors": "errors"}
ORDERS["Most guardrail hits"] = "guardrails"


def replay_link(session_id: str, step: int = 1) -> str:
    """``/replay?session=…&step=…`` (plus ``&data=synthetic`` when the synthetic history is shown)."""
    return data.link("replay", session=session_id, step=step)


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    data.require_store()
    since, until = data.time_range()
    st.title("Sessions")
    left, right = st.columns([3, 1])
    search = left.text_input(
        "Search", placeholder="session id, developer, project or text", key="session_search"
    )
    order = right.selectbox("Order", list(ORDERS), key="session_order")
    frame = data.run(
        "list_sessions",
        viewer.scope,
        since=since,
        until=until,
        search=search or None,
        order_by=ORDERS[order],
        limit=200,
    )
    if frame.is_empty():
        st.info("No sessions match." if search else "No Codex sessions in this time range.")
        return
    st.caption(f"{frame.height} session(s){' (first 200)' if frame.height == 200 else ''}")
    shown = frame.select(
        pl.col("session_id").map_elements(replay_link, return_dtype=pl.String).alias("replay"),
        "session_id",
        "title",
        "developer",
        "team",
        "model",
        "started",
        "calls",
        "duration_s",
        "cost_usd",
        "errors",
        "refused",
        "guardrail_hits",
    )
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "replay": st.column_config.LinkColumn("Replay", display_text="▶ replay"),
            "cost_usd": st.column_config.NumberColumn("cost (USD)", format="$%.4f"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
            "calls": st.column_config.NumberColumn("calls", format="localized"),
            "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
        },
    )
    chosen = st.selectbox("Open a session", frame["session_id"].to_list(), key="session_pick")
    if chosen and st.button("Open in Replay", type="primary", key="session_open"):
        params = {"session": chosen, "step": "1", **data.source_params()}
        st.query_params.update(params)
        try:
            st.switch_page("pages/replay.py", query_params=params)
        except Exception:  # standalone page (no navigation): show the link instead
            st.markdown(f"[Open the replay of {chosen}]({replay_link(chosen)})")


render()
