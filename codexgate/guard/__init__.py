"""codexgate.guard: the guardrail detection engine (PII, secrets, prompt injection, limits).

Layer: policy engine — imports ``codexgate.core`` only (and presidio); never mitmproxy or addons.
Build one ``GuardEngine`` and one ``GuardScanner`` at start-up; see ``scanner`` for the
incremental contract and ``redact`` for placeholders.
"""
