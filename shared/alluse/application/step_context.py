"""What one step of the trading cycle works on, shared by the cycle (`trading`) and its phases: the
step's report, the account's working state, what the cycle lends its phases (its desk and its market
readings) and the risk engine's context of an order."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from alluse.domain.accounts import Account
from alluse.domain.alerts import AlertType, Priority
from alluse.domain.atr_protocol import LevelChange, ProtectedPosition
from alluse.domain.audit import AuditEvent
from alluse.domain.brokerage import Execution, Settlement
from alluse.domain.config import AllUseConfig, DeltaBand
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight
from alluse.domain.market import NEW_YORK
from alluse.domain.orders import ManagedOrder, intent_stem, intent_stem_or_none
from alluse.domain.protection import sleeve_paused
from alluse.domain.risk import BreakerTrip, KillSwitches, OrderIntent, RiskContext, RiskDecision, StarlabGrant, check
from alluse.domain.sleeves import SleeveKind
from alluse.domain.strategies import EntryPlan
from alluse.domain.week import WeekMode


@dataclass
class StepReport:
    account_id: str
    at: datetime
    week_mode: WeekMode | None = None
    booked_executions: int = 0
    booked_settlements: int = 0
    placed: list[ManagedOrder] = field(default_factory=list)
    denied: list[tuple[EntryPlan, RiskDecision]] = field(default_factory=list)
    awaiting_human: list[EntryPlan] = field(default_factory=list)
    skipped: dict[tuple[SleeveKind, str], str] = field(default_factory=dict)  # why a ticker got no entry
    problems: list[str] = field(default_factory=list)
    fills: list[tuple[SleeveKind, Execution]] = field(default_factory=list)  # booked in this step
    settlements: list[Settlement] = field(default_factory=list)  # booked in this step
    account: Account | None = None  # the account as this step left it
    level_changes: list[LevelChange] = field(default_factory=list)
    protective: list[ManagedOrder] = field(default_factory=list)  # ATR closes and rolls placed
    breaker: BreakerTrip | None = None  # the breaker that put the account in SAFE in this step
    closed_trade_pnls: list[int] = field(default_factory=list)  # realised P&L of trades closed in this step
    repriced: list[ManagedOrder] = field(default_factory=list)  # replacement versions placed in this step
    timed_out: list[ManagedOrder] = field(default_factory=list)  # cancelled at the timeout in this step
    reinvested: list[ManagedOrder] = field(default_factory=list)  # quarterly reinvestment orders placed
    reinvest_outcomes: list[str] = field(default_factory=list)  # what each reinvestment budget became
    working: bool = False  # orders rest at the broker after this step: reprice and timeout need a step soon


@dataclass
class Unsaved:
    """What a carried run has not written yet: acknowledgements, adopted broker states and bookings.

    Only SUBMITTING before a new intent (or an exit's replacement) is placed cannot wait, nor can the
    protocol facts that must survive (an L3 pause, SAFE and its release, a reinvestment done). Everything
    else but the week's record is
    derived from the broker (orders by ref, fills and settlements by position in its lists), so if this
    memory is lost the next step reads the stored account and derives it again: nothing is lost or booked
    twice, the store is just behind until the account's next write. The week's record is not derivable: a
    failed step hands it on to the account's next read (`TradingCycle._owed`) instead of dropping it."""

    orders: dict[str, ManagedOrder] = field(default_factory=dict)
    events: list[AuditEvent] = field(default_factory=list)
    account_changed: bool = False  # the account itself changed (the protocol's memory, say) since its last write

    @property
    def pending(self) -> bool:
        return bool(self.orders or self.events or self.account_changed)


@dataclass
class Carried:
    """One account's working state during a step, kept between steps when the cycle carries state."""

    account: Account
    orders: dict[str, ManagedOrder]
    cfg: AllUseConfig
    unsaved: Unsaved
    # The watched positions of the sleeves and watches they were read from (same objects = still valid).
    protected: tuple[object, object, list[ProtectedPosition]] | None = None
    stems: set[str] | None = None  # the intent stems of `orders`, built on first use
    live: set[str] | None = None  # ids of the orders not final, built on first use, kept by `update`

    def live_orders(self) -> list[ManagedOrder]:
        """The orders not final: a step's cost follows them, not the account's history."""
        if self.live is None:
            self.live = {r for r, o in self.orders.items() if not o.state.is_terminal}
        return [self.orders[r] for r in self.live]

    def update(self, orders: Iterable[ManagedOrder]) -> None:
        """Record new or changed orders (every change of `orders` goes through here)."""
        for order in orders:
            self.orders[order.intent_id] = order
            if self.stems is not None:
                self.stems.add(intent_stem(order.intent_id))
            if self.live is not None:
                if order.state.is_terminal:
                    self.live.discard(order.intent_id)
                else:
                    self.live.add(order.intent_id)

    def known(self, ref: str) -> bool:
        """Whether an order of this intent (any version) exists: a re-run never places an intent twice."""
        if self.stems is None:
            self.stems = {intent_stem(r) for r in self.orders}
        return intent_stem_or_none(ref) in self.stems


class Place(Protocol):
    def __call__(
        self, state: Carried, orders: Sequence[ManagedOrder], report: StepReport, *, write_first: bool = True
    ) -> list[ManagedOrder]: ...


class Save(Protocol):
    def __call__(
        self, state: Carried, account: Account, events: list[AuditEvent], *, durable: bool = True, changed: bool = False
    ) -> None: ...


@dataclass(frozen=True)
class StepDesk:
    """The cycle's hands, lent to its phases. Orders reach the broker and the store only through `place` and
    `cancel`, a changed account only through `save` (the cycle's order of writes is what makes a crash
    recoverable); alerts go through `alert`."""

    place: Place
    cancel: Callable[[Carried, ManagedOrder, str, StepReport], ManagedOrder]
    save: Save
    alert: Callable[[Account, AlertType, Priority, str, str, datetime], None]
    kill_switches: Callable[[], KillSwitches]  # as they are now: an operator may flip them between steps


@dataclass(frozen=True)
class MarketReadings:
    """The cycle's readings for its phases, remembered per instant or day: every account of a fleet asks
    them at the same one."""

    week_mode: Callable[[datetime, AllUseConfig], WeekMode | None]
    delta_shift: Callable[[datetime, AllUseConfig], Decimal]  # the week mode's (A4): entries and rolls alike
    window_open: Callable[[SleeveKind, AllUseConfig, datetime], bool]
    atr: Callable[[str, date, int], float | None]
    marks: Callable[[Account, datetime], dict[Instrument, int]]


_NO_PREMIUM_FLOOR = Decimal(0)


def risk_context(
    account: Account,
    sleeve: SleeveKind,
    underlying: str,
    cfg: AllUseConfig,
    kill_switches: KillSwitches,
    *,
    cash_required_cents: int = 0,
    delta_band: DeltaBand | None = None,
    premium_floor_pct: Decimal = _NO_PREMIUM_FLOOR,
    at: datetime,
) -> RiskContext:
    """What the risk engine judges an order of this sleeve on `underlying` against (A7: every order); the
    defaults are an exit's (no cash, no delta band, no premium floor)."""
    balance = account.sleeve(sleeve)
    shares = balance.quantity(Equity(underlying))
    covered = sum(
        -q * i.multiplier
        for i, q in balance.positions.items()
        if isinstance(i, OptionContract) and i.underlying == underlying and i.right is OptionRight.CALL and q < 0
    )
    return RiskContext(
        account_status=account.status,
        kill_switches=kill_switches,
        free_cash_cents=balance.cash_cents - balance.buffer_cents - balance.collateral_cents,
        buffer_cents=balance.buffer_cents,
        cash_required_cents=cash_required_cents,
        delta_band=delta_band,
        premium_floor_pct=premium_floor_pct,
        sleeve_paused=sleeve_paused(account, sleeve, day_of(at)),
        tripped_breaker=None,  # a tripped breaker has already put the account in SAFE (see `Protection.protect`)
        starlab=StarlabGrant.from_config(cfg),
        blacklist=frozenset(cfg.circuit_breakers.blacklist),
        risk=cfg.risk,
        uncovered_shares=max(shares - covered, 0),
        premium_floor_policy=cfg.hitl.premium_floor_policy,
    )


def exit_allowed(desk: StepDesk, state: Carried, intent: OrderIntent, sleeve: SleeveKind, report: StepReport) -> bool:
    """An exit passes the engine too (A7: every order); only a halt or a non-trading account stops it."""
    instrument = intent.instrument
    underlying = instrument.underlying if isinstance(instrument, OptionContract) else instrument.symbol
    context = risk_context(state.account, sleeve, underlying, state.cfg, desk.kill_switches(), at=report.at)
    decision = check(intent, context)
    if not decision.allowed:
        why = f"{intent.instrument.symbol}: exit refused: {decision.reason}: {decision.message}"
        report.problems.append(why)
        desk.alert(state.account, AlertType.PROTOCOL_BREACH, Priority.CRITICAL, "exit refused", why, report.at)
    return decision.allowed


def day_of(at: datetime) -> date:
    """The day of an instant in New York, where the market keeps its sessions."""
    return at.astimezone(NEW_YORK).date()


def week_of(at: datetime) -> date:
    """The Monday of an instant's week (New York): what weekly intent ids are keyed on."""
    day = at.astimezone(NEW_YORK).date()
    return day - timedelta(days=day.weekday())
