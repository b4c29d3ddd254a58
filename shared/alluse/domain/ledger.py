"""Sleeve bookings (A2, A12): every fill and every expiry settlement belongs to exactly one sleeve, and
per symbol the sleeves' quantities add up to the broker's position.

Cost is tracked per open position (average cost; FIFO tax lots are a separate ledger). Assignment
follows A12: an assigned put's premium lowers the share basis and a called-away call's premium adds to
the proceeds — no separate gain at assignment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

from alluse.domain.accounts import Account, SleeveBalance
from alluse.domain.brokerage import BrokerAccountState, Execution, Settlement, SettlementKind, Side
from alluse.domain.errors import Conflict, MarketDataGap
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight
from alluse.domain.sleeves import SleeveKind


@dataclass(frozen=True)
class _Change:
    """What one booking does to one sleeve."""

    instrument: Instrument
    quantity: int  # signed
    cost_cents: int  # signed cost of the quantity when it opens or adds
    cash_cents: int


def book_execution(account: Account, sleeve: SleeveKind, execution: Execution) -> Account:
    """A fill of an order the sleeve placed: cash, position, cost, premium and commission."""
    gross = execution.price_cents * execution.quantity * execution.instrument.multiplier
    signed = execution.quantity if execution.side is Side.BUY else -execution.quantity
    balance = account.sleeve(sleeve)
    opens_short_option = (
        isinstance(execution.instrument, OptionContract)
        and execution.side is Side.SELL
        and balance.quantity(execution.instrument) <= 0
    )
    booked = _apply(balance, execution.instrument, signed, gross if signed > 0 else -gross)
    booked = replace(
        booked,
        cash_cents=booked.cash_cents + execution.cash_cents,
        premium_cents=booked.premium_cents + (gross if opens_short_option else 0),
        commission_cents=booked.commission_cents + execution.commission_cents,
    )
    return replace(account, sleeves={**account.sleeves, sleeve: booked})


def book_settlement(account: Account, settlement: Settlement) -> Account:
    """An expiry settlement, split over the sleeves holding the contract by their contracts."""
    option = settlement.instrument
    if not isinstance(option, OptionContract):
        raise Conflict(f"settlement of {option.symbol} is not an option's", field="instrument")
    holders = {k: s.quantity(option) for k, s in account.sleeves.items() if s.quantity(option)}
    if sum(holders.values()) != settlement.quantity:
        raise Conflict(
            f"sleeves hold {sum(holders.values())} of {option.symbol}, the broker settled {settlement.quantity}:"
            " reconcile before booking",
            field="settlement",
        )
    contracts = abs(settlement.quantity)
    sleeves = dict(account.sleeves)
    for kind, held in holders.items():
        share = abs(held)
        sleeves[kind] = _settle(
            sleeves[kind],
            settlement,
            shares=settlement.shares // contracts * share,
            cash=settlement.cash_cents // contracts * share,
        )
    return replace(account, sleeves=sleeves)


def broker_mismatches(account: Account, broker: BrokerAccountState) -> list[str]:
    """Where the sleeves and the broker disagree: per-symbol quantities and total cash."""
    ours: dict[Instrument, int] = {}
    for balance in account.sleeves.values():
        for instrument, quantity in balance.positions.items():
            ours[instrument] = ours.get(instrument, 0) + quantity
    theirs = {p.instrument: p.quantity for p in broker.positions}
    problems = [
        f"{instrument.symbol}: sleeves hold {ours.get(instrument, 0)}, broker {theirs.get(instrument, 0)}"
        for instrument in sorted(set(ours) | set(theirs), key=lambda i: i.symbol)
        if ours.get(instrument, 0) != theirs.get(instrument, 0)
    ]
    if account.cash_cents != broker.cash_cents:
        problems.append(f"cash: sleeves {account.cash_cents} cents, broker {broker.cash_cents} cents")
    return problems


# --- internals ---------------------------------------------------------------------------------------


def _settle(balance: SleeveBalance, settlement: Settlement, *, shares: int, cash: int) -> SleeveBalance:
    option = settlement.instrument
    assert isinstance(option, OptionContract)
    option_cost = balance.costs.get(option, 0)
    without_option = _without(balance, option)
    stock = Equity(option.underlying)
    kind = settlement.kind
    if kind is SettlementKind.EXPIRED_WORTHLESS or kind is SettlementKind.CLOSED_AT_INTRINSIC:
        realized = cash - option_cost
        return replace(
            without_option, cash_cents=balance.cash_cents + cash, realized_cents=balance.realized_cents + realized
        )
    if shares > 0:  # shares acquired (assigned put, exercised call): the option's cost goes into their basis
        acquired = _apply(without_option, stock, shares, -cash + option_cost)
        return replace(acquired, cash_cents=balance.cash_cents + cash)
    # shares delivered (called-away call, exercised put): the option's cost comes off the proceeds
    disposed = _apply(without_option, stock, shares, 0, proceeds=cash - option_cost)
    return replace(disposed, cash_cents=balance.cash_cents + cash)


def _without(balance: SleeveBalance, instrument: Instrument) -> SleeveBalance:
    positions = {i: q for i, q in balance.positions.items() if i != instrument}
    costs = {i: c for i, c in balance.costs.items() if i != instrument}
    return replace(balance, positions=positions, costs=costs)


def _apply(
    balance: SleeveBalance, instrument: Instrument, signed: int, cost: int, *, proceeds: int | None = None
) -> SleeveBalance:
    """Move a position by `signed`. Opening or adding carries `cost`; reducing releases a share of the
    position's cost and realises (proceeds − released), where proceeds default to −cost."""
    held = balance.quantity(instrument)
    current = balance.costs.get(instrument, 0)
    new = held + signed
    if held and (held > 0) != (new > 0) and new != 0:
        raise Conflict(f"{instrument.symbol}: {signed:+} would take the sleeve's {held} through zero", field="quantity")
    realized = balance.realized_cents
    if held == 0 or (held > 0) == (signed > 0):
        current += cost
    else:
        released = _share(current, abs(signed), abs(held))
        current -= released
        realized += (-cost if proceeds is None else proceeds) - released
    positions = dict(balance.positions)
    costs = dict(balance.costs)
    if new:
        positions[instrument], costs[instrument] = new, current
    else:
        positions.pop(instrument, None)
        costs.pop(instrument, None)
    return replace(balance, positions=positions, costs=costs, realized_cents=realized)


