"""Spool segments -> hive-partitioned Parquet, exactly once, and nothing dropped silently.

A closed segment becomes ``TRACES/date=YYYY-MM-DD/part-<instance>-<segment>.parquet``,
one file per date present in it (zstd, the trace schema exactly; ``date`` is the directory, not a
column). Each file is written as ``.part-....parquet.tmp``, fsynced and renamed; only when every
file is in place is the segment deleted. The names are a function of the segment, so converting a
segment again after a crash overwrites instead of duplicating.

Parsing is Arrow's JSON reader with an explicit schema: it runs without the GIL, so converting in
the sink's thread does not stall the event loop (``json.loads`` + ``schema.to_table`` per row holds
the GIL for ~100 us a row). A batch is parsed where the reader read it (``spool.Batch.ndjson``: no
copy under the GIL), and only the timestamp columns are cast. What still holds the GIL (the
reader's per-record checks, the Python between Arrow calls) is ~8-15% of a conversion; the
converter process (``codexgate.sink.converter``) takes even that off the gateway's GIL. A value Arrow rejects makes the converter split that chunk in halves
until each row Arrow rejects is alone; such a row is kept in ``TRACES/_rejected/`` rather than lost.

Nothing is dropped silently: every record the reader cannot read whole (torn, corrupt, over
``spool.MAX_RECORD_BYTES``) is copied byte for byte to ``TRACES/_rejected/`` and every row that
does not fit the schema is kept there as JSON, before the segment is deleted; ``Converted.problems``
says so in one line per kind (never a row's contents) for the caller to log.

No conversion path imports anything lazily: every Python value -> Arrow conversion (``pa.scalar``,
``pa.array``, ``Table.from_pylist``) makes pyarrow import pandas the first time, which holds the GIL
for the length of that import and stalls the event loop, so none is used here: constants are
parsed by Arrow's JSON reader at import time.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from codexgate.core import schema
from codexgate.sink import spool

REJECTED_DIR = "_rejected"
CHUNK_BYTES = 4 << 20  # spool bytes parsed per Arrow call
ROW_GROUP_BYTES = 64 << 20  # in-memory Arrow bytes buffered per row group
ROW_GROUP_ROWS = 128 * 1024
# Large free-text columns: dictionary encoding never pays off on them and costs time.
_NO_DICTIONARY = {
    "request_headers",
    "request_body",
    "upstream_request_body",
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
_READ_OPTIONS = pj.ReadOptions(use_threads=False, block_size=CHUNK_BYTES * 2)


def _parse_constants() -> dict[str, pa.Scalar]:
    """The schema defaults as Arrow scalars, made by Arrow's JSON reader (see the module docstring)."""
    table = pj.read_json(pa.py_buffer(json.dumps(_DEFAULTS).encode()), parse_options=_PARSE_OPTIONS)
    table = table.cast(_NULLABLE_SCHEMA)
    return {name: table.column(name)[0] for name in _DEFAULTS}


_DEFAULT_SCALARS = _parse_constants()
_FALSE = _DEFAULT_SCALARS["streaming"]
_ZERO = _DEFAULT_SCALARS["attempt_count"]  # int32, the type of attempt_count and of list lengths
if not (_FALSE.as_py() is False and _ZERO.as_py() == 0 and _ZERO.type == pa.int32()):
    raise RuntimeError("trace schema defaults changed: update convert._FALSE / convert._ZERO")
# per column, in schema order (the parse schema's order): (type, differs in the spool, default)
_FINISH = [
    (f.type, f.type != _PARSE_SCHEMA.field(f.name).type, _DEFAULT_SCALARS.get(f.name))
    for f in _NULLABLE_SCHEMA
]
_EMPTY = pa.Table.from_batches([], schema=schema.SCHEMA)  # (empty_table() imports pandas)
_ARROW_COLUMN = re.compile(r"Column\(/([A-Za-z0-9_]+)")


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
    if table.schema.names != _PARSE_SCHEMA.names:  # Arrow gives the explicit schema's order; be sure
        table = table.select(_PARSE_SCHEMA.names)
    columns = []
    for col, (typ, cast, default) in zip(table.columns, _FINISH, strict=True):
        if cast:  # only where the spool's type differs: Table.cast would hold the GIL for every column
            col = col.cast(typ)
        if default is not None and col.null_count:
            col = pc.fill_null(col, default)
        columns.append(col)
    # normalise_row: attempt_count 0 with a non-empty attempts list means len(attempts)
    i = schema.COLUMNS.index("attempt_count")
    lengths = pc.list_value_length(columns[schema.COLUMNS.index("attempts")])
    use_length = pc.fill_null(pc.and_(pc.equal(columns[i], _ZERO), pc.greater(lengths, _ZERO)), _FALSE)
    columns[i] = pc.if_else(use_length, pc.cast(lengths, pa.int32()), columns[i])
    return pa.Table.from_arrays(columns, schema=schema.SCHEMA)


@dataclass
class Rejected:
    payload: bytes
    error: str


_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def _explain(exc: Exception) -> str:
    """Arrow's message, plus the type the column must have when Arrow names the column."""
    message = f"{type(exc).__name__}: {exc}"
    match = _ARROW_COLUMN.search(str(exc))
    if match and match.group(1) in _PARSE_SCHEMA.names:
        name = match.group(1)
        message += f" ({name} must be {schema.SCHEMA.field(name).type})"
    return message


