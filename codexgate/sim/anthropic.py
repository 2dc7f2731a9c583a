"""Anthropic Messages: the message object and its SSE event sequence."""

from __future__ import annotations

import json
from typing import Any

from codexgate.sim.reply import Reply
from codexgate.sim.scenario import Decision
from codexgate.sim.usage import PromptCache, tokens
from codexgate.sim.wire import anthropic_error_body, new_id, pieces, sse


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

    def ev(kind: str, **fields: Any) -> bytes:
        return sse(kind, {"type": kind, **fields})

    started = {**doc, "content": [], "stop_reason": None, "usage": {**usage_doc, "output_tokens": 1}}
    frames = [ev("message_start", message=started), ev("ping")]
    if block["type"] == "text":
        frames.append(ev("content_block_start", index=0, content_block={"type": "text", "text": ""}))
        frames += [
            ev("content_block_delta", index=0, delta={"type": "text_delta", "text": p})
            for p in pieces(block["text"])
        ]
    else:
        frames.append(ev("content_block_start", index=0, content_block={**block, "input": {}}))
        frames += [
            ev("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": p})
            for p in pieces(call.arguments if call else "")
        ]
    frames.append(ev("content_block_stop", index=0))
    if error_type:
        error = anthropic_error_body(529 if error_type == "overloaded_error" else 500, "simulated failure")
        error["error"]["type"] = error_type
        frames.append(ev("error", error=error["error"]))
        reply.events = frames
        return reply
    frames.append(
        ev(
            "message_delta",
            delta={"stop_reason": stop, "stop_sequence": None},
            usage={"output_tokens": usage_doc["output_tokens"]},
        )
    )
    frames.append(ev("message_stop"))
    reply.events = frames
    return reply
