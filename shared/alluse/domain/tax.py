"""FIFO tax lots per sleeve (A12, B§9 "Tax ledger"): realised gains as taxable events, unrealised P&L at
marks, and an estimated tax. Estimates, not advice.

Everything here is pure: each operation takes a `TaxLedger` and returns the new ledger and the events it
realised; nothing is mutated, nothing is stored. Money is int cents, quantities are ints (shares, or
contracts × the instrument's multiplier).

Decisions:

- Lots are kept per (sleeve, instrument) and matched FIFO (the only `TaxConfig.lot_method`). A sleeve's
  lots never close another sleeve's.
- A lot's `basis_cents` is what it opened with: a long lot's cost (paid, commission added), a short lot's
  proceeds (received, commission taken off). Shares are never short; an option SELL with no long lot open
  opens or extends a short lot.
- Commission: on a BUY it adds to cost, on a SELL it reduces proceeds — whether the trade opens or closes.
- One fill never takes a position through zero (as the sleeve ledger): close in one fill, open in another.
- Fills, expiries and assignments of a position come in date order; one dated before an open lot of the
  position it touches is refused (FIFO would be meaningless).
- Splitting cents: a partial close gives the closed piece floor(basis × closed / lot quantity) (toward
  −∞) and leaves the rest with the lot still open; one amount (a fill's proceeds or cost, a delivery's
  proceeds) spread over several lots gives each piece floor(amount × its quantity / total) and the last
  piece the remainder. No cent is lost or made: pieces always sum to the whole.
- Holding period: a lot held more than `TaxConfig.long_term_after_days` days (close date − open date) is
  LONG, otherwise SHORT. The rule is applied to every lot alike, short option lots included.
- Expiry: a short option lot closes with proceeds = the premium it received and cost 0; a long one with
  proceeds 0 and its cost (a loss). A long option closed at intrinsic is a SELL fill at the intrinsic.
- Assignment and exercise (A12): the option's lots close without an event. Shares received (assigned put,
  exercised call) open one lot dated the assignment day with cost = strike × shares − premium received
  (+ premium paid for a long call); shares delivered (called-away call, exercised put) leave FIFO with
  proceeds = strike × shares + premium received (− premium paid for a long put), spread over the lots.
- Unrealised P&L is what closing every lot at its mark would realise, before commission.
- Estimated tax over a period (events by close date): gains and losses net within each term; a net loss
  in one term offsets the other term's net gain; a net loss overall is no tax (no carry-forward, no
  offset against ordinary income). Tax = taxable short-term × short-term rate + taxable long-term ×
  long-term rate + dividends × dividend rate, rounded once, half-even, to the cent.
- Dividends are not lots: the ledger does not track them; the caller passes a period's dividends (all
  taxed at `TaxConfig.dividend_rate`, which capital losses do not offset).
- Wash sales (shares only: `Equity` lots; options — their premiums, expiries and option trades — are out of
  scope and never wash nor replace). The rule works across the whole account (the taxpayer is its owner), so
  a sleeve's shares replace another sleeve's loss. A share sale at a loss (a fill, or shares delivered at an
  assignment) is a wash sale to the extent that shares of the ticker are bought (a fill, or shares received
  at an assignment) within `TaxConfig.wash_sale_days` calendar days before or after it (0: no wash sales).
  Shares bought before the sale count only while still open after it (the shares sold are never their own
  replacement). Replacement shares are taken oldest lot first across sleeves; each takes one wash only (the
  lot is split and the replacement piece records `washed_cents`, the loss it took, even 0).
  With r replacement shares for q shares sold at a loss L, floor(L × r / q) is disallowed (as `_split`
  does) and the rest stays allowed; no cent is lost. The disallowed loss is not realised
  (`TaxableEvent.wash_disallowed_cents` adds it back to the gain) and is added to the replacement shares'
  basis (spread as one amount over lots). The replacement lot keeps its own acquisition date: no holding-
  period tacking.
  A loss not (fully) washed at the sale is remembered in `TaxLedger.pending_losses` (the shares and the loss
  still un-washed) until the window ends (pruned as the ticker trades). A later purchase within the window
  washes it: as the loss event was already returned, the purchase returns a correcting event, reason
  `WASH_ADJUSTED`, proceeds = cost = 0 and `wash_disallowed_cents` = the loss now disallowed (so its gain is
  +disallowed), dated like the loss (opened_on, closed_on, term of the sold lot), so it nets in the loss's tax
  period. Over all events, realised = (proceeds − cost) + the disallowed losses still deferred in open lots'
  basis. The account's share trades of a ticker come in date order, across sleeves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from itertools import pairwise
from typing import Any, TypeVar

from alluse.domain.brokerage import Execution, Settlement, SettlementKind, Side
from alluse.domain.config import TaxConfig
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight, instrument_from_symbol
from alluse.domain.sleeves import SleeveKind

__all__ = [
    "CloseReason",
    "PendingLoss",
    "TaxEstimate",
    "TaxLedger",
    "TaxLot",
    "TaxableEvent",
    "Term",
    "apply_assignment",
    "apply_expiry",
    "apply_fill",
    "estimate_tax",
    "holding_term",
    "unrealized_cents",
]

_JSON_VERSION = 1

E = TypeVar("E", bound=StrEnum)


class Term(StrEnum):
    SHORT = "SHORT"
    LONG = "LONG"


class CloseReason(StrEnum):
    TRADED = "TRADED"  # a closing fill: a long lot sold or a short lot bought back
    EXPIRED = "EXPIRED"  # an option expired worthless
    DELIVERED = "DELIVERED"  # shares delivered at the strike (short call called away, long put exercised)
    WASH_ADJUSTED = "WASH_ADJUSTED"  # a purchase washed an earlier share loss: the disallowed part comes back


@dataclass(frozen=True)
class TaxLot:
    quantity: int  # signed: negative = short (options only); contracts or shares
    opened_on: date
    basis_cents: int  # long: cost paid, commission added; short: proceeds received, commission taken off
    # a wash-sale replacement (shares only): the disallowed loss its basis took (included in basis_cents);
    # None = not a replacement, free to take one
    washed_cents: int | None = None

    @property
    def is_short(self) -> bool:
        return self.quantity < 0

    @property
    def open_cash_cents(self) -> int:
        """The signed cash the lot opened with: paid (negative) for a long lot, received for a short one."""
        return self.basis_cents if self.is_short else -self.basis_cents


@dataclass(frozen=True)
class TaxableEvent:
    """One lot (or piece of a lot) closed: a realised gain or loss."""

    sleeve: SleeveKind
    instrument: Instrument
    quantity: int  # signed quantity of the lot closed: negative for a short lot
    opened_on: date
    closed_on: date
    proceeds_cents: int
    cost_cents: int
    term: Term
    reason: CloseReason
    wash_disallowed_cents: int = 0  # a loss disallowed as a wash sale (≥ 0): not realised, in a lot's basis

    @property
    def gain_cents(self) -> int:
        return self.proceeds_cents - self.cost_cents + self.wash_disallowed_cents

    def to_jsonable(self) -> dict[str, Any]:
        return {
            "sleeve": self.sleeve.value,
            "instrument": self.instrument.symbol,
            "quantity": self.quantity,
            "opened_on": self.opened_on.isoformat(),
            "closed_on": self.closed_on.isoformat(),
            "proceeds_cents": self.proceeds_cents,
            "cost_cents": self.cost_cents,
            "gain_cents": self.gain_cents,  # derived; written for readers of the stored record
            "term": self.term.value,
            "reason": self.reason.value,
            "wash_disallowed_cents": self.wash_disallowed_cents,
        }

    @classmethod
    def from_jsonable(cls, data: Mapping[str, Any]) -> TaxableEvent:
        event = cls(
            sleeve=_enum(SleeveKind, data, "sleeve"),
            instrument=_instrument(data, "instrument"),
            quantity=_int(data, "quantity"),
            opened_on=_date(data, "opened_on"),
            closed_on=_date(data, "closed_on"),
            proceeds_cents=_int(data, "proceeds_cents"),
            cost_cents=_int(data, "cost_cents"),
            term=_enum(Term, data, "term"),
            reason=_enum(CloseReason, data, "reason"),
            wash_disallowed_cents=_int(data, "wash_disallowed_cents") if "wash_disallowed_cents" in data else 0,
        )
        _require_not_negative(event.wash_disallowed_cents, "wash_disallowed_cents")
        if "gain_cents" in data and _int(data, "gain_cents") != event.gain_cents:
            raise ValidationFailed("must equal proceeds_cents − cost_cents + wash_disallowed_cents", field="gain_cents")
        return event


@dataclass(frozen=True)
class PendingLoss:
    """A share sale's loss not (fully) washed yet: a purchase of the ticker within the window still can."""

    sleeve: SleeveKind
    stock: Equity
    opened_on: date  # of the lot sold
    sold_on: date
    term: Term
    quantity: int  # shares sold at the loss not yet matched by a replacement share (> 0)
    loss_cents: int  # the loss on those shares (> 0)

    def to_jsonable(self) -> dict[str, Any]:
        return {
            "sleeve": self.sleeve.value,
            "instrument": self.stock.symbol,
            "opened_on": self.opened_on.isoformat(),
            "sold_on": self.sold_on.isoformat(),
            "term": self.term.value,
            "quantity": self.quantity,
            "loss_cents": self.loss_cents,
        }

    @classmethod
    def from_jsonable(cls, data: Mapping[str, Any]) -> PendingLoss:
        stock = _instrument(data, "instrument")
        if not isinstance(stock, Equity):
            raise ValidationFailed(f"{stock.symbol}: wash sales are for shares only", field="instrument")
        loss = cls(
            sleeve=_enum(SleeveKind, data, "sleeve"),
            stock=stock,
            opened_on=_date(data, "opened_on"),
            sold_on=_date(data, "sold_on"),
            term=_enum(Term, data, "term"),
            quantity=_int(data, "quantity"),
            loss_cents=_int(data, "loss_cents"),
        )
        _require_positive(loss.quantity, "quantity")
        _require_positive(loss.loss_cents, "loss_cents")
        return loss


