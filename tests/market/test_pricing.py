"""Black–Scholes–Merton pricing: against QuantLib (the independent reference) and by its properties."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from alluse.domain.pricing import IV_MIN, bs_greeks, bs_price, bs_price_greeks, implied_vol

_TODAY = ql.Date(15, 1, 2026)
_DC = ql.Actual365Fixed()


def _quantlib(spot: float, strike: float, days: int, vol: float, rate: float, q: float, call: bool) -> dict[str, float]:
    """Price and greeks from QuantLib's AnalyticEuropeanEngine (T = days / 365, Actual/365 Fixed)."""
    ql.Settings.instance().evaluationDate = _TODAY
    process = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(spot)),
        ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, q, _DC)),
        ql.YieldTermStructureHandle(ql.FlatForward(_TODAY, rate, _DC)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(_TODAY, ql.NullCalendar(), vol, _DC)),
    )
    option = ql.VanillaOption(
        ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, strike), ql.EuropeanExercise(_TODAY + days)
    )
    option.setPricingEngine(ql.AnalyticEuropeanEngine(process))
    return {
        "price": option.NPV(),
        "delta": option.delta(),
        "gamma": option.gamma(),
        "theta": option.thetaPerDay(),  # QuantLib: theta() / 365, i.e. per calendar day
        "vega": option.vega(),  # per 1.00 of volatility
        "rho": option.rho(),  # per 1.00 of rate
    }


_GRID = list(
    itertools.product(
        [100.0],  # spot (the model is homogeneous in spot and strike)
        [60.0, 90.0, 100.0, 110.0, 150.0],  # strike
        [1, 7, 30, 365, 730],  # days
        [0.08, 0.25, 0.6, 1.2],  # vol
        [(0.0, 0.0), (0.04, 0.0), (0.05, 0.02)],  # (rate, dividend yield)
        [True, False],
    )
)


def test_matches_quantlib_on_a_grid() -> None:
    rows = [(s, k, d, v, r, q, c) for s, k, d, v, (r, q), c in _GRID]
    spot, strike, days, vol, rate, q, call = (np.array(col) for col in zip(*rows, strict=True))
    price, greeks = bs_price_greeks(spot, strike, days / 365.0, vol, rate, q, call)
    assert np.array_equal(price, bs_price(spot, strike, days / 365.0, vol, rate, q, call))
    assert np.array_equal(greeks.delta, bs_greeks(spot, strike, days / 365.0, vol, rate, q, call).delta)
    ours = {"price": price, **greeks._asdict()}
    for i, row in enumerate(rows):
        ref = _quantlib(*row)
        for name, value in ref.items():
            scale = 1.0 if name == "price" else max(1.0, abs(value))
            assert ours[name][i] == pytest.approx(value, rel=1e-6, abs=1e-10 * scale), (name, row)


