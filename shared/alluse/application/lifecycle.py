"""The lifecycle watchdog (A9, A10): forks children out of surplus and merges mature forks back, each
step of each saga idempotent so that a re-run, or a crash anywhere, never forks twice, merges twice or
loses the money in flight.

A fork:
1. decides on the parent's marked sleeve equity (`lifecycle.decide_fork`);
2. earmarks the surplus in the parent and creates the child (PENDING_BROKER_LINK, funding pending) in ONE
   store transaction;
3. waits until the child has a brokerage account: an operator links it (on AWS), or `link` does (the
   local runtime links a new paper account); the store keeps one brokerage account per main account;
4. moves the cash at the broker (transfers with a ref: a retry is not a second transfer);
5. confirms: the parent's earmark ends and the child's money becomes its own, in ONE transaction. Only
   then does the child trade.

A merge:
1. decides on the child's marked equity (`lifecycle.decide_merge`) and marks it merging: no new risk;
2. the trading step liquidates it (see `TradingCycle`); the watchdog waits until it is flat;
3. moves the cash at the broker (transfers with a ref);
4. closes the child as MERGED and books the cash in the target's Com-Acc, in ONE transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Protocol

from alluse.application.alerting import AlertDesk
from alluse.application.configuration import ConfigurationService
from alluse.application.market_ports import MarketData, TradingCalendar
from alluse.application.ports import AccountChange, AccountStore, Clock
from alluse.application.trading import marks_at
from alluse.domain import lifecycle as rules
from alluse.domain.accounts import Account, AccountStatus, CashMovement, link_broker
from alluse.domain.alerts import Alert, AlertType, Priority
from alluse.domain.audit import AuditEvent, chain
from alluse.domain.brokerage import BrokerAccountState
from alluse.domain.errors import AllUseError, Conflict
from alluse.domain.ledger import sleeve_equity_cents
from alluse.domain.market import NEW_YORK
from alluse.domain.money import format_cents

ACTOR = "lifecycle-watchdog"


class FundsBroker(Protocol):
    """What the watchdog needs of the broker: brokerage accounts and cash transfers between them."""

    def has_account(self, brokerage_id: str) -> bool: ...

    def open_account(self, brokerage_id: str, cash_cents: int) -> BrokerAccountState: ...

    def transfer(self, brokerage_id: str, cash_cents: int, *, ref: str | None = None) -> BrokerAccountState: ...


@dataclass
class LifecycleReport:
    forks: list[rules.ForkDecision] = field(default_factory=list)  # earmarked and child created
    funded: list[str] = field(default_factory=list)  # children whose transfer was confirmed
    merges_started: list[rules.MergeDecision] = field(default_factory=list)
    merged: list[tuple[str, str, int]] = field(default_factory=list)  # (child, into, cents)
    waiting: list[str] = field(default_factory=list)  # sagas that wait (why)
    created: list[Account] = field(default_factory=list)  # new children, as stored


class LifecycleWatchdog:
    def __init__(
        self,
        store: AccountStore,
        broker: FundsBroker,
        market: MarketData,
        calendar: TradingCalendar,
        clock: Clock,
        alerts: AlertDesk,
        *,
        link: Callable[[Account], str] | None = None,
    ) -> None:
        self._store = store
        self._broker = broker
        self._market = market
        self._calendar = calendar
        self._clock = clock
        self._alerts = alerts
        self._configuration = ConfigurationService(store, clock)
        self._link = link  # the local stand-in for the operator who opens a brokerage account

    def run(self, *, evaluate: bool) -> LifecycleReport:
        """Carry every saga in flight one step further; with `evaluate`, also decide new forks and merges."""
        report = LifecycleReport()
        accounts = {a.account_id: a for a in self._store.list_accounts()}
        if evaluate:
            for account_id in sorted(accounts):
                self._guarded(account_id, report, partial(self._consider, accounts, account_id, report))
        for account_id in sorted(accounts):
            account = accounts[account_id]
            if account.lifecycle.funding_from is not None:
                self._guarded(account_id, report, partial(self._fund, accounts, account, report))
            elif account.lifecycle.merging_into is not None and account.status is not AccountStatus.MERGED:
                self._guarded(account_id, report, partial(self._merge, accounts, account, report))
        return report

    def _guarded(self, account_id: str, report: LifecycleReport, work: Callable[[], None]) -> None:
        """One account's decision or saga step: a refusal waits, a bug is told; the others go on and it is
        tried again at the next run."""
        try:
            work()
        except AllUseError as err:
            report.waiting.append(f"{account_id}: {err}")
        except Exception as err:
            why = f"unexpected {type(err).__name__}: {err}"
            report.waiting.append(f"{account_id}: {why}")
            self._alert(account_id, "lifecycle saga failed", why, priority=Priority.HIGH)

    # --- decisions ---------------------------------------------------------------------------------
    def _consider(self, accounts: dict[str, Account], account_id: str, report: LifecycleReport) -> None:
        account = accounts[account_id]
        if account.status not in (AccountStatus.ACTIVE, AccountStatus.SAFE):
            return
        cfg = self._configuration.effective_for_known(account_id)
        marks = marks_at(self._market, account, self._clock.now())
        equity = {k: sleeve_equity_cents(b, marks) for k, b in account.sleeves.items()}
        fork = rules.decide_fork(account, equity, cfg)
        if fork is not None:
            self._fork(accounts, account, fork, report)
            return
        merge = rules.decide_merge(account, sum(equity.values()), accounts, cfg)
        if merge is not None:
            merging = rules.start_merge(account, merge)
            details = {"into": merge.into_id, "equity_cents": merge.equity_cents, "threshold": merge.threshold_cents}
            accounts[account_id] = self._commit([(merging, [AuditEvent("MERGE_STARTED", details)], ())])[0]
            report.merges_started.append(merge)
            body = (
                f"equity {format_cents(merge.equity_cents)}: liquidating, then merging into {merge.into_id}'s Com-Acc"
            )
            self._alert(account_id, "merge started", body)

    def _fork(
        self, accounts: dict[str, Account], parent: Account, fork: rules.ForkDecision, report: LifecycleReport
    ) -> None:
        cfg = self._configuration.effective_for_known(parent.account_id)
        earmarked = rules.earmark(parent, fork)
        child, funding = rules.open_child(parent, fork, buffer_pct=cfg.allocation.cash_buffer_pct, now=self._now())
        details = {
            "child": fork.child_id,
            "sleeve": fork.sleeve.value,
            "amount_cents": fork.amount_cents,
            "threshold_cents": fork.threshold_cents,
        }
        created = {"parent_id": parent.account_id, "lineage_id": child.lineage_id, "amount_cents": fork.amount_cents}
        parent_after, child_after = self._commit(
            [
                (earmarked, [AuditEvent("FORK_EARMARKED", details)], ()),
                (child, [AuditEvent("ACCOUNT_CREATED", created), _funded_event(funding)], (funding,)),
            ]
        )
        accounts[parent.account_id], accounts[child.account_id] = parent_after, child_after
        report.forks.append(fork)
        report.created.append(child_after)
        body = (
            f"{fork.sleeve.label} post-tax surplus {format_cents(fork.surplus_cents)} ≥ "
            f"{format_cents(fork.threshold_cents)}: child {fork.child_id} waits for its brokerage account"
        )
        self._alert(parent.account_id, "fork", body)

    # --- sagas -------------------------------------------------------------------------------------
    def _fund(self, accounts: dict[str, Account], child: Account, report: LifecycleReport) -> None:
        parent = accounts[child.lifecycle.funding_from or ""]
        if child.brokerage_id is None:
            if self._link is None:
                report.waiting.append(f"{child.account_id}: waits for an operator to link a brokerage account")
                self._alert(child.account_id, "link a brokerage account", "the fork is funded once it is linked")
                return
            child = self._linked(child, self._link(child))
            accounts[child.account_id] = child
        amount = parent.lifecycle.earmarks[child.account_id]
        ref = f"FORK-{child.account_id}"
        self._broker.transfer(_brokerage(parent), -amount, ref=ref)
        self._broker.transfer(_brokerage(child), amount, ref=ref)
        parent_after, child_after = rules.confirm_fork(parent, child)
        details = {"child": child.account_id, "amount_cents": amount, "transfer_ref": ref}
        parent_after, child_after = self._commit(
            [
                (parent_after, [AuditEvent("FORK_FUNDED", details)], ()),
                (child_after, [AuditEvent("FORK_FUNDED", {**details, "parent": parent.account_id})], ()),
            ]
        )
        accounts[parent.account_id], accounts[child.account_id] = parent_after, child_after
        report.funded.append(child.account_id)
        self._alert(child.account_id, "fork funded", f"{format_cents(amount)} from {parent.account_id}; trading starts")

    def _linked(self, child: Account, brokerage_id: str) -> Account:
        """Link the child to a new brokerage account (the store refuses one already in use, A1)."""
        cfg = self._configuration.effective_for_known(child.account_id)
        if not self._broker.has_account(brokerage_id):
            self._broker.open_account(brokerage_id, 0)
        linked = link_broker(child, brokerage_id, pattern=cfg.account.brokerage_id_pattern)
        events = [AuditEvent("BROKER_LINKED", {"brokerage_id": brokerage_id})]
        return self._commit([(linked, events, ())], claims={child.account_id: brokerage_id})[0]

    def _merge(self, accounts: dict[str, Account], child: Account, report: LifecycleReport) -> None:
        if not rules.is_flat(child) or any(o.state.may_be_live for o in self._store.orders(child.account_id)):
            report.waiting.append(f"{child.account_id}: liquidating before the merge")
            return
        target = accounts.get(child.lifecycle.merging_into or "")
        if target is None or target.status not in (AccountStatus.ACTIVE, AccountStatus.SAFE):
            target = self._retarget(accounts, child, report)  # A10: the nearest ancestor that still trades
            if target is None:
                return
            child = accounts[child.account_id]
        amount = child.cash_cents
        ref = f"MERGE-{child.account_id}"
        if amount > 0:
            self._broker.transfer(_brokerage(child), -amount, ref=ref)
            self._broker.transfer(_brokerage(target), amount, ref=ref)
        cfg = self._configuration.effective_for_known(target.account_id)
        merged = rules.complete_merge_out(child)
        received = rules.receive_merge(target, merged, buffer_pct=cfg.allocation.cash_buffer_pct)
        movement = rules.merge_movement(target, merged, self._now())
        received = replace(received, movements=received.movements + 1)
        details = {"child": child.account_id, "into": target.account_id, "amount_cents": amount, "transfer_ref": ref}
        merged_after, target_after = self._commit(
            [
                (merged, [AuditEvent("MERGED", details)], ()),
                (received, [AuditEvent("MERGE_RECEIVED", details)], (movement,)),
            ]
        )
        accounts[child.account_id], accounts[target.account_id] = merged_after, target_after
        report.merged.append((child.account_id, target.account_id, amount))
        self._alert(target.account_id, "merge", f"{child.account_id} merged: {format_cents(amount)} into Com-Acc")

    def _retarget(self, accounts: dict[str, Account], child: Account, report: LifecycleReport) -> Account | None:
        """The merge's target stopped trading (merged, closed, halted) before the child was flat: the
        nearest ancestor that still trades receives instead; with none, the merge waits and a human is told."""
        gone = child.lifecycle.merging_into
        into = rules.merge_target(child, accounts)
        if into is None:
            why = f"{gone} no longer trades and no ancestor does: the merge waits"
            report.waiting.append(f"{child.account_id}: {why}")
            self._alert(child.account_id, "merge has no target", why)
            return None
        moved = replace(child, lifecycle=replace(child.lifecycle, merging_into=into))
        event = AuditEvent("MERGE_RETARGETED", {"from": gone, "into": into})
        accounts[child.account_id] = self._commit([(moved, [event], ())])[0]
        return accounts[into]

    # --- plumbing ----------------------------------------------------------------------------------
    def _commit(
        self,
        parts: Sequence[tuple[Account, Sequence[AuditEvent], Sequence[CashMovement]]],
        *,
        claims: Mapping[str, str] | None = None,
    ) -> list[Account]:
        changes = []
        for account, events, movements in parts:
            records, head = chain(account.account_id, account.audit_head, events, actor=ACTOR, at=self._now())
            changes.append(
                AccountChange(
                    account=replace(account, audit_head=head),
                    audit=records,
                    movements=movements,
                    claim_brokerage_id=(claims or {}).get(account.account_id),
                )
            )
        return self._store.commit_together(changes)

    def _alert(self, account_id: str, title: str, body: str, *, priority: Priority = Priority.MEDIUM) -> None:
        now = self._now()
        alert = Alert(AlertType.ACCOUNT_MANAGEMENT, priority, account_id, title, body, (), f"{account_id}:{title}", now)
        self._alerts.raise_alert(alert, trading_day=self._calendar.is_session(now.astimezone(NEW_YORK).date()))

    def _now(self) -> datetime:
        return self._clock.now()


def _brokerage(account: Account) -> str:
    if account.brokerage_id is None:
        raise Conflict(f"account {account.account_id} has no brokerage account", field="brokerage_id")
    return account.brokerage_id


def _funded_event(movement: CashMovement) -> AuditEvent:
    return AuditEvent(
        "ACCOUNT_FUNDED",
        {
            "movement_id": movement.movement_id,
            "amount_cents": movement.amount_cents,
            "by_sleeve_cents": {k.value: v for k, v in movement.by_sleeve.items()},
            "reason": "fork of surplus",
        },
    )
