"""Wire readers shared by the three APIs: input items, the one item digest, instructions, enums.
Every reader must accept any JSON shape without raising."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexgate import wire
from codexgate.core import schema
from codexgate.wire import Api, Outcome, input_items, instructions_text, item_digest
from codexgate.wire.common import content_digest

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
APIS = [Api.RESPONSES, Api.CHAT, Api.ANTHROPIC, Api.OTHER, None, "bogus"]


@pytest.mark.parametrize(
    ("api", "body", "expected"),
    [
        (Api.RESPONSES, {"input": "hi"}, [{"type": "message", "role": "user", "content": "hi"}]),
        (Api.RESPONSES, {"input": [1, "x", None]}, [1, "x", None]),
        (Api.RESPONSES, {"input": {"type": "message"}}, []),
        (Api.RESPONSES, {"input": 7}, []),
        (Api.RESPONSES, {"messages": [{"role": "user"}]}, []),
        (Api.CHAT, {"messages": [{"role": "user", "content": "a"}]}, [{"role": "user", "content": "a"}]),
        (Api.CHAT, {"messages": "nope"}, []),
        (Api.ANTHROPIC, {"messages": [{"role": "user", "content": []}]}, [{"role": "user", "content": []}]),
        (None, {"input": "hi"}, [{"type": "message", "role": "user", "content": "hi"}]),
        (None, {"messages": [1]}, [1]),
        (Api.OTHER, {"input": "hi"}, []),
        (Api.RESPONSES, None, []),
        (Api.RESPONSES, [1, 2], []),
        (Api.RESPONSES, "body", []),
    ],
)
def test_input_items_table(api: str | None, body: object, expected: list) -> None:
    assert input_items(api, body) == expected


@given(api=st.sampled_from(APIS), body=JSON)
@settings(max_examples=300, deadline=None)
def test_readers_never_raise(api: str | None, body: object) -> None:
    items = input_items(api, body)
    assert isinstance(items, list)
    for item in items:
        assert isinstance(item_digest(item), str)
    text = instructions_text(api, body)
    assert text is None or isinstance(text, str)
    assert isinstance(wire.from_json_body(api, body), wire.Reassembled)


def test_digest_uses_ids_except_for_tool_outputs() -> None:
    call = {"type": "function_call", "id": "fc_1", "call_id": "c1", "arguments": "{}"}
    assert item_digest(call) == "function_call:fc_1"
    assert item_digest({**call, "arguments": '{"x":1}'}) == item_digest(call)  # same id, same item
    for kind in wire.TOOL_OUTPUT_TYPES:
        a = {"type": kind, "call_id": "c1", "output": "one"}
        b = {"type": kind, "call_id": "c1", "output": "two"}
        assert item_digest(a) != item_digest(b)  # outputs are identified by content
        assert item_digest(a) == item_digest(dict(reversed(a.items())))  # key order does not matter
    # a non-string id is content, not identity
    assert item_digest({"type": "message", "id": [1], "content": "a"}) != item_digest(
        {"type": "message", "id": [1], "content": "b"}
    )


@pytest.mark.parametrize(
    "item",
    [None, 1, "x", [], [[[]]], {"id": {"a": 1}}, {"id": None, "call_id": 5}, {"type": ["x"], "id": "i"}],
)
def test_digest_of_odd_items(item: object) -> None:
    assert item_digest(item) == item_digest(json.loads(json.dumps(item)))


def test_digest_of_unserialisable_depth_does_not_raise() -> None:
    deep: list = []
    cur = deep
    for _ in range(5000):
        nxt: list = []
        cur.append(nxt)
        cur = nxt
    assert isinstance(item_digest(deep), str)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"instructions": "be brief", "input": []}, "be brief"),
        (
            {"system": [{"type": "text", "text": "s"}]},
            json.dumps([{"type": "text", "text": "s"}], sort_keys=True),
        ),
        (
            {"input": [{"role": "developer", "content": "base"}, {"role": "user", "content": "u"}]},
            json.dumps("base"),
        ),
        ({"input": [{"role": "user", "content": "u"}]}, None),
        ({"instructions": "", "input": [{"role": "system", "content": [1]}]}, "[1]"),
    ],
)
def test_instructions_text_table(body: dict, expected: str | None) -> None:
    assert instructions_text(Api.RESPONSES, body) == expected


def test_enums_match_the_trace_schema() -> None:
    doc = schema.DESCRIPTIONS
    assert set(doc["outcome"].replace(" ", "").split("|")) == {o.value for o in Outcome}
    assert set(doc["openai_api_type"].replace(" ", "").split("|")) == {a.value for a in Api}


MESSAGE = st.fixed_dictionaries(
    {"type": st.just("message"), "role": st.sampled_from(["developer", "system", "user", "assistant"]), "content": JSON}
)


@settings(max_examples=200, deadline=None)
@given(st.lists(MESSAGE | JSON, max_size=6), st.sampled_from([None, "", "be brief", {"k": [1]}]))
def test_instructions_hash_is_the_hash_of_instructions_text(items: list, instructions: object) -> None:
    """The memoised hash is sha256 of ``instructions_text``, on a miss and on the hit after it."""
    import hashlib

    body = {"input": items} if instructions is None else {"input": items, "instructions": instructions}
    its = input_items(Api.RESPONSES, body)
    contents = [content_digest(i) for i in its]
    text = instructions_text(Api.RESPONSES, body)
    want = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest() if text is not None else None
    assert wire.instructions_hash(Api.RESPONSES, body, its, contents) == want
    assert wire.instructions_hash(Api.RESPONSES, body, its, contents) == want  # memo hit


def test_instructions_hash_memo_tells_prompts_apart_and_stays_bounded() -> None:
    from codexgate.wire import common

    def body(prompt: str) -> dict:
        return {"input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": prompt}]},
                          {"type": "message", "role": "user", "content": "hi"}]}

    seen = set()
    for i in range(common._INSTRUCTIONS_MEMO.size + 50):
        b = body(f"prompt {i}")
        its = input_items(Api.RESPONSES, b)
        seen.add(wire.instructions_hash(Api.RESPONSES, b, its, [content_digest(x) for x in its]))
    assert len(seen) == common._INSTRUCTIONS_MEMO.size + 50
    assert len(common._INSTRUCTIONS_MEMO._d) <= common._INSTRUCTIONS_MEMO.size
    # a user message that changes does not change the hash of the same developer prompt
    a, b = body("same"), body("same")
    b["input"][1]["content"] = "something else"
    ha, hb = ([wire.instructions_hash(Api.RESPONSES, x, input_items(Api.RESPONSES, x),
                                      [content_digest(i) for i in input_items(Api.RESPONSES, x)])] for x in (a, b))
    assert ha == hb and ha[0] is not None
