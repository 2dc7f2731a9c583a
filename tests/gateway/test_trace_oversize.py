"""A row too large for the spool's record cap is still recorded: without its stored texts,
flagged truncated (tracing retries the healthy sink's size refusal with a slim row)."""

from __future__ import annotations

from pathlib import Path

import duckdb
from mitmproxy.test import taddons

from addons.flowstate import get_state
from addons.trace_row import STORED_TEXT_COLUMNS
from addons.tracing import Tracing
from codexgate.sink import spool
from codexgate.sink.sink import TraceSink
from tests.gateway.flows import Pipeline, demo_vault, model_flow


async def test_an_oversized_row_is_kept_without_its_texts(tmp_path: Path, monkeypatch) -> None:
    demo = demo_vault(tmp_path)
    p = Pipeline(demo)
    tracing = Tracing()
    errors: list[str] = []
    sink = TraceSink(tmp_path / "traces", convert_in="thread", on_error=errors.append)
    sink.start()
    tracing.sink = sink
    # the cap is the spool's own constant; a small one stands for a row of seven 2 MiB texts
    monkeypatch.setattr(spool, "MAX_RECORD_BYTES", 16 * 1024)
    body = {"model": "gpt-5-codex", "input": "x" * 40_000}
    try:
        with taddons.context(*p.chain, tracing):
            f = model_flow(demo.keys["alice"], body, headers={"x-client-request-id": "big-1"})
            await p.run(f)
            state = get_state(f)
            assert state is not None and state.request.body_text is not None
            tracing._write(f, state, None, outcome="ok", status_code=200)
    finally:
        sink.close()
    assert errors and "bytes per row" in errors[0]  # the refusal was reported, counts only
    rows = duckdb.sql(
        f"select * from read_parquet('{tmp_path}/traces/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    cols = [
        d[0]
        for d in duckdb.sql(
            f"select * from read_parquet('{tmp_path}/traces/**/*.parquet', hive_partitioning=true) limit 0"
        ).description
    ]
    assert len(rows) == 1
    row = dict(zip(cols, rows[0], strict=True))
    assert row["trace_id"] == state.trace_id and row["key_id"] == demo.key_ids["alice"]
    assert row["body_truncated"] is True and row["outcome"] == "ok"
    assert all(row[c] is None for c in STORED_TEXT_COLUMNS)
    assert "x" * 100 not in " ".join(errors)  # no row content in the report
