"""What the three wire formats share: API names, call outcomes, the response summary, the one
definition of an input item's identity, and total (never-raising) readers for untrusted JSON.

Invariant: every function here accepts any JSON value (or ``None``) and never raises on its
shape; a field of the wrong type reads as absent.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from codexgate.core.usage import Usage
from codexgate.wire.sse import SseEvent
from codexgate.wire.values import as_dict, as_str, loads_object


class Api(StrEnum):
    """``openai_api_type`` of a trace row."""

    RESPONSES = "responses"
    CHAT = "chat_completions"
    ANTHROPIC = "anthropic_messages"
    OTHER = "other"


class Outcome(StrEnum):
    """``outcome`` of a trace row."""

    OK = "ok"
    REFUSED = "refused"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_ABORTED = "client_aborted"
    INCOMPLETE = "incomplete"
    GATEWAY_ERROR = "gateway_error"


# Tool results (their content, not their call id, is their identity) and tool calls (Responses items).
TOOL_OUTPUT_TYPES = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")
TOOL_CALL_TYPES = ("function_call", "custom_tool_call", "local_shell_call", "web_search_call")


@dataclass
class Reassembled:
    """The summary of one model answer, the same for every API and for streamed or JSON answers."""

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


def error_fields(err: Any, default: str) -> tuple[str, str | None]:
    """(type, message) of an error object; ``default`` when it names none."""
    e = as_dict(err)
    kind = as_str(e.get("code")) or as_str(e.get("type")) or default
    return kind, as_str(e.get("message"))


def content_digest(item: Any) -> str:
    """Hash of an item's content: its canonical JSON (sorted keys, compact, UTF-8) through
    SHA-256, cut to 96 bits (24 hex characters). The one content identity every control shares
    (guardrail scan cache, session deltas, the instructions-hash memo); computed once per call at
    intake, held only in memory. SHA-256 because it is collision-resistant (a guardrail verdict
    is reused for a matching digest) and runs on the CPU's SHA instructions: ~2.5x blake2b's
    speed on a 48 KB Codex body here. Never raises."""
    try:
        raw = orjson.dumps(item, option=orjson.OPT_SORT_KEYS, default=str)
    except (orjson.JSONEncodeError, TypeError):  # deeper than orjson's 254 levels, or odd keys
        try:
            raw = json.dumps(item, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
        except (ValueError, TypeError, RecursionError):
            raw = b"\x00unserialisable:" + type(item).__name__.encode()
    return hashlib.sha256(raw).hexdigest()[:24]


def item_digest(item: Any, content: str | None = None) -> str:
    """Identity of an input item across resends: ``type:id`` when it carries a string id (or
    call id), else its ``content_digest`` (pass ``content`` when already computed). Tool
    outputs are always identified by content, since they share the call id of the call they
    answer. Never raises."""
    if isinstance(item, dict):
        ident = as_str(item.get("id")) or as_str(item.get("call_id"))
        if ident and item.get("type") not in TOOL_OUTPUT_TYPES:
            return f"{item.get('type')}:{ident}"
    return content if content is not None else content_digest(item)


def item_digests(items: Sequence[Any]) -> tuple[list[str], list[str]]:
    """(content digests, identity digests) of a call's input items, each item hashed once."""
    contents = [content_digest(it) for it in items]
    return contents, [item_digest(it, c) for it, c in zip(items, contents, strict=True)]


def dumps_instruction(value: Any) -> str:
    """Instruction text as hashed into ``instructions_hash``: strings as they are, else sorted JSON."""
    return value if isinstance(value, str) else _dumps(value)


def instruction_values(body: Any, items: list[Any]) -> list[Any]:
    """The standing instructions of a call, raw: the ``instructions`` / ``system`` field when set,
    else the contents of the developer/system messages among ``items`` (Codex sends its base
    prompt as the first developer message)."""
    b = as_dict(body)
    for key in ("instructions", "system"):
        if b.get(key):
            return [b[key]]
    return [
        it.get("content")
        for it in items
        if isinstance(it, dict) and it.get("role") in ("developer", "system")
    ]


def instructions_text(body: Any, items: list[Any]) -> str | None:
    """The instructions as hashed into ``instructions_hash`` (``None`` when there are none): the
    field as it is (JSON when not a string), else each developer/system message's content as
    sorted JSON, one per line."""
    b = as_dict(body)
    for key in ("instructions", "system"):
        if b.get(key):
            return dumps_instruction(b[key])
    parts = [_dumps(v) for v in instruction_values(b, items)]
    return "\n".join(parts) if parts else None


class _InstructionsMemo:
    """``instructions_hash`` of the developer/system messages, keyed by their items' content
    digests: Codex resends the same ~17 KB base prompt on every call, and its sorted-JSON
    rendering was the costliest step of hashing it. Equal digests mean equal items, so a hit
    gives the very value ``instructions_text`` would hash. Bounded (oldest out first);
    thread-safe (intake may parse in a thread)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._d: dict[tuple[str, ...], str | None] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> tuple[bool, str | None]:
        with self._lock:
            if key in self._d:
                return True, self._d[key]
        return False, None

    def put(self, key: tuple[str, ...], value: str | None) -> None:
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                del self._d[next(iter(self._d))]


_INSTRUCTIONS_MEMO = _InstructionsMemo()


def instructions_hash(body: Any, items: list[Any], contents: Sequence[str]) -> str | None:
    """sha256 (hex) of ``instructions_text(body, items)``, or ``None`` when there are none;
    ``contents[i]`` is ``content_digest(items[i])``. Never raises."""
    b = as_dict(body)
    if len(contents) == len(items) and not any(b.get(k) for k in ("instructions", "system")):
        key = tuple(
            c
            for it, c in zip(items, contents, strict=True)
            if isinstance(it, dict) and it.get("role") in ("developer", "system")
        )
        hit, value = _INSTRUCTIONS_MEMO.get(key)
        if hit:
            return value
        value = _sha256_text(instructions_text(b, items))
        _INSTRUCTIONS_MEMO.put(key, value)
        return value
    return _sha256_text(instructions_text(b, items))


def _sha256_text(text: str | None) -> str | None:
    if text is None:
        return None
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (ValueError, TypeError, RecursionError):
        return ""


class EventReassembler:
    """Base of the per-API stream reassemblers: ``on_event`` per SSE event (returns True when the
    event carried the first output token), ``result()`` at any time (complete or not)."""

    def __init__(self) -> None:
        self.r = Reassembled()
        self.first_token = False

    def on_event(self, ev: SseEvent) -> bool:
        """Feed one event; True if it carried the first output token."""
        self.r.event_count += 1
        obj = loads_object(ev.data)
        if obj is None:
            self._on_text(ev.data)
            return False
        return self._on_object(as_str(obj.get("type")) or ev.event, obj)

    def _on_text(self, data: str) -> None:
        """An event whose data is not a JSON object (ignored unless the API gives it a meaning)."""

    def _on_object(self, kind: str | None, obj: dict[str, Any]) -> bool:
        raise NotImplementedError

    def _token(self) -> bool:
        """Note an output token; True only for the first one."""
        first = not self.first_token
        self.first_token = True
        return first
