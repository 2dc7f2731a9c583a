"""Per-flow state shared by the gateway's addons through ``flow.metadata[STATE_KEY]``.

Each addon fills in its part, in request order: identity -> scope -> routing -> upstream ->
tracing. Nothing here holds a secret: the gateway key is never stored, only its entry's
public fields; provider credentials are written straight into the outgoing request.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from addons.api_shape import ApiShape, classify
from addons.codex_session import CodexContext, InputDelta

if TYPE_CHECKING:
    from mitmproxy import http

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
class FlowState:
    """Per-call state. Invariant for forwarding (checked by ``cleared_for``): no refusal, no
    internal error, an authenticated identity, and an ``allow`` decision from every policy
    the pipeline requires."""

    shape: ApiShape
    mode: str  # reverse | forward
    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started_mono: float = field(default_factory=time.monotonic)
    body: dict[str, Any] | None = None
    body_text: str | None = None
    client_path: str | None = None  # path as the client sent it (before routing rewrites it)
    request_model: str | None = None
    also_served_models: list[str] = field(default_factory=list)  # e.g. an Azure body's model
    stream_requested: bool = False
    identity: GatewayKey | None = None
    privacy_mode: str = "full"  # what of this call's content may be stored (see addons.privacy)
    provider: ProviderCredential | None = None
    route: str | None = None
    refusal: Refusal | None = None
    decisions: list[dict[str, str]] = field(default_factory=list)
    guardrail_findings: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    codex: CodexContext = field(default_factory=CodexContext)
    delta: InputDelta | None = None
    new_items: list[Any] | None = None
    new_items_json: str | None = None  # set when it had to be redacted ahead of time
    body_redacted: bool = False
    instructions_hash: str | None = None
    upstream_sent_mono: float | None = None
    first_byte_at: datetime | None = None
    first_token_at: datetime | None = None
    tap: StreamTap | None = None
    client_gone: bool = False  # the client hung up before the provider finished
    relayed: bool = False  # a streamed call sent to the provider through the in-process relay
    upstream_status: int | None = None
    response_headers: list[tuple[str, str]] | None = None
    traced: bool = False  # the trace row was handed to the sink (exactly once per flow)
    # The gateway key the client presented, taken off the request in ``requestheaders`` so no
    # later failure can forward it. Never stored, logged or traced (repr=False).
    presented_key: str | None = field(default=None, repr=False)
    gateway_error: str | None = None  # "Addon.hook: ExceptionType" when an addon failed
    passthrough: bool = False  # an unknown endpoint forwarded without credentials (if configured)
    body_truncated: bool = False  # the stored request body was cut to the trace cap
    request_bytes: int = 0  # size of the (decoded) request body as the client sent it

    @classmethod
    def for_unparsed(cls, flow: http.HTTPFlow) -> FlowState:
        """A state for a flow that failed before intake could open one (e.g. intake raised)."""
        try:
            shape = classify(flow.request.path, headers_anthropic="anthropic-version" in flow.request.headers)
        except Exception:
            shape = ApiShape("other", "openai", "other", "/")
        return cls(shape=shape, mode="unknown")

    def allow(self, policy: str, detail: str) -> None:
        self.decide(policy, "allow", detail)

    def cleared_for(self, required: tuple[str, ...]) -> str | None:
        """None when the call may be forwarded, else why not (for the refusal message)."""
        if self.refusal is not None:
            return f"refused by {self.refusal.policy}"
        if self.gateway_error is not None:
            return "internal error"
        if self.identity is None:
            return "not authenticated"
        allowed = {d["policy"] for d in self.decisions if d.get("decision") == "allow"}
        denied = {d["policy"] for d in self.decisions if d.get("decision") == "deny"}
        missing = [p for p in required if p not in allowed or p in denied]
        return f"no decision from {', '.join(missing)}" if missing else None

    def decide(self, policy: str, decision: str, reason: str) -> None:
        self.decisions.append({"policy": policy, "decision": decision, "reason": reason})

    def refuse(self, status: int, code: str, message: str, policy: str) -> None:
        self.refusal = Refusal(status, code, message, policy)
        self.decide(policy, "deny", code)


def get_state(flow: http.HTTPFlow) -> FlowState | None:
    return flow.metadata.get(STATE_KEY)