def _parse(payloads: list[memoryview]) -> pa.Table:
    ndjson = payloads.ndjson if isinstance(payloads, spool.Batch) else None
    # a whole batch is parsed where the reader read it; a part of one (isolating a rejected row) is joined
    data = pa.py_buffer(ndjson if ndjson is not None else b"\n".join(payloads))
    table = pj.read_json(data, read_options=_READ_OPTIONS, parse_options=_PARSE_OPTIONS)
    return _finish(table)


def _parse_apart(payloads: list[memoryview], good: list[pa.Table], rejected: list[Rejected]) -> None:
    """Parse what Arrow accepts of ``payloads``, halving a failing list down to single rows."""
    try:
        good.append(_parse(payloads))
        return
    except _ARROW_ERRORS as exc:
        if len(payloads) == 1:
            rejected.append(Rejected(bytes(payloads[0]), _explain(exc)))
            return
    half = len(payloads) // 2
    _parse_apart(payloads[:half], good, rejected)
    _parse_apart(payloads[half:], good, rejected)


def rows_table(payloads: list[memoryview]) -> tuple[pa.Table, list[Rejected]]:
    """Spool payloads -> (table in the trace schema, payloads that do not fit it), in order."""
    good: list[pa.Table] = []
    rejected: list[Rejected] = []
    _parse_apart(payloads, good, rejected)
    if not good:
        return _EMPTY, rejected
    return (good[0] if len(good) == 1 else pa.concat_tables(good)), rejected


def _by_date(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """Split a table by ``schema.partition_date`` (the UTC date of start_time)."""
    days = pc.cast(table.column("start_time"), pa.date32())
    distinct = sorted(pc.unique(days), key=lambda day: day.as_py())
    if len(distinct) == 1:
        yield distinct[0].as_py().isoformat(), table
        return
    for day in distinct:
        yield day.as_py().isoformat(), table.filter(pc.equal(days, day))


# ------------------------------------------------------------------------------ conversion


def part_name(instance: str, segment_id: str) -> str:
    return f"part-{instance}-{segment_id}.parquet"


def segment_of(part: Path) -> tuple[str, str] | None:
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
    """What converting one segment did. ``rejected``/``unreadable``: kept in ``_rejected/``."""

    segment: str = ""
    rows: int = 0
    files: list[Path] = field(default_factory=list)
    torn_bytes: int = 0  # bytes of unreadable spans (all kept in unreadable_files)
    rejected: int = 0  # rows that do not fit the trace schema
    rejected_file: Path | None = None
    unreadable: list[spool.BadSpan] = field(default_factory=list)
    unreadable_files: list[Path] = field(default_factory=list)

    def problems(self) -> list[str]:
        """One line per kind of record kept aside (counts and paths only, never row contents)."""
        out = []
        if self.rejected:
            out.append(
                f"{self.rejected} trace rows of spool segment {self.segment} do not fit the trace "
                f"schema; kept in {self.rejected_file}"
            )
        if self.unreadable:
            kinds = ", ".join(
                f"{sum(1 for s in self.unreadable if s.reason == r)} {r}"
                for r in ("torn", "corrupt", "oversized")
                if any(s.reason == r for s in self.unreadable)
            )
            where = self.unreadable_files[0].parent if self.unreadable_files else REJECTED_DIR
            out.append(
                f"spool segment {self.segment} has {len(self.unreadable)} unreadable record span(s) "
                f"({kinds}; {self.torn_bytes:,} bytes) that cannot be converted; their bytes are kept in "
                f"{where} as {self.unreadable_files[0].name if len(self.unreadable_files) == 1 else '*.bin'}"
            )
        return out


class DateFile:
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
    result = Converted(segment=segment.name)
    files: dict[str, DateFile] = {}
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
                    files[day] = DateFile(traces_dir / f"date={day}" / part_name(instance, seg_id))
                files[day].add(part)
        result.torn_bytes = reader.torn_bytes
        result.unreadable = list(reader.bad)
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
    if result.unreadable:
        result.unreadable_files = _keep_unreadable(traces_dir, instance, seg_id, segment, result.unreadable)
    segment.unlink()
    spool.fsync_dir(segment.parent)
    return result


def _keep_rejected(traces_dir: Path, instance: str, seg_id: str, rejected: list[Rejected]) -> Path:
    """``_rejected/<instance>-<segment>.jsonl``: one ``{"error", "row"}`` line per row; durable."""
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


def unreadable_name(instance: str, seg_id: str, span: spool.BadSpan) -> str:
    return f"{instance}-{seg_id}-at{span.offset}-{span.reason}.bin"


def _keep_unreadable(
    traces_dir: Path, instance: str, seg_id: str, segment: Path, spans: list[spool.BadSpan]
) -> list[Path]:
    """Copy each span's bytes, exactly as in the segment, to ``_rejected/``; durable before return.

    Copied block by block (a span may be larger than memory should hold). The names are a function
    of the segment and the offset, so converting the segment again after a crash overwrites them.
    """
    directory = traces_dir / REJECTED_DIR
    directory.mkdir(exist_ok=True)
    out = []
    src = os.open(segment, os.O_RDONLY)
    try:
        for span in spans:
            dest = directory / unreadable_name(instance, seg_id, span)
            tmp = directory / f".{dest.name}.tmp"
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                done = 0
                while done < span.length:
                    block = spool.pread_exact(src, min(CHUNK_BYTES, span.length - done), span.offset + done)
                    if not block:
                        break
                    spool.write_all(dst, block)
                    done += len(block)
                os.fsync(dst)
            finally:
                os.close(dst)
            os.replace(tmp, dest)
            out.append(dest)
    finally:
        os.close(src)
    spool.fsync_dir(directory)
    return out
