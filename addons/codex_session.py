"""Codex session context for the gateway: the mitmproxy-facing side of ``codexgate.wire.codex``.

Everything here is defined in ``codexgate.wire``; this module keeps the names the addons use.
``from_request`` never raises on any header value (fail-closed, issue 8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mitmproxy import http

from codexgate.wire import input_items, instructions_hash, instructions_text, item_digest, item_digests
from codexgate.wire.codex import CodexContext, InputDelta, SessionTracker, context_from_headers

__all__ = [
    "CodexContext",
    "InputDelta",
    "SessionTracker",
    "from_request",
    "input_items",
    "instructions_hash",
    "instructions_text",
    "item_digest",
    "item_digests",
]


def from_request(
    req: http.Request, body: dict[str, Any] | None, headers: Mapping[str, str] | None = None
) -> CodexContext:
    """The Codex context of a request (headers are untrusted; see ``context_from_headers``);
    ``headers`` is ``credentials.header_map(req.headers)`` when the caller has it."""
    return context_from_headers(req.headers if headers is None else headers, body)
