"""Orders (domain-spec A8, B§3 "Orders (CON)"): deterministic intent ids, the order state machine, the
working rules (limit at mid on the tick grid, reprice toward the touch, cancel at timeout, slicing) and
reconciliation with the broker.

Everything here is pure: time and market are arguments, and reconciliation returns actions (adopt,
resubmit the same ref, cancel, alert) for the caller to carry out; nothing here talks to a broker.

The one rule everything serves: an outcome we did not see is not a reject. An order sent but not
acknowledged (timeout, crash between placement and acknowledgement) stays SUBMITTING until the broker's
own record says what happened; it is placed again only under the same ref, which the broker treats as
idempotent, so one intent never has two live orders.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import TypeVar

from alluse.domain.brokerage import BrokerOrder, Execution, OrderRequest, OrderStatus, OrderType, Side
from alluse.domain.config import OrdersConfig
from alluse.domain.errors import IllegalTransition, ValidationFailed
from alluse.domain.instruments import Equity, Instrument
from alluse.domain.sleeves import SleeveKind
from alluse.domain.ticks import TickRule

__all__ = [
    "MAX_REF_LENGTH",
    "Adopt",
    "AlertMismatch",
    "AlertOrphan",
    "Cancel",
    "ManagedOrder",
    "OrderState",
    "Quote",
    "ReconcileAction",
    "ReconcileResult",
    "Resubmit",
    "StateChange",
    "apply_broker_order",
    "concession_bound",
    "due_for_reprice",
    "grid_ceil",
    "grid_floor",
    "initial_limit",
    "intent_id",
    "intent_purpose",
    "intent_stem",
    "intent_version",
    "is_on_grid",
    "legal_transitions",
    "next_limit",
    "plan_order",
    "reconcile",
    "record_resubmission",
    "replacement",
    "should_cancel",
    "slice_intent_id",
    "slice_order",
    "slice_quantities",
    "transition",
    "with_version",
]


# --------------------------------------------------------------------------------------------------
# Intent ids: SLEEVE-yymmdd-PURP-UNDER-hash[-slice].vN, e.g. GEN-261130-OPEN-TSLA-k2m7q3xa.v1
# --------------------------------------------------------------------------------------------------

MAX_REF_LENGTH = 40  # what fits an IBKR orderRef here; only [A-Za-z0-9-_.]
_HASH_CHARS = 8  # 40 bits; the readable prefix already separates sleeve, week, purpose and underlying
_SLEEVE_CHARS = 4
_PURPOSE_CHARS = 4
_UNDERLYING_CHARS = 5
_REF = re.compile(
    r"(?P<stem>[A-Z0-9]{1,4}-\d{6}-[A-Z0-9]{1,4}-[A-Z0-9]{1,5}-[a-z2-7]{8}(?P<slice>-[1-9]\d*)?)\.v(?P<version>[1-9]\d*)"
)


def _readable(text: str, width: int) -> str:
    """Upper-case letters and digits only, so '-' and '.' stay unambiguous separators."""
    cleaned = "".join(ch for ch in text.upper() if ch.isascii() and ch.isalnum())
    return cleaned[:width] or "X"


def _digest(*parts: str) -> str:
    payload = json.dumps(parts, ensure_ascii=True)  # unambiguous, unlike joining on a separator
    raw = hashlib.sha256(payload.encode("ascii")).digest()
    return base64.b32encode(raw).decode("ascii").lower()[:_HASH_CHARS]


def _required(value: str, name: str) -> str:
    if not value.strip():
        raise ValidationFailed(f"{name} must not be empty", field=name)
    return value


def _versioned(stem: str, version: int) -> str:
    if version < 1:
        raise ValidationFailed(f"version must be 1 or more (got {version})", field="version")
    ref = f"{stem}.v{version}"
    if len(ref) > MAX_REF_LENGTH:
        raise ValidationFailed(f"intent id {ref} is longer than {MAX_REF_LENGTH} characters", field="version")
    return ref


def intent_id(
    account_id: str,
    sleeve: SleeveKind,
    week_start: date,
    purpose: str,
    underlying: str,
    leg: str | int,
    version: int = 1,
) -> str:
    """The deterministic id of one order intent, carried to the broker as the order's ref.

    The same inputs always give the same id; the hash covers every input in full, the readable prefix
    only their start. A reprice of the intent keeps the stem and raises the version suffix.
    """
    day = f"{week_start:%Y-%m-%d}"  # a datetime and its date name the same week
    digest = _digest(_required(account_id, "account_id"), sleeve.value, day, purpose, underlying, str(leg))
    stem = "-".join(
        (
            sleeve.value[:_SLEEVE_CHARS],
            f"{week_start:%y%m%d}",
            _readable(_required(purpose, "purpose"), _PURPOSE_CHARS),
            _readable(_required(underlying, "underlying"), _UNDERLYING_CHARS),
            digest,
        )
    )
    return _versioned(stem, version)


def _parsed(ref: str) -> re.Match[str]:
    match = _REF.fullmatch(ref)
    if match is None:
        raise ValidationFailed(f"{ref!r} is not an ALL-USE intent id", field="intent_id")
    return match


def intent_stem(ref: str) -> str:
    """The part every version of one intent shares."""
    return _parsed(ref)["stem"]


def intent_purpose(ref: str) -> str:
    """The purpose part of an intent id, as `intent_id` wrote it (upper case, at most four characters)."""
    return intent_stem(ref).split("-")[2]


def intent_version(ref: str) -> int:
    return int(_parsed(ref)["version"])


def with_version(ref: str, version: int) -> str:
    return _versioned(intent_stem(ref), version)


def slice_intent_id(ref: str, index: int) -> str:
    """The id of slice `index` (1-based) of an intent: the parent's stem plus the index, version 1."""
    match = _parsed(ref)
    if match["slice"]:
        raise ValidationFailed(f"{ref} is already a slice; slices are not sliced again", field="intent_id")
    if index < 1:
        raise ValidationFailed(f"slice index must be 1 or more (got {index})", field="index")
    return _versioned(f"{match['stem']}-{index}", 1)


