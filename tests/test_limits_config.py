"""Limits configuration (section round trip through a real vault file, resolution, legacy
budgets), period windows in several zones, and call estimates priced with genai-prices."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from codexgate.core.pricing import Usage, price
from codexgate.core.vault import GatewayKey, Team, Vault, generate_secret
from codexgate.limits.config import (
    LevelLimits,
    LimitsConfig,
    LimitsError,
    Settings,
    config_of,
    levels_for_key,
)
from codexgate.limits.estimate import estimate_call
from codexgate.limits.periods import EPOCH, PeriodError, window


def _key(**kw: object) -> GatewayKey:
    base = {"key_id": "k_1", "org": "acme", "team": "core", "project": "web", "developer": "alice@acme.io"}
    return GatewayKey(**{**base, **kw})  # type: ignore[arg-type]


def test_section_round_trips_through_the_vault_file(tmp_path: Path) -> None:
    cfg = LimitsConfig(
        {
            "org:acme": LevelLimits(budget_usd=100.0, period="month", tz="Europe/Paris", tpm=50_000),
            "key:k_1": LevelLimits(rpm=10, max_concurrent=2, soft_threshold=0.5),
        },
        Settings(default_output_tokens=1000, fallback_usd_per_1k_tokens=0.02),
    )
    v = Vault()
    v.sections["limits"] = cfg.to_section()
    secret = generate_secret()
    v.save(tmp_path / "v.enc", secret)
    loaded = config_of(Vault.load(tmp_path / "v.enc", secret))
    assert loaded == cfg
    assert json.loads(json.dumps(cfg.to_section())) == cfg.to_section()


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"levels": {"team:acme/core": {"budget_usd": 5}}}, "needs both"),
        ({"levels": {"team:acme/core": {"rpm": 0}}}, "rpm must be a positive"),
        ({"levels": {"team:acme/core": {"rpm": 5, "burst": 3}}}, "unknown limit field"),
        ({"levels": {"squad:acme/core": {"rpm": 5}}}, "invalid level"),
        ({"levels": {"org:acme": {"rpm": 5, "tz": "Nowhere/City"}}}, "unknown time zone"),
        ({"version": 9}, "unknown format"),
    ],
)
def test_invalid_sections_are_one_line_errors(section: dict, fragment: str) -> None:
    with pytest.raises(LimitsError, match=fragment) as exc:
        LimitsConfig.from_section(section)
    assert "\n" not in str(exc.value)


def test_resolution_orders_levels_and_keeps_legacy_budgets() -> None:
    key = _key(budget_usd=2.0, budget_period="day")
    team = Team("acme", "core", budget_usd=30.0, budget_period="week")
    cfg = LimitsConfig.from_section(
        {
            "levels": {
                "org:acme": {"budget_usd": 500, "period": "month"},
                "team:acme/core": {"rpm": 60},
                "project:acme/web": {"max_concurrent": 4},
                "developer:acme/alice@acme.io": {"tpm": 10000},
                "team:acme/other": {"rpm": 1},  # another team: never applies to this key
            }
        }
    )
    levels = cfg.resolve(key, team)
    assert [lv.id for lv in levels] == [
        "org:acme", "team:acme/core", "project:acme/web", "developer:acme/alice@acme.io", "key:k_1",
    ]
    by = {lv.level: lv.limits for lv in levels}
    assert (by["team"].budget_usd, by["team"].period, by["team"].rpm) == (30.0, "week", 60)
    assert (by["key"].budget_usd, by["key"].period) == (2.0, "day")
    # a section budget on the level wins over the stored one
    cfg.levels["key:k_1"] = LevelLimits(budget_usd=1.0, period="total")
    assert cfg.resolve(key, team)[-1].limits.budget_usd == 1.0
    # a key with no limits anywhere resolves to nothing (the addon then skips the ledger)
    assert LimitsConfig().resolve(_key(), Team("acme", "core")) == []


def test_levels_for_key_reads_the_vault() -> None:
    v = Vault()
    v.teams["acme/core"] = Team("acme", "core", budget_usd=3.0, budget_period="month")
    k = _key()
    v.keys[k.key_id] = k
    assert [(lv.id, lv.limits.budget_usd) for lv in levels_for_key(v, k)] == [("team:acme/core", 3.0)]


@pytest.mark.parametrize(
    ("period", "tz", "now", "start_local", "end_local"),
    [
        ("day", "Asia/Kolkata", datetime(2026, 12, 1, 20, 0, tzinfo=UTC), (2026, 12, 2), (2026, 12, 3)),
        ("week", "UTC", datetime(2026, 12, 3, 9, 0, tzinfo=UTC), (2026, 11, 30), (2026, 12, 7)),  # Mon..Mon
        ("month", "Europe/Paris", datetime(2026, 3, 31, 23, 30, tzinfo=UTC), (2026, 4, 1), (2026, 5, 1)),
        ("month", "America/Los_Angeles", datetime(2026, 12, 31, 12, 0, tzinfo=UTC), (2026, 12, 1), (2027, 1, 1)),
        ("week", "America/Los_Angeles", datetime(2026, 11, 4, 12, 0, tzinfo=UTC), (2026, 11, 2), (2026, 11, 9)),
    ],
)
def test_windows_start_at_local_midnight(
    period: str, tz: str, now: datetime, start_local: tuple, end_local: tuple
) -> None:
    start, end = window(period, tz, now)
    z = ZoneInfo(tz)
    assert start.astimezone(z).replace(tzinfo=None) == datetime(*start_local)
    assert end is not None and end.astimezone(z).replace(tzinfo=None) == datetime(*end_local)
    assert start <= now < end


def test_dst_days_are_23_and_25_hours_long() -> None:
    s, e = window("day", "America/Los_Angeles", datetime(2026, 3, 8, 18, 0, tzinfo=UTC))
    assert e - s == timedelta(hours=23)
    s, e = window("day", "America/Los_Angeles", datetime(2026, 11, 1, 18, 0, tzinfo=UTC))
    assert e - s == timedelta(hours=25)


def test_total_never_ends_and_bad_input_is_refused() -> None:
    assert window("total", "UTC", datetime(2030, 1, 1, tzinfo=UTC)) == (EPOCH, None)
    with pytest.raises(PeriodError):
        window("fortnight", "UTC", datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(PeriodError):
        window("day", "Atlantis/Capital", datetime(2030, 1, 1, tzinfo=UTC))


def test_estimate_prices_with_genai_prices_and_bounds_tokens() -> None:
    body = {"model": "gpt-5", "input": "x" * 4000, "max_output_tokens": 700}
    raw = json.dumps(body).encode()
    est = estimate_call(len(raw), body, "gpt-5", "openai")
    assert est.input_tokens == math.ceil(len(raw) / 4) and est.output_tokens == 700
    expected = price("gpt-5", "openai", Usage(input_tokens=est.input_tokens, output_tokens=700))
    assert est.price_known and est.cost_usd == pytest.approx(expected.total_usd)
    # bytes_per_token=1 is the hard upper bound on text tokens
    assert estimate_call(len(raw), body, "gpt-5", "openai", Settings(bytes_per_token=1)).input_tokens == len(raw)
    # Chat Completions / Anthropic fields, and the default
    assert estimate_call(10, {"max_tokens": 33}, "gpt-5", "openai").output_tokens == 33
    assert estimate_call(10, {"max_completion_tokens": 44}, "gpt-5", "openai").output_tokens == 44
    assert estimate_call(10, {}, "gpt-5", "openai", Settings(default_output_tokens=55)).output_tokens == 55


def test_unknown_price_uses_the_fallback_and_says_so() -> None:
    s = Settings(fallback_usd_per_1k_tokens=0.5, default_output_tokens=1000)
    est = estimate_call(4000, {}, "no-such-model-xyz", "openai_compatible", s)
    assert not est.price_known
    assert est.cost_usd == pytest.approx((1000 + 1000) / 1000 * 0.5)
