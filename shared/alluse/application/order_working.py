"""Step 3 of the trading cycle: work resting orders (A8). Reprice toward the touch after the delay,
cancel at the timeout; an exit that times out is chased at the touch."""

from __future__ import annotations

from datetime import datetime

from alluse.application.market_ports import MarketData
from alluse.application.step_context import Carried, StepDesk, StepReport
from alluse.domain.alerts import AlertType, Priority
from alluse.domain.brokerage import Side
from alluse.domain.instruments import OptionContract
from alluse.domain.lifecycle import REINVEST_PURPOSE
from alluse.domain.orders import (
    ManagedOrder,
    OrderState,
    Quote,
    due_for_reprice,
    intent_purpose,
    next_limit,
    replacement,
    should_cancel,
)
from alluse.domain.protection import EXIT_PURPOSES


class OrderWorking:
    """Reprices and times out an account's resting orders; an exit that timed out is chased."""

    def __init__(self, market: MarketData, desk: StepDesk) -> None:
        self._market = market
        self._desk = desk

    def work(self, state: Carried, report: StepReport) -> None:
        rules, now = state.cfg.orders, report.at
        resting = [o for o in state.live_orders() if o.state.is_worked and o.broker_order_id]
        replacements: list[ManagedOrder] = []
        cancel = self._desk.cancel
        for order in resting:
            reinvesting = intent_purpose(order.intent_id) == REINVEST_PURPOSE
            policy = state.cfg.lifecycle.partial_fill_policy
            if reinvesting and policy == "cancel_rest" and order.state is OrderState.PARTIALLY_FILLED:
                cancel(state, order, "partly filled: the rest is cancelled (partial_fill_policy)", report)
            elif should_cancel(order, now, rules):
                cancelled = cancel(state, order, f"timed out after {rules.timeout_seconds} s", report)
                if cancelled.state is not OrderState.CANCELLED:
                    continue  # a fill won the race: nothing timed out
                report.timed_out.append(cancelled)
                chase = self._chase(state, cancelled, report)
                if chase is not None:
                    replacements.append(chase)
            elif due_for_reprice(order, now, rules):
                limit = self._repriced_limit(state, order, now)
                if limit is None:
                    continue  # at the touch or the concession bound already: it rests until the timeout
                cancelled = cancel(state, order, f"reprice to {limit}", report)
                if cancelled.state is OrderState.CANCELLED and cancelled.remaining > 0:
                    replacements.append(replacement(cancelled, limit))
        # A newer version of an entry is written behind (see `TradingCycle._place`); an exit's is written
        # first, as a new intent's is: lost in a crash between the cancel and the broker, the exit could not
        # be recovered.
        exits = [o for o in replacements if _is_exit(o)]
        entries = [o for o in replacements if not _is_exit(o)]
        if exits:
            report.repriced += self._desk.place(state, exits, report)
        if entries:
            report.repriced += self._desk.place(state, entries, report, write_first=False)

    def _chase(self, state: Carried, order: ManagedOrder, report: StepReport) -> ManagedOrder | None:
        """An exit (ATR close, roll buy-back, liquidation) that timed out is not given up: what is left is
        placed again at the touch, and a human is told. An entry that timed out is simply not made."""
        purpose = intent_purpose(order.intent_id)
        retried = purpose == REINVEST_PURPOSE and state.cfg.lifecycle.partial_fill_policy == "retry"
        if (purpose not in EXIT_PURPOSES and not retried) or order.remaining <= 0:
            return None
        request = order.request
        contract = request.instrument
        if not isinstance(contract, OptionContract):
            return None  # share exits and purchases go at market: they do not rest
        quote = self._market.chain(contract.underlying, report.at).find(contract)
        touch = (quote.ask_cents if request.side is Side.BUY else quote.bid_cents) if quote else 0
        why = f"{contract.symbol}: exit not filled in {state.cfg.orders.timeout_seconds} s"
        alert = self._desk.alert
        if touch <= 0:
            report.problems.append(f"{why}; no quote to chase at")
            alert(state.account, AlertType.PROTOCOL_BREACH, Priority.CRITICAL, "exit stuck", why, report.at)
            return None
        alert(
            state.account,
            AlertType.PROTOCOL_BREACH,
            Priority.HIGH,
            "exit chased",
            f"{why}; again at {touch}",
            report.at,
        )
        return replacement(order, touch)

    def _repriced_limit(self, state: Carried, order: ManagedOrder, now: datetime) -> int | None:
        request = order.request
        contract = request.instrument
        if not isinstance(contract, OptionContract) or request.limit_price_cents is None:
            return None
        quote = self._market.chain(contract.underlying, now).find(contract)
        if quote is None or quote.bid_cents <= 0 or quote.ask_cents <= 0:
            return None  # no quote to reprice against: the order keeps its limit
        touch = Quote(quote.bid_cents, quote.ask_cents)
        reference = order.reference_quote.mid if order.reference_quote else touch.mid
        return next_limit(
            request.limit_price_cents, request.side, touch, reference, state.cfg.ticks, contract, state.cfg.orders
        )


def _is_exit(order: ManagedOrder) -> bool:
    return intent_purpose(order.intent_id) in EXIT_PURPOSES
