"""The trading cycle: advance ONE account by one step of its weekly routine.

A step, at the clock's "now":
1. reconcile the account's orders with its broker by ref (adopt fills, resubmit an in-flight order the
   broker never received under the same ref, report orphans) — an unknown outcome is never a reject;
2. book the broker's new fills and expiry settlements into the sleeves that own them, and into the
   FIFO tax lots (A12); a position closed to flat is one closed trade for the breakers;
while the market is open:
3. work resting orders (A8): reprice toward the touch after the delay, cancel at the timeout (an exit
   that times out is chased at the touch);
4. protect (A5, A6): scan every short option against the ATR protocol, record and alert each level
   change with its action plan, place the automatic L2 roll-or-close and L3 close, pause a sleeve after
   an L3, then trip the circuit breakers that put an account in SAFE. The state this needs between scans
   is the account's `ProtocolState`;
5. a merging account liquidates (A10); otherwise, on the first session of a quarter, Rev and Com
   reinvest (A11), then each sleeve's entries are planned (strategies, week-mode delta shift) and pass
   the risk engine. Every order is saved as SUBMITTING, then placed: a crash after saving is recovered
   by step 1 of the next run, and the deterministic intent id means the broker never holds two orders
   for one intent.

Between moments, `work` does steps 1-3 only (and watches what filled): orders are worked at their own
cadence (A8), scans at theirs (A5).

Accounts never wait on each other: a fleet runs this per account (see `run_fleet_step`).
With `carry_state`, a cycle keeps each account's record, orders and configuration between its steps
(one run = one cycle) and writes behind: only SUBMITTING of a new intent and a few protocol facts (an L3
pause, SAFE) are written at once (see `_Unsaved`). Any error drops what was carried (but the week's
record) and the next step reads afresh; `release` writes what waited and hands accounts to another use
case (the lifecycle watchdog) or ends the run. Configuration changes take effect at the next run.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from alluse.application.alerting import AlertDesk
from alluse.application.broker_port import Broker
from alluse.application.configuration import ConfigurationService
from alluse.application.market_ports import MarketData, TradingCalendar
from alluse.application.ports import AccountChange, AccountStore, Clock
from alluse.domain.accounts import Account, AccountStatus, SleeveBalance
from alluse.domain.alerts import Alert, AlertType, Priority
from alluse.domain.atr_protocol import (
    AtrLevel,
    LevelChange,
    ProtectedPosition,
    RollPlan,
    evaluate,
    plan_roll,
    roll_terms,
)
from alluse.domain.audit import AuditEvent, chain
from alluse.domain.brokerage import BrokerOrder, Execution, OrderRequest, OrderType, Settlement, SettlementKind, Side
from alluse.domain.config import AllUseConfig, DeltaBand, WeekModeConfig, effective_config
from alluse.domain.errors import AllUseError, Conflict, MarketDataGap
from alluse.domain.indicators import average_true_range
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight
from alluse.domain.ledger import book_execution, book_settlement, equity_cents, option_mark_cents
from alluse.domain.lifecycle import (
    REINVEST_PURPOSE,
    ReinvestBudget,
    affordable_units,
    leaps_row,
    mark_reinvested,
    reinvest_budgets,
    reinvest_due,
)
from alluse.domain.market import NEW_YORK, OptionChain
from alluse.domain.money import cents_of_price, format_cents
from alluse.domain.orders import (
    AlertMismatch,
    AlertOrphan,
    ManagedOrder,
    OrderState,
    Quote,
    Resubmit,
    apply_broker_order,
    due_for_reprice,
    intent_id,
    intent_purpose,
    intent_stem,
    intent_stem_or_none,
    next_limit,
    plan_order,
    reconcile,
    record_resubmission,
    replacement,
    should_cancel,
    transition,
)
from alluse.domain.protection import (
    EXIT_PURPOSES,
    ProtectivePurpose,
    apply_level_changes,
    breaker_trip,
    closed_trade_pnl,
    go_safe,
    protected_positions,
    record_closings,
    release_safe,
    safe_release_due,
    sleeve_paused,
    start_day,
    sync_watches,
    unwatched_underlyings,
    watch_key,
)
from alluse.domain.risk import (
    BreakerTrip,
    DenyReason,
    KillSwitches,
    OrderIntent,
    RiskContext,
    RiskDecision,
    StarlabGrant,
    check,
)
from alluse.domain.sleeves import SleeveKind
from alluse.domain.strategies import EntryDecision, EntryPlan, SleeveBook, entry_window_open, plan_entries
from alluse.domain.tax import TaxableEvent, book_execution_lots, book_settlement_lots, gains_by_term
from alluse.domain.week import WeekMode, WeekRecord, classify_week_mode, delta_shift, prior_week_measures

TRADING_SLEEVES = (SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM)
_TRADABLE = (AccountStatus.ACTIVE, AccountStatus.SAFE)
WEEK_CLOSED = "WEEK_CLOSED"
_UNDERIVABLE = frozenset({WEEK_CLOSED})  # events no broker record gives back: never dropped unwritten


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
class _Unsaved:
    """What a carried run has not written yet: acknowledgements, adopted broker states and bookings.

    Only SUBMITTING before a new intent is placed cannot wait. Everything else but the week's record is
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
class _Carried:
    """One account's working state during a step, kept between steps when the cycle carries state."""

    account: Account
    orders: dict[str, ManagedOrder]
    cfg: AllUseConfig
    unsaved: _Unsaved
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


