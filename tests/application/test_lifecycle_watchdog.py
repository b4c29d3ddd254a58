"""The lifecycle watchdog (A9, A10) on the embedded world: the real store on moto, the paper broker.

Most worlds hold cash only (a `FakeMarket` that no one trades on, a `FakeCalendar`): the parent
ACC-00001 (DU5000000) starts with $500,000 and its Gen-Acc gains $100,000, booked in the sleeve and
paid into the brokerage account, so its post-tax surplus is $70,000, over the default $50,000 rule,
while the $30,000 of estimated tax it keeps back is not. Its child ACC-00001-F1 gets DU7000001.

Crashes are injected by wrapping the store (`commit_together`) and the broker (`open_account`,
`transfer`) and the linker: every side effect of a saga is logged in order, and the one chosen dies
(`SystemExit`, which the watchdog does not catch) just before or just after it happens. The watchdog is
then run again on the same store and broker, as a restart would.

The end-to-end test runs on the simulated market, so that the child really sells puts and buys them back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.local.notifier import FileNotifier
from alluse.adapters.paper.broker import PaperBroker
from alluse.adapters.sim.market import SimulatedMarket
from alluse.application.accounts import AccountService
from alluse.application.audit import AuditService
from alluse.application.clock import SimulatedClock
from alluse.application.configuration import ConfigChange, ConfigurationService
from alluse.application.lifecycle import LifecycleReport, LifecycleWatchdog
from alluse.application.market_ports import MarketData, TradingCalendar
from alluse.application.ports import AccountChange
from alluse.application.trading import TradingCycle
from alluse.domain import lifecycle as rules
from alluse.domain.accounts import Account, AccountStatus, MovementKind, link_broker
from alluse.domain.audit import AuditEvent, chain
from alluse.domain.config import default_config
from alluse.domain.errors import AllUseError, Conflict
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.ledger import broker_mismatches
from alluse.domain.market import NEW_YORK
from alluse.domain.orders import intent_purpose
from alluse.domain.sleeves import SleeveKind
from tests.conftest import DOLLAR, new_account
from tests.fakes import FakeCalendar, FakeMarket, RecordingDesk

GEN, COM = SleeveKind.GEN, SleeveKind.COM
THU = date(2026, 12, 3)
PARENT, CHILD = "ACC-00001", "ACC-00001-F1"
PARENT_BROKER, CHILD_BROKER = "DU5000000", "DU7000001"
CAPITAL = 500_000 * DOLLAR
GAIN = 100_000 * DOLLAR
SURPLUS = 70_000 * DOLLAR  # the gain after 30 % estimated tax
PATTERN = default_config().account.brokerage_id_pattern

# The side effects of one fork, in order: earmark + child, the linker, the new paper account, the link,
# the parent's transfer out, the child's transfer in, the confirmation.
FORK_EFFECTS = ["commit", "link", "open_account", "commit", "transfer", "transfer", "commit"]
# The side effects of one merge of a flat child: merging, the child's transfer out, the target's in, MERGED.
MERGE_EFFECTS = ["commit", "transfer", "transfer", "commit"]

T = TypeVar("T")


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


class Crash(SystemExit):
    """The process dies (the watchdog catches AllUseError only)."""


class Effects:
    """Logs the side effects in order; when armed, dies just before or just after the chosen one."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self._crash: tuple[int, str] | None = None

    def arm(self, index: int, when: str) -> None:
        self.log, self._crash = [], (index, when)

    @property
    def armed(self) -> bool:
        return self._crash is not None

    def __call__(self, name: str, action: Callable[[], T]) -> T:
        index = len(self.log)
        self.log.append(name)
        if self._crash == (index, "before"):
            self._crash = None
            raise Crash(f"crash before {name} #{index}")
        result = action()
        if self._crash == (index, "after"):
            self._crash = None
            raise Crash(f"crash after {name} #{index}")
        return result


