"""Responses API <-> Chat Completions, for OpenAI-compatible upstreams without the Responses API
(vLLM, Ollama, OpenRouter, Azure deployments).

Requests (``request_to_chat``): ``instructions`` and developer/system messages -> ``system``
messages; user/assistant messages -> messages (text parts joined; images as ``image_url``
parts); ``function_call`` -> the assistant message's ``tool_calls``; ``function_call_output`` ->
a ``tool`` message; Codex's freeform ``custom`` tools -> functions with one string parameter
``input`` (and back). Reasoning items, hosted tools and other items without a Chat counterpart
are dropped and named in ``Translated.dropped``.

Answers: ``ResponsesStream`` turns ``data:`` chunks into Responses SSE as they arrive (the first
chunk -> ``response.created``; content deltas -> a message item; ``tool_calls`` deltas ->
function-call items; ``[DONE]`` -> ``response.completed``, or ``response.incomplete`` for
``finish_reason: length``; an ``error`` chunk -> ``response.failed``). Usage (asked for with
``stream_options.include_usage``): ``prompt_tokens`` -> ``input_tokens``, cached and reasoning
token details kept. ``json_to_responses`` does the same for a whole completion or error body.
"""

from __future__ import annotations

import json
import time
from typing import Any

from codexgate.wire.sse import SseParser, frame
from codexgate.wire.translate import Translated
from codexgate.wire.translate.anthropic import CUSTOM_INPUT
from codexgate.wire.values import as_dict, as_int, as_list, as_str, text_of


def _content(content: Any, t: Translated) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in as_list(content):
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": text_of(part.get("text"))})
        elif kind == "input_image" and as_str(part.get("image_url")):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        elif kind == "refusal":
            parts.append({"type": "text", "text": text_of(part.get("refusal"))})
        else:
            t.note(f"message part {kind!r}")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tools(tools: Any, t: Translated) -> tuple[list[dict[str, Any]], set[str]]:
    out: list[dict[str, Any]] = []
    custom: set[str] = set()
    for tool in as_list(tools):
        if not isinstance(tool, dict):
            continue
        kind, name = tool.get("type"), as_str(tool.get("name"))
        if kind == "function" and name:
            fn: dict[str, Any] = {"name": name, "parameters": tool.get("parameters") or {"type": "object"}}
            if tool.get("description"):
                fn["description"] = str(tool["description"])
            out.append({"type": "function", "function": fn})
        elif kind == "custom" and name:
            custom.add(name)
            desc = str(tool.get("description") or f"The {name} tool.")
            fmt = as_dict(tool.get("format"))
            if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
                desc += (
                    f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
                )
            schema = {
                "type": "object",
                "properties": {CUSTOM_INPUT: {"type": "string"}},
                "required": [CUSTOM_INPUT],
            }
            out.append(
                {"type": "function", "function": {"name": name, "description": desc, "parameters": schema}}
            )
        else:
            t.note(f"tool of type {kind!r} (hosted tools run only at their own provider)")
    return out, custom


def request_to_chat(body: dict[str, Any], model: str) -> Translated:
    """The Chat Completions request for a Responses request ``body``, asking for ``model``."""
    t = Translated(body={})
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    raw = body.get("input")
    items = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else as_list(raw)

    def assistant() -> dict[str, Any]:
        if messages and messages[-1]["role"] == "assistant" and "tool_calls" in messages[-1]:
            return messages[-1]
        msg: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": []}
        messages.append(msg)
        return msg

    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            content = _content(item.get("content"), t)
            if role in ("developer", "system"):
                messages.append({"role": "system", "content": content})
            elif role in ("user", "assistant"):
                messages.append({"role": role, "content": content})
        elif kind in ("function_call", "custom_tool_call"):
            args = (
                text_of(item.get("arguments")) or "{}"
                if kind == "function_call"
                else json.dumps({CUSTOM_INPUT: text_of(item.get("input"))})
            )
            cid = str(item.get("call_id") or item.get("id"))
            assistant()["tool_calls"].append(
                {
                    "id": cid,
                    "type": "function",
                    "function": {"name": str(item.get("name")), "arguments": args},
                }
            )
        elif kind in ("function_call_output", "custom_tool_call_output"):
            out = item.get("output")
            text = out if isinstance(out, str) else _content(out, t)
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id")),
                    "content": text if isinstance(text, str) else json.dumps(text),
                }
            )
        elif kind == "reasoning":
            t.note("reasoning items (encrypted for their own provider)")
        else:
            t.note(f"input items of type {kind!r}")
    out: dict[str, Any] = {"model": model, "messages": messages}
    tools, custom = _tools(body.get("tools"), t)
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        if choice in ("auto", "none", "required"):
            out["tool_choice"] = choice
        elif isinstance(choice, dict) and choice.get("name"):
            out["tool_choice"] = {"type": "function", "function": {"name": str(choice["name"])}}
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    if as_int(body.get("max_output_tokens")):
        out["max_tokens"] = as_int(body.get("max_output_tokens"))
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float):
            out[name] = body[name]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    effort = as_dict(body.get("reasoning")).get("effort")
    if isinstance(effort, str) and effort not in ("none",):
        out["reasoning_effort"] = effort
    t.body = out
    t.custom_tools = frozenset(custom)
    return t


