"""The SSE parser and the per-format reassemblers, fed real wire-format bytes in awkward chunkings."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from addons.stream_tap import StreamTap
from codexgate.wire import SseParser, from_json_body
from codexgate.wire.anthropic import Reassembler as AnthropicReassembler
from codexgate.wire.chat import Reassembler as ChatReassembler
from codexgate.wire.responses import Reassembler as ResponsesReassembler
from codexgate.wire.sse import StreamWatch


def _sse(events: list[tuple[str | None, dict | str]]) -> bytes:
    out = b""
    for name, data in events:
        if name:
            out += f"event: {name}\r\n".encode()
        payload = data if isinstance(data, str) else json.dumps(data)
        out += f"data: {payload}\r\n\r\n".encode()
    return out


RESPONSES = _sse(
    [
        (
            "response.created",
            {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5-codex"}},
        ),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "Hel"}),
        ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "lo"}),
        (
            "response.output_item.done",
            {
                "type": "response.output_item.done",
                "output_index": 1,
                "item": {
                    "type": "function_call",
                    "name": "shell",
                    "arguments": '{"command":["ls"]}',
                    "call_id": "c1",
                },
            },
        ),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {
                    "id": "resp_1",
                    "model": "gpt-5-codex",
                    "status": "completed",
                    "output": [
                        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]},
                        {"type": "message", "content": [{"type": "output_text", "text": "Hello"}]},
                        {
                            "type": "function_call",
                            "name": "shell",
                            "arguments": '{"command":["ls"]}',
                            "call_id": "c1",
                        },
                    ],
                    "usage": {
                        "input_tokens": 100,
                        "input_tokens_details": {"cached_tokens": 40},
                        "output_tokens": 30,
                        "output_tokens_details": {"reasoning_tokens": 10},
                    },
                },
            },
        ),
    ]
)


def _feed_in_chunks(reassembler, data: bytes, size: int) -> int:
    parser = SseParser()
    firsts = 0
    for i in range(0, len(data), size):
        for ev in parser.feed(data[i : i + size]):
            firsts += reassembler.on_event(ev)
    for ev in parser.close():
        firsts += reassembler.on_event(ev)
    return firsts


def test_responses_stream_reassembled_at_any_chunking() -> None:
    for size in (1, 7, 64, len(RESPONSES)):
        r = ResponsesReassembler()
        assert _feed_in_chunks(r, RESPONSES, size) == 1  # exactly one "first token"
        res = r.result()
        assert res.terminal and not res.failed
        assert (res.text, res.reasoning, res.response_id) == ("Hello", "think", "resp_1")
        assert res.tool_calls == [
            {"call_id": "c1", "name": "shell", "type": "function_call", "arguments": '{"command":["ls"]}'}
        ]
        assert (
            res.usage.input_tokens,
            res.usage.cache_read_tokens,
            res.usage.output_tokens,
            res.usage.reasoning_tokens,
        ) == (
            100,
            40,
            30,
            10,
        )
        assert res.event_count == 5


def test_responses_stream_cut_before_completion_keeps_partial_output() -> None:
    cut = RESPONSES[: RESPONSES.index(b"event: response.completed")]
    r = ResponsesReassembler()
    _feed_in_chunks(r, cut, 13)
    res = r.result()
    assert not res.terminal and res.usage is None
    assert res.tool_calls[0]["name"] == "shell"


def test_responses_failed_event() -> None:
    data = _sse(
        [
            (
                "response.failed",
                {
                    "type": "response.failed",
                    "response": {"id": "r", "error": {"code": "server_error", "message": "boom"}},
                },
            )
        ]
    )
    r = ResponsesReassembler()
    _feed_in_chunks(r, data, 5)
    res = r.result()
    assert res.failed and res.terminal and res.error_type == "server_error" and res.error_message == "boom"


def test_chat_stream_with_tool_call_and_usage() -> None:
    chunks = [
        {
            "id": "c",
            "model": "gpt-4.1",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
        },
        {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {"index": 0, "id": "t1", "function": {"name": "get", "arguments": '{"a"'}}
                        ]
                    },
                }
            ],
        },
        {
            "id": "c",
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}
            ],
        },
        {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {
            "id": "c",
            "choices": [],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": 9,
                "prompt_tokens_details": {"cached_tokens": 20},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
    ]
    data = _sse([(None, c) for c in chunks] + [(None, "[DONE]")])
    r = ChatReassembler()
    _feed_in_chunks(r, data, 11)
    res = r.result()
    assert res.terminal and res.text == "Hi" and res.finish_reasons == ["tool_calls"]
    assert res.tool_calls[0]["arguments"] == '{"a": 1}' and res.tool_calls[0]["call_id"] == "t1"
    assert (res.usage.input_tokens, res.usage.cache_read_tokens, res.usage.output_tokens) == (50, 20, 9)


def test_anthropic_stream_usage_includes_cache_in_input() -> None:
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "model": "claude-sonnet-4-5",
                    "usage": {
                        "input_tokens": 10,
                        "cache_read_input_tokens": 70,
                        "cache_creation_input_tokens": 5,
                    },
                },
            },
        ),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Yo"}},
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "tu1", "name": "ls", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"p": "/"}'},
            },
        ),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    r = AnthropicReassembler()
    _feed_in_chunks(r, _sse(events), 17)
    res = r.result()
    assert res.terminal and res.text == "Yo" and res.finish_reasons == ["tool_use"]
    assert json.loads(res.tool_calls[0]["arguments"]) == {"p": "/"}
    u = res.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_creation_tokens, u.output_tokens) == (85, 70, 5, 12)


def test_json_error_body() -> None:
    res = from_json_body("responses", {"error": {"code": "rate_limit_exceeded", "message": "slow down"}})
    assert res.failed and res.error_type == "rate_limit_exceeded"


def _reference_events(raw: bytes) -> list[tuple[str | None, str]]:
    """The SSE rules written plainly (whole body, line by line), as the oracle for the parser."""
    out: list[tuple[str | None, str]] = []
    event: str | None = None
    data: list[str] = []
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for line in complete + ([tail] if tail else []):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if data or event is not None:
                out.append((event, "\n".join(data)))
            event, data = None, []
            continue
        if line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if data:
        out.append((event, "\n".join(data)))
    return out


_SSE_LINES = st.lists(
    st.sampled_from(
        [
            b"event: response.output_text.delta",
            b'data: {"delta":"h\xc3\xa9"}',
            b"data:x",
            b"data: ",
            b": keep-alive",
            b"",
            b"id: 7",
            b"retry: 10",
            b"event:",
            b"data: \xe2\x82",
            b"\xac more",
        ]
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    lines=_SSE_LINES, crlf=st.booleans(), cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12)
)
def test_the_parser_gives_the_same_events_at_any_chunking(
    lines: list[bytes], crlf: bool, cuts: list[int]
) -> None:
    raw = (b"\r\n" if crlf else b"\n").join(lines)
    bounds = sorted({c % (len(raw) + 1) for c in cuts})
    parser = SseParser()
    got = []
    prev = 0
    for b in [*bounds, len(raw)]:
        got += parser.feed(raw[prev:b])
        prev = b
    got += parser.close()
    assert [(e.event, e.data) for e in got] == _reference_events(raw)


def _watch_oracle(raw: bytes) -> tuple[bool, str | None, int]:
    """What the relay's stream watch must report, written plainly: every complete event counts;
    terminal kinds by ``[DONE]``, the event name, else the JSON type; the id of the first
    ``response.created`` / ``message_start``."""
    terminal, rid, n = False, None, 0
    for ev in SseParser().feed(raw):
        n += 1
        try:
            doc = json.loads(ev.data)
        except ValueError:
            doc = None
        if ev.data.strip() == "[DONE]":
            kind = "[DONE]"
        elif ev.event:
            kind = ev.event
        elif isinstance(doc, dict):
            kind = doc.get("type") if isinstance(doc.get("type"), str) else "chunk"
        else:
            kind = None
        terminal = terminal or kind in (
            "response.completed", "response.failed", "response.incomplete", "message_stop", "error", "[DONE]"
        )
        if rid is None and kind in ("response.created", "message_start") and isinstance(doc, dict):
            inner = doc.get("response") or doc.get("message")
            rid = inner.get("id") if isinstance(inner, dict) and isinstance(inner.get("id"), str) else None
    return terminal, rid, n


_WATCH_EVENTS = st.lists(
    st.sampled_from(
        [
            (None, "[DONE]"),
            ("response.created", {"type": "response.created", "response": {"id": "resp_w"}}),
            (None, {"type": "message_start", "message": {"id": "msg_w"}}),
            ("response.output_text.delta", {"type": "response.output_text.delta", "delta": "x"}),
            ("ping", {"type": "ping"}),
            (None, {"choices": []}),
            (None, "not json"),
            ("response.completed", {"type": "response.completed", "response": {"id": "resp_w"}}),
            (None, {"type": "error", "error": {"message": "boom"}}),
            ("message_stop", {"type": "message_stop"}),
        ]
    ),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(events=_WATCH_EVENTS, cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8))
def test_stream_watch_reports_what_the_stream_shows_at_any_chunking(events: list, cuts: list[int]) -> None:
    """The relay's watch and the tap's watch (fed from the tap's own parse) agree with the oracle."""
    raw = _sse(events)
    bounds = sorted({c % (len(raw) + 1) for c in cuts})
    fed = StreamWatch()
    tap = StreamTap("responses", "", on_first_token=lambda t: None, on_terminal=lambda: None)
    prev = 0
    for b in [*bounds, len(raw)]:
        fed.feed(raw[prev:b])
        tap(raw[prev:b])
        prev = b
    want = _watch_oracle(raw)
    assert (fed.terminal, fed.response_id, fed.sequence) == want
    assert (tap.watch.terminal, tap.watch.response_id, tap.watch.sequence) == want
