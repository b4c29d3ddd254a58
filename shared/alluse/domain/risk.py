"""Pre-trade risk engine, kill switches and circuit breakers (domain-spec A6, A7, A13, B§4).

Every order, from the protocol or from STAR-LAB, passes `check`: one pure function that returns
allow, or deny with a `DenyReason` and a message naming the number and the limit. Checks run in
this fixed order and the first failure wins:

    always (exits too)     QUANTITY, STARLAB_NOT_GRANTED, STARLAB_LIMIT, ACCOUNT_NOT_ACTIVE, KILL_SWITCH_HALTED
    new risk only          KILL_SWITCH_REDUCING, ACCOUNT_SAFE, CIRCUIT_BREAKER, SLEEVE_PAUSED, BLACKLISTED,
                           NOT_COVERED, NOT_CASH_SECURED, BUFFER_BREACH, NO_QUOTE, PREMIUM_FLOOR, DELTA_BAND,
                           OPEN_INTEREST, SPREAD, VOLUME, SIZE_VS_ADV

Closing or reducing orders (``opens_risk=False``) stop after the kill switch: a guard that traps an
exit (a wide spread at an L3 stop, a breaker, SAFE) adds risk instead of removing it. Only HALTED,
an account that does not trade, and STAR-LAB's grant stop an exit.

`opens_risk` must come from the ledger (does the order grow or shrink a position?), never from an
instruction's label: the engine trusts it to skip the entry checks.

Average daily volume (A7 "size ≤ 10 % of ADV") is counted in the order's own units: contracts per
day of that very option contract, shares per day for shares. With no ADV given for an option, the
quote's day volume stands in for it (conservative early in the session). An opening share order with
no ADV is denied NO_QUOTE: the engine fails closed when it cannot measure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Literal, TypeVar

from alluse.domain.accounts import AccountStatus
from alluse.domain.brokerage import Side
from alluse.domain.config import AllUseConfig, CircuitBreakersConfig, DeltaBand, RiskConfig
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight
from alluse.domain.market import OptionQuote
from alluse.domain.money import format_cents
from alluse.domain.sleeves import SleeveKind

__all__ = [
    "BreakerInputs",
    "BreakerKind",
    "BreakerTrip",
    "DenyReason",
    "KillSwitches",
    "OrderIntent",
    "OrderSource",
    "RiskContext",
    "RiskDecision",
    "StarlabGrant",
    "TradingState",
    "check",
    "evaluate_breakers",
    "starlab_action",
    "symbol_of",
]

PremiumFloorPolicy = Literal["skip", "ask", "place"]
K = TypeVar("K")


# --------------------------------------------------------------------------------------------------
# Kill switches (A6)
# --------------------------------------------------------------------------------------------------


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # closing and reducing orders only
    HALTED = "HALTED"  # nothing trades; the caller cancels working orders

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def _frozen(mapping: Mapping[K, TradingState]) -> Mapping[K, TradingState]:
    # ACTIVE is the absence of a restriction, so it is not stored.
    return MappingProxyType({k: v for k, v in mapping.items() if v is not TradingState.ACTIVE})


@dataclass(frozen=True)
class KillSwitches:
    """Operator-set trading states at four scopes; the most restrictive one that applies wins."""

    global_state: TradingState = TradingState.ACTIVE
    accounts: Mapping[str, TradingState] = field(default_factory=dict)
    sleeves: Mapping[tuple[str, SleeveKind], TradingState] = field(default_factory=dict)
    symbols: Mapping[str, TradingState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "accounts", _frozen(self.accounts))
        object.__setattr__(self, "sleeves", _frozen(self.sleeves))
        object.__setattr__(self, "symbols", _frozen(self.symbols))

    def with_global(self, state: TradingState) -> KillSwitches:
        return KillSwitches(state, self.accounts, self.sleeves, self.symbols)

    def with_account(self, account_id: str, state: TradingState) -> KillSwitches:
        return KillSwitches(self.global_state, {**self.accounts, account_id: state}, self.sleeves, self.symbols)

    def with_sleeve(self, account_id: str, sleeve: SleeveKind, state: TradingState) -> KillSwitches:
        sleeves = {**self.sleeves, (account_id, sleeve): state}
        return KillSwitches(self.global_state, self.accounts, sleeves, self.symbols)

    def with_symbol(self, symbol: str, state: TradingState) -> KillSwitches:
        return KillSwitches(self.global_state, self.accounts, self.sleeves, {**self.symbols, symbol: state})

    def governing(self, account_id: str, sleeve: SleeveKind, symbol: str) -> tuple[TradingState, str]:
        """The most restrictive state that applies, and the scope that set it (broadest first on ties)."""
        candidates = (
            (self.global_state, "global"),
            (self.accounts.get(account_id, TradingState.ACTIVE), f"account {account_id}"),
            (self.sleeves.get((account_id, sleeve), TradingState.ACTIVE), f"sleeve {account_id}/{sleeve.label}"),
            (self.symbols.get(symbol, TradingState.ACTIVE), f"symbol {symbol}"),
        )
        return max(candidates, key=lambda c: c[0].severity)  # max keeps the first of equals

    def effective_state(self, account_id: str, sleeve: SleeveKind, symbol: str) -> TradingState:
        return self.governing(account_id, sleeve, symbol)[0]


def symbol_of(instrument: Instrument) -> str:
    """The symbol scope of an order: an option is governed by its underlying's switch and blacklist."""
    return instrument.ticker if isinstance(instrument, Equity) else instrument.underlying


