"""Step 4 of the trading cycle: protect (A5, A6). Scan every short option against the ATR protocol,
record and alert each level change with its action plan, place the automatic L2 roll-or-close and L3
close, pause a sleeve after an L3, then trip the circuit breakers that put an account in SAFE. The state
this needs between scans is the account's `ProtocolState`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from alluse.application.market_ports import MarketData
from alluse.application.step_context import (
    Carried,
    MarketReadings,
    StepDesk,
    StepReport,
    day_of,
    exit_allowed,
    risk_context,
    week_of,
)
from alluse.domain.accounts import Account, AccountStatus
from alluse.domain.alerts import AlertType, Priority
from alluse.domain.atr_protocol import (
    AtrLevel,
    LevelChange,
    ProtectedPosition,
    RollPlan,
    evaluate,
    plan_roll,
    roll_terms,
)
from alluse.domain.audit import AuditEvent
from alluse.domain.brokerage import OrderRequest, OrderType, Side
from alluse.domain.config import AllUseConfig, DeltaBand
from alluse.domain.errors import AllUseError, MarketDataGap
from alluse.domain.instruments import OptionContract, OptionRight
from alluse.domain.ledger import equity_cents
from alluse.domain.market import OptionChain
from alluse.domain.money import cents_of_price
from alluse.domain.orders import ManagedOrder, Quote, intent_id, plan_order
from alluse.domain.protection import (
    ProtectivePurpose,
    apply_level_changes,
    breaker_trip,
    go_safe,
    protected_positions,
    release_safe,
    safe_release_due,
    start_day,
    sync_watches,
    unwatched_underlyings,
)
from alluse.domain.risk import BreakerTrip, OrderIntent, check
from alluse.domain.sleeves import SleeveKind


class Protection:
    """The ATR scan and its automatic actions, then the circuit breakers; one instance serves a fleet's
    accounts in turn."""

    def __init__(self, market: MarketData, desk: StepDesk, readings: MarketReadings) -> None:
        self._market = market
        self._desk = desk
        self._readings = readings
        # Scan inputs for the current instant: every account of a fleet asks them at the same one.
        self._inputs_at: tuple[datetime, int] | None = None
        self._prices: dict[str, float] = {}
        self._atrs_now: dict[str, float] = {}

    def protect(self, state: Carried, report: StepReport) -> None:
        cfg, today = state.cfg, day_of(report.at)
        account, events = state.account, []
        durable = False
        if safe_release_due(account, today):
            account = release_safe(account)
            events.append(AuditEvent("SAFE_RELEASED", {"policy": cfg.circuit_breakers.safe_release}))
            self._desk.alert(
                account, AlertType.ACCOUNT_MANAGEMENT, Priority.MEDIUM, "SAFE lifted", "trading resumes", report.at
            )
            durable = True
        account, positions = self._watched(state, account, report)
        shift = self._readings.delta_shift(report.at, cfg)
        changes = self._scan(account, positions, cfg, shift, report) if positions else []
        account = apply_level_changes(account, changes, cfg)
        events += [AuditEvent("ATR_LEVEL_CHANGED", _change_details(c)) for c in changes]
        durable = durable or any(c.to_level is AtrLevel.L3 for c in changes)  # the pause must not be lost
        changed = account is not state.account
        self._desk.save(state, account, events, durable=durable, changed=changed)
        acting = [c for c in changes if c.escalated and c.action.automatic]
        if acting:
            self._act(state, {p.position_id: p for p in positions}, acting, shift, report)
        self._check_breakers(state, report)  # after the actions: a losing close may trip one (A6)

    def watch_new(self, state: Carried, report: StepReport) -> None:
        """Positions this step opened are watched from the underlying at their fill (A5), not from a later scan."""
        account, _ = self._watched(state, state.account, report)
        if account is not state.account:
            self._desk.save(state, account, [], durable=False, changed=True)

    def _check_breakers(self, state: Carried, report: StepReport) -> None:
        account, trip = self._breaker(state.account, state.cfg, report)
        events, durable = [], False
        if trip is not None:
            account = go_safe(account, day_of(report.at), state.cfg.circuit_breakers)
            until = account.protocol.safe_until
            events.append(AuditEvent("CIRCUIT_BREAKER_TRIPPED", {"kind": trip.kind.value, "message": trip.message}))
            release = f"lifts on {until}" if until else "until an operator lifts it"
            body = f"{trip.message}; account SAFE (no new risk, exits allowed), {release}"
            self._desk.alert(account, AlertType.PROTOCOL_BREACH, Priority.CRITICAL, "circuit breaker", body, report.at)
            report.breaker, durable = trip, True
        changed = account is not state.account
        self._desk.save(state, account, events, durable=durable, changed=changed)

    def _watched(self, state: Carried, account: Account, report: StepReport) -> tuple[Account, list[ProtectedPosition]]:
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
            self._desk.alert(account, AlertType.PROTOCOL_BREACH, priority, title, str(change.plan), report.at)
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
                today = today or day_of(at)
                prices[ticker] = self._market.price(ticker, at)
                if (atr := self._readings.atr(ticker, today, period)) is not None:
                    atrs[ticker] = atr
        return prices, atrs

    def _act(
        self,
        state: Carried,
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
                    roll = plan_roll(position, chain, day_of(report.at), state.cfg, delta_shift=shift)
                order = self._buy_back(state, position, chain, roll, report)
            except AllUseError as err:
                why = f"{position.contract.symbol}: cannot act on L{int(change.to_level)}: {err}"
                report.problems.append(why)
                self._desk.alert(
                    state.account, AlertType.PROTOCOL_BREACH, Priority.CRITICAL, "ATR action failed", why, report.at
                )
                continue
            if order is not None:
                closes.append(order)
                if roll is not None:
                    rolls.append((position, roll))
        if closes:
            report.protective += self._desk.place(state, closes, report)
        opens = [o for p, roll in rolls if (o := self._roll_open(state, p, roll, shift, report)) is not None]
        if opens:
            report.protective += self._desk.place(state, opens, report)

    def _buy_back(
        self,
        state: Carried,
        position: ProtectedPosition,
        chain: OptionChain,
        roll: RollPlan | None,
        report: StepReport,
    ) -> ManagedOrder | None:
        """The buy-to-close at the ask, or None when this week's order for it exists already."""
        contract = position.contract
        purpose = ProtectivePurpose.ROLL_CLOSE if roll else ProtectivePurpose.CLOSE
        ref = _protective_ref(state.account, position.sleeve, purpose, contract, report.at)
        if state.known(ref):
            return None
        quote = chain.find(contract)
        if quote is None or quote.ask_cents <= 0:
            raise MarketDataGap(f"no ask to buy back {contract.symbol}", field="chain")
        request = OrderRequest(ref, contract, Side.BUY, position.contracts, OrderType.LIMIT, quote.ask_cents)
        intent = OrderIntent(
            state.account.account_id, position.sleeve, contract, Side.BUY, position.contracts, False, quote.ask_cents
        )
        if not exit_allowed(self._desk, state, intent, position.sleeve, report):
            return None
        reference = Quote(quote.bid_cents, quote.ask_cents) if quote.bid_cents > 0 else None
        return plan_order(state.account.account_id, position.sleeve, request, reference_quote=reference)

    def _roll_open(
        self, state: Carried, position: ProtectedPosition, roll: RollPlan, shift: Decimal, report: StepReport
    ) -> ManagedOrder | None:
        """A roll's new short leg: new risk, so it passes every check; refused, the position stays closed."""
        account, contract = state.account, roll.open_contract
        if account.sleeve(position.sleeve).quantity(position.contract) != 0:
            report.problems.append(f"roll of {position.contract.symbol}: buy-back not filled, new leg not placed")
            return None
        ref = _protective_ref(account, position.sleeve, ProtectivePurpose.ROLL_OPEN, contract, report.at)
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
        context = risk_context(
            account,
            position.sleeve,
            contract.underlying,
            state.cfg,
            self._desk.kill_switches(),
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
            self._desk.alert(account, AlertType.PROTOCOL_BREACH, Priority.HIGH, "roll refused", why, report.at)
            return None
        request = OrderRequest(ref, contract, Side.SELL, roll.quantity, OrderType.LIMIT, roll.open_price_cents)
        reference = Quote(quote.bid_cents, quote.ask_cents) if quote else None
        return plan_order(account.account_id, position.sleeve, request, reference_quote=reference)

    def _breaker(self, account: Account, cfg: AllUseConfig, report: StepReport) -> tuple[Account, BreakerTrip | None]:
        """The breaker an ACTIVE account trips now; the day's first scan sets the drawdown's reference."""
        if account.status is not AccountStatus.ACTIVE:
            return account, None
        try:
            equity = equity_cents(account, self._readings.marks(account, report.at))
        except AllUseError as err:  # no marks, no drawdown: say so rather than guess
            report.problems.append(f"circuit breakers not evaluated: {err}")
            return account, None
        today = day_of(report.at)
        if account.protocol.day != today:
            account = start_day(account, today, equity)
        return account, breaker_trip(account, equity, cfg.circuit_breakers)


def _protective_ref(
    account: Account, sleeve: SleeveKind, purpose: ProtectivePurpose, contract: OptionContract, at: datetime
) -> str:
    return intent_id(account.account_id, sleeve, week_of(at), purpose.value, contract.underlying, contract.symbol)


def _change_details(change: LevelChange) -> dict[str, object]:
    return {
        "position": change.position_id,
        "from": int(change.from_level),
        "to": int(change.to_level),
        "atr_multiple": f"{change.atr_multiple:.2f}",
        "action": change.action.action,
        "automatic": change.action.automatic,
    }