@dataclass(frozen=True)
class TaxLedger:
    """Open lots per (sleeve, instrument), oldest first; a key with no open lot is absent. Plus the
    account's share losses a purchase may still wash (oldest first)."""

    lots: Mapping[tuple[SleeveKind, Instrument], tuple[TaxLot, ...]] = field(default_factory=dict)
    pending_losses: tuple[PendingLoss, ...] = ()

    def lots_of(self, sleeve: SleeveKind, instrument: Instrument) -> tuple[TaxLot, ...]:
        return self.lots.get((sleeve, instrument), ())

    def open_quantity(self, sleeve: SleeveKind, instrument: Instrument) -> int:
        return sum(lot.quantity for lot in self.lots_of(sleeve, instrument))

    def with_lots(self, sleeve: SleeveKind, instrument: Instrument, lots: Sequence[TaxLot]) -> TaxLedger:
        others = {key: held for key, held in self.lots.items() if key != (sleeve, instrument)}
        return replace(self, lots={**others, (sleeve, instrument): tuple(lots)} if lots else others)

    def to_jsonable(self) -> dict[str, Any]:
        """Ints, strings and ISO dates only; lots listed per position, oldest first."""
        keys = sorted(self.lots, key=lambda key: (key[0].value, key[1].symbol))
        return {
            "version": _JSON_VERSION,
            "lots": [
                {
                    "sleeve": sleeve.value,
                    "instrument": instrument.symbol,
                    "quantity": lot.quantity,
                    "opened_on": lot.opened_on.isoformat(),
                    "basis_cents": lot.basis_cents,
                    **({} if lot.washed_cents is None else {"washed_cents": lot.washed_cents}),
                }
                for sleeve, instrument in keys
                for lot in self.lots[(sleeve, instrument)]
            ],
            "pending_losses": [loss.to_jsonable() for loss in self.pending_losses],
        }

    @classmethod
    def from_jsonable(cls, data: Mapping[str, Any]) -> TaxLedger:
        if data.get("version") != _JSON_VERSION:
            raise ValidationFailed(f"must be {_JSON_VERSION} (got {data.get('version')!r})", field="version")
        rows = data.get("lots")
        if not isinstance(rows, list):
            raise ValidationFailed("must be a list of lots", field="lots")
        grouped: dict[tuple[SleeveKind, Instrument], list[TaxLot]] = {}
        for index, row in enumerate(rows):
            key, lot = _lot_from_row(row, f"lots[{index}]")
            grouped.setdefault(key, []).append(lot)
        for (_, instrument), lots in grouped.items():
            _check_stored_position(instrument, lots)
        pending = data.get("pending_losses", [])
        if not isinstance(pending, list):
            raise ValidationFailed("must be a list of pending losses", field="pending_losses")
        return cls(
            {key: tuple(lots) for key, lots in grouped.items()},
            tuple(_pending_from_row(row, f"pending_losses[{index}]") for index, row in enumerate(pending)),
        )


