"""The weekly protocol run on the embedded platform: a seeded fleet stepped through simulated weeks,
each week judged, recorded in the audit chain, and one account's failure kept to that account."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.local.fleet_run import DEFAULT_FIRST_MONDAY, RunSpec, run_fleet
from alluse.adapters.local.notifier import FileNotifier
from alluse.adapters.paper.broker import PaperBroker, PaperBrokerSettings
from alluse.adapters.sim.market import SimulatedMarket
from alluse.application.accounts import AccountService
from alluse.application.alerting import AlertDesk
from alluse.application.audit import AuditService
from alluse.application.clock import SimulatedClock
from alluse.application.configuration import ConfigChange, ConfigurationService
from alluse.application.run_results import RunResult
from alluse.application.simulation import ProtocolRun
from alluse.application.trading import StepReport, TradingCycle
from alluse.domain.accounts import Account
from alluse.domain.errors import MarketDataGap, ValidationFailed
from alluse.domain.market import NEW_YORK
from alluse.domain.week import WeekType
from alluse.reporting import periods
from tests.conftest import new_account

PLACE = {"hitl": {"premium_floor_policy": "place"}}  # the default "ask" places nothing below the floor
SPEC = RunSpec(accounts=3, weeks=2, overrides=PLACE)
SLEEVES = {"GEN", "REV", "COM"}
CODES = {t.value for t in WeekType}
REQUEST_BUDGET = 40  # DynamoDB requests per account-week (the budget)


@pytest.fixture(scope="module")
def fleet() -> RunResult:
    result, not_created = run_fleet(SPEC)
    assert not_created == []
    return result


def test_every_account_runs_every_week(fleet: RunResult) -> None:
    assert [a.account_id for a in fleet.accounts] == ["ACC-00001", "ACC-00002", "ACC-00003"]
    assert fleet.seed == SPEC.seed and fleet.weeks == 2 and fleet.account_weeks == 6
    mondays = [DEFAULT_FIRST_MONDAY, DEFAULT_FIRST_MONDAY + timedelta(weeks=1)]
    for account in fleet.accounts:
        assert account.failure is None
        assert [w.week_start for w in account.weeks] == mondays
        assert account.start_equity_cents > 0
        for week in account.weeks:
            assert week.account_id == account.account_id
            assert week.equity_cents > 0
            assert set(week.week_types) == SLEEVES
            assert set(week.week_types.values()) <= CODES
    assert "account failed" not in fleet.protocol_events


def test_the_fleet_trades_within_the_request_budget(fleet: RunResult) -> None:
    assert fleet.trades > 0
    assert fleet.protocol_events["placed"] > 0
    assert sum(w.premium_cents for a in fleet.accounts for w in a.weeks) > 0
    assert fleet.dynamodb_requests > 0
    assert fleet.dynamodb_requests / fleet.account_weeks < REQUEST_BUDGET


def test_the_same_spec_gives_the_same_run(fleet: RunResult) -> None:
    again, _ = run_fleet(SPEC)
    assert again.accounts == fleet.accounts
    assert again.protocol_events == fleet.protocol_events


def test_one_failing_account_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    second_monday = datetime.combine(DEFAULT_FIRST_MONDAY + timedelta(weeks=1), time(0), NEW_YORK)
    step = TradingCycle.step

    def failing_step(self: TradingCycle, account_id: str) -> StepReport:
        if account_id == "ACC-00002" and self._clock.now() >= second_monday:
            raise RuntimeError("boom in week two")
        return step(self, account_id)

    monkeypatch.setattr(TradingCycle, "step", failing_step)
    result, _ = run_fleet(SPEC)
    runs = {a.account_id: a for a in result.accounts}
    failed = runs["ACC-00002"]
    assert failed.failure is not None and "RuntimeError" in failed.failure and "boom in week two" in failed.failure
    assert [w.week_start for w in failed.weeks] == [DEFAULT_FIRST_MONDAY]  # the week before the failure is kept
    for account_id in ("ACC-00001", "ACC-00003"):
        assert runs[account_id].failure is None
        assert len(runs[account_id].weeks) == 2
    assert result.protocol_events["account failed"] == 1


def test_a_market_gap_refuses_one_step_and_the_account_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    first_step = datetime.combine(DEFAULT_FIRST_MONDAY, time(10, 0), NEW_YORK)
    step = TradingCycle.step

    def gap_once(self: TradingCycle, account_id: str) -> StepReport:
        if account_id == "ACC-00002" and self._clock.now() == first_step:
            raise MarketDataGap("no chain for TSLA at 10:00")
        return step(self, account_id)

    monkeypatch.setattr(TradingCycle, "step", gap_once)
    result, _ = run_fleet(SPEC)
    gapped = {a.account_id: a for a in result.accounts}["ACC-00002"]
    assert gapped.failure is None and len(gapped.weeks) == 2  # reported, not dropped
    assert "step refused: MarketDataGap: no chain for TSLA at 10:00" in gapped.weeks[0].events
    assert result.protocol_events["step refused: MarketDataGap"] == 1
    assert gapped.trades > 0  # it traded at the later moments


def test_one_account_failing_while_its_week_is_judged_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record_week = TradingCycle.record_week

    def failing_record_week(self: TradingCycle, account_id: str, records: Any) -> None:
        if account_id == "ACC-00002":
            raise RuntimeError("store unavailable")
        record_week(self, account_id, records)

    monkeypatch.setattr(TradingCycle, "record_week", failing_record_week)
    result, _ = run_fleet(RunSpec(accounts=3, weeks=1, overrides=PLACE))
    runs = {a.account_id: a for a in result.accounts}
    assert runs["ACC-00002"].failure is not None and "store unavailable" in runs["ACC-00002"].failure
    assert len(runs["ACC-00001"].weeks) == len(runs["ACC-00003"].weeks) == 1


def one_account_run(
    store: DynamoAccountStore, tmp_path: Path, *, weeks: int
) -> tuple[Account, TradingCycle, ProtocolRun]:
    """One linked account on the embedded platform (seeded market, paper broker, carried cycle), ready to run
    from DEFAULT_FIRST_MONDAY for `weeks`."""
    monday = DEFAULT_FIRST_MONDAY
    clock = SimulatedClock(datetime.combine(monday - timedelta(days=3), time(9), NEW_YORK))
    end = monday + timedelta(weeks=weeks, days=14)
    market = SimulatedMarket.generated(monday - timedelta(days=200), end, clock, seed=7)
    configuration = ConfigurationService(store, clock)
    configuration.change(ConfigChange(PLACE, author="t", reason="place below the floor"))
    cfg = configuration.effective()
    account = AccountService(store, clock).create(new_account(brokerage_id="DU7654321"), actor="t")
    broker = PaperBroker(market, market.calendar, clock, PaperBrokerSettings.from_config(cfg))
    broker.open_account(account.brokerage_id or "", account.cash_cents)
    desk = AlertDesk(FileNotifier(tmp_path / "alerts.jsonl", log=False), cfg.alerts)
    cycle = TradingCycle(store, broker, market, market.calendar, clock, desk, carry_state=True)
    return account, cycle, ProtocolRun(cycle, market, market.calendar, clock.advance_to, cfg, step_broker=broker.step)


def test_the_judged_week_is_recorded_in_the_audit_chain(store: DynamoAccountStore, tmp_path: Path) -> None:
    monday = DEFAULT_FIRST_MONDAY
    account, _, run = one_account_run(store, tmp_path, weeks=1)

    [result] = run.run([account], monday, 1)

    assert result.failure is None and len(result.weeks) == 1
    week = result.weeks[0]
    assert week.trades > 0
    closed = [r for r in AuditService(store).trail(account.account_id) if r.action == "WEEK_CLOSED"]
    assert len(closed) == 1
    sleeves = closed[0].details["sleeves"]
    assert [s["sleeve"] for s in sleeves] == ["GEN", "REV", "COM"]
    assert all(s["week_start"] == monday.isoformat() for s in sleeves)
    assert {s["sleeve"]: s["type_at_close"] for s in sleeves} == week.week_types
    assert all(s["mode_confirmed"] == week.mode_confirmed for s in sleeves)
    assert all(s["mode_guessed"] == week.mode_guessed for s in sleeves)
    assert AuditService(store).verify(account.account_id).ok
    assert store.get(account.account_id).audit_head.seq == closed[0].seq  # the week is the chain's last link


def test_report_totals_equal_the_ledgers(store: DynamoAccountStore, tmp_path: Path) -> None:
    """Every report's money comes from the sleeves' books: over two weeks, the weekly, monthly and
    quarterly rows add up to the stored account's realised P&L less commissions, and the lot gains
    the rows tax are the tax ledger's."""
    monday = DEFAULT_FIRST_MONDAY
    account, cycle, run = one_account_run(store, tmp_path, weeks=2)
    [account_run] = run.run([account], monday, 2)
    result = RunResult(seed=7, weeks=2, accounts=(account_run,))
    cycle.release([account.account_id])  # what the run carried is written: the store is the ledger
    books = store.get(account.account_id)
    realised = sum(b.realized_cents - b.commission_cents for b in books.sleeves.values())
    assert account_run.trades > 0 and realised != 0
    for period in periods.PERIODS:
        rows = periods.account_rows(account_run, period, result)
        assert sum(r.income_cents for r in rows) == realised
        assert sum(r.trades for r in rows) == account_run.trades
    gains = sum(w.short_term_gain_cents + w.long_term_gain_cents for w in account_run.weeks)
    assert gains == sum(short + long for short, long in books.tax_gains_cents.values())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"accounts": 0}, "accounts"),
        ({"weeks": 0}, "weeks"),
        ({"first_monday": date(2026, 1, 6)}, "first_monday"),  # a Tuesday
        ({"workers": 0}, "workers"),
    ],
)
def test_a_bad_run_spec_is_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        RunSpec(**changes)
    assert err.value.field == field
