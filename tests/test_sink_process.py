"""The converter process (``TraceSink(convert_in="process")``), with real processes throughout.

Rows written reach Parquet exactly once; a converter SIGKILLed in the middle of a conversion is
replaced and its segment converted again without loss or duplicates; a gateway-like driver
SIGKILLed while its converter works leaves no orphan converter (with the Linux death signal, and
with the portable fallback alone: the end of the converter's stdin), and a fresh sink recovers
what it left.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from codexgate.sink import TraceSink, spool
from tests.helpers.children import Child, parquet_ids

BODY = '{"input": "' + "lorem ipsum dolor " * 600 + '"}'  # ~11 KB, about a real request body
BASE = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)


def row(trace_id: str, i: int) -> dict[str, Any]:
    start = BASE + timedelta(seconds=i % 3)  # segments span two dates: two files per conversion
    return {
        "trace_id": trace_id,
        "start_time": start,
        "end_time": start + timedelta(seconds=1),
        "duration_ms": 1000.0,
        "outcome": "ok",
        "request_body": BODY,
        "call_index": i,
        "attempts": [{"attempt": 1, "provider": "openai", "started_at": start}],
    }


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie nobody reaped yet counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state not in ("Z", "X")


def read_bytes(pid: int) -> int:
    """Bytes ``pid`` has read so far (``rchar`` in ``/proc/<pid>/io``: files and pipes alike)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar in /proc/{pid}/io")


def wait_gone(pid: int, limit_s: float = 10.0) -> bool:
    deadline = time.monotonic() + limit_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_process_converter_puts_every_row_in_parquet_exactly_once(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    errors: list[str] = []
    sink = TraceSink(
        traces, flush_rows=300, fsync_interval_s=0.05, convert_in="process", on_error=errors.append
    )
    sink.start()
    pid = sink.converter_pid
    assert pid is not None and pid != os.getpid()
    ids = [f"p{i}" for i in range(2_000)]
    for i, trace_id in enumerate(ids):
        sink.write(row(trace_id, i))
    sink.close()
    assert not alive(pid), "close() leaves the converter running"
    found = parquet_ids(traces)
    assert found == Counter(ids)
    assert not (traces / spool.SPOOL_DIR).exists() or not list((traces / spool.SPOOL_DIR).iterdir())
    assert errors == []


def test_converter_killed_mid_conversion_is_restarted_and_loses_nothing(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"kill moments from random seed {seed}")
    rng = random.Random(seed)
    traces = tmp_path / "traces"
    errors: list[str] = []
    sink = TraceSink(
        traces, flush_interval_s=3600, flush_rows=10**6, convert_in="process", on_error=errors.append
    )
    sink.start()
    ids: list[str] = []
    killed: list[int] = []
    try:
        for round_ in range(3):
            for i in range(6_000):  # ~70 MB of spool: a conversion of a second or more
                trace_id = f"r{round_}-{i}"
                sink.write(row(trace_id, i))
                ids.append(trace_id)
            pid = sink.converter_pid
            assert pid is not None
            spooled = sum(f.stat().st_size for f in sink.spool_dir.glob("seg-*"))
            # The kill moment is a random point of the child's reading of the segment, not of the
            # wall clock: a faster machine converts 70 MB before any fixed sleep ends. The segment
            # is read in chunks and deleted only after its Parquet files are renamed into place,
            # so once the child has read part of it, it is mid-conversion until it is stopped.
            target = read_bytes(pid) + int(spooled * rng.uniform(0.05, 0.9))
            flusher = threading.Thread(target=sink.flush)  # rotate + convert through the child
            flusher.start()
            deadline = time.monotonic() + 60
            while read_bytes(pid) < target and time.monotonic() < deadline:
                time.sleep(0.0005)
            os.kill(pid, signal.SIGSTOP)  # frozen where it is: nothing it does can race the check
            pending = spool.list_segments(sink.spool_dir)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            flusher.join(120)
            assert not flusher.is_alive()
            assert pending, "the kill came after the conversion finished: not a mid-conversion kill"
            assert wait_gone(pid)
            assert sink.converter_pid not in (None, pid)  # a new converter took over
            assert not spool.list_segments(sink.spool_dir)  # ... and converted the segment
    finally:
        sink.close()
    found = parquet_ids(traces)
    assert {k: n for k, n in found.items() if n > 1} == {}
    assert set(found) == set(ids)
    assert len(found) == len(ids)
    assert not list(traces.glob("date=*/.*.tmp"))
    died = [e for e in errors if "died (killed by SIGKILL)" in e]
    assert [int(e.split()[3]) for e in died] == killed  # each kill was noticed and reported


DRIVER = r"""
import itertools, sys
from pathlib import Path
from tests.test_sink_process import row
from codexgate.sink import TraceSink, converter

if sys.argv[2] == "pipe-only":  # the portable fallback alone: no Linux death signal in the child
    converter._CHILD = (
        "import sys; import codexgate.sink.converter as c; c.die_with_parent = lambda pid: None; "
        "sys.exit(c.main(sys.argv[1:]))"
    )
sink = TraceSink(Path(sys.argv[1]), flush_interval_s=0.2, flush_rows=400, fsync_interval_s=0.05,
                 convert_in="process")
sink.start()
print(f"converter {sink.converter_pid}", flush=True)
for i in itertools.count():
    sink.write(row(f"d-{i}", i))
    print(f"d-{i}", flush=True)
"""


@pytest.mark.parametrize("lifeline", ["pdeathsig", "pipe-only"])
def test_parent_sigkilled_leaves_no_converter_and_a_fresh_sink_recovers(
    tmp_path: Path, lifeline: str
) -> None:
    traces = tmp_path / "traces"
    child = Child(DRIVER, str(traces), lifeline, enough_after=3_000)
    try:
        child.wait_lines(120)
        converter_pid = int(child.lines[0].split()[1])
        deadline = time.monotonic() + 60
        while not list(traces.glob("date=*/*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)  # kill once the converter has delivered and works on the next segments
        assert list(traces.glob("date=*/*.parquet")), "the driver's converter converted nothing in 60 s"
        assert alive(converter_pid)
        child.sigkill()
    finally:
        child.close()
    lines = child.lines
    assert wait_gone(converter_pid), f"converter {converter_pid} outlived its SIGKILLed parent"
    written = lines[1:]
    left = [seg for d in (traces / spool.SPOOL_DIR).iterdir() for seg in spool.list_segments(d)]
    assert left, "the kill left no segment for recovery to convert"

    sink = TraceSink(traces)  # a restarted gateway
    sink.start()
    sink.close()
    assert not list((traces / spool.SPOOL_DIR).iterdir())
    found = parquet_ids(traces)
    assert {k: n for k, n in found.items() if n > 1} == {}
    assert set(written) <= set(found)
    assert set(found) - set(written) <= {f"d-{len(written)}"}  # written, killed before it printed
