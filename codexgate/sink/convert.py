"""Spool segments -> hive-partitioned Parquet; recovery of dead spools; compaction.

Conversion: a closed segment becomes ``TRACES/date=YYYY-MM-DD/part-<instance>-<segment>.parquet``,
one file per date present in it (zstd, the trace schema exactly; ``date`` is the directory, not a
column). Each file is written as ``.part-....parquet.tmp``, fsynced and renamed; only when every
file is in place is the segment deleted. The names are a function of the segment, so converting a
segment again after a crash overwrites instead of duplicating.

Parsing is Arrow's JSON reader with an explicit schema: it runs without the GIL, so converting in
the sink's thread does not stall the event loop (``json.loads`` + ``schema.to_table`` per row holds
the GIL for ~100 us a row). A value Arrow rejects sends that chunk down the row-by-row path, where
a row that does not fit the schema at all is kept in ``TRACES/_rejected/`` rather than lost.

Compaction merges a partition's small files into one, streaming row group by row group. A manifest
naming the output and inputs is written before the output appears and removed after the inputs are
deleted; a leftover manifest is completed (output present) or rolled back (output absent) by the
next ``compact`` or ``recover``. Files whose segment is still in a spool are never compacted, since
their segment may be converted again.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from codexgate.sink import spool
from codexgate.core import schema

REJECTED_DIR = "_rejected"
COMPACT_LOCK = ".compact.lock"
CHUNK_BYTES = 4 << 20  # spool bytes parsed per Arrow call
ROW_GROUP_BYTES = 64 << 20  # in-memory Arrow bytes buffered per row group
ROW_GROUP_ROWS = 128 * 1024
# Large free-text columns: dictionary encoding never pays off on them and costs time.
_NO_DICTIONARY = {
    "request_headers",
    "request_body",
    "response_headers",
    "response_body",
    "response_text",
    "response_reasoning",
    "new_input_items",
    "codex_turn_metadata",
    "error_message",
}
_DICTIONARY_COLUMNS = [f.name for f in schema.SCHEMA if f.name not in _NO_DICTIONARY]
_DEFAULTS = {k: v for k, v in schema.normalise_row({}).items() if v is not None}


def _spool_type(typ: pa.DataType) -> pa.DataType:
    """A column's type in the spool's JSON: timestamps are integer microseconds."""
    if pa.types.is_timestamp(typ):
        return pa.int64()
    if pa.types.is_list(typ):
        return pa.list_(_spool_type(typ.value_type))
    if pa.types.is_struct(typ):
        return pa.struct([pa.field(f.name, _spool_type(f.type)) for f in typ])
    return typ


_PARSE_SCHEMA = pa.schema([pa.field(f.name, _spool_type(f.type)) for f in schema.SCHEMA])
_NULLABLE_SCHEMA = pa.schema([pa.field(f.name, f.type) for f in schema.SCHEMA])
# Unknown top-level keys never reach the spool (``spool.encode`` refuses them); unknown keys inside a
# struct are dropped, as ``schema.to_table`` drops them.
_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=_PARSE_SCHEMA, unexpected_field_behavior="ignore")


def parquet_writer(path: Path) -> pq.ParquetWriter:
    return pq.ParquetWriter(
        path,
        schema.SCHEMA,
        compression="zstd",
        use_dictionary=_DICTIONARY_COLUMNS,
        write_statistics=_DICTIONARY_COLUMNS,
    )


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ rows -> Arrow


def _finish(table: pa.Table) -> pa.Table:
    """Parsed spool columns -> the trace schema, with ``normalise_row``'s defaults applied."""
    table = table.cast(_NULLABLE_SCHEMA)
    columns = []
    for name in schema.COLUMNS:
        col = table.column(name)
        default = _DEFAULTS.get(name)
        if default is not None and col.null_count:
            col = pc.fill_null(col, pa.scalar(default, col.type))
        columns.append(col)
    # normalise_row: attempt_count 0 with a non-empty attempts list means len(attempts)
    i = schema.COLUMNS.index("attempt_count")
    lengths = pc.list_value_length(columns[schema.COLUMNS.index("attempts")])
    use_length = pc.fill_null(pc.and_(pc.equal(columns[i], 0), pc.greater(lengths, 0)), False)
    columns[i] = pc.if_else(use_length, pc.cast(lengths, pa.int32()), columns[i])
    return pa.Table.from_arrays(columns, schema=schema.SCHEMA)


