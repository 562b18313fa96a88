"""Working orders of the simulated exchange, and the parameter checks Bybit makes on order entry.

A :class:`WorkingOrder` is the exchange's mutable record of one order (quantities in Decimal); the
engine only ever sees the frozen :class:`engine.core.models.Order` snapshots it produces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.core.models import (
    Instrument,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TriggerBy,
    TriggerDirection,
)
from engine.sim.fills import dec
from engine.venue.errors import InvalidRequest, QtyTooSmall

_LINK_ID = re.compile(r"[A-Za-z0-9_\-]{1,36}")


class OrderStateError(RuntimeError):
    """A working order whose fields contradict its type or status: a limit order without a price, an
    untriggered order without a trigger. Only a bug of the simulator or a hand-edited state file makes
    one; the matcher raises this rather than guess.
    """


@dataclass(slots=True)
class WorkingOrder:
    """The exchange's own record of an order, open or finished."""

    order_id: str
    link_id: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: Decimal
    price: float | None
    trigger_price: float | None
    trigger_direction: TriggerDirection | None
    trigger_by: TriggerBy | None
    reduce_only: bool
    close_on_trigger: bool
    time_in_force: TimeInForce
    status: OrderStatus
    created: float
    updated: float
    filled: Decimal = Decimal(0)
    filled_value: Decimal = Decimal(0)
    reject_reason: str = ""

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled

    @property
    def closes_only(self) -> bool:
        """Reduce-only in effect (closeOnTrigger implies reduce-only, as on Bybit)."""
        return self.reduce_only or self.close_on_trigger

    @property
    def limit_price(self) -> float:
        """The price of a limit order (:class:`OrderStateError` when it has none)."""
        if self.price is None:
            raise OrderStateError(f"order {self.order_id}: a {self.order_type.value} order without a price")
        return self.price

    @property
    def trigger(self) -> tuple[TriggerDirection, float]:
        """Direction and price of a conditional order (:class:`OrderStateError` when it lacks them)."""
        if self.trigger_direction is None or self.trigger_price is None:
            raise OrderStateError(f"order {self.order_id}: a {self.status.value} order without a trigger")
        return self.trigger_direction, self.trigger_price

    @property
    def is_resting_limit(self) -> bool:
        """A limit order on the book (not a conditional still waiting for its trigger)."""
        return self.order_type is OrderType.LIMIT and self.status in (
            OrderStatus.NEW,
            OrderStatus.PARTIALLY_FILLED,
        )

    def snapshot(self, account: str) -> Order:
        """The order as the venue reports it."""
        avg = float(self.filled_value / self.filled) if self.filled else None
        return Order(
            account=account,
            order_id=self.order_id,
            link_id=self.link_id,
            symbol=self.symbol,
            side=self.side,
            order_type=self.order_type,
            qty=float(self.qty),
            price=self.price,
            status=self.status,
            filled_qty=float(self.filled),
            avg_fill_price=avg,
            trigger_price=self.trigger_price,
            trigger_direction=self.trigger_direction,
            trigger_by=self.trigger_by,
            reduce_only=self.reduce_only,
            close_on_trigger=self.close_on_trigger,
            time_in_force=self.time_in_force,
            created=self.created,
            updated=self.updated,
            reject_reason=self.reject_reason,
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-ready record (Decimals as strings, enums as their Bybit spelling)."""
        return {
            "order_id": self.order_id,
            "link_id": self.link_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "qty": str(self.qty),
            "price": self.price,
            "trigger_price": self.trigger_price,
            "trigger_direction": None if self.trigger_direction is None else int(self.trigger_direction),
            "trigger_by": None if self.trigger_by is None else self.trigger_by.value,
            "reduce_only": self.reduce_only,
            "close_on_trigger": self.close_on_trigger,
            "time_in_force": self.time_in_force.value,
            "status": self.status.value,
            "created": self.created,
            "updated": self.updated,
            "filled": str(self.filled),
            "filled_value": str(self.filled_value),
            "reject_reason": self.reject_reason,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> WorkingOrder:
        """Inverse of :meth:`to_state`."""
        direction = data["trigger_direction"]
        trigger_by = data["trigger_by"]
        return cls(
            order_id=data["order_id"],
            link_id=data["link_id"],
            symbol=data["symbol"],
            side=Side(data["side"]),
            order_type=OrderType(data["order_type"]),
            qty=Decimal(data["qty"]),
            price=data["price"],
            trigger_price=data["trigger_price"],
            trigger_direction=None if direction is None else TriggerDirection(direction),
            trigger_by=None if trigger_by is None else TriggerBy(trigger_by),
            reduce_only=bool(data["reduce_only"]),
            close_on_trigger=bool(data["close_on_trigger"]),
            time_in_force=TimeInForce(data["time_in_force"]),
            status=OrderStatus(data["status"]),
            created=float(data["created"]),
            updated=float(data["updated"]),
            filled=Decimal(data["filled"]),
            filled_value=Decimal(data["filled_value"]),
            reject_reason=data["reject_reason"],
        )


# --- parameter checks (Bybit's order-entry validation) ----------------------------------------


def check_qty(qty: float, instrument: Instrument) -> Decimal:
    """A valid order quantity as Decimal: at least minOrderQty (110017, zero included), a multiple of
    qtyStep and at most maxOrderQty (10001)."""
    value = dec(qty)
    if value < 0:  # zero is "below the minimum", as a qty that rounds to nothing on the wire
        raise InvalidRequest(f"{instrument.symbol}: qty {qty} must be > 0", 10001)
    if value < dec(instrument.min_qty):
        raise QtyTooSmall(
            f"{instrument.symbol}: qty {qty} is below the minimum order qty {instrument.min_qty}", 10001
        )
    if value % dec(instrument.qty_step) != 0:
        raise InvalidRequest(
            f"{instrument.symbol}: qty {qty} is not a multiple of {instrument.qty_step}", 10001
        )
    if value > dec(instrument.max_qty):
        raise InvalidRequest(
            f"{instrument.symbol}: qty {qty} is above the maximum {instrument.max_qty}", 10001
        )
    return value


def check_price(price: float, instrument: Instrument, what: str = "price") -> float:
    """A valid price: positive and on the tick grid (10001 otherwise)."""
    if price <= 0 or dec(price) % dec(instrument.tick_size) != 0:
        raise InvalidRequest(
            f"{instrument.symbol}: {what} {price} must be > 0 and a multiple of {instrument.tick_size}", 10001
        )
    return price


def check_link_id(link_id: str) -> None:
    """orderLinkId: empty, or at most 36 of letters, digits, ``-`` and ``_``."""
    if link_id and not _LINK_ID.fullmatch(link_id):
        raise InvalidRequest(f"orderLinkId {link_id!r} must be 1-36 letters, digits, '-' or '_'", 10001)


def validate_request(request: OrderRequest, instrument: Instrument) -> Decimal:
    """Check a new order's parameters against the instrument; returns its quantity as Decimal."""
    check_link_id(request.link_id)
    qty = check_qty(request.qty, instrument)
    if request.order_type is OrderType.LIMIT:
        if request.price is None:
            raise InvalidRequest(f"{instrument.symbol}: a limit order needs a price", 10001)
        check_price(request.price, instrument)
    if request.trigger_price is not None:
        check_price(request.trigger_price, instrument, "triggerPrice")
        required_trigger_direction(request)
    elif request.trigger_direction is not None or request.trigger_by is not None:
        raise InvalidRequest(f"{instrument.symbol}: triggerDirection / triggerBy need a triggerPrice", 10001)
    return qty


def required_trigger_direction(request: OrderRequest) -> TriggerDirection:
    """The triggerDirection a conditional order must carry (10001 without one)."""
    if request.trigger_direction is None:
        raise InvalidRequest(f"{request.symbol}: a conditional order needs a triggerDirection", 10001)
    return request.trigger_direction
