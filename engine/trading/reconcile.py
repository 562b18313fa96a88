"""Reconciliation: make the monitors agree with the venue before (and while) the engine acts.

:func:`reconcile_account` is pure: given the monitors of one account and a :class:`VenueView` (its
positions, open orders and recent executions), it returns the transitions that repair the monitors,
the orphan orders to cancel and the alerts to raise:

- executions we missed (the engine was down, a stream dropped) are replayed through the same fill
  logic as the live path, so positions that closed meanwhile close with their real exit;
- our open orders are matched to monitor slots by link id; slots whose order vanished are marked
  gone and re-placed (a stop-loss missing on the venue comes back at once); our orders belonging to
  no live monitor, or to an older generation of a slot, are cancelled;
- orders with our prefix but another instance tag raise an alert: another process is trading;
- (with positions) a monitored position that is flat on the venue with no execution to explain it
  is closed as ``manual`` at the mark; a size that drifted is taken from the venue; a position with
  no monitor is adopted and protected.

:func:`read_view` is the async part: the reads, in an order that cannot miss a fill (positions and
orders first, executions last).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from engine.alerts.model import Alert, Severity
from engine.core.link_ids import parse_link_id
from engine.core.models import (
    CancelRequest,
    Execution,
    Instrument,
    ManagedOrder,
    Monitor,
    Order,
    Phase,
    Position,
    SlotStatus,
    Trade,
)
from engine.trading.monitor import (
    Transition,
    adopt_position,
    apply_fill,
    close_trade,
    finish_transition,
    observe_order,
    stronger,
)
from engine.trading.orders import CancelOrder
from engine.trading.params import TradingParams
from engine.trading.slots import is_entry, qty_tolerance
from engine.venue.base import Venue
from persistence.reasons import Reason

STREAM_GRACE_S = 5.0
"""A fill younger than this that reconciliation applies first is not counted as drift."""


@dataclass(frozen=True, slots=True)
class VenueView:
    """What the venue says about one account. ``positions`` is None for an orders-only pass."""

    positions: list[Position] | None
    open_orders: list[Order]
    executions: list[Execution]
    marks: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class ReconcileOutcome:
    """Transitions per monitor (adopted ones included), orphan cancels, alerts, and a drift count."""

    transitions: list[Transition] = field(default_factory=list)
    orphan_cancels: list[CancelOrder] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    repairs: int = 0
    applied_exec_ids: list[str] = field(default_factory=list)


async def read_view(venue: Venue, since: float, *, with_positions: bool) -> VenueView:
    """Read positions (optional), open orders, then executions since ``since`` (a fill that lands
    between the reads is then in the executions, never lost between two answers)."""
    positions = await venue.positions() if with_positions else None
    orders = await venue.open_orders()
    executions = await venue.executions(since)
    marks: dict[str, float] = {}
    if positions:
        marks = {p.symbol: p.mark_price for p in positions if p.is_open}
    return VenueView(positions, orders, executions, marks)


def _is_stop_for(order: Order, position: Position) -> bool:
    """An order that protects ``position`` as a stop-loss would (any author)."""
    return (
        order.symbol == position.symbol
        and position.side is not None
        and order.side is position.side.opposite
        and order.trigger_price is not None
        and (order.reduce_only or order.close_on_trigger)
        and (order.trigger_price - position.mark_price) * position.side.sign < 0
    )


def _adopt_order(m: Monitor, slot: str, order: Order, generation: int) -> None:
    """Take a newer-generation order of ours (placed just before a crash) into its slot."""
    previous = m.orders.get(slot)
    m.orders[slot] = ManagedOrder(
        slot=slot,
        link_id=order.link_id,
        generation=generation,
        side=order.side,
        order_type=order.order_type,
        qty=order.qty,
        price=order.price,
        trigger_price=order.trigger_price,
        reduce_only=order.reduce_only or order.close_on_trigger,
        status=SlotStatus.OPEN,
        order_id=order.order_id,
        filled_qty=order.filled_qty,
        prior_filled=previous.total_filled if previous is not None else 0.0,
    )


def reconcile_account(
    *,
    account: str,
    monitors: Mapping[str, Monitor],
    view: VenueView,
    instruments: Mapping[str, Instrument],
    params: TradingParams,
    tag: str,
    new_monitor_id: Callable[[str], str],
    now: float,
) -> ReconcileOutcome:
    """Repair one account's monitors against the venue (see the module doc)."""
    out = ReconcileOutcome()
    ms = {
        k: copy.deepcopy(m)
        for k, m in monitors.items()
        if m.account == account and m.phase is not Phase.CLOSED and m.symbol in instruments
    }
    by_id = {m.monitor_id: m for m in ms.values()}
    reasons: dict[str, Reason | None] = {k: None for k in ms}
    alerts: dict[str, list[Alert]] = {k: [] for k in ms}
    trades: dict[str, Trade] = {}
    durable: set[str] = set()

    def live_for(symbol: str) -> Monitor | None:
        return next((m for m in ms.values() if m.symbol == symbol and m.phase is not Phase.CLOSED), None)

    # 1. fills we have not seen yet
    for exe in sorted(view.executions, key=lambda e: e.ts):
        parsed = parse_link_id(exe.link_id)
        target = by_id.get(parsed.monitor_id) if parsed is not None and parsed.tag == tag else None
        if parsed is None or parsed.tag != tag:
            target = live_for(exe.symbol)
        if target is None or target.phase is Phase.CLOSED or exe.exec_id in target.exec_ids:
            continue
        reason, fill_alerts, trade = apply_fill(target, exe, instruments[target.symbol], params)
        if reason is None:
            continue
        out.applied_exec_ids.append(exe.exec_id)
        if now - exe.ts > STREAM_GRACE_S:
            out.repairs += 1  # a recent fill is most likely still on its way through the stream
        reasons[target.key] = stronger(reasons[target.key], reason)
        alerts[target.key] += fill_alerts
        if trade is not None:
            trades[target.key] = trade

    # 2. open orders against slots
    seen: set[tuple[str, str]] = set()
    foreign: list[Order] = []
    for order in view.open_orders:
        parsed = parse_link_id(order.link_id)
        if parsed is not None and parsed.tag == tag:
            owner = by_id.get(parsed.monitor_id)
            slot = owner.orders.get(parsed.slot) if owner is not None else None
            if owner is None or (slot is not None and parsed.generation < slot.generation):
                out.orphan_cancels.append(
                    CancelOrder("", None, CancelRequest(order.symbol, order_id=order.order_id))
                )
                continue
            if slot is None or parsed.generation > slot.generation:
                _adopt_order(owner, parsed.slot, order, parsed.generation)
                reasons[owner.key] = stronger(reasons[owner.key], Reason.ORDER_UPDATE)
            else:
                changed, _, _ = observe_order(owner, order)
                changed |= _take_terms(slot, order)
                if changed:
                    reasons[owner.key] = stronger(reasons[owner.key], Reason.ORDER_UPDATE)
            seen.add((owner.key, parsed.slot))
            continue
        if parsed is not None:
            foreign.append(order)
            continue
        for m in ms.values():
            if m.symbol != order.symbol:
                continue
            for slot_name, mo in m.orders.items():
                if mo.order_id and mo.order_id == order.order_id:
                    observe_order(m, order)
                    _take_terms(mo, order)
                    seen.add((m.key, slot_name))
    for m in ms.values():
        eps = qty_tolerance(instruments[m.symbol])
        for slot_name, mo in m.orders.items():
            if not mo.status.live or (m.key, slot_name) in seen:
                continue
            was = mo.status
            if mo.filled_qty >= mo.qty - eps:
                mo.status = SlotStatus.FILLED
            else:
                mo.status = SlotStatus.GONE
                if was is SlotStatus.OPEN and not is_entry(slot_name):
                    out.repairs += 1
                    severity = Severity.WARNING if slot_name == "sl" else Severity.INFO
                    alerts[m.key].append(
                        Alert(severity, "order_missing", f"{m.key}: {slot_name.upper()} missing on the venue")
                    )
            reasons[m.key] = stronger(reasons[m.key], Reason.ORDER_UPDATE)
    if foreign:
        tags = sorted({link.tag for o in foreign if (link := parse_link_id(o.link_id)) is not None})
        out.alerts.append(
            Alert(
                Severity.CRITICAL,
                "foreign_orders",
                f"{account}: {len(foreign)} open order(s) carry our link-id prefix from another engine "
                f"instance ({', '.join(tags)}): another process may be trading this account",
            )
        )

    # 3. positions: closes we could not explain, drift, and adoption
    adopted: list[Transition] = []
    if view.positions is not None:
        open_positions = {p.symbol: p for p in view.positions if p.is_open}
        last_fill: dict[str, float] = {}
        for exe in view.executions:
            last_fill[exe.symbol] = max(last_fill.get(exe.symbol, exe.ts), exe.ts)
        for m in ms.values():
            if m.phase is Phase.CLOSED:
                continue
            instrument = instruments[m.symbol]
            eps = qty_tolerance(instrument)
            p = open_positions.get(m.symbol)
            venue_size = p.size if p is not None and p.side is m.side else 0.0
            if abs(venue_size - m.size) <= eps:
                continue
            if p is not None and last_fill.get(m.symbol, float("-inf")) >= p.ts:
                continue  # fills raced the read: judge on the next pass
            out.repairs += 1
            mark = view.marks.get(m.symbol) or (p.mark_price if p is not None else 0.0) or m.avg_entry
            if venue_size <= eps and m.size > eps:
                _synthetic_exit(m, m.size, mark, instrument)
                trades[m.key] = close_trade(m, "manual", now, instrument)
                reasons[m.key] = Reason.POSITION_CLOSED
                alerts[m.key].append(
                    Alert(
                        Severity.WARNING,
                        "closed_unexplained",
                        f"{m.key}: flat on the venue with no execution found; exit estimated at {mark:g}",
                    )
                )
                continue
            if venue_size > m.size:
                extra = venue_size - m.size
                entry = p.entry_price if p is not None else mark
                m.entry_qty = instrument.round_qty(m.entry_qty + extra, "nearest")
                m.entry_cost += entry * extra
                m.size = venue_size
                if m.opened_at is None:
                    m.opened_at = now
            else:
                _synthetic_exit(m, m.size - venue_size, mark, instrument)
            durable.add(m.key)
            reasons[m.key] = stronger(reasons[m.key], Reason.POSITION_UPDATE)
            alerts[m.key].append(
                Alert(
                    Severity.WARNING, "size_drift", f"{m.key}: size corrected to the venue's {venue_size:g}"
                )
            )
        covered = {m.symbol for m in ms.values() if m.phase is not Phase.CLOSED}
        for p in open_positions.values():
            if p.symbol in covered or p.symbol not in instruments or p.side is None:
                continue
            stop = next((o for o in view.open_orders if _is_stop_for(o, p) and o.qty > 0), None)
            out.repairs += 1
            adopted.append(
                adopt_position(
                    monitor_id=new_monitor_id(p.symbol),
                    tag=tag,
                    position=p,
                    stop_order=stop,
                    mark=view.marks.get(p.symbol, p.mark_price),
                    now=now,
                    instrument=instruments[p.symbol],
                    params=params,
                )
            )

    # 4. give up-counts restart (the periodic pass is the retry), then derive the order actions
    for key, m in ms.items():
        for mo in m.orders.values():
            mo.failures = 0
        t = finish_transition(m, instruments[m.symbol], params, reasons[key], alerts[key], trades.get(key))
        t.durable = key in durable
        out.transitions.append(t)
    out.transitions += adopted
    return out


def _take_terms(slot: ManagedOrder, order: Order) -> bool:
    """Believe the venue about an open order's qty and prices (an amend may have been lost in a
    crash); the next sync amends it back to what the monitor wants. True when anything changed."""
    if not order.status.is_open or slot.status is not SlotStatus.OPEN:
        return False
    terms = (order.qty, order.price, order.trigger_price)
    changed = terms != (slot.qty, slot.price, slot.trigger_price)
    slot.qty, slot.price, slot.trigger_price = terms
    return changed


def _synthetic_exit(m: Monitor, qty: float, price: float, instrument: Instrument) -> None:
    """Account an exit the executions do not show (estimated at ``price``, no fee known)."""
    avg = m.avg_entry
    m.size = instrument.round_qty(m.size - qty, "nearest")
    m.exit_qty = instrument.round_qty(m.exit_qty + qty, "nearest")
    m.exit_value += price * qty
    m.gross_pnl += (price - avg) * qty * m.side.sign
