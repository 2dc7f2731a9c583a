"""OpenAI Responses wire: usage, the answer summary from SSE and from JSON, and the encoder ->
reassembler round trip (messages, function and custom-tool calls, reasoning)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexgate import wire
from codexgate.core.pricing import Usage
from codexgate.wire import SseEvent, responses


def _reassemble(frames: list[bytes], chunk: int = 7) -> wire.Reassembled:
    return wire.reassemble("responses", b"".join(frames), chunk)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 40},
                "output_tokens": 30,
                "output_tokens_details": {"reasoning_tokens": 10},
            },
            Usage(input_tokens=100, cache_read_tokens=40, output_tokens=30, reasoning_tokens=10),
        ),
        ({"input_tokens": 5}, Usage(input_tokens=5)),
        ({"input_tokens": "5", "input_tokens_details": [], "output_tokens": True}, Usage()),
        ({"input_tokens": 1e400}, Usage()),
        (None, None),
        ([], None),
    ],
)
def test_usage_table(doc: object, expected: Usage | None) -> None:
    assert responses.usage(doc) == expected


def _response(output: list, usage: dict | None = None, **extra: object) -> dict:
    return {
        "id": "resp_1",
        "model": "gpt-5-codex",
        "status": "completed",
        "output": output,
        "usage": usage,
        **extra,
    }


MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Hi there"}],
}
CALL = {"id": "fc_1", "type": "function_call", "call_id": "c1", "name": "shell", "arguments": '{"cmd":"ls"}'}
CUSTOM = {
    "id": "ctc_1",
    "type": "custom_tool_call",
    "call_id": "c2",
    "name": "apply_patch",
    "input": "*** Begin",
}
REASONING = {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Thinking"}]}
SHELL = {"id": "lsc_1", "type": "local_shell_call", "call_id": "c3", "action": {"command": ["ls"]}}
USAGE = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 4}


@pytest.mark.parametrize(
    ("output", "text", "reasoning", "calls"),
    [
        ([MESSAGE], "Hi there", "", []),
        ([REASONING, CALL], "", "Thinking", [("c1", "shell", "function_call", '{"cmd":"ls"}')]),
        ([CUSTOM], "", "", [("c2", "apply_patch", "custom_tool_call", "*** Begin")]),
        ([SHELL], "", "", [("c3", "local_shell", "local_shell_call", json.dumps({"command": ["ls"]}))]),
        ([1, "x", {"type": "message", "content": "not a list"}], "", "", []),
    ],
)
def test_json_and_stream_give_the_same_summary(output: list, text: str, reasoning: str, calls: list) -> None:
    doc = _response(output, USAGE)
    for r in (wire.from_json_body("responses", doc), _reassemble(responses.encode_events(doc))):
        assert r.text == text and r.reasoning == reasoning
        assert [(c["call_id"], c["name"], c["type"], c["arguments"]) for c in r.tool_calls] == calls
        assert r.usage == Usage(input_tokens=10, cache_read_tokens=2, output_tokens=4)
        assert r.response_id == "resp_1" and r.response_model == "gpt-5-codex"
        assert r.finish_reasons == ["completed"] and not r.failed


def test_failed_stream_and_error_body() -> None:
    r = _reassemble(
        responses.encode_events(_response([MESSAGE]), error={"code": "insufficient_quota", "message": "m"})
    )
    assert r.failed and r.terminal and (r.error_type, r.error_message) == ("insufficient_quota", "m")
    r = wire.from_json_body("responses", {"error": {"type": "invalid_request_error", "message": "bad"}})
    assert r.failed and (r.error_type, r.error_message) == ("invalid_request_error", "bad")


def test_stream_cut_before_completed_keeps_the_items() -> None:
    frames = responses.encode_events(_response([MESSAGE, CALL]))[:-1]
    r = _reassemble(frames)
    assert not r.terminal and r.text == "Hi there" and r.tool_calls[0]["call_id"] == "c1"
    assert r.response is not None and r.response["status"] == "incomplete"


@pytest.mark.parametrize(
    "data",
    [
        '{"type":"response.completed","response":[1]}',
        '{"type":"response.output_item.done","output_index":"x","item":{"type":"message"}}',
        '{"type":"response.output_item.done","output_index":1e300,"item":{}}',
        '{"type":"response.created","response":"s"}',
        '{"type":"response.failed","response":{"error":"boom"}}',
        '{"type":"error","error":[1]}',
        '{"type":["x"]}',
        '{"type":"response.output_text.delta","delta":{"a":1}}',
        "[1,2]",
        "not json",
        "[" * 5000,
    ],
)
def test_hostile_events_never_raise(data: str) -> None:
    r = responses.Reassembler()
    r.on_event(SseEvent(None, data))
    assert isinstance(r.result(), wire.Reassembled)


TEXT = st.text(max_size=40)
ITEMS = st.one_of(
    st.builds(
        lambda t: {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": t}],
        },
        TEXT,
    ),
    st.builds(
        lambda a, n: {"id": "f", "type": "function_call", "call_id": "c", "name": n, "arguments": a},
        TEXT,
        st.text(min_size=1, max_size=8),
    ),
    st.builds(
        lambda i: {"id": "t", "type": "custom_tool_call", "call_id": "k", "name": "p", "input": i}, TEXT
    ),
    st.builds(
        lambda t: {"id": "r", "type": "reasoning", "summary": [{"type": "summary_text", "text": t}]}, TEXT
    ),
)


@given(output=st.lists(ITEMS, max_size=5), chunk=st.integers(1, 50), size=st.integers(1, 9))
@settings(max_examples=150, deadline=None)
def test_round_trip(output: list, chunk: int, size: int) -> None:
    doc = _response(output, USAGE)
    split = lambda s: [s[k : k + size] for k in range(0, len(s), size)]  # noqa: E731
    streamed = _reassemble(responses.encode_events(doc, split=split), chunk)
    direct = wire.from_json_body("responses", doc)
    assert (streamed.text, streamed.reasoning, streamed.tool_calls, streamed.usage) == (
        direct.text,
        direct.reasoning,
        direct.tool_calls,
        direct.usage,
    )
    # deltas alone (no final output in response.completed) rebuild the same answer
    bare = [f for f in responses.encode_events({**doc}, split=split)]
    last = json.loads(bare[-1].split(b"data: ", 1)[1])
    last["response"]["output"] = []
    bare[-1] = b"event: response.completed\ndata: " + json.dumps(last).encode() + b"\n\n"
    rebuilt = _reassemble(bare, chunk)
    assert rebuilt.tool_calls == direct.tool_calls and rebuilt.text == direct.text
