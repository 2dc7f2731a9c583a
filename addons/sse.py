"""Incremental Server-Sent Events parser: feed it bytes as they arrive, get complete events out.

Works on the decoded byte stream (after any Content-Encoding is removed). Handles events split
across chunks, CRLF/LF line endings and multi-line ``data:`` fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SseEvent:
    event: str | None
    data: str


class SseParser:
    def __init__(self) -> None:
        self._buf = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Return the events completed by ``chunk`` (possibly none)."""
        if not chunk:
            return []
        self._buf += chunk
        out: list[SseEvent] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = self._buf[:nl]
            self._buf = self._buf[nl + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data or self._event is not None:
                    out.append(SseEvent(self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                continue
            if line.startswith(b":"):
                continue  # comment / keep-alive
            name, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if name == b"data":
                self._data.append(value.decode("utf-8", "replace"))
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
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
