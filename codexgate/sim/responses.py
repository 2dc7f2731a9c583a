"""OpenAI Responses API: the final response object and its SSE event sequence."""

from __future__ import annotations

import base64
import time
from typing import Any

from codexgate.sim.reply import Reply
from codexgate.sim.scenario import Decision
from codexgate.sim.usage import PromptCache, canonical, reasoning_tokens, tokens
from codexgate.sim.wire import new_id
from codexgate.wire import responses as wire_responses

SUMMARY_TEXT = "**Simulating**\n\nPlanning the simulated answer."


def usage(cache: PromptCache, body: dict[str, Any], decision: Decision, model: str) -> dict[str, Any]:
    input_tokens = tokens(canonical(body.get("input", [])))
    cached = cache.openai_cached(body.get("prompt_cache_key"), input_tokens)
    reasoning = reasoning_tokens(model, body)
    output_tokens = tokens(decision.output_chars) + reasoning
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def _output_items(body: dict[str, Any], decision: Decision) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    reasoning = body.get("reasoning")
    if reasoning:
        summary = (
            [{"type": "summary_text", "text": SUMMARY_TEXT}]
            if isinstance(reasoning, dict) and reasoning.get("summary")
            else []
        )
        item: dict[str, Any] = {"id": new_id("rs_", 32), "type": "reasoning", "summary": summary}
        if "reasoning.encrypted_content" in (body.get("include") or []):
            item["encrypted_content"] = base64.b64encode(
                b"simulated reasoning " + item["id"].encode()
            ).decode()
        items.append(item)
    call = decision.call
    if call and call.kind == "custom":
        items.append(
            {
                "id": new_id("ctc_", 32),
                "type": "custom_tool_call",
                "status": "completed",
                "call_id": new_id("call_"),
                "name": call.name,
                "input": call.arguments,
            }
        )
    elif call:
        items.append(
            {
                "id": new_id("fc_", 32),
                "type": "function_call",
                "status": "completed",
                "call_id": new_id("call_"),
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    else:
        part = {"type": "output_text", "text": decision.text or "", "annotations": [], "logprobs": []}
        items.append(
            {
                "id": new_id("msg_", 32),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    return items


def _response_object(body: dict[str, Any], model: str, output: list[dict[str, Any]], usage_doc: dict) -> dict:
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {
        "id": new_id("resp_", 48),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "service_tier": body.get("service_tier") or "default",
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage_doc,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def build(
    body: dict[str, Any], model: str, decision: Decision, usage_doc: dict, error_code: str | None
) -> Reply:
    output = _output_items(body, decision)
    final = _response_object(body, model, output, usage_doc)
    reply = Reply(doc=final, usage=usage_doc)
    if not body.get("stream"):
        if error_code:
            reply.error_status = 500
        return reply
    error = None
    if error_code:
        message = f"simulated failure ({error_code})"
        if error_code == "rate_limit_exceeded":
            message += ". Please try again in 1s."
        error = {"code": error_code, "message": message}
    reply.events = wire_responses.encode_events(final, error=error)
    return reply