def test_expiry_and_zero_vol_are_intrinsic_without_warnings() -> None:
    spot = np.array([90.0, 100.0, 110.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call_price = bs_price(spot, 100.0, 0.0, 0.3, 0.04, 0.0, True)
        put_price = bs_price(spot, 100.0, -1.0, 0.3, 0.04, 0.0, False)
        call = bs_greeks(spot, 100.0, 0.0, 0.3, 0.04, 0.0, True)
        put = bs_greeks(spot, 100.0, 0.0, 0.3, 0.04, 0.0, False)
        flat_price, flat = bs_price_greeks(spot, 100.0, 0.5, 0.0, 0.04, 0.0, True)
        tiny = bs_price(spot, 100.0, 1e-300, 1e-300, 0.04, 0.0, True)
    np.testing.assert_array_equal(call_price, [0.0, 0.0, 10.0])
    np.testing.assert_array_equal(put_price, [10.0, 0.0, 0.0])
    np.testing.assert_array_equal(call.delta, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(put.delta, [-1.0, -0.5, -0.0])
    for g in (call, put):
        assert np.all(g.gamma == 0) and np.all(g.vega == 0) and np.all(g.theta == 0)
    # Zero volatility, T > 0: discounted forward intrinsic S − K e^{-rT}, delta 1 / 0.
    forward_intrinsic = np.maximum(spot - 100.0 * np.exp(-0.04 * 0.5), 0.0)
    np.testing.assert_allclose(flat_price, forward_intrinsic, rtol=1e-14)
    np.testing.assert_array_equal(flat.delta, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(tiny, [0.0, 0.0, 10.0])
    for arr in (*call, *put, *flat, call_price, put_price, flat_price):
        assert np.all(np.isfinite(arr))


def test_zero_dte_keeps_time_value() -> None:
    six_hours = 6.0 / (365 * 24)
    assert bs_price(250.0, 250.0, six_hours, 0.6, 0.04, 0.0, False) > 1.0


def test_broadcasting() -> None:
    price = bs_price(np.array([[90.0], [110.0]]), np.array([95.0, 100.0, 105.0]), 0.25, 0.3, 0.04, 0.0, True)
    assert price.shape == (2, 3)
    assert bs_greeks(100.0, 100.0, 0.25, 0.3, 0.04, 0.0, np.array([True, False])).delta.shape == (2,)


# ------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------

spots = st.floats(5.0, 2000.0)
moneyness = st.floats(0.5, 2.0)
times = st.floats(1.0 / 365, 3.0)
vols = st.floats(0.05, 2.0)
rates = st.floats(0.0, 0.10)
yields = st.floats(0.0, 0.05)


@settings(max_examples=300, deadline=None)
@given(spots, moneyness, times, vols, rates, yields)
def test_put_call_parity(s: float, m: float, t: float, v: float, r: float, q: float) -> None:
    k = s * m
    call = bs_price(s, k, t, v, r, q, True)
    put = bs_price(s, k, t, v, r, q, False)
    assert call - put == pytest.approx(s * np.exp(-q * t) - k * np.exp(-r * t), abs=1e-9 * s)


@settings(max_examples=300, deadline=None)
@given(spots, st.floats(0.7, 1.4), times, st.floats(0.1, 1.5), rates, yields)
def test_greek_signs(s: float, m: float, t: float, v: float, r: float, q: float) -> None:
    assume(abs(np.log(m)) < 6.0 * v * np.sqrt(t))  # beyond ~8 std devs delta is 0 or 1 in float64
    call = bs_greeks(s, s * m, t, v, r, q, True)
    put = bs_greeks(s, s * m, t, v, r, q, False)
    assert 0.0 < call.delta < 1.0
    assert -1.0 < put.delta < 0.0
    assert call.gamma > 0.0 and put.gamma > 0.0
    assert call.vega > 0.0 and put.vega > 0.0
    assert call.gamma == pytest.approx(put.gamma, rel=1e-9)
    assert call.delta - put.delta == pytest.approx(np.exp(-q * t), rel=1e-9)


@settings(max_examples=300, deadline=None)
@given(spots, moneyness, times, vols, rates, yields, st.booleans())
def test_monotonicity(s: float, m: float, t: float, v: float, r: float, q: float, call: bool) -> None:
    k = s * m
    base = bs_price(s, k, t, v, r, q, call)
    tol = 1e-12 * s
    assert bs_price(s, k, t, v * 1.05, r, q, call) >= base - tol  # increasing in vol (both rights)
    if call:
        assert bs_price(s * 1.01, k, t, v, r, q, True) >= base - tol  # increasing in spot
        assert bs_price(s, k * 1.01, t, v, r, q, True) <= base + tol  # decreasing in strike
    else:
        assert bs_price(s * 1.01, k, t, v, r, q, False) <= base + tol
        assert bs_price(s, k * 1.01, t, v, r, q, False) >= base - tol


@settings(max_examples=300, deadline=None)
@given(spots, moneyness, times, vols, rates)
def test_call_without_dividends_is_worth_at_least_intrinsic(s: float, m: float, t: float, v: float, r: float) -> None:
    k = s * m
    assert bs_price(s, k, t, v, r, 0.0, True) >= max(s - k, 0.0) - 1e-12 * s


@settings(max_examples=400, deadline=None)
@given(spots, st.floats(0.6, 1.6), times, st.floats(0.05, 1.5), rates, yields, st.booleans())
def test_implied_vol_inverts_price(s: float, m: float, t: float, v: float, r: float, q: float, call: bool) -> None:
    k = s * m
    price = bs_price(s, k, t, v, r, q, call)
    iv = implied_vol(price, s, k, t, r, q, call)
    vega = bs_greeks(s, k, t, v, r, q, call).vega
    if vega > 1e-3 * s * np.sqrt(t) and price > 1e-8 * s:
        assert iv == pytest.approx(v, abs=1e-7)
    else:  # vol hardly moves the price: the answer must still reproduce it
        assert bs_price(s, k, t, iv, r, q, call) == pytest.approx(price, abs=1e-9 * s)


def test_implied_vol_vectorised_and_out_of_range() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    s = rng.uniform(20, 800, n)
    k = s * rng.uniform(0.8, 1.25, n)
    t = rng.uniform(1 / 365, 2.0, n)
    v = rng.uniform(0.1, 1.0, n)
    call = rng.random(n) < 0.5
    price = bs_price(s, k, t, v, 0.04, 0.01, call)
    iv = implied_vol(price, s, k, t, 0.04, 0.01, call)
    assert not np.isnan(iv).any()
    conditioned = bs_greeks(s, k, t, v, 0.04, 0.01, call).vega > 1e-4 * s  # elsewhere vol barely moves the price
    assert conditioned.mean() > 0.95
    assert np.max(np.abs(iv - v)[conditioned]) < 1e-7
    np.testing.assert_allclose(bs_price(s, k, t, iv, 0.04, 0.01, call), price, rtol=0, atol=1e-9 * s.max())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odd = implied_vol(
            [-1.0, 0.0, 200.0, 5.0, np.nan, 5.0],
            [100.0, 100.0, 100.0, 100.0, 100.0, 100.0],
            [100.0, 120.0, 100.0, 100.0, 100.0, 100.0],
            [0.5, 0.5, 0.5, 0.0, 0.5, 0.5],
            0.04,
            0.0,
            [True, True, True, True, True, False],
        )
    assert np.isnan(odd[0])  # below the floor
    assert odd[1] == IV_MIN  # at the floor (worthless OTM call)
    assert np.isnan(odd[2])  # above the spot: no volatility gives that
    assert np.isnan(odd[3])  # expired
    assert np.isnan(odd[4])
    assert odd[5] > 0