# --------------------------------------------------------------------------------------------------
# Circuit breakers (A6)
# --------------------------------------------------------------------------------------------------


class BreakerKind(StrEnum):
    CONSECUTIVE_LOSSES = "CONSECUTIVE_LOSSES"
    DAILY_DRAWDOWN = "DAILY_DRAWDOWN"
    SIMULTANEOUS_BREACHES = "SIMULTANEOUS_BREACHES"


@dataclass(frozen=True)
class BreakerInputs:
    """One account's recent record, as the breakers read it."""

    closed_trade_pnls_cents: Sequence[int]  # realised P&L of closed trades, oldest first
    start_of_day_equity_cents: int
    equity_now_cents: int
    open_position_atr_levels: Sequence[int]  # current ATR level (0-3) of each open position


@dataclass(frozen=True)
class BreakerTrip:
    kind: BreakerKind
    message: str


def _losing_streak(pnls: Sequence[int]) -> int:
    streak = 0
    for pnl in reversed(pnls):
        if pnl >= 0:  # a break-even trade is not a loss: it ends the streak
            break
        streak += 1
    return streak


def _losses_trip(state: BreakerInputs, config: CircuitBreakersConfig) -> BreakerTrip | None:
    streak = _losing_streak(state.closed_trade_pnls_cents)
    if streak < config.consecutive_losses:
        return None
    return BreakerTrip(
        BreakerKind.CONSECUTIVE_LOSSES, f"{streak} consecutive losing trades (limit {config.consecutive_losses})"
    )


def _drawdown_trip(state: BreakerInputs, config: CircuitBreakersConfig) -> BreakerTrip | None:
    start = state.start_of_day_equity_cents
    if start <= 0:  # no equity at the open: a drawdown has no meaning
        return None
    drawdown = Decimal(start - state.equity_now_cents) / Decimal(start)
    if drawdown < config.daily_drawdown_pct:
        return None
    return BreakerTrip(
        BreakerKind.DAILY_DRAWDOWN,
        f"daily drawdown {_pct(drawdown)} (from {format_cents(start)} to {format_cents(state.equity_now_cents)})"
        f" reaches the {_pct(config.daily_drawdown_pct)} limit",
    )


def _breaches_trip(state: BreakerInputs, config: CircuitBreakersConfig) -> BreakerTrip | None:
    breaches = sum(1 for level in state.open_position_atr_levels if level >= config.breach_min_level)
    if breaches < config.simultaneous_breaches:
        return None
    return BreakerTrip(
        BreakerKind.SIMULTANEOUS_BREACHES,
        f"{breaches} positions at ATR L{config.breach_min_level}+ at once (limit {config.simultaneous_breaches})",
    )


def evaluate_breakers(state: BreakerInputs, config: CircuitBreakersConfig) -> BreakerTrip | None:
    """The first breaker that trips (losses, drawdown, breaches), or None; the caller sets the account SAFE."""
    for rule in (_losses_trip, _drawdown_trip, _breaches_trip):
        trip = rule(state, config)
        if trip is not None:
            return trip
    return None


# --------------------------------------------------------------------------------------------------
# Orders, context, decisions
# --------------------------------------------------------------------------------------------------


class OrderSource(StrEnum):
    PROTOCOL = "PROTOCOL"
    STARLAB = "STARLAB"


