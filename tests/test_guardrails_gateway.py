"""Guardrails end to end: the real gateway (mitmdump), the simulated provider and the real Codex CLI.

The simulated model runs a shell command whose output holds an AWS access key and an e-mail
address; the key's guardrail policy (vault section ``guardrail_policies``, reloaded live) is
switched between ``redact``, ``block`` and ``flag``. Then: no matched value in any error body,
log line, trace column (decoded Parquet values) or spool byte; and an output guardrail cuts a
stream in which the model emits a private key.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from codexgate.guard.policy import SECTION, to_section
from codexgate.sim.scenario import fake_private_key
from tests.conftest import read_traces
from tests.helpers.codex import CodexRun
from tests.helpers.gateway import CODEX, DemoVault, Gateway, codex_available, save_vault

# Built by the shell at run time, so neither value appears in the prompt (the developer's own
# message): only the tool output carries them.
AWS_KEY = "AKIAQ7ZK2WXMB4TN5R6D"
EMAIL = "dana.okafor@acme-corp.com"
COMMAND = (
    "k=AKIA; m=dana.okafor; d=acme-corp.com; "
    'echo "deploy key ${k}Q7ZK2WXMB4TN5R6D owner $m@$d"'
)
VALUES = (AWS_KEY, EMAIL)

needs_codex = pytest.mark.skipif(not codex_available(), reason="Codex CLI not installed")


def set_policy(vault: DemoVault, detectors: dict[str, dict[str, str]] | None) -> None:
    """The alice key's guardrail policy (None: no policy); returns once the gateway has reloaded."""
    v = vault.load()
    scopes = {f"key:{vault.key_ids['alice']}": {"detectors": detectors}} if detectors else {}
    v.sections[SECTION] = to_section(scopes)
    save_vault(vault, v)


def run_codex(tmp: Path, gateway: Gateway, key: str, prompt: str) -> CodexRun:
    """Codex with its default retry settings (so a retried refusal would show as more calls)."""
    home = tmp / "codex-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        'model = "gpt-5-codex"\nmodel_provider = "codexgate"\n[model_providers.codexgate]\n'
        f'name = "codexgate"\nbase_url = "{gateway.base_url}/v1"\nenv_key = "CODEXGATE_KEY"\n'
        'wire_api = "responses"\n'
    )
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.upper().endswith("_PROXY") and k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_HOME")}
    env.update({"CODEX_HOME": str(home), "CODEXGATE_KEY": key, "HOME": str(tmp), "NO_COLOR": "1"})
    cmd = [str(CODEX), "exec", "--skip-git-repo-check", "-s", "workspace-write", "--json",
           "-c", "analytics.enabled=false", "-c", "features.plugins=false", prompt]
    proc = subprocess.run(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=240)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip().startswith("{")]
    return CodexRun(proc.returncode, events, proc.stdout, proc.stderr)


def provider_calls(sim: Any) -> list[dict[str, Any]]:
    return [r for r in sim.requests() if r["path"].endswith("/responses")]


def tool_output_texts(body: dict[str, Any]) -> list[str]:
    return [str(it.get("output")) for it in body.get("input", []) if it.get("type") == "function_call_output"]


def rows_for(gateway: Gateway, session_marker: str, wait_for: int) -> list[dict[str, Any]]:
    return read_traces(gateway.traces, "request_body LIKE ?", [f"%{session_marker}%"], wait_for=wait_for)


@needs_codex
def test_redact_provider_never_sees_values_and_placeholders_are_stable(gateway, vault, sim, tmp_path) -> None:
    set_policy(vault, {"secrets": {"action": "redact"}, "pii": {"action": "redact"}})
    sim.clear()
    marker = "guard-redact-run"
    run = run_codex(tmp_path, gateway, vault.keys["alice"], f"RUN: {COMMAND}\nRUN: echo {marker}")
    assert run.returncode == 0, run.stderr[-2000:]
    # the command really printed both values on the developer's machine
    outputs = [c.get("aggregated_output") or "" for c in run.items("command_execution")]
    assert AWS_KEY in outputs[0] and EMAIL in outputs[0]
    calls = provider_calls(sim)
    assert len(calls) == 3  # tool call, second tool call, answer
    sent = json.dumps([c["body"] for c in calls])
    assert AWS_KEY not in sent and EMAIL not in sent
    # the first tool output as the provider got it on call 2 and again on call 3: same placeholders
    seen = [tool_output_texts(c["body"])[0] for c in calls[1:]]
    assert "<AWS_ACCESS_KEY_1>" in seen[0] and "<EMAIL_ADDRESS_1>" in seen[0]
    assert seen[0] == seen[1]
    rows = rows_for(gateway, marker, wait_for=3)
    found = [f for r in rows for f in (r["guardrail_findings"] or [])]
    assert {(f["entity"], f["action"]) for f in found} >= {("AWS_ACCESS_KEY", "redacted"),
                                                         ("EMAIL_ADDRESS", "redacted")}
    assert not any(r["guardrail_blocked"] for r in rows)


