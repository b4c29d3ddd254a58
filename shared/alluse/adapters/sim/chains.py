"""Option chains of the simulated market: listed expiries, strike grids, quotes, greeks, open interest.

A chain is priced at one instant from the underlying's spot and realised volatility:

- expiries: ``listed_expiries`` lists weeklies, monthlies and LEAPS from the NYSE sessions it is given;
- strikes: a grid per expiry, its increment set by the price level (wider for far expiries), spanning
  ± ``range_std_devs`` standard deviations of the expiry's move (at least ± ``range_min_fraction``);
- fair value and greeks: Black–Scholes–Merton on the implied-volatility surface of
  ``alluse.adapters.sim.volatility`` with time to expiry measured to the expiry's 16:00 ET close;
- bid / ask: fair value ± half a spread, each rounded to the nearest price on the tick grid (integer
  cents), so the mid stays within about half a tick of fair value; the spread is a fraction of value,
  wider for the wings and for very short expiries, and at least one tick; a far out-of-the-money bid
  may be 0;
- open interest and volume: peak near the money and near term, with deterministic per-contract
  noise derived from (seed, ticker, session date, contract): the same inputs always give the same chain.

Everything is vectorised over the whole chain (no Python loop per contract).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from datetime import date, datetime, time
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.special import ndtri

from alluse.adapters.sim.volatility import VolSurfaceSettings, atm_vol, iv_surface
from alluse.domain.errors import ValidationFailed
from alluse.domain.market import NEW_YORK, OptionChain
from alluse.domain.pricing import bs_price_greeks
from alluse.domain.ticks import TickRule

__all__ = [
    "ChainSettings",
    "StrikeIncrement",
    "StrikeTier",
    "generate_chain",
    "listed_expiries",
    "third_fridays",
    "years_to_close",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DateArray = npt.NDArray[np.datetime64]

EXPIRY_CLOSE = time(16, 0)
_SECONDS_PER_YEAR = 365.0 * 86_400.0
_U64 = np.uint64


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _whole_cents(value: float) -> float:
    if abs(value * 100 - round(value * 100)) > 1e-9:
        raise ValueError(f"strike increment {value} must be a whole number of cents")
    return value


class StrikeIncrement(_Model):
    """Distance between listed strikes, in dollars, for near and far expiries."""

    near: float = Field(gt=0, le=1000, description="Increment for expiries up to far_expiry_days out.")
    far: float = Field(gt=0, le=1000, description="Increment for expiries beyond far_expiry_days.")

    _cents_near = field_validator("near")(_whole_cents)
    _cents_far = field_validator("far")(_whole_cents)


class StrikeTier(StrikeIncrement):
    """Increments for underlyings priced below ``below`` dollars (None: every price)."""

    below: float | None = Field(default=None, gt=0, description="Upper price bound of the tier (None: unbounded).")


def _default_tiers() -> list[StrikeTier]:
    return [
        StrikeTier(below=25, near=0.5, far=1),
        StrikeTier(below=200, near=1, far=5),
        StrikeTier(below=500, near=2.5, far=10),
        StrikeTier(below=None, near=5, far=10),
    ]


def _index_etf_increments() -> dict[str, StrikeIncrement]:
    return {t: StrikeIncrement(near=1, far=5) for t in ("SPY", "QQQ", "IWM", "DIA")}


class ChainSettings(_Model):
    """How the simulated market lists and quotes options."""

    # Listed expiries
    weekly_count: int = Field(
        default=8, ge=1, le=52, description="Weekly expiries listed: the current week's and the next ones."
    )
    monthly_count: int = Field(
        default=12, ge=0, le=36, description="Monthly (third-Friday) expiries listed, the nearest first."
    )
    leaps_max_months: int = Field(
        default=24,
        ge=0,
        le=60,
        description="LEAPS: monthly expiries after the listed monthlies, up to this many months after as_of's month.",
    )
    leaps_january_only: bool = Field(
        default=False,
        description=(
            "LEAPS in January only (the exchanges' cycle). Off by default: every month out to leaps_max_months is"
            " listed, so A11's 12-24-month LEAPS always has an expiry inside its window."
        ),
    )
    # Strikes
    strike_tiers: list[StrikeTier] = Field(
        default_factory=_default_tiers,
        description="Strike increments by underlying price, ascending; the last tier has below = None.",
    )
    strike_increment_overrides: dict[str, StrikeIncrement] = Field(
        default_factory=_index_etf_increments, description="Per-ticker strike increments (index ETFs: $1)."
    )
    far_expiry_days: int = Field(
        default=60, ge=0, le=3650, description="Expiries more than this many calendar days out use the far increment."
    )
    range_std_devs: float = Field(
        default=3.0, gt=0, le=10, description="Strikes span ± this many standard deviations of the expiry's move."
    )
    range_min_fraction: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Strikes span at least ± this fraction of spot (listed strikes do not vanish after a"
        " 3×ATR move: the ATR protocol must be able to buy back what it sold).",
    )
    # Quotes
    spread_fraction: float = Field(
        default=0.015, ge=0, le=1, description="Bid-ask spread of a liquid at-the-money option, as a fraction of value."
    )
    wing_delta: float = Field(
        default=0.25, gt=0, le=0.5, description="Below this |delta| the relative spread widens (wings)."
    )
    wing_widening: float = Field(
        default=3.0, ge=0, le=100, description="Relative spread at delta 0 is (1 + this) × the at-the-money one."
    )
    short_expiry_widening: float = Field(
        default=1.0, ge=0, le=100, description="Extra relative spread at expiry: × (1 + this × e^(−days / short_days))."
    )
    short_expiry_days: float = Field(
        default=1.0, gt=0, le=365, description="Decay (calendar days) of the short-expiry spread widening."
    )
    min_spread_ticks: int = Field(default=1, ge=1, le=100, description="Narrowest spread, in ticks.")
    ticks: TickRule = Field(default_factory=TickRule, description="Option price grid (shared with the paper broker).")
    # Liquidity
    base_open_interest: float = Field(
        default=20_000, ge=0, description="Open interest of an at-the-money option of the nearest expiry (liquidity 1)."
    )
    liquidity: dict[str, float] = Field(
        default_factory=lambda: {"SPY": 5.0, "QQQ": 3.0, "IWM": 2.0, "TSLA": 3.0, "NVDA": 3.0, "AAPL": 2.0},
        description="Per-ticker multiplier of open interest and volume (default 1).",
    )
    oi_width_std_devs: float = Field(
        default=1.2, gt=0, le=20, description="Open interest falls off as a Gaussian of this width in std devs of move."
    )
    oi_term_days: float = Field(
        default=45, gt=0, le=3650, description="Open interest decays with expiry distance on this scale (days)."
    )
    oi_term_floor: float = Field(
        default=0.15, ge=0, le=1, description="Far-expiry open interest, as a fraction of the nearest's."
    )
    volume_ratio: float = Field(default=0.3, ge=0, le=100, description="Session volume of a near-term option / OI.")
    volume_term_days: float = Field(
        default=7, gt=0, le=3650, description="Volume concentrates in near expiries on this scale (days)."
    )
    volume_term_floor: float = Field(
        default=0.05, ge=0, le=1, description="Far-expiry volume ratio, as a fraction of the nearest's."
    )
    oi_noise: float = Field(default=0.35, ge=0, le=3, description="Lognormal noise (sigma) of open interest.")
    volume_noise: float = Field(default=0.6, ge=0, le=3, description="Lognormal noise (sigma) of volume.")
    # Pricing inputs
    dividend_yields: dict[str, float] = Field(
        default_factory=dict, description="Continuous dividend yield per ticker (default 0)."
    )
    surface: VolSurfaceSettings = Field(
        default_factory=VolSurfaceSettings, description="Implied-volatility surface and risk-free rate."
    )

    @field_validator("strike_tiers")
    @classmethod
    def _tiers_ascending(cls, tiers: list[StrikeTier]) -> list[StrikeTier]:
        if not tiers or tiers[-1].below is not None:
            raise ValueError("the last strike tier must have below = None (every higher price)")
        bounds = [t.below for t in tiers[:-1]]
        if any(b is None for b in bounds) or bounds != sorted(bounds):  # type: ignore[type-var]
            raise ValueError("strike tiers must be in ascending order of 'below'")
        return tiers

    def increment(self, ticker: str, spot: float) -> StrikeIncrement:
        """Strike increments (near, far) of one underlying at one price."""
        override = self.strike_increment_overrides.get(ticker)
        if override is not None:
            return override
        for tier in self.strike_tiers:
            if tier.below is None or spot < tier.below:
                return tier
        return self.strike_tiers[-1]  # unreachable: the last tier is unbounded


# --------------------------------------------------------------------------------------------------
# Expiries
# --------------------------------------------------------------------------------------------------


def third_fridays(months: npt.ArrayLike) -> DateArray:
    """Third Friday of each month (datetime64[M] in, datetime64[D] out)."""
    first = np.asarray(months, dtype="datetime64[M]").astype("datetime64[D]")
    weekday = (first.astype(np.int64) + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
    return np.asarray(first + ((4 - weekday) % 7 + 14).astype("timedelta64[D]"), dtype="datetime64[D]")


def listed_expiries(as_of_session: date, sessions: npt.ArrayLike, settings: ChainSettings) -> list[date]:
    """Expiries listed on ``as_of_session``, ascending, from NYSE sessions only (no calendar lookup).

    ``sessions``: sorted NYSE session dates (datetime64[D]); those before ``as_of_session`` are ignored.
    Past the last one given, every weekday is assumed to be a session.

    - weekly: the last session of each Monday–Friday week (Thursday when Friday is a holiday), for the
      current week (so a Thursday sees the next day's Friday expiry, 1 DTE) and the next ones:
      ``weekly_count`` in all;
    - monthly: the third Friday of the month, or the session before it when that Friday is a holiday
      (e.g. Good Friday, Juneteenth); the first ``monthly_count`` on or after as_of_session;
    - LEAPS: the monthly expiries after those, up to ``leaps_max_months`` months after as_of_session's
      month (January only when ``leaps_january_only``).
    """
    start = np.datetime64(as_of_session, "D")
    given = np.unique(np.asarray(sessions, dtype="datetime64[D]"))
    given = given[given >= start]
    start_month = start.astype("datetime64[M]")
    span = max(settings.leaps_max_months, settings.monthly_count) + 2  # months scanned
    horizon = (start_month + span).astype("datetime64[D]")
    last = given[-1] if given.size else start - 1
    if last < horizon:
        extra = np.arange(last + 1, horizon, dtype="datetime64[D]")
        given = np.concatenate([given, extra[np.is_busday(extra)]])

    week = (given.astype(np.int64) + 3) // 7  # Monday-based week number
    week_last = np.append(week[1:] != week[:-1], True)
    weekly = given[week_last][: settings.weekly_count]

    months = start_month + np.arange(span)
    fridays = third_fridays(months)
    pos = np.searchsorted(given, fridays, side="right") - 1
    found = pos >= 0
    monthly_all = given[pos[found]]
    monthly_months = months[found]
    keep = monthly_all >= start
    monthly_all, monthly_months = monthly_all[keep], monthly_months[keep]
    monthly = monthly_all[: settings.monthly_count]
    rest, rest_months = monthly_all[settings.monthly_count :], monthly_months[settings.monthly_count :]
    in_window = rest_months <= start_month + settings.leaps_max_months
    if settings.leaps_january_only:
        in_window &= rest_months.astype(np.int64) % 12 == 0  # datetime64[M] counts months from 1970-01
    leaps = rest[in_window]

    listed = np.unique(np.concatenate([weekly, monthly, leaps]))
    return [d.astype(date) for d in listed]


# --------------------------------------------------------------------------------------------------
# Chains
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _close_timestamp(day: date) -> float:
    return datetime.combine(day, EXPIRY_CLOSE, NEW_YORK).timestamp()


def years_to_close(as_of: datetime, expiry: date) -> float:
    """Calendar years (365-day) from ``as_of`` to the expiry's 16:00 ET close (negative once past it)."""
    return (_close_timestamp(expiry) - as_of.timestamp()) / _SECONDS_PER_YEAR


def _mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64 finaliser: a well-mixed 64-bit hash of each element (wrapping uint64 arithmetic)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _normal_noise(key: npt.NDArray[np.uint64], salt: int) -> FloatArray:
    """Standard normal draws, one per key, fully determined by (key, salt)."""
    h = _mix64(key ^ _U64(salt & 0xFFFFFFFFFFFFFFFF))
    u = ((h >> _U64(11)).astype(np.float64) + 0.5) * 2.0**-53  # in (0, 1)
    return np.asarray(ndtri(u), dtype=np.float64)


def _empty_chain(ticker: str, as_of: datetime, spot: float) -> OptionChain:
    f = np.empty(0, dtype=np.float64)
    i = np.empty(0, dtype=np.int64)
    return OptionChain(
        ticker,
        as_of,
        spot,
        np.empty(0, dtype="datetime64[D]"),
        i,
        np.empty(0, dtype=np.bool_),
        i,
        i,
        f,
        f,
        f,
        f,
        f,
        i,
        i,
    )


def generate_chain(
    ticker: str,
    as_of: datetime,
    spot: float,
    realised_vol: float,
    expiries: Sequence[date] | npt.NDArray[np.datetime64],
    settings: ChainSettings,
    seed: int,
    *,
    long_run_vol: float | None = None,
) -> OptionChain:
    """The option chain of ``ticker`` at ``as_of`` (timezone-aware), all expiries and strikes priced at once.

    ``realised_vol`` sets the short-dated implied-volatility level, ``long_run_vol`` (default: the same) the
    level long-dated IV reverts to. Expiries before as_of's (New York) date are dropped; time to expiry runs
    to the expiry's 16:00 ET close, so a 0-DTE option still has time value during the session.
    Rows: by expiry, then puts before calls, then by strike.
    """
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValidationFailed("as_of must be timezone-aware (America/New_York)", field="as_of")
    if not (math.isfinite(spot) and spot > 0):
        raise ValidationFailed(f"spot must be a positive price (got {spot})", field="spot")
    if not (math.isfinite(realised_vol) and realised_vol > 0):
        raise ValidationFailed(f"realised volatility must be positive (got {realised_vol})", field="realised_vol")
    lr_vol = realised_vol if long_run_vol is None else long_run_vol
    if not (math.isfinite(lr_vol) and lr_vol > 0):
        raise ValidationFailed(f"long-run volatility must be positive (got {lr_vol})", field="long_run_vol")
    if seed < 0:
        raise ValidationFailed(f"seed must be non-negative (got {seed})", field="seed")

    session = as_of.astimezone(NEW_YORK).date()
    exp = np.unique(np.asarray(expiries, dtype="datetime64[D]"))
    exp = exp[exp >= np.datetime64(session, "D")]
    if exp.size == 0:
        return _empty_chain(ticker, as_of, spot)

    surface = settings.surface
    rate = surface.risk_free_rate
    q = settings.dividend_yields.get(ticker, 0.0)

    # Per expiry: time, ATM vol, strike grid.
    now = as_of.timestamp()
    t_exp = np.maximum(
        (np.fromiter((_close_timestamp(d) for d in exp.tolist()), np.float64, exp.size) - now) / _SECONDS_PER_YEAR,
        0.0,
    )
    atm = np.clip(atm_vol(realised_vol, lr_vol, t_exp, surface), surface.iv_floor, surface.iv_cap)
    half_range = spot * np.maximum(settings.range_std_devs * atm * np.sqrt(t_exp), settings.range_min_fraction)
    # The tier of the range's lowest price: a strike listed before a rise across a tier boundary stays listed.
    steps = settings.increment(ticker, spot * (1 - settings.range_min_fraction))
    days_out = (exp - np.datetime64(session, "D")).astype(np.int64)
    inc = np.where(days_out > settings.far_expiry_days, round(steps.far * 100), round(steps.near * 100))
    spot_c = spot * 100.0
    lo = np.maximum(np.ceil((spot_c - half_range * 100.0) / inc), 1).astype(np.int64) * inc
    hi = np.floor((spot_c + half_range * 100.0) / inc).astype(np.int64) * inc
    hi = np.maximum(hi, lo)
    n_strikes = (hi - lo) // inc + 1

    # Rows: per expiry, n puts then n calls.
    per_exp = 2 * n_strikes
    total = int(per_exp.sum())
    e_idx = np.repeat(np.arange(exp.size), per_exp)
    pos = np.arange(total) - np.repeat(np.cumsum(per_exp) - per_exp, per_exp)
    n_row = n_strikes[e_idx]
    is_call = pos >= n_row
    strike_c = lo[e_idx] + (pos - np.where(is_call, n_row, 0)) * inc[e_idx]
    strike = strike_c / 100.0
    t = t_exp[e_idx]

    log_m = np.log(strike / spot) - (rate - q) * t  # ln(K / F)
    iv = iv_surface(realised_vol, lr_vol, log_m, t, surface)
    fair, greeks = bs_price_greeks(spot, strike, t, iv, rate, q, is_call)

    # Quotes: relative spread widened for the wings and very short expiries, at least min_spread_ticks.
    ticks = settings.ticks
    fair_c = fair * 100.0
    abs_delta = np.abs(greeks.delta)
    wing = 1.0 + settings.wing_widening * np.maximum(settings.wing_delta - abs_delta, 0.0) / settings.wing_delta
    days = t * 365.0
    short = 1.0 + settings.short_expiry_widening * np.exp(-days / settings.short_expiry_days)
    tick_at_fair = ticks.option_ticks_cents(ticker, fair_c)
    spread_c = np.maximum(fair_c * settings.spread_fraction * wing * short, settings.min_spread_ticks * tick_at_fair)
    bid = np.maximum(ticks.round_options(ticker, fair_c - 0.5 * spread_c), 0)
    ask = ticks.round_options(ticker, fair_c + 0.5 * spread_c)
    ask = np.maximum(np.maximum(ask, bid + ticks.option_ticks_cents(ticker, bid)), ticks.option_small_tick_cents)

    # Open interest and volume: near the money, near term, per-contract noise fixed for the session.
    sd_unit = atm[e_idx] * np.sqrt(np.maximum(t, 1.0 / 365.0))
    z = np.log(strike / spot) / sd_unit
    liq = settings.liquidity.get(ticker, 1.0)
    oi_term = settings.oi_term_floor + (1.0 - settings.oi_term_floor) * np.exp(-days / settings.oi_term_days)
    vol_term = settings.volume_term_floor + (1.0 - settings.volume_term_floor) * np.exp(
        -days / settings.volume_term_days
    )
    shape = np.exp(-0.5 * (z / settings.oi_width_std_devs) ** 2)
    day_key = (seed * 0x9E3779B97F4A7C15 + zlib.crc32(ticker.encode()) * 0x100000001B3 + session.toordinal()) & (
        2**64 - 1
    )
    key = (
        (exp.astype(np.int64)[e_idx].astype(np.uint64) << _U64(40))
        ^ (strike_c.astype(np.uint64) << _U64(1))
        ^ is_call.astype(np.uint64)
    )
    key = _mix64(key ^ _U64(day_key))
    oi_sigma, vol_sigma = settings.oi_noise, settings.volume_noise
    oi_noise = np.exp(oi_sigma * _normal_noise(key, 0x0123) - 0.5 * oi_sigma * oi_sigma)
    vol_noise = np.exp(vol_sigma * _normal_noise(key, 0x4567) - 0.5 * vol_sigma * vol_sigma)
    oi = np.rint(settings.base_open_interest * liq * shape * oi_term * oi_noise).astype(np.int64)
    volume = np.rint(oi * settings.volume_ratio * vol_term * vol_noise).astype(np.int64)

    return OptionChain(
        underlying=ticker,
        as_of=as_of,
        spot=spot,
        expiry=exp[e_idx],
        strike_cents=strike_c.astype(np.int64),
        is_call=is_call,
        bid_cents=bid.astype(np.int64),
        ask_cents=ask.astype(np.int64),
        iv=iv,
        delta=greeks.delta,
        gamma=greeks.gamma,
        theta=greeks.theta,
        vega=greeks.vega,
        open_interest=oi,
        volume=volume,
    )
