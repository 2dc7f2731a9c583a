"""Policy ``guardrails``: PII, secrets, prompt injection and size limits on every model call.

Request side (async ``request`` hook, after scope, before tracing and the upstream step): the
key's effective policy (``codexgate.guard.policy.resolve`` over the vault section
``guardrail_policies``, parsed once per vault reload) is applied by the one ``Guard`` built at
start-up. Only items new since earlier calls are scanned (the engine caches verdicts by content
digest), on the engine's own threads — never on mitmproxy's event loop.

- ``block``: refused with 400 in the provider's error format (measured with codex-cli 0.171:
  400 is fatal and its body shown; 403/422 are retried five times), naming detector, entity and
  input item — never the matched value;
- ``redact``: the forwarded body is rewritten with session-stable placeholders
  (``<AWS_ACCESS_KEY_1>``), re-serialised, without ``content-encoding``;
- ``flag``: forwarded unchanged; findings recorded.

Whenever a call has findings, the body stored in its trace has every finding's span replaced by
its placeholder, whatever the action (a flagged secret reaches the provider, never a trace).
``async``-stage rules run alongside the forwarded call; the trace row of a call that ended first
waits for them, at most ``ASYNC_WAIT_S`` (the client does not wait). A check still running then,
or one that failed, leaves the row marked so and its request body withheld.

Response side: a stream filter feeds output text and tool-call argument deltas to one
``OutputScanner`` per output item on a worker thread; chunks are forwarded first. Only the
terminal event is held, at most ``TERMINAL_WAIT_S``, until the scan caught up. A ``block``
finding ends the stream with ``response.failed`` (code ``invalid_prompt``, which Codex does not
retry) / an Anthropic ``error`` event naming the detector; nothing after it is forwarded.

Invariant: no matched value is logged, echoed or stored; findings hold spans and entity names.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from mitmproxy import http

from addons.errors import error_response
from addons.failsafe import failsafe
from addons.flowstate import FlowState, get_state
from addons.vault_watch import VaultHolder
from codexgate.guard.items import BodyInput, body_input, item_parts, rewrite_body
from codexgate.guard.policy import SECTION, Policy, PolicyError, from_section, resolve
from codexgate.guard.scanner import Finding
from codexgate.guard.service import Guard
from codexgate.wire.sse import SseParser

log = logging.getLogger("codexgate.guardrails")

NAME = "guardrails"
STREAM_KEY = "codexgate_guard_stream"  # flow.metadata: the call's StreamGuard
ASYNC_KEY = "codexgate_guard_async"  # flow.metadata: the future of the async-stage check
TERMINAL_WAIT_S = 0.1  # longest hold of a terminal event while the side scan catches up
ASYNC_WAIT_S = 2.0  # longest the trace row waits for async-stage findings
BLOCK_STATUS = 400
BLOCK_CODE = "guardrail_blocked"

VALUES_KEY = "codexgate_guard_values"  # flow.metadata: the call's KnownValues (memory only)
MAX_STREAM_TEXT = 4 * 1024 * 1024  # per output item kept to read finding values from
VALUE_DETECTORS = ("pii", "secrets", "banned")

_ACTIONS = {"block": "blocked", "redact": "redacted", "flag": "logged"}


class KnownValues:
    """The values a call's findings matched, in this process's memory only, for one purpose: to
    mask them (by plain replacement with their session placeholders) in what the trace row
    stores, without scanning big texts again on the event loop. Never logged or serialised
    (``repr`` hides them; a copied or saved flow gets an empty holder); dropped with the flow."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}  # value -> entity
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KnownValues({len(self._values)} hidden)"

    def __reduce__(self) -> tuple[Any, ...]:  # a copy or a saved flow gets an empty holder, never values
        return (KnownValues, ())

    def add(self, value: str, entity: str) -> None:
        if len(value) >= 4:  # shorter spans would mask ordinary text
            with self._lock:
                self._values.setdefault(value, entity)

    def add_from_items(self, findings: list[Finding], items: Any, instructions: str | None) -> None:
        for f in findings:
            if f.detector not in VALUE_DETECTORS or f.end <= f.start:
                continue
            if f.item_index < 0:
                text = instructions or ""
            elif f.item_index < len(items):
                parts = item_parts(items[f.item_index])
                text = parts[f.part][1] if f.part < len(parts) else ""
            else:
                continue
            self.add(text[f.start : f.end], f.entity)

    def mask(self, guard: Guard, session: str) -> Callable[[str | None], str | None]:
        """A function replacing every known value in a text with its session placeholder."""
        with self._lock:
            pairs = sorted(self._values.items(), key=lambda kv: -len(kv[0]))
        subs = [(v, guard.redactor.placeholders.placeholder(session, e, v)) for v, e in pairs]

        def apply(text: str | None) -> str | None:
            if not text:
                return text
            for value, placeholder in subs:
                if value in text:
                    text = text.replace(value, placeholder)
                escaped = json.dumps(value)[1:-1]  # the value inside JSON text (response bodies)
                if escaped != value and escaped in text:
                    text = text.replace(escaped, placeholder)
            return text

        return apply


