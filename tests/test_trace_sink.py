"""Trace sink: spool -> Parquet round trip, torn records, exactly-once recovery, compaction,
older files, full and read-only disks, and the ``codexgate traces`` commands."""

from __future__ import annotations

import base64
import errno
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest

from codexgate.cli import main
from codexgate.core import schema
from codexgate.sink import SinkError, TraceSink, convert, spool
from codexgate.sink.compact import compact
from codexgate.sink.sink import recover
from tests.helpers.children import parquet_ids

ROOT = Path(__file__).resolve().parents[1]
DAY1 = datetime(2026, 3, 1, 23, 59, 58, 123456, tzinfo=UTC)
DAY2 = datetime(2026, 3, 2, 0, 0, 1, 654321, tzinfo=UTC)


def full_row(i: int, start: datetime = DAY1) -> dict[str, Any]:
    """A row with every column type filled in (lists of structs, unicode, big ints, floats)."""
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "trace_id": f"t{i:06d}",
        "gateway_instance": "gw-test",
        "start_time": start,
        "upstream_first_byte_time": start + timedelta(milliseconds=120, microseconds=7),
        "first_token_time": start + timedelta(milliseconds=333),
        "end_time": start + timedelta(seconds=2, microseconds=1),
        "duration_ms": 2000.001,
        "ttfb_ms": 120.007,
        "ttft_ms": 1 / 3,
        "status_code": 200,
        "outcome": "ok",
        "streaming": True,
        "client_aborted": False,
        "error_message": 'quote " backslash \\ newline \n tab \t nul \x00 emoji \U0001f600 é 漢',
        "developer": "alice",
        "gen_ai_request_model": "gpt-5-codex",
        "gen_ai_response_finish_reasons": ["stop", "length"],
        "request_body": json.dumps({"input": "x" * 3000, "n": i}),
        "request_bytes": 2**40 + i,
        "tool_calls": [
            {"call_id": "c1", "name": "shell", "type": "function_call", "arguments": '{"cmd": ["ls"]}'},
            {"call_id": None, "name": "apply_patch", "type": "custom_tool_call", "arguments": None},
        ],
        "sse_event_count": 42,
        "gen_ai_usage_input_tokens": 12345678901,
        "usage_complete": True,
        "cost_usd": 0.1 + 0.2,
        "cost_known": True,
        "attempts": [
            {
                "attempt": 1,
                "provider": "openai",
                "url": "https://api.openai.com/v1/responses",
                "status_code": 429,
                "latency_ms": 10.5,
                "error": "rate_limited",
                "started_at": start + timedelta(microseconds=1),
                "model": "gpt-5",
                "upstream_api": None,
                "decision": "retry",
                "wait_ms": 200.5,
                "sent_bytes": 40_960,
            },
            {
                "attempt": 2,
                "provider": "azure",
                "url": "https://x.openai.azure.com/openai/responses",
                "status_code": None,
                "latency_ms": 0.0,
                "error": None,
                "started_at": start + timedelta(milliseconds=11),
                "model": "gpt-5",
                "upstream_api": "anthropic_messages",
                "decision": "served",
                "wait_ms": None,
                "sent_bytes": 38_000,
            },
        ],
        "attempt_count": 2,
        "fallback_used": True,
        "policy_decisions": [{"policy": "budget", "decision": "allow", "reason": None}],
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
        "guardrail_blocked": False,
        "tags": [],
        "call_index": -1,
    }


def sparse_row(i: int, start: datetime = DAY2) -> dict[str, Any]:
    """Only the required columns: everything else NULL (or its schema default)."""
    return {
        "trace_id": f"s{i:06d}",
        "start_time": start,
        "end_time": start,
        "duration_ms": 0.0,
        "outcome": "refused",
    }


def parquet_files(traces: Path) -> list[Path]:
    return sorted(traces.glob("date=*/*.parquet"))


