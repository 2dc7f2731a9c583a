"""Event-loop stall probe for benchmarks: with ``codexgate_looplag_file`` set, a task sleeps
5 ms at a time from start-up on and appends, once a second, the longest overshoot seen in
that second, with the garbage collector's pauses in it, to the file:
``seconds_since_start,max_stall_ms,max_gc_pause_ms,gc_ms,max_callback_ms,serving``.

- ``max_stall_ms``: how late the probe's timer fired at worst. Under load this is the length of
  a whole loop iteration (every ready callback of every busy connection), queueing included.
- ``max_gc_pause_ms``, ``gc_ms``: the longest collection and the sum of all collections in that
  second (a collection holds the GIL whichever thread runs it, so it stalls the loop for its
  whole length).
- ``max_callback_ms``: the longest single callback the loop ran (one task step, one protocol
  callback): the longest piece of work that kept every other connection waiting, without the
  queueing. Timed by wrapping ``asyncio.events.Handle._run`` while the probe is on.
- ``serving``: 1 once the gateway had started (its start-up gate open) at the end of the second;
  0 while it was still starting and held its calls.

Off (no task, no collector callback, no wrapper) by default."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from mitmproxy import ctx

_TICK = 0.005


class LagSecond(NamedTuple):
    at_s: float
    stall_ms: float
    gc_max_ms: float
    gc_ms: float
    callback_ms: float
    serving: bool


_PADDING = [0.0, 0.0, 0.0, 1.0]  # what an older file's rows lack: GC figures, callback, serving


def read_lag_file(path: Path) -> list[LagSecond]:
    """The probe's rows (an older file's rows get zero GC and callback figures and count as serving)."""
    rows = []
    for line in path.read_text().splitlines():
        fields = [float(x) for x in line.split(",")] if line else []
        if len(fields) >= 2:
            at, stall, gc_max, gc_ms, callback, serving = (fields + _PADDING[len(fields) - 2 :])[:6]
            rows.append(LagSecond(at, stall, gc_max, gc_ms, callback, serving >= 0.5))
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


class _Callbacks:
    """Times every callback the loop runs (``Handle._run``, which task steps, timers and
    protocol callbacks all go through); ``take`` gives the longest since the last take."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._original: Callable[[asyncio.Handle], None] | None = None

    def install(self) -> None:
        original = self._original = asyncio.events.Handle._run
        clock = time.perf_counter

        def timed(handle: asyncio.Handle) -> None:
            started = clock()
            try:
                original(handle)
            finally:
                ms = (clock() - started) * 1000.0
                if ms > self.longest:
                    self.longest = ms

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]

    def remove(self) -> None:
        if self._original is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            self._original = None

    def take(self) -> float:
        out, self.longest = self.longest, 0.0
        return out


class LoopLag:
    def __init__(self, serving: Callable[[], bool] = lambda: True) -> None:
        """``serving``: whether the gateway has started (the gateway passes its start-up gate)."""
        self.serving = serving
        self._task: asyncio.Task[None] | None = None
        self._gc: _GcPauses | None = None
        self._callbacks: _Callbacks | None = None

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_looplag_file", str, "", "Benchmarks: append the longest event-loop stall per second here."
        )

    def running(self) -> None:
        path = ctx.options.codexgate_looplag_file
        if path and self._task is None:
            self._gc = _GcPauses()
            gc.callbacks.append(self._gc)
            self._callbacks = _Callbacks()
            self._callbacks.install()
            self._task = asyncio.get_running_loop().create_task(self._probe(Path(path), self._gc, self._callbacks))

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._gc is not None and self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self._callbacks is not None:
            self._callbacks.remove()

    async def _probe(self, path: Path, pauses: _GcPauses, callbacks: _Callbacks) -> None:
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
                    serving = int(bool(self.serving()))
                    out.write(
                        f"{now - start:.1f},{worst:.2f},{gc_max:.2f},{gc_total:.2f},{callbacks.take():.2f},{serving}\n"
                    )
                    window, worst = now, 0.0
