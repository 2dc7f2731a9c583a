"""Codex sessions: the searchable session list, one session's calls, and the replay steps.

``list_sessions`` and ``session_calls`` are parameterised queries over the trace store (the viewer's
``ViewerScope`` is ANDed into every one). ``replay_steps`` and the helpers below it are pure
functions over the rows of one session: what was new in each call's input, what the model
answered, tokens and cost (step and cumulative), attempts, guardrail findings with their spans,
instruction changes (with a unified diff) and the links from a tool call to the
``function_call_output`` that answers it in a later call.

Input items are Responses-API items (``message``, ``function_call``, ``function_call_output`` ...);
Chat Completions messages and Anthropic content blocks are understood too.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from analytics.access import ViewerScope, scope_where
from analytics.db import TraceStore
from analytics.queries import TimeArg
from codexgate.wire import (
    TOOL_CALL_TYPES,
    TOOL_OUTPUT_TYPES,
    Api,
    Outcome,
    from_json_body,
    input_items,
    instruction_values,
    item_digest,
)
from codexgate.wire.codex import common_prefix

# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------

SESSION_LIST_SQL = """
WITH s AS (
    SELECT
        session_id,
        arg_min(developer, start_time) AS developer,
        arg_min(org, start_time) AS org,
        arg_min(team, start_time) AS team,
        arg_min(project, start_time) AS project,
        arg_min(gen_ai_request_model, start_time) AS model,
        min(start_time) AS started,
        max(end_time) AS ended,
        count(*) AS calls,
        count(DISTINCT turn_id) AS turns,
        CAST(sum(cost_usd) FILTER (WHERE cost_known) AS DOUBLE) AS cost_usd,
        count(*) FILTER (WHERE NOT cost_known
            AND (gen_ai_usage_input_tokens IS NOT NULL OR gen_ai_usage_output_tokens IS NOT NULL))
            AS unpriced_calls,
        CAST(coalesce(sum(gen_ai_usage_input_tokens), 0) AS BIGINT) AS input_tokens,
        CAST(coalesce(sum(gen_ai_usage_output_tokens), 0) AS BIGINT) AS output_tokens,
        count(*) FILTER (WHERE outcome IN ('upstream_error', 'gateway_error', 'incomplete')) AS errors,
        count(*) FILTER (WHERE outcome = 'refused') AS refused,
        CAST(coalesce(sum(len(guardrail_findings)), 0) AS BIGINT) AS guardrail_hits,
        coalesce(bool_or(guardrail_blocked), false) AS guardrail_blocked,
        CAST(coalesce(sum(len(tool_calls)), 0) AS BIGINT) AS tool_calls
    FROM {traces}
    WHERE {where} AND session_id IS NOT NULL {search}
    GROUP BY session_id
)
SELECT
    session_id, developer, org, team, project, model, started, ended,
    epoch_ms(ended) / 1000.0 - epoch_ms(started) / 1000.0 AS duration_s,
    calls, turns, cost_usd, unpriced_calls, input_tokens, output_tokens, errors, refused,
    guardrail_hits, guardrail_blocked, tool_calls
