"""A seeded market model: daily and intraday bars of the underlyings, for the simulated world (§4).

The model, per session d and intraday bar k (log prices):

- one index factor (the `index_ticker`, SPY by default) with GARCH(1,1) daily variance h_d, an overnight
  gap carrying `overnight_variance_share` of it and intraday bars carrying the rest along a U-shaped
  profile; a weekly regime (UP / DOWN / SIDEWAYS, a Markov chain whose long-run shares are the configured
  ones) adds a drift to the factor; rare Poisson jumps land in the overnight gap;
- every other ticker: beta × the factor's moves + idiosyncratic noise (scaled with the factor's current
  volatility, so that calm and stormy weeks are shared) + its own overnight jumps (earnings-like). The
  idiosyncratic variance is what remains of the ticker's annual volatility after beta and jumps;
- each bar's high and low are drawn from the Brownian-bridge extremes of that bar, so OHLC is consistent
  by construction; daily bars are the aggregate of the session's intraday bars;
- volume: a per-ticker daily level, noisier and larger on big moves, spread over the session along a
  U-shaped profile (integers; the daily volume is the sum of the bars).

Prices are float64 rounded to cents (at least $0.01). Intraday times are America/New_York wall clock as
naive datetime64[m] (the bar's start: 09:30, 09:45, …). Everything is vectorised numpy; each ticker draws
from its own PCG64 stream derived from (seed, ticker), so adding a ticker does not change the others.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Final, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alluse.adapters.sim.calendar import NyseCalendar
from alluse.application.market_ports import TradingCalendar
from alluse.domain.config import Ticker
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.market import DailyBars, DateArray, FloatArray, IntArray, IntradayBars

__all__ = [
    "ALLOWED_INTERVALS",
    "DEFAULT_TICKERS",
    "GarchSettings",
    "IntradayTable",
    "MarketModel",
    "MarketModelSettings",
    "RegimeSettings",
    "SimulatedHistory",
    "TickerModel",
    "WeekRegime",
    "intraday_from_daily",
    "intraday_table_from_daily",
]

TRADING_DAYS: Final = 252
REGULAR_SESSION_MINUTES: Final = 390
ALLOWED_INTERVALS: Final = (1, 2, 3, 5, 6, 10, 15, 30)  # divide both 390 (regular) and 210 (half day) minutes
_Bool2D = npt.NDArray[np.bool_]


class WeekRegime(StrEnum):
    """The market's direction for one week (drives the index factor's drift)."""

    UP = "UP"
    DOWN = "DOWN"
    SIDEWAYS = "SIDEWAYS"


_REGIME_ORDER: Final = (WeekRegime.UP, WeekRegime.DOWN, WeekRegime.SIDEWAYS)


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TickerModel(_Section):
    """Statistical description of one underlying (defaults per ticker: DEFAULT_TICKERS)."""

    start_price: Decimal = Field(
        gt=0, le=1_000_000, decimal_places=2, description="Close before the first simulated session, in USD."
    )
    annual_volatility: float = Field(
        gt=0, le=3, description="Target annualised volatility of daily log returns, all sources included (0.25 = 25 %)."
    )
    beta: float = Field(
        default=1.0, ge=-3, le=5, description="Sensitivity to the index factor's log returns (default 1.0)."
    )
    jump_intensity: float = Field(
        default=0.0, ge=0, le=52, description="Expected overnight jumps per year, e.g. earnings (default 0)."
    )
    jump_mean: float = Field(default=0.0, ge=-0.5, le=0.5, description="Mean jump size as a log return (default 0).")
    jump_stdev: float = Field(default=0.0, ge=0, le=1, description="Stdev of the jump size, log return (default 0).")
    daily_volume: int = Field(
        default=10_000_000, gt=0, le=10**11, description="Typical shares traded in a regular session (default 10M)."
    )

    @property
    def jump_variance(self) -> float:
        """Annual variance contributed by jumps (compound Poisson: λ·E[J²])."""
        return self.jump_intensity * (self.jump_mean**2 + self.jump_stdev**2)


def _tm(
    price: str, vol: float, beta: float, volume: int, jumps: float = 0.0, mean: float = 0.0, sd: float = 0.0
) -> TickerModel:
    return TickerModel(
        start_price=Decimal(price),
        annual_volatility=vol,
        beta=beta,
        jump_intensity=jumps,
        jump_mean=mean,
        jump_stdev=sd,
        daily_volume=volume,
    )


#: Defaults: Mag-6 with four earnings jumps a year, and the index/context ETFs (SPY is the factor).
DEFAULT_TICKERS: Final[Mapping[str, TickerModel]] = {
    "TSLA": _tm("250", 0.60, 2.0, 90_000_000, 4, 0.0, 0.08),
    "NVDA": _tm("140", 0.50, 1.8, 250_000_000, 4, 0.0, 0.07),
    "AAPL": _tm("230", 0.25, 1.1, 50_000_000, 4, 0.0, 0.035),
    "MSFT": _tm("420", 0.25, 1.0, 20_000_000, 4, 0.0, 0.035),
    "AMZN": _tm("200", 0.32, 1.2, 40_000_000, 4, 0.0, 0.05),
    "GOOG": _tm("170", 0.30, 1.1, 20_000_000, 4, 0.0, 0.05),
    "SPY": _tm("590", 0.15, 1.0, 60_000_000, 0.5, -0.015, 0.015),
    "QQQ": _tm("510", 0.20, 1.2, 40_000_000),
    "IWM": _tm("230", 0.22, 1.1, 30_000_000),
    "DIA": _tm("440", 0.14, 0.9, 3_000_000),
}


class GarchSettings(_Section):
    """GARCH(1,1) of the index factor's daily variance: h[t+1] = ω + α·ε[t]² + β·h[t]; ω follows from the
    index's annual volatility (long-run variance = ω / (1 − α − β))."""

    alpha: float = Field(default=0.08, ge=0, lt=1, description="Reaction to yesterday's shock (default 0.08).")
    beta: float = Field(default=0.90, ge=0, lt=1, description="Persistence of variance (default 0.90).")

    @model_validator(mode="after")
    def _stationary(self) -> Self:
        if self.alpha + self.beta >= 1:
            raise ValueError(f"alpha + beta must be below 1 (got {self.alpha + self.beta})")
        return self


