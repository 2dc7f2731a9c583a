"""``TraceSink``: trace rows → durable spool → hive-partitioned Parquet, exactly once.

The event loop calls ``write(row)``: one ``os.write`` of the encoded row to the current spool
segment, no fsync (the page cache survives the gateway being killed). A background thread
fsyncs the segment every ``fsync_interval_s``, and every ``flush_interval_s`` (or
``flush_rows`` rows) rotates it and converts the closed segment to Parquet:
``TRACES/date=YYYY-MM-DD/part-<instance>-<segment>.parquet`` (zstd), written as a temp file,
fsynced and renamed; only then is the segment deleted. File names are a function of the
segment, so converting a segment twice (a crash between rename and delete) overwrites rather
than duplicates. On ``start`` every segment left behind by a dead gateway (its spool
directory's ``flock`` is free) is converted the same way. ``compact`` merges small files.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from addons import trace_spool
from codexgate import schema

SPOOL_DIR = "_spool"
_LOCK = ".lock"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class SinkError(Exception):
    """The spool cannot be written (disk full, read-only, I/O error)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_parquet(table: pa.Table, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=64_000)
    _fsync_file(tmp)
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)


def _spool_type(typ: pa.DataType) -> pa.DataType:
    """The type a column has in the spool's JSON: timestamps are integer microseconds."""
    if pa.types.is_timestamp(typ):
        return pa.int64()
    if pa.types.is_list(typ):
        return pa.list_(_spool_type(typ.value_type))
    if pa.types.is_struct(typ):
        return pa.struct([pa.field(f.name, _spool_type(f.type)) for f in typ])
    return typ


_SPOOL_SCHEMA = pa.schema([pa.field(f.name, _spool_type(f.type)) for f in schema.SCHEMA])
_ARROW_SCHEMA = pa.schema([pa.field(f.name, f.type) for f in schema.SCHEMA])
_CHUNK_BYTES = 8 << 20  # spool bytes parsed per step: bounds memory and each GIL-free C++ call
_DAY_US = 86_400 * 1_000_000


