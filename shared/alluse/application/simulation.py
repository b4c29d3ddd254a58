"""Run the weekly protocol for a set of accounts over simulated weeks (the main job's engine).

The clock moves through each session's scheduled moments (`step_moments`); at each one the broker
works its resting orders and every account takes one `TradingCycle.step`, on its own. A step refused
with a domain error (a market gap, a broker reject) is reported and alerted, and the account steps again
at the next moment. An account that raises anything else is marked failed, alerted and left out of later
steps. Either way the others go on. After the week's last
close each account's week is judged (equity, income, week mode confirmed, week-type code per sleeve) and
recorded in its audit chain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from alluse.application.lifecycle import LifecycleWatchdog
from alluse.application.market_ports import MarketData, TradingCalendar
from alluse.application.run_results import AccountRun, AccountWeek
from alluse.application.trading import (
    TRADING_SLEEVES,
    StepReport,
    TradingCycle,
    index_week_mode,
    marks_at,
)
from alluse.domain.accounts import Account
from alluse.domain.brokerage import SettlementKind, Side
from alluse.domain.config import AllUseConfig
from alluse.domain.errors import AllUseError
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.ledger import basis_per_share_cents, equity_cents
from alluse.domain.lifecycle import REINVEST_PURPOSE, evaluation_due
from alluse.domain.market import NEW_YORK
from alluse.domain.money import cents_of_price
from alluse.domain.orders import intent_purpose
from alluse.domain.protection import ProtectivePurpose
from alluse.domain.sleeves import SleeveKind
from alluse.domain.week import (
    WeekMode,
    WeekRecord,
    WeekType,
    classify_week,
    observe_sleeve_week,
    predict_week_type,
)


def step_moments(day: date, open_at: datetime, close: datetime, cfg: AllUseConfig) -> list[datetime]:
    """When accounts step on a session: every ATR scan interval from the open (A5: the protocol scans,
    passive fills get their chance, a rerun changes nothing), every entry window's start, and just
    after the close (expiries settle, the week is judged). Interval and windows are the run's global
    configuration's: an account whose own differ is still stepped at these moments only."""
    interval = timedelta(minutes=cfg.atr_protocol.scan_interval_minutes)
    windows = [cfg.gen.entry, cfg.gen.covered_call.entry, cfg.rev.entry, cfg.com.entry]
    moments = {datetime.combine(day, w.start, NEW_YORK) for w in windows}
    at = open_at
    while at < close:
        moments.add(at)
        at += interval
    moments = {m for m in moments if open_at <= m < close}
    moments.add(close + timedelta(minutes=1))
    return sorted(moments)


@dataclass
class _Tally:
    """What one account did since its week began."""

    start: Account
    before_close: Account | None = None
    fills: list[tuple[SleeveKind, OptionContract, int]] = field(default_factory=list)  # options sold to open
    rolled: set[OptionContract] = field(default_factory=set)  # bought back by an ATR roll
    bought_back: set[OptionContract] = field(default_factory=set)  # bought back by an ATR close
    trades: int = 0
    settled: dict[OptionContract, SettlementKind] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    mode_guessed: WeekMode | None = None
    events: list[str] = field(default_factory=list)
    atr_actions: int = 0  # protective orders placed (ATR closes and rolls, liquidation)
    reinvested_cents: int = 0  # filled value of the quarter's reinvestment purchases


