"""What of a call's content may be stored: everything, metrics only, or redacted bodies.

``redacted`` runs the guardrails' one detection engine (``codexgate.guard``: presidio PII and
the secret recognizers) over what is stored and replaces each value with a typed, numbered
placeholder (``<EMAIL_ADDRESS_1>``, ``<AWS_ACCESS_KEY_1>``), numbered per Codex session so the
stored conversation stays readable. Request bodies are redacted item by item through the
engine's verdict cache (an item resent on a later call costs nothing); the rest of the body
(tools, metadata) is one more cached pseudo-item. ``Privacy`` is built once at start-up with the
gateway's ``Guard`` (constructor injection from gateway.py); its methods block, so callers run
them in a thread.
"""

from __future__ import annotations

import json
from typing import Any

from codexgate.guard.items import body_input, rewrite_body
from codexgate.guard.service import Guard

FULL, METRICS_ONLY, REDACTED = "full", "metrics_only", "redacted"
MODES = (FULL, METRICS_ONLY, REDACTED)
_STRICTNESS = {FULL: 0, REDACTED: 1, METRICS_ONLY: 2}


def strictest(*modes: str | None) -> str:
    """The most restrictive of the given modes (unknown values count as ``full``)."""
    known = [m for m in modes if m in _STRICTNESS]
    return max(known, key=_STRICTNESS.__getitem__) if known else FULL


class Privacy:
    """Storage redaction with the gateway's detection engine."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def redact(self, text: str | None, session_id: str | None = None) -> str | None:
        """``text`` with PII and secrets replaced by placeholders (None and "" pass through)."""
        if not text:
            return text
        return self.guard.redact_for_storage(text, session_id)[0]

    def redact_items_json(self, items: list[Any] | None, session_id: str | None = None) -> str | None:
        """The JSON of input items, redacted item by item (cached verdicts)."""
        if items is None:
            return None
        dict_items = [it for it in items if isinstance(it, dict)]
        if len(dict_items) != len(items):
            return self.redact(json.dumps(items, ensure_ascii=False), session_id)
        new, _, _ = self.guard.redact_items_for_storage(dict_items, None, session_id)
        return json.dumps(list(new), ensure_ascii=False)

    def redact_json(self, text: str | None, session_id: str | None = None) -> str | None:
        """A JSON document (e.g. a response body) redacted field by field: each top-level field is
        one cached pseudo-item, so fields repeated on every call (echoed instructions, tools) are
        not scanned again. Not JSON: the whole text."""
        if not text:
            return text
        try:
            doc = json.loads(text)
        except ValueError:
            return self.redact(text, session_id)
        if not isinstance(doc, dict):
            return self.redact(text, session_id)
        keys = list(doc)
        items = [{"type": "message", "role": "user", "content": json.dumps(doc[k], ensure_ascii=False)}
                 for k in keys]
        new, _, _ = self.guard.redact_items_for_storage(items, None, session_id)
        out: dict[str, Any] = {}
        for k, item, orig in zip(keys, new, items, strict=True):
            if item is orig:
                out[k] = doc[k]
                continue
            try:
                out[k] = json.loads(str(item["content"]))
            except ValueError:  # a span ran across JSON syntax, or <UNSCANNED>: keep the text
                out[k] = str(item["content"])
        return json.dumps(out, ensure_ascii=False)

    def redact_body(self, body: Any, body_text: str | None, api: str | None = None,
                    session_id: str | None = None) -> str | None:
        """The request body as stored in ``redacted`` mode (JSON text)."""
        shape = body_input(body, api) if isinstance(body, dict) else None
        if shape is None:
            return self.redact(body_text, session_id)
        items_key, items, instr_key, instructions = shape
        rest = {k: v for k, v in body.items() if k not in (items_key, instr_key)}
        rest_item = {"type": "message", "role": "user", "content": json.dumps(rest, ensure_ascii=False)}
        new, new_instr, _ = self.guard.redact_items_for_storage([*items, rest_item], instructions, session_id)
        stored_rest: Any = rest
        if new[-1] is not rest_item:
            text = str(new[-1]["content"])
            try:
                stored_rest = json.loads(text)
            except ValueError:  # a span ran across JSON syntax, or <UNSCANNED>: keep the text
                stored_rest = {"redacted_fields": text}
        if not isinstance(stored_rest, dict):
            stored_rest = {}
        base = {**stored_rest, **{k: body[k] for k in (items_key, instr_key) if k is not None and k in body}}
        return json.dumps(rewrite_body(base, items_key, new[:-1], instr_key, new_instr), ensure_ascii=False)
