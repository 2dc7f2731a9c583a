"""Traces written by the real gateway: complete, attributed, priced, crash-safe, secret-free."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import duckdb
import httpx
import pytest
from genai_prices import Usage, calc_price

from tests.conftest import read_traces
from tests.helpers.codex import run_codex
from tests.helpers.gateway import codex_available, make_vault, start_gateway


def post(gw, key: str, body: dict, headers: dict | None = None, stream: bool = False) -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/v1/responses",
        json={**body, "stream": stream},
        headers={**({"authorization": f"Bearer {key}"} if key else {}), **(headers or {})},
        timeout=30,
    )


@pytest.mark.skipif(
    not codex_available(), reason="Codex CLI not installed (npm install @openai/codex failed)"
)
def test_codex_session_with_two_tool_calls_is_traced_and_priced(gateway, vault, sim, tmp_path) -> None:
    sim.clear()
    run = run_codex(
        tmp_path, f"{gateway.base_url}/v1", vault.keys["alice"], "RUN: echo first-tool\nRUN: echo second-tool"
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.items("command_execution")) == 2
    thread_id = next(e["thread_id"] for e in run.events if e.get("type") == "thread.started")
    sim_calls = [r for r in sim.requests() if r["path"].endswith("/responses")]
    assert len(sim_calls) == 3  # tool call, tool call, answer
    rows = read_traces(gateway.traces, "session_id = ?", [thread_id], wait_for=3)
    assert len(rows) == 3
    assert [r["call_index"] for r in rows] == [0, 1, 2]
    assert {r["developer"] for r in rows} == {"alice"} and {r["team"] for r in rows} == {"platform"}
    assert all(r["outcome"] == "ok" and r["streaming"] for r in rows)
    assert rows[0]["tool_calls"][0]["name"] and rows[1]["tool_calls"]
    # each later call's new input starts where the previous call's input ended
    assert rows[1]["new_input_start"] == rows[0]["input_item_count"]
    new_types = [i.get("type") for i in json.loads(rows[1]["new_input_items"])]
    assert "function_call_output" in new_types
    for row, sim_call in zip(rows, sim_calls, strict=True):
        usage = sim_call["usage"]
        assert row["gen_ai_usage_input_tokens"] == usage["input_tokens"]
        assert row["gen_ai_usage_cache_read_input_tokens"] == usage["input_tokens_details"]["cached_tokens"]
        assert row["gen_ai_usage_output_tokens"] == usage["output_tokens"]
        assert (
            row["gen_ai_usage_reasoning_output_tokens"] == usage["output_tokens_details"]["reasoning_tokens"]
        )
        expected = calc_price(
            Usage(
                input_tokens=usage["input_tokens"],
                cache_read_tokens=usage["input_tokens_details"]["cached_tokens"],
                output_tokens=usage["output_tokens"],
            ),
            model_ref=row["gen_ai_request_model"],
            provider_id="openai",
        )
        assert row["cost_known"] and row["cost_usd"] == pytest.approx(float(expected.total_price))
        assert row["price_source"] == "genai-prices" and row["price_version"]
    # cached tokens are priced at the cache rate, not double-counted: cost < pricing all input at full rate
    assert any(r["gen_ai_usage_cache_read_input_tokens"] for r in rows)


def test_refusals_are_traced_one_row_each(gateway, vault) -> None:
    tag = f"refusal-{time.time_ns()}"
    hdr = {"x-codexgate-metadata": json.dumps({"probe": tag})}
    assert post(gateway, "", {"model": "gpt-5-codex", "input": "x"}, hdr).status_code == 401
    assert (
        post(
            gateway, "cgk_000000000000_nope-nope-nope-nope-nope", {"model": "gpt-5-codex", "input": "x"}, hdr
        ).status_code
        == 401
    )
    assert post(gateway, vault.keys["bob"], {"model": "o4-mini", "input": "x"}, hdr).status_code == 403
    assert post(gateway, vault.keys["carol"], {"model": "gpt-5-codex", "input": "x"}, hdr).status_code == 403
    rows = read_traces(
        gateway.traces, "list_contains(list_transform(tags, lambda t: t.value), ?)", [tag], wait_for=4
    )
    reasons = sorted(r["refusal_reason"] for r in rows)
    assert reasons == ["invalid_api_key", "missing_api_key", "model_not_allowed", "provider_not_allowed"]
    for r in rows:
        assert r["outcome"] == "refused" and r["attempt_count"] == 0 and r["status_code"] in (401, 403)
    bob = next(r for r in rows if r["refusal_reason"] == "model_not_allowed")
    assert bob["developer"] == "bob" and {"key": "cost_center", "value": "cc-42"} in bob["tags"]


def test_unknown_model_has_unknown_cost_not_zero(gateway, vault) -> None:
    r = post(gateway, vault.keys["alice"], {"model": "sim-unpriced-model-x", "input": "x"})
    assert r.status_code == 200
    rows = read_traces(gateway.traces, "gen_ai_response_id = ?", [r.json()["id"]], wait_for=1)
    assert rows[0]["cost_known"] is False and rows[0]["cost_usd"] is None
    assert rows[0]["gen_ai_usage_input_tokens"] > 0


def test_client_abort_and_upstream_reset_are_recorded(gateway, vault) -> None:
    key = vault.keys["alice"]
    # client leaves after the first bytes of a slow stream
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/responses",
        json={"model": "gpt-5-codex", "input": "abort me", "stream": True},
        headers={
            "authorization": f"Bearer {key}",
            "x-sim-fault": "chunk_delay_ms=400",
            "x-client-request-id": "abort-1",
        },
        timeout=30,
    ) as resp:
        next(resp.iter_raw())
    # upstream resets the connection mid-stream
    with httpx.stream(
        "POST",
        f"{gateway.base_url}/v1/responses",
        json={"model": "gpt-5-codex", "input": "reset me", "stream": True},
        headers={
            "authorization": f"Bearer {key}",
            # events spaced out, so the reset comes after the relay committed the stream (in one
            # coalesced chunk the reset is a failure before commit, which is retried instead)
            "x-sim-fault": "chunk_delay_ms=30;reset_after_events=3",
            "x-client-request-id": "reset-1",
        },
        timeout=30,
    ) as resp:
        # after the stream was committed, a broken upstream ends it with response.failed (Codex
        # resends on that; a bare close would only be retried after its idle timeout)
        text = b"".join(resp.iter_raw()).decode()
    events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    assert events and events[-1]["type"] == "response.failed", (resp.status_code, resp.headers, text[:500])
    # a non-streamed call whose client gives up while the provider is still answering
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.base_url}/v1/responses",
            json={"model": "gpt-5-codex", "input": "abort me too"},
            headers={"authorization": f"Bearer {key}", "x-sim-fault": "delay_ms=1500", "x-client-request-id": "abort-2"},
            timeout=0.5,
        )
    gone = read_traces(gateway.traces, "client_request_id = 'abort-2'", wait_for=1)
    assert gone[0]["client_aborted"] is True and gone[0]["outcome"] == "client_aborted"
    assert gone[0]["usage_complete"] is True  # the answer was read to the end and priced
    aborted = read_traces(gateway.traces, "client_request_id = 'abort-1'", wait_for=1)
    assert aborted[0]["client_aborted"] is True and aborted[0]["outcome"] == "client_aborted"
    reset = read_traces(gateway.traces, "client_request_id = 'reset-1'", wait_for=1)
    assert reset[0]["outcome"] == "upstream_error"
    assert reset[0]["attempts"][-1]["decision"] == "cut" and reset[0]["attempts"][-1]["error"]


def test_privacy_modes_metrics_only_and_redacted(tmp_path, sim) -> None:
    vault = make_vault(tmp_path, sim.url, sim.openai_key, sim.anthropic_key)
    v = vault.load()
    v.keys[vault.key_ids["alice"]].privacy_mode = "metrics_only"
    v.teams["acme/mobile"].privacy_mode = "redacted"  # bob's team: applies to bob's existing key
    vault.save(v)
    gw = start_gateway(tmp_path, vault)
    # realistic values: the engine treats example.com addresses and low-entropy keys as fixtures
    secret_text = "mail jane.doe@acme-corp.com the key sk-proj-Xq3vR8tLm2Nw9KpB4sYz7HcD1fGj6Ua0T5eW"
    try:
        r1 = post(gw, vault.keys["alice"], {"model": "gpt-5-codex", "input": "very private words"})
        r2 = post(gw, vault.keys["bob"], {"model": "gpt-5-codex", "input": secret_text}, stream=True)
        rid2 = next(
            json.loads(line[5:])["response"]["id"]
            for line in r2.text.splitlines()
            if line.startswith("data:") and "response.completed" in line
        )
        metrics = read_traces(gw.traces, "gen_ai_response_id = ?", [r1.json()["id"]], wait_for=1)[0]
        redacted = read_traces(gw.traces, "gen_ai_response_id = ?", [rid2], wait_for=1)[0]
    finally:
        gw.stop()
    assert metrics["privacy_mode"] == "metrics_only"
    assert (
        metrics["request_body"] is None
        and metrics["response_body"] is None
        and metrics["response_text"] is None
    )
    assert metrics["gen_ai_usage_input_tokens"] > 0 and metrics["cost_known"]
    assert redacted["privacy_mode"] == "redacted"
    for column in ("request_body", "response_body", "response_text", "new_input_items"):
        assert "jane.doe@acme-corp.com" not in redacted[column]
        assert "sk-proj-Xq3vR8tLm2Nw9KpB4sYz7HcD1fGj6Ua0T5eW" not in redacted[column]
    # the guardrails' engine: typed, numbered placeholders
    assert "<EMAIL_ADDRESS_1>" in redacted["request_body"] and "<OPENAI_API_KEY_1>" in redacted["request_body"]


def _all_values(traces) -> list[str]:
    """Every decoded value of every column of every Parquet file, as text."""
    con = duckdb.connect()
    rel = con.sql(
        f"select * from read_parquet('{traces}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
    )
    return [json.dumps(list(row), default=str) for row in rel.fetchall()]


def test_secrets_never_reach_parquet_or_spool(tmp_path, sim) -> None:
    vault = make_vault(tmp_path, sim.url, sim.openai_key, sim.anthropic_key)
    gw = start_gateway(tmp_path, vault, opts={"codexgate_flush_seconds": "30"})
    try:
        for name in ("alice", "bob", "carol"):
            post(gw, vault.keys[name], {"model": "gpt-5-codex", "input": "hello"})
            post(gw, vault.keys[name], {"model": "gpt-5-codex", "input": "hello"}, stream=True)
        httpx.post(
            f"{gw.base_url}/v1/messages",
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers={"x-api-key": vault.keys["carol"], "anthropic-version": "2023-06-01"},
            timeout=30,
        )
        time.sleep(0.5)
        spool_bytes = b"".join(p.read_bytes() for p in gw.traces.glob("_spool/**/*") if p.is_file())
        assert spool_bytes, "expected rows still in the spool (flush interval 30 s)"
    finally:
        gw.stop()  # flushes the spool to Parquet
    secrets_ = [*vault.keys.values(), sim.openai_key, sim.anthropic_key]
    for s in secrets_:
        assert s.encode() not in spool_bytes
    values = _all_values(gw.traces)
    assert len(values) >= 7
    blob = "\n".join(values)
    for s in secrets_:
        assert s not in blob


def test_sigkill_during_concurrent_streams_loses_no_completed_trace(tmp_path, sim) -> None:
    vault = make_vault(tmp_path, sim.url, sim.openai_key, sim.anthropic_key)
    traces = tmp_path / "traces"
    gw = start_gateway(tmp_path, vault, traces=traces, opts={"codexgate_flush_seconds": "60"})
    key = vault.keys["alice"]
    completed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def one(i: int, slow: bool) -> None:
        try:
            with httpx.stream(
                "POST",
                f"{gw.base_url}/v1/responses",
                json={"model": "gpt-5-codex", "input": f"kill test {i}", "stream": True},
                headers={
                    "authorization": f"Bearer {key}",
                    "x-sim-fault": "chunk_delay_ms=400" if slow else "delay_ms=0",
                },
                timeout=30,
            ) as resp:
                buf = b""
                for chunk in resp.iter_raw():
                    buf += chunk
            for line in buf.decode().splitlines():
                if line.startswith("data:") and '"response.completed"' in line:
                    with lock:
                        completed.append(json.loads(line[5:])["response"]["id"])
        except httpx.HTTPError:
            pass  # in flight when the gateway died

    def fast_loop(i: int) -> None:
        n = 0
        while not stop.is_set():
            one(i * 1000 + n, slow=False)
            n += 1

    with ThreadPoolExecutor(max_workers=24) as pool:
        for i in range(20):
            pool.submit(one, i, True)
        for i in range(3):
            pool.submit(fast_loop, i)
        # kill once some streams have completed while the 20 slow ones (~5 s each) are mid-stream
        deadline = time.monotonic() + 20
        while len(completed) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        stop.set()
    assert len(completed) >= 5
    # restart: the spool left by the crash is recovered into Parquet
    gw2 = start_gateway(tmp_path, vault, traces=traces, name="gw2")
    gw2.stop()
    con = duckdb.connect()
    ids = [
        r[0]
        for r in con.sql(
            f"select gen_ai_response_id from read_parquet('{traces}/**/*.parquet', hive_partitioning = true)"
        ).fetchall()
    ]
    for rid in completed:
        assert ids.count(rid) == 1, f"{rid} appears {ids.count(rid)} times"
    answered = [i for i in ids if i is not None]  # refusals (the readiness probe) have no response id
    assert len(answered) == len(set(answered))  # no duplicates at all


def test_hive_partitions_and_duckdb_read(gateway, vault) -> None:
    post(gateway, vault.keys["alice"], {"model": "gpt-5-codex", "input": "partition"})
    read_traces(gateway.traces, wait_for=1)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    parts = {p.name for p in gateway.traces.iterdir() if p.name.startswith("date=")}
    assert f"date={today}" in parts or f"date={yesterday}" in parts
    con = duckdb.connect()
    n, dates = con.sql(
        f"select count(*), count(distinct date) from read_parquet('{gateway.traces}/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0]
    assert n >= 1 and dates >= 1