class RegimeSettings(_Section):
    """Week regimes of the index factor: a Markov chain that keeps last week's regime with probability
    `persistence` and otherwise draws afresh from the shares (so the long-run shares are exactly these)."""

    up_share: float = Field(default=0.52, ge=0, le=1, description="Long-run share of UP weeks (default 0.52).")
    down_share: float = Field(default=0.28, ge=0, le=1, description="Long-run share of DOWN weeks (default 0.28).")
    sideways_share: float = Field(
        default=0.20, ge=0, le=1, description="Long-run share of SIDEWAYS weeks (default 0.20)."
    )
    persistence: float = Field(
        default=0.25, ge=0, lt=1, description="Probability of keeping last week's regime before redrawing (0.25)."
    )
    up_weekly_drift: float = Field(
        default=0.009, ge=-0.2, le=0.2, description="Index log drift over an UP week (default +0.9 %)."
    )
    down_weekly_drift: float = Field(
        default=-0.011, ge=-0.2, le=0.2, description="Index log drift over a DOWN week (default −1.1 %)."
    )
    sideways_weekly_drift: float = Field(
        default=0.0, ge=-0.2, le=0.2, description="Index log drift over a SIDEWAYS week (default 0)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        total = self.up_share + self.down_share + self.sideways_share
        if abs(total - 1) > 1e-9:
            raise ValueError(f"regime shares must sum to 1 (got {total})")
        if not self.down_weekly_drift <= self.sideways_weekly_drift <= self.up_weekly_drift:
            raise ValueError("weekly drifts must be ordered: down ≤ sideways ≤ up")
        return self

    @property
    def shares(self) -> tuple[float, float, float]:
        """(up, down, sideways), in WeekRegime order."""
        return (self.up_share, self.down_share, self.sideways_share)

    @property
    def drifts(self) -> tuple[float, float, float]:
        return (self.up_weekly_drift, self.down_weekly_drift, self.sideways_weekly_drift)

    @property
    def daily_drift_variance(self) -> float:
        """Annualised variance the regime drifts add to daily returns (drift spread over 5 sessions)."""
        shares, drifts = np.array(self.shares), np.array(self.drifts) / 5
        mean = float(shares @ drifts)
        return TRADING_DAYS * (float(shares @ drifts**2) - mean**2)


class MarketModelSettings(_Section):
    """The whole simulated market (defaults: DEFAULT_TICKERS, SPY as the index factor, 15-minute bars)."""

    tickers: dict[Ticker, TickerModel] = Field(
        default_factory=lambda: dict(DEFAULT_TICKERS),
        description="Simulated underlyings by ticker (default: Mag-6 plus SPY, QQQ, IWM, DIA).",
    )
    index_ticker: Ticker = Field(
        default="SPY", description="The index factor; its own beta is ignored (it is the factor). Default SPY."
    )
    garch: GarchSettings = Field(default_factory=GarchSettings, description="Volatility clustering of the index.")
    regimes: RegimeSettings = Field(default_factory=RegimeSettings, description="Week regimes and their drifts.")
    intraday_interval_minutes: int = Field(
        default=15, description=f"Intraday bar length in minutes, one of {ALLOWED_INTERVALS} (default 15)."
    )
    overnight_variance_share: float = Field(
        default=0.15, ge=0, lt=1, description="Share of a day's diffusion variance in the overnight gap (0.15)."
    )
    intraday_variance_smile: float = Field(
        default=1.5,
        ge=0,
        le=20,
        description="U-shape of intraday variance: bar weight ∝ 1 + smile·(2τ − 1)², τ = time of day 0..1 (1.5).",
    )
    min_idiosyncratic_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Floor of a ticker's idiosyncratic variance, as a share of its total variance (0.05).",
    )
    volume_noise: float = Field(
        default=0.25, ge=0, le=2, description="Lognormal stdev of the daily volume around its level (0.25)."
    )
    volume_move_sensitivity: float = Field(
        default=0.5, ge=0, le=5, description="Extra volume per daily move of one stdev beyond the usual (0.5)."
    )
    volume_smile: float = Field(
        default=3.0, ge=0, le=50, description="U-shape of intraday volume, as intraday_variance_smile (3.0)."
    )

    @field_validator("tickers")
    @classmethod
    def _some_tickers(cls, value: dict[str, TickerModel]) -> dict[str, TickerModel]:
        if not value:
            raise ValueError("at least one ticker is required")
        return value

    @field_validator("intraday_interval_minutes")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value not in ALLOWED_INTERVALS:
            raise ValueError(f"{value} minutes does not divide the NYSE sessions; use one of {ALLOWED_INTERVALS}")
        return value

    @model_validator(mode="after")
    def _index_known(self) -> Self:
        if self.index_ticker not in self.tickers:
            raise ValueError(f"index_ticker {self.index_ticker} is not one of the tickers")
        return self


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def _frozen(*arrays: npt.NDArray[np.generic]) -> None:
    for arr in arrays:
        arr.setflags(write=False)


