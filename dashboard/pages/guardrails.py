"""Guardrails: findings over time, by guardrail / entity / action / stage, and recent examples."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import streamlit as st

from analytics.access import ViewerScope
from dashboard import auth, charts, data

# split label -> (group-by dimension for the query or None, column of the result)
SPLITS: dict[str, tuple[str | None, str]] = {
    "detector": (None, "guardrail"),
    "team": ("team", "team"),
    "action": (None, "action"),
}
MAX_POINTS = 40


def time_steps(since: datetime, until: datetime) -> list[tuple[datetime, datetime]]:
    """At most ``MAX_POINTS`` consecutive [start, end) steps of a whole hour/day/week covering the range."""
    span = until - since
    step = next((s for s in (timedelta(hours=1), timedelta(days=1), timedelta(weeks=1)) if span / s <= MAX_POINTS),
                span / MAX_POINTS)
    out, t = [], since
    while t < until:
        out.append((t, min(t + step, until)))
        t += step
    return out


def findings_over_time(scope: ViewerScope, since: datetime, until: datetime, split: tuple[str | None, str]
                       ) -> pl.DataFrame:
    """Findings per time step and detector / team / action (one cached query per step).

    ``analytics.queries.guardrails`` takes no time bucket yet; with one this is a single query."""
    dim, column = split
    frames = []
    for start, end in time_steps(since, until):
        df = data.run("guardrails", scope, by=(dim,) if dim else (), since=start, until=end)
        if df.height:
            frames.append(df.group_by(column).agg(pl.col("findings").sum())
                          .with_columns(pl.lit(start).alias("start")))
    if not frames:
        return pl.DataFrame({"start": [], column: [], "findings": []})
    label = next(k for k, v in SPLITS.items() if v == split)
    return pl.concat(frames).rename({column: label} if label != column else {}).with_columns(
        pl.col(label).cast(pl.Utf8).fill_null("(none)"))


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
    series = {"guardrail_flagged": "flagged", "guardrail_blocked": "blocked"}
    frame = charts.fill_buckets(over_time, since, until, bucket, list(series))
    charts.show(charts.stacked_over_time(frame, series, "calls", ["#ef6c00", "#c62828"]))

    split = st.radio("Findings over time, split by", list(SPLITS), horizontal=True, key="guardrails_split")
    st.subheader(f"Findings over time by {split}")
    found = findings_over_time(scope, since, until, SPLITS[split])
    if found.height:  # a categorical time axis: one day or one call still draws a full bar
        found = found.sort("start").with_columns(pl.col("start").dt.strftime("%b %d %H:%M").alias("when"))
        st.bar_chart(found, x="when", y="findings", color=split, x_label="", y_label="findings")

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