@dataclass(frozen=True)
class TaxEstimate:
    """Estimated tax over a period (estimates, not advice)."""

    short_term_gain_cents: int  # net of the term's losses; negative = a net loss
    long_term_gain_cents: int
    taxable_short_term_cents: int  # after one term's net loss offsets the other's gain; never negative
    taxable_long_term_cents: int
    dividend_cents: int
    tax_cents: int


# --- operations ---------------------------------------------------------------------------------------


def apply_fill(
    ledger: TaxLedger,
    sleeve: SleeveKind,
    instrument: Instrument,
    side: Side,
    quantity: int,
    price_cents: int,
    commission_cents: int,
    on: date,
    *,
    cfg: TaxConfig,
) -> tuple[TaxLedger, list[TaxableEvent]]:
    """A fill of `quantity` (shares or contracts) at `price_cents` per share: opens a lot, or closes the
    oldest lots of the other sign FIFO and returns what that realised."""
    _require_positive(quantity, "quantity")
    _require_not_negative(price_cents, "price_cents")
    _require_not_negative(commission_cents, "commission_cents")
    lots = ledger.lots_of(sleeve, instrument)
    _require_in_order(lots, on)
    gross = price_cents * quantity * instrument.multiplier
    signed = quantity if side is Side.BUY else -quantity
    held = sum(lot.quantity for lot in lots)
    if held == 0 or (held > 0) == (signed > 0):
        opened = _open_lot(instrument, signed, gross, commission_cents, on)
        after = ledger.with_lots(sleeve, instrument, (*lots, opened))
        return _wash_purchase(after, sleeve, instrument, on, cfg) if isinstance(instrument, Equity) else (after, [])
    if quantity > abs(held):
        raise ValidationFailed(
            f"{side.value} {quantity} of {instrument.symbol} would close more than the {abs(held)} open in"
            f" {sleeve.value}; close and open in separate fills",
            field="quantity",
        )
    closed, remaining = _take_fifo(lots, quantity)
    # what the closing trade brings: proceeds of a sale, or the cost of buying a short lot back
    closing_cents = gross - commission_cents if side is Side.SELL else gross + commission_cents
    events = [
        _event(sleeve, instrument, piece, on, share, CloseReason.TRADED, cfg)
        for piece, share in zip(closed, _spread(closing_cents, [abs(p.quantity) for p in closed]), strict=True)
    ]
    after = ledger.with_lots(sleeve, instrument, remaining)
    return _wash_sale(after, instrument, events, on, cfg) if isinstance(instrument, Equity) else (after, events)


