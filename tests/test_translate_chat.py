"""Responses <-> Chat Completions translation: property tests (hypothesis). The oracle is
``codexgate.wire``: a Chat completion is streamed with ``wire.chat.encode_events``, translated,
and reassembled with the Responses reassembler; the result must say what the completion said."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from codexgate.wire import chat as wire_chat
from codexgate.wire import reassemble
from codexgate.wire.sse import parse
from codexgate.wire.translate.chat import ResponsesStream, json_to_responses, request_to_chat

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
name = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)


@st.composite
def completions(draw) -> tuple[dict[str, Any], frozenset[str]]:
    content = draw(st.one_of(st.none(), text.filter(bool)))
    calls, custom = [], set()
    for i in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            custom.add("apply_patch")
            args = json.dumps({"input": draw(text)})
            fname = "apply_patch"
        else:
            args = json.dumps(draw(st.dictionaries(name, st.integers() | text, max_size=3)))
            fname = draw(name.filter(lambda n: n != "apply_patch"))
        calls.append({"id": f"call_{i}", "type": "function", "function": {"name": fname, "arguments": args}})
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    usage = {
        "prompt_tokens": draw(st.integers(0, 10**6)),
        "completion_tokens": draw(st.integers(0, 10**5)),
        "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, 1000))},
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    finish = draw(st.sampled_from(["stop", "tool_calls", "length"]))
    doc = {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "llama3",
           "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}  # fmt: skip
    return doc, frozenset(custom)


def _translate(doc: dict[str, Any], custom: frozenset[str], cuts: list[int]) -> bytes:
    raw = b"".join(wire_chat.encode_events(doc, include_usage=True))
    tr = ResponsesStream(custom)
    out, start = bytearray(), 0
    for cut in sorted({c % (len(raw) + 1) for c in cuts}) + [len(raw)]:
        out += tr.feed(raw[start:cut])
        start = cut
    return bytes(out + tr.close())


@settings(max_examples=150, deadline=None)
@given(completions(), st.lists(st.integers(0, 10**5), max_size=6))
def test_streamed_completion_translates_to_an_equivalent_responses_stream(case, cuts) -> None:
    doc, custom = case
    out = _translate(doc, custom, cuts)
    events = [json.loads(e.data) for e in parse(out)]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == (
        "response.incomplete" if doc["choices"][0]["finish_reason"] == "length" else "response.completed"
    )
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    got = reassemble("responses", out)
    msg = doc["choices"][0]["message"]
    assert got.text == (msg["content"] or "")
    want_calls = msg.get("tool_calls", [])
    assert [(c["call_id"], c["name"]) for c in got.tool_calls] == [
        (c["id"], c["function"]["name"]) for c in want_calls
    ]
    for call, want in zip(got.tool_calls, want_calls, strict=True):
        if want["function"]["name"] in custom:
            assert call["arguments"] == json.loads(want["function"]["arguments"])["input"]
        else:
            assert json.loads(call["arguments"]) == json.loads(want["function"]["arguments"])
    assert got.usage.input_tokens == doc["usage"]["prompt_tokens"]
    assert got.usage.cache_read_tokens == doc["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert got.usage.output_tokens == doc["usage"]["completion_tokens"]
    whole = json.loads(json_to_responses(200, json.dumps(doc).encode(), custom))
    assert sorted(o["type"] for o in whole["output"]) == sorted(o["type"] for o in got.response["output"])
    assert whole["usage"] == got.response["usage"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["user", "assistant", "developer", "call", "reasoning"]), text), max_size=8
    )
)
def test_request_translation_keeps_messages_and_pairs_tool_outputs(spec) -> None:
    items: list[dict[str, Any]] = []
    for i, (kind, value) in enumerate(spec):
        if kind == "call":
            items.append(
                {"type": "function_call", "call_id": f"c{i}", "name": "exec_command", "arguments": "{}"}
            )
            items.append({"type": "function_call_output", "call_id": f"c{i}", "output": value})
        elif kind == "reasoning":
            items.append({"type": "reasoning", "encrypted_content": "x"})
        else:
            part = "output_text" if kind == "assistant" else "input_text"
            items.append({"type": "message", "role": kind, "content": [{"type": part, "text": value}]})
    t = request_to_chat({"input": items, "stream": True, "instructions": "be brief"}, "llama3")
    msgs = t.body["messages"]
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert t.body["stream_options"] == {"include_usage": True}
    for i, m in enumerate(msgs):
        if m["role"] == "tool":  # answers a call of the assistant message right before the tool run
            j = i - 1
            while msgs[j]["role"] == "tool":
                j -= 1
            assert m["tool_call_id"] in {c["id"] for c in msgs[j]["tool_calls"]}
    texts = [
        m["content"]
        for m in msgs[1:]
        if m["role"] in ("user", "assistant", "system") and m.get("content") is not None
    ]
    want = [v for k, v in spec if k in ("user", "assistant", "developer")]
    assert texts == want
    if any(k == "reasoning" for k, _ in spec):
        assert any("reasoning" in d for d in t.dropped)