class CrashingStore:
    def __init__(self, store: DynamoAccountStore, effects: Effects) -> None:
        self._store = store
        self._effects = effects

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def commit_together(self, changes: Sequence[AccountChange]) -> list[Account]:
        return self._effects("commit", lambda: self._store.commit_together(changes))


class CrashingBroker:
    def __init__(self, broker: PaperBroker, effects: Effects) -> None:
        self._broker = broker
        self._effects = effects
        self.transfers: list[tuple[str, int, str | None]] = []  # every transfer asked for, done or not

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def open_account(self, brokerage_id: str, cash_cents: int) -> Any:
        return self._effects("open_account", lambda: self._broker.open_account(brokerage_id, cash_cents))

    def transfer(self, brokerage_id: str, cash_cents: int, *, ref: str | None = None) -> Any:
        self.transfers.append((brokerage_id, cash_cents, ref))
        return self._effects("transfer", lambda: self._broker.transfer(brokerage_id, cash_cents, ref=ref))


class World:
    """The parent with its Gen-Acc gain (see the module doc), a watchdog wired through the crash wrappers."""

    def __init__(
        self,
        store: DynamoAccountStore,
        tmp_path: Path,
        *,
        gain: int = GAIN,
        settings: Mapping[str, Any] | None = None,
        clock: SimulatedClock | None = None,
        market: MarketData | None = None,
        calendar: TradingCalendar | None = None,
    ) -> None:
        self.clock = clock or SimulatedClock(at(THU, 9, 45))
        self.market = market or FakeMarket()
        self.calendar = calendar or FakeCalendar()
        self.paper = PaperBroker(self.market, self.calendar, self.clock)
        self.store = store
        self.effects = Effects()
        self.broker = CrashingBroker(self.paper, self.effects)
        self.desk = RecordingDesk(FileNotifier(tmp_path / "alerts.jsonl", log=False))
        self.service = AccountService(store, self.clock)
        if settings:
            self.configure(settings)
        parent = self.service.create(new_account(brokerage_id=PARENT_BROKER), actor="t")
        assert parent.account_id == PARENT
        self.paper.open_account(PARENT_BROKER, parent.cash_cents)
        self.linked: list[str] = []
        if gain:
            self.gain(PARENT, GEN, gain)

    def configure(self, changes: Mapping[str, Any]) -> None:
        """A global configuration change (the child has no layer of its own)."""
        request = ConfigChange(changes, author="t", reason="test")
        ConfigurationService(self.store, self.clock).change(request)

    def gain(self, account_id: str, sleeve: SleeveKind, cents: int) -> None:
        """Premium kept by a sleeve: booked in the store and paid into the brokerage account."""
        account = self.store.get(account_id)
        balance = account.sleeve(sleeve)
        balance = replace(balance, cash_cents=balance.cash_cents + cents, realized_cents=balance.realized_cents + cents)
        self.write(replace(account, sleeves={**account.sleeves, sleeve: balance}), "TEST_GAIN", {"cents": cents})
        self.paper.transfer(account.brokerage_id or "", cents, ref=f"GAIN-{account_id}-{account.version}")

    def write(self, account: Account, action: str, details: Mapping[str, Any]) -> Account:
        records, head = chain(
            account.account_id, account.audit_head, [AuditEvent(action, details)], actor="t", at=self.clock.now()
        )
        return self.store.commit(AccountChange(account=replace(account, audit_head=head), audit=records))

    def link(self, child: Account) -> str:
        """The stand-in for the operator: a deterministic id, so that a retry finds its own account."""
        return self.effects("link", lambda: self._linked(child))

    def _linked(self, child: Account) -> str:
        self.linked.append(child.account_id)
        return CHILD_BROKER

    def watchdog(self, *, link: Callable[[Account], str] | bool | None = True) -> LifecycleWatchdog:
        linker = self.link if link is True else (None if link is False else link)
        return LifecycleWatchdog(
            CrashingStore(self.store, self.effects),
            self.broker,
            self.market,
            self.calendar,
            self.clock,
            self.desk,
            link=linker,
        )

    def run(self, *, evaluate: bool = True, link: Callable[[Account], str] | bool | None = True) -> LifecycleReport:
        return self.watchdog(link=link).run(evaluate=evaluate)

    # --- reading the world ---
    def accounts(self) -> dict[str, Account]:
        return {a.account_id: a for a in self.store.list_accounts()}

    def money(self) -> int:
        return rules.money_in_system(self.accounts().values())

    def broker_cash(self, brokerage_id: str) -> int:
        return self.paper.account(brokerage_id).cash_cents if self.paper.has_account(brokerage_id) else 0

    def mismatches(self, account_id: str) -> list[str]:
        account = self.store.get(account_id)
        return broker_mismatches(account, self.paper.account(account.brokerage_id or ""))

    def actions(self, account_id: str) -> Counter[str]:
        return Counter(r.action for r in AuditService(self.store).trail(account_id))

    def snapshot(self) -> tuple[object, ...]:
        """Everything a run could change: the stored accounts (with their versions), their movements and
        audit trails, and the brokerage accounts."""
        accounts = self.accounts()
        return (
            accounts,
            {i: self.store.movements(i) for i in accounts},
            {i: len(AuditService(self.store).trail(i)) for i in accounts},
            {b: self.paper.account(b) for b in (PARENT_BROKER, CHILD_BROKER) if self.paper.has_account(b)},
        )


