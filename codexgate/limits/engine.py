"""What the gateway's limits addon holds and calls: the ledger plus the current limits
configuration (swapped whenever the vault reloads).

Per request (see the module docstring of ``codexgate.limits.ledger`` for the semantics)::

    engine = LimitsEngine(open_ledger(path_or_redis_url))        # at start-up (addon `running`)
    engine.update(vault)                                          # on start and every vault reload
    outcome = await engine.reserve(key, len(raw_body), body, model, provider_kind, now)
    if outcome is None: ...                                       # no limit applies: forward
    elif isinstance(outcome, Denial): ...                         # 429, outcome.headers(), error_fields()
    else: ...                                                     # forward; after the trace row:
    await engine.settle(outcome, cost_usd, input_tokens, output_tokens, model, provider_kind)
    await engine.release(outcome)                                 # instead, when nothing was served

Invariants: every ``Reservation`` is settled or released exactly once (a second call is a no-op
in the ledger); a request whose limits cannot be read must be refused (fail closed), never
forwarded unchecked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from codexgate.core.vault import GatewayKey, Vault
from codexgate.limits.config import Level, LimitsConfig, LimitsError, config_of
from codexgate.limits.estimate import Estimate, cost_of, estimate_call, fallback_cost
from codexgate.limits.ledger import Denial, Ledger, Reservation


class LimitsEngine:
    """Ledger + configuration. ``update`` replaces the configuration atomically (one reference
    swap), so a request sees either the old or the new limits, never a mix."""

    def __init__(self, ledger: Ledger, vault: Vault | None = None) -> None:
        self.ledger = ledger
        self._config = LimitsConfig()
        self._teams: Mapping[str, Any] = {}
        self._error: str | None = None
        if vault is not None:
            self.update(vault)

    def update(self, vault: Vault) -> None:
        """Take the limits of a freshly loaded vault. Raises ``LimitsError`` for an invalid
        section, and from then on ``reserve`` raises it too (fail closed: the addon answers 503)
        until a vault with a valid section loads."""
        try:
            config = config_of(vault)
        except LimitsError as exc:
            self._error = str(exc)
            raise
        self._config, self._teams, self._error = config, dict(vault.teams), None

    @property
    def config(self) -> LimitsConfig:
        return self._config

    def levels(self, key: GatewayKey) -> list[Level]:
        return self._config.resolve(key, self._teams.get(f"{key.org}/{key.team}"))

    def estimate(
        self, body_bytes: int, body: Mapping[str, Any] | None, model: str | None, provider_kind: str | None
    ) -> Estimate:
        return estimate_call(body_bytes, body, model, provider_kind, self._config.settings)

    async def reserve(
        self,
        key: GatewayKey,
        body_bytes: int,
        body: Mapping[str, Any] | None,
        model: str | None,
        provider_kind: str | None,
        now: datetime,
    ) -> Reservation | Denial | None:
        """``None`` when no level of ``key`` has a limit (nothing is written to the ledger).
        Raises ``LimitsError`` while the vault's limits section is invalid."""
        if self._error is not None:
            raise LimitsError(self._error)
        levels = self.levels(key)
        if not levels:
            return None
        return await self.ledger.reserve(levels, self.estimate(body_bytes, body, model, provider_kind), now)

    def actual_cost(
        self,
        cost_usd: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        model: str | None = None,
        provider_kind: str | None = None,
    ) -> float:
        """The cost to settle: the trace's ``cost_usd``; else the call's tokens priced (fallback
        rate when the model has no price); else, with no usage at all, 0."""
        if cost_usd is not None and math.isfinite(cost_usd):
            return cost_usd
        if input_tokens is None and output_tokens is None:
            return 0.0
        tin, tout = input_tokens or 0, output_tokens or 0
        if model:
            return cost_of(model, provider_kind, tin, tout, self._config.settings)[0]
        return fallback_cost(tin + tout, self._config.settings)

    async def settle(
        self,
        reservation: Reservation,
        cost_usd: float | None,
        input_tokens: int | None,
        output_tokens: int | None,
        model: str | None = None,
        provider_kind: str | None = None,
    ) -> float:
        """Settle with the trace row's figures; returns the cost charged."""
        cost = self.actual_cost(cost_usd, input_tokens, output_tokens, model, provider_kind)
        await self.ledger.settle(reservation, cost, (input_tokens or 0) + (output_tokens or 0))
        return cost

    async def release(self, reservation: Reservation) -> None:
        await self.ledger.release(reservation)

    async def close(self) -> None:
        await self.ledger.close()
