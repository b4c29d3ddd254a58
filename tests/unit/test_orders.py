"""Orders (domain-spec A8, B§3 CON): intent ids, the state machine, working rules and reconciliation."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alluse.adapters.paper.broker import PaperBroker, PaperBrokerSettings
from alluse.application.broker_port import BrokerOrder, Execution, OrderRequest, OrderStatus, OrderType, Side
from alluse.application.clock import SimulatedClock
from alluse.domain.config import OrdersConfig, default_config
from alluse.domain.errors import IllegalTransition, ValidationFailed
from alluse.domain.instruments import Equity, OptionContract, OptionRight
from alluse.domain.orders import (
    MAX_REF_LENGTH,
    Adopt,
    AlertMismatch,
    AlertOrphan,
    Cancel,
    ManagedOrder,
    OrderState,
    Quote,
    Resubmit,
    adopt_newer_version,
    apply_broker_order,
    concession_bound,
    due_for_reprice,
    grid_ceil,
    grid_floor,
    initial_limit,
    intent_id,
    intent_stem,
    intent_version,
    is_on_grid,
    legal_transitions,
    next_limit,
    plan_order,
    reconcile,
    record_resubmission,
    replacement,
    should_cancel,
    slice_intent_id,
    slice_order,
    slice_quantities,
    transition,
    with_version,
)
from alluse.domain.sleeves import SleeveKind
from tests.fakes import FakeCalendar, FakeMarket, ny

S = OrderState
NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
WEEK = date(2026, 11, 30)
PUT = OptionContract("TSLA", date(2026, 12, 4), 25_000, OptionRight.PUT)
SPY_PUT = OptionContract("SPY", date(2026, 12, 4), 60_000, OptionRight.PUT)
SHARES = Equity("TSLA")
RULE = default_config().ticks
ORDERS = default_config().orders
GEN = SleeveKind.GEN
BROKERAGE = "DU1000001"
SAFE_REF = re.compile(r"[A-Za-z0-9._-]+")


def ref(leg: str = "1", version: int = 1) -> str:
    return intent_id("ACC-1", GEN, WEEK, "OPEN", "TSLA", leg, version)


def planned(leg: str = "1", quantity: int = 10, limit: int = 305, version: int = 1) -> ManagedOrder:
    request = OrderRequest(ref(leg, version), PUT, Side.SELL, quantity, OrderType.LIMIT, limit)
    return plan_order("ACC-1", GEN, request, reference_quote=Quote(295, 315))


def walk(order: ManagedOrder, *states: OrderState, at: datetime = NOW) -> ManagedOrder:
    for state in states:
        order = transition(order, state, at, "test")
    return order


_PATH_TO = {
    S.PLANNED: (),
    S.SUBMITTING: (S.SUBMITTING,),
    S.WORKING: (S.SUBMITTING, S.WORKING),
    S.PARTIALLY_FILLED: (S.SUBMITTING, S.PARTIALLY_FILLED),
    S.CANCEL_REQUESTED: (S.SUBMITTING, S.WORKING, S.CANCEL_REQUESTED),
    S.FILLED: (S.SUBMITTING, S.FILLED),
    S.CANCELLED: (S.CANCELLED,),
    S.REJECTED: (S.SUBMITTING, S.REJECTED),
}


def in_state(state: OrderState, leg: str = "1", quantity: int = 10) -> ManagedOrder:
    order = walk(planned(leg, quantity), *_PATH_TO[state])
    if state in (S.WORKING, S.PARTIALLY_FILLED, S.CANCEL_REQUESTED, S.FILLED, S.REJECTED):
        order = replace(order, broker_order_id=f"P-{leg}")
    if state is S.PARTIALLY_FILLED:
        order = replace(order, filled_quantity=3, fill_value_cents=3 * 305 * 100, commission_cents=195)
    if state is S.FILLED:
        order = replace(order, filled_quantity=quantity, fill_value_cents=quantity * 305 * 100)
    return order


def at_broker(
    order: ManagedOrder,
    status: OrderStatus,
    filled: int = 0,
    value: int = 0,
    commission: int = 0,
    broker_id: str | None = None,
) -> BrokerOrder:
    return BrokerOrder(
        broker_id or order.broker_order_id or "P-9",
        BROKERAGE,
        order.request,
        status,
        NOW,
        NOW,
        filled,
        value,
        commission,
    )


def fill(order: ManagedOrder, execution_id: str, quantity: int, price: int, commission: int = 65) -> Execution:
    request = order.request
    return Execution(
        execution_id, "P-9", request.client_ref, request.instrument, request.side, quantity, price, commission, NOW
    )


# --------------------------------------------------------------------------------------------------
# Intent ids
# --------------------------------------------------------------------------------------------------


def test_intent_id_is_readable_deterministic_and_short() -> None:
    first = ref()
    assert first == ref()
    assert re.fullmatch(r"GEN-261130-OPEN-TSLA-[a-z2-7]{8}\.v1", first)
    assert len(first) <= MAX_REF_LENGTH and SAFE_REF.fullmatch(first)
    assert intent_id("ACC-1", GEN, datetime(2026, 11, 30, 9, 45), "OPEN", "TSLA", "1") == first


def test_a_reprice_keeps_the_stem_and_raises_the_version() -> None:
    v1, v2 = ref(), ref(version=2)
    assert intent_stem(v1) == intent_stem(v2) and v1 != v2
    assert (intent_version(v1), intent_version(v2)) == (1, 2)
    assert with_version(v1, 2) == v2
    with pytest.raises(ValidationFailed, match="version"):
        ref(version=0)
    with pytest.raises(ValidationFailed, match="longer than 40"):
        with_version(v1, 10**12)


def test_every_input_changes_the_id() -> None:
    base = ("ACC-1", GEN, WEEK, "OPEN", "TSLA", "1")
    variants = [
        ("ACC-2", GEN, WEEK, "OPEN", "TSLA", "1"),
        ("ACC-1", SleeveKind.REV, WEEK, "OPEN", "TSLA", "1"),
        ("ACC-1", GEN, WEEK + timedelta(7), "OPEN", "TSLA", "1"),
        ("ACC-1", GEN, WEEK, "OPENX", "TSLA", "1"),  # same readable prefix, different hash
        ("ACC-1", GEN, WEEK, "OPEN", "TSLAQ", "1"),
        ("ACC-1", GEN, WEEK, "OPEN", "TSLA", "2"),
    ]
    ids = {intent_id(*base)} | {intent_id(*v) for v in variants}
    assert len(ids) == len(variants) + 1


@pytest.mark.parametrize("blank", ["account_id", "purpose", "underlying"])
def test_blank_inputs_are_refused(blank: str) -> None:
    args = {"account_id": "A", "purpose": "OPEN", "underlying": "TSLA"} | {blank: "  "}
    with pytest.raises(ValidationFailed, match=blank):
        intent_id(args["account_id"], GEN, WEEK, args["purpose"], args["underlying"], "1")


def test_a_foreign_ref_is_not_an_intent_id() -> None:
    with pytest.raises(ValidationFailed, match="not an ALL-USE intent id"):
        intent_stem("manual-order-7")


_text = st.text(min_size=1, max_size=30).filter(str.strip)
_inputs = st.tuples(
    _text, st.sampled_from(SleeveKind), st.dates(), _text, _text, st.text(max_size=10), st.integers(1, 99_999)
)


@given(_inputs)
def test_any_input_gives_a_safe_short_parseable_id(args: tuple[str, SleeveKind, date, str, str, str, int]) -> None:
    made = intent_id(*args)
    assert len(made) <= MAX_REF_LENGTH and SAFE_REF.fullmatch(made)
    assert intent_version(made) == args[-1]
    assert made == intent_id(*args)


@given(_inputs, _inputs)
def test_distinct_inputs_give_distinct_ids(
    a: tuple[str, SleeveKind, date, str, str, str, int], b: tuple[str, SleeveKind, date, str, str, str, int]
) -> None:
    assert (intent_id(*a) == intent_id(*b)) == (a == b)


def test_slice_ids_are_distinct_deterministic_and_not_sliced_again() -> None:
    parent = ref()
    children = [slice_intent_id(parent, k) for k in range(1, 100)]
    assert len(set(children)) == 99 and parent not in children
    assert all(len(c) <= MAX_REF_LENGTH and SAFE_REF.fullmatch(c) and intent_version(c) == 1 for c in children)
    assert slice_intent_id(parent, 3) == slice_intent_id(parent, 3)
    assert intent_stem(children[1]) == f"{intent_stem(parent)}-2"
    with pytest.raises(ValidationFailed, match="already a slice"):
        slice_intent_id(children[0], 1)


# --------------------------------------------------------------------------------------------------
# State machine
# --------------------------------------------------------------------------------------------------

EXPECTED = {
    S.PLANNED: {S.SUBMITTING, S.CANCELLED},
    S.SUBMITTING: {S.WORKING, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED, S.REJECTED},
    S.WORKING: {S.PARTIALLY_FILLED, S.FILLED, S.CANCEL_REQUESTED, S.CANCELLED, S.REJECTED},
    S.PARTIALLY_FILLED: {S.FILLED, S.CANCEL_REQUESTED, S.CANCELLED},
    S.CANCEL_REQUESTED: {S.CANCELLED, S.FILLED, S.WORKING, S.PARTIALLY_FILLED},
    S.FILLED: set(),
    S.CANCELLED: set(),
    S.REJECTED: set(),
}
LEGAL_PAIRS = [(a, b) for a in S for b in sorted(EXPECTED[a])]
ILLEGAL_PAIRS = [(a, b) for a in S for b in S if b not in EXPECTED[a]]


def test_the_transition_table_is_the_documented_one() -> None:
    assert {state: set(legal_transitions(state)) for state in S} == EXPECTED
    assert {s for s in S if s.is_terminal} == {S.FILLED, S.CANCELLED, S.REJECTED}


@pytest.mark.parametrize(("start", "to"), LEGAL_PAIRS)
def test_every_legal_transition(start: OrderState, to: OrderState) -> None:
    order = replace(planned(), state=start)
    moved = transition(order, to, NOW, "because")
    assert moved.state is to
    assert moved.history[-1].from_state is start and moved.history[-1].to_state is to
    assert moved.history[-1].why == "because" and moved.history[-1].at == NOW


@pytest.mark.parametrize(("start", "to"), ILLEGAL_PAIRS)
def test_every_other_transition_is_illegal(start: OrderState, to: OrderState) -> None:
    order = replace(planned(), state=start)
    with pytest.raises(IllegalTransition) as caught:
        transition(order, to, NOW, "no")
    assert f"from {start.value} to {to.value}" in str(caught.value)


def test_submitting_counts_attempts_and_starts_the_clocks() -> None:
    order = walk(planned(), S.SUBMITTING)
    assert (order.attempts, order.submitted_at, order.started_at) == (1, NOW, NOW)
    later = record_resubmission(order, NOW + timedelta(seconds=5))
    assert later.state is S.SUBMITTING and later.attempts == 2
    assert later.started_at == NOW and later.submitted_at == NOW + timedelta(seconds=5)
    with pytest.raises(IllegalTransition):
        record_resubmission(walk(order, S.WORKING), NOW)


def test_a_managed_order_keeps_its_ref_and_quantities_honest() -> None:
    order = planned()
    with pytest.raises(ValidationFailed, match="differs"):
        replace(order, intent_id=ref("2"))
    with pytest.raises(ValidationFailed, match="impossible"):
        replace(order, filled_quantity=11)
    with pytest.raises(ValidationFailed, match="limit"):
        plan_order("ACC-1", GEN, OrderRequest(ref(), PUT, Side.SELL, 1, OrderType.LIMIT, None))


# --------------------------------------------------------------------------------------------------
# Working rules: limits, reprice, timeout, replacement, slicing
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bid", "ask", "instrument", "sell", "buy"),
    [
        (295, 305, PUT, 300, 300),  # mid on the grid
        (296, 305, PUT, 305, 300),  # mid 300.5: 5-cent ticks from $3
        (150, 153, PUT, 152, 151),  # mid 151.5: penny ticks below $3
        (296, 305, SPY_PUT, 301, 300),  # SPY quotes in pennies at any price
        (0, 1, PUT, 1, 1),  # nobody bids: never a zero limit
        (25_001, 25_004, SHARES, 25_003, 25_002),
    ],
)
def test_initial_limit_is_the_mid_on_the_grid_rounded_our_way(
    bid: int, ask: int, instrument: OptionContract | Equity, sell: int, buy: int
) -> None:
    quote = Quote(bid, ask)
    assert initial_limit(quote, Side.SELL, RULE, instrument) == sell
    assert initial_limit(quote, Side.BUY, RULE, instrument) == buy


def test_a_crossed_quote_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="bid"):
        Quote(310, 300)


def _grid_price(underlying_ticks: int) -> int:
    """A price on the default option grid, from an index of grid points."""
    return underlying_ticks if underlying_ticks < 300 else 300 + 5 * (underlying_ticks - 300)


_quotes = st.tuples(st.integers(0, 800), st.integers(0, 40)).map(
    lambda t: Quote(_grid_price(t[0]), _grid_price(t[0] + max(t[1], 1)))
)


@given(_quotes, st.sampled_from(Side))
def test_initial_limit_is_on_the_grid_inside_the_quote(quote: Quote, side: Side) -> None:
    limit = initial_limit(quote, side, RULE, PUT)
    assert is_on_grid(RULE, PUT, limit)
    assert max(quote.bid_cents, 1) <= limit <= quote.ask_cents
    assert (limit >= quote.mid) if side is Side.SELL else (limit <= quote.mid or limit == 1)


@given(st.fractions(min_value=0, max_value=2_000))
def test_grid_rounding_brackets_the_price(price: Fraction) -> None:
    low, high = grid_floor(RULE, PUT, price), grid_ceil(RULE, PUT, price)
    assert low <= price <= high
    assert low == 0 or is_on_grid(RULE, PUT, low)
    assert high == 0 or is_on_grid(RULE, PUT, high)


def test_reprice_moves_one_tick_toward_the_touch_and_stops_at_the_concession() -> None:
    quote = Quote(280, 320)  # mid 300; 5 % worse for a seller is 285
    mid = quote.mid
    assert concession_bound(mid, Side.SELL, RULE, PUT, Fraction("0.05")) == 285
    limits = [initial_limit(quote, Side.SELL, RULE, PUT)]
    while (step := next_limit(limits[-1], Side.SELL, quote, mid, RULE, PUT, ORDERS)) is not None:
        limits.append(step)
    assert limits == [300, 299, *range(298, 284, -1)]
    assert limits[-1] == 285  # the concession limit, short of the 280 bid


def test_reprice_stops_at_the_touch_when_it_comes_first() -> None:
    quote = Quote(295, 310)  # mid 302.5; a buyer's 5 % bound is 315, the 310 ask comes first
    limits = [initial_limit(quote, Side.BUY, RULE, PUT)]
    while (step := next_limit(limits[-1], Side.BUY, quote, quote.mid, RULE, PUT, ORDERS)) is not None:
        limits.append(step)
    assert limits == [300, 305, 310]


def test_reprice_step_is_configurable() -> None:
    quote = Quote(280, 320)
    two = OrdersConfig(reprice_step_ticks=2)
    assert next_limit(300, Side.SELL, quote, quote.mid, RULE, PUT, two) == 298


@settings(max_examples=200)
@given(_quotes, _quotes, st.sampled_from(Side), st.integers(1, 5))
def test_repricing_never_passes_the_touch_or_the_concession(start: Quote, now: Quote, side: Side, step: int) -> None:
    working = OrdersConfig(reprice_step_ticks=step)
    bound = concession_bound(start.mid, side, RULE, PUT, Fraction(ORDERS.max_price_concession_pct))
    limit = initial_limit(start, side, RULE, PUT)
    for _ in range(2_000):
        moved = next_limit(limit, side, now, start.mid, RULE, PUT, working)
        if moved is None:
            break
        assert is_on_grid(RULE, PUT, moved)
        if side is Side.SELL:
            assert limit > moved >= max(bound, now.bid_cents)
        else:
            assert limit < moved <= min(bound, now.ask_cents)
        limit = moved
    else:
        pytest.fail("repricing did not stop")


def test_reprice_and_timeout_are_due_on_the_configured_seconds() -> None:
    order = walk(planned(), S.SUBMITTING)
    assert not should_cancel(order, NOW + timedelta(hours=1), ORDERS)  # in flight: reconcile first
    order = walk(order, S.WORKING)
    reprice, timeout = timedelta(seconds=ORDERS.reprice_after_seconds), timedelta(seconds=ORDERS.timeout_seconds)
    assert not due_for_reprice(order, NOW + reprice - timedelta(microseconds=1), ORDERS)
    assert due_for_reprice(order, NOW + reprice, ORDERS)
    assert not should_cancel(order, NOW + timeout - timedelta(microseconds=1), ORDERS)
    assert should_cancel(order, NOW + timeout, ORDERS)
    assert not should_cancel(walk(order, S.FILLED), NOW + timeout, ORDERS)


def test_a_replacement_is_the_next_version_for_what_is_left() -> None:
    first = replace(in_state(S.PARTIALLY_FILLED), broker_order_id="P-1")
    with pytest.raises(IllegalTransition, match="only once CANCELLED"):
        replacement(first, 300)
    cancelled = walk(first, S.CANCEL_REQUESTED, S.CANCELLED)
    second = replacement(cancelled, 300)
    assert second.intent_id == ref(version=2) == second.request.client_ref
    assert (second.state, second.request.quantity, second.request.limit_price_cents) == (S.PLANNED, 7, 300)
    assert second.reprices == 1 and second.reference_quote == first.reference_quote
    sent = walk(second, S.SUBMITTING, S.WORKING, at=NOW + timedelta(seconds=30))
    assert sent.started_at == NOW  # the timeout counts from the intent's first placement
    assert should_cancel(sent, NOW + timedelta(seconds=ORDERS.timeout_seconds), ORDERS)
    filled = replace(walk(first, S.FILLED), filled_quantity=10)
    with pytest.raises(IllegalTransition):
        replacement(filled, 300)


@given(st.integers(1, 10_000), st.integers(1, 500))
def test_slice_quantities_are_few_even_and_complete(quantity: int, most: int) -> None:
    parts = slice_quantities(quantity, most)
    assert sum(parts) == quantity and max(parts) <= most
    assert len(parts) == -(-quantity // most) and max(parts) - min(parts) <= 1
    assert list(parts) == sorted(parts, reverse=True)


def test_large_option_orders_are_sliced_into_child_intents() -> None:
    order = planned(quantity=120)
    children = slice_order(order, ORDERS)
    assert [c.request.quantity for c in children] == [40, 40, 40]
    assert [c.intent_id for c in children] == [slice_intent_id(order.intent_id, k) for k in (1, 2, 3)]
    assert all(c.request.client_ref == c.intent_id and c.state is S.PLANNED for c in children)
    assert slice_order(order, ORDERS) == children
    assert slice_order(planned(quantity=50), ORDERS) == (planned(quantity=50),)
    shares = plan_order("ACC-1", GEN, OrderRequest(ref("s"), SHARES, Side.BUY, 500, OrderType.LIMIT, 25_000))
    assert slice_order(shares, ORDERS) == (shares,)
    with pytest.raises(IllegalTransition):
        slice_order(walk(order, S.SUBMITTING), ORDERS)


# --------------------------------------------------------------------------------------------------
# Reconciliation
# --------------------------------------------------------------------------------------------------


def test_crash_between_placement_and_acknowledgement_adopts_not_resubmits() -> None:
    order = in_state(S.SUBMITTING)
    result = reconcile([order], [at_broker(order, OrderStatus.SUBMITTED, broker_id="P-77")], [], NOW, ORDERS)
    (adopted,) = result.orders
    assert (adopted.state, adopted.broker_order_id) == (S.WORKING, "P-77")
    assert result.of(Resubmit) == () and len(result.of(Adopt)) == 1


def test_broker_knows_nothing_resubmit_under_the_same_id_then_ask_a_human() -> None:
    order = in_state(S.SUBMITTING)
    result = reconcile([order], [], [], NOW, ORDERS)
    assert result.actions == (Resubmit(order.intent_id, order.request),)
    assert result.orders == (order,)  # still in flight, never REJECTED
    tired = replace(order, attempts=ORDERS.max_submit_attempts)
    stuck = reconcile([tired], [], [], NOW, ORDERS)
    assert stuck.of(Resubmit) == () and len(stuck.of(AlertMismatch)) == 1
    assert stuck.orders[0].state is S.SUBMITTING
    patient = OrdersConfig(max_submit_attempts=ORDERS.max_submit_attempts + 1)  # the limit is configuration
    assert reconcile([tired], [], [], NOW, patient).actions == (Resubmit(tired.intent_id, tired.request),)


def test_fills_are_adopted_to_the_cent() -> None:
    order = in_state(S.WORKING)
    partial = reconcile(
        [order], [at_broker(order, OrderStatus.PARTIALLY_FILLED, 4, 4 * 305 * 100, 260)], [], NOW, ORDERS
    )
    (part,) = partial.orders
    assert (part.state, part.filled_quantity, part.fill_value_cents, part.commission_cents) == (
        S.PARTIALLY_FILLED,
        4,
        122_000,
        260,
    )
    full = reconcile(partial.orders, [at_broker(order, OrderStatus.FILLED, 10, 304_950, 650)], [], NOW, ORDERS)
    (done,) = full.orders
    assert (done.state, done.filled_quantity, done.fill_value_cents, done.commission_cents) == (
        S.FILLED,
        10,
        304_950,
        650,
    )


def test_executions_without_a_broker_order_are_adopted_never_resubmitted() -> None:
    order = in_state(S.SUBMITTING)
    fills = [fill(order, "E1", 6, 305), fill(order, "E1", 6, 305), fill(order, "E2", 4, 300)]  # E1 twice
    result = reconcile([order], [], fills, NOW, ORDERS)
    (adopted,) = result.orders
    assert (adopted.state, adopted.filled_quantity, adopted.fill_value_cents) == (S.FILLED, 10, 303_000)
    assert adopted.commission_cents == 130 and result.of(Resubmit) == ()


def test_an_orphan_broker_order_is_reported_not_touched() -> None:
    stranger = replace(
        at_broker(planned(), OrderStatus.SUBMITTED, broker_id="P-5"),
        request=OrderRequest("manual-1", PUT, Side.BUY, 1, OrderType.LIMIT, 300),
    )
    result = reconcile([], [stranger], [], NOW, ORDERS)
    assert result.actions == (AlertOrphan(stranger),)


def reprice_at_broker(prior: ManagedOrder, status: OrderStatus, limit: int = 300, **changes: object) -> BrokerOrder:
    """The broker's record of the next version of `prior` (a reprice the store has not heard of)."""
    request = OrderRequest(with_version(prior.intent_id, prior.version + 1), PUT, Side.SELL, 10, OrderType.LIMIT, limit)
    return replace(at_broker(prior, status, broker_id="P-2"), request=replace(request, **changes))


