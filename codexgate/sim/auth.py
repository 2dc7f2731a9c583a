"""Who may call what: provider credentials, checked the way each provider does, and digests of
whatever credential was presented (the raw value is never kept)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie")
CREDENTIAL_QUERY_KEYS = ("api-key", "api_key", "key", "token", "access_token")


def digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Keys:
    openai: str | None
    anthropic: str | None
    azure: str | None


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    presented: str | None  # the bare credential presented (kept only long enough to digest it)
    message: str


def _same(presented: str | None, expected: str | None) -> bool:
    return bool(presented and expected) and hmac.compare_digest(presented.encode(), expected.encode())  # type: ignore[union-attr]


def check(family: str, headers: Mapping[str, str], keys: Keys) -> AuthResult:
    """OpenAI: ``Authorization: Bearer``; Anthropic: ``x-api-key``; Azure: ``api-key``."""
    if family == "anthropic":
        presented = headers.get("x-api-key")
        if not presented:
            return AuthResult(False, None, "x-api-key header is required")
        return AuthResult(_same(presented, keys.anthropic), presented, "invalid x-api-key")
    if family == "azure":
        presented = headers.get("api-key")
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
            "a valid key for an active subscription and use a correct regional API endpoint for your resource."
        )
        return AuthResult(_same(presented, keys.azure), presented, message)
    scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        return AuthResult(False, None, message)
    presented = token.strip()
    return AuthResult(_same(presented, keys.openai), presented, "Incorrect API key provided.")


def redacted_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): (digest(v) if k.lower() in CREDENTIAL_HEADERS else v) for k, v in headers.items()}


def redacted_query(query: Mapping[str, str]) -> dict[str, str]:
    return {k: (digest(v) if k.lower() in CREDENTIAL_QUERY_KEYS else v) for k, v in query.items()}
