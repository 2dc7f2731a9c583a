"""Codex headers are untrusted: ``from_request`` must never raise and must keep only bounded string ids."""

from __future__ import annotations

import json

import pytest
from mitmproxy import http

from addons import codex_session
from codexgate.wire.codex import MAX_ID_CHARS, SessionTracker, context_from_headers

DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000


def _request(headers: dict[str, str]) -> http.Request:
    return http.Request.make("POST", "http://gw.test/v1/responses", b"{}", headers)


HOSTILE_METADATA = [
    '{"session_id":[1]}',
    '{"session_id":{"a":1}}',
    '{"session_id":1,"thread_id":true,"turn_id":null,"window_id":1.5}',
    DEEP,
    DEEP_OBJECT,
    '{"session_id":"' + "s" * (MAX_ID_CHARS + 1) + '"}',
    "x" * 100_000,
    '{"session_id":"a"' + ', "pad":"' + "p" * 20_000 + '"}',
    "[1,2,3]",
    '"just a string"',
    "NaN",
    '{"session_id": NaN}',
    '{"session_id": "\\ud800"}',
    "{",
    "",
    "null",
]


@pytest.mark.parametrize("meta", HOSTILE_METADATA)
def test_hostile_turn_metadata_never_raises(meta: str) -> None:
    ctx = codex_session.from_request(_request({"x-codex-turn-metadata": meta}), None)
    for value in (ctx.session_id, ctx.thread_id, ctx.turn_id, ctx.window_id, ctx.request_kind):
        assert value is None or (isinstance(value, str) and len(value) <= MAX_ID_CHARS)
    if ctx.turn_metadata is not None:
        assert isinstance(json.loads(ctx.turn_metadata), dict)


@pytest.mark.parametrize(
    "name", ["session-id", "thread-id", "x-client-request-id", "x-codex-window-id", "x-openai-subagent"]
)
@pytest.mark.parametrize("value", ["", "s" * (MAX_ID_CHARS + 1), "s" * 100_000, "ok-id"])
def test_id_headers_kept_only_when_bounded(name: str, value: str) -> None:
    ctx = codex_session.from_request(_request({name: value}), None)
    got = {
        "session-id": ctx.session_id,
        "thread-id": ctx.thread_id,
        "x-client-request-id": ctx.client_request_id,
        "x-codex-window-id": ctx.window_id,
        "x-openai-subagent": ctx.subagent,
    }[name]
    assert got == (value if 0 < len(value) <= MAX_ID_CHARS else None)


@pytest.mark.parametrize(
    "body",
    [None, [], "text", 1, {"prompt_cache_key": [1]}, {"prompt_cache_key": {"a": 1}}, {"prompt_cache_key": 7}],
)
def test_hostile_body_cache_key_is_ignored(body: object) -> None:
    ctx = context_from_headers({}, body)
    assert ctx.prompt_cache_key is None and ctx.session_id is None and ctx.grouping_key is None


def test_real_codex_headers_are_read() -> None:
    meta = {
        "session_id": "sess-1",
        "thread_id": "thr-1",
        "turn_id": "turn-1",
        "request_kind": "turn",
        "window_id": "win-1",
    }
    ctx = codex_session.from_request(
        _request(
            {
                "x-codex-turn-metadata": json.dumps(meta),
                "x-client-request-id": "thr-1",
                "originator": "codex_exec",
                "user-agent": "codex_exec/0.171.0",
                "x-openai-subagent": "review",
            }
        ),
        {"prompt_cache_key": "thr-1"},
    )
    assert (ctx.session_id, ctx.thread_id, ctx.turn_id, ctx.request_kind, ctx.window_id) == (
        "sess-1",
        "thr-1",
        "turn-1",
        "turn",
        "win-1",
    )
    assert ctx.client_request_id == "thr-1" and ctx.subagent == "review" and ctx.originator == "codex_exec"
    assert json.loads(ctx.turn_metadata or "") == meta
    # headers win over metadata
    ctx = codex_session.from_request(
        _request({"session-id": "h", "x-codex-turn-metadata": json.dumps(meta)}), None
    )
    assert ctx.session_id == "h"


def test_session_tracker_finds_new_items_and_is_bounded() -> None:
    tracker = SessionTracker(max_sessions=2)
    assert tracker.observe("a", ["x", "y"]).new_start == 0
    d = tracker.observe("a", ["x", "y", "z"])
    assert (d.call_index, d.new_start, d.item_count) == (1, 2, 3)
    d = tracker.observe("a", ["x", "q"])
    assert (d.call_index, d.new_start) == (2, 1)
    tracker.observe("b", [])
    tracker.observe("c", [])
    assert tracker.observe("a", ["x"]).call_index == 0  # evicted (LRU of 2)
    assert tracker.observe(None, ["x"]).call_index == 0