def assert_quiet(world: World, runs: int = 3) -> None:
    """Re-running the watchdog, evaluating or not, changes nothing."""
    before = world.snapshot()
    for n in range(runs):
        report = world.run(evaluate=n % 2 == 0)
        assert not (report.forks or report.funded or report.merges_started or report.merged or report.created)
    assert world.snapshot() == before


def assert_forked_once(world: World) -> None:
    accounts = world.accounts()
    assert set(accounts) == {PARENT, CHILD}  # exactly one child
    parent, child = accounts[PARENT], accounts[CHILD]
    assert parent.lifecycle.earmarks == {} and parent.lifecycle.forks_made == 1
    assert parent.sleeve(GEN).cash_cents == 200_000 * DOLLAR + GAIN - SURPLUS
    assert parent.sleeve(GEN).contributed_cents == 200_000 * DOLLAR  # the basis stays
    assert child.status is AccountStatus.ACTIVE and child.brokerage_id == CHILD_BROKER
    assert child.lifecycle.funding_from is None and child.parent_id == PARENT
    assert child.sleeve(GEN).cash_cents == child.sleeve(COM).cash_cents == SURPLUS // 2
    # The cash moved once at the broker, and each side agrees with its brokerage account.
    assert world.broker_cash(PARENT_BROKER) == CAPITAL + GAIN - SURPLUS
    assert world.broker_cash(CHILD_BROKER) == SURPLUS
    assert world.mismatches(PARENT) == world.mismatches(CHILD) == []
    assert world.money() == CAPITAL + GAIN == world.broker_cash(PARENT_BROKER) + world.broker_cash(CHILD_BROKER)
    parent_trail, child_trail = world.actions(PARENT), world.actions(CHILD)
    assert (parent_trail["FORK_EARMARKED"], parent_trail["FORK_FUNDED"]) == (1, 1)
    assert (child_trail["ACCOUNT_CREATED"], child_trail["BROKER_LINKED"], child_trail["FORK_FUNDED"]) == (1, 1, 1)
    [funding] = world.store.movements(CHILD)
    assert funding.kind is MovementKind.DEPOSIT and funding.amount_cents == SURPLUS
    assert AuditService(world.store).verify(PARENT).ok and AuditService(world.store).verify(CHILD).ok


