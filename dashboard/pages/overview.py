"""Overview, fit for a wall screen: spend, calls, error rate and p95 latency for the chosen range; spend
against each team's budget (burn-down); spend and error rate over time; the costliest sessions of the
week, each one click away from its Replay. Nothing here needs reading a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import altair as alt
import polars as pl
import streamlit as st

from analytics import queries
from analytics.access import ViewerScope
from dashboard import auth, charts, data
from dashboard import format as fmt


def tiles(scope: ViewerScope, since: datetime, until: datetime) -> dict:
    total = data.run("spend", scope, by=(), since=since, until=until)
    errs = data.run("errors", scope, by=(), since=since, until=until)
    lat = data.run("latency", scope, by=(), since=since, until=until)
    t = total.row(0, named=True) if total.height else {}
    e = errs.row(0, named=True) if errs.height else {}
    p95 = lat["duration_p95_ms"][0] if lat.height else None
    requests = t.get("requests") or 0
    cols = st.columns(5)
    cols[0].metric(
        "Spend", fmt.money(t.get("cost_usd") or 0.0), help="priced calls; unpriced ones are listed below"
    )
    cols[1].metric("Calls", fmt.count(requests))
    errors = e.get("errors") or 0
    cols[2].metric(
        "Error rate",
        fmt.percent(errors / requests) if requests else "n/a",
        help="upstream_error, gateway_error or incomplete, over all calls; refusals are counted apart",
    )
    cols[2].caption(f"{fmt.count(errors)} errors · {fmt.count(e.get('refused') or 0)} refused")
    cols[3].metric("p95 latency", fmt.duration_ms(p95))
    tokens = (t.get("input_tokens") or 0) + (t.get("output_tokens") or 0)
    cols[4].metric("Tokens", fmt.compact_count(tokens), help=f"{fmt.count(tokens)} input + output tokens")
    if t.get("unpriced_requests"):
        st.caption(
            f"{fmt.count(t['unpriced_requests'])} calls used tokens but have no price (not counted as $0)."
        )
    return {"requests": requests, "errors": errors}


def burn_down(scope: ViewerScope) -> None:
    """Cumulative spend in each team budget's current period against the budget line."""
    st.subheader("Spend vs budget, per team")
    found, why = data.budgets()
    team_budgets = [b for b in found if b.scope_kind == "team"]
    if why or not team_budgets:
        st.info(why or "No team budgets are configured.")
        return
    status = queries.budget_status(data.store(), team_budgets, scope=scope)
    if status.is_empty():
        st.info("No team budget applies to what you can see.")
        return
    now = datetime.now(UTC)
    start = min(status["period_start"].to_list())
    hourly = data.run("spend", scope, by=("org", "team"), bucket="hour", since=start, until=now)
    frames = []
    for row in status.iter_rows(named=True):
        org, _, team = row["name"].rpartition("/")
        mine = hourly.filter((pl.col("team") == team) & ((pl.col("org") == org) if org else pl.lit(True)))
        mine = mine.filter(pl.col("bucket") >= row["period_start"])
        series = charts.fill_buckets(mine, row["period_start"], now, "hour", ["cost_usd"]).with_columns(
            pl.col("cost_usd").cum_sum().alias("spent")
        )
        verdict = {"exhausted": "over budget", "at_risk": "at risk"}.get(row["status"], "on track")
        title = (
            f"{row['name']} · {fmt.money(row['spent_usd'])} of {fmt.money(row['amount_usd'])}/{row['period']}"
            f" ({fmt.percent(row['used_fraction'], 0)}, {verdict})"
        )
        frames.append(
            series.select("bucket", "spent").with_columns(
                pl.lit(title).alias("budget_title"),
                pl.lit(float(row["amount_usd"])).alias("budget"),
                pl.lit(verdict).alias("verdict"),
            )
        )
    frame = pl.concat(frames)
    x_format = "%H:%M" if set(status["period"].to_list()) == {"day"} else "%a %H:00"
    colors = alt.Scale(domain=["on track", "at risk", "over budget"], range=["#2e7d32", "#ef6c00", "#c62828"])
    line = (
        alt.Chart()
        .mark_area(line=True, opacity=0.25)
        .encode(
            x=alt.X("bucket:T", title=None, axis=alt.Axis(format=x_format, tickCount=4)),
            y=alt.Y("spent:Q", title="spent (USD)", axis=alt.Axis(format=fmt.AXIS_USD, tickCount=3)),
            color=alt.Color("verdict:N", scale=colors, legend=None),
            tooltip=[alt.Tooltip("bucket:T", format="%b %d %H:00"), alt.Tooltip("spent:Q", format="$,.4f")],
        )
    )
    limit = alt.Chart().mark_rule(color="#c62828", strokeDash=[5, 4], size=2).encode(y="max(budget):Q")
    chart = (
        alt.layer(line, limit, data=frame)
        .properties(height=130, width=230)
        .facet(facet=alt.Facet("budget_title:N", title=None, header=alt.Header(labelFontSize=12)), columns=3)
        .resolve_scale(y="independent")
    )
    charts.show(chart)
    st.caption("Dashed red line: the budget. Fill: spend so far in the budget's period (UTC).")


