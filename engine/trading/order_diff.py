"""The order diff: from a monitor's state, the orders it should have, and the actions to get there.

The orders a monitor should have are *derived* from its state by :func:`desired_orders` (entries
while building; a stop-loss covering the whole position; take-profits splitting the filled size;
a market close when closing, or a partial one down to ``trim_to``) and :func:`sync_orders` turns
the difference with what it has into actions: place what is missing (the stop-loss first; limit
entries only once the market entry has filled, so that the stop its fill calls for goes out before
them), amend what changed — never cancel-then-place, so coverage never drops — and cancel what is no
longer wanted. The same diff
serves the live path, retries and reconciliation after a restart; it is apart from the state machine
so that any other owner of orders (a follower account's, for one) derives its actions the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Instrument,
    ManagedOrder,
    Monitor,
    OrderRequest,
    OrderType,
    Phase,
    Side,
    SlotStatus,
    TimeInForce,
    TriggerBy,
    TriggerDirection,
)
from engine.trading.orders import Action, AmendOrder, CancelOrder, PlaceOrder
from engine.trading.params import TradingParams
from engine.trading.slots import is_entry, is_tp, qty_tolerance, slot_link_id, snap_qty, tp_index
from engine.trading.tp_sizing import tp_order_qtys


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """What one slot's order should look like."""

    side: Side
    order_type: OrderType
    qty: float
    price: float | None = None
    trigger_price: float | None = None


STOPLESS_INTENTS = frozenset({"emergency", "sl", "breakeven"})
"""Close intents under which no stop is wanted: it cannot be placed (an emergency), or its level is
already passed and the market close does what the stop would have done."""


def desired_orders(m: Monitor, instrument: Instrument, params: TradingParams) -> dict[str, OrderSpec]:
    """The orders the monitor should have on the venue now, by slot."""
    want: dict[str, OrderSpec] = {}
    if m.phase is Phase.CLOSED:
        return want
    closing = m.close_intent is not None
    if not closing and not m.entries_closed:
        for slot, order in m.orders.items():
            if is_entry(slot) and order.status in (SlotStatus.NEW, SlotStatus.PENDING, SlotStatus.OPEN):
                want[slot] = OrderSpec(m.side, order.order_type, order.qty, order.price)
    if m.size > qty_tolerance(instrument):
        exit_side = m.side.opposite
        if m.close_intent not in STOPLESS_INTENTS:
            want["sl"] = OrderSpec(exit_side, OrderType.MARKET, m.size, trigger_price=m.sl_price)
        if closing:
            want["cl"] = OrderSpec(exit_side, OrderType.MARKET, m.size)
        else:
            if m.trim_to is not None and m.size - m.trim_to > qty_tolerance(instrument):
                want["cl"] = OrderSpec(exit_side, OrderType.MARKET, snap_qty(m.size - m.trim_to, instrument))
            for slot, qty in tp_order_qtys(m, instrument, params).items():
                price = m.tp_prices[tp_index(slot)]
                want[slot] = OrderSpec(exit_side, OrderType.LIMIT, qty, price=price)
    return want


def _consumed(order: ManagedOrder, instrument: Instrument) -> bool:
    """A stop or close order that is finished and whose fills have all arrived."""
    if order.status is SlotStatus.GONE:
        return True
    return order.status is SlotStatus.FILLED and order.filled_qty >= order.qty - qty_tolerance(instrument)


def _roll_generations(m: Monitor, instrument: Instrument) -> None:
    """Give the next generation (a fresh link id) to TP/SL/close slots whose order is gone."""
    for slot, order in m.orders.items():
        if is_entry(slot):
            continue
        rolls = order.status is SlotStatus.GONE or (not is_tp(slot) and _consumed(order, instrument))
        if not rolls:
            continue
        order.prior_filled = snap_qty(order.prior_filled + order.filled_qty, instrument)
        order.filled_qty = 0.0
        order.generation += 1
        order.link_id = slot_link_id(m, slot, order.generation)
        order.order_id = ""
        order.status = SlotStatus.NEW


def _market_entry_in_flight(m: Monitor, instrument: Instrument) -> bool:
    """A market entry is out (or about to be) and no entry fill is accounted yet.

    Limit entries wait for it: its fill calls for the stop-loss, which must be the first order after
    it (invariant 1). Sent together, the limit entries' round trips would delay the stop.
    """
    if m.entry_qty > qty_tolerance(instrument):
        return False
    return any(
        is_entry(slot)
        and order.order_type is OrderType.MARKET
        and order.status in (SlotStatus.NEW, SlotStatus.PENDING, SlotStatus.OPEN, SlotStatus.FILLED)
        for slot, order in m.orders.items()
    )


