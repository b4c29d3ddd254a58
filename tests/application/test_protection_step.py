"""The step's protection (A5, A6) on the embedded world: a hand-moved market, the paper broker, the real
store on moto.

The market (`Tape`) is the test's: each ticker's spot is set from an instant on, its ATR is fixed (daily
bars of one constant true range), and its chains are the simulator's chain model priced at the spot, plus
any quote the test lists by hand (a roll target). Steps run on a carried cycle, as a protocol run does.

TSLA trades at $200 with a $4 ATR (L1 at 196, L2 at 192, L3 at 188 from a $200 entry), NVDA at $150
with a $3 ATR; Gen-Acc sells their at-the-money puts on Thursday at 10:00.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
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
from alluse.application.ports import AccountChange
from alluse.application.trading import StepReport, TradingCycle
from alluse.domain.accounts import AccountStatus, ProtocolState, Watch
from alluse.domain.alerts import Alert, AlertType, Priority
from alluse.domain.atr_protocol import AtrLevel
from alluse.domain.audit import AuditRecord
from alluse.domain.brokerage import BrokerOrder, OrderRequest, Side
from alluse.domain.errors import MarketDataGap
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.ledger import broker_mismatches
from alluse.domain.market import NEW_YORK, DailyBars, IntradayBars, OptionChain
from alluse.domain.orders import ManagedOrder, OrderState, intent_purpose
from alluse.domain.protection import watch_key
from alluse.domain.risk import BreakerKind
from alluse.domain.sleeves import SleeveKind
from tests.conftest import new_account
from tests.fakes import FakeCalendar, RecordingDesk

GEN, REV = SleeveKind.GEN, SleeveKind.REV
PUT = OptionRight.PUT
THU, FRI, NEXT_MON = date(2026, 12, 3), date(2026, 12, 4), date(2026, 12, 7)
NEXT_WED = date(2026, 12, 9)  # inside Gen's roll window (1-7 days after Friday), listed by no weekly
FRIDAYS = [date(2026, 11, 27) + timedelta(weeks=n) for n in range(8)]  # the weeklies the chains list
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
PLACE = {"hitl": {"premium_floor_policy": "place"}}  # the default "ask" places nothing below the floor
LISTED = {"TSLA": (200.0, 4.0), "NVDA": (150.0, 3.0)}  # spot, ATR


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


class Tape:
    """A market moved by hand (see the module doc); it answers at any instant up to the clock's."""

    def __init__(self, clock: SimulatedClock) -> None:
        self._clock = clock
        self._spots: dict[str, list[tuple[datetime, float]]] = {}
        self._atrs: dict[str, float] = {}
        self._hand: dict[str, list[tuple[OptionContract, int, int, float]]] = {}
        self._chains: dict[tuple[str, datetime, float, int], OptionChain] = {}
        self._index: dict[str, float] = {}

    def list(self, ticker: str, spot: float, atr: float) -> None:
        self._spots[ticker] = [(LONG_AGO, spot)]
        self._atrs[ticker] = atr

    def list_index(self, ticker: str, last_week_return: float) -> None:
        """An index flat at 100 until the week before this one, which returns `last_week_return`."""
        self.list(ticker, 100.0 * (1 + last_week_return), 1.0)
        self._index[ticker] = last_week_return

    def move(self, ticker: str, spot: float) -> None:
        self._spots[ticker].append((self._clock.now(), spot))

    def quote(self, contract: OptionContract, bid_cents: int, ask_cents: int, delta: float) -> None:
        """List one more contract of the underlying, quoted by hand."""
        self._hand.setdefault(contract.underlying, []).append((contract, bid_cents, ask_cents, delta))

    # --- MarketData ---
    def tickers(self) -> tuple[str, ...]:
        return tuple(sorted(self._spots))

    def price(self, ticker: str, at: datetime) -> float:
        if ticker not in self._spots or at > self._clock.now():
            raise MarketDataGap(f"no price for {ticker} at {at}", field="ticker")
        return [spot for since, spot in self._spots[ticker] if since <= at][-1]

    def daily_bars(self, ticker: str, *, through: date) -> DailyBars:
        close = self.price(ticker, min(self._clock.now(), at(through, 16)))
        days = np.array([np.datetime64(through, "D") - np.timedelta64(n, "D") for n in range(89, -1, -1)])
        days = days[np.is_busday(days)]
        closes = np.full(days.shape[0], close)
        if ticker in self._index:
            monday = np.datetime64(through - timedelta(days=through.weekday()), "D")
            closes = np.where(days < monday - np.timedelta64(7, "D"), 100.0, close)
        half = self._atrs[ticker] / 2  # every true range is the ATR
        volume = np.full(days.shape[0], 1_000_000)
        return DailyBars(ticker, days, closes, closes + half, closes - half, closes, volume)

    def intraday_bars(self, ticker: str, session: date) -> IntradayBars:
        raise MarketDataGap("the tape has no intraday bars")

    def chain(self, ticker: str, at: datetime) -> OptionChain:
        spot = self.price(ticker, at)
        hand = [h for h in self._hand.get(ticker, []) if h[0].expiry >= at.astimezone(NEW_YORK).date()]
        key = (ticker, at, spot, len(hand))
        if key not in self._chains:
            self._chains[key] = _with_rows(generate_chain(ticker, at, spot, 0.35, FRIDAYS, ChainSettings(), 11), hand)
        return self._chains[key]


