"""The seeded market model: determinism, consistency, statistics, calendar alignment."""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alluse.adapters.sim.bars import (
    DEFAULT_TICKERS,
    MarketModel,
    MarketModelSettings,
    RegimeSettings,
    SimulatedHistory,
    WeekRegime,
    intraday_from_daily,
)
from alluse.adapters.sim.calendar import NyseCalendar
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.indicators import average_true_range, weekly_returns
from alluse.domain.market import DailyBars

START, END = date(2023, 1, 1), date(2024, 12, 31)


@pytest.fixture(scope="module")
def cal() -> NyseCalendar:
    return NyseCalendar()


@pytest.fixture(scope="module")
def hist(cal: NyseCalendar) -> SimulatedHistory:
    return MarketModel(MarketModelSettings(), 42, cal).generate(START, END)


@pytest.fixture(scope="module")
def long_hist(cal: NyseCalendar) -> SimulatedHistory:
    """20 years, for the slow statistics."""
    return MarketModel(MarketModelSettings(), 7, cal).generate(date(2004, 1, 1), date(2023, 12, 31))


def _assert_consistent(hist: SimulatedHistory) -> None:
    for ticker in hist.tickers:
        d = hist.daily(ticker)
        t = hist.intraday_table(ticker)
        for arr in (d.open, d.high, d.low, d.close, t.open, t.high, t.low, t.close):
            assert arr.dtype == np.float64
            assert (arr >= 0.01).all()
            assert np.array_equal(np.round(arr, 2), arr)  # cents
        for o, h, lo, c in ((d.open, d.high, d.low, d.close), (t.open, t.high, t.low, t.close)):
            assert (h >= np.maximum(o, c)).all()
            assert (lo <= np.minimum(o, c)).all()
        assert (t.volume >= 0).all()
        first, ends = t.offsets[:-1], t.offsets[1:]
        assert np.array_equal(d.open, t.open[first])
        assert np.array_equal(d.close, t.close[ends - 1])
        assert np.array_equal(d.high, np.maximum.reduceat(t.high, first))
        assert np.array_equal(d.low, np.minimum.reduceat(t.low, first))
        assert np.array_equal(d.volume, np.add.reduceat(t.volume, first))
        # Within a session each bar opens at the previous bar's close.
        inner = np.ones(t.open.size, dtype=bool)
        inner[first] = False
        assert np.array_equal(t.open[inner], t.close[np.flatnonzero(inner) - 1])


def test_every_ticker_every_session(hist: SimulatedHistory, cal: NyseCalendar) -> None:
    assert set(hist.tickers) == set(DEFAULT_TICKERS)
    sessions = cal.sessions_array(START, END)
    for ticker in hist.tickers:
        daily = hist.daily(ticker)
        assert daily.ticker == ticker
        assert np.array_equal(daily.dates, sessions)
    holidays = ["2023-04-07", "2023-12-25", "2024-03-29", "2024-07-04", "2024-11-28", "2024-12-25"]
    assert not np.isin(np.array(holidays, dtype="datetime64[D]"), hist.daily("SPY").dates).any()
    with pytest.raises(MarketDataGap):
        hist.intraday("SPY", date(2024, 11, 28))  # Thanksgiving
    with pytest.raises(MarketDataGap):
        hist.intraday("SPY", date(2024, 11, 30))  # Saturday
    with pytest.raises(MarketDataGap, match="no bars for ticker"):
        hist.daily("XYZ")
    with pytest.raises(MarketDataGap):
        hist.intraday("XYZ", date(2024, 11, 27))


def test_intraday_grid(hist: SimulatedHistory) -> None:
    regular = hist.intraday("TSLA", date(2024, 11, 27))
    assert len(regular) == 26
    assert regular.session == date(2024, 11, 27)
    assert regular.times.dtype == np.dtype("datetime64[m]")
    assert str(regular.times[0]) == "2024-11-27T09:30"
    assert str(regular.times[-1]) == "2024-11-27T15:45"
    assert (np.diff(regular.times) == np.timedelta64(15, "m")).all()
    for half in (date(2024, 11, 29), date(2024, 12, 24), date(2024, 7, 3), date(2023, 11, 24)):
        bars = hist.intraday("AAPL", half)
        assert len(bars) == 14
        assert str(bars.times[-1]) == f"{half.isoformat()}T12:45"


