"""``Guard``: the one object the gateway addon holds (engine + scanner + placeholders).

Create it once at start-up (``Guard()`` builds the presidio engine, ~0.5 s, and the worker pool).
Per request, in the addon's async ``request`` hook (never blocking the event loop)::

    outcome = await guard.check_request(policy, session_id=..., instructions=body.get("instructions"),
                                        items=body["input"], digests=digests, body_bytes=len(raw))
    if outcome.blocked:      -> answer with the provider's error format, message outcome.message
    elif outcome.changed:    -> forward outcome.items / outcome.instructions instead of the originals
    record outcome.findings (to_dict()) in the trace; later, ``await guard.check_async(...)`` for
    ``async``-stage rules.

For the response stream: ``guard.output_scanner(policy, item_index)`` per output item; feed it a
copy of each text / argument delta after forwarding the delta.

Invariant: nothing returned here carries a matched value; placeholders are the only derived form
and their mapping never leaves this process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from codexgate.guard.engine import BANNED, PII, SECRETS, GuardEngine, Hit
from codexgate.guard.items import item_parts, replace_parts
from codexgate.guard.policy import Policy
from codexgate.guard.redact import Redactor, SessionPlaceholders
from codexgate.guard.scanner import (
    Decision,
    Finding,
    GuardScanner,
    ItemHit,
    OutputScanner,
    VerdictCache,
    evaluate,
)

# Detectors whose spans hold a value worth hiding in storage (injection phrases and size limits
# carry none).
VALUE_DETECTORS = (PII, SECRETS, BANNED)
UNSCANNED = "<UNSCANNED>"


@dataclass
class RequestOutcome:
    """What to do with one request. ``items``/``instructions``: what to forward (the originals
    unless ``changed``); ``findings``: to record; ``message``: the one-line block message."""

    blocked: bool
    message: str | None
    items: Sequence[Mapping[str, Any]]
    instructions: str | None
    changed: bool
    findings: list[Finding] = field(default_factory=list)
    incomplete_items: list[int] = field(default_factory=list)
    decision: Decision | None = None


class Guard:
    """Engine, incremental scanner and session placeholders, shared by every request."""

    def __init__(
        self,
        engine: GuardEngine | None = None,
        *,
        workers: int = 2,
        processes: bool = False,
        cache_entries: int = 50_000,
        sessions: int = 2000,
    ) -> None:
        self.engine = engine if engine is not None else GuardEngine()
        self.scanner = GuardScanner(self.engine, cache=VerdictCache(cache_entries), workers=workers,
                                    processes=processes)
        self.redactor = Redactor(self.engine, SessionPlaceholders(max_sessions=sessions))

    def close(self) -> None:
        self.scanner.close()

    async def check_request(
        self,
        policy: Policy,
        *,
        session_id: str,
        items: Sequence[Mapping[str, Any]],
        digests: Sequence[str] | None = None,
        instructions: str | None = None,
        body_bytes: int | None = None,
        budget_s: float = 0.25,
    ) -> RequestOutcome:
        """Run the ``pre``-stage rules of ``policy`` on a request (scan new items only)."""
        detectors = policy.text_detectors("pre")
        if not policy.active or (not detectors and "limits" not in policy.rules):
            return RequestOutcome(False, None, items, instructions, False)
        result = await self.scanner.scan_call(
            items, digests, instructions=instructions, detectors=detectors,
            banned_terms=policy.banned_terms, banned_regexes=policy.banned_regexes, budget_s=budget_s,
        )
        decision = evaluate(policy, result, stage="pre", body_bytes=body_bytes)
        if decision.blocked:
            return RequestOutcome(True, decision.block_message(), items, instructions, False, decision.findings,
                                  decision.incomplete, decision)
        new_items, new_instr, changed = items, instructions, False
        if decision.redactions:
            new_items = self.redactor.redact_items(items, decision, session_id)
            if instructions is not None:
                new_instr = self.redactor.redact_instructions(instructions, decision, session_id)
            changed = True
        return RequestOutcome(False, None, new_items, new_instr, changed, decision.findings, decision.incomplete,
                              decision)

    async def check_async(
        self,
        policy: Policy,
        *,
        items: Sequence[Mapping[str, Any]],
        digests: Sequence[str] | None = None,
        instructions: str | None = None,
    ) -> list[Finding]:
        """Findings of the ``async``-stage rules (run after forwarding; no time budget to speak of)."""
        detectors = policy.text_detectors("async")
        if not detectors:
            return []
        result = await self.scanner.scan_call(
            items, digests, instructions=instructions, detectors=detectors,
            banned_terms=policy.banned_terms, banned_regexes=policy.banned_regexes, budget_s=30.0,
        )
        return evaluate(policy, result, stage="async").findings

    def output_scanner(self, policy: Policy, item_index: int = 0, part: int = 0) -> OutputScanner:
        """A streaming scanner for one output item (message text or tool-call arguments)."""
        return OutputScanner(self.engine, policy, item_index=item_index, part=part)

    def redact_for_storage(self, text: str, session_id: str | None = None) -> tuple[str, list[Finding]]:
        """``privacy_mode=redacted``: the text with PII and secrets replaced by placeholders."""
        return self.redactor.redact(text, session_id)


    def _apply(
        self,
        items: Sequence[Mapping[str, Any]],
        instructions: str | None,
        hits: Sequence[ItemHit],
        session_id: str,
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        by_index: dict[int, list[ItemHit]] = {}
        for ih in hits:
            by_index.setdefault(ih.item_index, []).append(ih)
        decision = Decision(findings=[], redactions=by_index)
        new_items = self.redactor.redact_items(items, decision, session_id)
        new_instr = (self.redactor.redact_instructions(instructions, decision, session_id)
                     if instructions is not None else None)
        return new_items, new_instr

    def redact_findings(
        self,
        items: Sequence[Mapping[str, Any]],
        instructions: str | None,
        findings: Sequence[Finding],
        session_id: str,
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        """``items``/``instructions`` with every value-bearing finding's span replaced by its
        session placeholder, whatever the finding's action (what a trace may store). Blocking
        (deep copies); call it off the event loop."""
        hits = [
            ItemHit(f.item_index, f.part, f.item_digest, Hit(f.detector, f.entity, f.start, f.end, f.score))
            for f in findings if f.detector in VALUE_DETECTORS and f.end > f.start
        ]
        return self._apply(items, instructions, hits, session_id)

    def redact_items_for_storage(
        self,
        items: Sequence[Mapping[str, Any]],
        instructions: str | None,
        session_id: str | None,
        budget_s: float = 30.0,
    ) -> tuple[list[Mapping[str, Any]], str | None, list[Finding]]:
        """``privacy_mode=redacted`` for a call's items: PII and secrets replaced by placeholders,
        scanned incrementally (the verdict cache makes a resent item free). Items the budget
        could not finish are stored as ``<UNSCANNED>`` (fail closed). Blocking: run in a thread."""
        sid = session_id if session_id is not None else self.redactor._one_off_session()
        result = self.scanner.scan(items, None, instructions=instructions, detectors=(PII, SECRETS),
                                   budget_s=budget_s)
        new_items, new_instr = self._apply(items, instructions, result.hits, sid)
        for index in result.incomplete:
            if index < 0:
                new_instr = UNSCANNED
            elif index < len(new_items):
                parts = item_parts(new_items[index])
                new_items[index] = replace_parts(new_items[index], {i: UNSCANNED for i in range(len(parts))})
        findings = [Finding(ih.hit.detector, ih.hit.entity, "redact", "store", ih.hit.score, ih.item_index,
                            ih.part, ih.hit.start, ih.hit.end, ih.digest) for ih in result.hits]
        return new_items, new_instr, findings
