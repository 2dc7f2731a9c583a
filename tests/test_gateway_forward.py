"""Forward-proxy mode: HTTPS_PROXY + the gateway's CA, gateway key as proxy credentials."""

from __future__ import annotations

import ssl
import time

import httpx
import openai
import pytest

from tests.conftest import read_traces
from tests.helpers.codex import run_codex
from tests.helpers.gateway import codex_available, make_vault, start_gateway


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
        proxy=f"http://127.0.0.1:{gateway.proxy_port}",
        verify=ssl.create_default_context(cafile=str(gateway.ca_cert)),
        timeout=20,
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


def test_gateway_does_not_serve_mitmproxys_onboarding_app(gateway) -> None:
    """Started as the launcher starts it, the gateway leaves mitmproxy's onboarding app (the CA
    page at mitm.it) off: the proxy port serves no web app of its own; the CA file is in confdir."""
    try:
        r = httpx.get("http://mitm.it/", proxy=f"http://127.0.0.1:{gateway.proxy_port}", timeout=10)
    except httpx.HTTPError:
        return  # passed through to a host that does not resolve here: not served by the gateway
    assert r.status_code >= 500 and "mitmproxy" not in r.text.lower()


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


def test_refuse_mode_blocks_non_provider_hosts(tmp_path, sim) -> None:
    vault = make_vault(tmp_path, sim.url, sim.openai_key, sim.anthropic_key)
    gw = start_gateway(tmp_path, vault, opts={"codexgate_unknown_hosts": "refuse"})
    try:
        proxy = f"http://127.0.0.1:{gw.proxy_port}"
        assert httpx.get(f"{sim.url}/health", proxy=proxy, timeout=10).status_code == 403
        with pytest.raises(httpx.ProxyError):  # CONNECT to a non-provider host is answered 403
            httpx.get("https://github.com/", proxy=proxy, timeout=10)
    finally:
        gw.stop()


@pytest.mark.skipif(
    not codex_available(), reason="Codex CLI not installed (npm install @openai/codex failed)"
)
def test_codex_builtin_provider_through_forward_proxy(gateway, vault, sim, tmp_path) -> None:
    """Codex's own openai provider, HTTPS_PROXY with the key as proxy credentials, and the CA via
    CODEX_CA_CERTIFICATE: its WebSocket probe gets 426, then HTTP goes through to the provider."""
    sim.clear()
    run = run_codex(
        tmp_path,
        None,
        "unused",
        "RUN: echo through-the-forward-proxy",
        extra_env={
            "HTTPS_PROXY": f"http://codexgate:{vault.keys['alice']}@127.0.0.1:{gateway.proxy_port}",
            "CODEX_CA_CERTIFICATE": str(gateway.ca_cert),
            "OPENAI_API_KEY": "sk-placeholder-replaced-by-the-gateway",
        },
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "through-the-forward-proxy" in run.items("agent_message")[-1]["text"]
    calls = [r for r in sim.requests() if r["path"].endswith("/responses")]
    assert len(calls) == 2 and all(r["auth_ok"] for r in calls)
    rows = read_traces(
        gateway.traces,
        "mode = 'forward' and developer = 'alice' and request_path = '/v1/responses'",
        wait_for=2,
    )
    assert len(rows) >= 2