class TradingCycle:
    def __init__(
        self,
        store: AccountStore,
        broker: Broker,
        market: MarketData,
        calendar: TradingCalendar,
        clock: Clock,
        alerts: AlertDesk,
        *,
        kill_switches: KillSwitches | None = None,
        carry_state: bool = False,
    ) -> None:
        self._store = store
        self._broker = broker
        self._market = market
        self._calendar = calendar
        self._clock = clock
        self._alerts = alerts
        self._configuration = ConfigurationService(store, clock)
        self.kill_switches = kill_switches or KillSwitches()
        self._carry = carry_state
        self._carried: dict[str, _Carried] = {}
        self._modes: dict[tuple[date, WeekModeConfig], WeekMode | None] = {}  # one index read per day
        self._atrs: dict[tuple[str, date, int], float | None] = {}  # one ATR per ticker per day
        self._marks_at: datetime | None = None
        self._first_of_month: dict[date, bool] = {}  # a session's day -> it opens its month
        self._mark_memo: dict[Instrument, int] = {}
        # Events the broker cannot give back (the week's record) left unwritten by a failed step: they
        # go with the account's next write.
        self._owed: dict[str, list[AuditEvent]] = {}
        self._global_layer: Mapping[str, object] | None = None
        self._configs: dict[str, AllUseConfig] = {}  # effective configuration by account layer (carried run)
        # Answers for the current instant: every account of a fleet asks them at the same one.
        self._last_mode: tuple[datetime, WeekModeConfig, WeekMode | None] | None = None
        self._last_windows: tuple[datetime, AllUseConfig, dict[SleeveKind, bool]] | None = None
        self._inputs_at: tuple[datetime, int] | None = None
        self._prices: dict[str, float] = {}
        self._atrs_now: dict[str, float] = {}

    def step(self, account_id: str) -> StepReport:
        """One moment of the weekly routine (see the module notes)."""
        return self._on(account_id, self._advance)

    def work(self, account_id: str) -> StepReport:
        """Between the run's moments: reconcile and book, then work the resting orders (A8) and watch
        what filled from the underlying at its fill (A5). The scan, the breakers and entries keep their
        own cadence (A5: every `atr_protocol.scan_interval_minutes`), so they wait for the next step."""
        return self._on(account_id, self._work)

    def _on(self, account_id: str, advance: Callable[[_Carried, StepReport], None]) -> StepReport:
        now = self._clock.now()
        report = StepReport(account_id, now)
        carried = self._carried.pop(account_id, None)  # popped: an error below leaves nothing stale behind
        account = carried.account if carried else self._store.get(account_id)
        report.account = account
        if account.status not in _TRADABLE or account.brokerage_id is None or account.lifecycle.funding_from:
            if self._carry:  # remembered, so that a closed or waiting account costs no read per step
                self._carried[account_id] = carried or _Carried(
                    account, {}, self._cfg_of(account), self._unsaved_for(account_id)
                )
            return report  # a fork's child trades once its funding is confirmed (A9)
        state = carried or self._read(account)
        advance(state, report)
        report.account = state.account
        if self._carry:
            self._carried[account_id] = state
        return report

    def _cfg_of(self, account: Account) -> AllUseConfig:
        if not self._carry:
            return self._configuration.effective_for_known(account.account_id)
        # A carried run reads the global layer once (changes take effect at the next run), and accounts
        # with the same own layer share one configuration object (what the per-instant memos key on).
        if self._global_layer is None:
            self._global_layer = self._configuration.overrides_of_global()
        layer = self._configuration.overrides_of(account.account_id)
        key = json.dumps(layer, sort_keys=True, default=str)
        if key not in self._configs:
            self._configs[key] = effective_config(self._global_layer, layer)
        return self._configs[key]

    def _read(self, account: Account) -> _Carried:
        orders = {o.intent_id: o for o in self._store.orders(account.account_id)}
        return _Carried(account, orders, self._cfg_of(account), self._unsaved_for(account.account_id))

    def _unsaved_for(self, account_id: str) -> _Unsaved:
        return _Unsaved(events=self._owed.pop(account_id, []))

    def _advance(self, state: _Carried, report: StepReport) -> None:
        self._sync(state, report)
        if self._calendar.is_open(report.at):
            self._work_orders(state, report)
            self._protect(state, report)
            if state.account.lifecycle.merging_into is not None:
                self._liquidate(state, report)  # A10: no new risk, everything sold before the merge
            elif state.account.status is AccountStatus.ACTIVE:
                self._reinvest(state, report)
                state.account = self._enter(state, report)
            self._watch_new(state, report)
        report.working = any(o.state.is_worked for o in state.live_orders())

    def _work(self, state: _Carried, report: StepReport) -> None:
        self._sync(state, report)
        if self._calendar.is_open(report.at):
            self._work_orders(state, report)
            self._watch_new(state, report)
        report.working = any(o.state.is_worked for o in state.live_orders())

    def _sync(self, state: _Carried, report: StepReport) -> None:
        """Steps 1 and 2: the broker's news adopted and booked (written behind)."""
        changed = self._reconcile(state, report)
        account = self._book(state.account, state.orders, state.cfg, report)
        events = self._booking_events(report)
        state.account = self._commit(account, changed.values(), events, state.unsaved, durable=False)

    def record_week(self, account_id: str, records: Sequence[WeekRecord]) -> None:
        """Store the judged week (mode guessed and confirmed, type code per sleeve) in the account's chain."""
        carried = self._carried.pop(account_id, None)
        events = [AuditEvent(WEEK_CLOSED, {"sleeves": [_week_details(r) for r in records]})]
        if carried is None:  # nothing carried to write it with: now
            self._commit(self._store.get(account_id), [], events, self._unsaved_for(account_id))
            return
        # Carried: it goes with the account's next write (`_owed` keeps it if a step fails before then).
        account = self._commit(carried.account, [], events, carried.unsaved, durable=False)
        self._carried[account_id] = replace(carried, account=account)

    def release(self, account_ids: Iterable[str]) -> None:
        """Write what is carried for these accounts and forget it, so that another use case (the
        lifecycle watchdog) works on the stored state, or the run ends; the next step reads them afresh."""
        for account_id in account_ids:
            carried = self._carried.pop(account_id, None)
            if carried is not None and carried.unsaved.pending:
                self._commit(carried.account, [], [], carried.unsaved)
            elif carried is None and account_id in self._owed:
                self._commit(self._store.get(account_id), [], [], self._unsaved_for(account_id))

    def report_failure(self, account_id: str, why: str) -> None:
        """An account whose step raised: forget what was carried for it, except what the broker cannot
        give back, and alert (the fleet goes on)."""
        carried = self._carried.pop(account_id, None)
        if carried is not None:
            owed = [e for e in carried.unsaved.events if e.action in _UNDERIVABLE]
            if owed:
                self._owed[account_id] = owed
        now = self._clock.now()
        title = "account step failed"
        alert = Alert(
            AlertType.TECHNICAL_ALERT, Priority.HIGH, account_id, title, why, (), f"{account_id}:{title}", now
        )
        self._alerts.raise_alert(alert, trading_day=self._calendar.is_session(now.astimezone(NEW_YORK).date()))

    # --- 1. reconcile ------------------------------------------------------------------------------
    def _reconcile(self, state: _Carried, report: StepReport) -> dict[str, ManagedOrder]:
        account, orders, cfg = state.account, state.orders, state.cfg
        brokerage_id = _linked(account)
        # What can still change: local orders not final, the broker's open orders, and the broker's record
        # of each local order it no longer lists as open. A step's cost follows the live orders, not the
        # account's history; an order under an unknown ref is caught while it is open at the broker.
        live = state.live_orders()
        open_at_broker = self._broker.open_orders(brokerage_id)
        listed = {b.client_ref for b in open_at_broker}
        newer = self._newer_versions_filled(state, brokerage_id, listed)
        if not (live or open_at_broker or newer):
            return {}  # nothing in flight on either side: nothing to reconcile (most steps)
        finished = [
            record
            for o in live
            if o.intent_id not in listed and (record := self._broker.order_by_ref(brokerage_id, o.intent_id))
        ]
        stale = [orders[r] for r in listed if r in orders and orders[r].state.is_terminal]  # broker still works it
        finished += newer
        absent = {o.intent_id for o in live} - listed - {b.client_ref for b in finished}
        executions = [e for e in self._broker.executions(brokerage_id) if e.client_ref in absent] if absent else []
        result = reconcile([*live, *stale], [*open_at_broker, *finished], executions, report.at, cfg.orders)
        changed = {o.intent_id: o for o in result.orders if orders.get(o.intent_id) != o}
        for action in result.actions:
            if isinstance(action, Resubmit):  # same ref: the broker cannot make it a second order
                order = record_resubmission(changed.get(action.intent_id, orders[action.intent_id]), report.at)
                placed = self._broker.place_order(brokerage_id, action.request)
                changed[order.intent_id] = apply_broker_order(order, placed, report.at)
            elif isinstance(action, AlertOrphan | AlertMismatch):
                if isinstance(action, AlertOrphan):
                    orphan = action.broker_order
                    why = f"broker order {orphan.broker_order_id} has unknown ref {orphan.client_ref}"
                else:
                    why = f"{action.intent_id}: {action.why}"
                report.problems.append(why)
                self._alert(account, AlertType.TECHNICAL_ALERT, Priority.HIGH, "order reconciliation", why, report.at)
        state.update(changed.values())
        return changed

    def _newer_versions_filled(self, state: _Carried, brokerage_id: str, listed: set[str]) -> list[BrokerOrder]:
        """The broker's records of new fills under an unknown version of a known intent (a reprice written
        behind, then memory lost, then filled): reconciliation adopts them before they are booked."""
        new = {e.client_ref for e in self._broker.executions_since(brokerage_id, state.account.executions_booked)}
        unknown = sorted(r for r in new if r not in state.orders and r not in listed and state.known(r))
        return [record for r in unknown if (record := self._broker.order_by_ref(brokerage_id, r)) is not None]

    # --- 2. book fills and settlements --------------------------------------------------------------
    def _book(
        self, account: Account, orders: Mapping[str, ManagedOrder], cfg: AllUseConfig, report: StepReport
    ) -> Account:
        brokerage_id = _linked(account)
        closings: list[tuple[str, int, bool]] = []
        for execution in self._broker.executions_since(brokerage_id, account.executions_booked):
            order = orders.get(execution.client_ref)
            if order is None:  # not ours to book: hold the line until a human sorts it out
                report.problems.append(f"fill {execution.execution_id} has unknown ref {execution.client_ref}")
                break
            before = account.sleeve(order.sleeve)
            account = self._tax_execution(account, order.sleeve, execution, cfg, report)
            account = book_execution(account, order.sleeve, execution)
            account = replace(account, executions_booked=account.executions_booked + 1)
            closings += _closing(order.sleeve, before, account.sleeve(order.sleeve), execution.instrument)
            report.booked_executions += 1
            report.fills.append((order.sleeve, execution))
        for settlement in self._broker.settlements_since(brokerage_id, account.settlements_booked):
            try:
                booked = book_settlement(account, settlement)
            except Conflict as err:
                report.problems.append(str(err))
                break
            booked = self._tax_settlement(account, booked, settlement, cfg, report)
            if settlement.kind is not SettlementKind.ASSIGNED:  # A12: an assignment closes no trade
                for kind, before in account.sleeves.items():
                    closings += _closing(kind, before, booked.sleeve(kind), settlement.instrument)
            account = replace(booked, settlements_booked=booked.settlements_booked + 1)
            report.booked_settlements += 1
            report.settlements.append(settlement)
        account, ended = record_closings(account, closings, cfg.circuit_breakers)
        report.closed_trade_pnls += ended
        return account

    # --- tax lots (A12): every booking also moves the FIFO lots ----------------------------------------
    def _tax_execution(
        self, account: Account, sleeve: SleeveKind, execution: Execution, cfg: AllUseConfig, report: StepReport
    ) -> Account:
        on = _day(execution.at)
        try:
            lots, events = book_execution_lots(account.tax_lots, sleeve, execution, on, cfg=cfg.tax)
        except AllUseError as err:  # the lots disagree with the sleeves: report, never block the booking
            return self._tax_problem(account, f"fill {execution.execution_id}: {err}", report)
        return _with_gains(replace(account, tax_lots=lots), on.year, events)

    def _tax_settlement(
        self, before: Account, after: Account, settlement: Settlement, cfg: AllUseConfig, report: StepReport
    ) -> Account:
        holders = {k: s.quantity(settlement.instrument) for k, s in before.sleeves.items()}
        holders = {k: q for k, q in holders.items() if q}
        on = _day(settlement.at)
        try:
            lots, events = book_settlement_lots(before.tax_lots, holders, settlement, on, cfg=cfg.tax)
        except AllUseError as err:
            return self._tax_problem(after, f"settlement of {settlement.instrument.symbol}: {err}", report)
        return _with_gains(replace(after, tax_lots=lots), on.year, events)

    def _tax_problem(self, account: Account, why: str, report: StepReport) -> Account:
        report.problems.append(f"tax lots: {why}")
        self._alert(account, AlertType.TECHNICAL_ALERT, Priority.HIGH, "tax lots out of step", why, report.at)
        return account

    # --- 3. work resting orders: reprice toward the touch, cancel at timeout (A8) -------------------------
    def _work_orders(self, state: _Carried, report: StepReport) -> None:
        rules, now = state.cfg.orders, report.at
        resting = [o for o in state.live_orders() if o.state.is_worked and o.broker_order_id]
        replacements: list[ManagedOrder] = []
        for order in resting:
            reinvesting = intent_purpose(order.intent_id) == REINVEST_PURPOSE
            policy = state.cfg.lifecycle.partial_fill_policy
            if reinvesting and policy == "cancel_rest" and order.state is OrderState.PARTIALLY_FILLED:
                self._cancel(state, order, "partly filled: the rest is cancelled (partial_fill_policy)", report)
            elif should_cancel(order, now, rules):
                cancelled = self._cancel(state, order, f"timed out after {rules.timeout_seconds} s", report)
                if cancelled.state is not OrderState.CANCELLED:
                    continue  # a fill won the race: nothing timed out
                report.timed_out.append(cancelled)
                chase = self._chase(state, cancelled, report)
                if chase is not None:
                    replacements.append(chase)
            elif due_for_reprice(order, now, rules):
                limit = self._repriced_limit(state, order, now)
                if limit is None:
                    continue  # at the touch or the concession bound already: it rests until the timeout
                cancelled = self._cancel(state, order, f"reprice to {limit}", report)
                if cancelled.state is OrderState.CANCELLED and cancelled.remaining > 0:
                    replacements.append(replacement(cancelled, limit))
        # A newer version of an entry is written behind (see _place); an exit's is written first, as a new
        # intent's is: lost in a crash between the cancel and the broker, the exit could not be recovered.
        exits = [o for o in replacements if _is_exit(o)]
        entries = [o for o in replacements if not _is_exit(o)]
        if exits:
            report.repriced += self._place(state, exits, report)
        if entries:
            report.repriced += self._place(state, entries, report, new_intents=False)

    def _chase(self, state: _Carried, order: ManagedOrder, report: StepReport) -> ManagedOrder | None:
        """An exit (ATR close, roll buy-back, liquidation) that timed out is not given up: what is left is
        placed again at the touch, and a human is told. An entry that timed out is simply not made."""
        purpose = intent_purpose(order.intent_id)
        retried = purpose == REINVEST_PURPOSE and state.cfg.lifecycle.partial_fill_policy == "retry"
        if (purpose not in EXIT_PURPOSES and not retried) or order.remaining <= 0:
            return None
        request = order.request
        contract = request.instrument
        if not isinstance(contract, OptionContract):
            return None  # share exits and purchases go at market: they do not rest
        quote = self._market.chain(contract.underlying, report.at).find(contract)
        touch = (quote.ask_cents if request.side is Side.BUY else quote.bid_cents) if quote else 0
        why = f"{contract.symbol}: exit not filled in {state.cfg.orders.timeout_seconds} s"
        if touch <= 0:
            report.problems.append(f"{why}; no quote to chase at")
            self._alert(state.account, AlertType.PROTOCOL_BREACH, Priority.CRITICAL, "exit stuck", why, report.at)
            return None
        self._alert(
            state.account,
            AlertType.PROTOCOL_BREACH,
            Priority.HIGH,
            "exit chased",
            f"{why}; again at {touch}",
            report.at,
        )
        return replacement(order, touch)

    def _repriced_limit(self, state: _Carried, order: ManagedOrder, now: datetime) -> int | None:
        request = order.request
        contract = request.instrument
        if not isinstance(contract, OptionContract) or request.limit_price_cents is None:
            return None
        quote = self._market.chain(contract.underlying, now).find(contract)
        if quote is None or quote.bid_cents <= 0 or quote.ask_cents <= 0:
            return None  # no quote to reprice against: the order keeps its limit
        touch = Quote(quote.bid_cents, quote.ask_cents)
        reference = order.reference_quote.mid if order.reference_quote else touch.mid
        return next_limit(
            request.limit_price_cents, request.side, touch, reference, state.cfg.ticks, contract, state.cfg.orders
        )

    def _cancel(self, state: _Carried, order: ManagedOrder, why: str, report: StepReport) -> ManagedOrder:
        """Ask the broker to cancel and adopt its answer (a fill may have won the race); not durable: the
        broker's record under the ref tells it again if this memory is lost."""
        asked = transition(order, OrderState.CANCEL_REQUESTED, report.at, why)
        answer = self._broker.cancel_order(_linked(state.account), order.broker_order_id or "")
        adopted = apply_broker_order(asked, answer, report.at)
        state.update([adopted])
        event = AuditEvent("ORDER_CANCEL_REQUESTED", {"intent_id": order.intent_id, "why": why})
        state.account = self._commit(state.account, [adopted], [event], state.unsaved, durable=False)
        return adopted

    # --- 4. protect: ATR scan, automatic actions, circuit breakers -----------------------------------
    def _protect(self, state: _Carried, report: StepReport) -> None:
        cfg, today = state.cfg, _day(report.at)
        account, events = state.account, []
        durable = False
        if safe_release_due(account, today):
            account = release_safe(account)
            events.append(AuditEvent("SAFE_RELEASED", {"policy": cfg.circuit_breakers.safe_release}))
            self._alert(
                account, AlertType.ACCOUNT_MANAGEMENT, Priority.MEDIUM, "SAFE lifted", "trading resumes", report.at
            )
            durable = True
        account, positions = self._watched(state, account, report)
        shift = self._delta_shift(report.at, cfg)
        changes = self._scan(account, positions, cfg, shift, report) if positions else []
        account = apply_level_changes(account, changes, cfg)
        events += [AuditEvent("ATR_LEVEL_CHANGED", _change_details(c)) for c in changes]
        durable = durable or any(c.to_level is AtrLevel.L3 for c in changes)  # the pause must not be lost
        changed = account is not state.account
        state.account = self._commit(account, [], events, state.unsaved, durable=durable, changed=changed)
        acting = [c for c in changes if c.escalated and c.action.automatic]
        if acting:
            self._act(state, {p.position_id: p for p in positions}, acting, shift, report)
        self._check_breakers(state, report)  # after the actions: a losing close may trip one (A6)

    def _check_breakers(self, state: _Carried, report: StepReport) -> None:
        account, trip = self._breaker(state.account, state.cfg, report)
        events, durable = [], False
        if trip is not None:
            account = go_safe(account, _day(report.at), state.cfg.circuit_breakers)
            until = account.protocol.safe_until
            events.append(AuditEvent("CIRCUIT_BREAKER_TRIPPED", {"kind": trip.kind.value, "message": trip.message}))
            release = f"lifts on {until}" if until else "until an operator lifts it"
            body = f"{trip.message}; account SAFE (no new risk, exits allowed), {release}"
            self._alert(account, AlertType.PROTOCOL_BREACH, Priority.CRITICAL, "circuit breaker", body, report.at)
            report.breaker, durable = trip, True
        changed = account is not state.account
        state.account = self._commit(account, [], events, state.unsaved, durable=durable, changed=changed)

    def _watch_new(self, state: _Carried, report: StepReport) -> None:
        """Positions this step opened are watched from the underlying at their fill (A5), not from a later scan."""
        account, _ = self._watched(state, state.account, report)
        if account is not state.account:
            state.account = self._commit(account, [], [], state.unsaved, durable=False, changed=True)

    def _watched(
        self, state: _Carried, account: Account, report: StepReport
    ) -> tuple[Account, list[ProtectedPosition]]:
        """Watches synced with the positions, and the positions as the protocol measures them; both read
        again only when the sleeves or the watches changed (a scan is frequent, a change is not)."""
        known = state.protected
        if known is not None and known[0] is account.sleeves and known[1] is account.protocol.watches:
            return account, known[2]
        account = sync_watches(account, self._entry_prices(account, report))
        positions = protected_positions(account)
        state.protected = (account.sleeves, account.protocol.watches, positions)
        return account, positions

    def _entry_prices(self, account: Account, report: StepReport) -> dict[str, int]:
        """Underlying prices for positions not watched yet: at the opening fill when this step booked it."""
        new = unwatched_underlyings(account)
        if not new:
            return {}
        when = {
            e.instrument.underlying: e.at
            for _, e in report.fills
            if isinstance(e.instrument, OptionContract) and e.side is Side.SELL
        }
        return {t: cents_of_price(self._market.price(t, when.get(t, report.at))) for t in new}

    def _scan(
        self,
        account: Account,
        positions: Sequence[ProtectedPosition],
        cfg: AllUseConfig,
        shift: Decimal,
        report: StepReport,
    ) -> list[LevelChange]:
        prices, atrs = self._scan_inputs(positions, report.at, cfg.atr_protocol.atr_period)
        changes = evaluate(positions, prices, atrs, report.at, cfg, delta_shift=shift)
        for change in changes:
            title = f"ATR L{int(change.from_level)}→L{int(change.to_level)} {change.contract.symbol}"
            priority = Priority[change.priority]
            self._alert(account, AlertType.PROTOCOL_BREACH, priority, title, str(change.plan), report.at)
        report.level_changes += changes
        return changes

    def _scan_inputs(
        self, positions: Sequence[ProtectedPosition], at: datetime, period: int
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Prices and ATRs of the positions' underlyings, kept for the instant: the fleet's accounts hold
        the same few tickers."""
        if self._inputs_at != (at, period):
            self._inputs_at, self._prices, self._atrs_now = (at, period), {}, {}
        prices, atrs, today = self._prices, self._atrs_now, None
        for position in positions:
            ticker = position.underlying
            if ticker not in prices:
                today = today or _day(at)
                prices[ticker] = self._market.price(ticker, at)
                if (atr := self._atr(ticker, today, period)) is not None:
                    atrs[ticker] = atr
        return prices, atrs

    def _act(
        self,
        state: _Carried,
        positions: Mapping[str, ProtectedPosition],
        changes: Sequence[LevelChange],
        shift: Decimal,
        report: StepReport,
    ) -> None:
        """The automatic actions of escalations (A5): L2 rolls for a net credit or closes, L3 closes.
        Buy-backs go first; a roll's new leg follows once its buy-back has filled (cash and collateral)."""
        closes: list[ManagedOrder] = []
        rolls: list[tuple[ProtectedPosition, RollPlan]] = []
        for change in changes:
            position = positions[change.position_id]
            try:
                chain = self._market.chain(position.underlying, report.at)
                roll = None
                if change.action.action == "roll_or_close":
                    roll = plan_roll(position, chain, _day(report.at), state.cfg, delta_shift=shift)
                order = self._buy_back(state, position, chain, roll, report)
            except AllUseError as err:
                why = f"{position.contract.symbol}: cannot act on L{int(change.to_level)}: {err}"
                report.problems.append(why)
                self._alert(
                    state.account, AlertType.PROTOCOL_BREACH, Priority.CRITICAL, "ATR action failed", why, report.at
                )
                continue
            if order is not None:
                closes.append(order)
                if roll is not None:
                    rolls.append((position, roll))
        if closes:
            report.protective += self._place(state, closes, report)
        opens = [o for p, roll in rolls if (o := self._roll_open(state, p, roll, shift, report)) is not None]
        if opens:
            report.protective += self._place(state, opens, report)

    def _buy_back(
        self,
        state: _Carried,
        position: ProtectedPosition,
        chain: OptionChain,
        roll: RollPlan | None,
        report: StepReport,
    ) -> ManagedOrder | None:
        """The buy-to-close at the ask, or None when this week's order for it exists already."""
        contract = position.contract
        purpose = ProtectivePurpose.ROLL_CLOSE if roll else ProtectivePurpose.CLOSE
        ref = self._protective_ref(state.account, position.sleeve, purpose, contract, report.at)
        if state.known(ref):
            return None
        quote = chain.find(contract)
        if quote is None or quote.ask_cents <= 0:
            raise MarketDataGap(f"no ask to buy back {contract.symbol}", field="chain")
        request = OrderRequest(ref, contract, Side.BUY, position.contracts, OrderType.LIMIT, quote.ask_cents)
        intent = OrderIntent(
            state.account.account_id, position.sleeve, contract, Side.BUY, position.contracts, False, quote.ask_cents
        )
        if not self._allowed(state, intent, position.sleeve, report):
            return None
        reference = Quote(quote.bid_cents, quote.ask_cents) if quote.bid_cents > 0 else None
        return plan_order(state.account.account_id, position.sleeve, request, reference_quote=reference)

    def _roll_open(
        self, state: _Carried, position: ProtectedPosition, roll: RollPlan, shift: Decimal, report: StepReport
    ) -> ManagedOrder | None:
        """A roll's new short leg: new risk, so it passes every check; refused, the position stays closed."""
        account, contract = state.account, roll.open_contract
        if account.sleeve(position.sleeve).quantity(position.contract) != 0:
            report.problems.append(f"roll of {position.contract.symbol}: buy-back not filled, new leg not placed")
            return None
        ref = self._protective_ref(account, position.sleeve, ProtectivePurpose.ROLL_OPEN, contract, report.at)
        quote = self._market.chain(contract.underlying, report.at).find(contract)
        intent = OrderIntent(
            account.account_id,
            position.sleeve,
            contract,
            Side.SELL,
            roll.quantity,
            True,
            roll.open_price_cents,
            quote=quote,
        )
        terms = roll_terms(position.sleeve, contract.right, state.cfg, delta_shift=shift)  # the band it was chosen in
        collateral = (
            contract.strike_cents * contract.multiplier * roll.quantity if contract.right is OptionRight.PUT else 0
        )
        context = self._risk_context(
            account,
            position.sleeve,
            contract.underlying,
            state.cfg,
            cash_required_cents=collateral,
            delta_band=DeltaBand(min=terms.delta_band[0], max=terms.delta_band[1]),
            premium_floor_pct=Decimal(0),  # a roll is judged by its net credit (A5), not by the entry floor
            at=report.at,
        )
        decision = check(intent, context)
        if not decision.allowed:
            why = f"roll of {position.contract.symbol} into {contract.symbol} refused: {decision.reason}"
            why += f": {decision.message}"
            report.problems.append(why)
            self._alert(account, AlertType.PROTOCOL_BREACH, Priority.HIGH, "roll refused", why, report.at)
            return None
        request = OrderRequest(ref, contract, Side.SELL, roll.quantity, OrderType.LIMIT, roll.open_price_cents)
        reference = Quote(quote.bid_cents, quote.ask_cents) if quote else None
        return plan_order(account.account_id, position.sleeve, request, reference_quote=reference)

    def _allowed(self, state: _Carried, intent: OrderIntent, sleeve: SleeveKind, report: StepReport) -> bool:
        """An exit passes the engine too (A7: every order); only a halt or a non-trading account stops it."""
        context = self._risk_context(
            state.account,
            sleeve,
            intent.instrument.underlying if isinstance(intent.instrument, OptionContract) else intent.instrument.symbol,
            state.cfg,
            cash_required_cents=0,
            delta_band=None,
            premium_floor_pct=Decimal(0),
            at=report.at,
        )
        decision = check(intent, context)
        if not decision.allowed:
            why = f"{intent.instrument.symbol}: exit refused: {decision.reason}: {decision.message}"
            report.problems.append(why)
            self._alert(state.account, AlertType.PROTOCOL_BREACH, Priority.CRITICAL, "exit refused", why, report.at)
        return decision.allowed

    def _protective_ref(
        self, account: Account, sleeve: SleeveKind, purpose: ProtectivePurpose, contract: OptionContract, at: datetime
    ) -> str:
        return intent_id(
            account.account_id, sleeve, _week_start(at), purpose.value, contract.underlying, contract.symbol
        )

    def _breaker(self, account: Account, cfg: AllUseConfig, report: StepReport) -> tuple[Account, BreakerTrip | None]:
        """The breaker an ACTIVE account trips now; the day's first scan sets the drawdown's reference."""
        if account.status is not AccountStatus.ACTIVE:
            return account, None
        try:
            equity = equity_cents(account, self._marks(account, report.at))
        except AllUseError as err:  # no marks, no drawdown: say so rather than guess
            report.problems.append(f"circuit breakers not evaluated: {err}")
            return account, None
        today = _day(report.at)
        if account.protocol.day != today:
            account = start_day(account, today, equity)
        return account, breaker_trip(account, equity, cfg.circuit_breakers)

    # --- quarterly reinvestment (A11) -------------------------------------------------------------------
    def _reinvest(self, state: _Carried, report: StepReport) -> None:
        today = _day(report.at)
        if today.month not in state.cfg.lifecycle.reinvest_months or state.account.lifecycle.reinvested_on == today:
            return  # the common case, without asking the calendar
        if today not in self._first_of_month:
            self._first_of_month[today] = self._calendar.previous_session(today).month != today.month
        first_of_month = self._first_of_month[today]
        if not reinvest_due(today, state.account, first_of_month=first_of_month, config=state.cfg.lifecycle):
            return
        orders, outcomes = [], []
        for budget in reinvest_budgets(state.account, state.cfg, today):
            try:
                order, outcome = self._reinvest_order(state, budget, report)
            except AllUseError as err:
                order, outcome = None, f"not placed: {err}"
            outcomes.append(
                {
                    "sleeve": budget.sleeve.value,
                    "kind": budget.kind,
                    "ticker": budget.ticker,
                    "budget_cents": budget.budget_cents,
                    "outcome": outcome,
                }
            )
            if order is not None:
                orders.append(order)
        if orders:
            report.reinvested += self._place(state, orders, report)
        account = mark_reinvested(state.account, today)
        event = AuditEvent("REINVESTED", {"purchases": outcomes})
        state.account = self._commit(account, [], [event], state.unsaved, changed=True)
        report.reinvest_outcomes += [f"{o['sleeve']} {o['kind']} {o['ticker']}: {o['outcome']}" for o in outcomes]

    def _reinvest_order(
        self, state: _Carried, budget: ReinvestBudget, report: StepReport
    ) -> tuple[ManagedOrder | None, str]:
        account, cfg = state.account, state.cfg
        ref = intent_id(
            account.account_id, budget.sleeve, _week_start(report.at), REINVEST_PURPOSE, budget.ticker, budget.kind
        )
        if state.known(ref):
            return None, "placed before"
        quote = None
        adv: int | None = None
        instrument: Instrument
        if budget.kind == "shares":
            instrument = Equity(budget.ticker)
            price = cents_of_price(self._market.price(budget.ticker, report.at))
            quantity = affordable_units(budget.budget_cents, price, 1)
            bars = self._market.daily_bars(budget.ticker, through=_day(report.at) - timedelta(days=1))
            adv = int(bars.volume[-cfg.risk.adv_sessions :].mean()) if len(bars) else None
            request_type, limit = OrderType.MARKET, None
        else:
            chain = self._market.chain(budget.ticker, report.at)
            row = leaps_row(chain, _day(report.at), cfg.lifecycle)
            if row is None:
                return None, "no LEAPS call in the band"
            quote = chain.quote(row)
            instrument, price = quote.contract, quote.ask_cents
            quantity = affordable_units(budget.budget_cents, price, quote.contract.multiplier)
            request_type, limit = OrderType.LIMIT, price
        if quantity <= 0:
            unit = format_cents(price * instrument.multiplier)
            return None, f"{format_cents(budget.budget_cents)} buys less than one {instrument.symbol} at {unit}"
        intent = OrderIntent(
            account.account_id,
            budget.sleeve,
            instrument,
            Side.BUY,
            quantity,
            True,
            limit,
            quote=quote,
            avg_daily_volume=adv,
        )
        context = self._risk_context(
            account,
            budget.sleeve,
            budget.ticker,
            cfg,
            cash_required_cents=price * quantity * instrument.multiplier,
            delta_band=None,
            premium_floor_pct=Decimal(0),
            at=report.at,
        )
        decision = check(intent, context)
        if not decision.allowed:
            why = f"{instrument.symbol}: reinvestment refused: {decision.reason}: {decision.message}"
            self._alert(account, AlertType.ACCOUNT_MANAGEMENT, Priority.MEDIUM, "reinvestment refused", why, report.at)
            return None, f"refused {decision.reason}"
        request = OrderRequest(ref, instrument, Side.BUY, quantity, request_type, limit)
        reference = Quote(quote.bid_cents, quote.ask_cents) if quote else None
        return plan_order(account.account_id, budget.sleeve, request, reference_quote=reference), f"buy {quantity}"

    # --- liquidation before a merge (A10) -------------------------------------------------------------
    def _liquidate(self, state: _Carried, report: StepReport) -> None:
        """Buy back short options at the ask first; sell shares and long options once no short option is
        left (a share must not leave while a call is written on it)."""
        account = state.account
        held = [(k, i, q) for k, b in account.sleeves.items() for i, q in b.positions.items() if q]
        shorts = [(k, i, q) for k, i, q in held if isinstance(i, OptionContract) and q < 0]
        orders = []
        for sleeve, instrument, quantity in shorts or held:
            try:
                order = self._liquidation_order(state, sleeve, instrument, quantity, report)
            except AllUseError as err:
                report.problems.append(f"liquidating {instrument.symbol}: {err}")
                continue
            if order is not None:
                orders.append(order)
        if orders:
            report.protective += self._place(state, orders, report)

    def _liquidation_order(
        self, state: _Carried, sleeve: SleeveKind, instrument: Instrument, quantity: int, report: StepReport
    ) -> ManagedOrder | None:
        side = Side.BUY if quantity < 0 else Side.SELL
        underlying = instrument.underlying if isinstance(instrument, OptionContract) else instrument.symbol
        week = _week_start(report.at)
        ref = intent_id(
            state.account.account_id, sleeve, week, ProtectivePurpose.LIQUIDATE.value, underlying, instrument.symbol
        )
        if state.known(ref):
            return None
        if isinstance(instrument, OptionContract):
            quote = self._market.chain(underlying, report.at).find(instrument)
            price = (quote.ask_cents if side is Side.BUY else quote.bid_cents) if quote else 0
            if price <= 0:
                raise MarketDataGap(f"no {'ask' if side is Side.BUY else 'bid'} for {instrument.symbol}", field="chain")
            request = OrderRequest(ref, instrument, side, abs(quantity), OrderType.LIMIT, price)
        else:
            request = OrderRequest(ref, instrument, side, abs(quantity), OrderType.MARKET, None)
        intent = OrderIntent(
            state.account.account_id, sleeve, instrument, side, abs(quantity), False, request.limit_price_cents
        )
        if not self._allowed(state, intent, sleeve, report):
            return None
        return plan_order(state.account.account_id, sleeve, request)

    # --- 5. entries ---------------------------------------------------------------------------------
    def _enter(self, state: _Carried, report: StepReport) -> Account:
        account, cfg = state.account, state.cfg
        report.week_mode = self._week_mode(report.at, cfg)
        shift = self._delta_shift(report.at, cfg)
        entries: list[tuple[EntryPlan, ManagedOrder]] = []
        for sleeve in TRADING_SLEEVES:
            for plan, option_chain in self._sleeve_plans(state, sleeve, shift, report):
                order = self._approved_order(account, plan, option_chain, state, cfg, report)
                if order is not None:
                    entries.append((plan, order))
        if not entries:
            return account
        state.account = account
        report.placed.extend(self._place(state, [o for _, o in entries], report))
        return state.account

    def _place(
        self, state: _Carried, orders: Sequence[ManagedOrder], report: StepReport, *, new_intents: bool = True
    ) -> list[ManagedOrder]:
        """Save the orders as SUBMITTING, place them, book what filled at once; the acknowledged orders.

        A new intent is saved BEFORE the broker hears of it: after a crash the store knows the ref, so the
        intent is reconciled, never placed twice. A newer version of a known intent (reprice, chase) may
        be written behind: reconciliation adopts it from the broker if memory is lost (`adopt_newer_version`)."""
        submitting = [transition(o, OrderState.SUBMITTING, report.at, "placing") for o in orders]
        # One audit record per commit (its orders listed): each record is a stored item, and items are cost.
        events = [AuditEvent("ORDERS_SUBMITTING", {"orders": [_order_details(o) for o in submitting]})]
        account = self._commit(state.account, submitting, events, state.unsaved, durable=new_intents)
        acknowledged = []
        for order in submitting:
            placed = self._broker.place_order(_linked(account), order.request)
            acknowledged.append(apply_broker_order(order, placed, report.at))
        state.update(acknowledged)
        booked = report.booked_executions
        account = self._book(account, state.orders, state.cfg, report)  # marketable orders fill at once
        details: dict[str, object] = {"orders": [_order_details(o) for o in acknowledged]}
        if report.booked_executions > booked:
            details["executions_booked"] = report.booked_executions - booked
        events = [AuditEvent("ORDERS_ACKNOWLEDGED", details)]
        state.account = self._commit(account, acknowledged, events, state.unsaved, durable=False)
        return acknowledged

    def _sleeve_plans(
        self, state: _Carried, sleeve: SleeveKind, shift: Decimal, report: StepReport
    ) -> Iterable[tuple[EntryPlan, OptionChain]]:
        account, cfg = state.account, state.cfg
        balance = account.sleeve(sleeve)
        if balance.cash_cents <= 0 or not self._window_open(sleeve, cfg, report.at):
            return []
        if sleeve_paused(account, sleeve, _day(report.at)):
            until = account.protocol.paused_until[sleeve]
            report.skipped[(sleeve, "*")] = f"{DenyReason.SLEEVE_PAUSED}: ATR L3, no entries before {until}"
            return []
        strategy = getattr(cfg, sleeve.value.lower())
        held = {i.ticker for i, q in balance.positions.items() if isinstance(i, Equity) and q > 0}
        tickers = sorted(set(strategy.tickers) | held)
        chains = {t: self._market.chain(t, report.at) for t in tickers if t in self._market.tickers()}
        week = _week_start(report.at)
        entered = frozenset(
            (t, right)
            for t in tickers
            for right in OptionRight
            if state.known(_entry_ref(account, sleeve, week, t, right))
        )
        book = SleeveBook(
            sleeve=sleeve,
            free_cash_cents=balance.cash_cents - balance.collateral_cents,
            buffer_cents=balance.buffer_cents,
            value_cents=balance.cash_cents,
            shares={i.ticker: q for i, q in balance.positions.items() if isinstance(i, Equity)},
            open_short_options={i: q for i, q in balance.positions.items() if isinstance(i, OptionContract)},
            entered=entered,
        )
        plan = plan_entries(sleeve, book, chains, report.at, shift, cfg)
        report.skipped.update(
            {(sleeve, ticker): f"{skip.code}: {skip.detail}" for ticker, skip in plan.skipped.items()}
        )
        return [(p, chains[p.contract.underlying]) for p in plan.plans]

    def _approved_order(
        self,
        account: Account,
        plan: EntryPlan,
        chain: OptionChain,
        state: _Carried,
        cfg: AllUseConfig,
        report: StepReport,
    ) -> ManagedOrder | None:
        contract = plan.contract
        ref = _entry_ref(account, plan.sleeve, _week_start(report.at), contract.underlying, contract.right)
        if state.known(ref):
            return None  # this week's entry for this ticker exists already: a re-run never sells twice
        if plan.decision is not EntryDecision.PLACE:
            report.awaiting_human.append(plan)
            self._alert(
                account,
                AlertType.TRADE_OPPORTUNITY,
                Priority.HIGH,
                "premium below floor",
                f"{contract.symbol}: {plan.alert_reason}",
                report.at,
            )
            return None
        quote = chain.find(contract)
        intent = OrderIntent(
            account.account_id,
            plan.sleeve,
            contract,
            plan.side,
            plan.quantity,
            True,
            plan.limit_price_cents,
            quote=quote,
        )
        strategy = getattr(cfg, plan.sleeve.value.lower())
        context = self._risk_context(
            account,
            plan.sleeve,
            contract.underlying,
            cfg,
            cash_required_cents=plan.cash_required_cents,
            delta_band=DeltaBand(min=plan.delta_band[0], max=plan.delta_band[1]),  # the band the strategy used
            premium_floor_pct=strategy.premium_floor_pct,
            at=report.at,
        )
        decision = check(intent, context)
        if not decision.allowed:
            report.denied.append((plan, decision))
            self._alert(
                account,
                AlertType.PROTOCOL_BREACH,
                Priority.MEDIUM,
                f"entry denied: {decision.reason}",
                f"{contract.symbol}: {decision.message}",
                report.at,
            )
            return None
        request = OrderRequest(ref, contract, plan.side, plan.quantity, OrderType.LIMIT, plan.limit_price_cents)
        reference = Quote(quote.bid_cents, quote.ask_cents) if quote else None
        return plan_order(account.account_id, plan.sleeve, request, reference_quote=reference)

    def _risk_context(
        self,
        account: Account,
        sleeve: SleeveKind,
        underlying: str,
        cfg: AllUseConfig,
        *,
        cash_required_cents: int,
        delta_band: DeltaBand | None,
        premium_floor_pct: Decimal,
        at: datetime,
    ) -> RiskContext:
        balance = account.sleeve(sleeve)
        shares = balance.quantity(Equity(underlying))
        covered = sum(
            -q * i.multiplier
            for i, q in balance.positions.items()
            if isinstance(i, OptionContract) and i.underlying == underlying and i.right is OptionRight.CALL and q < 0
        )
        return RiskContext(
            account_status=account.status,
            kill_switches=self.kill_switches,
            free_cash_cents=balance.cash_cents - balance.buffer_cents - balance.collateral_cents,
            buffer_cents=balance.buffer_cents,
            cash_required_cents=cash_required_cents,
            delta_band=delta_band,
            premium_floor_pct=premium_floor_pct,
            sleeve_paused=sleeve_paused(account, sleeve, _day(at)),
            tripped_breaker=None,  # a tripped breaker has already put the account in SAFE (see _protect)
            starlab=StarlabGrant.from_config(cfg),
            blacklist=frozenset(cfg.circuit_breakers.blacklist),
            risk=cfg.risk,
            uncovered_shares=max(shares - covered, 0),
            premium_floor_policy=cfg.hitl.premium_floor_policy,
        )

    def _marks(self, account: Account, at: datetime) -> dict[Instrument, int]:
        """marks_at, remembering this instant's marks: accounts of one fleet hold the same contracts."""
        if self._marks_at != at:
            self._marks_at, self._mark_memo = at, {}
        return marks_at(self._market, account, at, memo=self._mark_memo)

    def _delta_shift(self, now: datetime, cfg: AllUseConfig) -> Decimal:
        """The week mode's delta shift (A4): entries and rolls alike."""
        mode = self._week_mode(now, cfg)
        return delta_shift(mode, cfg.week_mode) if mode else Decimal(0)

    def _atr(self, ticker: str, today: date, period: int) -> float | None:
        """ATR of daily bars through the last session before today (A5: the day's ATR is known at the open);
        None when history is short (the protocol then falls back to a share of the price)."""
        key = (ticker, today, period)
        if key not in self._atrs:
            bars = self._market.daily_bars(ticker, through=today - timedelta(days=1))
            value = float(average_true_range(bars.high, bars.low, bars.close, period)[-1]) if len(bars) else math.nan
            self._atrs[key] = value if math.isfinite(value) and value > 0 else None
        return self._atrs[key]

    def _week_mode(self, now: datetime, cfg: AllUseConfig) -> WeekMode | None:
        last = self._last_mode
        if last is not None and last[0] == now and last[1] is cfg.week_mode:
            return last[2]
        today = now.astimezone(NEW_YORK).date()
        key = (today, cfg.week_mode)
        if key not in self._modes:
            self._modes[key] = index_week_mode(self._market, cfg.week_mode, _week_start(now), through=today)
        self._last_mode = (now, cfg.week_mode, self._modes[key])
        return self._modes[key]

    def _window_open(self, sleeve: SleeveKind, cfg: AllUseConfig, now: datetime) -> bool:
        last = self._last_windows
        if last is None or last[0] != now or last[1] is not cfg:
            last = self._last_windows = (now, cfg, {s: entry_window_open(s, cfg, now) for s in TRADING_SLEEVES})
        return last[2][sleeve]

    # --- plumbing -------------------------------------------------------------------------------------
    def _commit(
        self,
        account: Account,
        orders: Iterable[ManagedOrder],
        events: Sequence[AuditEvent],
        unsaved: _Unsaved | None = None,
        *,
        durable: bool = True,
        changed: bool = False,
    ) -> Account:
        """Write the account with these orders and events (one transaction). With `durable=False` in a
        carried run the write waits for the account's next durable one (see `_Unsaved`). `changed`: the
        account itself changed (the protocol's memory) even without orders or events."""
        latest = {o.intent_id: o for o in orders}
        if unsaved is not None and self._carry and not durable:
            unsaved.orders.update(latest)
            unsaved.events.extend(events)
            unsaved.account_changed = unsaved.account_changed or changed
            return account
        if unsaved is not None:  # what waited goes first; a newer state of the same order wins
            latest = {**unsaved.orders, **latest}
            events = [*unsaved.events, *events]
            changed = changed or unsaved.account_changed
        if not latest and not events and not changed:
            return account  # bookings always come with an event, so nothing changed
        records, head = chain(account.account_id, account.audit_head, events, actor="protocol", at=self._clock.now())
        committed = self._store.commit(
            AccountChange(account=replace(account, audit_head=head), audit=records, orders=list(latest.values()))
        )
        if unsaved is not None:
            unsaved.orders.clear()
            unsaved.events.clear()
            unsaved.account_changed = False
        return committed

    def _booking_events(self, report: StepReport) -> list[AuditEvent]:
        if not (report.booked_executions or report.booked_settlements):
            return []
        details = {"executions": report.booked_executions, "settlements": report.booked_settlements}
        return [AuditEvent("BROKER_ACTIVITY_BOOKED", details)]

    def _alert(
        self, account: Account, kind: AlertType, priority: Priority, title: str, body: str, at: datetime
    ) -> None:
        alert = Alert(kind, priority, account.account_id, title, body, (), f"{account.account_id}:{title}:{body}", at)
        self._alerts.raise_alert(alert, trading_day=self._calendar.is_session(at.astimezone(NEW_YORK).date()))


def run_fleet_step(cycle: TradingCycle, account_ids: Sequence[str]) -> dict[str, StepReport | str]:
    """Step every account on its own: an error in one is reported for that account, the others go on."""
    outcomes: dict[str, StepReport | str] = {}
    for account_id in account_ids:
        try:
            outcomes[account_id] = cycle.step(account_id)
        except AllUseError as err:
            outcomes[account_id] = f"{type(err).__name__}: {err}"
        except Exception as err:
            outcomes[account_id] = f"unexpected {type(err).__name__}: {err}"
    return outcomes


def index_week_mode(market: MarketData, config: WeekModeConfig, week_start: date, *, through: date) -> WeekMode | None:
    """The index's mode over the week before `week_start`, from daily bars through `through`: Monday's
    guess for `week_start` and the confirmation of the week before are this one reading (A4). None
    without the index or enough history."""
    if config.index_ticker not in market.tickers():
        return None
    bars = market.daily_bars(config.index_ticker, through=through)
    measures = prior_week_measures(bars.dates, bars.close, week_start, config)
    return classify_week_mode(*measures, config) if measures else None


def marks_at(
    market: MarketData, account: Account, at: datetime, *, memo: dict[Instrument, int] | None = None
) -> dict[Instrument, int]:
    """Marks of everything the account holds: shares at the price, options at mid, else intrinsic.
    `memo` holds marks already read at `at` (the caller's to keep to one instant)."""
    held = {i for b in account.sleeves.values() for i, q in b.positions.items() if q}
    memo = {} if memo is None else memo
    marks: dict[Instrument, int] = {}
    for instrument in held:
        if instrument in memo:
            marks[instrument] = memo[instrument]
            continue
        if isinstance(instrument, Equity):
            marks[instrument] = cents_of_price(market.price(instrument.ticker, at))
        elif isinstance(instrument, OptionContract):
            chain = market.chain(instrument.underlying, at)
            row = chain.row_of(instrument)
            mid = (int(chain.bid_cents[row]) + int(chain.ask_cents[row])) // 2 if row is not None else None
            spot = cents_of_price(market.price(instrument.underlying, at))
            marks[instrument] = option_mark_cents(instrument, mid, spot)
        memo[instrument] = marks[instrument]
    return marks


def _closing(
    sleeve: SleeveKind, before: SleeveBalance, after: SleeveBalance, instrument: Instrument
) -> list[tuple[str, int, bool]]:
    pnl = closed_trade_pnl(before, after, instrument)
    return [] if pnl is None else [(watch_key(sleeve, instrument), pnl, after.quantity(instrument) == 0)]


def _with_gains(account: Account, year: int, events: Sequence[TaxableEvent]) -> Account:
    if not events:
        return account
    short, long = gains_by_term(events)
    before = account.tax_gains_cents.get(year, (0, 0))
    return replace(account, tax_gains_cents={**account.tax_gains_cents, year: (before[0] + short, before[1] + long)})


def _is_exit(order: ManagedOrder) -> bool:
    return intent_purpose(order.intent_id) in EXIT_PURPOSES


def _entry_ref(account: Account, sleeve: SleeveKind, week: date, underlying: str, right: OptionRight) -> str:
    """The intent id of a sleeve's entry for one ticker and right in one week."""
    return _intent_id(account.account_id, sleeve, week, "OPEN", underlying, right.value)


_intent_id = functools.lru_cache(maxsize=65536)(intent_id)  # a step asks for the same entry ids often


def _day(at: datetime) -> date:
    return at.astimezone(NEW_YORK).date()


def _change_details(change: LevelChange) -> dict[str, object]:
    return {
        "position": change.position_id,
        "from": int(change.from_level),
        "to": int(change.to_level),
        "atr_multiple": f"{change.atr_multiple:.2f}",
        "action": change.action.action,
        "automatic": change.action.automatic,
    }


def _linked(account: Account) -> str:
    if account.brokerage_id is None:
        raise Conflict(f"account {account.account_id} has no brokerage account", field="brokerage_id")
    return account.brokerage_id


def _week_start(at: datetime) -> date:
    day = at.astimezone(NEW_YORK).date()
    return day - timedelta(days=day.weekday())


def _week_details(record: WeekRecord) -> dict[str, object]:
    return {
        "sleeve": record.sleeve.value,
        "week_start": record.week_start.isoformat(),
        "mode_guessed": record.mode_guessed.value if record.mode_guessed else None,
        "mode_confirmed": record.mode_confirmed.value if record.mode_confirmed else None,
        "type_at_close": record.type_at_close.value if record.type_at_close else None,
    }


def _order_details(order: ManagedOrder) -> dict[str, object]:
    request = order.request
    return {
        "intent_id": order.intent_id,
        "sleeve": order.sleeve.value,
        "instrument": request.instrument.symbol,
        "side": request.side.value,
        "quantity": request.quantity,
        "limit_price_cents": request.limit_price_cents,
        "state": order.state.value,
        "broker_order_id": order.broker_order_id,
    }