@dataclass
class Rejected:
    payload: bytes
    error: str


def rows_table(payloads: list[memoryview]) -> tuple[pa.Table, list[Rejected]]:
    """Spool payloads -> (table in the trace schema, payloads that do not fit it)."""
    try:
        parsed = pj.read_json(
            pa.py_buffer(b"\n".join(payloads)),
            read_options=pj.ReadOptions(use_threads=False, block_size=CHUNK_BYTES * 2),
            parse_options=_PARSE_OPTIONS,
        )
        return _finish(parsed), []
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    good, rejected = [], []
    for payload in payloads:
        try:
            row = spool.decode(payload)
            schema.to_table([row])  # does it fit?
            good.append(row)
        except (ValueError, TypeError, KeyError, OverflowError, pa.ArrowException) as exc:
            rejected.append(Rejected(bytes(payload), f"{type(exc).__name__}: {exc}"))
    return schema.to_table(good), rejected


def _by_date(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """Split a table by ``schema.partition_date`` (the UTC date of start_time)."""
    days = pc.cast(table.column("start_time"), pa.date32())
    distinct = pc.unique(days).to_pylist()
    if len(distinct) == 1:
        yield distinct[0].isoformat(), table
        return
    for day in sorted(distinct):
        yield day.isoformat(), table.filter(pc.equal(days, pa.scalar(day, pa.date32())))


# ------------------------------------------------------------------------------ conversion


def part_name(instance: str, segment_id: str) -> str:
    return f"part-{instance}-{segment_id}.parquet"


def _segment_of(part: Path) -> tuple[str, str] | None:
    """``part-<instance>-<run>-<n>.parquet`` -> (instance, segment id); None for other files."""
    name = part.name
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    pieces = name[len("part-") : -len(".parquet")].rsplit("-", 2)
    if len(pieces) != 3:
        return None
    return pieces[0], f"{pieces[1]}-{pieces[2]}"


@dataclass
class Converted:
    rows: int = 0
    files: list[Path] = field(default_factory=list)
    torn_bytes: int = 0
    rejected: int = 0
    rejected_file: Path | None = None


class _DateFile:
    """One output file being written: a temp file, row groups buffered up to a sensible size."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.tmp = dest.with_name(f".{dest.name}.tmp")
        self.writer: pq.ParquetWriter | None = None
        self.buffer: list[pa.Table] = []
        self.buffered = 0

    def add(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered += table.nbytes
        if self.buffered >= ROW_GROUP_BYTES or sum(t.num_rows for t in self.buffer) >= ROW_GROUP_ROWS:
            self._write()

    def _write(self) -> None:
        if not self.buffer:
            return
        if self.writer is None:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            self.writer = parquet_writer(self.tmp)
        table = pa.concat_tables(self.buffer)
        self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.buffer, self.buffered = [], 0

    def finish(self) -> None:
        self._write()
        assert self.writer is not None
        self.writer.close()
        fsync_file(self.tmp)

    def discard(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - already failing; the temp file goes anyway
                pass
        self.tmp.unlink(missing_ok=True)


def convert_segment(traces_dir: Path, segment: Path, instance: str) -> Converted:
    """Write a closed segment's rows as Parquet (one file per date), then delete the segment."""
    traces_dir = Path(traces_dir)
    reader = spool.SegmentReader(segment, CHUNK_BYTES)
    seg_id = spool.segment_id(segment)
    result = Converted()
    files: dict[str, _DateFile] = {}
    rejected: list[Rejected] = []
    try:
        for chunk in reader:
            table, bad = rows_table(chunk)
            rejected.extend(bad)
            result.rows += table.num_rows
            if not table.num_rows:
                continue
            for day, part in _by_date(table):
                if day not in files:
                    files[day] = _DateFile(traces_dir / f"date={day}" / part_name(instance, seg_id))
                files[day].add(part)
        result.torn_bytes = reader.torn_bytes
        for out in files.values():
            out.finish()
    except BaseException:
        for out in files.values():
            out.discard()
        raise
    for day in sorted(files):
        out = files[day]
        os.replace(out.tmp, out.dest)
        spool.fsync_dir(out.dest.parent)
        result.files.append(out.dest)
    if rejected:
        result.rejected = len(rejected)
        result.rejected_file = _keep_rejected(traces_dir, instance, seg_id, rejected)
    segment.unlink()
    spool.fsync_dir(segment.parent)
    return result


def _keep_rejected(traces_dir: Path, instance: str, seg_id: str, rejected: list[Rejected]) -> Path:
    directory = traces_dir / REJECTED_DIR
    directory.mkdir(exist_ok=True)
    dest = directory / f"{instance}-{seg_id}.jsonl"
    tmp = directory / f".{dest.name}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for item in rejected:
            row = item.payload.decode("utf-8", "replace")
            f.write(json.dumps({"error": item.error, "row": row}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    spool.fsync_dir(directory)
    return dest


# ------------------------------------------------------------------------------ recovery


@dataclass
class Recovered:
    rows: int = 0
    segments: int = 0
    torn_bytes: int = 0
    rejected: int = 0
    instances: list[str] = field(default_factory=list)


def recover_dir(traces_dir: Path, directory: Path, result: Recovered) -> None:
    """Convert every segment left in a spool directory whose lock the caller holds."""
    for segment in spool.list_segments(directory):
        fsync_file(segment)  # what we convert must be what is on disk, should we crash again
        done = convert_segment(traces_dir, segment, directory.name)
        result.rows += done.rows
        result.segments += 1
        result.torn_bytes += done.torn_bytes
        result.rejected += done.rejected
    for tmp in Path(traces_dir).glob(f"date=*/.part-{directory.name}-*.parquet.tmp"):
        tmp.unlink(missing_ok=True)  # a conversion that crashed half way


def recover_all(traces_dir: Path, skip: str | None = None) -> Recovered:
    """Convert the spools of gateways that are no longer running (their lock is free)."""
    traces_dir = Path(traces_dir)
    result = Recovered()
    root = spool.spool_root(traces_dir)
    directories = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for directory in directories:
        if directory.name == skip:
            continue
        lock = spool.try_lock(directory)
        if lock is None:
            continue  # a live gateway owns it
        try:
            recover_dir(traces_dir, directory, result)
            result.instances.append(directory.name)
            spool.remove_dir(directory)
        finally:
            os.close(lock)
    try:
        lock = _compact_lock(traces_dir, blocking=False)
    except OSError:
        lock = None  # e.g. a read-only traces directory: nothing to finish there anyway
    if lock is not None:
        try:
            finish_compactions(traces_dir)
        finally:
            os.close(lock)
    return result


# ------------------------------------------------------------------------------ compaction


class CompactionBusy(Exception):
    """Another process is compacting this traces directory."""


@dataclass
class Merge:
    partition: str  # e.g. "date=2026-01-05"
    inputs: list[str]
    output: str
    rows: int


@dataclass
class CompactResult:
    merges: list[Merge] = field(default_factory=list)
    finished: int = 0  # interrupted compactions completed or rolled back first

    @property
    def partitions(self) -> int:
        return len({m.partition for m in self.merges})

    @property
    def files_in(self) -> int:
        return sum(len(m.inputs) for m in self.merges)

    @property
    def files_out(self) -> int:
        return len(self.merges)

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self.merges)


def _compact_lock(traces_dir: Path, *, blocking: bool) -> int | None:
    fd = os.open(Path(traces_dir) / COMPACT_LOCK, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _write_manifest(path: Path, doc: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    spool.fsync_dir(path.parent)


def finish_compactions(traces_dir: Path) -> int:
    """Complete (output in place) or roll back (output absent) compactions a crash interrupted.

    The caller holds the compaction lock. Returns how many manifests were handled.
    """
    handled = 0
    for stale in Path(traces_dir).glob("date=*/.compact-*.json.tmp"):
        stale.unlink(missing_ok=True)  # crashed while writing the manifest: nothing else happened
    for manifest in sorted(Path(traces_dir).glob("date=*/.compact-*.json")):
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        part = manifest.parent
        if (part / doc["output"]).exists():
            for name in doc["inputs"]:
                (part / name).unlink(missing_ok=True)
        else:
            (part / f".{doc['output']}.tmp").unlink(missing_ok=True)
        spool.fsync_dir(part)
        manifest.unlink()
        spool.fsync_dir(part)
        handled += 1
    return handled


def _in_spool(traces_dir: Path, part: Path) -> bool:
    owner = _segment_of(part)
    if owner is None:
        return False
    instance, seg_id = owner
    return (spool.spool_root(traces_dir) / instance / f"seg-{seg_id}.log").exists()


def compact(traces_dir: Path, date: str | None = None, target_rows: int = 1_000_000) -> CompactResult:
    """Merge each date partition's small files into files of up to ``target_rows`` rows.

    Raises ``CompactionBusy`` if another process is compacting the same directory.
    """
    traces_dir = Path(traces_dir)
    if date is not None:
        Date.fromisoformat(date)  # ValueError for a malformed date
    lock = _compact_lock(traces_dir, blocking=False)
    if lock is None:
        raise CompactionBusy(f"another compaction of {traces_dir} is running")
    try:
        result = CompactResult(finished=finish_compactions(traces_dir))
        partitions = [traces_dir / f"date={date}"] if date else sorted(traces_dir.glob("date=*"))
        for part in partitions:
            if not part.is_dir():
                continue
            batch: list[tuple[Path, int]] = []
            for path in sorted(part.glob("*.parquet")):
                rows = pq.ParquetFile(path).metadata.num_rows
                if rows >= target_rows or _in_spool(traces_dir, path):
                    continue  # already big, or its segment may still be converted again
                if batch and sum(n for _, n in batch) + rows > target_rows:
                    _merge_if_worth_it(part, batch, result)
                    batch = []
                batch.append((path, rows))
            _merge_if_worth_it(part, batch, result)
        return result
    finally:
        os.close(lock)


def _merge_if_worth_it(part: Path, batch: list[tuple[Path, int]], result: CompactResult) -> None:
    if len(batch) < 2:
        return
    token = uuid.uuid4().hex[:12]
    output = f"compact-{token}.parquet"
    inputs = [p.name for p, _ in batch]
    _write_manifest(part / f".compact-{token}.json", {"output": output, "inputs": inputs})
    out = _DateFile(part / output)
    rows = 0
    try:
        for path, _ in batch:
            pf = pq.ParquetFile(path)
            for i in range(pf.num_row_groups):
                table = schema.conform(pf.read_row_group(i))
                rows += table.num_rows
                out.add(table)
        out.finish()
    except BaseException:
        out.discard()
        (part / f".compact-{token}.json").unlink(missing_ok=True)
        raise
    os.replace(out.tmp, out.dest)
    spool.fsync_dir(part)
    for path, _ in batch:
        path.unlink()
    spool.fsync_dir(part)
    (part / f".compact-{token}.json").unlink()
    spool.fsync_dir(part)
    result.merges.append(Merge(part.name, inputs, output, rows))


# ------------------------------------------------------------------------------ stats


@dataclass
class PartitionStats:
    partition: str
    files: int
    rows: int
    bytes: int


def partition_stats(traces_dir: Path) -> list[PartitionStats]:
    """Files, rows and bytes of each date partition (files that vanish meanwhile are left out)."""
    out = []
    for part in sorted(p for p in Path(traces_dir).glob("date=*") if p.is_dir()):
        stats = PartitionStats(part.name, 0, 0, 0)
        for f in sorted(part.glob("*.parquet")):
            try:
                rows, size = pq.ParquetFile(f).metadata.num_rows, f.stat().st_size
            except FileNotFoundError:  # compacted meanwhile
                continue
            stats.files += 1
            stats.rows += rows
            stats.bytes += size
        out.append(stats)
    return out