def duck_rows(traces: Path, where: str = "TRUE", params: list[Any] | None = None) -> list[dict[str, Any]]:
    con = duckdb.connect()
    con.sql("SET TimeZone = 'UTC'")
    rel = con.sql(
        f"select * from read_parquet('{traces}/**/*.parquet', hive_partitioning = true, union_by_name = true) "
        f"where {where} order by trace_id",
        params=params or [],
    )
    cols = rel.columns
    out = [dict(zip(cols, r, strict=True)) for r in rel.fetchall()]
    con.close()
    return out


def dead_spool(traces: Path, instance: str, rows: list[dict[str, Any]], tail: bytes = b"") -> Path:
    """A spool directory as a killed gateway leaves it: one segment, lock file free."""
    directory = traces / spool.SPOOL_DIR / instance
    directory.mkdir(parents=True, exist_ok=True)
    (directory / spool.LOCK_NAME).touch()
    segment = directory / "seg-0badf00d-000001.log"
    segment.write_bytes(b"".join(spool.encode(r) for r in rows) + tail)
    return segment


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[TraceSink]:
    s = TraceSink(tmp_path / "traces", flush_interval_s=60, instance_id="unit")
    s.start()
    yield s
    s.close()


# ------------------------------------------------------------------------------ round trip


def test_round_trip_every_column_type_two_dates(sink: TraceSink) -> None:
    rows = [full_row(i, DAY1) for i in range(3)] + [full_row(i, DAY2) for i in range(3, 5)]
    rows += [sparse_row(1, DAY1), sparse_row(2, DAY2)]
    rows[1]["tool_calls"] = None
    rows[2]["error_message"] = None
    for r in rows:
        sink.write(r)
    sink.flush()
    traces = sink.traces_dir

    files = parquet_files(traces)
    assert [f.parent.name for f in files] == ["date=2026-03-01", "date=2026-03-02"]
    assert all(f.name.startswith("part-unit-") for f in files)
    assert {f.name for f in files} == {files[0].name}  # one segment -> the same name in each partition
    assert not list(traces.rglob("*.tmp")) and not list((traces / spool.SPOOL_DIR).rglob("*.parquet"))

    for f in files:
        pf = pq.ParquetFile(f)
        assert pf.schema_arrow.names == schema.COLUMNS  # no `date` column: the directory is the partition
        assert pf.schema_arrow.metadata == schema.SCHEMA.metadata
        for got, want in zip(pf.schema_arrow, schema.SCHEMA, strict=True):
            assert got.nullable == want.nullable and got.metadata == want.metadata
            assert got.type.equals(want.type) or pa.types.is_list(got.type)  # list items: "element"
        assert pf.metadata.row_group(0).column(0).compression == "ZSTD"

    # Arrow: exactly what schema.to_table makes of the rows
    table = pa.concat_tables(schema.conform(pq.read_table(f)) for f in files).sort_by("trace_id")
    assert table.to_pylist() == schema.to_table(rows).sort_by("trace_id").to_pylist()

    # DuckDB over the hive layout: every value back, the partition from start_time's UTC date
    got = {r["trace_id"]: r for r in duck_rows(traces)}
    assert len(got) == len(rows)
    for row in rows:
        want = schema.normalise_row(row)
        have = dict(got[row["trace_id"]])
        assert str(have.pop("date")) == schema.partition_date(row) == str(have["start_time"].date())
        assert have == want, row["trace_id"]
    sparse = got["s000001"]
    assert sparse["attempts"] is None and sparse["status_code"] is None and sparse["streaming"] is False
    assert sparse["schema_version"] == schema.SCHEMA_VERSION and sparse["attempt_count"] == 0