@dataclass(frozen=True)
class IntradayTable:
    """All intraday bars of one ticker, concatenated session after session; session i's bars are
    rows offsets[i]:offsets[i+1] (sessions as in the ticker's DailyBars.dates)."""

    times: DateArray  # datetime64[m], America/New_York wall clock, bar start
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: IntArray
    offsets: IntArray

    @classmethod
    def from_sessions(cls, bars: Sequence[IntradayBars]) -> IntradayTable:
        """Concatenate per-session bars (one entry per session, in session order)."""
        counts = np.array([len(b) for b in bars], dtype=np.int64)
        offsets = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(counts)])

        def floats(arrays: Iterable[FloatArray]) -> FloatArray:
            items = list(arrays)
            return np.concatenate(items).astype(np.float64) if items else np.empty(0, dtype=np.float64)

        times = [b.times for b in bars]
        volumes = [b.volume for b in bars]
        table = cls(
            times=np.concatenate(times).astype("datetime64[m]") if times else np.empty(0, "datetime64[m]"),
            open=floats(b.open for b in bars),
            high=floats(b.high for b in bars),
            low=floats(b.low for b in bars),
            close=floats(b.close for b in bars),
            volume=np.concatenate(volumes).astype(np.int64) if volumes else np.empty(0, np.int64),
            offsets=offsets,
        )
        table.freeze()
        return table

    def freeze(self) -> None:
        _frozen(self.times, self.open, self.high, self.low, self.close, self.volume, self.offsets)

    def session(self, ticker: str, index: int, session: date) -> IntradayBars:
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        return IntradayBars(
            ticker,
            session,
            self.times[lo:hi],
            self.open[lo:hi],
            self.high[lo:hi],
            self.low[lo:hi],
            self.close[lo:hi],
            self.volume[lo:hi],
        )