def assert_merged_once(world: World) -> None:
    accounts = world.accounts()
    parent, child = accounts[PARENT], accounts[CHILD]
    assert child.status is AccountStatus.MERGED and child.cash_cents == 0
    assert child.lifecycle.merged_out_cents == SURPLUS and child.lifecycle.merging_into == PARENT
    assert parent.lifecycle.merges_received == (CHILD,)
    com = parent.sleeve(COM)
    assert com.cash_cents == 150_000 * DOLLAR + SURPLUS and com.contributed_cents == 150_000 * DOLLAR + SURPLUS
    assert com.buffer_cents == (150_000 * DOLLAR + SURPLUS) // 20
    assert world.broker_cash(CHILD_BROKER) == 0 and world.broker_cash(PARENT_BROKER) == CAPITAL + GAIN
    assert world.mismatches(PARENT) == world.mismatches(CHILD) == []
    assert world.money() == CAPITAL + GAIN
    merges = [m for m in world.store.movements(PARENT) if CHILD in m.reason]
    assert [(m.kind, m.amount_cents, dict(m.by_sleeve)) for m in merges] == [
        (MovementKind.DEPOSIT, SURPLUS, {COM: SURPLUS})
    ]
    child_trail, parent_trail = world.actions(CHILD), world.actions(PARENT)
    assert (child_trail["MERGE_STARTED"], child_trail["MERGED"], parent_trail["MERGE_RECEIVED"]) == (1, 1, 1)
    assert AuditService(world.store).verify(PARENT).ok and AuditService(world.store).verify(CHILD).ok


@pytest.fixture
def world(store: DynamoAccountStore, tmp_path: Path) -> World:
    return World(store, tmp_path)


@pytest.fixture
def forked(world: World) -> World:
    """The fork done, and a merge threshold the child's $70,000 meets."""
    world.run()
    assert_forked_once(world)
    world.configure({"lifecycle": {"merge_threshold": "50000"}})
    world.effects.log.clear()
    return world


# --- the fork saga ------------------------------------------------------------------------------------


def test_a_fork_runs_earmark_link_transfers_and_confirmation_in_one_run(world: World) -> None:
    assert world.money() == CAPITAL + GAIN
    report = world.run()
    assert world.effects.log == FORK_EFFECTS
    [decision] = report.forks
    assert (decision.child_id, decision.sleeve, decision.amount_cents) == (CHILD, GEN, SURPLUS)
    assert report.funded == [CHILD] and [c.account_id for c in report.created] == [CHILD]
    assert world.linked == [CHILD]
    refs = {ref for _, _, ref in world.broker.transfers}
    assert refs == {f"FORK-{CHILD}"}  # both legs carry the one ref
    assert_forked_once(world)
    assert_quiet(world)


def test_nothing_forks_when_no_evaluation_is_due(world: World) -> None:
    before = world.snapshot()
    report = world.run(evaluate=False)
    assert not report.forks and world.effects.log == [] and world.snapshot() == before


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("index", range(len(FORK_EFFECTS)), ids=[f"{i}-{e}" for i, e in enumerate(FORK_EFFECTS)])
def test_a_crash_anywhere_in_a_fork_never_forks_twice_or_loses_money(world: World, index: int, when: str) -> None:
    world.effects.arm(index, when)
    with pytest.raises(Crash):
        world.run()
    assert not world.effects.armed  # it did die where it was meant to
    assert world.money() == CAPITAL + GAIN  # every stored state in between holds the same money
    assert set(world.accounts()) <= {PARENT, CHILD}
    world.run()  # the restart (it evaluates again: the earmark keeps it from forking a second child)
    assert_forked_once(world)
    assert_quiet(world)


