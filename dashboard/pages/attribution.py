"""Attribution: spend by org / team / project / developer / tag, and budget burn-down with the projected
exhaustion time (budgets from the vault, when one is configured)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import altair as alt
import polars as pl
import streamlit as st

from analytics import queries
from analytics.access import ViewerScope
from analytics.budgets import Budget
from dashboard import auth, charts, data
from dashboard import format as fmt

DIMENSIONS = {"Team": "team", "Org": "org", "Project": "project", "Developer": "developer", "Model": "model"}


def vault_budgets() -> tuple[list[Budget], str | None]:
    """Budgets of the data shown (the vault's for live traces, the label's for the synthetic history),
    and why there are none (None when there are some)."""
    return data.budgets()


def spend_section(scope: ViewerScope, since: datetime, until: datetime) -> None:
    left, right = st.columns([2, 1])
    label = left.radio("Group by", [*DIMENSIONS, "Tag"], horizontal=True, key="attr_dim")
    if label == "Tag":
        tag = right.text_input("Tag key", value="cost_center", key="attr_tag")
        dim = queries.TAG_PREFIX + tag.strip()
    else:
        dim = DIMENSIONS[label]
    try:
        frame = data.run("spend", scope, by=(dim,), since=since, until=until)
    except ValueError as exc:
        st.error(str(exc))
        return
    if frame.is_empty():
        st.info("No calls in this time range.")
        return
    frame = frame.with_columns(pl.col(dim).cast(pl.String).fill_null("(none)"))
    title = label if label != "Tag" else dim
    charts.show(charts.hbars(frame, dim, "cost_usd", "spend (USD)", fmt.AXIS_USD, fmt.money, limit=40))
    if frame.height > 40:
        st.caption(f"Top 40 of {fmt.count(frame.height)} by spend; the table has them all.")
    st.dataframe(
        frame.select(
            dim,
            "cost_usd",
            "requests",
            "input_tokens",
            "cached_tokens",
            "output_tokens",
            "reasoning_tokens",
            "unpriced_requests",
        ),
        hide_index=True,
        width="stretch",
        column_config={
            dim: st.column_config.TextColumn(title),
            "cost_usd": st.column_config.NumberColumn("spend (USD)", format="$%.4f"),
            "requests": st.column_config.NumberColumn("calls", format="localized"),
            "input_tokens": st.column_config.NumberColumn("input tokens", format="localized"),
            "cached_tokens": st.column_config.NumberColumn("cached tokens", format="localized"),
            "output_tokens": st.column_config.NumberColumn("output tokens", format="localized"),
            "reasoning_tokens": st.column_config.NumberColumn("reasoning tokens", format="localized"),
            "unpriced_requests": st.column_config.NumberColumn("unpriced calls", format="localized"),
        },
    )


def burn_down(budget_row: dict[str, Any], scope: ViewerScope) -> alt.LayerChart | None:
    """Cumulative spend in the budget's period with the budget line and the projection."""
    kind, name = budget_row["scope_kind"], budget_row["name"]
    start, now = budget_row["period_start"], datetime.now(UTC)
    by = ("key_id",) if kind == "key" else ("org", "team")
    hourly = data.run("spend", scope, by=by, bucket="hour", since=start, until=now)
    if kind == "key":
        mine = hourly.filter(pl.col("key_id") == name)
    elif "/" in name:
        org, team = name.split("/", 1)
        mine = hourly.filter((pl.col("org") == org) & (pl.col("team") == team))
    else:
        mine = hourly.filter(pl.col("team") == name)
    mine = (
        mine.group_by("bucket")
        .agg(pl.col("cost_usd").fill_null(0.0).sum())
        .sort("bucket")
        .with_columns(pl.col("cost_usd").cum_sum().alias("spent"))
    )
    if mine.is_empty():
        return None
    line = (
        alt.Chart(mine)
        .mark_line(point=True)
        .encode(
            x=alt.X("bucket:T", title=None),
            y=alt.Y("spent:Q", title="spent (USD)", axis=alt.Axis(format=fmt.AXIS_USD)),
        )
    )
    limit = alt.Chart(pl.DataFrame({"amount": [budget_row["amount_usd"]]})).mark_rule(
        color="red", strokeDash=[4, 4]
    )
    layers = [line, limit.encode(y="amount:Q")]
    eta = budget_row["projected_exhaustion"]
    if eta is not None and budget_row["status"] == "at_risk":
        proj = pl.DataFrame(
            {"bucket": [now, eta], "spent": [budget_row["spent_usd"], budget_row["amount_usd"]]}
        )
        layers.append(
            alt.Chart(proj).mark_line(strokeDash=[2, 2], color="orange").encode(x="bucket:T", y="spent:Q")
        )
    return alt.layer(*layers).properties(height=220)


def budget_section(scope: ViewerScope) -> None:
    st.header("Budgets")
    budgets, why = vault_budgets()
    if why:
        st.info(why)
        return
    store = data.store()
    status = queries.budget_status(store, budgets, scope=scope)
    if status.is_empty():
        st.info("No budget applies to what you can see.")
        return
    for row in status.iter_rows(named=True):
        label = (
            f"{row['scope_kind']} budget **{row['name']}** · {row['period']} · {fmt.money(row['amount_usd'])}"
        )
        st.markdown(label)
        st.progress(
            min(1.0, max(0.0, row["used_fraction"])),
            text=f"{fmt.money(row['spent_usd'])} spent ({fmt.percent(row['used_fraction'], 0)})",
        )
        if row["status"] == "exhausted":
            st.error(f"Exhausted at {row['projected_exhaustion']:%Y-%m-%d %H:%M} UTC.")
        elif row["status"] == "at_risk":
            st.warning(
                f"At {fmt.money(row['burn_usd_per_hour'])}/h it runs out at {row['projected_exhaustion']:%Y-%m-%d %H:%M} UTC, "
                f"before the period ends ({row['period_end']:%Y-%m-%d})."
            )
        else:
            st.caption(f"On track ({fmt.money(row['burn_usd_per_hour'])}/h).")
        chart = burn_down(row, scope)
        if chart is not None:
            st.altair_chart(chart, width="stretch")
    st.dataframe(status, hide_index=True, width="stretch")


def render() -> None:
    data.use_app_navigation()
    viewer = auth.require_viewer()
    data.require_store()
    since, until = data.time_range()
    st.title("Attribution")
    spend_section(viewer.scope, since, until)
    budget_section(viewer.scope)
    __import__("dashboard.ledger_panel").ledger_panel.render(viewer.scope)  # live ledger next to trace spend


render()
