"""ATR protocol (domain-spec A5, B§4): how far the underlying of each short option has moved against it,
in ATRs; the escalation level that puts it at (L0–L3); what to do when the level changes; and the roll
down/out for a net credit that L2 asks for (B§3 roll economics).

Pure functions: prices, ATRs, option chains and the time are arguments; nothing here sends an alert or
places an order, a ``LevelChange`` or a ``RollPlan`` says what should happen.

Decisions (the spec leaves them open):

- Adverse move: a short put loses when the underlying falls below the reference, a short call when it
  rises above it; a move in the position's favour counts as 0. Thresholds are inclusive (≥ l × ATR).
- ``evaluate`` takes the *effective* ATR per ticker (see ``effective_atr`` for the stale fallback); a ticker
  without one gets ``atr_missing_fallback_pct`` × price. A ticker without a usable price is a
  ``MarketDataGap``: silently keeping an old level could hide an L3.
- The alert priority follows the level reached (B§9, ``atr_protocol.priorities``), also on the way down.
- Roll window (``atr_protocol.roll``): the new expiry lies ``min_days``–``max_days`` calendar days after the
  current one (SAT: a Rev-Acc L2 roll adds 3–4 DTE), always strictly later.
- Roll cost (CON "no roll costing > 50 % of the original credit") is the net debit of the roll. A5 asks for
  a net credit, so by default the limit never binds; with ``require_net_credit`` off (the CON profile) a
  debit up to ``max_roll_cost_pct_of_credit`` × the original credit is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import IntEnum, StrEnum

import numpy as np
import numpy.typing as npt

from alluse.domain.config import (
    AllUseConfig,
    AtrProtocolConfig,
    DeltaBand,
    LevelAction,
    LevelActionKind,
    Priority,
)
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.instruments import OPTION_MULTIPLIER, OptionContract, OptionRight
from alluse.domain.market import NEW_YORK, OptionChain
from alluse.domain.money import format_cents
from alluse.domain.sleeves import SleeveKind

__all__ = [
    "ActionPlan",
    "AtrLevel",
    "AtrReading",
    "LevelChange",
    "PositionKind",
    "ProtectedPosition",
    "RollPlan",
    "RollTerms",
    "SleevePause",
    "action_plan",
    "adverse_move",
    "atr_level",
    "configured_action",
    "effective_atr",
    "entries_paused",
    "evaluate",
    "find_roll",
    "measure",
    "next_week_start",
    "plan_roll",
    "reference_price",
    "roll_terms",
    "sleeve_pauses",
]


# --------------------------------------------------------------------------------------------------
# Levels and measurement
# --------------------------------------------------------------------------------------------------


class AtrLevel(IntEnum):
    L0 = 0  # normal: routine monitoring
    L1 = 1  # enhanced: watch, prepare a roll
    L2 = 2  # recovery: roll down/out for a net credit, else close
    L3 = 3  # preservation: close; the sleeve pauses

    @property
    def label(self) -> str:
        return ("Normal", "Enhanced", "Recovery", "Preservation")[self]


class PositionKind(StrEnum):
    SHORT_PUT = "short_put"
    SHORT_CALL = "short_call"


@dataclass(frozen=True)
class ProtectedPosition:
    """A short option the protocol watches, with the level it was last seen at."""

    position_id: str
    account_id: str
    sleeve: SleeveKind
    contract: OptionContract
    quantity: int  # signed; negative = short (only short options are protected)
    entry_underlying_price: float
    credit_received_cents: int  # premium taken in at open, for the whole quantity
    level: AtrLevel = AtrLevel.L0

    def __post_init__(self) -> None:
        if self.quantity >= 0:
            raise ValidationFailed(f"only short options are protected (quantity {self.quantity})", field="quantity")
        if not (math.isfinite(self.entry_underlying_price) and self.entry_underlying_price > 0):
            raise ValidationFailed(
                f"must be a positive price (got {self.entry_underlying_price})", field="entry_underlying_price"
            )
        if self.credit_received_cents < 0:
            raise ValidationFailed("a premium received is never negative", field="credit_received_cents")

    @property
    def kind(self) -> PositionKind:
        return PositionKind.SHORT_CALL if self.contract.right is OptionRight.CALL else PositionKind.SHORT_PUT

    @property
    def contracts(self) -> int:
        return -self.quantity

    @property
    def underlying(self) -> str:
        return self.contract.underlying


@dataclass(frozen=True)
class AtrReading:
    """One measurement of a position against the protocol."""

    reference_price: float
    price: float
    atr: float
    adverse_move: float
    atr_multiple: float
    level: AtrLevel


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _require_positive(value: float, field: str) -> float:
    if not _usable(value):
        raise ValidationFailed(f"must be a positive finite number (got {value})", field=field)
    return value


def reference_price(position: ProtectedPosition, protocol: AtrProtocolConfig) -> float:
    """The price the adverse move is measured from: the underlying at entry (A5) or the strike."""
    if protocol.reference == "strike":
        return position.contract.strike_cents / 100
    return position.entry_underlying_price


def adverse_move(kind: PositionKind, reference_price: float, price: float) -> float:
    """How far the underlying moved against the short option (≥ 0; a favourable move is 0)."""
    move = reference_price - price if kind is PositionKind.SHORT_PUT else price - reference_price
    return max(0.0, move)


def atr_level(adverse_move: float, atr: float, protocol: AtrProtocolConfig) -> AtrLevel:
    """The highest level whose threshold (multiple × ATR) the adverse move reaches."""
    _require_positive(atr, "atr")
    if not (math.isfinite(adverse_move) and adverse_move >= 0):
        raise ValidationFailed(f"must be a finite number ≥ 0 (got {adverse_move})", field="adverse_move")
    for level, multiple in _multiples(protocol):
        if adverse_move >= float(multiple) * atr:
            return level
    return AtrLevel.L0


def _multiples(protocol: AtrProtocolConfig) -> tuple[tuple[AtrLevel, Decimal], ...]:
    """The levels with their ATR multiples, highest first."""
    return ((AtrLevel.L3, protocol.l3), (AtrLevel.L2, protocol.l2), (AtrLevel.L1, protocol.l1))


def effective_atr(
    latest_atr: float | None, last_valid_atr: float | None, price: float, protocol: AtrProtocolConfig
) -> float:
    """The ATR to use: today's; else the last valid one padded by stale_multiplier (CON: ×1.1);
    else atr_missing_fallback_pct of the price (CON: 2 %). A non-positive or NaN ATR counts as missing."""
    if latest_atr is not None and _usable(latest_atr):
        return latest_atr
    if last_valid_atr is not None and _usable(last_valid_atr):
        return last_valid_atr * float(protocol.stale_multiplier)
    return float(protocol.atr_missing_fallback_pct) * _require_positive(price, "price")


def measure(position: ProtectedPosition, price: float, atr: float, protocol: AtrProtocolConfig) -> AtrReading:
    _require_positive(price, "price")
    reference = reference_price(position, protocol)
    move = adverse_move(position.kind, reference, price)
    level = atr_level(move, atr, protocol)
    return AtrReading(reference, price, atr, move, move / atr, level)


# --------------------------------------------------------------------------------------------------
# Level changes and their action plans
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionPlan:
    """The action script attached to a level change's alert: ordered, human-readable steps."""

    level: AtrLevel
    action: LevelActionKind
    automatic: bool
    summary: str
    steps: tuple[str, ...]

    def __str__(self) -> str:
        numbered = (f"{n}. {step}" for n, step in enumerate(self.steps, start=1))
        return "\n".join((self.summary, *numbered))


