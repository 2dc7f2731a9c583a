"""Typed, numbered placeholders (``<AWS_ACCESS_KEY_1>``), stable across one Codex session.

The same value gets the same placeholder on every later call of the session, so the model sees a
consistent conversation. The mapping lives only in this process's memory, bounded (LRU of
sessions, capped values per session), and holds a keyed HMAC of each value (per-process random
key) — never the value itself; it is never written anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from codexgate.guard.engine import PII, SECRETS, GuardEngine, Hit
from codexgate.guard.items import item_parts, replace_parts
from codexgate.guard.scanner import Decision, Finding, ItemHit, prefer_specific

_SPECIFICITY = {SECRETS: 2, "banned": 1, PII: 0}


class SessionPlaceholders:
    """Per session: value tag → placeholder, and the next number per entity. Thread-safe."""

    def __init__(self, max_sessions: int = 2000, max_values_per_session: int = 10_000) -> None:
        self.max_sessions = max_sessions
        self.max_values = max_values_per_session
        self._key = os.urandom(32)
        self._sessions: OrderedDict[str, tuple[dict[str, str], dict[str, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def placeholder(self, session_id: str, entity: str, value: str) -> str:
        """The placeholder for ``value`` in ``session_id`` (new number the first time)."""
        tag = hmac.new(self._key, f"{entity}\0{value}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        key = tag.hex()
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is None:
                entry = ({}, {})
                self._sessions[session_id] = entry
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
            else:
                self._sessions.move_to_end(session_id)
            by_tag, counters = entry
            found = by_tag.get(key)
            if found is not None:
                return found
            counters[entity] = counters.get(entity, 0) + 1
            found = f"<{entity}_{counters[entity]}>"
            if len(by_tag) < self.max_values:  # past the cap: numbers stay unique, no longer stable
                by_tag[key] = found
            return found


def _resolve_overlaps(hits: Sequence[Hit]) -> list[Hit]:
    """Non-overlapping spans covering every hit; an overlap takes the most specific entity."""
    out: list[Hit] = []
    for h in sorted(hits, key=lambda h: (h.start, -h.end)):
        if out and h.start < out[-1].end:
            prev = out[-1]
            best = max((prev, h), key=lambda x: (_SPECIFICITY.get(x.detector, 0), x.end - x.start))
            out[-1] = Hit(best.detector, best.entity, prev.start, max(prev.end, h.end), max(prev.score, h.score))
        else:
            out.append(h)
    return out


class Redactor:
    """Replaces detected values with session-stable placeholders."""

    def __init__(
        self,
        engine: GuardEngine,
        placeholders: SessionPlaceholders | None = None,
        detectors: Iterable[str] = (PII, SECRETS),
    ) -> None:
        self.engine = engine
        self.placeholders = placeholders if placeholders is not None else SessionPlaceholders()
        self.detectors = tuple(detectors)
        self._call_counter = 0
        self._lock = threading.Lock()

    def _one_off_session(self) -> str:
        with self._lock:
            self._call_counter += 1
            return f"\0call-{self._call_counter}"

    def apply(self, text: str, hits: Sequence[Hit], session_id: str) -> str:
        """``text`` with every hit span replaced by its placeholder."""
        out, pos = [], 0
        for h in _resolve_overlaps(hits):
            out.append(text[pos : h.start])
            out.append(self.placeholders.placeholder(session_id, h.entity, text[h.start : h.end]))
            pos = h.end
        out.append(text[pos:])
        return "".join(out)

    def redact(self, text: str, session_id: str | None = None) -> tuple[str, list[Finding]]:
        """(redacted text, findings). Without ``session_id`` numbering starts afresh for this text.

        This is the entry point for ``privacy_mode=redacted`` (stored bodies)."""
        if not text:
            return text, []
        hits = prefer_specific(self.engine.detect(text, self.detectors))
        sid = session_id if session_id is not None else self._one_off_session()
        findings = [Finding(h.detector, h.entity, "redact", "store", h.score, -1, 0, h.start, h.end, "") for h in hits]
        return self.apply(text, hits, sid), findings

    def redact_items(
        self, items: Sequence[Mapping[str, Any]], decision: Decision, session_id: str
    ) -> list[Mapping[str, Any]]:
        """The call's input items with ``decision.redactions`` applied (unchanged items are the
        same objects; changed ones are deep copies). Instruction hits (index -1) are ignored here:
        use ``redact_instructions``."""
        out = list(items)
        for index, item_hits in decision.redactions.items():
            if index < 0 or index >= len(items):
                continue
            texts = [t for _, t in item_parts(items[index])]
            by_part: dict[int, list[Hit]] = {}
            for ih in item_hits:
                by_part.setdefault(ih.part, []).append(ih.hit)
            new_texts = {p: self.apply(texts[p], hs, session_id) for p, hs in by_part.items() if p < len(texts)}
            out[index] = replace_parts(items[index], new_texts)
        return out

    def redact_instructions(self, instructions: str, decision: Decision, session_id: str) -> str:
        hits = [ih.hit for ih in decision.redactions.get(-1, []) if isinstance(ih, ItemHit)]
        return self.apply(instructions, hits, session_id) if hits else instructions
