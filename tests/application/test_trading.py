"""The trading cycle on the embedded world: simulated market, paper broker, the real store on moto."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.local.notifier import FileNotifier
from alluse.adapters.paper.broker import PaperBroker
from alluse.adapters.sim.market import SimulatedMarket
from alluse.application.accounts import AccountService
from alluse.application.alerting import AlertDesk
from alluse.application.audit import AuditService
from alluse.application.clock import SimulatedClock
from alluse.application.trading import TradingCycle, run_fleet_step
from alluse.domain.brokerage import OrderRequest, SettlementKind
from alluse.domain.config import default_config
from alluse.domain.errors import MarketDataGap
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.ledger import broker_mismatches
from alluse.domain.market import NEW_YORK
from alluse.domain.orders import OrderState
from alluse.domain.risk import KillSwitches, TradingState
from alluse.domain.sleeves import SleeveKind
from tests.conftest import new_account

THU, FRI = date(2026, 12, 3), date(2026, 12, 4)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


class World:
    def __init__(
        self, store: DynamoAccountStore, tmp_path: Path, *, accounts: int = 1, floor_policy: str = "place"
    ) -> None:
        self.clock = SimulatedClock(at(THU, 10))
        self.market = SimulatedMarket.generated(date(2026, 1, 2), date(2027, 3, 31), self.clock, seed=7)
        self.broker = PaperBroker(self.market, self.market.calendar, self.clock)
        self.store = store
        self.notifier = FileNotifier(tmp_path / "alerts.jsonl")
        desk = AlertDesk(self.notifier, default_config().alerts)
        self.cycle_alerts = desk
        self.cycle = TradingCycle(store, self.broker, self.market, self.market.calendar, self.clock, desk)
        service = AccountService(store, self.clock)
        self.ids = []
        for n in range(accounts):
            overrides = {"hitl": {"premium_floor_policy": floor_policy}}
            account = service.create(new_account(brokerage_id=f"DU{5_000_000 + n}", overrides=overrides), actor="t")
            self.broker.open_account(account.brokerage_id or "", account.cash_cents)
            self.ids.append(account.account_id)

    def carried_cycle(self) -> TradingCycle:
        """A second cycle on the same world that carries state between steps, as a protocol run does."""
        return TradingCycle(
            self.store, self.broker, self.market, self.market.calendar, self.clock, self.cycle_alerts, carry_state=True
        )

    def mismatches(self, account_id: str) -> list[str]:
        account = self.store.get(account_id)
        return broker_mismatches(account, self.broker.account(account.brokerage_id or ""))


@pytest.fixture
def world(store: DynamoAccountStore, tmp_path: Path) -> World:
    return World(store, tmp_path)


def test_thursday_gen_acc_sells_puts_and_the_books_match_the_broker(world: World) -> None:
    [account_id] = world.ids
    report = world.cycle.step(account_id)
    entered = {o.request.instrument.underlying for o in report.placed}  # type: ignore[union-attr]
    assert entered and entered <= {"TSLA", "NVDA"}
    for ticker in {"TSLA", "NVDA"} - entered:  # a ticker without an entry says why (e.g. no strike in the band)
        assert report.skipped[(SleeveKind.GEN, ticker)]
    assert all(o.sleeve is SleeveKind.GEN for o in report.placed)  # Rev trades Mon-Wed, Com on Monday
    for order in report.placed:
        contract = order.request.instrument
        assert isinstance(contract, OptionContract) and contract.right is OptionRight.PUT and contract.expiry == FRI
    world.broker.step()  # resting limits work in the market
    world.clock.advance_to(at(THU, 10, 15))
    world.cycle.step(account_id)
    gen = world.store.get(account_id).sleeve(SleeveKind.GEN)
    assert gen.premium_cents > 0 and gen.collateral_cents > 0
    assert gen.collateral_cents <= gen.cash_cents - gen.buffer_cents  # cash-secured, buffer untouched
    assert world.mismatches(account_id) == []
    assert AuditService(world.store).verify(account_id).ok


def test_below_the_floor_a_human_is_asked_and_nothing_is_placed(store: DynamoAccountStore, tmp_path: Path) -> None:
    world = World(store, tmp_path, floor_policy="ask")  # the product default
    report = world.cycle.step(world.ids[0])
    assert not report.placed and report.awaiting_human
    assert all(p.below_floor for p in report.awaiting_human)
    delivered = world.notifier.delivered()
    assert delivered and all(a["priority"] == "HIGH" and a["type"] == "TRADE_OPPORTUNITY" for a in delivered)


def test_a_rerun_never_places_the_same_intent_twice(world: World) -> None:
    [account_id] = world.ids
    first = world.cycle.step(account_id)
    assert first.placed and not world.cycle.step(account_id).placed  # the same instant again: nothing new
    world.clock.advance_to(at(THU, 10, 30))
    later = world.cycle.step(account_id)  # may enter a ticker that had no strike in band before, never a repeat
    first_refs = {o.intent_id for o in first.placed}
    assert not first_refs & {o.intent_id for o in later.placed}
    brokerage_id = world.store.get(account_id).brokerage_id or ""
    refs = [o.client_ref for o in world.broker.orders(brokerage_id)]
    assert len(refs) == len(set(refs)) == len(first.placed) + len(later.placed)
    tickers = [o.request.instrument.underlying for o in first.placed + later.placed]  # type: ignore[union-attr]
    assert len(tickers) == len(set(tickers))  # one Gen-Acc entry per ticker per week


class CrashAfterPlacing:
    """The broker takes the order, then the process dies before the acknowledgement is saved."""

    def __init__(self, broker: PaperBroker) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> object:
        return getattr(self._broker, name)

    def place_order(self, brokerage_id: str, request: OrderRequest) -> object:
        self._broker.place_order(brokerage_id, request)
        raise SystemExit("crash between placement and acknowledgement")


def test_a_crash_between_placement_and_acknowledgement_leaves_exactly_one_order(world: World) -> None:
    [account_id] = world.ids
    crashing = TradingCycle(
        world.store,
        CrashAfterPlacing(world.broker),
        world.market,
        world.market.calendar,
        world.clock,  # type: ignore[arg-type]
        AlertDesk(world.notifier, default_config().alerts),
    )
    with pytest.raises(SystemExit):
        crashing.step(account_id)
    in_flight = world.store.orders(account_id)
    assert in_flight and all(o.state is OrderState.SUBMITTING for o in in_flight)  # saved before placing
    world.clock.advance_to(at(THU, 10, 15))
    recovered = world.cycle.step(account_id)  # the restart: reconcile adopts what the broker holds
    brokerage_id = world.store.get(account_id).brokerage_id or ""
    refs = [o.client_ref for o in world.broker.orders(brokerage_id)]
    assert len(refs) == len(set(refs)) == len(in_flight)  # exactly one broker order per intent
    assert not recovered.placed
    assert all(o.state is not OrderState.SUBMITTING for o in world.store.orders(account_id))
    assert world.mismatches(account_id) == []


def test_friday_close_settles_into_the_sleeves(world: World) -> None:
    [account_id] = world.ids
    world.cycle.step(account_id)
    world.broker.step()
    world.clock.advance_to(at(FRI, 16, 30))
    report = world.cycle.step(account_id)
    assert report.booked_settlements >= 1
    gen = world.store.get(account_id).sleeve(SleeveKind.GEN)
    assert not any(isinstance(i, OptionContract) for i in gen.positions)  # every weekly put settled
    assert world.mismatches(account_id) == []


def test_every_booking_moves_the_tax_lots_and_the_years_realised_gains(world: World) -> None:
    """A12: a put sold opens a short lot per sleeve; at Friday's expiry it closes (worthless: the premium is
    a short-term gain; assigned: no gain, the shares' lot carries the basis), so the lots follow the sleeves."""
    [account_id] = world.ids
    entered = world.cycle.step(account_id)
    account = world.store.get(account_id)
    for sleeve, execution in entered.fills:
        lots = account.tax_lots.lots_of(sleeve, execution.instrument)
        assert sum(lot.quantity for lot in lots) == account.sleeve(sleeve).quantity(execution.instrument) < 0
    world.broker.step()
    world.clock.advance_to(at(FRI, 16, 30))
    report = world.cycle.step(account_id)
    assert report.booked_settlements >= 1 and not any("tax lots" in p for p in report.problems)
    account = world.store.get(account_id)
    for sleeve, balance in account.sleeves.items():  # the FIFO lots hold exactly what the sleeves hold
        for instrument, quantity in balance.positions.items():
            assert account.tax_lots.open_quantity(sleeve, instrument) == quantity
    assert any(s.kind is SettlementKind.EXPIRED_WORTHLESS for s in report.settlements)
    short, long = account.tax_gains_cents[FRI.year]
    assert short > 0 and long == 0  # days-old premium is short-term