def _slot_order(slots: set[str]) -> list[str]:
    """Protection first: stop-loss, close, then entries, then TPs."""

    def rank(slot: str) -> tuple[int, str]:
        if slot == "sl":
            return (0, slot)
        if slot == "cl":
            return (1, slot)
        if is_entry(slot):
            return (2, slot)
        return (3, f"{tp_index(slot):03d}")

    return sorted(slots, key=rank)


def _place_request(m: Monitor, order: ManagedOrder, params: TradingParams) -> OrderRequest:
    """The create request of a slot: the stop-loss as a reduce-only, close-on-trigger conditional."""
    if order.slot == "sl":
        direction = TriggerDirection.FALL if m.side is Side.BUY else TriggerDirection.RISE
        return OrderRequest(
            symbol=m.symbol,
            side=order.side,
            order_type=OrderType.MARKET,
            qty=order.qty,
            trigger_price=order.trigger_price,
            trigger_direction=direction,
            trigger_by=TriggerBy(params.trigger_by),
            reduce_only=True,
            close_on_trigger=True,
            link_id=order.link_id,
        )
    return OrderRequest(
        symbol=m.symbol,
        side=order.side,
        order_type=order.order_type,
        qty=order.qty,
        price=order.price if order.order_type is OrderType.LIMIT else None,
        reduce_only=not is_entry(order.slot),
        time_in_force=TimeInForce.GTC if order.order_type is OrderType.LIMIT else TimeInForce.IOC,
        link_id=order.link_id,
    )


def _address(order: ManagedOrder) -> dict[str, str]:
    """How to name an order to the venue: its id once known, else its link id."""
    return {"order_id": order.order_id} if order.order_id else {"link_id": order.link_id}


def _differs(a: float | None, b: float | None, step: float) -> bool:
    """Whether two prices or quantities differ by at least half a ``step`` (None only equals None)."""
    if a is None or b is None:
        return a is not b
    return abs(a - b) > step / 2


def sync_orders(m: Monitor, instrument: Instrument, params: TradingParams) -> list[Action]:
    """Bring the monitor's orders to :func:`desired_orders` (mutates ``m``; returns the actions)."""
    _roll_generations(m, instrument)
    want = desired_orders(m, instrument, params)
    eps = qty_tolerance(instrument)
    actions: list[Action] = []
    for slot in _slot_order(set(want) | set(m.orders)):
        order = m.orders.get(slot)
        spec = want.get(slot)
        if spec is None:
            if order is None:
                continue
            if slot == "sl" and m.size > eps and m.phase is not Phase.CLOSED:
                continue  # never take a stop away from an open position (emergency keeps it)
            if order.status is SlotStatus.NEW and is_entry(slot):
                order.status = SlotStatus.GONE
            elif order.status in (SlotStatus.PENDING, SlotStatus.OPEN):
                actions.append(CancelOrder(m.key, slot, CancelRequest(m.symbol, **_address(order))))
                order.status = SlotStatus.CANCELLING
            continue
        if order is None:
            order = ManagedOrder(slot, slot_link_id(m, slot, 0), 0, spec.side, spec.order_type, spec.qty)
            m.orders[slot] = order
        if order.failures >= params.sl_retry_attempts:
            continue  # given up for now; reconciliation resets the count and retries
        if order.status is SlotStatus.NEW:
            if (
                is_entry(slot)
                and order.order_type is OrderType.LIMIT
                and _market_entry_in_flight(m, instrument)
            ):
                continue  # placed once the market entry's fill (and so the stop) is in
            order.side, order.order_type, order.qty = spec.side, spec.order_type, spec.qty
            order.price, order.trigger_price = spec.price, spec.trigger_price
            order.reduce_only = not is_entry(slot)
            actions.append(PlaceOrder(m.key, slot, _place_request(m, order, params)))
            order.status = SlotStatus.PENDING
        elif order.status is SlotStatus.OPEN and not is_entry(slot) and slot != "cl":
            qty_changed = _differs(order.qty, spec.qty, instrument.qty_step)
            price_changed = _differs(order.price, spec.price, instrument.tick_size)
            trigger_changed = _differs(order.trigger_price, spec.trigger_price, instrument.tick_size)
            if qty_changed or price_changed or trigger_changed:
                previous = (order.qty, order.price, order.trigger_price)
                order.qty, order.price, order.trigger_price = spec.qty, spec.price, spec.trigger_price
                request = AmendRequest(
                    m.symbol,
                    qty=spec.qty if qty_changed else None,
                    price=spec.price if price_changed else None,
                    trigger_price=spec.trigger_price if trigger_changed else None,
                    **_address(order),
                )
                actions.append(AmendOrder(m.key, slot, request, previous))
    return actions
