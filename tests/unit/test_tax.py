"""FIFO tax lots (A12, B§9): exact cents, holding periods, assignment basis, expiry, the estimate, and money
conservation over random fills."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alluse.domain.brokerage import Side
from alluse.domain.config import TaxConfig
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight
from alluse.domain.sleeves import SleeveKind
from alluse.domain.tax import (
    CloseReason,
    PendingLoss,
    TaxableEvent,
    TaxLedger,
    TaxLot,
    Term,
    apply_assignment,
    apply_expiry,
    apply_fill,
    estimate_tax,
    holding_term,
    unrealized_cents,
)

CFG = TaxConfig()
GEN, REV, COM = SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM
STOCK = Equity("TSLA")
D0 = date(2026, 1, 5)
PUT_240 = OptionContract("TSLA", date(2026, 1, 16), 24_000, OptionRight.PUT)
CALL_250 = OptionContract("TSLA", date(2026, 2, 20), 25_000, OptionRight.CALL)
LEAPS = OptionContract("TSLA", date(2027, 6, 17), 20_000, OptionRight.CALL)


def fill(
    ledger: TaxLedger,
    instrument: Instrument,
    side: Side,
    quantity: int,
    price: int,
    on: date = D0,
    *,
    commission: int = 0,
    sleeve: SleeveKind = GEN,
) -> tuple[TaxLedger, list[TaxableEvent]]:
    return apply_fill(ledger, sleeve, instrument, side, quantity, price, commission, on, cfg=CFG)


def buy(
    ledger: TaxLedger,
    instrument: Instrument,
    quantity: int,
    price: int,
    on: date = D0,
    *,
    commission: int = 0,
    sleeve: SleeveKind = GEN,
) -> TaxLedger:
    after, events = fill(ledger, instrument, Side.BUY, quantity, price, on, commission=commission, sleeve=sleeve)
    assert events == []
    return after


# --- FIFO and exact cents ---------------------------------------------------------------------------------


def test_a_sale_closes_the_oldest_lots_first_and_splits_the_last_one_exactly() -> None:
    ledger = buy(TaxLedger(), STOCK, 3, 1_000, D0, commission=1)  # cost 3,001
    ledger = buy(ledger, STOCK, 5, 1_100, D0 + timedelta(days=1))  # cost 5,500
    after, events = fill(ledger, STOCK, Side.SELL, 4, 1_200, D0 + timedelta(days=2), commission=7)

    # proceeds 4,800 − 7 = 4,793 spread 3:1 — floor for the first piece, the remainder for the last
    assert [(e.quantity, e.opened_on, e.proceeds_cents, e.cost_cents) for e in events] == [
        (3, D0, 3_594, 3_001),
        (1, D0 + timedelta(days=1), 1_199, 1_100),
    ]
    assert sum(e.proceeds_cents for e in events) == 4_793
    assert [e.gain_cents for e in events] == [593, 99]
    assert after.lots_of(GEN, STOCK) == (TaxLot(4, D0 + timedelta(days=1), 4_400),)


def test_closing_a_lot_one_share_at_a_time_loses_no_cent() -> None:
    ledger = buy(TaxLedger(), STOCK, 3, 333, D0, commission=2)  # cost 1,001: not divisible by 3
    costs = []
    for day in range(1, 4):
        ledger, events = fill(ledger, STOCK, Side.SELL, 1, 400, D0 + timedelta(days=day))
        costs += [e.cost_cents for e in events]
    assert costs == [333, 334, 334]  # floor each time; the remainder stays with the lot
    assert sum(costs) == 1_001
    assert ledger.lots == {}


def test_a_buy_back_closes_short_option_lots_across_two_lots() -> None:
    ledger, _ = fill(TaxLedger(), PUT_240, Side.SELL, 2, 300, D0, commission=130)  # received 59,870
    ledger, _ = fill(ledger, PUT_240, Side.SELL, 3, 350, D0 + timedelta(days=1), commission=195)  # 104,805
    after, events = fill(ledger, PUT_240, Side.BUY, 4, 100, D0 + timedelta(days=2), commission=5)

    # cost 40,005 spread 2:2 → 20,002 and 20,003; the second lot gives 2 of its 3 contracts (floor 69,870)
    assert [(e.quantity, e.proceeds_cents, e.cost_cents, e.gain_cents) for e in events] == [
        (-2, 59_870, 20_002, 39_868),
        (-2, 69_870, 20_003, 49_867),
    ]
    assert after.lots_of(GEN, PUT_240) == (TaxLot(-1, D0 + timedelta(days=1), 34_935),)
    assert all(e.reason is CloseReason.TRADED and e.term is Term.SHORT for e in events)


def test_sleeves_keep_their_own_lots() -> None:
    ledger = buy(TaxLedger(), STOCK, 10, 1_000, D0, sleeve=GEN)
    ledger = buy(ledger, STOCK, 10, 2_000, D0 + timedelta(days=1), sleeve=COM)
    after, events = fill(ledger, STOCK, Side.SELL, 10, 2_500, D0 + timedelta(days=2), sleeve=COM)
    assert [(e.sleeve, e.cost_cents) for e in events] == [(COM, 20_000)]
    assert after.open_quantity(GEN, STOCK) == 10 and after.open_quantity(COM, STOCK) == 0
    with pytest.raises(ValidationFailed) as raised:
        fill(after, STOCK, Side.SELL, 1, 2_500, D0 + timedelta(days=3), sleeve=REV)
    assert raised.value.field == "quantity"


def test_a_long_option_is_a_long_lot_and_a_leaps_sale_realises_its_gain() -> None:
    ledger = buy(TaxLedger(), LEAPS, 2, 6_000, D0, commission=130)  # cost 1,200,130
    after, events = fill(ledger, LEAPS, Side.SELL, 2, 7_000, D0 + timedelta(days=400), commission=130)
    assert [(e.proceeds_cents, e.cost_cents, e.term) for e in events] == [(1_399_870, 1_200_130, Term.LONG)]
    assert after.lots == {}


# --- holding period ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "term"), [(364, Term.SHORT), (365, Term.SHORT), (366, Term.LONG)])
def test_a_lot_held_more_than_the_configured_days_is_long_term(days: int, term: Term) -> None:
    ledger = buy(TaxLedger(), STOCK, 1, 1_000, D0)
    _, events = fill(ledger, STOCK, Side.SELL, 1, 1_500, D0 + timedelta(days=days))
    assert [e.term for e in events] == [term]
    assert holding_term(D0, D0 + timedelta(days=days), CFG) is term


def test_one_sale_can_realise_both_terms() -> None:
    ledger = buy(TaxLedger(), STOCK, 1, 1_000, D0)
    ledger = buy(ledger, STOCK, 1, 1_000, D0 + timedelta(days=30))
    _, events = fill(ledger, STOCK, Side.SELL, 2, 1_500, D0 + timedelta(days=366))
    assert [e.term for e in events] == [Term.LONG, Term.SHORT]


def test_the_holding_period_follows_the_config() -> None:
    assert holding_term(D0, D0 + timedelta(days=31), TaxConfig(long_term_after_days=30)) is Term.LONG


# --- expiry --------------------------------------------------------------------------------------------


def test_a_short_put_expiring_worthless_keeps_its_premium_as_a_short_term_gain() -> None:
    ledger, _ = fill(TaxLedger(), PUT_240, Side.SELL, 2, 310, D0, commission=130)
    after, events = apply_expiry(ledger, GEN, PUT_240, PUT_240.expiry, cfg=CFG)
    assert [(e.quantity, e.proceeds_cents, e.cost_cents, e.gain_cents, e.term, e.reason) for e in events] == [
        (-2, 61_870, 0, 61_870, Term.SHORT, CloseReason.EXPIRED)
    ]
    assert after.lots == {}


def test_a_long_option_expiring_worthless_loses_its_cost() -> None:
    ledger = buy(TaxLedger(), CALL_250, 1, 120, D0, commission=65)
    _, events = apply_expiry(ledger, GEN, CALL_250, CALL_250.expiry, cfg=CFG)
    assert [(e.proceeds_cents, e.cost_cents, e.gain_cents) for e in events] == [(0, 12_065, -12_065)]


# --- assignment (A12) ----------------------------------------------------------------------------------


def test_an_assigned_put_lowers_the_share_basis_and_realises_nothing_until_the_shares_are_sold() -> None:
    ledger, _ = fill(TaxLedger(), PUT_240, Side.SELL, 2, 310, D0, commission=130)  # received 61,870
    assigned, events = apply_assignment(ledger, GEN, PUT_240, 2, PUT_240.expiry, cfg=CFG)

    assert events == []  # no gain at assignment
    assert assigned.open_quantity(GEN, PUT_240) == 0
    # 200 shares at $240 = 4,800,000 less the premium received
    assert assigned.lots_of(GEN, STOCK) == (TaxLot(200, PUT_240.expiry, 4_738_130),)

    later = PUT_240.expiry + timedelta(days=10)
    _, sold = fill(assigned, STOCK, Side.SELL, 200, 25_000, later)
    assert [(e.proceeds_cents, e.cost_cents, e.gain_cents, e.opened_on, e.term) for e in sold] == [
        (5_000_000, 4_738_130, 261_870, PUT_240.expiry, Term.SHORT)
    ]


def test_partial_assignment_takes_the_oldest_put_lots() -> None:
    ledger, _ = fill(TaxLedger(), PUT_240, Side.SELL, 1, 300, D0)
    ledger, _ = fill(ledger, PUT_240, Side.SELL, 2, 500, D0 + timedelta(days=1))
    assigned, _ = apply_assignment(ledger, GEN, PUT_240, 2, PUT_240.expiry, cfg=CFG)
    # premium of the 1 contract at $3 and 1 of the 2 at $5: 30,000 + 50,000
    assert assigned.lots_of(GEN, STOCK) == (TaxLot(200, PUT_240.expiry, 4_800_000 - 80_000),)
    assert assigned.lots_of(GEN, PUT_240) == (TaxLot(-1, D0 + timedelta(days=1), 50_000),)


def test_a_called_away_call_adds_its_premium_to_the_proceeds_of_the_oldest_shares() -> None:
    ledger = buy(TaxLedger(), STOCK, 100, 20_000, D0)
    ledger = buy(ledger, STOCK, 100, 21_000, D0 + timedelta(days=1))
    ledger, _ = fill(ledger, CALL_250, Side.SELL, 1, 400, D0 + timedelta(days=2), commission=65)  # 39,935

    after, events = apply_assignment(ledger, GEN, CALL_250, 1, CALL_250.expiry, cfg=CFG)

    # one event, on the shares: 100 × $250 plus the call's premium; no separate gain on the call
    assert [(e.instrument, e.quantity, e.opened_on, e.proceeds_cents, e.cost_cents, e.reason) for e in events] == [
        (STOCK, 100, D0, 2_539_935, 2_000_000, CloseReason.DELIVERED)
    ]
    assert after.lots_of(GEN, STOCK) == (TaxLot(100, D0 + timedelta(days=1), 2_100_000),)
    assert after.open_quantity(GEN, CALL_250) == 0


def test_call_away_spreads_the_proceeds_over_the_delivered_lots_exactly() -> None:
    ledger = buy(TaxLedger(), STOCK, 30, 20_000, D0)
    ledger = buy(ledger, STOCK, 70, 20_000, D0 + timedelta(days=1))
    ledger, _ = fill(ledger, CALL_250, Side.SELL, 1, 401, D0 + timedelta(days=2), commission=2)  # 40,098
    _, events = apply_assignment(ledger, GEN, CALL_250, 1, CALL_250.expiry, cfg=CFG)
    assert [e.proceeds_cents for e in events] == [762_029, 1_778_069]  # floor(2,540,098 × 0.3), the rest
    assert sum(e.proceeds_cents for e in events) == 2_540_098


def test_an_exercised_long_call_adds_its_cost_to_the_shares() -> None:
    ledger = buy(TaxLedger(), LEAPS, 1, 6_000, D0)
    after, events = apply_assignment(ledger, GEN, LEAPS, 1, D0 + timedelta(days=200), cfg=CFG, commission_cents=100)
    assert events == []
    assert after.lots_of(GEN, STOCK) == (TaxLot(100, D0 + timedelta(days=200), 2_000_000 + 600_000 + 100),)


# --- the estimate --------------------------------------------------------------------------------------


def event(gain: int, term: Term, closed_on: date = D0) -> TaxableEvent:
    proceeds, cost = (gain, 0) if gain >= 0 else (0, -gain)
    return TaxableEvent(GEN, STOCK, 1, D0, closed_on, proceeds, cost, term, CloseReason.TRADED)


@pytest.mark.parametrize(
    ("gains", "taxable", "tax"),
    [
        # both terms gain: 30 % and 15 %
        ([(100_000, Term.SHORT), (200_000, Term.LONG)], (100_000, 200_000), 60_000),
        # losses net within a term first
        (
            [(100_000, Term.SHORT), (-40_000, Term.SHORT), (50_000, Term.LONG), (-10_000, Term.LONG)],
            (60_000, 40_000),
            24_000,
        ),
        # a long-term net loss offsets the short-term gain
        ([(100_000, Term.SHORT), (-30_000, Term.LONG)], (70_000, 0), 21_000),
        # a short-term net loss offsets the long-term gain
        ([(-50_000, Term.SHORT), (200_000, Term.LONG)], (0, 150_000), 22_500),
        # a net loss overall is no tax
        ([(-50_000, Term.SHORT), (20_000, Term.LONG)], (0, 0), 0),
        ([(-1, Term.SHORT), (-1, Term.LONG)], (0, 0), 0),
        # rounded once, half-even: 0.30 × 15 = 4.5 → 4, 0.30 × 25 = 7.5 → 8
        ([(15, Term.SHORT)], (15, 0), 4),
        ([(25, Term.SHORT)], (25, 0), 8),
    ],
)
def test_estimated_tax_nets_each_term_then_across_terms(
    gains: list[tuple[int, Term]], taxable: tuple[int, int], tax: int
) -> None:
    estimate = estimate_tax([event(g, t) for g, t in gains], CFG)
    assert (estimate.taxable_short_term_cents, estimate.taxable_long_term_cents) == taxable
    assert estimate.short_term_gain_cents == sum(g for g, t in gains if t is Term.SHORT)
    assert estimate.long_term_gain_cents == sum(g for g, t in gains if t is Term.LONG)
    assert estimate.tax_cents == tax


def test_estimated_tax_counts_only_the_period_and_adds_dividends() -> None:
    events = [event(100_000, Term.SHORT, D0), event(900_000, Term.SHORT, D0 + timedelta(days=40))]
    estimate = estimate_tax(events, CFG, start=D0, end=D0 + timedelta(days=39), dividend_cents=10_000)
    assert estimate.short_term_gain_cents == 100_000
    assert estimate.tax_cents == 30_000 + 1_500  # dividends at 15 %, not offset by anything


def test_estimated_tax_uses_the_configured_rates() -> None:
    cfg = TaxConfig(short_term_rate=Decimal("0.37"), long_term_rate=Decimal("0.20"))
    estimate = estimate_tax([event(100_000, Term.SHORT), event(100_000, Term.LONG)], cfg)
    assert estimate.tax_cents == 57_000


# --- unrealised ----------------------------------------------------------------------------------------


def test_unrealised_is_what_closing_at_the_marks_would_realise() -> None:
    ledger = buy(TaxLedger(), STOCK, 100, 20_000, D0, commission=100)  # cost 2,000,100
    ledger, _ = fill(ledger, PUT_240, Side.SELL, 1, 300, D0, sleeve=REV)  # received 30,000
    marks: dict[Instrument, int] = {STOCK: 21_000, PUT_240: 120}
    assert unrealized_cents(ledger, marks, sleeve=GEN) == 2_100_000 - 2_000_100
    assert unrealized_cents(ledger, marks, sleeve=REV) == 30_000 - 12_000
    assert unrealized_cents(ledger, marks) == 99_900 + 18_000
    with pytest.raises(MarketDataGap) as raised:
        unrealized_cents(ledger, {STOCK: 21_000})
    assert raised.value.field == "marks_cents"


# --- bad input -----------------------------------------------------------------------------------------


def _short_put() -> TaxLedger:
    return fill(TaxLedger(), PUT_240, Side.SELL, 1, 300, D0)[0]


@pytest.mark.parametrize(
    ("attempt", "field"),
    [
        (lambda: fill(TaxLedger(), STOCK, Side.BUY, 0, 100), "quantity"),
        (lambda: fill(TaxLedger(), STOCK, Side.BUY, -3, 100), "quantity"),
        (lambda: fill(TaxLedger(), STOCK, Side.BUY, 1, -1), "price_cents"),
        (lambda: fill(TaxLedger(), STOCK, Side.BUY, 1, 100, commission=-1), "commission_cents"),
        (lambda: fill(TaxLedger(), STOCK, Side.SELL, 1, 100), "quantity"),  # shares are never short
        (lambda: fill(_short_put(), PUT_240, Side.BUY, 2, 100), "quantity"),  # through zero
        (lambda: fill(_short_put(), PUT_240, Side.BUY, 1, 100, D0 - timedelta(days=1)), "on"),
        (lambda: apply_expiry(TaxLedger(), GEN, PUT_240, D0, cfg=CFG), "instrument"),
        (lambda: apply_expiry(TaxLedger(), GEN, STOCK, D0, cfg=CFG), "instrument"),
        (lambda: apply_assignment(_short_put(), GEN, PUT_240, 2, D0, cfg=CFG), "contracts"),
        (lambda: apply_assignment(_short_put(), GEN, PUT_240, 0, D0, cfg=CFG), "contracts"),
        (lambda: apply_assignment(_short_put(), REV, PUT_240, 1, D0, cfg=CFG), "instrument"),
        (
            lambda: apply_assignment(fill(TaxLedger(), CALL_250, Side.SELL, 1, 300)[0], GEN, CALL_250, 1, D0, cfg=CFG),
            "contracts",
        ),  # naked call
        (lambda: estimate_tax([], CFG, dividend_cents=-1), "dividend_cents"),
    ],
)
def test_bad_input_is_refused_naming_the_field(attempt: object, field: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        attempt()  # type: ignore[operator]
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_a_refused_fill_changes_nothing() -> None:
    ledger = _short_put()
    with pytest.raises(ValidationFailed):
        fill(ledger, PUT_240, Side.BUY, 5, 100)
    assert ledger.lots_of(GEN, PUT_240) == (TaxLot(-1, D0, 30_000),)


# --- money conservation (property) --------------------------------------------------------------------

_step = st.tuples(
    st.integers(min_value=-40, max_value=40).filter(bool),  # signed quantity wanted
    st.integers(min_value=0, max_value=50_000),  # price per share, cents
    st.integers(min_value=0, max_value=999),  # commission
    st.integers(min_value=0, max_value=200),  # days since the previous fill
)


def _legal_fills(instrument: Instrument, held: int, wanted: int) -> list[int]:
    """The signed fills that carry out `wanted` legally: never through zero in one fill, shares never
    short (a share sale is cut to what is held)."""
    if isinstance(instrument, Equity):
        signed = wanted if wanted > 0 else -min(-wanted, held)
        return [signed] if signed else []
    if held and (held > 0) != (wanted > 0) and abs(wanted) > abs(held):
        return [-held, wanted + held]  # close, then open the other way
    return [wanted]


@settings(max_examples=300, deadline=None)
@given(
    instrument=st.sampled_from([STOCK, PUT_240, LEAPS]),
    steps=st.lists(_step, min_size=1, max_size=25),
    mark=st.integers(min_value=0, max_value=60_000),
)
def test_realised_plus_unrealised_is_the_cash_flow_plus_the_mark_value(
    instrument: Instrument, steps: list[tuple[int, int, int, int]], mark: int
) -> None:
    ledger, events, cash, signed_total, on = TaxLedger(), [], 0, 0, D0
    for wanted, price, commission, gap in steps:
        on += timedelta(days=gap)
        for signed in _legal_fills(instrument, ledger.open_quantity(GEN, instrument), wanted):
            side = Side.BUY if signed > 0 else Side.SELL
            ledger, realised = fill(ledger, instrument, side, abs(signed), price, on, commission=commission)
            events += realised
            gross = price * abs(signed) * instrument.multiplier
            cash += (-gross if side is Side.BUY else gross) - commission
            signed_total += signed

    open_quantity = ledger.open_quantity(GEN, instrument)
    assert open_quantity == signed_total
    mark_value = open_quantity * instrument.multiplier * mark
    realised_total = sum(e.gain_cents for e in events)
    assert realised_total + unrealized_cents(ledger, {instrument: mark}) == cash + mark_value
    # every lot of a position has the same sign, and shares are never short
    assert len({lot.is_short for lot in ledger.lots_of(GEN, instrument)}) <= 1
    assert isinstance(instrument, OptionContract) or open_quantity >= 0


# --- JSON ----------------------------------------------------------------------------------------------


def _mixed_ledger() -> TaxLedger:
    ledger = buy(TaxLedger(), STOCK, 100, 20_000, D0, commission=1)
    ledger = buy(ledger, STOCK, 50, 21_000, D0 + timedelta(days=3))
    ledger = buy(ledger, LEAPS, 2, 6_000, D0, sleeve=COM)
    ledger, _ = fill(ledger, PUT_240, Side.SELL, 3, 310, D0, commission=195, sleeve=REV)
    return ledger


def test_the_ledger_round_trips_through_json() -> None:
    ledger = _mixed_ledger()
    stored = json.loads(json.dumps(ledger.to_jsonable()))
    assert TaxLedger.from_jsonable(stored) == ledger
    scalars = [v for row in stored["lots"] for v in row.values()]
    assert all(isinstance(v, int | str) and not isinstance(v, bool) for v in scalars)
    assert {row["opened_on"] for row in stored["lots"]} == {"2026-01-05", "2026-01-08"}


def test_events_round_trip_through_json() -> None:
    ledger, _ = fill(TaxLedger(), PUT_240, Side.SELL, 2, 310, D0, commission=130)
    _, events = apply_expiry(ledger, GEN, PUT_240, PUT_240.expiry, cfg=CFG)
    stored = json.loads(json.dumps([e.to_jsonable() for e in events]))
    assert [TaxableEvent.from_jsonable(row) for row in stored] == events


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(lots="none"), "lots"),
        (lambda d: d["lots"][0].update(quantity="100"), "lots[0].quantity"),
        (lambda d: d["lots"][0].update(quantity=0), "lots[0].quantity"),
        (lambda d: d["lots"][1].update(opened_on="2026-13-01"), "lots[1].opened_on"),
        (lambda d: d["lots"][0].update(sleeve="NOPE"), "lots[0].sleeve"),
        (lambda d: d["lots"][0].update(basis_cents=1.5), "lots[0].basis_cents"),
        (lambda d: d["lots"][2].update(quantity=-50), "lots"),  # long and short lots of one position
        (lambda d: [d["lots"][i].update(quantity=-1) for i in (1, 2)], "lots"),  # short shares
    ],
)
def test_bad_stored_ledgers_are_refused_naming_the_field(change: object, field: str) -> None:
    stored = json.loads(json.dumps(_mixed_ledger().to_jsonable()))
    change(stored)  # type: ignore[operator]
    with pytest.raises(ValidationFailed) as raised:
        TaxLedger.from_jsonable(stored)
    assert raised.value.field == field


# --- wash sales (shares only) ---------------------------------------------------------------------------


def sell(
    ledger: TaxLedger, quantity: int, price: int, on: date, *, commission: int = 0, sleeve: SleeveKind = GEN
) -> tuple[TaxLedger, list[TaxableEvent]]:
    return fill(ledger, STOCK, Side.SELL, quantity, price, on, commission=commission, sleeve=sleeve)


def test_a_repurchase_after_a_loss_sale_washes_it_with_a_correcting_event() -> None:
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0)  # cost 100,000
    ledger, (loss,) = sell(ledger, 10, 9_000, D0 + timedelta(days=5))  # proceeds 90,000
    assert (loss.gain_cents, loss.wash_disallowed_cents) == (-10_000, 0)  # no replacement yet
    assert ledger.pending_losses == (PendingLoss(GEN, STOCK, D0, D0 + timedelta(days=5), Term.SHORT, 10, 10_000),)

    ledger, (adjusted,) = fill(ledger, STOCK, Side.BUY, 10, 9_500, D0 + timedelta(days=35))  # day 30 after
    assert adjusted.reason is CloseReason.WASH_ADJUSTED
    assert (adjusted.quantity, adjusted.opened_on, adjusted.closed_on, adjusted.term) == (
        10,
        D0,
        D0 + timedelta(days=5),
        Term.SHORT,
    )  # dated as the loss, so it nets in the loss's period
    assert (adjusted.proceeds_cents, adjusted.cost_cents, adjusted.gain_cents) == (0, 0, 10_000)
    # the loss moves into the replacement's basis; it keeps its own date (no holding-period tacking)
    assert ledger.lots_of(GEN, STOCK) == (TaxLot(10, D0 + timedelta(days=35), 95_000 + 10_000, 10_000),)
    assert ledger.pending_losses == ()
    assert loss.gain_cents + adjusted.gain_cents == 0


def test_shares_bought_before_the_loss_sale_and_still_open_wash_it() -> None:
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0)
    ledger = buy(ledger, STOCK, 10, 9_500, D0 + timedelta(days=10))
    ledger, (event,) = sell(ledger, 10, 9_000, D0 + timedelta(days=40))  # FIFO sells D0's lot, 30 days later
    assert (event.proceeds_cents, event.cost_cents, event.wash_disallowed_cents) == (90_000, 100_000, 10_000)
    assert event.gain_cents == 0
    assert ledger.lots_of(GEN, STOCK) == (TaxLot(10, D0 + timedelta(days=10), 105_000, 10_000),)
    assert ledger.pending_losses == ()


def test_fewer_replacement_shares_wash_only_their_share_of_the_loss_in_exact_cents() -> None:
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0)
    ledger = buy(ledger, STOCK, 4, 9_500, D0 + timedelta(days=1))
    ledger, (event,) = sell(ledger, 10, 9_000, D0 + timedelta(days=2), commission=1)  # loss 10,001
    assert event.wash_disallowed_cents == 10_001 * 4 // 10 == 4_000
    assert event.gain_cents == -6_001
    assert ledger.lots_of(GEN, STOCK) == (TaxLot(4, D0 + timedelta(days=1), 38_000 + 4_000, 4_000),)
    assert ledger.pending_losses == (PendingLoss(GEN, STOCK, D0, D0 + timedelta(days=2), Term.SHORT, 6, 6_001),)

    # then one share, then one, then five (only four still to wash): floor each, the rest to the last
    washed = []
    for day, quantity in ((3, 1), (4, 1), (5, 5)):
        ledger, (adjusted,) = fill(ledger, STOCK, Side.BUY, quantity, 9_500, D0 + timedelta(days=day))
        washed.append(adjusted.wash_disallowed_cents)
    assert washed == [6_001 // 6, 5_001 * 1 // 5, 4_001 * 4 // 4] == [1_000, 1_000, 4_001]
    assert event.wash_disallowed_cents + sum(washed) == 10_001  # not a cent lost
    assert ledger.lots_of(GEN, STOCK)[-2:] == (
        TaxLot(4, D0 + timedelta(days=5), 38_000 + 4_001, 4_001),
        TaxLot(1, D0 + timedelta(days=5), 9_500),  # the fifth share replaced nothing: free for a later wash
    )
    assert ledger.pending_losses == ()


@pytest.mark.parametrize(("days", "washed"), [(30, 10_000), (31, 0)])
def test_the_window_is_the_configured_days_before_or_after(days: int, washed: int) -> None:
    after = buy(TaxLedger(), STOCK, 10, 10_000, D0)
    after, _ = sell(after, 10, 9_000, D0 + timedelta(days=1))
    after, events = fill(after, STOCK, Side.BUY, 10, 9_500, D0 + timedelta(days=1 + days))
    assert sum(e.wash_disallowed_cents for e in events) == washed
    assert after.pending_losses == ()  # washed, or pruned as the window ended

    before = buy(TaxLedger(), STOCK, 10, 10_000, D0)
    before = buy(before, STOCK, 10, 9_500, D0 + timedelta(days=1))
    before, (event,) = sell(before, 10, 9_000, D0 + timedelta(days=1 + days))
    assert event.wash_disallowed_cents == washed


def test_a_gain_sale_is_never_a_wash() -> None:
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0)
    ledger = buy(ledger, STOCK, 10, 9_500, D0 + timedelta(days=1))
    ledger, (event,) = sell(ledger, 10, 11_000, D0 + timedelta(days=2))
    assert (event.gain_cents, event.wash_disallowed_cents) == (10_000, 0)
    assert ledger.lots_of(GEN, STOCK) == (TaxLot(10, D0 + timedelta(days=1), 95_000),)
    assert ledger.pending_losses == ()


def test_zero_wash_sale_days_turns_the_rule_off() -> None:
    cfg = TaxConfig(wash_sale_days=0)
    ledger, _ = apply_fill(TaxLedger(), GEN, STOCK, Side.BUY, 10, 10_000, 0, D0, cfg=cfg)
    ledger, _ = apply_fill(ledger, GEN, STOCK, Side.BUY, 10, 9_500, 0, D0, cfg=cfg)
    ledger, (event,) = apply_fill(ledger, GEN, STOCK, Side.SELL, 10, 9_000, 0, D0, cfg=cfg)
    assert (event.gain_cents, event.wash_disallowed_cents) == (-10_000, 0)
    ledger, events = apply_fill(ledger, GEN, STOCK, Side.BUY, 10, 9_500, 0, D0, cfg=cfg)
    assert events == []
    assert ledger.pending_losses == ()
    assert all(lot.washed_cents is None for lot in ledger.lots_of(GEN, STOCK))


def test_wash_sale_days_are_validated() -> None:
    assert TaxConfig().wash_sale_days == 30
    with pytest.raises(ValueError, match="wash_sale_days"):
        TaxConfig(wash_sale_days=-1)
    with pytest.raises(ValueError, match="wash_sale_days"):
        TaxConfig(wash_sale_days=367)


def test_one_replacement_lot_absorbs_only_one_wash() -> None:
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0, sleeve=GEN)
    ledger = buy(ledger, STOCK, 10, 10_000, D0, sleeve=REV)
    ledger = buy(ledger, STOCK, 10, 9_500, D0 + timedelta(days=40), sleeve=COM)  # the one replacement
    ledger, (first,) = sell(ledger, 10, 9_000, D0 + timedelta(days=45), sleeve=GEN)  # REV's D0 lot: too old
    ledger, (second,) = sell(ledger, 10, 9_000, D0 + timedelta(days=46), sleeve=REV)
    assert (first.wash_disallowed_cents, second.wash_disallowed_cents) == (10_000, 0)
    assert ledger.lots_of(COM, STOCK) == (TaxLot(10, D0 + timedelta(days=40), 105_000, 10_000),)
    assert ledger.pending_losses == (PendingLoss(REV, STOCK, D0, D0 + timedelta(days=46), Term.SHORT, 10, 10_000),)

    # pending losses, too, are washed once: two losses, each takes its own purchase
    ledger = buy(TaxLedger(), STOCK, 20, 10_000, D0)
    ledger, _ = sell(ledger, 10, 9_000, D0 + timedelta(days=40))
    ledger, _ = sell(ledger, 10, 8_000, D0 + timedelta(days=41))
    ledger, (adjusted,) = fill(ledger, STOCK, Side.BUY, 10, 9_500, D0 + timedelta(days=45))
    assert (adjusted.closed_on, adjusted.gain_cents) == (D0 + timedelta(days=40), 10_000)
    ledger, (adjusted,) = fill(ledger, STOCK, Side.BUY, 10, 9_500, D0 + timedelta(days=46))
    assert (adjusted.closed_on, adjusted.gain_cents) == (D0 + timedelta(days=41), 20_000)
    assert ledger.pending_losses == ()


def test_sleeves_share_the_rule_the_account_owner_is_the_taxpayer() -> None:
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0, sleeve=REV)
    ledger = buy(ledger, STOCK, 10, 9_500, D0 + timedelta(days=5), sleeve=COM)
    ledger, (event,) = sell(ledger, 10, 9_000, D0 + timedelta(days=10), sleeve=REV)
    assert (event.sleeve, event.gain_cents, event.wash_disallowed_cents) == (REV, 0, 10_000)
    assert ledger.lots_of(COM, STOCK) == (TaxLot(10, D0 + timedelta(days=5), 105_000, 10_000),)

    # and a purchase in another sleeve after the loss washes it: the correction is the loss's sleeve's
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0, sleeve=REV)
    ledger, _ = sell(ledger, 10, 9_000, D0 + timedelta(days=10), sleeve=REV)
    ledger, (adjusted,) = fill(ledger, STOCK, Side.BUY, 10, 9_500, D0 + timedelta(days=12), sleeve=COM)
    assert (adjusted.sleeve, adjusted.gain_cents) == (REV, 10_000)
    assert ledger.lots_of(COM, STOCK) == (TaxLot(10, D0 + timedelta(days=12), 105_000, 10_000),)


def test_options_never_wash_nor_replace() -> None:
    ledger = buy(TaxLedger(), LEAPS, 1, 6_000, D0)
    ledger = buy(ledger, LEAPS, 1, 5_000, D0 + timedelta(days=1))
    ledger, (event,) = fill(ledger, LEAPS, Side.SELL, 1, 4_000, D0 + timedelta(days=2))
    assert (event.gain_cents, event.wash_disallowed_cents) == (-200_000, 0)
    ledger = buy(ledger, STOCK, 10, 10_000, D0)
    ledger = buy(ledger, LEAPS, 1, 5_000, D0 + timedelta(days=3))  # an option is no replacement share
    ledger, (loss,) = sell(ledger, 10, 9_000, D0 + timedelta(days=3))
    assert loss.wash_disallowed_cents == 0
    assert ledger.lots_of(GEN, LEAPS)[-1].washed_cents is None


def test_shares_received_at_an_assignment_wash_an_earlier_loss() -> None:
    ledger = buy(TaxLedger(), STOCK, 100, 25_000, D0)
    ledger, _ = sell(ledger, 100, 24_500, D0 + timedelta(days=1))  # loss 50,000
    ledger, _ = fill(ledger, PUT_240, Side.SELL, 1, 300, D0 + timedelta(days=1))
    ledger, (adjusted,) = apply_assignment(ledger, GEN, PUT_240, 1, PUT_240.expiry, cfg=CFG)
    assert adjusted.gain_cents == 50_000
    assert ledger.lots_of(GEN, STOCK) == (TaxLot(100, PUT_240.expiry, 2_400_000 - 30_000 + 50_000, 50_000),)


def _washed_ledger() -> TaxLedger:
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0)
    ledger = buy(ledger, STOCK, 4, 9_500, D0 + timedelta(days=1))
    ledger, _ = sell(ledger, 10, 9_000, D0 + timedelta(days=2), commission=1)
    return buy(ledger, LEAPS, 2, 6_000, D0, sleeve=COM)


def test_the_wash_sale_state_round_trips_through_json() -> None:
    ledger = _washed_ledger()
    assert ledger.pending_losses and ledger.lots_of(GEN, STOCK)[0].washed_cents == 4_000
    stored = json.loads(json.dumps(ledger.to_jsonable()))
    assert TaxLedger.from_jsonable(stored) == ledger
    assert stored["pending_losses"] == [
        {
            "sleeve": "GEN",
            "instrument": "TSLA",
            "opened_on": "2026-01-05",
            "sold_on": "2026-01-07",
            "term": "SHORT",
            "quantity": 6,
            "loss_cents": 6_001,
        }
    ]
    scalars = [v for row in stored["lots"] + stored["pending_losses"] for v in row.values()]
    assert all(isinstance(v, int | str) and not isinstance(v, bool) for v in scalars)
    # a ledger stored before wash sales (no pending losses, no washed_cents) still reads
    old = json.loads(json.dumps(_mixed_ledger().to_jsonable()))
    del old["pending_losses"]
    assert TaxLedger.from_jsonable(old) == _mixed_ledger()


def test_wash_events_round_trip_through_json_and_old_events_read_as_unwashed() -> None:
    ledger = buy(TaxLedger(), STOCK, 10, 10_000, D0)
    ledger, (loss,) = sell(ledger, 10, 9_000, D0 + timedelta(days=1))
    _, (adjusted,) = fill(ledger, STOCK, Side.BUY, 3, 9_500, D0 + timedelta(days=2))
    stored = json.loads(json.dumps([loss.to_jsonable(), adjusted.to_jsonable()]))
    assert [TaxableEvent.from_jsonable(row) for row in stored] == [loss, adjusted]
    assert stored[1]["wash_disallowed_cents"] == stored[1]["gain_cents"] == 3_000
    old = dict(stored[0])
    del old["wash_disallowed_cents"]
    assert TaxableEvent.from_jsonable(old) == loss
    with pytest.raises(ValidationFailed) as raised:
        TaxableEvent.from_jsonable({**stored[1], "gain_cents": 0})
    assert raised.value.field == "gain_cents"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(pending_losses="none"), "pending_losses"),
        (lambda d: d["pending_losses"][0].update(quantity=0), "pending_losses[0].quantity"),
        (lambda d: d["pending_losses"][0].update(loss_cents=-5), "pending_losses[0].loss_cents"),
        (lambda d: d["pending_losses"][0].update(instrument=LEAPS.symbol), "pending_losses[0].instrument"),
        (lambda d: d["pending_losses"][0].update(sold_on="soon"), "pending_losses[0].sold_on"),
        (lambda d: d["lots"][1].update(washed_cents=-1), "lots[1].washed_cents"),
        (lambda d: d["lots"][0].update(washed_cents=0), "lots"),  # an option lot is never a replacement
    ],
)
def test_bad_stored_wash_sale_state_is_refused_naming_the_field(change: object, field: str) -> None:
    stored = json.loads(json.dumps(_washed_ledger().to_jsonable()))
    assert stored["lots"][0]["instrument"] == LEAPS.symbol
    change(stored)  # type: ignore[operator]
    with pytest.raises(ValidationFailed) as raised:
        TaxLedger.from_jsonable(stored)
    assert raised.value.field == field


_share_step = st.tuples(
    st.sampled_from([GEN, REV, COM]),
    st.integers(min_value=-40, max_value=40).filter(bool),  # signed shares wanted (a sale is cut to what is held)
    st.integers(min_value=1, max_value=50_000),  # price per share, cents
    st.integers(min_value=0, max_value=999),  # commission
    st.integers(min_value=0, max_value=45),  # days since the previous fill: in and out of the window
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(_share_step, min_size=1, max_size=30), mark=st.integers(min_value=0, max_value=60_000))
def test_wash_sales_conserve_money_the_disallowed_losses_live_in_the_basis(
    steps: list[tuple[SleeveKind, int, int, int, int]], mark: int
) -> None:
    ledger, events, cash, on, traded_on = TaxLedger(), [], 0, D0, D0
    for sleeve, wanted, price, commission, gap in steps:
        on += timedelta(days=gap)
        quantity = wanted if wanted > 0 else min(-wanted, ledger.open_quantity(sleeve, STOCK))
        if quantity == 0:
            continue
        side = Side.BUY if wanted > 0 else Side.SELL
        ledger, realised = fill(ledger, STOCK, side, quantity, price, on, commission=commission, sleeve=sleeve)
        events += realised
        traded_on = on
        cash += (-1 if side is Side.BUY else 1) * price * quantity - commission

    lots = [lot for (_, instrument), held in ledger.lots.items() if instrument == STOCK for lot in held]
    realised_total = sum(e.gain_cents for e in events)
    mark_value = sum(lot.quantity for lot in lots) * mark
    assert realised_total + unrealized_cents(ledger, {STOCK: mark}) == cash + mark_value
    # realised = (proceeds − cost paid) + the disallowed losses still deferred in the open lots
    cost_paid_open = sum(lot.basis_cents - (lot.washed_cents or 0) for lot in lots)
    assert realised_total == cash + cost_paid_open + sum(lot.washed_cents or 0 for lot in lots)
    assert all(lot.basis_cents >= 0 and 0 <= (lot.washed_cents or 0) <= lot.basis_cents for lot in lots)
    assert all(e.wash_disallowed_cents >= 0 for e in events)
    assert all(e.gain_cents <= 0 for e in events if e.wash_disallowed_cents and e.reason is CloseReason.TRADED)
    assert all(
        p.quantity > 0 and p.loss_cents > 0 and (traded_on - p.sold_on).days <= 30 for p in ledger.pending_losses
    )
