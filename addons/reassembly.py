"""Rebuild the final response of a model call from its SSE events (or its JSON body).

One small class per wire format, all with the same surface: ``on_event`` per SSE event,
``result()`` for what was seen so far (complete or not). Usage is normalised to the
OpenTelemetry GenAI meaning: input tokens include cache reads/writes, output tokens include
reasoning tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from addons.sse import SseEvent
from codexgate.core.pricing import Usage


@dataclass
class Reassembled:
    response: dict[str, Any] | None = None
    text: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    error_type: str | None = None
    error_message: str | None = None
    event_count: int = 0
    terminal: bool = False  # the format's end-of-response event was seen
    failed: bool = False  # the stream ended in an error event


def _loads(data: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) else None


# --------------------------------------------------------------------------- OpenAI Responses


def responses_usage(u: dict[str, Any] | None) -> Usage | None:
    if not isinstance(u, dict):
        return None
    return Usage(
        input_tokens=_int(u.get("input_tokens")),
        cache_read_tokens=_int((u.get("input_tokens_details") or {}).get("cached_tokens")),
        output_tokens=_int(u.get("output_tokens")),
        reasoning_tokens=_int((u.get("output_tokens_details") or {}).get("reasoning_tokens")),
    )


def summarise_responses_output(output: list[Any], r: Reassembled) -> None:
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") in ("output_text", "text"):
                    texts.append(part.get("text") or "")
        elif kind == "reasoning":
            for part in item.get("summary") or []:
                if isinstance(part, dict):
                    reasoning.append(part.get("text") or "")
        elif kind == "function_call":
            calls.append(
                {
                    "call_id": item.get("call_id"),
                    "name": item.get("name"),
                    "type": kind,
                    "arguments": item.get("arguments"),
                }
            )
        elif kind == "custom_tool_call":
            calls.append(
                {
                    "call_id": item.get("call_id"),
                    "name": item.get("name"),
                    "type": kind,
                    "arguments": item.get("input"),
                }
            )
        elif kind == "local_shell_call":
            calls.append(
                {
                    "call_id": item.get("call_id"),
                    "name": "local_shell",
                    "type": kind,
                    "arguments": json.dumps(item.get("action")),
                }
            )
    r.text = "".join(texts)
    r.reasoning = "\n".join(x for x in reasoning if x)
    r.tool_calls = calls


class ResponsesReassembler:
    TERMINAL = ("response.completed", "response.incomplete", "response.failed")

    def __init__(self) -> None:
        self.r = Reassembled()
        self._items: dict[int, dict[str, Any]] = {}
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self.first_token = False

    def on_event(self, ev: SseEvent) -> bool:
        """Feed one event; returns True if it carried the first output token."""
        self.r.event_count += 1
        obj = _loads(ev.data)
        if obj is None:
            return False
        kind = obj.get("type") or ev.event
        first = False
        if kind in (
            "response.output_text.delta",
            "response.reasoning_summary_text.delta",
            "response.function_call_arguments.delta",
        ):
            if not self.first_token:
                self.first_token = first = True
            if kind == "response.output_text.delta":
                self._text.append(obj.get("delta") or "")
            elif kind == "response.reasoning_summary_text.delta":
                self._reasoning.append(obj.get("delta") or "")
        elif kind == "response.created":
            resp = obj.get("response") or {}
            self.r.response_id = resp.get("id")
            self.r.response_model = resp.get("model")
        elif kind == "response.output_item.done":
            idx = obj.get("output_index", len(self._items))
            if isinstance(obj.get("item"), dict):
                self._items[int(idx)] = obj["item"]
        elif kind in self.TERMINAL:
            resp = obj.get("response") or {}
            self.r.terminal = True
            self.r.response = resp
            self.r.response_id = resp.get("id") or self.r.response_id
            self.r.response_model = resp.get("model") or self.r.response_model
            self.r.usage = responses_usage(resp.get("usage"))
            status = resp.get("status") or kind.split(".")[-1]
            self.r.finish_reasons = [status]
            if kind == "response.incomplete":
                reason = (resp.get("incomplete_details") or {}).get("reason")
                if reason:
                    self.r.finish_reasons = [reason]
            if kind == "response.failed":
                self.r.failed = True
                err = resp.get("error") or {}
                self.r.error_type = err.get("code") or err.get("type") or "response.failed"
                self.r.error_message = err.get("message")
        elif kind == "error":
            err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
            self.r.failed = True
            self.r.error_type = err.get("code") or err.get("type") or "error"
            self.r.error_message = err.get("message")
        return first

    def result(self) -> Reassembled:
        r = self.r
        if r.response is not None and r.response.get("output"):
            summarise_responses_output(r.response["output"], r)
        else:
            items = [self._items[k] for k in sorted(self._items)]
            if r.response is None:
                r.response = {
                    "id": r.response_id,
                    "model": r.response_model,
                    "status": "incomplete",
                    "output": items,
                }
            elif not r.response.get("output"):
                r.response = {**r.response, "output": items}
            summarise_responses_output(items, r)
            if not r.text:
                r.text = "".join(self._text)
            if not r.reasoning:
                r.reasoning = "".join(self._reasoning)
        return r


# --------------------------------------------------------------------------- Chat Completions


def chat_usage(u: dict[str, Any] | None) -> Usage | None:
    if not isinstance(u, dict):
        return None
    return Usage(
        input_tokens=_int(u.get("prompt_tokens")),
        cache_read_tokens=_int((u.get("prompt_tokens_details") or {}).get("cached_tokens")),
        output_tokens=_int(u.get("completion_tokens")),
        reasoning_tokens=_int((u.get("completion_tokens_details") or {}).get("reasoning_tokens")),
    )


class ChatReassembler:
    def __init__(self) -> None:
        self.r = Reassembled()
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self.first_token = False

    def on_event(self, ev: SseEvent) -> bool:
        self.r.event_count += 1
        if ev.data.strip() == "[DONE]":
            self.r.terminal = True
            return False
        obj = _loads(ev.data)
        if obj is None:
            return False
        if "error" in obj and isinstance(obj["error"], dict):
            self.r.failed = True
            self.r.error_type = obj["error"].get("code") or obj["error"].get("type")
            self.r.error_message = obj["error"].get("message")
            return False
        self.r.response_id = obj.get("id") or self.r.response_id
        self.r.response_model = obj.get("model") or self.r.response_model
        if obj.get("usage"):
            self.r.usage = chat_usage(obj["usage"])
        first = False
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._text.append(delta["content"])
                if not self.first_token:
                    self.first_token = first = True
            for tc in delta.get("tool_calls") or []:
                if not self.first_token:
                    self.first_token = first = True
                slot = self._calls.setdefault(
                    int(tc.get("index", 0)), {"id": None, "name": "", "arguments": ""}
                )
                slot["id"] = tc.get("id") or slot["id"]
                fn = tc.get("function") or {}
                slot["name"] += fn.get("name") or ""
                slot["arguments"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return first

    def result(self) -> Reassembled:
        r = self.r
        r.text = "".join(self._text)
        calls = [self._calls[k] for k in sorted(self._calls)]
        r.tool_calls = [
            {"call_id": c["id"], "name": c["name"], "type": "function", "arguments": c["arguments"]}
            for c in calls
        ]
        r.finish_reasons = [self._finish] if self._finish else []
        message: dict[str, Any] = {"role": "assistant", "content": r.text or None}
        if calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ]
        r.response = {
            "id": r.response_id,
            "object": "chat.completion",
            "model": r.response_model,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish}],
        }
        return r


# --------------------------------------------------------------------------- Anthropic Messages


def anthropic_usage(u: dict[str, Any] | None, prior: Usage | None = None) -> Usage | None:
    if not isinstance(u, dict):
        return prior
    out = prior or Usage()
    base = _int(u.get("input_tokens"))
    read = _int(u.get("cache_read_input_tokens"))
    write = _int(u.get("cache_creation_input_tokens"))
    if base is not None or read is not None or write is not None:
        # Anthropic's input_tokens excludes cache reads and writes; OTel's includes them.
        out.input_tokens = (base or 0) + (read or 0) + (write or 0)
        out.cache_read_tokens = read or 0
        out.cache_creation_tokens = write or 0
    if _int(u.get("output_tokens")) is not None:
        out.output_tokens = _int(u.get("output_tokens"))
    return out


class AnthropicReassembler:
    def __init__(self) -> None:
        self.r = Reassembled()
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}
        self._stop: str | None = None
        self._message: dict[str, Any] = {}
        self.first_token = False

    def on_event(self, ev: SseEvent) -> bool:
        self.r.event_count += 1
        obj = _loads(ev.data)
        if obj is None:
            return False
        kind = obj.get("type") or ev.event
        first = False
        if kind == "message_start":
            self._message = dict(obj.get("message") or {})
            self.r.response_id = self._message.get("id")
            self.r.response_model = self._message.get("model")
            self.r.usage = anthropic_usage(self._message.get("usage"))
        elif kind == "content_block_start":
            self._blocks[int(obj.get("index", 0))] = dict(obj.get("content_block") or {})
        elif kind == "content_block_delta":
            idx = int(obj.get("index", 0))
            block = self._blocks.setdefault(idx, {"type": "text", "text": ""})
            delta = obj.get("delta") or {}
            if not self.first_token:
                self.first_token = first = True
            if delta.get("type") == "text_delta":
                block["text"] = (block.get("text") or "") + (delta.get("text") or "")
            elif delta.get("type") == "input_json_delta":
                self._json.setdefault(idx, []).append(delta.get("partial_json") or "")
            elif delta.get("type") == "thinking_delta":
                block["thinking"] = (block.get("thinking") or "") + (delta.get("thinking") or "")
        elif kind == "message_delta":
            self._stop = (obj.get("delta") or {}).get("stop_reason") or self._stop
            self.r.usage = anthropic_usage(obj.get("usage"), self.r.usage)
        elif kind == "message_stop":
            self.r.terminal = True
        elif kind == "error":
            err = obj.get("error") or {}
            self.r.failed = True
            self.r.error_type = err.get("type") or "error"
            self.r.error_message = err.get("message")
        return first

    def result(self) -> Reassembled:
        r = self.r
        content = []
        for idx in sorted(self._blocks):
            block = dict(self._blocks[idx])
            if block.get("type") == "tool_use" and idx in self._json:
                raw = "".join(self._json[idx])
                try:
                    block["input"] = json.loads(raw) if raw else {}
                except ValueError:
                    block["input"] = raw
            content.append(block)
        r.response = {**self._message, "content": content, "stop_reason": self._stop}
        summarise_anthropic_content(content, r)
        r.finish_reasons = [self._stop] if self._stop else []
        return r


def summarise_anthropic_content(content: list[Any], r: Reassembled) -> None:
    r.text = "".join(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")
    r.reasoning = "".join(
        b.get("thinking") or "" for b in content if isinstance(b, dict) and b.get("type") == "thinking"
    )
    r.tool_calls = [
        {
            "call_id": b.get("id"),
            "name": b.get("name"),
            "type": "tool_use",
            "arguments": json.dumps(b.get("input")),
        }
        for b in content
        if isinstance(b, dict) and b.get("type") == "tool_use"
    ]


# --------------------------------------------------------------------------- factories

STREAM_REASSEMBLERS = {
    "responses": ResponsesReassembler,
    "chat_completions": ChatReassembler,
    "anthropic_messages": AnthropicReassembler,
}


def from_json_body(api: str, body: dict[str, Any] | None) -> Reassembled:
    """Summarise a non-streaming JSON response body of the given API."""
    r = Reassembled(response=body, terminal=body is not None)
    if not isinstance(body, dict):
        return r
    if isinstance(body.get("error"), dict):
        err = body["error"]
        r.failed = True
        r.error_type = err.get("code") or err.get("type")
        r.error_message = err.get("message")
        return r
    r.response_id = body.get("id")
    r.response_model = body.get("model")
    if api == "responses":
        r.usage = responses_usage(body.get("usage"))
        summarise_responses_output(body.get("output") or [], r)
        r.finish_reasons = [body["status"]] if body.get("status") else []
    elif api == "chat_completions":
        r.usage = chat_usage(body.get("usage"))
        choices = body.get("choices") or []
        msg = (choices[0].get("message") if choices else None) or {}
        r.text = msg.get("content") or ""
        r.tool_calls = [
            {
                "call_id": tc.get("id"),
                "name": (tc.get("function") or {}).get("name"),
                "type": "function",
                "arguments": (tc.get("function") or {}).get("arguments"),
            }
            for tc in msg.get("tool_calls") or []
        ]
        r.finish_reasons = [c.get("finish_reason") for c in choices if c.get("finish_reason")]
    elif api == "anthropic_messages":
        r.usage = anthropic_usage(body.get("usage"))
        summarise_anthropic_content(body.get("content") or [], r)
        r.finish_reasons = [body["stop_reason"]] if body.get("stop_reason") else []
    return r
