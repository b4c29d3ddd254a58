"""Technical indicators on daily bars: pure numpy functions, float64 in, float64 out.

NaN means "unknown": it propagates through a bar's arithmetic (a missing high, low or previous close
gives a NaN true range) and never raises. Arrays must be one-dimensional and of equal length; a bad
shape or parameter is `ValidationFailed`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from alluse.domain.errors import ValidationFailed
from alluse.domain.market import DateArray, FloatArray

__all__ = [
    "TRADING_DAYS_PER_YEAR",
    "average_true_range",
    "realized_volatility",
    "true_range",
    "weekly_returns",
]

TRADING_DAYS_PER_YEAR = 252


def _floats(name: str, values: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValidationFailed(f"expected a one-dimensional array, got shape {arr.shape}", field=name)
    return arr


def _same_length(**arrays: FloatArray) -> int:
    lengths = {name: int(arr.shape[0]) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise ValidationFailed(f"arrays differ in length ({detail})", field=next(iter(lengths)))
    return next(iter(lengths.values()))


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValidationFailed(f"{value!r} is not a positive whole number", field=name)
    return int(value)


def true_range(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike) -> FloatArray:
    """Wilder's true range: max(high − low, |high − previous close|, |low − previous close|).

    The first bar has no previous close, so its true range is high − low.
    """
    h, lo, c = _floats("high", high), _floats("low", low), _floats("close", close)
    n = _same_length(high=h, low=lo, close=c)
    tr = h - lo
    if n > 1:
        prev = c[:-1]
        tr[1:] = np.maximum(tr[1:], np.maximum(np.abs(h[1:] - prev), np.abs(lo[1:] - prev)))
    return tr


def average_true_range(high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike, period: int = 14) -> FloatArray:
    """Wilder's ATR: the first value is the simple mean of the first `period` true ranges, then
    ATR[t] = (ATR[t−1] × (period − 1) + TR[t]) / period.

    Aligned with the input: NaN until `period` true ranges are known. A bar whose true range is NaN
    gets a NaN ATR and does not update the average (the next bar continues from the last known value);
    the seed is the mean of the first `period` finite true ranges.
    """
    p = _positive_int("period", period)
    tr = true_range(high, low, close)
    out = np.full(tr.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(tr))
    if idx.size < p:
        return out
    finite = tr[idx]
    smoothed = np.full(finite.shape, np.nan)
    value = float(finite[:p].mean())
    smoothed[p - 1] = value
    # A recursion: one pass in Python is fast enough for daily bars (~1 µs per bar).
    for i, tr_i in enumerate(finite[p:].tolist(), start=p):
        value = (value * (p - 1) + tr_i) / p
        smoothed[i] = value
    out[idx] = smoothed
    return out


def _week_keys(days: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Monday (days since 1970-01-01, a Thursday) of the ISO week of each day."""
    return days - (days + 3) % 7


def weekly_returns(dates: DateArray, close: npt.ArrayLike) -> tuple[DateArray, FloatArray]:
    """Close-to-close return of each ISO week: the close of the week's last session over the close of
    the previous week's last session, minus 1.

    Returns (week-ending session dates, simple returns), one per week after the first week present. The
    last week counts even if it is not complete (pass bars `through` a Friday to avoid that). `dates`
    must be strictly increasing (datetime64[D] or convertible).
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    c = _floats("close", close)
    if d.ndim != 1:
        raise ValidationFailed(f"expected a one-dimensional array, got shape {d.shape}", field="dates")
    if d.shape[0] != c.shape[0]:
        raise ValidationFailed(f"arrays differ in length (dates {d.shape[0]}, close {c.shape[0]})", field="dates")
    days = d.astype(np.int64)
    if days.size > 1 and not bool(np.all(np.diff(days) > 0)):
        raise ValidationFailed("dates must be strictly increasing", field="dates")
    if days.size == 0:
        return np.empty(0, dtype="datetime64[D]"), np.empty(0)
    weeks = _week_keys(days)
    last = np.flatnonzero(np.append(weeks[1:] != weeks[:-1], True))
    ends = d[last]
    closes = c[last]
    return ends[1:], closes[1:] / closes[:-1] - 1.0


def realized_volatility(close: npt.ArrayLike, window: int, periods_per_year: int = TRADING_DAYS_PER_YEAR) -> FloatArray:
    """Rolling annualised volatility: the sample standard deviation (ddof 1) of the last `window` daily
    log returns × √periods_per_year.

    Aligned with `close`: value t uses the returns ending at bar t, so the first `window` values are NaN
    (as is any window containing a NaN or a non-positive close).
    """
    w = _positive_int("window", window)
    if w < 2:
        raise ValidationFailed("a volatility needs a window of at least 2 returns", field="window")
    ppy = _positive_int("periods_per_year", periods_per_year)
    c = _floats("close", close)
    out = np.full(c.shape, np.nan)
    if c.size <= w:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(c)
    logs[~np.isfinite(logs)] = np.nan
    returns = np.diff(logs)
    windows = sliding_window_view(returns, w)
    out[w:] = windows.std(axis=1, ddof=1) * math.sqrt(ppy)
    return out