class ProtocolRun:
    """Steps accounts through weeks. `advance_to` moves the shared simulated clock forward."""

    def __init__(
        self,
        cycle: TradingCycle,
        market: MarketData,
        calendar: TradingCalendar,
        advance_to: Callable[[datetime], object],
        cfg: AllUseConfig,
        *,
        step_broker: Callable[[], None] = lambda: None,
        events_per_week: int = 20,
        watchdog: LifecycleWatchdog | None = None,
    ) -> None:
        self._cycle = cycle
        self._market = market
        self._calendar = calendar
        self._advance_to = advance_to
        self._cfg = cfg
        self._step_broker = step_broker
        self._events_per_week = events_per_week  # texts kept per account-week; counts are kept in full
        self.events: Counter[str] = Counter()
        self._watchdog = watchdog
        self.forks: list[tuple[str, str, int, date]] = []  # (parent, child, cents, day earmarked)
        self.merges: list[tuple[str, str, int, date]] = []  # (child, into, cents, day merged)
        self._past: dict[tuple[str, SleeveKind], list[tuple[OptionRight | None, WeekMode | None, WeekType]]] = {}

    def run(
        self,
        accounts: Sequence[Account],
        first_monday: date,
        weeks: int,
        *,
        on_week: Callable[[int], None] = lambda n: None,
    ) -> list[AccountRun]:
        names = {a.account_id: a.name for a in accounts}
        start_equity = {a.account_id: a.cash_cents for a in accounts}
        history: dict[str, list[AccountWeek]] = {a.account_id: [] for a in accounts}
        failures: dict[str, str] = {}
        live = {a.account_id: a for a in accounts}
        try:
            for n in range(weeks):
                monday = first_monday + timedelta(weeks=n)
                tallies = {i: _Tally(a) for i, a in live.items() if i not in failures}
                sessions = [d for d in (monday + timedelta(days=k) for k in range(5)) if self._calendar.is_session(d)]
                for day in sessions:
                    close = self._calendar.close_at(day)
                    moments = step_moments(day, self._calendar.open_at(day), close, self._cfg)
                    for moment, following in zip(moments, [*moments[1:], None], strict=True):
                        self._advance_to(moment)
                        self._step_broker()
                        if moment == moments[0] and self._watchdog is not None:
                            for child in self._lifecycle(day, day == sessions[0], live, failures):
                                names[child.account_id], start_equity[child.account_id] = child.name, child.cash_cents
                                history[child.account_id], live[child.account_id] = [], child
                                tallies[child.account_id] = _Tally(child)
                        resting = self._step_all(tallies, failures, live, tallies.keys(), is_close=moment > close)
                        self._work_resting(resting, moment, following, tallies, failures, live)
                if sessions:
                    confirmed = self._confirmed_mode(monday)
                    for account_id, tally in tallies.items():
                        if account_id in failures:
                            continue
                        try:
                            history[account_id].append(self._close_week(live[account_id], tally, monday, confirmed))
                        except Exception as err:  # judging one account's week must not stop the fleet either
                            failures[account_id] = self._fail(
                                account_id, f"closing the week: {type(err).__name__}: {err}"
                            )
                on_week(n + 1)
        finally:  # what waits is written even when the run stops on an error
            self._write_behind(live, failures)
        lineage = {i: (live[i].parent_id, live[i].lifecycle.merging_into) for i in names}
        return [
            AccountRun(i, names[i], start_equity[i], tuple(history[i]), failures.get(i), *lineage[i])
            for i in sorted(names)
        ]

    def _write_behind(self, live: dict[str, Account], failures: dict[str, str]) -> None:
        """What the cycle carried and has not written yet (bookings, the last week's record) is written
        before the run ends; an account that cannot be written is reported like a failed step."""
        for account_id in live:
            try:
                self._cycle.release([account_id])
            except Exception as err:
                why = f"writing the run's last state: {type(err).__name__}: {err}"
                failures.setdefault(account_id, self._fail(account_id, why))

    # --- forks and merges ------------------------------------------------------------------------
    def _lifecycle(
        self, day: date, first_of_week: bool, live: dict[str, Account], failures: dict[str, str]
    ) -> list[Account]:
        """The watchdogs, at a session's first moment: they decide on their cadence and carry their sagas
        every session. The accounts they may touch are written and released by the cycle first, so both
        work on the stored state. Returns the children created."""
        assert self._watchdog is not None
        first_of_month = self._calendar.previous_session(day).month != day.month
        evaluate = evaluation_due(
            day, first_of_week=first_of_week, first_of_month=first_of_month, config=self._cfg.lifecycle
        )
        targets = {a.lifecycle.merging_into for a in live.values() if a.lifecycle.merging_into}  # they receive
        involved = [
            i
            for i, a in live.items()
            if i not in failures
            and (
                evaluate or i in targets or a.lifecycle.earmarks or a.lifecycle.funding_from or a.lifecycle.merging_into
            )
        ]
        if not involved:
            return []
        self._cycle.release(involved)
        try:
            report = self._watchdog.run(evaluate=evaluate)
        except Exception as err:  # the store listing failed, say: trading goes on, the sagas wait
            self.events[f"lifecycle watchdog failed: {type(err).__name__}"] += 1
            return []
        self.events["fork"] += len(report.forks)
        self.events["fork funded"] += len(report.funded)
        self.events["merge started"] += len(report.merges_started)
        self.events["merged"] += len(report.merged)
        for child_id, into, cents in report.merged:
            self.merges.append((child_id, into, cents, day))
        for fork in report.forks:
            self.forks.append((fork.parent_id, fork.child_id, fork.amount_cents, day))
        return report.created

    # --- stepping --------------------------------------------------------------------------------
    def _work_resting(
        self,
        resting: set[str],
        moment: datetime,
        following: datetime | None,
        tallies: dict[str, _Tally],
        failures: dict[str, str],
        live: dict[str, Account],
    ) -> None:
        """Accounts with resting orders have them worked every reprice delay until the timeout has passed
        (A8), before the next scheduled moment (`TradingCycle.work`: scans and entries keep the moments);
        the others wait for it."""
        rules = self._cfg.orders
        delay = timedelta(seconds=rules.reprice_after_seconds)
        deadline = moment + timedelta(seconds=rules.timeout_seconds)
        at = moment
        while resting and at < deadline:
            at += delay
            if following is not None and at >= following:
                return
            self._advance_to(at)
            self._step_broker()
            resting = self._step_all(tallies, failures, live, resting, is_close=False, work_only=True)

    def _step_all(
        self,
        tallies: dict[str, _Tally],
        failures: dict[str, str],
        live: dict[str, Account],
        account_ids: Iterable[str],
        *,
        is_close: bool,
        work_only: bool = False,
    ) -> set[str]:
        """Step these accounts once (or only work their orders, between moments); the ones left with
        resting orders."""
        resting: set[str] = set()
        for account_id in list(account_ids):
            tally = tallies[account_id]
            if account_id in failures:
                continue
            if is_close:
                tally.before_close = live[account_id]
            try:
                report = self._cycle.work(account_id) if work_only else self._cycle.step(account_id)
            except AllUseError as err:  # an expected refusal (market gap, broker reject): this step only
                self._step_problem(account_id, tally, f"{type(err).__name__}: {err}")
                continue
            except Exception as err:  # one account's bug must not stop the fleet
                failures[account_id] = self._fail(account_id, f"unexpected {type(err).__name__}: {err}")
                continue
            if report.account is not None:
                live[account_id] = report.account
            self._tally(tally, report)
            if report.working:
                resting.add(account_id)
        return resting

    def _step_problem(self, account_id: str, tally: _Tally, why: str) -> None:
        """Reported and alerted; the account steps again at the next moment (the cycle re-reads it)."""
        self.events[f"step refused: {why.split(':', 1)[0]}"] += 1
        if len(tally.events) < self._events_per_week:
            tally.events.append(f"step refused: {why}")
        self._cycle.report_failure(account_id, why)

    def _fail(self, account_id: str, why: str) -> str:
        self.events["account failed"] += 1
        self._cycle.report_failure(account_id, why)
        return why

    def _tally(self, tally: _Tally, report: StepReport) -> None:
        if report.week_mode is not None and tally.mode_guessed is None:
            tally.mode_guessed = report.week_mode
        for sleeve, execution in report.fills:
            tally.trades += 1
            if intent_purpose(execution.client_ref) == REINVEST_PURPOSE:
                tally.reinvested_cents += execution.price_cents * execution.quantity * execution.instrument.multiplier
            if not isinstance(execution.instrument, OptionContract):
                continue
            purpose = intent_purpose(execution.client_ref)
            if execution.side is Side.SELL and purpose != ProtectivePurpose.ROLL_OPEN:
                tally.fills.append((sleeve, execution.instrument, execution.quantity))
            elif purpose == ProtectivePurpose.ROLL_CLOSE:
                tally.rolled.add(execution.instrument)
            elif purpose == ProtectivePurpose.CLOSE:
                tally.bought_back.add(execution.instrument)
        for settlement in report.settlements:
            if isinstance(settlement.instrument, OptionContract):
                tally.settled[settlement.instrument] = settlement.kind
                tally.closes[settlement.instrument.underlying] = settlement.underlying_close_cents
        happened = [("placed", f"placed {o.request.instrument.symbol}") for o in report.placed]
        happened += [(f"denied {d.reason}", f"denied {d.reason}: {p.contract.symbol}") for p, d in report.denied]
        floor = "awaiting human (premium below floor)"
        happened += [(floor, f"{floor}: {p.contract.symbol}") for p in report.awaiting_human]
        happened += [("problem", f"problem: {p}") for p in report.problems]
        happened += [("repriced", f"repriced {o.intent_id} to {o.request.limit_price_cents}") for o in report.repriced]
        happened += [("timed out", f"timed out {o.intent_id}") for o in report.timed_out]
        happened += [("reinvestment", f"reinvestment: {text}") for text in report.reinvest_outcomes]
        happened += [
            (f"ATR L{int(c.to_level)}", f"ATR L{int(c.from_level)}→L{int(c.to_level)}: {c.contract.symbol}")
            for c in report.level_changes
        ]
        happened += [
            (f"ATR {intent_purpose(o.intent_id)}", f"ATR order {o.request.side.value} {o.request.instrument.symbol}")
            for o in report.protective
        ]
        tally.atr_actions += len(report.protective)
        if report.breaker is not None:
            happened.append((f"SAFE: {report.breaker.kind.value}", f"SAFE: {report.breaker.message}"))
        self.events.update(kind for kind, _ in happened)
        room = self._events_per_week - len(tally.events)
        tally.events.extend(text for _, text in happened[: max(room, 0)])

    # --- judging the week ------------------------------------------------------------------------------
    def _close_week(self, account: Account, tally: _Tally, monday: date, confirmed: WeekMode | None) -> AccountWeek:
        at = self._calendar.close_at(self._last_session(monday))
        before = tally.before_close or account
        codes: dict[str, str] = {}
        predictions: dict[str, str] = {}  # what was expected at entry (known then: side and mode guess)
        records = []
        for sleeve in TRADING_SLEEVES:
            sold = [(c, q) for s, c, q in tally.fills if s is sleeve]
            closes = dict(tally.closes)
            for contract, _ in sold:
                if contract.underlying not in closes:
                    closes[contract.underlying] = cents_of_price(self._market.price(contract.underlying, at))
            basis = basis_per_share_cents(before.sleeve(sleeve))
            observed = observe_sleeve_week(
                sold, tally.settled, closes, basis, rolled=tally.rolled, bought_back=tally.bought_back
            )
            code = classify_week(observed, self._cfg.week_types)
            past = self._past.setdefault((account.account_id, sleeve), [])
            predicted = predict_week_type(observed.side, tally.mode_guessed, past, self._cfg.week_types)
            past.append((observed.side, tally.mode_guessed, code))
            codes[sleeve.value] = code.value
            if predicted is not None:
                predictions[sleeve.value] = predicted.value
            records.append(
                WeekRecord(account.account_id, sleeve, monday, tally.mode_guessed, confirmed, predicted, code)
            )
        self._cycle.record_week(account.account_id, records)
        start, end = tally.start, account
        return AccountWeek(
            account_id=account.account_id,
            week_start=monday,
            equity_cents=equity_cents(account, marks_at(self._market, account, at)),
            premium_cents=_total(end, "premium_cents") - _total(start, "premium_cents"),
            realized_cents=_total(end, "realized_cents") - _total(start, "realized_cents"),
            commission_cents=_total(end, "commission_cents") - _total(start, "commission_cents"),
            trades=tally.trades,
            atr_actions=tally.atr_actions,
            reinvested_cents=tally.reinvested_cents,
            short_term_gain_cents=_gains(end)[0] - _gains(start)[0],
            long_term_gain_cents=_gains(end)[1] - _gains(start)[1],
            mode_guessed=tally.mode_guessed.value if tally.mode_guessed else None,
            mode_confirmed=confirmed.value if confirmed else None,
            week_types=codes,
            predicted_types=predictions,
            events=tuple(tally.events),
        )

    def _last_session(self, monday: date) -> date:
        days = [monday + timedelta(days=k) for k in range(5)]
        return [d for d in days if self._calendar.is_session(d)][-1]

    def _confirmed_mode(self, monday: date) -> WeekMode | None:
        next_monday = monday + timedelta(weeks=1)
        return index_week_mode(self._market, self._cfg.week_mode, next_monday, through=self._last_session(monday))


def _total(account: Account, attribute: str) -> int:
    return sum(int(getattr(b, attribute)) for b in account.sleeves.values())


def _gains(account: Account) -> tuple[int, int]:
    """All years' realised FIFO gains (short-term, long-term)."""
    terms = account.tax_gains_cents.values()
    return sum(t[0] for t in terms), sum(t[1] for t in terms)
