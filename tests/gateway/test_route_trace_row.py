"""In-process: the trace row's ``upstream_request_body`` (what the route sent upstream when it
differs from the client's request) follows the request body's privacy, and the row is priced at
the model that served."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from mitmproxy.test import taddons

from addons import trace_row
from addons.flowstate import get_state
from addons.reassembly import Reassembled
from codexgate.core import schema
from codexgate.core.pricing import Usage, price
from codexgate.core.vault import RouteTarget
from tests.gateway.flows import Pipeline, demo_vault, model_flow

SECRET = "sk-proj-" + "Q" * 40


@pytest.fixture()
def pipe(tmp_path: Path):
    demo = demo_vault(tmp_path)
    v = demo.load()
    v.add_route("gpt-5*", targets=[RouteTarget("openai", "gpt-5-mini")], api="responses")
    v.add_route("plain-*", targets=[RouteTarget("openai")], api="responses")
    demo.save(v)
    p = Pipeline(demo)
    with taddons.context(*p.chain) as tctx:
        tctx.options.update(codexgate_unknown_hosts="passthrough")
        yield p, demo


async def _row(p, demo, mode: str, model: str = "gpt-5-codex", stored: str | None = None) -> dict:
    vault = demo.load()
    vault.keys[demo.key_ids["alice"]].privacy_mode = mode
    demo.save(vault)
    p.holder.load_now()
    f = model_flow(demo.keys["alice"], {"model": model, "input": f"my key {SECRET}"})
    await p.run(f)
    state = get_state(f)
    state.record.stored_body_text = stored
    result = Reassembled(text="ok", usage=Usage(1000, 0, 0, 100, 0), response_model=None)
    row = trace_row.build_row(f, state, result, outcome="ok", end=datetime.now(UTC), status_code=200)
    pa.Table.from_pylist([row], schema=schema.SCHEMA)  # the sink's contract
    return row


async def test_full_mode_stores_the_rewritten_body_and_prices_the_served_model(pipe) -> None:
    p, demo = pipe
    row = await _row(p, demo, "full")
    sent = json.loads(row["upstream_request_body"])
    assert sent["model"] == "gpt-5-mini" and SECRET in sent["input"]  # full mode keeps bodies as sent
    assert json.loads(row["request_body"])["model"] == "gpt-5-codex"
    assert row["cost_usd"] == pytest.approx(price("gpt-5-mini", "openai", Usage(1000, 0, 0, 100, 0)).total_usd)
    assert row["cost_usd"] != pytest.approx(price("gpt-5-codex", "openai", Usage(1000, 0, 0, 100, 0)).total_usd)


async def test_nothing_is_stored_when_the_upstream_got_the_clients_request(pipe) -> None:
    p, demo = pipe
    row = await _row(p, demo, "full", model="plain-model")
    assert row["upstream_request_body"] is None and row["request_body"] is not None


async def test_metrics_only_and_redacted_without_a_redacted_body_store_nothing(pipe) -> None:
    p, demo = pipe
    assert (await _row(p, demo, "metrics_only"))["upstream_request_body"] is None
    assert (await _row(p, demo, "redacted"))["upstream_request_body"] is None  # no engine: fail closed


async def test_the_privacy_applied_request_body_is_what_gets_rewritten(pipe) -> None:
    p, demo = pipe
    redacted = json.dumps({"model": "gpt-5-codex", "input": "my key <SECRET_1>"})
    row = await _row(p, demo, "redacted", stored=redacted)
    assert json.loads(row["upstream_request_body"]) == {"model": "gpt-5-mini", "input": "my key <SECRET_1>"}
    assert SECRET not in json.dumps(row, default=str)
    placeholder = await _row(p, demo, "redacted", stored='{"redacted": "async guardrail check unfinished"}')
    assert placeholder["upstream_request_body"] is None