def test_a_newer_version_of_a_known_intent_found_at_the_broker_is_adopted_not_an_orphan() -> None:
    """A reprice is written behind: if memory is lost first, the broker's order under the next version
    is the intent's, taken from the version before it."""
    placed = walk(planned(), S.SUBMITTING, S.WORKING, S.CANCEL_REQUESTED, S.CANCELLED, at=NOW - timedelta(minutes=5))
    cancelled = replace(placed, broker_order_id="P-1")
    v2 = reprice_at_broker(cancelled, OrderStatus.SUBMITTED)
    result = reconcile([cancelled], [v2], [], NOW, ORDERS)
    assert result.of(AlertOrphan) == () and result.of(AlertMismatch) == ()
    (old, adopted) = result.orders
    assert old == cancelled
    assert (adopted.intent_id, adopted.state, adopted.broker_order_id) == (v2.client_ref, S.WORKING, "P-2")
    assert adopted.request == v2.request and adopted.sleeve is GEN
    assert adopted.reference_quote == cancelled.reference_quote
    assert adopted.started_at == NOW - timedelta(minutes=5)  # the intent's timeout runs from its first placement
    assert [type(a) for a in result.actions] == [Adopt]
    again = reconcile(list(result.orders), [v2], [], NOW, ORDERS)
    assert again.actions == () and again.orders == result.orders  # idempotent