def test_a_child_waits_for_an_operator_without_a_linker_and_then_is_funded(world: World) -> None:
    report = world.run(link=False)
    assert [f.child_id for f in report.forks] == [CHILD] and not report.funded
    assert any(CHILD in w and "operator" in w for w in report.waiting)
    assert any(a.account_id == CHILD and "link a brokerage account" in a.title for a in world.desk.raised)
    child = world.store.get(CHILD)
    assert child.status is AccountStatus.PENDING_BROKER_LINK and child.lifecycle.funding_from == PARENT
    assert world.store.get(PARENT).lifecycle.earmarks == {CHILD: SURPLUS}  # set aside, not traded
    assert world.broker_cash(PARENT_BROKER) == CAPITAL + GAIN  # nothing moved yet
    assert world.money() == CAPITAL + GAIN
    before = world.snapshot()
    world.run(link=False)  # still waiting: nothing changes
    assert world.snapshot() == before
    world.paper.open_account(CHILD_BROKER, 0)  # the operator opens the account and links it
    world.service.link_broker(CHILD, CHILD_BROKER, actor="operator")
    report = world.run(evaluate=False, link=False)
    assert report.funded == [CHILD]
    assert_forked_once(world)


# --- the merge saga -----------------------------------------------------------------------------------


def test_a_merge_runs_start_transfers_and_close_in_one_run(forked: World) -> None:
    report = forked.run()
    assert forked.effects.log == MERGE_EFFECTS
    assert [(m.child_id, m.into_id) for m in report.merges_started] == [(CHILD, PARENT)]
    assert report.merged == [(CHILD, PARENT, SURPLUS)]
    assert_merged_once(forked)
    assert_quiet(forked)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("index", range(len(MERGE_EFFECTS)), ids=[f"{i}-{e}" for i, e in enumerate(MERGE_EFFECTS)])
def test_a_crash_anywhere_in_a_merge_never_merges_twice_or_loses_money(forked: World, index: int, when: str) -> None:
    forked.effects.arm(index, when)
    with pytest.raises(Crash):
        forked.run()
    assert not forked.effects.armed
    assert forked.money() == CAPITAL + GAIN
    forked.run()  # the restart
    assert_merged_once(forked)
    assert_quiet(forked)


def test_a_merging_child_waits_while_it_holds_positions(forked: World) -> None:
    put = OptionContract("NVDA", date(2026, 12, 4), 150_00, OptionRight.PUT)
    child = forked.store.get(CHILD)
    gen = child.sleeve(GEN)
    forked.write(replace(child, sleeves={**child.sleeves, GEN: replace(gen, positions={put: -1})}), "TEST", {})
    assert isinstance(forked.market, FakeMarket)
    forked.market.prices["NVDA"] = 150.0
    forked.market.quote(put, 100, 110)
    report = forked.run()
    assert [m.child_id for m in report.merges_started] == [CHILD] and not report.merged
    assert any(CHILD in w and "liquidating" in w for w in report.waiting)
    child = forked.store.get(CHILD)
    assert child.status is AccountStatus.ACTIVE and child.lifecycle.merging_into == PARENT
    assert forked.broker_cash(CHILD_BROKER) == SURPLUS  # nothing moved before it is flat
    assert forked.money() == CAPITAL + GAIN


# --- bad input --------------------------------------------------------------------------------------


def test_a_child_is_never_linked_to_a_brokerage_account_in_use(world: World) -> None:
    report = world.run(link=lambda child: PARENT_BROKER)
    assert [f.child_id for f in report.forks] == [CHILD] and not report.funded
    [why] = [w for w in report.waiting if w.startswith(CHILD)]
    assert "brokerage_id" in why and PARENT_BROKER in why and PARENT in why
    before = world.snapshot()
    world.run(link=lambda child: PARENT_BROKER)  # refused again, nothing changed
    assert world.snapshot() == before
    child = world.store.get(CHILD)
    assert child.status is AccountStatus.PENDING_BROKER_LINK and child.brokerage_id is None
    assert world.store.get(PARENT).lifecycle.earmarks == {CHILD: SURPLUS}
    assert world.broker_cash(PARENT_BROKER) == CAPITAL + GAIN and not world.paper.has_account(CHILD_BROKER)
    with pytest.raises(Conflict) as by_operator:
        world.service.link_broker(CHILD, PARENT_BROKER, actor="operator")
    assert by_operator.value.field == "brokerage_id"
    # The store itself refuses the claim (not only the service's early check), and writes nothing.
    linked = link_broker(child, PARENT_BROKER, pattern=PATTERN)
    with pytest.raises(Conflict) as by_store:
        world.store.commit(AccountChange(account=linked, audit=(), claim_brokerage_id=PARENT_BROKER))
    assert by_store.value.field == "brokerage_id" and PARENT in str(by_store.value)
    assert world.snapshot() == before
    assert world.store.brokerage_owner(PARENT_BROKER) == PARENT
    world.run()  # a brokerage account of its own: the fork goes on
    assert_forked_once(world)


