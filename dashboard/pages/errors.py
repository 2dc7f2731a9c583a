"""Errors: failed and refused calls over time, by status, error type, refusal reason and model, with
recent examples (each linking to its step in Replay)."""

from __future__ import annotations

from urllib.parse import quote

import polars as pl
import streamlit as st

from dashboard import auth, data


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    data.require_store()
    since, until = data.time_range()
    scope = viewer.scope
    st.title("Errors")
    total = data.run("errors", scope, by=(), since=since, until=until)
    row = total.row(0, named=True) if total.height else {}
    cols = st.columns(5)
    cols[0].metric("Requests", f"{row.get('requests', 0):,}")
    cols[1].metric("Errors", f"{row.get('errors', 0):,}", help="upstream_error, gateway_error, incomplete")
    cols[2].metric("Refused", f"{row.get('refused', 0):,}")
    cols[3].metric("Retried calls", f"{row.get('retried', 0):,}")
    cols[4].metric("Fallbacks", f"{row.get('fallbacks', 0):,}")
    if not row.get("requests"):
        st.info("No calls in this time range.")
        return

    bucket = data.bucket_for(since, until)
    over_time = data.run("outcomes_over_time", scope, bucket=bucket, since=since, until=until)
    st.subheader(f"Errors and refusals per {bucket}")
    st.bar_chart(over_time.select("bucket", "errors", "refused", "client_aborted"), x="bucket")

    left, right = st.columns(2)
    with left:
        st.subheader("By status code")
        codes = data.run("status_codes", scope, since=since, until=until).filter(
            pl.col("status_code").is_null() | (pl.col("status_code") >= 400)
        )
        st.bar_chart(
            codes.select(pl.col("status_code").cast(pl.String).fill_null("none"), "requests"), x="status_code"
        )
    with right:
        st.subheader("Refusal reasons")
        st.dataframe(
            data.run("refusal_reasons", scope, since=since, until=until), hide_index=True, width="stretch"
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
        st.caption("None.")
        return
    recent = recent.with_columns(
        pl.struct("session_id", "call_index")
        .map_elements(
            lambda r: f"/replay?session={quote(r['session_id'])}&step=1" if r["session_id"] else None,
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
