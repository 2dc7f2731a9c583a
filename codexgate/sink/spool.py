"""Durable, append-only spool of trace rows: the first place a trace lands.

Layout: ``TRACES/_spool/<instance>/seg-<run>-<n>.log`` plus a ``.lock`` file the owning process
holds an ``fcntl.flock`` on for its whole life, so a gateway never recovers the segments of a
live one sharing the traces directory (a free lock means its owner is dead).

A segment is a sequence of records ``<u32 length><u32 crc32><payload>``; the payload is one row
as UTF-8 JSON, timestamps as integer microseconds since the epoch (UTC). Appends are single
``os.write`` calls into the kernel's page cache (they survive the process being killed); the
sink's thread fsyncs. A torn last record (a crash, or a full disk, in the middle of a write)
fails its length or CRC check and is never half-parsed; the reader reports its bytes (and any
other unreadable span: a corrupt record in the middle, a record over ``MAX_RECORD_BYTES``) so the
converter keeps them in ``TRACES/_rejected/`` and says so, then resumes at the next intact record.
``<run>`` is random per process, so an instance id reused across restarts never reuses a segment
name.

Invariants: ``encode`` never produces a record whose payload exceeds ``MAX_RECORD_BYTES`` (it
raises ``RecordTooLarge``); every byte of a segment is either in an intact record the reader yields
or in exactly one ``BadSpan`` it reports.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import math
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from codexgate.core import schema

SPOOL_DIR = "_spool"
LOCK_NAME = ".lock"
PROBE_NAME = ".probe"
HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
# Hard cap on one record's payload. The gateway caps a row's bodies long before this; a bigger record
# is refused by ``encode`` (never truncated), and one found in a segment (written by an older version,
# or a corrupt length field) is kept aside, not converted.
MAX_RECORD_BYTES = 64 << 20
_PAYLOAD_START = b'{"'  # every payload is a JSON object with at least the required columns

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_COLUMNS = frozenset(schema.COLUMNS)
_DEFAULTS = {k: v for k, v in schema.normalise_row({}).items() if v is not None}
# required columns without a default: a row lacking one is a bug in the caller, refused at write()
REQUIRED = tuple(f.name for f in schema.SCHEMA if not f.nullable and f.name not in _DEFAULTS)


PREALLOCATE_AHEAD = 16 << 20  # disk space reserved past the write offset of the current segment
_FALLOC_FL_KEEP_SIZE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate64", None) or getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int


def preallocate(fd: int, offset: int, length: int) -> bool:
    """Reserve disk blocks for ``[offset, offset+length)`` without changing the file size.

    Appends into reserved blocks need no block allocation, so an fsync running meanwhile does
    not make them wait on the filesystem journal (measured on ext4: fsync every 0.2 s of a file
    appended to at ~100 MB/s stalled 0.1% of the appends for 5-10 ms; with blocks reserved ahead,
    about none). Best effort: False where unsupported or the disk is full.
    """
    if _fallocate is None:
        return False
    return _fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length) == 0


class SpoolClosed(Exception):
    """The spool was released; nothing more can be appended."""


class RecordTooLarge(ValueError):
    """A row whose encoded payload is over ``MAX_RECORD_BYTES``: refused, never truncated."""


# ------------------------------------------------------------------------------------ encoding


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} in a trace row: timestamps must be tz-aware UTC")
        return (value - _EPOCH) // _ONE_US
    raise TypeError(f"cannot spool a value of type {type(value).__name__} in a trace row")


_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":"))
# orjson (~4x faster than json on a 19 KB row, on the event loop) with datetimes passed to
# _default; json is the fallback for what orjson refuses (lone surrogates, ints over 64 bits).
_ORJSON_OPTS = orjson.OPT_PASSTHROUGH_DATETIME


def _has_nonfinite(row: Mapping[str, Any]) -> bool:
    """A NaN or infinity among the row's floats (top level, or in its lists of structs)."""
    for value in row.values():
        if isinstance(value, float):
            if not math.isfinite(value):
                return True
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and any(
                    isinstance(v, float) and not math.isfinite(v) for v in item.values()
                ):
                    return True
    return False


