"""Budgets (key or team, per day/week/month) and the calendar arithmetic of their periods (UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

SCOPE_KINDS = ("key", "team")
PERIODS = ("day", "week", "month")


@dataclass(frozen=True)
class Budget:
    """A spending limit. ``name`` is a key id for ``key`` budgets and ``org/team`` (or a bare team
    name, matching that team in every org) for ``team`` budgets."""

    scope_kind: str
    name: str
    amount_usd: float
    period: str = "month"

    def __post_init__(self) -> None:
        if self.scope_kind not in SCOPE_KINDS:
            raise ValueError(f"budget scope_kind must be one of {SCOPE_KINDS}, not {self.scope_kind!r}")
        if self.period not in PERIODS:
            raise ValueError(f"budget period must be one of {PERIODS}, not {self.period!r}")
        if not self.amount_usd > 0:
            raise ValueError("budget amount_usd must be > 0")

    @property
    def org(self) -> str | None:
        if self.scope_kind == "team" and "/" in self.name:
            return self.name.split("/", 1)[0]
        return None

    @property
    def team(self) -> str | None:
        if self.scope_kind != "team":
            return None
        return self.name.split("/", 1)[1] if "/" in self.name else self.name


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar period containing ``now`` (UTC; weeks start on Monday)."""
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "month":
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start, end
    raise ValueError(f"unknown budget period {period!r}")


def budgets_from_vault(vault: Any) -> list[Budget]:
    budgets: list[Budget] = []
    for kind, entries in (
        ("key", getattr(vault, "keys", {}) or {}),
        ("team", getattr(vault, "teams", {}) or {}),
    ):
        for name, entry in entries.items():
            amount = _field(entry, "budget_usd")
            if amount is None or float(amount) <= 0:
                continue
            period = _field(entry, "budget_period") or "month"
            label = (_field(entry, "key_id") or name) if kind == "key" else name
            try:
                budgets.append(Budget(kind, str(label), float(amount), str(period)))
            except ValueError as exc:
                raise ValueError(f"vault {kind} {label}: {exc}") from None
    return budgets


def _field(entry: Any, name: str) -> Any:
    if isinstance(entry, dict):
        return entry.get(name)
    return getattr(entry, name, None)
