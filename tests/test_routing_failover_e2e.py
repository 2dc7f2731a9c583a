"""Nested strategies, per-target timeouts and the upstream body in the trace, end to end: the real
gateway (mitmdump), the simulated provider's fault injection, the openai SDK.

Routes (all ``api=responses``; the gateway-wide timeouts are long, so the per-target ones are
what fire):
  nested-*     -> fallback[ loadbalance[lb-a, lb-b], anthropic:claude-sonnet-4-5 ]   (streamed)
  nestedjson-* -> fallback[ loadbalance[lj-a, lj-b], anthropic:claude-sonnet-4-5 ]   (JSON)
  connect-*    -> ct (a port that never accepts; connect timeout 0.5 s), b
  firstbyte-*  -> fb (first-byte timeout 0.5 s), b
  idle-*       -> ix (idle timeout 0.5 s), b
  gpt-5-red*   -> anthropic:claude-sonnet-4-5, for a team in redacted mode
The breaker opens after one failure (long cooldown), so the client's resend after a cut stream
skips the target that was cut; every failing target is used by one test only.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from codexgate.core.vault import ProviderCredential, RouteGroup, RouteTarget
from tests.conftest import read_traces
from tests.helpers.gateway import Gateway, make_vault
from tests.helpers.sim import SimProvider
from tests.test_routing_e2e import start_gateway

CLAUDE = "claude-sonnet-4-5"
OPTS = {
    "codexgate_retry_attempts": "1",
    "codexgate_backoff_seconds": "0.05",
    "codexgate_first_byte_timeout": "30",
    "codexgate_connect_timeout": "30",
    "codexgate_idle_timeout": "300",
    "codexgate_breaker_failures": "1",
    "codexgate_breaker_ratio": "0",
    "codexgate_breaker_cooldown_seconds": "600",
}


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connection attempt hangs (no refusal)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # fills the queue
    try:
        yield port
    finally:
        filler.close()
        srv.close()


@pytest.fixture(scope="module")
def fvault(module_tmp: Path, sim: SimProvider, blackhole: int):
    demo = make_vault(module_tmp, sim.url, sim.openai_key, sim.anthropic_key)
    v = demo.load()
    for name in ("lb-a", "lb-b", "lj-a", "lj-b", "fb", "ix", "b"):
        v.providers[name] = ProviderCredential(name, "openai", f"{sim.url}/v1", sim.openai_key, hosts=[])
    v.providers["ct"] = ProviderCredential(
        "ct", "openai", f"http://127.0.0.1:{blackhole}/v1", sim.openai_key, hosts=[]
    )
    claude = RouteTarget("anthropic", CLAUDE)
    lb = [RouteGroup("loadbalance", [RouteTarget("lb-a"), RouteTarget("lb-b")]), claude]
    lj = [RouteGroup("loadbalance", [RouteTarget("lj-a"), RouteTarget("lj-b")]), claude]
    v.add_route("nested-*", targets=lb, api="responses")
    v.add_route("nestedjson-*", targets=lj, api="responses")
    v.add_route(
        "connect-*",
        targets=[RouteTarget("ct", connect_timeout_s=0.5, first_byte_timeout_s=20.0), RouteTarget("b")],
        api="responses",
    )
    v.add_route("firstbyte-*", targets=[RouteTarget("fb", first_byte_timeout_s=0.5), RouteTarget("b")], api="responses")
    v.add_route("idle-*", targets=[RouteTarget("ix", idle_timeout_s=0.5), RouteTarget("b")], api="responses")
    v.add_route("gpt-5-red*", targets=[claude], api="responses")
    v.teams["acme/mobile"].privacy_mode = "redacted"  # bob's team
    demo.save(v)
    return demo


@pytest.fixture(scope="module")
def fgw(module_tmp: Path, fvault) -> Iterator[Gateway]:
    gw = start_gateway(module_tmp, fvault, OPTS, name="failover")
    try:
        yield gw
    finally:
        gw.stop()


def _client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=60)


def _stream(client: openai.OpenAI, model: str, text: str) -> tuple[dict[str, str], list[dict]]:
    with client.responses.with_streaming_response.create(model=model, input=text, stream=True) as raw:
        headers = dict(raw.headers)
        events = [json.loads(line[5:]) for line in raw.iter_lines() if line.startswith("data:")]
    return headers, events


def _row(gw: Gateway, response_id: str) -> dict:
    rows = read_traces(gw.traces, "gen_ai_response_id = ?", [response_id], wait_for=1)
    assert rows, "no trace row for the call"
    return rows[0]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_both_members_of_a_loadbalance_group_fail_and_the_fallback_serves(fgw, fvault, fresh, stream) -> None:
    prefix, members = ("nested", {"lb-a", "lb-b"}) if stream else ("nestedjson", {"lj-a", "lj-b"})
    fresh.queue_fault("status=500", times=2, match_path="/responses")
    client = _client(fgw, fvault.keys["alice"])
    if stream:
        headers, events = _stream(client, f"{prefix}-model", "hello nested")
        assert events[-1]["type"] == "response.completed"
        response_id = events[-1]["response"]["id"]
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    else:
        raw = client.responses.with_raw_response.create(model=f"{prefix}-model", input="hello nested")
        headers, resp = dict(raw.headers), raw.parse()
        response_id, text = resp.id, resp.output_text
    assert text == "sim: hello nested"
    assert headers["x-codexgate-served-by"] == f"anthropic:{CLAUDE}" and headers["x-codexgate-attempts"] == "3"
    row = _row(fgw, response_id)
    tried = [(a["provider"], a["status_code"], a["decision"]) for a in row["attempts"]]
    assert {p for p, _, _ in tried[:2]} == members  # the group's two members, in the order its weights drew
    assert [(s, d) for _, s, d in tried] == [(500, "fallback"), (500, "fallback"), (200, "served")]
    assert row["provider"] == "anthropic" and row["outcome"] == "ok" and row["fallback_used"] is True
    # what went upstream: the Anthropic Messages body the last attempt sent, next to the client's
    sent = json.loads(row["upstream_request_body"])
    assert sent["model"] == CLAUDE and sent["messages"][-1]["role"] == "user" and "max_tokens" in sent
    assert "input" not in sent and json.loads(row["request_body"])["input"] == "hello nested"
    on_the_wire = [r for r in fresh.requests() if r["path"].endswith("/messages")]
    assert len(on_the_wire) == 1 and on_the_wire[0]["body"] == sent
    # priced at the model that served
    assert row["gen_ai_response_model"] == CLAUDE and row["cost_known"] and row["cost_usd"] > 0


def test_connect_timeout_of_a_target_fires_and_the_call_falls_back(fgw, fvault, fresh) -> None:
    raw = _client(fgw, fvault.keys["alice"]).responses.with_raw_response.create(
        model="connect-model", input="hello connect"
    )
    assert raw.headers["x-codexgate-served-by"] == "b"
    row = _row(fgw, raw.parse().id)
    first, served = row["attempts"]
    assert first["provider"] == "ct" and first["decision"] == "fallback" and first["status_code"] is None
    assert "timeout" in first["error"].lower() and "connect" in first["error"].lower(), first["error"]
    assert first["latency_ms"] < 20_000  # the connect timeout fired, not the target's first-byte one
    assert served["provider"] == "b" and served["decision"] == "served"


def test_first_byte_timeout_of_a_target_fires_and_the_call_falls_back(fgw, fvault, fresh) -> None:
    fresh.queue_fault("delay_ms=4000", times=1, match_path="/responses")
    headers, events = _stream(_client(fgw, fvault.keys["alice"]), "firstbyte-model", "hello first byte")
    assert headers["x-codexgate-served-by"] == "b" and events[-1]["type"] == "response.completed"
    row = _row(fgw, events[-1]["response"]["id"])
    first, served = row["attempts"]
    assert (first["provider"], first["decision"]) == ("fb", "fallback")
    assert first["error"].startswith("timeout: no response from fb within 0.5")  # its own, not the gateway's 30 s
    assert (served["provider"], served["decision"]) == ("b", "served")


def test_idle_timeout_of_a_target_cuts_the_stream_and_the_resend_falls_back(fgw, fvault, fresh) -> None:
    fresh.queue_fault("stall_after_events=4;stall_ms=4000", times=1, match_path="/responses")
    client = _client(fgw, fvault.keys["alice"])
    headers, events = _stream(client, "idle-model", "hello idle")
    assert headers["x-codexgate-served-by"] == "ix"
    assert events[-1]["type"] == "response.failed" and "idle" in events[-1]["response"]["error"]["message"]
    cut = _row(fgw, events[0]["response"]["id"])
    assert cut["attempts"][-1]["decision"] == "cut" and "idle for more than" in cut["attempts"][-1]["error"]
    # the client resends (Codex does on response.failed): ix's circuit opened on the cut, b serves
    headers, events = _stream(client, "idle-model", "hello idle")
    assert headers["x-codexgate-served-by"] == "b" and events[-1]["type"] == "response.completed"
    again = _row(fgw, events[-1]["response"]["id"])
    assert [(a["provider"], a["decision"]) for a in again["attempts"]] == [("ix", "skipped"), ("b", "served")]


def test_the_upstream_body_is_stored_redacted_in_redacted_mode(fgw, fvault, fresh) -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"  # an AWS access key id: the secret recognizers find it
    headers, events = _stream(_client(fgw, fvault.keys["bob"]), "gpt-5-red", f"deploy with {secret} today")
    assert headers["x-codexgate-served-by"] == f"anthropic:{CLAUDE}"
    row = _row(fgw, events[-1]["response"]["id"])
    assert row["privacy_mode"] == "redacted"
    sent = json.loads(row["upstream_request_body"])
    assert sent["model"] == CLAUDE and sent["messages"][0]["role"] == "user"  # the Anthropic body ...
    text = sent["messages"][0]["content"][0]["text"]
    assert text == "deploy with <AWS_ACCESS_KEY_1> today"  # ... redacted
    assert secret not in row["request_body"] and secret not in json.dumps(row, default=str)
    on_the_wire = [r for r in fresh.requests() if r["path"].endswith("/messages")]
    assert secret in json.dumps(on_the_wire[-1]["body"])  # the provider got the real text