@dataclass(frozen=True)
class LevelChange:
    position_id: str
    account_id: str
    sleeve: SleeveKind
    contract: OptionContract
    from_level: AtrLevel
    to_level: AtrLevel
    reading: AtrReading
    at: datetime
    action: LevelAction  # the configured action of the level reached
    plan: ActionPlan
    priority: Priority

    @property
    def escalated(self) -> bool:
        return self.to_level > self.from_level

    @property
    def atr_multiple(self) -> float:
        return self.reading.atr_multiple


@dataclass(frozen=True)
class RollTerms:
    """What a roll of one position may sell: same right, |delta| in the band, expiry within the window."""

    delta_band: tuple[Decimal, Decimal]
    min_extension_days: int
    max_extension_days: int
    require_net_credit: bool


def _sleeve_band(sleeve: SleeveKind, right: OptionRight, config: AllUseConfig) -> DeltaBand:
    if sleeve is SleeveKind.GEN:
        return config.gen.covered_call.delta_band if right is OptionRight.CALL else config.gen.delta_band
    if sleeve is SleeveKind.REV:
        return config.rev.delta_band
    if sleeve is SleeveKind.COM:
        return config.com.delta_band
    raise ValidationFailed(f"{sleeve.label} has no delta band to roll in", field="sleeve")