def test_a_fork_is_confirmed_once(world: World) -> None:
    world.run(link=False)
    world.paper.open_account(CHILD_BROKER, 0)
    world.service.link_broker(CHILD, CHILD_BROKER, actor="operator")
    stale_parent, stale_child = world.store.get(PARENT), world.store.get(CHILD)  # read while it waits
    world.run(evaluate=False)
    assert_forked_once(world)
    before = world.snapshot()
    parent, child = world.store.get(PARENT), world.store.get(CHILD)
    with pytest.raises(Conflict) as twice:
        rules.confirm_fork(parent, child)
    assert twice.value.field == "child"
    # A second confirmation from a stale reader is refused by the store: nothing is written.
    confirmed = rules.confirm_fork(stale_parent, stale_child)
    with pytest.raises(Conflict) as stale:
        world.store.commit_together([AccountChange(account=a, audit=()) for a in confirmed])
    assert stale.value.field == "version"
    assert world.snapshot() == before


def test_a_merge_into_an_account_closed_meanwhile_waits_and_moves_nothing(forked: World) -> None:
    child = forked.store.get(CHILD)
    decision = rules.MergeDecision(CHILD, PARENT, child.cash_cents, 1)
    forked.write(rules.start_merge(child, decision), "MERGE_STARTED", {"into": PARENT})
    forked.service.change_status(PARENT, AccountStatus.CLOSED, actor="operator", reason="test")
    before = forked.snapshot()
    report = forked.run()
    assert not report.merged
    [why] = [w for w in report.waiting if w.startswith(CHILD)]
    assert f"{PARENT} no longer trades and no ancestor does" in why  # A10: no trading ancestor to re-target to
    assert forked.snapshot() == before  # no transfer, no write
    assert forked.money() == CAPITAL + GAIN


def test_a_fork_whose_parent_is_gone_does_not_merge(forked: World) -> None:
    forked.service.change_status(PARENT, AccountStatus.CLOSED, actor="operator", reason="test")
    before = forked.snapshot()
    report = forked.run()
    assert not report.merges_started and not report.merged
    assert forked.store.get(CHILD).lifecycle.merging_into is None
    assert forked.snapshot() == before


def test_merge_in_kind_is_refused_naming_the_setting(forked: World) -> None:
    forked.configure({"lifecycle": {"merge_policy": "in_kind"}})
    before = forked.snapshot()
    report = forked.run()
    assert not report.merges_started
    [why] = [w for w in report.waiting if w.startswith(CHILD)]
    assert "lifecycle.merge_policy" in why and "liquidate" in why
    assert forked.snapshot() == before