# --------------------------------------------------------------------------------------------------
# State machine
# --------------------------------------------------------------------------------------------------


class OrderState(StrEnum):
    PLANNED = "PLANNED"  # decided, not sent
    SUBMITTING = "SUBMITTING"  # sent; outcome unknown until the broker acknowledges (in flight)
    WORKING = "WORKING"  # acknowledged, resting, nothing filled
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"  # cancel sent; fills may still win the race
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"  # only on the broker's word, never for a timeout

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_worked(self) -> bool:
        """Resting at the broker: repriced after a delay, cancelled at the timeout (A8)."""
        return self in _WORKED

    @property
    def may_be_live(self) -> bool:
        """The broker may hold a working order for it."""
        return self in _MAY_BE_LIVE


_S = OrderState
_TERMINAL = frozenset({_S.FILLED, _S.CANCELLED, _S.REJECTED})
_MAY_BE_LIVE = frozenset({_S.SUBMITTING, _S.WORKING, _S.PARTIALLY_FILLED, _S.CANCEL_REQUESTED})
_WORKED = frozenset({_S.WORKING, _S.PARTIALLY_FILLED})

# No UNKNOWN state: an ambiguous outcome simply stays SUBMITTING until reconciled.
_LEGAL: Mapping[OrderState, frozenset[OrderState]] = {
    _S.PLANNED: frozenset({_S.SUBMITTING, _S.CANCELLED}),  # CANCELLED: withdrawn before sending
    _S.SUBMITTING: frozenset({_S.WORKING, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED}),
    # REJECTED after acknowledgement: IBKR can refuse an order it first accepted (e.g. a margin check)
    _S.WORKING: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCEL_REQUESTED, _S.CANCELLED, _S.REJECTED}),
    _S.PARTIALLY_FILLED: frozenset({_S.FILLED, _S.CANCEL_REQUESTED, _S.CANCELLED}),
    # back to WORKING / PARTIALLY_FILLED: the broker refused the cancel and the order still works
    _S.CANCEL_REQUESTED: frozenset({_S.CANCELLED, _S.FILLED, _S.WORKING, _S.PARTIALLY_FILLED}),
    _S.FILLED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
}


def legal_transitions(state: OrderState) -> frozenset[OrderState]:
    return _LEGAL[state]


@dataclass(frozen=True)
class StateChange:
    at: datetime
    from_state: OrderState
    to_state: OrderState
    why: str


