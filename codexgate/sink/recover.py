"""Recovery: convert the spools that dead gateways left behind, exactly once.

A spool directory whose ``.lock`` nobody holds belongs to a dead process (``spool.try_lock``); its
segments are converted (``convert.convert_segment``: deterministic Parquet names, so a crash during
recovery and a second recovery never duplicate a row) and the directory removed. A live gateway's
spool is never touched. Recovery also finishes compactions a crash interrupted.

Every record kept aside while recovering (rows that do not fit the schema, unreadable spool bytes)
is listed in ``Recovered.problems`` for the caller to log or print.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from codexgate.sink import spool
from codexgate.sink.compact import compact_lock, finish_compactions
from codexgate.sink.convert import convert_segment, fsync_file


@dataclass
class Recovered:
    rows: int = 0
    segments: int = 0
    torn_bytes: int = 0  # unreadable spool bytes, kept in _rejected/
    rejected: int = 0  # rows that do not fit the trace schema, kept in _rejected/
    instances: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per segment and kind kept aside


def recover_dir(traces_dir: Path, directory: Path, result: Recovered) -> None:
    """Convert every segment left in a spool directory whose lock the caller holds."""
    for segment in spool.list_segments(directory):
        fsync_file(segment)  # what we convert must be what is on disk, should we crash again
        done = convert_segment(traces_dir, segment, directory.name)
        result.rows += done.rows
        result.segments += 1
        result.torn_bytes += done.torn_bytes
        result.rejected += done.rejected
        result.problems.extend(done.problems())
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
        lock = compact_lock(traces_dir, blocking=False)
    except OSError:
        lock = None  # e.g. a read-only traces directory: nothing to finish there anyway
    if lock is not None:
        try:
            finish_compactions(traces_dir)
        finally:
            os.close(lock)
    return result