class SimulatedHistory:
    """Bars of every ticker over a range of sessions: what the generator (or the CSV loader) produced.

    `daily(ticker)` is the whole daily history; `intraday(ticker, session)` one session's bars; both
    raise MarketDataGap for an unknown ticker or a day without a bar. `week_regimes()` lists the
    generator's week labels (empty for loaded data).
    """

    def __init__(
        self,
        daily: Mapping[str, DailyBars],
        intraday: Mapping[str, IntradayTable],
        *,
        interval_minutes: int,
        regime_weeks: DateArray | None = None,
        regime_labels: Sequence[WeekRegime] = (),
    ) -> None:
        if set(daily) != set(intraday):
            raise ValidationFailed("daily and intraday bars must cover the same tickers", field="intraday")
        self._daily = dict(daily)
        self._intraday = dict(intraday)
        self.interval_minutes = interval_minutes
        self._regime_weeks = (
            np.empty(0, dtype="datetime64[D]") if regime_weeks is None else np.asarray(regime_weeks, "datetime64[D]")
        )
        self._regime_labels = tuple(regime_labels)
        if self._regime_weeks.shape[0] != len(self._regime_labels):
            raise ValidationFailed("one regime label per week is required", field="regime_labels")

    @property
    def tickers(self) -> tuple[str, ...]:
        return tuple(self._daily)

    def _known(self, ticker: str) -> DailyBars:
        bars = self._daily.get(ticker)
        if bars is None:
            raise MarketDataGap(f"no bars for ticker {ticker!r} (known: {', '.join(self._daily)})", field="ticker")
        return bars

    def daily(self, ticker: str) -> DailyBars:
        return self._known(ticker)

    def intraday_table(self, ticker: str) -> IntradayTable:
        """Every intraday bar of `ticker` at once (session i of daily(ticker) is offsets[i]:offsets[i+1])."""
        self._known(ticker)
        return self._intraday[ticker]

    def intraday(self, ticker: str, session: date) -> IntradayBars:
        bars = self._known(ticker)
        d = np.datetime64(session.isoformat(), "D")
        idx = int(np.searchsorted(bars.dates, d))
        if idx >= len(bars) or bars.dates[idx] != d:
            raise MarketDataGap(f"no {ticker} bars on {session} ({session:%A}): not a session in this history")
        return self._intraday[ticker].session(ticker, idx, session)

    def week_regimes(self) -> list[tuple[date, WeekRegime]]:
        """(Monday of the week, regime) for every week the generator drew, oldest first."""
        return [(d.item(), label) for d, label in zip(self._regime_weeks, self._regime_labels, strict=True)]

    @property
    def regime_weeks(self) -> DateArray:
        """Mondays of the weeks in `regime_labels` (datetime64[D])."""
        return self._regime_weeks

    @property
    def regime_labels(self) -> tuple[WeekRegime, ...]:
        return self._regime_labels


# --------------------------------------------------------------------------------------------------
# Session grid and profiles
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    sessions: DateArray  # datetime64[D]
    opens: DateArray  # datetime64[m] wall clock
    minutes: IntArray  # session length in minutes


