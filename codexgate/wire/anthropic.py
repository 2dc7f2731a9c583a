"""Anthropic Messages: request messages, usage (normalised: input includes cache reads and
writes), the answer summary (from SSE events or the JSON body) and the SSE encoder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from codexgate.core.usage import Usage
from codexgate.wire.common import Api, EventReassembler, Reassembled, error_fields
from codexgate.wire.sse import frame, pieces
from codexgate.wire.values import as_dict, as_index, as_int, as_list, as_str, text_of

API = Api.ANTHROPIC
PATHS = ("/v1/messages",)


def input_items(body: Any) -> list[Any]:
    """The conversation messages of a request (``system`` is not one of them)."""
    return as_list(as_dict(body).get("messages"))


def usage(u: Any, prior: Usage | None = None) -> Usage | None:
    """Anthropic usage in Responses terms, merged into ``prior`` (``message_delta`` updates)."""
    if not isinstance(u, dict):
        return prior
    out = prior or Usage()
    base = as_int(u.get("input_tokens"))
    read = as_int(u.get("cache_read_input_tokens"))
    write = as_int(u.get("cache_creation_input_tokens"))
    if base is not None or read is not None or write is not None:
        # Anthropic's input_tokens excludes cache reads and writes; OTel's includes them.
        out.input_tokens = (base or 0) + (read or 0) + (write or 0)
        out.cache_read_tokens = read or 0
        out.cache_creation_tokens = write or 0
    if as_int(u.get("output_tokens")) is not None:
        out.output_tokens = as_int(u.get("output_tokens"))
    return out


def summarise_content(content: Any, r: Reassembled) -> None:
    blocks = [b for b in as_list(content) if isinstance(b, dict)]
    r.text = "".join(text_of(b.get("text")) for b in blocks if b.get("type") == "text")
    r.reasoning = "".join(text_of(b.get("thinking")) for b in blocks if b.get("type") == "thinking")
    r.tool_calls = [
        {
            "call_id": b.get("id"),
            "name": b.get("name"),
            "type": "tool_use",
            "arguments": json.dumps(b.get("input")),
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]


class Reassembler(EventReassembler):
    """SSE events -> ``Reassembled`` (``message_stop`` is the terminal event)."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}
        self._stop: str | None = None
        self._message: dict[str, Any] = {}

    def _on_object(self, kind: str | None, obj: dict[str, Any]) -> bool:
        first = False
        if kind == "message_start":
            self._message = dict(as_dict(obj.get("message")))
            self.r.response_id = as_str(self._message.get("id"))
            self.r.response_model = as_str(self._message.get("model"))
            self.r.usage = usage(self._message.get("usage"))
        elif kind == "content_block_start":
            self._blocks[as_index(obj.get("index"), 0)] = dict(as_dict(obj.get("content_block")))
        elif kind == "content_block_delta":
            idx = as_index(obj.get("index"), 0)
            block = self._blocks.setdefault(idx, {"type": "text", "text": ""})
            delta = as_dict(obj.get("delta"))
            first = self._token() or first
            if delta.get("type") == "text_delta":
                block["text"] = text_of(block.get("text")) + text_of(delta.get("text"))
            elif delta.get("type") == "input_json_delta":
                self._json.setdefault(idx, []).append(text_of(delta.get("partial_json")))
            elif delta.get("type") == "thinking_delta":
                block["thinking"] = text_of(block.get("thinking")) + text_of(delta.get("thinking"))
        elif kind == "message_delta":
            self._stop = as_str(as_dict(obj.get("delta")).get("stop_reason")) or self._stop
            self.r.usage = usage(obj.get("usage"), self.r.usage)
        elif kind == "message_stop":
            self.r.terminal = True
        elif kind == "error":
            self.r.failed = True
            self.r.error_type, self.r.error_message = error_fields(obj.get("error"), "error")
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
                except (ValueError, RecursionError):
                    block["input"] = raw
            content.append(block)
        r.response = {**self._message, "content": content, "stop_reason": self._stop}
        summarise_content(content, r)
        r.finish_reasons = [self._stop] if self._stop else []
        return r


def from_json_body(body: dict[str, Any], r: Reassembled) -> None:
    """Fill ``r`` from a non-streamed message (not an error body)."""
    r.usage = usage(body.get("usage"))
    summarise_content(body.get("content"), r)
    stop = as_str(body.get("stop_reason"))
    r.finish_reasons = [stop] if stop else []


def encode_events(
    message: dict[str, Any],
    *,
    error: dict[str, Any] | None = None,
    split: Callable[[str], list[str]] = pieces,
) -> list[bytes]:
    """The SSE events that stream ``message``: ``message_start``, ``ping``, per content block its
    start / deltas (text, tool-use JSON, thinking) / stop, then ``message_delta`` and
    ``message_stop`` — or, with ``error`` (an error object), an ``error`` event instead."""

    def ev(kind: str, **fields: Any) -> bytes:
        return frame(kind, {"type": kind, **fields})

    u = as_dict(message.get("usage"))
    started = {**message, "content": [], "stop_reason": None, "usage": {**u, "output_tokens": 1}}
    frames = [ev("message_start", message=started), ev("ping")]
    for idx, block in enumerate(as_list(message.get("content"))):
        block = as_dict(block)
        kind = block.get("type")
        if kind == "tool_use":
            frames.append(ev("content_block_start", index=idx, content_block={**block, "input": {}}))
            raw = block.get("input")
            text = raw if isinstance(raw, str) else json.dumps(raw)
            frames += [
                ev("content_block_delta", index=idx, delta={"type": "input_json_delta", "partial_json": p})
                for p in split(text)
            ]
        elif kind == "thinking":
            frames.append(ev("content_block_start", index=idx, content_block={**block, "thinking": ""}))
            frames += [
                ev("content_block_delta", index=idx, delta={"type": "thinking_delta", "thinking": p})
                for p in split(text_of(block.get("thinking")))
            ]
        else:
            frames.append(ev("content_block_start", index=idx, content_block={**block, "text": ""}))
            frames += [
                ev("content_block_delta", index=idx, delta={"type": "text_delta", "text": p})
                for p in split(text_of(block.get("text")))
            ]
        frames.append(ev("content_block_stop", index=idx))
    if error is not None:
        frames.append(ev("error", error=error))
        return frames
    frames.append(
        ev(
            "message_delta",
            delta={"stop_reason": message.get("stop_reason"), "stop_sequence": message.get("stop_sequence")},
            usage={"output_tokens": u.get("output_tokens")},
        )
    )
    frames.append(ev("message_stop"))
    return frames
