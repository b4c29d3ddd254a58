"""Order working (A8) on the embedded world: a resting limit is repriced toward the touch after the delay
(cancel at the broker, then the next version for what is left), stops at the concession bound or the touch,
and is cancelled at the timeout counted from the intent's first placement; a protocol run steps accounts
with resting orders every reprice delay until then.

The market (`Board`) is the test's: TSLA at $200 (moved by hand) with a $4 ATR, its chain the simulator's
chain model priced once per session and spot (quotes do not tick between the seconds of order working),
plus quotes the test pins from an instant on. Gen-Acc sells the Friday 199 put on Thursday at 10:00, quoted
1.96 / 2.04 (a spread the risk engine accepts): the entry limit is the 2.00 mid and the default concession
bound (5 % of that mid) is 1.90. From 10:00:01 the market widens to 1.80 / 2.20 unless a test says
otherwise; with the paper broker's `passive_fill_fraction=0` nothing fills above the bid. The broker is
wrapped (`Spy`) to log every placement and cancel, what the store held for a ref when it was placed, and
any placement made while another version of the same intent was still live at the broker.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alluse.adapters.dynamo.store import DynamoAccountStore
from alluse.adapters.local.notifier import FileNotifier
from alluse.adapters.paper.broker import PaperBroker, PaperBrokerSettings
from alluse.adapters.sim.chains import ChainSettings, generate_chain
from alluse.application.accounts import AccountService
from alluse.application.audit import AuditService
from alluse.application.clock import SimulatedClock
from alluse.application.configuration import ConfigChange, ConfigurationService
from alluse.application.ports import AccountChange
from alluse.application.simulation import ProtocolRun
from alluse.application.trading import StepReport, TradingCycle
from alluse.domain.accounts import Account
from alluse.domain.atr_protocol import AtrLevel
from alluse.domain.audit import AuditRecord
from alluse.domain.brokerage import BrokerOrder, OrderRequest, OrderStatus
from alluse.domain.config import default_config
from alluse.domain.errors import MarketDataGap
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.ledger import broker_mismatches
from alluse.domain.market import NEW_YORK, DailyBars, IntradayBars, OptionChain
from alluse.domain.orders import (
    ManagedOrder,
    OrderState,
    apply_broker_order,
    intent_purpose,
    intent_stem,
    intent_version,
)
from alluse.domain.protection import watch_key
from alluse.domain.sleeves import SleeveKind
from tests.conftest import new_account
from tests.fakes import FakeCalendar, RecordingDesk

GEN = SleeveKind.GEN
MON, THU, FRI = date(2026, 11, 30), date(2026, 12, 3), date(2026, 12, 4)
ONLY_THURSDAY = FakeCalendar(holidays={MON, MON + timedelta(days=1), MON + timedelta(days=2), FRI})
FRIDAYS = [date(2026, 11, 27) + timedelta(weeks=n) for n in range(8)]  # the weeklies the chains list
PLACE = {"hitl": {"premium_floor_policy": "place"}}  # the default "ask" places nothing below the floor
PUT_199 = OptionContract("TSLA", FRI, 199_00, OptionRight.PUT)  # Gen's Thursday put (nearest the band's middle)
ENTRY = (196, 204)  # its quote at the entry: mid 200, a 4 % spread
WIDE = (180, 220)  # its quote from 10:00:01: the same mid, the bid below the concession bound
RULES = default_config().orders  # 3 s reprice delay, 60 s timeout, 5 % concession, one tick per reprice
BOUND = 190  # 5 % under the 200 mid, on the one-cent grid below $3


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NEW_YORK)


def t(seconds: float) -> datetime:
    """Thursday 10:00 (the entry) plus this many seconds."""
    return at(THU, 10) + timedelta(seconds=seconds)


class Board:
    """The test's market (see the module doc)."""

    def __init__(self, clock: SimulatedClock, spots: Mapping[str, float] | None = None) -> None:
        self._clock = clock
        self._spots = dict(spots or {"TSLA": 200.0})
        self._pins: dict[OptionContract, list[tuple[datetime, int, int]]] = defaultdict(list)
        self._base: dict[tuple[str, date, float], OptionChain] = {}

    def pin(self, contract: OptionContract, quote: tuple[int, int], since: datetime | None = None) -> None:
        """Quote `contract` at (bid, ask) cents from `since` (default: now) on."""
        self._pins[contract].append((since or self._clock.now(), *quote))
        self._pins[contract].sort(key=lambda pin: pin[0])

    def move(self, ticker: str, spot: float) -> None:
        self._spots[ticker] = spot

    def pinned(self, contract: OptionContract, at_: datetime) -> tuple[int, int]:
        bid, ask = [p for p in self._pins[contract] if p[0] <= at_][-1][1:]
        return bid, ask

    def tickers(self) -> tuple[str, ...]:
        return tuple(sorted(self._spots))

    def price(self, ticker: str, at_: datetime) -> float:
        if ticker not in self._spots or at_ > self._clock.now():
            raise MarketDataGap(f"no price for {ticker} at {at_}", field="ticker")
        return self._spots[ticker]

    def daily_bars(self, ticker: str, *, through: date) -> DailyBars:
        close = self.price(ticker, self._clock.now())
        days = np.array([np.datetime64(through, "D") - np.timedelta64(n, "D") for n in range(89, -1, -1)])
        days = days[np.is_busday(days)]
        closes = np.full(days.shape[0], close)
        volume = np.full(days.shape[0], 1_000_000)
        return DailyBars(ticker, days, closes, closes + 2.0, closes - 2.0, closes, volume)  # ATR $4

    def intraday_bars(self, ticker: str, session: date) -> IntradayBars:
        raise MarketDataGap("the board has no intraday bars")

    def chain(self, ticker: str, at_: datetime) -> OptionChain:
        spot = self.price(ticker, at_)
        day = at_.astimezone(NEW_YORK).date()
        if (ticker, day, spot) not in self._base:
            chain = generate_chain(ticker, at(day, 10), spot, 0.35, FRIDAYS, ChainSettings(), 11)
            self._base[(ticker, day, spot)] = chain
        chain = self._base[(ticker, day, spot)]
        quotes = {c: self.pinned(c, at_) for c, ps in self._pins.items() if c.underlying == ticker and ps[0][0] <= at_}
        if not quotes:
            return chain
        bid, ask = chain.bid_cents.copy(), chain.ask_cents.copy()
        for contract, (pinned_bid, pinned_ask) in quotes.items():
            row = chain.row_of(contract)
            assert row is not None, f"{contract.symbol} is not listed"
            bid[row], ask[row] = pinned_bid, pinned_ask
        return replace(chain, bid_cents=bid, ask_cents=ask)