def roll_terms(
    sleeve: SleeveKind,
    right: OptionRight,
    config: AllUseConfig,
    *,
    delta_shift: Decimal = Decimal(0),
) -> RollTerms:
    """A sleeve's roll rules: its own entry band (shifted by the week mode, like entries) and its window
    (``atr_protocol.roll``)."""
    roll = config.atr_protocol.roll
    band = _sleeve_band(sleeve, right, config)
    window = roll.window(sleeve)
    shifted = (band.min + delta_shift, band.max + delta_shift)
    return RollTerms(shifted, window.min_days, window.max_days, roll.require_net_credit)


def _dollars(price: float) -> str:
    return f"${price:,.2f}"


def _trigger_price(position: ProtectedPosition, reading: AtrReading, multiple: Decimal) -> float:
    """Underlying price at which the adverse move reaches `multiple` × ATR."""
    distance = float(multiple) * reading.atr
    if position.kind is PositionKind.SHORT_PUT:
        return reading.reference_price - distance
    return reading.reference_price + distance


def _watch_step(position: ProtectedPosition, reading: AtrReading, level: AtrLevel, multiple: Decimal) -> list[str]:
    price = _trigger_price(position, reading, multiple)
    if price <= 0:
        return []
    side = "≤" if position.kind is PositionKind.SHORT_PUT else "≥"
    return [f"L{int(level)} ({level.label}) starts at underlying {side} {_dollars(price)} ({multiple}×ATR)."]


def _roll_step(position: ProtectedPosition, config: AllUseConfig, delta_shift: Decimal) -> str:
    roll = config.atr_protocol.roll
    direction, strike_side = (
        ("down/out", "at or below") if position.kind is PositionKind.SHORT_PUT else ("up/out", "at or above")
    )
    contract = position.contract
    where = "inside the sleeve's delta band"
    if position.sleeve is not SleeveKind.STARLAB:
        terms = roll_terms(position.sleeve, contract.right, config, delta_shift=delta_shift)
        low, high = terms.delta_band
        where = (
            f"expiring {terms.min_extension_days}–{terms.max_extension_days} days after {contract.expiry:%Y-%m-%d}, "
            f"|Δ| {low}–{high}"
        )
    if roll.require_net_credit:
        economics = "for a net credit"
    else:
        limit = config.atr_protocol.max_roll_cost_pct_of_credit
        credit = format_cents(position.credit_received_cents)
        economics = f"for a net credit, or a net debit of at most {limit:%} of the original credit {credit}"
    return (
        f"Look for a roll {direction}: buy to close {position.contracts} {contract.symbol} at the ask and sell to open "
        f"{position.contracts} {contract.right.name.lower()}s {where}, strike {strike_side} "
        f"{format_cents(contract.strike_cents)}, {economics}."
    )


