"""Sleeve bookings: fills and expiries land in exactly one sleeve, assignment basis per A12, and the
sleeves add up to the broker, cent for cent."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alluse.adapters.paper.broker import PaperBroker
from alluse.application.clock import SimulatedClock
from alluse.domain.accounts import Account
from alluse.domain.brokerage import (
    BrokerAccountState,
    Execution,
    OrderRequest,
    OrderType,
    Settlement,
    SettlementKind,
    Side,
)
from alluse.domain.errors import Conflict
from alluse.domain.instruments import Equity, OptionContract, OptionRight
from alluse.domain.ledger import book_execution, book_settlement, broker_mismatches
from alluse.domain.sleeves import SleeveKind
from tests.fakes import FakeCalendar, FakeMarket, ny, opened_account

GEN, REV = SleeveKind.GEN, SleeveKind.REV
FRI = date(2026, 12, 4)
NOW = datetime(2026, 12, 3, 15, tzinfo=UTC)
PUT_240 = OptionContract("TSLA", FRI, 24_000, OptionRight.PUT)
CALL_250 = OptionContract("TSLA", FRI + timedelta(days=7), 25_000, OptionRight.CALL)
STOCK = Equity("TSLA")


def account(capital_cents: int = 100_000_000) -> Account:
    return opened_account(NOW, capital_cents, "ACC-1")


def fill(instrument, side: Side, qty: int, price: int, commission: int = 0) -> Execution:  # type: ignore[no-untyped-def]
    return Execution("E1", "P1", "ref", instrument, side, qty, price, commission, NOW)


def test_selling_a_put_books_premium_collateral_and_commission() -> None:
    before = account()
    after = book_execution(before, GEN, fill(PUT_240, Side.SELL, 2, 310, commission=130))
    gen = after.sleeve(GEN)
    assert gen.quantity(PUT_240) == -2 and gen.costs[PUT_240] == -62_000
    assert gen.cash_cents == before.sleeve(GEN).cash_cents + 62_000 - 130
    assert gen.premium_cents == 62_000 and gen.commission_cents == 130
    assert gen.collateral_cents == 4_800_000
    assert gen.free_cents == gen.cash_cents - gen.buffer_cents - 4_800_000
    assert after.sleeve(REV) == before.sleeve(REV)  # another sleeve is untouched


def test_buying_back_realises_the_difference() -> None:
    sold = book_execution(account(), GEN, fill(PUT_240, Side.SELL, 2, 310))
    closed = book_execution(sold, GEN, fill(PUT_240, Side.BUY, 1, 100)).sleeve(GEN)
    assert closed.quantity(PUT_240) == -1 and closed.costs[PUT_240] == -31_000
    assert closed.realized_cents == 31_000 - 10_000
    assert closed.premium_cents == 62_000  # buying back is not premium


def test_expired_worthless_realises_the_premium() -> None:
    sold = book_execution(account(), GEN, fill(PUT_240, Side.SELL, 2, 310))
    done = book_settlement(sold, Settlement(SettlementKind.EXPIRED_WORTHLESS, PUT_240, -2, 0, 0, 25_500, NOW))
    gen = done.sleeve(GEN)
    assert gen.positions == {} and gen.realized_cents == 62_000 and gen.collateral_cents == 0


def test_assignment_lowers_the_basis_and_call_away_adds_the_premium_to_proceeds() -> None:
    sold = book_execution(account(), GEN, fill(PUT_240, Side.SELL, 1, 310))
    assigned = book_settlement(sold, Settlement(SettlementKind.ASSIGNED, PUT_240, -1, 100, -2_400_000, 23_100, NOW))
    gen = assigned.sleeve(GEN)
    assert gen.quantity(STOCK) == 100 and gen.costs[STOCK] == 2_400_000 - 31_000  # A12: no gain at assignment
    assert gen.realized_cents == 0
    covered = book_execution(assigned, GEN, fill(CALL_250, Side.SELL, 1, 200))
    called = book_settlement(
        covered, Settlement(SettlementKind.CALLED_AWAY, CALL_250, -1, -100, 2_500_000, 25_400, NOW)
    )
    gen = called.sleeve(GEN)
    assert gen.positions == {}
    assert gen.realized_cents == (2_500_000 + 20_000) - (2_400_000 - 31_000)  # proceeds + call premium − basis
    assert gen.cash_cents == account().sleeve(GEN).cash_cents + 31_000 - 2_400_000 + 20_000 + 2_500_000


def test_a_settlement_is_split_over_the_sleeves_that_hold_the_contract() -> None:
    both = book_execution(
        book_execution(account(), GEN, fill(PUT_240, Side.SELL, 2, 310)), REV, fill(PUT_240, Side.SELL, 1, 300)
    )
    assigned = book_settlement(both, Settlement(SettlementKind.ASSIGNED, PUT_240, -3, 300, -7_200_000, 23_000, NOW))
    assert assigned.sleeve(GEN).quantity(STOCK) == 200 and assigned.sleeve(REV).quantity(STOCK) == 100
    assert assigned.sleeve(GEN).cash_cents - both.sleeve(GEN).cash_cents == -4_800_000
    assert assigned.sleeve(REV).costs[STOCK] == 2_400_000 - 30_000


def test_a_settlement_the_sleeves_do_not_hold_is_refused() -> None:
    sold = book_execution(account(), GEN, fill(PUT_240, Side.SELL, 1, 310))
    with pytest.raises(Conflict, match="reconcile"):
        book_settlement(sold, Settlement(SettlementKind.ASSIGNED, PUT_240, -2, 200, -4_800_000, 23_000, NOW))


def test_through_zero_is_refused() -> None:
    sold = book_execution(account(), GEN, fill(PUT_240, Side.SELL, 1, 310))
    with pytest.raises(Conflict, match="through zero"):
        book_execution(sold, GEN, fill(PUT_240, Side.BUY, 2, 100))


def test_mismatches_name_symbol_and_cash() -> None:
    sold = book_execution(account(), GEN, fill(PUT_240, Side.SELL, 1, 310))
    broker = BrokerAccountState("DU1", sold.cash_cents + 1, ())
    problems = broker_mismatches(sold, broker)
    assert any(PUT_240.symbol in p and "broker 0" in p for p in problems) and any(
        p.startswith("cash") for p in problems
    )


# --- against the paper broker -------------------------------------------------------------------------

trades = st.lists(
    st.tuples(
        st.sampled_from([GEN, REV]),
        st.sampled_from(["sell_put", "buy_back", "expire"]),
        st.integers(min_value=230, max_value=255),
        st.integers(min_value=1, max_value=3),
        st.integers(min_value=20, max_value=290),
    ),
    max_size=20,
)


@settings(max_examples=40, deadline=None)
@given(trades=trades)
def test_sleeves_always_add_up_to_the_broker(trades) -> None:  # type: ignore[no-untyped-def]
    capital = 200_000_000
    book = account(capital)
    clock = SimulatedClock(ny(date(2026, 11, 30), 10))
    market, expiry = FakeMarket(), FRI
    market.prices["TSLA"] = 240.0
    broker = PaperBroker(market, FakeCalendar(), clock)
    broker.open_account("DU1", capital)
    sleeve_of: dict[str, SleeveKind] = {}
    booked_executions = booked_settlements = 0
    buffers = {k: s.buffer_cents for k, s in book.sleeves.items()}
    for n, (sleeve, action, strike, qty, premium) in enumerate(trades):
        contract = OptionContract("TSLA", expiry, strike * 100, OptionRight.PUT)
        market.quote(contract, premium, premium + 5)
        if action == "expire":
            market.closes[("TSLA", expiry)] = float(strike)
            clock.advance_to(ny(expiry, 16, 1))
            expiry += timedelta(days=7)
            clock.advance_to(ny(expiry - timedelta(days=4), 10))
        else:
            side = Side.SELL if action == "sell_put" else Side.BUY
            if side is Side.BUY and book.sleeve(sleeve).quantity(contract) > -qty:
                continue  # a sleeve only buys back what it is short
            sleeve_of[f"r{n}"] = sleeve
            limit = premium if side is Side.SELL else premium + 5
            broker.place_order("DU1", OrderRequest(f"r{n}", contract, side, qty, OrderType.LIMIT, limit))
        for execution in broker.executions("DU1")[booked_executions:]:
            book = book_execution(book, sleeve_of[execution.client_ref], execution)
            booked_executions += 1
        for settlement in broker.settlements("DU1")[booked_settlements:]:
            book = book_settlement(book, settlement)
            booked_settlements += 1
        assert broker_mismatches(book, broker.account("DU1")) == []
        assert {k: s.buffer_cents for k, s in book.sleeves.items()} == buffers
