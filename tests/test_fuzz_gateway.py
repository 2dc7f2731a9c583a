"""Property-based fuzz (hypothesis) of bodies, headers, paths, methods and credentials against
a running gateway whose reverse-mode target is a catch-all logger.

For every generated request: it gets an answer; the provider (simulator) only ever receives
requests that carried a valid gateway key allowed to use the model, always with the injected
provider credential and never a gateway key; nothing reaches the catch-all; and every request
becomes exactly one trace row.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import read_traces
from tests.helpers.catchall import CatchAll
from tests.helpers.gateway import DemoVault, Gateway, make_vault, start_gateway
from tests.helpers.sim import SimProvider

BOB_MODELS = ["gpt-4.1*", "gpt-5*"]


@pytest.fixture(scope="module")
def fuzz_env(module_tmp: Path, sim: SimProvider) -> Iterator[tuple[Gateway, DemoVault, CatchAll]]:
    catchall = CatchAll()
    demo = make_vault(module_tmp / "fuzz", sim.url, sim.openai_key, sim.anthropic_key, sim.azure_key)
    vault = demo.load()
    vault.revoke_key(demo.key_ids["carol"])
    demo.save(vault)
    gw = start_gateway(module_tmp / "fuzz", demo, name="fuzz", reverse_target=catchall.url)
    yield gw, demo, catchall
    gw.stop()
    catchall.stop()


PREFIXES = ["", "/v1", "/openai", "/openai/v1", "/openai/deployments/gpt-5", "/openai/deployments/gpt-4o", "//v1", "/v1/.."]
SUFFIXES = [
    "/responses",
    "/chat/completions",
    "/messages",
    "/models",
    "/embeddings",
    "/completions",
    "/files",
    "/responses/resp_1",
    "/organization/admin_api_keys",
    "/%2e%2e/responses",
    "/responses/",
]
METHODS = ["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"]
MODELS: list[Any] = ["gpt-5-codex", "gpt-5", "gpt-4o", "gpt-4.1-mini", "claude-sonnet-4-5", 5, ["gpt-5"], None, ""]
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(str.strip)


def hostile_json(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.sampled_from(MODELS))
    doc: dict[str, Any] = {"input": draw(st.text(max_size=40)), "stream": draw(st.booleans())}
    if model is not None:
        doc["model"] = model
    if draw(st.booleans()):
        doc["messages"] = [{"role": "user", "content": "hi"}]
        doc["max_tokens"] = 16
    raw = json.dumps(doc).encode()
    kind = draw(st.sampled_from(["json", "json", "bom", "utf16", "gzip", "badgzip", "binary", "deep", "array", "empty"]))
    headers: dict[str, str] = {}
    if kind == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif kind == "utf16":
        raw = raw.decode().encode("utf-16")
    elif kind == "gzip":
        raw = gzip.compress(raw)
        headers["content-encoding"] = "gzip"
    elif kind == "badgzip":
        headers["content-encoding"] = draw(st.sampled_from(["gzip", "br", "zstd", "deflate", "x-weird"]))
    elif kind == "binary":
        raw = draw(st.binary(max_size=200))
    elif kind == "deep":  # from 64 levels on the gateway refuses it; below, a gpt-5 call
        raw = b'{"model":"gpt-5","input":' + hostile_json(draw(st.integers(60, 3000))).encode() + b"}"
        model = "gpt-5"  # the model the body names (the checks below compare it with the key's scope)
    elif kind == "array":
        raw = b"[" + raw + b"]"
    elif kind == "empty":
        raw = b""
    for name in draw(
        st.lists(
            st.sampled_from(
                ["x-codex-turn-metadata", "x-codexgate-metadata", "session-id", "x-api-key", "api-key",
                 "anthropic-version", "x-codexgate-route", "trailer", "x-openai-subagent", "upgrade"]
            ),
            max_size=4,
            unique=True,
        )
    ):
        headers[name] = draw(
            st.one_of(
                HEADER_TEXT,
                st.sampled_from(['{"session_id":[1]}', hostile_json(1500), '{"a":{"b":1}}', "websocket", "openai"]),
            )
        )
    plausible = draw(st.integers(0, 3)) == 0  # a quarter look like real calls, so allowed ones occur
    return {
        "method": "POST" if plausible else draw(st.sampled_from(METHODS)),
        "path": (draw(st.sampled_from(["/v1", ""])) + "/responses")
        if plausible
        else draw(st.sampled_from(PREFIXES)) + draw(st.sampled_from(SUFFIXES)),
        "key": draw(st.sampled_from(["alice", "bob"]))
        if plausible
        else draw(st.sampled_from(["none", "alice", "bob", "carol-revoked", "provider", "garbage", "basic"])),
        "model": model,
        "content": raw,
        "headers": headers,
    }


def test_fuzzed_requests_never_pass_the_gate(fuzz_env, sim: SimProvider) -> None:
    gw, demo, catchall = fuzz_env
    sim.clear()
    sent: dict[str, dict[str, Any]] = {}
    client = httpx.Client(base_url=gw.base_url, trust_env=False, timeout=30)

    @settings(
        max_examples=160,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(req=requests())
    def one(req: dict[str, Any]) -> None:
        rid = f"fuzz-{len(sent)}"
        headers = {"x-client-request-id": rid, **req["headers"]}
        key = {
            "alice": demo.keys["alice"],
            "bob": demo.keys["bob"],
            "carol-revoked": demo.keys["carol"],
            "provider": sim.openai_key,
            "garbage": "cgk_zzzz_" + "x" * 30,
        }.get(req["key"])
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        if req["key"] == "basic":
            headers["authorization"] = "Basic %%%notbase64"
        r = client.request(req["method"], req["path"], content=req["content"], headers=headers)
        assert 100 <= r.status_code < 600
        sent[rid] = {**req, "status": r.status_code}

    one()
    client.close()

    # nothing was forwarded without the gateway's decision
    assert catchall.log == [], catchall.log[:3]
    # the provider saw only authorised, in-scope calls, with the injected credential
    gateway_keys = list(demo.keys.values())
    provider_digests = {sim.digest(k) for k in (sim.openai_key, sim.anthropic_key, sim.azure_key)}
    for entry in sim.requests():
        flat = json.dumps(entry)
        assert not any(k in flat or sim.digest(k) in flat for k in gateway_keys)
        rid = entry["headers"].get("x-client-request-id")
        origin = sent.get(rid)
        assert entry["credential"] in provider_digests, (entry, origin)
        assert origin is not None, entry
        assert origin["key"] in ("alice", "bob"), origin
        if origin["key"] == "bob" and isinstance(origin["model"], str):
            assert any(fnmatchcase(origin["model"], g) for g in BOB_MODELS), origin
    # every request is exactly one trace row
    rows = read_traces(gw.traces, "client_request_id LIKE 'fuzz-%'", wait_for=len(sent), timeout=30)
    ids = [r["client_request_id"] for r in rows]
    assert sorted(ids) == sorted(sent), (len(ids), len(sent))
    forwarded = [r for r in sent.values() if r["status"] < 400]
    assert forwarded, "the fuzz never produced an allowed call: the property was not exercised"
