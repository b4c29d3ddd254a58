"""The brokerage vocabulary: orders, fills, settlements and account state as a broker reports them.

Pure data shared by the domain (order state machine, risk engine, strategies) and the broker port."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from alluse.domain.instruments import Instrument


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    DAY = "DAY"  # cancelled at the session's close if not filled
    GTC = "GTC"


class OrderStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"

    @property
    def is_final(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)


class RejectReason(StrEnum):
    BAD_QUANTITY = "BAD_QUANTITY"
    BAD_PRICE = "BAD_PRICE"
    OFF_TICK = "OFF_TICK"
    UNKNOWN_CONTRACT = "UNKNOWN_CONTRACT"
    MARKET_CLOSED = "MARKET_CLOSED"
    NOT_CASH_SECURED = "NOT_CASH_SECURED"
    NOT_COVERED = "NOT_COVERED"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    POSITION_FLIP = "POSITION_FLIP"


@dataclass(frozen=True)
class OrderRequest:
    client_ref: str  # ALL-USE's intent id, carried to the broker (IBKR orderRef): one order per ref, ever
    instrument: Instrument
    side: Side
    quantity: int  # contracts for options, shares for equities
    order_type: OrderType = OrderType.LIMIT
    limit_price_cents: int | None = None  # per share
    time_in_force: TimeInForce = TimeInForce.DAY


@dataclass(frozen=True)
class BrokerOrder:
    broker_order_id: str
    brokerage_id: str
    request: OrderRequest
    status: OrderStatus
    submitted_at: datetime
    updated_at: datetime
    filled_quantity: int = 0
    fill_value_cents: int = 0  # sum of price × quantity × multiplier over fills
    commission_cents: int = 0
    reject_reason: RejectReason | None = None
    message: str = ""

    @property
    def client_ref(self) -> str:
        return self.request.client_ref

    @property
    def remaining(self) -> int:
        return 0 if self.status.is_final else self.request.quantity - self.filled_quantity

    @property
    def average_fill_price(self) -> Decimal | None:
        """Dollars per share; None before the first fill."""
        if not self.filled_quantity:
            return None
        return Decimal(self.fill_value_cents) / (100 * self.filled_quantity * self.request.instrument.multiplier)


@dataclass(frozen=True)
class Execution:
    execution_id: str
    broker_order_id: str
    client_ref: str
    instrument: Instrument
    side: Side
    quantity: int
    price_cents: int  # per share
    commission_cents: int
    at: datetime

    @property
    def cash_cents(self) -> int:
        """Signed cash effect on the account, commission included."""
        gross = self.price_cents * self.quantity * self.instrument.multiplier
        return (-gross if self.side is Side.BUY else gross) - self.commission_cents


class SettlementKind(StrEnum):
    EXPIRED_WORTHLESS = "EXPIRED_WORTHLESS"
    ASSIGNED = "ASSIGNED"  # short put: shares bought at the strike
    CALLED_AWAY = "CALLED_AWAY"  # short call: shares sold at the strike
    EXERCISED = "EXERCISED"  # long option exercised
    CLOSED_AT_INTRINSIC = "CLOSED_AT_INTRINSIC"  # long option the account could not exercise


@dataclass(frozen=True)
class Settlement:
    """What expiry did to a position: option quantity removed, shares and cash moved."""

    kind: SettlementKind
    instrument: Instrument
    quantity: int  # signed option position that expired
    shares: int  # signed change in shares of the underlying
    cash_cents: int  # signed change in cash
    underlying_close_cents: int
    at: datetime


@dataclass(frozen=True)
class Position:
    instrument: Instrument
    quantity: int  # signed: negative = short
    cost_cents: int  # signed cash paid to open what is still open (negative for premium received)


@dataclass(frozen=True)
class BrokerAccountState:
    brokerage_id: str
    cash_cents: int
    positions: tuple[Position, ...] = field(default_factory=tuple)
    reserved_cents: int = 0  # cash securing short puts and working orders

    @property
    def free_cash_cents(self) -> int:
        return self.cash_cents - self.reserved_cents
