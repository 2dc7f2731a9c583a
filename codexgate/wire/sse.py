"""Server-Sent Events framing, both ways: an incremental parser (bytes in, events out) and the
encoder of one event. Works on the decoded byte stream (after any Content-Encoding is removed);
handles events split across chunks, CRLF/LF line endings and multi-line ``data:`` fields.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from codexgate.wire.values import loads_object


@dataclass(slots=True)
class SseEvent:
    event: str | None
    data: str


class SseParser:
    """Feed bytes as they arrive, get complete events out. Never raises on any input."""

    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Return the events completed by ``chunk`` (possibly none). Linear in the chunk: the
        lines are found by index and the unfinished tail is kept once per call, not once per
        line (a 64 KB chunk of small events was copied again for each of its lines)."""
        if not chunk:
            return []
        buf = self._buf + chunk if self._buf else chunk
        out: list[SseEvent] = []
        start = 0
        find = buf.find
        while True:
            nl = find(b"\n", start)
            if nl < 0:
                break
            end = nl - 1 if nl > start and buf[nl - 1] == 13 else nl  # CRLF or LF
            line = buf[start:end]
            start = nl + 1
            if not line:
                if self._data or self._event is not None:
                    out.append(SseEvent(self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                continue
            if line[0] == 58:  # ":" comment / keep-alive
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        self._buf = buf[start:] if start else buf
        return out

    def close(self) -> list[SseEvent]:
        """Flush an event left without its terminating blank line (stream cut off)."""
        out: list[SseEvent] = []
        if self._buf:
            out = self.feed(b"\n")
        if self._data:
            out.append(SseEvent(self._event, "\n".join(self._data)))
            self._event, self._data = None, []
        return out


# Events that end a stream in some client format (a stream that closes without one was cut).
TERMINAL_KINDS = frozenset(
    {"response.completed", "response.failed", "response.incomplete", "message_stop", "error", "[DONE]"}
)


def event_kind(ev: SseEvent) -> str | None:
    """An event's type: ``[DONE]``, the ``event:`` name, else the JSON ``type`` of its data
    (``"chunk"`` for a JSON object without one, ``None`` for data that is not a JSON object)."""
    if ev.data.strip() == "[DONE]":
        return "[DONE]"
    if ev.event:
        return ev.event
    doc = loads_object(ev.data)
    if doc is None:
        return None
    kind = doc.get("type")
    return kind if isinstance(kind, str) else "chunk"


class StreamWatch:
    """Follows a stream in the client's format: how many events passed, the response id, and
    whether a terminal event passed. Fed bytes (``feed``) or, by a parser that already split
    them, events (``observe``). Never raises."""

    def __init__(self) -> None:
        self._parser: SseParser | None = None
        self.terminal = False
        self.response_id: str | None = None
        self.sequence = 0

    def feed(self, data: bytes) -> None:
        if self._parser is None:
            self._parser = SseParser()
        for ev in self._parser.feed(data):
            self.observe(ev)

    def observe(self, ev: SseEvent) -> None:
        kind = event_kind(ev)
        self.sequence += 1
        if kind in TERMINAL_KINDS:
            self.terminal = True
        if self.response_id is None and kind in ("response.created", "message_start"):
            doc = loads_object(ev.data) or {}
            inner = doc.get("response") or doc.get("message")
            rid = inner.get("id") if isinstance(inner, dict) else None
            self.response_id = rid if isinstance(rid, str) else None


def parse(raw: bytes) -> list[SseEvent]:
    """All events of a complete SSE body."""
    parser = SseParser()
    return parser.feed(raw) + parser.close()


def frame(event: str | None, doc: dict[str, Any]) -> bytes:
    """One SSE event: ``event:`` line (when named) and one ``data:`` line of JSON."""
    data = f"data: {json.dumps(doc)}\n\n"
    return (f"event: {event}\n" + data).encode() if event else data.encode()


def pieces(text: str, parts: int = 3, max_size: int = 8) -> list[str]:
    """Split ``text`` into several stream deltas (at least ``parts`` when long enough)."""
    if not text:
        return []
    size = max(1, min(max_size, math.ceil(len(text) / parts)))
    return [text[k : k + size] for k in range(0, len(text), size)]