def known_values(flow: http.HTTPFlow) -> KnownValues:
    kv = flow.metadata.get(VALUES_KEY)
    if kv is None:
        kv = flow.metadata[VALUES_KEY] = KnownValues()
    return kv


_STAGES = {"pre": "input", "async": "input", "stream": "output", "store": "input"}


def finding_row(f: Finding) -> dict[str, Any]:
    """A finding as the trace schema's ``GUARDRAIL_FINDING`` (never the value). ``message``
    says where: ``input item N part P (pre)`` / ``output item N (stream)``."""
    if f.stage == "stream":
        where = f"output item {f.item_index} part {f.part}"
    elif f.item_index < 0:
        where = "request" if f.detector == "limits" else "instructions"
    else:
        where = f"input item {f.item_index} part {f.part}"
    return {
        "guardrail": f.detector,
        "stage": _STAGES.get(f.stage, f.stage),
        "entity": f.entity,
        "action": _ACTIONS.get(f.action, f.action),
        "score": float(f.score),
        "start": int(f.start),
        "end": int(f.end),
        "message": f"{where} ({f.stage})",
    }


def _set_body(flow: http.HTTPFlow, doc: dict[str, Any]) -> None:
    """Forward ``doc`` as the request body: identity-encoded, content-length fixed."""
    flow.request.headers.pop("content-encoding", None)
    flow.request.content = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------------- output side
_TERMINAL_MARKERS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"', b'"message_stop"',
                     b"event: response.completed", b"event: message_stop", b"[DONE]")


def _before_terminal(chunk: bytes) -> bytes:
    """The complete SSE events of ``chunk`` before its terminal event (b"" when it starts there)."""
    hits = [i for i in (chunk.find(m) for m in _TERMINAL_MARKERS) if i >= 0]
    if not hits:
        return chunk
    cut = chunk.rfind(b"\n\n", 0, min(hits))
    return chunk[: cut + 2] if cut >= 0 else b""