def test_a_fork_that_free_cash_cannot_cover_waits_and_writes_nothing(world: World) -> None:
    """Ten short 250 puts secure $250,000 of Gen's $300,000: $40,000 is free, the surplus is ~$69,000."""
    put = OptionContract("TSLA", date(2026, 12, 4), 250_00, OptionRight.PUT)
    assert isinstance(world.market, FakeMarket)
    world.market.prices["TSLA"] = 260.0
    world.market.quote(put, 100, 110)
    parent = world.store.get(PARENT)
    gen = parent.sleeve(GEN)
    world.write(replace(parent, sleeves={**parent.sleeves, GEN: replace(gen, positions={put: -10})}), "TEST", {})
    assert world.store.get(PARENT).sleeve(GEN).free_cents == 40_000 * DOLLAR
    before = world.snapshot()
    report = world.run()
    assert not report.forks and not report.created
    [why] = [w for w in report.waiting if w.startswith(PARENT)]
    assert "Gen-Acc" in why and "free" in why
    assert world.snapshot() == before and world.effects.log == []
    # The puts expire worthless: the cash is free again, and the next evaluation forks.
    parent = world.store.get(PARENT)
    world.write(replace(parent, sleeves={**parent.sleeves, GEN: replace(gen, positions={})}), "TEST", {})
    report = world.run()
    assert [f.child_id for f in report.forks] == [CHILD] and report.funded == [CHILD]
    assert world.broker_cash(CHILD_BROKER) == report.forks[0].amount_cents


def test_a_deposit_into_a_child_waiting_for_its_funding_does_not_wedge_the_fork(world: World) -> None:
    world.run(link=False)
    try:
        world.service.deposit(CHILD, 1_000 * DOLLAR, actor="operator", reason="test")
    except AllUseError:
        assert world.money() == CAPITAL + GAIN  # refused while the fork is in flight: as good
        return
    report = world.run(evaluate=False)
    assert report.funded == [CHILD], report.waiting  # actual: "earmark 7000000 and child cash 7100000 differ"
    assert world.store.get(PARENT).lifecycle.earmarks == {}
    assert world.money() == CAPITAL + GAIN + 1_000 * DOLLAR


def test_a_grandchild_merges_even_when_its_parent_merges_first(world: World) -> None:
    world.run()
    assert_forked_once(world)
    world.gain(CHILD, GEN, GAIN)  # the child forks a grandchild of its own
    world.linked.clear()
    grandchild = f"{CHILD}-F1"
    report = world.run(link=lambda child: "DU7000002")
    assert report.funded == [grandchild]
    total = world.money()
    world.configure({"lifecycle": {"merge_threshold": "50000"}})
    waiting = [w for _ in range(4) for w in world.run().waiting]
    accounts = world.accounts()
    assert accounts[CHILD].status is AccountStatus.MERGED
    assert accounts[grandchild].status is AccountStatus.MERGED, waiting  # actual: "ACC-00001-F1 is MERGED: ..."
    assert set(accounts[PARENT].lifecycle.merges_received) == {CHILD, grandchild}
    assert world.money() == total == accounts[PARENT].cash_cents


# --- the end to end -----------------------------------------------------------------------------------