def test_realistic_rows_convert_exactly_like_to_table(tmp_path: Path) -> None:
    from analytics.synth import generate_rows

    rows = list(generate_rows(150, bodies=True, start=datetime(2026, 1, 1, tzinfo=UTC), days=2))
    rows[0]["attempt_count"] = None  # normalise_row derives it from attempts
    rows[1]["attempts"] = []
    rows[1]["attempt_count"] = None
    rows[2]["tool_calls"] = [{"name": "shell", "surprise": "dropped, as to_table drops it"}]
    payloads = [memoryview(spool.encode(r))[spool.HEADER.size :] for r in rows]
    table, rejected = convert.rows_table(payloads)
    assert not rejected  # and no row went down the slow row-by-row path:
    assert pj.read_json(pa.py_buffer(b"\n".join(payloads)), parse_options=convert._PARSE_OPTIONS)
    assert table.schema.equals(schema.SCHEMA, check_metadata=True)
    assert table.to_pylist() == schema.to_table(rows).to_pylist()
    assert table.column("attempt_count")[0].as_py() == len(rows[0]["attempts"])


def test_odd_values_survive_or_are_kept_aside(sink: TraceSink) -> None:
    errors: list[str] = []
    sink.on_error = errors.append
    nan = full_row(1)
    nan["cost_usd"] = math.nan
    nan["ttft_ms"] = math.inf
    surrogate = full_row(2)
    surrogate["request_body"] = "bad \ud800 escape"
    wrong_type = full_row(3)
    wrong_type["status_code"] = "200"  # a string where an int32 belongs: cannot be stored
    for r in (nan, surrogate, wrong_type, full_row(4)):
        sink.write(r)
    sink.flush()
    got = {r["trace_id"]: r for r in duck_rows(sink.traces_dir)}
    assert set(got) == {"t000001", "t000002", "t000004"}
    assert math.isnan(got["t000001"]["cost_usd"]) and got["t000001"]["ttft_ms"] == math.inf
    assert got["t000002"]["request_body"] == "bad ? escape"
    kept = list((sink.traces_dir / convert.REJECTED_DIR).glob("*.jsonl"))
    assert len(kept) == 1
    line = json.loads(kept[0].read_text())
    assert json.loads(line["row"])["trace_id"] == "t000003" and "int" in line["error"]
    assert len(errors) == 1 and "1 trace rows" in errors[0] and str(kept[0]) in errors[0]


def test_bad_rows_are_refused_at_write(sink: TraceSink) -> None:
    with pytest.raises(KeyError, match="unknown trace columns"):
        sink.write({**full_row(1), "not_a_column": 1})
    with pytest.raises(ValueError, match="naive datetime"):
        sink.write({**full_row(1), "end_time": datetime(2026, 1, 1)})
    with pytest.raises(ValueError, match="trace_id"):
        sink.write({**full_row(1), "trace_id": None})
    with pytest.raises(TypeError, match="set"):
        sink.write({**full_row(1), "tags": {1}})
    sink.flush()
    assert not parquet_files(sink.traces_dir)


def test_background_thread_converts_on_interval_and_row_count(tmp_path: Path) -> None:
    by_time = TraceSink(tmp_path / "a", flush_interval_s=0.2, fsync_interval_s=0.05)
    by_rows = TraceSink(tmp_path / "b", flush_interval_s=60, flush_rows=10)
    for s in (by_time, by_rows):
        s.start()
        for i in range(10):
            s.write(full_row(i))
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            parquet_files(tmp_path / "a") and parquet_files(tmp_path / "b")
        ):
            time.sleep(0.05)
        assert sum(parquet_ids(tmp_path / "a").values()) == 10
        assert sum(parquet_ids(tmp_path / "b").values()) == 10
        assert not spool.list_segments(by_rows.spool_dir)  # converted, then deleted
    finally:
        by_time.close()
        by_rows.close()
    assert not by_time.spool_dir.exists()


def test_close_flushes_is_idempotent_and_later_writes_fail(tmp_path: Path) -> None:
    s = TraceSink(tmp_path, flush_interval_s=60)
    s.start()
    s.write(full_row(1))
    s.close()
    s.close()
    assert parquet_ids(tmp_path) == {"t000001": 1}
    with pytest.raises(SinkError, match="not running"):
        s.write(full_row(2))
    unstarted = TraceSink(tmp_path)
    with pytest.raises(SinkError):
        unstarted.write(full_row(3))
    unstarted.close()


