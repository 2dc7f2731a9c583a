"""In-process tests of the trace row (privacy by allowlist, caps, minimal rows), pricing and the
client-limits deadlines — the row is checked against the schema the sink writes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons import trace_row
from addons.client_limits import ClientLimits, _Conn
from addons.flowstate import get_state
from addons.reassembly import Reassembled
from codexgate.core import schema
from codexgate.core.pricing import Usage, price
from tests.gateway.flows import Pipeline, demo_vault, model_flow

SECRET = "sk-proj-" + "Z" * 40


@pytest.fixture()
def pipe(tmp_path: Path):
    demo = demo_vault(tmp_path)
    p = Pipeline(demo)
    with taddons.context(*p.chain):
        yield p, demo


def as_table(row: dict) -> pa.Table:
    return pa.Table.from_pylist([row], schema=schema.SCHEMA)  # the sink's contract


async def _row(p, demo, mode: str, **kw) -> dict:
    vault = demo.load()
    vault.keys[demo.key_ids["alice"]].privacy_mode = mode
    demo.save(vault)
    p.holder.load_now()
    body = {"model": "gpt-5-codex", "input": f"my key {SECRET} and jane@corp.example"}
    headers = {
        "x-my-auth": SECRET,
        "user-agent": "codex_exec/0.171",
        "session-id": "s-row",
        "x-codexgate-metadata": json.dumps({"note": SECRET}),
        "x-codex-turn-metadata": json.dumps({"session_id": "s-row", "x": SECRET}),
    }
    f = model_flow(demo.keys["alice"], body, headers=headers)
    await p.run(f)
    result = Reassembled(text=f"echo {SECRET}", usage=Usage(100, 20, 0, 50, 10), response_model="gpt-5-codex")
    return trace_row.build_row(f, get_state(f), result, outcome="ok", end=datetime.now(UTC), status_code=200, **kw)


async def test_full_mode_keeps_bodies_but_headers_by_allowlist(pipe) -> None:
    p, demo = pipe
    row = await _row(p, demo, "full")
    as_table(row)
    headers = json.loads(row["request_headers"])
    assert headers["x-my-auth"] == "[redacted]" and headers["authorization"] == "[redacted]"
    assert headers["user-agent"] == "codex_exec/0.171"
    assert SECRET in row["request_body"]  # full mode stores the body as sent
    assert row["request_bytes"] == len(get_state_body(row))
    assert row["body_truncated"] is False


def get_state_body(row: dict) -> bytes:
    return row["request_body"].encode()


@pytest.mark.parametrize("mode", ["redacted", "metrics_only"])
async def test_private_modes_store_no_secret(pipe, mode: str) -> None:
    p, demo = pipe
    row = await _row(p, demo, mode)
    as_table(row)
    flat = json.dumps(row, default=str)
    assert SECRET not in flat
    if mode == "metrics_only":
        assert row["request_body"] is None and row["response_text"] is None
    assert row["privacy_mode"] == mode
    assert row["cost_known"] is True and row["gen_ai_usage_reasoning_output_tokens"] == 10


async def test_stored_text_is_capped_and_flagged(pipe) -> None:
    p, demo = pipe
    row = await _row(p, demo, "full", max_stored_chars=50)
    assert len(row["request_body"]) == 50 and row["body_truncated"] is True
    assert row["request_bytes"] > 50  # the size stays exact


async def test_minimal_row_fits_the_schema(pipe) -> None:
    p, demo = pipe
    f = model_flow(demo.keys["alice"], {"model": "gpt-5"})
    await p.run(f)
    row = trace_row.minimal_row(get_state(f), datetime.now(UTC), "inst", "trace_row: KeyError", {"status_code": 200})
    table = as_table(row)
    assert table.column("outcome")[0].as_py() == "gateway_error"
    assert table.column("key_id")[0].as_py() == demo.key_ids["alice"]


def test_price_counts_cache_at_cache_rate_and_reasoning_as_output() -> None:
    usage = Usage(input_tokens=10_000, cache_read_tokens=8_000, cache_creation_tokens=0, output_tokens=2_000,
                  reasoning_tokens=1_500)
    cost = price("gpt-5", "openai", usage)
    expected = calc_price(PriceUsage(input_tokens=10_000, cache_read_tokens=8_000, output_tokens=2_000),
                          model_ref="gpt-5", provider_id="openai")
    assert cost.known and cost.total_usd == pytest.approx(float(expected.total_price))
    uncached = price("gpt-5", "openai", Usage(10_000, 0, 0, 2_000, 1_500))
    assert cost.total_usd < uncached.total_usd  # cache reads are cheaper, not double-counted
    more_reasoning = price("gpt-5", "openai", Usage(10_000, 8_000, 0, 4_000, 3_500))
    assert more_reasoning.output_usd == pytest.approx(2 * cost.output_usd)  # reasoning priced as output
    assert price("no-such-model-xyz", "openai", usage).known is False


def test_client_deadlines_by_phase() -> None:
    limits = ClientLimits()
    with taddons.context(limits) as tctx:
        tctx.configure(limits, codexgate_header_timeout="1", codexgate_body_timeout="2",
                       codexgate_keepalive_timeout="3")
        now = time.monotonic()
        conns = {
            "fresh": _Conn(object(), "waiting", now - 1.5),  # type: ignore[arg-type]
            "slow_body": _Conn(object(), "body", now - 2.5),  # type: ignore[arg-type]
            "idle": _Conn(object(), "waiting", now - 2.5, served=1),  # type: ignore[arg-type]
            "streaming": _Conn(object(), "busy", now - 3600),  # type: ignore[arg-type]
        }
        limits._conns = conns  # type: ignore[assignment]
        expired = {why for _, why in limits.expired(now)}
        assert expired == {"header_timeout", "body_timeout"}
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(limits, codexgate_body_timeout="0")


def test_stored_headers_json_sorted_and_any_value_encodes() -> None:
    """Headers are stored as one sorted JSON object; a value mitmproxy kept with a lone surrogate
    (undecodable bytes) still encodes (json fallback), and non-allowlisted values stay redacted."""
    from addons.stored_headers import headers_json

    text = headers_json([("User-Agent", "codex_exec/0.171"), ("X-Secret", "s3cret"), ("accept", "a\udcff")])
    doc = json.loads(text)
    assert list(doc) == sorted(doc) and doc["user-agent"] == "codex_exec/0.171"
    assert doc["x-secret"] == "[redacted]" and doc["accept"] == "a\udcff"
    repeated = json.loads(headers_json([("b", "1"), ("accept", "x"), ("Accept", "y")]))
    assert repeated == {"accept": "x, y", "b": "[redacted]"}
