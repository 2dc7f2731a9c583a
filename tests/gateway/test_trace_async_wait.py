"""In-process: a call that ends before its async-stage guardrail check has a trace row that
waits for the check, bounded by ``ASYNC_WAIT_S``; a check still running then (or one that
failed) gives a row marked so, with no request body stored; shutdown writes waiting rows at once.

The guardrails addon and its engine are the real ones; only the engine's async-stage check is
held by the test (released, failed or never released) to set the order of events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from mitmproxy import http
from mitmproxy.test import taddons

from addons import tracing as tracing_mod
from addons.flowstate import get_state
from addons.guardrails import Guardrails
from addons.tracing import Tracing
from codexgate.guard.policy import SECTION, to_section
from codexgate.guard.service import Guard
from codexgate.sink.sink import TraceSink
from tests.gateway.flows import Pipeline, demo_vault, model_flow

EMAIL = "dana.okafor@acme-corp.com"
ANSWER = {"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-5-codex",
          "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": "done", "annotations": []}]}],
          "usage": {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}}


class HeldGuard(Guard):
    """The real engine; its async-stage check first waits for ``release`` (then scans, or fails)."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.release = asyncio.Event()
        self.fail = False
        self.cancelled = 0

    async def check_async(self, policy, **kw: Any):  # type: ignore[no-untyped-def, override]
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail:
            raise RuntimeError("scan worker died")
        return await super().check_async(policy, **kw)


@pytest.fixture()
def setup(tmp_path: Path) -> Iterator[tuple[Pipeline, Any, HeldGuard, Tracing, Guardrails]]:
    demo = demo_vault(tmp_path)
    v = demo.load()
    v.sections[SECTION] = to_section(
        {f"key:{demo.key_ids['alice']}": {"detectors": {"pii": {"action": "flag", "stage": "async"}}}}
    )
    demo.save(v)
    p = Pipeline(demo)
    guard = HeldGuard()
    guardrails = Guardrails(p.holder, guard)
    tracing = Tracing()
    tracing.sink = TraceSink(tmp_path / "traces", convert_in="thread")
    tracing.sink.start()
    try:
        with taddons.context(*p.chain, guardrails, tracing):
            yield p, demo, guard, tracing, guardrails
    finally:
        tracing.sink.close()
        guardrails.done()


async def _answered_call(setup, rows: list[dict[str, Any]]) -> None:
    """A non-streamed call through the request path, answered by the provider, its response
    hook run: the row's finisher appends the row to ``rows`` when it is written."""
    p, demo, _, tracing, guardrails = setup
    f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": f"write to {EMAIL} please"})
    await p.run(f, extra=[guardrails, tracing])
    assert f.response is None  # forwarded: the async check runs alongside
    get_state(f).record.finishers.append(rows.append)
    f.response = http.Response.make(200, json.dumps(ANSWER), {"content-type": "application/json"})
    tracing.response(f)


async def test_the_row_waits_for_a_check_that_finishes_after_the_call(setup, monkeypatch) -> None:
    monkeypatch.setattr(tracing_mod, "ASYNC_WAIT_S", 10.0)
    guard = setup[2]
    rows: list[dict[str, Any]] = []
    await _answered_call(setup, rows)
    await asyncio.sleep(0.2)
    assert rows == []  # the answer went on; the row waits for the check
    guard.release.set()
    for _ in range(100):
        if rows:
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 1  # written as soon as the check finished, long before the bound
    row = rows[0]
    assert [(f["guardrail"], f["entity"], f["action"]) for f in row["guardrail_findings"]] == [
        ("pii", "EMAIL_ADDRESS", "logged")]
    assert EMAIL not in row["request_body"] and "<EMAIL_ADDRESS_1>" in row["request_body"]
    assert row["outcome"] == "ok" and row["response_body"] is not None


async def test_a_check_still_running_at_the_bound_gives_a_row_without_the_body(setup, monkeypatch) -> None:
    monkeypatch.setattr(tracing_mod, "ASYNC_WAIT_S", 0.3)
    guard = setup[2]
    rows: list[dict[str, Any]] = []
    await _answered_call(setup, rows)
    await asyncio.sleep(0.1)
    assert rows == []
    await asyncio.sleep(0.5)
    assert len(rows) == 1
    row = rows[0]
    assert json.loads(row["request_body"]) == {"redacted": "async guardrail check unfinished"}
    assert [(f["guardrail"], f["message"]) for f in row["guardrail_findings"]] == [("async", "async check unfinished")]
    await asyncio.sleep(0)
    assert guard.cancelled == 1  # the late check is stopped, not left running
    assert EMAIL not in json.dumps(row, default=str)


async def test_a_failed_check_gives_a_row_without_the_body(setup, monkeypatch) -> None:
    monkeypatch.setattr(tracing_mod, "ASYNC_WAIT_S", 10.0)
    guard = setup[2]
    guard.fail = True
    rows: list[dict[str, Any]] = []
    await _answered_call(setup, rows)
    guard.release.set()
    for _ in range(100):
        if rows:
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 1
    assert json.loads(rows[0]["request_body"]) == {"redacted": "async guardrail check failed"}
    assert [f["message"] for f in rows[0]["guardrail_findings"]] == ["async check failed"]
    assert EMAIL not in json.dumps(rows[0], default=str)


async def test_shutdown_writes_a_waiting_row_at_once(setup, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tracing_mod, "ASYNC_WAIT_S", 60.0)
    tracing = setup[3]
    rows: list[dict[str, Any]] = []
    await _answered_call(setup, rows)
    assert rows == []
    tracing.done()  # mitmproxy's shutdown: the row is written, then the sink closes
    assert len(rows) == 1
    stored = duckdb.sql(
        f"select request_body, outcome from read_parquet('{tmp_path}/traces/**/*.parquet')"
    ).fetchall()
    assert stored == [('{"redacted": "async guardrail check unfinished"}', "ok")]