@dataclass
class Call:
    kind: str  # "place" or "cancel"
    ref: str
    stored: OrderState | None = None  # for a placement: the ref's state in the store at that moment
    at: datetime | None = None


class Spy:
    """The paper broker, logging placements and cancels (see the module doc); `crash` makes the process
    die at a chosen point: it is given the call's kind ("cancelled", "placing", "placed") and ref."""

    def __init__(self, paper: PaperBroker, store: DynamoAccountStore, clock: SimulatedClock) -> None:
        self._paper = paper
        self._store = store
        self._clock = clock
        self.calls: list[Call] = []
        self.two_live: list[str] = []
        self.crash: Callable[[str, str], bool] = lambda kind, ref: False
        self.before_cancel: Callable[[], None] = lambda: None  # e.g. a fill reaching the broker first
        self.before_place: Callable[[str], None] = lambda ref: None  # e.g. the market moving as it goes out

    def __getattr__(self, name: str) -> object:
        return getattr(self._paper, name)

    def place_order(self, brokerage_id: str, request: OrderRequest) -> BrokerOrder:
        ref = request.client_ref
        owner = self._store.brokerage_owner(brokerage_id) or ""
        stored = {o.intent_id: o.state for o in self._store.orders(owner)}.get(ref)
        self.calls.append(Call("place", ref, stored, self._clock.now()))
        others = [
            o.client_ref
            for o in self._paper.orders(brokerage_id)
            if not o.status.is_final and o.client_ref != ref and intent_stem(o.client_ref) == intent_stem(ref)
        ]
        if others:
            self.two_live.append(f"{ref} placed while {others} still live")
        self.before_place(ref)
        if self.crash("placing", ref):
            raise SystemExit(f"crash before placing {ref}")
        placed = self._paper.place_order(brokerage_id, request)
        if self.crash("placed", ref):
            raise SystemExit(f"crash after placing {ref}, before its acknowledgement is kept")
        return placed

    def cancel_order(self, brokerage_id: str, broker_order_id: str) -> BrokerOrder:
        self.before_cancel()
        answer = self._paper.cancel_order(brokerage_id, broker_order_id)
        self.calls.append(Call("cancel", answer.client_ref, at=self._clock.now()))
        if self.crash("cancelled", answer.client_ref):
            raise SystemExit(f"crash after cancelling {answer.client_ref}, before its replacement")
        return answer

    def placed(self) -> list[str]:
        return [c.ref for c in self.calls if c.kind == "place"]

    def cancelled(self) -> list[str]:
        return [c.ref for c in self.calls if c.kind == "cancel"]


class Recording(TradingCycle):
    """A cycle that remembers when each account stepped (by the clock given as `times_of`)."""

    times_of: SimulatedClock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stepped: dict[str, list[datetime]] = defaultdict(list)  # steps and order-working steps
        self.worked: dict[str, list[datetime]] = defaultdict(list)  # order-working steps only

    def step(self, account_id: str) -> StepReport:
        self.stepped[account_id].append(self.times_of.now())
        return super().step(account_id)

    def work(self, account_id: str) -> StepReport:
        self.stepped[account_id].append(self.times_of.now())
        self.worked[account_id].append(self.times_of.now())
        return super().work(account_id)