def test_a_newer_version_is_adopted_from_a_final_version_in_the_history() -> None:
    """The version before it need not be in flight: reconciliation finds it among the account's orders."""
    cancelled = replace(in_state(S.CANCELLED), broker_order_id="P-1")
    v2 = reprice_at_broker(cancelled, OrderStatus.SUBMITTED)
    assert reconcile([], [v2], [], NOW, ORDERS).of(AlertOrphan) == (AlertOrphan(v2),)  # without it: unknown
    result = reconcile([], [v2], [], NOW, ORDERS, history={cancelled.intent_id: cancelled})
    assert result.of(AlertOrphan) == () and [o.intent_id for o in result.orders] == [v2.client_ref]


def test_a_newer_version_already_filled_at_the_broker_is_adopted_filled() -> None:
    cancelled = replace(in_state(S.CANCELLED), broker_order_id="P-1")
    v2 = reprice_at_broker(cancelled, OrderStatus.FILLED)
    v2 = replace(v2, filled_quantity=10, fill_value_cents=300_000, commission_cents=650)
    adopted = adopt_newer_version(cancelled, v2, NOW)
    assert not isinstance(adopted, str)
    assert (adopted.state, adopted.filled_quantity, adopted.fill_value_cents) == (S.FILLED, 10, 300_000)


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"instrument": SPY_PUT}, "different instrument or side"),
        ({"side": Side.BUY}, "different instrument or side"),
        ({"quantity": 11}, "for more than"),
    ],
)
def test_a_broker_order_that_cannot_be_the_next_version_is_a_mismatch(changes: dict[str, object], why: str) -> None:
    cancelled = replace(in_state(S.CANCELLED), broker_order_id="P-1")
    impostor = reprice_at_broker(cancelled, OrderStatus.SUBMITTED, **changes)
    result = reconcile([cancelled], [impostor], [], NOW, ORDERS)
    (mismatch,) = result.of(AlertMismatch)
    assert mismatch.intent_id == impostor.client_ref and why in mismatch.why
    assert result.orders == (cancelled,) and result.of(AlertOrphan) == ()


