"""ManagedOrder ⇄ JSON for the store (integers and strings only: cents stay exact)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alluse.domain.brokerage import OrderRequest, OrderType, Side, TimeInForce
from alluse.domain.instruments import instrument_from_symbol
from alluse.domain.orders import ManagedOrder, OrderState, Quote, StateChange
from alluse.domain.sleeves import SleeveKind


def order_to_json(order: ManagedOrder) -> dict[str, Any]:
    request = order.request
    quote = order.reference_quote
    return {
        "intent_id": order.intent_id,
        "account_id": order.account_id,
        "sleeve": order.sleeve.value,
        "request": {
            "instrument": request.instrument.symbol,
            "side": request.side.value,
            "quantity": request.quantity,
            "order_type": request.order_type.value,
            "limit_price_cents": request.limit_price_cents,
            "time_in_force": request.time_in_force.value,
        },
        "state": order.state.value,
        "broker_order_id": order.broker_order_id,
        "filled_quantity": order.filled_quantity,
        "fill_value_cents": order.fill_value_cents,
        "commission_cents": order.commission_cents,
        "attempts": order.attempts,
        "submitted_at": _iso(order.submitted_at),
        "started_at": _iso(order.started_at),
        "reference_quote": None if quote is None else [quote.bid_cents, quote.ask_cents],
        "history": [[c.at.isoformat(), c.from_state.value, c.to_state.value, c.why] for c in order.history],
    }


def order_from_json(data: dict[str, Any]) -> ManagedOrder:
    r = data["request"]
    request = OrderRequest(
        client_ref=data["intent_id"],
        instrument=instrument_from_symbol(r["instrument"]),
        side=Side(r["side"]),
        quantity=int(r["quantity"]),
        order_type=OrderType(r["order_type"]),
        limit_price_cents=None if r["limit_price_cents"] is None else int(r["limit_price_cents"]),
        time_in_force=TimeInForce(r["time_in_force"]),
    )
    quote = data["reference_quote"]
    return ManagedOrder(
        intent_id=data["intent_id"],
        account_id=data["account_id"],
        sleeve=SleeveKind(data["sleeve"]),
        request=request,
        state=OrderState(data["state"]),
        broker_order_id=data["broker_order_id"],
        filled_quantity=int(data["filled_quantity"]),
        fill_value_cents=int(data["fill_value_cents"]),
        commission_cents=int(data["commission_cents"]),
        attempts=int(data["attempts"]),
        submitted_at=_when(data["submitted_at"]),
        started_at=_when(data["started_at"]),
        reference_quote=None if quote is None else Quote(int(quote[0]), int(quote[1])),
        history=tuple(
            StateChange(datetime.fromisoformat(at), OrderState(a), OrderState(b), why)
            for at, a, b, why in data["history"]
        ),
    )


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