def test_halted_symbol_is_denied_with_its_reason(world: World) -> None:
    [account_id] = world.ids
    world.cycle.kill_switches = KillSwitches().with_symbol("NVDA", TradingState.HALTED)
    report = world.cycle.step(account_id)
    assert "NVDA" not in {o.request.instrument.underlying for o in report.placed}  # type: ignore[union-attr]
    [(plan, decision)] = report.denied
    assert plan.contract.underlying == "NVDA" and decision.reason == "KILL_SWITCH_HALTED"
    assert any("entry denied" in a["title"] for a in world.notifier.delivered())  # type: ignore[operator]


def test_one_failing_account_does_not_stop_the_fleet(store: DynamoAccountStore, tmp_path: Path) -> None:
    world = World(store, tmp_path, accounts=3)
    outcomes = run_fleet_step(world.cycle, [world.ids[0], "ACC-99999", world.ids[2]])
    assert isinstance(outcomes["ACC-99999"], str) and "NotFound" in outcomes["ACC-99999"]
    assert all(not isinstance(outcomes[i], str) and outcomes[i].placed for i in (world.ids[0], world.ids[2]))  # type: ignore[union-attr]


def test_a_carried_run_writes_behind_and_a_lost_memory_loses_nothing(world: World) -> None:
    """In a carried run only SUBMITTING (and the week record) is written at once; acknowledgements and
    bookings wait. If that memory is lost, a fresh cycle derives them again from the broker: once."""
    [account_id] = world.ids
    carried = world.carried_cycle()
    report = carried.step(account_id)
    assert report.placed and report.fills  # placed and (marketable) filled in memory
    stored = {o.intent_id: o.state for o in world.store.orders(account_id)}
    assert set(stored.values()) == {OrderState.SUBMITTING}  # written before placing; the rest waits
    assert world.store.get(account_id).executions_booked == 0
    fresh = world.cycle  # the carried cycle "crashes": a new one starts from the store
    world.clock.advance_to(at(THU, 10, 15))
    again = fresh.step(account_id)
    assert not again.placed  # same intents: never placed twice
    account = world.store.get(account_id)
    assert account.executions_booked == len(world.broker.executions(account.brokerage_id or ""))
    assert world.mismatches(account_id) == []
    adopted = {OrderState.FILLED, OrderState.WORKING, OrderState.PARTIALLY_FILLED}
    assert {o.state for o in world.store.orders(account_id)} <= adopted


