"""Errors: failed and refused calls over time, by status, error type, refusal reason and model, with
recent examples (each linking to its step in Replay); retries and fallbacks per route target."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import streamlit as st

from analytics.access import ViewerScope
from dashboard import auth, charts, data
from dashboard import format as fmt


def render_targets(scope: ViewerScope, since: datetime, until: datetime) -> None:
    """Retries and fallbacks per route target (``analytics.queries.target_attempts``)."""
    st.subheader("Retries and fallbacks by target")
    targets = data.run("target_attempts", scope, since=since, until=until)
    if targets.is_empty():
        st.info("No upstream attempts recorded in this range.")
        return
    rescued = int(targets["served_after_fallback"].sum())
    failed = int(targets["failures"].sum())
    st.caption(
        f"{fmt.count(rescued)} call(s) served by a target after falling back from another; "
        f"{fmt.count(failed)} failed attempt(s) across all targets."
    )
    targets = targets.with_columns(
        pl.when(pl.col("upstream_model").is_not_null())
        .then(pl.col("provider") + ":" + pl.col("upstream_model"))
        .otherwise(pl.col("provider"))
        .alias("target")
    )
    st.dataframe(
        targets.select(
            "target",
            "upstream_api",
            "attempts",
            "served",
            "served_after_fallback",
            "failures",
            "retried",
            "fell_back",
            "gave_up",
            "cut",
            "skipped_open_circuit",
            "failure_latency_p50_ms",
            "top_error",
        ),
        hide_index=True,
        width="stretch",
        column_config={"failure_latency_p50_ms": st.column_config.NumberColumn(format="%.0f")},
    )


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    data.require_store()
    since, until = data.time_range()
    scope = viewer.scope
    st.title("Errors")
    total = data.run("errors", scope, by=(), since=since, until=until)
    row = total.row(0, named=True) if total.height else {}
    requests = row.get("requests") or 0
    cols = st.columns(5)
    cols[0].metric("Calls", fmt.count(requests))
    cols[1].metric(
        "Errors",
        fmt.count(row.get("errors")),
        help="upstream_error, gateway_error, incomplete",
    )
    cols[1].caption(f"error rate {fmt.percent(row.get('errors', 0) / requests) if requests else 'n/a'}")
    cols[2].metric("Refused", fmt.count(row.get("refused")))
    cols[3].metric("Retried calls", fmt.count(row.get("retried")))
    cols[4].metric("Fallbacks", fmt.count(row.get("fallbacks")))
    if not requests:
        st.info("No calls in this time range. Widen the range in the sidebar.")
        return
    if row.get("retried") or row.get("fallbacks"):
        render_targets(scope, since, until)
    if not (row.get("errors") or row.get("refused") or row.get("client_aborted")):
        st.success(f"No errors or refusals in this range ({fmt.count(requests)} calls).", icon="✅")
        return

    bucket = data.bucket_for(since, until)
    over_time = data.run("outcomes_over_time", scope, bucket=bucket, since=since, until=until)
    st.subheader(f"Errors and refusals per {bucket}")
    series = {"errors": "errors", "refused": "refused", "client_aborted": "client aborted"}
    frame = charts.fill_buckets(over_time, since, until, bucket, list(series))
    charts.show(charts.stacked_over_time(frame, series, "calls", ["#c62828", "#ef6c00", "#9e9e9e"]))

    left, right = st.columns(2)
    with left:
        st.subheader("By status code")
        codes = data.run("status_codes", scope, since=since, until=until).filter(
            pl.col("status_code").is_null() | (pl.col("status_code") >= 400)
        )
        if codes.is_empty():
            st.success("No HTTP error status in this range.", icon="✅")
        else:
            codes = codes.with_columns(
                pl.col("status_code").cast(pl.String).fill_null("no status (connection lost)")
            )
            charts.show(
                charts.hbars(codes, "status_code", "requests", "calls", fmt.AXIS_COUNT, fmt.count, "#c62828")
            )
    with right:
        st.subheader("Refusal reasons")
        reasons = data.run("refusal_reasons", scope, since=since, until=until)
        if reasons.is_empty():
            st.success("No refusals in this range.", icon="✅")
        else:
            charts.show(
                charts.hbars(
                    reasons, "refusal_reason", "refused", "calls", fmt.AXIS_COUNT, fmt.count, "#ef6c00"
                )
            )

    st.subheader("By model and provider")
    by_model = data.run("errors", scope, by=("model", "provider"), since=since, until=until)
    st.dataframe(
        by_model.select(
            "model",
            "provider",
            "requests",
            "errors",
            "error_rate",
            "refused",
            "status_429",
            "status_5xx",
            "retried",
            "fallbacks",
        ),
        hide_index=True,
        width="stretch",
        column_config={"error_rate": st.column_config.NumberColumn(format="percent")},
    )

    st.subheader("Recent failed calls")
    recent = data.run("recent_failures", scope, limit=50, since=since, until=until)
    if recent.is_empty():
        st.success("No failed calls in this range.", icon="✅")
        return
    recent = recent.with_columns(
        pl.struct("session_id", "call_index")
        .map_elements(
            lambda r: data.link("replay", session=r["session_id"], step=1) if r["session_id"] else None,
            return_dtype=pl.String,
        )
        .alias("replay")
    )
    st.dataframe(
        recent,
        hide_index=True,
        width="stretch",
        column_config={"replay": st.column_config.LinkColumn("Replay", display_text="▶ session")},
    )


render()
