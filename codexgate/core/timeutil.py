"""Time helpers shared by the gateway, the sink and analytics."""

from __future__ import annotations

from datetime import UTC, date, datetime

TimeArg = datetime | date | None


def as_utc(value: TimeArg) -> datetime | None:
    """An aware UTC datetime: a date is its midnight UTC, a naive datetime is taken as UTC, an
    aware one is converted; ``None`` stays ``None``."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