@dataclass(frozen=True)
class OrderIntent:
    account_id: str
    sleeve: SleeveKind
    instrument: Instrument
    side: Side
    quantity: int  # contracts for options, shares for equities
    opens_risk: bool  # True: opens/grows a position (short option, shares bought); False: closes or reduces
    limit_price_cents: int | None = None  # per share; None = market
    source: OrderSource = OrderSource.PROTOCOL
    starlab_client_id: str | None = None
    starlab_strategy_id: str | None = None
    quote: OptionQuote | None = None  # required for opening option orders
    avg_daily_volume: int | None = None  # in the order's units (see module doc); None: quote volume for options
    premium_below_floor_approved: bool = False  # a human approved this sub-floor trade (HITL)


@dataclass(frozen=True)
class StarlabGrant:
    """Which STAR-LAB clients may trade this account, and within which limits (A13)."""

    granted_clients: frozenset[str] = frozenset()
    max_order_contracts: int = 0
    allowed_actions: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: AllUseConfig) -> StarlabGrant:
        # Without capital in the STAR-LAB sleeve there is nothing to grant (A2).
        clients = frozenset(config.starlab.granted_clients) if config.allocation.starlab > 0 else frozenset()
        return cls(clients, config.starlab.max_order_contracts, frozenset(config.starlab.allowed_actions))


@dataclass(frozen=True)
class RiskContext:
    """What the engine knows about the account and sleeve the order lands in."""

    account_status: AccountStatus
    kill_switches: KillSwitches
    free_cash_cents: int  # sleeve cash deployable now, i.e. after the buffer
    buffer_cents: int
    cash_required_cents: int  # caller's figure; the engine never accepts less than it computes itself
    delta_band: DeltaBand | None  # the sleeve's band after the week-mode shift; None = no band (STAR-LAB)
    premium_floor_pct: Decimal  # the sleeve's floor, premium / strike; 0 = off
    sleeve_paused: bool  # ATR L3: no new entries until next week
    tripped_breaker: BreakerTrip | None
    starlab: StarlabGrant
    blacklist: frozenset[str]
    risk: RiskConfig
    uncovered_shares: int = 0  # shares of the underlying in this sleeve not yet under a short call
    premium_floor_policy: PremiumFloorPolicy = "ask"


class DenyReason(StrEnum):
    QUANTITY = "QUANTITY"
    STARLAB_NOT_GRANTED = "STARLAB_NOT_GRANTED"
    STARLAB_LIMIT = "STARLAB_LIMIT"
    ACCOUNT_NOT_ACTIVE = "ACCOUNT_NOT_ACTIVE"
    KILL_SWITCH_HALTED = "KILL_SWITCH_HALTED"
    KILL_SWITCH_REDUCING = "KILL_SWITCH_REDUCING"
    ACCOUNT_SAFE = "ACCOUNT_SAFE"
    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
    SLEEVE_PAUSED = "SLEEVE_PAUSED"
    BLACKLISTED = "BLACKLISTED"
    NOT_CASH_SECURED = "NOT_CASH_SECURED"
    NOT_COVERED = "NOT_COVERED"
    BUFFER_BREACH = "BUFFER_BREACH"
    NO_QUOTE = "NO_QUOTE"
    PREMIUM_FLOOR = "PREMIUM_FLOOR"
    DELTA_BAND = "DELTA_BAND"
    OPEN_INTEREST = "OPEN_INTEREST"
    SPREAD = "SPREAD"
    VOLUME = "VOLUME"
    SIZE_VS_ADV = "SIZE_VS_ADV"


@dataclass(frozen=True)
class RiskDecision:
    allowed: bool
    reason: DenyReason | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.allowed != (self.reason is None):
            raise ValueError("a decision is allowed exactly when it has no deny reason")

    @classmethod
    def allow(cls) -> RiskDecision:
        return cls(True, None, "allowed")

    @classmethod
    def deny(cls, reason: DenyReason, message: str) -> RiskDecision:
        return cls(False, reason, message)


# --------------------------------------------------------------------------------------------------
# Formatting and small facts about an order
# --------------------------------------------------------------------------------------------------

_HUNDREDTH = Decimal("0.01")


def _pct(fraction: Decimal) -> str:
    """0.0714 -> '7.14 %', 0.05 -> '5 %'."""
    value = (fraction * 100).quantize(_HUNDREDTH, rounding=ROUND_HALF_EVEN)
    text = f"{value:f}".rstrip("0").rstrip(".")
    return f"{text} %"


