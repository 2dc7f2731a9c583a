"""In-process tests of intake (classification, credentials, caps, parsing, sessions), identity
(keys, modes, vault failure) and scope (models, providers, routes), with a real vault."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from addons.api_shape import classify
from addons.flowstate import get_state
from addons.intake import MAX_TAGS, BodyRejected, parse_metadata_header
from tests.gateway.flows import PROVIDER_KEY, Pipeline, demo_vault, error_of, model_flow


@pytest.fixture()
def pipe(tmp_path: Path):
    demo = demo_vault(tmp_path)
    p = Pipeline(demo)
    with taddons.context(*p.chain):
        yield p, demo


# ---------------------------------------------------------------------------- intake


@pytest.mark.parametrize(
    ("path", "api", "family", "rest", "deployment"),
    [
        ("/v1/responses", "responses", "openai", "/responses", None),
        ("/responses", "responses", "openai", "/responses", None),
        ("/v1/responses/compact", "responses", "openai", "/responses/compact", None),
        ("/v1/chat/completions?x=1", "chat_completions", "openai", "/chat/completions", None),
        ("/v1/messages", "anthropic_messages", "anthropic", "/messages", None),
        ("/openai/v1/responses", "responses", "openai", "/responses", None),
        ("/openai/deployments/gpt-5/chat/completions", "chat_completions", "openai", "/chat/completions", "gpt-5"),
        ("/v1/models/gpt-5", "models", "openai", "/models/gpt-5", None),
        ("/v1/files", "other", "openai", "/files", None),
    ],
)
def test_classify(path: str, api: str, family: str, rest: str, deployment: str | None) -> None:
    shape = classify(path)
    assert (shape.api, shape.family, shape.rest, shape.azure_deployment) == (api, family, rest, deployment)


async def test_body_model_session_and_tags(pipe) -> None:
    p, demo = pipe
    body = {"model": "gpt-5-codex", "stream": True, "input": [{"type": "message", "role": "user", "content": "a"}]}
    headers = {"session-id": "s-1", "x-codexgate-metadata": json.dumps({"ticket": "T-1", "n": 3})}
    f = model_flow(demo.keys["alice"], gzip.compress(json.dumps(body).encode()), headers={**headers, "content-encoding": "gzip"})
    await p.run(f, upto=1)
    req = get_state(f).request
    assert (req.model, req.stream, req.codex.session_id) == ("gpt-5-codex", True, "s-1")
    assert req.tags == {"ticket": "T-1", "n": "3"}
    assert "x-codexgate-metadata" not in f.request.headers
    assert req.delta.call_index == 0 and req.delta.new_start == 0
    # the next call of the session resends the history plus one new item
    body["input"].append({"type": "message", "role": "assistant", "content": "b"})
    f2 = model_flow(demo.keys["alice"], body, headers={"session-id": "s-1"})
    await p.run(f2, upto=1)
    d = get_state(f2).request.delta
    assert (d.call_index, d.new_start, d.item_count) == (1, 1, 2)
    assert get_state(f2).request.new_items == [body["input"][1]]


async def test_forward_mode_takes_proxy_credentials_not_the_provider_bearer(pipe) -> None:
    p, demo = pipe
    basic = base64.b64encode(f"codexgate:{demo.keys['alice']}".encode()).decode()
    f = model_flow(None, {"model": "gpt-5"}, mode="forward",
                   headers={"proxy-authorization": f"Basic {basic}", "authorization": "Bearer sk-own-provider-key"})
    f.request.host = "api.openai.com"
    await p.run(f, upto=1)
    assert get_state(f).request.presented_key == demo.keys["alice"]
    assert "authorization" not in f.request.headers and "proxy-authorization" not in f.request.headers
    g = model_flow(None, {"model": "gpt-5"}, mode="forward", headers={"authorization": "Bearer sk-own-provider-key"})
    g.request.host = "api.openai.com"
    await p.run(g, upto=1)
    assert get_state(g).request.presented_key is None  # a provider key never counts as a gateway key


async def test_header_caps(pipe) -> None:
    p, demo = pipe
    f = model_flow(demo.keys["alice"], {"model": "gpt-5"}, headers={f"x-h{i}": "v" for i in range(200)})
    await p.run(f, upto=1)
    assert f.response.status_code == 431 and error_of(f)["code"] == "headers_too_large"


def test_metadata_caps() -> None:
    assert parse_metadata_header('{"a": "b", "c": true, "d": null}') == {"a": "b", "c": "true", "d": ""}
    for bad in ["[1]", "{", json.dumps({f"k{i}": "v" for i in range(MAX_TAGS + 1)}), json.dumps({"k": "v" * 600}),
                json.dumps({"k": {"nested": 1}}), json.dumps({"k" * 100: "v"})]:
        with pytest.raises(BodyRejected) as err:
            parse_metadata_header(bad)
        assert err.value.status == 400


async def test_websocket_probe_gets_426_with_state(pipe) -> None:
    p, demo = pipe
    f = model_flow(demo.keys["alice"], None, method="GET", headers={"upgrade": "websocket"})
    await p.run(f)
    assert f.response.status_code == 426
    assert get_state(f).verdict.refusal.code == "websocket_not_supported"


# ---------------------------------------------------------------------------- identity


@pytest.mark.parametrize(
    ("key", "code"),
    [(None, "missing_api_key"), ("cgk_000000000000_" + "x" * 40, "invalid_api_key"), ("x" * 2000, "invalid_api_key")],
)
async def test_identity_refusals(pipe, key: str | None, code: str) -> None:
    p, _ = pipe
    f = model_flow(key, {"model": "gpt-5"})
    await p.run(f)
    assert f.response.status_code == 401 and error_of(f)["code"] == code


async def test_revoked_and_expired_keys(pipe) -> None:
    p, demo = pipe
    vault = demo.load()
    vault.revoke_key(demo.key_ids["bob"])
    vault.keys[demo.key_ids["carol"]].expires_at = datetime.now(UTC) - timedelta(minutes=1)
    demo.save(vault)
    p.holder.load_now()
    for who, code in (("bob", "revoked_api_key"), ("carol", "expired_api_key")):
        f = model_flow(demo.keys[who], {"model": "gpt-5"})
        await p.run(f)
        assert error_of(f)["code"] == code


async def test_unreadable_vault_is_503_without_paths(pipe) -> None:
    p, demo = pipe
    demo.path.write_bytes(b"not a vault")
    p.holder.load_now()
    f = model_flow(demo.keys["alice"], {"model": "gpt-5"})
    await p.run(f)
    assert f.response.status_code == 503
    assert str(demo.path) not in f.response.text and str(demo.key_file) not in f.response.text


async def test_identity_decision_privacy_and_key_tags_win(pipe) -> None:
    p, demo = pipe
    vault = demo.load()
    vault.teams["acme/platform"].privacy_mode = "redacted"
    demo.save(vault)
    p.holder.load_now()
    f = model_flow(demo.keys["alice"], {"model": "gpt-5"}, headers={"x-codexgate-metadata": '{"cost_center": "forged"}'})
    await p.run(f, upto=2)
    v = get_state(f).verdict
    assert v.identity.developer == "alice" and v.privacy_mode == "redacted"
    assert get_state(f).request.tags["cost_center"] == "cc-10"  # the key's tag, not the header's
    assert {"policy": "identity", "decision": "allow", "reason": demo.key_ids["alice"]} in v.decisions


# ---------------------------------------------------------------------------- scope


async def test_scope_models_providers_and_routes(pipe) -> None:
    p, demo = pipe
    f = model_flow(demo.keys["bob"], {"model": "gpt-4o"})  # bob: gpt-4.1*, gpt-5*
    await p.run(f)
    assert f.response.status_code == 403 and error_of(f)["code"] == "model_not_allowed"

    f = model_flow(demo.keys["carol"], {"model": "gpt-5"})  # carol: anthropic only
    await p.run(f)
    assert f.response.status_code == 403 and error_of(f)["code"] == "provider_not_allowed"

    f = model_flow(demo.keys["alice"], {"model": "gpt-5"}, headers={"x-codexgate-route": "nope"})
    await p.run(f)
    assert f.response.status_code == 400 and error_of(f)["code"] == "no_route"

    f = model_flow(demo.keys["alice"], {"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []},
                   path="/v1/messages", headers={"anthropic-version": "2023-06-01"})
    await p.run(f)
    assert f.response is None
    assert get_state(f).verdict.provider.name == "anthropic"
    assert f.request.headers["x-api-key"] == "sk-ant-provider-secret-0123456789"

    f = model_flow(demo.keys["alice"], {"model": "gpt-5"})
    await p.run(f)
    assert get_state(f).verdict.route.startswith("default:")
    assert f.request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
