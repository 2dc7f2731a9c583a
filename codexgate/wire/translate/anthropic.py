"""Responses API <-> Anthropic Messages.

Requests (``request_to_anthropic``): ``instructions`` and developer/system messages -> ``system``;
user/assistant messages -> messages (kept as sent; tool calls join the assistant turn before
them, tool results the run of results before them; a leading assistant turn gets a short user
turn before it); ``function_call`` -> assistant ``tool_use{id: call_id}``;
``function_call_output`` -> user ``tool_result{tool_use_id}``; Codex's freeform ``custom`` tools
(``apply_patch``) -> a tool with one string property ``input`` (and back); ``local_shell_call``
-> ``tool_use`` of a ``local_shell`` tool. Encrypted reasoning, web-search calls, compaction
items and hosted tools cannot be sent to another provider: they are dropped and named in
``Translated.dropped``.

Answers: ``ResponsesStream`` turns Anthropic SSE into Responses SSE as it arrives
(``message_start`` -> ``response.created``; text / tool_use / thinking blocks -> output items
with their deltas; ``message_stop`` -> ``response.completed``, or ``response.incomplete`` for
``max_tokens``; ``error`` -> ``response.failed``). ``json_to_responses`` does the same for a
whole JSON answer or error body. Usage: Responses ``input_tokens`` = input + cache read + cache
write, ``cached_tokens`` = cache read (the cache write count is kept in
``input_tokens_details.cache_creation_tokens``).

All functions are pure (the stream translator keeps only its own state) and never raise on
malformed provider output: what cannot be read is skipped.
"""

from __future__ import annotations

import json
import time
from typing import Any

from codexgate.wire.sse import SseParser, frame
from codexgate.wire.translate import Translated
from codexgate.wire.values import as_dict, as_int, as_list, as_str, text_of

DEFAULT_MAX_TOKENS = 16384
CUSTOM_INPUT = "input"  # the one property of a freeform tool's input schema
LOCAL_SHELL = "local_shell"

# Anthropic stop_reason -> (Responses status, incomplete reason)
_STOP = {
    "end_turn": ("completed", None),
    "tool_use": ("completed", None),
    "stop_sequence": ("completed", None),
    "pause_turn": ("completed", None),
    "refusal": ("completed", None),
    "max_tokens": ("incomplete", "max_output_tokens"),
    "model_context_window_exceeded": ("incomplete", "max_output_tokens"),
}
# Anthropic error type -> (HTTP status, OpenAI error type, Responses error code)
_ERRORS = {
    "invalid_request_error": (400, "invalid_request_error", "invalid_request"),
    "authentication_error": (401, "invalid_request_error", "invalid_api_key"),
    "permission_error": (403, "permission_error", "permission_denied"),
    "not_found_error": (404, "invalid_request_error", "model_not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_exceeded", "rate_limit_exceeded"),
    "api_error": (500, "server_error", "server_error"),
    "overloaded_error": (503, "server_error", "server_is_overloaded"),
}


# --------------------------------------------------------------------------- requests