def over_time(scope: ViewerScope, since: datetime, until: datetime) -> None:
    bucket = data.bucket_for(since, until)
    spend = data.run("spend", scope, by=(), bucket=bucket, since=since, until=until)
    outcomes = data.run("outcomes_over_time", scope, bucket=bucket, since=since, until=until)
    left, right = st.columns(2)
    with left:
        st.subheader(f"Spend per {bucket}")
        frame = charts.fill_buckets(spend, since, until, bucket, ["cost_usd"])
        charts.show(charts.bars_over_time(frame, "cost_usd", "spend (USD)", fmt.AXIS_USD, fmt.money))
    with right:
        st.subheader(f"Error rate per {bucket}")
        frame = charts.fill_buckets(outcomes, since, until, bucket, ["errors", "requests"])
        if not frame["errors"].sum():
            st.success(f"No errors in this range ({fmt.count(frame['requests'].sum())} calls).", icon="✅")
            return
        frame = frame.with_columns(
            pl.when(pl.col("requests") > 0)
            .then(pl.col("errors") / pl.col("requests"))
            .otherwise(0.0)
            .alias("rate")
        )
        charts.show(charts.bars_over_time(frame, "rate", "error rate", ".0%", fmt.percent, color="#c62828"))


def costliest_sessions(scope: ViewerScope) -> None:
    now = datetime.now(UTC)
    st.subheader("Costliest sessions of the week")
    top = data.run("list_sessions", scope, since=now - timedelta(days=7), until=now, order_by="cost", limit=6)
    if top.is_empty():
        st.info("No Codex sessions in the last 7 days.")
        return
    for i, row in enumerate(top.iter_rows(named=True)):
        left, mid, right = st.columns([6, 2, 2])
        with left:
            title = str(row.get("title") or row["session_id"])
            title = title if len(title) <= 72 else title[:71] + "…"
            data.replay_button(row["session_id"], title, key=f"top_{i}")
        mid.markdown(f"**{fmt.money(row.get('cost_usd'))}** · {fmt.count(row.get('calls'))} calls")
        who = " · ".join(str(v) for v in (row.get("developer"), row.get("team")) if v)
        right.caption(who.replace("@", "@\u200b") or "—")  # no mailto autolink


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    data.require_store()
    since, until = data.time_range()
    scope = viewer.scope
    st.title("Overview")
    st.caption(f"{since:%Y-%m-%d} → {until - timedelta(days=1):%Y-%m-%d} (UTC) · scope: {scope.describe()}")
    counts = tiles(scope, since, until)
    if not counts["requests"]:
        st.info("No calls in this time range. Widen the range in the sidebar.")
    else:
        over_time(scope, since, until)
    burn_down(scope)
    costliest_sessions(scope)


render()
