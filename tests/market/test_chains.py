"""Simulated option chains: the volatility surface, listed expiries, strike grids, quotes, liquidity."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alluse.adapters.sim.chains import (
    ChainSettings,
    generate_chain,
    listed_expiries,
    third_fridays,
    years_to_close,
)
from alluse.adapters.sim.volatility import VolSurfaceSettings, atm_vol, iv_surface
from alluse.domain.errors import ValidationFailed
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.market import OptionChain
from alluse.domain.pricing import bs_price

NY = ZoneInfo("America/New_York")
GOOD_FRIDAY = date(2026, 4, 3)
JUNETEENTH = date(2026, 6, 19)  # a Friday, and June 2026's third Friday


def _sessions(start: str = "2026-03-30", end: str = "2028-07-01", holidays: tuple[date, ...] = ()) -> np.ndarray:
    days = np.arange(np.datetime64(start), np.datetime64(end))
    days = days[np.is_busday(days)]
    return days[~np.isin(days, np.array(holidays, dtype="datetime64[D]"))]


SESSIONS = _sessions(holidays=(GOOD_FRIDAY, date(2026, 5, 25), JUNETEENTH, date(2026, 7, 3)))
SETTINGS = ChainSettings()


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


def _chain(ticker: str, spot: float, vol: float, when: datetime, seed: int = 11) -> OptionChain:
    expiries = listed_expiries(when.date(), SESSIONS, SETTINGS)
    return generate_chain(ticker, when, spot, vol, expiries, SETTINGS, seed)


THURSDAY = _at(date(2026, 4, 9), 10)
TSLA = _chain("TSLA", 250.0, 0.55, THURSDAY)
AAPL = _chain("AAPL", 230.0, 0.25, _at(date(2026, 4, 6), 10, 30))
SPY = _chain("SPY", 600.0, 0.15, THURSDAY)
CHAINS = [TSLA, AAPL, SPY, _chain("F", 12.3, 0.35, THURSDAY), _chain("COST", 910.0, 0.22, THURSDAY)]


# ------------------------------------------------------------------------------------------------
# Volatility surface
# ------------------------------------------------------------------------------------------------

SURFACE = VolSurfaceSettings()


def test_surface_skew_puts_steeper() -> None:
    m = np.linspace(-0.3, 0.3, 61)
    for t in (1 / 365, 7 / 365, 0.25, 1.0, 2.0):
        iv = iv_surface(0.4, 0.35, m, t, SURFACE)
        below = iv[m <= 0]
        assert np.all(np.diff(below) <= 0)  # IV rises as the strike falls
        k = 10  # equal distance either side of the forward
        assert iv[30 - k] > iv[30 + k]  # put side above the call side


def test_surface_term_structure_reverts_to_long_run() -> None:
    t = np.array([1e-4, 1 / 365, 7 / 365, 30 / 365, 0.25, 0.5, 1.0, 2.0, 10.0, 100.0])
    up = atm_vol(0.20, 0.40, t, SURFACE)  # short-dated below long-run: increasing curve
    down = atm_vol(0.80, 0.40, t, SURFACE)
    assert np.all(np.diff(up) > 0) and np.all(np.diff(down) < 0)
    assert up[0] == pytest.approx(SURFACE.iv_premium * 0.20, rel=1e-3)
    assert down[-1] == pytest.approx(SURFACE.iv_premium * 0.40, rel=1e-2)
    flat = atm_vol(0.3, 0.3, t, SURFACE)
    np.testing.assert_allclose(flat, SURFACE.iv_premium * 0.3, rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.01, 3.0), st.floats(0.01, 3.0), st.floats(-3.0, 3.0), st.floats(0.0, 5.0))
def test_surface_bounded(realised: float, long_run: float, m: float, t: float) -> None:
    iv = iv_surface(realised, long_run, m, t, SURFACE)
    assert SURFACE.iv_floor <= iv <= SURFACE.iv_cap
    assert np.isfinite(iv)


def test_surface_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="iv_floor"):
        VolSurfaceSettings(iv_floor=0.5, iv_cap=0.4)
    with pytest.raises(ValueError, match="curvature"):
        VolSurfaceSettings(curvature=0.5)
    with pytest.raises(ValueError):
        VolSurfaceSettings(risk_free=0.05)  # type: ignore[call-arg]


# ------------------------------------------------------------------------------------------------
# Expiries
# ------------------------------------------------------------------------------------------------


def _d(*days: str) -> list[date]:
    return [date.fromisoformat(d) for d in days]


def test_third_fridays() -> None:
    months = np.array(["2026-01", "2026-04", "2026-05", "2026-06", "2027-10"], dtype="datetime64[M]")
    got = [d.astype(date) for d in third_fridays(months)]
    assert got == _d("2026-01-16", "2026-04-17", "2026-05-15", "2026-06-19", "2027-10-15")


def test_weeklies_use_thursday_when_friday_is_a_holiday() -> None:
    listed = listed_expiries(date(2026, 3, 30), SESSIONS, SETTINGS)
    weeklies = _d(
        "2026-04-02", "2026-04-10", "2026-04-17", "2026-04-24", "2026-05-01", "2026-05-08", "2026-05-15", "2026-05-22"
    )
    assert listed[:8] == weeklies  # Good Friday: the week's expiry is Thursday 2 April
    assert date(2026, 5, 29) not in listed  # only 8 weeklies


def test_thursday_sees_the_next_day_friday_expiry() -> None:
    listed = listed_expiries(date(2026, 4, 9), SESSIONS, SETTINGS)
    assert listed[0] == date(2026, 4, 10)  # 1 DTE: Gen-Acc's Thursday entry
    on_holiday_thursday = listed_expiries(date(2026, 4, 2), SESSIONS, SETTINGS)
    assert on_holiday_thursday[0] == date(2026, 4, 2)  # 0 DTE that Thursday
    friday = listed_expiries(date(2026, 4, 10), SESSIONS, SETTINGS)
    assert friday[0] == date(2026, 4, 10)


def test_monthlies_and_leaps() -> None:
    listed = listed_expiries(date(2026, 3, 30), SESSIONS, SETTINGS)
    assert date(2026, 6, 18) in listed and JUNETEENTH not in listed  # holiday third Friday → Thursday
    monthlies = [d for d in listed if d > date(2026, 5, 22)]
    assert monthlies[:3] == _d("2026-06-18", "2026-07-17", "2026-08-21")
    # 12 monthlies (Apr 2026 - Mar 2027), then LEAPS every month up to 24 months after March 2026.
    assert monthlies[-1] == date(2028, 3, 17)
    assert listed == sorted(set(listed))
    assert len(listed) == 8 + (12 - 2) + 12  # Apr and May monthlies are also weeklies
    leaps = [d for d in listed if 365 <= (d - date(2026, 3, 30)).days <= 730]
    assert leaps, "A11 needs an expiry 12-24 months out"


def test_january_only_leaps() -> None:
    cfg = ChainSettings(leaps_january_only=True)
    listed = listed_expiries(date(2026, 3, 30), SESSIONS, cfg)
    after_monthlies = [d for d in listed if d > date(2027, 3, 19)]
    assert after_monthlies == _d("2028-01-21")


def test_sessions_are_extended_with_weekdays_past_their_end() -> None:
    short = _sessions(end="2026-04-15", holidays=(GOOD_FRIDAY,))
    assert listed_expiries(date(2026, 3, 30), short, SETTINGS) == listed_expiries(
        date(2026, 3, 30), _sessions(holidays=(GOOD_FRIDAY,)), SETTINGS
    )


def test_years_to_close_is_calendar_time_to_four_pm() -> None:
    assert years_to_close(_at(date(2026, 4, 10), 10), date(2026, 4, 10)) == pytest.approx(6 / (365 * 24))
    assert years_to_close(_at(date(2026, 4, 9), 10), date(2026, 4, 10)) == pytest.approx(30 / (365 * 24))
    # Across the November DST change: 7 days and one hour of real time.
    assert years_to_close(_at(date(2026, 10, 30), 16), date(2026, 11, 6)) == pytest.approx((7 * 24 + 1) / 8760)


# ------------------------------------------------------------------------------------------------
# Chains
# ------------------------------------------------------------------------------------------------


def _on_tick_grid(cents: np.ndarray, penny: bool) -> bool:
    coarse = cents >= SETTINGS.ticks.option_threshold_cents
    return bool(penny or np.all(cents[coarse] % SETTINGS.ticks.option_large_tick_cents == 0))


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.underlying)
def test_quotes_are_on_the_tick_grid(chain: OptionChain) -> None:
    assert len(chain) > 0
    assert np.all(chain.bid_cents >= 0)
    assert np.all(chain.bid_cents < chain.ask_cents)
    assert np.all(chain.ask_cents >= SETTINGS.ticks.option_small_tick_cents)
    penny = chain.underlying in SETTINGS.ticks.penny_everywhere
    assert _on_tick_grid(chain.bid_cents, penny) and _on_tick_grid(chain.ask_cents, penny)
    assert np.any(chain.bid_cents == 0)  # far out-of-the-money options have no bid
    for arr in (chain.iv, chain.delta, chain.gamma, chain.theta, chain.vega):
        assert arr.dtype == np.float64 and np.all(np.isfinite(arr))
    for ints in (chain.strike_cents, chain.bid_cents, chain.ask_cents, chain.open_interest, chain.volume):
        assert ints.dtype == np.int64
    assert chain.expiry.dtype == np.dtype("datetime64[D]")


def test_penny_ticker_quotes_pennies_above_three_dollars() -> None:
    high = SPY.ask_cents >= 300
    assert np.any(SPY.ask_cents[high] % 5 != 0)


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.underlying)
def test_mid_is_close_to_fair_value(chain: OptionChain) -> None:
    strike = chain.strike_cents / 100.0
    t = np.array([years_to_close(chain.as_of, d.astype(date)) for d in chain.expiry])
    fair = bs_price(chain.spot, strike, t, chain.iv, SETTINGS.surface.risk_free_rate, 0.0, chain.is_call)
    mid = (chain.bid_cents + chain.ask_cents) / 200.0
    liquid = (np.abs(chain.delta) > 0.2) & (np.abs(chain.delta) < 0.8)
    assert liquid.sum() > 20
    penny = chain.underlying in SETTINGS.ticks.penny_everywhere

    def tick(cents: np.ndarray) -> np.ndarray:
        coarse = SETTINGS.ticks.option_small_tick_cents if penny else SETTINGS.ticks.option_large_tick_cents
        return (
            np.where(cents >= SETTINGS.ticks.option_threshold_cents, coarse, SETTINGS.ticks.option_small_tick_cents)
            / 100.0
        )

    # Bid and ask are each rounded to the nearest tick: the mid moves by at most a quarter of the two ticks.
    tolerance = (tick(chain.bid_cents) + tick(chain.ask_cents)) / 4.0
    assert np.all(np.abs(mid - fair)[liquid] <= tolerance[liquid] + 1e-9)


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.underlying)
def test_deltas_are_monotone_in_strike(chain: OptionChain) -> None:
    for expiry in chain.expiries():
        calls = chain.rows(expiry, OptionRight.CALL)
        puts = chain.rows(expiry, OptionRight.PUT)
        assert np.all(np.diff(chain.delta[calls]) <= 1e-12)  # call delta falls as the strike rises
        assert np.all(np.diff(np.abs(chain.delta[puts])) >= -1e-12)  # |put delta| falls as the strike falls
        assert np.all((chain.delta[calls] >= 0) & (chain.delta[calls] <= 1))
        assert np.all((chain.delta[puts] <= 0) & (chain.delta[puts] >= -1))
        np.testing.assert_array_equal(chain.strike_cents[calls], chain.strike_cents[puts])


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.underlying)
def test_wings_have_wider_relative_spreads(chain: OptionChain) -> None:
    mid = (chain.bid_cents + chain.ask_cents) / 2.0
    rel = (chain.ask_cents - chain.bid_cents) / mid
    d = np.abs(chain.delta)
    wings = (d < 0.10) & (chain.bid_cents > 0)
    atm = (d > 0.40) & (d < 0.60)
    assert np.median(rel[wings]) > 2 * np.median(rel[atm])


@pytest.mark.parametrize("chain", CHAINS, ids=lambda c: c.underlying)
def test_open_interest_and_volume_peak_near_the_money_and_near_term(chain: OptionChain) -> None:
    d = np.abs(chain.delta)
    near_term = chain.expiry == chain.expiry.min()
    distance = np.abs(chain.strike_cents / 100.0 - chain.spot)
    atm = near_term & (distance <= np.sort(np.unique(distance[near_term]))[1])  # the two strikes nearest spot
    wings = near_term & (d < 0.05)
    for arr in (chain.open_interest, chain.volume):
        assert np.all(arr >= 0)
        assert arr[atm].mean() > 3 * arr[wings].mean()
        first, last = chain.expiry.min(), chain.expiry.max()
        assert arr[(chain.expiry == first) & (d > 0.2) & (d < 0.8)].mean() > (
            2 * arr[(chain.expiry == last) & (d > 0.2) & (d < 0.8)].mean()
        )


def test_same_inputs_same_chain_and_the_seed_matters() -> None:
    again = _chain("TSLA", 250.0, 0.55, THURSDAY)
    other_seed = _chain("TSLA", 250.0, 0.55, THURSDAY, seed=12)
    other_day = _chain("TSLA", 250.0, 0.55, _at(date(2026, 4, 8), 10))
    for name in ("expiry", "strike_cents", "is_call", "bid_cents", "ask_cents", "iv", "delta", "gamma", "theta"):
        np.testing.assert_array_equal(getattr(again, name), getattr(TSLA, name))
    np.testing.assert_array_equal(again.open_interest, TSLA.open_interest)
    np.testing.assert_array_equal(again.volume, TSLA.volume)
    np.testing.assert_array_equal(other_seed.bid_cents, TSLA.bid_cents)  # the seed only moves liquidity noise
    assert not np.array_equal(other_seed.open_interest, TSLA.open_interest)
    assert not np.array_equal(other_day.open_interest[: len(TSLA)], TSLA.open_interest[: len(other_day)])


def test_zero_dte_at_ten_still_has_time_value() -> None:
    friday = _at(date(2026, 4, 10), 10)
    chain = _chain("TSLA", 250.0, 0.55, friday)
    assert chain.expiries()[0] == date(2026, 4, 10)
    for right in OptionRight:
        rows = chain.rows(date(2026, 4, 10), right)
        atm = rows[np.argmin(np.abs(chain.strike_cents[rows] - 25_000))]
        quote = chain.quote(int(atm))
        assert quote.bid_cents > 100  # ≈ $1.90 of pure time value with 6 hours left
        assert quote.theta < 0 and quote.vega > 0 and quote.gamma > 0


def test_expired_and_past_expiries_are_excluded() -> None:
    friday_evening = _at(date(2026, 4, 10), 17)
    chain = generate_chain(
        "TSLA", friday_evening, 250.0, 0.55, _d("2026-04-09", "2026-04-10", "2026-04-17"), SETTINGS, 1
    )
    assert chain.expiries() == _d("2026-04-10", "2026-04-17")
    rows = chain.rows(date(2026, 4, 10), OptionRight.CALL)
    intrinsic = np.maximum(25_000 - chain.strike_cents[rows], 0)
    mid = (chain.bid_cents[rows] + chain.ask_cents[rows]) / 2.0
    assert np.all(np.abs(mid - intrinsic) <= 2.5)  # expired: intrinsic value, to the nearest tick
    assert np.all(chain.gamma[rows] == 0) and np.all(chain.theta[rows] == 0)
    empty = generate_chain("TSLA", friday_evening, 250.0, 0.55, _d("2026-04-09"), SETTINGS, 1)
    assert len(empty) == 0 and empty.expiries() == []


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="timezone"):
        generate_chain("TSLA", datetime(2026, 4, 9, 10), 250.0, 0.5, [date(2026, 4, 10)], SETTINGS, 1)
    with pytest.raises(ValidationFailed) as err:
        generate_chain("TSLA", THURSDAY, -1.0, 0.5, [date(2026, 4, 10)], SETTINGS, 1)
    assert err.value.field == "spot"
    with pytest.raises(ValidationFailed):
        generate_chain("TSLA", THURSDAY, 250.0, 0.0, [date(2026, 4, 10)], SETTINGS, 1)


def _increments(chain: OptionChain, expiry: date) -> set[int]:
    rows = chain.rows(expiry, OptionRight.CALL)
    return {int(x) for x in np.diff(chain.strike_cents[rows])}


def test_a_listed_strike_stays_listed_after_a_rise_across_a_tier_boundary() -> None:
    """TSLA sold a $202 call at $199 ($1 strikes); at $218 (the $2.50 tier) the ATR protocol must still
    find it to buy it back."""
    before = _chain("TSLA", 199.0, 0.5, THURSDAY)
    after = _chain("TSLA", 218.0, 0.5, THURSDAY)
    call = OptionContract("TSLA", before.expiries()[0], 20_200, OptionRight.CALL)
    assert before.find(call) is not None
    assert after.find(call) is not None


@pytest.mark.parametrize(
    ("ticker", "spot", "near", "far"),
    [("F", 12.3, 50, 100), ("AMD", 150.0, 100, 500), ("TSLA", 280.0, 250, 1000), ("COST", 910.0, 500, 1000)],
)
def test_strike_increments_follow_the_price_level(ticker: str, spot: float, near: int, far: int) -> None:
    chain = _chain(ticker, spot, 0.4, THURSDAY)
    expiries = chain.expiries()
    assert _increments(chain, expiries[0]) == {near}
    assert _increments(chain, expiries[-1]) == {far}
    assert np.all(chain.strike_cents % near == 0)
    assert np.all(chain.strike_cents > 0)


def test_index_etfs_list_dollar_strikes() -> None:
    assert _increments(SPY, SPY.expiries()[0]) == {100}


def test_strike_range_covers_the_expected_move() -> None:
    for expiry in TSLA.expiries():
        strikes = TSLA.strike_cents[TSLA.rows(expiry, OptionRight.PUT)] / 100.0
        assert strikes.min() <= 250.0 * 0.9 + 10 and strikes.max() >= 250.0 * 1.1 - 10
    far = TSLA.strike_cents[TSLA.rows(TSLA.expiries()[-1], OptionRight.PUT)]
    near = TSLA.strike_cents[TSLA.rows(TSLA.expiries()[0], OptionRight.PUT)]
    assert far.max() - far.min() > 3 * (near.max() - near.min())  # wider for far expiries


def test_gen_acc_finds_40_to_50_delta_puts_on_friday() -> None:
    friday = TSLA.rows(date(2026, 4, 10), OptionRight.PUT)
    band = friday[(np.abs(TSLA.delta[friday]) >= 0.40) & (np.abs(TSLA.delta[friday]) <= 0.50)]
    assert band.size >= 1
    quote = TSLA.quote(int(band[-1]))
    # A7's liquidity guard: spread ≤ 5 % of mid, open interest ≥ 500, volume ≥ 100.
    assert quote.spread_cents <= 0.05 * float(quote.mid) * 100
    assert quote.open_interest >= 500 and quote.volume >= 100
    assert quote.contract.dte(THURSDAY.date()) == 1


def test_rev_and_com_bands_exist_on_the_weekly() -> None:
    friday = date(2026, 4, 10)
    puts = AAPL.rows(friday, OptionRight.PUT)
    calls = AAPL.rows(friday, OptionRight.CALL)
    assert np.any((np.abs(AAPL.delta[puts]) >= 0.30) & (np.abs(AAPL.delta[puts]) <= 0.40))
    assert np.any((AAPL.delta[calls] >= 0.20) & (AAPL.delta[calls] <= 0.25))
