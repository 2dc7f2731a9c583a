"""Where the text is in a Responses API input item, and what kind of author wrote it.

``item_parts(item)`` lists the item's text fields as (path, text) in a fixed order; ``part`` in a
finding is an index into that list, and ``replace_parts`` writes redacted text back through the
same paths. Encrypted reasoning (``encrypted_content``) and non-text fields are never read.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

Path = tuple[str | int, ...]

# Who wrote an item's text decides which detectors apply (injection: tool output only).
USER, MODEL, TOOL_OUTPUT, INSTRUCTIONS, OTHER = "user", "model", "tool_output", "instructions", "other"

_TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text", "summary_text", "refusal"})


def item_kind(item: Mapping[str, Any]) -> str:
    """USER (user/developer/system messages), MODEL (assistant text, tool calls, reasoning),
    TOOL_OUTPUT (results of tools: shell output, fetched pages), or OTHER."""
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role == "tool":  # a Chat Completions tool result
            return TOOL_OUTPUT
        if role == "user" and _has_tool_result(item.get("content")):  # an Anthropic tool result turn
            return TOOL_OUTPUT
        return MODEL if role == "assistant" else USER
    if kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output",
                "mcp_call_output", "computer_call_output"):
        return TOOL_OUTPUT
    if kind in ("function_call", "custom_tool_call", "local_shell_call", "reasoning", "mcp_call"):
        return MODEL
    return OTHER


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, Mapping) and p.get("type") == "tool_result" for p in content
    )


def _content_parts(value: Any, path: Path, out: list[tuple[Path, str]]) -> None:
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, list):
        for i, part in enumerate(value):
            if isinstance(part, Mapping) and part.get("type") == "tool_result":  # Anthropic
                _content_parts(part.get("content"), (*path, i, "content"), out)
            elif isinstance(part, Mapping) and part.get("type", "text") in _TEXT_PART_TYPES:
                text = part.get("text")
                if isinstance(text, str):
                    out.append(((*path, i, "text"), text))
            elif isinstance(part, str):
                out.append(((*path, i), part))


def item_parts(item: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """The item's text fields as (path, text), in a stable order."""
    out: list[tuple[Path, str]] = []
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        _content_parts(item.get("content"), ("content",), out)
    elif kind == "function_call":
        if isinstance(item.get("arguments"), str):
            out.append((("arguments",), item["arguments"]))
    elif kind == "custom_tool_call":
        if isinstance(item.get("input"), str):
            out.append((("input",), item["input"]))
    elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output",
                  "mcp_call_output"):
        output = item.get("output")
        if isinstance(output, Mapping):  # {"content": ..., "success": ...} shapes
            _content_parts(output.get("content"), ("output", "content"), out)
        else:
            _content_parts(output, ("output",), out)
    elif kind == "local_shell_call":
        command = (item.get("action") or {}).get("command")
        if isinstance(command, list):
            out.extend((("action", "command", i), c) for i, c in enumerate(command) if isinstance(c, str))
    elif kind == "reasoning":  # the readable summary only; encrypted_content is opaque
        _content_parts(item.get("summary"), ("summary",), out)
    return out


def replace_parts(item: Mapping[str, Any], new_texts: Mapping[int, str]) -> dict[str, Any]:
    """A deep copy of ``item`` with part ``i`` (index into ``item_parts``) set to ``new_texts[i]``."""
    out = copy.deepcopy(dict(item))
    paths = [p for p, _ in item_parts(item)]
    for i, text in new_texts.items():
        target: Any = out
        path: Sequence[str | int] = paths[i]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = text
    return out


BodyInput = tuple[str, list[Mapping[str, Any]], str | None, str | None]


def body_input(body: Any, api: str | None = None) -> BodyInput | None:
    """(items key, items, instructions key, instructions) of a model call body, or None.

    Responses: ``input`` (a string becomes one user message) and ``instructions``; Chat:
    ``messages``; Anthropic: ``messages`` and a string ``system``. None when the input cannot
    be read as items (the caller decides whether that fails closed)."""
    if not isinstance(body, Mapping):
        return None
    if api == "responses" or "input" in body:
        raw = body.get("input")
        if isinstance(raw, str):
            items: list[Mapping[str, Any]] = [{"type": "message", "role": "user", "content": raw}]
        elif isinstance(raw, list):
            items = [it for it in raw if isinstance(it, Mapping)]
            if len(items) != len(raw):
                return None
        elif raw is None:
            items = []
        else:
            return None
        instr = body.get("instructions")
        return "input", items, "instructions", instr if isinstance(instr, str) else None
    if isinstance(body.get("messages"), list):
        msgs = body["messages"]
        if not all(isinstance(m, Mapping) for m in msgs):
            return None
        system = body.get("system")
        return "messages", list(msgs), "system", system if isinstance(system, str) else None
    return None


def rewrite_body(
    body: Mapping[str, Any],
    items_key: str,
    items: Sequence[Mapping[str, Any]],
    instr_key: str | None,
    instructions: str | None,
) -> dict[str, Any]:
    """A shallow copy of ``body`` with ``items`` / ``instructions`` written back (a string
    ``input`` stays a string)."""
    out = dict(body)
    if items_key == "input" and isinstance(body.get("input"), str):
        content = items[0].get("content") if items else ""
        out["input"] = content if isinstance(content, str) else body["input"]
    else:
        out[items_key] = [dict(it) for it in items]
    if instr_key is not None and instructions is not None and instr_key in body:
        out[instr_key] = instructions
    return out
