"""A real gateway-like process SIGKILLed while writing traces loses none and duplicates none.

The child writes rows in a loop and prints each trace_id once ``write()`` has returned (the
"completed" signal a gateway would act on). It is killed at a random moment after at least 500
rows, often in the middle of a write, an fsync or a Parquet conversion (it flushes every 150
rows or 0.2 s, and every segment spans two dates, so two files per conversion). Recovery then
has to put every printed trace in Parquet exactly once, and nothing that was never written.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from codexgate.sink import spool
from codexgate.sink.sink import TraceSink, recover
from tests.helpers.children import Child, parquet_ids

CHILD = r"""
import itertools, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from codexgate.sink import TraceSink

traces, prefix = Path(sys.argv[1]), sys.argv[2]
sink = TraceSink(traces, flush_interval_s=0.2, flush_rows=150, fsync_interval_s=0.05)
sink.start()
base = datetime(2026, 3, 1, 12, tzinfo=UTC)
body = '{"input": "' + "lorem ipsum " * 150 + '"}'
out = sys.stdout
out.write(f"recovered {sink.recovered_rows}\n")
out.flush()
for i in itertools.count():
    trace_id = f"{prefix}-{i}"
    start = base + timedelta(days=i % 2, microseconds=i)
    sink.write({
        "trace_id": trace_id, "start_time": start, "end_time": start + timedelta(seconds=1),
        "duration_ms": 1000.0, "outcome": "ok", "request_body": body, "call_index": i,
        "attempts": [{"attempt": 1, "provider": "openai", "started_at": start}],
    })
    out.write(trace_id + "\n")
    out.flush()
"""


def run_and_kill(traces: Path, prefix: str, rng: random.Random) -> tuple[list[str], int]:
    """Start the child, SIGKILL it at a random moment after >= 500 rows; (printed ids, recovered)."""
    child = Child(CHILD, str(traces), prefix, enough_after=500)
    try:
        child.wait_lines(60)
        time.sleep(rng.uniform(0, 0.6))
        child.sigkill()
    finally:
        child.close()
    lines = child.lines
    assert lines[0].startswith("recovered "), lines[:1]
    return lines[1:], int(lines[0].split()[1])


def check_exactly_once(traces: Path, printed: dict[str, list[str]]) -> None:
    found = parquet_ids(traces)
    duplicated = {k: n for k, n in found.items() if n > 1}
    assert not duplicated, f"duplicated traces: {sorted(duplicated)[:5]}"
    for prefix, ids in printed.items():
        missing = set(ids) - set(found)
        assert not missing, (
            f"{len(missing)} completed traces of run {prefix} lost, e.g. {sorted(missing)[:3]}"
        )
    # the only id allowed that was not printed: the row whose write() returned just before the kill
    allowed = set().union(*printed.values()) | {f"{p}-{len(ids)}" for p, ids in printed.items()}
    unknown = set(found) - allowed
    assert not unknown, f"traces nobody wrote: {sorted(unknown)[:5]}"


@pytest.mark.timeout(180)
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"kill moments from random seed {seed}")  # shown by pytest if the test fails
    rng = random.Random(seed)
    traces = tmp_path / "traces"
    printed: dict[str, list[str]] = {}
    for run in range(5):
        prefix = f"run{run}"
        ids, _ = run_and_kill(traces, prefix, rng)
        assert len(ids) >= 500
        printed[prefix] = ids
        spools = [d for d in (traces / spool.SPOOL_DIR).iterdir() if d.is_dir()]
        # only this child's spool is left: it recovered its killed predecessor's when it started
        assert len(spools) == 1
        if run % 2 == 0:
            continue  # the next child recovers this one's spool (a restarted gateway)
        # `codexgate traces recover`, or a fresh sink in this process, recovers it now
        if run == 1:
            recover(traces)
        else:
            sink = TraceSink(traces)
            sink.start()
            sink.close()
        assert not list((traces / spool.SPOOL_DIR).iterdir())
        check_exactly_once(traces, printed)
    recover(traces)
    check_exactly_once(traces, printed)
