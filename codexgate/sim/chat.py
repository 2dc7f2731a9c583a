"""OpenAI Chat Completions: the completion object and its ``data:`` chunk stream."""

from __future__ import annotations

import time
from typing import Any

from codexgate.sim.reply import Reply
from codexgate.sim.scenario import Decision
from codexgate.sim.usage import PromptCache, canonical, reasoning_tokens, tokens
from codexgate.sim.wire import new_id, openai_error_body
from codexgate.wire import chat as wire_chat


def usage(cache: PromptCache, body: dict[str, Any], decision: Decision, model: str) -> dict[str, Any]:
    prompt_tokens = tokens(canonical(body.get("messages", [])))
    cached = cache.openai_cached(body.get("prompt_cache_key"), prompt_tokens)
    reasoning = reasoning_tokens(model, body)
    completion_tokens = tokens(decision.output_chars) + reasoning
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
    }


def build(
    body: dict[str, Any], model: str, decision: Decision, usage_doc: dict, error_code: str | None
) -> Reply:
    base = {
        "id": new_id("chatcmpl-", 30),
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_sim",
        "service_tier": "default",
    }
    call = decision.call
    call_id = new_id("call_")
    finish = "tool_calls" if call else "stop"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if call else decision.text,
        "refusal": None,
    }
    if call:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        ]
    doc = {
        **base,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": usage_doc,
    }
    reply = Reply(doc=doc, usage=usage_doc)
    if not body.get("stream"):
        if error_code:
            reply.error_status = 500
        return reply
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    error = openai_error_body(500, f"simulated failure ({error_code})", error_code) if error_code else None
    reply.events = wire_chat.encode_events(doc, include_usage=include_usage, error=error)
    return reply
