"""Overview: spend, requests, tokens, errors and p95 latency for the chosen range, over time and by
team and model."""

from __future__ import annotations

import polars as pl
import streamlit as st

from dashboard import auth, data


def fmt_usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def fmt_int(value: int | float | None) -> str:
    return "0" if value is None else f"{int(value):,}"


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    data.require_store()
    since, until = data.time_range()
    scope = viewer.scope
    st.title("Overview")
    st.caption(f"{since:%Y-%m-%d} → {until:%Y-%m-%d} (UTC) · scope: {scope.describe()}")

    total = data.run("spend", scope, by=(), since=since, until=until)
    errs = data.run("errors", scope, by=(), since=since, until=until)
    lat = data.run("latency", scope, by=(), since=since, until=until)
    t = total.row(0, named=True) if total.height else {}
    e = errs.row(0, named=True) if errs.height else {}
    p95 = lat["duration_p95_ms"][0] if lat.height else None

    cols = st.columns(5)
    cols[0].metric("Spend", fmt_usd(t.get("cost_usd")))
    cols[1].metric("Requests", fmt_int(t.get("requests")))
    cols[2].metric(
        "Tokens (in / out)", f"{fmt_int(t.get('input_tokens'))} / {fmt_int(t.get('output_tokens'))}"
    )
    cols[3].metric(
        "Errors",
        fmt_int(e.get("errors")),
        help="upstream_error, gateway_error or incomplete; refusals are counted separately",
    )
    cols[4].metric("p95 latency", "n/a" if p95 is None else f"{p95 / 1000:,.1f} s")
    if t.get("unpriced_requests"):
        st.caption(
            f"{fmt_int(t['unpriced_requests'])} calls used tokens but have no price (not counted as $0)."
        )
    if not t.get("requests"):
        st.info("No calls in this time range.")
        return

    bucket = data.bucket_for(since, until)
    over_time = data.run("spend", scope, by=(), bucket=bucket, since=since, until=until)
    left, right = st.columns(2)
    with left:
        st.subheader(f"Spend per {bucket} (USD)")
        st.line_chart(over_time.select("bucket", pl.col("cost_usd").fill_null(0.0)), x="bucket", y="cost_usd")
    with right:
        st.subheader(f"Requests per {bucket}")
        st.bar_chart(over_time.select("bucket", "requests"), x="bucket", y="requests")

    by_team = data.run("spend", scope, by=("team",), since=since, until=until)
    by_model = data.run("spend", scope, by=("model",), since=since, until=until)
    left, right = st.columns(2)
    with left:
        st.subheader("Spend by team")
        frame = by_team.select(pl.col("team").fill_null("(none)"), pl.col("cost_usd").fill_null(0.0))
        st.bar_chart(frame, x="team", y="cost_usd", horizontal=True)
    with right:
        st.subheader("Spend by model")
        frame = by_model.select(pl.col("model").fill_null("(none)"), pl.col("cost_usd").fill_null(0.0))
        st.bar_chart(frame, x="model", y="cost_usd", horizontal=True)

    st.subheader("Latency by model")
    st.dataframe(
        data.run("latency", scope, by=("model",), since=since, until=until).select(
            "model", "requests", "duration_p50_ms", "duration_p95_ms", "ttft_p50_ms", "ttft_p95_ms"
        ),
        hide_index=True,
        width="stretch",
    )


render()
