"""Policy: the key may use this model and the providers the route table picks (fnmatch globs
on the key), else 403 in the provider's format.

Invariant (fail closed): ``state.upstream.plan`` holds only targets whose provider the key may
use; a route whose targets are all outside the key's providers is refused."""

from __future__ import annotations

from fnmatch import fnmatchcase

from mitmproxy import http

from addons import route_table
from addons.errors import error_response
from addons.failsafe import failsafe
from addons.flowstate import FlowState, get_state
from addons.provider_hosts import ProviderHosts
from addons.vault_watch import VaultHolder


def allowed(value: str, globs: list[str]) -> bool:
    return any(fnmatchcase(value, g) for g in globs)


class Scope:
    def __init__(self, holder: VaultHolder, hosts: ProviderHosts) -> None:
        self.holder = holder
        self.hosts = hosts

    @failsafe
    def request(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or flow.response is not None or state.verdict.identity is None:
            return
        vault = self.holder.vault
        if vault is None:  # vault vanished between identity and here: fail closed
            self._refuse(flow, state, 503, "vault_unavailable", "codexgate vault unavailable")
            return
        key = state.verdict.identity
        model = state.request.model
        if model is None and state.request.shape.is_model_call and not state.request.passthrough:
            # intake refuses these already; a model nobody could read is never in scope
            self._refuse(flow, state, 400, "missing_model", "codexgate: the request names no 'model'.")
            return
        for name in [model, *state.request.also_served_models] if model is not None else []:
            if not allowed(name, key.models):
                self._refuse(
                    flow,
                    state,
                    403,
                    "model_not_allowed",
                    f"Key {key.key_id} may not use model '{name}' (allowed: {', '.join(key.models)}).",
                )
                return
        requested = flow.request.headers.get(route_table.ROUTE_HEADER)
        if requested is not None:
            del flow.request.headers[route_table.ROUTE_HEADER]
        host_provider = (
            self.hosts.provider_for_host(flow.request.pretty_host)
            if state.request.mode == "forward"
            else None
        )
        choice = route_table.choose(
            vault, state.request.shape.api, model, requested=requested, host_provider=host_provider
        )
        if choice.provider is None:
            self._refuse(flow, state, 400 if requested else 503, "no_route", f"codexgate: {choice.problem}.")
            return
        # fail closed: only targets whose provider the key may use are ever tried
        usable = tuple(t for t in choice.targets if allowed(t.provider.name, key.providers))
        if not usable:
            names = ", ".join(dict.fromkeys(t.provider.name for t in choice.targets)) or choice.provider.name
            self._refuse(
                flow,
                state,
                403,
                "provider_not_allowed",
                f"Key {key.key_id} may not use provider '{names}' (allowed: {', '.join(key.providers)}).",
            )
            return
        state.verdict.provider, state.verdict.route = usable[0].provider, choice.route
        state.upstream.plan = route_table.order(usable, choice.strategy)
        state.verdict.provider = state.upstream.plan[0].provider
        skipped = len(choice.targets) - len(usable)
        via = " | ".join(t.label for t in state.upstream.plan)
        state.decide(
            "scope",
            "allow",
            f"{model or '-'} via {via}" + (f" ({skipped} target(s) not allowed)" if skipped else ""),
        )

    @staticmethod
    def _refuse(flow: http.HTTPFlow, state: FlowState, status: int, code: str, message: str) -> None:
        state.refuse(status, code, message, "scope")
        flow.response = error_response(state.request.shape.family, status, code, message)
