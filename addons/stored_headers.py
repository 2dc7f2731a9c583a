"""Which request and response headers a trace may store: an allowlist, not a denylist.

Invariant: a header's value reaches a trace only if its name is on the allowlist below
(exact names or prefixes of known-safe families); every other header is stored by name with
the value ``"[redacted]"`` — so a credential in a custom header (``x-my-auth``) never lands in
Parquet, whatever its name. Names and values are length-capped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import orjson

REDACTED = "[redacted]"
_MAX_NAME = 64
_MAX_VALUE = 2048
_MAX_HEADERS = 64

SAFE_HEADERS = frozenset(
    {
        # generic HTTP
        "accept",
        "accept-encoding",
        "content-type",
        "content-encoding",
        "content-length",
        "transfer-encoding",
        "date",
        "host",
        "user-agent",
        "retry-after",
        "x-request-id",
        "request-id",
        "idempotency-key",
        # Codex
        "originator",
        "session-id",
        "thread-id",
        "x-client-request-id",
        "x-codex-window-id",
        "x-codex-beta-features",
        "x-openai-subagent",
        # providers
        "openai-beta",
        "openai-version",
        "openai-model",
        "openai-processing-ms",
        "openai-organization",
        "anthropic-version",
        "anthropic-beta",
        "x-ms-region",
        "apim-request-id",
        # the gateway's own
        "x-codexgate-route",
        "x-codexgate-error",
        "x-codexgate-served-by",
        "x-codexgate-attempts",
    }
)
SAFE_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "x-stainless-", "x-codex-primary-", "x-codex-secondary-")


def is_safe_header(name: str) -> bool:
    n = name.lower()
    return n in SAFE_HEADERS or n.startswith(SAFE_PREFIXES)


def headers_json(fields: Iterable[tuple[str, str]]) -> str:
    """JSON object of headers: allowlisted values as sent (capped), every other value
    ``"[redacted]"``. Repeated headers are joined with ", " (as HTTP allows)."""
    out: dict[str, str] = {}
    for name, value in fields:
        key = name.lower()[:_MAX_NAME]
        if key not in out and len(out) >= _MAX_HEADERS:
            continue
        val = value[:_MAX_VALUE] if is_safe_header(key) else REDACTED
        out[key] = f"{out[key]}, {val}"[: _MAX_VALUE * 2] if key in out else val
    try:
        return orjson.dumps(out, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:  # a value with a lone surrogate (mitmproxy keeps undecodable bytes that way)
        return json.dumps(out, sort_keys=True)
