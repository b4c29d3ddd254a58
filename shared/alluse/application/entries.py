"""Step 5 of the trading cycle: each sleeve's entries are planned (strategies, week-mode delta shift) and
pass the risk engine; a premium below the floor waits for a human (HITL)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from alluse.application.market_ports import MarketData
from alluse.application.step_context import Carried, MarketReadings, StepDesk, StepReport, day_of, risk_context, week_of
from alluse.domain.accounts import Account
from alluse.domain.alerts import AlertType, Priority
from alluse.domain.brokerage import OrderRequest, OrderType
from alluse.domain.config import DeltaBand
from alluse.domain.instruments import Equity, OptionContract, OptionRight
from alluse.domain.market import OptionChain
from alluse.domain.orders import ManagedOrder, Quote, intent_id, plan_order
from alluse.domain.protection import sleeve_paused
from alluse.domain.risk import DenyReason, OrderIntent, check
from alluse.domain.sleeves import SleeveKind
from alluse.domain.strategies import EntryDecision, EntryPlan, SleeveBook, plan_entries

TRADING_SLEEVES = (SleeveKind.GEN, SleeveKind.REV, SleeveKind.COM)


class Entries:
    """Plans each trading sleeve's entries and places those the risk engine approves."""

    def __init__(self, market: MarketData, desk: StepDesk, readings: MarketReadings) -> None:
        self._market = market
        self._desk = desk
        self._readings = readings

    def enter(self, state: Carried, report: StepReport) -> None:
        cfg = state.cfg
        report.week_mode = self._readings.week_mode(report.at, cfg)
        shift = self._readings.delta_shift(report.at, cfg)
        orders: list[ManagedOrder] = []
        for sleeve in TRADING_SLEEVES:
            for plan, option_chain in self._sleeve_plans(state, sleeve, shift, report):
                order = self._approved_order(plan, option_chain, state, report)
                if order is not None:
                    orders.append(order)
        if orders:
            report.placed.extend(self._desk.place(state, orders, report))

    def _sleeve_plans(
        self, state: Carried, sleeve: SleeveKind, shift: Decimal, report: StepReport
    ) -> Iterable[tuple[EntryPlan, OptionChain]]:
        account, cfg = state.account, state.cfg
        balance = account.sleeve(sleeve)
        if balance.cash_cents <= 0 or not self._readings.window_open(sleeve, cfg, report.at):
            return []
        if sleeve_paused(account, sleeve, day_of(report.at)):
            until = account.protocol.paused_until[sleeve]
            report.skipped[(sleeve, "*")] = f"{DenyReason.SLEEVE_PAUSED}: ATR L3, no entries before {until}"
            return []
        strategy = getattr(cfg, sleeve.value.lower())
        held = {i.ticker for i, q in balance.positions.items() if isinstance(i, Equity) and q > 0}
        tickers = sorted(set(strategy.tickers) | held)
        chains = {t: self._market.chain(t, report.at) for t in tickers if t in self._market.tickers()}
        week = week_of(report.at)
        entered = frozenset(
            (t, right)
            for t in tickers
            for right in OptionRight
            if state.known(_entry_ref(account, sleeve, week, t, right))
        )
        book = SleeveBook(
            sleeve=sleeve,
            free_cash_cents=balance.cash_cents - balance.collateral_cents,
            buffer_cents=balance.buffer_cents,
            value_cents=balance.cash_cents,
            shares={i.ticker: q for i, q in balance.positions.items() if isinstance(i, Equity)},
            open_short_options={i: q for i, q in balance.positions.items() if isinstance(i, OptionContract)},
            entered=entered,
        )
        plan = plan_entries(sleeve, book, chains, report.at, shift, cfg)
        report.skipped.update(
            {(sleeve, ticker): f"{skip.code}: {skip.detail}" for ticker, skip in plan.skipped.items()}
        )
        return [(p, chains[p.contract.underlying]) for p in plan.plans]

    def _approved_order(
        self, plan: EntryPlan, chain: OptionChain, state: Carried, report: StepReport
    ) -> ManagedOrder | None:
        account, cfg, contract = state.account, state.cfg, plan.contract
        ref = _entry_ref(account, plan.sleeve, week_of(report.at), contract.underlying, contract.right)
        if state.known(ref):
            return None  # this week's entry for this ticker exists already: a re-run never sells twice
        if plan.decision is not EntryDecision.PLACE:
            report.awaiting_human.append(plan)
            self._desk.alert(
                account,
                AlertType.TRADE_OPPORTUNITY,
                Priority.HIGH,
                "premium below floor",
                f"{contract.symbol}: {plan.alert_reason}",
                report.at,
            )
            return None
        quote = chain.find(contract)
        intent = OrderIntent(
            account.account_id,
            plan.sleeve,
            contract,
            plan.side,
            plan.quantity,
            True,
            plan.limit_price_cents,
            quote=quote,
        )
        strategy = getattr(cfg, plan.sleeve.value.lower())
        context = risk_context(
            account,
            plan.sleeve,
            contract.underlying,
            cfg,
            self._desk.kill_switches(),
            cash_required_cents=plan.cash_required_cents,
            delta_band=DeltaBand(min=plan.delta_band[0], max=plan.delta_band[1]),  # the band the strategy used
            premium_floor_pct=strategy.premium_floor_pct,
            at=report.at,
        )
        decision = check(intent, context)
        if not decision.allowed:
            report.denied.append((plan, decision))
            self._desk.alert(
                account,
                AlertType.PROTOCOL_BREACH,
                Priority.MEDIUM,
                f"entry denied: {decision.reason}",
                f"{contract.symbol}: {decision.message}",
                report.at,
            )
            return None
        request = OrderRequest(ref, contract, plan.side, plan.quantity, OrderType.LIMIT, plan.limit_price_cents)
        reference = Quote(quote.bid_cents, quote.ask_cents) if quote else None
        return plan_order(account.account_id, plan.sleeve, request, reference_quote=reference)


def _entry_ref(account: Account, sleeve: SleeveKind, week: date, underlying: str, right: OptionRight) -> str:
    """The intent id of a sleeve's entry for one ticker and right in one week."""
    return _intent_id(account.account_id, sleeve, week, "OPEN", underlying, right.value)


_intent_id = functools.lru_cache(maxsize=65536)(intent_id)  # a step asks for the same entry ids often
