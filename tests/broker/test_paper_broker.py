"""The paper broker: validation and rejects, fills, commissions, idempotent refs, the close, expiry
and assignment arithmetic to the cent."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alluse.adapters.paper.broker import PaperBroker, PaperBrokerSettings
from alluse.application.broker_port import (
    OrderRequest,
    OrderStatus,
    OrderType,
    RejectReason,
    SettlementKind,
    Side,
    TimeInForce,
)
from alluse.application.clock import SimulatedClock
from alluse.domain.config import effective_config
from alluse.domain.errors import Conflict, NotFound
from alluse.domain.instruments import Equity, OptionContract, OptionRight
from tests.fakes import FakeCalendar, FakeMarket, ny

MON, THU, FRI = date(2026, 11, 30), date(2026, 12, 3), date(2026, 12, 4)
ACCOUNT = "DU1000001"


def put(strike_dollars: int, expiry: date = FRI) -> OptionContract:
    return OptionContract("TSLA", expiry, strike_dollars * 100, OptionRight.PUT)


def call(strike_dollars: int, expiry: date = FRI) -> OptionContract:
    return OptionContract("TSLA", expiry, strike_dollars * 100, OptionRight.CALL)


class World:
    def __init__(self, cash_cents: int = 5_000_000, **broker_settings: object) -> None:
        self.clock = SimulatedClock(ny(MON, 10))
        self.market = FakeMarket()
        self.market.prices["TSLA"] = 250.0
        self.calendar = FakeCalendar()
        self.broker = PaperBroker(
            self.market, self.calendar, self.clock, PaperBrokerSettings.model_validate(broker_settings)
        )
        self.broker.open_account(ACCOUNT, cash_cents)

    def order(self, ref: str, instrument, side: Side, qty: int, limit: int | None = None, **kw) -> object:  # type: ignore[no-untyped-def]
        order_type = OrderType.MARKET if limit is None else OrderType.LIMIT
        return self.broker.place_order(ACCOUNT, OrderRequest(ref, instrument, side, qty, order_type, limit, **kw))

    def expire(self, close: float, day: date = FRI) -> None:
        self.market.closes[("TSLA", day)] = close
        self.clock.advance_to(ny(day, 16, 1))

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.broker.account(ACCOUNT)


@pytest.fixture
def world() -> World:
    return World()


def test_settings_from_config_take_commission_and_grid_from_the_configuration() -> None:
    cfg = effective_config({"orders": {"commission_per_contract": "0.50"}, "ticks": {"option_large_tick_cents": 10}})
    paper = PaperBrokerSettings.from_config(cfg, slippage_ticks=1)
    assert paper.option_commission_per_contract == Decimal("0.50")
    assert paper.option_commission_min == cfg.orders.commission_min_per_order
    assert paper.ticks == cfg.ticks and paper.ticks.option_large_tick_cents == 10
    assert paper.slippage_ticks == 1


def test_accounts_are_one_per_brokerage_id(world: World) -> None:
    with pytest.raises(Conflict):
        world.broker.open_account(ACCOUNT, 100)
    with pytest.raises(NotFound):
        world.broker.account("DU9999999")


def test_cash_secured_put_fills_at_the_bid_and_reserves_the_strike(world: World) -> None:
    contract = world.market.quote(put(240), 310, 320)
    order = world.order("r1", contract, Side.SELL, 2, limit=310)
    assert order.status is OrderStatus.FILLED and order.filled_quantity == 2
    assert order.commission_cents == 130  # 2 × $0.65 (above the $1.00 minimum)
    state = world.state
    assert state.cash_cents == 5_000_000 + 2 * 310 * 100 - 130
    assert state.reserved_cents == 2 * 24_000 * 100  # $48,000 secures two 240 puts
    assert [(p.instrument, p.quantity, p.cost_cents) for p in state.positions] == [(contract, -2, -62_000)]
    [execution] = world.broker.executions(ACCOUNT)
    assert execution.price_cents == 310 and execution.cash_cents == 61_870


def test_marketable_limit_gets_the_better_touch(world: World) -> None:
    contract = world.market.quote(put(240), 310, 320)
    order = world.order("r1", contract, Side.SELL, 1, limit=300)
    assert order.average_fill_price == Decimal("3.10")


def test_not_cash_secured_is_rejected_and_changes_nothing() -> None:
    world = World(cash_cents=2_000_000)  # $20,000 cannot secure a $24,000 put
    contract = world.market.quote(put(240), 310, 320)
    before = world.state
    order = world.order("r1", contract, Side.SELL, 1, limit=310)
    assert order.status is OrderStatus.REJECTED and order.reject_reason is RejectReason.NOT_CASH_SECURED
    assert "24,000.00" in order.message
    assert world.state == before and world.broker.executions(ACCOUNT) == []


@pytest.mark.parametrize(
    ("make", "reason", "says"),
    [
        (
            lambda w: w.order("q", w.market.quote(put(240), 310, 320), Side.SELL, 0, limit=310),
            RejectReason.BAD_QUANTITY,
            "quantity",
        ),
        (
            lambda w: w.order("q", w.market.quote(put(240), 310, 320), Side.SELL, -3, limit=310),
            RejectReason.BAD_QUANTITY,
            "quantity",
        ),
        (
            lambda w: w.order("q", w.market.quote(put(240), 310, 320), Side.SELL, 1, limit=312),
            RejectReason.OFF_TICK,
            "limit_price 3.12",
        ),
        (
            lambda w: w.order("q", w.market.quote(put(240), 310, 320), Side.SELL, 1, limit=0),
            RejectReason.BAD_PRICE,
            "limit_price",
        ),
        (
            lambda w: w.order("q", put(777), Side.SELL, 1, limit=100),
            RejectReason.UNKNOWN_CONTRACT,
            "not a listed contract",
        ),
        (lambda w: w.order("q", call(260), Side.SELL, 1, limit=100), RejectReason.UNKNOWN_CONTRACT, "not a listed"),
        (
            lambda w: w.order("q", w.market.quote(call(260), 150, 155), Side.SELL, 1, limit=150),
            RejectReason.NOT_COVERED,
            "shares",
        ),
        (lambda w: w.order("q", Equity("TSLA"), Side.SELL, 10), RejectReason.NOT_COVERED, "no short stock"),
        (lambda w: w.order("q", Equity("TSLA"), Side.BUY, 1000), RejectReason.INSUFFICIENT_FUNDS, "free cash"),
    ],
)
def test_bad_orders_are_rejected_with_a_reason_and_change_nothing(world: World, make, reason, says) -> None:  # type: ignore[no-untyped-def]
    before = world.state
    order = make(world)
    assert order.status is OrderStatus.REJECTED
    assert order.reject_reason is reason and says in order.message
    assert world.state == before and world.broker.executions(ACCOUNT) == []


@pytest.mark.parametrize(
    "when",
    [ny(MON, 9, 29), ny(MON, 16), ny(date(2026, 12, 5), 11), ny(date(2026, 11, 26), 11)],
    ids=["before-open", "at-close", "saturday", "thanksgiving"],
)
def test_orders_when_the_market_is_closed_are_rejected(when) -> None:  # type: ignore[no-untyped-def]
    world = World()
    world.calendar.holidays.add(date(2026, 11, 26))
    world.clock = world.broker._clock = type(world.clock)(when)  # a clock at that moment
    world.broker._processed_until = when
    order = world.order("q", world.market.quote(put(240, date(2026, 12, 11)), 310, 320), Side.SELL, 1, limit=310)
    assert order.reject_reason is RejectReason.MARKET_CLOSED


def test_the_same_client_ref_never_places_twice(world: World) -> None:
    contract = world.market.quote(put(240), 310, 320)
    first = world.order("intent-1", contract, Side.SELL, 1, limit=310)
    again = world.order("intent-1", contract, Side.SELL, 1, limit=310)
    assert again == first
    assert len(world.broker.executions(ACCOUNT)) == 1 and len(world.broker.orders(ACCOUNT)) == 1
    assert world.broker.order_by_ref(ACCOUNT, "intent-1") == first
    with pytest.raises(Conflict, match="different order"):
        world.order("intent-1", contract, Side.SELL, 2, limit=310)


def test_a_rejected_ref_stays_rejected(world: World) -> None:
    contract = world.market.quote(put(240), 310, 320)
    first = world.order("intent-2", contract, Side.SELL, 1, limit=313)
    assert first.reject_reason is RejectReason.OFF_TICK
    assert world.order("intent-2", contract, Side.SELL, 1, limit=313) == first


def test_passive_limit_rests_until_the_market_comes_to_it() -> None:
    world = World(passive_fill_fraction="0")
    contract = world.market.quote(put(240), 300, 320)
    order = world.order("r1", contract, Side.SELL, 1, limit=310)  # mid: not marketable
    assert order.status is OrderStatus.SUBMITTED
    assert world.state.reserved_cents == 24_000 * 100  # the working short put already holds its collateral
    world.clock.advance(timedelta(minutes=15))
    world.market.quote(contract, 310, 330)
    world.broker.step(ACCOUNT)
    assert world.broker.order_by_ref(ACCOUNT, "r1").status is OrderStatus.FILLED


def test_limit_at_mid_fills_with_the_default_fill_model(world: World) -> None:
    contract = world.market.quote(put(240), 300, 320)
    assert world.order("r1", contract, Side.SELL, 1, limit=310).status is OrderStatus.FILLED


def test_partial_fills_charge_the_minimum_once() -> None:
    world = World(cash_cents=10_000_000, max_fill_per_step=1)
    contract = world.market.quote(put(240), 310, 320)
    order = world.order("r1", contract, Side.SELL, 3, limit=310)
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.filled_quantity == 1
    assert order.commission_cents == 100  # the $1.00 minimum on the first contract
    world.broker.step(ACCOUNT)
    world.broker.step(ACCOUNT)
    done = world.broker.order_by_ref(ACCOUNT, "r1")
    assert done is not None and done.status is OrderStatus.FILLED
    assert done.commission_cents == 195  # max(3 × $0.65, $1.00), not 3 × $1.00
    assert sum(e.commission_cents for e in world.broker.executions(ACCOUNT)) == 195


def test_day_orders_are_cancelled_at_the_close_gtc_orders_stay() -> None:
    world = World(passive_fill_fraction="0")
    contract = world.market.quote(put(240), 300, 320)
    day = world.order("day", contract, Side.SELL, 1, limit=315)
    gtc = world.order("gtc", contract, Side.SELL, 1, limit=315, time_in_force=TimeInForce.GTC)
    world.clock.advance_to(ny(MON, 16, 5))
    assert world.broker.order_by_ref(ACCOUNT, day.client_ref).status is OrderStatus.CANCELLED
    assert world.broker.order_by_ref(ACCOUNT, gtc.client_ref).status is OrderStatus.SUBMITTED
    assert world.state.reserved_cents == 24_000 * 100  # only the GTC order still holds collateral


def test_cancel_releases_what_the_order_held() -> None:
    world = World(passive_fill_fraction="0")
    contract = world.market.quote(put(240), 300, 320)
    order = world.order("r1", contract, Side.SELL, 1, limit=315)
    cancelled = world.broker.cancel_order(ACCOUNT, order.broker_order_id)
    assert cancelled.status is OrderStatus.CANCELLED and world.state.reserved_cents == 0
    with pytest.raises(NotFound):
        world.broker.cancel_order(ACCOUNT, "P404")


def test_otm_put_expires_worthless_and_frees_the_cash(world: World) -> None:
    contract = world.market.quote(put(240), 310, 320)
    world.order("r1", contract, Side.SELL, 1, limit=310)
    cash = world.state.cash_cents
    world.expire(close=255.0)
    state = world.state
    assert state.positions == () and state.reserved_cents == 0 and state.cash_cents == cash
    [settlement] = world.broker.settlements(ACCOUNT)
    assert settlement.kind is SettlementKind.EXPIRED_WORTHLESS and settlement.cash_cents == 0


def test_itm_put_is_assigned_then_a_covered_call_can_be_called_away(world: World) -> None:
    contract = world.market.quote(put(240), 310, 320)
    world.order("r1", contract, Side.SELL, 1, limit=310)
    cash_after_sale = world.state.cash_cents
    world.expire(close=231.37)
    state = world.state
    assert state.cash_cents == cash_after_sale - 24_000 * 100  # bought 100 shares at the strike, exactly
    assert [(p.instrument, p.quantity, p.cost_cents) for p in state.positions] == [(Equity("TSLA"), 100, 2_400_000)]
    [assigned] = world.broker.settlements(ACCOUNT)
    assert (assigned.kind, assigned.shares, assigned.cash_cents, assigned.underlying_close_cents) == (
        SettlementKind.ASSIGNED,
        100,
        -2_400_000,
        23_137,
    )
    # next week: a covered call on the assigned shares; a second one would be naked
    next_fri = FRI + timedelta(days=7)
    world.clock.advance_to(ny(next_fri - timedelta(days=4), 10))
    covered = world.market.quote(call(245, next_fri), 200, 210)
    assert world.order("c1", covered, Side.SELL, 1, limit=200).status is OrderStatus.FILLED
    naked = world.order("c2", covered, Side.SELL, 1, limit=200)
    assert naked.reject_reason is RejectReason.NOT_COVERED
    assert world.order("s1", Equity("TSLA"), Side.SELL, 100).reject_reason is RejectReason.NOT_COVERED
    cash = world.state.cash_cents
    world.expire(close=251.0, day=next_fri)
    called = world.broker.settlements(ACCOUNT)[-1]
    assert (called.kind, called.shares, called.cash_cents) == (SettlementKind.CALLED_AWAY, -100, 2_450_000)
    assert world.state.positions == () and world.state.cash_cents == cash + 2_450_000


def test_long_itm_call_is_exercised(world: World) -> None:
    contract = world.market.quote(call(240), 1_200, 1_210)
    world.order("b1", contract, Side.BUY, 1, limit=1_210)
    cash = world.state.cash_cents
    world.expire(close=260.0)
    [exercised] = world.broker.settlements(ACCOUNT)
    assert exercised.kind is SettlementKind.EXERCISED and exercised.shares == 100
    assert world.state.cash_cents == cash - 2_400_000


def test_buy_to_close_releases_collateral(world: World) -> None:
    contract = world.market.quote(put(240), 310, 320)
    world.order("s", contract, Side.SELL, 1, limit=310)
    world.market.quote(contract, 100, 105)
    world.order("b", contract, Side.BUY, 1, limit=105)
    state = world.state
    assert state.positions == () and state.reserved_cents == 0
    assert state.cash_cents == 5_000_000 + 31_000 - 100 - 10_500 - 100


# --- money invariant ---------------------------------------------------------------------------------

actions = st.lists(
    st.tuples(
        st.sampled_from(["sell_put", "buy_back", "sell_call", "buy_stock", "advance"]),
        st.integers(min_value=220, max_value=260),  # strike / close in dollars
        st.integers(min_value=1, max_value=4),  # quantity
        st.integers(min_value=5, max_value=900),  # premium in cents
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(actions=actions)
def test_cash_is_always_the_sum_of_what_happened_and_never_negative(actions) -> None:  # type: ignore[no-untyped-def]
    world = World(cash_cents=10_000_000)
    expiry = FRI
    for n, (action, level, qty, premium) in enumerate(actions):
        tick_premium = premium if premium < 300 else premium - premium % 5
        if action == "sell_put":
            world.order(
                f"a{n}",
                world.market.quote(put(level, expiry), tick_premium, tick_premium + 5),
                Side.SELL,
                qty,
                limit=tick_premium,
            )
        elif action == "sell_call":
            world.order(
                f"a{n}",
                world.market.quote(call(level, expiry), tick_premium, tick_premium + 5),
                Side.SELL,
                qty,
                limit=tick_premium,
            )
        elif action == "buy_back":
            world.order(
                f"a{n}",
                world.market.quote(put(level, expiry), tick_premium, tick_premium + 5),
                Side.BUY,
                qty,
                limit=tick_premium + 5,
            )
        elif action == "buy_stock":
            world.order(f"a{n}", Equity("TSLA"), Side.BUY, qty * 50)
        else:
            world.expire(close=float(level), day=expiry)
            expiry += timedelta(days=7)
            world.clock.advance_to(ny(expiry - timedelta(days=4), 10))
        state = world.state
        assert state.cash_cents >= 0 and state.free_cash_cents >= 0
    executions = world.broker.executions(ACCOUNT)
    settlements = world.broker.settlements(ACCOUNT)
    assert world.state.cash_cents == 10_000_000 + sum(e.cash_cents for e in executions) + sum(
        s.cash_cents for s in settlements
    )
    shares = sum(
        e.quantity if e.side is Side.BUY else -e.quantity for e in executions if isinstance(e.instrument, Equity)
    )
    shares += sum(s.shares for s in settlements)
    held = {p.instrument: p.quantity for p in world.state.positions}
    assert held.get(Equity("TSLA"), 0) == shares >= 0
