"""The real Codex CLI through the gateway (base-URL mode) against the simulated provider."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers.codex import run_codex
from tests.helpers.gateway import codex_available

pytestmark = pytest.mark.skipif(
    not codex_available(), reason="Codex CLI not installed (npm install @openai/codex failed)"
)


def test_codex_multi_step_turn_with_tool_call(gateway, vault, sim, tmp_path) -> None:
    sim.clear()
    run = run_codex(tmp_path, f"{gateway.base_url}/v1", vault.keys["alice"], "RUN: echo codexgate-e2e-ok")
    assert run.returncode == 0, run.stderr[-2000:]
    commands = run.items("command_execution")
    assert commands and "codexgate-e2e-ok" in (commands[0].get("aggregated_output") or "")
    answers = run.items("agent_message")
    assert answers and "codexgate-e2e-ok" in answers[-1]["text"]
    reqs = [r for r in sim.requests() if r["path"].endswith("/responses")]
    assert len(reqs) == 2 and all(r["auth_ok"] for r in reqs)  # the tool call, then the answer
    assert vault.keys["alice"] not in str(reqs)


def test_codex_with_invalid_key_shows_the_401_message(gateway, tmp_path) -> None:
    bad_key = "cgk_000000000000_this-key-does-not-exist-xxxx"
    expected = httpx.post(
        f"{gateway.base_url}/v1/responses",
        json={"model": "gpt-5-codex", "input": "x"},
        headers={"authorization": f"Bearer {bad_key}"},
    ).json()["error"]["message"]
    run = run_codex(tmp_path, f"{gateway.base_url}/v1", bad_key, "hello", timeout=120)
    assert run.returncode != 0
    shown = run.stdout + run.stderr
    assert "401" in shown or "Unauthorized" in shown
    assert expected in shown  # the gateway's own message reaches the developer
