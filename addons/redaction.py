"""Strip credentials from headers before anything is traced or logged."""

from __future__ import annotations

import json
from collections.abc import Iterable

SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "cookie",
        "set-cookie",
        "openai-api-key",
        "anthropic-api-key",
        "x-goog-api-key",
        "chatgpt-account-id",
    }
)


def is_secret_header(name: str) -> bool:
    n = name.lower()
    return n in SECRET_HEADERS or n.endswith("-api-key") or n.endswith("-token") or "secret" in n


def headers_json(fields: Iterable[tuple[str, str]]) -> str:
    """JSON object of headers with secret values replaced by ``"[redacted]"``.

    Repeated headers are joined with ", " (as HTTP allows)."""
    out: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()
        val = "[redacted]" if is_secret_header(key) else value
        out[key] = f"{out[key]}, {val}" if key in out else val
    return json.dumps(out, sort_keys=True)
