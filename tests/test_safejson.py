"""Bounded parsing of untrusted JSON: every input either parses to what ``json`` would give
(within the depth bound) or raises ``UntrustedJSONError`` — never ``RecursionError`` or
anything else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexgate.core.safejson import UntrustedJSONError, loads_bounded, loads_text, tree_depth

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=40,
)


def reference_depth(v: Any) -> int:
    if isinstance(v, dict):
        return 1 + max((reference_depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((reference_depth(x) for x in v), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 8))
def test_parses_like_json_within_the_bound_and_refuses_past_it(value: Any, limit: int) -> None:
    text = json.dumps(value)
    assert tree_depth(value, 100) == reference_depth(value)
    if reference_depth(value) <= limit:
        assert loads_text(text, max_depth=limit) == value
    else:
        with pytest.raises(UntrustedJSONError, match=f"deeper than {limit} levels"):
            loads_text(text, max_depth=limit)


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_deep_nesting_is_refused_not_a_recursion_error(depth: int) -> None:
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        with pytest.raises(UntrustedJSONError, match="deeper than 64 levels"):
            loads_text(text)


@pytest.mark.parametrize(
    "text",
    ['{"a": NaN}', '{"a": Infinity}', '{"a": 1e999}', '"\\ud800"', "{'a': 1}", '{"a": 1,}', "", "[1] x"],
)
def test_non_json_and_unrepresentable_numbers_are_refused(text: str) -> None:
    with pytest.raises(UntrustedJSONError) as info:
        loads_text(text)
    assert text[1:] not in info.value.reason or not text[1:]  # the reason never quotes the input


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_every_json_encoding_parses_to_the_same_document(codec: str) -> None:
    doc = {"model": "gpt-5", "input": [{"type": "message", "content": "héllo ✓"}]}
    raw = json.dumps(doc, ensure_ascii=False).encode(codec)
    assert loads_bounded(raw) == doc


def test_size_bounds_are_checked_before_parsing() -> None:
    with pytest.raises(UntrustedJSONError, match="larger than 10 bytes"):
        loads_bounded(b'{"a": "0123456789"}', max_bytes=10)
    with pytest.raises(UntrustedJSONError, match="longer than 5 characters"):
        loads_text('{"a": 1}', max_chars=5)
    with pytest.raises(UntrustedJSONError, match="not valid UTF-8"):
        loads_bounded(b'{"a": "\xff"}')
