"""Per-flow state shared by the gateway's addons through ``flow.metadata[STATE_KEY]``.

Grouped into records, each written by one owner and read by the steps after it:

- ``request`` (intake): what the client asked for, parsed and bounded;
- ``verdict`` (identity, scope and every policy): who is asking, what each policy decided,
  where the call goes, or why it was refused;
- ``upstream`` (the upstream step and the relay): the attempts and the provider's answer;
- ``timing`` (intake, relay/tap): when things happened;
- ``record`` (tracing): what is stored — the tap, the privacy-applied body, the once-only flag.

Nothing here holds a secret: the presented gateway key sits in ``request.presented_key`` only
between ``requestheaders`` and identity's check (``repr=False``), the key entry's public fields
are kept, and provider credentials are written straight into the outgoing request.

Invariant for forwarding (``cleared_for``): no refusal, no internal error, an authenticated
identity, and an ``allow`` from every policy the pipeline requires.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from addons.api_shape import ApiShape, classify
from addons.codex_session import CodexContext, InputDelta

if TYPE_CHECKING:
    from mitmproxy import http

    from addons.route_table import Target
    from addons.stream_tap import StreamTap
    from codexgate.core.vault import GatewayKey, ProviderCredential

STATE_KEY = "codexgate"


@dataclass
class Refusal:
    status: int
    code: str
    message: str
    policy: str


@dataclass
class Request:
    """Written by intake."""

    shape: ApiShape
    mode: str  # reverse | forward | unknown
    client_path: str | None = None  # path as the client sent it (before routing rewrites it)
    body: dict[str, Any] | None = None
    body_text: str | None = None  # the decoded body as sent (never modified; see Record)
    size: int = 0  # decoded body size in bytes
    model: str | None = None
    also_served_models: list[str] = field(default_factory=list)  # e.g. an Azure body's model
    stream: bool = False
    codex: CodexContext = field(default_factory=CodexContext)
    delta: InputDelta | None = None
    new_items: list[Any] | None = None
    items: list[Any] = field(default_factory=list)  # the body's input items, in order
    content_digests: list[str] = field(default_factory=list)  # wire.content_digest of each item, once per call
    instructions_hash: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    passthrough: bool = False  # an unknown endpoint forwarded without credentials (if configured)
    # The gateway key the client presented, taken off the request in ``requestheaders`` so no
    # later failure can forward it; identity compares it once and clears it.
    presented_key: str | None = field(default=None, repr=False)

    def release_payload(self) -> None:
        """Drop the parsed body and its items once the call's row is written (nothing reads them
        later). mitmproxy's flows end as cyclic garbage, so whatever hangs off a flow waits for a
        full collection: a parsed 40 KB Codex body is some 70 containers that collection walks
        and frees on the event loop. Released here, it is freed by reference counting at once."""
        self.body = None
        self.body_text = None
        self.items = []
        self.new_items = None


@dataclass
class Verdict:
    """Written by identity, scope and every policy addon."""

    identity: GatewayKey | None = None
    privacy_mode: str = "full"  # what of this call's content may be stored (see addons.privacy)
    provider: ProviderCredential | None = None
    route: str | None = None
    refusal: Refusal | None = None
    decisions: list[dict[str, str]] = field(default_factory=list)
    guardrail_findings: list[dict[str, Any]] = field(default_factory=list)
    gateway_error: str | None = None  # "Addon.hook: ExceptionType" when an addon failed


@dataclass
class Attempt:
    """One try at a provider (one per HTTP request sent, plus one per target skipped by its
    circuit breaker). ``decision`` says what the relay did after it: ``served`` (its answer
    went to the client), ``retry`` (same target again), ``fallback`` (next target),
    ``skipped`` (breaker open, nothing sent), ``cut`` (served, then the stream broke),
    ``gave_up`` (the last failure, nothing left to try or no time left)."""

    attempt: int  # 1-based
    provider: str
    url: str  # without query (queries may carry secrets)
    started_at: datetime
    sent_mono: float
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    model: str | None = None  # the model asked of the provider (after any route rewrite)
    upstream_api: str | None = None  # the provider API used when it differs from the client's
    decision: str | None = None
    wait_ms: float | None = None  # backoff slept after this attempt
    sent_bytes: int | None = None  # request body size as sent upstream (after translation)

    def answered(self, status: int) -> None:
        self.status_code = status
        self.latency_ms = (time.monotonic() - self.sent_mono) * 1000.0

    def failed(self, error: str) -> None:
        """Record why the attempt failed; the first, most specific reason is kept."""
        if self.error is None:
            self.error = error
        if self.latency_ms is None:
            self.latency_ms = (time.monotonic() - self.sent_mono) * 1000.0

    def as_row(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "provider": self.provider,
            "url": self.url,
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "started_at": self.started_at,
            "model": self.model,
            "upstream_api": self.upstream_api,
            "decision": self.decision,
            "wait_ms": self.wait_ms,
            "sent_bytes": self.sent_bytes,
        }


@dataclass
class Upstream:
    """Written by the upstream step and the relay (``plan`` by scope: the targets to try, in
    order, all allowed for the key)."""

    attempts: list[Attempt] = field(default_factory=list)
    plan: list[Target] = field(default_factory=list)
    served_by: str | None = None  # label of the target whose answer the client got
    relayed: bool = False  # sent to the provider through the in-process relay
    in_process: bool = False  # the relay answered it whole in the request hook (not streamed)
    status: int | None = None
    response_headers: list[tuple[str, str]] | None = None
    client_gone: bool = False  # the client hung up before the provider finished

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass
class Timing:
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_mono: float = field(default_factory=time.monotonic)
    first_byte_at: datetime | None = None
    first_token_at: datetime | None = None


@dataclass
class Record:
    """Written by tracing: what of the call is stored."""

    tap: StreamTap | None = None
    stored_body_text: str | None = None  # the privacy-applied body, when it differs from the sent one
    stored_new_items: str | None = None  # likewise for the new input items (JSON)
    traced: bool = False  # the trace row was handed to the sink (exactly once per flow)
    # called with the finished row, once (e.g. limits settle their reservation here)
    finishers: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    # applied in order to each chunk of the upstream's answer after the tap saw it, and once
    # with b"" at the end (output guardrails may rewrite or end a stream here)
    stream_filters: list[Callable[[bytes], bytes]] = field(default_factory=list)


@dataclass
class FlowState:
    request: Request
    verdict: Verdict = field(default_factory=Verdict)
    upstream: Upstream = field(default_factory=Upstream)
    timing: Timing = field(default_factory=Timing)
    record: Record = field(default_factory=Record)
    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def new(cls, shape: ApiShape, mode: str) -> FlowState:
        return cls(Request(shape=shape, mode=mode))

    @classmethod
    def for_unparsed(cls, flow: http.HTTPFlow) -> FlowState:
        """A state for a flow that failed before intake could open one (e.g. intake raised)."""
        try:
            shape = classify(flow.request.path, headers_anthropic="anthropic-version" in flow.request.headers)
        except Exception:
            shape = ApiShape("other", "openai", "other", "/")
        return cls.new(shape, "unknown")

    @property
    def family(self) -> str:
        """The error format the client understands (openai | anthropic)."""
        return self.request.shape.family

    def decide(self, policy: str, decision: str, reason: str) -> None:
        self.verdict.decisions.append({"policy": policy, "decision": decision, "reason": reason})

    def allow(self, policy: str, detail: str) -> None:
        self.decide(policy, "allow", detail)

    def refuse(self, status: int, code: str, message: str, policy: str) -> None:
        self.verdict.refusal = Refusal(status, code, message, policy)
        self.decide(policy, "deny", code)

    def cleared_for(self, required: tuple[str, ...]) -> str | None:
        """None when the call may be forwarded, else why not (for the refusal message)."""
        v = self.verdict
        if v.refusal is not None:
            return f"refused by {v.refusal.policy}"
        if v.gateway_error is not None:
            return "internal error"
        if v.identity is None:
            return "not authenticated"
        allowed = {d["policy"] for d in v.decisions if d.get("decision") == "allow"}
        denied = {d["policy"] for d in v.decisions if d.get("decision") == "deny"}
        missing = [p for p in required if p not in allowed or p in denied]
        return f"no decision from {', '.join(missing)}" if missing else None


def get_state(flow: http.HTTPFlow) -> FlowState | None:
    return flow.metadata.get(STATE_KEY)
