"""Display helpers of the replay page (pure): highlighted text segments, excerpts around a span,
and the timeline frame of a session's steps."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

import polars as pl

from analytics.sessions import Step


def highlight_segments(text: str, spans: Iterable[tuple[int, int, str]]) -> list[tuple[str, str | None]]:
    """Split ``text`` into ``(piece, label)`` segments; ``label`` is set on pieces inside a span.
    Spans out of range are clamped, empty ones dropped; overlapping spans are merged (first label wins)."""
    clean: list[tuple[int, int, str]] = []
    for start, end, label in sorted(spans, key=lambda s: (s[0], s[1])):
        start, end = max(0, int(start)), min(len(text), int(end))
        if start >= end:
            continue
        if clean and start < clean[-1][1]:
            last = clean[-1]
            clean[-1] = (last[0], max(last[1], end), last[2])
        else:
            clean.append((start, end, label))
    out: list[tuple[str, str | None]] = []
    pos = 0
    for start, end, label in clean:
        if start > pos:
            out.append((text[pos:start], None))
        out.append((text[start:end], label))
        pos = end
    if pos < len(text):
        out.append((text[pos:], None))
    return out


_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")


def placeholder_spans(text: str, entities: Collection[str]) -> list[tuple[int, int, str]]:
    """Spans of the guardrails' placeholders (``<AWS_ACCESS_KEY_1>``) of ``entities`` in ``text``.

    Stored bodies never hold a matched value: a finding's value was replaced by its placeholder
    before the row was written, so the placeholder is what the step view highlights."""
    return [(m.start(), m.end(), m.group(1)) for m in _PLACEHOLDER.finditer(text) if m.group(1) in entities]


def excerpt(text: str, start: int, end: int, context: int = 80) -> tuple[str, int, int]:
    """The part of ``text`` around ``[start, end)`` with ``context`` characters either side, and the
    span's position inside the excerpt."""
    lo = max(0, start - context)
    hi = min(len(text), end + context)
    return text[lo:hi], start - lo, end - lo


def timeline_frame(steps: Sequence[Step]) -> pl.DataFrame:
    """One row per step for a waterfall chart: offsets (ms from the session's first call) of
    start, first token and end."""
    return pl.DataFrame(
        {
            "step": [s.number for s in steps],
            "label": [f"{s.number:>3} · {s.summary()}"[:70] for s in steps],
            "start_ms": [s.offset_ms for s in steps],
            "end_ms": [s.offset_ms + (s.duration_ms or 0.0) for s in steps],
            "ttft_ms": [s.offset_ms + s.ttft_ms if s.ttft_ms is not None else None for s in steps],
            "duration_ms": [s.duration_ms for s in steps],
            "first_token_ms": [s.ttft_ms for s in steps],
            "outcome": [s.outcome for s in steps],
            "model": [s.model for s in steps],
            "cost_usd": [s.cost_usd for s in steps],
            "tools": [", ".join(c.name or "?" for c in s.tool_calls) for s in steps],
        },
        schema={
            "step": pl.Int64,
            "label": pl.String,
            "start_ms": pl.Float64,
            "end_ms": pl.Float64,
            "ttft_ms": pl.Float64,
            "duration_ms": pl.Float64,
            "first_token_ms": pl.Float64,
            "outcome": pl.String,
            "model": pl.String,
            "cost_usd": pl.Float64,
            "tools": pl.String,
        },
    )


