"""``LimitsEngine``, the object the gateway addon will hold: a real vault's limits, a real SQLite
ledger, estimates from a real Codex-sized body; plus 50 separate SQLite connections (each with
its own worker thread) racing on one file."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codexgate.core.pricing import Usage, price
from codexgate.core.vault import GatewayKey, Team, Vault
from codexgate.limits.config import Level, LevelLimits, LimitsConfig, LimitsError
from codexgate.limits.engine import LimitsEngine
from codexgate.limits.estimate import Estimate
from codexgate.limits.ledger import Denial, Reservation
from codexgate.limits.sqlite_ledger import SqliteLedger

NOW = datetime(2026, 12, 1, 15, 30, tzinfo=UTC)


def _vault(section: dict) -> tuple[Vault, GatewayKey]:
    v = Vault()
    v.teams["acme/core"] = Team("acme", "core")
    k = GatewayKey(key_id="k_eng", org="acme", team="core", project="web", developer="alice")
    v.keys[k.key_id] = k
    v.sections["limits"] = section
    return v, k


def test_engine_reserves_settles_from_trace_figures_and_refuses_with_codex_fields(tmp_path: Path) -> None:
    v, key = _vault(
        LimitsConfig(
            {"team:acme/core": LevelLimits(budget_usd=0.05, period="day")}
        ).to_section()
    )
    body = {"model": "gpt-5", "input": [{"type": "message", "role": "user", "content": "hi " * 2000}],
            "max_output_tokens": 2000, "stream": True}
    raw = json.dumps(body).encode()

    async def main() -> tuple:
        engine = LimitsEngine(SqliteLedger(tmp_path / "l.sqlite3"), v)
        try:
            first = await engine.reserve(key, len(raw), body, "gpt-5", "openai", NOW)
            assert isinstance(first, Reservation)
            charged = await engine.settle(first, None, 1500, 300, "gpt-5", "openai")  # trace had no cost
            outcomes = []
            while True:
                r = await engine.reserve(key, len(raw), body, "gpt-5", "openai", NOW)
                outcomes.append(r)
                if isinstance(r, Denial):
                    break
                await engine.settle(r, 0.004, 1000, 200)
            (st,) = await engine.ledger.status(engine.levels(key), NOW)
            return first, charged, outcomes, st
        finally:
            await engine.close()

    first, charged, outcomes, st = run(main())
    assert charged == pytest.approx(price("gpt-5", "openai", Usage(input_tokens=1500, output_tokens=300)).total_usd)
    denial = outcomes[-1]
    assert isinstance(denial, Denial) and denial.kind == "budget" and denial.level_id == "team:acme/core"
    # every granted call fit: spent + estimate <= budget when it was reserved
    assert st.spent_usd == pytest.approx(charged + 0.004 * (len(outcomes) - 1))
    assert st.spent_usd + first.estimate.cost_usd > 0.05 >= st.spent_usd
    f = denial.error_fields(NOW)
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert f["type"] == "usage_limit_reached" and f["resets_at"] == int(midnight.timestamp())
    assert f["resets_in_seconds"] == int((midnight - NOW).total_seconds())
    assert "team acme/core" in f["message"] and midnight.isoformat() in f["message"]


def test_engine_without_limits_writes_nothing_and_bad_sections_fail_closed(tmp_path: Path) -> None:
    v, key = _vault({})
    path = tmp_path / "l.sqlite3"

    bad, _ = _vault({"levels": {"team:acme/core": {"rpm": -1}}})

    async def main() -> object:
        engine = LimitsEngine(SqliteLedger(path), v)
        try:
            with pytest.raises(LimitsError):
                engine.update(bad)  # an invalid section: fail closed until a valid one loads
            with pytest.raises(LimitsError):
                await engine.reserve(key, 100, {}, "gpt-5", "openai", NOW)
            engine.update(v)
            return await engine.reserve(key, 100, {}, "gpt-5", "openai", NOW)
        finally:
            await engine.close()

    assert run(main()) is None


def test_50_connections_with_their_own_threads_share_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    levels = [Level("team", "acme/core", LevelLimits(budget_usd=0.105, period="day", max_concurrent=30))]
    est = Estimate(1000, 1000, 0.01)

    async def main() -> tuple[int, float]:
        ledgers = [SqliteLedger(path) for _ in range(50)]
        try:
            rs = await asyncio.gather(*[led.reserve(levels, est, NOW) for led in ledgers])
            held = sum(isinstance(r, Reservation) for r in rs)
            (st,) = await ledgers[0].status(levels, NOW + timedelta(seconds=1))
            return held, st.reserved_usd
        finally:
            await asyncio.gather(*[led.close() for led in ledgers])

    held, reserved = run(main())
    assert held == int(0.105 // est.cost_usd)
    assert reserved == pytest.approx(held * est.cost_usd) and reserved <= 0.105


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)
