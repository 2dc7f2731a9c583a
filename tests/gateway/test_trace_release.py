"""Once a call's row is written, the flow drops its parsed request (body, items, text) and its
stream tap: the row keeps what it stored, and both are freed by reference counting while the
flow object (which mitmproxy frees only through the cycle collector) is still alive."""

from __future__ import annotations

import gc
import json
import weakref
from pathlib import Path

import duckdb
from mitmproxy.test import taddons

from addons.flowstate import get_state
from addons.tracing import Tracing
from codexgate.sink.sink import TraceSink
from tests.gateway.flows import Pipeline, demo_vault, model_flow

MARKER = "release-marker-7c1e"


def _alive(kind: type, test) -> bool:  # type: ignore[no-untyped-def]
    return any(type(o) is kind and test(o) for o in gc.get_objects())


async def test_the_parsed_request_is_released_after_the_row(tmp_path: Path) -> None:
    demo = demo_vault(tmp_path)
    p = Pipeline(demo)
    tracing = Tracing()
    sink = TraceSink(tmp_path / "traces", convert_in="thread")
    sink.start()
    tracing.sink = sink
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"{MARKER} {i}"}]}
        for i in range(3)
    ]
    finished: list[dict] = []
    gc.disable()  # only reference counting may free the body below
    try:
        with taddons.context(*p.chain, tracing):
            # sent as bytes: the only dict left with this metadata is the one intake parsed
            raw = json.dumps({"model": "gpt-5-codex", "input": items, "metadata": {"m": MARKER}}).encode()
            f = model_flow(demo.keys["alice"], raw)
            await p.run(f)
            state = get_state(f)
            assert state is not None and state.request.body is not None and len(state.request.items) == 3
            state.record.finishers.append(lambda row: finished.append(row))
            # a streamed call's tap (its callbacks point back at the flow and its state)
            tap = tracing._make_tap(f, state, "")
            state.record.tap = tap
            tap(b'data: {"type": "response.created", "response": {"id": "resp_1"}}\n\n')
            tap_alive = weakref.ref(tap)
            del tap
            tracing._write(f, state, tap_alive().result(), outcome="ok", status_code=200)
            assert finished and MARKER in finished[0]["request_body"]  # finishers ran before the release
            assert state.request.body is None and state.request.items == [] and state.request.body_text is None
            assert state.request.new_items is None
            assert state.request.content_digests  # small, kept: digests are what controls share
            assert state.record.traced and state.record.tap is None
            assert tap_alive() is None  # freed by reference counting: no cycle through the state
            # the flow is still referenced here; its parsed body is not on the heap any more
            assert not _alive(dict, lambda d: d.get("metadata") == {"m": MARKER})
    finally:
        gc.enable()
        sink.close()
    rows = duckdb.sql(
        f"select request_body, new_input_items from read_parquet('{tmp_path}/traces/**/*.parquet')"
    ).fetchall()
    assert len(rows) == 1
    stored_body, new_items = rows[0]
    assert json.loads(stored_body)["input"] == items
    assert json.loads(new_items) == items  # the first call of a session: every item is new