def apply_expiry(
    ledger: TaxLedger, sleeve: SleeveKind, option: Instrument, on: date, *, cfg: TaxConfig
) -> tuple[TaxLedger, list[TaxableEvent]]:
    """Every lot of `option` in the sleeve expires worthless: a short lot keeps its premium as a gain,
    a long lot loses its cost."""
    contract = _require_option(option)
    lots = _require_open(ledger, sleeve, contract)
    _require_in_order(lots, on)
    events = [_event(sleeve, contract, lot, on, 0, CloseReason.EXPIRED, cfg) for lot in lots]
    return ledger.with_lots(sleeve, contract, ()), events


def apply_assignment(
    ledger: TaxLedger,
    sleeve: SleeveKind,
    option: Instrument,
    contracts: int,
    on: date,
    *,
    cfg: TaxConfig,
    commission_cents: int = 0,
) -> tuple[TaxLedger, list[TaxableEvent]]:
    """`contracts` of the sleeve's `option` position are assigned (short) or exercised (long), oldest
    lots first. No gain at assignment (A12): the option's premium moves into the shares' basis when
    shares are received, or into the proceeds when shares are delivered."""
    contract = _require_option(option)
    _require_positive(contracts, "contracts")
    _require_not_negative(commission_cents, "commission_cents")
    lots = _require_open(ledger, sleeve, contract)
    _require_in_order(lots, on)
    held = sum(lot.quantity for lot in lots)
    if contracts > abs(held):
        raise ValidationFailed(
            f"{contracts} contracts of {contract.symbol} assigned but {sleeve.value} holds {abs(held)}",
            field="contracts",
        )
    closed, remaining = _take_fifo(lots, contracts)
    premium_cents = sum(piece.open_cash_cents for piece in closed)  # received (+) or paid (−)
    shares = contracts * contract.multiplier
    strike_value = contract.strike_cents * shares
    after = ledger.with_lots(sleeve, contract, remaining)
    stock = Equity(contract.underlying)
    if _receives_shares(contract, short=held < 0):
        cost = strike_value - premium_cents + commission_cents
        return _receive_shares(after, sleeve, stock, shares, cost, on, cfg)
    proceeds = strike_value + premium_cents - commission_cents
    return _deliver_shares(after, sleeve, stock, shares, proceeds, on, cfg)


def holding_term(opened_on: date, closed_on: date, cfg: TaxConfig) -> Term:
    """LONG when held more than `long_term_after_days` days, else SHORT."""
    return Term.LONG if (closed_on - opened_on).days > cfg.long_term_after_days else Term.SHORT


def unrealized_cents(
    ledger: TaxLedger, marks_cents: Mapping[Instrument, int], *, sleeve: SleeveKind | None = None
) -> int:
    """What closing every open lot (of one sleeve, or all) at its mark would realise, before commission.

    Marks are cents per share (per contract share for options). A position without a mark is a gap,
    never silently valued at zero."""
    total = 0
    for (kind, instrument), lots in ledger.lots.items():
        if sleeve is not None and kind is not sleeve:
            continue
        if instrument not in marks_cents:
            raise MarketDataGap(f"no mark for {instrument.symbol}", field="marks_cents")
        value_per_unit = marks_cents[instrument] * instrument.multiplier
        total += sum(lot.quantity * value_per_unit + lot.open_cash_cents for lot in lots)
    return total


