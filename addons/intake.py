"""First addon in the chain: recognises gateway traffic and opens its per-flow state.

Classifies the API from the path, parses the JSON body (off the event loop when large),
reads Codex's session headers and the ``x-codexgate-metadata`` tags, and answers Codex's
WebSocket upgrade attempt with 426 so it falls back to HTTP at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ReverseMode

from addons import codex_session
from addons.api_shape import classify
from addons.codex_session import SessionTracker
from addons.errors import error_response
from addons.flowstate import STATE_KEY, FlowState
from addons.provider_hosts import ProviderHosts

log = logging.getLogger("codexgate.intake")

METADATA_HEADER = "x-codexgate-metadata"
_INLINE_PARSE_LIMIT = 256 * 1024  # bytes; larger bodies are decoded and parsed in a thread


def _parse(raw: bytes | None) -> tuple[dict[str, Any] | None, str | None]:
    if not raw:
        return None, None
    text = raw.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return None, text
    return (doc if isinstance(doc, dict) else None), text


@dataclass
class ParsedBody:
    body: dict[str, Any] | None
    text: str | None
    items: list[Any]
    digests: list[str]
    instructions_hash: str | None


def parse_request(req: http.Request, api: str) -> ParsedBody:
    """Decode (Content-Encoding), parse and digest a request body. Pure: safe in a thread."""
    try:
        raw = req.get_content(strict=False)
    except ValueError:
        raw = req.raw_content
    body, text = _parse(raw)
    items = codex_session.input_items(api, body)
    instructions = codex_session.instructions_text(api, body)
    return ParsedBody(
        body,
        text,
        items,
        [codex_session.item_digest(it) for it in items],
        hashlib.sha256(instructions.encode()).hexdigest() if instructions is not None else None,
    )


def parse_metadata_header(value: str | None) -> dict[str, str]:
    if not value:
        return {}
    try:
        doc = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k)[:128]: (v if isinstance(v, str) else json.dumps(v))[:1024] for k, v in doc.items()}


class Intake:
    def __init__(self, hosts: ProviderHosts) -> None:
        self.hosts = hosts
        self.sessions = SessionTracker()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if flow.response is not None or req.method == "CONNECT":
            return
        reverse = isinstance(flow.client_conn.proxy_mode, ReverseMode)
        if not reverse and not self.hosts.is_provider_host(req.pretty_host):
            return  # forward-proxy traffic to a non-provider host: not model traffic
        shape = classify(req.path, headers_anthropic="anthropic-version" in req.headers)
        state = FlowState(shape=shape, mode="reverse" if reverse else "forward")
        state.client_path = req.path.split("?", 1)[0]
        flow.metadata[STATE_KEY] = state
        if req.headers.get("upgrade", "").lower() == "websocket":
            # Codex's built-in provider tries a WebSocket first; 426 makes it use HTTP right away.
            flow.response = error_response(
                shape.family,
                426,
                "websocket_not_supported",
                "codexgate serves this API over HTTP; use HTTP streaming.",
            )
            flow.metadata.pop(STATE_KEY)
            return

    async def request(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get(STATE_KEY)
        if state is None or flow.response is not None:
            return
        req = flow.request
        if len(req.raw_content or b"") > _INLINE_PARSE_LIMIT:
            parsed = await asyncio.to_thread(parse_request, req, state.shape.api)
        else:
            parsed = parse_request(req, state.shape.api)
        body = parsed.body
        state.body, state.body_text = body, parsed.text
        if body is not None:
            model = body.get("model")
            state.request_model = model if isinstance(model, str) else None
            state.stream_requested = body.get("stream") is True
        if state.request_model is None and state.shape.azure_deployment:
            state.request_model = state.shape.azure_deployment
        state.codex = codex_session.from_request(req, body)
        state.tags = parse_metadata_header(req.headers.get(METADATA_HEADER))
        if METADATA_HEADER in req.headers:
            del req.headers[METADATA_HEADER]
        state.instructions_hash = parsed.instructions_hash
        if state.shape.is_model_call:
            state.delta = self.sessions.observe(state.codex.grouping_key, parsed.digests)
            state.new_items = parsed.items[state.delta.new_start :]
