"""Wire details shared by the three APIs: error bodies, SSE framing, compression, ids."""

from __future__ import annotations

import gzip
import json
import secrets
import zlib
from typing import Any

from aiohttp import web

# (type, code) of an OpenAI error body per HTTP status.
OPENAI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_content_encoding"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def new_id(prefix: str, size: int = 24) -> str:
    return f"{prefix}{secrets.token_hex(size // 2)}"


def openai_error_body(status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    kind, default_code = OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", "error")
    )
    return {"error": {"message": message, "type": kind, "code": code or default_code, "param": param}}


def anthropic_error_body(status: int, message: str) -> dict:
    kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": new_id("req_")}


def azure_error_body(status: int, message: str, code: str | None = None) -> dict:
    """Azure's gateway errors (401, 429) carry the status as ``code``; others look like OpenAI's."""
    if status in (401, 429):
        return {"error": {"code": str(status), "message": message}}
    return openai_error_body(status, message, code)


class BadBody(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def decode_body(raw: bytes, content_encoding: str) -> Any:
    """Undo ``Content-Encoding`` (gzip, deflate, zstd; a list is undone last-applied first), parse JSON."""
    for coding in reversed([c.strip().lower() for c in content_encoding.split(",") if c.strip()]):
        try:
            if coding in ("gzip", "x-gzip"):
                raw = gzip.decompress(raw)
            elif coding == "deflate":
                raw = zlib.decompress(raw)
            elif coding == "zstd":
                import zstandard

                raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
            elif coding != "identity":
                raise BadBody(415, f"Unsupported Content-Encoding: {coding}")
        except BadBody:
            raise
        except Exception as exc:  # any decoder failure is the client's fault
            raise BadBody(400, f"Could not decode the {coding} request body: {exc}") from exc
    if not raw.strip():
        raise BadBody(400, "The request body is empty; expected a JSON object.")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise BadBody(400, f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadBody(400, "The request body must be a JSON object.")
    return doc


def accepts_gzip(accept_encoding: str) -> bool:
    for token in accept_encoding.split(","):
        name, _, params = token.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and float(q[2:] or 0) == 0)
    return False


def json_reply(
    request: web.Request, doc: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON response, gzip-compressed when the client accepts gzip."""
    body = json.dumps(doc).encode()
    all_headers = {"content-type": "application/json", **(headers or {})}
    if accepts_gzip(request.headers.get("accept-encoding", "")):
        body = gzip.compress(body)
        all_headers["content-encoding"] = "gzip"
        all_headers["vary"] = "accept-encoding"
    return web.Response(body=body, status=status, headers=all_headers)
