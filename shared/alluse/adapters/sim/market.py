"""The simulated market: bars (generated or loaded from CSV) and option chains behind the MarketData port.

It answers only what was knowable at the shared clock's "now": asking about a later instant is a
MarketDataGap, today's daily bar exists only after today's close, and an intraday bar only once it
has ended. Chains are priced on demand from the spot at that instant and the underlying's realised
volatility up to the previous session, and cached per (ticker, instant): a thousand accounts looking
at TSLA at 10:00 share one chain.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from alluse.adapters.sim.bars import MarketModel, MarketModelSettings, SimulatedHistory
from alluse.adapters.sim.calendar import NEW_YORK, NyseCalendar
from alluse.adapters.sim.chains import ChainSettings, generate_chain, listed_expiries
from alluse.adapters.sim.csv_bars import load_directory
from alluse.application.ports import Clock
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.indicators import realized_volatility
from alluse.domain.market import DailyBars, IntradayBars, OptionChain


class SimulatedMarketSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    realised_vol_window: int = Field(default=20, ge=2, le=252, description="Sessions of realised volatility.")
    fallback_vol: float = Field(
        default=0.30, gt=0, le=5, description="Volatility used while too few sessions exist to measure one."
    )
    expiry_horizon_days: int = Field(
        default=3 * 366, ge=30, le=4000, description="How far ahead (calendar days) listed expiries are sought."
    )
    chain_cache_size: int = Field(default=256, ge=1, le=100_000, description="Chains kept (ticker × instant).")
    chain_seed: int = Field(default=11, description="Seed of chains' open interest and volume noise.")
    chains: ChainSettings = Field(default_factory=ChainSettings, description="Expiries, strikes, quotes.")


class SimulatedMarket:
    def __init__(
        self,
        history: SimulatedHistory,
        calendar: NyseCalendar,
        clock: Clock,
        settings: SimulatedMarketSettings | None = None,
        *,
        long_run_vols: dict[str, float] | None = None,
    ) -> None:
        self.history = history
        self.calendar = calendar
        self._clock = clock
        self._settings = settings or SimulatedMarketSettings()
        self._long_run = long_run_vols or {}
        self._chains: OrderedDict[tuple[str, datetime], OptionChain] = OrderedDict()
        self._prices_at: datetime | None = None
        self._prices: dict[str, float] = {}
        self._expiries: dict[date, list[date]] = {}

    @classmethod
    def generated(
        cls,
        start: date,
        end: date,
        clock: Clock,
        *,
        seed: int,
        model: MarketModelSettings | None = None,
        settings: SimulatedMarketSettings | None = None,
        calendar: NyseCalendar | None = None,
    ) -> SimulatedMarket:
        """A seeded market over [start, end]; the same seed gives the same market, bar for bar."""
        calendar = calendar or NyseCalendar()
        model = model or MarketModelSettings()
        history = MarketModel(model, seed, calendar).generate(start, end)
        vols = {ticker: t.annual_volatility for ticker, t in model.tickers.items()}
        return cls(history, calendar, clock, settings, long_run_vols=vols)

    @classmethod
    def from_csv(
        cls,
        directory: str | Path,
        clock: Clock,
        *,
        settings: SimulatedMarketSettings | None = None,
        calendar: NyseCalendar | None = None,
    ) -> SimulatedMarket:
        """Real bars from `<TICKER>.csv` files (format: alluse.adapters.sim.csv_bars.FORMAT)."""
        calendar = calendar or NyseCalendar()
        return cls(load_directory(Path(directory), calendar), calendar, clock, settings)

    # --- MarketData ------------------------------------------------------------------------------
    def tickers(self) -> tuple[str, ...]:
        return self.history.tickers

    def daily_bars(self, ticker: str, *, through: date) -> DailyBars:
        now = self._now()
        if through > now.date():
            raise MarketDataGap(
                f"bars through {through} asked at {now:%Y-%m-%d %H:%M}: that is the future", field="through"
            )
        bars = self.history.daily(ticker).through(through)
        if len(bars) and bars.dates[-1] == np.datetime64(now.date(), "D") and now < self.calendar.close_at(now.date()):
            bars = bars.through(now.date() - timedelta(days=1))  # today's bar exists once today has closed
        return bars

    def intraday_bars(self, ticker: str, session: date) -> IntradayBars:
        now = self._now()
        if session > now.date():
            raise MarketDataGap(
                f"intraday bars of {session} asked on {now.date()}: that is the future", field="session"
            )
        bars = self.history.intraday(ticker, session)
        ended = np.count_nonzero(bars.times + np.timedelta64(self.history.interval_minutes, "m") <= _wall(now))
        if ended == len(bars):
            return bars
        return IntradayBars(
            ticker,
            session,
            bars.times[:ended],
            bars.open[:ended],
            bars.high[:ended],
            bars.low[:ended],
            bars.close[:ended],
            bars.volume[:ended],
        )

    def price(self, ticker: str, at: datetime) -> float:
        """The last trade at or before `at`: the latest ended bar's close, the session's opening print
        before the first bar ends, the previous close outside the session."""
        self._not_after_now(at)
        if at != self._prices_at:  # a fleet asks every account's prices at one instant: remember that one
            self._prices_at, self._prices = at, {}
        if ticker not in self._prices:
            self._prices[ticker] = self._price(ticker, at)
        return self._prices[ticker]

    def _price(self, ticker: str, at: datetime) -> float:
        local = at.astimezone(NEW_YORK)
        day = local.date()
        if self.calendar.is_session(day) and local >= self.calendar.open_at(day):
            bars = self.history.intraday(ticker, day)
            ended = self._ended(bars, local)
            return float(bars.close[ended - 1]) if ended else float(bars.open[0])
        daily = self.history.daily(ticker).through(day - timedelta(days=1))  # before the open: yesterday's close
        if not len(daily):
            raise MarketDataGap(f"no price for {ticker} at or before {local:%Y-%m-%d %H:%M}", field="at")
        return float(daily.close[-1])

    def chain(self, ticker: str, at: datetime) -> OptionChain:
        self._not_after_now(at)
        key = (ticker, at)
        cached = self._chains.get(key)
        if cached is not None:
            self._chains.move_to_end(key)
            return cached
        chain = self._price_chain(ticker, at)
        self._chains[key] = chain
        if len(self._chains) > self._settings.chain_cache_size:
            self._chains.popitem(last=False)
        return chain

    # --- internals --------------------------------------------------------------------------------
    def _price_chain(self, ticker: str, at: datetime) -> OptionChain:
        local = at.astimezone(NEW_YORK)
        spot = self.price(ticker, local)
        day = local.date()
        before = self.history.daily(ticker).through(day - timedelta(days=1))
        vol = self._realised_vol(before.close)
        return generate_chain(
            ticker,
            local,
            spot,
            vol,
            self._listed(day),
            self._settings.chains,
            self._settings.chain_seed,
            long_run_vol=self._long_run.get(ticker, vol),
        )

    def _realised_vol(self, closes: np.ndarray) -> float:
        window = self._settings.realised_vol_window
        if closes.shape[0] <= window:
            return self._settings.fallback_vol
        measured = float(realized_volatility(closes[-(window + 1) :], window)[-1])
        return measured if np.isfinite(measured) and measured > 0 else self._settings.fallback_vol

    def _listed(self, day: date) -> list[date]:
        listed = self._expiries.get(day)
        if listed is None:
            horizon = min(day + timedelta(days=self._settings.expiry_horizon_days), self.calendar.end)
            sessions = self.calendar.sessions_array(day, horizon)
            listed = listed_expiries(day, sessions, self._settings.chains)
            self._expiries[day] = listed
        return listed

    def _ended(self, bars: IntradayBars, moment: datetime) -> int:
        """How many of a session's bars have ended by `moment` (a bar is known once it has ended)."""
        ends = bars.times + np.timedelta64(self.history.interval_minutes, "m")
        return int(np.count_nonzero(ends <= _wall(moment)))

    def _now(self) -> datetime:
        return self._clock.now().astimezone(NEW_YORK)

    def _not_after_now(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValidationFailed("market times must be timezone-aware", field="at")
        if at > self._clock.now():
            raise MarketDataGap(
                f"{at:%Y-%m-%d %H:%M %Z} is in the future (now {self._now():%Y-%m-%d %H:%M})", field="at"
            )


def _wall(at: datetime) -> np.datetime64:
    """America/New_York wall-clock minute of an aware datetime, as the bars' naive datetime64[m]."""
    return np.datetime64(at.astimezone(NEW_YORK).replace(tzinfo=None), "m")