def test_ohlc_consistency_by_construction(hist: SimulatedHistory) -> None:
    _assert_consistent(hist)


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**32))
def test_ohlc_consistency_for_any_seed(seed: int) -> None:
    cal = NyseCalendar()
    _assert_consistent(MarketModel(MarketModelSettings(), seed, cal).generate(date(2024, 10, 1), date(2024, 12, 31)))


def test_determinism(cal: NyseCalendar, hist: SimulatedHistory) -> None:
    again = MarketModel(MarketModelSettings(), 42, cal).generate(START, END)
    other = MarketModel(MarketModelSettings(), 43, cal).generate(START, END)
    for ticker in hist.tickers:
        a, b, c = hist.daily(ticker), again.daily(ticker), other.daily(ticker)
        for field in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(a, field), getattr(b, field))
        assert not np.array_equal(a.close, c.close)
        ta, tb = hist.intraday_table(ticker), again.intraday_table(ticker)
        assert np.array_equal(ta.close, tb.close) and np.array_equal(ta.volume, tb.volume)
    assert hist.regime_labels == again.regime_labels


def test_a_tickers_path_does_not_depend_on_the_others(cal: NyseCalendar, hist: SimulatedHistory) -> None:
    few = MarketModelSettings(tickers={k: DEFAULT_TICKERS[k] for k in ("SPY", "TSLA")})
    small = MarketModel(few, 42, cal).generate(START, END)
    assert small.tickers == ("SPY", "TSLA")
    assert np.array_equal(small.daily("TSLA").close, hist.daily("TSLA").close)


def test_indicators_on_generated_bars(hist: SimulatedHistory) -> None:
    for ticker in hist.tickers:
        d = hist.daily(ticker)
        atr = average_true_range(d.high, d.low, d.close, 14)
        assert np.isfinite(atr[13:]).all() and (atr[13:] > 0).all()
        ends, returns = weekly_returns(d.dates, d.close)
        assert ends.size >= 100 and np.isfinite(returns).all()
        assert returns.std() > 0


def test_realised_volatility_near_its_setting(hist: SimulatedHistory) -> None:
    for ticker, model in DEFAULT_TICKERS.items():
        r = np.diff(np.log(hist.daily(ticker).close))
        realised = r.std(ddof=1) * np.sqrt(252)
        assert 0.5 * model.annual_volatility < realised < 1.6 * model.annual_volatility, ticker


def test_correlation_with_the_index(hist: SimulatedHistory) -> None:
    spy = np.diff(np.log(hist.daily("SPY").close))
    tsla = np.diff(np.log(hist.daily("TSLA").close))
    assert np.corrcoef(spy, tsla)[0, 1] > 0.3
    qqq = np.diff(np.log(hist.daily("QQQ").close))
    assert np.corrcoef(spy, qqq)[0, 1] > 0.7


def test_week_regime_proportions(cal: NyseCalendar) -> None:
    hist = MarketModel(MarketModelSettings(), 11, cal).generate(date(2019, 1, 1), date(2023, 12, 31))
    labels = hist.regime_labels
    assert 255 <= len(labels) <= 262
    assert [w for w, _ in hist.week_regimes()][:2] == [date(2018, 12, 31), date(2019, 1, 7)]
    expected = RegimeSettings()
    share = {r: labels.count(r) / len(labels) for r in WeekRegime}
    assert share[WeekRegime.UP] == pytest.approx(expected.up_share, abs=0.08)
    assert share[WeekRegime.DOWN] == pytest.approx(expected.down_share, abs=0.08)
    assert share[WeekRegime.SIDEWAYS] == pytest.approx(expected.sideways_share, abs=0.08)


def test_regimes_move_the_index(long_hist: SimulatedHistory) -> None:
    spy = long_hist.daily("SPY")
    ends, returns = weekly_returns(spy.dates, spy.close)
    mondays = ends - ((ends.astype(np.int64) + 3) % 7).astype("timedelta64[D]")
    label = dict(zip(long_hist.regime_weeks.tolist(), long_hist.regime_labels, strict=True))
    by = {r: np.array([x for m, x in zip(mondays.tolist(), returns, strict=True) if label[m] is r]) for r in WeekRegime}
    assert by[WeekRegime.UP].mean() > by[WeekRegime.SIDEWAYS].mean() > by[WeekRegime.DOWN].mean()


def test_volatility_clustering(long_hist: SimulatedHistory) -> None:
    r = np.diff(np.log(long_hist.daily("SPY").close))
    sq = (r - r.mean()) ** 2
    assert np.corrcoef(sq[1:], sq[:-1])[0, 1] > 0.05


