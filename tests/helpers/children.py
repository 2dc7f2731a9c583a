"""Crash-test helpers: a writer child process whose printed lines are collected as they come
(a line cut by a kill is never counted), SIGKILLed when the test says; the trace ids in Parquet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]


def parquet_ids(traces: Path) -> Counter[str]:
    """How many times each trace id is in the Parquet files below ``traces``."""
    if not list(traces.glob("date=*/*.parquet")):
        return Counter()
    con = duckdb.connect()
    found = con.sql(
        f"select trace_id from read_parquet('{traces}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
    ).fetchall()
    con.close()
    return Counter(r[0] for r in found)


class Child:
    """``python -c script *args`` in the repository root; ``lines`` are its complete stdout lines."""

    def __init__(self, script: str, *args: str, enough_after: int) -> None:
        self.enough_after = enough_after
        self.lines: list[str] = []
        self._enough = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):  # a line cut by the kill was never completely printed
                self.lines.append(line[:-1])
                if len(self.lines) > self.enough_after:
                    self._enough.set()
        self._enough.set()

    def wait_lines(self, timeout_s: float) -> None:
        """Until the child printed more than ``enough_after`` lines, and is still running."""
        assert self._enough.wait(timeout_s), (
            f"child wrote fewer than {self.enough_after:,} rows in {timeout_s:.0f} s"
        )
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def sigkill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
