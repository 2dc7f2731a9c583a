"""Anthropic Messages wire: usage normalisation, the answer summary from SSE and from JSON, and
the encoder round trip (text, tool use, thinking)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexgate import wire
from codexgate.core.pricing import Usage
from codexgate.wire import SseEvent, anthropic

USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 100,
    "cache_creation_input_tokens": 5,
    "output_tokens": 7,
}


def _message(content: list, stop: str = "end_turn") -> dict:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": USAGE,
    }


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (USAGE, Usage(input_tokens=115, cache_read_tokens=100, cache_creation_tokens=5, output_tokens=7)),
        ({"input_tokens": 3}, Usage(input_tokens=3, cache_read_tokens=0, cache_creation_tokens=0)),
        ({"output_tokens": 2}, Usage(output_tokens=2)),
        ({"input_tokens": "3"}, Usage()),
        ([], None),
    ],
)
def test_usage_table(doc: object, expected: Usage | None) -> None:
    assert anthropic.usage(doc) == expected


@pytest.mark.parametrize(
    ("content", "text", "reasoning", "calls"),
    [
        ([{"type": "text", "text": "Hi"}], "Hi", "", []),
        (
            [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "tool_use", "id": "tu1", "name": "shell", "input": {"cmd": "ls"}},
            ],
            "",
            "hmm",
            [("tu1", "shell", json.dumps({"cmd": "ls"}))],
        ),
    ],
)
def test_json_and_stream_give_the_same_summary(content: list, text: str, reasoning: str, calls: list) -> None:
    doc = _message(content, "tool_use" if calls else "end_turn")
    streamed = wire.reassemble("anthropic_messages", b"".join(anthropic.encode_events(doc)))
    for r in (wire.from_json_body("anthropic_messages", doc), streamed):
        assert (r.text, r.reasoning) == (text, reasoning)
        assert [(c["call_id"], c["name"], c["arguments"]) for c in r.tool_calls] == calls
        assert r.usage == anthropic.usage(USAGE)
        assert r.finish_reasons == ["tool_use" if calls else "end_turn"]


def test_error_event() -> None:
    frames = anthropic.encode_events(_message([]), error={"type": "overloaded_error", "message": "busy"})
    r = wire.reassemble("anthropic_messages", b"".join(frames))
    assert r.failed and not r.terminal and (r.error_type, r.error_message) == ("overloaded_error", "busy")


@pytest.mark.parametrize(
    "data",
    [
        '{"type":"message_start","message":[1]}',
        '{"type":"content_block_start","index":"x","content_block":"y"}',
        '{"type":"content_block_delta","index":-4,"delta":{"type":"text_delta","text":[1]}}',
        '{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":{}}}',
        '{"type":"message_delta","delta":[1],"usage":"u"}',
        '{"type":"error","error":"e"}',
    ],
)
def test_hostile_events_never_raise(data: str) -> None:
    r = anthropic.Reassembler()
    r.on_event(SseEvent(None, data))
    assert isinstance(r.result(), wire.Reassembled)


BLOCKS = st.one_of(
    st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=30)),
    st.builds(lambda t: {"type": "thinking", "thinking": t}, st.text(max_size=30)),
    st.builds(
        lambda i, v: {"type": "tool_use", "id": i, "name": "shell", "input": v},
        st.text(min_size=1, max_size=5),
        st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
    ),
)


@given(content=st.lists(BLOCKS, max_size=4))
@settings(max_examples=100, deadline=None)
def test_round_trip(content: list) -> None:
    doc = _message(content)
    a = wire.from_json_body("anthropic_messages", doc)
    b = wire.reassemble("anthropic_messages", b"".join(anthropic.encode_events(doc)))
    assert (a.text, a.reasoning, a.tool_calls, a.usage) == (b.text, b.reasoning, b.tool_calls, b.usage)