FROM s
ORDER BY {order}, session_id
LIMIT ?
"""

# A session matches a search when any of its calls (visible to the viewer) does.
SEARCH_SQL = """
AND session_id IN (
    SELECT session_id FROM {traces}
    WHERE {where} AND session_id IS NOT NULL AND (
        contains(lower(session_id), ?)
        OR contains(lower(coalesce(developer, '')), ?)
        OR contains(lower(coalesce(project, '')), ?)
        OR contains(lower(coalesce(response_text, '')), ?)
        OR contains(lower(coalesce(new_input_items, '')), ?)
    )
)
"""

SESSION_ORDERS: dict[str, str] = {
    "recent": "started DESC",
    "cost": "cost_usd DESC NULLS LAST",
    "calls": "calls DESC",
    "duration": "duration_s DESC",
    "errors": "errors DESC, refused DESC",
    "guardrails": "guardrail_hits DESC",
}

FIRST_INPUT_SQL = """
SELECT session_id, arg_min(coalesce(new_input_items, request_body), start_time) AS first_input
FROM {traces}
WHERE {where} AND session_id IN (SELECT unnest(?::VARCHAR[]))
GROUP BY session_id
"""

CALL_COLUMNS = [
    "trace_id",
    "session_id",
    "call_index",
    "turn_id",
    "request_kind",
    "subagent",
    "start_time",
    "end_time",
    "duration_ms",
    "ttfb_ms",
    "ttft_ms",
    "status_code",
    "outcome",
    "streaming",
    "client_aborted",
    "error_type",
    "error_message",
    "refusal_reason",
    "org",
    "team",
    "project",
    "developer",
    "key_id",
    "route",
    "openai_api_type",
    "provider",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "gen_ai_response_finish_reasons",
    "request_path",
    "request_body",
    "upstream_request_body",
    "response_body",
    "response_text",
    "response_reasoning",
    "tool_calls",
    "gen_ai_usage_input_tokens",
    "gen_ai_usage_cache_read_input_tokens",
    "gen_ai_usage_cache_creation_input_tokens",
    "gen_ai_usage_output_tokens",
    "gen_ai_usage_reasoning_output_tokens",
    "cost_usd",
    "input_cost_usd",
    "output_cost_usd",
    "cost_known",
    "attempts",
    "attempt_count",
    "fallback_used",
    "policy_decisions",
    "guardrail_findings",
    "guardrail_blocked",
    "tags",
    "privacy_mode",
    "input_item_count",
    "new_input_start",
    "new_input_items",
    "instructions_hash",
]

SESSION_CALLS_SQL = """
SELECT {columns}
FROM {traces}
WHERE {where} AND session_id = ?
ORDER BY call_index NULLS LAST, start_time, trace_id
"""


def list_sessions(
    store: TraceStore,
    scope: ViewerScope,
    since: TimeArg = None,
    until: TimeArg = None,
    *,
    search: str | None = None,
    order_by: str = "recent",
    limit: int = 200,
    with_titles: bool = True,
) -> pl.DataFrame:
    """Sessions with calls in ``[since, until)``, one row each: identity, model, start/end,
    duration, calls, turns, cost, tokens, errors, refusals, guardrail hits, tool calls and (with
    ``with_titles``) ``title``, the first user prompt. ``search`` (case-insensitive) matches the
    session id, developer, project, or any output text / new input item of the session."""
    if order_by not in SESSION_ORDERS:
        raise ValueError(f"order_by must be one of {tuple(SESSION_ORDERS)}, not {order_by!r}")
    if limit < 1:
        raise ValueError("limit must be >= 1")
    traces = store.relation(since, until)
    where, params = scope_where(scope, since, until)
    search_sql = ""
    search_params: list[Any] = []
    needle = (search or "").strip().lower()
    if needle:
        search_sql = SEARCH_SQL.format(traces=traces, where=where)
        search_params = [*params, *([needle] * 5)]
    sql = SESSION_LIST_SQL.format(
        traces=traces, where=where, search=search_sql, order=SESSION_ORDERS[order_by]
    )
    frame = store.query(sql, [*params, *search_params, int(limit)])
    if not with_titles:
        return frame
    titles: dict[str, str] = {}
    if frame.height:
        first = store.query(
            FIRST_INPUT_SQL.format(traces=traces, where=where), [*params, frame["session_id"].to_list()]
        )
        for sid, raw in first.iter_rows():
            titles[sid] = session_title(raw)
    return frame.with_columns(
        pl.Series("title", [titles.get(s, "") for s in frame["session_id"].to_list()], dtype=pl.String)
    )


def session_calls(
    store: TraceStore,
    session_id: str,
    scope: ViewerScope,
    since: TimeArg = None,
    until: TimeArg = None,
) -> pl.DataFrame:
    """Every call of one session visible to ``scope``, in order (``call_index``, then ``start_time``),
    with the columns the replay needs (bodies included). Empty when the session does not exist or
    is not visible to the viewer."""
    where, params = scope_where(scope, since, until)
    sql = SESSION_CALLS_SQL.format(
        columns=", ".join(CALL_COLUMNS), traces=store.relation(since, until), where=where
    )
    return store.query(sql, [*params, session_id])


# ---------------------------------------------------------------------------------------------
# Input items
# ---------------------------------------------------------------------------------------------

# item kinds
USER, INSTRUCTIONS, CONTEXT, TOOL_OUTPUT = "user", "instructions", "context", "tool_output"
ASSISTANT, TOOL_CALL, REASONING, OTHER = "assistant", "tool_call", "reasoning", "other"
ECHO_KINDS = frozenset({ASSISTANT, TOOL_CALL, REASONING})  # the model's own earlier output, resent

_CONTEXT_PREFIXES = ("<environment_context>", "<user_instructions>", "# AGENTS.md", "<permissions")


@dataclass
class InputItem:
    """One input item of a call, classified for display."""

    kind: str  # user | instructions | context | tool_output | assistant | tool_call | reasoning | other
    role: str | None
    text: str
    call_id: str | None = None
    name: str | None = None  # tool name for tool_call items
    answers_step: int | None = None  # tool_output: index of the step whose tool call it answers
    raw: Any = None

    @property
    def echo(self) -> bool:
        """The model's own output from an earlier call, sent back as history."""
        return self.kind in ECHO_KINDS