def _action_steps(
    position: ProtectedPosition,
    reading: AtrReading,
    action: LevelActionKind,
    config: AllUseConfig,
    delta_shift: Decimal,
) -> list[str]:
    protocol = config.atr_protocol
    close = f"Buy to close {position.contracts} {position.contract.symbol}."
    if action == "none":
        return [
            f"Routine monitoring: scan every {protocol.scan_interval_minutes} min.",
            *_watch_step(position, reading, AtrLevel.L1, protocol.l1),
        ]
    if action == "alert":
        return [
            "Watch the position closely.",
            "Prepare (do not yet place) the roll: " + _roll_step(position, config, delta_shift),
            *_watch_step(position, reading, AtrLevel.L2, protocol.l2),
        ]
    if action == "roll_or_close":
        return [
            _roll_step(position, config, delta_shift),
            f"If no such roll exists: {close}",
            *_watch_step(position, reading, AtrLevel.L3, protocol.l3),
        ]
    return [close]


def configured_action(level: AtrLevel, protocol: AtrProtocolConfig) -> LevelAction:
    actions = protocol.auto_action
    return (actions.l0, actions.l1, actions.l2, actions.l3)[level]


def action_plan(
    position: ProtectedPosition,
    reading: AtrReading,
    at: datetime,
    config: AllUseConfig,
    *,
    delta_shift: Decimal = Decimal(0),
) -> ActionPlan:
    """The action script of the level `reading` reached, for the configured action of that level."""
    level = reading.level
    configured = configured_action(level, config.atr_protocol)
    steps = _action_steps(position, reading, configured.action, config, delta_shift)
    if level is AtrLevel.L3 and config.atr_protocol.l3_pauses_until_next_week:
        steps.append(
            f"No new entries in {position.sleeve.label} of {position.account_id} until next week "
            f"({next_week_start(at):%Y-%m-%d})."
        )
    if configured.action != "none":
        who = "Runs automatically." if configured.automatic else "Needs a human: approve or act (auto-action off)."
        steps.append(who)
    summary = (
        f"{position.account_id} {position.sleeve.label} {position.contract.symbol} ×{position.contracts}: "
        f"L{int(position.level)}→L{int(level)} ({level.label}); adverse move {_dollars(reading.adverse_move)} = "
        f"{reading.atr_multiple:.2f}×ATR (ATR {_dollars(reading.atr)}, reference "
        f"{_dollars(reading.reference_price)}, price {_dollars(reading.price)})"
    )
    return ActionPlan(level, configured.action, configured.automatic, summary, tuple(steps))


def _price_of(ticker: str, prices: Mapping[str, float]) -> float | None:
    price = prices.get(ticker)
    return price if price is not None and _usable(price) else None


def _require_prices(positions: Sequence[ProtectedPosition], prices: Mapping[str, float]) -> None:
    missing = sorted({p.underlying for p in positions if _price_of(p.underlying, prices) is None})
    if missing:
        raise MarketDataGap(f"no usable price for {', '.join(missing)}", field="prices")