# ------------------------------------------------------------------------------ torn records


@pytest.mark.parametrize("damage", ["cut_payload", "cut_header", "bad_crc"])
def test_torn_last_record_is_skipped(tmp_path: Path, damage: str) -> None:
    rows = [full_row(i) for i in range(5)]
    last = spool.encode(full_row(5))
    tail = {
        "cut_payload": last[: len(last) // 2],
        "cut_header": last[:5],
        "bad_crc": last[:-1] + bytes([last[-1] ^ 1]),
    }[damage]
    segment = dead_spool(tmp_path, "deadbeef", rows, tail)
    reader = spool.SegmentReader(segment, batch_bytes=3 * len(last))  # records span block boundaries
    assert sum(len(batch) for batch in reader) == 5 and reader.torn_bytes == len(tail)
    assert recover(tmp_path) == 5
    assert parquet_ids(tmp_path) == Counter(r["trace_id"] for r in rows)


# ------------------------------------------------------------------------------ recovery


def test_recovery_after_crash_before_conversion_is_exactly_once(tmp_path: Path) -> None:
    rows = [full_row(i, DAY1 if i % 2 else DAY2) for i in range(20)]
    segment = dead_spool(tmp_path, "dead01", rows)
    assert recover(tmp_path) == 20
    assert not segment.parent.exists()
    assert recover(tmp_path) == 0
    assert parquet_ids(tmp_path) == Counter(r["trace_id"] for r in rows)


@pytest.mark.parametrize("files_written", ["all", "one_of_two"])
def test_recovery_after_crash_between_parquet_and_segment_delete(tmp_path: Path, files_written: str) -> None:
    rows = [full_row(i, DAY1 if i % 2 else DAY2) for i in range(20)]
    segment = dead_spool(tmp_path, "dead02", rows)
    saved = segment.read_bytes()
    assert recover(tmp_path) == 20
    files = parquet_files(tmp_path)
    assert len(files) == 2
    # the disk as a crash after the rename(s) but before the segment's unlink leaves it
    if files_written == "one_of_two":
        files[1].unlink()
    dead_spool(tmp_path, "dead02", []).write_bytes(saved)
    assert recover(tmp_path) == 20
    assert parquet_files(tmp_path) == files  # same deterministic names, overwritten
    assert parquet_ids(tmp_path) == Counter(r["trace_id"] for r in rows)


def test_start_recovers_dead_spools_but_never_a_live_one(tmp_path: Path) -> None:
    dead_rows = [full_row(i) for i in range(7)]
    dead_spool(tmp_path, "dead03", dead_rows)
    live = TraceSink(tmp_path, flush_interval_s=60, instance_id="live")
    live.start()
    assert live.recovered_rows == 7
    live.write(full_row(100))
    live.write(full_row(101))
    # a second gateway on the same directory, and a `traces recover`, leave the live spool alone
    other = TraceSink(tmp_path, flush_interval_s=60)
    other.start()
    assert recover(tmp_path) == 0
    assert len(spool.list_segments(live.spool_dir)) == 1
    other.close()
    live.close()
    assert parquet_ids(tmp_path) == Counter([r["trace_id"] for r in dead_rows] + ["t000100", "t000101"])
    assert not (tmp_path / spool.SPOOL_DIR / "dead03").exists()


def test_reused_instance_id_recovers_its_leftovers_without_overwriting(tmp_path: Path) -> None:
    first = TraceSink(tmp_path, flush_interval_s=60, instance_id="fixed")
    first.start()
    first.write(full_row(1))
    first.close()
    dead_spool(tmp_path, "fixed", [full_row(2)])  # what a killed run with the same id leaves
    second = TraceSink(tmp_path, flush_interval_s=60, instance_id="fixed")
    second.start()
    second.write(full_row(3))
    with pytest.raises(SinkError, match="locked"):
        TraceSink(tmp_path, instance_id="fixed").start()
    second.close()
    assert parquet_ids(tmp_path) == Counter(["t000001", "t000002", "t000003"])
    assert len(parquet_files(tmp_path)) == 3


# ------------------------------------------------------------------------------ compaction


def write_small_files(traces: Path, n_files: int) -> list[dict[str, Any]]:
    rows = []
    s = TraceSink(traces, flush_interval_s=60)
    s.start()
    for f in range(n_files):
        for i in range(5):
            row = full_row(f * 10 + i, DAY1 if i % 2 else DAY2)
            rows.append(row)
            s.write(row)
        s.flush()
    s.close()
    return rows


def all_rows(traces: Path) -> list[str]:
    """The multiset of rows, as canonical JSON strings (date included)."""
    return sorted(json.dumps(r, default=str, sort_keys=True) for r in duck_rows(traces))


def test_compaction_keeps_the_row_multiset(tmp_path: Path) -> None:
    write_small_files(tmp_path, 4)
    before = all_rows(tmp_path)
    assert len(parquet_files(tmp_path)) == 8
    result = compact(tmp_path)
    assert (result.partitions, result.files_in, result.files_out, result.rows) == (2, 8, 2, 20)
    files = parquet_files(tmp_path)
    assert len(files) == 2 and all(f.name.startswith("compact-") for f in files)
    assert all_rows(tmp_path) == before
    assert compact(tmp_path).files_out == 0  # nothing left to merge
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".compact-")]


