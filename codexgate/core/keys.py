"""Gateway key material: generation, parsing and hashing.

A gateway key is ``cgk_<key_id>_<secret>``: ``key_id`` is 12 lowercase hex characters (public,
used to find the key's entry and safe to log), ``secret`` is ``secrets.token_urlsafe(32)``
(256 random bits). The vault stores only ``sha256:<hex>`` of the whole key string.

Why a plain SHA-256 and not bcrypt/scrypt/argon2: slow password hashes exist to make guessing
*low-entropy* secrets (passwords) expensive. A 256-bit random secret cannot be guessed, so a
stolen hash is as useless to an attacker with SHA-256 as with argon2 — while a slow hash would
add tens of milliseconds of CPU to *every* request the gateway authenticates (and make a
cheap denial of service out of random keys).
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "cgk_"
_KEY = re.compile(r"^cgk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")


class AuthError(Exception):
    """A presented gateway key is not accepted.

    ``code`` is one of ``missing_api_key``, ``invalid_api_key``, ``revoked_api_key``,
    ``expired_api_key``; ``message`` is for the caller and never contains the presented key
    (it may name the public key id).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def new_key_id() -> str:
    return secrets.token_hex(6)


def is_key_id(value: str) -> bool:
    return bool(_KEY_ID.match(value))


def new_key(key_id: str) -> str:
    """A fresh plaintext gateway key for ``key_id`` (shown once, never stored)."""
    return f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def hash_key(full_key: str) -> str:
    return "sha256:" + hashlib.sha256(full_key.encode()).hexdigest()


def parse_key(presented: str) -> tuple[str, str]:
    """``(key_id, full_key)`` of a presented gateway key, or ``AuthError``."""
    presented = (presented or "").strip()
    if not presented:
        raise AuthError("missing_api_key", "No codexgate key was presented.")
    m = _KEY.match(presented)
    if not m:
        raise AuthError("invalid_api_key", "This is not a valid codexgate key (expected cgk_<id>_<secret>).")
    return m.group(1), presented


def fingerprint(secret: str) -> str:
    """A short, non-reversible label of a secret (``sha256:`` + 12 hex chars + ``…``) so an
    admin can tell credentials apart without seeing them."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12] + "…"


# ---------------------------------------------------------------------------- admin credentials
# An admin credential (control plane) is ``cga_<cred_id>_<secret>``: the same construction as a
# gateway key but a different prefix, so one can never be used as the other (the gateway's parser
# refuses ``cga_``, the admin API refuses ``cgk_``). Stored only as ``sha256:<hex>``.
ADMIN_PREFIX = "cga_"
_ADMIN = re.compile(r"^cga_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")


def new_admin_credential(cred_id: str) -> str:
    """A fresh plaintext admin credential for ``cred_id`` (shown once, never stored)."""
    return f"{ADMIN_PREFIX}{cred_id}_{secrets.token_urlsafe(32)}"


def parse_admin_credential(presented: str) -> tuple[str, str]:
    """``(cred_id, full_credential)`` of a presented admin credential, or ``AuthError``."""
    presented = (presented or "").strip()
    if not presented:
        raise AuthError("missing_credential", "No admin credential was presented.")
    m = _ADMIN.match(presented)
    if not m:
        raise AuthError(
            "invalid_credential", "This is not a valid codexgate admin credential (expected cga_<id>_<secret>)."
        )
    return m.group(1), presented
