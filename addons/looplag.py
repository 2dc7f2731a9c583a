"""Event-loop stall probe for benchmarks: with ``codexgate_looplag_file`` set, a task sleeps
5 ms at a time from start-up on and appends, once a second, the longest overshoot seen in
that second (``seconds_since_start,max_stall_ms``) to the file. Off (no task) by default."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mitmproxy import ctx

_TICK = 0.005


class LoopLag:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_looplag_file", str, "", "Benchmarks: append the longest event-loop stall per second here."
        )

    def running(self) -> None:
        path = ctx.options.codexgate_looplag_file
        if path and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe(Path(path)))

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _probe(self, path: Path) -> None:
        start = window = time.monotonic()
        worst = 0.0
        with path.open("a", buffering=1) as out:
            while True:
                before = time.monotonic()
                await asyncio.sleep(_TICK)
                now = time.monotonic()
                worst = max(worst, (now - before - _TICK) * 1000.0)
                if now - window >= 1.0:
                    out.write(f"{now - start:.1f},{worst:.2f}\n")
                    window, worst = now, 0.0
