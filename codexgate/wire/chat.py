"""OpenAI Chat Completions: request messages, usage, the answer summary (from ``data:`` chunks
or the JSON body) and the chunk-stream encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from codexgate.core.usage import Usage
from codexgate.wire.common import Api, EventReassembler, Reassembled, error_fields
from codexgate.wire.sse import frame, pieces
from codexgate.wire.values import as_dict, as_index, as_int, as_list, as_str, text_of

API = Api.CHAT
PATHS = ("/v1/chat/completions", "/chat/completions")


def input_items(body: Any) -> list[Any]:
    """The conversation messages of a request."""
    return as_list(as_dict(body).get("messages"))


def usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    return Usage(
        input_tokens=as_int(u.get("prompt_tokens")),
        cache_read_tokens=as_int(as_dict(u.get("prompt_tokens_details")).get("cached_tokens")),
        output_tokens=as_int(u.get("completion_tokens")),
        reasoning_tokens=as_int(as_dict(u.get("completion_tokens_details")).get("reasoning_tokens")),
    )


class Reassembler(EventReassembler):
    """``data:`` chunks -> ``Reassembled`` (``[DONE]`` is the terminal event)."""

    def __init__(self) -> None:
        super().__init__()
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None

    def _on_text(self, data: str) -> None:
        if data.strip() == "[DONE]":
            self.r.terminal = True

    def _on_object(self, kind: str | None, obj: dict[str, Any]) -> bool:
        if isinstance(obj.get("error"), dict):
            self.r.failed = True
            kind, self.r.error_message = error_fields(obj["error"], "")
            self.r.error_type = kind or None
            return False
        self.r.response_id = as_str(obj.get("id")) or self.r.response_id
        self.r.response_model = as_str(obj.get("model")) or self.r.response_model
        if obj.get("usage"):
            self.r.usage = usage(obj["usage"])
        first = False
        for choice in as_list(obj.get("choices")):
            choice = as_dict(choice)
            delta = as_dict(choice.get("delta"))
            content = as_str(delta.get("content"))
            if content:
                self._text.append(content)
                first = self._token() or first
            for tc in as_list(delta.get("tool_calls")):
                tc = as_dict(tc)
                first = self._token() or first
                slot = self._calls.setdefault(
                    as_index(tc.get("index"), 0), {"id": None, "name": "", "arguments": ""}
                )
                slot["id"] = as_str(tc.get("id")) or slot["id"]
                fn = as_dict(tc.get("function"))
                slot["name"] += text_of(fn.get("name"))
                slot["arguments"] += text_of(fn.get("arguments"))
            if as_str(choice.get("finish_reason")):
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


def from_json_body(body: dict[str, Any], r: Reassembled) -> None:
    """Fill ``r`` from a non-streamed completion (not an error body)."""
    r.usage = usage(body.get("usage"))
    choices = [as_dict(c) for c in as_list(body.get("choices"))]
    msg = as_dict(choices[0].get("message")) if choices else {}
    r.text = text_of(msg.get("content"))
    r.tool_calls = [
        {
            "call_id": as_dict(tc).get("id"),
            "name": as_dict(as_dict(tc).get("function")).get("name"),
            "type": "function",
            "arguments": as_dict(as_dict(tc).get("function")).get("arguments"),
        }
        for tc in as_list(msg.get("tool_calls"))
    ]
    r.finish_reasons = [c["finish_reason"] for c in choices if as_str(c.get("finish_reason"))]


def encode_events(
    completion: dict[str, Any],
    *,
    include_usage: bool = False,
    error: dict[str, Any] | None = None,
    split: Callable[[str], list[str]] = pieces,
) -> list[bytes]:
    """The ``data:`` chunks that stream ``completion`` (first choice): role chunk, content or
    tool-call deltas, then the finish chunk, a usage chunk (with ``include_usage``) and
    ``[DONE]`` — or, with ``error`` (an error body), that body instead of the end."""
    base = {
        k: completion[k]
        for k in ("id", "created", "model", "system_fingerprint", "service_tier")
        if k in completion
    }
    chunk_base = {**base, "object": "chat.completion.chunk", **({"usage": None} if include_usage else {})}
    choices = as_list(completion.get("choices"))
    choice = as_dict(choices[0]) if choices else {}
    message = as_dict(choice.get("message"))
    calls = [as_dict(tc) for tc in as_list(message.get("tool_calls"))]

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        c = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return frame(None, {**chunk_base, "choices": [c]})

    frames = [chunk({"role": "assistant", "content": None if calls else "", "refusal": None})]
    for i, tc in enumerate(calls):
        fn = as_dict(tc.get("function"))
        head = {
            "index": i,
            "id": tc.get("id"),
            "type": "function",
            "function": {"name": fn.get("name"), "arguments": ""},
        }
        frames.append(chunk({"tool_calls": [head]}))
        frames += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
            for p in split(text_of(fn.get("arguments")))
        ]
    frames += [chunk({"content": p}) for p in split(text_of(message.get("content")))]
    if error is not None:
        frames.append(frame(None, error))
        return frames
    frames.append(chunk({}, as_str(choice.get("finish_reason")) or "stop"))
    if include_usage:
        frames.append(frame(None, {**chunk_base, "choices": [], "usage": completion.get("usage")}))
    frames.append(b"data: [DONE]\n\n")
    return frames