def test_generation_is_fast(cal: NyseCalendar) -> None:
    model = MarketModel(MarketModelSettings(), 1, cal)
    began = time.perf_counter()
    model.generate(date(2025, 1, 1), date(2025, 12, 31))
    assert time.perf_counter() - began < 1.0


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="sum to 1"):
        RegimeSettings(up_share=0.6, down_share=0.3, sideways_share=0.2)
    with pytest.raises(ValidationError, match="index_ticker"):
        MarketModelSettings(index_ticker="QQQ", tickers={"SPY": DEFAULT_TICKERS["SPY"]})
    with pytest.raises(ValidationError, match="divide"):
        MarketModelSettings(intraday_interval_minutes=7)
    with pytest.raises(ValidationError, match="below 1"):
        MarketModelSettings.model_validate({"garch": {"alpha": 0.2, "beta": 0.85}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        MarketModelSettings.model_validate({"volatility": 0.2})
    with pytest.raises(ValidationError):
        MarketModelSettings().model_copy(update={}).__setattr__("index_ticker", "QQQ")
    s = MarketModelSettings()
    assert s.tickers["TSLA"].start_price == Decimal("250")
    assert s.intraday_interval_minutes == 15
    for name, field in type(s).model_fields.items():
        assert field.description, name


def test_thirty_minute_bars(cal: NyseCalendar) -> None:
    hist = MarketModel(MarketModelSettings(intraday_interval_minutes=30), 3, cal).generate(
        date(2024, 11, 25), date(2024, 11, 29)
    )
    assert len(hist.intraday("NVDA", date(2024, 11, 27))) == 13
    assert len(hist.intraday("NVDA", date(2024, 11, 29))) == 7
    _assert_consistent(hist)


def test_empty_range_is_refused(cal: NyseCalendar) -> None:
    with pytest.raises(ValidationFailed, match="no NYSE session"):
        MarketModel(MarketModelSettings(), 1, cal).generate(date(2024, 12, 25), date(2024, 12, 25))


# --- intraday_from_daily ----------------------------------------------------------------------------


def _daily() -> DailyBars:
    return DailyBars(
        "AAPL",
        np.array(["2024-11-27", "2024-11-29", "2024-12-02"], dtype="datetime64[D]"),
        np.array([235.04, 237.09, 237.21]),
        np.array([238.26, 238.57, 239.51]),
        np.array([233.31, 236.92, 236.42]),
        np.array([236.49, 237.09, 236.50]),
        np.array([51_022_228, 28_481_377, 55_948_403], dtype=np.int64),
    )


def test_intraday_from_daily_keeps_the_session_ohlc(cal: NyseCalendar) -> None:
    daily = _daily()
    sessions = intraday_from_daily(daily, cal, 15)
    assert [len(s) for s in sessions] == [26, 14, 26]
    for i, bars in enumerate(sessions):
        assert bars.session == daily.dates[i].item()
        assert bars.open[0] == daily.open[i]
        assert bars.close[-1] == daily.close[i]
        assert bars.high.max() == daily.high[i]
        assert bars.low.min() == daily.low[i]
        assert bars.volume.sum() == daily.volume[i]
        assert (bars.high >= np.maximum(bars.open, bars.close)).all()
        assert (bars.low <= np.minimum(bars.open, bars.close)).all()
        assert np.array_equal(bars.open[1:], bars.close[:-1])
        assert np.array_equal(np.round(bars.close, 2), bars.close)
    up, down = sessions[0], sessions[2]
    assert int(np.argmin(up.low)) < int(np.argmax(up.high))  # open → low → high → close
    assert int(np.argmax(down.high)) < int(np.argmin(down.low))  # open → high → low → close
    assert str(sessions[1].times[-1]) == "2024-11-29T12:45"


def test_intraday_from_daily_other_interval_and_errors(cal: NyseCalendar) -> None:
    assert [len(s) for s in intraday_from_daily(_daily(), cal, 30)] == [13, 7, 13]
    with pytest.raises(ValidationFailed):
        intraday_from_daily(_daily(), cal, 7)
    bad = DailyBars("AAPL", np.array(["2024-11-28"], dtype="datetime64[D]"), *(np.ones(1),) * 4, np.ones(1, np.int64))
    with pytest.raises(MarketDataGap, match="not NYSE sessions"):
        intraday_from_daily(bad, cal)
