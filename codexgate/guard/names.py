"""Detector names (no heavy imports: the CLI and policy code use these without loading presidio)."""

from __future__ import annotations

PII, SECRETS, INJECTION, BANNED, LIMITS = "pii", "secrets", "injection", "banned", "limits"
DETECTORS: tuple[str, ...] = (PII, SECRETS, INJECTION, BANNED, LIMITS)
# Detectors that look at item text (LIMITS looks at the call's size only).
TEXT_DETECTORS: tuple[str, ...] = (PII, SECRETS, INJECTION, BANNED)