@needs_codex
def test_block_codex_shows_the_gateway_message_and_stops(gateway, vault, sim, tmp_path) -> None:
    set_policy(vault, {"secrets": {"action": "block"}, "pii": {"action": "flag"}})
    sim.clear()
    run = run_codex(tmp_path, gateway, vault.keys["alice"], f"RUN: {COMMAND}")
    assert run.returncode != 0
    shown = run.stdout + run.stderr
    assert "Request blocked by the gateway's guardrail: secrets detector found AWS_ACCESS_KEY in input item" in shown
    assert len(provider_calls(sim)) == 1  # only the first call (the tool call) reached the provider
    blocked = read_traces(gateway.traces, "guardrail_blocked AND refusal_reason = 'guardrail_blocked'", wait_for=1)
    assert len(blocked) == 1  # Codex did not retry the 400
    assert blocked[0]["status_code"] == 400


@needs_codex
def test_flag_forwards_the_original_and_records_findings(gateway, vault, sim, tmp_path) -> None:
    set_policy(vault, {"secrets": {"action": "flag"}, "pii": {"action": "flag", "stage": "async"}})
    sim.clear()
    marker = "guard-flag-run"
    run = run_codex(tmp_path, gateway, vault.keys["alice"], f"RUN: {COMMAND}\nRUN: echo {marker}")
    assert run.returncode == 0, run.stderr[-2000:]
    calls = provider_calls(sim)
    assert len(calls) == 3
    assert AWS_KEY in tool_output_texts(calls[1]["body"])[0] and EMAIL in tool_output_texts(calls[1]["body"])[0]
    rows = rows_for(gateway, marker, wait_for=3)
    found = {(f["guardrail"], f["entity"], f["action"], f["stage"]) for r in rows for f in (r["guardrail_findings"] or [])}
    assert ("secrets", "AWS_ACCESS_KEY", "logged", "input") in found
    assert ("pii", "EMAIL_ADDRESS", "logged", "input") in found  # the async-stage check made the row
    assert not any(r["guardrail_blocked"] for r in rows)


FILLER = "the deploy pipeline failed because the build cache was stale and every module was rebuilt".split()


@pytest.mark.parametrize("stream", [False, True])
def test_a_row_waits_for_the_async_check_of_a_call_that_ended_first(gateway, vault, sim, stream: bool) -> None:
    """The simulated provider answers in milliseconds; the async-stage PII scan of a ~190 KB
    input takes longer. The client has its answer at once, and the trace row waits (bounded) for
    the check: it carries the finding and stores the body with the value masked, not a row marked
    "unfinished" without a body (what it was while the row did not wait)."""
    set_policy(vault, {"pii": {"action": "flag", "stage": "async"}})
    rng = random.Random(f"async-wait-{stream}-{time.time_ns()}")  # a new text each run: no verdict cache
    filler = " ".join(rng.choice(FILLER) for _ in range(16000))
    session = f"guard-async-wait-{stream}-{time.time_ns()}"
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=vault.keys["alice"], max_retries=0,
                           default_headers={"session-id": session})
    request = {"model": "gpt-5-codex", "input": f"{filler} mail {EMAIL} please {filler}"}
    if stream:
        with client.responses.stream(**request) as events:
            answer = events.get_final_response()
    else:
        answer = client.responses.create(**request)
    assert answer.status == "completed"
    rows = read_traces(gateway.traces, "session_id = ?", [session], wait_for=1)
    assert len(rows) == 1
    row = rows[0]
    found = {(f["guardrail"], f["entity"], f["action"], f["stage"]) for f in row["guardrail_findings"] or []}
    assert found == {("pii", "EMAIL_ADDRESS", "logged", "input")}
    assert EMAIL not in row["request_body"] and "mail <EMAIL_ADDRESS_1> please" in row["request_body"]
    assert row["outcome"] == "ok" and row["status_code"] == 200