def test_compaction_respects_target_rows_and_date(tmp_path: Path) -> None:
    write_small_files(tmp_path, 4)
    before = all_rows(tmp_path)
    result = compact(tmp_path, date="2026-03-02", target_rows=6)  # 3 rows a file: pairs
    assert {m.partition for m in result.merges} == {"date=2026-03-02"}
    assert [len(m.inputs) for m in result.merges] == [2, 2]
    assert len(list((tmp_path / "date=2026-03-01").glob("*.parquet"))) == 4
    assert all_rows(tmp_path) == before


def test_interrupted_compaction_is_completed_or_rolled_back(tmp_path: Path) -> None:
    write_small_files(tmp_path, 3)
    before = all_rows(tmp_path)
    part = tmp_path / "date=2026-03-01"
    inputs = sorted(part.glob("*.parquet"))
    # crash after the merged file was renamed into place, before the inputs were deleted
    merged = pa.concat_tables(schema.conform(pq.read_table(f)) for f in inputs[:2])
    pq.write_table(merged, part / "compact-done.parquet")
    (part / ".compact-done.json").write_text(
        json.dumps({"output": "compact-done.parquet", "inputs": [f.name for f in inputs[:2]]})
    )
    # crash while the merged file was still a temp file
    other = tmp_path / "date=2026-03-02"
    (other / ".compact-half.json").write_text(
        json.dumps({"output": "compact-half.parquet", "inputs": [f.name for f in other.glob("*.parquet")]})
    )
    (other / ".compact-half.parquet.tmp").write_bytes(b"PAR1 half written")
    assert recover(tmp_path) == 0  # finishes both at the next start
    assert not list(tmp_path.glob("date=*/.compact-*"))
    assert all_rows(tmp_path) == before
    assert len(list(other.glob("*.parquet"))) == 3  # rolled back: inputs untouched
    assert sorted(p.name for p in part.glob("*.parquet")) == sorted(["compact-done.parquet", inputs[2].name])


def test_compaction_skips_files_whose_segment_is_still_spooled(tmp_path: Path) -> None:
    write_small_files(tmp_path, 2)
    files = sorted((tmp_path / "date=2026-03-01").glob("*.parquet"))
    instance, seg_id = files[0].name[len("part-") : -len(".parquet")].split("-", 1)
    # converted but (as far as the disk knows) not yet deleted: may be converted again
    dead_spool(tmp_path, instance, []).rename(tmp_path / spool.SPOOL_DIR / instance / f"seg-{seg_id}.log")
    result = compact(tmp_path, date="2026-03-01")
    assert result.files_out == 0 and files[0].exists()


