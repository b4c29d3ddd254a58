"""Small in-memory fakes of the market ports, written once and shared by tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from alluse.application.alerting import AlertDesk
from alluse.application.ports import Notifier
from alluse.domain.accounts import Account, link_broker, open_account
from alluse.domain.alerts import Alert, Decision
from alluse.domain.config import default_config
from alluse.domain.errors import MarketDataGap
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.market import DailyBars, IntradayBars, OptionChain

NY = ZoneInfo("America/New_York")


def ny(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=NY)


class FakeCalendar:
    """Weekdays are sessions except `holidays`; 09:30-16:00 ET, 13:00 on `half_days`."""

    def __init__(self, holidays: Iterable[date] = (), half_days: Iterable[date] = ()) -> None:
        self.holidays = set(holidays)
        self.half_days = set(half_days)

    def is_session(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays

    def sessions_between(self, start: date, end: date) -> list[date]:
        days = (start + timedelta(n) for n in range((end - start).days + 1))
        return [d for d in days if self.is_session(d)]

    def next_session(self, day: date) -> date:
        day += timedelta(1)
        while not self.is_session(day):
            day += timedelta(1)
        return day

    def previous_session(self, day: date) -> date:
        day -= timedelta(1)
        while not self.is_session(day):
            day -= timedelta(1)
        return day

    def open_at(self, session: date) -> datetime:
        return ny(session, 9, 30)

    def close_at(self, session: date) -> datetime:
        return ny(session, 13) if session in self.half_days else ny(session, 16)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(NY)
        day = local.date()
        return self.is_session(day) and self.open_at(day) <= local < self.close_at(day)


class FakeMarket:
    """Prices and option quotes set by the test; a chain lists exactly the quotes given."""

    def __init__(self) -> None:
        self.prices: dict[str, float] = {}
        self.quotes: dict[OptionContract, tuple[int, int]] = {}
        self.closes: dict[tuple[str, date], float] = {}

    def tickers(self) -> tuple[str, ...]:
        return tuple(sorted(self.prices))

    def quote(self, contract: OptionContract, bid_cents: int, ask_cents: int) -> OptionContract:
        self.quotes[contract] = (bid_cents, ask_cents)
        return contract

    def price(self, ticker: str, at: datetime) -> float:
        if ticker not in self.prices:
            raise MarketDataGap(f"no price for {ticker}", field="ticker")
        return self.prices[ticker]

    def daily_bars(self, ticker: str, *, through: date) -> DailyBars:
        close = self.closes.get((ticker, through), self.prices.get(ticker))
        if close is None:
            raise MarketDataGap(f"no close for {ticker} on {through}", field="ticker")
        one = np.array([close])
        return DailyBars(ticker, np.array([np.datetime64(through, "D")]), one, one, one, one, np.array([0]))

    def intraday_bars(self, ticker: str, session: date) -> IntradayBars:
        raise MarketDataGap("the fake market has no intraday bars")

    def chain(self, ticker: str, at: datetime) -> OptionChain:
        rows = [(c, q) for c, q in self.quotes.items() if c.underlying == ticker and c.expiry >= at.date()]
        n = len(rows)
        zeros = np.zeros(n)
        return OptionChain(
            underlying=ticker,
            as_of=at,
            spot=self.prices.get(ticker, 0.0),
            expiry=np.array([np.datetime64(c.expiry, "D") for c, _ in rows], dtype="datetime64[D]"),
            strike_cents=np.array([c.strike_cents for c, _ in rows], dtype=np.int64),
            is_call=np.array([c.right is OptionRight.CALL for c, _ in rows], dtype=bool),
            bid_cents=np.array([q[0] for _, q in rows], dtype=np.int64),
            ask_cents=np.array([q[1] for _, q in rows], dtype=np.int64),
            iv=zeros,
            delta=zeros,
            gamma=zeros,
            theta=zeros,
            vega=zeros,
            open_interest=np.full(n, 1000, dtype=np.int64),
            volume=np.full(n, 500, dtype=np.int64),
        )


class RecordingDesk(AlertDesk):
    """The real alert desk, remembering every alert raised to it (before the gate's caps)."""

    def __init__(self, notifier: Notifier) -> None:
        super().__init__(notifier, default_config().alerts)
        self.raised: list[Alert] = []

    def raise_alert(self, alert: Alert, *, trading_day: bool) -> Decision:
        self.raised.append(alert)
        return super().raise_alert(alert, trading_day=trading_day)


def opened_account(now: datetime, capital_cents: int = 500_000_00, account_id: str = "ACC-00001") -> Account:
    """A funded account with no positions, split by the default allocation (not linked to a broker)."""
    cfg = default_config()
    opened, _ = open_account(
        account_id,
        name="test",
        capital_cents=capital_cents,
        weights=cfg.allocation.weights(),
        buffer_pct=cfg.allocation.cash_buffer_pct,
        now=now,
    )
    return opened


def linked_account(now: datetime, capital_cents: int = 500_000_00) -> Account:
    """`opened_account`, linked to a brokerage account: ACTIVE."""
    pattern = default_config().account.brokerage_id_pattern
    return link_broker(opened_account(now, capital_cents), "DU1234567", pattern=pattern)
