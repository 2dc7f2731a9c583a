"""Formatting of money, durations and counts (``dashboard/format.py``), tiny and huge values included."""

from __future__ import annotations

import pytest

from dashboard import format as fmt


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "$0"),
        (0.0003, "$0.0003"),
        (0.00034, "$0.0003"),
        (0.0034, "$0.0034"),
        (0.00003, "<$0.0001"),
        (1e-12, "<$0.0001"),
        (0.05, "$0.05"),
        (0.42, "$0.42"),
        (12.4, "$12.40"),
        (999.99, "$999.99"),
        (999.996, "$1k"),
        (1234, "$1.2k"),
        (999_960, "$1M"),
        (1.2e6, "$1.2M"),
        (3.45e9, "$3.5B"),
        (-5.5, "-$5.50"),
        (None, "n/a"),
        (float("nan"), "n/a"),
    ],
)
def test_money(value: float | None, text: str) -> None:
    assert fmt.money(value) == text


def test_money_never_reads_a_nonzero_amount_as_zero() -> None:
    for exponent in range(-12, 13):
        assert fmt.money(10.0**exponent) not in ("$0", "$0.00", "$0.0000")


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0 ms"),
        (0.37, "0.4 ms"),
        (5, "5 ms"),
        (850, "850 ms"),
        (999.4, "999 ms"),
        (999.6, "1.0 s"),
        (1200, "1.2 s"),
        (12_300, "12 s"),
        (90_000, "1.5 min"),
        (7_200_000, "2.0 h"),
        (3.6e9, "1,000.0 h"),
        (None, "n/a"),
    ],
)
def test_duration_ms(ms: float | None, text: str) -> None:
    assert fmt.duration_ms(ms) == text


def test_duration_in_seconds_uses_the_same_units() -> None:
    assert fmt.duration_s(0.25) == "250 ms"
    assert fmt.duration_s(42) == "42 s"
    assert fmt.duration_s(None) == "n/a"


@pytest.mark.parametrize(
    ("value", "text", "compact"),
    [
        (0, "0", "0"),
        (7, "7", "7"),
        (1234, "1,234", "1.2k"),
        (999_999, "999,999", "1M"),
        (12_345_678.4, "12,345,678", "12.3M"),
        (4.2e12, "4,200,000,000,000", "4.2T"),
        (None, "n/a", "n/a"),
    ],
)
def test_counts(value: float | None, text: str, compact: str) -> None:
    assert fmt.count(value) == text
    assert fmt.compact_count(value) == compact


def test_percent() -> None:
    assert fmt.percent(0) == "0%"
    assert fmt.percent(1e-7) == "<0.1%"
    assert fmt.percent(0.025) == "2.5%"
    assert fmt.percent(1) == "100%"
