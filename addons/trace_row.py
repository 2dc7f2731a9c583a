"""Turns a finished flow and its state into one trace row (``codexgate.core.schema``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from mitmproxy import http

from addons import privacy
from addons.flowstate import FlowState
from addons.guardrails import row_findings, value_mask
from addons.reassembly import Reassembled
from addons.stored_headers import headers_json
from codexgate.core import schema
from codexgate.core.pricing import PRICE_SOURCE, PRICE_VERSION, price
from codexgate.core.safejson import dumps_text
from codexgate.core.schema import SCHEMA_VERSION

_PROVIDER_NAMES = {"openai": "openai", "azure": "azure.ai.openai", "anthropic": "anthropic"}


# flow.metadata key of the ``UpstreamSent`` of the target whose answer the client got (the
# upstream step writes it; absent when what was sent upstream is the client's request as is)
UPSTREAM_SENT_KEY = "codexgate_upstream_sent"


@dataclass(frozen=True)
class UpstreamSent:
    """What one target was sent when it differs from the client's request (translated to
    another API, or the route rewrote the model): the body as sent, and ``derive``, the same
    rewrite applied to another version of the client's body. The row stores the rewrite of the
    privacy-applied request body when there is one, so the upstream body is never stored less
    redacted than ``request_body``."""

    label: str
    body: bytes
    derive: Callable[[dict[str, Any]], bytes]


def upstream_body_text(flow: http.HTTPFlow, state: FlowState, redacting: bool) -> str | None:
    """The ``upstream_request_body`` column before the size cap (the caller checks the privacy
    mode keeps bodies at all)."""
    sent = flow.metadata.get(UPSTREAM_SENT_KEY)
    if not isinstance(sent, UpstreamSent):
        return None
    stored = state.record.stored_body_text
    if stored is not None:  # redacted, or masked by a guardrail: rewrite what request_body stores
        try:
            doc = orjson.loads(stored)
            if not isinstance(doc, dict) or "model" not in doc:  # a placeholder, not a body
                return None
            return sent.derive(doc).decode("utf-8", "replace")
        except Exception:  # a redacted body the rewrite cannot take: store nothing (fail closed)
            return None
    if redacting:  # nothing privacy-applied to rewrite: store nothing
        return None
    return sent.body.decode("utf-8", "replace")


def _ms(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return (b - a).total_seconds() * 1000.0


# Per stored text column; longer values are cut and flagged (body_truncated). Seven such columns
# at up to 6x their length once JSON-escaped can pass the spool's 64 MiB record cap in the worst
# case: tracing then writes the row without them (see ``Tracing._write``).
MAX_STORED_CHARS = 2 * 1024 * 1024
STORED_TEXT_COLUMNS = (
    "request_body",
    "upstream_request_body",
    "new_input_items",
    "response_body",
    "response_text",
    "response_reasoning",
    "codex_turn_metadata",
)


class _Capper:
    """Cuts stored texts to ``limit`` characters and remembers that it did."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.cut = False

    def __call__(self, text: str | None) -> str | None:
        if text is not None and len(text) > self.limit:
            self.cut = True
            return text[: self.limit]
        return text