def encode(row: Mapping[str, Any]) -> bytes:
    """One framed record for ``row``.

    Raises ``KeyError``/``ValueError``/``TypeError`` for a bad row, ``RecordTooLarge`` (a
    ``ValueError``) for one whose payload would exceed ``MAX_RECORD_BYTES``.
    """
    if not isinstance(row, dict):
        row = dict(row)
    unknown = row.keys() - _COLUMNS
    if unknown:
        raise KeyError(f"unknown trace columns: {sorted(unknown)}")
    for name in REQUIRED:
        if row.get(name) is None:
            raise ValueError(f"trace row lacks required column {name!r}")
    try:
        if _has_nonfinite(row):
            raise orjson.JSONEncodeError  # orjson writes NaN/inf as null; json keeps them
        payload = orjson.dumps(row, default=_default, option=_ORJSON_OPTS)
    except orjson.JSONEncodeError:
        text = _ENCODER.encode(row)
        try:
            payload = text.encode()
        except UnicodeEncodeError:  # a lone surrogate (e.g. from a bad \\ud800 escape in a client body)
            payload = text.encode("utf-8", "replace")
    if len(payload) > MAX_RECORD_BYTES:
        trace_id = str(row.get("trace_id"))[:64]
        raise RecordTooLarge(
            f"trace row {trace_id!r} is {len(payload):,} bytes encoded, over the spool's limit of "
            f"{MAX_RECORD_BYTES:,} bytes per row"
        )
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _timestamp_paths() -> tuple[list[str], dict[str, list[str]]]:
    top: list[str] = []
    nested: dict[str, list[str]] = {}
    for field in schema.SCHEMA:
        if pa.types.is_timestamp(field.type):
            top.append(field.name)
        elif pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type):
            inner = [f.name for f in field.type.value_type if pa.types.is_timestamp(f.type)]
            if inner:
                nested[field.name] = inner
    return top, nested


_TS_TOP, _TS_NESTED = _timestamp_paths()


