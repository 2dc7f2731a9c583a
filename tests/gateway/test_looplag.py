"""The benchmarks' loop-lag probe: a blocking stretch on the loop shows as that second's stall
and its longest callback, a garbage collection as that second's GC pause (longest and total),
and each second says whether the gateway was serving yet."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

from mitmproxy.test import taddons

from addons.looplag import LoopLag, read_lag_file

_HANDLE_RUN = asyncio.events.Handle._run


async def test_stalls_and_collector_pauses_are_reported_per_second(tmp_path: Path) -> None:
    path = tmp_path / "lag.csv"
    serving = [False]
    lag = LoopLag(serving=lambda: serving[0])
    # no automatic collection in the measured second: in a large test process one can take
    # longer than the collection below, and the figures would not be this test's
    gc.disable()
    try:
        with taddons.context(lag) as tctx:
            tctx.options.codexgate_looplag_file = str(path)
            lag.running()
            await asyncio.sleep(0.05)
            time.sleep(0.04)  # 40 ms with the loop blocked
            junk = []
            for _ in range(200_000):  # cycles only a collection frees
                a: list = []
                a.append(a)
                junk.append(a)
            del junk, a
            t0 = time.perf_counter()
            gc.collect()
            collect_ms = (time.perf_counter() - t0) * 1000
            while not path.exists() or not read_lag_file(path):
                await asyncio.sleep(0.1)
            serving[0] = True  # the start-up gate opens; the next second says so
            await asyncio.sleep(0.01)
            time.sleep(0.012)  # one 12 ms callback in the second second
            while len(read_lag_file(path)) < 2:
                await asyncio.sleep(0.1)
            lag.done()
    finally:
        gc.enable()
    assert lag._gc not in gc.callbacks  # nothing left behind once the probe stops
    first = read_lag_file(path)[0]
    assert 0.9 <= first.at_s <= 3.0
    assert first.stall_ms >= 30  # the 40 ms block, less at most one 5 ms tick
    assert collect_ms * 0.5 <= first.gc_max_ms <= first.gc_ms
    assert first.gc_max_ms <= collect_ms + 1
    # the test's own callback held the loop for the block and the collection in one step
    assert first.callback_ms >= 40 + collect_ms * 0.5
    second = read_lag_file(path)[1]
    assert (first.serving, second.serving) == (False, True)
    assert 12 <= second.callback_ms < first.callback_ms
    assert asyncio.events.Handle._run is _HANDLE_RUN  # the callback timer is removed with the probe


def test_older_files_read_with_zero_figures_for_what_they_lack(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text("1.0,2.50\n2.0,7.25,1.5,3.0\n\n3.0,4.0,0.0,0.0,3.5,0\n")
    rows = [tuple(r) for r in read_lag_file(path)]
    assert rows == [
        (1.0, 2.5, 0.0, 0.0, 0.0, True),
        (2.0, 7.25, 1.5, 3.0, 0.0, True),
        (3.0, 4.0, 0.0, 0.0, 3.5, False),
    ]
