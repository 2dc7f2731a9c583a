"""Server-Sent Events framing, both ways: an incremental parser (bytes in, events out) and the
encoder of one event. Works on the decoded byte stream (after any Content-Encoding is removed);
handles events split across chunks, CRLF/LF line endings and multi-line ``data:`` fields.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


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
