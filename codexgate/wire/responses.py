"""OpenAI Responses API: request input items, usage, the answer summary (from SSE events or the
JSON body) and the SSE encoder (a response object -> its event stream).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from codexgate.core.usage import Usage
from codexgate.wire.common import Api, EventReassembler, Reassembled, error_fields
from codexgate.wire.sse import frame, pieces
from codexgate.wire.values import as_dict, as_index, as_int, as_list, as_str, text_of

API = Api.RESPONSES
PATHS = ("/v1/responses", "/responses")
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
FIRST_TOKEN_EVENTS = (
    "response.output_text.delta",
    "response.reasoning_summary_text.delta",
    "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta",
)


def input_items(body: Any) -> list[Any]:
    """The conversation items of a request (``input``; a plain string is one user message)."""
    inp = as_dict(body).get("input")
    if isinstance(inp, str):
        return [{"type": "message", "role": "user", "content": inp}]
    return as_list(inp)


def usage(u: Any) -> Usage | None:
    """``usage`` of a response object (input includes cached, output includes reasoning)."""
    if not isinstance(u, dict):
        return None
    details = as_dict(u.get("input_tokens_details"))
    return Usage(
        input_tokens=as_int(u.get("input_tokens")),
        cache_read_tokens=as_int(details.get("cached_tokens")),
        # not sent by OpenAI; the Anthropic translation fills it, so cache writes are priced as such
        cache_creation_tokens=as_int(details.get("cache_creation_tokens")),
        output_tokens=as_int(u.get("output_tokens")),
        reasoning_tokens=as_int(as_dict(u.get("output_tokens_details")).get("reasoning_tokens")),
    )


def summarise_output(output: Any, r: Reassembled) -> None:
    """Fill ``r.text``, ``r.reasoning`` and ``r.tool_calls`` from a response's ``output`` items."""
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in as_list(output):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            for part in as_list(item.get("content")):
                if isinstance(part, dict) and part.get("type") in ("output_text", "text"):
                    texts.append(text_of(part.get("text")))
        elif kind == "reasoning":
            for part in as_list(item.get("summary")):
                if isinstance(part, dict):
                    reasoning.append(text_of(part.get("text")))
        elif kind in ("function_call", "custom_tool_call", "local_shell_call"):
            if kind == "local_shell_call":
                name, args = "local_shell", json.dumps(item.get("action"))
            else:
                name = item.get("name")
                args = item.get("arguments") if kind == "function_call" else item.get("input")
            calls.append({"call_id": item.get("call_id"), "name": name, "type": kind, "arguments": args})
    r.text = "".join(texts)
    r.reasoning = "\n".join(x for x in reasoning if x)
    r.tool_calls = calls


class Reassembler(EventReassembler):
    """SSE events -> ``Reassembled``. ``on_event`` per event, ``result()`` at any time."""

    def __init__(self) -> None:
        super().__init__()
        self._items: dict[int, dict[str, Any]] = {}
        self._text: list[str] = []
        self._reasoning: list[str] = []

    def _on_object(self, kind: str | None, obj: dict[str, Any]) -> bool:
        first = False
        if kind in FIRST_TOKEN_EVENTS:
            first = self._token() or first
            if kind == "response.output_text.delta":
                self._text.append(text_of(obj.get("delta")))
            elif kind == "response.reasoning_summary_text.delta":
                self._reasoning.append(text_of(obj.get("delta")))
        elif kind == "response.created":
            resp = as_dict(obj.get("response"))
            self.r.response_id = as_str(resp.get("id"))
            self.r.response_model = as_str(resp.get("model"))
        elif kind == "response.output_item.done":
            if isinstance(obj.get("item"), dict):
                self._items[as_index(obj.get("output_index"), len(self._items))] = obj["item"]
        elif kind in TERMINAL:
            self._terminal(kind, as_dict(obj.get("response")))
        elif kind == "error":
            err = obj.get("error") if isinstance(obj.get("error"), dict) else obj
            self.r.failed = True
            self.r.error_type, self.r.error_message = error_fields(err, "error")
        return first

    def _terminal(self, kind: str, resp: dict[str, Any]) -> None:
        r = self.r
        r.terminal = True
        r.response = resp
        r.response_id = as_str(resp.get("id")) or r.response_id
        r.response_model = as_str(resp.get("model")) or r.response_model
        r.usage = usage(resp.get("usage"))
        r.finish_reasons = [as_str(resp.get("status")) or kind.split(".")[-1]]
        if kind == "response.incomplete":
            reason = as_str(as_dict(resp.get("incomplete_details")).get("reason"))
            if reason:
                r.finish_reasons = [reason]
        if kind == "response.failed":
            r.failed = True
            r.error_type, r.error_message = error_fields(resp.get("error"), "response.failed")

    def result(self) -> Reassembled:
        r = self.r
        if r.response is not None and as_list(r.response.get("output")):
            summarise_output(r.response["output"], r)
            return r
        items = [self._items[k] for k in sorted(self._items)]
        if r.response is None:
            r.response = {
                "id": r.response_id,
                "model": r.response_model,
                "status": "incomplete",
                "output": items,
            }
        else:
            r.response = {**r.response, "output": items}
        summarise_output(items, r)
        r.text = r.text or "".join(self._text)
        r.reasoning = r.reasoning or "".join(self._reasoning)
        return r


