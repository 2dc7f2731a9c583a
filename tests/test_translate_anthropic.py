"""Responses <-> Anthropic Messages translation: property tests (hypothesis) for requests and
event streams, and golden tests against streams recorded from the simulated provider
(``tests/data/translate``, recorded by ``record.py`` there).

Oracles are independent of the translator: the stream side is checked by reassembling the
translated Responses stream with ``codexgate.wire``'s own Responses reassembler and comparing
it with the Anthropic message that produced the input (or with the simulator's native
Responses answer to the same conversation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from codexgate.wire import anthropic as wire_anthropic
from codexgate.wire import reassemble
from codexgate.wire.sse import parse
from codexgate.wire.translate.anthropic import ResponsesStream, json_to_responses, request_to_anthropic

DATA = Path(__file__).parent / "data" / "translate"

# texts a client may send, except the translator's own placeholders for an empty or
# assistant-first conversation (the test tells those apart from the conversation's text)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40).filter(
    lambda t: t not in ("(continue)", "(empty)")
)
name = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(name, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def anthropic_messages(draw) -> tuple[dict[str, Any], frozenset[str]]:
    blocks = []
    custom = set()
    for i in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["text", "tool_use", "custom", "thinking"]))
        if kind == "text":
            blocks.append({"type": "text", "text": draw(text)})
        elif kind == "thinking":
            blocks.append({"type": "thinking", "thinking": draw(text), "signature": "sig"})
        elif kind == "tool_use":
            tool_input = draw(st.dictionaries(name, json_value, max_size=3))
            blocks.append({"type": "tool_use", "id": f"toolu_{i}", "name": draw(name), "input": tool_input})
        else:
            tool = "apply_patch"
            custom.add(tool)
            blocks.append(
                {"type": "tool_use", "id": f"toolu_{i}", "name": tool, "input": {"input": draw(text)}}
            )
    usage = {
        "input_tokens": draw(st.integers(0, 10**6)),
        "cache_read_input_tokens": draw(st.integers(0, 10**6)),
        "cache_creation_input_tokens": draw(st.integers(0, 10**6)),
        "output_tokens": draw(st.integers(0, 10**5)),
    }
    msg = {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": blocks,
        "stop_reason": draw(st.sampled_from(["end_turn", "tool_use", "max_tokens"])),
        "stop_sequence": None,
        "usage": usage,
    }
    return msg, frozenset(custom)


def _translate(frames: list[bytes], custom: frozenset[str], cuts: list[int]) -> bytes:
    raw = b"".join(frames)
    tr = ResponsesStream(custom)
    out = bytearray()
    start = 0
    for cut in sorted({c % (len(raw) + 1) for c in cuts}) + [len(raw)]:
        out += tr.feed(raw[start:cut])
        start = cut
    out += tr.close()
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(anthropic_messages(), st.lists(st.integers(0, 10**6), max_size=8))
def test_streamed_message_translates_to_an_equivalent_responses_stream(case, cuts) -> None:
    msg, custom = case
    out = _translate(wire_anthropic.encode_events(msg), custom, cuts)
    events = [json.loads(e.data) for e in parse(out)]
    kinds = [e["type"] for e in events]
    terminal = [k for k in kinds if k in ("response.completed", "response.incomplete", "response.failed")]
    assert kinds[0] == "response.created" and terminal == [kinds[-1]]
    assert kinds[-1] == (
        "response.incomplete" if msg["stop_reason"] == "max_tokens" else "response.completed"
    )
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    got = reassemble("responses", out)
    want = reassemble("anthropic_messages", b"".join(wire_anthropic.encode_events(msg)))
    assert got.text == want.text
    # one reasoning item per thinking block (the Responses reassembler joins items with newlines)
    assert got.reasoning == "\n".join(
        b["thinking"] for b in msg["content"] if b["type"] == "thinking" and b["thinking"]
    )
    assert got.response_model == "claude-sonnet-4-5"
    calls = [(c["call_id"], c["name"]) for c in got.tool_calls]
    assert calls == [(c["call_id"], c["name"]) for c in want.tool_calls]
    for call, block in zip(
        got.tool_calls, [b for b in msg["content"] if b["type"] == "tool_use"], strict=True
    ):
        if block["name"] in custom:
            assert call["type"] == "custom_tool_call" and call["arguments"] == block["input"]["input"]
        else:
            assert call["type"] == "function_call" and json.loads(call["arguments"]) == block["input"]
    u = msg["usage"]
    assert got.usage is not None
    assert (
        got.usage.input_tokens
        == u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    )
    assert got.usage.cache_read_tokens == u["cache_read_input_tokens"]
    assert got.usage.output_tokens == u["output_tokens"]


@settings(max_examples=100, deadline=None)
@given(anthropic_messages())
def test_json_answer_translates_like_the_stream(case) -> None:
    msg, custom = case
    doc = json.loads(json_to_responses(200, json.dumps(msg).encode(), custom))
    streamed = reassemble("responses", _translate(wire_anthropic.encode_events(msg), custom, []))
    assert doc["output"] == streamed.response["output"]
    assert doc["usage"] == streamed.response["usage"]
    assert doc["status"] == streamed.response["status"]


def test_an_error_event_becomes_response_failed_and_an_error_body_an_openai_error() -> None:
    msg = {"id": "m", "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "par"}], "usage": {}}
    frames = wire_anthropic.encode_events(msg, error={"type": "overloaded_error", "message": "busy"})
    got = reassemble("responses", _translate(frames, frozenset(), []))
    assert got.failed and got.error_type == "server_is_overloaded" and got.error_message == "busy"
    body = json.loads(
        json_to_responses(429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}')
    )
    assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["message"] == "slow"


# ------------------------------------------------------------------ requests

call_id = st.from_regex(r"call_[a-z0-9]{4}", fullmatch=True)


@st.composite
def responses_inputs(draw) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(
            st.sampled_from(["user", "assistant", "developer", "call", "custom", "reasoning", "search"])
        )
        if kind in ("user", "assistant", "developer"):
            part = "output_text" if kind == "assistant" else "input_text"
            parts = [{"type": part, "text": draw(text)} for _ in range(draw(st.integers(1, 3)))]
            items.append({"type": "message", "role": kind, "content": parts})
        elif kind in ("call", "custom"):
            cid = draw(call_id)
            if kind == "call":
                args = json.dumps(draw(st.dictionaries(name, json_value, max_size=3)))
                items.append({"type": "function_call", "call_id": cid, "name": draw(name), "arguments": args})
                items.append({"type": "function_call_output", "call_id": cid, "output": draw(text)})
            else:
                items.append(
                    {"type": "custom_tool_call", "call_id": cid, "name": "apply_patch", "input": draw(text)}
                )
                items.append({"type": "custom_tool_call_output", "call_id": cid, "output": draw(text)})
        elif kind == "reasoning":
            items.append({"type": "reasoning", "encrypted_content": "opaque", "summary": []})
        else:
            items.append({"type": "web_search_call", "id": "ws_1", "status": "completed"})
    return items


@settings(max_examples=150, deadline=None)
@given(responses_inputs())
def test_request_translation_keeps_the_conversation_and_pairs_every_tool_result(items) -> None:
    body = {
        "model": "gpt-5-codex",
        "input": items,
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
            {"type": "custom", "name": "apply_patch", "description": "patch"},
        ],
        "stream": True,
    }
    t = request_to_anthropic(body, "claude-sonnet-4-5")
    out = t.body
    json.dumps(out)
    assert out["model"] == "claude-sonnet-4-5" and out["stream"] is True and out["max_tokens"] > 0
    msgs = out["messages"]
    assert msgs and msgs[0]["role"] == "user" and {m["role"] for m in msgs} <= {"user", "assistant"}
    # every tool_result answers a tool_use of the turn right before it
    for i, m in enumerate(msgs):
        results = [b["tool_use_id"] for b in m["content"] if b["type"] == "tool_result"]
        if results:
            prev = msgs[i - 1]
            assert prev["role"] == "assistant"
            assert set(results) <= {b["id"] for b in prev["content"] if b["type"] == "tool_use"}
    # the conversation's text, in order: developer text in system, the rest in messages
    want = [
        p["text"]
        for it in items
        if it["type"] == "message" and it["role"] != "developer"
        for p in it["content"]
        if p["text"]
    ]
    got = [
        b["text"]
        for m in msgs
        for b in m["content"]
        if b["type"] == "text" and b["text"] not in ("(continue)",)
    ]
    assert [g for g in got if g != "(empty)"] == want
    dev = [p["text"] for it in items if it.get("role") == "developer" for p in it["content"] if p["text"]]
    assert [b["text"] for b in out.get("system", [])] == dev
    # custom tool calls carry their raw input as the one string property
    customs = [it for it in items if it["type"] == "custom_tool_call"]
    uses = [b for m in msgs for b in m["content"] if b["type"] == "tool_use" and b["name"] == "apply_patch"]
    assert [u["input"] for u in uses] == [{"input": c["input"]} for c in customs]
    assert t.custom_tools == {"apply_patch"}
    if any(it["type"] == "reasoning" for it in items):
        assert any("reasoning" in d for d in t.dropped)
    if any(it["type"] == "web_search_call" for it in items):
        assert any("web_search_call" in d for d in t.dropped)


def test_hosted_tools_are_dropped_and_named() -> None:
    t = request_to_anthropic({"input": "hi", "tools": [{"type": "web_search"}]}, "claude-sonnet-4-5")
    assert "tools" not in t.body and any("web_search" in d for d in t.dropped)


# ------------------------------------------------------------------ golden (recorded simulator streams)


def _golden(case: str) -> tuple[bytes, bytes]:
    return (DATA / f"anthropic_{case}.sse").read_bytes(), (DATA / f"responses_{case}.sse").read_bytes()


def test_golden_text_stream_matches_the_native_responses_answer() -> None:
    anthropic_raw, responses_raw = _golden("text")
    got = reassemble("responses", _translate([anthropic_raw], frozenset(), [7, 100, 333]))
    native = reassemble("responses", responses_raw)
    assert got.text == native.text and got.text.startswith("sim: ")
    assert got.terminal and not got.failed and got.finish_reasons == native.finish_reasons == ["completed"]
    assert got.usage.input_tokens == reassemble("anthropic_messages", anthropic_raw).usage.input_tokens


def test_golden_tool_call_stream_matches_the_native_responses_answer() -> None:
    anthropic_raw, responses_raw = _golden("tool_call")
    got = reassemble("responses", _translate([anthropic_raw], frozenset(), [50, 51, 600]))
    native = reassemble("responses", responses_raw)
    assert [(c["name"], json.loads(c["arguments"])) for c in got.tool_calls] == [
        (c["name"], json.loads(c["arguments"])) for c in native.tool_calls
    ]
    assert (
        got.tool_calls[0]["call_id"]
        == reassemble("anthropic_messages", anthropic_raw).tool_calls[0]["call_id"]
    )