# ------------------------------------------------------------------------------ older files


def test_older_files_with_fewer_columns_read_with_current_ones(tmp_path: Path) -> None:
    s = TraceSink(tmp_path, flush_interval_s=60)
    s.start()
    s.write(full_row(1))
    s.close()
    dropped = ["attempts", "guardrail_findings", "tags", "subagent", "usage_complete", "instructions_hash"]
    old = schema.to_table([{**full_row(2), "schema_version": 0}]).drop_columns(dropped)
    pq.write_table(old, tmp_path / "date=2026-03-01" / "part-v0.parquet", compression="zstd")

    rows = {r["trace_id"]: r for r in duck_rows(tmp_path)}
    assert set(rows) == {"t000001", "t000002"}
    assert rows["t000002"]["schema_version"] == 0 and rows["t000002"]["attempts"] is None
    assert rows["t000002"]["developer"] == "alice" and rows["t000001"]["attempts"][0]["provider"] == "openai"
    conformed = schema.conform(pq.read_table(tmp_path / "date=2026-03-01" / "part-v0.parquet"))
    assert conformed.schema.equals(schema.SCHEMA)
    assert conformed.column("usage_complete").to_pylist() == [False]  # required column: its default
    assert compact(tmp_path).rows == 2
    assert set(parquet_ids(tmp_path)) == {"t000001", "t000002"}


