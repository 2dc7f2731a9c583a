"""The ledger interface: reserve before forwarding, settle (or release) after.

``reserve(levels, estimate, now)`` checks EVERY level atomically, all or nothing, in order
(outermost first; within a level: budget, concurrency, rpm, tpm) and either records one
reservation on all levels or returns a ``Denial`` naming the first failing level:

- budget: ``spent + reserved + estimate.cost_usd <= budget_usd`` for the current period window
  (``codexgate.limits.periods``). ``spent`` is per (level, window start), so a new window starts
  at 0 exactly at the boundary; ``total`` never resets.
- concurrency: active reservations on the level ``< max_concurrent``.
- rpm: requests in the sliding 60 s window ``< rpm``; tpm: tokens of those requests plus the
  estimate ``<= tpm`` (a request is let through when the window holds no tokens, so one call
  larger than the whole TPM is not refused forever). ``retry_after`` is the exact time until
  enough window entries age out.

``settle(reservation, actual_cost_usd, actual_tokens)`` adds the real cost to ``spent`` of the
reservation's window, drops the reservation (the estimate stops counting) and replaces the
estimated tokens in the TPM window with the real ones. ``release`` drops it without cost (its
request still counts toward RPM; its tokens become 0). A reservation not settled within the
TTL (its owner died) expires: its *estimate* is charged to ``spent`` (conservative) and logged,
and a late settle, or ``codexgate ledger rebuild`` from the traces, corrects it to the truth.

Both backends (``SqliteLedger``, ``RedisLedger``) implement exactly these semantics; the test
suite runs against both.
"""

from __future__ import annotations

import abc
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from codexgate.limits.config import Level
from codexgate.limits.estimate import Estimate
from codexgate.limits.periods import window

RATE_WINDOW_SECONDS = 60.0
KINDS = ("budget", "concurrency", "rpm", "tpm")


def _aware(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now


@dataclass(frozen=True, slots=True)
class LevelWindow:
    """A level with its budget window at ``now`` (start 0 / no end when it has no budget)."""

    level: Level
    period_start: int
    resets_at: datetime | None


def level_windows(levels: list[Level] | tuple[Level, ...], now: datetime) -> list[LevelWindow]:
    out = []
    for lv in levels:
        lim = lv.limits
        if lim.budget_usd is not None and lim.period:
            start, end = window(lim.period, lim.tz, now)
            out.append(LevelWindow(lv, int(start.timestamp()), end))
        else:
            out.append(LevelWindow(lv, 0, None))
    return out


@dataclass(frozen=True, slots=True)
class LevelStatus:
    """One level's state in the ledger. Money in USD; ``remaining_usd`` may be negative when the
    last call of a window cost more than its estimate (overshoot is at most one call)."""

    level_id: str
    budget_usd: float | None
    period: str | None
    spent_usd: float
    reserved_usd: float
    resets_at: datetime | None
    window_start: datetime | None
    soft_threshold: float
    rpm: int | None = None
    requests_in_window: int = 0
    tpm: int | None = None
    tokens_in_window: int = 0
    max_concurrent: int | None = None
    concurrent: int = 0

    @property
    def remaining_usd(self) -> float | None:
        if self.budget_usd is None:
            return None
        return self.budget_usd - self.spent_usd - self.reserved_usd

    @property
    def used_fraction(self) -> float | None:
        if not self.budget_usd:
            return None
        return (self.spent_usd + self.reserved_usd) / self.budget_usd

    @property
    def warn(self) -> bool:
        """At or past the soft threshold of the budget (spent + reserved)."""
        f = self.used_fraction
        return f is not None and f >= self.soft_threshold

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level_id,
            "budget_usd": self.budget_usd,
            "period": self.period,
            "spent_usd": round(self.spent_usd, 9),
            "reserved_usd": round(self.reserved_usd, 9),
            "remaining_usd": None if self.remaining_usd is None else round(self.remaining_usd, 9),
            "used_fraction": None if self.used_fraction is None else round(self.used_fraction, 6),
            "warn": self.warn,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "resets_at": self.resets_at.isoformat() if self.resets_at else None,
            "rpm": self.rpm,
            "requests_in_window": self.requests_in_window,
            "tpm": self.tpm,
            "tokens_in_window": self.tokens_in_window,
            "max_concurrent": self.max_concurrent,
            "concurrent": self.concurrent,
        }


def make_status(w: LevelWindow, spent: float, reserved: float, requests: int, tokens: int, concurrent: int) -> LevelStatus:
    lim = w.level.limits
    has_budget = lim.budget_usd is not None
    return LevelStatus(
        level_id=w.level.id,
        budget_usd=lim.budget_usd,
        period=lim.period,
        spent_usd=spent,
        reserved_usd=reserved,
        resets_at=w.resets_at,
        window_start=datetime.fromtimestamp(w.period_start, UTC) if has_budget else None,
        soft_threshold=lim.soft_threshold,
        rpm=lim.rpm,
        requests_in_window=requests,
        tpm=lim.tpm,
        tokens_in_window=tokens,
        max_concurrent=lim.max_concurrent,
        concurrent=concurrent,
    )


