"""Which vault provider serves a call: explicit route header, the vault's route rules,
the intercepted host (forward-proxy mode), then the default provider of the API family."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from codexgate.core.vault import ProviderCredential, Vault

ROUTE_HEADER = "x-codexgate-route"

# which provider kinds can serve which API without translation
_COMPATIBLE = {
    "responses": ("openai", "azure", "openai_compatible"),
    "chat_completions": ("openai", "azure", "openai_compatible"),
    "completions": ("openai", "azure", "openai_compatible"),
    "embeddings": ("openai", "azure", "openai_compatible"),
    "models": ("openai", "azure", "openai_compatible"),
    "other": ("openai", "azure", "openai_compatible"),
    "anthropic_messages": ("anthropic",),
}


@dataclass(frozen=True)
class RouteChoice:
    provider: ProviderCredential | None
    route: str
    problem: str | None = None  # why no provider could be chosen


def compatible(api: str, provider: ProviderCredential) -> bool:
    return provider.kind in _COMPATIBLE.get(api, ())


def choose(
    vault: Vault, api: str, model: str | None, *, requested: str | None, host_provider: str | None
) -> RouteChoice:
    if requested:
        p = vault.providers.get(requested)
        if p is None:
            return RouteChoice(None, f"header:{requested}", f"unknown route '{requested}'")
        if not compatible(api, p):
            return RouteChoice(
                None, f"header:{requested}", f"provider '{requested}' ({p.kind}) cannot serve the {api} API"
            )
        return RouteChoice(p, f"header:{requested}")
    for i, rule in enumerate(vault.routes):
        if rule.api not in ("*", api):
            continue
        if model is not None and fnmatchcase(model, rule.model):
            p = vault.providers.get(rule.provider)
            if p is not None and compatible(api, p):
                return RouteChoice(p, f"rule{i}:{rule.model}->{rule.provider}")
    if host_provider:
        p = vault.providers.get(host_provider)
        if p is not None and compatible(api, p):
            return RouteChoice(p, f"host:{host_provider}")
    candidates = [p for p in vault.providers.values() if compatible(api, p)]
    for p in candidates:
        if p.default:
            return RouteChoice(p, f"default:{p.name}")
    if candidates:
        return RouteChoice(candidates[0], f"default:{candidates[0].name}")
    return RouteChoice(None, "none", f"no provider configured for the {api} API")
