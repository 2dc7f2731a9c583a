"""Policy ``limits``: budgets and rate limits per org/team/project/developer/key, enforced before a
call is forwarded (``codexgate.limits``; see docs/LIMITS.md).

Per call, after scope chose the provider: reserve an estimate on every level in the ledger
(one atomic step, SQLite file or Redis). Outcomes:

- no level has a limit: ``allow`` ("no limits");
- ``Denial``: 429 in the provider's format. Rate limits and concurrency carry ``Retry-After`` and
  ``x-ratelimit-*`` (Codex and the SDKs wait and retry); an exhausted budget is
  ``type: usage_limit_reached`` with ``resets_at``/``resets_in_seconds`` and no ``Retry-After``,
  except for Codex itself (``originator: codex_*``), which gets a final 400 whose plain-text body
  is the one-line message naming the level and the reset time (Codex shows it verbatim);
- the ledger cannot be reached or the vault's limits section is invalid: 503 (fail closed:
  a call is never forwarded unchecked);
- ``Reservation``: ``allow`` plus a ``warn`` decision per level past its soft threshold; a
  finisher settles the reservation with the trace row's real cost and tokens (or releases it when
  nothing was served), exactly once — the row is written once per flow, also for streams whose
  client left (the relay drains them). A reservation whose process died is expired by the
  ledger after ``codexgate_reservation_ttl`` seconds (its estimate charged, corrected by a late
  settle or ``codexgate ledger rebuild``).

On every successful response Codex's own usage headers (``x-codex-primary-used-percent`` …)
are set from the tightest budgets, so the developer's Codex shows the budget burn.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from addons.errors import error_response
from addons.failsafe import failsafe
from addons.flowstate import FlowState, get_state
from addons.options import seconds
from addons.vault_watch import VaultHolder
from codexgate.core.vault import Vault
from codexgate.limits.config import LimitsError
from codexgate.limits.engine import LimitsEngine
from codexgate.limits.ledger import Denial, Reservation, codex_usage_headers, open_ledger

log = logging.getLogger("codexgate.limits")

NAME = "limits"
HEADERS_KEY = "codexgate_limits_headers"  # flow.metadata: Codex usage headers for the response
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def default_ledger(traces_dir: str) -> str:
    """``<parent of the traces directory>/ledger.sqlite3``."""
    return str(Path(traces_dir).expanduser().resolve().parent / "ledger.sqlite3")


class Limits:
    """Holds the ``LimitsEngine``. Invariant: a flow it handles leaves with exactly one of an
    ``allow`` (and then at most one reservation, settled or released once by its finisher) or a
    refusal (429/503) — never forwarded without a ledger decision."""

    policy = NAME

    def __init__(self, holder: VaultHolder) -> None:
        self.holder = holder
        self.engine: LimitsEngine | None = None
        self.ttl = 900.0
        self._vault_seen: Vault | None = None
        self._open_error: str | None = "the limits ledger is not open yet"
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- lifecycle
    def load(self, loader) -> None:  # type: ignore[no-untyped-def]
        loader.add_option(
            "codexgate_ledger",
            str,
            "",
            "Limits ledger: a SQLite file (default <parent of codexgate_traces>/ledger.sqlite3) or a "
            "redis:// URL shared by several gateway instances.",
        )
        loader.add_option(
            "codexgate_reservation_ttl",
            str,
            "900",
            "Seconds after which a reservation whose gateway died is expired (its estimate charged); must "
            "exceed the longest stream plus codexgate_drain_seconds.",
        )

    def configure(self, updated: set[str]) -> None:
        if "codexgate_reservation_ttl" in updated:
            self.ttl = seconds("codexgate_reservation_ttl")
            drain = getattr(ctx.options, "codexgate_drain_seconds", "0")
            try:
                if self.ttl <= float(drain):
                    log.warning(
                        "codexgate: codexgate_reservation_ttl (%.0f s) is not above codexgate_drain_seconds (%s s): "
                        "a long stream's reservation may expire (its estimate charged) before it settles",
                        self.ttl, drain,
                    )
            except ValueError:
                pass  # the upstream step reports a bad drain value itself
        if self.engine is not None and {"codexgate_ledger", "codexgate_reservation_ttl"} & updated:
            raise exceptions.OptionsError("codexgate_ledger and codexgate_reservation_ttl cannot change while running.")

    def target(self) -> str:
        return ctx.options.codexgate_ledger or default_ledger(ctx.options.codexgate_traces)

    async def running(self) -> None:
        if self.engine is not None:
            return
        target = self.target()
        try:
            ledger = await asyncio.to_thread(open_ledger, target, self.ttl)
        except Exception as exc:  # the gateway still starts; every limited call then gets 503
            shown = target if not target.startswith(REDIS_SCHEMES) else target.split("@")[-1]
            self._open_error = f"the limits ledger {shown} cannot be opened ({type(exc).__name__})"
            log.error("codexgate: %s; calls are refused with 503", self._open_error)
            return
        self.engine = LimitsEngine(ledger)
        self._open_error = None
        self._sync_vault()
        log.info("codexgate: limits ledger %s", type(ledger).__name__)

    def _sync_vault(self) -> None:
        """Give the engine the vault's limits whenever the holder has loaded a new vault object
        (one identity comparison per call)."""
        vault = self.holder.vault
        if vault is None or vault is self._vault_seen or self.engine is None:
            return
        self._vault_seen = vault
        try:
            self.engine.update(vault)
        except LimitsError as exc:
            log.error("codexgate: the vault's limits section is invalid (%s); limited calls get 503", exc)

    # ---------------------------------------------------------------- every call
    @failsafe
    async def request(self, flow: http.HTTPFlow) -> None:
        state = get_state(flow)
        if state is None or flow.response is not None or state.verdict.refusal is not None:
            return
        key = state.verdict.identity
        if key is None:
            return  # identity refused it already (no allow from it: never forwarded)
        if state.request.passthrough or not state.request.shape.is_model_call:
            state.allow(NAME, "not a model call")  # e.g. GET /v1/models: nothing to bill or count
            return
        if state.verdict.provider is None:
            return  # scope refused it (no allow from scope: never forwarded)
        self._sync_vault()
        if self.engine is None:
            # the reason (ledger path or host) is in the gateway's log, not in the client's answer
            self._refuse(flow, state, 503, "limits_unavailable", "codexgate: the limits ledger is unavailable; try again later.")
            return
        provider = state.verdict.provider
        try:
            out = await self.engine.reserve(
                key, state.request.size, state.request.body, state.request.model, provider.kind, datetime.now(UTC)
            )
        except LimitsError:
            self._refuse(
                flow, state, 503, "limits_invalid",
                "codexgate: the limits configuration is invalid; calls are refused until an admin fixes it.",
            )
            return
        except Exception as exc:
            log.error("codexgate: limits ledger error (%s); the call is refused", type(exc).__name__)
            self._refuse(
                flow, state, 503, "limits_unavailable", "codexgate: the limits ledger is unavailable; try again later."
            )
            return
        if flow.response is not None or state.verdict.refusal is not None:  # defensive: nothing else runs here
            if isinstance(out, Reservation):
                await self.engine.release(out)
            return
        if out is None:
            state.allow(NAME, "no limits")
        elif isinstance(out, Denial):
            self._deny(flow, state, out)
        else:
            self._admit(flow, state, out)

    def _admit(self, flow: http.HTTPFlow, state: FlowState, res: Reservation) -> None:
        engine = self.engine
        assert engine is not None
        state.allow(NAME, f"reserved {res.estimate.cost_usd:.6f} USD on {len(res.levels)} level(s)")
        for s in res.status:
            if s.warn:
                state.decide(NAME, "warn", f"{s.level_id} at {100 * (s.used_fraction or 0):.0f}% of its budget")
        headers = codex_usage_headers(res)
        if headers:
            flow.metadata[HEADERS_KEY] = headers
        kind = state.verdict.provider.kind if state.verdict.provider else None
        done = [False]

        def finish(row: dict[str, Any]) -> None:
            if done[0]:
                return
            done[0] = True
            self._spawn(self._settle(res, row, kind))

        state.record.finishers.append(finish)

    async def _settle(self, res: Reservation, row: dict[str, Any], kind: str | None) -> None:
        engine = self.engine
        assert engine is not None
        tin, tout = row.get("gen_ai_usage_input_tokens"), row.get("gen_ai_usage_output_tokens")
        cost = row.get("cost_usd")
        try:
            if tin is None and tout is None and cost is None:
                await engine.release(res)  # nothing was served (refused later, connect error, …)
            else:
                model = row.get("gen_ai_response_model") or row.get("gen_ai_request_model")
                await engine.settle(res, cost, tin, tout, model, kind)
        except Exception as exc:  # the ledger's TTL expiry charges the estimate instead
            log.error("codexgate: could not settle a limits reservation (%s)", type(exc).__name__)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _deny(self, flow: http.HTTPFlow, state: FlowState, denial: Denial) -> None:
        fields = denial.error_fields(datetime.now(UTC))
        code = str(fields.get("code") or "rate_limit_exceeded")
        message = f"codexgate: {denial.message()}"
        fields["message"] = message
        if state.family == "anthropic":
            fields.pop("type", None)
            fields.pop("code", None)
        if denial.kind == "budget" and flow.request.headers.get("originator", "").startswith("codex"):
            # Measured on Codex 0.171 (docs/LIMITS.md): a 429 usage_limit_reached is final but Codex
            # shows its own text without the level; a 400 is final and shows the body verbatim.
            state.refuse(400, code, message, NAME)
            headers = {"content-type": "text/plain; charset=utf-8", "x-codexgate-error": code, **denial.headers()}
            flow.response = http.Response.make(400, message.encode() + b"\n", headers)
            return
        state.refuse(429, code, message, NAME)
        flow.response = error_response(state.family, 429, code, message, headers=denial.headers(), extra=fields)

    @staticmethod
    def _refuse(flow: http.HTTPFlow, state: FlowState, status: int, code: str, message: str) -> None:
        state.refuse(status, code, message, NAME)
        flow.response = error_response(state.family, status, code, message)

    # ---------------------------------------------------------------- responses
    @failsafe
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        headers = flow.metadata.get(HEADERS_KEY)
        if not headers or flow.response is None or flow.response.status_code >= 400:
            return
        for name, value in headers.items():
            flow.response.headers[name] = value