def _with_rows(chain: OptionChain, rows: list[tuple[OptionContract, int, int, float]]) -> OptionChain:
    if not rows:
        return chain

    def column(name: str, values: list[Any], dtype: Any) -> Any:
        return np.concatenate([getattr(chain, name), np.array(values, dtype=dtype)])

    n = len(rows)
    return replace(
        chain,
        expiry=column("expiry", [np.datetime64(c.expiry, "D") for c, *_ in rows], "datetime64[D]"),
        strike_cents=column("strike_cents", [c.strike_cents for c, *_ in rows], np.int64),
        is_call=column("is_call", [c.right is OptionRight.CALL for c, *_ in rows], np.bool_),
        bid_cents=column("bid_cents", [r[1] for r in rows], np.int64),
        ask_cents=column("ask_cents", [r[2] for r in rows], np.int64),
        iv=column("iv", [0.35] * n, np.float64),
        delta=column("delta", [r[3] for r in rows], np.float64),
        gamma=column("gamma", [0.0] * n, np.float64),
        theta=column("theta", [0.0] * n, np.float64),
        vega=column("vega", [0.0] * n, np.float64),
        open_interest=column("open_interest", [10_000] * n, np.int64),
        volume=column("volume", [10_000] * n, np.int64),
    )


class Crashing:
    """The paper broker, except that while armed it takes a protective order and the process dies."""

    def __init__(self, broker: PaperBroker) -> None:
        self._broker = broker
        self.armed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._broker, name)

    def place_order(self, brokerage_id: str, request: OrderRequest) -> BrokerOrder:
        placed = self._broker.place_order(brokerage_id, request)
        if self.armed and intent_purpose(request.client_ref) != "OPEN":
            raise SystemExit("crash between placing a protective order and saving its acknowledgement")
        return placed


