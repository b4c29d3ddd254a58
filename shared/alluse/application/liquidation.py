"""Liquidation before a merge (A10): a merging account takes no new risk and sells everything it holds."""

from __future__ import annotations

from alluse.application.market_ports import MarketData
from alluse.application.step_context import Carried, StepDesk, StepReport, exit_allowed, week_of
from alluse.domain.brokerage import OrderRequest, OrderType, Side
from alluse.domain.errors import AllUseError, MarketDataGap
from alluse.domain.instruments import Instrument, OptionContract
from alluse.domain.orders import ManagedOrder, intent_id, plan_order
from alluse.domain.protection import ProtectivePurpose
from alluse.domain.risk import OrderIntent
from alluse.domain.sleeves import SleeveKind


class Liquidation:
    """Sells a merging account out, short options first."""

    def __init__(self, market: MarketData, desk: StepDesk) -> None:
        self._market = market
        self._desk = desk

    def liquidate(self, state: Carried, report: StepReport) -> None:
        """Buy back short options at the ask first; sell shares and long options once no short option is
        left (a share must not leave while a call is written on it)."""
        account = state.account
        held = [(k, i, q) for k, b in account.sleeves.items() for i, q in b.positions.items() if q]
        shorts = [(k, i, q) for k, i, q in held if isinstance(i, OptionContract) and q < 0]
        orders = []
        for sleeve, instrument, quantity in shorts or held:
            try:
                order = self._order(state, sleeve, instrument, quantity, report)
            except AllUseError as err:
                report.problems.append(f"liquidating {instrument.symbol}: {err}")
                continue
            if order is not None:
                orders.append(order)
        if orders:
            report.protective += self._desk.place(state, orders, report)

    def _order(
        self, state: Carried, sleeve: SleeveKind, instrument: Instrument, quantity: int, report: StepReport
    ) -> ManagedOrder | None:
        side = Side.BUY if quantity < 0 else Side.SELL
        underlying = instrument.underlying if isinstance(instrument, OptionContract) else instrument.symbol
        week = week_of(report.at)
        ref = intent_id(
            state.account.account_id, sleeve, week, ProtectivePurpose.LIQUIDATE.value, underlying, instrument.symbol
        )
        if state.known(ref):
            return None
        if isinstance(instrument, OptionContract):
            quote = self._market.chain(underlying, report.at).find(instrument)
            price = (quote.ask_cents if side is Side.BUY else quote.bid_cents) if quote else 0
            if price <= 0:
                raise MarketDataGap(f"no {'ask' if side is Side.BUY else 'bid'} for {instrument.symbol}", field="chain")
            request = OrderRequest(ref, instrument, side, abs(quantity), OrderType.LIMIT, price)
        else:
            request = OrderRequest(ref, instrument, side, abs(quantity), OrderType.MARKET, None)
        intent = OrderIntent(
            state.account.account_id, sleeve, instrument, side, abs(quantity), False, request.limit_price_cents
        )
        if not exit_allowed(self._desk, state, intent, sleeve, report):
            return None
        return plan_order(state.account.account_id, sleeve, request)