def estimate_tax(
    events: Iterable[TaxableEvent],
    cfg: TaxConfig,
    *,
    start: date | None = None,
    end: date | None = None,
    dividend_cents: int = 0,
) -> TaxEstimate:
    """Estimated tax on the events closed in [start, end] (either end open when None), plus dividends."""
    _require_not_negative(dividend_cents, "dividend_cents")
    in_period = [e for e in events if (start is None or e.closed_on >= start) and (end is None or e.closed_on <= end)]
    short_term, long_term = gains_by_term(in_period)
    return estimate_from_gains(short_term, long_term, cfg, dividend_cents=dividend_cents)


def estimate_from_gains(short_term: int, long_term: int, cfg: TaxConfig, *, dividend_cents: int = 0) -> TaxEstimate:
    """Estimated tax on a period's net short- and long-term gains (see estimate_tax)."""
    _require_not_negative(dividend_cents, "dividend_cents")
    taxable_short, taxable_long = _offset_across_terms(short_term, long_term)
    tax = (
        Decimal(taxable_short) * cfg.short_term_rate
        + Decimal(taxable_long) * cfg.long_term_rate
        + Decimal(dividend_cents) * cfg.dividend_rate
    )
    return TaxEstimate(
        short_term_gain_cents=short_term,
        long_term_gain_cents=long_term,
        taxable_short_term_cents=taxable_short,
        taxable_long_term_cents=taxable_long,
        dividend_cents=dividend_cents,
        tax_cents=int(tax.to_integral_value(ROUND_HALF_EVEN)),
    )


# --- internals ---------------------------------------------------------------------------------------


def _open_lot(instrument: Instrument, signed: int, gross: int, commission: int, on: date) -> TaxLot:
    if signed > 0:
        return TaxLot(signed, on, gross + commission)
    if not isinstance(instrument, OptionContract):
        raise ValidationFailed(
            f"no {instrument.symbol} shares open to sell (shares are never sold short)", field="quantity"
        )
    return TaxLot(signed, on, gross - commission)


def _take_fifo(lots: Sequence[TaxLot], quantity: int) -> tuple[list[TaxLot], tuple[TaxLot, ...]]:
    """Take `quantity` units off the oldest lots: the pieces taken, and the lots left open."""
    taken: list[TaxLot] = []
    left = quantity
    for index, lot in enumerate(lots):
        size = abs(lot.quantity)
        if left >= size:
            taken.append(lot)
            left -= size
            if left == 0:
                return taken, tuple(lots[index + 1 :])
            continue
        piece, rest = _split(lot, left)
        return [*taken, piece], (rest, *lots[index + 1 :])
    raise AssertionError("callers check the quantity is open")  # pragma: no cover


def _split(lot: TaxLot, units: int) -> tuple[TaxLot, TaxLot]:
    """A piece of `units` off the lot (floor of its share of the basis, and of a replacement's washed loss)
    and the rest (the remainder)."""
    sign = -1 if lot.is_short else 1
    piece_basis = lot.basis_cents * units // abs(lot.quantity)
    washed, rest_washed = None, None
    if lot.washed_cents is not None:
        washed = lot.washed_cents * units // abs(lot.quantity)
        rest_washed = lot.washed_cents - washed
    piece = TaxLot(sign * units, lot.opened_on, piece_basis, washed)
    rest = TaxLot(lot.quantity - sign * units, lot.opened_on, lot.basis_cents - piece_basis, rest_washed)
    return piece, rest


