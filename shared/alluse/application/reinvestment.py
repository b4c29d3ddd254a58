"""Quarterly reinvestment (A11): on the first session of a quarter, Rev and Com buy shares and LEAPS
calls with their budgets; each budget's outcome is recorded, placed or not."""

from __future__ import annotations

from datetime import date, timedelta

from alluse.application.market_ports import MarketData, TradingCalendar
from alluse.application.step_context import Carried, StepDesk, StepReport, day_of, risk_context, week_of
from alluse.domain.alerts import AlertType, Priority
from alluse.domain.audit import AuditEvent
from alluse.domain.brokerage import OrderRequest, OrderType, Side
from alluse.domain.errors import AllUseError
from alluse.domain.instruments import Equity, Instrument
from alluse.domain.lifecycle import (
    REINVEST_PURPOSE,
    ReinvestBudget,
    affordable_units,
    leaps_row,
    mark_reinvested,
    reinvest_budgets,
    reinvest_due,
)
from alluse.domain.money import cents_of_price, format_cents
from alluse.domain.orders import ManagedOrder, Quote, intent_id, plan_order
from alluse.domain.risk import OrderIntent, check


class Reinvestment:
    """The quarter's purchases, placed once on its first session and recorded budget by budget."""

    def __init__(self, market: MarketData, calendar: TradingCalendar, desk: StepDesk) -> None:
        self._market = market
        self._calendar = calendar
        self._desk = desk
        self._first_of_month: dict[date, bool] = {}  # a session's day -> it opens its month

    def reinvest(self, state: Carried, report: StepReport) -> None:
        today = day_of(report.at)
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
                order, outcome = self._order(state, budget, report)
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
            report.reinvested += self._desk.place(state, orders, report)
        account = mark_reinvested(state.account, today)
        event = AuditEvent("REINVESTED", {"purchases": outcomes})
        self._desk.save(state, account, [event], changed=True)
        report.reinvest_outcomes += [f"{o['sleeve']} {o['kind']} {o['ticker']}: {o['outcome']}" for o in outcomes]

    def _order(self, state: Carried, budget: ReinvestBudget, report: StepReport) -> tuple[ManagedOrder | None, str]:
        account, cfg = state.account, state.cfg
        ref = intent_id(
            account.account_id, budget.sleeve, week_of(report.at), REINVEST_PURPOSE, budget.ticker, budget.kind
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
            bars = self._market.daily_bars(budget.ticker, through=day_of(report.at) - timedelta(days=1))
            adv = int(bars.volume[-cfg.risk.adv_sessions :].mean()) if len(bars) else None
            request_type, limit = OrderType.MARKET, None
        else:
            chain = self._market.chain(budget.ticker, report.at)
            row = leaps_row(chain, day_of(report.at), cfg.lifecycle)
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
        cash_required = price * quantity * instrument.multiplier
        switches = self._desk.kill_switches()
        context = risk_context(
            account, budget.sleeve, budget.ticker, cfg, switches, cash_required_cents=cash_required, at=report.at
        )
        decision = check(intent, context)
        if not decision.allowed:
            why = f"{instrument.symbol}: reinvestment refused: {decision.reason}: {decision.message}"
            self._desk.alert(
                account, AlertType.ACCOUNT_MANAGEMENT, Priority.MEDIUM, "reinvestment refused", why, report.at
            )
            return None, f"refused {decision.reason}"
        request = OrderRequest(ref, instrument, Side.BUY, quantity, request_type, limit)
        reference = Quote(quote.bid_cents, quote.ask_cents) if quote else None
        return plan_order(account.account_id, budget.sleeve, request, reference_quote=reference), f"buy {quantity}"
