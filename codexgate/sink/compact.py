"""Compaction: merge each date partition's small Parquet files into files of up to N rows.

Streams row group by row group. A manifest naming the output and inputs is written before the
output appears and removed after the inputs are deleted; a leftover manifest is completed (output
present) or rolled back (output absent) by the next ``compact`` or ``recover``. Files whose segment
is still in a spool are never compacted, since their segment may be converted again. One
compaction per traces directory at a time (``.compact.lock``).
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path

import pyarrow.parquet as pq

from codexgate.core import schema
from codexgate.sink import spool
from codexgate.sink.convert import DateFile, segment_of

COMPACT_LOCK = ".compact.lock"


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


def compact_lock(traces_dir: Path, *, blocking: bool) -> int | None:
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
    owner = segment_of(part)
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
    lock = compact_lock(traces_dir, blocking=False)
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
    out = DateFile(part / output)
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
