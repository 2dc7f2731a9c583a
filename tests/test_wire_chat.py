"""Chat Completions wire: usage, the answer summary from chunks and from JSON, encoder round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexgate import wire
from codexgate.core.pricing import Usage
from codexgate.wire import SseEvent, chat

USAGE = {
    "prompt_tokens": 50,
    "completion_tokens": 9,
    "prompt_tokens_details": {"cached_tokens": 20},
    "completion_tokens_details": {"reasoning_tokens": 3},
}


def _completion(content: str | None, calls: list[tuple[str, str, str]], finish: str = "stop") -> dict:
    message: dict = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in calls
        ]
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4.1-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": USAGE,
    }


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (USAGE, Usage(input_tokens=50, cache_read_tokens=20, output_tokens=9, reasoning_tokens=3)),
        ({"prompt_tokens": 1, "prompt_tokens_details": None}, Usage(input_tokens=1)),
        ({"prompt_tokens": [1]}, Usage()),
        ("usage", None),
    ],
)
def test_usage_table(doc: object, expected: Usage | None) -> None:
    assert chat.usage(doc) == expected


@pytest.mark.parametrize(
    ("content", "calls", "finish"),
    [("Hello", [], "stop"), (None, [("call_1", "shell", '{"cmd":"ls"}')], "tool_calls"), ("", [], "length")],
)
def test_json_and_stream_give_the_same_summary(content: str | None, calls: list, finish: str) -> None:
    doc = _completion(content, calls, finish)
    direct = wire.from_json_body("chat_completions", doc)
    streamed = wire.reassemble("chat_completions", b"".join(chat.encode_events(doc, include_usage=True)))
    for r in (direct, streamed):
        assert r.text == (content or "")
        assert [(c["call_id"], c["name"], c["arguments"]) for c in r.tool_calls] == calls
        assert r.finish_reasons == [finish]
        assert r.usage == chat.usage(USAGE)
    assert streamed.terminal and streamed.response_id == "chatcmpl-1"


def test_error_in_stream() -> None:
    frames = chat.encode_events(
        _completion("x", []), error={"error": {"code": "server_error", "message": "m"}}
    )
    r = wire.reassemble("chat_completions", b"".join(frames))
    assert r.failed and not r.terminal and r.error_type == "server_error"


@pytest.mark.parametrize(
    "data",
    [
        '{"choices":[1,{"delta":"x"},{"delta":{"tool_calls":[1,{"index":"a"}]}}]}',
        '{"choices":{"a":1},"usage":[1]}',
        '{"id":[1],"model":{"a":1},"choices":[{"delta":{"content":[1]},"finish_reason":[1]}]}',
        "[DONE]",
        "[[[",
    ],
)
def test_hostile_chunks_never_raise(data: str) -> None:
    r = chat.Reassembler()
    r.on_event(SseEvent(None, data))
    assert isinstance(r.result(), wire.Reassembled)


@given(
    content=st.text(max_size=40),
    calls=st.lists(
        st.tuples(st.text(min_size=1, max_size=5), st.text(min_size=1, max_size=5), st.text(max_size=30)),
        max_size=3,
    ),
)
@settings(max_examples=100, deadline=None)
def test_round_trip(content: str, calls: list) -> None:
    doc = _completion(content, calls, "tool_calls" if calls else "stop")
    a = wire.from_json_body("chat_completions", doc)
    b = wire.reassemble("chat_completions", b"".join(chat.encode_events(doc, include_usage=True)))
    assert (a.text, a.tool_calls, a.finish_reasons, a.usage) == (
        b.text,
        b.tool_calls,
        b.finish_reasons,
        b.usage,
    )