def test_a_newer_version_for_more_than_was_left_to_fill_is_not_adopted() -> None:
    partly = replace(in_state(S.CANCELLED), broker_order_id="P-1", filled_quantity=3, fill_value_cents=3 * 30_500)
    assert "left to fill" in str(adopt_newer_version(partly, reprice_at_broker(partly, OrderStatus.SUBMITTED), NOW))
    rest = reprice_at_broker(partly, OrderStatus.SUBMITTED, quantity=7)
    assert not isinstance(adopt_newer_version(partly, rest, NOW), str)


def test_an_older_version_is_not_adopted_as_newer() -> None:
    v2 = walk(replacement(walk(planned(), S.CANCELLED), 300), S.SUBMITTING)
    v1_at_broker = at_broker(planned(), OrderStatus.CANCELLED, broker_id="P-1")
    assert "not a newer version" in str(adopt_newer_version(v2, v1_at_broker, NOW))


def test_a_fill_can_win_the_race_with_a_cancel() -> None:
    order = in_state(S.CANCEL_REQUESTED)
    result = reconcile([order], [at_broker(order, OrderStatus.FILLED, 10, 305_000, 650)], [], NOW, ORDERS)
    assert result.orders[0].state is S.FILLED and result.of(Cancel) == ()


def test_a_cancel_the_broker_has_not_done_is_sent_again() -> None:
    order = in_state(S.CANCEL_REQUESTED)
    result = reconcile([order], [at_broker(order, OrderStatus.PARTIALLY_FILLED, 2, 61_000, 130)], [], NOW, ORDERS)
    (kept,) = result.orders
    assert kept.state is S.CANCEL_REQUESTED and kept.filled_quantity == 2
    assert result.of(Cancel) == (Cancel(order.intent_id, "P-1", "cancel requested; the broker still works it"),)