def _spread(amount: int, weights: Sequence[int]) -> list[int]:
    """`amount` over pieces in proportion to `weights`: floor for each, the remainder to the last."""
    total = sum(weights)
    parts = [amount * weight // total for weight in weights[:-1]]
    return [*parts, amount - sum(parts)]


def _event(
    sleeve: SleeveKind,
    instrument: Instrument,
    piece: TaxLot,
    on: date,
    closing_cents: int,
    reason: CloseReason,
    cfg: TaxConfig,
) -> TaxableEvent:
    """A closed piece: a long lot's basis is its cost and the closing amount its proceeds; a short
    lot's the other way round."""
    proceeds, cost = (piece.basis_cents, closing_cents) if piece.is_short else (closing_cents, piece.basis_cents)
    return TaxableEvent(
        sleeve=sleeve,
        instrument=instrument,
        quantity=piece.quantity,
        opened_on=piece.opened_on,
        closed_on=on,
        proceeds_cents=proceeds,
        cost_cents=cost,
        term=holding_term(piece.opened_on, on, cfg),
        reason=reason,
    )


def _receives_shares(contract: OptionContract, *, short: bool) -> bool:
    """An assigned short put or an exercised long call buys shares; the other two sell them."""
    return (contract.right is OptionRight.PUT) == short


def _receive_shares(
    ledger: TaxLedger, sleeve: SleeveKind, stock: Equity, shares: int, cost: int, on: date, cfg: TaxConfig
) -> tuple[TaxLedger, list[TaxableEvent]]:
    lots = ledger.lots_of(sleeve, stock)
    _require_in_order(lots, on)
    # the holding period of shares received starts on the assignment day (a new lot, never merged)
    return _wash_purchase(ledger.with_lots(sleeve, stock, (*lots, TaxLot(shares, on, cost))), sleeve, stock, on, cfg)


def _deliver_shares(
    ledger: TaxLedger, sleeve: SleeveKind, stock: Equity, shares: int, proceeds: int, on: date, cfg: TaxConfig
) -> tuple[TaxLedger, list[TaxableEvent]]:
    lots = ledger.lots_of(sleeve, stock)
    _require_in_order(lots, on)
    held = sum(lot.quantity for lot in lots)
    if held < shares:
        raise ValidationFailed(
            f"delivering {shares} {stock.symbol} shares but {sleeve.value} holds {held} (calls must be covered)",
            field="contracts",
        )
    delivered, remaining = _take_fifo(lots, shares)
    shares_proceeds = _spread(proceeds, [piece.quantity for piece in delivered])
    events = [
        _event(sleeve, stock, piece, on, share, CloseReason.DELIVERED, cfg)
        for piece, share in zip(delivered, shares_proceeds, strict=True)
    ]
    return _wash_sale(ledger.with_lots(sleeve, stock, remaining), stock, events, on, cfg)


# --- wash sales (shares only) ---------------------------------------------------------------------------

_Replacement = tuple[tuple[SleeveKind, Instrument], int, int]  # (position, lot index, shares taken)


def _wash_sale(
    ledger: TaxLedger, stock: Equity, events: list[TaxableEvent], on: date, cfg: TaxConfig
) -> tuple[TaxLedger, list[TaxableEvent]]:
    """A share sale: each loss it realised is washed by open replacement shares; the rest is remembered."""
    ledger = _prune_losses(ledger, stock, on, cfg)
    if cfg.wash_sale_days == 0:
        return ledger, events
    washed: list[TaxableEvent] = []
    for event in events:
        if event.gain_cents < 0:
            ledger, event = _wash_loss(ledger, stock, event, cfg)
        washed.append(event)
    return ledger, washed


def _wash_loss(ledger: TaxLedger, stock: Equity, event: TaxableEvent, cfg: TaxConfig) -> tuple[TaxLedger, TaxableEvent]:
    loss = PendingLoss(
        event.sleeve, stock, event.opened_on, event.closed_on, event.term, event.quantity, -event.gain_cents
    )
    picked = _replacement_shares(ledger, stock, event.closed_on, event.quantity, cfg)
    disallowed, unwashed = _disallow(loss, sum(taken for _, _, taken in picked))
    ledger = _add_to_replacements(ledger, picked, disallowed)
    if unwashed is not None:
        ledger = replace(ledger, pending_losses=(*ledger.pending_losses, unwashed))
    return ledger, replace(event, wash_disallowed_cents=disallowed)


def _wash_purchase(
    ledger: TaxLedger, sleeve: SleeveKind, stock: Equity, on: date, cfg: TaxConfig
) -> tuple[TaxLedger, list[TaxableEvent]]:
    """Shares just bought (the position's last lot) wash the pending losses of the ticker within the window,
    oldest first: one correcting WASH_ADJUSTED event per loss washed."""
    ledger = _prune_losses(ledger, stock, on, cfg)
    lots = ledger.lots_of(sleeve, stock)
    bought = lots[-1]
    free, added = bought.quantity, 0
    events: list[TaxableEvent] = []
    pending: list[PendingLoss] = []
    for loss in ledger.pending_losses:
        if loss.stock != stock or free == 0 or not _in_window(loss.sold_on, on, cfg):
            pending.append(loss)
            continue
        taken = min(free, loss.quantity)
        disallowed, unwashed = _disallow(loss, taken)
        events.append(_wash_adjustment(loss, taken, disallowed))
        pending += [] if unwashed is None else [unwashed]
        free, added = free - taken, added + disallowed
    if not events:
        return ledger, []
    marked = _replacement(bought, bought.quantity - free, added)
    return replace(ledger.with_lots(sleeve, stock, (*lots[:-1], *marked)), pending_losses=tuple(pending)), events


def _in_window(bought_on: date, sold_on: date, cfg: TaxConfig) -> bool:
    return cfg.wash_sale_days > 0 and abs((bought_on - sold_on).days) <= cfg.wash_sale_days


def _prune_losses(ledger: TaxLedger, stock: Equity, on: date, cfg: TaxConfig) -> TaxLedger:
    """Forget the ticker's pending losses no purchase on or after `on` can wash any more."""
    kept = tuple(loss for loss in ledger.pending_losses if loss.stock != stock or _in_window(on, loss.sold_on, cfg))
    return ledger if kept == ledger.pending_losses else replace(ledger, pending_losses=kept)


def _replacement_shares(
    ledger: TaxLedger, stock: Equity, sold_on: date, shares: int, cfg: TaxConfig
) -> list[_Replacement]:
    """Up to `shares` open shares of `stock` in any sleeve, bought within the window and not yet a
    replacement, oldest lot first."""
    found = [
        (key, index, lot)
        for key, lots in ledger.lots.items()
        if key[1] == stock
        for index, lot in enumerate(lots)
        if lot.washed_cents is None and _in_window(lot.opened_on, sold_on, cfg)
    ]
    found.sort(key=lambda candidate: (candidate[2].opened_on, candidate[0][0].value, candidate[1]))
    picked: list[_Replacement] = []
    wanted = shares
    for key, index, lot in found:
        if wanted == 0:
            break
        taken = min(wanted, lot.quantity)
        picked.append((key, index, taken))
        wanted -= taken
    return picked


def _disallow(loss: PendingLoss, shares: int) -> tuple[int, PendingLoss | None]:
    """The loss on `shares` of the loss's shares (floor, as `_split`), and what stays un-washed (or None)."""
    piece, rest = _split(TaxLot(loss.quantity, loss.opened_on, loss.loss_cents), shares)
    unwashed = replace(loss, quantity=rest.quantity, loss_cents=rest.basis_cents) if rest.quantity else None
    return piece.basis_cents, unwashed


def _add_to_replacements(ledger: TaxLedger, picked: Sequence[_Replacement], disallowed: int) -> TaxLedger:
    """Spread the disallowed loss over the picked shares' basis (each lot split into its replacement piece)."""
    if not picked:
        return ledger
    marked: dict[tuple[SleeveKind, Instrument], dict[int, tuple[TaxLot, ...]]] = {}
    shares = [taken for _, _, taken in picked]
    for (key, index, taken), added in zip(picked, _spread(disallowed, shares), strict=True):
        marked.setdefault(key, {})[index] = _replacement(ledger.lots[key][index], taken, added)
    for (sleeve, instrument), by_index in marked.items():
        lots = ledger.lots_of(sleeve, instrument)
        ledger = ledger.with_lots(
            sleeve, instrument, [piece for index, lot in enumerate(lots) for piece in by_index.get(index, (lot,))]
        )
    return ledger


def _replacement(lot: TaxLot, shares: int, added_cents: int) -> tuple[TaxLot, ...]:
    """`shares` of the lot become a replacement with `added_cents` more basis; the rest stays free."""
    piece, rest = _split(lot, shares)
    replaced = replace(piece, basis_cents=piece.basis_cents + added_cents, washed_cents=added_cents)
    return (replaced, rest) if rest.quantity else (replaced,)


def _wash_adjustment(loss: PendingLoss, shares: int, disallowed: int) -> TaxableEvent:
    """The correction of a loss already realised: its disallowed part comes back as a gain, dated as the loss."""
    return TaxableEvent(
        sleeve=loss.sleeve,
        instrument=loss.stock,
        quantity=shares,
        opened_on=loss.opened_on,
        closed_on=loss.sold_on,
        proceeds_cents=0,
        cost_cents=0,
        term=loss.term,
        reason=CloseReason.WASH_ADJUSTED,
        wash_disallowed_cents=disallowed,
    )


def _offset_across_terms(short_term: int, long_term: int) -> tuple[int, int]:
    """A net loss in one term reduces the other term's net gain; nothing taxable is ever negative."""
    if short_term < 0 < long_term:
        return 0, max(long_term + short_term, 0)
    if long_term < 0 < short_term:
        return max(short_term + long_term, 0), 0
    return max(short_term, 0), max(long_term, 0)


# --- validation ---------------------------------------------------------------------------------------


def _require_positive(value: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationFailed(f"must be a whole number greater than 0 (got {value!r})", field=field)


def _require_not_negative(value: int, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationFailed(f"must be a whole number of cents, 0 or more (got {value!r})", field=field)


def _require_option(instrument: Instrument) -> OptionContract:
    if not isinstance(instrument, OptionContract):
        raise ValidationFailed(f"{instrument.symbol} is not an option", field="instrument")
    return instrument


def _require_open(ledger: TaxLedger, sleeve: SleeveKind, option: OptionContract) -> tuple[TaxLot, ...]:
    lots = ledger.lots_of(sleeve, option)
    if not lots:
        raise ValidationFailed(f"{sleeve.value} holds no {option.symbol}", field="instrument")
    return lots


def _require_in_order(lots: Sequence[TaxLot], on: date) -> None:
    """FIFO needs the position's history in date order: nothing may happen before an open lot opened."""
    latest = max((lot.opened_on for lot in lots), default=None)
    if latest is not None and on < latest:
        raise ValidationFailed(f"{on} is before the open lot of {latest} (apply in date order)", field="on")


# --- JSON reading ------------------------------------------------------------------------------------


def _lot_from_row(row: Any, where: str) -> tuple[tuple[SleeveKind, Instrument], TaxLot]:
    if not isinstance(row, Mapping):
        raise ValidationFailed("must be an object", field=where)
    try:
        sleeve = _enum(SleeveKind, row, "sleeve")
        instrument = _instrument(row, "instrument")
        quantity = _int(row, "quantity")
        washed = _int(row, "washed_cents") if "washed_cents" in row else None
        if washed is not None:
            _require_not_negative(washed, "washed_cents")
        lot = TaxLot(quantity, _date(row, "opened_on"), _int(row, "basis_cents"), washed)
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field=f"{where}.{error.field}") from None
    if quantity == 0:
        raise ValidationFailed("must not be 0 (closed lots are not stored)", field=f"{where}.quantity")
    return (sleeve, instrument), lot


def _pending_from_row(row: Any, where: str) -> PendingLoss:
    if not isinstance(row, Mapping):
        raise ValidationFailed("must be an object", field=where)
    try:
        return PendingLoss.from_jsonable(row)
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field=f"{where}.{error.field}") from None


def _check_stored_position(instrument: Instrument, lots: Sequence[TaxLot]) -> None:
    if not isinstance(instrument, Equity) and any(lot.washed_cents is not None for lot in lots):
        raise ValidationFailed(f"{instrument.symbol}: only share lots replace a wash sale", field="lots")
    if len({lot.is_short for lot in lots}) > 1:
        raise ValidationFailed(f"{instrument.symbol} has both long and short lots", field="lots")
    if lots[0].is_short and not isinstance(instrument, OptionContract):
        raise ValidationFailed(f"{instrument.symbol}: shares are never short", field="lots")
    if any(later.opened_on < earlier.opened_on for earlier, later in pairwise(lots)):
        raise ValidationFailed(f"{instrument.symbol}: lots must be listed oldest first", field="lots")


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"must be a whole number (got {value!r})", field=key)
    return value


