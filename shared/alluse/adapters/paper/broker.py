"""The paper broker: IBKR-like brokerage accounts filled against the simulated market.

One paper account per brokerage id, never shared. Orders are validated (quantity, tick grid,
listed contract, open market, cash-secured puts, covered calls) and either rejected with a
coded reason, changing nothing, or worked: marketable orders fill at the touch (plus configured
slippage), passive limits fill when close enough to the touch, optionally in partial fills. DAY
orders are cancelled at the close; option positions settle at the close of their expiry day
(worthless, assigned, called away, exercised), cash and shares exact to the cent.

Time is the shared clock's: before answering, the broker processes every session close it has
passed (`_catch_up`), so its state is always the state "as of now".
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from pydantic import BaseModel, ConfigDict, Field

from alluse.application.market_ports import MarketData, TradingCalendar
from alluse.application.ports import Clock
from alluse.domain.brokerage import (
    BrokerAccountState,
    BrokerOrder,
    Execution,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    RejectReason,
    Settlement,
    SettlementKind,
    Side,
    TimeInForce,
)
from alluse.domain.config import AllUseConfig
from alluse.domain.errors import Conflict, MarketDataGap, NotFound, ValidationFailed
from alluse.domain.instruments import Equity, Instrument, OptionContract, OptionRight
from alluse.domain.money import cents_of_price
from alluse.domain.ticks import TickRule


class PaperBrokerSettings(BaseModel):
    """How the paper broker fills and charges (IBKR-like defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    option_commission_per_contract: Decimal = Field(
        default=Decimal("0.65"), ge=0, le=10, description="Commission per option contract, dollars (IBKR-like)."
    )
    option_commission_min: Decimal = Field(
        default=Decimal("1.00"), ge=0, le=100, description="Minimum commission per option order, dollars."
    )
    equity_commission_per_share: Decimal = Field(
        default=Decimal("0.005"), ge=0, le=1, description="Commission per share, dollars (IBKR fixed)."
    )
    equity_commission_min: Decimal = Field(
        default=Decimal("1.00"), ge=0, le=100, description="Minimum commission per equity order, dollars."
    )
    slippage_ticks: int = Field(
        default=0, ge=0, le=20, description="Ticks worse than the touch at which marketable orders fill."
    )
    passive_fill_fraction: Decimal = Field(
        default=Decimal("0.5"),
        ge=0,
        le=1,
        description="A resting limit fills once within this fraction of the spread from the far side"
        " (0.5: a limit at mid fills; 0: only marketable limits fill).",
    )
    max_fill_per_step: int | None = Field(
        default=None,
        ge=1,
        description="Largest quantity one order fills per step (None: whole orders; set to see partial fills).",
    )
    equity_half_spread_cents: int = Field(
        default=1, ge=0, le=100, description="Equity bid/ask = last price ∓ this many cents."
    )
    ticks: TickRule = Field(default_factory=TickRule, description="Price grid of options and equities.")

    @classmethod
    def from_config(cls, config: AllUseConfig, **overrides: object) -> PaperBrokerSettings:
        """The option commission (orders section) and the price grid (ticks) are the ones ALL-USE's
        configuration states; `overrides` set any other field (or replace these)."""
        return cls.model_validate(
            {
                "option_commission_per_contract": config.orders.commission_per_contract,
                "option_commission_min": config.orders.commission_min_per_order,
                "ticks": config.ticks,
                **overrides,
            }
        )


@dataclass
class _Order:
    """Mutable working state of one order inside the paper broker."""

    order: BrokerOrder
    reserved_cents: int = 0  # cash this order holds while it works
    reserved_shares: int = 0  # shares this order holds (covered calls, equity sells)


@dataclass
class _Account:
    brokerage_id: str
    cash_cents: int
    positions: dict[Instrument, int] = field(default_factory=dict)
    costs: dict[Instrument, int] = field(default_factory=dict)
    orders: dict[str, _Order] = field(default_factory=dict)
    by_ref: dict[str, str] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    transfers: set[str] = field(default_factory=set)  # refs of the cash transfers made
    open: dict[str, _Order] = field(default_factory=dict)  # not final yet (finals pruned when next read)

    def working(self) -> list[_Order]:
        """The orders not final: a step's cost follows them, not the account's whole history."""
        for order_id in [i for i, w in self.open.items() if w.order.status.is_final]:
            del self.open[order_id]
        return list(self.open.values())


@dataclass(frozen=True)
class _Touch:
    bid_cents: int
    ask_cents: int


class PaperBroker:
    def __init__(
        self,
        market: MarketData,
        calendar: TradingCalendar,
        clock: Clock,
        settings: PaperBrokerSettings | None = None,
    ) -> None:
        self._market = market
        self._calendar = calendar
        self._clock = clock
        self._settings = settings or PaperBrokerSettings()
        self._accounts: dict[str, _Account] = {}
        self._next_order = 0
        self._next_execution = 0
        self._processed_until = clock.now()

    # --- accounts ------------------------------------------------------------------------------
    def open_account(self, brokerage_id: str, cash_cents: int) -> BrokerAccountState:
        """A new paper brokerage account; a brokerage id is never shared or reused."""
        if brokerage_id in self._accounts:
            raise Conflict(f"paper brokerage account {brokerage_id} already exists", field="brokerage_id")
        if cash_cents < 0:
            raise ValidationFailed("opening cash cannot be negative", field="cash")
        self._accounts[brokerage_id] = _Account(brokerage_id, cash_cents)
        return self.account(brokerage_id)

    def transfer(self, brokerage_id: str, cash_cents: int, *, ref: str | None = None) -> BrokerAccountState:
        """Cash in (positive) or out (negative) of an account, e.g. funding or a withdrawal. A transfer
        with a `ref` already seen on this account is not made again (a retried instruction)."""
        self._catch_up()
        account = self._account(brokerage_id)
        if ref is not None and ref in account.transfers:
            return self.account(brokerage_id)
        if account.cash_cents - _reserved_cash(account) + cash_cents < 0:
            raise ValidationFailed("transfer out exceeds the account's free cash", field="cash")
        account.cash_cents += cash_cents
        if ref is not None:
            account.transfers.add(ref)
        return self.account(brokerage_id)

    def has_account(self, brokerage_id: str) -> bool:
        return brokerage_id in self._accounts

    def account(self, brokerage_id: str) -> BrokerAccountState:
        self._catch_up()
        account = self._account(brokerage_id)
        positions = tuple(
            Position(instrument, quantity, account.costs.get(instrument, 0))
            for instrument, quantity in sorted(account.positions.items(), key=lambda kv: _sort_key(kv[0]))
            if quantity
        )
        return BrokerAccountState(brokerage_id, account.cash_cents, positions, _reserved_cash(account))

    # --- orders ----------------------------------------------------------------------------------
    def place_order(self, brokerage_id: str, request: OrderRequest) -> BrokerOrder:
        self._catch_up()
        account = self._account(brokerage_id)
        known = account.by_ref.get(request.client_ref)
        if known is not None:
            existing = account.orders[known].order
            if existing.request != request:
                raise Conflict(
                    f"client_ref {request.client_ref} already names a different order ({existing.broker_order_id})",
                    field="client_ref",
                )
            return existing
        refusal = self._refusal(account, request)  # decided before the order joins the book
        now = self._clock.now()
        self._next_order += 1
        order = BrokerOrder(f"P{self._next_order:08d}", brokerage_id, request, OrderStatus.SUBMITTED, now, now)
        if refusal is not None:  # recorded, so a retry of the same ref gets the same answer
            reason, message = refusal
            order = replace(order, status=OrderStatus.REJECTED, reject_reason=reason, message=message)
        working = _Order(order)
        account.orders[order.broker_order_id] = working
        account.by_ref[request.client_ref] = order.broker_order_id
        if not order.status.is_final:
            account.open[order.broker_order_id] = working
        if refusal is not None:
            return order
        self._reserve(account, working)
        self._match(account, working)
        return working.order

    def cancel_order(self, brokerage_id: str, broker_order_id: str) -> BrokerOrder:
        self._catch_up()
        account = self._account(brokerage_id)
        working = account.orders.get(broker_order_id)
        if working is None:
            raise NotFound(f"no order {broker_order_id} in account {brokerage_id}", field="broker_order_id")
        if not working.order.status.is_final:
            self._finish(working, OrderStatus.CANCELLED, "cancelled on request")
        return working.order

    def orders(self, brokerage_id: str) -> list[BrokerOrder]:
        self._catch_up()
        return [w.order for w in self._account(brokerage_id).orders.values()]

    def open_orders(self, brokerage_id: str) -> list[BrokerOrder]:
        self._catch_up()
        return [w.order for w in self._account(brokerage_id).working()]

    def order_by_ref(self, brokerage_id: str, client_ref: str) -> BrokerOrder | None:
        self._catch_up()
        account = self._account(brokerage_id)
        order_id = account.by_ref.get(client_ref)
        return account.orders[order_id].order if order_id else None

    def executions(self, brokerage_id: str) -> list[Execution]:
        self._catch_up()
        return list(self._account(brokerage_id).executions)

    def executions_since(self, brokerage_id: str, start: int) -> list[Execution]:
        self._catch_up()
        return self._account(brokerage_id).executions[start:]

    def settlements(self, brokerage_id: str) -> list[Settlement]:
        self._catch_up()
        return list(self._account(brokerage_id).settlements)

    def settlements_since(self, brokerage_id: str, start: int) -> list[Settlement]:
        self._catch_up()
        return self._account(brokerage_id).settlements[start:]

    def step(self, brokerage_id: str | None = None) -> None:
        """Work the resting orders against the market as of now (one account, or all)."""
        self._catch_up()
        if not self._calendar.is_open(self._clock.now()):
            return
        accounts = [self._account(brokerage_id)] if brokerage_id else list(self._accounts.values())
        for account in accounts:
            for working in account.working():
                if not working.order.status.is_final:
                    self._match(account, working)

    # --- validation --------------------------------------------------------------------------------
    def _refusal(self, account: _Account, request: OrderRequest) -> tuple[RejectReason, str] | None:
        if request.quantity <= 0:
            return RejectReason.BAD_QUANTITY, f"quantity must be positive (got {request.quantity})"
        if request.order_type is OrderType.LIMIT:
            price = request.limit_price_cents
            if price is None or price <= 0:
                return RejectReason.BAD_PRICE, "limit_price must be given and positive for a LIMIT order"
            tick = self._tick(request.instrument, price)
            if price % tick:
                return RejectReason.OFF_TICK, f"limit_price {price / 100:.2f} is off the {tick / 100:.2f} tick grid"
        elif request.limit_price_cents is not None:
            return RejectReason.BAD_PRICE, "a MARKET order takes no limit_price"
        if not self._calendar.is_open(self._clock.now()):
            return RejectReason.MARKET_CLOSED, f"the market is closed at {self._clock.now():%Y-%m-%d %H:%M %Z}"
        try:
            touch = self._touch(request.instrument)
        except MarketDataGap as gap:
            return RejectReason.UNKNOWN_CONTRACT, str(gap)
        return self._funding_refusal(account, request, touch)

    def _funding_refusal(
        self, account: _Account, request: OrderRequest, touch: _Touch
    ) -> tuple[RejectReason, str] | None:
        held = account.positions.get(request.instrument, 0)
        signed = request.quantity if request.side is Side.BUY else -request.quantity
        if held and (held > 0) != (held + signed > 0) and held + signed != 0:
            return RejectReason.POSITION_FLIP, f"order would take position {held} through zero; close it first"
        free = account.cash_cents - _reserved_cash(account)
        if request.side is Side.BUY:
            cost = self._buy_reservation(request, touch)
            if cost > free:
                return RejectReason.INSUFFICIENT_FUNDS, f"needs {cost / 100:,.2f} of free cash, has {free / 100:,.2f}"
            return None
        instrument = request.instrument
        if isinstance(instrument, OptionContract) and held <= 0:  # opening (or adding to) a short option
            if instrument.right is OptionRight.PUT:
                collateral = instrument.strike_cents * instrument.multiplier * request.quantity
                if collateral > free:
                    return (
                        RejectReason.NOT_CASH_SECURED,
                        f"short put needs {collateral / 100:,.2f} of free cash to secure it, has {free / 100:,.2f}",
                    )
                return None
            needed = instrument.multiplier * request.quantity
            available = _free_shares(account, instrument.underlying)
            if needed > available:
                return RejectReason.NOT_COVERED, f"short call needs {needed} shares, {available} are free to cover it"
            return None
        if isinstance(instrument, Equity) and request.quantity > _free_shares(account, instrument.ticker):
            return RejectReason.NOT_COVERED, "cannot sell shares the account does not hold free (no short stock)"
        if isinstance(instrument, OptionContract) and request.quantity > held - _working_sells(account, instrument):
            return RejectReason.POSITION_FLIP, "sell exceeds the long option position"
        return None

    # --- matching ----------------------------------------------------------------------------------
    def _match(self, account: _Account, working: _Order) -> None:
        order = working.order
        try:
            touch = self._touch(order.request.instrument)
        except MarketDataGap:
            return  # no quote now: the order rests
        price = self._fill_price(order.request, touch)
        if price is None:
            return
        quantity = order.remaining
        if self._settings.max_fill_per_step is not None:
            quantity = min(quantity, self._settings.max_fill_per_step)
        self._fill(account, working, quantity, price)

    def _fill_price(self, request: OrderRequest, touch: _Touch) -> int | None:
        tick = self._tick(request.instrument, touch.ask_cents)
        slip = self._settings.slippage_ticks * tick
        spread = touch.ask_cents - touch.bid_cents
        reach = int((Decimal(spread) * self._settings.passive_fill_fraction).to_integral_value(ROUND_HALF_EVEN))
        if request.side is Side.BUY:
            if request.order_type is OrderType.MARKET:
                return touch.ask_cents + slip
            limit = request.limit_price_cents or 0
            if limit >= touch.ask_cents:
                return min(limit, touch.ask_cents + slip)
            return limit if limit >= touch.ask_cents - reach else None
        if touch.bid_cents <= 0:
            return None  # nobody bids: a sell cannot fill
        if request.order_type is OrderType.MARKET:
            return max(touch.bid_cents - slip, tick)
        limit = request.limit_price_cents or 0
        if limit <= touch.bid_cents:
            return max(limit, touch.bid_cents - slip)
        return limit if limit <= touch.bid_cents + reach else None

    def _fill(self, account: _Account, working: _Order, quantity: int, price_cents: int) -> None:
        order = working.order
        instrument = order.request.instrument
        filled = order.filled_quantity + quantity
        commission = self._commission_due(instrument, filled) - order.commission_cents
        now = self._clock.now()
        self._next_execution += 1
        execution = Execution(
            f"E{self._next_execution:09d}",
            order.broker_order_id,
            order.client_ref,
            instrument,
            order.request.side,
            quantity,
            price_cents,
            commission,
            now,
        )
        account.executions.append(execution)
        account.cash_cents += execution.cash_cents
        signed = quantity if order.request.side is Side.BUY else -quantity
        self._move_position(
            account, instrument, signed, price_cents * quantity * instrument.multiplier * (1 if signed > 0 else -1)
        )
        status = OrderStatus.FILLED if filled == order.request.quantity else OrderStatus.PARTIALLY_FILLED
        working.order = replace(
            order,
            status=status,
            updated_at=now,
            filled_quantity=filled,
            fill_value_cents=order.fill_value_cents + price_cents * quantity * instrument.multiplier,
            commission_cents=order.commission_cents + commission,
        )
        self._reserve(account, working)

    def _move_position(self, account: _Account, instrument: Instrument, signed: int, cost_cents: int) -> None:
        held = account.positions.get(instrument, 0)
        new = held + signed
        cost = account.costs.get(instrument, 0)
        if held == 0 or (held > 0) == (signed > 0):
            cost += cost_cents  # opening or adding
        else:
            cost -= _share_of(cost, -signed, held)  # closing part: release its share of the cost
        account.positions[instrument] = new
        account.costs[instrument] = cost if new else 0
        if not new:
            del account.positions[instrument]
            account.costs.pop(instrument, None)

    def _reserve(self, account: _Account, working: _Order) -> None:
        """What a working order holds back: cash for buys and short puts, shares for covered sells."""
        order = working.order
        request = order.request
        remaining = order.remaining
        working.reserved_cents = working.reserved_shares = 0
        if not remaining:
            return
        instrument = request.instrument
        if request.side is Side.BUY:
            price = request.limit_price_cents or self._touch(instrument).ask_cents
            working.reserved_cents = price * remaining * instrument.multiplier + self._commission_due(
                instrument, remaining
            )
            return
        held = account.positions.get(instrument, 0)
        if isinstance(instrument, OptionContract) and held <= 0:
            if instrument.right is OptionRight.PUT:
                working.reserved_cents = instrument.strike_cents * instrument.multiplier * remaining
            else:
                working.reserved_shares = instrument.multiplier * remaining
        elif isinstance(instrument, Equity):
            working.reserved_shares = remaining

    def _finish(self, working: _Order, status: OrderStatus, message: str) -> None:
        working.order = replace(working.order, status=status, updated_at=self._clock.now(), message=message)
        working.reserved_cents = working.reserved_shares = 0

    # --- the close: DAY orders and expiries ------------------------------------------------------------
    def _catch_up(self) -> None:
        now = self._clock.now()
        if now <= self._processed_until:
            return
        for session in self._calendar.sessions_between(self._processed_until.date(), now.date()):
            close = self._calendar.close_at(session)
            if self._processed_until < close <= now:
                self._close_session(session, close)
        self._processed_until = now

    def _close_session(self, session: date, close: datetime) -> None:
        for account in self._accounts.values():
            for working in account.working():
                if not working.order.status.is_final and working.order.request.time_in_force is TimeInForce.DAY:
                    self._finish(working, OrderStatus.CANCELLED, "DAY order not filled by the close")
            for instrument in sorted(account.positions, key=_sort_key):
                if isinstance(instrument, OptionContract) and instrument.expiry <= session:
                    self._settle(account, instrument, session, close)
            for working in account.working():  # GTC orders on contracts that just expired
                instrument = working.order.request.instrument
                expired = isinstance(instrument, OptionContract) and instrument.expiry <= session
                if expired and not working.order.status.is_final:
                    self._finish(working, OrderStatus.CANCELLED, "contract expired")

    def _settle(self, account: _Account, option: OptionContract, session: date, close: datetime) -> None:
        quantity = account.positions[option]
        underlying = self._market.daily_bars(option.underlying, through=session)
        close_cents = int(Decimal(str(underlying.close[-1])).scaleb(2).to_integral_value(ROUND_HALF_EVEN))
        intrinsic = option.intrinsic_cents(close_cents)
        shares_per = option.multiplier * abs(quantity)
        strike_value = option.strike_cents * shares_per
        if intrinsic == 0:
            kind, shares, cash = SettlementKind.EXPIRED_WORTHLESS, 0, 0
        elif quantity < 0 and option.right is OptionRight.PUT:
            kind, shares, cash = SettlementKind.ASSIGNED, shares_per, -strike_value
        elif quantity < 0:
            kind, shares, cash = SettlementKind.CALLED_AWAY, -shares_per, strike_value
        elif option.right is OptionRight.CALL and account.cash_cents - _reserved_cash(account) >= strike_value:
            kind, shares, cash = SettlementKind.EXERCISED, shares_per, -strike_value
        elif option.right is OptionRight.PUT and _free_shares(account, option.underlying) >= shares_per:
            kind, shares, cash = SettlementKind.EXERCISED, -shares_per, strike_value
        else:
            kind, shares, cash = SettlementKind.CLOSED_AT_INTRINSIC, 0, intrinsic * shares_per
        del account.positions[option]
        account.costs.pop(option, None)
        if shares:
            stock = Equity(option.underlying)
            self._move_position(account, stock, shares, option.strike_cents * shares)
        account.cash_cents += cash
        account.settlements.append(Settlement(kind, option, quantity, shares, cash, close_cents, close))

    # --- helpers -------------------------------------------------------------------------------------------
    def _account(self, brokerage_id: str) -> _Account:
        account = self._accounts.get(brokerage_id)
        if account is None:
            raise NotFound(f"no paper brokerage account {brokerage_id}", field="brokerage_id")
        return account

    def _touch(self, instrument: Instrument) -> _Touch:
        now = self._clock.now()
        if isinstance(instrument, Equity):
            last = self._market.price(instrument.ticker, now)
            cents = cents_of_price(last)
            half = self._settings.equity_half_spread_cents
            return _Touch(max(cents - half, 1), cents + half)
        quote = self._market.chain(instrument.underlying, now).find(instrument)
        if quote is None:
            raise MarketDataGap(
                f"{instrument.symbol} is not a listed contract at {now:%Y-%m-%d %H:%M}", field="instrument"
            )
        return _Touch(quote.bid_cents, quote.ask_cents)

    def _tick(self, instrument: Instrument, price_cents: int) -> int:
        if isinstance(instrument, Equity):
            return self._settings.ticks.equity_tick_cents
        return self._settings.ticks.option_tick_cents(instrument.underlying, price_cents)

    def _commission_due(self, instrument: Instrument, quantity: int) -> int:
        """Commission for an order's first `quantity` filled, in whole cents (rounded up)."""
        s = self._settings
        if isinstance(instrument, OptionContract):
            due = max(s.option_commission_per_contract * quantity, s.option_commission_min)
        else:
            due = max(s.equity_commission_per_share * quantity, s.equity_commission_min)
        return int((due * 100).to_integral_value(ROUND_CEILING))

    def _buy_reservation(self, request: OrderRequest, touch: _Touch) -> int:
        price = request.limit_price_cents or touch.ask_cents
        instrument = request.instrument
        return price * request.quantity * instrument.multiplier + self._commission_due(instrument, request.quantity)


def _reserved_cash(account: _Account) -> int:
    secured = sum(
        i.strike_cents * i.multiplier * -q
        for i, q in account.positions.items()
        if isinstance(i, OptionContract) and i.right is OptionRight.PUT and q < 0
    )
    return secured + sum(w.reserved_cents for w in account.working())


def _free_shares(account: _Account, ticker: str) -> int:
    held = account.positions.get(Equity(ticker), 0)
    covering = sum(
        i.multiplier * -q
        for i, q in account.positions.items()
        if isinstance(i, OptionContract) and i.underlying == ticker and i.right is OptionRight.CALL and q < 0
    )
    working = sum(w.reserved_shares for w in account.working() if _underlying(w.order.request.instrument) == ticker)
    return held - covering - working


def _working_sells(account: _Account, instrument: Instrument) -> int:
    return sum(
        w.order.remaining
        for w in account.working()
        if w.order.request.instrument == instrument and w.order.request.side is Side.SELL
    )


def _underlying(instrument: Instrument) -> str:
    return instrument.ticker if isinstance(instrument, Equity) else instrument.underlying


def _share_of(total: int, part: int, whole: int) -> int:
    """`total` × part / whole, rounded half-even to the cent (cost released by a partial close)."""
    return int((Decimal(total) * part / whole).to_integral_value(ROUND_HALF_EVEN))


def _sort_key(instrument: Instrument) -> tuple[str, str]:
    return (_underlying(instrument), instrument.symbol)
