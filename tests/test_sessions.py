"""replay_steps on handcrafted session rows: new input items, tool call -> output links, instruction
diffs, cumulative cost, retries; and the session queries on a small generated dataset."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from analytics import rerun
from analytics.access import ViewerScope
from analytics.db import TraceStore
from analytics.sessions import TOOL_OUTPUT, USER, list_sessions, replay_steps, session_calls
from analytics.synth import write_dataset

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DEV_V1 = "You are Codex.\nBe precise.\nUse the shell tool."
DEV_V2 = "You are Codex.\nBe precise and brief.\nUse the shell tool."


def msg(role: str, text: str) -> dict[str, Any]:
    part = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": part, "text": text}]}


def body(items: list[dict[str, Any]]) -> str:
    return json.dumps({"model": "gpt-5-codex", "input": items, "stream": True})


SHELL_CALL = {"type": "function_call", "name": "shell", "arguments": '{"command": ["ls"]}', "call_id": "c1"}
SHELL_OUT = {"type": "function_call_output", "call_id": "c1", "output": "README.md\nsrc"}


def row(i: int, items: list[dict[str, Any]], new_start: int | None, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "trace_id": f"t{i}",
        "call_index": i,
        "start_time": T0 + timedelta(seconds=10 * i),
        "end_time": T0 + timedelta(seconds=10 * i + 4),
        "duration_ms": 4000.0,
        "ttft_ms": 1000.0,
        "outcome": "ok",
        "status_code": 200,
        "openai_api_type": "responses",
        "gen_ai_request_model": "gpt-5-codex",
        "request_body": body(items),
        "new_input_items": json.dumps(items[new_start:]) if new_start is not None else None,
        "new_input_start": new_start,
        "input_item_count": len(items),
        "instructions_hash": "h1",
        "response_text": None,
        "response_reasoning": None,
        "tool_calls": None,
        "gen_ai_usage_input_tokens": 1000,
        "gen_ai_usage_cache_read_input_tokens": 800,
        "gen_ai_usage_output_tokens": 100,
        "gen_ai_usage_reasoning_output_tokens": 40,
        "cost_usd": 0.01,
        "cost_known": True,
        "attempts": [{"attempt": 1, "provider": "openai", "status_code": 200}],
        "attempt_count": 1,
        "fallback_used": False,
        "guardrail_findings": None,
        "guardrail_blocked": False,
    }
    base.update(extra)
    return base


def session_rows() -> list[dict[str, Any]]:
    first = [msg("developer", DEV_V1), msg("user", "list the files")]
    second = [*first, SHELL_CALL, SHELL_OUT]
    third = [
        msg("developer", DEV_V2),
        *second[1:],
        msg("assistant", "README.md and src."),
        msg("user", "thanks"),
    ]
    return [
        row(0, first, 0, tool_calls=[{k: SHELL_CALL[k] for k in ("call_id", "name", "type", "arguments")}]),
        # a failed attempt, then the retry of the same request: nothing new in the retry
        row(
            1,
            second,
            2,
            outcome="upstream_error",
            status_code=502,
            error_type="bad_gateway",
            cost_usd=None,
            cost_known=False,
            gen_ai_usage_input_tokens=None,
            gen_ai_usage_cache_read_input_tokens=None,
            gen_ai_usage_output_tokens=None,
            gen_ai_usage_reasoning_output_tokens=None,
            attempts=[
                {"attempt": 1, "provider": "openai", "status_code": 502},
                {"attempt": 2, "provider": "azure-openai", "status_code": 502},
            ],
            attempt_count=2,
            fallback_used=True,
        ),
        row(2, second, 4, response_text="README.md and src.", cost_usd=0.02),
        # new_input_items not recorded: the new items come from diffing request bodies
        row(3, third, None, instructions_hash="h2", response_text="You're welcome.", cost_usd=0.005),
    ]


def test_replay_steps_new_items_links_diff_and_cost() -> None:
    steps = replay_steps(pl.DataFrame(session_rows()))
    assert [s.number for s in steps] == [1, 2, 3, 4]

    # step 1: the user's prompt is new; it calls the shell tool, answered in step 2's input
    first = steps[0]
    assert [i.text for i in first.new_items if i.kind == USER] == ["list the files"]
    assert [c.name for c in first.tool_calls] == ["shell"]
    assert first.tool_calls[0].arguments_json == {"command": ["ls"]}
    assert first.tool_calls[0].answered_in_step == 1  # 0-based: step 2
    assert first.tool_calls[0].output == "README.md\nsrc"

    # step 2 (failed, fell back): its new input holds the output of step 1's tool call
    second = steps[1]
    outputs = [i for i in second.new_items if i.kind == TOOL_OUTPUT]
    assert [(o.call_id, o.answers_step) for o in outputs] == [("c1", 0)]
    assert not second.ok and second.fallback_used and second.attempt_count == 2
    assert [a["provider"] for a in second.attempts] == ["openai", "azure-openai"]
    assert second.cost_usd is None and second.cumulative_unpriced == 0

    # step 3: the retry sends the same input, so nothing is new
    assert steps[2].new_items == []

    # step 4: items found by diffing bodies; the developer prompt changed with a unified diff
    fourth = steps[3]
    assert fourth.new_items_source == "diff"
    assert "thanks" in [i.text for i in fourth.new_items if i.kind == USER]
    assert fourth.instructions_changed and not steps[2].instructions_changed
    assert fourth.instructions_changed_from == 2
    assert "-Be precise." in fourth.instructions_diff
    assert "+Be precise and brief." in fourth.instructions_diff

    # cost: per step and cumulative (the failed, unpriced call adds nothing)
    assert [s.cost_usd for s in steps] == [0.01, None, 0.02, 0.005]
    assert [round(s.cumulative_cost_usd, 6) for s in steps] == [0.01, 0.01, 0.03, 0.035]
    assert [s.cumulative_input_tokens for s in steps] == [1000, 1000, 2000, 3000]
    assert steps[0].cached_tokens == 800 and steps[0].reasoning_tokens == 40


def test_rerun_request_forces_non_streaming_and_model_override() -> None:
    path, sent = rerun.build_request(session_rows()[0]["request_body"], "responses", "o4-mini")
    assert path == "/responses"
    assert sent["stream"] is False and sent["model"] == "o4-mini"
    assert sent["input"][1]["content"][0]["text"] == "list the files"
    assert rerun.build_request('{"model": "m", "messages": []}', "chat_completions")[0] == "/chat/completions"
    assert rerun.auth_headers("anthropic_messages", "k")["x-api-key"] == "k"
    with pytest.raises(rerun.RerunError):
        rerun.build_request(None, "responses")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TraceStore:
    folder: Path = tmp_path_factory.mktemp("sessions")
    write_dataset(folder, 300, seed=5, bodies=True)
    return TraceStore(folder)


def test_session_queries_on_generated_data(store: TraceStore) -> None:
    sessions = list_sessions(store, ViewerScope())
    assert sessions.height > 5
    sid, developer, calls = (
        sessions.row(0, named=True)["session_id"],
        sessions["developer"][0],
        sessions["calls"][0],
    )
    found = list_sessions(store, ViewerScope(), search=sid[:8])
    assert sid in found["session_id"].to_list()
    frame = session_calls(store, sid, ViewerScope())
    assert frame.height == calls
    assert frame["call_index"].to_list() == sorted(frame["call_index"].to_list())
    steps = replay_steps(frame)
    assert len(steps) == calls
    # every tool call answered later points at a step whose new input holds its output
    for step in steps:
        for call in step.tool_calls:
            if call.answered_in_step is not None:
                later = steps[call.answered_in_step]
                assert call.call_id in {i.call_id for i in later.new_items if i.kind == TOOL_OUTPUT}
    # scope: another developer sees nothing of this session
    other = ViewerScope(org="nobody", team="none", developer=developer + "x")
    assert session_calls(store, sid, other).is_empty()
