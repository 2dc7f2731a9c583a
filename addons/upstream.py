"""The upstream step: sends an authorised call to its provider.

The only place a provider credential is put on a request. It rewrites the URL to the
provider's base URL, injects the credential, opens an ``Attempt``, and hands the call to the
in-process relay (``stream_relay``), which owns the upstream connection: streams keep their
usage when the client leaves, and an unreachable or broken upstream is answered in the
provider's format. Also decides, in forward-proxy mode, what happens to traffic for hosts that
are not model providers (pass through untouched, or refuse), and explains client TLS failures
(a wrong CA in Codex loops forever otherwise).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.connection import ConnectionState
from mitmproxy.proxy.mode_specs import ReverseMode

from addons.api_shape import ApiShape
from addons.errors import error_response
from addons.failsafe import CLEARED_KEY, failsafe
from addons.flowstate import Attempt, FlowState, get_state
from addons.options import seconds
from addons.provider_hosts import ProviderHosts
from addons.route_table import Target
from addons.stream_relay import RELAY_FAILED_HEADER, RelayJob, RelayTarget, RetryPolicy, StreamRelay
from addons.trace_row import UPSTREAM_SENT_KEY, UpstreamSent
from addons.upstream_url import ANTHROPIC_VERSION, credential_headers, display_url, upstream_url
from codexgate.core.safejson import dumps_text
from codexgate.routing.breaker import Breaker, BreakerConfig, MemoryStore, RedisStore
from codexgate.wire.translate import anthropic as translate_anthropic
from codexgate.wire.translate import chat as translate_chat

RELAY_FAILED_MESSAGE = "codexgate failed while relaying this request (internal error); it can be retried."

if TYPE_CHECKING:
    from addons.tracing import Tracing

log = logging.getLogger("codexgate.routing")


class Upstream:
    """Invariant: forwards a gateway flow only when ``FlowState.cleared_for(required)`` says
    every required policy allowed it; any other flow is refused here (500, provider format)."""

    def __init__(
        self,
        hosts: ProviderHosts,
        required: tuple[str, ...] = ("identity", "scope"),
        tracing: Tracing | None = None,
    ) -> None:
        self.hosts = hosts
        self.required = required
        self.tracing = tracing
        self.relay = StreamRelay()
        self.drain_seconds = 120.0
        self.policy = RetryPolicy()
        self.connect_timeout = 10.0
        self.first_byte_timeout = 60.0
        self.idle_timeout = 300.0
        self.breaker: Breaker | None = None

    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_unknown_hosts",
            str,
            "passthrough",
            "Forward-proxy traffic to hosts that are not model providers: 'passthrough' (tunnel untouched, "
            "not traced) or 'refuse' (403).",
        )
        loader.add_option(
            "codexgate_drain_seconds",
            str,
            "120",
            "How long to keep reading a provider's stream after the client left, to record its usage "
            "(0 turns the stream relay off: streams then pass straight through mitmproxy, and a client "
            "abort is recorded without the final usage).",
        )

        loader.add_option(
            "codexgate_relay_hop",
            bool,
            False,
            "Send non-streamed calls through the relay's loopback HTTP hop as well (as streams are). "
            "Off: the relay answers them in-process and mitmproxy opens no upstream connection for them, "
            "which costs less; the option exists to measure the difference.",
        )
        for name, default, text in _ROUTING_OPTIONS:
            loader.add_option(name, str, default, text)

    async def running(self) -> None:
        if self.tracing is not None:
            await self.relay.start()

    def configure(self, updated: set[str]) -> None:
        if "codexgate_drain_seconds" in updated:
            self.drain_seconds = seconds("codexgate_drain_seconds", allow_zero=True)
        if updated & {name for name, _, _ in _ROUTING_OPTIONS}:
            self._configure_routing()
        if "codexgate_unknown_hosts" in updated and ctx.options.codexgate_unknown_hosts not in (
            "passthrough",
            "refuse",
        ):
            raise exceptions.OptionsError(
                f"codexgate_unknown_hosts must be 'passthrough' or 'refuse', not '{ctx.options.codexgate_unknown_hosts}'."
            )

    def _configure_routing(self) -> None:
        o = ctx.options
        try:
            attempts = int(o.codexgate_retry_attempts)
            failures = int(o.codexgate_breaker_failures)
            min_calls = int(o.codexgate_breaker_min_calls)
            ratio = float(o.codexgate_breaker_ratio)
        except ValueError as exc:
            raise exceptions.OptionsError(
                f"codexgate retry/breaker options must be numbers ({exc})."
            ) from None
        if attempts < 1 or failures < 0 or min_calls < 0 or not 0 <= ratio <= 1:
            raise exceptions.OptionsError(
                "codexgate_retry_attempts must be >= 1, codexgate_breaker_failures and _min_calls >= 0, "
                "codexgate_breaker_ratio between 0 and 1."
            )
        self.policy = RetryPolicy(
            attempts_per_target=attempts,
            budget_s=seconds("codexgate_retry_budget_seconds"),
            backoff_base_s=seconds("codexgate_backoff_seconds", allow_zero=True),
            backoff_max_s=max(seconds("codexgate_backoff_seconds", allow_zero=True), 5.0),
            max_retry_after_s=seconds("codexgate_max_retry_after_seconds", allow_zero=True),
        )
        self.connect_timeout = seconds("codexgate_connect_timeout")
        self.first_byte_timeout = seconds("codexgate_first_byte_timeout")
        self.idle_timeout = seconds("codexgate_idle_timeout")
        cfg = BreakerConfig(
            failures=failures,
            ratio=ratio,
            min_calls=min_calls,
            window_s=seconds("codexgate_breaker_window_seconds"),
            cooldown_s=seconds("codexgate_breaker_cooldown_seconds"),
        )
        url = o.codexgate_breaker_redis.strip()
        store = RedisStore(url) if url else MemoryStore()
        self.breaker = Breaker(cfg, store) if cfg.enabled else None

    # ---------------------------------------------------------------- forward-proxy mode
    @failsafe
    def http_connect(self, flow: http.HTTPFlow) -> None:
        host = flow.request.host
        if self.hosts.is_provider_host(host):
            return
        if ctx.options.codexgate_unknown_hosts == "refuse":
            flow.response = http.Response.make(
                403, f"codexgate: {host} is not a model provider and this gateway refuses other traffic.\n"
            )

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        sni = data.client_hello.sni or (data.context.server.address[0] if data.context.server.address else "")
        if not sni or self.hosts.is_provider_host(sni):
            return
        if ctx.options.codexgate_unknown_hosts == "passthrough":
            data.ignore_connection = True  # tunnel bytes untouched: no interception, no trace

    def tls_failed_client(self, data: tls.TlsData) -> None:
        sni = data.conn.sni or "?"
        if self.hosts.is_provider_host(sni):
            log.error(
                "codexgate: TLS handshake with the client failed for %s (%s). The client does not trust the "
                "gateway's CA: give Codex CODEX_CA_CERTIFICATE=<confdir>/mitmproxy-ca-cert.pem "
                "(or SSL_CERT_FILE), or use base-URL mode.",
                sni,
                data.conn.error,
            )

    # ---------------------------------------------------------------- every call
    @failsafe
    async def request(self, flow: http.HTTPFlow) -> None:
        flow.metadata.pop(CLEARED_KEY, None)
        state = get_state(flow)
        if state is None and flow.response is None:
            if isinstance(flow.client_conn.proxy_mode, ReverseMode) or flow.request.method == "CONNECT":
                return  # reverse-mode flows always have state (failsafe makes one); CONNECTs pass
            if ctx.options.codexgate_unknown_hosts == "refuse":  # plain-HTTP proxy request to another host
                flow.response = http.Response.make(
                    403,
                    f"codexgate: {flow.request.pretty_host} is not a model provider and this gateway refuses other traffic.\n",
                )
            return
        if state is None or flow.response is not None:
            return
        problem = state.cleared_for(self.required)
        if problem is None and state.verdict.provider is None:
            problem = "no provider chosen"
        if problem is not None:
            log.error("codexgate: refusing a call that reached the upstream step uncleared (%s)", problem)
            msg = "codexgate could not authorise this request (internal error); it was not forwarded."
            state.refuse(500, "gateway_error", msg, "upstream")
            flow.response = error_response(state.request.shape.family, 500, "gateway_error", msg)
            return
        plan = state.upstream.plan or [Target(state.verdict.provider)]  # type: ignore[arg-type]
        if self.tracing is not None and self.relay.running and self.drain_seconds > 0:
            job = self._relay_job(flow, state, plan)
            if not state.request.stream and not ctx.options.codexgate_relay_hop:
                await self._answer_in_process(flow, state, job)
            else:
                self._through_hop(flow, state, job)
        else:
            self._send_direct(flow, state, plan)

    @failsafe
    def response(self, flow: http.HTTPFlow) -> None:
        """A streamed call whose relay failed inside before any of the answer went out: the hop
        says so with ``RELAY_FAILED_HEADER`` (after the call's row was written), and the client
        gets the provider-format 502 a non-streamed call gets, not the hop's plain text."""
        state = get_state(flow)
        resp = flow.response
        if state is None or resp is None or not state.upstream.relayed or RELAY_FAILED_HEADER not in resp.headers:
            return
        flow.response = error_response(state.request.shape.family, 502, "gateway_error", RELAY_FAILED_MESSAGE)

    def _send_direct(self, flow: http.HTTPFlow, state: FlowState, plan: list[Target]) -> None:
        """Without the relay mitmproxy forwards the call itself: one target, no retry, no
        translation (the first target that needs none)."""
        target = next((t for t in plan if t.translate is None), None)
        if target is None:
            msg = "codexgate: this route needs translation, which needs the stream relay (codexgate_drain_seconds > 0)."
            state.refuse(503, "no_route", msg, "upstream")
            flow.response = error_response(state.request.shape.family, 503, "no_route", msg)
            return
        provider = target.provider
        req = flow.request
        model = target.model or state.request.model
        url = upstream_url(provider, state.request.shape, model, _query(req))
        req.url = url
        if target.model and isinstance(state.request.body, dict) and "model" in state.request.body:
            req.content = dumps_text({**state.request.body, "model": target.model}).encode()
            req.headers.pop("content-encoding", None)
            flow.metadata[UPSTREAM_SENT_KEY] = UpstreamSent(target.label, req.content, _rewrite(target.model))
        if not state.request.passthrough:
            for name, value in credential_headers(provider).items():
                req.headers[name] = value
        if provider.kind == "anthropic" and "anthropic-version" not in req.headers:
            req.headers["anthropic-version"] = ANTHROPIC_VERSION
        state.verdict.provider = provider
        state.upstream.served_by = target.label
        state.upstream.attempts.append(
            Attempt(
                len(state.upstream.attempts) + 1,
                provider.name,
                display_url(url),
                datetime.now(UTC),
                time.monotonic(),
                model=model,
                decision="served",
            )
        )
        flow.metadata[CLEARED_KEY] = True

    def _relay_target(self, flow: http.HTTPFlow, state: FlowState, target: Target) -> RelayTarget:
        """The request one target gets: its URL, its credential, the body in its API."""
        req = flow.request
        provider = target.provider
        model = target.model or state.request.model
        client_headers = [
            (k, v) for k, v in req.headers.items(multi=True) if k.lower() not in _NEVER_FORWARDED
        ]
        creds = [] if state.request.passthrough else list(credential_headers(provider).items())
        spec = target.spec
        timeouts = {
            "connect_timeout_s": (spec.connect_timeout_s if spec and spec.connect_timeout_s else None)
            or self.connect_timeout,
            "first_byte_timeout_s": (
                spec.first_byte_timeout_s if spec and spec.first_byte_timeout_s else None
            )
            or self.first_byte_timeout,
            "idle_timeout_s": (spec.idle_timeout_s if spec and spec.idle_timeout_s else None)
            or self.idle_timeout,
        }
        if target.translate == "anthropic" and isinstance(state.request.body, dict):
            translated = translate_anthropic.request_to_anthropic(state.request.body, model or "")
            base = provider.base_url.rstrip("/")
            url = (base if base.endswith("/v1") else base + "/v1") + "/messages"
            body = dumps_text(translated.body).encode()
            custom = translated.custom_tools
            headers = [
                ("content-type", "application/json"),
                ("accept", "text/event-stream" if translated.body.get("stream") else "application/json"),
                ("accept-encoding", "identity"),
                ("anthropic-version", ANTHROPIC_VERSION),
                *creds,
            ]
            return RelayTarget(
                label=target.label,
                provider=provider.name,
                url=url,
                display_url=display_url(url),
                headers=headers,
                body=body,
                model=model,
                upstream_api="anthropic_messages",
                stream_translator=lambda: translate_anthropic.ResponsesStream(custom),
                json_translator=lambda status, raw: translate_anthropic.json_to_responses(
                    status, raw, custom
                ),
                dropped=tuple(translated.dropped),
                **timeouts,
            )
        if target.translate == "chat" and isinstance(state.request.body, dict):
            chat = translate_chat.request_to_chat(state.request.body, model or "")
            url = upstream_url(provider, _CHAT_SHAPE, model, _query(req))
            chat_custom = chat.custom_tools
            return RelayTarget(
                label=target.label,
                provider=provider.name,
                url=url,
                display_url=display_url(url),
                headers=[
                    ("content-type", "application/json"),
                    ("accept", "text/event-stream" if chat.body.get("stream") else "application/json"),
                    ("accept-encoding", "identity"),
                    *creds,
                ],
                body=dumps_text(chat.body).encode(),
                model=model,
                upstream_api="chat_completions",
                stream_translator=lambda: translate_chat.ResponsesStream(chat_custom),
                json_translator=lambda status, raw: translate_chat.json_to_responses(
                    status, raw, chat_custom
                ),
                dropped=tuple(chat.dropped),
                **timeouts,
            )
        url = upstream_url(provider, state.request.shape, model, _query(req))
        body = req.raw_content or b""
        headers = [(k, v) for k, v in client_headers if k.lower() != "accept-encoding"]
        if target.model and isinstance(state.request.body, dict) and "model" in state.request.body:
            body = dumps_text({**state.request.body, "model": target.model}).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
        headers.append(("accept-encoding", "identity"))  # the relay reads streams to hold and judge them
        if provider.kind == "anthropic" and not any(k.lower() == "anthropic-version" for k, _ in headers):
            headers.append(("anthropic-version", ANTHROPIC_VERSION))
        return RelayTarget(
            label=target.label,
            provider=provider.name,
            url=url,
            display_url=display_url(url),
            headers=headers + creds,
            body=body,
            model=model,
            **timeouts,
        )

    def _relay_job(self, flow: http.HTTPFlow, state: FlowState, plan: list[Target]) -> RelayJob:
        """The relay's job for this call: every target's URL, credential and body, and the trace's hooks."""
        req = flow.request
        hooks = self.tracing.relay_hooks(flow, state)  # type: ignore[union-attr]
        targets = [self._relay_target(flow, state, t) for t in plan]
        by_label = {t.label: t for t in plan}
        sent = {rt.label: _sent(state, t, rt) for t, rt in zip(plan, targets, strict=True)}

        def on_commit(served: RelayTarget) -> None:
            flow.metadata[UPSTREAM_SENT_KEY] = sent.get(served.label)
            chosen = by_label.get(served.label)
            if chosen is not None:
                state.verdict.provider = chosen.provider  # priced and reported as the provider that served
            state.upstream.served_by = served.label
            if served.dropped:
                state.decide(
                    "translation", "warn", f"{served.upstream_api}: dropped " + "; ".join(served.dropped)
                )

        def on_end(error: str | None, client_gone: bool) -> None:
            if UPSTREAM_SENT_KEY not in flow.metadata:  # nothing served: keep what the last try sent
                last = next((a for a in reversed(state.upstream.attempts) if a.decision != "skipped"), None)
                tried = next(
                    (
                        rt
                        for rt in targets
                        if last is not None
                        and (rt.provider, rt.model, rt.upstream_api)
                        == (last.provider, last.model, last.upstream_api)
                    ),
                    None,
                )
                flow.metadata[UPSTREAM_SENT_KEY] = sent.get(tried.label) if tried is not None else None
            hooks.on_end(error, client_gone)

        job = RelayJob(
            targets=targets,
            method=req.method,
            attempts=state.upstream.attempts,
            on_headers=hooks.on_headers,
            on_end=on_end,
            on_connect_error=hooks.on_connect_error,
            on_client_gone=hooks.on_client_gone,
            on_commit=on_commit,
            client_family=state.request.shape.family,
            policy=self.policy,
            breaker=self.breaker,
            drain_seconds=self.drain_seconds,
        )
        # the flow's request carries no credential from here on: the job holds them
        for name in _NEVER_FORWARDED:
            req.headers.pop(name, None)
        state.upstream.relayed = True
        flow.metadata[CLEARED_KEY] = True
        return job

    def _through_hop(self, flow: http.HTTPFlow, state: FlowState, job: RelayJob) -> None:
        """A streamed call: mitmproxy sends it to the relay over loopback and streams its answer."""
        req = flow.request
        path = self.relay.register(state.trace_id, job)
        # what the url setter would set, without parsing a URL built here (~16 us of mitmproxy's
        # url parsing per call)
        req.scheme, req.host, req.port, req.path = "http", "127.0.0.1", self.relay.port, path
        # the relay never reads the body mitmproxy sends it (each target's body is in the job):
        # an empty one spares a second copy over loopback and a second HTTP parse
        req.raw_content = b""
        for name in ("content-encoding", "transfer-encoding"):
            req.headers.pop(name, None)
        req.headers["content-length"] = "0"

    async def _answer_in_process(self, flow: http.HTTPFlow, state: FlowState, job: RelayJob) -> None:
        """A non-streamed call: the relay runs the job here and its whole answer becomes the
        flow's response, so mitmproxy sends nothing upstream (no loopback hop, no second HTTP
        parse). Attempts, translation, the tap and the trace are the relay's, as for a stream."""
        state.upstream.in_process = True
        client = flow.client_conn
        # the client closed its side while the provider answered (mitmproxy drops CAN_READ on EOF)
        try:
            answer = await self.relay.answer(job, lambda: not (client.state & ConnectionState.CAN_READ))
        except Exception as exc:  # the provider may have been called: a 502, not "not forwarded"
            log.error("codexgate: internal error in the relay (%s); the call is answered 502", type(exc).__name__)
            state.verdict.gateway_error = f"StreamRelay.answer: {type(exc).__name__}"
            flow.response = error_response(state.request.shape.family, 502, "gateway_error", RELAY_FAILED_MESSAGE)
            return
        fields = [(k.encode("latin-1", "replace"), v.encode("latin-1", "replace")) for k, v in answer.headers.items()]
        resp = http.Response.make(answer.status, b"", http.Headers(fields))
        resp.raw_content = answer.body  # as the provider encoded it (content-encoding kept)
        resp.headers["content-length"] = str(len(resp.raw_content))
        flow.response = resp
        if answer.broken:
            flow.kill()  # the body broke after commit: the client sees a cut, not a short answer


def _query(req: http.Request) -> list[tuple[str, str]]:
    """The request's query parameters; without a ``?`` none, and mitmproxy's query parser (a
    fresh parse of the path on every access) is not asked."""
    return list(req.query.items(multi=True)) if "?" in req.path else []


def _rewrite(model: str) -> Callable[[dict[str, Any]], bytes]:
    return lambda doc: dumps_text({**doc, "model": model}).encode()


def _sent(state: FlowState, target: Target, sent: RelayTarget) -> UpstreamSent | None:
    """What the trace keeps of a target's request: None when it is the client's request as is."""
    model = target.model or state.request.model or ""
    if target.translate == "anthropic" and isinstance(state.request.body, dict):
        return UpstreamSent(
            sent.label,
            sent.body,
            lambda doc: dumps_text(translate_anthropic.request_to_anthropic(doc, model).body).encode(),
        )
    if target.translate == "chat" and isinstance(state.request.body, dict):
        return UpstreamSent(
            sent.label,
            sent.body,
            lambda doc: dumps_text(translate_chat.request_to_chat(doc, model).body).encode(),
        )
    if target.model and isinstance(state.request.body, dict) and "model" in state.request.body:
        return UpstreamSent(sent.label, sent.body, _rewrite(target.model))
    return None


_CHAT_SHAPE = ApiShape("chat_completions", "openai", "chat", "/chat/completions")

_ROUTING_OPTIONS = (
    ("codexgate_retry_attempts", "2", "Attempts per route target before falling back to the next one."),
    (
        "codexgate_retry_budget_seconds",
        "120",
        "Total time for all attempts of one call until its answer is committed to the client.",
    ),
    ("codexgate_backoff_seconds", "0.2", "First retry backoff (doubles per retry, with jitter, max 5 s)."),
    (
        "codexgate_max_retry_after_seconds",
        "5",
        "A provider's Retry-After longer than this sends the call to the next target at once.",
    ),
    ("codexgate_connect_timeout", "10", "Seconds to connect to a provider (per attempt)."),
    (
        "codexgate_first_byte_timeout",
        "60",
        "Seconds until a provider's answer (for a stream: its first real event) before trying again.",
    ),
    ("codexgate_idle_timeout", "300", "Seconds without a byte from a committed stream before it is cut."),
    ("codexgate_breaker_failures", "5", "Consecutive failures that open a target's circuit (0: off)."),
    ("codexgate_breaker_ratio", "0.5", "Failure ratio that opens a circuit (0: off) ..."),
    ("codexgate_breaker_min_calls", "20", "... over at least this many calls ..."),
    ("codexgate_breaker_window_seconds", "60", "... in this window."),
    ("codexgate_breaker_cooldown_seconds", "30", "Seconds an open circuit waits before one probe call."),
    (
        "codexgate_breaker_redis",
        "",
        "redis:// URL: share circuit state with every instance using it (default: in-process).",
    ),
)

# credentials a client might still carry; the job adds each target's own
_NEVER_FORWARDED = ("authorization", "x-api-key", "api-key", "proxy-authorization")
