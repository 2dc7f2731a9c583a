"""Per-API wire formats: one module per API (``responses``, ``chat``, ``anthropic``), shared SSE
framing (``sse``) and shared names (``common``). This package is the one place that knows
how a request's input items, an answer's usage, text and tool calls, and an SSE stream look;
the gateway, sessions, replay, re-run, simulator and synthetic generator all call it.

Layer: imports only ``codexgate.core`` and the standard library.
"""

from __future__ import annotations

from typing import Any

from codexgate.wire import anthropic, chat, responses
from codexgate.wire.common import (
    TOOL_CALL_TYPES,
    TOOL_OUTPUT_TYPES,
    Api,
    EventReassembler,
    Outcome,
    Reassembled,
    error_fields,
    instruction_values,
    item_digest,
    item_digests,
)
from codexgate.wire.common import instructions_hash as _instructions_hash
from codexgate.wire.common import instructions_text as _instructions_text
from codexgate.wire.sse import SseEvent, SseParser
from codexgate.wire.values import as_dict

__all__ = [
    "TOOL_CALL_TYPES",
    "TOOL_OUTPUT_TYPES",
    "Api",
    "Outcome",
    "Reassembled",
    "SseEvent",
    "SseParser",
    "EventReassembler",
    "from_json_body",
    "input_items",
    "instruction_values",
    "instructions_hash",
    "instructions_text",
    "item_digest",
    "item_digests",
    "reassemble",
    "reassembler",
]


_MODULES = {Api.RESPONSES: responses, Api.CHAT: chat, Api.ANTHROPIC: anthropic}


def input_items(api: str | None, body: Any) -> list[Any]:
    """The conversation items of a request body, in order. ``api=None`` reads whichever of
    ``input`` (Responses) or ``messages`` (Chat, Anthropic) the body has. Never raises."""
    if api is None:
        return responses.input_items(body) if "input" in as_dict(body) else chat.input_items(body)
    module = _MODULES.get(api)  # type: ignore[call-overload]
    return module.input_items(body) if module is not None else []


def instructions_text(api: str | None, body: Any) -> str | None:
    """The standing instructions of a call as hashed into ``instructions_hash``: ``instructions``
    / ``system``, else the developer/system messages. Never raises."""
    if not isinstance(body, dict):
        return None
    return _instructions_text(body, input_items(api, body))


def instructions_hash(api: str | None, body: Any, items: list[Any], contents: list[str]) -> str | None:
    """sha256 of ``instructions_text(api, body)`` (``None`` without instructions), given the
    call's ``input_items`` and their content digests (memoised by those). Never raises."""
    if not isinstance(body, dict):
        return None
    return _instructions_hash(body, items, contents)


def reassembler(api: str | None) -> EventReassembler:
    """A fresh stream reassembler for ``api`` (Responses for unknown APIs)."""
    module = _MODULES.get(api, responses)  # type: ignore[call-overload]
    return module.Reassembler()


def reassemble(api: str | None, raw: bytes, chunk: int = 0) -> Reassembled:
    """Summarise a complete (decoded) SSE body of ``api``, fed in ``chunk``-byte pieces when given."""
    parser = SseParser()
    r = reassembler(api)
    step = chunk if chunk > 0 else max(1, len(raw))
    for k in range(0, len(raw), step):
        for ev in parser.feed(raw[k : k + step]):
            r.on_event(ev)
    for ev in parser.close():
        r.on_event(ev)
    return r.result()


def from_json_body(api: str | None, body: Any) -> Reassembled:
    """Summarise a non-streamed JSON response body (or error body) of ``api``."""
    r = Reassembled(response=body if isinstance(body, dict) else None, terminal=body is not None)
    if not isinstance(body, dict):
        return r
    if isinstance(body.get("error"), dict):
        r.failed = True
        kind, r.error_message = error_fields(body["error"], "")
        r.error_type = kind or None
        return r
    r.response_id = body.get("id") if isinstance(body.get("id"), str) else None
    r.response_model = body.get("model") if isinstance(body.get("model"), str) else None
    module = _MODULES.get(api)  # type: ignore[call-overload]
    if module is not None:
        module.from_json_body(body, r)
    return r