def _option(intent: OrderIntent) -> OptionContract | None:
    return intent.instrument if isinstance(intent.instrument, OptionContract) else None


def _is_short_option(intent: OrderIntent) -> bool:
    return _option(intent) is not None and intent.side is Side.SELL


def _units(intent: OrderIntent) -> str:
    return "contracts" if _option(intent) is not None else "shares"


def starlab_action(intent: OrderIntent) -> str:
    """The STAR-LAB trade action this order amounts to, e.g. SELL_TO_OPEN_PUT (B§8)."""
    leg = "OPEN" if intent.opens_risk else "CLOSE"
    contract = _option(intent)
    what = "SHARES" if contract is None else ("PUT" if contract.right is OptionRight.PUT else "CALL")
    return f"{intent.side.value}_TO_{leg}_{what}"


def _price_cents(intent: OrderIntent) -> int:
    """Per-share price the order trades at: its limit, else the touch it would take at market."""
    if intent.limit_price_cents is not None:
        return intent.limit_price_cents
    if intent.quote is None:
        return 0
    return intent.quote.ask_cents if intent.side is Side.BUY else intent.quote.bid_cents


def _cash_needed_cents(intent: OrderIntent, context: RiskContext) -> int:
    """Cash the order ties up: never less than a short put's collateral or a buy's cost at its price."""
    contract = _option(intent)
    own = 0
    if contract is not None and contract.right is OptionRight.PUT and intent.side is Side.SELL:
        own = contract.strike_cents * contract.multiplier * intent.quantity  # premium not counted: conservative
    elif intent.side is Side.BUY:
        own = _price_cents(intent) * intent.instrument.multiplier * intent.quantity
    return max(context.cash_required_cents, own)


def _usable_quote(intent: OrderIntent) -> OptionQuote | None:
    quote = intent.quote
    return quote if quote is not None and quote.contract == intent.instrument else None


# --------------------------------------------------------------------------------------------------
# The checks: each returns a denial or None
# --------------------------------------------------------------------------------------------------

Denial = RiskDecision | None


def _quantity(intent: OrderIntent, context: RiskContext) -> Denial:
    if intent.quantity > 0:
        return None
    return RiskDecision.deny(DenyReason.QUANTITY, f"quantity {intent.quantity} must be at least 1")


def _starlab_grant(intent: OrderIntent, context: RiskContext) -> Denial:
    if intent.source is not OrderSource.STARLAB:
        return None
    client = intent.starlab_client_id
    if client is None or client not in context.starlab.granted_clients:
        return RiskDecision.deny(
            DenyReason.STARLAB_NOT_GRANTED,
            f"STAR-LAB client {client!r} has no grant on account {intent.account_id}"
            f" ({len(context.starlab.granted_clients)} client(s) granted)",
        )
    if intent.sleeve is not SleeveKind.STARLAB:
        return RiskDecision.deny(
            DenyReason.STARLAB_NOT_GRANTED,
            f"STAR-LAB trades only the STAR-LAB sleeve, not {intent.sleeve.label}",
        )
    if not intent.starlab_strategy_id:
        return RiskDecision.deny(
            DenyReason.STARLAB_NOT_GRANTED, "a STAR-LAB order must name its starlab_strategy_id (A13)"
        )
    return None


def _starlab_limits(intent: OrderIntent, context: RiskContext) -> Denial:
    if intent.source is not OrderSource.STARLAB:
        return None
    action = starlab_action(intent)
    if action not in context.starlab.allowed_actions:
        allowed = ", ".join(sorted(context.starlab.allowed_actions)) or "none"
        return RiskDecision.deny(
            DenyReason.STARLAB_LIMIT, f"STAR-LAB action {action} is not allowed (allowed: {allowed})"
        )
    if intent.quantity > context.starlab.max_order_contracts:
        return RiskDecision.deny(
            DenyReason.STARLAB_LIMIT,
            f"STAR-LAB order of {intent.quantity} {_units(intent)} exceeds the limit of"
            f" {context.starlab.max_order_contracts}",
        )
    return None


_TRADING_STATUSES = frozenset({AccountStatus.ACTIVE, AccountStatus.SAFE, AccountStatus.HALTED})


def _account_trades(intent: OrderIntent, context: RiskContext) -> Denial:
    if context.account_status in _TRADING_STATUSES:
        return None
    return RiskDecision.deny(
        DenyReason.ACCOUNT_NOT_ACTIVE,
        f"account {intent.account_id} is {context.account_status.value}; only ACTIVE or SAFE accounts trade",
    )