def build_row(
    flow: http.HTTPFlow,
    state: FlowState,
    result: Reassembled | None,
    *,
    outcome: str,
    end: datetime,
    status_code: int | None,
    client_aborted: bool = False,
    error_type: str | None = None,
    error_message: str | None = None,
    streaming: bool = False,
    response_bytes: int | None = None,
    instance: str | None = None,
    max_stored_chars: int = MAX_STORED_CHARS,
    privacy_: privacy.Privacy | None = None,
) -> dict[str, Any]:
    key = state.verdict.identity
    provider = state.verdict.provider
    mode = state.verdict.privacy_mode
    cap = _Capper(max_stored_chars)
    usage = result.usage if result else None
    # priced at the model that served: the provider's answer names it, else the model the
    # serving attempt asked for (a route may rewrite it), else the client's
    served_model = next(
        (a.model for a in reversed(state.upstream.attempts) if a.decision in ("served", "cut") and a.model), None
    )
    cost = price(
        (result.response_model if result and result.response_model else None)
        or served_model
        or state.request.model,
        provider.kind if provider else None,
        usage,
    )
    if state.verdict.refusal is not None:
        error_type = error_type or state.verdict.refusal.code
        error_message = error_message or state.verdict.refusal.message
    if state.verdict.gateway_error is not None:
        error_type = "gateway_error"
        error_message = f"internal error in {state.verdict.gateway_error}"
    if result is not None and result.failed:
        error_type = error_type or result.error_type
        error_message = error_message or result.error_message

    keep = mode != privacy.METRICS_ONLY
    findings = row_findings(flow, state, result)
    # A call with guardrail findings stores its response with the values its findings matched
    # replaced (a flagged value the model echoes must not reach a trace): plain replacement of
    # known values, no scan on the event loop. The request body was stored masked by the guardrail.
    redacting = mode == privacy.REDACTED or (bool(findings) and keep)
    sid = state.request.codex.grouping_key
    scrub_json: Callable[[str | None], str | None]
    if not redacting:
        scrub: Callable[[str | None], str | None] = lambda s: s  # noqa: E731
        scrub_json = scrub
    elif privacy_ is None:  # no engine to redact with: store no text at all (fail closed)
        scrub = scrub_json = lambda s: None  # noqa: E731
    elif mode == privacy.REDACTED:
        scrub = lambda s: privacy_.redact(s, sid)  # noqa: E731
        scrub_json = lambda s: privacy_.redact_json(s, sid)  # noqa: E731
    else:
        scrub = scrub_json = value_mask(flow, state, privacy_.guard)
    # a stream a guardrail cut for what it emitted: none of its output is stored
    keep_output = keep and not any(f.get("stage") == "output" and f.get("action") == "blocked" for f in findings)
    response_body = dumps_text(result.response) if (result and result.response is not None) else None
    tool_calls = list(result.tool_calls) if result else None
    if tool_calls and not keep_output:
        tool_calls = [{**c, "arguments": None} for c in tool_calls]
    elif tool_calls and redacting:
        tool_calls = [{**c, "arguments": scrub(c.get("arguments"))} for c in tool_calls]
    codex = state.request.codex
    # Outside 'full' mode client-supplied metadata (tags, Codex turn metadata) is redacted whatever
    # the mode: metrics_only keeps no bodies but still stores tags; without an engine, no values.
    private = mode != privacy.FULL
    if privacy_ is not None:
        meta_scrub: Callable[[str | None], str | None] = lambda s: privacy_.redact(s, sid)  # noqa: E731
    else:
        meta_scrub = lambda s: None  # noqa: E731
    tags = [{"key": k, "value": meta_scrub(v) if private else v} for k, v in sorted(state.request.tags.items())] or None
    attempts = [a.as_row() for a in state.upstream.attempts] or None
    providers_tried = [a.provider for a in state.upstream.attempts]
    return {
        "schema_version": SCHEMA_VERSION,
        "trace_id": state.trace_id,
        "gateway_instance": instance,
        "start_time": state.timing.started_at,
        "upstream_first_byte_time": state.timing.first_byte_at,
        "first_token_time": state.timing.first_token_at,
        "end_time": end,
        "duration_ms": _ms(state.timing.started_at, end) or 0.0,
        "ttfb_ms": _ms(state.timing.started_at, state.timing.first_byte_at),
        "ttft_ms": _ms(state.timing.started_at, state.timing.first_token_at),
        "status_code": status_code,
        "outcome": outcome,
        "streaming": streaming,
        "client_aborted": client_aborted,
        "error_type": error_type,
        "error_message": error_message,
        "refusal_reason": state.verdict.refusal.code if state.verdict.refusal else None,
        "org": key.org if key else None,
        "team": key.team if key else None,
        "project": key.project if key else None,
        "developer": key.developer if key else None,
        "key_id": key.key_id if key else None,
        "mode": state.request.mode,
        "route": state.verdict.route,
        "openai_api_type": state.request.shape.api,
        "gen_ai_operation_name": state.request.shape.operation,
        "gen_ai_provider_name": _PROVIDER_NAMES.get(provider.kind, provider.kind) if provider else None,
        "provider": provider.name if provider else None,
        "gen_ai_request_model": state.request.model,
        "gen_ai_response_model": result.response_model if result else None,
        "gen_ai_response_id": result.response_id if result else None,
        "gen_ai_response_finish_reasons": (result.finish_reasons or None) if result else None,
        "gen_ai_conversation_id": codex.thread_id or codex.session_id,
        "request_method": flow.request.method,
        "request_path": state.request.client_path or flow.request.path.split("?", 1)[0],
        "request_headers": headers_json(flow.request.headers.items(multi=True)),
        # redacted mode: done off-loop before the call; a refused call (rare) is scrubbed here
        "request_body": cap(
            state.record.stored_body_text
            if state.record.stored_body_text is not None
            else scrub(state.request.body_text)
        )
        if keep
        else None,
        "upstream_request_body": cap(upstream_body_text(flow, state, redacting)) if keep else None,
        "request_bytes": state.request.size or (len(state.request.body_text.encode()) if state.request.body_text else 0),
        "response_headers": headers_json(state.upstream.response_headers)
        if state.upstream.response_headers is not None
        else None,
        "response_body": cap(scrub_json(response_body)) if keep_output else None,
        "response_text": cap(scrub(result.text)) if (keep_output and result) else None,
        "response_reasoning": cap(scrub(result.reasoning)) if (keep_output and result) else None,
        "tool_calls": tool_calls,
        "sse_event_count": result.event_count if (result and streaming) else None,
        "response_bytes": response_bytes,
        "gen_ai_usage_input_tokens": usage.input_tokens if usage else None,
        "gen_ai_usage_cache_read_input_tokens": usage.cache_read_tokens if usage else None,
        "gen_ai_usage_cache_creation_input_tokens": usage.cache_creation_tokens if usage else None,
        "gen_ai_usage_output_tokens": usage.output_tokens if usage else None,
        "gen_ai_usage_reasoning_output_tokens": usage.reasoning_tokens if usage else None,
        "usage_complete": bool(usage and usage.input_tokens is not None and usage.output_tokens is not None),
        "cost_usd": cost.total_usd,
        "input_cost_usd": cost.input_usd,
        "output_cost_usd": cost.output_usd,
        "cost_known": cost.known,
        "price_source": PRICE_SOURCE if cost.known else None,
        "price_version": PRICE_VERSION if cost.known else None,
        "attempts": attempts,
        "attempt_count": len(state.upstream.attempts),
        "fallback_used": len(set(providers_tried)) > 1,
        "policy_decisions": state.verdict.decisions or None,
        "guardrail_findings": findings or None,
        "guardrail_blocked": any(f.get("action") == "blocked" for f in findings),
        "tags": tags,
        "privacy_mode": mode,
        "session_id": codex.session_id,
        "thread_id": codex.thread_id,
        "turn_id": codex.turn_id,
        "request_kind": codex.request_kind,
        "window_id": codex.window_id,
        "client_request_id": codex.client_request_id,
        "prompt_cache_key": codex.prompt_cache_key,
        "originator": codex.originator,
        "user_agent": codex.user_agent,
        "subagent": codex.subagent,
        "codex_turn_metadata": cap(meta_scrub(codex.turn_metadata) if private else codex.turn_metadata),
        "call_index": state.request.delta.call_index if state.request.delta else None,
        "input_item_count": state.request.delta.item_count if state.request.delta else None,
        "new_input_start": state.request.delta.new_start if state.request.delta else None,
        "new_input_items": cap(state.record.stored_new_items or scrub(dumps_text(state.request.new_items)))
        if (keep and state.request.new_items is not None)
        else None,
        "instructions_hash": state.request.instructions_hash,
    } | {"body_truncated": cap.cut}