def from_json_body(body: Any, r: Reassembled) -> None:
    """Fill ``r`` from a non-streamed response object (not an error body)."""
    r.usage = usage(body.get("usage"))
    summarise_output(body.get("output"), r)
    status = as_str(body.get("status"))
    r.finish_reasons = [status] if status else []


# --------------------------------------------------------------------------- encoder


# tool-call item type -> (the field its text streams into, the event-name stem of that stream)
_CALL_STREAMS = {
    "function_call": ("arguments", "response.function_call_arguments"),
    "custom_tool_call": ("input", "response.custom_tool_call_input"),
}


class _Events:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def __call__(self, kind: str, **fields: Any) -> None:
        self.frames.append(frame(kind, {"type": kind, "sequence_number": len(self.frames), **fields}))


def _item_events(ev: _Events, idx: int, item: Any, split: Callable[[str], list[str]]) -> None:
    if not isinstance(item, dict):
        ev("response.output_item.added", output_index=idx, item=item)
        ev("response.output_item.done", output_index=idx, item=item)
        return
    ids = {"item_id": item.get("id"), "output_index": idx}
    kind = item.get("type")
    if kind == "message":
        ev(
            "response.output_item.added",
            output_index=idx,
            item={**item, "status": "in_progress", "content": []},
        )
        for j, part in enumerate(as_list(item.get("content"))):
            if not isinstance(part, dict):
                continue
            text = text_of(part.get("text"))
            ev("response.content_part.added", **ids, content_index=j, part={**part, "text": ""})
            if part.get("type") == "output_text":
                for delta in split(text):
                    ev("response.output_text.delta", **ids, content_index=j, delta=delta, logprobs=[])
                ev("response.output_text.done", **ids, content_index=j, text=text, logprobs=[])
            ev("response.content_part.done", **ids, content_index=j, part=part)
    elif kind in _CALL_STREAMS:
        field, stream = _CALL_STREAMS[kind]
        text = text_of(item.get(field))
        ev("response.output_item.added", output_index=idx, item={**item, "status": "in_progress", field: ""})
        for delta in split(text):
            ev(f"{stream}.delta", **ids, delta=delta)
        named = {"name": item.get("name")} if kind == "function_call" else {}
        ev(f"{stream}.done", **ids, **named, **{field: text})
    elif kind == "reasoning":
        ev("response.output_item.added", output_index=idx, item={**item, "summary": []})
        for n, part in enumerate(as_list(item.get("summary"))):
            if not isinstance(part, dict):
                continue
            text = text_of(part.get("text"))
            ev("response.reasoning_summary_part.added", **ids, summary_index=n, part={**part, "text": ""})
            for delta in split(text):
                ev("response.reasoning_summary_text.delta", **ids, summary_index=n, delta=delta)
            ev("response.reasoning_summary_text.done", **ids, summary_index=n, text=text)
            ev("response.reasoning_summary_part.done", **ids, summary_index=n, part=part)
    else:
        ev("response.output_item.added", output_index=idx, item=item)
    ev("response.output_item.done", output_index=idx, item=item)


def encode_events(
    response: dict[str, Any],
    *,
    error: dict[str, Any] | None = None,
    split: Callable[[str], list[str]] = pieces,
) -> list[bytes]:
    """The SSE frames that stream ``response`` (a final response object): ``response.created``,
    ``response.in_progress``, per output item its added/delta/done events (messages, function
    and custom-tool calls, reasoning summaries, anything else as added+done), then
    ``response.completed`` — or ``response.failed`` carrying ``error`` when given. Feeding the
    frames to ``Reassembler`` gives back ``response``'s text, reasoning, tool calls and usage."""
    ev = _Events()
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    ev("response.created", response=started)
    ev("response.in_progress", response=started)
    for idx, item in enumerate(as_list(response.get("output"))):
        _item_events(ev, idx, item, split)
    if error is not None:
        ev("response.failed", response={**response, "status": "failed", "error": error})
    else:
        ev("response.completed", response=response)
    return ev.frames


def encode_sse(response: dict[str, Any], **kwargs: Any) -> bytes:
    """``encode_events`` as one body."""
    return b"".join(encode_events(response, **kwargs))