def _grid(calendar: TradingCalendar, start: date, end: date) -> _Grid:
    if isinstance(calendar, NyseCalendar):
        sessions, opens, closes = calendar.session_times(start, end)
    else:
        days = calendar.sessions_between(start, end)
        sessions = np.array([d.isoformat() for d in days], dtype="datetime64[D]")
        opens = np.array([calendar.open_at(d).replace(tzinfo=None) for d in days], dtype="datetime64[m]")
        closes = np.array([calendar.close_at(d).replace(tzinfo=None) for d in days], dtype="datetime64[m]")
    return _Grid(sessions, opens, (closes - opens).astype(np.int64))


def _grid_for(calendar: TradingCalendar, dates: DateArray) -> _Grid:
    """The grid of exactly these dates (each must be a session)."""
    if dates.size == 0:
        return _Grid(dates, np.empty(0, "datetime64[m]"), np.empty(0, np.int64))
    first, last = dates[0].item(), dates[-1].item()
    assert isinstance(first, date) and isinstance(last, date)
    full = _grid(calendar, first, last)
    if full.sessions.size == 0:
        bad = np.ones(dates.shape, dtype=bool)
        idx_c = np.zeros(dates.shape, dtype=np.intp)
    else:
        idx_c = np.minimum(np.searchsorted(full.sessions, dates), full.sessions.size - 1)
        bad = full.sessions[idx_c] != dates
    if bool(bad.any()):
        missing = ", ".join(str(d) for d in dates[bad][:5])
        raise MarketDataGap(f"not NYSE sessions: {missing}", field="dates")
    return _Grid(full.sessions[idx_c], full.opens[idx_c], full.minutes[idx_c])


