"""What a traces directory holds: Parquet per date partition, and what waits in ``_rejected/``.

Read-only and safe while gateways write: files that vanish meanwhile (compacted, converted) are
left out of the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from codexgate.sink.convert import REJECTED_DIR


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


@dataclass
class RejectedStats:
    """``_rejected/``: rows that do not fit the schema (``*.jsonl``, one per line) and unreadable
    spool spans (``*.bin``, raw bytes, one span per file)."""

    rows: int = 0
    spans: int = 0
    files: int = 0
    bytes: int = 0


def rejected_stats(traces_dir: Path) -> RejectedStats:
    """What waits in ``TRACES/_rejected/`` (temp files of a write in progress are left out)."""
    stats = RejectedStats()
    directory = Path(traces_dir) / REJECTED_DIR
    if not directory.is_dir():
        return stats
    for f in sorted(directory.iterdir()):
        if f.name.startswith(".") or f.suffix not in (".jsonl", ".bin"):
            continue
        try:
            size = f.stat().st_size
            if f.suffix == ".jsonl":
                with open(f, "rb") as lines:
                    stats.rows += sum(1 for line in lines if line.strip())
            else:
                stats.spans += 1
        except FileNotFoundError:
            continue
        stats.files += 1
        stats.bytes += size
    return stats
