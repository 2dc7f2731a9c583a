"""Nothing the sink is given is dropped silently: unreadable spool records (a length field running
past the end of the file, a corrupt CRC in the middle, a record over the spool's cap, a torn tail)
end with the good rows in Parquet and the bad bytes, byte for byte, in ``_rejected/``, with one log
line; a row too big for the spool is refused by ``write()``; ``codexgate traces stats`` counts what
waits in ``_rejected/``; and converting never imports pandas (a lazy import would stall the loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from codexgate.sink import SinkError, TraceSink, convert, spool

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 3, 1, 12, tzinfo=UTC)


def row(i: int, body: str = "") -> dict[str, Any]:
    start = START + timedelta(seconds=i)
    return {
        "trace_id": f"r{i:04d}",
        "start_time": start,
        "end_time": start + timedelta(seconds=1),
        "duration_ms": 1000.0,
        "outcome": "ok",
        "request_body": body or f'{{"input": "call {i}"}}',
        "attempts": [{"attempt": 1, "provider": "openai", "started_at": start}],
    }


def parquet_ids(traces: Path) -> Counter[str]:
    if not list(traces.glob("date=*/*.parquet")):
        return Counter()
    con = duckdb.connect()
    ids = con.sql(f"select trace_id from read_parquet('{traces}/date=*/*.parquet')").fetchall()
    con.close()
    return Counter(r[0] for r in ids)


def dead_segment(traces: Path, instance: str, data: bytes) -> Path:
    """A spool directory as a killed gateway leaves it: one segment, lock file free."""
    directory = traces / spool.SPOOL_DIR / instance
    directory.mkdir(parents=True)
    (directory / spool.LOCK_NAME).touch()
    segment = directory / "seg-0badf00d-000001.log"
    segment.write_bytes(data)
    return segment


def oversized_record() -> bytes:
    """An intact record (right length, right CRC) just over the cap: what an older spool could hold."""
    filler = b"x" * (spool.MAX_RECORD_BYTES + 1)
    payload = b'{"trace_id":"huge","request_body":"' + filler + b'"}'
    return spool.HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def damaged(kind: str) -> tuple[bytes, bytes, list[str]]:
    """(segment bytes, the bad bytes in it, ids of the good rows) for one kind of damage."""
    before = b"".join(spool.encode(row(i)) for i in range(3))
    victim = spool.encode(row(3, body="secret-looking body text " * 20))
    after = b"".join(spool.encode(row(i)) for i in range(4, 7))
    good = [f"r{i:04d}" for i in (0, 1, 2, 4, 5, 6)]
    if kind == "length_past_end":
        _, crc = spool.HEADER.unpack_from(victim)
        total = len(before) + len(victim) + len(after)
        bad = spool.HEADER.pack(total + 1000, crc) + victim[spool.HEADER.size :]
    elif kind == "crc_in_middle":
        bad = victim[:-10] + bytes([victim[-10] ^ 0x20]) + victim[-9:]
    elif kind == "oversized":
        bad = oversized_record()
    elif kind == "torn_tail":
        return before + victim[: len(victim) // 2], victim[: len(victim) // 2], good[:3]
    else:
        raise AssertionError(kind)
    return before + bad + after, bad, good


@pytest.mark.parametrize("kind", ["length_past_end", "crc_in_middle", "oversized", "torn_tail"])
def test_unreadable_record_keeps_good_rows_and_its_bytes_and_says_so(tmp_path: Path, kind: str) -> None:
    traces = tmp_path / "traces"
    data, bad, good = damaged(kind)
    segment = dead_segment(traces, "dead", data)
    offset = data.index(bad)
    del data

    errors: list[str] = []
    sink = TraceSink(traces, flush_interval_s=60, on_error=errors.append)
    sink.start()  # recovers the dead spool
    sink.close()

    assert parquet_ids(traces) == Counter(good)
    assert not segment.exists()  # converted; nothing of it was deleted unseen:
    kept = sorted((traces / convert.REJECTED_DIR).glob("*.bin"))
    reason = {"torn_tail": "torn", "oversized": "oversized"}.get(kind, "corrupt")
    assert [p.name for p in kept] == [f"dead-0badf00d-000001-at{offset}-{reason}.bin"]
    assert kept[0].stat().st_size == len(bad) and kept[0].read_bytes() == bad
    assert len(errors) == 1, errors
    assert "seg-0badf00d-000001.log" in errors[0] and f"{len(bad):,} bytes" in errors[0]
    assert str(traces / convert.REJECTED_DIR) in errors[0]
    assert "secret-looking" not in errors[0] and "xxxx" not in errors[0]  # never a row's contents


def test_reader_resumes_after_each_bad_span_and_accounts_for_every_byte(tmp_path: Path) -> None:
    good = [spool.encode(row(i)) for i in range(6)]
    junk = b"\x00garbage{" + b'{"' * 3 + b"\xff" * 40  # contains payload-like starts that must not fool it
    cut = spool.HEADER.pack(10, 0)  # a header whose payload is missing, then more good records
    data = good[0] + junk + good[1] + good[2] + cut + good[3] + good[4] + good[5][:-3]
    path = tmp_path / "seg-x-000001.log"
    path.write_bytes(data)
    reader = spool.SegmentReader(path, batch_bytes=len(good[0]) + 5)  # records straddle blocks
    payloads = [bytes(p) for batch in reader for p in batch]
    assert payloads == [g[spool.HEADER.size :] for g in good[:5]]
    assert [(s.offset, s.length, s.reason) for s in reader.bad] == [
        (len(good[0]), len(junk), "corrupt"),
        (data.index(cut), len(cut), "corrupt"),
        (len(data) - len(good[5]) + 3, len(good[5]) - 3, "torn"),
    ]
    assert reader.torn_bytes + sum(len(g) for g in good[:5]) == len(data)


def test_a_row_over_the_cap_is_refused_by_write_and_reported(tmp_path: Path) -> None:
    errors: list[str] = []
    sink = TraceSink(tmp_path, flush_interval_s=60, on_error=errors.append)
    sink.start()
    try:
        huge = row(1, body="y" * (spool.MAX_RECORD_BYTES + 1))
        with pytest.raises(
            SinkError, match=r"trace not recorded: trace row 'r0001' is [\d,]+ bytes encoded, over"
        ):
            sink.write(huge)
        assert sink.healthy and len(errors) == 1 and "yyyy" not in errors[0]
        sink.write(row(2))  # the sink goes on
        sink.flush()
    finally:
        sink.close()
    assert parquet_ids(tmp_path) == Counter(["r0002"])
    assert not (tmp_path / convert.REJECTED_DIR).exists()


def test_pread_exact_reads_everything_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert bytes(spool.pread_exact(fd, len(data) - 7, 7)) == data[7:]
        assert bytes(spool.pread_exact(fd, 100, len(data) - 10)) == data[-10:]  # short only at the end
    finally:
        os.close(fd)


def console(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``codexgate`` console script, as a user runs it."""
    script = Path(sys.executable).with_name("codexgate")
    if not script.exists():
        pytest.skip(f"no console script at {script} (pip install -e .)")
    env = {k: v for k, v in os.environ.items() if k != "CODEXGATE_TRACES"}
    return subprocess.run(
        [str(script), "traces", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_stats_reports_what_waits_in_rejected(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    misfit = row(9)
    misfit_record = spool.encode(misfit).replace(b'"duration_ms":1000.0', b'"duration_ms":"slow"')
    misfit_record = (
        spool.HEADER.pack(len(misfit_record) - 8, zlib.crc32(misfit_record[8:])) + misfit_record[8:]
    )
    garbage = b"\x13" * 50
    dead_segment(traces, "deadstats", spool.encode(row(1)) + misfit_record + garbage + spool.encode(row(2)))

    before = console("stats", "--traces", str(traces))
    assert before.returncode == 0, before.stderr
    assert "rejected" not in before.stdout and "spool deadstats: 1 segment(s)" in before.stdout

    recovered = console("recover", "--traces", str(traces))
    assert recovered.returncode == 0, recovered.stderr
    assert "recovered 2 rows from 1 segment(s)" in recovered.stdout
    assert "1 corrupt; 50 bytes" in recovered.stdout and "1 trace rows of spool segment" in recovered.stdout

    after = console("stats", "--traces", str(traces))
    assert after.returncode == 0, after.stderr
    kept = list((traces / convert.REJECTED_DIR).iterdir())
    size = sum(p.stat().st_size for p in kept)
    line = next(x for x in after.stdout.splitlines() if x.startswith("rejected:"))
    assert line.startswith(
        "rejected: 1 row(s) that do not fit the trace schema and 1 unreadable spool span(s)"
    )
    assert f"in {len(kept)} file(s), {size} B," in line and len(kept) == 2
    assert parquet_ids(traces) == Counter(["r0001", "r0002"])


CHILD = r"""
import sys
from datetime import UTC, datetime
from pathlib import Path

from codexgate.sink import TraceSink

before = "pandas" in sys.modules
sink = TraceSink(Path(sys.argv[1]), flush_interval_s=60)
sink.start()
now = datetime.now(UTC)
for i in range(3):
    sink.write({"trace_id": f"p{i}", "start_time": now, "end_time": now, "duration_ms": 1.0,
                "outcome": "ok", "status_code": "bad" if i == 1 else 200})
sink.flush()  # one conversion, with a row Arrow rejects (the split-and-retry path too)
print(before, "pandas" in sys.modules, sorted(p.name for p in Path(sys.argv[1]).rglob("*.parquet")) != [])
sink.close()
"""


def test_conversion_never_imports_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas on its first Python -> Arrow conversion; that import holds the GIL."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "True"]
    assert parquet_ids(tmp_path) == Counter(["p0", "p2"])
    assert len(list((tmp_path / convert.REJECTED_DIR).glob("*.jsonl"))) == 1