class World:
    def __init__(
        self,
        store: DynamoAccountStore,
        tmp_path: Path,
        overrides: Mapping[str, Any] | None = None,
        *,
        listed: Mapping[str, tuple[float, float]] = LISTED,
        carry_state: bool = True,
        settings: PaperBrokerSettings | None = None,
    ) -> None:
        self.clock = SimulatedClock(at(THU, 10))
        self.tape = Tape(self.clock)
        for ticker, (spot, atr) in listed.items():
            self.tape.list(ticker, spot, atr)
        self.calendar = FakeCalendar()
        self.paper = PaperBroker(self.tape, self.calendar, self.clock, settings)
        self.broker = Crashing(self.paper)
        self.store = store
        self.desk = RecordingDesk(FileNotifier(tmp_path / "alerts.jsonl", log=False))
        self.cycle = self.new_cycle(carry_state=carry_state)
        request = new_account(brokerage_id="DU5000000", overrides={**PLACE, **(overrides or {})})
        account = AccountService(store, self.clock).create(request, actor="t")
        self.paper.open_account(account.brokerage_id or "", account.cash_cents)
        self.account_id = account.account_id
        self.brokerage_id = account.brokerage_id or ""
        self.held: dict[OptionContract, int] = {}  # Gen's short puts after `enter`

    def new_cycle(self, *, carry_state: bool) -> TradingCycle:
        return TradingCycle(
            self.store,
            self.broker,  # type: ignore[arg-type]
            self.tape,
            self.calendar,
            self.clock,
            self.desk,
            carry_state=carry_state,
        )

    def move_to(self, day: date, hour: int, minute: int = 0, **spots: float) -> None:
        self.clock.advance_to(at(day, hour, minute))
        for ticker, spot in spots.items():
            self.tape.move(ticker, spot)

    def step(self, cycle: TradingCycle | None = None) -> StepReport:
        return (cycle or self.cycle).step(self.account_id)

    def enter(self) -> dict[str, OptionContract]:
        """Thursday 10:00: Gen sells its puts; 10:15: the first scan watches them. The short puts by ticker."""
        placed = self.step().placed
        assert placed and all(o.state is OrderState.FILLED for o in placed)
        self.move_to(THU, 10, 15)
        report = self.step()
        assert not report.level_changes and not report.protective
        self.held = self.gen_positions(report)
        shorts = {c.underlying: c for c, q in self.held.items() if q < 0}
        assert set(report.account.protocol.watches) == {watch_key(GEN, c) for c in shorts.values()}  # type: ignore[union-attr]
        return shorts

    @staticmethod
    def gen_positions(report: StepReport) -> dict[OptionContract, int]:
        assert report.account is not None
        return {i: q for i, q in report.account.sleeve(GEN).positions.items() if isinstance(i, OptionContract)}

    def broker_orders(self, *purposes: str) -> list[BrokerOrder]:
        orders = self.paper.orders(self.brokerage_id)
        return [o for o in orders if not purposes or intent_purpose(o.client_ref) in purposes]

    def trail(self, action: str) -> list[AuditRecord]:
        return [r for r in AuditService(self.store).trail(self.account_id) if r.action == action]

    def alerts(self, title: str) -> list[Alert]:
        return [a for a in self.desk.raised if a.title.startswith(title)]

    def ask(self, contract: OptionContract) -> int:
        quote = self.tape.chain(contract.underlying, self.clock.now()).find(contract)
        assert quote is not None
        return quote.ask_cents

    def mismatches(self, report: StepReport) -> list[str]:
        """Sleeves against the broker, as the step left the account (a carried run writes behind)."""
        assert report.account is not None
        return broker_mismatches(report.account, self.paper.account(self.brokerage_id))

    def flush(self) -> None:
        """Releasing the account writes what the carried run held back."""
        self.cycle.release([self.account_id])


@pytest.fixture
def world(store: DynamoAccountStore, tmp_path: Path) -> World:
    return World(store, tmp_path)


def purposes(orders: Sequence[ManagedOrder | BrokerOrder]) -> list[str]:
    """The purpose part of each order's intent id: OPEN, STOP, RLCL, RLOP."""
    return [intent_purpose(o.client_ref if isinstance(o, BrokerOrder) else o.intent_id) for o in orders]


# --------------------------------------------------------------------------------------------------
# Levels and their automatic actions (A5)
# --------------------------------------------------------------------------------------------------


def test_one_atr_against_a_short_put_raises_l1_with_its_action_plan_and_places_nothing(world: World) -> None:
    shorts = world.enter()
    world.move_to(THU, 10, 30, TSLA=195.0)  # 1.25 ATR below the $200 entry
    report = world.step()

    [change] = report.level_changes
    key = watch_key(GEN, shorts["TSLA"])
    assert (change.position_id, change.from_level, change.to_level) == (key, AtrLevel.L0, AtrLevel.L1)
    assert not report.protective and not report.placed
    assert len(world.broker_orders()) == 2  # the two entries, nothing protective
    assert report.account is not None and report.account.protocol.watches[key] == Watch(200_00, 1)
    [alert] = world.alerts("ATR L0→L1")
    assert alert.type is AlertType.PROTOCOL_BREACH and alert.priority is Priority.MEDIUM
    assert shorts["TSLA"].symbol in alert.title
    assert "Prepare (do not yet place) the roll" in alert.body  # the action plan travels with the alert
    assert "L2 (Recovery) starts at underlying ≤ $192.00" in alert.body
    world.flush()
    [event] = world.trail("ATR_LEVEL_CHANGED")
    assert event.details == {
        "position": key,
        "from": 0,
        "to": 1,
        "atr_multiple": "1.25",
        "action": "alert",
        "automatic": False,
    }


