"""Limits per level, stored as the vault's raw JSON section ``limits``.

Levels, outermost first: ``org`` → ``team`` → ``project`` → ``developer`` → ``key``. Each level
is named by a *scope* string: ``org`` = ``ORG``; ``team`` = ``ORG/TEAM``; ``project`` =
``ORG/PROJECT`` and ``developer`` = ``ORG/DEVELOPER`` (projects and developers are org-wide, so a
developer's budget spans the teams they work in); ``key`` = the key's public id. The ledger's
id of a level is ``"{level}:{scope}"``.

A level may carry a USD budget with a period (``day|week|month|total``) reset in an IANA zone
(default UTC), ``rpm``, ``tpm`` (input + output tokens per minute), ``max_concurrent`` and a
soft threshold (default 0.8) past which a request is still served but flagged ``warn``.

Section format (``vault.sections["limits"]``)::

    {"version": 1,
     "settings": {"default_output_tokens": 4096, "fallback_usd_per_1k_tokens": 0.01,
                  "bytes_per_token": 4.0, "reservation_ttl_seconds": 900},
     "levels": {"team:acme/platform": {"budget_usd": 50, "period": "day", "tz": "UTC",
                                       "rpm": 120, "tpm": 400000, "max_concurrent": 8,
                                       "soft_threshold": 0.8}}}

Budgets stored on keys and teams by ``codexgate key|team`` (``budget_usd``/``budget_period``)
still apply: they are the budget of that key or team level unless the section sets one there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from codexgate.core.vault import GatewayKey, Team, Vault, VaultError, validate_developer, validate_name
from codexgate.limits.periods import PERIODS, PeriodError, zone

LEVELS = ("org", "team", "project", "developer", "key")
SECTION = "limits"
SECTION_VERSION = 1


class LimitsError(ValueError):
    """Invalid limits configuration; one line a user can act on."""


@dataclass(frozen=True, slots=True)
class LevelLimits:
    """Limits of one level. ``None`` means no limit of that kind. Invariant after ``validate``:
    ``budget_usd`` and ``period`` are both set or both ``None``; numbers are positive."""

    budget_usd: float | None = None
    period: str | None = None
    tz: str = "UTC"
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    soft_threshold: float = 0.8

    def validate(self) -> LevelLimits:
        if (self.budget_usd is None) != (self.period is None):
            raise LimitsError("a budget needs both --budget-usd and --period")
        if self.budget_usd is not None and (not math.isfinite(self.budget_usd) or self.budget_usd <= 0):
            raise LimitsError("a budget must be a positive, finite amount of USD")
        if self.period is not None and self.period not in PERIODS:
            raise LimitsError(f"unknown period {self.period!r} (use {', '.join(PERIODS)})")
        try:
            zone(self.tz)
        except PeriodError as exc:
            raise LimitsError(str(exc)) from None
        for name in ("rpm", "tpm", "max_concurrent"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise LimitsError(f"{name.replace('_', '-')} must be a positive whole number")
        if not (isinstance(self.soft_threshold, int | float) and 0 < self.soft_threshold <= 1):
            raise LimitsError("the soft threshold must be in (0, 1]")
        return self

    @property
    def empty(self) -> bool:
        return self.budget_usd is None and self.rpm is None and self.tpm is None and self.max_concurrent is None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LevelLimits:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise LimitsError(f"unknown limit field(s) {', '.join(sorted(unknown))}")
        kw = dict(d)
        if isinstance(kw.get("budget_usd"), int):
            kw["budget_usd"] = float(kw["budget_usd"])
        return cls(**kw).validate()


@dataclass(frozen=True, slots=True)
class Level:
    """One applicable level of a request: its kind, scope and limits. ``id`` keys the ledger."""

    level: str
    scope: str
    limits: LevelLimits

    @property
    def id(self) -> str:
        return f"{self.level}:{self.scope}"


@dataclass(frozen=True, slots=True)
class Settings:
    default_output_tokens: int = 4096
    fallback_usd_per_1k_tokens: float = 0.01
    bytes_per_token: float = 4.0
    reservation_ttl_seconds: float = 900.0


def level_id(level: str, scope: str) -> str:
    return f"{level}:{scope}"


def parse_level_id(ident: str) -> tuple[str, str]:
    level, sep, scope = ident.partition(":")
    if not sep or level not in LEVELS or not scope:
        raise LimitsError(f"invalid level {ident!r}")
    return level, scope


def validate_scope(level: str, scope: str) -> str:
    """Check a scope string of ``level`` (names as the vault accepts them)."""
    try:
        if level == "org":
            validate_name("org", scope)
        elif level == "key":
            validate_name("key id", scope)
        else:
            org, sep, rest = scope.partition("/")
            if not sep:
                raise LimitsError(f"invalid {level} {scope!r}: expected ORG/{level.upper()}")
            validate_name("org", org)
            validate_developer(rest) if level == "developer" else validate_name(level, rest)
    except VaultError as exc:
        raise LimitsError(str(exc)) from None
    return scope


def key_scopes(key: GatewayKey) -> list[tuple[str, str]]:
    """(level, scope) of every level of a key, outermost first."""
    return [
        ("org", key.org),
        ("team", f"{key.org}/{key.team}"),
        ("project", f"{key.org}/{key.project}"),
        ("developer", f"{key.org}/{key.developer}"),
        ("key", key.key_id),
    ]


@dataclass
class LimitsConfig:
    """Every configured level (``id`` -> limits) plus estimate/ledger settings."""

    levels: dict[str, LevelLimits] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> LimitsConfig:
        if not section:
            return cls()
        if not isinstance(section, Mapping) or section.get("version", SECTION_VERSION) != SECTION_VERSION:
            raise LimitsError("the vault's limits section has an unknown format")
        s = dict(section.get("settings") or {})
        try:
            settings = Settings(**s)
        except TypeError:
            raise LimitsError("the vault's limits section has unknown settings") from None
        levels = {}
        for ident, d in (section.get("levels") or {}).items():
            parse_level_id(ident)
            levels[ident] = LevelLimits.from_dict(d)
        return cls(levels, settings)

    def to_section(self) -> dict[str, Any]:
        return {
            "version": SECTION_VERSION,
            "settings": asdict(self.settings),
            "levels": {k: v.to_dict() for k, v in sorted(self.levels.items()) if not v.empty},
        }

    def resolve(self, key: GatewayKey, team: Team | None = None) -> list[Level]:
        """The levels that limit a request made with ``key``, outermost first; levels without
        any limit are left out. The key's and the team's own vault budgets fill in the budget of
        those levels when the section does not set one."""
        out = []
        for level, scope in key_scopes(key):
            lim = self.levels.get(level_id(level, scope)) or LevelLimits()
            legacy = key if level == "key" else team if level == "team" else None
            if lim.budget_usd is None and legacy is not None and legacy.budget_usd and legacy.budget_period:
                lim = replace(lim, budget_usd=float(legacy.budget_usd), period=legacy.budget_period)
            if not lim.empty:
                out.append(Level(level, scope, lim))
        return out

    def all_levels(self, vault: Vault | None = None) -> list[Level]:
        """Every configured level, including the key and team budgets stored in ``vault``."""
        found = {ident: lim for ident, lim in self.levels.items() if not lim.empty}
        if vault is not None:
            for t in vault.teams.values():
                ident = level_id("team", t.path)
                lim = found.get(ident, LevelLimits())
                if lim.budget_usd is None and t.budget_usd and t.budget_period:
                    found[ident] = replace(lim, budget_usd=float(t.budget_usd), period=t.budget_period)
            for k in vault.keys.values():
                ident = level_id("key", k.key_id)
                lim = found.get(ident, LevelLimits())
                if lim.budget_usd is None and k.budget_usd and k.budget_period:
                    found[ident] = replace(lim, budget_usd=float(k.budget_usd), period=k.budget_period)
        return [Level(*parse_level_id(i), lim) for i, lim in sorted(found.items())]


def config_of(vault: Vault) -> LimitsConfig:
    """The limits configuration held by ``vault``."""
    return LimitsConfig.from_section(vault.sections.get(SECTION))


def levels_for_key(vault: Vault, key: GatewayKey) -> list[Level]:
    """Resolution in one call: the applicable levels of ``key`` under ``vault``'s limits."""
    team = vault.teams.get(f"{key.org}/{key.team}")
    return config_of(vault).resolve(key, team)
