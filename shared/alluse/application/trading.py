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
   the risk engine. Every new intent is saved as SUBMITTING, then placed: a crash after saving is
   recovered by step 1 of the next run, and the deterministic intent id means the broker never holds two
   orders for one intent (an entry's reprice is written behind; see `_place`).

Between moments, `work` does steps 1-3 only (and watches what filled): orders are worked at their own
cadence (A8), scans at theirs (A5).

Accounts never wait on each other: a fleet runs this per account (see `run_fleet_step`).
With `carry_state`, a cycle keeps each account's record, orders and configuration between its steps
(one run = one cycle) and writes behind: only SUBMITTING of a new intent or an exit's replacement and a
few protocol facts (an L3 pause, SAFE and its release, a reinvestment done) are written at once (see
`Unsaved`). Any error drops what was carried (but the week's record) and the next step reads afresh;
`release` writes what waited and hands accounts to another use case (the lifecycle watchdog) or ends the
run. Configuration changes take effect at the next run.

The cycle keeps the step's order and its writes. Each phase is a module of its own (`order_working`,
`protection`, `liquidation`, `reinvestment`, `entries`), built with the market and what it needs of the
cycle: its `StepDesk` (place, cancel, save, alert) and its `MarketReadings` (see `step_context`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from alluse.application.alerting import AlertDesk
from alluse.application.broker_port import Broker
from alluse.application.configuration import ConfigurationService
from alluse.application.entries import TRADING_SLEEVES, Entries
from alluse.application.liquidation import Liquidation
from alluse.application.market_ports import MarketData, TradingCalendar
from alluse.application.order_working import OrderWorking
from alluse.application.ports import AccountChange, AccountStore, Clock
from alluse.application.protection import Protection
from alluse.application.reinvestment import Reinvestment
from alluse.application.step_context import Carried, MarketReadings, StepDesk, StepReport, Unsaved, day_of, week_of
from alluse.domain.accounts import Account, AccountStatus, SleeveBalance
from alluse.domain.alerts import Alert, AlertType, Priority
from alluse.domain.audit import AuditEvent, chain
from alluse.domain.brokerage import BrokerOrder, Execution, Settlement, SettlementKind
from alluse.domain.config import AllUseConfig, WeekModeConfig, effective_config
from alluse.domain.errors import AllUseError, Conflict
from alluse.domain.indicators import average_true_range
from alluse.domain.instruments import Equity, Instrument
from alluse.domain.ledger import book_execution, book_settlement, option_mark_cents
from alluse.domain.market import NEW_YORK
from alluse.domain.money import cents_of_price
from alluse.domain.orders import (
    AlertMismatch,
    AlertOrphan,
    ManagedOrder,
    OrderState,
    Resubmit,
    apply_broker_order,
    reconcile,
    record_resubmission,
    transition,
)
from alluse.domain.protection import closed_trade_pnl, record_closings, watch_key
from alluse.domain.risk import KillSwitches
from alluse.domain.sleeves import SleeveKind
from alluse.domain.strategies import entry_window_open
from alluse.domain.tax import TaxableEvent, book_execution_lots, book_settlement_lots, gains_by_term
from alluse.domain.week import WeekMode, WeekRecord, classify_week_mode, delta_shift, prior_week_measures

__all__ = [
    "TRADING_SLEEVES",
    "WEEK_CLOSED",
    "StepReport",
    "TradingCycle",
    "index_week_mode",
    "marks_at",
    "run_fleet_step",
]

_TRADABLE = (AccountStatus.ACTIVE, AccountStatus.SAFE)
WEEK_CLOSED = "WEEK_CLOSED"
_UNDERIVABLE = frozenset({WEEK_CLOSED})  # events no broker record gives back: never dropped unwritten


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
        self._carried: dict[str, Carried] = {}
        self._modes: dict[tuple[date, WeekModeConfig], WeekMode | None] = {}  # one index read per day
        self._atrs: dict[tuple[str, date, int], float | None] = {}  # one ATR per ticker per day
        self._marks_at: datetime | None = None
        self._mark_memo: dict[str, int] = {}
        # Events the broker cannot give back (the week's record) left unwritten by a failed step: they
        # go with the account's next write.
        self._owed: dict[str, list[AuditEvent]] = {}
        self._global_layer: Mapping[str, object] | None = None
        self._configs: dict[str, AllUseConfig] = {}  # effective configuration by account layer (carried run)
        # Answers for the current instant: every account of a fleet asks them at the same one.
        self._last_mode: tuple[datetime, WeekModeConfig, WeekMode | None] | None = None
        self._last_windows: tuple[datetime, AllUseConfig, dict[SleeveKind, bool]] | None = None
        desk = StepDesk(
            place=self._place,
            cancel=self._cancel,
            save=self._save,
            alert=self._alert,
            kill_switches=lambda: self.kill_switches,
        )
        readings = MarketReadings(
            week_mode=self._week_mode,
            delta_shift=self._delta_shift,
            window_open=self._window_open,
            atr=self._atr,
            marks=self._marks,
        )
        # The phases, each given what it uses; `_advance` calls them in the step's order.
        self._order_working = OrderWorking(market, desk)
        self._protection = Protection(market, desk, readings)
        self._liquidation = Liquidation(market, desk)
        self._reinvestment = Reinvestment(market, calendar, desk)
        self._entries = Entries(market, desk, readings)

    def step(self, account_id: str) -> StepReport:
        """One moment of the weekly routine (see the module notes)."""
        return self._on(account_id, self._advance)

    def work(self, account_id: str) -> StepReport:
        """Between the run's moments: reconcile and book, then work the resting orders (A8) and watch
        what filled from the underlying at its fill (A5). The scan, the breakers and entries keep their
        own cadence (A5: every `atr_protocol.scan_interval_minutes`), so they wait for the next step."""
        return self._on(account_id, self._work)

    def _on(self, account_id: str, advance: Callable[[Carried, StepReport], None]) -> StepReport:
        now = self._clock.now()
        report = StepReport(account_id, now)
        carried = self._carried.pop(account_id, None)  # popped: an error below leaves nothing stale behind
        account = carried.account if carried else self._store.get(account_id)
        report.account = account
        if account.status not in _TRADABLE or account.brokerage_id is None or account.lifecycle.funding_from:
            if self._carry:  # remembered, so that a closed or waiting account costs no read per step
                self._carried[account_id] = carried or Carried(
                    account, {}, self._cfg_of(account), self._unsaved_for(account_id)
                )
            return report  # a fork's child trades once its funding is confirmed (A9)
        state = carried or self._read(account)
        try:
            advance(state, report)
        except Exception:
            self._hand_on(account_id, state.unsaved)  # the rest is dropped: the next step derives it again
            raise
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

    def _read(self, account: Account) -> Carried:
        orders = {o.intent_id: o for o in self._store.orders(account.account_id)}
        return Carried(account, orders, self._cfg_of(account), self._unsaved_for(account.account_id))

    def _unsaved_for(self, account_id: str) -> Unsaved:
        return Unsaved(events=self._owed.pop(account_id, []))

    def _advance(self, state: Carried, report: StepReport) -> None:
        self._sync(state, report)
        if self._calendar.is_open(report.at):
            self._order_working.work(state, report)
            self._protection.protect(state, report)
            if state.account.lifecycle.merging_into is not None:
                self._liquidation.liquidate(state, report)  # A10: no new risk, everything sold before the merge
            elif state.account.status is AccountStatus.ACTIVE:
                self._reinvestment.reinvest(state, report)
                self._entries.enter(state, report)
            self._protection.watch_new(state, report)
        report.working = any(o.state.is_worked for o in state.live_orders())

    def _work(self, state: Carried, report: StepReport) -> None:
        self._sync(state, report)
        if self._calendar.is_open(report.at):
            self._order_working.work(state, report)
            self._protection.watch_new(state, report)
        report.working = any(o.state.is_worked for o in state.live_orders())

    def _sync(self, state: Carried, report: StepReport) -> None:
        """Steps 1 and 2: the broker's news adopted and booked (written behind)."""
        changed = self._reconcile(state, report)
        account = self._book(state.account, state.orders, state.cfg, report)
        events = self._booking_events(report)
        state.account = self._commit(account, changed.values(), events, state.unsaved, durable=False)

    def record_week(self, account_id: str, records: Sequence[WeekRecord]) -> None:
        """Store the judged week (mode guessed and confirmed, type code per sleeve) in the account's chain."""
        carried = self._carried.pop(account_id, None)
        event = AuditEvent(WEEK_CLOSED, {"sleeves": [_week_details(r) for r in records]})
        if carried is None:  # nothing carried to write it with: now
            unsaved = self._unsaved_for(account_id)
            unsaved.events.append(event)
            self._write_owed(account_id, unsaved)
            return
        # Carried: it goes with the account's next write (`_owed` keeps it if a step fails before then).
        account = self._commit(carried.account, [], [event], carried.unsaved, durable=False)
        self._carried[account_id] = replace(carried, account=account)

    def release(self, account_ids: Iterable[str]) -> None:
        """Write what is carried for these accounts and forget it, so that another use case (the
        lifecycle watchdog) works on the stored state, or the run ends; the next step reads them afresh."""
        for account_id in account_ids:
            carried = self._carried.pop(account_id, None)
            if carried is not None and carried.unsaved.pending:
                self._commit(carried.account, [], [], carried.unsaved)
            elif carried is None and account_id in self._owed:
                self._write_owed(account_id, self._unsaved_for(account_id))

    def _write_owed(self, account_id: str, unsaved: Unsaved) -> None:
        """Write what an account not carried owes, on a fresh read; still owed if the write fails."""
        try:
            self._commit(self._store.get(account_id), [], [], unsaved)
        except Exception:
            self._hand_on(account_id, unsaved)
            raise

    def _hand_on(self, account_id: str, unsaved: Unsaved) -> None:
        """Keep what the broker cannot give back (the week's record) for the account's next read."""
        owed = [e for e in unsaved.events if e.action in _UNDERIVABLE]
        if owed:
            self._owed[account_id] = owed

    def report_failure(self, account_id: str, why: str) -> None:
        """An account whose step raised: forget what was carried for it, except what the broker cannot
        give back, and alert (the fleet goes on)."""
        carried = self._carried.pop(account_id, None)
        if carried is not None:
            self._hand_on(account_id, carried.unsaved)
        now = self._clock.now()
        title = "account step failed"
        alert = Alert(
            AlertType.TECHNICAL_ALERT, Priority.HIGH, account_id, title, why, (), f"{account_id}:{title}", now
        )
        self._alerts.raise_alert(alert, trading_day=self._calendar.is_session(now.astimezone(NEW_YORK).date()))

    # --- 1. reconcile ------------------------------------------------------------------------------
    def _reconcile(self, state: Carried, report: StepReport) -> dict[str, ManagedOrder]:
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
        brokers = [*open_at_broker, *finished]
        result = reconcile([*live, *stale], brokers, executions, report.at, cfg.orders, history=orders)
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

    def _newer_versions_filled(self, state: Carried, brokerage_id: str, listed: set[str]) -> list[BrokerOrder]:
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
        on = day_of(execution.at)
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
        on = day_of(settlement.at)
        try:
            lots, events = book_settlement_lots(before.tax_lots, holders, settlement, on, cfg=cfg.tax)
        except AllUseError as err:
            return self._tax_problem(after, f"settlement of {settlement.instrument.symbol}: {err}", report)
        return _with_gains(replace(after, tax_lots=lots), on.year, events)

    def _tax_problem(self, account: Account, why: str, report: StepReport) -> Account:
        report.problems.append(f"tax lots: {why}")
        self._alert(account, AlertType.TECHNICAL_ALERT, Priority.HIGH, "tax lots out of step", why, report.at)
        return account

    # --- every phase's orders: placed and cancelled here ---------------------------------------------------
    def _place(
        self, state: Carried, orders: Sequence[ManagedOrder], report: StepReport, *, write_first: bool = True
    ) -> list[ManagedOrder]:
        """Save the orders as SUBMITTING, place them, book what filled at once; the acknowledged orders.

        `write_first`: the orders are saved BEFORE the broker hears of them. A new intent must be: after a
        crash the store knows the ref, so the intent is reconciled, never placed twice; so must an exit's
        replacement (lost, it would leave the risk on). An entry's reprice may be written behind
        (`write_first=False`): reconciliation adopts it from the broker if memory is lost
        (`adopt_newer_version`)."""
        submitting = [transition(o, OrderState.SUBMITTING, report.at, "placing") for o in orders]
        # One audit record per commit (its orders listed): each record is a stored item, and items are cost.
        events = [AuditEvent("ORDERS_SUBMITTING", {"orders": [_order_details(o) for o in submitting]})]
        account = self._commit(state.account, submitting, events, state.unsaved, durable=write_first)
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

    def _cancel(self, state: Carried, order: ManagedOrder, why: str, report: StepReport) -> ManagedOrder:
        """Ask the broker to cancel and adopt its answer (a fill may have won the race); not durable: the
        broker's record under the ref tells it again if this memory is lost."""
        asked = transition(order, OrderState.CANCEL_REQUESTED, report.at, why)
        answer = self._broker.cancel_order(_linked(state.account), order.broker_order_id or "")
        adopted = apply_broker_order(asked, answer, report.at)
        state.update([adopted])
        event = AuditEvent("ORDER_CANCEL_REQUESTED", {"intent_id": order.intent_id, "why": why})
        state.account = self._commit(state.account, [adopted], [event], state.unsaved, durable=False)
        return adopted

    # --- readings the phases share, remembered per instant or day for the fleet ---------------------------
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
            self._modes[key] = index_week_mode(self._market, cfg.week_mode, week_of(now), through=today)
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
        unsaved: Unsaved | None = None,
        *,
        durable: bool = True,
        changed: bool = False,
    ) -> Account:
        """Write the account with these orders and events (one transaction). With `durable=False` in a
        carried run the write waits for the account's next durable one (see `Unsaved`). `changed`: the
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

    def _save(
        self, state: Carried, account: Account, events: list[AuditEvent], *, durable: bool = True, changed: bool = False
    ) -> None:
        """A phase's changed account and its events, written with what waited (see `_commit`)."""
        state.account = self._commit(account, [], events, state.unsaved, durable=durable, changed=changed)

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
    market: MarketData, account: Account, at: datetime, *, memo: dict[str, int] | None = None
) -> dict[Instrument, int]:
    """Marks of everything the account holds: shares at the price, options at mid, else intrinsic.
    `memo` holds marks already read at `at`, by symbol (the caller's to keep to one instant; accounts
    hold equal contracts as distinct objects, and a symbol compares cheaper than a contract)."""
    memo = {} if memo is None else memo
    marks: dict[Instrument, int] = {}
    for balance in account.sleeves.values():
        for instrument, quantity in balance.positions.items():
            if not quantity or instrument in marks:
                continue
            mark = memo.get(instrument.symbol)
            if mark is None:
                mark = memo[instrument.symbol] = _mark(market, instrument, at)
            marks[instrument] = mark
    return marks


def _mark(market: MarketData, instrument: Instrument, at: datetime) -> int:
    if isinstance(instrument, Equity):
        return cents_of_price(market.price(instrument.ticker, at))
    chain = market.chain(instrument.underlying, at)
    row = chain.row_of(instrument)
    mid = (int(chain.bid_cents[row]) + int(chain.ask_cents[row])) // 2 if row is not None else None
    return option_mark_cents(instrument, mid, cents_of_price(market.price(instrument.underlying, at)))


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


def _linked(account: Account) -> str:
    if account.brokerage_id is None:
        raise Conflict(f"account {account.account_id} has no brokerage account", field="brokerage_id")
    return account.brokerage_id


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