class World:
    def __init__(
        self,
        store: DynamoAccountStore,
        tmp_path: Path,
        *,
        settings: PaperBrokerSettings | None = None,
        global_overrides: Mapping[str, Any] | None = None,
        calendar: FakeCalendar | None = None,
        start: datetime | None = None,
        entry: tuple[int, int] = ENTRY,
        after_entry: tuple[int, int] = WIDE,
        account_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.clock = SimulatedClock(start or t(0))
        self.board = Board(self.clock)
        self.board.pin(PUT_199, entry, since=at(MON, 0))
        self.board.pin(PUT_199, after_entry, since=t(1))
        self.calendar = calendar or FakeCalendar()
        settings = settings or PaperBrokerSettings(passive_fill_fraction=Decimal(0))
        self.paper = PaperBroker(self.board, self.calendar, self.clock, settings)
        self.broker = Spy(self.paper, store, self.clock)
        self.configuration = ConfigurationService(store, self.clock)
        self.configuration.change(ConfigChange({**PLACE, **(global_overrides or {})}, author="t", reason="test"))
        self.desk = RecordingDesk(FileNotifier(tmp_path / "alerts.jsonl", log=False))
        self.cycle = self.new_cycle(carry_state=True)
        self.accounts: list[Account] = []
        self.account_id = self.open_account(account_overrides).account_id
        self.brokerage_id = self.accounts[0].brokerage_id or ""

    def open_account(self, overrides: Mapping[str, Any] | None = None) -> Account:
        brokerage_id = f"DU{5_000_000 + len(self.accounts)}"
        request = new_account(brokerage_id=brokerage_id, overrides=dict(overrides or {}))
        account = AccountService(self.store, self.clock).create(request, actor="t")
        self.paper.open_account(brokerage_id, account.cash_cents)
        self.accounts.append(account)
        return account

    def new_cycle(self, *, carry_state: bool, cls: type[TradingCycle] = TradingCycle) -> TradingCycle:
        return cls(
            self.store,
            self.broker,  # type: ignore[arg-type]
            self.board,
            self.calendar,
            clock=self.clock,
            alerts=self.desk,
            carry_state=carry_state,
        )

    def step_at(self, when: datetime, cycle: TradingCycle | None = None) -> StepReport:
        self.clock.advance_to(when)
        return (cycle or self.cycle).step(self.account_id)

    def enter(self, cycle: TradingCycle | None = None, *, limit: int = 200) -> ManagedOrder:
        """Thursday 10:00: Gen-Acc sells the 199 put at the mid (2.00 unless the test quotes it otherwise),
        where it rests."""
        report = self.step_at(t(0), cycle)
        [order] = report.placed
        assert order.request.instrument == PUT_199 and order.request.limit_price_cents == limit
        assert order.state is OrderState.WORKING and report.working
        assert order.request.quantity >= 2
        return order

    def fill_now(self, bid: int) -> None:
        """The put's bid touches `bid` for an instant and the broker works its resting orders."""
        now = self.clock.now()
        quote = self.board.pinned(PUT_199, now)
        self.board.pin(PUT_199, (bid, quote[1]), since=now)
        self.paper.step()
        self.board.pin(PUT_199, quote, since=now)

    def broker_orders(self) -> list[BrokerOrder]:
        return sorted(self.paper.orders(self.brokerage_id), key=lambda o: intent_version(o.client_ref))

    def live(self) -> list[BrokerOrder]:
        return [o for o in self.broker_orders() if not o.status.is_final]

    def limits(self) -> list[int]:
        """The limit of each version placed, in order."""
        return [o.request.limit_price_cents or 0 for o in self.broker_orders()]

    def stored(self) -> dict[str, ManagedOrder]:
        return {o.intent_id: o for o in self.store.orders(self.account_id)}

    def trail(self, *actions: str) -> list[AuditRecord]:
        return [r for r in AuditService(self.store).trail(self.account_id) if r.action in actions]

    def flush(self) -> None:
        """Releasing the account writes what the carried run held back."""
        self.cycle.release([self.account_id])

    def mismatches(self) -> list[str]:
        return broker_mismatches(self.store.get(self.account_id), self.paper.account(self.brokerage_id))


@pytest.fixture
def world(store: DynamoAccountStore, tmp_path: Path) -> World:
    return World(store, tmp_path)


def version(order: ManagedOrder | BrokerOrder, n: int) -> str:
    ref = order.intent_id if isinstance(order, ManagedOrder) else order.client_ref
    return f"{intent_stem(ref)}.v{n}"


# --------------------------------------------------------------------------------------------------
# 1. Reprice: after the delay, cancel, then the next version one tick toward the bid
# --------------------------------------------------------------------------------------------------


def test_a_resting_entry_is_left_alone_before_the_delay_then_cancelled_and_replaced_one_tick_lower(
    world: World,
) -> None:
    v1 = world.enter()
    assert RULES.reprice_after_seconds == 3 and RULES.reprice_step_ticks == 1

    early = world.step_at(t(2))  # inside the delay: nothing happens to the order
    assert not early.repriced and not early.timed_out and not early.placed and early.working
    assert [o.client_ref for o in world.live()] == [v1.intent_id]
    assert world.broker.cancelled() == []

    report = world.step_at(t(3))

    [v2] = report.repriced
    assert v2.intent_id == version(v1, 2) and intent_stem(v2.intent_id) == intent_stem(v1.intent_id)
    assert v2.request.limit_price_cents == 199  # one cent (the grid below $3) toward the 1.80 bid
    assert (v2.request.instrument, v2.request.side, v2.request.quantity) == (
        v1.request.instrument,
        v1.request.side,
        v1.request.quantity,
    )
    assert v2.state is OrderState.WORKING and v2.started_at == t(0) and v2.submitted_at == t(3)
    assert v2.reference_quote == v1.reference_quote
    assert not report.placed and not report.timed_out and report.working
    # The broker: v1 cancelled first, then v2 placed. v2, a newer version of a known intent, is written
    # behind (reconciliation adopts it from the broker if memory is lost); v1, a new intent, was not.
    assert [(c.kind, c.ref, c.stored) for c in world.broker.calls] == [
        ("place", v1.intent_id, OrderState.SUBMITTING),
        ("cancel", v1.intent_id, None),
        ("place", v2.intent_id, None),
    ]
    v1_at_broker, v2_at_broker = world.broker_orders()
    assert v1_at_broker.status is OrderStatus.CANCELLED and v2_at_broker.status is OrderStatus.SUBMITTED
    assert [o.client_ref for o in world.live()] == [v2.intent_id]
    assert world.broker.two_live == []
    assert v2.intent_id not in world.stored()

    world.flush()
    # The audit: the cancel, then the replacement's placement, then its acknowledgement.
    cancel, submitting = world.trail("ORDER_CANCEL_REQUESTED", "ORDERS_SUBMITTING")[-2:]
    assert cancel.action == "ORDER_CANCEL_REQUESTED" and cancel.seq < submitting.seq
    assert cancel.details == {"intent_id": v1.intent_id, "why": "reprice to 199"}
    [details] = submitting.details["orders"]
    assert (details["intent_id"], details["state"], details["limit_price_cents"]) == (v2.intent_id, "SUBMITTING", 199)
    assert world.stored()[v1.intent_id].state is OrderState.CANCELLED
    assert world.stored()[v2.intent_id].state is OrderState.WORKING
    assert AuditService(world.store).verify(world.account_id).ok


def test_a_new_version_waits_its_own_delay_before_the_next_reprice(world: World) -> None:
    v1 = world.enter()
    world.step_at(t(3))
    assert not world.step_at(t(5)).repriced  # v2 was placed at 10:00:03: its delay runs from there
    [v3] = world.step_at(t(6)).repriced
    assert v3.intent_id == version(v1, 3) and v3.request.limit_price_cents == 198
    assert world.limits() == [200, 199, 198] and len(world.live()) == 1
    assert world.broker.two_live == []


# --------------------------------------------------------------------------------------------------
# 2. Where repricing stops: the concession bound or the touch
# --------------------------------------------------------------------------------------------------


def test_repricing_stops_at_the_concession_bound_and_the_limit_then_rests_until_the_timeout(world: World) -> None:
    v1 = world.enter()
    delay = RULES.reprice_after_seconds
    seconds = delay
    while seconds < RULES.timeout_seconds:  # a step every delay, as a protocol run does
        world.step_at(t(seconds))
        seconds += delay
    steps = 200 - BOUND  # one cent per reprice, 2.00 -> 1.90: ten reprices
    assert world.limits() == list(range(200, BOUND - 1, -1))
    assert len(world.broker.placed()) == steps + 1 and len(world.broker.cancelled()) == steps
    [live] = world.live()
    assert live.client_ref == version(v1, steps + 1) and live.request.limit_price_cents == BOUND
    # every step after the bound was reached (10:00:30) left the order alone: no cancel, no new version
    assert all(c.at is not None and c.at <= t(steps * delay) for c in world.broker.calls)
    assert world.broker.two_live == []


def test_the_concession_bound_is_measured_from_the_first_quote_not_the_current_one(world: World) -> None:
    world.enter()
    world.step_at(t(3))
    world.board.pin(PUT_199, (150, 190))  # the market falls: current mid 1.70, whose 5 % bound would be 1.62
    for k in range(2, 20):
        world.step_at(t(3 * k))
    assert min(world.limits()) == BOUND  # 5 % under the entry's 2.00 reference mid, not under the current mid
    assert world.limits() == list(range(200, BOUND - 1, -1))


def test_the_accounts_step_ticks_and_concession_are_the_ones_applied(store: DynamoAccountStore, tmp_path: Path) -> None:
    orders = {"orders": {"reprice_step_ticks": 2, "max_price_concession_pct": "0.03"}}
    world = World(store, tmp_path, account_overrides=orders)
    world.enter()
    for k in range(1, 20):
        world.step_at(t(3 * k))
    assert world.limits() == [200, 198, 196, 194]  # two cents a reprice, down to 3 % under the 2.00 mid
    assert world.broker.two_live == []


def test_above_three_dollars_a_reprice_moves_one_nickel_and_the_bound_is_on_that_grid(
    store: DynamoAccountStore, tmp_path: Path
) -> None:
    world = World(store, tmp_path, entry=(400, 410), after_entry=(360, 450))
    world.enter(limit=405)
    for k in range(1, 20):
        world.step_at(t(3 * k))
    assert world.limits() == [405, 400, 395, 390, 385]  # 5 % under 4.05 is 3.8475: 3.85 on the nickel grid
    assert all(o.status is not OrderStatus.REJECTED for o in world.broker_orders())  # every limit on the grid
    assert world.broker.two_live == []


@pytest.mark.parametrize(
    ("step_ticks", "limits"), [(1, [200, 199, 198, 197, 196]), (3, [200, 197, 196])], ids=["one-tick", "three-ticks"]
)
def test_repricing_stops_at_the_bid_where_the_order_fills(
    store: DynamoAccountStore, tmp_path: Path, step_ticks: int, limits: list[int]
) -> None:
    overrides = {"orders": {"reprice_step_ticks": step_ticks}}
    world = World(store, tmp_path, after_entry=ENTRY, account_overrides=overrides)  # the bid stays at 1.96
    v1 = world.enter()
    fills = []
    for k in range(1, 10):
        fills += world.step_at(t(3 * k)).fills
    assert world.limits() == limits  # never below the touch (1.96, above the 1.90 bound)
    *cancelled, last = world.broker_orders()
    assert all(o.status is OrderStatus.CANCELLED and o.filled_quantity == 0 for o in cancelled)
    assert last.status is OrderStatus.FILLED and last.filled_quantity == v1.request.quantity
    assert sum(e.quantity for _, e in fills) == v1.request.quantity and {e.price_cents for _, e in fills} == {196}
    assert world.broker.two_live == []


# --------------------------------------------------------------------------------------------------
# 3. The timeout: from the first placement, across versions; the week's entry is not placed again
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("carry_state", [True, False], ids=["carried", "reads-the-store-every-step"])
def test_the_timeout_runs_from_the_first_placement_across_versions_and_the_entry_is_not_placed_again(
    world: World, carry_state: bool
) -> None:
    cycle = world.new_cycle(carry_state=carry_state)
    v1 = world.enter(cycle)
    seconds = RULES.reprice_after_seconds
    while seconds < RULES.timeout_seconds:
        report = world.step_at(t(seconds), cycle)
        assert not report.timed_out and report.working
        seconds += RULES.reprice_after_seconds
    last = version(v1, 200 - BOUND + 1)  # placed at 10:00:30: its own 60 s would end at 10:01:30
    assert [o.client_ref for o in world.live()] == [last]
    assert not world.step_at(t(RULES.timeout_seconds - 1), cycle).timed_out

    report = world.step_at(t(RULES.timeout_seconds), cycle)

    [timed_out] = report.timed_out
    assert timed_out.intent_id == last and not report.repriced and not report.placed and not report.working
    assert world.broker.cancelled()[-1] == last and world.broker.placed()[-1] == last  # no version after it
    assert world.live() == []
    if carry_state:
        cycle.release([world.account_id])  # a carried run writes the cancel with its next write
    assert world.stored()[last].state is OrderState.CANCELLED
    [cancel] = [r for r in world.trail("ORDER_CANCEL_REQUESTED") if r.details["intent_id"] == last]
    assert cancel.details["why"] == f"timed out after {RULES.timeout_seconds} s"
    # Later in the week (inside Thursday's entry window, then afresh from the store), with a spread the
    # risk engine would accept again: the week's TSLA entry is not placed a second time.
    world.board.pin(PUT_199, ENTRY)
    placed_before = world.broker.placed()
    for when in (at(THU, 10, 15), at(THU, 10, 45)):
        later = world.step_at(when, cycle)
        assert not later.placed and not later.denied and not later.repriced and not later.working
    fresh = world.step_at(at(THU, 10, 59), world.new_cycle(carry_state=False))
    assert not fresh.placed and not fresh.denied and world.broker.placed() == placed_before
    assert {intent_stem(o.client_ref) for o in world.broker_orders()} == {intent_stem(v1.intent_id)}
    assert world.broker.two_live == []


def test_a_fill_that_wins_the_race_against_the_reprice_cancel_is_booked_and_not_replaced(world: World) -> None:
    v1 = world.enter()
    world.broker.before_cancel = lambda: world.fill_now(200)  # the fill reaches the broker before the cancel

    report = world.step_at(t(3))

    assert not report.repriced and not report.timed_out and not report.working
    assert world.broker.placed() == [v1.intent_id] and world.broker.cancelled() == [v1.intent_id]
    [at_broker] = world.broker_orders()
    assert at_broker.status is OrderStatus.FILLED and world.live() == []
    world.broker.before_cancel = lambda: None
    later = world.step_at(t(6))
    assert sum(e.quantity for _, e in later.fills) == v1.request.quantity  # booked once, at the next step
    assert not later.repriced and not later.placed
    world.flush()
    assert world.stored()[v1.intent_id].state is OrderState.FILLED
    assert world.store.get(world.account_id).sleeve(GEN).positions.get(PUT_199) == -v1.request.quantity
    assert world.mismatches() == []


def test_an_order_that_fills_as_it_times_out_is_not_reported_as_timed_out(world: World) -> None:
    v1 = world.enter()
    for k in range(1, RULES.timeout_seconds // RULES.reprice_after_seconds):
        world.step_at(t(RULES.reprice_after_seconds * k))
    last = version(v1, 200 - BOUND + 1)
    world.broker.before_cancel = lambda: world.fill_now(BOUND)  # the fill reaches the broker before the cancel

    report = world.step_at(t(RULES.timeout_seconds))

    assert world.broker.cancelled()[-1] == last  # the timeout's cancel went out...
    assert world.paper.order_by_ref(world.brokerage_id, last).status is OrderStatus.FILLED  # type: ignore[union-attr]
    assert not report.repriced and not report.working  # ...and the order filled: nothing timed out
    assert [(o.intent_id, o.state) for o in report.timed_out] == []


# --------------------------------------------------------------------------------------------------
# 4. A partial fill, then a reprice: the next version is the remainder only
# --------------------------------------------------------------------------------------------------


def partially_filled_entry(world: World) -> ManagedOrder:
    """The entry, one contract of it filled at 10:00:01 (the bid touched the limit for a moment)."""
    v1 = world.enter()
    world.board.pin(PUT_199, (200, 220), since=t(1))  # the bid touches the limit for a moment
    world.board.pin(PUT_199, WIDE, since=t(2))
    world.clock.advance_to(t(1))
    world.paper.step()  # max_fill_per_step=1: one contract fills
    assert world.paper.order_by_ref(world.brokerage_id, v1.intent_id).filled_quantity == 1  # type: ignore[union-attr]
    return v1


@pytest.fixture
def partial_world(store: DynamoAccountStore, tmp_path: Path) -> World:
    return World(store, tmp_path, settings=PaperBrokerSettings(passive_fill_fraction=Decimal(0), max_fill_per_step=1))


def test_a_partial_fill_then_a_reprice_replaces_only_the_remainder_and_books_nothing_twice(
    store: DynamoAccountStore, tmp_path: Path
) -> None:
    world = World(store, tmp_path, settings=PaperBrokerSettings(passive_fill_fraction=Decimal(0), max_fill_per_step=1))
    v1 = partially_filled_entry(world)
    quantity = v1.request.quantity

    report = world.step_at(t(3))

    assert [e.quantity for _, e in report.fills] == [1]  # v1's fill booked first
    [v2] = report.repriced
    assert v2.request.quantity == quantity - 1 and v2.request.limit_price_cents == 199
    v1_at_broker, _ = world.broker_orders()
    assert v1_at_broker.status is OrderStatus.CANCELLED and v1_at_broker.filled_quantity == 1

    world.board.pin(PUT_199, (199, 220))  # now v2 is marketable: it fills one contract per broker step
    fills = list(report.fills)
    for k in range(4, 4 + quantity + 2):
        world.clock.advance_to(t(k))
        world.paper.step()
        fills += world.step_at(t(k)).fills
    world.flush()

    versions = world.broker_orders()
    assert [o.request.quantity for o in versions] == [quantity, quantity - 1]  # no third version
    assert [o.filled_quantity for o in versions] == [1, quantity - 1]
    assert versions[-1].status is OrderStatus.FILLED
    assert sum(e.quantity for _, e in fills) == quantity  # booked across versions: the order's quantity, once
    executions = world.paper.executions(world.brokerage_id)
    assert sum(e.quantity for e in executions) == quantity
    account = world.store.get(world.account_id)
    assert account.executions_booked == len(executions)
    assert account.sleeve(GEN).positions.get(PUT_199) == -quantity
    stored = world.stored()
    assert sum(stored[o.client_ref].filled_quantity for o in versions) == quantity
    assert world.mismatches() == []
    assert world.broker.two_live == []


# --------------------------------------------------------------------------------------------------
# 5. A crash between the cancel and the replacement
# --------------------------------------------------------------------------------------------------


def test_a_crash_between_the_cancel_and_the_replacement_leaves_no_second_live_order_and_loses_no_fill(
    partial_world: World,
) -> None:
    world = partial_world
    v1 = partially_filled_entry(world)
    quantity = v1.request.quantity
    world.broker.crash = lambda kind, ref: kind == "cancelled"
    with pytest.raises(SystemExit):
        world.step_at(t(3))  # the broker cancelled v1; the process died before v2 was saved or placed
    world.broker.crash = lambda kind, ref: False
    assert world.stored()[v1.intent_id].state is OrderState.SUBMITTING  # the carried run wrote only that

    fresh = world.new_cycle(carry_state=False)  # the restart reads the store
    report = world.step_at(t(4), fresh)

    assert [e.quantity for _, e in report.fills] == [1]  # the fill under v1 booked, once
    assert not report.placed  # the week's entry is not placed again
    stored = world.stored()[v1.intent_id]
    assert stored.state is OrderState.CANCELLED and stored.filled_quantity == 1  # the broker's CANCELLED adopted
    for when in [*(t(s) for s in range(6, 64, 3)), at(THU, 10, 30)]:
        world.step_at(when, fresh)
        assert len(world.live()) <= 1
    # Whatever the restart does with the rest (today: nothing), it is the same intent and the remainder only.
    versions = world.broker_orders()
    assert {intent_stem(o.client_ref) for o in versions} == {intent_stem(v1.intent_id)}
    assert world.broker.placed().count(v1.intent_id) == 1
    assert all(o.request.quantity == quantity - 1 for o in versions[1:])
    assert sum(o.filled_quantity for o in versions) <= quantity
    account = world.store.get(world.account_id)
    executions = world.paper.executions(world.brokerage_id)
    assert account.executions_booked == len(executions)
    assert -account.sleeve(GEN).positions.get(PUT_199, 0) == sum(e.quantity for e in executions)
    assert world.mismatches() == []
    assert world.broker.two_live == []


def test_a_lost_memory_between_reprices_goes_on_from_the_store_and_the_broker(world: World) -> None:
    v1 = world.enter()
    for k in (1, 2, 3):
        world.step_at(t(3 * k))  # the carried run: v4 at 1.97 placed at 10:00:09
    fresh = world.new_cycle(carry_state=False)  # the carried memory is lost; the next step reads the store
    [v5] = world.step_at(t(12), fresh).repriced
    assert v5.intent_id == version(v1, 5) and v5.request.limit_price_cents == 196 and v5.started_at == t(0)
    for k in range(5, 20):
        world.step_at(t(3 * k), fresh)
    assert not world.step_at(t(59), fresh).timed_out
    [timed_out] = world.step_at(t(60), fresh).timed_out  # still 60 s from the first placement
    assert timed_out.intent_id == version(v1, 11) and world.live() == []
    assert world.limits() == list(range(200, BOUND - 1, -1))
    assert world.broker.two_live == []


def crash_around_the_replacement(world: World, when: str) -> tuple[ManagedOrder, str]:
    """A partly filled entry, then the process dies as its reprice v2 is being placed ("placing") or
    just after the broker took it ("placed"); the entry and v2's ref."""
    v1 = partially_filled_entry(world)
    v2_ref = version(v1, 2)
    world.broker.crash = lambda kind, ref: kind == when and ref == v2_ref
    with pytest.raises(SystemExit):
        world.step_at(t(3))
    world.broker.crash = lambda kind, ref: False
    return v1, v2_ref


def test_a_crash_after_the_broker_took_the_replacement_adopts_it_from_the_broker(partial_world: World) -> None:
    """The replacement of an entry is written behind: the store has not heard of v2 when the carried
    memory is lost, and the broker's order under v2 (same intent, no more than it asked) is adopted."""
    world = partial_world
    v1, v2_ref = crash_around_the_replacement(world, "placed")
    assert v2_ref not in world.stored()

    fresh = world.new_cycle(carry_state=False)
    report = world.step_at(t(4), fresh)

    assert not report.placed and not report.repriced and not report.problems  # adopted, not an orphan
    [live] = world.live()
    assert live.client_ref == v2_ref and live.request.quantity == v1.request.quantity - 1
    stored = world.stored()
    assert stored[v2_ref].state is OrderState.WORKING and stored[v1.intent_id].state is OrderState.CANCELLED
    assert world.broker.placed().count(v2_ref) == 1
    account = world.store.get(world.account_id)
    assert account.executions_booked == 1 and account.sleeve(GEN).positions.get(PUT_199) == -1  # booked once
    assert world.mismatches() == []
    assert world.broker.two_live == []


def test_a_replacement_filled_before_memory_came_back_is_adopted_and_booked_once(partial_world: World) -> None:
    """v2 (written behind) is placed, memory is lost, and v2 fills before the next step: the broker no
    longer lists it as open, but its fill names it, so it is adopted from the broker's record and booked."""
    world = partial_world
    v1, v2_ref = crash_around_the_replacement(world, "placed")
    world.board.pin(PUT_199, (199, 220), since=t(4))  # v2 (at 1.99) is marketable now
    world.clock.advance_to(t(4))
    while world.paper.order_by_ref(world.brokerage_id, v2_ref).status is not OrderStatus.FILLED:  # type: ignore[union-attr]
        world.paper.step()
    assert v2_ref not in world.stored() and world.live() == []

    report = world.step_at(t(5), world.new_cycle(carry_state=False))

    assert not report.problems and not report.placed
    assert world.stored()[v2_ref].state is OrderState.FILLED
    account = world.store.get(world.account_id)
    executions = world.paper.executions(world.brokerage_id)
    assert account.executions_booked == len(executions) and len(executions) == v1.request.quantity
    assert account.sleeve(GEN).positions.get(PUT_199) == -v1.request.quantity  # every contract once
    assert world.mismatches() == []


def test_a_replacement_is_adopted_even_when_the_version_before_it_was_written_final(world: World) -> None:
    """Another write of the same pass (an exit's, written first) took the entry's cancelled v1 with it while
    v2 waited in memory, and the memory was lost: v2 is adopted from the final v1 it continues, not taken
    for an orphan that would hold up every later booking."""
    v1 = world.enter()
    world.step_at(t(3))  # the reprice: v1 cancelled, v2 placed, both written behind
    v2_ref = version(v1, 2)
    final_v1 = apply_broker_order(
        world.stored()[v1.intent_id],
        world.paper.order_by_ref(world.brokerage_id, v1.intent_id),
        t(3),  # type: ignore[arg-type]
    )
    assert final_v1.state is OrderState.CANCELLED and v2_ref not in world.stored()
    world.store.commit(AccountChange(account=world.store.get(world.account_id), audit=(), orders=[final_v1]))

    report = world.step_at(t(4), world.new_cycle(carry_state=False))

    assert not report.problems
    assert world.stored()[v2_ref].state is OrderState.WORKING
    assert [o.client_ref for o in world.live()] == [v2_ref] and world.broker.two_live == []


def test_a_crash_before_the_broker_took_the_replacement_ends_the_entry_like_a_timeout(partial_world: World) -> None:
    """v1 was cancelled and v2 never reached the broker: the rest of the entry is not made (as when it
    times out); what filled is booked once and the intent is never placed again."""
    world = partial_world
    v1, v2_ref = crash_around_the_replacement(world, "placing")

    fresh = world.new_cycle(carry_state=False)
    for k in (4, 7, 60):
        report = world.step_at(t(k), fresh)
        assert not report.placed and not report.repriced

    assert world.live() == [] and world.paper.order_by_ref(world.brokerage_id, v2_ref) is None
    assert world.stored()[v1.intent_id].state is OrderState.CANCELLED
    account = world.store.get(world.account_id)
    assert account.executions_booked == 1 and account.sleeve(GEN).positions.get(PUT_199) == -1
    assert world.mismatches() == []


# --------------------------------------------------------------------------------------------------
# 6. The protocol run: accounts with resting orders step every reprice delay until the timeout
# --------------------------------------------------------------------------------------------------


def run_thursday(world: World, other: Account) -> tuple[Recording, ProtocolRun]:
    cycle = world.new_cycle(carry_state=True, cls=Recording)
    assert isinstance(cycle, Recording)
    cycle.times_of = world.clock
    cfg = world.configuration.effective()
    run = ProtocolRun(cycle, world.board, world.calendar, world.clock.advance_to, cfg, step_broker=world.paper.step)
    [first, second] = run.run([world.accounts[0], other], MON, 1)
    assert first.failure is None and second.failure is None
    return cycle, run


def thursday(hour: int, minute: int, second: int = 0) -> datetime:
    return at(THU, hour, minute, second)


def test_the_run_steps_an_account_with_a_resting_order_every_reprice_delay_until_the_timeout(
    store: DynamoAccountStore, tmp_path: Path
) -> None:
    overrides = {
        "orders": {"reprice_after_seconds": 10, "timeout_seconds": 30},
        "atr_protocol": {"scan_interval_minutes": 390},  # moments: the open, the entry windows, after the close
    }
    world = World(store, tmp_path, global_overrides=overrides, calendar=ONLY_THURSDAY, start=at(MON, 9))
    other = world.open_account({"gen": {"tickers": ["AMD"]}})  # nothing listed to trade: never rests

    cycle, run = run_thursday(world, other)

    moments = [thursday(9, 30), thursday(10, 0), thursday(16, 1)]
    assert cycle.stepped[other.account_id] == moments
    sub_steps = [thursday(10, 0, 10), thursday(10, 0, 20), thursday(10, 0, 30)]  # the last one times it out
    assert cycle.stepped[world.account_id] == [*moments[:2], *sub_steps, moments[2]]
    assert cycle.worked[world.account_id] == sub_steps  # orders only: scans and entries keep the moments
    assert world.limits() == [200, 199, 198]
    assert run.events["repriced"] == 2 and run.events["timed out"] == 1
    assert world.live() == [] and world.broker.two_live == []


def test_working_orders_between_moments_books_and_watches_a_fill_but_neither_scans_nor_enters(world: World) -> None:
    v1 = world.enter()
    world.clock.advance_to(t(1))
    world.fill_now(200)  # the entry fills at 10:00:01 with TSLA at $200

    world.clock.advance_to(t(3))
    report = world.cycle.work(world.account_id)

    assert [e.client_ref for _, e in report.fills] == [v1.intent_id]
    assert report.account is not None
    watch = report.account.protocol.watches[watch_key(GEN, PUT_199)]
    assert watch.entry_underlying_cents == 200_00  # watched from its fill now, not from the next scan's price
    assert not report.placed and not report.repriced
    world.board.move("TSLA", 187.0)  # 3.25 ATR against the put
    world.clock.advance_to(t(6))
    assert not world.cycle.work(world.account_id).level_changes  # no scan between moments ...
    later = world.step_at(at(THU, 10, 15))  # ... the next moment's scan sees it
    assert [c.to_level for c in later.level_changes] == [AtrLevel.L3]


def test_the_run_stops_sub_stepping_at_the_next_moment_and_resumes_after_it(
    store: DynamoAccountStore, tmp_path: Path
) -> None:
    overrides = {"orders": {"reprice_after_seconds": 240, "timeout_seconds": 1200}}  # 4 and 20 minutes
    world = World(store, tmp_path, global_overrides=overrides, calendar=ONLY_THURSDAY, start=at(MON, 9))
    other = world.open_account({"gen": {"tickers": ["AMD"]}})

    cycle, run = run_thursday(world, other)

    moments = [thursday(9, 30) + timedelta(minutes=15 * k) for k in range(26)] + [thursday(16, 1)]
    assert cycle.stepped[other.account_id] == moments
    off_schedule = [s for s in cycle.stepped[world.account_id] if s not in moments]
    # from 10:00 every 4 minutes until 10:15 comes; from 10:15 again, until the step after 10:20 cancels
    assert off_schedule == [thursday(10, m) for m in (4, 8, 12, 19, 23)]
    assert sorted(cycle.stepped[world.account_id]) == sorted([*moments, *off_schedule])
    assert world.limits() == [200, 199, 198, 197, 196]
    assert run.events["repriced"] == 4 and run.events["timed out"] == 1
    assert world.live() == [] and world.broker.two_live == []


# --------------------------------------------------------------------------------------------------
# A protective close that times out
# --------------------------------------------------------------------------------------------------


def test_an_l3_close_that_times_out_is_not_silently_dropped(world: World) -> None:
    v1 = world.enter()
    world.clock.advance_to(t(1))
    world.fill_now(200)  # the whole entry fills at the 2.00 limit
    world.step_at(at(THU, 10, 15))  # booked; the first scan watches the put from TSLA at $200
    quantity = v1.request.quantity
    world.board.move("TSLA", 187.0)  # 3.25 ATR against the short put: L3, close it
    world.board.pin(PUT_199, (1200, 1220), since=at(THU, 10, 30))

    def ask_lifts(ref: str) -> None:  # as the close goes out, the offer lifts out of its reach
        if intent_purpose(ref) == "STOP":
            world.board.pin(PUT_199, (1300, 1340))

    world.broker.before_place = ask_lifts
    report = world.step_at(at(THU, 10, 30))
    [close] = report.protective
    assert close.request.limit_price_cents == 1220 and close.state is OrderState.WORKING and report.working
    world.broker.before_place = lambda ref: None
    start = at(THU, 10, 30)
    seconds = RULES.reprice_after_seconds
    while seconds <= RULES.timeout_seconds:
        report = world.step_at(start + timedelta(seconds=seconds))
        seconds += RULES.reprice_after_seconds
    assert [intent_stem(o.intent_id) for o in report.timed_out] == [close.stem]  # cancelled at the timeout
    assert world.store.get(world.account_id).sleeve(GEN).positions.get(PUT_199) == -quantity  # still short
    for when in (at(THU, 10, 45), at(THU, 11), at(THU, 12)):
        world.step_at(when)
    closes = [r for r in world.broker.placed() if intent_purpose(r) == "STOP" and intent_stem(r) != close.stem]
    timed_out_at = start + timedelta(seconds=RULES.timeout_seconds)
    named = (close.stem, PUT_199.symbol)
    told = [a for a in world.desk.raised if a.at >= timed_out_at and any(n in a.title + a.body for n in named)]
    assert closes or told  # closed again later, or a human told the close was given up