def evaluate(
    positions: Sequence[ProtectedPosition],
    prices: Mapping[str, float],
    atrs: Mapping[str, float],
    at: datetime,
    config: AllUseConfig,
    *,
    delta_shift: Decimal = Decimal(0),
) -> list[LevelChange]:
    """One protocol scan: the positions whose level changed (up or down), in input order.

    `atrs` holds the effective ATR per ticker (see effective_atr); a ticker without one is measured
    against atr_missing_fallback_pct of its price. Roll rules and alert priorities come from
    ``config.atr_protocol`` (``roll``, ``priorities``).
    """
    _require_prices(positions, prices)
    protocol = config.atr_protocol
    thresholds = [(level, float(multiple)) for level, multiple in _multiples(protocol)]
    changes: list[LevelChange] = []
    for position in positions:
        price = prices[position.underlying]
        atr = effective_atr(atrs.get(position.underlying), None, price, protocol)
        # Most scans change nothing: the level alone first, the full reading only for a change.
        move = adverse_move(position.kind, reference_price(position, protocol), price)
        if next((level for level, multiple in thresholds if move >= multiple * atr), AtrLevel.L0) == position.level:
            continue
        reading = measure(position, price, atr, protocol)
        plan = action_plan(position, reading, at, config, delta_shift=delta_shift)
        changes.append(
            LevelChange(
                position_id=position.position_id,
                account_id=position.account_id,
                sleeve=position.sleeve,
                contract=position.contract,
                from_level=position.level,
                to_level=reading.level,
                reading=reading,
                at=at,
                action=configured_action(reading.level, protocol),
                plan=plan,
                priority=protocol.priorities.of(reading.level),
            )
        )
    return changes


# --------------------------------------------------------------------------------------------------
# L3 pause
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SleevePause:
    """A sleeve that takes no new entries until `until` (the Monday of the next week)."""

    account_id: str
    sleeve: SleeveKind
    since: datetime
    until: date
    position_id: str  # the first L3 that caused it


def next_week_start(at: datetime) -> date:
    """The Monday after `at`'s week (New York date; a naive `at` is New York wall-clock)."""
    day = at.astimezone(NEW_YORK).date() if at.tzinfo is not None else at.date()
    return day + timedelta(days=7 - day.weekday())


def sleeve_pauses(changes: Iterable[LevelChange], protocol: AtrProtocolConfig) -> list[SleevePause]:
    """One pause per (account, sleeve) that reached L3, from its earliest L3 (A5)."""
    if not protocol.l3_pauses_until_next_week:
        return []
    earliest: dict[tuple[str, SleeveKind], LevelChange] = {}
    for change in changes:
        key = (change.account_id, change.sleeve)
        if change.to_level is AtrLevel.L3 and (key not in earliest or change.at < earliest[key].at):
            earliest[key] = change
    return [SleevePause(c.account_id, c.sleeve, c.at, next_week_start(c.at), c.position_id) for c in earliest.values()]


def entries_paused(pauses: Iterable[SleevePause], account_id: str, sleeve: SleeveKind, on: date) -> bool:
    return any(p.account_id == account_id and p.sleeve is sleeve and on < p.until for p in pauses)


# --------------------------------------------------------------------------------------------------
# Roll for a credit (A5 L2, B§3)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollPlan:
    """Buy back the current contract at its ask, sell a later one at its bid, same quantity."""

    position_id: str
    close_contract: OptionContract
    close_price_cents: int  # per share
    open_contract: OptionContract
    open_price_cents: int  # per share
    open_delta: float
    quantity: int  # contracts, on both legs
    net_credit_cents: int  # (open − close) × 100 × quantity; negative = a net debit


def _band_limits(delta_band: DeltaBand | tuple[Decimal, Decimal]) -> tuple[float, float]:
    low, high = (delta_band.min, delta_band.max) if isinstance(delta_band, DeltaBand) else delta_band
    if low > high:
        raise ValidationFailed(f"delta band inverted: {low} > {high}", field="delta_band")
    return float(low), float(high)


def _candidate_rows(
    contract: OptionContract, chain: OptionChain, band: tuple[float, float], min_days: int, max_days: int
) -> npt.NDArray[np.intp]:
    """Rows of the chain a roll may sell: same right, strictly later expiry inside the window,
    strike down (put) or up (call) or equal, |delta| inside the band, a bid to sell at."""
    is_call = contract.right is OptionRight.CALL
    days_out = (chain.expiry - np.datetime64(contract.expiry, "D")).astype(np.int64)
    strike_ok = chain.strike_cents >= contract.strike_cents if is_call else chain.strike_cents <= contract.strike_cents
    abs_delta = np.abs(chain.delta)
    mask = (
        (chain.is_call == is_call)
        & (days_out >= max(1, min_days))
        & (days_out <= max_days)
        & strike_ok
        & (abs_delta >= band[0])
        & (abs_delta <= band[1])
        & (chain.bid_cents > 0)
    )
    return np.flatnonzero(mask)


