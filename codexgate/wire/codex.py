"""The Codex client's per-call context (its headers and ``x-codex-turn-metadata``) and which
input items are new since the previous call of the same session (Codex resends the whole
history each time).

Invariant (fail-closed, issue 8): ``context_from_headers`` never raises on any header value or
body. The metadata header is parsed with ``loads_bounded`` (≤ 16 KB, depth ≤ 16); ids are
accepted only as strings of at most ``MAX_ID_CHARS``; anything else reads as absent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from codexgate.core.safejson import loads_bounded

MAX_ID_CHARS = 256
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 16
MAX_AGENT_CHARS = 1024  # user-agent / originator: kept, shortened


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
    turn_metadata: str | None = None  # the raw header, only when it parsed as a bounded JSON object
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def grouping_key(self) -> str | None:
        return self.session_id or self.thread_id or self.prompt_cache_key


def clean_id(value: Any) -> str | None:
    """A non-empty string of at most ``MAX_ID_CHARS`` characters, else ``None``."""
    return value if isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS else None


def _short(value: Any) -> str | None:
    return value[:MAX_AGENT_CHARS] if isinstance(value, str) and value else None


def parse_turn_metadata(raw: Any) -> dict[str, Any] | None:
    """``x-codex-turn-metadata`` as a JSON object, ``None`` when absent, too big, too deep or not
    an object."""
    if not isinstance(raw, str | bytes) or not raw:
        return None
    try:
        doc = loads_bounded(raw, max_bytes=MAX_METADATA_BYTES, max_depth=MAX_METADATA_DEPTH)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def context_from_headers(headers: Mapping[str, str], body: Any) -> CodexContext:
    """The Codex context of one call from its (untrusted) headers and parsed body."""

    def header(name: str) -> Any:
        try:
            return headers.get(name)
        except Exception:  # a hostile mapping must not break the pipeline
            return None

    meta_raw = header("x-codex-turn-metadata")
    meta = parse_turn_metadata(meta_raw)
    m = meta or {}
    thread = clean_id(header("thread-id")) or clean_id(m.get("thread_id"))
    # Other clients can group calls too (Helicone-style header).
    session = (
        clean_id(header("session-id"))
        or clean_id(m.get("session_id"))
        or clean_id(header("x-codexgate-session-id"))
    )
    cache_key = clean_id(body.get("prompt_cache_key")) if isinstance(body, dict) else None
    return CodexContext(
        session_id=session or thread or cache_key,
        thread_id=thread,
        turn_id=clean_id(m.get("turn_id")),
        request_kind=clean_id(m.get("request_kind")),
        window_id=clean_id(header("x-codex-window-id")) or clean_id(m.get("window_id")),
        client_request_id=clean_id(header("x-client-request-id")),
        prompt_cache_key=cache_key,
        originator=_short(header("originator")),
        user_agent=_short(header("user-agent")),
        subagent=clean_id(header("x-openai-subagent")),
        turn_metadata=meta_raw if meta is not None and isinstance(meta_raw, str) else None,
    )


@dataclass
class InputDelta:
    call_index: int
    new_start: int
    item_count: int


class SessionTracker:
    """Per-process memory of each session's last input (as ``item_digest`` values), bounded (LRU)."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._seen: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()
        self._max = max_sessions

    def observe(self, session: str | None, digests: list[str]) -> InputDelta:
        """Record a call's input digests and say which items are new (after the common prefix)."""
        if not session:
            return InputDelta(0, 0, len(digests))
        prev = self._seen.pop(session, None)
        if prev is None:
            call_index, start = 0, 0
        else:
            call_index = prev[0] + 1
            start = common_prefix(prev[1], digests)
        self._seen[session] = (call_index, digests)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return InputDelta(call_index, start, len(digests))


def common_prefix(previous: list[str], current: list[str]) -> int:
    """Length of the longest common prefix of two digest lists."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a != b:
            break
        n += 1
    return n
