"""Which vault providers serve a call, in order: explicit route header, the vault's route rules
(ordered targets, fallback or weighted load balancing, nestable one level), the intercepted host (forward-proxy
mode), then the default provider of the API family.

Invariant: every ``Target`` of a choice can serve the client's API, natively or through a
translation this gateway implements (``Target.translate``)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from codexgate.core.vault import TRANSLATABLE_KINDS, ProviderCredential, RouteGroup, RouteTarget, Vault

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
class Target:
    """One provider a call may be sent to, with the model to ask it for."""

    provider: ProviderCredential
    model: str | None = None  # upstream model name; None keeps the client's
    translate: str | None = None  # None (same API) or the provider API to translate to ("anthropic", "chat")
    spec: RouteTarget | None = None  # the vault entry (weight, per-target timeouts)
    # set when the target is a member of a nested group: the group's index among the route's
    # entries, its strategy and its weight (targets of one group are adjacent in a choice)
    group: int | None = None
    group_strategy: str = "fallback"
    group_weight: float = 1.0

    @property
    def label(self) -> str:
        base = f"{self.provider.name}:{self.model}" if self.model else self.provider.name
        return base + ("#chat" if self.translate == "chat" else "")


@dataclass(frozen=True)
class RouteChoice:
    provider: ProviderCredential | None
    route: str
    problem: str | None = None  # why no provider could be chosen
    targets: tuple[Target, ...] = field(default_factory=tuple)
    strategy: str = "fallback"


def compatible(api: str, provider: ProviderCredential) -> bool:
    return provider.kind in _COMPATIBLE.get(api, ())


def translation(api: str, provider: ProviderCredential) -> str | None | bool:
    """None when ``provider`` serves ``api`` natively, the translation's name when it can be
    served through one, False when it cannot be served."""
    if compatible(api, provider):
        return None
    if provider.kind in TRANSLATABLE_KINDS.get(api, ()):
        return provider.kind
    return False


def _single(p: ProviderCredential, route: str) -> RouteChoice:
    return RouteChoice(p, route, targets=(Target(p),))


def _weighted(
    items: list, strategy: str, weight: Callable[[object], float], rng: random.Random | None
) -> list:
    """``items`` as listed (fallback) or in a weighted random permutation (loadbalance;
    Efraimidis-Spirakis keys, so an item of weight 2 comes first twice as often as one of 1)."""
    if strategy != "loadbalance" or len(items) < 2:
        return list(items)
    r = rng or random
    keyed = []
    for it in items:
        w = weight(it)
        keyed.append((math.log(r.random() or 1e-300) / (w if w > 0 else 1.0), it))
    keyed.sort(key=lambda kt: kt[0], reverse=True)
    return [it for _, it in keyed]


def _leaf_weight(t: Target) -> float:
    return t.spec.weight if t.spec is not None else 1.0


def order(targets: tuple[Target, ...], strategy: str, rng: random.Random | None = None) -> list[Target]:
    """The order to try ``targets`` in. The route's entries (plain targets, and nested groups
    of adjacent targets) are ordered by the route's strategy: as listed (fallback) or weighted
    random (loadbalance); then each group's members by the group's strategy, all of them kept,
    so a loadbalance group picks one member by weight and the others follow as fallbacks before
    the route's next entry."""
    entries: list[list[Target]] = []
    for t in targets:
        if t.group is not None and entries and entries[-1][0].group == t.group:
            entries[-1].append(t)
        else:
            entries.append([t])

    def entry_weight(e: object) -> float:
        first = e[0]  # type: ignore[index]
        return first.group_weight if first.group is not None else _leaf_weight(first)

    out: list[Target] = []
    for e in _weighted(entries, strategy, entry_weight, rng):
        if e[0].group is None:
            out.extend(e)
        else:
            out.extend(_weighted(e, e[0].group_strategy, _leaf_weight, rng))  # type: ignore[arg-type]
    return out


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
        return _single(p, f"header:{requested}")
    for i, rule in enumerate(vault.routes):
        if rule.api not in ("*", api):
            continue
        if model is not None and fnmatchcase(model, rule.model):
            targets = []
            for gi, entry in enumerate(rule.entries()):
                members = entry.targets if isinstance(entry, RouteGroup) else [entry]
                for spec in members:
                    p = vault.providers.get(spec.provider)
                    how = translation(api, p) if p is not None else False
                    if spec.upstream_api == "chat_completions":
                        how = "chat" if api == "responses" and how is None else False
                    if p is None or how is False:
                        continue
                    if isinstance(entry, RouteGroup):
                        targets.append(
                            Target(p, spec.model, how or None, spec, gi, entry.strategy, entry.weight)
                        )
                    else:
                        targets.append(Target(p, spec.model, how or None, spec))
            if targets:
                return RouteChoice(
                    targets[0].provider,
                    f"rule{i}:{rule.model}->{rule.describe()}",
                    targets=tuple(targets),
                    strategy=rule.strategy,
                )
    if host_provider:
        p = vault.providers.get(host_provider)
        if p is not None and compatible(api, p):
            return _single(p, f"host:{host_provider}")
    candidates = [p for p in vault.providers.values() if compatible(api, p)]
    for p in candidates:
        if p.default:
            return _single(p, f"default:{p.name}")
    if candidates:
        return _single(candidates[0], f"default:{candidates[0].name}")
    return RouteChoice(None, "none", f"no provider configured for the {api} API")