@dataclass(frozen=True)
class Quote:
    """Bid and ask of one instrument, cents per share."""

    bid_cents: int
    ask_cents: int

    def __post_init__(self) -> None:
        if self.ask_cents <= 0 or not 0 <= self.bid_cents <= self.ask_cents:
            raise ValidationFailed(
                f"quote bid {self.bid_cents} / ask {self.ask_cents} cents: need 0 <= bid <= ask and ask > 0",
                field="quote",
            )

    @property
    def mid(self) -> Fraction:
        """Exact mid in cents (may be a half cent)."""
        return Fraction(self.bid_cents + self.ask_cents, 2)


@dataclass(frozen=True)
class ManagedOrder:
    """One version of one intent, as ALL-USE tracks it. A reprice is a new version (a new ManagedOrder)."""

    intent_id: str  # == request.client_ref, version suffix included
    account_id: str
    sleeve: SleeveKind
    request: OrderRequest
    state: OrderState = OrderState.PLANNED
    broker_order_id: str | None = None
    filled_quantity: int = 0
    fill_value_cents: int = 0  # price × quantity × multiplier over fills, as the broker reports it
    commission_cents: int = 0
    attempts: int = 0  # placements of this ref with the broker (a resubmission of the same ref counts)
    submitted_at: datetime | None = None  # this version's (latest) placement: the reprice delay runs from here
    started_at: datetime | None = None  # the intent's first placement: the timeout runs from here
    reference_quote: Quote | None = None  # the quote the first limit came from: concessions are measured from it
    history: tuple[StateChange, ...] = field(default=())

    def __post_init__(self) -> None:
        _parsed(self.intent_id)
        if self.request.client_ref != self.intent_id:
            raise ValidationFailed(
                f"request ref {self.request.client_ref} differs from intent id {self.intent_id}", field="client_ref"
            )
        if self.request.quantity <= 0:
            raise ValidationFailed(f"quantity must be positive (got {self.request.quantity})", field="quantity")
        if not 0 <= self.filled_quantity <= self.request.quantity:
            raise ValidationFailed(
                f"filled {self.filled_quantity} of {self.request.quantity} is impossible", field="filled_quantity"
            )

    @property
    def version(self) -> int:
        return intent_version(self.intent_id)

    @property
    def reprices(self) -> int:
        return self.version - 1

    @property
    def stem(self) -> str:
        return intent_stem(self.intent_id)

    @property
    def remaining(self) -> int:
        return self.request.quantity - self.filled_quantity


def plan_order(
    account_id: str, sleeve: SleeveKind, request: OrderRequest, *, reference_quote: Quote | None = None
) -> ManagedOrder:
    """A new PLANNED order; its intent id is the request's ref."""
    if request.order_type is OrderType.LIMIT and (request.limit_price_cents or 0) <= 0:
        raise ValidationFailed("a limit order needs a positive limit price", field="limit_price_cents")
    return ManagedOrder(request.client_ref, account_id, sleeve, request, reference_quote=reference_quote)


def transition(order: ManagedOrder, to: OrderState, at: datetime, why: str) -> ManagedOrder:
    """Move an order along the state machine; entering SUBMITTING counts a placement."""
    if to not in _LEGAL[order.state]:
        allowed = ", ".join(sorted(_LEGAL[order.state])) or "none (terminal state)"
        raise IllegalTransition(
            f"order {order.intent_id} cannot go from {order.state.value} to {to.value}; allowed: {allowed}",
            field="state",
        )
    changed = replace(order, state=to, history=(*order.history, StateChange(at, order.state, to, why)))
    if to is OrderState.SUBMITTING:
        changed = replace(changed, attempts=order.attempts + 1, submitted_at=at, started_at=order.started_at or at)
    return changed


def record_resubmission(order: ManagedOrder, at: datetime) -> ManagedOrder:
    """The caller placed an in-flight order again under the same ref (a Resubmit action)."""
    if order.state is not OrderState.SUBMITTING:
        raise IllegalTransition(
            f"order {order.intent_id} is {order.state.value}; only a SUBMITTING order is resubmitted", field="state"
        )
    attempts = order.attempts + 1
    note = StateChange(at, order.state, order.state, f"placed again under the same ref (attempt {attempts})")
    return replace(order, attempts=attempts, submitted_at=at, history=(*order.history, note))


# --------------------------------------------------------------------------------------------------
# Tick grid and limits (`rule` is the configured price grid, AllUseConfig.ticks)
# --------------------------------------------------------------------------------------------------


def _small_tick(rule: TickRule, instrument: Instrument) -> int:
    return rule.equity_tick_cents if isinstance(instrument, Equity) else rule.option_small_tick_cents