def _not_halted(intent: OrderIntent, context: RiskContext) -> Denial:
    if context.account_status is AccountStatus.HALTED:
        return RiskDecision.deny(DenyReason.KILL_SWITCH_HALTED, f"account {intent.account_id} is HALTED")
    state, scope = context.kill_switches.governing(intent.account_id, intent.sleeve, symbol_of(intent.instrument))
    if state is not TradingState.HALTED:
        return None
    return RiskDecision.deny(DenyReason.KILL_SWITCH_HALTED, f"kill switch HALTED at {scope}")


def _not_reducing(intent: OrderIntent, context: RiskContext) -> Denial:
    state, scope = context.kill_switches.governing(intent.account_id, intent.sleeve, symbol_of(intent.instrument))
    if state is not TradingState.REDUCING:
        return None
    return RiskDecision.deny(
        DenyReason.KILL_SWITCH_REDUCING, f"kill switch REDUCING at {scope}: only closing or reducing orders"
    )


def _not_safe(intent: OrderIntent, context: RiskContext) -> Denial:
    if context.account_status is not AccountStatus.SAFE:
        return None
    return RiskDecision.deny(DenyReason.ACCOUNT_SAFE, f"account {intent.account_id} is SAFE: no new risk, exits only")


def _no_breaker(intent: OrderIntent, context: RiskContext) -> Denial:
    trip = context.tripped_breaker
    if trip is None:
        return None
    return RiskDecision.deny(DenyReason.CIRCUIT_BREAKER, f"circuit breaker {trip.kind.value}: {trip.message}")


def _sleeve_open(intent: OrderIntent, context: RiskContext) -> Denial:
    if not context.sleeve_paused:
        return None
    return RiskDecision.deny(
        DenyReason.SLEEVE_PAUSED, f"{intent.sleeve.label} takes no new entries until next week (ATR L3)"
    )


def _not_blacklisted(intent: OrderIntent, context: RiskContext) -> Denial:
    symbol = symbol_of(intent.instrument)
    if symbol not in context.blacklist:
        return None
    return RiskDecision.deny(DenyReason.BLACKLISTED, f"{symbol} is blacklisted")


def _covered(intent: OrderIntent, context: RiskContext) -> Denial:
    """Short calls need shares behind them; shares are never sold short."""
    if intent.side is not Side.SELL:
        return None
    contract = _option(intent)
    if contract is None:
        return RiskDecision.deny(
            DenyReason.NOT_COVERED, f"selling {intent.quantity} shares short: shares are never shorted"
        )
    if contract.right is not OptionRight.CALL:
        return None
    needed = intent.quantity * contract.multiplier
    if needed <= context.uncovered_shares:
        return None
    return RiskDecision.deny(
        DenyReason.NOT_COVERED,
        f"short call needs {needed} shares; the sleeve holds {context.uncovered_shares} uncovered",
    )


def _cash_secured(intent: OrderIntent, context: RiskContext) -> Denial:
    needed = _cash_needed_cents(intent, context)
    total = context.free_cash_cents + context.buffer_cents
    if needed <= total:
        return None
    return RiskDecision.deny(
        DenyReason.NOT_CASH_SECURED,
        f"order needs {format_cents(needed)} of cash; {intent.sleeve.label} holds {format_cents(total)}"
        f" (free {format_cents(context.free_cash_cents)} + buffer {format_cents(context.buffer_cents)})",
    )


def _buffer_kept(intent: OrderIntent, context: RiskContext) -> Denial:
    needed = _cash_needed_cents(intent, context)
    if needed <= context.free_cash_cents:
        return None
    return RiskDecision.deny(
        DenyReason.BUFFER_BREACH,
        f"order needs {format_cents(needed)} but free cash is {format_cents(context.free_cash_cents)};"
        f" the rest would come from the {format_cents(context.buffer_cents)} buffer",
    )


def _has_market_data(intent: OrderIntent, context: RiskContext) -> Denial:
    if _option(intent) is None:
        if intent.avg_daily_volume is not None:
            return None
        return RiskDecision.deny(
            DenyReason.NO_QUOTE, f"no average daily volume for {symbol_of(intent.instrument)}: size unchecked"
        )
    if _usable_quote(intent) is not None:
        return None
    quoted = f" (quote is for {intent.quote.contract.symbol})" if intent.quote is not None else ""
    return RiskDecision.deny(DenyReason.NO_QUOTE, f"no quote for {_symbol(intent)}{quoted}")