# ------------------------------------------------------------------------------ full / read-only disk


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> Path:
    """Write zeros to ``path`` until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return path


def test_full_disk_raises_reports_once_and_recovers(small_fs: Path) -> None:
    errors: list[str] = []
    s = TraceSink(small_fs / "traces", flush_interval_s=60, on_error=errors.append)
    s.start()
    filler = fill(small_fs / "filler")
    os.truncate(filler, filler.stat().st_size - 200_000)  # room for a few rows, then full

    accepted, refused = [], 0
    for i in range(200):
        row = full_row(i)
        row["request_body"] = base64.b64encode(os.urandom(6750)).decode()  # ~10 KB, incompressible
        try:
            s.write(row)
            accepted.append(row["trace_id"])
        except SinkError as exc:
            refused += 1
            assert str(exc) == f"trace spool {s.spool_dir} not writable: No space left on device"
    assert accepted and refused > 1
    assert not s.healthy and s.last_error is not None and "No space left on device" in s.last_error
    assert errors == [s.last_error]  # once, not once per failed write

    with pytest.raises(SinkError, match="cannot write trace Parquet"):
        s.flush()  # no room for Parquet either: the rows stay in the spool
    assert s.flush_error is not None and len(errors) == 2

    os.unlink(filler)
    s.write(full_row(1000))
    assert s.healthy and s.last_error is None
    s.flush()
    assert s.flush_error is None
    s.close()
    assert parquet_ids(small_fs / "traces") == Counter([*accepted, "t001000"])


def test_unhealthy_sink_notices_the_disk_is_back_without_writes(small_fs: Path) -> None:
    s = TraceSink(small_fs / "traces", flush_interval_s=60)
    s.start()
    filler = fill(small_fs / "filler")
    with pytest.raises(SinkError):
        for i in range(50):
            s.write(full_row(i))
    assert not s.healthy
    os.unlink(filler)  # a fail-closed gateway writes nothing while unhealthy: the probe must notice
    deadline = time.monotonic() + 5
    while not s.healthy and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s.healthy
    s.close()


def test_read_only_spool_raises_and_recovers(tmp_path: Path) -> None:
    errors: list[str] = []
    as_root = os.geteuid() == 0
    if as_root:
        base = tmp_path / "mnt"
        base.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(base)]).returncode:
            pytest.skip("cannot mount a tmpfs here")
    else:
        base = tmp_path
    s = TraceSink(base / "traces", flush_interval_s=60, on_error=errors.append)
    try:
        s.start()
        s.write(full_row(1))
        s.flush()  # no spool file is open for writing now (segments are opened by the next write)

        def read_only(on: bool) -> None:
            if as_root:  # root ignores permission bits: remount the filesystem instead
                subprocess.run(["mount", "-o", f"remount,{'ro' if on else 'rw'}", str(base)], check=True)
            else:
                s.spool_dir.chmod(0o500 if on else 0o700)

        read_only(True)
        reason = "Read-only file system" if as_root else "Permission denied"
        for i in (2, 3):
            with pytest.raises(SinkError, match=reason):
                s.write(full_row(i))
        assert not s.healthy and errors == [f"trace spool {s.spool_dir} not writable: {reason}"]
        read_only(False)
        s.write(full_row(4))
        assert s.healthy
        s.close()
        assert parquet_ids(base / "traces") == Counter(["t000001", "t000004"])
    finally:
        s.close()
        if as_root:
            subprocess.run(["umount", "-l", str(base)], check=False)


# ------------------------------------------------------------------------------ CLI


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``codexgate traces ...`` as a real process (this checkout's code)."""
    env = {k: v for k, v in os.environ.items() if k != "CODEXGATE_TRACES"}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from codexgate.cli import main; sys.exit(main())",
            "traces",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["traces", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def stats_lines(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}


def test_cli_recover_stats_compact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_small_files(tmp_path, 2)
    dead_spool(tmp_path, "deadcli", [full_row(500), full_row(501, DAY2)])

    code, out, _ = cli_in_process(capsys, "stats", "--traces", str(tmp_path))
    assert code == 0
    assert "spool deadcli: 1 segment(s)" in out and "stopped" in out
    assert stats_lines(out)["total"][1:3] == ["4", "10"]

    proc = cli("recover", "--traces", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "recovered 2 rows from 1 segment(s) of 1 stopped gateway(s)" in proc.stdout

    proc = cli("compact", "--traces", str(tmp_path), "--date", "2026-03-01")
    assert proc.returncode == 0, proc.stderr
    assert "date=2026-03-01: merged 3 files (5 rows) into compact-" in proc.stdout
    code, out, _ = cli_in_process(capsys, "stats", "--traces", str(tmp_path))
    lines = stats_lines(out)
    assert lines["date=2026-03-01"][1:3] == ["1", "5"]
    assert lines["date=2026-03-02"][1:3] == ["3", "7"]
    assert "spool" not in lines
    assert sum(parquet_ids(tmp_path).values()) == 12

    code, _, err = cli_in_process(capsys, "compact", "--traces", str(tmp_path / "nope"))
    assert code == 2 and "no traces directory" in err
    code, _, err = cli_in_process(capsys, "compact", "--traces", str(tmp_path), "--date", "2026-02-01")
    assert code == 2 and "no partition date=2026-02-01" in err
    with pytest.raises(SystemExit):
        main(["traces", "compact", "--traces", str(tmp_path), "--date", "2026-13-01"])
    assert "not a date" in capsys.readouterr().err


def test_spool_dir_holds_no_parquet_and_temp_names_do_not_match(tmp_path: Path) -> None:
    """DuckDB's ``**/*.parquet`` glob must only ever see finished files."""
    s = TraceSink(tmp_path, flush_interval_s=60, instance_id="glob")
    s.start()
    s.write(full_row(1))
    names = [p.name for p in tmp_path.rglob("*")]
    assert not [n for n in names if n.endswith(".parquet")]
    tmp = convert.DateFile(tmp_path / "date=2026-03-01" / "part-x-y-1.parquet").tmp
    assert tmp.name == ".part-x-y-1.parquet.tmp" and not tmp.match("*.parquet")
    s.close()
    shutil.rmtree(tmp_path / "date=2026-03-01")
