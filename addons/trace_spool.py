"""Durable, append-only spool of trace rows: the first place a trace lands.

A segment is a file of records ``<u32 length><u32 crc32><JSON payload>``. Appends are plain
``os.write`` calls (into the kernel's page cache: they survive the gateway being killed);
``fsync`` happens in the sink's thread. A torn record at the end of a segment (a crash in the
middle of a write) fails its length or CRC check and is skipped, never half-parsed.
Timestamps are stored as integer microseconds since the epoch, UTC.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<II")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP_COLUMNS = ("start_time", "upstream_first_byte_time", "first_token_time", "end_time")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        delta = value.astimezone(UTC) - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise TypeError(f"cannot spool {type(value).__name__}")


def encode(row: Mapping[str, Any]) -> bytes:
    payload = json.dumps(row, default=_default, separators=(",", ":")).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_payloads(path: Path) -> Iterator[bytes]:
    """JSON payloads of a segment, in order, read incrementally; stops at the first torn or corrupt
    record (its length or CRC does not match)."""
    with path.open("rb", buffering=1 << 20) as f:
        while True:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return
            length, crc = _HEADER.unpack(header)
            payload = f.read(length)
            if len(payload) != length or zlib.crc32(payload) != crc:
                return
            yield payload


def read_segment(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a segment, in order; stops at the first torn or corrupt record."""
    for payload in read_payloads(path):
        try:
            yield json.loads(payload)
        except ValueError:
            return


def micros_date(micros: int) -> str:
    """``YYYY-MM-DD`` (UTC) of a timestamp in microseconds."""
    return datetime.fromtimestamp(micros / 1_000_000, UTC).strftime("%Y-%m-%d")
