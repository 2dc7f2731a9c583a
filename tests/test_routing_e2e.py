"""Retries, fallback and translation end to end: the real gateway (mitmdump), the simulated
provider with its fault injection, the openai SDK (streaming and not) and the real Codex CLI.

Routes in the vault (all in one gateway):
  ab-*      -> a, b                                   (same API)
  dead-*    -> dead (refuses connections), b
  ac-*      -> a, anthropic:claude-sonnet-4-5        (translated to Anthropic Messages)
  deadc-*   -> dead, anthropic:claude-sonnet-4-5
  gpt-5-codex -> a, anthropic:claude-sonnet-4-5      (the Codex CLI's model)
Faults are queued on the simulator for the next N calls to ``/responses`` only, so the
fallback to the Anthropic target (``/v1/messages``) never meets them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from codexgate.cli import launch
from codexgate.core.vault import ProviderCredential, RouteTarget
from tests.conftest import read_traces
from tests.helpers.codex import run_codex
from tests.helpers.gateway import Gateway, codex_available, make_vault
from tests.helpers.redis import REDIS_SERVER, redis_server
from tests.helpers.redis import SKIP_REASON as REDIS_SKIP
from tests.helpers.sim import SimProvider

CLAUDE = "claude-sonnet-4-5"
GATEWAY_OPTS = {
    "codexgate_retry_attempts": "2",
    "codexgate_backoff_seconds": "0.05",
    "codexgate_first_byte_timeout": "1.5",
    "codexgate_breaker_failures": "0",
    "codexgate_breaker_ratio": "0",
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections are refused


def start_gateway(tmp: Path, vault, opts: dict[str, str], name: str = "gw") -> Gateway:
    """Like ``tests.helpers.gateway.start_gateway`` with a longer start-up allowance (the
    gateway's guard engine takes ~25 s to import on this shared 2-core machine)."""
    port = launch.free_port()
    confdir = tmp / f"{name}-conf"
    confdir.mkdir(exist_ok=True)
    options = {
        "connection_strategy": "lazy",
        "confdir": str(confdir),
        "codexgate_vault": str(vault.path),
        "codexgate_vault_key_file": str(vault.key_file),
        "codexgate_traces": str(tmp / f"{name}-traces"),
        "codexgate_flush_seconds": "0.5",
        **opts,
    }
    log_path = tmp / f"{name}.log"
    cmd = launch.gateway_command(options, port=port)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=launch.clean_env(), cwd=launch.ROOT
        )
    try:
        launch.wait_port(port, 120, proc)
        launch.wait_gateway_ready(port, proc, 60)
    except Exception:
        proc.kill()
        proc.wait(10)
        raise RuntimeError(
            f"gateway failed to start:\n{log_path.read_text(errors='replace')[-3000:]}"
        ) from None
    return Gateway(proc, port, 0, tmp / f"{name}-traces", confdir, log_path)


def routing_vault(tmp: Path, sim: SimProvider):
    demo = make_vault(tmp, sim.url, sim.openai_key, sim.anthropic_key)
    v = demo.load()
    for name in ("a", "b"):
        v.providers[name] = ProviderCredential(name, "openai", f"{sim.url}/v1", sim.openai_key, hosts=[])
    v.providers["dead"] = ProviderCredential(
        "dead", "openai", f"http://127.0.0.1:{_closed_port()}/v1", "sk-dead-unused", hosts=[]
    )
    claude = RouteTarget("anthropic", CLAUDE)
    v.add_route("ab-*", targets=[RouteTarget("a"), RouteTarget("b")], api="responses")
    v.add_route("dead-*", targets=[RouteTarget("dead"), RouteTarget("b")], api="responses")
    v.add_route("ac-*", targets=[RouteTarget("a"), claude], api="responses")
    v.add_route("deadc-*", targets=[RouteTarget("dead"), claude], api="responses")
    v.add_route("gpt-5-codex", targets=[RouteTarget("a"), claude], api="responses")
    v.add_route(
        "chat-*",
        targets=[RouteTarget("a"), RouteTarget("b", upstream_api="chat_completions")],
        api="responses",
    )
    demo.save(v)
    return demo


@pytest.fixture(scope="module")
def rvault(module_tmp: Path, sim: SimProvider):
    return routing_vault(module_tmp, sim)


@pytest.fixture(scope="module")
def rgw(module_tmp: Path, rvault) -> Iterator[Gateway]:
    gw = start_gateway(module_tmp, rvault, GATEWAY_OPTS)
    try:
        yield gw
    finally:
        gw.stop()


def _client(gw: Gateway, key: str, raw: bool = False) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=30)


