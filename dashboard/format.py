"""Numbers as people read them: money with a precision that fits its size, durations in ms below a
second, counts with thousands separators.

Invariants (tested in ``tests/test_format.py``):
- a non-zero amount never reads as zero: ``$0.0003`` stays visible, and anything below the smallest
  shown digit reads ``<$0.0001``;
- ``None`` / NaN reads ``n/a`` (unknown is not zero);
- the result is short enough for a metric tile (at most ~8 characters for money and durations).
"""

from __future__ import annotations

import math

_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k"))
NA = "n/a"


def _missing(value: float | int | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _compact(value: float, digits: int = 1) -> str | None:
    """``1.2k``, ``3.4M``, ... for |value| >= 1000 (trailing ``.0`` dropped), else None."""
    a = abs(value)
    for i, (size, suffix) in enumerate(_SUFFIXES):
        if a >= size:
            scaled = round(a / size, digits)
            if scaled >= 1000 and i > 0:  # 999.96k rounds to 1000.0k: use the next suffix
                size, suffix = _SUFFIXES[i - 1]
                scaled = round(a / size, digits)
            text = f"{scaled:.{digits}f}".rstrip("0").rstrip(".")
            return ("-" if value < 0 else "") + text + suffix
    return None


def money(value: float | int | None) -> str:
    """US dollars: ``$0`` for exactly zero, ``$0.0003`` (two significant digits, at most 4 decimals)
    below a cent, ``$0.42`` / ``$12.40`` / ``$999.99`` up to a thousand, ``$1.2k`` / ``$3.4M``
    above."""
    if _missing(value):
        return NA
    v = float(value)  # type: ignore[arg-type]
    if v == 0:
        return "$0"
    sign, a = ("-" if v < 0 else ""), abs(v)
    if a < 0.0001:
        return f"{sign}<$0.0001"
    if a < 0.01:
        decimals = min(4, max(2, 1 - math.floor(math.log10(a))))
        text = f"{a:.{decimals}f}".rstrip("0")
        return f"{sign}${text}"
    if round(a, 2) < 1000:
        return f"{sign}${a:,.2f}"
    return f"{sign}${_compact(max(a, 1000.0))}"


def duration_ms(value: float | int | None) -> str:
    """A duration given in milliseconds: ``0.4 ms``, ``850 ms`` below a second, ``1.2 s``, ``59 s``,
    ``4.5 min``, ``2.1 h`` above."""
    if _missing(value):
        return NA
    ms = float(value)  # type: ignore[arg-type]
    if ms < 0:
        return "-" + duration_ms(-ms)
    if ms < 10:
        return f"{ms:.1f} ms".replace(".0 ms", " ms")
    if round(ms) < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if round(s, 1) < 10:
        return f"{s:.1f} s"
    if round(s) < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:,.1f} h"


def duration_s(value: float | int | None) -> str:
    """A duration given in seconds (same rules as ``duration_ms``)."""
    return NA if _missing(value) else duration_ms(float(value) * 1000)  # type: ignore[arg-type]


def count(value: float | int | None) -> str:
    """A whole count with thousands separators: ``0``, ``1,234``, ``12,345,678`` (``n/a`` for None)."""
    if _missing(value):
        return NA
    return f"{round(float(value)):,}"  # type: ignore[arg-type]


def compact_count(value: float | int | None) -> str:
    """A count for a tile or an axis: ``950``, ``1.2k``, ``3.4M``."""
    if _missing(value):
        return NA
    return _compact(float(value)) or count(value)  # type: ignore[arg-type]


def percent(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: ``0%``, ``<0.1%``, ``2.5%``, ``100%``."""
    if _missing(value):
        return NA
    p = float(value) * 100  # type: ignore[arg-type]
    if p == 0:
        return "0%"
    if 0 < p < 10 ** (-digits):
        return f"<{10 ** (-digits):.{digits}f}%"
    return f"{p:.{digits}f}".rstrip("0").rstrip(".") + "%"


# d3-format strings for chart axes in the unit of the metric (Altair/Vega-Lite ``axis.format``)
AXIS_USD = "$,.4~f"
AXIS_COUNT = ",~d"
AXIS_MS = ",~f"
