"""Anthropic Messages: the message object and its SSE event sequence."""

from __future__ import annotations

import json
from typing import Any

from codexgate.sim.reply import Reply
from codexgate.sim.scenario import Decision
from codexgate.sim.usage import PromptCache, tokens
from codexgate.sim.wire import anthropic_error_body, new_id
from codexgate.wire import anthropic as wire_anthropic


def usage(cache: PromptCache, body: dict[str, Any], decision: Decision) -> dict[str, Any]:
    counted = cache.anthropic(body)
    return {
        "input_tokens": counted.input_tokens,
        "cache_creation_input_tokens": counted.cache_creation,
        "cache_read_input_tokens": counted.cache_read,
        "output_tokens": tokens(decision.output_chars),
        "service_tier": "standard",
    }


def build(
    body: dict[str, Any], model: str, decision: Decision, usage_doc: dict, error_type: str | None
) -> Reply:
    call = decision.call
    block: dict[str, Any] = (
        {
            "type": "tool_use",
            "id": new_id("toolu_01", 22),
            "name": call.name,
            "input": json.loads(call.arguments),
        }
        if call and call.kind == "function"
        else {"type": "text", "text": decision.text or (call.arguments if call else "")}
    )
    stop = "tool_use" if block["type"] == "tool_use" else "end_turn"
    doc = {
        "id": new_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [block],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage_doc,
    }
    reply = Reply(doc=doc, usage=usage_doc)
    if not body.get("stream"):
        if error_type:
            reply.error_status = 500
        return reply

    error = None
    if error_type:
        status = 529 if error_type == "overloaded_error" else 500
        error = anthropic_error_body(status, "simulated failure")["error"]
        error["type"] = error_type
    reply.events = wire_anthropic.encode_events(doc, error=error)
    return reply
