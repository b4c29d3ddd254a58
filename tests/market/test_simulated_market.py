"""The simulated market behind the MarketData port: no look-ahead, chains from the bars, and the paper
broker trading against it end to end, replayed deterministically."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from alluse.adapters.paper.broker import PaperBroker
from alluse.adapters.sim.calendar import NEW_YORK, NyseCalendar
from alluse.adapters.sim.market import SimulatedMarket
from alluse.application.broker_port import OrderRequest, OrderStatus, OrderType, Settlement, Side
from alluse.application.clock import SimulatedClock
from alluse.domain.errors import MarketDataGap
from alluse.domain.instruments import OptionRight

THU, FRI = date(2026, 12, 3), date(2026, 12, 4)
DATA = Path(__file__).parent / "data"


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


def market_at(moment: datetime, seed: int = 7) -> tuple[SimulatedMarket, SimulatedClock]:
    clock = SimulatedClock(moment)
    return SimulatedMarket.generated(date(2026, 1, 2), date(2027, 3, 31), clock, seed=seed), clock


def test_the_future_is_not_for_sale() -> None:
    market, clock = market_at(at(THU, 10))
    with pytest.raises(MarketDataGap, match="future"):
        market.price("TSLA", clock.now() + timedelta(minutes=1))
    with pytest.raises(MarketDataGap, match="future"):
        market.chain("TSLA", clock.now() + timedelta(minutes=1))
    with pytest.raises(MarketDataGap, match="future"):
        market.daily_bars("TSLA", through=FRI)
    with pytest.raises(MarketDataGap, match="future"):
        market.intraday_bars("TSLA", FRI)


def test_todays_bars_appear_as_they_end() -> None:
    market, clock = market_at(at(THU, 10))
    assert market.daily_bars("TSLA", through=THU).dates[-1] == np.datetime64(date(2026, 12, 2))
    assert len(market.intraday_bars("TSLA", THU)) == 2  # 09:30 and 09:45 bars have ended by 10:00
    whole = market.history.intraday("TSLA", THU)
    assert market.price("TSLA", clock.now()) == whole.close[1]
    clock.advance_to(at(THU, 16, 5))
    assert market.daily_bars("TSLA", through=THU).dates[-1] == np.datetime64(THU)
    assert len(market.intraday_bars("TSLA", THU)) == 26


def test_price_outside_the_session_is_the_last_close() -> None:
    market, _ = market_at(at(FRI, 9))  # before Friday's open
    thursday = market.history.daily("TSLA").through(THU)
    assert market.price("TSLA", at(FRI, 9)) == thursday.close[-1]
    assert market.price("TSLA", at(THU, 20)) == thursday.close[-1]


def test_chain_is_priced_from_the_spot_and_cached() -> None:
    market, clock = market_at(at(THU, 10))
    chain = market.chain("TSLA", clock.now())
    assert chain.spot == market.price("TSLA", clock.now())
    assert chain.expiries()[0] == FRI  # Gen-Acc's Thursday entry: the 1-DTE Friday expiry is listed
    assert market.chain("TSLA", clock.now()) is chain
    puts = [chain.quote(int(r)) for r in chain.rows(FRI, OptionRight.PUT)]
    in_band = [q for q in puts if 0.40 <= -q.delta <= 0.50]
    assert in_band, "a 40-50 delta put exists on the Friday expiry"
    assert all(q.bid_cents > 0 for q in in_band)


def _gen_week(seed: int) -> tuple[list[object], list[Settlement], int]:
    """Sell one 40-50 delta TSLA put on Thursday, let it expire Friday; return what happened."""
    market, clock = market_at(at(THU, 10), seed=seed)
    broker = PaperBroker(market, market.calendar, clock)
    broker.open_account("DU1000001", 100_000_000)
    chain = market.chain("TSLA", clock.now())
    quote = next(
        chain.quote(int(r)) for r in chain.rows(FRI, OptionRight.PUT) if 0.40 <= -chain.quote(int(r)).delta <= 0.50
    )
    order = broker.place_order(
        "DU1000001",
        OrderRequest("gen-thu-1", quote.contract, Side.SELL, 2, OrderType.LIMIT, quote.bid_cents),
    )
    assert order.status is OrderStatus.FILLED
    clock.advance_to(at(FRI, 16, 1))
    state = broker.account("DU1000001")
    return broker.executions("DU1000001"), broker.settlements("DU1000001"), state.cash_cents


def test_a_gen_acc_week_settles_against_the_market_close() -> None:
    executions, settlements, cash = _gen_week(seed=7)
    [settlement] = settlements
    market, _ = market_at(at(FRI, 16, 1))
    close = market.daily_bars("TSLA", through=FRI).close[-1]
    assert settlement.underlying_close_cents == round(close * 100)
    premium = executions[0].cash_cents  # type: ignore[attr-defined]
    assert cash == 100_000_000 + premium + settlement.cash_cents


def test_same_seed_replays_identically_and_another_seed_differs() -> None:
    assert _gen_week(seed=7) == _gen_week(seed=7)
    assert _gen_week(seed=7)[0] != _gen_week(seed=8)[0]


def test_real_bars_from_csv_run_the_same_code() -> None:
    moment = datetime(2024, 11, 26, 11, 0, tzinfo=NEW_YORK)
    clock = SimulatedClock(moment)
    market = SimulatedMarket.from_csv(DATA, clock, calendar=NyseCalendar())
    assert market.tickers() == ("AAPL",)
    chain = market.chain("AAPL", moment)
    assert len(chain) > 100 and chain.spot == market.price("AAPL", moment)
    broker = PaperBroker(market, market.calendar, clock)
    broker.open_account("DU2000002", 10_000_000)
    puts = [chain.quote(int(r)) for r in chain.rows(chain.expiries()[0], OptionRight.PUT)]
    quote = min(puts, key=lambda q: abs(q.delta + 0.45))  # nearest 45-delta put
    order = broker.place_order(
        "DU2000002", OrderRequest("csv-1", quote.contract, Side.SELL, 1, OrderType.LIMIT, quote.bid_cents)
    )
    assert order.status is OrderStatus.FILLED
    assert broker.account("DU2000002").cash_cents == 10_000_000 + broker.executions("DU2000002")[0].cash_cents