def minimal_row(
    state: FlowState, end: datetime, instance: str | None, error: str, fields: dict[str, Any]
) -> dict[str, Any]:
    """The row of a call whose full row could not be built: identity, outcome and timing only,
    every other column at its default. Holds no body and no header."""
    key = state.verdict.identity
    row = {name: None for name in schema.SCHEMA.names}
    row.update(
        {
            "schema_version": SCHEMA_VERSION,
            "trace_id": state.trace_id,
            "gateway_instance": instance,
            "start_time": state.timing.started_at,
            "end_time": end,
            "duration_ms": _ms(state.timing.started_at, end) or 0.0,
            "status_code": fields.get("status_code"),
            "outcome": "gateway_error",
            "streaming": bool(fields.get("streaming", False)),
            "client_aborted": bool(fields.get("client_aborted", False)),
            "error_type": "gateway_error",
            "error_message": error,
            "refusal_reason": state.verdict.refusal.code if state.verdict.refusal else None,
            "org": key.org if key else None,
            "team": key.team if key else None,
            "project": key.project if key else None,
            "developer": key.developer if key else None,
            "key_id": key.key_id if key else None,
            "mode": state.request.mode,
            "openai_api_type": state.request.shape.api,
            "usage_complete": False,
            "cost_known": False,
            "attempt_count": len(state.upstream.attempts),
            "fallback_used": False,
            "guardrail_blocked": False,
            "privacy_mode": state.verdict.privacy_mode,
        }
    )
    return row