def _date(data: Mapping[str, Any], key: str) -> date:
    value = data.get(key)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationFailed(f"must be an ISO date like 2026-01-02 (got {value!r})", field=key)


def _instrument(data: Mapping[str, Any], key: str) -> Instrument:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"must be a ticker or an OCC option symbol (got {value!r})", field=key)
    try:
        return instrument_from_symbol(value)
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field=key) from None


def _enum(kind: type[E], data: Mapping[str, Any], key: str) -> E:
    value = data.get(key)
    if isinstance(value, str) and value in {member.value for member in kind}:
        return kind(value)
    choices = ", ".join(member.value for member in kind)
    raise ValidationFailed(f"must be one of {choices} (got {value!r})", field=key)


# --- the broker's bookings, lot by lot ------------------------------------------------------------------


def book_execution_lots(
    ledger: TaxLedger, sleeve: SleeveKind, execution: Execution, on: date, *, cfg: TaxConfig
) -> tuple[TaxLedger, list[TaxableEvent]]:
    """A fill as the tax ledger sees it (`on` is its New York trade date)."""
    return apply_fill(
        ledger,
        sleeve,
        execution.instrument,
        execution.side,
        execution.quantity,
        execution.price_cents,
        execution.commission_cents,
        on,
        cfg=cfg,
    )