@dataclass(frozen=True, slots=True)
class Reservation:
    """Held budget/concurrency/rate slots of one call on every level. ``status`` is the state
    of each level right after the reservation (including it): use it for ``warn`` decisions
    and Codex's usage headers. Pass it back unchanged to ``settle`` or ``release``."""

    id: str
    levels: tuple[Level, ...]
    period_starts: tuple[int, ...]
    estimate: Estimate
    created_at: datetime
    status: tuple[LevelStatus, ...] = ()

    @property
    def warn(self) -> tuple[str, ...]:
        """Ids of the levels at or past their soft threshold (record as ``warn`` decisions)."""
        return tuple(s.level_id for s in self.status if s.warn)


@dataclass(frozen=True, slots=True)
class Denial:
    """The first level that refused, and why. ``retry_after`` (seconds) for rate limits and
    concurrency; ``resets_at`` (when the window ends; ``None`` for ``total``) for budgets.
    ``limit``/``remaining`` are in the kind's unit (USD, requests, tokens, concurrent calls)."""

    level: Level
    kind: str
    limit: float
    remaining: float
    retry_after: float | None = None
    resets_at: datetime | None = None

    @property
    def level_id(self) -> str:
        return self.level.id

    def message(self) -> str:
        """One line for the developer: which level, what ran out, when it comes back."""
        what = f"{self.level.level} {self.level.scope}"
        if self.kind == "budget":
            period = self.level.limits.period
            when = f"resets at {self.resets_at.isoformat()}" if self.resets_at else "it does not reset (total)"
            return f"the {period} budget of {what} ({self.limit:.2f} USD) is spent; {when}"
        unit = {"rpm": "requests per minute", "tpm": "tokens per minute", "concurrency": "concurrent requests"}
        return (
            f"{what} is over its limit of {int(self.limit)} {unit[self.kind]}; "
            f"retry after {math.ceil(self.retry_after or 0)} s"
        )

    def error_fields(self, now: datetime) -> dict[str, Any]:
        """Fields of the provider-format error body (the addon wraps them in OpenAI's
        ``{"error": {...}}`` or Anthropic's envelope). Budget: ``type`` ``usage_limit_reached``,
        which Codex shows and does not retry, with ``resets_at`` (unix seconds) and
        ``resets_in_seconds``; rate limits: ``rate_limit_exceeded`` (retried after Retry-After).
        To be confirmed against the real Codex CLI by the addon's end-to-end tests."""
        fields: dict[str, Any] = {"message": self.message(), "level": self.level.id, "limit_kind": self.kind}
        if self.kind == "budget":
            fields.update(type="usage_limit_reached", code="budget_exceeded")
            if self.resets_at is not None:
                fields["resets_at"] = int(self.resets_at.timestamp())
                fields["resets_in_seconds"] = max(0, math.ceil((self.resets_at - _aware(now)).total_seconds()))
        else:
            fields.update(type="tokens" if self.kind == "tpm" else "requests", code="rate_limit_exceeded")
        return fields

    def headers(self) -> dict[str, str]:
        """``Retry-After`` and OpenAI-style ``x-ratelimit-*`` headers for a 429. A budget denial
        carries no ``Retry-After`` (retrying cannot help before ``resets_at``)."""
        h: dict[str, str] = {}
        if self.retry_after is not None:
            secs = max(1, math.ceil(self.retry_after))
            h["retry-after"] = str(secs)
        if self.kind in ("rpm", "tpm"):
            unit = "requests" if self.kind == "rpm" else "tokens"
            h[f"x-ratelimit-limit-{unit}"] = str(int(self.limit))
            h[f"x-ratelimit-remaining-{unit}"] = str(max(0, int(self.remaining)))
            h[f"x-ratelimit-reset-{unit}"] = f"{max(self.retry_after or 0.0, 0.0):.3f}s"
        elif self.kind == "concurrency":
            h["x-codexgate-limit-concurrency"] = str(int(self.limit))
        else:
            h["x-codexgate-budget-usd"] = f"{self.limit:.6f}"
            h["x-codexgate-budget-remaining-usd"] = f"{max(self.remaining, 0.0):.6f}"
            if self.resets_at:
                h["x-codexgate-budget-resets-at"] = self.resets_at.isoformat()
        h["x-codexgate-limit-level"] = self.level.id
        h["x-codexgate-limit-kind"] = self.kind
        return h


def new_reservation_id() -> str:
    return uuid.uuid4().hex


