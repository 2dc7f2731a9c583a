"""Parsing helpers for the gateway's mitmproxy options (mitmproxy has no float option type)."""

from __future__ import annotations

from mitmproxy import ctx, exceptions


def seconds(name: str, allow_zero: bool = False) -> float:
    """The option ``name`` as a positive (or, if allowed, zero) number of seconds, or a clear ``OptionsError``."""
    raw = getattr(ctx.options, name)
    try:
        value = float(raw)
    except ValueError:
        raise exceptions.OptionsError(f"{name} must be a number of seconds, not {raw!r}.") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise exceptions.OptionsError(f"{name} must be a positive number of seconds, not {raw!r}.")
    return value
