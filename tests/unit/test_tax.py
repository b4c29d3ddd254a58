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
