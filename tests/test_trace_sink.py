"""TraceSink: spool -> hive-partitioned Parquet round trip, torn records, exactly-once recovery,
crash-safe compaction, older files, disk full and read-only filesystems."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from addons import trace_spool
from addons.trace_sink import SPOOL_DIR, SinkError, TraceSink, compact, recover
from codexgate import schema

T0 = datetime(2025, 3, 14, 23, 59, 58, 123456, tzinfo=UTC)


def make_row(i: int, start: datetime = T0, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "trace_id": uuid.uuid4().hex,
        "gateway_instance": "gw-test",
        "start_time": start,
        "upstream_first_byte_time": start + timedelta(milliseconds=120),
        "first_token_time": None,
        "end_time": start + timedelta(milliseconds=850, microseconds=7),
        "duration_ms": 850.007,
        "ttfb_ms": 120.0,
        "status_code": 200,
        "outcome": "ok",
        "streaming": True,
        "client_aborted": False,
        "gen_ai_request_model": "gpt-5-codex",
        "gen_ai_response_finish_reasons": ["stop", "length"],
        "request_body": json.dumps({"input": "héllo ✓ \n" * (i + 1), "i": i}),
        "request_bytes": 1234 + i,
        "tool_calls": [
            {"call_id": f"c{i}", "name": "shell", "type": "function_call", "arguments": '{"cmd":["ls"]}'},
            {"call_id": None, "name": "apply_patch", "type": "custom_tool_call", "arguments": None},
        ],
        "gen_ai_usage_input_tokens": 10_000_000_000 + i,
        "usage_complete": True,
        "cost_usd": 0.000123,
        "cost_known": True,
        "attempts": [
            {
                "attempt": 1,
                "provider": "openai",
                "url": "https://api.openai.com/v1/responses",
                "status_code": None,
                "latency_ms": 12.5,
                "error": "connect timeout",
                "started_at": start,
            },
            {
                "attempt": 2,
                "provider": "azure-openai",
                "url": "https://x.openai.azure.com/openai/v1/responses",
                "status_code": 200,
                "latency_ms": 99.25,
                "error": None,
                "started_at": start + timedelta(milliseconds=13),
            },
        ],
        "fallback_used": True,
        "policy_decisions": [{"policy": "scope", "decision": "allow", "reason": None}],
        "guardrail_findings": [
            {
                "guardrail": "pii",
                "stage": "input",
                "entity": "EMAIL_ADDRESS",
                "action": "redacted",
                "score": 0.85,
                "start": 3,
                "end": 20,
                "message": None,
            }
        ],
        "tags": [{"key": "ticket", "value": f"T-{i}"}, {"key": "empty", "value": None}],
        "call_index": i,
    }
    row.update(over)
    return row


def read_rows(traces: Path, where: str = "TRUE", params: list | None = None) -> list[dict[str, Any]]:
    rel = duckdb.connect().sql(
        f"select * from read_parquet('{traces}/**/*.parquet', hive_partitioning = true, "
        f"union_by_name = true) where {where} order by call_index",
        params=params or [],
    )
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def trace_ids(traces: Path) -> Counter[str]:
    files = list(traces.glob("date=*/*.parquet"))
    if not files:
        return Counter()
    rel = duckdb.connect().sql(
        f"select trace_id from read_parquet('{traces}/**/*.parquet', hive_partitioning = true)"
    )
    return Counter(r[0] for r in rel.fetchall())


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[TraceSink]:
    s = TraceSink(tmp_path / "traces", flush_interval_s=3600, flush_rows=10**9, instance_id="gwA")
    s.start()
    yield s
    s.close()


# ------------------------------------------------------------------------------------ round trip


def test_round_trip_every_column_type(sink: TraceSink) -> None:
    rows = [make_row(i) for i in range(3)]
    rows.append(make_row(3, attempts=None, tags=None, tool_calls=[], guardrail_findings=None, ttfb_ms=None))
    for r in rows:
        sink.write(r)
    sink.flush()
    got = read_rows(sink.traces_dir)
    assert len(got) == 4
    for want, row in zip(rows, got, strict=True):
        full = schema.normalise_row(want)
        for col in schema.COLUMNS:
            assert row[col] == full[col], col
        assert row["date"] == want["start_time"].date()  # hive partition column
    assert got[3]["attempt_count"] == 0 and got[0]["attempt_count"] == 2  # derived from attempts
    assert got[0]["schema_version"] == schema.SCHEMA_VERSION
    assert got[0]["first_token_time"] is None and got[3]["ttfb_ms"] is None
    # a bound parameter on a nested column, read back through DuckDB
    hit = read_rows(sink.traces_dir, "list_contains(list_transform(tags, lambda t: t.value), ?)", ["T-1"])
    assert [r["trace_id"] for r in hit] == [rows[1]["trace_id"]]
    # the files are in exactly the trace schema
    for f in sink.traces_dir.glob("date=*/*.parquet"):
        assert pq.read_schema(f).remove_metadata().equals(schema.SCHEMA.remove_metadata())


def test_two_dates_two_partitions(sink: TraceSink) -> None:
    day2 = T0 + timedelta(seconds=5)  # crosses midnight UTC
    ids = []
    for i, start in enumerate([T0, day2, T0, day2, day2]):
        row = make_row(i, start=start)
        ids.append(row["trace_id"])
        sink.write(row)
    sink.flush()
    parts = sorted(p.name for p in sink.traces_dir.glob("date=*"))
    assert parts == ["date=2025-03-14", "date=2025-03-15"]
    counts = duckdb.connect().sql(
        f"select date::varchar, count(*) from read_parquet('{sink.traces_dir}/**/*.parquet', "
        "hive_partitioning = true) group by 1 order by 1"
    )
    assert counts.fetchall() == [("2025-03-14", 2), ("2025-03-15", 3)]
    assert set(trace_ids(sink.traces_dir)) == set(ids)


def test_torn_record_at_end_of_segment_is_skipped(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    seg_dir = traces / SPOOL_DIR / "dead1"
    seg_dir.mkdir(parents=True)
    rows = [make_row(i) for i in range(5)]
    records = [trace_spool.encode(r) for r in rows]
    (seg_dir / "seg-00000001.log").write_bytes(b"".join(records[:4]) + records[4][: len(records[4]) // 2])
    assert recover(traces) == 4
    assert set(trace_ids(traces)) == {r["trace_id"] for r in rows[:4]}
    assert not seg_dir.exists()


# ------------------------------------------------------------------------------- exactly once


def test_recovery_when_crash_before_conversion(tmp_path: Path) -> None:
    traces = tmp_path / "traces"
    dead = TraceSink(traces, flush_interval_s=3600, flush_rows=10**9, instance_id="dead")
    dead.start()
    rows = [make_row(i) for i in range(7)]
    for r in rows:
        dead.write(r)
    # simulate SIGKILL: drop the lock (the kernel would) without flushing
    assert dead._lock_fd is not None
    os.close(dead._lock_fd)
    dead._lock_fd = None
    dead._thread = None
    fresh = TraceSink(traces, flush_interval_s=3600, instance_id="fresh")
    fresh.start()  # recovers the dead spool
    fresh.close()
    assert trace_ids(traces) == Counter(r["trace_id"] for r in rows)
    assert recover(traces) == 0
    assert trace_ids(traces) == Counter(r["trace_id"] for r in rows)


def test_recovery_when_crash_after_parquet_before_segment_delete(tmp_path: Path, sink: TraceSink) -> None:
    rows = [make_row(i) for i in range(6)]
    for r in rows:
        sink.write(r)
    segment = sink._segment
    assert segment is not None
    aside = tmp_path / "aside.log"
    shutil.copy(segment, aside)
    sink.flush()  # Parquet written, segment deleted
    assert not segment.exists()
    sink.close()
    # the crash happened between the rename of the Parquet file and the segment's unlink
    segment.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(aside, segment)
    assert recover(sink.traces_dir) == 6
    assert trace_ids(sink.traces_dir) == Counter(r["trace_id"] for r in rows)  # each exactly once


# -------------------------------------------------------------------------------- compaction


def _many_files(sink: TraceSink, n_files: int, per_file: int) -> Counter[str]:
    for f in range(n_files):
        for i in range(per_file):
            sink.write(make_row(f * per_file + i, start=T0 + timedelta(seconds=3 * (i % 2))))
        sink.flush()
    return trace_ids(sink.traces_dir)


def test_compaction_keeps_the_multiset_of_trace_ids(sink: TraceSink) -> None:
    before = _many_files(sink, 4, 5)
    assert len(list(sink.traces_dir.glob("date=*/*.parquet"))) == 8
    result = compact(sink.traces_dir)
    assert result.files_in == 8 and result.files_out == 2 and result.rows == 20
    assert len(list(sink.traces_dir.glob("date=*/*.parquet"))) == 2
    assert trace_ids(sink.traces_dir) == before


def _interrupted_compaction(part: Path, with_output: bool) -> list[Path]:
    inputs = sorted(part.glob("*.parquet"))
    name = "part-compacted-crash.parquet"
    (part / ".compact-crash.json").write_text(
        json.dumps({"output": name, "inputs": [f.name for f in inputs]})
    )
    table = pa.concat_tables([pq.read_table(f) for f in inputs])
    if with_output:
        pq.write_table(table, part / name)
    else:
        pq.write_table(table, part / f".{name}.tmp")  # crash while writing the merged file
    return inputs


def test_compaction_crash_with_output_present_removes_inputs(sink: TraceSink) -> None:
    before = _many_files(sink, 3, 2)
    part = sink.traces_dir / "date=2025-03-14"
    inputs = _interrupted_compaction(part, with_output=True)
    assert sum(trace_ids(sink.traces_dir).values()) > sum(before.values())  # duplicates visible now
    recover(sink.traces_dir)
    assert not any(f.exists() for f in inputs)
    assert not list(part.glob(".compact-*"))
    assert trace_ids(sink.traces_dir) == before


def test_compaction_crash_without_output_rolls_back(sink: TraceSink) -> None:
    before = _many_files(sink, 3, 2)
    part = sink.traces_dir / "date=2025-03-14"
    inputs = _interrupted_compaction(part, with_output=False)
    compact(sink.traces_dir, date="2025-03-15")  # any compaction finishes leftovers first
    assert all(f.exists() for f in inputs)
    assert not list(part.glob(".*"))  # manifest and temp file gone
    assert trace_ids(sink.traces_dir) == before


# ---------------------------------------------------------------------------- schema versions


def test_older_file_reads_with_current_ones(sink: TraceSink) -> None:
    rows = [make_row(i) for i in range(2)]
    for r in rows:
        sink.write(r)
    sink.flush()
    dropped = ["tags", "guardrail_findings", "instructions_hash", "cost_usd", "fallback_used"]
    old = schema.to_table([make_row(10, trace_id="old-1")]).drop_columns(dropped)
    old = old.set_column(0, "schema_version", pa.array([0], pa.int16()))
    part = sink.traces_dir / "date=2025-03-14"
    pq.write_table(old, part / "part-old-v0.parquet")

    got = {r["trace_id"]: r for r in read_rows(sink.traces_dir)}
    assert set(got) == {"old-1", *(r["trace_id"] for r in rows)}
    assert got["old-1"]["schema_version"] == 0
    assert got["old-1"]["tags"] is None and got["old-1"]["cost_usd"] is None
    assert got[rows[0]["trace_id"]]["tags"] == rows[0]["tags"]

    tables = [schema.conform(pq.read_table(f)) for f in sorted(part.glob("*.parquet"))]
    merged = pa.concat_tables(tables)  # same schema after conform
    assert merged.schema.equals(schema.SCHEMA)
    by_id = {r["trace_id"]: r for r in merged.to_pylist()}
    assert by_id["old-1"]["fallback_used"] is False  # default for a required column
    assert by_id["old-1"]["instructions_hash"] is None
    assert by_id["old-1"]["attempts"] == make_row(10)["attempts"]


# ------------------------------------------------------------------------------ disk failures


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root/CAP_SYS_ADMIN): {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _failing_sink(mnt: Path, errors: list[str]) -> TraceSink:
    s = TraceSink(
        mnt / "traces", flush_interval_s=3600, flush_rows=10**9, instance_id="gwF", on_error=errors.append
    )
    s.start()
    return s


def test_disk_full_then_space_freed(small_fs: Path) -> None:
    errors: list[str] = []
    sink = _failing_sink(small_fs, errors)
    filler = small_fs / "filler"
    try:
        before = make_row(0)
        sink.write(before)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            with pytest.raises(OSError, match="No space left"):
                while True:
                    os.write(fd, b"\0" * 4096)
            os.ftruncate(fd, os.fstat(fd).st_size - 64 * 1024)  # leave 64 KiB: less than one big row
        finally:
            os.close(fd)
        big = make_row(1, request_body="x" * 300_000)  # written in part, then ENOSPC
        with pytest.raises(SinkError, match="No space left on device"):
            sink.write(big)
        assert not sink.healthy
        with pytest.raises(SinkError):
            sink.write(make_row(2, request_body="y" * 300_000))
        assert len(errors) == 1 and "not writable" in errors[0] and "No space left" in errors[0]
        filler.unlink()
        after = make_row(3)
        sink.write(after)
        assert sink.healthy and sink.last_error is None
        sink.flush()
        # the torn record of the failed write hides nothing written after it
        assert trace_ids(sink.traces_dir) == Counter([before["trace_id"], after["trace_id"]])
    finally:
        sink.close()


def test_read_only_then_writable(small_fs: Path) -> None:
    errors: list[str] = []
    sink = _failing_sink(small_fs, errors)
    try:
        first = make_row(0)
        sink.write(first)
        sink.flush()  # closes the segment: no open writable fd, so the remount is allowed
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True, capture_output=True)
        try:
            with pytest.raises(SinkError, match="Read-only file system"):
                sink.write(make_row(1))
            assert not sink.healthy
            assert len(errors) == 1 and "Read-only file system" in errors[0]
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True, capture_output=True)
        second = make_row(2)
        sink.write(second)
        assert sink.healthy
        sink.flush()
        assert trace_ids(sink.traces_dir) == Counter([first["trace_id"], second["trace_id"]])
    finally:
        sink.close()
