"""Deterministic replay: a session recorded from the real Codex CLI is re-executed offline
against `codexgate replay`, with no provider reachable, and ends with the same answer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import read_traces
from tests.helpers.codex import run_codex
from tests.helpers.gateway import codex_available, free_port, make_vault, start_gateway, wait_port
from tests.helpers.sim import SimProvider

pytestmark = pytest.mark.skipif(
    not codex_available(), reason="Codex CLI not installed (npm install @openai/codex failed)"
)


def test_replay_of_a_recorded_codex_session_reproduces_the_final_output(tmp_path: Path) -> None:
    sim = SimProvider()
    vault = make_vault(tmp_path, sim.url, sim.openai_key, sim.anthropic_key)
    gw = start_gateway(tmp_path, vault)
    try:
        recorded = run_codex(tmp_path, f"{gw.base_url}/v1", vault.keys["alice"], "RUN: echo replay-me-please")
        assert recorded.returncode == 0, recorded.stderr[-2000:]
        thread_id = next(e["thread_id"] for e in recorded.events if e.get("type") == "thread.started")
        rows = read_traces(gw.traces, "session_id = ?", [thread_id], wait_for=2)
        assert len(rows) == 2
    finally:
        gw.stop()
        sim.stop()  # from here on no provider is reachable
    port = free_port()
    exe = Path(sys.executable).with_name("codexgate")
    replay = subprocess.Popen(
        [str(exe), "replay", thread_id, "--traces", str(gw.traces), "--port", str(port), "--exit-after-last"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_port(port, proc=replay)
        again = run_codex(
            tmp_path, f"http://127.0.0.1:{port}/v1", "any-key-works-offline", "RUN: echo replay-me-please"
        )
        out, _ = replay.communicate(timeout=30)
    finally:
        if replay.poll() is None:
            replay.kill()
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.items("agent_message")[-1]["text"] == recorded.items("agent_message")[-1]["text"]
    assert "replay-me-please" in again.items("command_execution")[0]["aggregated_output"]
    assert "replayed 2 of 2 recorded calls" in out