def test_two_atr_with_a_roll_for_a_credit_buys_back_then_sells_the_new_leg(world: World) -> None:
    shorts = world.enter()
    old = shorts["TSLA"]
    world.move_to(THU, 10, 30, TSLA=191.0)  # 2.25 ATR
    ask = world.ask(old)
    new = OptionContract("TSLA", NEXT_WED, old.strike_cents - 5_00, PUT)  # lower strike, later, in Gen's band
    bid = -(-(ask + 100) // 10) * 10  # a dollar above the buy-back, on the tick grid
    world.tape.quote(new, bid, bid + 10, -0.45)

    report = world.step()

    [change] = report.level_changes
    assert change.to_level is AtrLevel.L2 and change.action.action == "roll_or_close"
    contracts = -world.held[old]
    buy_back, new_leg = report.protective
    assert purposes(report.protective) == ["RLCL", "RLOP"]
    assert (buy_back.request.instrument, buy_back.request.side, buy_back.request.quantity) == (old, Side.BUY, contracts)
    assert buy_back.request.limit_price_cents == ask
    assert (new_leg.request.instrument, new_leg.request.side, new_leg.request.quantity) == (new, Side.SELL, contracts)
    assert all(o.state is OrderState.FILLED for o in report.protective)
    fills = {e.instrument: e for _, e in report.fills}
    net = (fills[new].price_cents - fills[old].price_cents) * 100 * contracts
    assert net == (bid - ask) * 100 * contracts > 0  # a net credit
    assert world.gen_positions(report) == {new: -contracts, shorts["NVDA"]: world.held[shorts["NVDA"]]}
    assert report.closed_trade_pnls and report.closed_trade_pnls[0] < 0  # the buy-back closed at a loss
    assert world.mismatches(report) == []

    world.move_to(THU, 10, 45)
    later = world.step()
    watches = later.account.protocol.watches  # type: ignore[union-attr]
    assert set(watches) == {watch_key(GEN, new), watch_key(GEN, shorts["NVDA"])}
    assert watches[watch_key(GEN, new)] == Watch(191_00, 0)  # the new leg is watched from its own entry
    assert not later.protective


def test_two_atr_without_a_roll_closes_at_the_ask(world: World) -> None:
    shorts = world.enter()
    world.move_to(THU, 10, 30, TSLA=191.0)  # no put in the band pays for the buy-back: no roll
    ask = world.ask(shorts["TSLA"])
    report = world.step()

    [change] = report.level_changes
    assert change.to_level is AtrLevel.L2
    [close] = report.protective
    assert purposes([close]) == ["STOP"]
    contracts = -world.held[shorts["TSLA"]]
    assert (close.request.instrument, close.request.side, close.request.quantity) == (
        shorts["TSLA"],
        Side.BUY,
        contracts,
    )
    assert close.request.limit_price_cents == ask and close.state is OrderState.FILLED
    assert world.gen_positions(report) == {shorts["NVDA"]: world.held[shorts["NVDA"]]}
    [pnl] = report.closed_trade_pnls
    assert pnl < 0 and report.account is not None and report.account.protocol.trade_pnls_cents == (pnl,)
    [alert] = world.alerts("ATR L0→L2")
    assert alert.priority is Priority.HIGH and "If no such roll exists" in alert.body
    assert world.mismatches(report) == []


def test_three_atr_closes_and_pauses_the_sleeve_while_other_sleeves_still_enter(
    store: DynamoAccountStore, tmp_path: Path
) -> None:
    rev_on_thursday = {"rev": {"tickers": ["AAPL"], "entry": {"days": ["THU"]}}}
    world = World(store, tmp_path, rev_on_thursday, listed={"TSLA": LISTED["TSLA"]})
    shorts = world.enter()
    world.move_to(THU, 10, 30, TSLA=187.0)  # 3.25 ATR
    world.tape.list("NVDA", 150.0, 3.0)  # Gen's second ticker: a chain Gen would sell now if it could
    world.tape.list("AAPL", 230.0, 4.0)  # Rev's ticker, inside Rev's window
    report = world.step()

    [change] = report.level_changes
    assert change.to_level is AtrLevel.L3 and change.priority == "CRITICAL"
    [close] = report.protective
    assert purposes([close]) == ["STOP"] and close.request.instrument == shorts["TSLA"]
    assert close.state is OrderState.FILLED
    assert report.account is not None and dict(report.account.protocol.paused_until) == {GEN: NEXT_MON}
    assert report.skipped[(GEN, "*")].startswith("SLEEVE_PAUSED")
    assert {(o.sleeve, o.request.instrument.underlying) for o in report.placed} == {(REV, "AAPL")}  # type: ignore[union-attr]
    assert "NVDA" not in {o.request.instrument.underlying for o in world.broker_orders("OPEN")}  # type: ignore[union-attr]
    [alert] = world.alerts("ATR L0→L3")
    assert alert.priority is Priority.CRITICAL and f"until next week ({NEXT_MON:%Y-%m-%d})" in alert.body

    # The pause is written at once: a cycle that reads the store afresh keeps Gen out too.
    assert dict(store.get(world.account_id).protocol.paused_until) == {GEN: NEXT_MON}
    world.move_to(THU, 10, 45)
    fresh = world.step(world.new_cycle(carry_state=False))
    assert fresh.skipped[(GEN, "*")].startswith("SLEEVE_PAUSED") and not fresh.placed


def test_with_l2_automation_off_only_the_alert_goes_out(store: DynamoAccountStore, tmp_path: Path) -> None:
    manual = {"atr_protocol": {"auto_action": {"l2": {"action": "roll_or_close", "automatic": False}}}}
    world = World(store, tmp_path, manual)
    shorts = world.enter()
    world.move_to(THU, 10, 30, TSLA=191.0)
    report = world.step()

    [change] = report.level_changes
    assert change.to_level is AtrLevel.L2 and not change.action.automatic
    assert not report.protective and not world.broker_orders("STOP", "RLCL", "RLOP")
    assert world.gen_positions(report)[shorts["TSLA"]] == world.held[shorts["TSLA"]]  # still held: a human decides
    [alert] = world.alerts("ATR L0→L2")
    assert "Needs a human" in alert.body


def test_a_rerun_of_the_same_step_never_places_a_second_protective_order(world: World) -> None:
    world.enter()
    world.move_to(THU, 10, 30, TSLA=191.0)
    first = world.step()
    assert purposes(first.protective) == ["STOP"]

    again = world.step()  # the same instant, same carried cycle
    fresh = world.step(world.new_cycle(carry_state=False))  # the same instant, read afresh
    assert not again.protective and not again.placed
    assert not fresh.protective and not fresh.placed
    refs = [o.client_ref for o in world.broker_orders()]
    assert len(refs) == len(set(refs))
    assert len(world.broker_orders("STOP", "RLCL", "RLOP")) == 1
    assert world.mismatches(fresh) == []


def test_a_crash_after_placing_a_protective_close_leaves_exactly_one_order(world: World) -> None:
    shorts = world.enter()
    world.move_to(THU, 10, 30, TSLA=191.0)
    world.broker.armed = True
    with pytest.raises(SystemExit):
        world.step()
    in_flight = [o for o in world.store.orders(world.account_id) if intent_purpose(o.intent_id) == "STOP"]
    assert [o.state for o in in_flight] == [OrderState.SUBMITTING]  # saved before the broker heard of it

    world.broker.armed = False
    recovered = world.step()  # the restart, same instant: the carried memory is gone, the store is read
    assert not recovered.protective
    [stop] = world.broker_orders("STOP")
    assert stop.client_ref == in_flight[0].intent_id
    assert shorts["TSLA"] not in world.gen_positions(recovered)  # the close was adopted and booked
    assert world.mismatches(recovered) == []


# --------------------------------------------------------------------------------------------------
# Closed trades as the step books them
# --------------------------------------------------------------------------------------------------


def test_an_expiry_worthless_is_a_winning_trade_and_an_assignment_is_none(world: World) -> None:
    shorts = world.enter()
    in_the_money = shorts["NVDA"].strike_cents / 100 - 1  # NVDA's put ends in the money (below L2)
    world.move_to(FRI, 15, 0, TSLA=210.0, NVDA=in_the_money)  # TSLA's ends out of the money
    quiet = world.step()
    assert not quiet.level_changes and quiet.account is not None
    premium = -quiet.account.sleeve(GEN).costs[shorts["TSLA"]]  # a short's cost is minus its credit
    world.move_to(FRI, 16, 30)
    report = world.step()
    assert report.booked_settlements == 2
    assert report.closed_trade_pnls == [premium]  # the worthless expiry; the assignment closes no trade (A12)
    assert report.account is not None and report.account.protocol.trade_pnls_cents == (premium,)


# --------------------------------------------------------------------------------------------------
# Circuit breakers and SAFE (A6)
# --------------------------------------------------------------------------------------------------


def test_three_losing_buy_backs_put_the_account_in_safe(store: DynamoAccountStore, tmp_path: Path) -> None:
    listed = {**LISTED, "AMD": (120.0, 2.4)}
    world = World(store, tmp_path, {"gen": {"tickers": ["TSLA", "NVDA", "AMD"]}}, listed=listed)
    world.enter()
    losses = []
    for minute, crash in ((30, {"TSLA": 187.0}), (45, {"NVDA": 140.0}), (59, {"AMD": 112.0})):  # L3 each
        world.move_to(THU, 10, minute, **crash)
        report = world.step()
        assert purposes(report.protective) == ["STOP"]
        [pnl] = report.closed_trade_pnls
        losses.append(pnl)
        assert (report.breaker is None) is (len(losses) < 3)  # the third loss trips it in its own step
    assert all(pnl < 0 for pnl in losses)
    assert report.breaker is not None and report.breaker.kind is BreakerKind.CONSECUTIVE_LOSSES
    assert report.account is not None and report.account.status is AccountStatus.SAFE
    assert report.account.protocol.trade_pnls_cents == ()  # the streak is spent
    assert store.get(world.account_id).status is AccountStatus.SAFE  # written at once
    [event] = world.trail("CIRCUIT_BREAKER_TRIPPED")
    assert event.details["kind"] == "CONSECUTIVE_LOSSES"
    [alert] = world.alerts("circuit breaker")
    assert alert.priority is Priority.CRITICAL and "until an operator lifts it" in alert.body


def test_two_l2_positions_trip_safe_which_lets_the_closes_through_and_blocks_entries(
    store: DynamoAccountStore, tmp_path: Path
) -> None:
    world = World(store, tmp_path, {"gen": {"tickers": ["TSLA", "NVDA", "AMD"]}})
    shorts = world.enter()
    world.move_to(THU, 10, 30, TSLA=191.0, NVDA=143.25)  # both 2.25 ATR
    world.tape.list("AMD", 120.0, 2.4)  # a new Gen chain inside the window: an ACTIVE account would sell it
    report = world.step()

    assert report.breaker is not None and report.breaker.kind is BreakerKind.SIMULTANEOUS_BREACHES
    assert report.account is not None and report.account.status is AccountStatus.SAFE
    assert sorted(purposes(report.protective)) == ["STOP", "STOP"]  # exits pass in SAFE
    assert {o.request.instrument for o in report.protective} == set(shorts.values())
    assert all(o.state is OrderState.FILLED for o in report.protective)
    assert not report.placed and not world.gen_positions(report)
    assert store.get(world.account_id).status is AccountStatus.SAFE
    [event] = world.trail("CIRCUIT_BREAKER_TRIPPED")
    assert event.details["kind"] == "SIMULTANEOUS_BREACHES"
    [alert] = world.alerts("circuit breaker")
    assert alert.priority is Priority.CRITICAL and alert.type is AlertType.PROTOCOL_BREACH

    world.move_to(THU, 10, 45)
    later = world.step()
    assert not later.placed and later.account is not None and later.account.status is AccountStatus.SAFE
    assert {o.request.instrument.underlying for o in world.broker_orders("OPEN")} == {"TSLA", "NVDA"}  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", ["next_week", "operator"])
def test_safe_release_policy_next_week_lifts_safe_at_mondays_first_step(
    store: DynamoAccountStore, tmp_path: Path, policy: str
) -> None:
    overrides = {"circuit_breakers": {"safe_release": policy}, "rev": {"tickers": ["AAPL"]}}
    world = World(store, tmp_path, overrides, listed={**LISTED, "AAPL": (230.0, 4.0)})
    world.enter()
    world.move_to(THU, 10, 30, TSLA=191.0, NVDA=143.25)
    tripped = world.step()
    assert tripped.account is not None and tripped.account.status is AccountStatus.SAFE
    assert tripped.account.protocol.safe_until == (NEXT_MON if policy == "next_week" else None)

    world.move_to(FRI, 10, 0)
    assert world.step().account.status is AccountStatus.SAFE  # type: ignore[union-attr]

    world.move_to(NEXT_MON, 10, 0)
    monday = world.step()
    assert monday.account is not None
    if policy == "operator":
        assert monday.account.status is AccountStatus.SAFE and not monday.placed
        assert not world.trail("SAFE_RELEASED")
        return
    assert monday.account.status is AccountStatus.ACTIVE and monday.account.protocol.safe_until is None
    assert (REV, "AAPL") in {(o.sleeve, o.request.instrument.underlying) for o in monday.placed}  # type: ignore[union-attr]
    [event] = world.trail("SAFE_RELEASED")
    assert event.details == {"policy": "next_week"}
    assert world.alerts("SAFE lifted")
    assert store.get(world.account_id).status is AccountStatus.ACTIVE


# --------------------------------------------------------------------------------------------------
# The account's ProtocolState in the store
# --------------------------------------------------------------------------------------------------

FULL_STATE = ProtocolState(
    watches={"GEN:TSLA  261204P00200000": Watch(200_00, 2), "REV:AAPL  261204C00230000": Watch(229_87, 0)},
    paused_until={GEN: NEXT_MON, SleeveKind.COM: date(2026, 12, 14)},
    trade_pnls_cents=(-252_400, 0, 71_600),
    day=THU,
    day_start_equity_cents=500_012_34,
    safe_until=NEXT_MON,
)


@pytest.mark.parametrize("state", [FULL_STATE, ProtocolState()], ids=["full", "empty"])
def test_the_protocol_state_survives_a_store_round_trip(store: DynamoAccountStore, state: ProtocolState) -> None:
    account = AccountService(store, SimulatedClock(at(THU, 9))).create(new_account(), actor="t")
    committed = store.commit(AccountChange(account=replace(account, protocol=state), audit=[]))
    assert committed.protocol == state
    read = store.get(account.account_id)
    assert read.protocol == state
    assert all(isinstance(k, SleeveKind) for k in read.protocol.paused_until)


def test_a_fresh_cycle_reads_back_what_the_protocol_wrote(world: World) -> None:
    world.enter()
    world.move_to(THU, 10, 30, TSLA=187.0)  # L3: closed, Gen paused, a losing trade (all written at once)
    carried = world.step()
    world.move_to(THU, 10, 45)
    fresh = world.step(world.new_cycle(carry_state=False))
    assert fresh.account is not None and carried.account is not None
    state = fresh.account.protocol
    assert state.paused_until == carried.account.protocol.paused_until == {GEN: NEXT_MON}
    assert state.trade_pnls_cents == carried.account.protocol.trade_pnls_cents != ()
    assert state.day == THU and state.day_start_equity_cents == carried.account.protocol.day_start_equity_cents


def test_a_lost_carried_memory_still_measures_from_the_fill(world: World) -> None:
    """What a carried run had not written is derived again: the fresh read books the opening fills anew and
    watches the puts from the underlying at those fills, so the L2 is still seen and acted on."""
    shorts = world.enter()
    world.move_to(THU, 10, 30, TSLA=195.0)
    assert [c.to_level for c in world.step().level_changes] == [AtrLevel.L1]
    world.cycle.report_failure(world.account_id, "a step failed")  # the run drops what it carried
    world.move_to(THU, 10, 45, TSLA=191.0)
    report = world.step()
    assert report.account is not None
    [change] = report.level_changes
    assert change.to_level is AtrLevel.L2 and change.contract == shorts["TSLA"]
    assert change.reading.reference_price == 200.0  # the underlying at the 10:00 fill, read again
    assert purposes(report.protective) == ["STOP"]
    assert watch_key(GEN, shorts["TSLA"]) not in report.account.protocol.watches  # closed: no longer watched
    assert world.mismatches(report) == []


# --------------------------------------------------------------------------------------------------
# Found by these tests and mended: each test names the rule it holds
# --------------------------------------------------------------------------------------------------


def test_a_non_carried_cycle_remembers_its_watches_between_steps(store: DynamoAccountStore, tmp_path: Path) -> None:
    world = World(store, tmp_path, carry_state=False)
    world.step()  # the entries
    world.move_to(THU, 10, 15)
    world.step()  # the first scan watches them
    assert len(store.get(world.account_id).protocol.watches) == 2
    world.move_to(THU, 10, 30, TSLA=195.0)
    assert [c.to_level for c in world.step().level_changes] == [AtrLevel.L1]


def test_a_new_short_is_measured_from_the_underlying_at_its_fill(world: World) -> None:
    [tsla] = [o for o in world.step().placed if o.request.instrument.underlying == "TSLA"]  # type: ignore[union-attr]
    world.move_to(THU, 10, 15, TSLA=195.0)  # the first scan: 1.25 ATR below the fill's $200
    report = world.step()
    assert report.account is not None
    key = watch_key(GEN, tsla.request.instrument)  # type: ignore[arg-type]
    assert report.account.protocol.watches[key].entry_underlying_cents == 200_00  # the price at the 10:00 fill
    assert [c.to_level for c in report.level_changes] == [AtrLevel.L1]


def test_a_losing_close_that_trips_the_breaker_stops_entries_in_the_same_step(
    store: DynamoAccountStore, tmp_path: Path
) -> None:
    one_loss = {"circuit_breakers": {"consecutive_losses": 1}}
    world = World(store, tmp_path, one_loss, listed={"TSLA": LISTED["TSLA"]})
    world.enter()
    world.move_to(THU, 10, 30, TSLA=191.0)  # L2: closed at a loss, the breaker's limit reached
    world.tape.list("NVDA", 150.0, 3.0)  # Gen's second ticker becomes tradable in the same step
    report = world.step()
    assert purposes(report.protective) == ["STOP"] and report.closed_trade_pnls[0] < 0
    assert not report.placed
    assert report.account is not None and report.account.status is AccountStatus.SAFE


def test_in_a_shifted_week_the_roll_is_checked_against_the_band_it_was_chosen_in(
    store: DynamoAccountStore, tmp_path: Path
) -> None:
    shifted = {"week_mode": {"green_delta_shift": "-0.10"}}  # Gen's puts: 0.30-0.40 in a Green week
    world = World(store, tmp_path, shifted)
    world.tape.list_index("SPY", 0.03)  # last week +3 %: Green
    shorts = world.enter()
    world.move_to(THU, 10, 30, TSLA=191.0)
    ask = world.ask(shorts["TSLA"])
    new = OptionContract("TSLA", NEXT_WED, shorts["TSLA"].strike_cents - 8_00, PUT)
    bid = -(-(ask + 100) // 10) * 10
    world.tape.quote(new, bid, bid + 10, -0.35)  # inside the shifted band, outside the unshifted one
    report = world.step()
    assert purposes(report.protective) == ["RLCL", "RLOP"], report.problems
    assert world.gen_positions(report).get(new) == world.held[shorts["TSLA"]]


def test_one_buy_back_filled_in_parts_is_one_losing_trade(store: DynamoAccountStore, tmp_path: Path) -> None:
    world = World(store, tmp_path, settings=PaperBrokerSettings(max_fill_per_step=1))
    world.step()  # the entries, one contract filled per broker step
    while any(not o.status.is_final for o in world.broker_orders()):
        world.paper.step()
    world.move_to(THU, 10, 15)
    world.step()  # the first scan watches the puts
    world.move_to(THU, 10, 30, TSLA=191.0)  # L2: buy back the 4 TSLA puts
    assert purposes(world.step().protective) == ["STOP"]
    while any(not o.status.is_final for o in world.broker_orders("STOP")):
        world.paper.step()  # the rest of the buy-back fills, one contract at a time
    world.move_to(THU, 10, 45)
    report = world.step()
    assert report.breaker is None
    assert report.account is not None and report.account.status is AccountStatus.ACTIVE
    assert len(report.account.protocol.trade_pnls_cents) == 1


def test_releasing_a_carried_account_writes_what_it_knew_only_in_memory(world: World) -> None:
    """The lifecycle watchdog works on the stored account: what the carried run changed without any order or
    event (here the drawdown breaker's start of day) is written when the run releases the account."""
    world.enter()
    world.flush()  # the week's durable write: everything known so far is stored
    world.move_to(FRI, 9, 45)
    carried = world.step().account  # a new day: the breaker's reference equity, in memory only
    assert carried is not None and carried.protocol.day == FRI
    assert world.store.get(world.account_id).protocol.day != FRI
    world.cycle.release([world.account_id])
    stored = world.store.get(world.account_id)
    assert stored.protocol.day == FRI
    assert stored.protocol.day_start_equity_cents == carried.protocol.day_start_equity_cents
