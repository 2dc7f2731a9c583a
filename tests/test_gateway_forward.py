"""Forward-proxy mode: HTTPS_PROXY + the gateway's CA, gateway key as proxy credentials."""

from __future__ import annotations

import ssl
import time

import httpx
import openai
import pytest

from tests.conftest import read_traces


def test_openai_sdk_through_forward_proxy(gateway, vault, sim) -> None:
    proxy = f"http://codexgate:{vault.keys['alice']}@127.0.0.1:{gateway.proxy_port}"
    http_client = httpx.Client(
        proxy=proxy, verify=ssl.create_default_context(cafile=str(gateway.ca_cert)), timeout=20
    )
    # The SDK talks to the real provider host; the gateway intercepts it and routes to the vault's provider.
    client = openai.OpenAI(
        api_key="unused-the-gateway-injects-the-real-one", http_client=http_client, max_retries=0
    )
    sim.clear()
    resp = client.responses.create(model="gpt-5-codex", input="via forward proxy")
    assert resp.output_text
    reqs = sim.requests()
    assert len(reqs) == 1 and reqs[0]["auth_ok"] is True
    rows = read_traces(gateway.traces, "gen_ai_response_id = ?", [resp.id], wait_for=1)
    assert rows[0]["mode"] == "forward" and rows[0]["developer"] == "alice"


def test_forward_proxy_without_credentials_is_401(gateway) -> None:
    http_client = httpx.Client(
        proxy=f"http://127.0.0.1:{gateway.proxy_port}", verify=str(gateway.ca_cert), timeout=20
    )
    client = openai.OpenAI(api_key="sk-not-a-gateway-key", http_client=http_client, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        client.responses.create(model="gpt-5-codex", input="x")
    assert err.value.response.json()["error"]["code"] == "missing_api_key"


def test_non_provider_host_passes_through_untraced(gateway, sim) -> None:
    r = httpx.get(f"{sim.url}/health", proxy=f"http://127.0.0.1:{gateway.proxy_port}", timeout=10)
    assert r.status_code == 200
    time.sleep(1.5)  # longer than the spool flush interval
    rows = read_traces(gateway.traces, "request_path = '/health'", timeout=0)
    assert rows == []


def test_wrong_ca_is_diagnosed_in_the_gateway_log(gateway, vault) -> None:
    """Codex never gives up on a TLS failure; the gateway log must say what is wrong."""
    proxy = f"http://codexgate:{vault.keys['alice']}@127.0.0.1:{gateway.proxy_port}"
    with pytest.raises(httpx.ConnectError):  # the system CAs do not include the gateway's CA
        httpx.post(
            "https://api.openai.com/v1/responses", json={"model": "gpt-5-codex", "input": "x"}, proxy=proxy
        )
    deadline = time.monotonic() + 5
    while "does not trust the gateway's CA" not in gateway.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in gateway.log_text().splitlines() if "does not trust the gateway's CA" in x)
    assert "api.openai.com" in line and "CODEX_CA_CERTIFICATE" in line