def _rows_table(payloads: list[bytes]) -> pa.Table:
    """Spool payloads -> Arrow table in the trace schema.

    Parsed by Arrow's JSON reader, which runs without the GIL: a conversion in the sink's thread
    then costs the event loop nothing (a per-row ``json.loads`` + ``schema.to_table`` holds the GIL
    and stalled the loop for tens of ms). Falls back to the row-by-row path if Arrow rejects a value.
    """
    try:
        table = pj.read_json(
            pa.BufferReader(b"\n".join(payloads)),
            read_options=pj.ReadOptions(use_threads=False, block_size=_CHUNK_BYTES * 2),
            parse_options=pj.ParseOptions(explicit_schema=_SPOOL_SCHEMA, unexpected_field_behavior="error"),
        )
        table = table.select(schema.COLUMNS).cast(_ARROW_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return schema.to_table(json.loads(p) for p in payloads)
    columns = []
    for name in schema.COLUMNS:
        col = table.column(name)
        default = schema._DEFAULTS.get(name)
        if default is not None and col.null_count:
            col = pc.fill_null(col, pa.scalar(default, col.type))
        columns.append(col)
    attempts = columns[schema.COLUMNS.index("attempts")]
    i = schema.COLUMNS.index("attempt_count")
    lengths = pc.cast(pc.fill_null(pc.list_value_length(attempts), 0), pa.int32())
    columns[i] = pc.if_else(pc.equal(columns[i], 0), lengths, columns[i])
    return pa.Table.from_arrays(columns, schema=schema.SCHEMA)


def _chunks(segment: Path) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for payload in trace_spool.read_payloads(segment):
        batch.append(payload)
        size += len(payload)
        if size >= _CHUNK_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def convert_segment(traces_dir: Path, segment: Path, instance: str) -> int:
    """Write a closed segment's rows as Parquet (one file per date) and delete the segment.

    Streams the segment in chunks of ``_CHUNK_BYTES`` (memory stays bounded whatever its size);
    each date's file is written as a temp file, fsynced and renamed before the segment goes.
    """
    writers: dict[str, tuple[pq.ParquetWriter, Path, Path]] = {}
    rows = 0
    try:
        for payloads in _chunks(segment):
            table = _rows_table(payloads)
            rows += table.num_rows
            days = pc.divide(pc.cast(table.column("start_time"), pa.int64()), _DAY_US)
            for day_number in pc.unique(days).to_pylist():
                day = (_EPOCH + timedelta(days=day_number)).strftime("%Y-%m-%d")
                part = table.filter(pc.equal(days, day_number))
                if day not in writers:
                    dest = traces_dir / f"date={day}" / f"part-{instance}-{segment.stem}.parquet"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_name(f".{dest.name}.tmp")
                    writers[day] = (pq.ParquetWriter(tmp, schema.SCHEMA, compression="zstd"), tmp, dest)
                writers[day][0].write_table(part)
        for writer, _, _ in writers.values():
            writer.close()
    except BaseException:
        for writer, tmp, _ in writers.values():
            writer.close()
            tmp.unlink(missing_ok=True)
        raise
    for _, tmp, dest in writers.values():
        _fsync_file(tmp)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    segment.unlink(missing_ok=True)
    _fsync_dir(segment.parent)
    return rows


def _try_lock(directory: Path) -> int | None:
    fd = os.open(directory / _LOCK, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def recover(traces_dir: Path, skip: str | None = None) -> int:
    """Convert the spools of gateways that are no longer running; returns rows recovered."""
    root = Path(traces_dir) / SPOOL_DIR
    if not root.is_dir():
        return 0
    rows = 0
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and p.name != skip):
        lock = _try_lock(directory)
        if lock is None:
            continue  # a live gateway owns it
        try:
            for segment in sorted(directory.glob("seg-*.log")):
                rows += convert_segment(Path(traces_dir), segment, directory.name)
            shutil.rmtree(directory)
        finally:
            os.close(lock)
    _finish_compactions(Path(traces_dir))
    return rows


class TraceSink:
    def __init__(
        self,
        traces_dir: Path,
        *,
        flush_interval_s: float = 5.0,
        flush_rows: int = 10_000,
        fsync_interval_s: float = 0.2,
        instance_id: str | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.traces_dir = Path(traces_dir)
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        self.fsync_interval_s = fsync_interval_s
        self.instance_id = instance_id or uuid.uuid4().hex[:12]
        self.on_error = on_error
        self.spool = self.traces_dir / SPOOL_DIR / self.instance_id
        self.last_error: str | None = None
        self._lock = threading.Lock()  # guards fd swaps against writes
        self._convert = threading.Lock()  # one rotation/conversion at a time
        self._fd: int | None = None
        self._segment: Path | None = None
        self._seq = 0
        self._rows = 0
        self._size = 0  # bytes of whole records in the current segment
        self._opened_at = 0.0
        self._dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _try_lock(self.spool)
        if self._lock_fd is None:
            raise SinkError(f"trace spool {self.spool} is in use by another process")
        recover(self.traces_dir, skip=self.instance_id)
        self._thread = threading.Thread(target=self._run, name="codexgate-trace-sink", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        try:
            self.flush()
        finally:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            if self.spool.is_dir() and not any(p.name != _LOCK for p in self.spool.iterdir()):
                shutil.rmtree(self.spool, ignore_errors=True)

    # ---------------------------------------------------------------- event loop side
    def write(self, row: Mapping[str, Any]) -> None:
        record = trace_spool.encode(row)
        try:
            with self._lock:
                if self._fd is None:
                    self._open_segment_locked()
                assert self._fd is not None
                try:
                    trace_spool.write_all(self._fd, record)
                except OSError:
                    self._abandon_segment_locked()
                    raise
                self._rows += 1
                self._size += len(record)
                self._dirty = True
        except OSError as exc:
            self._failed(f"trace spool {self.spool} not writable: {exc.strerror or exc}")
            raise SinkError(self.last_error) from None
        if self.last_error is not None:
            self._recovered()

    def _abandon_segment_locked(self) -> None:
        """After a failed write: cut the torn record off and stop appending to this segment.

        A partial record left in place (disk full mid-write) would hide every record written after
        it once space is back, since readers stop at the first torn record. If the truncate fails
        too, the torn record stays at the *end* of a closed segment, where it is skipped.
        The next write opens a new segment; the flusher converts this one.
        """
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    # ---------------------------------------------------------------- thread side
    def _run(self) -> None:
        last_sync = time.monotonic()
        while not self._stop.wait(min(self.fsync_interval_s, 0.05)):
            now = time.monotonic()
            if now - last_sync >= self.fsync_interval_s:
                self._sync()
                last_sync = now
            if self._rows and (
                now - self._opened_at >= self.flush_interval_s or self._rows >= self.flush_rows
            ):
                try:
                    self.flush()
                except OSError as exc:
                    self._failed(f"cannot write Parquet under {self.traces_dir}: {exc.strerror or exc}")
                except Exception as exc:  # never let the flusher thread die silently
                    self._failed(f"cannot convert trace spool {self.spool}: {type(exc).__name__}: {exc}")

    def _sync(self) -> None:
        # fsync a dup: flush() may close the segment's fd meanwhile (and its number be reused)
        with self._lock:
            fd = os.dup(self._fd) if self._fd is not None and self._dirty else None
            self._dirty = False
        if fd is not None:
            try:
                os.fsync(fd)
            except OSError as exc:
                self._failed(f"trace spool {self.spool} fsync failed: {exc.strerror or exc}")
            finally:
                os.close(fd)

    def flush(self) -> None:
        """Rotate the current segment and convert every closed one to Parquet (blocking)."""
        with self._convert:
            # close the current segment; the next write opens a new one (no idle open fd, so
            # the filesystem can e.g. be remounted)
            with self._lock:
                old_fd, self._fd, self._segment = self._fd, None, None
                self._rows = 0
            if old_fd is not None:
                try:
                    os.fsync(old_fd)
                finally:
                    os.close(old_fd)
            for segment in sorted(self.spool.glob("seg-*.log")):
                with self._lock:
                    current = self._segment
                if segment != current:
                    convert_segment(self.traces_dir, segment, self.instance_id)

    def _open_segment_locked(self) -> None:
        existing = [int(p.stem.split("-")[1]) for p in self.spool.glob("seg-*.log")]
        self._seq = max([self._seq, *existing]) + 1
        self._segment = self.spool / f"seg-{self._seq:08d}.log"
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._rows = 0
        self._size = 0
        self._opened_at = time.monotonic()

    def _failed(self, message: str) -> None:
        if self.last_error != message:
            self.last_error = message
            if self.on_error is not None:
                self.on_error(message)

    def _recovered(self) -> None:
        self.last_error = None


# ------------------------------------------------------------------------- compaction


@dataclass
class CompactResult:
    partitions: int = 0
    files_in: int = 0
    files_out: int = 0
    rows: int = 0


def _finish_compactions(traces_dir: Path) -> None:
    """Complete or roll back compactions interrupted by a crash."""
    for manifest in traces_dir.glob("date=*/.compact-*.json"):
        doc = json.loads(manifest.read_text())
        output = manifest.parent / doc["output"]
        if output.exists():
            for name in doc["inputs"]:
                (manifest.parent / name).unlink(missing_ok=True)
        else:
            (manifest.parent / f".{doc['output']}.tmp").unlink(missing_ok=True)
        manifest.unlink()
        _fsync_dir(manifest.parent)


def compact(traces_dir: Path, date: str | None = None, target_rows: int = 1_000_000) -> CompactResult:
    """Merge each date partition's files into files of up to ``target_rows`` rows.

    Crash-safe: a manifest names the inputs before the merged file appears; inputs are deleted
    only after it is in place; a leftover manifest is completed (or rolled back) next time.
    """
    traces_dir = Path(traces_dir)
    _finish_compactions(traces_dir)
    result = CompactResult()
    partitions = [traces_dir / f"date={date}"] if date else sorted(traces_dir.glob("date=*"))
    for part in partitions:
        files = sorted(part.glob("*.parquet"))
        if len(files) < 2:
            continue
        result.partitions += 1
        batch: list[Path] = []
        rows = 0
        for f in files:
            n = pq.ParquetFile(f).metadata.num_rows
            if batch and rows + n > target_rows:
                result.files_out += _merge(part, batch, result)
                batch, rows = [], 0
            batch.append(f)
            rows += n
        if len(batch) > 1:
            result.files_out += _merge(part, batch, result)
    return result


def _merge(part: Path, files: list[Path], result: CompactResult) -> int:
    if len(files) < 2:
        return 0
    name = f"part-compacted-{uuid.uuid4().hex[:12]}.parquet"
    manifest = part / f".compact-{uuid.uuid4().hex[:8]}.json"
    manifest.write_text(json.dumps({"output": name, "inputs": [f.name for f in files]}))
    _fsync_dir(part)
    table = pa.concat_tables([schema.conform(pq.read_table(f)) for f in files])
    table = table.sort_by([("start_time", "ascending")])
    _write_parquet(table, part / name)
    for f in files:
        f.unlink()
    manifest.unlink()
    _fsync_dir(part)
    result.files_in += len(files)
    result.rows += table.num_rows
    return 1
