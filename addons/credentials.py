"""Where a client's credentials travel, and taking them off a request.

Invariant: after ``take_credentials`` the request carries no header that could authenticate
to a provider or to the gateway (``authorization``, ``x-api-key``, ``api-key``,
``proxy-authorization``, …), whatever happens to the flow afterwards.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from mitmproxy import http

KEY_HEADERS = ("authorization", "x-api-key", "api-key")
# every header a provider (or the gateway) might accept as a credential
CREDENTIAL_HEADERS = (
    *KEY_HEADERS,
    "proxy-authorization",
    "openai-api-key",
    "anthropic-api-key",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "cookie",
)
_CREDENTIAL_BYTES = frozenset(name.encode() for name in CREDENTIAL_HEADERS)
_MAX_KEY_CHARS = 512


def header_map(headers: http.Headers) -> dict[str, str]:
    """Every header of a message in one dict, built in one pass: lower-case name -> value,
    repeated fields folded with ``", "`` — what ``headers.get(name)`` returns, without its
    linear scan and conversions per lookup (a Codex call looked headers up ~35 times)."""
    folded: dict[bytes, bytes] = {}
    for k, v in headers.fields:
        k = k.lower()
        folded[k] = folded[k] + b", " + v if k in folded else v
    return {k.decode("utf-8", "surrogateescape"): v.decode("utf-8", "surrogateescape") for k, v in folded.items()}


def basic_or_bearer(value: str) -> str | None:
    """The gateway key from ``Basic base64(user:password)`` (the password, else the user) or
    ``Bearer KEY``."""
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer":
        return token or None
    if scheme.lower() != "basic" or len(token) > 4 * _MAX_KEY_CHARS:
        return None
    try:
        user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return password or user or None


def presented_key(headers: Mapping[str, str]) -> str | None:
    for name in KEY_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        if name == "authorization":
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            continue
        return value.strip()
    return None


def take_credentials(req: http.Request, mode: str, seen: Mapping[str, str] | None = None) -> str | None:
    """Remove every credential header from ``req``; return the gateway key it presented.

    Base-URL mode: ``Authorization: Bearer``, ``x-api-key`` or ``api-key``. Forward-proxy mode:
    the proxy credentials, else a bearer that looks like a gateway key (clients there send
    their own provider key as the bearer, which must never count). ``seen`` is
    ``header_map(req.headers)`` when the caller already has it."""
    headers = header_map(req.headers) if seen is None else seen
    key: str | None
    if mode == "forward":
        proxy_auth = headers.get("proxy-authorization")
        key = basic_or_bearer(proxy_auth) if proxy_auth else None
        if key is None:
            bearer = presented_key(headers)
            key = bearer if bearer and bearer.startswith("cgk_") else None
    else:
        key = presented_key(headers)
    if any(name in headers for name in CREDENTIAL_HEADERS):
        req.headers.fields = tuple(f for f in req.headers.fields if f[0].lower() not in _CREDENTIAL_BYTES)
    if key is not None and (len(key) > _MAX_KEY_CHARS or not key.isascii()):
        return ""  # present but not a key: refused as invalid, never compared
    return key