def test_an_acknowledged_order_missing_at_the_broker_is_reported_not_resent() -> None:
    order = in_state(S.WORKING)
    result = reconcile([order], [], [], NOW, ORDERS)
    assert result.of(Resubmit) == () and len(result.of(AlertMismatch)) == 1
    assert result.orders == (order,)


def test_a_withdrawn_order_found_working_at_the_broker_is_cancelled() -> None:
    order = in_state(S.CANCELLED)  # withdrawn while PLANNED, but it had been placed after all
    result = reconcile([order], [at_broker(order, OrderStatus.SUBMITTED, broker_id="P-3")], [], NOW, ORDERS)
    assert [type(a) for a in result.actions] == [AlertMismatch, Cancel]
    assert result.orders == (order,)


def test_a_planned_order_the_broker_holds_passes_through_submitting() -> None:
    order = planned()
    result = reconcile([order], [at_broker(order, OrderStatus.SUBMITTED, broker_id="P-4")], [], NOW, ORDERS)
    (adopted,) = result.orders
    assert [(h.from_state, h.to_state) for h in adopted.history] == [
        (S.PLANNED, S.SUBMITTING),
        (S.SUBMITTING, S.WORKING),
    ]


def test_only_the_newest_version_of_an_intent_stays_live() -> None:
    old = in_state(S.WORKING)
    new = walk(replacement(walk(planned(), S.CANCELLED), 300), S.SUBMITTING)
    brokers = [at_broker(old, OrderStatus.SUBMITTED, broker_id="P-1"), at_broker(new, OrderStatus.SUBMITTED, 0)]
    brokers[1] = replace(brokers[1], broker_order_id="P-2")
    result = reconcile([old, new], brokers, [], NOW, ORDERS)
    assert result.of(Cancel) == (Cancel(old.intent_id, "P-1", f"a newer version of intent {old.stem} is live"),)