# (fault queued for A, times) -> A fails on both of its attempts
FAULTS = {
    "500": ("status=500", 2),
    "429-retry-after": ("status=429;retry_after=1", 2),
    "stall": ("delay_ms=4000", 2),  # nothing (no headers, no event) within the first-byte timeout
}


def _served(gw: Gateway, response_id: str) -> dict:
    rows = read_traces(gw.traces, "gen_ai_response_id = ?", [response_id], wait_for=1)
    assert rows, "no trace row for the call"
    return rows[0]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize("target", ["b", "anthropic"])
@pytest.mark.parametrize("fault", [*FAULTS, "refused"])
def test_failing_target_a_is_served_by_the_next_target(rgw, rvault, fresh, fault, target, stream) -> None:
    prefix = {
        ("b", False): "ab",
        ("b", True): "dead",
        ("anthropic", False): "ac",
        ("anthropic", True): "deadc",
    }[(target, fault == "refused")]
    if fault != "refused":
        spec, times = FAULTS[fault]
        fresh.queue_fault(spec, times=times, match_path="/responses")
    client = _client(rgw, rvault.keys["alice"])
    model = f"{prefix}-model"
    t0 = time.monotonic()
    if stream:
        with client.responses.with_streaming_response.create(
            model=model, input="hello fallback", stream=True
        ) as raw:
            headers = raw.headers
            events = [json.loads(line[5:]) for line in raw.iter_lines() if line.startswith("data:")]
        assert events[-1]["type"] == "response.completed"
        text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        response_id = events[-1]["response"]["id"]
    else:
        raw = client.responses.with_raw_response.create(model=model, input="hello fallback")
        headers = raw.headers
        resp = raw.parse()
        text, response_id = resp.output_text, resp.id
    elapsed = time.monotonic() - t0
    assert text == "sim: hello fallback"
    assert headers["x-codexgate-served-by"] == (f"anthropic:{CLAUDE}" if target == "anthropic" else "b")
    row = _served(rgw, response_id)
    attempts = row["attempts"]
    assert [a["provider"] for a in attempts] == ["dead" if fault == "refused" else "a"] * 2 + [target]
    assert [a["decision"] for a in attempts] == ["retry", "fallback", "served"]
    assert headers["x-codexgate-attempts"] == "3"
    assert row["provider"] == target and row["fallback_used"] is True and row["outcome"] == "ok"
    if fault == "429-retry-after":
        assert attempts[0]["wait_ms"] == pytest.approx(1000.0)
        assert elapsed >= 1.0
    if target == "anthropic":
        assert attempts[-1]["upstream_api"] == "anthropic_messages" and attempts[-1]["model"] == CLAUDE
        assert row["gen_ai_response_model"] == CLAUDE and row["cost_known"]
        assert row["gen_ai_request_model"] == model  # the client's request is what the trace keeps
        sent = [r for r in fresh.requests() if r["path"].endswith("/messages")]
        assert len(sent) == 1 and sent[0]["auth_ok"] is True
    else:
        assert all(r["auth_ok"] for r in fresh.requests() if r["path"].endswith("/responses"))