def _affordable(net_cents: int, credit_cents: int, require_net_credit: bool, protocol: AtrProtocolConfig) -> bool:
    if net_cents > 0:
        return True
    if require_net_credit:
        return False
    # CON: a roll whose net debit exceeds this share of the original credit is no roll (→ close).
    return Decimal(-net_cents) <= protocol.max_roll_cost_pct_of_credit * credit_cents


def _current_ask(position: ProtectedPosition, chain: OptionChain, today: date) -> int:
    contract = position.contract
    if chain.underlying != contract.underlying:
        raise ValidationFailed(f"chain is for {chain.underlying}, position is on {contract.underlying}", field="chain")
    if contract.expiry < today:
        raise ValidationFailed(f"{contract.symbol} expired on {contract.expiry}", field="contract")
    current = chain.find(contract)
    if current is None or current.ask_cents <= 0:
        raise MarketDataGap(f"no ask for {contract.symbol} in the chain", field="chain")
    return current.ask_cents


def find_roll(
    position: ProtectedPosition,
    chain: OptionChain,
    today: date,
    delta_band: DeltaBand | tuple[Decimal, Decimal],
    dte_min_extension: int,
    dte_max_extension: int,
    config: AllUseConfig,
    *,
    require_net_credit: bool = True,
) -> RollPlan | None:
    """The best roll of `position` in `chain`, or None when there is none (the caller then closes).

    Candidates: same right, expiry dte_min_extension–dte_max_extension days after the current one (always
    later), strike equal or further out of the money's way (down for a put, up for a call), |delta| in the
    band, net credit > 0 (or, with require_net_credit off, a debit within max_roll_cost_pct_of_credit).
    Best = largest net credit; ties go to the nearer expiry, then the safer strike (lower put, higher call).
    Raises MarketDataGap when the chain does not quote the current contract (its ask is the buy-back price).
    """
    contract = position.contract
    ask = _current_ask(position, chain, today)
    rows = _candidate_rows(contract, chain, _band_limits(delta_band), dte_min_extension, dte_max_extension)
    nets = (chain.bid_cents[rows] - ask) * OPTION_MULTIPLIER * position.contracts
    credit = position.credit_received_cents
    keep = [i for i, net in enumerate(nets) if _affordable(int(net), credit, require_net_credit, config.atr_protocol)]
    if not keep:
        return None
    rows, nets = rows[keep], nets[keep]
    safer = chain.strike_cents[rows] * (-1 if contract.right is OptionRight.CALL else 1)
    best = int(np.lexsort((safer, chain.expiry[rows], -nets))[0])  # the last key sorts first
    row = int(rows[best])
    return RollPlan(
        position_id=position.position_id,
        close_contract=contract,
        close_price_cents=ask,
        open_contract=chain.contract(row),
        open_price_cents=int(chain.bid_cents[row]),
        open_delta=float(chain.delta[row]),
        quantity=position.contracts,
        net_credit_cents=int(nets[best]),
    )


def plan_roll(
    position: ProtectedPosition,
    chain: OptionChain,
    today: date,
    config: AllUseConfig,
    *,
    delta_shift: Decimal = Decimal(0),
) -> RollPlan | None:
    """find_roll with the position's sleeve rules (roll_terms)."""
    terms = roll_terms(position.sleeve, position.contract.right, config, delta_shift=delta_shift)
    return find_roll(
        position,
        chain,
        today,
        terms.delta_band,
        terms.min_extension_days,
        terms.max_extension_days,
        config,
        require_net_credit=terms.require_net_credit,
    )
