"""Paper broker and simulated-week figures, through the real simulated market (not a test).

Section of `python -m bench.market_bench`."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

from alluse.adapters.paper.broker import PaperBroker
from alluse.adapters.sim.calendar import NEW_YORK
from alluse.adapters.sim.market import SimulatedMarket
from alluse.application.broker_port import OrderRequest, OrderStatus, OrderType, Side
from alluse.application.clock import SimulatedClock
from alluse.domain.instruments import OptionRight
from bench.market_bench import Result

THU = date(2026, 12, 3)
WEEK = (date(2026, 11, 30), date(2026, 12, 4))


def _world(moment: datetime) -> tuple[SimulatedMarket, SimulatedClock, PaperBroker]:
    clock = SimulatedClock(moment)
    market = SimulatedMarket.generated(date(2026, 1, 2), date(2027, 3, 31), clock, seed=7)
    return market, clock, PaperBroker(market, market.calendar, clock)


def bench_round_trips(accounts: int = 500) -> list[Result]:
    """Each account sells a TSLA put and buys it back: two orders placed and filled per account."""
    market, clock, broker = _world(datetime(2026, 12, 3, 10, 0, tzinfo=NEW_YORK))
    chain = market.chain("TSLA", clock.now())
    quote = min(
        (chain.quote(int(r)) for r in chain.rows(date(2026, 12, 4), OptionRight.PUT)),
        key=lambda q: abs(q.delta + 0.45),
    )
    for n in range(accounts):
        broker.open_account(f"DU{1_000_000 + n}", 100_000_000)
    started = time.perf_counter()
    for n in range(accounts):
        account = f"DU{1_000_000 + n}"
        sell = OrderRequest(f"s{n}", quote.contract, Side.SELL, 1, OrderType.LIMIT, quote.bid_cents)
        buy = OrderRequest(f"b{n}", quote.contract, Side.BUY, 1, OrderType.LIMIT, quote.ask_cents)
        for request in (sell, buy):
            if broker.place_order(account, request).status is not OrderStatus.FILLED:
                raise RuntimeError("benchmark order did not fill")
    elapsed = time.perf_counter() - started
    return [Result("order round trips per second (place + fill)", 2 * accounts / elapsed, "orders/s")]


def bench_week(accounts: int = 100) -> list[Result]:
    """A simulated week, every 15 minutes of every session: price, chains of the Gen-Acc tickers, a broker
    step for every account. Chains are shared by all accounts at an instant (cached)."""
    market, clock, broker = _world(datetime(2026, 11, 30, 9, 30, tzinfo=NEW_YORK))
    for n in range(accounts):
        broker.open_account(f"DU{2_000_000 + n}", 100_000_000)
    steps = 0
    started = time.perf_counter()
    for session in market.calendar.sessions_between(*WEEK):
        moment, close = market.calendar.open_at(session), market.calendar.close_at(session)
        while moment <= close:
            clock.advance_to(moment)
            for ticker in ("TSLA", "NVDA"):
                market.price(ticker, moment)
                market.chain(ticker, moment)
            broker.step()
            steps += 1
            moment += timedelta(minutes=15)
    elapsed = time.perf_counter() - started
    return [
        Result(f"simulated week, {steps} steps, {accounts} accounts", elapsed, "s"),
        Result("simulated week per account", elapsed / accounts * 1000, "ms", 1000, higher_is_better=False),
    ]
