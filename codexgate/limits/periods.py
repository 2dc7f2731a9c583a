"""Budget period windows in an IANA time zone.

A window is ``[start, end)`` in UTC; ``start`` is local midnight of the day, of the Monday
(week), or of the 1st (month), converted through ``zoneinfo`` so a DST change moves the UTC
boundary with it (a Los Angeles day is 23 or 25 hours long on change days). ``total`` never
resets: its window starts at the epoch and has no end. ``now`` is always passed in, so callers
(and tests) inject the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PERIODS = ("day", "week", "month", "total")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PeriodError(ValueError):
    """An unknown period or time zone; one line."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises ``PeriodError`` for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PeriodError(f"unknown time zone {name!r} (use an IANA name such as UTC or Europe/Paris)") from None


def _local_midnight(year: int, month: int, day: int, tz: ZoneInfo) -> datetime:
    # wall-clock midnight in tz, as UTC. fold=0: if midnight occurs twice, the first one.
    return datetime(year, month, day, tzinfo=tz).astimezone(UTC)


def window(period: str, tz_name: str, now: datetime) -> tuple[datetime, datetime | None]:
    """``(start, end)`` of the window of ``period`` containing ``now`` (aware; naive is UTC).
    Invariant: ``start <= now < end`` (``end`` is ``None`` for ``total``)."""
    if period not in PERIODS:
        raise PeriodError(f"unknown period {period!r} (use {', '.join(PERIODS)})")
    if period == "total":
        return EPOCH, None
    tz = zone(tz_name)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    local = now.astimezone(tz)
    d = local.date()
    if period == "week":
        d = d - timedelta(days=d.weekday())
    elif period == "month":
        d = d.replace(day=1)
    start = _local_midnight(d.year, d.month, d.day, tz)
    if period == "day":
        nd = d + timedelta(days=1)
    elif period == "week":
        nd = d + timedelta(days=7)
    else:
        nd = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    end = _local_midnight(nd.year, nd.month, nd.day, tz)
    if start > now:  # only when local midnight is skipped by a DST gap; step back one window
        return window(period, tz_name, start - timedelta(seconds=1))
    return start, end


def window_start_epoch(period: str, tz_name: str, now: datetime) -> int:
    """Integer UTC seconds of the window start: the ledger's period key (0 for ``total``)."""
    return int(window(period, tz_name, now)[0].timestamp())
