"""In-process tests (mitmproxy's taddons/tflow) of the fail-closed layers: the hook guard, the
upstream step's clearance check, and the top-level backstop — with a real vault."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from addons.failsafe import CLEARED_KEY, Backstop, failsafe
from addons.flowstate import STATE_KEY, FlowState, get_state
from codexgate.cli.demo_setup import DemoVault
from tests.gateway.flows import PROVIDER_KEY, Pipeline, demo_vault, error_of, model_flow


@pytest.fixture()
def demo(tmp_path: Path) -> DemoVault:
    return demo_vault(tmp_path)


async def test_allowed_call_is_cleared_and_credentialed(demo: DemoVault) -> None:
    p = Pipeline(demo)
    with taddons.context(*p.chain) as tctx:
        tctx.options.update(codexgate_unknown_hosts="passthrough")
        f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi"})
        await p.run(f)
    assert f.response is None
    assert f.metadata[CLEARED_KEY] is True
    assert f.request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert f.request.url.startswith("http://127.0.0.1:1/v1/responses")
    assert demo.keys["alice"] not in str(f.request.headers)


class Exploding:
    """A policy addon with a bug: raises on every request."""

    @failsafe
    async def request(self, flow: http.HTTPFlow) -> None:
        raise RuntimeError(f"boom {flow.request.headers.get('x-secret-value')}")


class Unguarded:
    """A policy addon that forgets to decide (and is not guarded)."""

    def request(self, flow: http.HTTPFlow) -> None:
        return None


async def test_exception_in_a_policy_refuses_in_provider_format(demo: DemoVault, caplog) -> None:
    p = Pipeline(demo)
    with taddons.context(*p.chain), caplog.at_level(logging.ERROR):
        f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi"})
        f.request.headers["x-secret-value"] = "sk-proj-must-not-appear"
        await p.run(f, extra=[Exploding()])
    err = error_of(f)
    assert f.response.status_code == 500 and err["code"] == "gateway_error"
    assert CLEARED_KEY not in f.metadata
    assert "authorization" not in f.request.headers  # the gateway key was taken off first
    assert get_state(f).verdict.gateway_error == "Exploding.request: RuntimeError"
    assert "sk-proj-must-not-appear" not in caplog.text and "boom" not in caplog.text
    assert "Exploding.request" in caplog.text


async def test_missing_decision_is_refused_by_the_upstream_step(demo: DemoVault) -> None:
    p = Pipeline(demo, required=("identity", "scope", "limits"))
    with taddons.context(*p.chain):
        f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi"})
        await p.run(f, extra=[Unguarded()])
    assert f.response.status_code == 500 and error_of(f)["code"] == "gateway_error"
    assert PROVIDER_KEY not in str(f.request.headers)
    assert get_state(f).verdict.refusal.policy == "upstream"


async def test_exception_in_intake_still_refuses(demo: DemoVault) -> None:
    p = Pipeline(demo)
    with taddons.context(*p.chain):
        f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi"})
        p.intake.sessions = None  # type: ignore[assignment]  # make intake's request hook fail
        await p.run(f)
    assert f.response.status_code == 500 and error_of(f)["code"] == "gateway_error"
    assert get_state(f).verdict.gateway_error.startswith("Intake.request")
    assert PROVIDER_KEY not in str(f.request.headers)


def test_backstop_refuses_uncleared_gateway_flows(demo: DemoVault) -> None:
    backstop = Backstop(lambda host: host == "api.openai.com")
    with taddons.context(backstop):
        reverse = model_flow(None, {"model": "m"})
        backstop.request(reverse)  # no state at all (the script chain never ran)
        assert reverse.response.status_code == 500
        assert get_state(reverse).verdict.gateway_error is not None

        cleared = model_flow(None, {"model": "m"})
        cleared.metadata[CLEARED_KEY] = True
        backstop.request(cleared)
        assert cleared.response is None

        other = tflow.tflow()  # forward-proxy traffic to a non-provider host
        other.request.host = "github.com"
        backstop.request(other)
        assert other.response is None

        provider = tflow.tflow()
        provider.request.host = "api.openai.com"
        backstop.request(provider)
        assert provider.response.status_code == 500
    assert backstop.refused == 2


async def test_credentials_are_gone_after_requestheaders(demo: DemoVault) -> None:
    p = Pipeline(demo)
    with taddons.context(*p.chain):
        f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex"})
        for h in ("x-api-key", "api-key", "proxy-authorization", "cookie", "openai-api-key"):
            f.request.headers[h] = "secret-" + h
        p.intake.requestheaders(f)
    assert get_state(f).request.presented_key == demo.keys["alice"]
    assert not any(v.startswith(("secret-", "Bearer")) for v in f.request.headers.values())
    assert demo.keys["alice"] not in repr(get_state(f))


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"\xef\xbb\xbf" + b'{"model":"gpt-4o","input":"x"}', "model_not_allowed"),
        ('{"model":"gpt-4o","input":"x"}'.encode("utf-16"), "model_not_allowed"),
        (b'{"model":5}', "invalid_model"),
        (b'{"input":"x"}', "missing_model"),
        (b"[1,2]", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b'{"model":"gpt-5","input":' + b"[" * 100 + b"]" * 100 + b"}", "invalid_json"),
    ],
)
async def test_bodies_scope_cannot_read_are_refused(demo: DemoVault, content: bytes, code: str) -> None:
    p = Pipeline(demo)
    with taddons.context(*p.chain):
        f = model_flow(demo.keys["bob"], content)
        await p.run(f)
    assert error_of(f)["code"] == code
    assert CLEARED_KEY not in f.metadata


def test_flowstate_clearance_rules() -> None:
    f = model_flow(None, b"{}")
    s = FlowState.for_unparsed(f)
    assert s.cleared_for(("identity",)) == "not authenticated"
    s.verdict.identity = object()  # type: ignore[assignment]
    assert s.cleared_for(("identity",)) == "no decision from identity"
    s.allow("identity", "k")
    assert s.cleared_for(("identity",)) is None
    s.decide("identity", "deny", "later")
    assert s.cleared_for(("identity",)) == "no decision from identity"
    f.metadata[STATE_KEY] = s