def test_fork_fund_trade_liquidate_and_merge_end_to_end(store: DynamoAccountStore, tmp_path: Path) -> None:
    """A $300,000 Gen gain (the rule raised to $100,000, so that the tax kept back does not fork again):
    the $210,000 child waits for its operator, does not trade while its funding is pending, trades once
    funded, and merges back when its equity meets the threshold, after it has bought its puts back."""
    clock = SimulatedClock(at(THU, 9, 45))
    market = SimulatedMarket.generated(date(2026, 1, 2), date(2027, 3, 31), clock, seed=7)
    settings = {"hitl": {"premium_floor_policy": "place"}, "lifecycle": {"gen_fork_threshold": "100000"}}
    world = World(
        store, tmp_path, gain=300_000 * DOLLAR, settings=settings, clock=clock, market=market, calendar=market.calendar
    )
    total = world.money()
    assert total == 800_000 * DOLLAR
    cycle = TradingCycle(store, world.paper, market, market.calendar, clock, world.desk)

    # 09:45: the evaluation forks; no one has linked a brokerage account yet.
    report = world.run(link=False)
    [decision] = report.forks
    amount = decision.amount_cents
    assert amount == 210_000 * DOLLAR and decision.child_id == CHILD
    # The operator opens and links one; the funding is still pending: the child does not trade.
    world.paper.open_account(CHILD_BROKER, 0)
    world.service.link_broker(CHILD, CHILD_BROKER, actor="operator")
    clock.advance_to(at(THU, 10))
    pending = cycle.step(CHILD)
    assert not pending.placed and not pending.fills and world.paper.orders(CHILD_BROKER) == []
    assert world.store.get(CHILD).executions_booked == 0
    # The next run funds it; from then on it trades (Gen-Acc sells its Thursday puts).
    report = world.run(evaluate=False, link=False)
    assert report.funded == [CHILD]
    assert world.broker_cash(CHILD_BROKER) == amount
    placed = cycle.step(CHILD).placed
    assert placed and all(o.sleeve is GEN for o in placed)
    world.paper.step()
    clock.advance_to(at(THU, 10, 15))
    cycle.step(CHILD)
    child = world.store.get(CHILD)
    assert any(q < 0 for q in child.sleeve(GEN).positions.values())  # short puts held
    assert child.sleeve(GEN).premium_cents > 0 and world.mismatches(CHILD) == []

    # The next evaluation: the child's equity meets the (lowered) threshold; it liquidates, then merges.
    world.configure({"lifecycle": {"merge_threshold": "100000"}})
    clock.advance_to(at(THU, 10, 30))
    report = world.run()
    assert [(m.child_id, m.into_id) for m in report.merges_started] == [(CHILD, PARENT)] and not report.merged
    assert not report.forks  # the parent's remaining surplus is under its rule
    liquidating = []
    for minute in (31, 32, 33, 34, 35):
        step = cycle.step(CHILD)  # buys the puts back, takes no new risk
        assert not step.placed
        liquidating += step.protective
        world.paper.step()
        clock.advance_to(at(THU, 10, minute))
        if rules.is_flat(world.store.get(CHILD)):
            break
    cycle.step(CHILD)
    child = world.store.get(CHILD)
    assert rules.is_flat(child) and world.mismatches(CHILD) == []
    assert liquidating and {intent_purpose(o.intent_id) for o in liquidating} == {"LIQD"}
    merged_cash = child.cash_cents
    com_before = world.store.get(PARENT).sleeve(COM)
    report = world.run(evaluate=False)
    assert report.merged == [(CHILD, PARENT, merged_cash)]

    accounts = world.accounts()
    parent, child = accounts[PARENT], accounts[CHILD]
    assert child.status is AccountStatus.MERGED and child.cash_cents == 0
    assert parent.sleeve(COM).cash_cents == com_before.cash_cents + merged_cash
    assert parent.sleeve(COM).contributed_cents == com_before.contributed_cents + merged_cash
    assert parent.lifecycle.merges_received == (CHILD,)
    [movement] = [m for m in world.store.movements(PARENT) if CHILD in m.reason]
    assert movement.amount_cents == merged_cash and dict(movement.by_sleeve) == {COM: merged_cash}
    parent_trail, child_trail = world.actions(PARENT), world.actions(CHILD)
    for action in ("FORK_EARMARKED", "FORK_FUNDED", "MERGE_RECEIVED"):
        assert parent_trail[action] == 1, action
    for action in ("FORK_FUNDED", "MERGE_STARTED", "MERGED", "BROKER_LINKED"):
        assert child_trail[action] == 1, action
    assert world.mismatches(PARENT) == world.mismatches(CHILD) == []
    assert world.broker_cash(CHILD_BROKER) == 0
    # Every cent is accounted for: what the child earned (less what buying back cost) is in the parent.
    assert world.money() == world.broker_cash(PARENT_BROKER) == total + (merged_cash - amount)
    assert AuditService(store).verify(PARENT).ok and AuditService(store).verify(CHILD).ok
    assert not cycle.step(CHILD).placed  # MERGED is terminal: it never trades again
    assert_quiet(world)
