"""Indicators: hand-computed examples, NaN handling, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alluse.domain.errors import ValidationFailed
from alluse.domain.indicators import average_true_range, realized_volatility, true_range, weekly_returns

# Five bars, by hand:
#   TR0 = 10 − 9 = 1.0                                  (no previous close)
#   TR1 = max(11 − 10, |11 − 9.5|, |10 − 9.5|)   = 1.5
#   TR2 = max(12 − 10.5, |12 − 10.5|, |10.5 − 10.5|) = 1.5
#   TR3 = max(11.8 − 10, |11.8 − 11.5|, |10 − 11.5|) = 1.8
#   TR4 = max(13 − 11, |13 − 10.5|, |11 − 10.5|) = 2.5
# ATR(3): seed = (1 + 1.5 + 1.5) / 3 = 4/3
#         ATR3 = (4/3 · 2 + 1.8) / 3 = 67/45
#         ATR4 = (67/45 · 2 + 2.5) / 3 = 493/270
HIGH = [10.0, 11.0, 12.0, 11.8, 13.0]
LOW = [9.0, 10.0, 10.5, 10.0, 11.0]
CLOSE = [9.5, 10.5, 11.5, 10.5, 12.5]


def test_true_range_by_hand() -> None:
    assert true_range(HIGH, LOW, CLOSE) == pytest.approx([1.0, 1.5, 1.5, 1.8, 2.5])


def test_wilder_atr_by_hand() -> None:
    atr = average_true_range(HIGH, LOW, CLOSE, period=3)
    assert np.isnan(atr[:2]).all()
    assert atr[2:] == pytest.approx([4 / 3, 67 / 45, 493 / 270])


def test_atr_with_period_1_is_the_true_range() -> None:
    assert average_true_range(HIGH, LOW, CLOSE, period=1) == pytest.approx(true_range(HIGH, LOW, CLOSE))


def test_atr_needs_period_bars() -> None:
    assert np.isnan(average_true_range(HIGH, LOW, CLOSE, period=6)).all()
    assert average_true_range([], [], [], period=14).shape == (0,)


def test_nan_bar_is_skipped_by_the_smoothing() -> None:
    high = list(HIGH)
    high[3] = math.nan
    tr = true_range(high, LOW, CLOSE)
    assert math.isnan(tr[3])
    atr = average_true_range(high, LOW, CLOSE, period=3)
    # Bar 3 unknown: ATR3 NaN; bar 4 continues from 4/3: (4/3 · 2 + 2.5) / 3 = 31/18.
    assert math.isnan(atr[3])
    assert atr[4] == pytest.approx(31 / 18)


def test_leading_nan_delays_the_seed() -> None:
    high = [math.nan, *HIGH[1:]]
    atr = average_true_range(high, LOW, CLOSE, period=3)
    # Finite TRs 1.5, 1.5, 1.8 → seed 1.6 at bar 3; bar 4: (1.6 · 2 + 2.5) / 3 = 1.9.
    assert np.isnan(atr[:3]).all()
    assert atr[3:] == pytest.approx([1.6, 1.9])


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="differ in length"):
        true_range([1.0, 2.0], [1.0], [1.0, 2.0])
    with pytest.raises(ValidationFailed):
        average_true_range(HIGH, LOW, CLOSE, period=0)
    with pytest.raises(ValidationFailed):
        true_range([[1.0]], [[1.0]], [[1.0]])


def test_weekly_returns_by_hand() -> None:
    dates = np.array(
        # Mon 16 .. Fri 20 Nov; Thanksgiving week (no Thu 26); Mon 30 Nov, Tue 1 Dec (incomplete week).
        [
            "2026-11-16",
            "2026-11-18",
            "2026-11-20",
            "2026-11-23",
            "2026-11-25",
            "2026-11-27",
            "2026-11-30",
            "2026-12-01",
        ],
        dtype="datetime64[D]",
    )
    close = [90.0, 95.0, 100.0, 104.0, 108.0, 110.0, 105.0, 99.0]
    ends, returns = weekly_returns(dates, close)
    assert ends.tolist() == [np.datetime64("2026-11-27").item(), np.datetime64("2026-12-01").item()]
    assert returns == pytest.approx([110 / 100 - 1, 99 / 110 - 1])


def test_weekly_returns_across_new_year() -> None:
    # ISO weeks: Thu 24 Dec; Mon 28 + Thu 31 Dec (1 Jan is a holiday); Mon 4 Jan.
    dates = np.array(["2026-12-24", "2026-12-28", "2026-12-31", "2027-01-04"], dtype="datetime64[D]")
    ends, returns = weekly_returns(dates, [100.0, 101.0, 102.0, 96.9])
    assert [str(d) for d in ends] == ["2026-12-31", "2027-01-04"]
    assert returns == pytest.approx([0.02, 96.9 / 102 - 1])


def test_weekly_returns_edges() -> None:
    ends, returns = weekly_returns(np.array(["2026-11-16", "2026-11-17"], dtype="datetime64[D]"), [1.0, 2.0])
    assert ends.size == 0 and returns.size == 0
    ends, returns = weekly_returns(np.array([], dtype="datetime64[D]"), [])
    assert ends.size == 0
    with pytest.raises(ValidationFailed, match="increasing"):
        weekly_returns(np.array(["2026-11-17", "2026-11-16"], dtype="datetime64[D]"), [1.0, 2.0])


def test_realized_volatility_by_hand() -> None:
    # Log returns +a, −a, +a, −a: every 2-return window has mean 0 and sample variance 2a² → stdev a·√2,
    # annualised a·√2·√252 = a·√504.
    a = 0.01
    close = 100 * np.exp(np.cumsum([0.0, a, -a, a, -a]))
    vol = realized_volatility(close, 2)
    assert np.isnan(vol[:2]).all()
    assert vol[2:] == pytest.approx([a * math.sqrt(504)] * 3)


def test_realized_volatility_nan_and_short_input() -> None:
    assert np.isnan(realized_volatility([100.0, 101.0], 2)).all()
    close = [100.0, 101.0, math.nan, 103.0, 102.0, 101.0, 103.0]
    vol = realized_volatility(close, 2)
    assert np.isnan(vol[:5]).all()
    assert np.isfinite(vol[5:]).all()
    with pytest.raises(ValidationFailed):
        realized_volatility(close, 1)


_bars = st.lists(
    st.tuples(
        st.floats(1, 1000),  # low
        st.floats(0, 50),  # range
        st.floats(0, 1),  # close position in the range
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(_bars, st.integers(1, 20))
def test_atr_is_never_negative(bars: list[tuple[float, float, float]], period: int) -> None:
    low = np.array([b[0] for b in bars])
    high = low + np.array([b[1] for b in bars])
    close = low + (high - low) * np.array([b[2] for b in bars])
    atr = average_true_range(high, low, close, period)
    known = atr[~np.isnan(atr)]
    assert (known >= 0).all()
    assert known.size == max(0, len(bars) - period + 1)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.01, 20),
    st.lists(st.floats(-0.5, 0.5), min_size=1, max_size=60),
    st.integers(1, 20),
)
def test_atr_of_a_constant_range_is_that_range(width: float, steps: list[float], period: int) -> None:
    # Each close stays inside the next bar's range, so every true range is exactly the bar's width.
    mid = 500 + np.cumsum(np.array(steps) * width)
    atr = average_true_range(mid + width / 2, mid - width / 2, mid, period)
    known = atr[period - 1 :]
    assert known == pytest.approx(np.full(known.shape, width), rel=1e-9)