def test_stream_with_headers_but_no_first_event_fails_over(rgw, rvault, fresh) -> None:
    fresh.queue_fault("stall_after_events=0;stall_ms=4000", times=2, match_path="/responses")
    client = _client(rgw, rvault.keys["alice"])
    with client.responses.with_streaming_response.create(
        model="ac-model", input="no event", stream=True
    ) as raw:
        assert raw.headers["x-codexgate-served-by"] == f"anthropic:{CLAUDE}"
        events = [json.loads(line[5:]) for line in raw.iter_lines() if line.startswith("data:")]
    assert events[-1]["type"] == "response.completed"
    row = _served(rgw, events[-1]["response"]["id"])
    assert [a["error"][:8] for a in row["attempts"][:2]] == ["timeout:"] * 2


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_a_chat_only_target_serves_a_responses_call_through_translation(rgw, rvault, fresh, stream) -> None:
    fresh.queue_fault("status=503", times=2, match_path="/responses")
    client = _client(rgw, rvault.keys["alice"])
    tools = [{"type": "function", "name": "exec_command", "parameters": {"type": "object",
              "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}]  # fmt: skip
    if stream:
        with client.responses.with_streaming_response.create(
            model="chat-model", input="RUN: echo via-chat", tools=tools, stream=True
        ) as raw:
            served = raw.headers["x-codexgate-served-by"]
            events = [json.loads(line[5:]) for line in raw.iter_lines() if line.startswith("data:")]
        final = events[-1]["response"]
        assert events[-1]["type"] == "response.completed"
    else:
        raw = client.responses.with_raw_response.create(
            model="chat-model", input="RUN: echo via-chat", tools=tools
        )
        served, final = raw.headers["x-codexgate-served-by"], json.loads(raw.text)
    assert served == "b#chat"
    calls = [o for o in final["output"] if o["type"] == "function_call"]
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        ("exec_command", {"cmd": "echo via-chat"})
    ]
    sent = [r for r in fresh.requests() if r["path"].endswith("/chat/completions")]
    assert (
        len(sent) == 1
        and sent[0]["auth_ok"]
        and sent[0]["body"]["messages"][-1]["content"] == "RUN: echo via-chat"
    )
    row = _served(rgw, final["id"])
    assert row["attempts"][-1]["upstream_api"] == "chat_completions" and row["outcome"] == "ok"
    assert row["gen_ai_usage_input_tokens"] == final["usage"]["input_tokens"] > 0


def test_client_error_is_not_retried(rgw, rvault, fresh) -> None:
    fresh.queue_fault("status=400", times=1, match_path="/responses")
    client = _client(rgw, rvault.keys["alice"])
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="ab-model", input="bad request")
    assert err.value.response.headers["x-codexgate-attempts"] == "1"
    assert len([r for r in fresh.requests() if r["path"].endswith("/responses")]) == 1
    rows = read_traces(rgw.traces, "gen_ai_request_model = 'ab-model' and status_code = 400", wait_for=1)
    assert [a["decision"] for a in rows[-1]["attempts"]] == ["served"]


def test_reset_after_first_content_event_ends_with_response_failed(rgw, rvault, fresh) -> None:
    fresh.queue_fault("reset_after_events=5;chunk_delay_ms=100", times=1, match_path="/responses")
    client = _client(rgw, rvault.keys["alice"])
    with client.responses.with_streaming_response.create(
        model="ab-model", input="cut me", stream=True
    ) as raw:
        events = [json.loads(line[5:]) for line in raw.iter_lines() if line.startswith("data:")]
    kinds = [e["type"] for e in events]
    assert "response.output_item.added" in kinds  # the stream was committed before the cut
    log = [
        {k: r.get(k) for k in ("path", "fault", "stream_outcome", "events_sent")} for r in fresh.requests()
    ]
    assert kinds[-1] == "response.failed", log
    error = events[-1]["response"]["error"]
    assert error["code"] == "server_error" and "resend" in error["message"]
    rid = events[0]["response"]["id"]
    row = _served(rgw, rid)
    assert row["outcome"] == "upstream_error"
    assert row["attempts"][-1]["decision"] == "cut"
    assert row["attempts"][-1]["error"].startswith("stream cut after commit")


def test_anthropic_client_gets_an_error_event_when_its_stream_is_cut(rgw, rvault, fresh) -> None:
    fresh.queue_fault("reset_after_events=4;chunk_delay_ms=100", times=1, match_path="/messages")
    with httpx.stream(
        "POST",
        f"{rgw.base_url}/v1/messages",
        json={
            "model": "claude-sonnet-4-5",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": "cut"}],
        },  # fmt: skip
        headers={"x-api-key": rvault.keys["alice"], "anthropic-version": "2023-06-01"},
        timeout=30,
    ) as r:
        events = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "error"
    assert "resend" in events[-1]["error"]["message"]


# ------------------------------------------------------------------ the real Codex CLI


def _run_codex(
    tmp: Path, base_url: str, key: str, prompt: str, model: str = "gpt-5-codex"
) -> tuple[int, list]:
    """Codex with its own retries on (the gateway's cut and fallback are what it retries)."""
    run = run_codex(tmp, base_url, key, prompt, model=model, timeout=240, retries=2)
    return run.returncode, run.events


needs_codex = pytest.mark.skipif(
    not codex_available(), reason="the Codex CLI is not installed (.tools/codex)"
)


@needs_codex
def test_codex_turn_with_a_tool_call_is_served_by_anthropic_when_a_fails(
    rgw, rvault, fresh, tmp_path
) -> None:
    # A answers 500 to every attempt of both calls of the turn: the call with the tool call and
    # the call carrying its output are both served by the Anthropic target, translated.
    fresh.queue_fault("status=500", times=4, match_path="/responses")
    code, events = _run_codex(tmp_path, f"{rgw.base_url}/v1", rvault.keys["alice"], "RUN: echo routed-ok")
    assert code == 0, events[-3:]
    commands = [
        e["item"]
        for e in events
        if e.get("type") == "item.completed" and e["item"].get("type") == "command_execution"
    ]
    assert commands and "routed-ok" in commands[0].get("aggregated_output", "")
    messages = [
        e["item"]["text"]
        for e in events
        if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"
    ]
    assert messages and "routed-ok" in messages[-1]
    sent = [r for r in fresh.requests() if r["path"].endswith("/messages")]
    assert len(sent) == 2
    rows = read_traces(
        rgw.traces, "gen_ai_request_model = 'gpt-5-codex' and provider = 'anthropic'", wait_for=2
    )
    assert len(rows) >= 2
    assert all(r["outcome"] == "ok" and r["gen_ai_response_model"] == CLAUDE for r in rows[-2:])
    assert any(c["name"] == "exec_command" for c in rows[-2]["tool_calls"] or [])


@needs_codex
def test_codex_resends_after_a_cut_stream_and_is_served(rgw, rvault, fresh, tmp_path) -> None:
    fresh.queue_fault("reset_after_events=5;chunk_delay_ms=100", times=1, match_path="/responses")
    code, events = _run_codex(tmp_path, f"{rgw.base_url}/v1", rvault.keys["alice"], "say hi after a cut")
    assert code == 0, events[-3:]
    assert any(e.get("type") == "turn.completed" for e in events)
    rows = read_traces(
        rgw.traces,
        "gen_ai_request_model = 'gpt-5-codex' and request_body like '%say hi after a cut%'",
        wait_for=2,
    )
    outcomes = [r["outcome"] for r in rows]
    assert outcomes[0] == "upstream_error" and rows[0]["attempts"][-1]["decision"] == "cut"
    assert outcomes[-1] == "ok"


def test_total_time_budget_is_honoured(module_tmp, rvault, sim) -> None:
    gw = start_gateway(
        module_tmp,
        rvault,
        {
            **GATEWAY_OPTS,
            "codexgate_retry_attempts": "10",
            "codexgate_retry_budget_seconds": "2",
            "codexgate_first_byte_timeout": "0.7",
        },
        name="budget",
    )
    try:
        sim.clear_faults()
        sim.queue_fault("delay_ms=3000", times=30, match_path="/responses")
        client = _client(gw, rvault.keys["alice"])
        t0 = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            client.responses.create(model="ab-model", input="budget", stream=True)
        elapsed = time.monotonic() - t0
        assert err.value.status_code == 502
        assert 2.0 <= elapsed < 3.5  # the budget, plus at most one backoff step and the reply
        rows = read_traces(gw.traces, "gen_ai_request_model = 'ab-model'", wait_for=1)
        tried = rows[-1]["attempts"]
        assert 2 <= len(tried) < 10 and tried[-1]["decision"] == "gave_up"
    finally:
        sim.clear_faults()
        gw.stop()


def test_headers_name_the_target_on_the_happy_path(rgw, rvault, fresh) -> None:
    r = httpx.post(
        f"{rgw.base_url}/v1/responses",
        json={"model": "ab-model", "input": "plain"},
        headers={"authorization": f"Bearer {rvault.keys['alice']}"},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.headers["x-codexgate-served-by"] == "a" and r.headers["x-codexgate-attempts"] == "1"


@pytest.mark.skipif(REDIS_SERVER is None, reason=REDIS_SKIP)
def test_breaker_skips_an_open_target_and_two_gateways_share_it_through_redis(
    module_tmp, rvault, sim
) -> None:
    with redis_server(module_tmp / "redis") as url:
        opts = {
            **GATEWAY_OPTS,
            "codexgate_retry_attempts": "1",
            "codexgate_breaker_failures": "2",
            "codexgate_breaker_cooldown_seconds": "3",
            "codexgate_breaker_redis": url,
        }
        one = start_gateway(module_tmp, rvault, opts, name="breaker1")
        two = start_gateway(module_tmp, rvault, opts, name="breaker2")
        try:
            sim.clear_faults()

            def call(gw: Gateway) -> list[str]:
                raw = _client(gw, rvault.keys["alice"]).responses.with_raw_response.create(
                    model="dead-breaker", input="breaker"
                )
                assert raw.headers["x-codexgate-served-by"] == "b"
                row = _served(gw, raw.parse().id)
                return [f"{a['provider']}:{a['decision']}" for a in row["attempts"]]

            assert call(one) == ["dead:fallback", "b:served"]
            assert call(two) == ["dead:fallback", "b:served"]  # second consecutive failure, other instance
            assert call(one) == ["dead:skipped", "b:served"]  # open: nothing sent to dead
            assert call(two) == ["dead:skipped", "b:served"]  # shared through Redis
            time.sleep(3.2)  # cooldown: one probe goes to dead (and fails: it is still dead)
            assert call(one) == ["dead:fallback", "b:served"]
            assert call(two) == ["dead:skipped", "b:served"]
        finally:
            one.stop()
            two.stop()
