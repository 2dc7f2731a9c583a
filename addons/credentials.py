"""Where a client's credentials travel, and taking them off a request.

Invariant: after ``take_credentials`` the request carries no header that could authenticate
to a provider or to the gateway (``authorization``, ``x-api-key``, ``api-key``,
``proxy-authorization``, …), whatever happens to the flow afterwards.
"""

from __future__ import annotations

import base64
import binascii

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
_MAX_KEY_CHARS = 512


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


def presented_key(headers: http.Headers) -> str | None:
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


def take_credentials(req: http.Request, mode: str) -> str | None:
    """Remove every credential header from ``req``; return the gateway key it presented.

    Base-URL mode: ``Authorization: Bearer``, ``x-api-key`` or ``api-key``. Forward-proxy mode:
    the proxy credentials, else a bearer that looks like a gateway key (clients there send
    their own provider key as the bearer, which must never count)."""
    key: str | None
    if mode == "forward":
        proxy_auth = req.headers.get("proxy-authorization")
        key = basic_or_bearer(proxy_auth) if proxy_auth else None
        if key is None:
            bearer = presented_key(req.headers)
            key = bearer if bearer and bearer.startswith("cgk_") else None
    else:
        key = presented_key(req.headers)
    for name in CREDENTIAL_HEADERS:
        if name in req.headers:
            del req.headers[name]
    if key is not None and (len(key) > _MAX_KEY_CHARS or not key.isascii()):
        return ""  # present but not a key: refused as invalid, never compared
    return key
