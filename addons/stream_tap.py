"""Taps a streamed (SSE) response as it passes: chunks go on to the client unchanged and at
once; a copy is decoded, parsed and reassembled on the side.

mitmproxy calls the tap with each chunk and once more with ``b""`` at the end. When the
format's terminal event (``response.completed``, ``message_stop``, ``[DONE]``…) arrives, the
tap calls ``on_terminal`` *before* returning that chunk, so the trace is in the spool before
the client can see the end of the stream (Codex hangs up right after ``response.completed``).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from codexgate.wire import Reassembled, SseEvent, SseParser, reassembler
from codexgate.wire.sse import StreamWatch


class _Decoder:
    """Incremental Content-Encoding decoder (identity, gzip, deflate, zstd, br)."""

    def __init__(self, encoding: str) -> None:
        enc = encoding.strip().lower()
        self._obj: Any = None
        if enc in ("gzip", "x-gzip"):
            self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._obj = zlib.decompressobj()
        elif enc == "zstd":
            import zstandard

            self._obj = zstandard.ZstdDecompressor().decompressobj()
        elif enc == "br":
            import brotli

            self._obj = brotli.Decompressor()
        self.failed = False

    def decode(self, data: bytes) -> bytes:
        if self._obj is None or self.failed or not data:
            return data if self._obj is None else b""
        try:
            if hasattr(self._obj, "process"):
                return self._obj.process(data)
            return self._obj.decompress(data)
        except Exception:  # a broken encoding must never break the client's stream
            self.failed = True
            return b""


class StreamTap:
    def __init__(
        self,
        api: str,
        content_encoding: str,
        on_first_token: Callable[[datetime], None],
        on_terminal: Callable[[], None],
    ) -> None:
        self.reassembler = reassembler(api)
        self.parser = SseParser()
        # what the stream shows the client, from this one parse: the relay reads it (terminal
        # event, response id) when this tap sees exactly the client's bytes
        self.watch = StreamWatch()
        self.decoder = _Decoder(content_encoding)
        self.on_first_token = on_first_token
        self.on_terminal = on_terminal
        self.bytes_seen = 0
        self.ended = False  # mitmproxy signalled the end of the upstream body
        self.terminal_fired = False
        self.parse_seconds = 0.0

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            self.ended = True
            self._consume(self.parser.close())
            return chunk
        self.bytes_seen += len(chunk)
        t0 = time.perf_counter()
        self._consume(self.parser.feed(self.decoder.decode(chunk)))
        self.parse_seconds += time.perf_counter() - t0
        return chunk

    def _consume(self, events: list[SseEvent]) -> None:
        r = self.reassembler
        observe = self.watch.observe
        for ev in events:
            observe(ev)
            if r.on_event(ev):
                self.on_first_token(datetime.now(UTC))
            if r.r.terminal and not self.terminal_fired:
                self.terminal_fired = True
                self.on_terminal()

    def result(self) -> Reassembled:
        return self.reassembler.result()


class BodyCollector:
    """Collects a non-streamed body passing through the relay (decoded, bounded)."""

    LIMIT = 32 * 1024 * 1024

    def __init__(self, content_encoding: str) -> None:
        self.decoder = _Decoder(content_encoding)
        self._parts: list[bytes] = []
        self._size = 0

    def __call__(self, chunk: bytes) -> bytes:
        if chunk and self._size < self.LIMIT:
            data = self.decoder.decode(chunk)
            self._parts.append(data)
            self._size += len(data)
        return chunk

    def body(self) -> bytes:
        return b"".join(self._parts)