def test_output_guardrail_cuts_a_stream_that_emits_a_private_key(gateway, vault, sim) -> None:
    set_policy(vault, {"secrets": {"action": "block"}})
    events: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", f"{gateway.base_url}/v1/responses", timeout=30,
        headers={"authorization": f"Bearer {vault.keys['alice']}", "session-id": "guard-stream-cut",
                 "x-sim-fault": "chunk_delay_ms=4"},  # paced like a model, so the cut comes mid-stream
        json={"model": "gpt-5-codex", "stream": True,
              "input": [{"type": "message", "role": "user", "content": [
                  {"type": "input_text", "text": "EMIT: private-key"}]}]},
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    kinds = [e.get("type") for e in events]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds
    err = events[-1]["response"]["error"]
    assert err["code"] == "invalid_prompt"  # Codex treats it as fatal: no resend of the request
    assert "secrets detector found PRIVATE_KEY" in err["message"]
    body = fake_private_key()
    streamed = "".join(e.get("delta", "") for e in events if e.get("type") == "response.output_text.delta")
    assert "BEGIN RSA PRIVATE KEY" in streamed and body.splitlines()[-2] not in streamed  # cut before the end
    rows = read_traces(gateway.traces, "session_id = 'guard-stream-cut'", wait_for=1)
    assert rows and rows[0]["guardrail_blocked"]
    assert any(f["stage"] == "output" and f["entity"] == "PRIVATE_KEY" and f["action"] == "blocked"
               for f in rows[0]["guardrail_findings"])
    assert body.splitlines()[3] not in json.dumps([{k: str(v) for k, v in r.items()} for r in rows])


@needs_codex
def test_codex_stops_on_a_stream_the_output_guardrail_cut(gateway, vault, sim, tmp_path) -> None:
    """``response.failed`` with code ``invalid_prompt`` is fatal for Codex (measured on 0.171,
    default retry settings): it shows the gateway's message and does not resend the request."""
    set_policy(vault, {"secrets": {"action": "block"}})
    sim.clear()
    run = run_codex(tmp_path, gateway, vault.keys["alice"], "EMIT: private-key")
    assert run.returncode != 0
    assert "Response stopped by the gateway's guardrail: secrets detector found PRIVATE_KEY" in run.stdout + run.stderr
    assert len(provider_calls(sim)) == 1


def test_no_value_in_error_bodies_logs_traces_or_spool(gateway, vault, sim) -> None:
    set_policy(vault, {"secrets": {"action": "block"}, "pii": {"action": "block"}})
    text = f"here: {AWS_KEY} and {EMAIL}"
    for path, doc in (
        ("/v1/responses", {"model": "gpt-5-codex", "input": text}),
        ("/v1/chat/completions", {"model": "gpt-5-codex", "messages": [{"role": "user", "content": text}]}),
    ):
        r = httpx.post(f"{gateway.base_url}{path}", json=doc, timeout=30,
                       headers={"authorization": f"Bearer {vault.keys['alice']}"})
        assert r.status_code == 400 and "guardrail" in r.text
        assert not any(v in r.text for v in VALUES)
    set_policy(vault, None)
    log = gateway.log_text()
    assert "Guardrails." not in log and "guardrail scan failed" not in log  # no hook failed in this module
    assert "could not build a full trace row" not in log
    rows = read_traces(gateway.traces, "guardrail_findings IS NOT NULL", wait_for=2)
    assert rows
    decoded = json.dumps([{k: str(v) for k, v in r.items()} for r in read_traces(gateway.traces)])
    for value in VALUES:
        assert value not in decoded
        assert value not in gateway.log_text()
        for f in gateway.traces.rglob("*"):
            if f.is_file():
                assert value.encode() not in f.read_bytes(), f.name


@needs_codex
def test_dashboard_charts_findings_and_replay_highlights_placeholders(gateway, monkeypatch) -> None:
    """Real traces from the runs above: the Guardrails page charts findings over time, and the
    replay step view highlights the placeholder that stands where the redacted value was."""
    from streamlit.testing.v1 import AppTest

    pages = Path(__file__).resolve().parents[1] / "dashboard" / "pages"
    monkeypatch.setenv("CODEXGATE_TRACES", str(gateway.traces))
    monkeypatch.setenv("CODEXGATE_DASHBOARD_AUTH", "off")
    for var in ("CODEXGATE_VAULT", "CODEXGATE_ADMIN_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    at = AppTest.from_file(str(pages / "guardrails.py"), default_timeout=60).run()
    assert not at.exception
    assert "Findings over time by detector" in [s.value for s in at.subheader]
    for split in ("team", "action"):
        at.radio[0].set_value(split).run()
        assert not at.exception and f"Findings over time by {split}" in [s.value for s in at.subheader]

    rows = rows_for(gateway, "guard-redact-run", wait_for=3)
    step = next(i for i, r in enumerate(rows) if "<AWS_ACCESS_KEY_1>" in (r["new_input_items"] or "")) + 1
    at = AppTest.from_file(str(pages / "replay.py"), default_timeout=60)
    at.query_params["session"] = rows[0]["session_id"]
    at.query_params["step"] = str(step)
    at.run()
    assert not at.exception
    shown = "\n".join(str(m.value) for m in [*at.markdown, *at.warning, *at.error])
    assert ":red-background[**\\<AWS_ACCESS_KEY_1\\>**]" in shown or ":red-background[**\\<AWS_ACCESS_KEY_1>**]" in shown
    assert not any(v in shown for v in VALUES)