def test_no_resubmission_while_another_version_is_live() -> None:
    old = in_state(S.WORKING)
    new = walk(replacement(walk(planned(), S.CANCELLED), 300), S.SUBMITTING)
    result = reconcile([old, new], [at_broker(old, OrderStatus.SUBMITTED)], [], NOW, ORDERS)
    assert result.of(Resubmit) == ()
    assert any(a.intent_id == new.intent_id for a in result.of(AlertMismatch))


def test_broker_refusal_is_the_only_way_to_rejected() -> None:
    order = in_state(S.SUBMITTING)
    rejected = apply_broker_order(order, at_broker(order, OrderStatus.REJECTED), NOW)
    assert rejected.state is S.REJECTED
    with pytest.raises(IllegalTransition, match="cannot become"):
        apply_broker_order(in_state(S.CANCELLED), at_broker(order, OrderStatus.SUBMITTED), NOW)


def test_duplicate_local_refs_are_refused() -> None:
    with pytest.raises(ValidationFailed, match="share one intent id"):
        reconcile([planned(), planned()], [], [], NOW, ORDERS)


@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[list[ManagedOrder], list[BrokerOrder], list[Execution]]:
    local: list[ManagedOrder] = []
    brokers: list[BrokerOrder] = []
    executions: list[Execution] = []
    for index in range(draw(st.integers(1, 5))):
        order = in_state(draw(st.sampled_from(S)), leg=str(index))
        order = replace(order, attempts=draw(st.integers(0, 4)))
        local.append(order)
        for copy in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
            status = draw(st.sampled_from(OrderStatus))
            filled = draw(st.integers(0, 12))
            request = order.request if draw(st.booleans()) else replace(order.request, quantity=12)
            brokers.append(
                BrokerOrder(f"P-{index}-{copy}", BROKERAGE, request, status, NOW, NOW, filled, filled * 30_500, 65)
            )
        for number in range(draw(st.integers(0, 3))):
            executions.append(fill(order, f"E-{index}-{number}", draw(st.integers(1, 6)), 305))
    if draw(st.booleans()):  # a later version of the first intent
        v2 = replace(planned("0", version=2), state=draw(st.sampled_from(S)))
        local.append(v2)
        if draw(st.booleans()):
            brokers.append(BrokerOrder("P-v2", BROKERAGE, v2.request, OrderStatus.SUBMITTED, NOW, NOW))
    if draw(st.booleans()):
        foreign = OrderRequest("manual-1", PUT, Side.BUY, 1, OrderType.LIMIT, 300)
        brokers.append(BrokerOrder("P-x", BROKERAGE, foreign, draw(st.sampled_from(OrderStatus)), NOW, NOW))
    return local, brokers, executions