def _from_micros(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def decode(payload: bytes | memoryview) -> dict[str, Any]:
    """The row dict of one payload (timestamps back to tz-aware UTC datetimes)."""
    row: dict[str, Any] = json.loads(bytes(payload))
    for name in _TS_TOP:
        if name in row:
            row[name] = _from_micros(row[name])
    for name, inner in _TS_NESTED.items():
        for item in row.get(name) or ():
            for key in inner:
                if isinstance(item, dict) and key in item:
                    item[key] = _from_micros(item[key])
    return row


# ------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class BadSpan:
    """Bytes of a segment that are not an intact record the converter may read.

    ``reason``: ``torn`` (the file ends inside a record: a write cut short), ``corrupt`` (a length
    or CRC check fails and an intact record follows), ``oversized`` (an intact record whose payload
    is over ``MAX_RECORD_BYTES``).
    """

    offset: int
    length: int
    reason: str


def pread_exact(fd: int, length: int, offset: int) -> bytearray:
    """``length`` bytes at ``offset`` (fewer only at the end of the file).

    ``os.pread`` returns at most ~2 GiB per call (and may return less at any time); this loops, so a
    short read is never mistaken for the end of the data.
    """
    buf = bytearray(length)
    with _read_into(buf, fd, length, offset) as view:
        got = len(view)
    if got < length:
        del buf[got:]
    return buf


def _read_into(buf: bytearray, fd: int, length: int, offset: int) -> memoryview:
    view = memoryview(buf)[:length]
    got = 0
    while got < length:
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return view[:got]


def _unexported(buf: bytearray) -> bool:
    """Whether no memoryview (of ours, or an Arrow buffer's) still refers to ``buf``'s bytes."""
    try:
        buf.append(0)  # a bytearray with live exports refuses to resize
    except BufferError:
        return False
    del buf[-1]
    return True


class _Blocks:
    """Read buffers for one ``SegmentReader`` pass, reused once nothing refers to them.

    A fresh 4 MB bytearray is zero-filled holding the GIL, page by page as the kernel maps it
    (~2.5 ms a block in a conversion, measured with ``py-spy --gil``: ~40% of the GIL-holding time
    of ``convert_segment``), and freeing it unmaps it under the GIL too. Two buffers suffice: the
    consumer still holds the previous batch while the next block is read. An anonymous ``mmap``
    (zeroed by the kernel inside the read, without the GIL) was measured too: its page faults made
    conversion ~20% slower.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.pool: list[bytearray] = []

    def read(self, fd: int, length: int, offset: int) -> memoryview:
        """``length`` bytes at ``offset`` as a writable view (shorter only at the end of the file)."""
        if length <= self.size:
            for buf in self.pool:
                if _unexported(buf):
                    return _read_into(buf, fd, length, offset)
            if len(self.pool) < 2:
                self.pool.append(bytearray(self.size))
                return _read_into(self.pool[-1], fd, length, offset)
        return _read_into(bytearray(length), fd, length, offset)


_BLANK_HEADER = b" " * (HEADER.size - 1) + b"\n"


class Batch(list[memoryview]):
    """The payloads of consecutive intact records, and ``ndjson``: the same records as one
    newline-delimited JSON buffer, made without copying them (the reader blanks each record's
    header to whitespace in its own block; a payload never contains a raw newline, since JSON
    escapes it). A slice of a ``Batch`` is a plain list."""

    ndjson: memoryview | None = None


class SegmentReader:
    """A segment's intact records, in batches of about ``batch_bytes``, read block by block.

    Reading in blocks keeps memory bounded and, as important, never makes Python free one huge
    buffer: releasing a 200 MB ``bytes`` takes ~15 ms with the GIL held, which would stall the
    event loop. Bytes that are not an intact record (torn, corrupt, oversized) are never yielded:
    each run of them becomes one ``BadSpan`` in ``bad`` and reading resumes at the next intact
    record (a header whose length fits the file and the cap, a JSON object payload, a matching
    CRC). ``torn_bytes`` is the total length of those spans. Both are complete once iteration ends.
    """

    def __init__(self, path: Path, batch_bytes: int = 4 << 20, max_record: int = MAX_RECORD_BYTES) -> None:
        self.path = path
        self.batch_bytes = batch_bytes
        self.max_record = max_record
        self.bad: list[BadSpan] = []
        self.torn_bytes = 0

    def __iter__(self) -> Iterator[Batch]:
        self.bad, self.torn_bytes = [], 0
        fd = os.open(self.path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            pos = 0
            blocks = _Blocks(self.batch_bytes)
            while pos < size:
                block = blocks.read(fd, min(self.batch_bytes, size - pos), pos)
                payloads, used = self._parse(block, pos, size)
                if payloads:
                    yield payloads
                del payloads  # only the consumer may hold the batch now (see _Blocks)
                pos += used
                if used or pos >= size:
                    continue
                # the record at pos does not fit in a block, or is not intact
                length = HEADER.unpack_from(block, 0)[0] if len(block) >= HEADER.size else -1
                if 0 <= length <= self.max_record and pos + HEADER.size + length <= size:
                    whole = blocks.read(fd, HEADER.size + length, pos)
                    if self._intact(whole, 0):
                        one = Batch([whole[HEADER.size :]])
                        whole[: HEADER.size] = _BLANK_HEADER
                        one.ndjson = whole
                        yield one
                        pos += len(whole)
                        del one, whole
                        continue
                    del whole
                del block
                pos = self._skip_bad(fd, pos, size)
        finally:
            os.close(fd)
        self.torn_bytes = sum(span.length for span in self.bad)

    def _intact(self, view: memoryview, pos: int) -> bool:
        """Whether ``view[pos:]`` starts with a whole record that passes every check."""
        if pos + HEADER.size > len(view):
            return False
        length, crc = HEADER.unpack_from(view, pos)
        start = pos + HEADER.size
        if length > self.max_record or start + length > len(view):
            return False
        payload = view[start : start + length]
        return payload[:2] == _PAYLOAD_START and zlib.crc32(payload) == crc

    def _parse(self, view: memoryview, offset: int, size: int) -> tuple[Batch, int]:
        """Intact records from the start of ``view`` (file offset ``offset``): (payloads, bytes used).

        Stops before a record that continues past the block or that is not intact. The headers of
        the records returned are blanked in ``view`` (see ``Batch``).
        """
        payloads = Batch()
        pos = 0
        while pos + HEADER.size <= len(view):
            length = HEADER.unpack_from(view, pos)[0]
            end = pos + HEADER.size + length
            if end > len(view) or not self._intact(view, pos):
                break
            payloads.append(view[pos + HEADER.size : end])
            view[pos : pos + HEADER.size] = _BLANK_HEADER
            pos = end
        if payloads:
            payloads.ndjson = view[:pos]
        return payloads, pos

    def _skip_bad(self, fd: int, pos: int, size: int) -> int:
        """Record the unreadable bytes starting at ``pos``; the offset of the next intact record."""
        head = bytes(pread_exact(fd, HEADER.size, pos))
        if len(head) == HEADER.size:
            length, crc = HEADER.unpack(head)
            end = pos + HEADER.size + length
            if (
                length > self.max_record
                and end <= size
                and self._crc_of(fd, pos + HEADER.size, length) == crc
            ):
                self.bad.append(BadSpan(pos, end - pos, "oversized"))
                return end
        found = self._next_intact(fd, pos + 1, size)
        if found is None:
            self.bad.append(BadSpan(pos, size - pos, "torn"))
            return size
        self.bad.append(BadSpan(pos, found - pos, "corrupt"))
        return found

    def _crc_of(self, fd: int, offset: int, length: int) -> int:
        crc = 0
        done = 0
        while done < length:
            chunk = pread_exact(fd, min(self.batch_bytes, length - done), offset + done)
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            done += len(chunk)
        return crc

    def _next_intact(self, fd: int, start: int, size: int) -> int | None:
        """The offset of the first intact record at or after ``start``, or None."""
        window = max(self.batch_bytes, 1 << 16)
        pos = start
        while pos + HEADER.size < size:
            data = pread_exact(fd, min(window, size - pos), pos)
            block = memoryview(data)
            i = HEADER.size
            while True:
                i = data.find(_PAYLOAD_START, i)
                if i < 0:
                    break
                candidate = pos + i - HEADER.size
                length = HEADER.unpack_from(block, i - HEADER.size)[0]
                if length <= self.max_record and candidate + HEADER.size + length <= size:
                    if i + length <= len(block):
                        if self._intact(block, i - HEADER.size):
                            return candidate
                    elif self._intact(memoryview(pread_exact(fd, HEADER.size + length, candidate)), 0):
                        return candidate
                i += 1
            if pos + len(block) >= size:
                return None
            pos += len(block) - HEADER.size - 1  # overlap: a header may straddle the two windows
        return None


def read_segment(path: Path) -> list[memoryview]:
    """Every intact record of a (small) segment, in order."""
    return [p for batch in SegmentReader(path) for p in batch]


def segment_id(path: Path) -> str:
    """``seg-<run>-<n>.log`` -> ``<run>-<n>`` (the part Parquet file names are derived from)."""
    return path.name[len("seg-") : -len(".log")]


def list_segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("seg-*.log"))


def spool_root(traces_dir: Path) -> Path:
    return Path(traces_dir) / SPOOL_DIR


# ------------------------------------------------------------------------------------ locking


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_lock(directory: Path) -> int | None:
    """flock ``directory/.lock``; the fd holding it, or None if a live process holds it.

    The lock file is opened read-only (an fd open for writing would keep the filesystem from
    being remounted read-only). If the lock file was replaced while we waited for it (a
    recoverer removed the directory), the lock is worthless and we retry.
    """
    path = directory / LOCK_NAME
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        except FileNotFoundError:
            return None  # the directory is gone
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    return None


def is_live(directory: Path) -> bool:
    """Whether a running process holds this spool directory's lock."""
    try:
        fd = try_lock(directory)
    except OSError:
        return False  # cannot even open its lock file (read-only?): nobody can be writing there
    if fd is None:
        return directory.is_dir()
    os.close(fd)
    return False


def remove_dir(directory: Path) -> None:
    """Remove a spool directory whose lock we hold and whose segments are converted."""
    for leftover in (PROBE_NAME, LOCK_NAME):
        try:
            (directory / leftover).unlink()
        except FileNotFoundError:
            pass
    try:
        directory.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
            raise


# ------------------------------------------------------------------------------------ writing


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class Spool:
    """One process's spool directory: append records, fsync, rotate segments.

    ``append`` is what the event loop calls: it takes ``_lock`` only around the ``os.write`` (and,
    once per segment, the ``os.open`` of a new one). ``sync`` and ``rotate`` run in the sink's
    thread (or in ``flush``); they serialise on ``_maint`` and take ``_lock`` only to swap the fd,
    so an fsync never blocks a write. ``reserve_ahead`` (sink thread) keeps disk blocks allocated
    past the write offset so appends do not wait on the journal while an fsync runs. A new segment
    is opened lazily by the first write after a rotation, so an idle spool holds no file open for
    writing.
    """

    def __init__(self, traces_dir: Path, instance: str) -> None:
        self.dir = spool_root(traces_dir) / instance
        self.instance = instance
        self._run = uuid.uuid4().hex[:8]
        self._n = 0
        self._lock = threading.Lock()
        self._maint = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0  # bytes of whole records in the current segment
        self._reserved = 0  # disk blocks preallocated for the current segment (from offset 0)
        self._rows = 0
        self._opened_at = 0.0
        self._dirty = False
        self._new_file = False
        self._retired: list[tuple[int, Path]] = []  # segments closed by a failed write
        self._lock_fd: int | None = None
        self._closed = False

    # ---------------------------------------------------------------- ownership
    def acquire(self) -> None:
        """Create the directory and take its lock. Raises ``BlockingIOError`` if it is in use."""
        for attempt in range(20):
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = try_lock(self.dir)
            if fd is not None:
                self._lock_fd = fd
                return
            if attempt < 19:
                time.sleep(0.05)  # maybe a recoverer is removing a dead namesake's directory
        raise BlockingIOError(errno.EWOULDBLOCK, f"spool {self.dir} is locked by another running process")

    def release(self) -> None:
        """Close every fd and unlock; removes the directory if no segment is left in it."""
        with self._maint:
            with self._lock:
                self._closed = True
                fds = [fd for fd, _ in self._retired]
                if self._fd is not None:
                    fds.append(self._fd)
                self._fd, self._retired = None, []
            for fd in fds:
                os.close(fd)
            if self._lock_fd is not None:
                if self.dir.is_dir() and not list_segments(self.dir):
                    remove_dir(self.dir)
                os.close(self._lock_fd)
                self._lock_fd = None

    # ---------------------------------------------------------------- event loop side
    def append(self, record: bytes) -> None:
        """Append one record (raises ``OSError`` if the disk refuses it; the segment stays clean)."""
        with self._lock:
            if self._fd is None:
                if self._closed:
                    raise SpoolClosed(f"spool {self.dir} is closed")
                self._open_locked()
            fd = self._fd
            assert fd is not None
            try:
                write_all(fd, record)
            except OSError:
                self._undo_locked(fd)
                raise
            self._size += len(record)
            self._rows += 1
            self._dirty = True

    def _open_locked(self) -> None:
        self._n += 1
        path = self.dir / f"seg-{self._run}-{self._n:06d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._path = path
        self._size = self._rows = self._reserved = 0
        self._opened_at = time.monotonic()
        self._new_file = True

    def _undo_locked(self, fd: int) -> None:
        """Cut a partly written record off (a full disk can accept half a write)."""
        try:
            os.ftruncate(fd, self._size)
            self._reserved = self._size  # truncating also dropped the preallocated blocks
        except OSError:
            # cannot cut it: the segment ends with a torn record, so close it here; the next write
            # starts a new segment and the torn tail is skipped when this one is converted
            assert self._path is not None
            self._retired.append((fd, self._path))
            self._fd, self._path = None, None

    # ---------------------------------------------------------------- sink thread side
    @property
    def rows(self) -> int:
        return self._rows if self._fd is not None else 0

    @property
    def size(self) -> int:
        return self._size if self._fd is not None else 0

    @property
    def age(self) -> float:
        return time.monotonic() - self._opened_at if self._fd is not None else 0.0

    @property
    def has_retired(self) -> bool:
        return bool(self._retired)

    def sync(self) -> None:
        """fdatasync the current segment if it changed (and its directory if it is new)."""
        with self._maint:
            with self._lock:
                fd, dirty, new_file = self._fd, self._dirty, self._new_file
                self._dirty = self._new_file = False
            if fd is None:
                return
            try:
                if dirty:
                    os.fdatasync(fd)
                if new_file:
                    fsync_dir(self.dir)
            except OSError:
                with self._lock:
                    self._dirty = self._dirty or dirty
                    self._new_file = self._new_file or new_file
                raise

    def reserve_ahead(self) -> None:
        """Keep disk blocks preallocated ahead of the current segment's write offset."""
        with self._maint:
            with self._lock:
                fd, size, reserved = self._fd, self._size, self._reserved
            if fd is None or size + PREALLOCATE_AHEAD // 2 <= reserved:
                return
            start = max(size, reserved)
            if preallocate(fd, start, PREALLOCATE_AHEAD):
                with self._lock:
                    if self._fd == fd:
                        self._reserved = start + PREALLOCATE_AHEAD

    def rotate(self) -> list[Path]:
        """Close the current segment (and any retired one): durable on disk, ready to convert."""
        with self._maint:
            with self._lock:
                closing = list(self._retired)
                if self._fd is not None and self._path is not None:
                    closing.append((self._fd, self._path))
                self._fd, self._path, self._retired = None, None, []
                self._dirty = self._new_file = False
            paths = []
            for fd, path in closing:
                try:
                    os.fdatasync(fd)
                except OSError:
                    pass  # still in the page cache; converting it is what makes it durable
                finally:
                    os.close(fd)
                paths.append(path)
            if paths:
                try:
                    fsync_dir(self.dir)
                except OSError:
                    pass
            return paths

    def probe(self) -> None:
        """Raise ``OSError`` unless a small file can be written in the spool directory now."""
        path = self.dir / PROBE_NAME
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, b"\0" * 16384)
        finally:
            os.close(fd)
            try:
                path.unlink()
            except OSError:
                pass