class StreamGuard:
    """The output guardrail of one streamed call: parses the SSE it is shown, scans text and
    tool-call argument deltas on a worker thread (one stream's work in order), and decides
    whether to end the stream. Thread-safe between the loop (``__call__``) and its worker."""

    def __init__(self, guard: Guard, policy: Policy, api: str, pool: concurrent.futures.Executor,
                 values: KnownValues | None = None) -> None:
        self.guard, self.policy, self.api = guard, policy, api
        self.values = values if values is not None else KnownValues()
        self._texts: dict[int, list[str]] = {}  # per output item: the streamed text (worker side)
        self._text_len: dict[int, int] = {}
        self._pool = pool
        self._parser = SseParser()
        self._scanners: dict[int, Any] = {}
        self._queue: deque[tuple[int, str | None]] = deque()
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._running = False
        self.findings: list[Finding] = []
        self.blocked: Finding | None = None
        self.cut = False
        self.finished = False
        self.text_fed = 0  # characters of message text fed (for the row's catch-up)

    # -- worker side
    def _submit(self, index: int, text: str | None) -> None:
        with self._lock:
            self._queue.append((index, text))
            self._idle.clear()
            if self._running:
                return
            self._running = True
        self._pool.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    self._idle.set()
                    return
                index, text = self._queue.popleft()
            try:
                sc = self._scanners.get(index)
                if sc is None:
                    sc = self._scanners[index] = self.guard.output_scanner(self.policy, item_index=index)
                if text is not None and self._text_len.get(index, 0) < MAX_STREAM_TEXT:
                    self._texts.setdefault(index, []).append(text)
                    self._text_len[index] = self._text_len.get(index, 0) + len(text)
                new = sc.feed(text) if text is not None else sc.finish()
                if new:
                    whole = "".join(self._texts.get(index, []))
                    for f in new:
                        if f.detector in VALUE_DETECTORS and f.end <= len(whole):
                            self.values.add(whole[f.start : f.end], f.entity)
            except Exception as exc:  # never the text: type only
                log.error("codexgate: output guardrail scan failed (%s)", type(exc).__name__)
                continue
            if new:
                with self._lock:
                    self.findings.extend(new)
                    if self.blocked is None:
                        self.blocked = next((f for f in new if f.action == "block"), None)

    def wait(self, timeout: float) -> bool:
        return self._idle.wait(timeout)

    def finish(self) -> None:
        """Scan what is pending in every item (end of stream); idempotent."""
        if self.finished:
            return
        self.finished = True
        for index in list(self._scanners) or [0]:
            self._submit(index, None)

    # -- event side
    def _deltas(self, data: str) -> tuple[list[tuple[int, str, bool]], bool]:
        """(index, text, is_message_text) deltas in an event's data, and whether it is terminal."""
        try:
            ev = json.loads(data)
        except ValueError:
            return [], False
        if not isinstance(ev, dict):
            return [], False
        kind = ev.get("type")
        if self.api == "messages" or kind in ("content_block_delta", "message_stop"):
            if kind == "content_block_delta" and isinstance(ev.get("delta"), dict):
                d, idx = ev["delta"], ev.get("index", 0)
                text = d.get("text") if d.get("type") == "text_delta" else d.get("partial_json")
                if isinstance(text, str) and isinstance(idx, int):
                    return [(idx, text, d.get("type") == "text_delta")], False
            return [], kind == "message_stop"
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta",
                    "response.custom_tool_call_input.delta"):
            delta, idx = ev.get("delta"), ev.get("output_index", 0)
            if isinstance(delta, str) and isinstance(idx, int):
                return [(idx, delta, kind == "response.output_text.delta")], False
            return [], False
        if kind in ("response.completed", "response.failed", "response.incomplete"):
            return [], True
        if isinstance(ev.get("choices"), list):  # chat completions
            out = []
            for ch in ev["choices"]:
                d = ch.get("delta") if isinstance(ch, dict) else None
                if isinstance(d, dict) and isinstance(d.get("content"), str):
                    out.append((int(ch.get("index", 0) or 0), d["content"], True))
            return out, False
        return [], False

    def failure_event(self) -> bytes:
        f = self.blocked
        assert f is not None
        msg = (f"Response stopped by the gateway's guardrail: {f.detector} detector found {f.entity} "
               f"in output item {f.item_index}.")
        if self.api == "messages":
            doc: dict[str, Any] = {"type": "error", "error": {"type": "invalid_request_error", "message": msg}}
            return b"event: error\ndata: " + json.dumps(doc).encode() + b"\n\n"
        if self.api == "chat":
            doc = {"error": {"message": msg, "type": "invalid_request_error", "code": BLOCK_CODE}}
            return b"data: " + json.dumps(doc).encode() + b"\n\n"
        doc = {"type": "response.failed", "response": {
            "id": "resp_guardrail", "object": "response", "status": "failed", "output": [],
            "error": {"code": "invalid_prompt", "message": msg}}}
        return b"event: response.failed\ndata: " + json.dumps(doc).encode() + b"\n\n"

    def __call__(self, chunk: bytes) -> bytes:
        """The stream filter: forward ``chunk`` (scanning a copy on the side), or end the stream."""
        if self.cut:
            return b""
        if not chunk:  # end of the upstream body
            self.finish()
            return chunk
        terminal = False
        for ev in self._parser.feed(chunk):
            deltas, term = self._deltas(ev.data)
            terminal = terminal or term
            for idx, text, is_text in deltas:
                if is_text:
                    self.text_fed += len(text)
                self._submit(idx, text)
        if terminal and self.blocked is None:
            self.finish()
            self.wait(TERMINAL_WAIT_S)  # bounded: the scan of the last deltas is a few ms
        if self.blocked is not None:
            self.cut = True
            # what preceded the terminal event in this chunk was already on its way: keep it
            kept = _before_terminal(chunk) if terminal else chunk
            kept = kept[: kept.rfind(b"\n\n") + 2]  # whole events only, then the failure event
            return kept + self.failure_event()
        return chunk

    def settle(self, result: Any, timeout: float) -> list[Finding]:
        """Findings for the trace row: waits (bounded) for the side scan. Text the filter has not
        been shown yet (the row is written as the terminal event passes the tap, before the
        filter) is scanned from the reassembled ``result`` here."""
        self.wait(timeout)
        text = getattr(result, "text", "") or ""
        if len(text) > self.text_fed and not self.cut:
            rest = text[self.text_fed :]
            self.text_fed = len(text)
            index = max((i for i in self._scanners), default=0)
            self._submit(index, rest)
        self.finish()
        self.wait(timeout)
        with self._lock:  # the scanners' own lists: spans extended after first being reported
            findings = [f for sc in list(self._scanners.values()) for f in sc.findings] or list(self.findings)
        for f in findings:  # final spans (a key arriving over many deltas grew after it was found)
            whole = "".join(self._texts.get(f.item_index, []))
            if f.detector in VALUE_DETECTORS and f.end <= len(whole):
                self.values.add(whole[f.start : f.end], f.entity)
        return findings


