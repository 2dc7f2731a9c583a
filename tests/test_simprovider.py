"""The simulated provider on its own: a real subprocess, the official SDKs and the real Codex CLI
pointed straight at it (no gateway)."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import zstandard

from tests.helpers.sim import SimProvider

CODEX = Path(__file__).resolve().parents[1] / ".tools" / "codex" / "node_modules" / ".bin" / "codex"
EXEC_COMMAND_TOOL = {  # the shape Codex 0.171 offers (trimmed)
    "type": "function",
    "name": "exec_command",
    "description": "Runs a command in a PTY.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}},
        "required": ["cmd"],
        "additionalProperties": False,
    },
}
CHAT_TOOL = {
    "type": "function",
    "function": {
        "name": "run_shell",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
    },
}
ANTHROPIC_TOOL = {
    "name": "run_shell",
    "description": "Run a shell command",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}


def ntok(value: Any) -> int:
    """The documented formula: ceil(len(canonical JSON) / 4)."""
    return math.ceil(len(json.dumps(value, sort_keys=True, separators=(",", ":"))) / 4)


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


@pytest.fixture(autouse=True)
def _fresh(sim: SimProvider) -> Iterator[None]:
    sim.clear_faults()
    sim.clear()
    yield
    sim.clear_faults()


@pytest.fixture
def oai(sim: SimProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key=sim.openai_key, max_retries=0, timeout=20)


@pytest.fixture
def claude(sim: SimProvider) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key=sim.anthropic_key, max_retries=0, timeout=20)


def raw_post(sim: SimProvider, path: str, body: dict | bytes, **headers: str) -> httpx.Response:
    hdrs = {"authorization": f"Bearer {sim.openai_key}", "content-type": "application/json", **headers}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{sim.url}{path}", content=content, headers=hdrs, timeout=20, trust_env=False)


# ---------------------------------------------------------------------------- process


def test_cli_prints_one_ready_line_and_takes_keys_from_argv(tmp_path: Path) -> None:
    key = "argv-" + os.urandom(8).hex()
    proc = subprocess.Popen(
        [sys.executable, "-m", "codexgate.simprovider", "--port", "0", "--openai-key", key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SIM_")},
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("SIMPROVIDER READY http://127.0.0.1:")
        url = line.split()[-1]
        assert httpx.get(f"{url}/health", trust_env=False).json() == {"ok": True}
        ok = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {key}"}, trust_env=False)
        assert ok.status_code == 200 and any(m["id"] == "gpt-5-codex" for m in ok.json()["data"])
        # no Anthropic key configured: every Anthropic call is refused
        r = httpx.post(
            f"{url}/v1/messages",
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers={"x-api-key": "anything", "anthropic-version": "2023-06-01"},
            trust_env=False,
        )
        assert r.status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out == "" and key not in err  # exactly one line on stdout, the key is never printed


def test_helper_is_a_context_manager_and_stops_the_process() -> None:
    with SimProvider() as other:
        assert httpx.get(f"{other.url}/health", trust_env=False).status_code == 200
        assert len({other.openai_key, other.anthropic_key, other.azure_key}) == 3
    assert other.proc.poll() is not None


# ---------------------------------------------------------------------------- Responses


def test_responses_streaming_text_events_and_usage(sim: SimProvider, oai: openai.OpenAI) -> None:
    types: list[str] = []
    seqs: list[int] = []
    deltas: list[str] = []
    summary = ""
    with oai.responses.stream(
        model="gpt-5-codex",
        input="hello simulated world",
        reasoning={"summary": "auto"},
        prompt_cache_key="k1",
    ) as stream:
        for event in stream:
            types.append(event.type)
            seqs.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.reasoning_summary_text.delta":
                summary += event.delta
        final = stream.get_final_response()
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types[-1] == "response.completed"
    for needed in (
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.reasoning_summary_text.delta",
    ):
        assert needed in types
    assert seqs == list(range(len(seqs)))
    assert len(deltas) >= 3 and "".join(deltas) == final.output_text == "sim: hello simulated world"
    assert summary and final.model == "gpt-5-codex" and final.id.startswith("resp_")
    assert [o.type for o in final.output] == ["reasoning", "message"]
    usage = final.usage
    assert usage.input_tokens == ntok("hello simulated world")
    assert usage.output_tokens_details.reasoning_tokens == 16
    assert usage.output_tokens == text_tokens(final.output_text) + 16
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0  # first call with this cache key
    logged = sim.requests()[-1]
    assert logged["usage"] == usage.model_dump(exclude_none=True) and logged["stream_outcome"] == "completed"


def test_responses_sse_framing_is_exact(sim: SimProvider) -> None:
    body = {"model": "gpt-4.1", "input": "frames", "stream": True}
    with httpx.stream(
        "POST",
        f"{sim.url}/responses",  # Codex posts to base_url + /responses: the bare path works too
        json=body,
        headers={"authorization": f"Bearer {sim.openai_key}"},
        trust_env=False,
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    frames = [f for f in raw.split("\n\n") if f]
    assert raw.endswith("\n\n") and len(frames) >= 9
    for n, frame in enumerate(frames):
        event_line, data_line = frame.split("\n")
        doc = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {doc['type']}" and doc["sequence_number"] == n
    completed = json.loads(frames[-1].split("\n")[1][6:])["response"]
    assert completed["usage"]["output_tokens_details"]["reasoning_tokens"] == 0  # gpt-4.1, no reasoning
    assert completed["model"] == "gpt-4.1" and "reasoning" not in [o["type"] for o in completed["output"]]


def test_responses_prompt_cache_key_reports_previous_input_as_cached(oai: openai.OpenAI) -> None:
    key = "cache-" + os.urandom(4).hex()
    first = oai.responses.create(model="gpt-5-codex", input="a short first prompt", prompt_cache_key=key)
    longer = [
        {"role": "user", "content": "a short first prompt"},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "and a follow-up"},
    ]
    second = oai.responses.create(model="gpt-5-codex", input=longer, prompt_cache_key=key)
    assert second.usage.input_tokens == ntok(longer)
    assert second.usage.input_tokens_details.cached_tokens == first.usage.input_tokens
    other_key = oai.responses.create(
        model="gpt-5-codex", input="a short first prompt", prompt_cache_key="x" + key
    )
    assert other_key.usage.input_tokens_details.cached_tokens == 0


def test_responses_run_directives_become_tool_calls_then_an_answer(oai: openai.OpenAI) -> None:
    history: list[Any] = [{"role": "user", "content": "RUN: echo one\nplease\nRUN: echo two"}]
    first = oai.responses.create(model="gpt-5-codex", input=history, tools=[EXEC_COMMAND_TOOL])
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "exec_command"
    assert json.loads(call.arguments) == {"cmd": "echo one"}
    assert first.usage.output_tokens == text_tokens(call.arguments) + 16
    history += [
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "one\n"},
    ]
    # streaming this time: the arguments arrive as deltas
    deltas: list[str] = []
    with oai.responses.stream(model="gpt-5-codex", input=history, tools=[EXEC_COMMAND_TOOL]) as stream:
        for event in stream:
            if event.type == "response.function_call_arguments.delta":
                deltas.append(event.delta)
        second = stream.get_final_response()
    call2 = second.output[-1]
    assert json.loads(call2.arguments) == {"cmd": "echo two"} and "".join(deltas) == call2.arguments
    history += [
        {"type": "function_call", "call_id": call2.call_id, "name": call2.name, "arguments": call2.arguments},
        {"type": "function_call_output", "call_id": call2.call_id, "output": "Chunk ID: 1\nOutput:\ntwo\n"},
    ]
    final = oai.responses.create(model="gpt-5-codex", input=history, tools=[EXEC_COMMAND_TOOL])
    assert final.output_text == "sim: ran 2 command(s); last output: two"
    # the same request always gets the same answer
    again = oai.responses.create(model="gpt-5-codex", input=history, tools=[EXEC_COMMAND_TOOL])
    assert again.output_text == final.output_text


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        (
            {
                "type": "function",
                "name": "shell",
                "parameters": {"type": "object", "properties": {"command": {"type": "array"}}},
            },
            ("function_call", {"command": ["bash", "-lc", "ls -a"]}),
        ),
        (
            {
                "type": "function",
                "name": "do_it",
                "parameters": {"properties": {"script": {"type": "string"}}},
            },
            ("function_call", {"script": "ls -a"}),
        ),
        ({"type": "custom", "name": "shell_freeform", "description": "raw"}, ("custom_tool_call", "ls -a")),
    ],
)
def test_tool_arguments_follow_the_offered_schema(sim: SimProvider, tool: dict, expected: tuple) -> None:
    r = raw_post(sim, "/v1/responses", {"model": "gpt-5", "input": "RUN: ls -a", "tools": [tool]})
    item = r.json()["output"][-1]
    kind, args = expected
    assert item["type"] == kind and item["name"] == tool["name"]
    assert (json.loads(item["arguments"]) if kind == "function_call" else item["input"]) == args


def test_responses_non_streaming_is_gzip_compressed_when_accepted(
    sim: SimProvider, oai: openai.OpenAI
) -> None:
    r = httpx.post(
        f"{sim.url}/v1/responses",
        json={"model": "o4-mini", "input": "zip me"},
        headers={"authorization": f"Bearer {sim.openai_key}", "accept-encoding": "gzip"},
        trust_env=False,
    )
    assert (
        r.headers["content-encoding"] == "gzip"
        and r.json()["output"][0]["content"][0]["text"] == "sim: zip me"
    )
    assert r.json()["usage"]["output_tokens_details"]["reasoning_tokens"] == 16  # "o" model
    plain = httpx.post(
        f"{sim.url}/v1/responses",
        json={"model": "gpt-4.1", "input": "zip me"},
        headers={"authorization": f"Bearer {sim.openai_key}", "accept-encoding": "identity"},
        trust_env=False,
    )
    assert "content-encoding" not in plain.headers
    resp = oai.responses.create(model="gpt-4.1", input="via the sdk")
    assert resp.output_text == "sim: via the sdk" and resp.usage.input_tokens == ntok("via the sdk")


def test_compressed_request_bodies(sim: SimProvider) -> None:
    body = json.dumps({"model": "gpt-4.1", "input": "packed"}).encode()
    for encoding, packed in (
        ("gzip", gzip.compress(body)),
        ("zstd", zstandard.ZstdCompressor().compress(body)),
    ):
        r = raw_post(sim, "/v1/responses", packed, **{"content-encoding": encoding})
        assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == "sim: packed"
    assert raw_post(sim, "/v1/responses", body, **{"content-encoding": "br-x"}).status_code == 415
    bad = raw_post(sim, "/v1/responses", b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    missing = raw_post(sim, "/v1/responses", {"input": "no model"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "model"
    assert [r["body"] for r in sim.requests()[:2]] == [json.loads(body)] * 2


def test_websocket_probe_gets_405_and_unknown_paths_404(sim: SimProvider) -> None:
    r = httpx.get(
        f"{sim.url}/v1/responses",
        headers={
            "authorization": f"Bearer {sim.openai_key}",
            "connection": "Upgrade",
            "upgrade": "websocket",
        },
        trust_env=False,
    )
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert httpx.get(f"{sim.url}/v1/nothing-here", trust_env=False).status_code == 404


# ---------------------------------------------------------------------------- Chat Completions


def test_chat_streaming_tool_call_with_include_usage(sim: SimProvider, oai: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "RUN: echo chat-tool"}]
    chunks = list(
        oai.chat.completions.create(
            model="o4-mini",
            messages=messages,
            tools=[CHAT_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "run_shell" and calls[0].id
    arguments = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(arguments) == {"command": "echo chat-tool"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.prompt_tokens == ntok(messages)
    assert usage.completion_tokens_details.reasoning_tokens == 16
    assert usage.completion_tokens == text_tokens(arguments) + 16
    assert usage.prompt_tokens_details.cached_tokens == 0
    # the tool result goes back; the answer quotes it
    follow = [
        *messages,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[0].id,
                    "type": "function",
                    "function": {"name": "run_shell", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0].id, "content": "chat-tool"},
    ]
    done = oai.chat.completions.create(model="gpt-4.1-mini", messages=follow, tools=[CHAT_TOOL])
    assert done.choices[0].message.content == "sim: ran 1 command(s); last output: chat-tool"
    assert (
        done.choices[0].finish_reason == "stop" and done.usage.completion_tokens_details.reasoning_tokens == 0
    )


def test_chat_raw_stream_ends_with_done(sim: SimProvider) -> None:
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi chat"}], "stream": True}
    raw = raw_post(sim, "/chat/completions", body).text
    frames = [f for f in raw.split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames) and frames[-1] == "data: [DONE]"
    text = "".join(json.loads(f[6:])["choices"][0]["delta"].get("content") or "" for f in frames[:-1])
    assert text == "sim: hi chat"
    assert all("usage" not in json.loads(f[6:]) for f in frames[:-1])  # not asked for


# ---------------------------------------------------------------------------- Anthropic


def test_anthropic_streaming_text_and_usage(sim: SimProvider, claude: anthropic.Anthropic) -> None:
    events: list[str] = []
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi claude"}]
    ) as stream:
        for event in stream:
            events.append(event.type)
        final = stream.get_final_message()
    assert final.content[0].text == "sim: hi claude" and final.model == "claude-sonnet-4-5"
    assert final.usage.input_tokens == ntok([None, [{"role": "user", "content": "hi claude"}]])
    assert final.usage.output_tokens == text_tokens("sim: hi claude")
    assert final.usage.cache_read_input_tokens == 0 and final.stop_reason == "end_turn"
    raw = sim.requests()[-1]
    assert raw["headers"]["anthropic-version"] and raw["auth_ok"] is True
    r = httpx.post(
        f"{sim.url}/v1/messages",
        json={**raw["body"], "stream": True},
        headers={"x-api-key": sim.anthropic_key, "anthropic-version": "2023-06-01"},
        trust_env=False,
    )
    names = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    assert {"content_block_start", "content_block_delta", "content_block_stop"} <= set(names)


def test_anthropic_tool_use_non_streaming_and_streaming(claude: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "RUN: echo from-claude"}]
    first = claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=200, messages=messages, tools=[ANTHROPIC_TOOL]
    )
    block = first.content[0]
    assert first.stop_reason == "tool_use" and block.type == "tool_use" and block.name == "run_shell"
    assert block.input == {"command": "echo from-claude"}
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=200, messages=messages, tools=[ANTHROPIC_TOOL]
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].input == block.input  # input_json_delta reassembled by the SDK
    messages += [
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "from-claude"}],
        },
    ]
    final = claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=200, messages=messages, tools=[ANTHROPIC_TOOL]
    )
    assert final.content[0].text == "sim: ran 1 command(s); last output: from-claude"


def test_anthropic_cache_control_reads_and_writes(sim: SimProvider, claude: anthropic.Anthropic) -> None:
    sim.clear_cache()
    system = [
        {
            "type": "text",
            "text": "You are a long system prompt. " * 20,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    msgs = [{"role": "user", "content": "first"}]
    first = claude.messages.create(model="claude-sonnet-4-5", max_tokens=50, system=system, messages=msgs)
    total = ntok([system, msgs])
    prefix = ntok(system)  # blocks up to the (only) breakpoint
    assert first.usage.cache_creation_input_tokens == prefix and first.usage.cache_read_input_tokens == 0
    assert first.usage.input_tokens == total - prefix  # excludes cache writes, as the real API
    second = claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=50,
        system=system,
        messages=[{"role": "user", "content": "second"}],
    )
    assert second.usage.cache_read_input_tokens == prefix and second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == ntok([system, [{"role": "user", "content": "second"}]]) - prefix


def test_anthropic_requires_version_header_and_model(sim: SimProvider) -> None:
    headers = {"x-api-key": sim.anthropic_key}
    body = {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(f"{sim.url}/v1/messages", json=body, headers=headers, trust_env=False)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(
        f"{sim.url}/v1/messages",
        json={k: v for k, v in body.items() if k != "max_tokens"},
        headers={**headers, "anthropic-version": "2023-06-01"},
        trust_env=False,
    )
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------- Azure


def test_azure_deployment_chat_and_v1_responses(sim: SimProvider) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=sim.url, api_key=sim.azure_key, api_version="2024-10-21", max_retries=0
    )
    done = client.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": "azure hi"}]
    )
    assert done.choices[0].message.content == "sim: azure hi" and done.model == "my-deployment"
    logged = sim.requests()[-1]
    assert logged["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert logged["query"]["api-version"] == "2024-10-21" and logged["credential"] == sim.digest(
        sim.azure_key
    )
    v1 = openai.OpenAI(
        base_url=f"{sim.url}/openai/v1",
        api_key="unused",
        default_headers={"api-key": sim.azure_key},
        max_retries=0,
    )
    assert v1.responses.create(model="gpt-5-codex", input="azure v1").output_text == "sim: azure v1"
    wrong = openai.AzureOpenAI(
        azure_endpoint=sim.url, api_key="wrong", api_version="2024-10-21", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as err:
        wrong.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.json()["error"]["code"] == "401"
    no_version = raw_post(
        sim, "/openai/deployments/d/chat/completions", {"messages": []}, **{"api-key": sim.azure_key}
    )
    assert no_version.status_code == 400


# ---------------------------------------------------------------------------- authentication and the log


def test_wrong_keys_get_each_providers_401(sim: SimProvider) -> None:
    bad_openai = openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-wrong-key-123", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad_openai.responses.create(model="gpt-5-codex", input="x")
    assert err.value.status_code == 401
    assert err.value.response.json() == {
        "error": {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "param": None,
        }
    }
    bad_claude = anthropic.Anthropic(base_url=sim.url, api_key="sk-ant-wrong-456", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as aerr:
        bad_claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    body = aerr.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    # an Anthropic key on the OpenAI API is wrong too; the credential never comes back
    r = raw_post(
        sim,
        "/v1/chat/completions",
        {"model": "m", "messages": []},
        authorization=f"Bearer {sim.anthropic_key}",
    )
    assert r.status_code == 401 and sim.anthropic_key not in r.text
    assert httpx.post(f"{sim.url}/v1/responses", json={"model": "m"}, trust_env=False).status_code == 401
    assert [e["auth_ok"] for e in sim.requests()] == [False] * 4


def test_request_log_keeps_only_credential_digests(
    sim: SimProvider, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    oai.responses.create(model="gpt-5-codex", input="log me")
    claude.messages.create(
        model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "log me"}]
    )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{sim.url}/v1", api_key="sk-gateway-key-should-not-pass", max_retries=0
        ).models.list()
    log = sim.requests()
    dumped = json.dumps(log)
    for secret in (sim.openai_key, sim.anthropic_key, "sk-gateway-key-should-not-pass"):
        assert secret not in dumped
    resp, msg, bad = log
    assert resp["headers"]["authorization"] == sim.digest(f"Bearer {sim.openai_key}")
    assert resp["credential"] == sim.digest(sim.openai_key) and resp["auth_ok"] is True
    assert msg["headers"]["x-api-key"] == sim.digest(sim.anthropic_key) == msg["credential"]
    assert bad["credential"] == sim.digest("sk-gateway-key-should-not-pass") and bad["auth_ok"] is False
    assert resp["body"]["input"] == "log me" and resp["usage"]["input_tokens"] == ntok("log me")
    assert msg["usage"]["output_tokens"] == text_tokens("sim: log me") and resp["status"] == 200


def test_a_path_no_api_answers_still_logs_the_credential_it_came_with(sim: SimProvider) -> None:
    """The log says which credential reached the provider even on a path it does not serve: a
    gateway test can then tell a forwarded call with the injected key from one without any."""
    sim.clear()
    for headers in ({"authorization": f"Bearer {sim.openai_key}"}, {}):
        r = httpx.post(f"{sim.url}/v1/completions", json={"model": "gpt-5", "prompt": "x"}, headers=headers,
                       trust_env=False)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url"
    with_key, without = sim.requests()
    assert with_key["credential"] == sim.digest(sim.openai_key) and with_key["status"] == 404
    assert without["credential"] is None
    assert sim.openai_key not in json.dumps(with_key)
    sim.clear()
    assert sim.requests() == []


# ---------------------------------------------------------------------------- faults


def test_queued_429_with_retry_after(sim: SimProvider, oai: openai.OpenAI) -> None:
    sim.queue_fault("status=429;retry_after=2", times=1, match_path="/responses")
    oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "not matched"}])
    with pytest.raises(openai.RateLimitError) as err:
        oai.responses.create(model="gpt-5-codex", input="x")
    assert err.value.response.headers["retry-after"] == "2"
    assert err.value.response.json()["error"]["code"] == "rate_limit_exceeded"
    assert oai.responses.create(model="gpt-5-codex", input="x").output_text == "sim: x"  # used up
    log = sim.requests()
    assert [e["fault"] for e in log] == [None, "status=429;retry_after=2", None]
    assert [e["status"] for e in log] == [200, 429, 200]


def test_fault_statuses_in_each_providers_format(sim: SimProvider, claude: anthropic.Anthropic) -> None:
    sim.queue_fault("status=503", times=2)
    with pytest.raises(anthropic.APIStatusError) as aerr:
        claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert aerr.value.status_code == 503 and aerr.value.response.json()["error"]["type"] == "overloaded_error"
    r = raw_post(sim, "/v1/responses", {"model": "m", "input": "x"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"
    r = raw_post(sim, "/v1/responses", {"model": "m", "input": "x"}, **{"x-sim-fault": "status=500"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "server_error"
    r = raw_post(sim, "/v1/responses", {"model": "m", "input": "x"}, **{"x-sim-fault": "status=400"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(ValueError):
        sim.queue_fault("explode=1")
    assert raw_post(sim, "/v1/responses", {"model": "m"}, **{"x-sim-fault": "nonsense"}).status_code == 400


def test_reset_mid_stream_raises_in_the_client(sim: SimProvider, oai: openai.OpenAI) -> None:
    sim.queue_fault("reset_after_events=3")
    seen: list[str] = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        with oai.responses.stream(model="gpt-5-codex", input="reset me") as stream:
            for event in stream:
                seen.append(event.type)
    assert seen == ["response.created", "response.in_progress", "response.output_item.added"]
    entry = sim.requests()[-1]
    assert entry["events_sent"] == 3 and entry["stream_outcome"] == "reset"
    sim.queue_fault("reset_after_events=0")
    with pytest.raises(openai.APIConnectionError):
        oai.responses.create(model="gpt-5-codex", input="reset before anything")


def test_chunk_delay_spreads_events_in_time(oai: openai.OpenAI, sim: SimProvider) -> None:
    sim.queue_fault("chunk_delay_ms=80")
    arrivals: list[float] = []
    start = time.monotonic()
    with oai.responses.stream(model="gpt-4.1", input="slow") as stream:
        for _ in stream:
            arrivals.append(time.monotonic() - start)
    assert len(arrivals) >= 9
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    # events arrive one by one, not as a burst at the end (tolerant of a busy machine)
    assert sum(g > 0.04 for g in gaps) >= 0.7 * len(gaps)
    assert arrivals[-1] - arrivals[0] > 0.08 * (len(arrivals) - 1) * 0.8


def test_stall_and_delay(oai: openai.OpenAI, sim: SimProvider) -> None:
    sim.queue_fault("delay_ms=400")
    start = time.monotonic()
    oai.responses.create(model="gpt-4.1", input="late")
    assert time.monotonic() - start >= 0.4
    sim.queue_fault("stall_after_events=2;stall_ms=700")
    arrivals: list[float] = []
    start = time.monotonic()
    with oai.responses.stream(model="gpt-4.1", input="stall") as stream:
        for _ in stream:
            arrivals.append(time.monotonic() - start)
    assert arrivals[2] - arrivals[1] >= 0.65  # the pause falls exactly before the third event
    assert arrivals[-1] - arrivals[2] < 0.65


def test_error_event_ends_with_response_failed(sim: SimProvider, oai: openai.OpenAI) -> None:
    sim.queue_fault("error_event=server_error", match_path="/responses")
    events = list(oai.responses.create(model="gpt-5-codex", input="fail me", stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.error.code == "server_error"
    assert "response.completed" not in [e.type for e in events]
    sim.queue_fault("error_event=overloaded_error", match_path="/messages")
    r = httpx.post(
        f"{sim.url}/v1/messages",
        json={"model": "c", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]},
        headers={"x-api-key": sim.anthropic_key, "anthropic-version": "2023-06-01"},
        trust_env=False,
    )
    last = [line for line in r.text.splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[6:]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "simulated failure"},
    }


# ---------------------------------------------------------------------------- the real Codex CLI


@pytest.mark.skipif(
    not CODEX.exists() or shutil.which("node") is None,
    reason=f"Codex CLI not installed at {CODEX} (npm install --prefix .tools/codex @openai/codex)",
)
def test_real_codex_runs_the_simulated_tool_call(sim: SimProvider, tmp_path: Path) -> None:
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        'model = "gpt-5-codex"\n'
        'model_provider = "sim"\n'
        "[model_providers.sim]\n"
        'name = "sim"\n'
        f'base_url = "{sim.url}/v1"\n'
        'env_key = "SIM_KEY"\n'
        'wire_api = "responses"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env.update({"CODEX_HOME": str(home), "HOME": str(tmp_path), "SIM_KEY": sim.openai_key, "NO_COLOR": "1"})
    proc = subprocess.run(
        [
            str(CODEX),
            "exec",
            "--skip-git-repo-check",
            "-s",
            "workspace-write",
            "--json",
            "-c",
            "analytics.enabled=false",
            "-c",
            "features.plugins=false",
            "RUN: echo codexgate-sim-ok",
        ],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    items = [e["item"] for e in events if e.get("type") == "item.completed"]
    commands = [i for i in items if i["type"] == "command_execution"]
    assert commands and commands[0]["status"] == "completed" and commands[0]["exit_code"] == 0
    assert "codexgate-sim-ok" in commands[0]["aggregated_output"]
    answers = [i for i in items if i["type"] == "agent_message"]
    assert answers and answers[-1]["text"] == "sim: ran 1 command(s); last output: codexgate-sim-ok"
    calls = sim.requests()
    assert [c["path"] for c in calls] == ["/v1/responses", "/v1/responses"]
    assert all(c["auth_ok"] and c["credential"] == sim.digest(sim.openai_key) for c in calls)
    tools = {t.get("name") for t in calls[0]["body"]["tools"]}
    assert "exec_command" in tools  # what Codex 0.171 offers for shell commands
    last_two = calls[1]["body"]["input"][-2:]
    assert [i["type"] for i in last_two] == ["function_call", "function_call_output"]
    assert json.loads(last_two[0]["arguments"]) == {"cmd": "echo codexgate-sim-ok"}
    # prompt_cache_key = thread id: the second call finds the first one's input cached
    assert calls[1]["usage"]["input_tokens_details"]["cached_tokens"] == calls[0]["usage"]["input_tokens"]
    turn = next(e for e in events if e.get("type") == "turn.completed")
    assert turn["usage"]["cached_input_tokens"] == calls[0]["usage"]["input_tokens"]
    assert turn["usage"]["input_tokens"] == sum(c["usage"]["input_tokens"] for c in calls)
