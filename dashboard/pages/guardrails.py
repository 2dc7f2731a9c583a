"""Guardrails: findings over time, by guardrail / entity / action / stage, and recent examples."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import auth, data


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    data.require_store()
    since, until = data.time_range()
    scope = viewer.scope
    st.title("Guardrails")
    kinds = data.run("guardrails", scope, since=since, until=until)
    total = data.run("errors", scope, by=(), since=since, until=until)
    row = total.row(0, named=True) if total.height else {}
    cols = st.columns(3)
    cols[0].metric("Findings", f"{int(kinds['findings'].sum()) if kinds.height else 0:,}")
    cols[1].metric("Flagged calls", f"{row.get('guardrail_flagged', 0):,}")
    cols[2].metric("Blocked calls", f"{row.get('guardrail_blocked', 0):,}")
    if kinds.is_empty():
        st.info("No guardrail findings in this time range.")
        return

    bucket = data.bucket_for(since, until)
    over_time = data.run("outcomes_over_time", scope, bucket=bucket, since=since, until=until)
    st.subheader(f"Flagged and blocked calls per {bucket}")
    st.bar_chart(over_time.select("bucket", "guardrail_flagged", "guardrail_blocked"), x="bucket")

    left, right = st.columns(2)
    with left:
        st.subheader("By entity")
        by_entity = kinds.group_by("entity").agg(pl.col("findings").sum()).sort("findings", descending=True)
        st.bar_chart(
            by_entity.with_columns(pl.col("entity").fill_null("(none)")),
            x="entity",
            y="findings",
            horizontal=True,
        )
    with right:
        st.subheader("By guardrail and action")
        by_action = kinds.group_by("guardrail", "action").agg(pl.col("findings").sum())
        st.bar_chart(by_action, x="guardrail", y="findings", color="action")
    st.dataframe(kinds, hide_index=True, width="stretch")

    by_team = data.run("guardrails", scope, by=("team",), since=since, until=until)
    st.subheader("By team")
    st.dataframe(
        by_team.group_by("team")
        .agg(pl.col("findings").sum(), pl.col("blocked_calls").sum())
        .sort("findings", descending=True),
        hide_index=True,
        width="stretch",
    )

    st.subheader("Recent findings")
    st.dataframe(
        data.run("recent_guardrail_findings", scope, limit=50, since=since, until=until),
        hide_index=True,
        width="stretch",
    )


render()