def _share(total: int, part: int, whole: int) -> int:
    """total × part / whole to the cent, half-even (the cost released by a partial close)."""
    return int((Decimal(total) * part / whole).to_integral_value(ROUND_HALF_EVEN))


def basis_per_share_cents(balance: SleeveBalance) -> dict[str, int]:
    """Cost per share of the sleeve's share holdings (average cost, whole cents rounded down)."""
    return {
        i.ticker: balance.costs.get(i, 0) // q
        for i, q in balance.positions.items()
        if isinstance(i, Equity) and q > 0 and balance.costs.get(i, 0) > 0
    }


def option_mark_cents(contract: OptionContract, quote_mid_cents: int | None, spot_cents: int) -> int:
    """An option's mark: its quote's mid while listed, else its intrinsic value against the spot."""
    if quote_mid_cents is not None:
        return quote_mid_cents
    if contract.right is OptionRight.PUT:
        return max(contract.strike_cents - spot_cents, 0)
    return max(spot_cents - contract.strike_cents, 0)


def equity_cents(account: Account, marks_cents: Mapping[Instrument, int]) -> int:
    """Cash plus every position at its mark (per share / per contract share, × multiplier).

    A position without a mark is a gap, never silently valued at zero."""
    return sum(sleeve_equity_cents(balance, marks_cents) for balance in account.sleeves.values())


def sleeve_equity_cents(balance: SleeveBalance, marks_cents: Mapping[Instrument, int]) -> int:
    """One sleeve's cash plus its positions at their marks (see equity_cents)."""
    total = balance.cash_cents
    for instrument, quantity in balance.positions.items():
        if quantity == 0:
            continue
        if instrument not in marks_cents:
            raise MarketDataGap(f"no mark for {instrument.symbol}", field="marks_cents")
        total += quantity * instrument.multiplier * marks_cents[instrument]
    return total