# ------------------------------------------------------------------------- the addon
class Guardrails:
    """The guardrails policy addon. ``guard`` is built once at start-up (gateway.py)."""

    policy = NAME

    def __init__(self, holder: VaultHolder, guard: Guard, *, stream_workers: int = 2) -> None:
        self.holder = holder
        self.guard = guard
        # (the vault object, its parsed scopes): parsed once per reload (a reload is a new object)
        self._scopes_for: tuple[Any, dict[str, dict[str, Any]] | PolicyError] | None = None
        self._stream_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=stream_workers, thread_name_prefix="guard-stream"
        )

    def done(self) -> None:
        self._stream_pool.shutdown(wait=False, cancel_futures=True)
        self.guard.close()

    def _scopes(self) -> dict[str, dict[str, Any]] | PolicyError | None:
        """The vault's validated policy scopes, parsed once per loaded vault object."""
        vault = self.holder.vault
        if vault is None:
            return None
        cached = self._scopes_for
        if cached is not None and cached[0] is vault:
            return cached[1]
        try:
            scopes: dict[str, dict[str, Any]] | PolicyError = from_section(vault.sections.get(SECTION))
        except PolicyError as exc:
            scopes = exc
        self._scopes_for = (vault, scopes)
        return scopes

    def _refuse(self, flow: http.HTTPFlow, state: FlowState, status: int, code: str, message: str) -> None:
        state.refuse(status, code, message, NAME)
        flow.response = error_response(state.family, status, code, message)

    @failsafe
    async def request(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or flow.response is not None or state.verdict.identity is None:
            return
        scopes = self._scopes()
        if scopes is None:
            self._refuse(flow, state, 503, "vault_unavailable", "codexgate vault unavailable")
            return
        if isinstance(scopes, PolicyError):  # fail closed; the admin API refuses such sections
            self._refuse(flow, state, 503, "guardrail_policy_invalid",
                         "codexgate: the guardrail policy in the vault is invalid; ask an admin to fix it.")
            return
        key = state.verdict.identity
        policy = resolve(scopes, key.org, key.team_path, key.project, key.key_id)
        if not policy.active:
            state.allow(NAME, "no guardrail policy")
            return
        call = body_input(state.request.body, state.request.shape.api)
        if call is None:
            if state.request.shape.is_model_call and state.request.body is not None:
                self._refuse(flow, state, 400, "guardrail_unreadable_input",
                             "codexgate: the guardrail cannot read this request's input.")
                return
            state.allow(NAME, "no model input")
            return
        items_key, items, instr_key, instructions = call
        session = session_of(state)
        outcome = await self.guard.check_request(
            policy, session_id=session, items=items, digests=known_digests(state, items), instructions=instructions,
            body_bytes=state.request.size,
        )
        state.verdict.guardrail_findings.extend(finding_row(f) for f in outcome.findings)
        body = state.request.body
        assert isinstance(body, dict)
        if outcome.findings:  # the trace stores the body with every finding's value replaced
            known_values(flow).add_from_items(outcome.findings, items, instructions)
            await self._store_redacted(state, call, outcome.findings, session)
        if outcome.blocked:
            msg = outcome.message or "Request blocked by the gateway's guardrail."
            self._refuse(flow, state, BLOCK_STATUS, BLOCK_CODE, msg)
            return
        if outcome.changed:
            _set_body(flow, rewrite_body(body, items_key, outcome.items, instr_key, outcome.instructions))
        if outcome.decision is not None and outcome.decision.incomplete_passed:
            state.decide(NAME, "warn", f"scan budget ran out on {len(outcome.incomplete_items)} item(s); passed")
        if policy.text_detectors("async"):
            flow.metadata[ASYNC_KEY] = asyncio.ensure_future(
                self._async_stage(flow, state, policy, call, list(outcome.findings), session))
        if state.request.stream and policy.text_detectors():
            sg = StreamGuard(self.guard, policy, state.request.shape.api, self._stream_pool, known_values(flow))
            flow.metadata[STREAM_KEY] = sg
            state.record.stream_filters.append(sg)
        actions = sorted({f.action for f in outcome.findings})
        state.allow(NAME, f"{len(outcome.findings)} finding(s) {','.join(actions)}" if actions else "clean")



    async def _store_redacted(self, state: FlowState, call: BodyInput, findings: list[Finding], session: str) -> None:
        """``state.record`` gets the body (and new items) with every finding's span replaced."""
        body = state.request.body
        if not isinstance(body, dict) or state.verdict.privacy_mode == "redacted":
            return  # redacted mode: tracing stores the engine-redacted body (every value, not only findings)
        items_key, items, instr_key, instructions = call
        stored_items, stored_instr = await asyncio.to_thread(
            self.guard.redact_findings, items, instructions, findings, session
        )
        stored = rewrite_body(body, items_key, stored_items, instr_key, stored_instr)
        state.record.stored_body_text = json.dumps(stored, ensure_ascii=False)
        delta = state.request.delta
        if delta is not None and items_key == "input" and isinstance(body.get("input"), list):
            state.record.stored_new_items = json.dumps(stored_items[delta.new_start :], ensure_ascii=False)

    async def _async_stage(
        self, flow: http.HTTPFlow, state: FlowState, policy: Policy, call: BodyInput, pre: list[Finding],
        session: str,
    ) -> list[Finding]:
        """The ``async``-stage check (alongside the forwarded call); its findings' values are
        then masked in the stored body too."""
        _, items, _, instructions = call
        found = await self.guard.check_async(
            policy, items=items, digests=known_digests(state, items), instructions=instructions
        )
        if found:
            known_values(flow).add_from_items(found, items, instructions)
            await self._store_redacted(state, call, [*pre, *found], session)
        return found


def known_digests(state: FlowState, items: Sequence[Any]) -> list[str] | None:
    """Intake's content digests when ``items`` are the very items intake hashed (the common
    case: a Responses ``input`` list), so no control hashes an item twice; else None (the
    engine hashes them itself)."""
    mine = state.request.items
    if len(mine) == len(items) and all(a is b for a, b in zip(mine, items, strict=True)):
        return state.request.content_digests
    return None


def session_of(state: FlowState) -> str:
    """The placeholder session of a call: the Codex session, else the call alone."""
    return state.request.codex.grouping_key or f"call:{state.trace_id}"


def value_mask(flow: http.HTTPFlow, state: FlowState, guard: Guard) -> Callable[[str | None], str | None]:
    """For the trace row of a call with findings: replaces each value its findings matched
    (request and stream) with its session placeholder — plain replacement, cheap on the loop."""
    return known_values(flow).mask(guard, session_of(state))


def pending_async_check(flow: http.HTTPFlow) -> asyncio.Future[Any] | None:
    """The call's async-stage check while it still runs (None: there is none, or it is done).
    The row builder waits for it, bounded by ``ASYNC_WAIT_S``."""
    fut = flow.metadata.get(ASYNC_KEY)
    return fut if isinstance(fut, asyncio.Future) and not fut.done() else None


def row_findings(flow: http.HTTPFlow, state: FlowState, result: Any) -> list[dict[str, Any]]:
    """Every finding of the call for its trace row: request-side ones already in the verdict,
    plus async-stage findings (the row waited for them, see ``pending_async_check``) and
    output-stream findings (waited for, bounded). Called by the row builder on the event loop."""
    out = list(state.verdict.guardrail_findings)
    fut = flow.metadata.pop(ASYNC_KEY, None)
    if fut is not None:
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            out.extend(finding_row(f) for f in fut.result())
        else:  # unknown findings: store no request body rather than an unmasked one
            why = "failed" if fut.done() else "unfinished"
            fut.cancel()
            state.record.stored_body_text = f'{{"redacted": "async guardrail check {why}"}}'
            state.record.stored_new_items = f'"async guardrail check {why}"'
            out.append({"guardrail": "async", "stage": "input", "entity": "", "action": "logged",
                        "score": 0.0, "start": 0, "end": 0, "message": f"async check {why}"})
    sg: StreamGuard | None = flow.metadata.get(STREAM_KEY)
    if sg is not None:
        deadline = time.monotonic() + TERMINAL_WAIT_S
        out.extend(finding_row(f) for f in sg.settle(result, max(0.0, deadline - time.monotonic())))
    return out
