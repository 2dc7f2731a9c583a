"""Charts that read right on small and empty data: time series have one bar per bucket of the whole range
(missing buckets are explicit zeros, so a single day is a visible bar, not a dot on an empty frame),
axes carry the metric's unit, bars carry their value as text, and an all-zero series is replaced by a
sentence (e.g. "No errors in this range") instead of an empty frame.

Every chart is drawn with ``st.altair_chart`` (Vega-Lite); values shown as text come from
``dashboard.format`` so a chart and a metric tile never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import altair as alt
import polars as pl
import streamlit as st

from dashboard import format as fmt

STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}
LABEL = {"hour": "%b %d %H:00", "day": "%b %d", "week": "wk %b %d"}


def _floor(value: datetime, bucket: str) -> datetime:
    value = value.astimezone(UTC)
    if bucket == "hour":
        return value.replace(minute=0, second=0, microsecond=0)
    day = value.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if bucket == "week" else day


def fill_buckets(
    frame: pl.DataFrame, since: datetime, until: datetime, bucket: str, columns: Sequence[str]
) -> pl.DataFrame:
    """``frame`` (a ``bucket`` column plus ``columns``) with one row per bucket of ``[since, until)``,
    zeros where there was nothing, and a ``label`` column for the axis. Buckets the range does not
    cover (clock skew) are kept."""
    start, step = _floor(since, bucket), STEP[bucket]
    end = min(until, datetime.now(UTC) + step) if bucket == "hour" else until
    slots: list[datetime] = []
    t = start
    while t < end and len(slots) < 2000:
        slots.append(t)
        t += step
    full = pl.DataFrame({"bucket": slots}, schema={"bucket": pl.Datetime("us", "UTC")})
    if frame.height:
        have = frame.select(
            pl.col("bucket").cast(pl.Datetime("us", "UTC")),
            *(pl.col(c).cast(pl.Float64).fill_null(0.0) for c in columns),
        )
        have = have.group_by("bucket").agg(*(pl.col(c).sum() for c in columns))
        full = full.join(have, on="bucket", how="full", coalesce=True)
    else:
        full = full.with_columns(*(pl.lit(0.0).alias(c) for c in columns))
    full = full.with_columns(*(pl.col(c).fill_null(0.0) for c in columns)).sort("bucket")
    return full.with_columns(
        pl.col("bucket")
        .map_elements(lambda b: b.strftime(LABEL[bucket]), return_dtype=pl.String)
        .alias("label")
    )


def bars_over_time(
    frame: pl.DataFrame,
    y: str,
    y_title: str,
    axis_format: str,
    text: Callable[[float], str],
    color: str = "#4c78a8",
    height: int = 240,
) -> alt.Chart:
    """One bar per bucket (``fill_buckets`` output) with its value as text above non-zero bars."""
    frame = frame.with_columns(
        pl.col(y).map_elements(lambda v: text(v) if v else "", return_dtype=pl.String).alias("text")
    )
    order = frame["label"].to_list()
    base = alt.Chart(frame).encode(
        x=alt.X(
            "label:O",
            sort=order,
            title=None,
            axis=alt.Axis(labelAngle=-40 if len(order) > 8 else 0, labelOverlap=False),
        ),
        y=alt.Y(f"{y}:Q", title=y_title, axis=alt.Axis(format=axis_format, tickCount=4)),
        tooltip=[alt.Tooltip("label:N", title="when"), alt.Tooltip("text:N", title=y_title)],
    )
    bars = base.mark_bar(color=color, cornerRadiusTopLeft=3, cornerRadiusTopRight=3)
    labels = base.mark_text(dy=-7, fontSize=11 if len(order) <= 16 else 0).encode(text="text:N")
    return alt.layer(bars, labels).properties(height=height)


def stacked_over_time(
    frame: pl.DataFrame, series: dict[str, str], y_title: str, colors: Sequence[str], height: int = 240
) -> alt.Chart:
    """Stacked bars per bucket, one colour per ``series`` column (column -> legend label)."""
    long = frame.unpivot(index=["bucket", "label"], on=list(series), variable_name="kind", value_name="n")
    long = long.with_columns(pl.col("kind").replace_strict(series, return_dtype=pl.String))
    order = frame["label"].to_list()
    return (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X(
                "label:O",
                sort=order,
                title=None,
                axis=alt.Axis(labelAngle=-40 if len(order) > 8 else 0, labelOverlap=False),
            ),
            y=alt.Y("n:Q", title=y_title, axis=alt.Axis(format=fmt.AXIS_COUNT, tickMinStep=1)),
            color=alt.Color(
                "kind:N",
                title=None,
                scale=alt.Scale(domain=list(series.values()), range=list(colors)),
                legend=alt.Legend(orient="top"),
            ),
            tooltip=[alt.Tooltip("label:N", title="when"), "kind:N", alt.Tooltip("n:Q", format=",")],
        )
        .properties(height=height)
    )


def hbars(
    frame: pl.DataFrame,
    category: str,
    value: str,
    value_title: str,
    axis_format: str,
    text: Callable[[float], str],
    color: str = "#4c78a8",
    limit: int = 20,
) -> alt.Chart:
    """Horizontal bars, largest first, each labelled with its formatted value."""
    frame = (
        frame.select(
            pl.col(category).cast(pl.String).fill_null("(none)"),
            pl.col(value).cast(pl.Float64).fill_null(0.0),
        )
        .sort(value, descending=True)
        .head(limit)
        .with_columns(pl.col(value).map_elements(text, return_dtype=pl.String).alias("text"))
    )
    top = max(frame[value].max() or 0.0, 1e-12)
    base = alt.Chart(frame).encode(
        y=alt.Y(f"{category}:N", sort="-x", title=None, axis=alt.Axis(labelLimit=220)),
        x=alt.X(
            f"{value}:Q",
            title=value_title,
            axis=alt.Axis(
                format=axis_format,
                tickCount=4,
                **({"tickMinStep": 1} if axis_format == fmt.AXIS_COUNT else {}),
            ),
            scale=alt.Scale(domain=[0, top * 1.25]),
        ),
        tooltip=[alt.Tooltip(f"{category}:N"), alt.Tooltip("text:N", title=value_title)],
    )
    bars = base.mark_bar(color=color, cornerRadiusTopRight=3, cornerRadiusBottomRight=3)
    labels = base.mark_text(align="left", dx=4, fontSize=12).encode(text="text:N")
    return alt.layer(bars, labels).properties(height=alt.Step(28))


def show(chart: alt.Chart | alt.LayerChart | alt.FacetChart) -> None:
    st.altair_chart(chart, width="stretch")
