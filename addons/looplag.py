"""Event-loop stall probe for benchmarks: with ``codexgate_looplag_file`` set, a task sleeps
5 ms at a time from start-up on and appends, once a second, the longest overshoot seen in
that second, with the garbage collector's pauses in it, to the file:
``seconds_since_start,max_stall_ms,max_gc_pause_ms,gc_ms`` (the longest collection and the sum
of all collections in that second; a collection holds the GIL whichever thread runs it, so it
stalls the loop for its whole length). Off (no task, no collector callback) by default."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any, NamedTuple

from mitmproxy import ctx

_TICK = 0.005


class LagSecond(NamedTuple):
    at_s: float
    stall_ms: float
    gc_max_ms: float
    gc_ms: float


def read_lag_file(path: Path) -> list[LagSecond]:
    """The probe's rows (lines of an older two-column file get zero GC figures)."""
    rows = []
    for line in path.read_text().splitlines():
        fields = [float(x) for x in line.split(",")] if line else []
        if len(fields) >= 2:
            rows.append(LagSecond(*(fields + [0.0, 0.0])[:4]))
    return rows


class _GcPauses:
    """Collector callback: the longest pause and the total since the last ``take``."""

    def __init__(self) -> None:
        self._started = 0.0
        self.longest = 0.0
        self.total = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000.0
        self.total += ms
        self.longest = max(self.longest, ms)

    def take(self) -> tuple[float, float]:
        out = self.longest, self.total
        self.longest = self.total = 0.0
        return out


class LoopLag:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._gc: _GcPauses | None = None

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_looplag_file", str, "", "Benchmarks: append the longest event-loop stall per second here."
        )

    def running(self) -> None:
        path = ctx.options.codexgate_looplag_file
        if path and self._task is None:
            self._gc = _GcPauses()
            gc.callbacks.append(self._gc)
            self._task = asyncio.get_running_loop().create_task(self._probe(Path(path), self._gc))

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._gc is not None and self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)

    async def _probe(self, path: Path, pauses: _GcPauses) -> None:
        start = window = time.monotonic()
        worst = 0.0
        with path.open("a", buffering=1) as out:
            while True:
                before = time.monotonic()
                await asyncio.sleep(_TICK)
                now = time.monotonic()
                worst = max(worst, (now - before - _TICK) * 1000.0)
                if now - window >= 1.0:
                    gc_max, gc_total = pauses.take()
                    out.write(f"{now - start:.1f},{worst:.2f},{gc_max:.2f},{gc_total:.2f}\n")
                    window, worst = now, 0.0