def rate_retry_after(events: list[tuple[float, int]], now: float, drop_requests: int, drop_tokens: int) -> float:
    """Seconds until the oldest window entries age out far enough to free at least
    ``drop_requests`` requests and ``drop_tokens`` tokens. ``events`` sorted by time."""
    dropped_r = dropped_t = 0
    for ts, tok in events:
        dropped_r += 1
        dropped_t += tok
        if dropped_r >= drop_requests and dropped_t >= drop_tokens:
            return max(0.0, ts + RATE_WINDOW_SECONDS - now)
    return RATE_WINDOW_SECONDS


@dataclass
class LevelState:
    """What a backend read for one level inside its atomic section. ``events`` (the window's
    ``(ts, tokens)`` sorted by time) is only loaded when a rate limit refuses, to compute
    ``retry_after``; the common path needs only the counts."""

    spent: float = 0.0
    reserved: float = 0.0
    concurrent: int = 0
    requests: int = 0
    tokens: int = 0
    events: Callable[[], list[tuple[float, int]]] = field(default=lambda: [])


def check_level(w: LevelWindow, st: LevelState, est: Estimate, now: float) -> Denial | None:
    """The reference decision for one level (the Redis Lua script mirrors it line by line)."""
    lim = w.level.limits
    if lim.budget_usd is not None:
        remaining = lim.budget_usd - st.spent - st.reserved
        if est.cost_usd > remaining + 1e-12:
            return Denial(w.level, "budget", lim.budget_usd, remaining, None, w.resets_at)
    if lim.max_concurrent is not None and st.concurrent >= lim.max_concurrent:
        return Denial(w.level, "concurrency", lim.max_concurrent, 0, 1.0, None)
    if lim.rpm is not None and st.requests >= lim.rpm:
        ra = rate_retry_after(st.events(), now, st.requests - lim.rpm + 1, 0)
        return Denial(w.level, "rpm", lim.rpm, 0, ra, None)
    if lim.tpm is not None and st.tokens > 0 and st.tokens + est.tokens > lim.tpm:
        ra = rate_retry_after(st.events(), now, 0, st.tokens + est.tokens - lim.tpm)
        return Denial(w.level, "tpm", lim.tpm, max(0, lim.tpm - st.tokens), ra, None)
    return None


class Ledger(abc.ABC):
    """Async ledger API; every method is safe to await on mitmproxy's event loop (the work
    happens in a dedicated thread or over an asyncio Redis connection)."""

    ttl_seconds: float

    @abc.abstractmethod
    async def reserve(self, levels: list[Level], estimate: Estimate, now: datetime) -> Reservation | Denial: ...

    @abc.abstractmethod
    async def settle(self, reservation: Reservation, actual_cost_usd: float, actual_tokens: int) -> None: ...

    @abc.abstractmethod
    async def release(self, reservation: Reservation) -> None: ...

    @abc.abstractmethod
    async def status(self, levels: list[Level], now: datetime) -> list[LevelStatus]: ...

    @abc.abstractmethod
    async def expire_stale(self, now: datetime) -> int:
        """Expire reservations past their TTL (charging their estimate); returns how many."""

    @abc.abstractmethod
    async def set_spent(self, level_id: str, period_start: int, spent_usd: float) -> None:
        """Overwrite the spend of one window (``ledger rebuild``); clears its expiry log."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def open_ledger(target: str, ttl_seconds: float = 900.0) -> Ledger:
    """``redis://…``/``rediss://…``/``unix://…`` -> ``RedisLedger``; anything else is the path of
    the SQLite file."""
    if target.startswith(("redis://", "rediss://", "unix://")):
        from codexgate.limits.redis_ledger import RedisLedger

        return RedisLedger(target, ttl_seconds=ttl_seconds)
    from codexgate.limits.sqlite_ledger import SqliteLedger

    return SqliteLedger(target, ttl_seconds=ttl_seconds)


def codex_usage_headers(reservation: Reservation) -> dict[str, str]:
    """Codex's own usage headers from the tightest budgets of a reservation: ``primary`` is the
    level with the highest used fraction, ``secondary`` the next (e.g. the team's)."""
    budgets = [s for s in reservation.status if s.used_fraction is not None]
    budgets.sort(key=lambda s: s.used_fraction or 0.0, reverse=True)
    h: dict[str, str] = {}
    for name, s in zip(("primary", "secondary"), budgets, strict=False):
        h[f"x-codex-{name}-used-percent"] = f"{min(100.0, 100.0 * (s.used_fraction or 0.0)):.1f}"
        if s.resets_at and s.window_start:
            minutes = int((s.resets_at - s.window_start).total_seconds() // 60)
            h[f"x-codex-{name}-window-minutes"] = str(minutes)
            h[f"x-codex-{name}-reset-at"] = str(int(s.resets_at.timestamp()))
    return h