def content_text(content: Any) -> str:
    """Readable text of a message ``content`` (a string or a list of parts/blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        content = [content]
    if not isinstance(content, list):
        return json.dumps(content)
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, Mapping):
            kind = part.get("type")
            if isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif kind in ("input_image", "image", "image_url"):
                parts.append("[image]")
            elif kind == "tool_result":
                parts.append(content_text(part.get("content")))
            elif kind == "tool_use":
                parts.append(f"{part.get('name')}({json.dumps(part.get('input'))})")
            elif isinstance(part.get("thinking"), str):
                parts.append(part["thinking"])
            else:
                parts.append(json.dumps(part))
    return "\n".join(p for p in parts if p)


def tool_output_text(output: Any) -> str:
    """Text of a tool output. Codex wraps shell results as JSON ``{"output": ..., "metadata": ...}``;
    the output text is shown first, then the metadata."""
    if isinstance(output, str):
        try:
            doc = json.loads(output)
        except ValueError:
            return output
        if isinstance(doc, dict) and isinstance(doc.get("output"), str):
            meta = doc.get("metadata")
            tail = f"\n\n[{json.dumps(meta)}]" if meta else ""
            return doc["output"] + tail
        return output
    return content_text(output)


def classify_item(item: Any) -> list[InputItem]:
    """One wire item -> display items (an Anthropic/Chat message may hold several tool results)."""
    if not isinstance(item, Mapping):
        return [InputItem(OTHER, None, item if isinstance(item, str) else json.dumps(item), raw=item)]
    kind = item.get("type")
    role = item.get("role")
    if kind in TOOL_OUTPUT_TYPES:
        return [
            InputItem(TOOL_OUTPUT, None, tool_output_text(item.get("output")), item.get("call_id"), raw=item)
        ]
    if kind in TOOL_CALL_TYPES:
        if kind == "local_shell_call":
            args = json.dumps(item.get("action"))
            name = "local_shell"
        elif kind == "web_search_call":
            args, name = json.dumps(item.get("action")), "web_search"
        else:
            args = item.get("arguments") if kind == "function_call" else item.get("input")
            name = item.get("name")
        text = args if isinstance(args, str) else json.dumps(args)
        return [InputItem(TOOL_CALL, None, text, item.get("call_id"), name=name, raw=item)]
    if kind == "reasoning":
        summary = content_text(item.get("summary"))
        return [InputItem(REASONING, None, summary or "[encrypted reasoning]", raw=item)]
    if role == "tool":  # Chat Completions tool result
        return [
            InputItem(
                TOOL_OUTPUT, role, tool_output_text(item.get("content")), item.get("tool_call_id"), raw=item
            )
        ]
    content = item.get("content")
    if isinstance(content, list) and any(
        isinstance(b, Mapping) and b.get("type") == "tool_result" for b in content
    ):
        out: list[InputItem] = []
        for block in content:  # Anthropic user message with tool results (and maybe text)
            if isinstance(block, Mapping) and block.get("type") == "tool_result":
                out.append(
                    InputItem(
                        TOOL_OUTPUT,
                        role,
                        content_text(block.get("content")),
                        block.get("tool_use_id"),
                        raw=block,
                    )
                )
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                out.append(InputItem(USER, role, block["text"], raw=block))
        return out
    if role == "assistant":
        calls = item.get("tool_calls") or []  # Chat Completions
        blocks = (
            [b for b in content if isinstance(b, Mapping) and b.get("type") == "tool_use"]
            if isinstance(content, list)
            else []
        )
        out = []
        text = (
            content_text([b for b in content if not (isinstance(b, Mapping) and b.get("type") == "tool_use")])
            if isinstance(content, list)
            else content_text(content)
        )
        if text:
            out.append(InputItem(ASSISTANT, role, text, raw=item))
        for tc in calls:
            fn = tc.get("function") or {} if isinstance(tc, Mapping) else {}
            out.append(
                InputItem(
                    TOOL_CALL, role, fn.get("arguments") or "", tc.get("id"), name=fn.get("name"), raw=tc
                )
            )
        for b in blocks:
            out.append(
                InputItem(TOOL_CALL, role, json.dumps(b.get("input")), b.get("id"), name=b.get("name"), raw=b)
            )
        return out or [InputItem(ASSISTANT, role, "", raw=item)]
    text = content_text(content)
    if role in ("developer", "system"):
        return [InputItem(INSTRUCTIONS, role, text, raw=item)]
    if role == "user":
        if text.lstrip().startswith(_CONTEXT_PREFIXES):
            return [InputItem(CONTEXT, role, text, raw=item)]
        return [InputItem(USER, role, text, raw=item)]
    return [InputItem(OTHER, role, text or json.dumps(item), raw=item)]


def request_items(body: Any) -> list[Any]:
    """The conversation items of a request body (Responses ``input``, or Chat/Anthropic ``messages``)."""
    return list(input_items(None, body))


def instructions_text(body: Any) -> str | None:
    """The standing instructions of a request as readable text (which parts are instructions is
    the wire's ``instruction_values``)."""
    if not isinstance(body, Mapping):
        return None
    parts = [content_text(v) for v in instruction_values(dict(body), request_items(body))]
    return "\n\n".join(parts) if parts else None


def new_items_by_diff(previous: Sequence[Any] | None, current: Sequence[Any]) -> list[Any]:
    """Items of ``current`` after the longest common prefix with ``previous`` (all when no previous)."""
    if not previous:
        return list(current)
    start = common_prefix([item_digest(a) for a in previous], [item_digest(b) for b in current])
    return list(current[start:])


# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------


@dataclass
class ToolCall:
    call_id: str | None
    name: str | None
    type: str | None
    arguments: str | None  # as the model produced it (JSON text for function calls)
    answered_in_step: int | None = None  # index of the step whose input carries the output
    output: str | None = None  # the output text that answered it

    @property
    def arguments_json(self) -> Any:
        """The arguments parsed as JSON (None when absent or not JSON)."""
        if not self.arguments:
            return None
        try:
            return json.loads(self.arguments)
        except ValueError:
            return None


@dataclass
class Finding:
    guardrail: str | None
    stage: str | None  # input | output
    entity: str | None
    action: str | None
    score: float | None
    start: int | None
    end: int | None
    message: str | None
    text: str = ""  # the text the span refers to (the step's new input, or its output)

    @property
    def span_in_text(self) -> bool:
        return (
            self.start is not None and self.end is not None and 0 <= self.start < self.end <= len(self.text)
        )

    @property
    def matched(self) -> str | None:
        return self.text[self.start : self.end] if self.span_in_text else None  # type: ignore[index]


@dataclass
class Step:
    index: int  # 0-based position in the session (the UI shows index + 1)
    trace_id: str
    call_index: int | None
    turn_id: str | None
    new_turn: bool
    start_time: datetime | None
    end_time: datetime | None
    offset_ms: float  # start relative to the session's first call
    duration_ms: float | None
    ttfb_ms: float | None
    ttft_ms: float | None
    api: str | None
    model: str | None
    response_model: str | None
    provider: str | None
    route: str | None
    outcome: str
    status_code: int | None
    error_type: str | None
    error_message: str | None
    refusal_reason: str | None
    new_items: list[InputItem]
    new_items_source: str  # recorded | recorded_start | diff | first | unavailable
    input_item_count: int | None
    output_text: str
    reasoning: str
    tool_calls: list[ToolCall]
    input_tokens: int | None
    cached_tokens: int | None
    output_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: float | None
    cost_known: bool
    cumulative_cost_usd: float  # priced calls only, up to and including this step
    cumulative_input_tokens: int
    cumulative_output_tokens: int
    cumulative_unpriced: int  # calls so far that used tokens but had no price
    attempts: list[dict[str, Any]]
    attempt_count: int
    fallback_used: bool
    findings: list[Finding]
    guardrail_blocked: bool
    instructions_hash: str | None
    instructions: str | None
    instructions_changed: bool
    instructions_diff: str | None  # unified diff against the previous instructions
    instructions_changed_from: int | None  # index of the step the diff compares against
    privacy_mode: str | None
    request_body: str | None = field(default=None, repr=False)
    # what the serving target was sent when the route translated or rewrote the call
    upstream_request_body: str | None = field(default=None, repr=False)

    @property
    def number(self) -> int:
        """1-based step number, as shown in the UI and in ``?step=``."""
        return self.index + 1

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.OK

    @property
    def input_text(self) -> str:
        """What the client added in this call (non-echo new items), the text input-stage
        guardrail spans refer to."""
        return "\n\n".join(i.text for i in self.new_items if not i.echo and i.text)

    def summary(self) -> str:
        """One line: what happened in this step."""
        if self.outcome == Outcome.REFUSED:
            return f"refused: {self.refusal_reason or self.error_type or self.status_code}"
        if self.outcome != Outcome.OK:
            detail = self.error_type or (f"HTTP {self.status_code}" if self.status_code else "")
            return f"{self.outcome}{': ' + detail if detail else ''}"
        if self.tool_calls:
            return ", ".join(f"{c.name}()" for c in self.tool_calls)
        if self.output_text:
            first = self.output_text.strip().splitlines()[0] if self.output_text.strip() else ""
            return "answer: " + (first[:60] + ("…" if len(first) > 60 else ""))
        return "ok"


def _loads(text: Any) -> Any:
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _rows(calls: pl.DataFrame | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(calls, pl.DataFrame):
        return list(calls.iter_rows(named=True))
    return [dict(r) for r in calls]


def _new_items(
    row: Mapping[str, Any], body: Any, prev_body: Any, first: bool
) -> tuple[list[Any] | None, str]:
    recorded = _loads(row.get("new_input_items"))
    if isinstance(recorded, list):
        return recorded, "recorded"
    items = request_items(body) if isinstance(body, Mapping) else None
    if items is None:
        return None, "unavailable"
    start = row.get("new_input_start")
    if start is not None and 0 <= int(start) <= len(items):
        return items[int(start) :], "recorded_start"
    if first:
        return items, "first"
    if isinstance(prev_body, Mapping):
        return new_items_by_diff(request_items(prev_body), items), "diff"
    return None, "unavailable"


def _tool_calls(row: Mapping[str, Any], parsed_response: Any) -> list[ToolCall]:
    recorded = [c for c in (row.get("tool_calls") or []) if isinstance(c, Mapping)]
    from_body = parsed_response.tool_calls if parsed_response is not None else []
    by_id = {c.get("call_id"): c for c in from_body if c.get("call_id")}
    calls: list[ToolCall] = []
    for c in recorded:
        args = c.get("arguments")
        if args is None and c.get("call_id") in by_id:
            args = by_id[c["call_id"]].get("arguments")
        calls.append(ToolCall(c.get("call_id"), c.get("name"), c.get("type"), args))
    if not recorded:
        calls = [
            ToolCall(c.get("call_id"), c.get("name"), c.get("type"), c.get("arguments")) for c in from_body
        ]
    return calls


def unified_instructions_diff(previous: str, current: str, prev_label: str, cur_label: str) -> str:
    return "\n".join(
        difflib.unified_diff(previous.splitlines(), current.splitlines(), prev_label, cur_label, lineterm="")
    )


def replay_steps(calls: pl.DataFrame | Iterable[Mapping[str, Any]]) -> list[Step]:
    """The steps of one session (rows already in order, e.g. from ``session_calls``)."""
    rows = _rows(calls)
    steps: list[Step] = []
    t0 = min((r["start_time"] for r in rows if r.get("start_time") is not None), default=None)
    cum_cost = 0.0
    cum_in = cum_out = cum_unpriced = 0
    prev_body: Any = None
    prev_turn: str | None = None
    last_instr: tuple[int, str | None, str | None] | None = None  # (step index, hash, text)
    for i, row in enumerate(rows):
        body = _loads(row.get("request_body"))
        api = row.get("openai_api_type") or Api.RESPONSES
        response = _loads(row.get("response_body"))
        parsed = from_json_body(api, response) if isinstance(response, dict) else None
        raw_new, source = _new_items(row, body, prev_body, first=(i == 0))
        new_items = [x for item in (raw_new or []) for x in classify_item(item)]

        text = row.get("response_text")
        if text is None and parsed is not None:
            text = parsed.text
        reasoning = row.get("response_reasoning")
        if reasoning is None and parsed is not None:
            reasoning = parsed.reasoning

        cost = row.get("cost_usd")
        known = bool(row.get("cost_known"))
        if known and cost is not None:
            cum_cost += float(cost)
        in_tok = row.get("gen_ai_usage_input_tokens")
        out_tok = row.get("gen_ai_usage_output_tokens")
        cum_in += int(in_tok or 0)
        cum_out += int(out_tok or 0)
        if not known and (in_tok is not None or out_tok is not None):
            cum_unpriced += 1

        # instructions: compare with the last step that had a hash or text
        ihash = row.get("instructions_hash")
        itext = instructions_text(body) if isinstance(body, Mapping) else None
        changed, diff, changed_from = False, None, None
        if last_instr is not None and (ihash is not None or itext is not None):
            p_index, p_hash, p_text = last_instr
            if ihash is not None and p_hash is not None:
                changed = ihash != p_hash
            elif itext is not None and p_text is not None:
                changed = itext != p_text
            if changed:
                changed_from = p_index
                if itext is not None and p_text is not None:
                    diff = unified_instructions_diff(
                        p_text, itext, f"instructions (step {p_index + 1})", f"instructions (step {i + 1})"
                    )
        if ihash is not None or itext is not None:
            last_instr = (i, ihash, itext)

        start = row.get("start_time")
        turn = row.get("turn_id")
        output_text = text or ""
        step = Step(
            index=i,
            trace_id=row.get("trace_id") or "",
            call_index=row.get("call_index"),
            turn_id=turn,
            new_turn=i == 0 or (turn is not None and turn != prev_turn),
            start_time=start,
            end_time=row.get("end_time"),
            offset_ms=(start - t0).total_seconds() * 1000.0 if start is not None and t0 is not None else 0.0,
            duration_ms=row.get("duration_ms"),
            ttfb_ms=row.get("ttfb_ms"),
            ttft_ms=row.get("ttft_ms"),
            api=api,
            model=row.get("gen_ai_request_model"),
            response_model=row.get("gen_ai_response_model"),
            provider=row.get("provider"),
            route=row.get("route"),
            outcome=row.get("outcome") or "unknown",
            status_code=row.get("status_code"),
            error_type=row.get("error_type"),
            error_message=row.get("error_message"),
            refusal_reason=row.get("refusal_reason"),
            new_items=new_items,
            new_items_source=source,
            input_item_count=row.get("input_item_count"),
            output_text=output_text,
            reasoning=reasoning or "",
            tool_calls=_tool_calls(row, parsed),
            input_tokens=in_tok,
            cached_tokens=row.get("gen_ai_usage_cache_read_input_tokens"),
            output_tokens=out_tok,
            reasoning_tokens=row.get("gen_ai_usage_reasoning_output_tokens"),
            cost_usd=float(cost) if known and cost is not None else None,
            cost_known=known,
            cumulative_cost_usd=cum_cost,
            cumulative_input_tokens=cum_in,
            cumulative_output_tokens=cum_out,
            cumulative_unpriced=cum_unpriced,
            attempts=[dict(a) for a in (row.get("attempts") or []) if isinstance(a, Mapping)],
            attempt_count=int(row.get("attempt_count") or 0),
            fallback_used=bool(row.get("fallback_used")),
            findings=[],
            guardrail_blocked=bool(row.get("guardrail_blocked")),
            instructions_hash=ihash,
            instructions=itext,
            instructions_changed=changed,
            instructions_diff=diff,
            instructions_changed_from=changed_from,
            privacy_mode=row.get("privacy_mode"),
            request_body=row.get("request_body"),
            upstream_request_body=row.get("upstream_request_body"),
        )
        step.findings = [
            Finding(
                guardrail=f.get("guardrail"),
                stage=f.get("stage"),
                entity=f.get("entity"),
                action=f.get("action"),
                score=f.get("score"),
                start=f.get("start"),
                end=f.get("end"),
                message=f.get("message"),
                text=output_text if f.get("stage") == "output" else step.input_text,
            )
            for f in (row.get("guardrail_findings") or [])
            if isinstance(f, Mapping)
        ]
        steps.append(step)
        if body is not None:
            prev_body = body
        prev_turn = turn if turn is not None else prev_turn
    link_tool_outputs(steps)
    return steps


def link_tool_outputs(steps: Sequence[Step]) -> None:
    """Connect each tool call to the first later tool output with the same call id (both ways)."""
    open_calls: dict[str, tuple[int, ToolCall]] = {}
    for step in steps:
        for item in step.new_items:
            if item.kind != TOOL_OUTPUT or not item.call_id:
                continue
            hit = open_calls.pop(item.call_id, None)
            if hit is not None and hit[0] < step.index:
                item.answers_step = hit[0]
                hit[1].answered_in_step = step.index
                hit[1].output = item.text
        for call in step.tool_calls:
            if call.call_id and step.ok:
                open_calls.setdefault(call.call_id, (step.index, call))


def session_title(first_input: str | None, width: int = 120) -> str:
    """The first user prompt of a session (skipping Codex's environment context), shortened."""
    doc = _loads(first_input)
    items = doc if isinstance(doc, list) else request_items(doc) if isinstance(doc, Mapping) else []
    for item in items:
        for shown in classify_item(item):
            if shown.kind == USER and shown.text.strip():
                text = " ".join(shown.text.split())
                return text if len(text) <= width else text[: width - 1] + "…"
    return ""
