"""The official openai and anthropic SDKs through the real gateway (mitmdump) to the simulated
provider: streaming stays streaming, credentials are swapped, errors come in the provider's format."""

from __future__ import annotations

import gzip
import json
import time

import anthropic
import httpx
import openai
import pytest

from tests.conftest import read_traces


def oa(gateway, key: str, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0, **kw)


def test_responses_streaming_through_gateway(gateway, vault, sim) -> None:
    client = oa(gateway, vault.keys["alice"])
    sim.clear()
    text = ""
    types = []
    with client.responses.stream(model="gpt-5-codex", input="hello gateway") as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert text and final.output_text == text
    assert final.usage.input_tokens > 0
    # the provider saw the provider credential, never the gateway key
    reqs = sim.requests()
    assert len(reqs) == 1 and reqs[0]["auth_ok"] is True
    assert vault.keys["alice"] not in json.dumps(reqs)


def test_responses_non_streaming_and_bare_path(gateway, vault) -> None:
    # Codex posts to {base_url}/responses: the gateway accepts /responses as well as /v1/responses
    client = openai.OpenAI(base_url=gateway.base_url, api_key=vault.keys["alice"], max_retries=0)
    resp = client.responses.create(model="gpt-5-codex", input="no stream please")
    assert resp.output_text and resp.usage.output_tokens > 0


def test_chat_completions_streaming_with_usage(gateway, vault) -> None:
    client = oa(gateway, vault.keys["alice"])
    chunks = list(
        client.chat.completions.create(
            model="gpt-4.1-mini",
            messages=[{"role": "user", "content": "stream chat"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


def test_anthropic_messages_streaming(gateway, vault, sim) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=vault.keys["carol"], max_retries=0)
    sim.clear()
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi claude"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens > 0
    reqs = sim.requests()
    assert reqs and all(r["auth_ok"] for r in reqs)
    assert vault.keys["carol"] not in json.dumps(reqs)


def test_unknown_key_gets_openai_format_401(gateway) -> None:
    client = oa(gateway, "cgk_000000000000_not-a-real-key-at-all-xxxxxxxx")
    with pytest.raises(openai.AuthenticationError) as err:
        client.responses.create(model="gpt-5-codex", input="x")
    body = err.value.response.json()
    assert err.value.status_code == 401
    assert body["error"]["code"] == "invalid_api_key" and body["error"]["message"]


def test_missing_key_anthropic_format_401(gateway) -> None:
    r = httpx.post(
        f"{gateway.base_url}/v1/messages",
        json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"


def test_model_out_of_scope_is_403(gateway, vault) -> None:
    client = oa(gateway, vault.keys["bob"])  # bob: gpt-4.1*, gpt-5*
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.responses.create(model="o4-mini", input="x")
    assert err.value.response.json()["error"]["code"] == "model_not_allowed"


def test_provider_out_of_scope_is_403(gateway, vault) -> None:
    client = oa(gateway, vault.keys["carol"])  # carol: anthropic only
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.responses.create(model="gpt-5-codex", input="x")
    assert err.value.response.json()["error"]["code"] == "provider_not_allowed"


def test_websocket_probe_answered_426(gateway, vault) -> None:
    r = httpx.get(
        f"{gateway.base_url}/v1/responses",
        headers={
            "authorization": f"Bearer {vault.keys['alice']}",
            "connection": "Upgrade",
            "upgrade": "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert r.status_code == 426


def test_gzip_request_body_is_understood(gateway, vault, sim) -> None:
    body = gzip.compress(
        json.dumps({"model": "gpt-5-codex", "input": "compressed hello", "stream": False}).encode()
    )
    sim.clear()
    r = httpx.post(
        f"{gateway.base_url}/v1/responses",
        content=body,
        headers={
            "authorization": f"Bearer {vault.keys['alice']}",
            "content-type": "application/json",
            "content-encoding": "gzip",
        },
    )
    assert r.status_code == 200, r.text
    rows = read_traces(gateway.traces, "gen_ai_response_id = ?", [r.json()["id"]], wait_for=1)
    assert rows and rows[0]["gen_ai_request_model"] == "gpt-5-codex"


def test_streaming_stays_streaming(gateway, vault, sim) -> None:
    """Events spaced 300 ms apart upstream must reach the client spaced out, not all at the end."""
    sim.queue_fault("chunk_delay_ms=300", times=1)
    client = oa(gateway, vault.keys["alice"])
    arrivals = []
    t0 = time.monotonic()
    with client.responses.stream(model="gpt-5-codex", input="slow stream") as stream:
        for _ in stream:
            arrivals.append(time.monotonic() - t0)
    assert len(arrivals) >= 4
    # the first event arrived long before the last one: nothing was buffered until the end
    assert arrivals[-1] - arrivals[0] > 0.6


def test_retry_after_passes_through_in_openai_format(gateway, vault, sim) -> None:
    sim.queue_fault("status=429;retry_after=7", times=1)
    client = oa(gateway, vault.keys["alice"])
    with pytest.raises(openai.RateLimitError) as err:
        client.responses.create(model="gpt-5-codex", input="x")
    assert err.value.response.headers["retry-after"] == "7"
    rows = read_traces(gateway.traces, "status_code = 429", wait_for=1)
    assert rows and rows[-1]["outcome"] == "upstream_error" and rows[-1]["attempts"][0]["status_code"] == 429


def test_chat_non_streaming_gzip_response_is_traced(gateway, vault) -> None:
    # httpx asks for gzip; the simulated provider compresses non-streaming JSON when asked
    client = oa(gateway, vault.keys["alice"])
    resp = client.chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "zip it"}]
    )
    assert resp.choices[0].message.content
    rows = read_traces(gateway.traces, "gen_ai_response_id = ?", [resp.id], wait_for=1)
    assert rows[0]["openai_api_type"] == "chat_completions"
    assert rows[0]["gen_ai_usage_input_tokens"] == resp.usage.prompt_tokens
    assert rows[0]["response_text"] == resp.choices[0].message.content


def test_zstd_request_body_is_understood(gateway, vault) -> None:
    import zstandard

    body = zstandard.ZstdCompressor().compress(
        json.dumps({"model": "gpt-5-codex", "input": "zstd hello"}).encode()
    )
    r = httpx.post(
        f"{gateway.base_url}/v1/responses",
        content=body,
        headers={
            "authorization": f"Bearer {vault.keys['alice']}",
            "content-type": "application/json",
            "content-encoding": "zstd",
        },
    )
    assert r.status_code == 200, r.text
    rows = read_traces(gateway.traces, "gen_ai_response_id = ?", [r.json()["id"]], wait_for=1)
    assert "zstd hello" in rows[0]["request_body"]