def _symbol(intent: OrderIntent) -> str:
    return intent.instrument.symbol.replace("  ", " ").strip()


def _premium_floor(intent: OrderIntent, context: RiskContext) -> Denial:
    contract = _option(intent)
    if contract is None or not _is_short_option(intent) or context.premium_floor_pct <= 0:
        return None
    if context.premium_floor_policy == "place":
        return None
    premium = Decimal(_price_cents(intent)) / Decimal(contract.strike_cents)
    if premium >= context.premium_floor_pct:
        return None
    if intent.premium_below_floor_approved and context.premium_floor_policy == "ask":
        return None
    why = "policy skip" if context.premium_floor_policy == "skip" else "no human approval"
    return RiskDecision.deny(
        DenyReason.PREMIUM_FLOOR,
        f"premium {_pct(premium)} of strike is below the {_pct(context.premium_floor_pct)} floor ({why})",
    )


def _delta_in_band(intent: OrderIntent, context: RiskContext) -> Denial:
    band, quote = context.delta_band, _usable_quote(intent)
    if band is None or quote is None or not _is_short_option(intent):
        return None
    delta = abs(Decimal(str(quote.delta)))  # str: the float's shortest form, so 0.3 is 0.3
    if band.min <= delta <= band.max:
        return None
    return RiskDecision.deny(DenyReason.DELTA_BAND, f"|delta| {delta} is outside the band {band.min}-{band.max}")


def _open_interest(intent: OrderIntent, context: RiskContext) -> Denial:
    quote = _usable_quote(intent)
    if quote is None or quote.open_interest >= context.risk.min_open_interest:
        return None
    return RiskDecision.deny(
        DenyReason.OPEN_INTEREST,
        f"open interest {quote.open_interest} is below the minimum {context.risk.min_open_interest}",
    )


def _spread(intent: OrderIntent, context: RiskContext) -> Denial:
    quote = _usable_quote(intent)
    if quote is None:
        return None
    limit = context.risk.max_spread_pct_of_mid
    twice_mid = quote.bid_cents + quote.ask_cents
    if twice_mid <= 0:
        return RiskDecision.deny(
            DenyReason.SPREAD, f"no two-sided market: spread vs mid undefined (limit {_pct(limit)})"
        )
    spread = Decimal(2 * quote.spread_cents) / Decimal(twice_mid)
    if spread <= limit:
        return None
    return RiskDecision.deny(DenyReason.SPREAD, f"spread {_pct(spread)} of mid exceeds {_pct(limit)}")


def _volume(intent: OrderIntent, context: RiskContext) -> Denial:
    quote = _usable_quote(intent)
    if quote is None or quote.volume >= context.risk.min_volume:
        return None
    return RiskDecision.deny(DenyReason.VOLUME, f"volume {quote.volume} is below the minimum {context.risk.min_volume}")


def _size_vs_adv(intent: OrderIntent, context: RiskContext) -> Denial:
    quote = _usable_quote(intent)
    adv = intent.avg_daily_volume
    if adv is None:
        adv = quote.volume if quote is not None else 0
    limit = context.risk.max_pct_of_adv
    if adv > 0 and Decimal(intent.quantity) <= limit * adv:
        return None
    share = f"{_pct(Decimal(intent.quantity) / adv)} of" if adv > 0 else "against"
    return RiskDecision.deny(
        DenyReason.SIZE_VS_ADV,
        f"order of {intent.quantity} {_units(intent)} is {share} average daily volume {adv}, above {_pct(limit)}",
    )


_ALWAYS = (_quantity, _starlab_grant, _starlab_limits, _account_trades, _not_halted)
_NEW_RISK = (
    _not_reducing,
    _not_safe,
    _no_breaker,
    _sleeve_open,
    _not_blacklisted,
    _covered,
    _cash_secured,
    _buffer_kept,
    _has_market_data,
    _premium_floor,
    _delta_in_band,
    _open_interest,
    _spread,
    _volume,
    _size_vs_adv,
)


def check(intent: OrderIntent, context: RiskContext) -> RiskDecision:
    """Allow the order, or deny it with the first failing check (order in the module doc)."""
    rules = _ALWAYS + _NEW_RISK if intent.opens_risk else _ALWAYS
    for rule in rules:
        denial = rule(intent, context)
        if denial is not None:
            return denial
    return RiskDecision.allow()
