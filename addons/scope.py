"""Policy: the key may use this model and the provider the route table picks (fnmatch globs
on the key), else 403 in the provider's format."""

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
            self.hosts.provider_for_host(flow.request.pretty_host) if state.request.mode == "forward" else None
        )
        choice = route_table.choose(
            vault, state.request.shape.api, model, requested=requested, host_provider=host_provider
        )
        if choice.provider is None:
            self._refuse(flow, state, 400 if requested else 503, "no_route", f"codexgate: {choice.problem}.")
            return
        if not allowed(choice.provider.name, key.providers):
            self._refuse(
                flow,
                state,
                403,
                "provider_not_allowed",
                f"Key {key.key_id} may not use provider '{choice.provider.name}' (allowed: {', '.join(key.providers)}).",
            )
            return
        state.verdict.provider, state.verdict.route = choice.provider, choice.route
        state.decide("scope", "allow", f"{model or '-'} via {choice.provider.name}")

    @staticmethod
    def _refuse(flow: http.HTTPFlow, state: FlowState, status: int, code: str, message: str) -> None:
        state.refuse(status, code, message, "scope")
        flow.response = error_response(state.request.shape.family, status, code, message)