def _tick_at(rule: TickRule, instrument: Instrument, price_cents: int) -> int:
    if isinstance(instrument, Equity):
        return rule.equity_tick_cents
    return rule.option_tick_cents(instrument.underlying, price_cents)


def grid_floor(rule: TickRule, instrument: Instrument, price_cents: Fraction | int) -> int:
    """The highest grid price at or below `price_cents`."""
    small = _small_tick(rule, instrument)
    on_small = math.floor(Fraction(price_cents) / small) * small
    tick = _tick_at(rule, instrument, on_small)
    return (on_small // tick) * tick


def grid_ceil(rule: TickRule, instrument: Instrument, price_cents: Fraction | int) -> int:
    """The lowest grid price at or above `price_cents`."""
    small = _small_tick(rule, instrument)
    on_small = math.ceil(Fraction(price_cents) / small) * small
    tick = _tick_at(rule, instrument, on_small)
    return -(-on_small // tick) * tick


def is_on_grid(rule: TickRule, instrument: Instrument, price_cents: int) -> bool:
    return price_cents > 0 and price_cents % _tick_at(rule, instrument, price_cents) == 0


def initial_limit(quote: Quote, side: Side, rule: TickRule, instrument: Instrument) -> int:
    """The mid on the grid, rounded in our favour (a sell up, a buy down): the first look keeps the
    half tick; repricing concedes toward the touch afterwards. Never below one tick."""
    if side is Side.SELL:
        return grid_ceil(rule, instrument, quote.mid)
    return max(grid_floor(rule, instrument, quote.mid), _small_tick(rule, instrument))


def concession_bound(
    reference_mid: Fraction, side: Side, rule: TickRule, instrument: Instrument, max_concession_pct: Fraction
) -> int:
    """The worst limit allowed: `max_concession_pct` worse than the reference mid, on the grid, rounded
    back inside the bound."""
    if side is Side.SELL:
        worst = reference_mid * (1 - max_concession_pct)
        return max(grid_ceil(rule, instrument, worst), _small_tick(rule, instrument))
    return grid_floor(rule, instrument, reference_mid * (1 + max_concession_pct))


def _one_tick_toward_touch(limit_cents: int, side: Side, rule: TickRule, instrument: Instrument) -> int:
    if side is Side.SELL:
        return grid_floor(rule, instrument, limit_cents - 1)
    return grid_ceil(rule, instrument, limit_cents + 1)


def next_limit(
    limit_cents: int,
    side: Side,
    quote: Quote,
    reference_mid: Fraction,
    rule: TickRule,
    instrument: Instrument,
    rules: OrdersConfig,
) -> int | None:
    """The repriced limit: `reprice_step_ticks` toward the touch (a sell's bid, a buy's ask), stopping at
    the touch and at the concession bound, whichever comes first. None when it cannot move further."""
    pct = Fraction(rules.max_price_concession_pct)
    bound = concession_bound(reference_mid, side, rule, instrument, pct)
    candidate = limit_cents
    for _ in range(rules.reprice_step_ticks):
        candidate = _one_tick_toward_touch(candidate, side, rule, instrument)
    if side is Side.SELL:
        stop = max(grid_ceil(rule, instrument, quote.bid_cents), bound)
        moved = max(candidate, stop)
        return moved if moved < limit_cents else None
    stop = min(grid_floor(rule, instrument, quote.ask_cents), bound)
    moved = min(candidate, stop)
    return moved if moved > limit_cents else None


def due_for_reprice(order: ManagedOrder, now: datetime, rules: OrdersConfig) -> bool:
    """A resting version has waited `reprice_after_seconds` since it was placed."""
    if order.state not in _WORKED or order.submitted_at is None:
        return False
    return now - order.submitted_at >= timedelta(seconds=rules.reprice_after_seconds)


def should_cancel(order: ManagedOrder, now: datetime, rules: OrdersConfig) -> bool:
    """The intent has worked `timeout_seconds` since its first placement (all versions together).

    An in-flight (SUBMITTING) order is never due: it is reconciled first, then cancelled if still working.
    """
    if order.state not in _WORKED or order.started_at is None:
        return False
    return now - order.started_at >= timedelta(seconds=rules.timeout_seconds)


def replacement(order: ManagedOrder, limit_cents: int) -> ManagedOrder:
    """The next version of a cancelled order, for what is left, at a new limit (cancel-replace).

    Only after the broker confirmed the cancel, so two versions of one intent are never live together.
    """
    if order.state is not OrderState.CANCELLED:
        raise IllegalTransition(
            f"order {order.intent_id} is {order.state.value}; it is replaced only once CANCELLED", field="state"
        )
    if order.remaining <= 0:
        raise ValidationFailed(f"order {order.intent_id} has nothing left to replace", field="quantity")
    if limit_cents <= 0:
        raise ValidationFailed(f"limit must be positive (got {limit_cents})", field="limit_price_cents")
    ref = with_version(order.intent_id, order.version + 1)
    request = replace(order.request, client_ref=ref, quantity=order.remaining, limit_price_cents=limit_cents)
    return ManagedOrder(
        ref,
        order.account_id,
        order.sleeve,
        request,
        started_at=order.started_at,
        reference_quote=order.reference_quote,
    )


def slice_quantities(quantity: int, max_per_slice: int) -> tuple[int, ...]:
    """Split into the fewest slices of at most `max_per_slice`, as equal as possible, larger first."""
    if quantity <= 0 or max_per_slice <= 0:
        raise ValidationFailed(f"cannot slice {quantity} by {max_per_slice}", field="quantity")
    count = -(-quantity // max_per_slice)
    base, extra = divmod(quantity, count)
    return tuple(base + 1 if index < extra else base for index in range(count))


def slice_order(order: ManagedOrder, rules: OrdersConfig) -> tuple[ManagedOrder, ...]:
    """An option order above `slice_above_contracts` becomes child intents with their own ids;
    equities (share quantities) and small orders come back unchanged."""
    if isinstance(order.request.instrument, Equity) or order.request.quantity <= rules.slice_above_contracts:
        return (order,)
    if order.state is not OrderState.PLANNED or order.version != 1:
        raise IllegalTransition(
            f"order {order.intent_id} is {order.state.value} v{order.version}; only a new PLANNED order is sliced",
            field="state",
        )
    quantities = slice_quantities(order.request.quantity, rules.slice_above_contracts)
    children = []
    for index, quantity in enumerate(quantities, start=1):
        ref = slice_intent_id(order.intent_id, index)
        children.append(
            replace(order, intent_id=ref, request=replace(order.request, client_ref=ref, quantity=quantity))
        )
    return tuple(children)


# --------------------------------------------------------------------------------------------------
# Reconciliation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adopt:
    """Store this order: the broker's state and quantities adopted."""

    order: ManagedOrder
    from_state: OrderState
    why: str

    @property
    def intent_id(self) -> str:
        return self.order.intent_id


@dataclass(frozen=True)
class Resubmit:
    """Place this request again: same ref, so the broker cannot make it a second order."""

    intent_id: str
    request: OrderRequest


@dataclass(frozen=True)
class Cancel:
    intent_id: str
    broker_order_id: str
    why: str


@dataclass(frozen=True)
class AlertOrphan:
    """The broker holds an order whose ref no local order has: a human looks; nothing is cancelled,
    since the order may be an operator's."""

    broker_order: BrokerOrder


@dataclass(frozen=True)
class AlertMismatch:
    """Local and broker records disagree in a way no rule resolves: nothing changes, a human looks."""

    intent_id: str
    why: str


ReconcileAction = Adopt | Resubmit | Cancel | AlertOrphan | AlertMismatch
A = TypeVar("A", Adopt, Resubmit, Cancel, AlertOrphan, AlertMismatch)


@dataclass(frozen=True)
class ReconcileResult:
    orders: tuple[ManagedOrder, ...]  # the local orders after adoption, in the input order
    actions: tuple[ReconcileAction, ...]

    def of(self, kind: type[A]) -> tuple[A, ...]:
        return tuple(action for action in self.actions if isinstance(action, kind))


def _broker_target(broker: BrokerOrder) -> OrderState:
    match broker.status:
        case OrderStatus.FILLED:
            return OrderState.FILLED
        case OrderStatus.CANCELLED:
            return OrderState.CANCELLED
        case OrderStatus.REJECTED:
            return OrderState.REJECTED
        case _:
            return OrderState.PARTIALLY_FILLED if broker.filled_quantity else OrderState.WORKING


def _target(local: OrderState, broker: BrokerOrder) -> OrderState:
    target = _broker_target(broker)
    if local is OrderState.CANCEL_REQUESTED and target in _WORKED:
        return local  # the cancel is still on its way; fills are adopted meanwhile
    return target


def _path(local: OrderState, target: OrderState) -> tuple[OrderState, ...] | None:
    """Legal steps from local to target; an unacknowledged PLANNED order passes through SUBMITTING."""
    if local is target:
        return ()
    steps = (OrderState.SUBMITTING, target) if local is OrderState.PLANNED else (target,)
    state = local
    for step in steps:
        if step is not state and step not in _LEGAL[state]:
            return None
        state = step
    return tuple(step for step in steps if step is not local)


def _with_totals(
    order: ManagedOrder, target: OrderState, totals: tuple[int, int, int], at: datetime, why: str
) -> ManagedOrder | str:
    """The order moved to `target` with the given fill totals, or the reason it cannot be."""
    filled, value, commission = totals
    if not order.filled_quantity <= filled <= order.request.quantity:
        return f"broker reports {filled} filled; local has {order.filled_quantity} of {order.request.quantity}"
    path = _path(order.state, target)
    if path is None:
        return f"local {order.state.value} cannot become {target.value}"
    for step in path:
        order = transition(order, step, at, why)
    return replace(order, filled_quantity=filled, fill_value_cents=value, commission_cents=commission)


def _adoption(order: ManagedOrder, broker: BrokerOrder, at: datetime) -> ManagedOrder | str:
    if broker.request.instrument != order.request.instrument or broker.request.side is not order.request.side:
        return f"broker order {broker.broker_order_id} under this ref is a different instrument or side"
    totals = (broker.filled_quantity, broker.fill_value_cents, broker.commission_cents)
    why = f"broker {broker.broker_order_id}: {broker.status.value}"
    adopted = _with_totals(order, _target(order.state, broker), totals, at, why)
    if isinstance(adopted, str):
        return f"{adopted} (broker {broker.broker_order_id} is {broker.status.value})"
    return replace(adopted, broker_order_id=broker.broker_order_id)


def adopt_newer_version(prior: ManagedOrder, broker: BrokerOrder, at: datetime) -> ManagedOrder | str:
    """A newer version of a known intent, found at the broker (a reprice written behind, its record lost
    with the memory that held it): built from the version before it and the broker's request, in the
    broker's state; or why the broker's order cannot be that.

    Safe because the intent is known, so it is never placed afresh: an order under its next version, for
    the same instrument and side and no more than the version before it left to fill, can only be its
    replacement."""
    ref, request = broker.client_ref, broker.request
    if intent_stem_or_none(ref) != prior.stem or intent_version(ref) <= prior.version:
        return f"broker ref {ref} is not a newer version of {prior.intent_id}"
    if request.instrument != prior.request.instrument or request.side is not prior.request.side:
        return f"broker order {broker.broker_order_id} ({ref}) is a different instrument or side than {prior.intent_id}"
    if request.quantity > prior.remaining:
        return f"broker order {broker.broker_order_id} ({ref}) is for more than {prior.intent_id} left to fill"
    order = ManagedOrder(ref, prior.account_id, prior.sleeve, request, reference_quote=prior.reference_quote)
    order = replace(order, started_at=prior.started_at or broker.submitted_at)
    order = transition(order, OrderState.SUBMITTING, broker.submitted_at, "newer version found at the broker")
    return _adoption(order, broker, at)


def apply_broker_order(order: ManagedOrder, broker: BrokerOrder, at: datetime) -> ManagedOrder:
    """Adopt what the broker says about this order (e.g. the answer to place or cancel)."""
    if broker.client_ref != order.intent_id:
        raise ValidationFailed(f"broker order ref {broker.client_ref} is not {order.intent_id}", field="client_ref")
    adopted = _adoption(order, broker, at)
    if isinstance(adopted, str):
        raise IllegalTransition(f"order {order.intent_id}: {adopted}", field="state")
    return adopted


def _execution_totals(executions: Sequence[Execution]) -> tuple[int, int, int]:
    quantity = sum(e.quantity for e in executions)
    value = sum(e.price_cents * e.quantity * e.instrument.multiplier for e in executions)
    return quantity, value, sum(e.commission_cents for e in executions)


def _absent_at_broker(
    order: ManagedOrder, executions: Sequence[Execution], at: datetime, rules: OrdersConfig
) -> tuple[ManagedOrder, list[ReconcileAction]]:
    """The broker lists no order for this ref. Fills still count; an acknowledged order is never resent.

    A terminal order is left alone: brokers drop old orders and executions from their lists (IBKR keeps
    a day or so), which says nothing new about it.
    """
    if order.state.is_terminal:
        return order, []
    if executions:
        totals = _execution_totals(executions)
        target = OrderState.FILLED if totals[0] >= order.request.quantity else OrderState.PARTIALLY_FILLED
        if order.state is OrderState.CANCEL_REQUESTED and target is not OrderState.FILLED:
            target = order.state
        adopted = _with_totals(order, target, totals, at, "executions under this ref")
        if isinstance(adopted, str):
            return order, [AlertMismatch(order.intent_id, f"{adopted} (from executions; no broker order)")]
        order = adopted
    if order.state is OrderState.SUBMITTING and not executions:
        if order.attempts >= rules.max_submit_attempts:
            why = f"placed {order.attempts} times, the broker has no record; left in flight for a human"
            return order, [AlertMismatch(order.intent_id, why)]
        return order, [Resubmit(order.intent_id, order.request)]
    if order.state.may_be_live:
        why = f"broker lists no order for this ref while it is {order.state.value}; not resubmitted"
        return order, [AlertMismatch(order.intent_id, why)]
    return order, []


def _present_at_broker(
    order: ManagedOrder, broker: BrokerOrder, at: datetime
) -> tuple[ManagedOrder, list[ReconcileAction]]:
    ref, live = order.intent_id, not broker.status.is_final
    if order.state.is_terminal and live:
        why = f"local {order.state.value} but broker {broker.broker_order_id} still works it"
        return order, [AlertMismatch(ref, why), Cancel(ref, broker.broker_order_id, why)]
    adopted = _adoption(order, broker, at)
    if isinstance(adopted, str):
        return order, [AlertMismatch(ref, adopted)]
    actions: list[ReconcileAction] = []
    if adopted.state is OrderState.CANCEL_REQUESTED and live:
        actions.append(Cancel(ref, broker.broker_order_id, "cancel requested; the broker still works it"))
    if broker.request != order.request:
        actions.append(AlertMismatch(ref, f"broker order {broker.broker_order_id} differs from the local request"))
    return adopted, actions


def _reconcile_one(
    order: ManagedOrder,
    brokers: Sequence[BrokerOrder],
    executions: Sequence[Execution],
    at: datetime,
    rules: OrdersConfig,
) -> tuple[ManagedOrder, list[ReconcileAction]]:
    if len(brokers) > 1:
        ids = ", ".join(sorted(b.broker_order_id for b in brokers))
        return order, [AlertMismatch(order.intent_id, f"the broker holds several orders under this ref: {ids}")]
    if brokers:
        return _present_at_broker(order, brokers[0], at)
    return _absent_at_broker(order, executions, at, rules)


def intent_stem_or_none(ref: str) -> str | None:
    """The stem of an ALL-USE intent id; None for any other ref (an operator's order, say)."""
    match = _REF.fullmatch(ref)
    return match["stem"] if match else None


def _one_live_per_intent(
    orders: Sequence[ManagedOrder], brokers: Mapping[str, Sequence[BrokerOrder]], actions: list[ReconcileAction]
) -> list[ReconcileAction]:
    """Never two live versions of one intent: a resubmission waits if another version works, and
    of several working versions only the newest is kept."""
    live: dict[str, list[BrokerOrder]] = defaultdict(list)
    for ref, found in brokers.items():
        stem = intent_stem_or_none(ref)
        if stem is not None:
            live[stem].extend(b for b in found if not b.status.is_final)
    known = {order.intent_id for order in orders}
    checked: list[ReconcileAction] = []
    for action in actions:
        if isinstance(action, Resubmit) and live[intent_stem(action.intent_id)]:
            why = "not resubmitted: another version of this intent is live at the broker"
            checked.append(AlertMismatch(action.intent_id, why))
        else:
            checked.append(action)
    for stem in sorted(live):
        mine = sorted((b for b in live[stem] if b.client_ref in known), key=lambda b: intent_version(b.client_ref))
        for stale in mine[:-1]:
            why = f"a newer version of intent {stem} is live"
            checked.append(Cancel(stale.client_ref, stale.broker_order_id, why))
    return checked


def _unique(actions: Sequence[ReconcileAction]) -> tuple[ReconcileAction, ...]:
    """Each action once; one cancel per broker order, whatever the reasons."""
    seen: set[object] = set()
    kept: list[ReconcileAction] = []
    for action in actions:
        key = ("cancel", action.intent_id, action.broker_order_id) if isinstance(action, Cancel) else action
        if key not in seen:
            seen.add(key)
            kept.append(action)
    return tuple(kept)


def reconcile(
    local: Sequence[ManagedOrder],
    broker_orders: Sequence[BrokerOrder],
    executions: Sequence[Execution],
    at: datetime,
    rules: OrdersConfig,
    *,
    history: Mapping[str, ManagedOrder] | None = None,
) -> ReconcileResult:
    """Match one brokerage account's local orders with the broker's by ref (= intent id).

    Broker acknowledgements and fills are adopted (the broker is the truth); an in-flight order the
    broker has never heard of is resubmitted under the same ref; an order the broker holds under an
    unknown ref is reported, never touched — unless it is a newer version of a known intent, which is
    adopted from the version before it, found among `local` or the account's other known orders
    (`history`, by intent id; final ones too). Running it again on its own result gives no new action.
    An in-flight order is resubmitted at most `rules.max_submit_attempts` times before a human is asked.
    """
    refs = [order.intent_id for order in local]
    if len(set(refs)) != len(refs):
        raise ValidationFailed("two local orders share one intent id", field="intent_id")
    by_ref: dict[str, list[BrokerOrder]] = defaultdict(list)
    for broker in broker_orders:
        by_ref[broker.client_ref].append(broker)
    fills: dict[str, dict[str, Execution]] = defaultdict(dict)
    for execution in executions:
        fills[execution.client_ref][execution.execution_id] = execution  # a repeated report counts once
    orders: list[ManagedOrder] = []
    actions: list[ReconcileAction] = []
    for order in local:
        found = by_ref.get(order.intent_id, [])
        updated, found_actions = _reconcile_one(order, found, list(fills[order.intent_id].values()), at, rules)
        if updated != order:
            actions.append(Adopt(updated, order.state, f"reconciled: {order.state.value} -> {updated.state.value}"))
        actions.extend(found_actions)
        orders.append(updated)
    orders += _newer_versions(orders, history or {}, broker_orders, at, actions)
    actions = _one_live_per_intent(orders, by_ref, actions)
    known = {order.intent_id for order in orders}
    actions.extend(
        AlertOrphan(broker)
        for broker in broker_orders
        if broker.client_ref not in known and not _explained(broker, actions)
    )
    return ReconcileResult(tuple(orders), _unique(actions))


def _newer_versions(
    orders: Sequence[ManagedOrder],
    history: Mapping[str, ManagedOrder],
    broker_orders: Sequence[BrokerOrder],
    at: datetime,
    actions: list[ReconcileAction],
) -> list[ManagedOrder]:
    """Broker orders under an unknown ref that are a newer version of a known intent: adopted (or, when
    they cannot be that version, a mismatch for a human)."""
    by_id = {order.intent_id: order for order in orders}
    unknown = [b for b in broker_orders if b.client_ref not in by_id and b.client_ref not in history]
    stems = {stem for b in unknown if (stem := intent_stem_or_none(b.client_ref)) is not None}
    if not stems:
        return []  # every broker order is known: no walk through the history
    latest: dict[str, ManagedOrder] = {}
    for order in {**history, **by_id}.values():  # this pass's reconciled state wins over the history's
        if order.stem in stems and (order.stem not in latest or order.version > latest[order.stem].version):
            latest[order.stem] = order
    known = set(by_id)
    adopted: list[ManagedOrder] = []
    candidates = [b for b in unknown if intent_stem_or_none(b.client_ref) in latest]
    for broker in sorted(candidates, key=lambda b: intent_version(b.client_ref)):  # v2 before v3
        stem = intent_stem(broker.client_ref)
        found = adopt_newer_version(latest[stem], broker, at)
        if isinstance(found, str):
            actions.append(AlertMismatch(broker.client_ref, found))
            continue
        actions.append(Adopt(found, OrderState.PLANNED, f"newer version found at the broker: {found.state.value}"))
        adopted.append(found)
        latest[stem] = found
        known.add(found.intent_id)
    return adopted


def _explained(broker: BrokerOrder, actions: Sequence[ReconcileAction]) -> bool:
    """Whether an action already speaks for this broker order's ref (then it is no orphan)."""
    return any(isinstance(a, AlertMismatch) and a.intent_id == broker.client_ref for a in actions)
