"""Replies the gateway makes itself, in the error format of the provider the client speaks.

OpenAI-shaped routes get ``{"error": {"message", "type", "code", "param"}}``; Anthropic routes
get ``{"type": "error", "error": {"type", "message"}}``. Messages never contain secrets.
"""

from __future__ import annotations

import json

from mitmproxy import http

# status -> (openai error type, anthropic error type)
_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_request_error", "authentication_error"),
    403: ("permission_error", "permission_error"),
    404: ("invalid_request_error", "not_found_error"),
    405: ("invalid_request_error", "invalid_request_error"),
    407: ("invalid_request_error", "authentication_error"),
    413: ("invalid_request_error", "request_too_large"),
    426: ("invalid_request_error", "invalid_request_error"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
    431: ("invalid_request_error", "request_too_large"),
    500: ("server_error", "api_error"),
    502: ("server_error", "api_error"),
    503: ("server_error", "overloaded_error"),
}


def error_body(
    family: str, status: int, code: str, message: str, extra: dict[str, object] | None = None
) -> bytes:
    """``extra`` adds fields to the error object (e.g. Codex's ``resets_at`` on a 429); it may
    override ``type`` (e.g. ``usage_limit_reached``)."""
    openai_type, anthropic_type = _TYPES.get(status, ("server_error", "api_error"))
    if family == "anthropic":
        inner: dict[str, object] = {"type": anthropic_type, "message": message}
        doc: dict[str, object] = {"type": "error", "error": inner}
    else:
        inner = {"message": message, "type": openai_type, "code": code, "param": None}
        doc = {"error": inner}
    inner.update(extra or {})
    return json.dumps(doc).encode()


def error_response(
    family: str,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> http.Response:
    all_headers = {"content-type": "application/json", "x-codexgate-error": code}
    all_headers.update(headers or {})
    return http.Response.make(status, error_body(family, status, code, message, extra), all_headers)
