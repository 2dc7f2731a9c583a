"""Incremental scanning of Codex calls, and a streaming scanner for model output.

Codex resends the whole conversation on every call, so the scanner remembers a verdict (the hits,
never the text) per item digest in a bounded LRU: an item seen on an earlier call is not scanned
again, and the constant instructions are scanned once per distinct hash. New items are split into
chunks (with an overlap, so a match across a boundary is found, then merged into one hit) and
scanned on a bounded thread pool under a per-call time budget; items the budget could not finish
are reported as ``incomplete`` and not cached (the next call scans them again).

Threads by default: the ``regex`` module releases the GIL while matching, and the rest of
presidio's per-chunk work is short Python that yields the GIL every switch interval.
``bench/guard_bench.py`` measures the caller's event-loop lateness while scanning: on the thread
pool it stayed within the machine's idle noise for incremental scans, and a process pool
(``processes=True``: one engine per worker, built at start-up) was slower per call and no
better for the loop, so it is an option, not the default.

Invariants: ``Finding`` and every cached verdict hold spans, entities and digests only — never
matched text; nothing here logs or raises with item text.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from codexgate.guard.engine import INJECTION, LIMITS, TEXT_DETECTORS, GuardEngine, Hit, merge_hits
from codexgate.guard.items import INSTRUCTIONS, TOOL_OUTPUT, item_kind, item_parts
from codexgate.guard.limits import BannedTermsRecognizer, check_call_limits
from codexgate.guard.policy import Policy
from codexgate.wire.common import content_digest

INSTRUCTIONS_INDEX = -1  # item_index of findings in the top-level ``instructions`` / call-level checks


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding as recorded in a trace: never the matched value.

    ``item_index``: index in the call's ``input`` (-1: the ``instructions`` field or the whole
    call for size limits); ``part``: index into ``items.item_parts(item)``; ``[start, end)``:
    character span within that part; ``stage``: ``pre``/``async``/``stream``."""

    detector: str
    entity: str
    action: str
    stage: str
    score: float
    item_index: int
    part: int
    start: int
    end: int
    item_digest: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ItemHit:
    """A hit located in a call: item index, part index within the item, the item's digest."""

    item_index: int
    part: int
    digest: str
    hit: Hit


Verdict = tuple[tuple[int, Hit], ...]  # (part, hit) pairs of one item