def _text_parts(content: Any, t: Translated) -> list[dict[str, Any]]:
    """Responses message content -> Anthropic content blocks (text and images)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in as_list(content):
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text"):
            text = text_of(part.get("text"))
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = as_str(part.get("image_url"))
            if url and url.startswith("data:") and ";base64," in url:
                media, _, data = url[5:].partition(";base64,")
                blocks.append(
                    {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
                )
            elif url:
                blocks.append({"type": "image", "source": {"type": "url", "url": url}})
            else:
                t.note("input_image without image_url (file ids cannot be sent)")
        elif kind == "refusal":
            text = text_of(part.get("refusal"))
            if text:
                blocks.append({"type": "text", "text": text})
        else:
            t.note(f"message part {kind!r}")
    return blocks


def _tool_output(output: Any) -> str | list[dict[str, Any]]:
    if isinstance(output, str):
        return output
    blocks = []
    for part in as_list(output):
        if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text"):
            blocks.append({"type": "text", "text": text_of(part.get("text"))})
    return blocks or json.dumps(output)


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return {"_raw_arguments": raw}
        return value if isinstance(value, dict) else {"_value": value}
    return {}


def _tools(tools: Any, t: Translated) -> tuple[list[dict[str, Any]], set[str]]:
    out: list[dict[str, Any]] = []
    custom: set[str] = set()
    for tool in as_list(tools):
        if not isinstance(tool, dict):
            continue
        kind = tool.get("type")
        name = as_str(tool.get("name"))
        if kind == "function" and name:
            schema = tool.get("parameters") if isinstance(tool.get("parameters"), dict) else None
            entry = {"name": name, "input_schema": schema or {"type": "object", "properties": {}}}
            if tool.get("description"):
                entry["description"] = str(tool["description"])
            out.append(entry)
        elif kind == "custom" and name:
            custom.add(name)
            desc = str(tool.get("description") or "")
            fmt = as_dict(tool.get("format"))
            if fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
                desc += (
                    f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
                )
            out.append(
                {
                    "name": name,
                    "description": desc.strip() or f"The {name} tool.",
                    "input_schema": {
                        "type": "object",
                        "properties": {
                            CUSTOM_INPUT: {"type": "string", "description": f"The raw input of {name}."}
                        },
                        "required": [CUSTOM_INPUT],
                    },
                }
            )
        elif kind == "local_shell":
            out.append(
                {
                    "name": LOCAL_SHELL,
                    "description": "Run a command on the local machine.",
                    "input_schema": {
                        "type": "object",
                        "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                        "required": ["command"],
                    },
                }
            )
        else:
            t.note(f"tool of type {kind!r} (hosted tools run only at their own provider)")
    return out, custom


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice in (None, "auto"):
        out = {"type": "auto"} if parallel is False else None
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("name"):
        out = {"type": "tool", "name": str(choice["name"])}
    else:
        out = None
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def request_to_anthropic(
    body: dict[str, Any], model: str, *, max_tokens: int = DEFAULT_MAX_TOKENS
) -> Translated:
    """The Anthropic Messages request for a Responses request ``body``, asking for ``model``."""
    t = Translated(body={})
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        """Messages stay as the client sent them (the API joins consecutive same-role turns);
        a tool call joins the assistant turn before it and a tool result the run of results
        before it, so every ``tool_result`` directly follows its ``tool_use`` turn."""
        if not blocks:
            return
        kinds = {b["type"] for b in blocks}
        prev = messages[-1] if messages else None
        joins = (
            prev is not None
            and prev["role"] == role
            and (
                (role == "assistant" and kinds == {"tool_use"})
                or (
                    role == "user"
                    and kinds == {"tool_result"}
                    and all(b["type"] == "tool_result" for b in prev["content"])
                )
            )
        )
        if joins:
            prev["content"].extend(blocks)  # type: ignore[index]
        else:
            messages.append({"role": role, "content": list(blocks)})

    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        system.append({"type": "text", "text": instructions})
    raw_input = body.get("input")
    items = (
        [{"type": "message", "role": "user", "content": raw_input}]
        if isinstance(raw_input, str)
        else as_list(raw_input)
    )
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            blocks = _text_parts(item.get("content"), t)
            if role in ("developer", "system"):
                system.extend(b for b in blocks if b["type"] == "text")
            elif role in ("user", "assistant"):
                add(role, blocks)
        elif kind == "function_call":
            add(
                "assistant",
                [
                    {
                        "type": "tool_use",
                        "id": str(item.get("call_id") or item.get("id")),
                        "name": str(item.get("name")),
                        "input": _arguments(item.get("arguments")),
                    }
                ],
            )
        elif kind == "custom_tool_call":
            add(
                "assistant",
                [
                    {
                        "type": "tool_use",
                        "id": str(item.get("call_id") or item.get("id")),
                        "name": str(item.get("name")),
                        "input": {CUSTOM_INPUT: text_of(item.get("input"))},
                    }
                ],
            )
        elif kind == "local_shell_call":
            action = as_dict(item.get("action"))
            add(
                "assistant",
                [
                    {
                        "type": "tool_use",
                        "id": str(item.get("call_id") or item.get("id")),
                        "name": LOCAL_SHELL,
                        "input": {"command": as_list(action.get("command"))},
                    }
                ],
            )
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": str(item.get("call_id") or item.get("id")),
                        "content": _tool_output(item.get("output")),
                    }
                ],
            )
        elif kind == "reasoning":
            t.note("reasoning items (encrypted for their own provider)")
        else:
            t.note(f"input items of type {kind!r}")
    if messages and messages[0]["role"] != "user":
        messages.insert(0, {"role": "user", "content": [{"type": "text", "text": "(continue)"}]})
    if not messages:
        messages.append({"role": "user", "content": [{"type": "text", "text": "(empty)"}]})
    # prompt caching: the standing prefix (system) and the conversation so far
    if system:
        system[-1] = {**system[-1], "cache_control": {"type": "ephemeral"}}
    last = messages[-1]["content"]
    if last and last[-1].get("type") in ("text", "tool_result", "image"):
        last[-1] = {**last[-1], "cache_control": {"type": "ephemeral"}}
    out: dict[str, Any] = {
        "model": model,
        "max_tokens": as_int(body.get("max_output_tokens")) or max_tokens,
        "messages": messages,
    }
    if system:
        out["system"] = system
    tools, custom = _tools(body.get("tools"), t)
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    for name in ("temperature", "top_p"):
        if isinstance(body.get(name), int | float):
            out[name] = body[name]
    if body.get("stream"):
        out["stream"] = True
    if isinstance(body.get("reasoning"), dict) and body["reasoning"].get("effort") not in (
        None,
        "none",
        "minimal",
    ):
        t.note("reasoning effort (extended thinking is not requested: its signed blocks cannot round-trip)")
    fmt = as_dict(as_dict(body.get("text")).get("format"))
    if fmt.get("type") not in (None, "text"):
        t.note(f"text.format {fmt.get('type')!r} (structured output is not enforced)")
    t.body = out
    t.custom_tools = frozenset(custom)
    return t


# --------------------------------------------------------------------------- answers


def responses_usage(u: dict[str, Any]) -> dict[str, Any]:
    base = as_int(u.get("input_tokens")) or 0
    read = as_int(u.get("cache_read_input_tokens")) or 0
    write = as_int(u.get("cache_creation_input_tokens")) or 0
    out_tokens = as_int(u.get("output_tokens")) or 0
    total_in = base + read + write
    return {
        "input_tokens": total_in,
        "input_tokens_details": {"cached_tokens": read, "cache_creation_tokens": write},
        "output_tokens": out_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": total_in + out_tokens,
    }


def _error(err: Any) -> tuple[int, str, str, str]:
    """(status, OpenAI type, Responses code, message) of an Anthropic error object."""
    err = as_dict(err)
    kind = as_str(err.get("type")) or "api_error"
    status, openai_type, code = _ERRORS.get(kind, (500, "server_error", "server_error"))
    return status, openai_type, code, as_str(err.get("message")) or kind


def _item_of_block(
    block: dict[str, Any], custom: frozenset[str], idx: int, rid: str
) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {
            "type": "message",
            "id": f"msg_{rid}_{idx}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text_of(block.get("text")), "annotations": []}],
        }
    if kind == "tool_use":
        name = str(block.get("name"))
        call_id = str(block.get("id"))
        inp = block.get("input")
        if name in custom:
            value = as_dict(inp).get(CUSTOM_INPUT) if isinstance(inp, dict) else inp
            text = value if isinstance(value, str) else json.dumps(inp)
            return {
                "type": "custom_tool_call",
                "id": f"ctc_{call_id}",
                "call_id": call_id,
                "name": name,
                "input": text,
                "status": "completed",
            }
        if name == LOCAL_SHELL and name not in custom:
            cmd = as_list(as_dict(inp).get("command"))
            return {
                "type": "local_shell_call",
                "id": f"lsh_{call_id}",
                "call_id": call_id,
                "status": "completed",
                "action": {"type": "exec", "command": [str(c) for c in cmd]},
            }
        args = inp if isinstance(inp, str) else json.dumps(inp if inp is not None else {})
        return {
            "type": "function_call",
            "id": f"fc_{call_id}",
            "call_id": call_id,
            "name": name,
            "arguments": args,
            "status": "completed",
        }
    if kind == "thinking":
        return {
            "type": "reasoning",
            "id": f"rs_{rid}_{idx}",
            "summary": [{"type": "summary_text", "text": text_of(block.get("thinking"))}],
        }
    return None


def _response_object(
    rid: str,
    model: str | None,
    output: list[dict[str, Any]],
    stop: str | None,
    usage: dict[str, Any] | None,
    created: int,
) -> dict[str, Any]:
    status, reason = _STOP.get(stop or "end_turn", ("completed", None))
    doc: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": created,
        "model": model,
        "status": status,
        "output": output,
        "usage": responses_usage(usage) if usage is not None else None,
    }
    if reason:
        doc["incomplete_details"] = {"reason": reason}
    return doc


def json_to_responses(status: int, raw: bytes, custom: frozenset[str] = frozenset()) -> bytes:
    """A whole Anthropic JSON answer (or error body) as the Responses client expects it."""
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    doc = doc if isinstance(doc, dict) else {}
    if status >= 400 or doc.get("type") == "error":
        _, openai_type, code, message = _error(
            doc.get("error") or {"type": "api_error", "message": f"HTTP {status}"}
        )
        return json.dumps(
            {"error": {"message": message, "type": openai_type, "code": code, "param": None}}
        ).encode()
    msg_id = as_str(doc.get("id")) or "msg_unknown"
    rid = f"resp_{msg_id}"
    output = [
        item
        for i, b in enumerate(as_list(doc.get("content")))
        if isinstance(b, dict) and (item := _item_of_block(b, custom, i, msg_id)) is not None
    ]
    obj = _response_object(
        rid,
        as_str(doc.get("model")),
        output,
        as_str(doc.get("stop_reason")),
        as_dict(doc.get("usage")),
        int(time.time()),
    )
    return json.dumps(obj).encode()


class ResponsesStream:
    """Anthropic SSE bytes in, Responses SSE bytes out, event by event (``feed`` per chunk,
    ``close`` at the end). Emits exactly one terminal event when the provider sent one
    (``message_stop`` or ``error``); a stream cut before it gets none (the relay then ends it)."""

    def __init__(self, custom_tools: frozenset[str] = frozenset(), clock: Any = time.time) -> None:
        self.custom = custom_tools
        self.parser = SseParser()
        self.seq = 0
        self.rid = "resp_unknown"
        self.msg_id = "msg_unknown"
        self.model: str | None = None
        self.created = int(clock())
        self.usage: dict[str, Any] = {}
        self.stop: str | None = None
        self.blocks: dict[int, dict[str, Any]] = {}  # anthropic index -> block state
        self.output: list[dict[str, Any]] = []  # finished items, in output order
        self.next_output = 0
        self.terminal = False

    # -------------------------------------------------------------- plumbing
    def _ev(self, kind: str, **fields: Any) -> bytes:
        data = frame(kind, {"type": kind, "sequence_number": self.seq, **fields})
        self.seq += 1
        return data

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        for ev in self.parser.feed(chunk):
            try:
                doc = json.loads(ev.data)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out += self._on(as_str(doc.get("type")) or ev.event, doc)
        return bytes(out)

    def close(self) -> bytes:
        out = bytearray()
        for ev in self.parser.close():
            try:
                doc = json.loads(ev.data)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out += self._on(as_str(doc.get("type")) or ev.event, doc)
        return bytes(out)

    def _started(self) -> dict[str, Any]:
        return {
            "id": self.rid,
            "object": "response",
            "created_at": self.created,
            "model": self.model,
            "status": "in_progress",
            "output": [],
            "usage": None,
        }

    # -------------------------------------------------------------- events
    def _on(self, kind: str | None, doc: dict[str, Any]) -> bytes:
        if self.terminal:
            return b""
        if kind == "message_start":
            msg = as_dict(doc.get("message"))
            self.msg_id = as_str(msg.get("id")) or self.msg_id
            self.rid = f"resp_{self.msg_id}"
            self.model = as_str(msg.get("model"))
            self.usage.update(as_dict(msg.get("usage")))
            started = self._started()
            return self._ev("response.created", response=started) + self._ev(
                "response.in_progress", response=started
            )
        if kind == "content_block_start":
            return self._block_start(as_int(doc.get("index")) or 0, as_dict(doc.get("content_block")))
        if kind == "content_block_delta":
            return self._block_delta(as_int(doc.get("index")) or 0, as_dict(doc.get("delta")))
        if kind == "content_block_stop":
            return self._block_stop(as_int(doc.get("index")) or 0)
        if kind == "message_delta":
            self.stop = as_str(as_dict(doc.get("delta")).get("stop_reason")) or self.stop
            self.usage.update({k: v for k, v in as_dict(doc.get("usage")).items() if v is not None})
            return b""
        if kind == "message_stop":
            self.terminal = True
            out = b"".join(self._block_stop(i) for i in sorted(self.blocks))
            resp = _response_object(self.rid, self.model, self.output, self.stop, self.usage, self.created)
            name = "response.incomplete" if resp["status"] == "incomplete" else "response.completed"
            return out + self._ev(name, response=resp)
        if kind == "error":
            self.terminal = True
            _, _, code, message = _error(doc.get("error"))
            resp = {
                **self._started(),
                "status": "failed",
                "error": {"code": code, "message": message},
                "output": self.output,
            }
            return self._ev("response.failed", response=resp)
        return b""  # ping and anything unknown

    def _block_start(self, idx: int, block: dict[str, Any]) -> bytes:
        kind = block.get("type")
        out_idx = self.next_output
        if kind == "text":
            item = {
                "type": "message",
                "id": f"msg_{self.msg_id}_{out_idx}",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            st = {"kind": "text", "item": item, "out": out_idx, "text": []}
            self.blocks[idx] = st
            self.next_output += 1
            return self._ev("response.output_item.added", output_index=out_idx, item=item) + self._ev(
                "response.content_part.added",
                item_id=item["id"],
                output_index=out_idx,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        if kind == "tool_use":
            name = str(block.get("name"))
            call_id = str(block.get("id"))
            custom = name in self.custom
            shell = name == LOCAL_SHELL and not custom
            if custom:
                item = {
                    "type": "custom_tool_call",
                    "id": f"ctc_{call_id}",
                    "call_id": call_id,
                    "name": name,
                    "input": "",
                    "status": "in_progress",
                }
            elif shell:
                item = {
                    "type": "local_shell_call",
                    "id": f"lsh_{call_id}",
                    "call_id": call_id,
                    "status": "in_progress",
                    "action": {"type": "exec", "command": []},
                }
            else:
                item = {
                    "type": "function_call",
                    "id": f"fc_{call_id}",
                    "call_id": call_id,
                    "name": name,
                    "arguments": "",
                    "status": "in_progress",
                }
            self.blocks[idx] = {
                "kind": "tool",
                "item": item,
                "out": out_idx,
                "json": [],
                "custom": custom,
                "shell": shell,
                "block": block,
            }
            self.next_output += 1
            return self._ev("response.output_item.added", output_index=out_idx, item=item)
        if kind == "thinking":
            item = {"type": "reasoning", "id": f"rs_{self.msg_id}_{out_idx}", "summary": []}
            self.blocks[idx] = {"kind": "thinking", "item": item, "out": out_idx, "text": []}
            self.next_output += 1
            return self._ev("response.output_item.added", output_index=out_idx, item=item) + self._ev(
                "response.reasoning_summary_part.added",
                item_id=item["id"],
                output_index=out_idx,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )
        return b""  # redacted_thinking, server tools: nothing the client can use

    def _block_delta(self, idx: int, delta: dict[str, Any]) -> bytes:
        st = self.blocks.get(idx)
        if st is None:
            return b""
        item = st["item"]
        kind = delta.get("type")
        if kind == "text_delta" and st["kind"] == "text":
            text = text_of(delta.get("text"))
            st["text"].append(text)
            return self._ev(
                "response.output_text.delta",
                item_id=item["id"],
                output_index=st["out"],
                content_index=0,
                delta=text,
                logprobs=[],
            )
        if kind == "input_json_delta" and st["kind"] == "tool":
            part = text_of(delta.get("partial_json"))
            st["json"].append(part)
            if st["custom"] or st["shell"] or not part:
                return b""  # a custom tool's input is one string inside the JSON: sent whole at the end
            return self._ev(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=st["out"],
                delta=part,
            )
        if kind == "thinking_delta" and st["kind"] == "thinking":
            text = text_of(delta.get("thinking"))
            st["text"].append(text)
            return self._ev(
                "response.reasoning_summary_text.delta",
                item_id=item["id"],
                output_index=st["out"],
                summary_index=0,
                delta=text,
            )
        return b""

    def _block_stop(self, idx: int) -> bytes:
        st = self.blocks.pop(idx, None)
        if st is None:
            return b""
        item = dict(st["item"])
        ids = {"item_id": item["id"], "output_index": st["out"]}
        out = bytearray()
        if st["kind"] == "text":
            text = "".join(st["text"])
            part = {"type": "output_text", "text": text, "annotations": []}
            out += self._ev("response.output_text.done", **ids, content_index=0, text=text, logprobs=[])
            out += self._ev("response.content_part.done", **ids, content_index=0, part=part)
            item.update(status="completed", content=[part])
        elif st["kind"] == "tool":
            raw = "".join(st["json"])
            try:
                parsed = json.loads(raw) if raw.strip() else as_dict(st["block"].get("input"))
            except ValueError:
                parsed = raw
            done = _item_of_block({**st["block"], "input": parsed}, self.custom, 0, self.msg_id) or item
            item = {**done, "id": item["id"]}
            if item["type"] == "custom_tool_call":
                out += self._ev("response.custom_tool_call_input.delta", **ids, delta=item["input"])
                out += self._ev("response.custom_tool_call_input.done", **ids, input=item["input"])
            elif item["type"] == "function_call":
                out += self._ev(
                    "response.function_call_arguments.done",
                    **ids,
                    name=item["name"],
                    arguments=item["arguments"],
                )
        elif st["kind"] == "thinking":
            text = "".join(st["text"])
            part = {"type": "summary_text", "text": text}
            out += self._ev("response.reasoning_summary_text.done", **ids, summary_index=0, text=text)
            out += self._ev("response.reasoning_summary_part.done", **ids, summary_index=0, part=part)
            item["summary"] = [part]
        out += self._ev("response.output_item.done", output_index=st["out"], item=item)
        self.output.append(item)
        return bytes(out)