# --------------------------------------------------------------------------- answers


def responses_usage(u: dict[str, Any]) -> dict[str, Any]:
    prompt = as_int(u.get("prompt_tokens")) or 0
    completion = as_int(u.get("completion_tokens")) or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": as_int(as_dict(u.get("prompt_tokens_details")).get("cached_tokens")) or 0
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": as_int(as_dict(u.get("completion_tokens_details")).get("reasoning_tokens"))
            or 0
        },
        "total_tokens": as_int(u.get("total_tokens")) or prompt + completion,
    }


def _call_item(call_id: str, name: str, args: str, custom: frozenset[str]) -> dict[str, Any]:
    if name in custom:
        try:
            value = json.loads(args).get(CUSTOM_INPUT)
        except (ValueError, AttributeError):
            value = None
        return {"type": "custom_tool_call", "id": f"ctc_{call_id}", "call_id": call_id, "name": name,
                "input": value if isinstance(value, str) else args, "status": "completed"}  # fmt: skip
    return {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
            "arguments": args, "status": "completed"}  # fmt: skip


def json_to_responses(status: int, raw: bytes, custom: frozenset[str] = frozenset()) -> bytes:
    """A whole Chat completion (or error body) as the Responses client expects it."""
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    if status >= 400 or isinstance(doc.get("error"), dict):
        err = as_dict(doc.get("error"))
        return json.dumps(
            {
                "error": {
                    "message": as_str(err.get("message")) or f"HTTP {status}",
                    "type": err.get("type") or "server_error",
                    "code": err.get("code"),
                    "param": None,
                }
            }  # fmt: skip
        ).encode()
    choice = as_dict(as_list(doc.get("choices"))[0] if as_list(doc.get("choices")) else {})
    msg = as_dict(choice.get("message"))
    cid = as_str(doc.get("id")) or "chatcmpl"
    output: list[dict[str, Any]] = []
    if text_of(msg.get("content")):
        output.append({"type": "message", "id": f"msg_{cid}", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": text_of(msg.get("content")), "annotations": []}]})  # fmt: skip
    for call in as_list(msg.get("tool_calls")):
        fn = as_dict(as_dict(call).get("function"))
        output.append(
            _call_item(
                str(as_dict(call).get("id")), str(fn.get("name")), text_of(fn.get("arguments")), custom
            )
        )
    incomplete = choice.get("finish_reason") == "length"
    out: dict[str, Any] = {
        "id": f"resp_{cid}",
        "object": "response",
        "created_at": as_int(doc.get("created")) or int(time.time()),
        "model": as_str(doc.get("model")),
        "status": "incomplete" if incomplete else "completed",
        "output": output,
        "usage": responses_usage(as_dict(doc.get("usage"))) if doc.get("usage") else None,
    }
    if incomplete:
        out["incomplete_details"] = {"reason": "max_output_tokens"}
    return json.dumps(out).encode()


class ResponsesStream:
    """Chat ``data:`` chunks in, Responses SSE out (``feed`` per chunk, ``close`` at the end).
    Exactly one terminal event when the upstream ended properly (``[DONE]``) or sent an error."""

    def __init__(self, custom_tools: frozenset[str] = frozenset()) -> None:
        self.custom = custom_tools
        self.parser = SseParser()
        self.seq = 0
        self.started = False
        self.terminal = False
        self.rid = "resp_chat"
        self.model: str | None = None
        self.created = int(time.time())
        self.usage: dict[str, Any] | None = None
        self.finish: str | None = None
        self.text: list[str] | None = None  # the open message item's text
        self.text_index = -1
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool_call index -> state
        self.output: list[tuple[int, dict[str, Any]]] = []
        self.next_output = 0

    def _ev(self, kind: str, **fields: Any) -> bytes:
        data = frame(kind, {"type": kind, "sequence_number": self.seq, **fields})
        self.seq += 1
        return data

    def feed(self, chunk: bytes) -> bytes:
        return b"".join(self._on(ev.data) for ev in self.parser.feed(chunk))

    def close(self) -> bytes:
        return b"".join(self._on(ev.data) for ev in self.parser.close())

    def _resp(self, status: str) -> dict[str, Any]:
        return {"id": self.rid, "object": "response", "created_at": self.created, "model": self.model,
                "status": status, "output": [item for _, item in sorted(self.output, key=lambda x: x[0])],
                "usage": responses_usage(self.usage) if self.usage else None}  # fmt: skip

    def _start(self, doc: dict[str, Any]) -> bytes:
        if self.started:
            return b""
        self.started = True
        self.rid = f"resp_{as_str(doc.get('id')) or 'chat'}"
        self.model = as_str(doc.get("model"))
        self.created = as_int(doc.get("created")) or self.created
        started = {**self._resp("in_progress"), "output": [], "usage": None}
        return self._ev("response.created", response=started) + self._ev(
            "response.in_progress", response=started
        )

    def _on(self, data: str) -> bytes:
        if self.terminal:
            return b""
        if data.strip() == "[DONE]":
            return self._finish()
        try:
            doc = json.loads(data)
        except ValueError:
            return b""
        if not isinstance(doc, dict):
            return b""
        if isinstance(doc.get("error"), dict):
            self.terminal = True
            err = doc["error"]
            resp = {**self._resp("failed"), "error": {"code": as_str(err.get("code")) or "server_error",
                                                      "message": as_str(err.get("message")) or "error"}}  # fmt: skip
            return self._start(doc) + self._ev("response.failed", response=resp)
        out = bytearray(self._start(doc))
        if doc.get("usage"):
            self.usage = as_dict(doc["usage"])
        for choice in as_list(doc.get("choices")):
            choice = as_dict(choice)
            delta = as_dict(choice.get("delta"))
            content = delta.get("content")
            if isinstance(content, str) and content:
                if self.text is None:
                    self.text, self.text_index = [], self.next_output
                    self.next_output += 1
                    item = {"type": "message", "id": f"msg_{self.rid}", "role": "assistant",
                            "status": "in_progress", "content": []}  # fmt: skip
                    out += self._ev("response.output_item.added", output_index=self.text_index, item=item)
                    out += self._ev("response.content_part.added", item_id=f"msg_{self.rid}",
                                    output_index=self.text_index, content_index=0,
                                    part={"type": "output_text", "text": "", "annotations": []})  # fmt: skip
                self.text.append(content)
                out += self._ev("response.output_text.delta", item_id=f"msg_{self.rid}", output_index=self.text_index,
                                content_index=0, delta=content, logprobs=[])  # fmt: skip
            for call in as_list(delta.get("tool_calls")):
                call = as_dict(call)
                idx = as_int(call.get("index")) or 0
                fn = as_dict(call.get("function"))
                st = self.calls.get(idx)
                if st is None:
                    cid = as_str(call.get("id")) or f"call_{idx}"
                    name = as_str(fn.get("name")) or ""
                    st = {"id": cid, "name": name, "args": [], "out": self.next_output}
                    self.next_output += 1
                    self.calls[idx] = st
                    custom = name in self.custom
                    item = ({"type": "custom_tool_call", "id": f"ctc_{cid}", "call_id": cid, "name": name, "input": ""}
                            if custom else
                            {"type": "function_call", "id": f"fc_{cid}", "call_id": cid, "name": name, "arguments": ""})  # fmt: skip
                    out += self._ev(
                        "response.output_item.added",
                        output_index=st["out"],
                        item={**item, "status": "in_progress"},
                    )
                piece = text_of(fn.get("arguments"))
                if piece:
                    st["args"].append(piece)
                    if st["name"] not in self.custom:
                        out += self._ev("response.function_call_arguments.delta", item_id=f"fc_{st['id']}",
                                        output_index=st["out"], delta=piece)  # fmt: skip
            if choice.get("finish_reason"):
                self.finish = as_str(choice.get("finish_reason"))
        return bytes(out)

    def _finish(self) -> bytes:
        self.terminal = True
        out = bytearray()
        if self.text is not None:
            text = "".join(self.text)
            part = {"type": "output_text", "text": text, "annotations": []}
            ids = {"item_id": f"msg_{self.rid}", "output_index": self.text_index}
            out += self._ev("response.output_text.done", **ids, content_index=0, text=text, logprobs=[])
            out += self._ev("response.content_part.done", **ids, content_index=0, part=part)
            item = {"type": "message", "id": f"msg_{self.rid}", "role": "assistant", "status": "completed",
                    "content": [part]}  # fmt: skip
            out += self._ev("response.output_item.done", output_index=self.text_index, item=item)
            self.output.append((self.text_index, item))
        for idx in sorted(self.calls):
            st = self.calls[idx]
            item = _call_item(st["id"], st["name"], "".join(st["args"]) or "{}", self.custom)
            ids = {"item_id": item["id"], "output_index": st["out"]}
            if item["type"] == "function_call":
                out += self._ev("response.function_call_arguments.done", **ids, name=item["name"],
                                arguments=item["arguments"])  # fmt: skip
            else:
                out += self._ev("response.custom_tool_call_input.delta", **ids, delta=item["input"])
                out += self._ev("response.custom_tool_call_input.done", **ids, input=item["input"])
            out += self._ev("response.output_item.done", output_index=st["out"], item=item)
            self.output.append((st["out"], item))
        incomplete = self.finish == "length"
        resp = self._resp("incomplete" if incomplete else "completed")
        if incomplete:
            resp["incomplete_details"] = {"reason": "max_output_tokens"}
        out = bytearray(self._start({})) + out
        out += self._ev("response.incomplete" if incomplete else "response.completed", response=resp)
        return bytes(out)
