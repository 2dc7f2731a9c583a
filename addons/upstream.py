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
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from mitmproxy import ctx, exceptions, http, tls
from mitmproxy.proxy.mode_specs import ReverseMode

from addons.errors import error_response
from addons.failsafe import CLEARED_KEY, failsafe
from addons.flowstate import Attempt, FlowState, get_state
from addons.options import seconds
from addons.provider_hosts import ProviderHosts
from addons.stream_relay import RelayJob, StreamRelay
from addons.upstream_url import ANTHROPIC_VERSION, credential_headers, display_url, upstream_url

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

    async def running(self) -> None:
        if self.tracing is not None:
            await self.relay.start()

    def configure(self, updated: set[str]) -> None:
        if "codexgate_drain_seconds" in updated:
            self.drain_seconds = seconds("codexgate_drain_seconds", allow_zero=True)
        if "codexgate_unknown_hosts" in updated and ctx.options.codexgate_unknown_hosts not in (
            "passthrough",
            "refuse",
        ):
            raise exceptions.OptionsError(
                f"codexgate_unknown_hosts must be 'passthrough' or 'refuse', not '{ctx.options.codexgate_unknown_hosts}'."
            )

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
    def request(self, flow: http.HTTPFlow) -> None:
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
        provider = state.verdict.provider
        assert provider is not None
        req = flow.request
        url = upstream_url(provider, state.request.shape, state.request.model, list(req.query.items(multi=True)))
        req.url = url
        if not state.request.passthrough:
            for name, value in credential_headers(provider).items():
                req.headers[name] = value
        if provider.kind == "anthropic" and "anthropic-version" not in req.headers:
            req.headers["anthropic-version"] = ANTHROPIC_VERSION
        state.upstream.attempts.append(
            Attempt(len(state.upstream.attempts) + 1, provider.name, display_url(url), datetime.now(UTC), time.monotonic())
        )
        flow.metadata[CLEARED_KEY] = True
        if self.tracing is not None and self.relay.running and self.drain_seconds > 0:
            self._send_through_relay(flow, state)

    def _send_through_relay(self, flow: http.HTTPFlow, state: FlowState) -> None:
        req = flow.request
        hooks = self.tracing.relay_hooks(flow, state)  # type: ignore[union-attr]
        job = RelayJob(
            url=req.url,
            method=req.method,
            headers=list(req.headers.items(multi=True)),
            body=req.raw_content or b"",
            on_headers=hooks.on_headers,
            on_end=hooks.on_end,
            on_connect_error=hooks.on_connect_error,
            on_client_gone=hooks.on_client_gone,
            drain_seconds=self.drain_seconds,
        )
        req.url = self.relay.submit(state.trace_id, job)
        state.upstream.relayed = True
