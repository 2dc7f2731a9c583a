"""What of a call's content may be stored: everything, metrics only, or redacted bodies.

``redacted`` masks secrets and contact data with fast patterns before anything is written
(credentials, bearer tokens, private keys, e-mail addresses, phone numbers, card numbers);
guardrail findings, when present, are masked by their spans too.
"""

from __future__ import annotations

import re

FULL, METRICS_ONLY, REDACTED = "full", "metrics_only", "redacted"
MODES = (FULL, METRICS_ONLY, REDACTED)
_STRICTNESS = {FULL: 0, REDACTED: 1, METRICS_ONLY: 2}


def strictest(*modes: str | None) -> str:
    """The most restrictive of the given modes (unknown values count as ``full``)."""
    known = [m for m in modes if m in _STRICTNESS]
    return max(known, key=_STRICTNESS.__getitem__) if known else FULL


_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "PRIVATE_KEY",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    ),
    ("API_KEY", re.compile(r"\b(?:sk|rk|pk)-(?:proj-|ant-)?[A-Za-z0-9_\-]{16,}")),
    ("GATEWAY_KEY", re.compile(r"\bcgk_[0-9a-f]{12}_[A-Za-z0-9_\-]{20,}")),
    ("AWS_ACCESS_KEY", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GITHUB_TOKEN", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b")),
    ("BEARER_TOKEN", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{16,}")),
    ("EMAIL_ADDRESS", re.compile(r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b")),
    ("CREDIT_CARD", re.compile(r"\b(?:\d[ -]?){13,16}\b")),
    ("PHONE_NUMBER", re.compile(r"(?<!\w)\+?\d{1,3}[ .\-]?\(?\d{2,4}\)?[ .\-]\d{3,4}[ .\-]\d{3,4}(?!\w)")),
]


def redact(text: str | None) -> str | None:
    if not text:
        return text
    for entity, pattern in _PATTERNS:
        text = pattern.sub(f"<{entity}>", text)
    return text
