"""Codex session context: the headers Codex sends on every call, and which input items are
new since the previous call of the same session (Codex resends the whole history each time).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http


@dataclass
class CodexContext:
    session_id: str | None = None
    thread_id: str | None = None
    turn_id: str | None = None
    request_kind: str | None = None
    window_id: str | None = None
    client_request_id: str | None = None
    prompt_cache_key: str | None = None
    originator: str | None = None
    user_agent: str | None = None
    subagent: str | None = None
    turn_metadata: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def grouping_key(self) -> str | None:
        return self.session_id or self.thread_id or self.prompt_cache_key


def from_request(req: http.Request, body: dict[str, Any] | None) -> CodexContext:
    h = req.headers
    meta_raw = h.get("x-codex-turn-metadata")
    meta: dict[str, Any] = {}
    if meta_raw:
        try:
            parsed = json.loads(meta_raw)
            meta = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            meta = {}
    # Other clients can group calls too (Helicone-style header).
    session = h.get("session-id") or meta.get("session_id") or h.get("x-codexgate-session-id")
    thread = h.get("thread-id") or meta.get("thread_id")
    cache_key = body.get("prompt_cache_key") if isinstance(body, dict) else None
    return CodexContext(
        session_id=session or thread or (cache_key if isinstance(cache_key, str) else None),
        thread_id=thread,
        turn_id=meta.get("turn_id") if isinstance(meta.get("turn_id"), str) else None,
        request_kind=meta.get("request_kind") if isinstance(meta.get("request_kind"), str) else None,
        window_id=h.get("x-codex-window-id")
        or (meta.get("window_id") if isinstance(meta.get("window_id"), str) else None),
        client_request_id=h.get("x-client-request-id"),
        prompt_cache_key=cache_key if isinstance(cache_key, str) else None,
        originator=h.get("originator"),
        user_agent=h.get("user-agent"),
        subagent=h.get("x-openai-subagent"),
        turn_metadata=meta_raw,
    )


def input_items(api: str, body: dict[str, Any] | None) -> list[Any]:
    """The conversation items of a request, in order."""
    if not isinstance(body, dict):
        return []
    if api == "responses":
        inp = body.get("input")
        if isinstance(inp, str):
            return [{"type": "message", "role": "user", "content": inp}]
        return inp if isinstance(inp, list) else []
    if api in ("chat_completions", "anthropic_messages"):
        msgs = body.get("messages")
        return msgs if isinstance(msgs, list) else []
    return []


def instructions_text(api: str, body: dict[str, Any] | None) -> str | None:
    """The standing instructions of a call: ``instructions``/``system`` or the developer/system
    messages (Codex sends its base prompt as the first developer message)."""
    if not isinstance(body, dict):
        return None
    for key in ("instructions", "system"):
        if body.get(key):
            val = body[key]
            return val if isinstance(val, str) else json.dumps(val, sort_keys=True)
    parts = [
        json.dumps(it.get("content"), sort_keys=True)
        for it in input_items(api, body)
        if isinstance(it, dict) and it.get("role") in ("developer", "system")
    ]
    return "\n".join(parts) if parts else None


def item_digest(item: Any) -> str:
    if isinstance(item, dict):
        # ids are stable across resends when present; the content otherwise.
        ident = item.get("id") or item.get("call_id")
        if ident and item.get("type") != "function_call_output":
            return f"{item.get('type')}:{ident}"
    return hashlib.blake2b(json.dumps(item, sort_keys=True).encode(), digest_size=12).hexdigest()


@dataclass
class InputDelta:
    call_index: int
    new_start: int
    item_count: int


class SessionTracker:
    """Per-process memory of each session's last input, bounded (LRU)."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._seen: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()
        self._max = max_sessions

    def observe(self, session: str | None, digests: list[str]) -> InputDelta:
        """Record a call's input (as ``item_digest`` values) and say which items are new."""
        if not session:
            return InputDelta(0, 0, len(digests))
        prev = self._seen.pop(session, None)
        if prev is None:
            call_index, start = 0, 0
        else:
            call_index = prev[0] + 1
            prev_digests = prev[1]
            start = 0
            for a, b in zip(prev_digests, digests, strict=False):
                if a != b:
                    break
                start += 1
        self._seen[session] = (call_index, digests)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return InputDelta(call_index, start, len(digests))
