"""Deterministic replay: serve a recorded session's responses back, in order, from the traces.

``ReplayServer`` answers model calls (OpenAI Responses, streamed or not; Chat Completions and
Anthropic Messages as JSON) with what the model said in the recording, so an agent run can be
re-executed offline against exactly the recorded answers. Requests are matched by their
position in the session and checked by a content hash of the input items that are new in that
call (ids, encrypted reasoning and cache keys left out, since those differ between runs);
every mismatch is reported as a divergence, with what was expected and what arrived.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from analytics.db import TraceStore
from codexgate.wire import Api, input_items
from codexgate.wire import responses as wire_responses

_VOLATILE_KEYS = frozenset({"id", "encrypted_content", "status"})


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in sorted(value.items()) if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def input_items_of(body: Any) -> list[Any]:
    """The input items of a recorded or live request body (any API; never raises)."""
    return input_items(None, body)


def content_hash(items: list[Any]) -> str:
    """Hash of input items that ignores what legitimately differs between two runs."""
    kept = [i for i in items if not (isinstance(i, dict) and i.get("type") == "reasoning")]
    return hashlib.sha256(json.dumps(_normalise(kept), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class RecordedCall:
    index: int
    api: str
    status_code: int
    streaming: bool
    response: dict[str, Any] | None
    error_message: str | None
    item_count: int
    new_hash: str


@dataclass
class Divergence:
    position: int
    reason: str
    expected: str
    got: str


@dataclass
class ReplayReport:
    served: int = 0
    recorded: int = 0
    divergences: list[Divergence] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"replayed {self.served} of {self.recorded} recorded calls; {len(self.divergences)} divergence(s)"
        ]
        for d in self.divergences:
            lines.append(f"  call {d.position}: {d.reason} (expected {d.expected}, got {d.got})")
        return "\n".join(lines)


_SQL = """
SELECT call_index, start_time, openai_api_type, status_code, streaming, request_body, response_body,
       error_message, new_input_start
FROM {rel}
WHERE session_id = ? AND refusal_reason IS NULL AND request_body IS NOT NULL
ORDER BY start_time, call_index
"""


def load_session(store: TraceStore, session_id: str) -> list[RecordedCall]:
    frame = store.query(_SQL.format(rel=store.relation()), [session_id])
    calls: list[RecordedCall] = []
    for row in frame.iter_rows(named=True):
        body = json.loads(row["request_body"])
        items = input_items_of(body)
        start = row["new_input_start"] or 0
        calls.append(
            RecordedCall(
                index=len(calls),
                api=row["openai_api_type"] or Api.RESPONSES,
                status_code=row["status_code"] or 200,
                streaming=bool(row["streaming"]),
                response=json.loads(row["response_body"]) if row["response_body"] else None,
                error_message=row["error_message"],
                item_count=len(items),
                new_hash=content_hash(items[start:]),
            )
        )
    return calls


def responses_sse(response: dict[str, Any]) -> bytes:
    """The Responses SSE stream that yields ``response`` (the wire encoder: messages, function and
    custom-tool calls, reasoning summaries)."""
    return wire_responses.encode_sse(response)


class ReplayServer:
    """An HTTP server that plays one recorded session back."""

    def __init__(self, calls: list[RecordedCall]) -> None:
        self.calls = calls
        self.report = ReplayReport(recorded=len(calls))
        self._position = 0
        self._prev_count = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        for path in (
            "/v1/responses",
            "/responses",
            "/v1/chat/completions",
            "/chat/completions",
            "/v1/messages",
        ):
            app.router.add_post(path, self._handle)
        app.router.add_get("/v1/responses", self._websocket_probe)
        app.router.add_get("/responses", self._websocket_probe)
        app.router.add_get("/_replay/report", self._report)
        return app

    async def _websocket_probe(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"error": {"message": "replay serves HTTP only", "type": "invalid_request_error"}}, status=426
        )

    async def _report(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "served": self.report.served,
                "recorded": self.report.recorded,
                "divergences": [d.__dict__ for d in self.report.divergences],
            }
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        items = input_items_of(body)
        pos = self._position
        if pos >= len(self.calls):
            self.report.divergences.append(
                Divergence(pos, "more calls than recorded", f"{len(self.calls)} calls", f"call {pos + 1}")
            )
            return web.json_response(
                {
                    "error": {
                        "message": f"replay: the recording has only {len(self.calls)} calls",
                        "type": "invalid_request_error",
                        "code": "replay_exhausted",
                    }
                },
                status=400,
            )
        call = self.calls[pos]
        self._position += 1
        self.report.served += 1
        got = content_hash(items[min(self._prev_count, len(items)) :])
        self._prev_count = len(items)
        if got != call.new_hash:
            self.report.divergences.append(
                Divergence(pos, "new input differs from the recording", call.new_hash, got)
            )
        if call.status_code >= 400 or call.response is None:
            msg = call.error_message or f"recorded call {pos} failed with HTTP {call.status_code}"
            return web.json_response(
                {"error": {"message": msg, "type": "server_error", "code": "replayed_error"}},
                status=call.status_code if call.status_code >= 400 else 502,
            )
        if call.api == Api.RESPONSES and isinstance(body, dict) and body.get("stream"):
            return web.Response(body=responses_sse(call.response), content_type="text/event-stream")
        return web.json_response(call.response)