def week_records(world: World, account_id: str) -> list[object]:
    return [r for r in AuditService(world.store).trail(account_id) if r.action == "WEEK_CLOSED"]


def test_a_carried_run_writes_behind_and_release_writes_the_rest(world: World) -> None:
    [account_id] = world.ids
    carried = world.carried_cycle()
    carried.step(account_id)
    carried.record_week(account_id, [])
    assert week_records(world, account_id) == []  # held back: it goes with the account's next write
    carried.release([account_id])
    account = world.store.get(account_id)
    assert account.executions_booked == len(world.broker.executions(account.brokerage_id or ""))
    assert world.mismatches(account_id) == []
    assert len(week_records(world, account_id)) == 1
    assert AuditService(world.store).verify(account_id).ok


def week_closed_then_failed(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[str, TradingCycle]:
    """A carried cycle records an account's week, then a step of it raises (as a run sees it: the step
    raises, then the failure is reported): what was carried is dropped."""
    [account_id] = world.ids
    carried = world.carried_cycle()
    carried.step(account_id)
    carried.record_week(account_id, [])

    def broker_down(brokerage_id: str) -> list[object]:
        raise MarketDataGap("broker unreachable", field="broker")

    with monkeypatch.context() as patch:
        patch.setattr(world.broker, "open_orders", broker_down)
        with pytest.raises(MarketDataGap):
            carried.step(account_id)
    carried.report_failure(account_id, "broker unreachable")
    return account_id, carried


def test_a_week_record_held_back_survives_a_failed_step(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker cannot give a week's record back, so a failed step hands it on rather than drop it."""
    account_id, carried = week_closed_then_failed(world, monkeypatch)
    carried.step(account_id)  # the account is read afresh, the record still owed
    carried.release([account_id])
    assert len(week_records(world, account_id)) == 1
    assert AuditService(world.store).verify(account_id).ok


def test_a_week_record_owed_by_a_failed_step_is_written_on_release(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id, carried = week_closed_then_failed(world, monkeypatch)
    carried.release([account_id])  # not carried any more: read afresh and written with what is owed
    assert len(week_records(world, account_id)) == 1
    carried.release([account_id])
    assert len(week_records(world, account_id)) == 1  # once


def test_an_uncarried_cycle_writes_the_week_record_at_once(world: World) -> None:
    [account_id] = world.ids
    world.cycle.step(account_id)
    world.cycle.record_week(account_id, [])
    assert len(week_records(world, account_id)) == 1