def _bar_counts(grid: _Grid, interval: int) -> IntArray:
    return np.asarray(-(-grid.minutes // interval), dtype=np.int64)


def _profile(n_regular: int, smile: float, max_bars: int) -> FloatArray:
    """U-shaped weights per bar position, summing to 1 over a regular session (later positions reuse the
    regular ones; half days cover the first positions only)."""
    tau = (np.arange(n_regular) + 0.5) / n_regular
    w = 1.0 + smile * (2 * tau - 1) ** 2
    w /= w.sum()
    if max_bars > n_regular:
        w = np.concatenate([w, np.full(max_bars - n_regular, w[-1])])
    return w[:max_bars]


def _times(grid: _Grid, valid: _Bool2D, interval: int) -> DateArray:
    steps = np.arange(valid.shape[1], dtype=np.int64) * interval
    times: DateArray = grid.opens[:, None] + steps[None, :].astype("timedelta64[m]")
    return times[valid]


def _cents(values: FloatArray) -> FloatArray:
    return np.maximum(np.round(values, 2), 0.01)


def _aggregate(
    ticker: str,
    grid: _Grid,
    valid: _Bool2D,
    o: FloatArray,
    h: FloatArray,
    lo: FloatArray,
    c: FloatArray,
    v: IntArray,
    interval: int,
) -> tuple[DailyBars, IntradayTable]:
    """Daily bars as the aggregate of the (days × bars) intraday arrays, plus the flat intraday table."""
    n = valid.sum(axis=1)
    last = n - 1
    rows = np.arange(valid.shape[0])
    daily = DailyBars(
        ticker,
        grid.sessions.copy(),
        o[:, 0].copy(),
        np.where(valid, h, -np.inf).max(axis=1),
        np.where(valid, lo, np.inf).min(axis=1),
        c[rows, last].copy(),
        np.where(valid, v, 0).sum(axis=1).astype(np.int64),
    )
    _frozen(daily.dates, daily.open, daily.high, daily.low, daily.close, daily.volume)
    table = IntradayTable(
        times=_times(grid, valid, interval),
        open=o[valid],
        high=h[valid],
        low=lo[valid],
        close=c[valid],
        volume=v[valid].astype(np.int64),
        offsets=np.concatenate([np.zeros(1, np.int64), np.cumsum(n)]).astype(np.int64),
    )
    table.freeze()
    return daily, table


def _split_volume(total: FloatArray, weights: FloatArray, valid: _Bool2D) -> IntArray:
    """Integer bar volumes summing exactly to round(total) per day; the remainder goes to the last bar."""
    w = np.where(valid, weights, 0.0)
    w = w / w.sum(axis=1, keepdims=True)
    day_total = np.round(total).astype(np.int64)
    bars = np.floor(day_total[:, None] * w).astype(np.int64)
    rest = day_total - bars.sum(axis=1)
    last = valid.sum(axis=1) - 1
    bars[np.arange(bars.shape[0]), last] += rest
    result: IntArray = bars
    return result


# --------------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------------


def _ticker_key(ticker: str) -> int:
    return int.from_bytes(hashlib.blake2b(ticker.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class _Factor:
    gap: FloatArray  # (days,) log move overnight
    bars: FloatArray  # (days, bars) log move per bar
    variance: FloatArray  # (days,) GARCH daily diffusion variance h
    long_run: float  # unconditional daily h
    weeks: DateArray  # Mondays
    labels: tuple[WeekRegime, ...]


class MarketModel:
    """Seeded generator of a SimulatedHistory. Same settings + seed + range → identical arrays."""

    def __init__(self, settings: MarketModelSettings, seed: int, calendar: TradingCalendar) -> None:
        if seed < 0:
            raise ValidationFailed(f"seed {seed} must be zero or positive", field="seed")
        self.settings = settings
        self.seed = seed
        self.calendar = calendar

    def _rng(self, key: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(key,))))

    def generate(self, start: date, end: date) -> SimulatedHistory:
        """Bars of every configured ticker for every session from `start` to `end` (both included)."""
        s = self.settings
        interval = s.intraday_interval_minutes
        grid = _grid(self.calendar, start, end)
        if grid.sessions.size == 0:
            raise ValidationFailed(f"no NYSE session between {start} and {end}", field="start")
        counts = _bar_counts(grid, interval)
        max_bars = int(counts.max())
        valid = np.arange(max_bars)[None, :] < counts[:, None]
        n_regular = REGULAR_SESSION_MINUTES // interval
        weights = _profile(n_regular, s.intraday_variance_smile, max_bars) * (1 - s.overnight_variance_share)
        w2d = np.where(valid, weights[None, :], 0.0)
        vol_profile = _profile(n_regular, s.volume_smile, max_bars)

        factor = self._factor(grid, w2d, valid, n_regular)
        daily: dict[str, DailyBars] = {}
        intraday: dict[str, IntradayTable] = {}
        for ticker, model in s.tickers.items():
            daily[ticker], intraday[ticker] = self._ticker(
                ticker, model, grid, valid, w2d, vol_profile, factor, interval
            )
        return SimulatedHistory(
            daily, intraday, interval_minutes=interval, regime_weeks=factor.weeks, regime_labels=factor.labels
        )

    def _factor(self, grid: _Grid, w2d: FloatArray, valid: _Bool2D, n_regular: int) -> _Factor:
        s = self.settings
        index = s.tickers[s.index_ticker]
        rng = self._rng(0)
        n_days, max_bars = w2d.shape
        g = s.overnight_variance_share

        # Week regimes: a Markov chain over the ISO weeks of the range.
        day_numbers = grid.sessions.astype(np.int64)
        mondays = day_numbers - (day_numbers + 3) % 7
        weeks, week_of_day = np.unique(mondays, return_inverse=True)
        shares = np.array(s.regimes.shares)
        keep = rng.random(weeks.size) < s.regimes.persistence
        fresh = rng.choice(3, size=weeks.size, p=shares / shares.sum())
        labels = fresh.copy()
        for i in range(1, weeks.size):
            if keep[i]:
                labels[i] = labels[i - 1]
        day_drift = np.array(s.regimes.drifts)[labels][week_of_day] / 5

        # GARCH(1,1) on the daily diffusion shock; its long-run variance leaves room for drifts and jumps.
        annual = index.annual_volatility**2
        diffusion = max(annual - s.regimes.daily_drift_variance - index.jump_variance, 0.25 * annual)
        long_run = diffusion / TRADING_DAYS
        omega = long_run * (1 - s.garch.alpha - s.garch.beta)
        z_gap = rng.standard_normal(n_days)
        z_bars = rng.standard_normal((n_days, max_bars))
        shock = math.sqrt(g) * z_gap + (np.sqrt(w2d) * z_bars).sum(axis=1)
        h = np.empty(n_days)
        level = long_run
        alpha, beta = s.garch.alpha, s.garch.beta
        for t, unit in enumerate(shock.tolist()):
            h[t] = level
            level = omega + alpha * level * unit * unit + beta * level

        jumps = self._jumps(rng, index, n_days)
        sd = np.sqrt(h)
        gap = sd * math.sqrt(g) * z_gap + jumps
        bars = sd[:, None] * np.sqrt(w2d) * z_bars + np.where(valid, (day_drift / n_regular)[:, None], 0.0)
        regimes = tuple(_REGIME_ORDER[int(i)] for i in labels)
        return _Factor(gap, bars, h, long_run, weeks.astype("datetime64[D]"), regimes)

    @staticmethod
    def _jumps(rng: np.random.Generator, model: TickerModel, n_days: int) -> FloatArray:
        counts = rng.poisson(model.jump_intensity / TRADING_DAYS, n_days)
        noise = rng.standard_normal(n_days)
        return counts * model.jump_mean + np.sqrt(counts) * model.jump_stdev * noise

    def _ticker(
        self,
        ticker: str,
        model: TickerModel,
        grid: _Grid,
        valid: _Bool2D,
        w2d: FloatArray,
        vol_profile: FloatArray,
        factor: _Factor,
        interval: int,
    ) -> tuple[DailyBars, IntradayTable]:
        s = self.settings
        rng = self._rng(_ticker_key(ticker))
        n_days, max_bars = w2d.shape
        g = s.overnight_variance_share
        if ticker == s.index_ticker:
            gap, inc = factor.gap, factor.bars
            bar_var = factor.variance[:, None] * w2d
        else:
            total = model.annual_volatility**2
            systematic = model.beta**2 * s.tickers[s.index_ticker].annual_volatility ** 2
            idio = max(total - systematic - model.jump_variance, s.min_idiosyncratic_share * total)
            # Idiosyncratic volatility breathes with the market's: scaled by sqrt(h / long-run h).
            scale = math.sqrt(idio / TRADING_DAYS) * np.sqrt(factor.variance / factor.long_run)
            z_gap = rng.standard_normal(n_days)
            z_bars = rng.standard_normal((n_days, max_bars))
            gap = model.beta * factor.gap + scale * math.sqrt(g) * z_gap + self._jumps(rng, model, n_days)
            inc = model.beta * factor.bars + scale[:, None] * np.sqrt(w2d) * z_bars
            bar_var = (model.beta**2 * factor.variance + scale**2)[:, None] * w2d

        # Log price path: previous close → gap → bars.
        day_move = gap + inc.sum(axis=1)
        closes_log = math.log(float(model.start_price)) + np.cumsum(day_move)
        prev_close = np.concatenate([[math.log(float(model.start_price))], closes_log[:-1]])
        bar_close = (prev_close + gap)[:, None] + np.cumsum(inc, axis=1)
        bar_open = np.concatenate([(prev_close + gap)[:, None], bar_close[:, :-1]], axis=1)

        # Brownian-bridge extremes of each bar given its move x and variance s².
        u = 1.0 - rng.random((2, n_days, max_bars))  # in (0, 1]
        spread = -2.0 * bar_var * np.log(u)
        top = 0.5 * (inc + np.sqrt(inc**2 + spread[0]))
        bottom = 0.5 * (inc - np.sqrt(inc**2 + spread[1]))
        o = _cents(np.exp(bar_open))
        c = _cents(np.exp(bar_close))
        h = np.maximum(_cents(np.exp(bar_open + top)), np.maximum(o, c))
        lo = np.minimum(_cents(np.exp(bar_open + bottom)), np.minimum(o, c))

        # Volume: level × lognormal noise × (more on big moves) × the session's share of a regular day.
        sigma_day = model.annual_volatility / math.sqrt(TRADING_DAYS)
        surprise = np.abs(day_move) / sigma_day - math.sqrt(2 / math.pi)
        boost = np.maximum(0.3, 1.0 + s.volume_move_sensitivity * surprise)
        noise = np.exp(s.volume_noise * rng.standard_normal(n_days) - 0.5 * s.volume_noise**2)
        session_share = np.where(valid, vol_profile[None, :], 0.0).sum(axis=1)
        day_volume = model.daily_volume * noise * boost * session_share
        bar_weights = vol_profile[None, :] * np.exp(0.3 * rng.standard_normal((n_days, max_bars)))
        v = _split_volume(day_volume, bar_weights, valid)
        return _aggregate(ticker, grid, valid, o, h, lo, c, v, interval)


# --------------------------------------------------------------------------------------------------
# Intraday bars for daily-only data
# --------------------------------------------------------------------------------------------------


def intraday_table_from_daily(
    daily: DailyBars, calendar: TradingCalendar, interval_minutes: int, volume_smile: float = 3.0
) -> IntradayTable:
    """`intraday_from_daily` as one flat table (vectorised; what SimulatedHistory stores)."""
    if interval_minutes not in ALLOWED_INTERVALS:
        raise ValidationFailed(
            f"{interval_minutes} minutes does not divide the NYSE sessions; use one of {ALLOWED_INTERVALS}",
            field="interval_minutes",
        )
    grid = _grid_for(calendar, np.asarray(daily.dates, dtype="datetime64[D]"))
    n = _bar_counts(grid, interval_minutes)
    if n.size == 0:
        return IntradayTable.from_sessions([])
    if int(n.min()) < 3:
        raise ValidationFailed("sessions need at least 3 intraday bars", field="interval_minutes")
    max_bars = int(n.max())
    valid = np.arange(max_bars)[None, :] < n[:, None]

    # Vertices at bar boundaries: open (0) → first extreme (k1) → second extreme (k2) → close (n).
    up = daily.close >= daily.open
    v0, v3 = daily.open, daily.close
    v1 = np.where(up, daily.low, daily.high)
    v2 = np.where(up, daily.high, daily.low)
    k1 = np.maximum(1, np.round(n / 3)).astype(np.int64)
    k2 = np.maximum(k1 + 1, np.round(2 * n / 3)).astype(np.int64)
    kn = n.astype(np.float64)
    j = np.arange(max_bars + 1, dtype=np.float64)[None, :]
    a, b, e = k1[:, None].astype(np.float64), k2[:, None].astype(np.float64), kn[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        path = np.where(
            j <= a,
            v0[:, None] + (v1 - v0)[:, None] * j / a,
            np.where(
                j <= b,
                v1[:, None] + (v2 - v1)[:, None] * (j - a) / (b - a),
                v2[:, None] + (v3 - v2)[:, None] * (j - b) / (e - b),
            ),
        )
    path = np.clip(np.round(path, 2), daily.low[:, None], daily.high[:, None])
    rows = np.arange(n.size)
    path[rows, 0], path[rows, k1], path[rows, k2] = v0, v1, v2
    path[rows, n] = v3
    o, c = path[:, :-1], path[:, 1:]
    h, lo = np.maximum(o, c), np.minimum(o, c)

    n_regular = REGULAR_SESSION_MINUTES // interval_minutes
    profile = _profile(n_regular, volume_smile, max_bars)
    v = _split_volume(daily.volume.astype(np.float64), np.broadcast_to(profile, valid.shape), valid)
    _, table = _aggregate(daily.ticker, grid, valid, o, h, lo, c, v, interval_minutes)
    return table


def intraday_from_daily(daily: DailyBars, calendar: TradingCalendar, interval_minutes: int = 15) -> list[IntradayBars]:
    """A deterministic intraday path for each daily bar (for data that has no intraday bars).

    The path runs open → low → high → close when the session closed at or above its open (else open →
    high → low → close), piecewise-linear across the session's bars with the turns at about one and two
    thirds of the session; interior prices are rounded to cents. The session's open, high, low and close
    are reproduced exactly; its volume is spread along a U-shaped profile (integers, same total).
    """
    table = intraday_table_from_daily(daily, calendar, interval_minutes)
    return [table.session(daily.ticker, i, d.item()) for i, d in enumerate(daily.dates)]