@settings(max_examples=300)
@given(_scenarios())
def test_reconciling_twice_changes_nothing_more(
    scenario: tuple[list[ManagedOrder], list[BrokerOrder], list[Execution]],
) -> None:
    local, brokers, executions = scenario
    first = reconcile(local, brokers, executions, NOW, ORDERS)
    second = reconcile(first.orders, brokers, executions, NOW + timedelta(minutes=1), ORDERS)
    assert second.orders == first.orders
    assert second.of(Adopt) == ()
    assert set(second.actions) <= set(first.actions)


@settings(max_examples=300)
@given(_scenarios())
def test_reconciliation_never_makes_two_live_orders_or_a_silent_reject(
    scenario: tuple[list[ManagedOrder], list[BrokerOrder], list[Execution]],
) -> None:
    local, brokers, executions = scenario
    result = reconcile(local, brokers, executions, NOW, ORDERS)
    by_ref = {b.client_ref for b in brokers}
    live_stems = {intent_stem(b.client_ref) for b in brokers if not b.status.is_final and b.client_ref != "manual-1"}
    for action in result.of(Resubmit):
        assert action.intent_id not in by_ref and intent_stem(action.intent_id) not in live_stems
        assert action.request.client_ref == action.intent_id
    rejected_at_broker = {b.client_ref for b in brokers if b.status is OrderStatus.REJECTED}
    for before, after in zip(local, result.orders, strict=True):
        assert after.intent_id == before.intent_id
        if after.state is S.REJECTED and before.state is not S.REJECTED:
            assert after.intent_id in rejected_at_broker


