"""The broker port: what ALL-USE asks of a brokerage account. The paper broker implements it now,
the IBKR adapter (ib_async) later; every call names the one brokerage account it concerns.

The data it speaks (orders, executions, settlements) is the domain's: `alluse.domain.brokerage`."""

from __future__ import annotations

from typing import Protocol

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

__all__ = [
    "Broker",
    "BrokerAccountState",
    "BrokerOrder",
    "Execution",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "Position",
    "RejectReason",
    "Settlement",
    "SettlementKind",
    "Side",
    "TimeInForce",
]


class Broker(Protocol):
    def account(self, brokerage_id: str) -> BrokerAccountState: ...

    def place_order(self, brokerage_id: str, request: OrderRequest) -> BrokerOrder:
        """Idempotent by `client_ref`: a ref already known returns that order, never a second one."""
        ...

    def cancel_order(self, brokerage_id: str, broker_order_id: str) -> BrokerOrder: ...

    def orders(self, brokerage_id: str) -> list[BrokerOrder]: ...

    def open_orders(self, brokerage_id: str) -> list[BrokerOrder]:
        """The orders not final yet (IBKR: openOrders)."""
        ...

    def order_by_ref(self, brokerage_id: str, client_ref: str) -> BrokerOrder | None: ...

    def executions(self, brokerage_id: str) -> list[Execution]: ...

    def executions_since(self, brokerage_id: str, start: int) -> list[Execution]:
        """`executions(...)[start:]`, without handing over the whole history."""
        ...

    def settlements_since(self, brokerage_id: str, start: int) -> list[Settlement]:
        """`settlements(...)[start:]`."""
        ...

    def settlements(self, brokerage_id: str) -> list[Settlement]: ...
