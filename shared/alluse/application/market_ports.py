"""Ports to the market: the trading calendar and market data. The simulated market and, later, a
live data feed implement them; the protocol does not know which world it runs in."""

from __future__ import annotations

from datetime import date, datetime
from typing import Protocol

from alluse.domain.market import DailyBars, IntradayBars, OptionChain


class TradingCalendar(Protocol):
    """NYSE sessions in America/New_York. Every datetime in or out is timezone-aware."""

    def is_session(self, day: date) -> bool: ...

    def sessions_between(self, start: date, end: date) -> list[date]:
        """Sessions from `start` to `end`, both included."""
        ...

    def next_session(self, day: date) -> date:
        """The first session strictly after `day`."""
        ...

    def previous_session(self, day: date) -> date:
        """The last session strictly before `day`."""
        ...

    def open_at(self, session: date) -> datetime: ...

    def close_at(self, session: date) -> datetime:
        """16:00 ET, or 13:00 ET on a half day."""
        ...

    def is_open(self, at: datetime) -> bool: ...


class MarketData(Protocol):
    """Prices as they were known at a moment; asking about the future is a MarketDataGap."""

    def tickers(self) -> tuple[str, ...]: ...

    def daily_bars(self, ticker: str, *, through: date) -> DailyBars: ...

    def intraday_bars(self, ticker: str, session: date) -> IntradayBars: ...

    def price(self, ticker: str, at: datetime) -> float:
        """Last trade price at or before `at`."""
        ...

    def chain(self, ticker: str, at: datetime) -> OptionChain: ...
