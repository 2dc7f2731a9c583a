"""In-process tests (taddons/tflow, real vault, real engines) of the policy addons in the
pipeline — limits (real SQLite ledger), guardrails (real detection engine), tracing's
admission — and of the upstream step's URL and credential rewrite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy.test import taddons

from addons.failsafe import CLEARED_KEY
from addons.flowstate import get_state
from addons.guardrails import Guardrails
from addons.limits import Limits
from addons.tracing import Tracing
from codexgate.guard.service import Guard
from tests.gateway.flows import PROVIDER_KEY, Pipeline, demo_vault, error_of, model_flow

AWS = "AKIAQ3EGRVYUXW4LM7PA"


@pytest.fixture(scope="module")
def guard() -> Iterator[Guard]:
    g = Guard(workers=1)
    yield g
    g.close()


@pytest.fixture()
def env(tmp_path: Path, guard: Guard):
    demo = demo_vault(tmp_path)
    p = Pipeline(demo, required=("identity", "scope", "limits", "guardrails", "tracing"))
    limits, guardrails, tracing = Limits(p.holder), Guardrails(p.holder, guard), Tracing()
    with taddons.context(*p.chain, limits, guardrails, tracing) as tctx:
        tctx.options.update(codexgate_traces=str(tmp_path / "traces"), codexgate_ledger=str(tmp_path / "ledger.sqlite3"))
        yield p, demo, limits, guardrails, tracing


async def run(p: Pipeline, limits: Limits, guardrails: Guardrails, tracing: Tracing, flow) -> None:
    await p.run(flow, extra=[limits, guardrails, tracing])


async def test_every_policy_allows_and_the_upstream_step_credentials(env) -> None:
    p, demo, limits, guardrails, tracing = env
    await limits.running()
    f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hello"})
    await run(p, limits, guardrails, tracing, f)
    assert f.response is None and f.metadata[CLEARED_KEY] is True
    policies = [d["policy"] for d in get_state(f).verdict.decisions if d["decision"] == "allow"]
    assert policies == ["identity", "scope", "limits", "guardrails", "tracing"]
    assert f.request.url == "http://127.0.0.1:1/v1/responses"
    assert f.request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert len(get_state(f).upstream.attempts) == 1


async def test_limits_refuse_a_spent_budget_and_fail_closed_without_a_ledger(env) -> None:
    p, demo, limits, guardrails, tracing = env
    f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi"})
    await run(p, limits, guardrails, tracing, f)  # the ledger is not open yet (no running hook)
    assert f.response.status_code == 503 and CLEARED_KEY not in f.metadata
    await limits.running()
    vault = demo.load()
    vault.sections["limits"] = {"levels": {f"key:{demo.key_ids['alice']}": {"budget_usd": 0.000001, "period": "day"}}}
    demo.save(vault)
    p.holder.load_now()
    f = model_flow(demo.keys["alice"], {"model": "gpt-5-codex", "input": "hi", "max_output_tokens": 1000})
    await run(p, limits, guardrails, tracing, f)
    assert f.response.status_code in (400, 429), f.response.text
    assert get_state(f).verdict.refusal.policy == "limits"
    assert PROVIDER_KEY not in str(f.request.headers)


async def test_guardrail_block_and_redact(env) -> None:
    p, demo, limits, guardrails, tracing = env
    await limits.running()
    vault = demo.load()
    vault.sections["guardrail_policies"] = {
        "version": 1,
        "scopes": {"team:acme/platform": {"detectors": {"secrets": {"action": "block", "stage": "pre"}}},
                   "team:acme/mobile": {"detectors": {"secrets": {"action": "redact", "stage": "pre"}}}},
    }
    demo.save(vault)
    p.holder.load_now()
    body = {"model": "gpt-5-codex", "input": f"deploy with {AWS} please"}
    f = model_flow(demo.keys["alice"], body)  # team platform: block
    await run(p, limits, guardrails, tracing, f)
    assert f.response.status_code == 400 and error_of(f)["code"] == "guardrail_blocked"
    assert AWS not in f.response.text
    g = model_flow(demo.keys["bob"], body)  # team mobile: redact
    await run(p, limits, guardrails, tracing, g)
    assert g.response is None, g.response and g.response.text
    sent = json.loads(g.request.content)
    assert AWS not in json.dumps(sent) and "AWS" in json.dumps(sent)  # a typed placeholder went instead
    assert any(f["action"] == "redacted" for f in get_state(g).verdict.guardrail_findings)