class VerdictCache:
    """Thread-safe bounded LRU: (item digest, detector set, banned-terms fingerprint) → verdict."""

    def __init__(self, max_entries: int = 50_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._data: OrderedDict[tuple[str, ...], Verdict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> Verdict | None:
        with self._lock:
            verdict = self._data.get(key)
            if verdict is not None:
                self._data.move_to_end(key)
            return verdict

    def put(self, key: tuple[str, ...], verdict: Verdict) -> None:
        with self._lock:
            self._data[key] = verdict
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class ScanStats:
    """Counters since the scanner was created (for tests, benchmarks and metrics)."""

    items_scanned: int = 0
    items_cached: int = 0
    chunks_scanned: int = 0
    chars_scanned: int = 0
    incomplete_items: int = 0


@dataclass
class ScanResult:
    """What one call's scan found. ``incomplete``: item indexes (-1: instructions) not finished."""

    hits: list[ItemHit] = field(default_factory=list)
    incomplete: list[int] = field(default_factory=list)
    items_scanned: int = 0
    items_cached: int = 0
    chars_scanned: int = 0
    input_bytes: int = 0  # UTF-8 bytes of all text in the call (instructions + items), for size limits
    seconds: float = 0.0


@dataclass
class Decision:
    """The policy's verdict on a call.

    ``blocked``: refuse before forwarding; ``block_reason``: the finding that blocked (for the
    error message: detector, entity, item index — never a value); ``redactions``: item index →
    hits to replace with placeholders; ``incomplete_passed``: the budget ran out and the policy
    said pass (record it)."""

    findings: list[Finding]
    blocked: bool = False
    block_reason: Finding | None = None
    redactions: dict[int, list[ItemHit]] = field(default_factory=dict)
    incomplete: list[int] = field(default_factory=list)
    incomplete_passed: bool = False

    def block_message(self) -> str:
        """One line for the client, naming detector, entity and input item — never the value."""
        r = self.block_reason
        if r is None:
            return "Request blocked by the gateway's guardrail: the scan could not finish in time."
        where = "the instructions" if r.item_index < 0 else f"input item {r.item_index}"
        if r.detector == LIMITS:
            where = "the request"
        return f"Request blocked by the gateway's guardrail: {r.detector} detector found {r.entity} in {where}."


def split_chunks(text: str, size: int, overlap: int) -> list[tuple[int, str]]:
    """(offset, chunk) pairs covering ``text``; consecutive chunks share ``overlap`` characters."""
    if len(text) <= size:
        return [(0, text)]
    step = size - overlap
    return [(off, text[off : off + size]) for off in range(0, len(text) - overlap, step)]


_GENERIC = "GENERIC_SECRET"


def prefer_specific(hits: list[Hit]) -> list[Hit]:
    """Drop generic-secret hits that overlap a specific secret hit (one credential, one finding)."""
    specific = [h for h in hits if h.detector == "secrets" and h.entity != _GENERIC]
    return [
        h for h in hits
        if h.entity != _GENERIC or not any(s.start < h.end and h.start < s.end for s in specific)
    ]


class GuardScanner:
    """Scans calls incrementally. One per gateway process; thread-safe; owns its worker pool.

    ``chunk_chars``/``overlap``: chunking of large text parts (the overlap must exceed the longest
    match that must be found whole; private keys are found in fragments and merged anyway).
    ``workers``: size of the scanning pool. ``cache``: share one ``VerdictCache`` across
    scanners (e.g. with the session tracker) or let the scanner make one."""

    def __init__(
        self,
        engine: GuardEngine,
        *,
        cache: VerdictCache | None = None,
        chunk_chars: int = 4096,
        overlap: int = 512,
        workers: int = 2,
        processes: bool = False,
    ) -> None:
        if not 0 < overlap < chunk_chars:
            raise ValueError("need 0 < overlap < chunk_chars")
        self.engine = engine
        self.cache = cache if cache is not None else VerdictCache()
        self.chunk_chars = chunk_chars
        self.overlap = overlap
        self.stats = ScanStats()
        self._stats_lock = threading.Lock()
        self.processes = processes
        if processes:
            ctx = multiprocessing.get_context("spawn")  # no fork of a threaded gateway process
            self._pool: Executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(engine.pii_entities,)
            )
            # Build every worker's engine now (start-up), not on the first call.
            list(self._pool.map(_worker_ready, range(workers * 4)))
        else:
            self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="guard-scan")
        self._coordinator = ThreadPoolExecutor(max_workers=4, thread_name_prefix="guard-call")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._coordinator.shutdown(wait=False, cancel_futures=True)

    # -- scanning -------------------------------------------------------------------------

    def _submit(
        self, text: str, offset: int, detectors: tuple[str, ...], banned_key: BannedKey | None
    ) -> Future[list[tuple[str, str, int, int, float]]]:
        if self.processes:
            return self._pool.submit(_detect_in_worker, text, offset, detectors, banned_key)
        return self._pool.submit(_detect_chunk, self.engine, text, offset, detectors, banned_key)

    def scan(
        self,
        items: Sequence[Mapping[str, Any]],
        digests: Sequence[str] | None = None,
        *,
        instructions: str | None = None,
        detectors: Iterable[str] = TEXT_DETECTORS,
        banned_terms: Sequence[str] = (),
        banned_regexes: Sequence[str] = (),
        budget_s: float = 0.25,
    ) -> ScanResult:
        """Scan a call's input items (blocking; run it off the event loop — see ``scan_call``).

        ``digests[i]`` is the digest of ``items[i]`` (computed here when not given). Injection is
        looked for only in tool output. Returns within about ``budget_s`` seconds."""
        t0 = time.perf_counter()
        deadline = t0 + budget_s
        detectors = tuple(d for d in detectors if d in TEXT_DETECTORS)
        if digests is None:
            digests = [content_digest(it) for it in items]
        if len(digests) != len(items):
            raise ValueError("digests and items differ in length")
        banned_key: BannedKey | None = None
        fp = "-"
        if "banned" in detectors:
            banned_key = (tuple(banned_terms), tuple(banned_regexes))
            banned = banned_recognizer(*banned_key)  # validates the regexes here, in the caller
            fp = "-" if banned.empty else banned.fingerprint
        result = ScanResult()

        # (item_index, digest, kind, parts) for the instructions and every item.
        todo: list[tuple[int, str, str, list[str]]] = []
        if instructions:
            digest = hashlib.sha256(instructions.encode("utf-8", "surrogatepass")).hexdigest()
            todo.append((INSTRUCTIONS_INDEX, digest, INSTRUCTIONS, [instructions]))
        for i, item in enumerate(items):
            todo.append((i, digests[i], item_kind(item), [t for _, t in item_parts(item)]))
        result.input_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for *_, parts in todo for t in parts)

        jobs: dict[tuple[str, ...], list[tuple[int, str]]] = {}  # cache key → [(index, digest)]
        pending: dict[tuple[str, ...], list[tuple[int, Future[list[tuple[str, str, int, int, float]]]]]] = {}
        for index, digest, kind, parts in todo:
            dets = tuple(d for d in detectors if d != INJECTION or kind == TOOL_OUTPUT)
            if not dets or not any(parts):
                continue
            key = (digest, ",".join(dets), fp)
            verdict = self.cache.get(key)
            if verdict is not None:
                result.items_cached += 1
                result.hits.extend(ItemHit(index, p, digest, h) for p, h in verdict)
                continue
            if key in jobs:  # the same item twice in one call: scan once
                jobs[key].append((index, digest))
                continue
            jobs[key] = [(index, digest)]
            futures = []
            for p, text in enumerate(parts):
                for off, chunk in split_chunks(text, self.chunk_chars, self.overlap):
                    futures.append((p, self._submit(chunk, off, dets, banned_key)))
                    result.chars_scanned += len(chunk)
            pending[key] = futures

        all_futures = [f for fl in pending.values() for _, f in fl]
        if all_futures:
            wait(all_futures, timeout=max(0.0, deadline - time.perf_counter()))
        for key, futures in pending.items():
            if not all(f.done() and not f.cancelled() and f.exception() is None for _, f in futures):
                for _, f in futures:
                    f.cancel()
                result.incomplete.extend(index for index, _ in jobs[key])
                continue
            by_part: dict[int, list[Hit]] = {}
            for p, f in futures:
                by_part.setdefault(p, []).extend(Hit(*t) for t in f.result())
            with self._stats_lock:
                self.stats.chunks_scanned += len(futures)
            verdict = tuple(
                (p, h) for p in sorted(by_part) for h in prefer_specific(merge_hits(by_part[p]))
            )
            self.cache.put(key, verdict)
            result.items_scanned += 1
            for index, digest in jobs[key]:
                result.hits.extend(ItemHit(index, p, digest, h) for p, h in verdict)
        result.hits.sort(key=lambda ih: (ih.item_index, ih.part, ih.hit.start))
        result.incomplete.sort()
        result.seconds = time.perf_counter() - t0
        with self._stats_lock:
            self.stats.chars_scanned += result.chars_scanned
            self.stats.items_scanned += result.items_scanned
            self.stats.items_cached += result.items_cached
            self.stats.incomplete_items += len(result.incomplete)
        return result

    async def scan_call(
        self,
        items: Sequence[Mapping[str, Any]],
        digests: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ScanResult:
        """``scan`` from an event loop: runs on the scanner's own coordinator threads, so the loop
        only awaits (items must not be mutated until this returns)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._coordinator, lambda: self.scan(items, digests, **kwargs))


BannedKey = tuple[tuple[str, ...], tuple[str, ...]]
_BANNED: OrderedDict[BannedKey, BannedTermsRecognizer] = OrderedDict()
_BANNED_LOCK = threading.Lock()


def banned_recognizer(terms: Sequence[str], regexes: Sequence[str]) -> BannedTermsRecognizer:
    """The (cached, at most 256 per process) recognizer for one policy's banned terms/regexes."""
    key = (tuple(terms), tuple(regexes))
    with _BANNED_LOCK:
        rec = _BANNED.get(key)
        if rec is None:
            rec = BannedTermsRecognizer(terms, regexes)
            _BANNED[key] = rec
            while len(_BANNED) > 256:
                _BANNED.popitem(last=False)
        else:
            _BANNED.move_to_end(key)
        return rec


def _detect_chunk(
    engine: GuardEngine, text: str, offset: int, detectors: tuple[str, ...], banned_key: BannedKey | None
) -> list[tuple[str, str, int, int, float]]:
    banned = banned_recognizer(*banned_key) if banned_key is not None else None
    return [(h.detector, h.entity, h.start + offset, h.end + offset, h.score)
            for h in engine.detect(text, detectors, banned)]


_WORKER_ENGINE: GuardEngine | None = None


def _init_worker(pii_entities: tuple[str, ...]) -> None:
    global _WORKER_ENGINE
    _WORKER_ENGINE = GuardEngine(pii_entities)


def _worker_ready(_: int) -> bool:
    return _WORKER_ENGINE is not None


def _detect_in_worker(
    text: str, offset: int, detectors: tuple[str, ...], banned_key: BannedKey | None
) -> list[tuple[str, str, int, int, float]]:
    assert _WORKER_ENGINE is not None
    return _detect_chunk(_WORKER_ENGINE, text, offset, detectors, banned_key)


def evaluate(
    policy: Policy,
    result: ScanResult,
    *,
    stage: str = "pre",
    body_bytes: int | None = None,
) -> Decision:
    """Apply ``policy`` to a scan: findings with action/stage, block and redaction decisions.

    Only ``pre``-stage rules can block or redact; ``async`` findings are recorded only. Size
    limits (detector ``limits``) are checked when ``body_bytes`` is given (input tokens are
    estimated from ``result.input_bytes``)."""
    findings: list[Finding] = []
    decision = Decision(findings=findings, incomplete=list(result.incomplete))
    limits_rule = policy.rules.get(LIMITS)
    if limits_rule is not None and limits_rule.stage == stage and body_bytes is not None:
        for lh in check_call_limits(body_bytes, result.input_bytes, policy.max_bytes, policy.max_input_tokens):
            f = Finding(LIMITS, lh.entity, limits_rule.action, stage, 1.0, INSTRUCTIONS_INDEX, 0, 0, 0, "")
            findings.append(f)
            if limits_rule.action in ("block", "redact") and not decision.blocked:
                decision.blocked, decision.block_reason = True, f
    for ih in result.hits:
        rule = policy.rules.get(ih.hit.detector)
        if rule is None or rule.stage != stage:
            continue
        h = ih.hit
        f = Finding(h.detector, h.entity, rule.action, stage, h.score, ih.item_index, ih.part, h.start, h.end,
                    ih.digest)
        findings.append(f)
        if stage != "pre":
            continue
        if rule.action == "block" and not decision.blocked:
            decision.blocked, decision.block_reason = True, f
        elif rule.action == "redact":
            decision.redactions.setdefault(ih.item_index, []).append(ih)
    if result.incomplete and stage == "pre" and not decision.blocked:
        if policy.on_incomplete == "block":
            decision.blocked = True
        else:
            decision.incomplete_passed = True
    return decision


class OutputScanner:
    """Scans streamed text (output text deltas, tool-call argument deltas) as it passes.

    ``feed(delta)`` never holds the delta back: the caller forwards it and feeds a copy. Text is
    scanned once at least ``min_scan`` new characters are buffered (and on ``finish``), together
    with the last ``overlap`` characters already scanned, so a match split across deltas is found.
    Returns the findings that are new: a hit overlapping one already reported for the same
    entity extends it silently (a private key arriving over many deltas is one finding, reported
    as soon as its header is seen). Offsets are absolute in the stream. Not thread-safe (one per
    stream)."""

    def __init__(
        self,
        engine: GuardEngine,
        policy: Policy,
        *,
        item_index: int = 0,
        part: int = 0,
        overlap: int = 256,
        min_scan: int = 512,
        max_findings: int = 1000,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.detectors = tuple(d for d in policy.text_detectors() if d != INJECTION)
        self.item_index, self.part = item_index, part
        self.overlap, self.min_scan = overlap, min_scan
        self._window = ""  # already-scanned tail (≤ overlap chars) + not-yet-scanned text
        self._window_start = 0  # absolute offset of _window[0]
        self._scanned_upto = 0  # absolute offset up to which text has been scanned
        self.max_findings = max_findings
        self.dropped = 0  # findings beyond max_findings (not kept)
        self.findings: list[Finding] = []

    @property
    def blocked(self) -> Finding | None:
        """The first finding whose rule is ``block`` (the caller ends the stream), or None."""
        return next((f for f in self.findings if f.action == "block"), None)

    def feed(self, delta: str) -> list[Finding]:
        """Buffer ``delta``; scan when enough is pending. Returns findings new since the last call."""
        self._window += delta
        if self._window_start + len(self._window) - self._scanned_upto < self.min_scan:
            return []
        return self._scan()

    def finish(self) -> list[Finding]:
        """Scan whatever is pending (end of stream)."""
        if self._window_start + len(self._window) > self._scanned_upto:
            return self._scan()
        return []

    def _scan(self) -> list[Finding]:
        if not self.detectors:
            return []
        banned = None
        if "banned" in self.detectors:
            banned = banned_recognizer(self.policy.banned_terms, self.policy.banned_regexes)
        hits = self.engine.detect(self._window, self.detectors, banned)
        new: list[Finding] = []

        def last_of(entity: str) -> int:
            return max((i for i, f in enumerate(self.findings) if f.entity == entity), default=-1)

        for h in hits:
            start, end = h.start + self._window_start, h.end + self._window_start
            rule = self.policy.rules[h.detector]
            merged = False
            # A fragment starting at the window's first character continues text already seen
            # (a private key body arriving over many deltas): it extends the open finding.
            continues = h.start == 0 and self._window_start > 0
            for i, f in enumerate(self.findings):
                if f.entity == h.entity and (start <= f.end and f.start <= end or continues and i == last_of(h.entity)):
                    if start < f.start or end > f.end:
                        self.findings[i] = Finding(f.detector, f.entity, f.action, f.stage, max(f.score, h.score),
                                                   f.item_index, f.part, min(f.start, start), max(f.end, end),
                                                   f.item_digest)
                    merged = True
                    break
            if merged:
                continue
            f = Finding(h.detector, h.entity, rule.action, "stream", h.score, self.item_index, self.part,
                        start, end, "")
            if len(self.findings) >= self.max_findings:
                self.dropped += 1  # bounded memory on a pathological stream; the count is kept
                continue
            self.findings.append(f)
            new.append(f)
        end_abs = self._window_start + len(self._window)
        self._scanned_upto = end_abs
        keep = min(self.overlap, len(self._window))
        self._window = self._window[len(self._window) - keep :]
        self._window_start = end_abs - keep
        return new