def test_recovery_against_the_paper_broker_never_places_twice() -> None:
    clock = SimulatedClock(ny(WEEK, 10))
    market = FakeMarket()
    market.prices["TSLA"] = 250.0
    market.quote(PUT, 300, 320)
    broker = PaperBroker(market, FakeCalendar(), clock, PaperBrokerSettings(passive_fill_fraction=Decimal(0)))
    broker.open_account(BROKERAGE, 10_000_000)
    quote = Quote(300, 320)
    request = OrderRequest(ref(), PUT, Side.SELL, 1, OrderType.LIMIT, initial_limit(quote, Side.SELL, RULE, PUT))
    order = walk(plan_order("ACC-1", GEN, request, reference_quote=quote), S.SUBMITTING)
    broker.place_order(BROKERAGE, order.request)  # ...and the process dies before it hears back

    result = reconcile([order], broker.orders(BROKERAGE), broker.executions(BROKERAGE), ny(WEEK, 10, 1), ORDERS)
    assert result.of(Resubmit) == () and result.orders[0].state is S.WORKING

    lost = walk(plan_order("ACC-1", GEN, replace(request, client_ref=ref("2"))), S.SUBMITTING)
    again = reconcile([lost], broker.orders(BROKERAGE), [], ny(WEEK, 10, 1), ORDERS)  # never reached the broker
    (resubmit,) = again.of(Resubmit)
    placed = broker.place_order(BROKERAGE, resubmit.request)
    assert broker.place_order(BROKERAGE, resubmit.request) == placed  # the same ref cannot make a second order
    assert len(broker.orders(BROKERAGE)) == 2
    assert apply_broker_order(record_resubmission(lost, clock.now()), placed, clock.now()).state is S.WORKING