def book_settlement_lots(
    ledger: TaxLedger, holders: Mapping[SleeveKind, int], settlement: Settlement, on: date, *, cfg: TaxConfig
) -> tuple[TaxLedger, list[TaxableEvent]]:
    """An expiry settlement over the sleeves holding the contract (`holders`: their signed contracts)."""
    option = _require_option(settlement.instrument)
    events: list[TaxableEvent] = []
    contracts = abs(settlement.quantity)
    for sleeve, held in holders.items():
        if settlement.kind is SettlementKind.EXPIRED_WORTHLESS:
            ledger, booked = apply_expiry(ledger, sleeve, option, on, cfg=cfg)
        elif settlement.kind is SettlementKind.CLOSED_AT_INTRINSIC:  # a long option sold at its intrinsic value
            price = settlement.cash_cents // (contracts * option.multiplier)
            ledger, booked = apply_fill(ledger, sleeve, option, Side.SELL, abs(held), price, 0, on, cfg=cfg)
        else:  # assigned, called away, exercised: the premium moves into the shares (A12)
            ledger, booked = apply_assignment(ledger, sleeve, option, abs(held), on, cfg=cfg)
        events += booked
    return ledger, events


def gains_by_term(events: Iterable[TaxableEvent]) -> tuple[int, int]:
    """(short-term, long-term) realised gain of these events."""
    events = list(events)
    return (
        sum(e.gain_cents for e in events if e.term is Term.SHORT),
        sum(e.gain_cents for e in events if e.term is Term.LONG),
    )
