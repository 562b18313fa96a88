"""Pure TP/SL decisions: (monitor, event, instrument, params) -> :class:`Transition`.

A transition is the monitor's new state, the order actions to send, the reason to save it with,
alerts to raise and, when the position closed, the trade to record. Nothing here awaits or reads a
clock, so every rule is unit-testable without a venue.

This module is the state machine: fills, order updates, the venue's answers and prices move a
monitor through its phases (building, monitoring, profit taking, closed), and the operator's
decisions (close, cancel, breakeven) do the same. Which orders a state calls for, and the actions
that get there, is :mod:`engine.trading.order_diff`; every transition ends with that diff
(:func:`finish_transition`).
"""

from __future__ import annotations

import copy
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
    OrderStatus,
    Phase,
    Position,
    RoundingMode,
    Side,
    SlotStatus,
    Trade,
    TriggerBy,
)
from engine.core.numbers import fmt_monitor, fmt_number, fmt_usdt
from engine.trading.approaches import TradePlan, breakeven_price
from engine.trading.order_diff import sync_orders
from engine.trading.orders import Action, ActionResult, AmendOrder, CancelOrder, PlaceOrder
from engine.trading.params import TradingParams
from engine.trading.slots import is_entry, is_tp, qty_tolerance, slot_link_id, snap_qty
from engine.venue.errors import (
    NothingToReduce,
    NotModified,
    OrderNotFound,
    VenueError,
    is_trigger_already_reached,
)
from engine.venue.withdrawal import Withdrawn
from persistence.reasons import Reason

EXEC_IDS_KEPT = 500
"""Execution ids remembered per monitor for de-duplication (a trade has a handful of fills)."""

# When one transition has several reasons, the strongest names the save (critical ones first).
_PRIORITY = [
    Reason.POSITION_CLOSED,
    Reason.MONITOR_REMOVED,
    Reason.SL_HIT,
    Reason.EMERGENCY,
    Reason.TP_HIT,
    Reason.BREAKEVEN_MOVED,
    Reason.MONITOR_CREATED,
    Reason.PHASE_CHANGE,
    Reason.LIMIT_FILL_PROGRESS,
    Reason.TP_REBALANCED,
    Reason.ORDER_UPDATE,
    Reason.MONITORING_UPDATE,
]


def stronger(a: Reason | None, b: Reason | None) -> Reason | None:
    """The more important of two save reasons."""
    if a is None or b is None:
        return a or b
    rank = {r: i for i, r in enumerate(_PRIORITY)}
    return a if rank.get(a, len(rank)) <= rank.get(b, len(rank)) else b


@dataclass(slots=True)
class Transition:
    """The outcome of one decision."""

    monitor: Monitor
    actions: list[Action] = field(default_factory=list)
    reason: Reason | None = None
    alerts: list[Alert] = field(default_factory=list)
    trade: Trade | None = None
    durable: bool = False  # save with force=True even if the reason is not critical


def _match_slot(m: Monitor, link_id: str, order_id: str) -> tuple[str, bool] | None:
    """The slot an order or fill belongs to, and whether it is the slot's current generation."""
    parsed = parse_link_id(link_id)
    if parsed is not None and parsed.tag == m.tag and parsed.monitor_id == m.monitor_id:
        order = m.orders.get(parsed.slot)
        if order is None:
            return None
        return parsed.slot, parsed.generation == order.generation
    if order_id:
        for slot, order in m.orders.items():
            if order.order_id == order_id:
                return slot, True
        if link_id:
            for slot, order in m.orders.items():
                if order.link_id == link_id:
                    return slot, True
    return None


def belongs_elsewhere(m: Monitor, link_id: str) -> bool:
    """True when ``link_id`` is one of our ids but of another (e.g. an earlier) monitor."""
    parsed = parse_link_id(link_id)
    return parsed is not None and parsed.tag == m.tag and parsed.monitor_id != m.monitor_id


# --- construction -------------------------------------------------------------------------------


def new_monitor(plan: TradePlan, monitor_id: str, tag: str, now: float) -> Monitor:
    """A monitor for a planned trade, its entries ready to send (generation 0)."""
    request = plan.request
    monitor = Monitor(
        monitor_id=monitor_id,
        account=request.account,
        symbol=request.symbol,
        side=request.side,
        approach=request.approach.value,
        created_at=now,
        sl_price=plan.sl_price,
        tp_prices=list(plan.tp_prices),
        tp_split=list(plan.tp_split),
        tag=tag,
    )
    for entry in plan.entries:
        monitor.orders[entry.slot] = ManagedOrder(
            slot=entry.slot,
            link_id=slot_link_id(monitor, entry.slot, 0),
            generation=0,
            side=request.side,
            order_type=entry.order_type,
            qty=entry.qty,
            price=entry.price,
        )
    return monitor


def open_monitor(m: Monitor, instrument: Instrument, params: TradingParams) -> Transition:
    """The first transition of a new monitor: save it (critical) and send its entries."""
    m = copy.deepcopy(m)
    return finish_transition(m, instrument, params, Reason.MONITOR_CREATED, [], None)


def adopt_position(
    *,
    monitor_id: str,
    tag: str,
    position: Position,
    stop_order: Order | None,
    mark: float,
    now: float,
    instrument: Instrument,
    params: TradingParams,
) -> Transition:
    """A monitor for a position found on the venue with none of ours.

    An existing stop order (reduce-only/close-on-trigger, loss side) becomes its stop-loss slot and
    is amended to cover the whole size; otherwise one is placed ``adopt_stop_loss_pct`` from the
    entry (from the mark when the entry's stop would already have triggered). Raises ValueError for
    a flat position (no side): there is nothing to adopt.
    """
    side = position.side
    if side is None:
        raise ValueError(f"{position.account}:{position.symbol}: a flat position cannot be adopted")
    monitor = Monitor(
        monitor_id=monitor_id,
        account=position.account,
        symbol=position.symbol,
        side=side,
        approach="adopted",
        created_at=now,
        sl_price=0.0,
        phase=Phase.MONITORING,
        size=position.size,
        entry_qty=position.size,
        entry_cost=position.entry_price * position.size,
        position_entry=position.entry_price,
        tps_enabled=False,
        entries_closed=True,
        tag=tag,
        opened_at=now,
    )
    if stop_order is not None and stop_order.trigger_price is not None:
        monitor.sl_price = stop_order.trigger_price
        monitor.orders["sl"] = ManagedOrder(
            slot="sl",
            link_id=stop_order.link_id,
            generation=0,
            side=side.opposite,
            order_type=stop_order.order_type,
            qty=stop_order.qty,
            trigger_price=stop_order.trigger_price,
            reduce_only=True,
            status=SlotStatus.OPEN,
            order_id=stop_order.order_id,
        )
    else:
        distance = params.adopt_stop_loss_pct / 100.0
        rounding: RoundingMode = "down" if side is Side.BUY else "up"
        stop = instrument.round_price(position.entry_price * (1 - side.sign * distance), rounding)
        if mark > 0 and (mark - stop) * side.sign <= 0:
            stop = instrument.round_price(mark * (1 - side.sign * distance), rounding)
        monitor.sl_price = stop
    alert = Alert(
        Severity.WARNING,
        "position_adopted",
        f"{fmt_monitor(monitor)}: adopted an unmonitored position of {fmt_number(position.size)} at "
        f"{fmt_number(position.entry_price)}, stop-loss {fmt_number(monitor.sl_price)}",
        key=monitor.key,
    )
    return finish_transition(monitor, instrument, params, Reason.MONITOR_CREATED, [alert], None)


# --- phases and closing -------------------------------------------------------------------------


def entries_live(m: Monitor) -> bool:
    """Whether the monitor still has entries working (or about to be sent)."""
    if m.entries_closed or m.close_intent is not None:
        return False
    return any(
        o.status in (SlotStatus.NEW, SlotStatus.PENDING, SlotStatus.OPEN)
        for s, o in m.orders.items()
        if is_entry(s)
    )


def _settle_phase(m: Monitor, instrument: Instrument) -> Reason | None:
    """Phase changes that follow from the state (not from one particular fill)."""
    if m.phase is Phase.CLOSED:
        return None
    if m.size <= qty_tolerance(instrument):
        if m.entry_qty <= qty_tolerance(instrument) and not entries_live(m):
            m.phase = Phase.CLOSED  # nothing ever filled and nothing is left to fill
            return Reason.MONITOR_REMOVED
        return None
    if m.phase is Phase.BUILDING and not entries_live(m):
        m.phase = Phase.MONITORING
        return Reason.PHASE_CHANGE
    return None


def finish_transition(
    m: Monitor,
    instrument: Instrument,
    params: TradingParams,
    reason: Reason | None,
    alerts: list[Alert],
    trade: Trade | None,
    durable: bool = False,
) -> Transition:
    """Settle the phase, derive the order actions, and package the transition (mutates ``m``)."""
    actions: list[Action] = []
    trimmed = m.trim_to is not None and m.size <= m.trim_to + qty_tolerance(instrument)
    if trimmed or m.close_intent is not None:
        m.trim_to = None  # trimmed (or closing anyway)
    for _ in range(3):
        reason = stronger(reason, _settle_phase(m, instrument))
        more = sync_orders(m, instrument, params)
        actions += more
        if _settle_phase(m, instrument) is None:
            break
    if any(isinstance(a, PlaceOrder) for a in actions):
        # write-ahead: a new link id is on disk before it is sent, so a restart never reuses it
        reason = stronger(reason, Reason.ORDER_UPDATE)
        durable = True
    return Transition(m, actions, reason, alerts, trade, durable)


def exit_reason(m: Monitor, slot: str | None, forced: str | None = None) -> str:
    """The ledger reason of the fill that flattened the position (``forced``: the exchange's own
    exit, see :attr:`Execution.forced_exit_reason`)."""
    if forced is not None:
        return forced
    if slot is None or is_entry(slot):
        return "manual"
    if is_tp(slot):
        return "tp"
    if slot == "sl":
        return "breakeven" if m.breakeven else "sl"
    return m.close_intent or "manual"


def close_trade(m: Monitor, reason: str, closed_at: float, instrument: Instrument) -> Trade:
    """Mark the monitor closed and build its ledger entry (PnL net of all fees and funding)."""
    m.phase = Phase.CLOSED
    return Trade(
        account=m.account,
        symbol=m.symbol,
        side=m.side,
        approach=m.approach,
        reason=reason,
        entry_price=instrument.round_price(m.avg_entry),
        exit_price=instrument.round_price(m.avg_exit),
        qty=snap_qty(m.entry_qty, instrument),
        pnl=round(m.gross_pnl - m.fees - m.funding, 8),
        fees=round(m.fees, 8),
        opened_at=m.opened_at if m.opened_at is not None else m.created_at,
        closed_at=closed_at,
        tps_hit=m.tps_filled(),
        monitor_id=m.monitor_id,
        funding=round(m.funding, 8),
        exit_estimated=m.exit_estimated,
    )


def held_entry(m: Monitor) -> float:
    """The average entry of what is held now, as the exchange computes it (state saved before the
    monitor kept it falls back to the average of every entry)."""
    return m.position_entry if m.position_entry > 0 else m.avg_entry


def _book_entry(m: Monitor, qty: float, price: float, instrument: Instrument) -> None:
    """An entry fill: the held position's entry becomes the quantity-weighted average."""
    held = m.size if m.size > qty_tolerance(instrument) else 0.0
    m.position_entry = (held_entry(m) * held + price * qty) / (held + qty) if held else price
    m.size = snap_qty(m.size + qty, instrument)
    m.entry_qty = snap_qty(m.entry_qty + qty, instrument)
    m.entry_cost += price * qty


def book_exit(m: Monitor, qty: float, price: float, instrument: Instrument) -> None:
    """An exit of ``qty`` at ``price``: realised against the entry of what is held at that moment
    (an exit leaves that entry as it is), the way the exchange realises it."""
    entry = held_entry(m)
    m.size = snap_qty(m.size - qty, instrument)
    m.exit_qty = snap_qty(m.exit_qty + qty, instrument)
    m.exit_value += price * qty
    m.gross_pnl += (price - entry) * qty * m.side.sign
    m.position_entry = entry if m.size > qty_tolerance(instrument) else 0.0


def _beyond(m: Monitor, price: float, level: float) -> bool:
    """Whether ``price`` is past ``level`` on the position's profit side."""
    return (price - level) * m.side.sign > 0


def _seek_breakeven(
    m: Monitor, price: float | None, instrument: Instrument, params: TradingParams
) -> list[Alert]:
    """Aim the stop at breakeven (after TP1, or on the operator's word).

    The stop moves now only when ``price`` (where it triggers) is beyond breakeven: the venue refuses
    a stop on the wrong side of it (110092/110093), and the working stop protects the position
    meanwhile. Otherwise the move waits in ``breakeven_at`` for :func:`apply_price`. ``breakeven``
    turns true, with its alert, only once the venue accepted (:func:`_confirm_breakeven`).
    """
    be = breakeven_price(m.side, held_entry(m), instrument, params)
    if not _beyond(m, be, m.sl_price):
        m.breakeven, m.breakeven_at = True, None  # the stop already is at or beyond breakeven
        return []
    m.breakeven_at = be
    if price is not None and _beyond(m, price, be):
        m.sl_price = be
        return []
    px = instrument.tick_size
    where = "unknown" if price is None else fmt_number(price, px)
    return [
        Alert(
            Severity.INFO,
            "breakeven_waiting",
            f"{fmt_monitor(m)}: breakeven {fmt_number(be, px)} not reached (price {where}); the stop "
            f"stays at {fmt_number(m.sl_price, px)} and moves once the price passes breakeven",
            key=m.key,
        )
    ]


def _confirm_breakeven(m: Monitor, trigger: float | None, instrument: Instrument) -> list[Alert]:
    """The venue accepted the stop at ``trigger``: at or beyond a pending breakeven, it is there."""
    if m.breakeven_at is None or trigger is None:
        return []
    if (trigger - m.breakeven_at) * m.side.sign < -instrument.tick_size / 2:
        return []
    m.breakeven, m.breakeven_at = True, None
    moved = fmt_number(trigger, instrument.tick_size)
    return [
        Alert(
            Severity.INFO, "breakeven", f"{fmt_monitor(m)}: stop-loss moved to breakeven {moved}", key=m.key
        )
    ]


# --- events -------------------------------------------------------------------------------------


_FORCED_EXITS = {
    "adl": "auto-deleveraging (ADL)",
    "liquidation": "liquidation",
    "delivery": "delivery settlement",
}
"""How an alert names each forced exit reason."""


def apply_fill(
    m: Monitor, exe: Execution, instrument: Instrument, params: TradingParams
) -> tuple[Reason | None, list[Alert], Trade | None]:
    """Account one execution into ``m`` in place (no order actions): (reason, alerts, trade).

    Funding is money, not a fill: it is added to the monitor's ``funding``. The exchange's own exits
    (ADL, liquidation, delivery) close what they closed, with a critical alert. An execution type
    this code does not know changes nothing but raises a warning (reconciliation corrects sizes).
    """
    if exe.exec_id in m.exec_ids or m.phase is Phase.CLOSED or belongs_elsewhere(m, exe.link_id):
        return None, [], None
    if exe.ts < m.created_at and not exe.link_id:
        return None, [], None  # a fill from before this monitor existed (e.g. before adoption)
    m.exec_ids.append(exe.exec_id)
    del m.exec_ids[:-EXEC_IDS_KEPT]
    if exe.is_funding:
        m.funding += exe.fee
        return Reason.MONITORING_UPDATE, [], None
    forced = exe.forced_exit_reason
    if forced is None and not exe.is_position_fill:
        unknown = Alert(
            Severity.WARNING,
            "unknown_execution",
            f"{fmt_monitor(m)}: execution {exe.exec_id} of unknown type {exe.exec_type!r} ignored "
            "(reconciliation corrects the size if it moved)",
            key=m.key,
        )
        return Reason.MONITORING_UPDATE, [unknown], None
    match = _match_slot(m, exe.link_id, exe.order_id)
    slot = match[0] if match else None
    order = m.orders.get(slot) if slot else None
    if order is not None and match is not None:
        if match[1]:
            order.filled_qty = snap_qty(order.filled_qty + exe.qty, instrument)
            if order.filled_qty >= order.qty - qty_tolerance(instrument):
                order.status = SlotStatus.FILLED
        else:
            order.prior_filled = snap_qty(order.prior_filled + exe.qty, instrument)
    m.fees += exe.fee
    m.last_fill_at = exe.ts
    alerts: list[Alert] = []
    if exe.side is m.side:
        _book_entry(m, exe.qty, exe.price, instrument)
        if m.opened_at is None:
            m.opened_at = exe.ts
        if slot is not None and is_entry(slot) and order is not None and order.status is SlotStatus.FILLED:
            alerts.append(_entry_filled(m, slot, exe.price, instrument))
        if slot is None or not is_entry(slot):
            alerts.append(
                Alert(
                    Severity.WARNING,
                    "outside_fill",
                    f"{fmt_monitor(m)}: position grew by {fmt_number(exe.qty)} outside the engine",
                    key=m.key,
                )
            )
        return Reason.LIMIT_FILL_PROGRESS, alerts, None
    qty = min(exe.qty, m.size)
    if qty <= 0:
        return Reason.ORDER_UPDATE, alerts, None
    book_exit(m, qty, exe.price, instrument)
    reason: Reason = Reason.MONITORING_UPDATE
    if forced is not None:
        reason = Reason.EMERGENCY
        alerts.append(
            Alert(
                Severity.CRITICAL,
                forced,
                f"{fmt_monitor(m)}: the exchange closed {fmt_number(qty)} by "
                f"{_FORCED_EXITS.get(forced, forced)} at {fmt_number(exe.price)} ({exe.exec_type})",
                key=m.key,
            )
        )
    elif slot is not None and is_tp(slot):
        reason = Reason.TP_REBALANCED
        if order is not None and order.status is SlotStatus.FILLED:
            reason = Reason.TP_HIT
            so_far = m.gross_pnl - m.fees - m.funding
            message = (
                f"{fmt_monitor(m)}: {slot.upper()} filled at {fmt_number(exe.price, instrument.tick_size)}; "
                f"realised so far {fmt_usdt(so_far, signed=True)} USDT"
            )
            alerts.append(Alert(Severity.INFO, "tp_hit", message, key=m.key))
            if slot == "tp1" and m.phase is not Phase.PROFIT_TAKING and m.size > qty_tolerance(instrument):
                m.phase = Phase.PROFIT_TAKING
                if params.cancel_entries_after_tp1:
                    m.entries_closed = True
                alerts += _seek_breakeven(m, exe.price, instrument, params)
    elif slot == "sl":
        reason = Reason.SL_HIT
    elif slot is None:
        alerts.append(
            Alert(
                Severity.WARNING,
                "manual_close",
                f"{fmt_monitor(m)}: {fmt_number(qty)} closed outside the engine at {fmt_number(exe.price)}",
                key=m.key,
            )
        )
    if m.size <= qty_tolerance(instrument):
        m.size = 0.0
        trade = close_trade(m, exit_reason(m, slot, forced), exe.ts, instrument)
        if forced is None and slot == "sl":
            stop = "breakeven stop" if trade.reason == "breakeven" else "stop-loss"
            alerts.append(
                Alert(
                    Severity.WARNING,
                    "sl_hit",
                    f"{fmt_monitor(m)}: SL hit: {stop} filled at "
                    f"{fmt_number(exe.price, instrument.tick_size)}; "
                    f"trade PnL {fmt_usdt(trade.pnl, signed=True)} USDT",
                    key=m.key,
                )
            )
        return Reason.POSITION_CLOSED, alerts, trade
    return reason, alerts, None


def _entry_filled(m: Monitor, slot: str, price: float, instrument: Instrument) -> Alert:
    """``entry n of m filled``: which entry, at what price, and the size now held."""
    entries = sorted(s for s in m.orders if is_entry(s))
    which = entries.index(slot) + 1 if slot in entries else 1
    message = (
        f"{fmt_monitor(m)}: entry {which} of {len(entries)} filled at "
        f"{fmt_number(price, instrument.tick_size)}; holding {fmt_number(m.size, instrument.qty_step)}"
    )
    return Alert(Severity.INFO, "entry_filled", message, key=m.key)


def apply_execution(m: Monitor, exe: Execution, instrument: Instrument, params: TradingParams) -> Transition:
    """A fill of this monitor's symbol (ours or not): new sizes, TPs resized, SL to cover, phases."""
    m = copy.deepcopy(m)
    reason, alerts, trade = apply_fill(m, exe, instrument, params)
    if reason is None:
        return Transition(m)
    return finish_transition(m, instrument, params, reason, alerts, trade)


def observed_slot(mo: ManagedOrder, order: Order) -> tuple[SlotStatus, str]:
    """The (status, order id) a slot takes from a venue update of its current order (pure: a caller
    that holds many monitors can tell whether an update changes one before copying it)."""
    status = mo.status
    if order.status.is_open:
        if status in (SlotStatus.NEW, SlotStatus.PENDING):
            status = SlotStatus.OPEN
    elif order.status is OrderStatus.FILLED:
        status = SlotStatus.FILLED
    elif status is not SlotStatus.FILLED:
        status = SlotStatus.GONE
    return status, order.order_id or mo.order_id


def observe_order(m: Monitor, order: Order) -> tuple[bool, Alert | None, bool]:
    """Take a venue order update into a slot (mutates ``m``).

    Returns (changed, alert, stale): ``stale`` is an open order of ours from an older generation
    that should be cancelled.
    """
    match = _match_slot(m, order.link_id, order.order_id)
    if match is None:
        return False, None, False
    slot, current = match
    if not current:
        return False, None, order.status.is_open
    mo = m.orders[slot]
    before = (mo.status, mo.order_id)
    mo.status, mo.order_id = observed_slot(mo, order)
    alert = None
    if before[0] in (SlotStatus.OPEN, SlotStatus.PENDING) and mo.status is SlotStatus.GONE and slot == "sl":
        why = order.reject_reason or order.status.value
        alert = Alert(
            Severity.WARNING,
            "sl_gone",
            f"{fmt_monitor(m)}: stop-loss {why} on the venue; placing it again",
            key=m.key,
        )
    return (mo.status, mo.order_id) != before, alert, False


def apply_order_update(m: Monitor, order: Order, instrument: Instrument, params: TradingParams) -> Transition:
    """An order update (status only: fills are counted from executions, never from here)."""
    m = copy.deepcopy(m)
    changed, alert, stale = observe_order(m, order)
    if stale:
        cancel = CancelOrder(m.key, None, CancelRequest(m.symbol, order_id=order.order_id))
        return Transition(m, [cancel])
    if not changed:
        return Transition(m)
    return finish_transition(m, instrument, params, Reason.ORDER_UPDATE, [alert] if alert else [], None)


ALREADY_FLAT = "already_flat"
"""The alert type of a closing order the venue refused for having no position to reduce."""


def _note_failure(m: Monitor, order: ManagedOrder, error: Exception, params: TradingParams) -> list[Alert]:
    order.failures += 1
    slot = order.slot
    if isinstance(error, NothingToReduce) and not is_entry(slot):
        # The venue has no position to reduce: it is flat there already (its stop filled, the
        # exchange closed it). Sending it again is refused again, and no emergency can help: give up
        # at once and let the fills, or the check the manager runs now, close the monitor.
        order.failures = max(order.failures, params.sl_retry_attempts)
        return [
            Alert(
                Severity.WARNING,
                ALREADY_FLAT,
                f"{fmt_monitor(m)}: {slot.upper()} refused, the venue has no position to reduce "
                f"({error}); checking the position",
                key=m.key,
            )
        ]
    if slot == "sl" and _stop_level_passed(m, error):
        # The price is already through the stop: the venue refuses it because it would fire at
        # once. Close at market now, as the stop would have; retrying the same level cannot work.
        m.close_intent = "breakeven" if m.breakeven else "sl"
        m.entries_closed = True
        return [
            Alert(
                Severity.WARNING,
                "sl_passed",
                f"{fmt_monitor(m)}: the price is already through the stop-loss "
                f"{fmt_number(m.sl_price)} ({error}); closing at market as the stop would have",
                key=m.key,
            )
        ]
    if slot == "sl":
        if order.failures >= params.sl_retry_attempts and m.close_intent != "emergency" and m.size > 0:
            m.close_intent = "emergency"
            m.entries_closed = True
            return [
                Alert(
                    Severity.CRITICAL,
                    "sl_failed",
                    f"{fmt_monitor(m)}: stop-loss could not be placed after {order.failures} attempts "
                    f"({error}); closing the position at market",
                    key=m.key,
                )
            ]
        return [
            Alert(
                Severity.WARNING,
                "sl_retry",
                f"{fmt_monitor(m)}: stop-loss refused ({error}); retrying",
                key=m.key,
            )
        ]
    if slot == "cl" and order.failures >= params.sl_retry_attempts:
        return [
            Alert(
                Severity.CRITICAL,
                "close_failed",
                f"{fmt_monitor(m)}: market close refused ({error})",
                key=m.key,
            )
        ]
    if is_entry(slot):
        return [
            Alert(
                Severity.WARNING,
                "entry_refused",
                f"{fmt_monitor(m)}: entry {slot} refused ({error})",
                key=m.key,
            )
        ]
    if order.failures >= params.sl_retry_attempts:
        return [
            Alert(
                Severity.WARNING,
                "order_refused",
                f"{fmt_monitor(m)}: {slot.upper()} refused ({error}); giving up",
                key=m.key,
            )
        ]
    return []


def _stop_accepted(
    m: Monitor,
    order: ManagedOrder,
    action: PlaceOrder | AmendOrder,
    instrument: Instrument,
    alerts: list[Alert],
) -> Reason | None:
    """The venue took a stop (placed or amended): its failures reset, and a breakeven move counts
    only now (``alerts`` gains the breakeven alert); the save reason it implies, if any."""
    order.failures = 0
    confirmed = _confirm_breakeven(m, action.request.trigger_price, instrument)
    alerts += confirmed
    return Reason.BREAKEVEN_MOVED if confirmed else None


def _stop_level_passed(m: Monitor, error: Exception) -> bool:
    """A stop refused only because the price it watches is already beyond its level (110092/110093)
    on a position that is not being closed already."""
    return (
        isinstance(error, VenueError)
        and is_trigger_already_reached(error)
        and m.close_intent is None
        and m.size > 0
    )


def _stop_move_refused(order: ManagedOrder, action: AmendOrder, error: VenueError | None) -> bool:
    """The venue refused to move a working stop because its trigger is already reached: the move,
    not the stop, failed (invariant 1: the stop that works stays; this is no placement failure)."""
    return (
        order.slot == "sl"
        and action.request.trigger_price is not None
        and action.previous[2] is not None
        and is_trigger_already_reached(error)
    )


def _keep_the_stop(
    m: Monitor, order: ManagedOrder, action: AmendOrder, error: VenueError | None, instrument: Instrument
) -> Alert:
    """Go back to the stop the venue still has; a pending breakeven waits for the price again."""
    order.qty, order.price, order.trigger_price = action.previous
    kept = action.previous[2]
    if kept is not None:
        m.sl_price = kept
    later = " and moves to breakeven once the price passes it" if m.breakeven_at is not None else ""
    asked = fmt_number(action.request.trigger_price or 0.0, instrument.tick_size)
    return Alert(
        Severity.WARNING,
        "sl_move_refused",
        f"{fmt_monitor(m)}: the venue refused to move the stop-loss to {asked} ({error}); "
        f"it stays at {fmt_number(m.sl_price, instrument.tick_size)}{later}",
        key=m.key,
    )


def apply_results(
    m: Monitor, results: list[ActionResult], instrument: Instrument, params: TradingParams
) -> Transition:
    """Take the venue's answers to our actions: order ids, refusals (retried), give-ups.

    An action :class:`~engine.venue.withdrawal.Withdrawn` before it was sent (a newer fill of the
    position waits to be decided) is undone and not derived again here: the next decision, taken at
    once, sees the position as it is and sends what it still calls for."""
    m = m.copy()
    alerts: list[Alert] = []
    reason: Reason | None = None
    withdrawn = False
    for result in results:
        action = result.action
        order = m.orders.get(action.slot) if action.slot is not None else None
        if order is None:
            continue
        if isinstance(result.error, Withdrawn):
            withdrawn = True
            _undo_unsent(order, action)
            reason = stronger(reason, Reason.ORDER_UPDATE)
            continue
        if isinstance(action, PlaceOrder):
            if action.request.link_id != order.link_id:
                continue  # an answer about an earlier generation
            if result.ok:
                if result.ack is not None and result.ack.order_id:
                    order.order_id = result.ack.order_id
                if order.status is SlotStatus.PENDING:
                    order.status = SlotStatus.OPEN
                if order.slot == "sl":
                    reason = stronger(reason, _stop_accepted(m, order, action, instrument, alerts))
            else:
                if order.status is SlotStatus.PENDING:
                    order.status = SlotStatus.GONE
                alerts += _note_failure(m, order, result.error or Exception("refused"), params)
                reason = stronger(reason, Reason.ORDER_UPDATE)
        elif isinstance(action, AmendOrder):
            # "Not modified": the order already is what the amend asked (an earlier try landed
            # while its answer was lost), so it succeeded; counting it as a refusal would end in an
            # emergency close of a position whose stop is in place.
            if result.ok or isinstance(result.error, NotModified):
                if order.slot == "sl":
                    reason = stronger(reason, _stop_accepted(m, order, action, instrument, alerts))
                continue
            if isinstance(result.error, OrderNotFound):
                # The order is gone (filled or cancelled) with the terms it had: its fills are
                # counted against those, so a stop that filled meanwhile is seen as consumed and
                # replaced. Left at the amended size, it looked partly filled and was never.
                order.qty, order.price, order.trigger_price = action.previous
                if order.status is SlotStatus.OPEN:
                    order.status = SlotStatus.GONE
            elif _stop_move_refused(order, action, result.error):
                alerts.append(_keep_the_stop(m, order, action, result.error, instrument))
            else:
                order.qty, order.price, order.trigger_price = action.previous
                alerts += _note_failure(m, order, result.error or Exception("refused"), params)
            reason = stronger(reason, Reason.ORDER_UPDATE)
        else:
            if result.ok or isinstance(result.error, OrderNotFound):
                if order.status is SlotStatus.CANCELLING:
                    order.status = SlotStatus.GONE
            elif order.status is SlotStatus.CANCELLING:
                order.status = SlotStatus.OPEN
                order.failures += 1
            reason = stronger(reason, Reason.ORDER_UPDATE)
    if any(a.severity is Severity.CRITICAL for a in alerts):
        reason = stronger(reason, Reason.EMERGENCY)
    if withdrawn:
        return Transition(m, [], reason, alerts)
    if m.phase is Phase.CLOSED:
        return Transition(m, sync_orders(m, instrument, params), reason, alerts)
    return finish_transition(m, instrument, params, reason, alerts, None)


def _undo_unsent(order: ManagedOrder, action: Action) -> None:
    """An action that never reached the venue: its slot is as before the action was derived."""
    if isinstance(action, PlaceOrder):
        if action.request.link_id == order.link_id and order.status is SlotStatus.PENDING:
            order.status = SlotStatus.NEW  # still wanted: the next decision places it
    elif isinstance(action, AmendOrder):
        order.qty, order.price, order.trigger_price = action.previous
    elif order.status is SlotStatus.CANCELLING:
        order.status = SlotStatus.OPEN


def wants_price(m: Monitor, params: TradingParams) -> bool:
    """Whether a price tick can move this monitor's stop: a breakeven waiting for the price, or the
    trailing stop after TP1 (the shell hands only these to :func:`apply_price`)."""
    if m.phase is Phase.CLOSED or m.close_intent is not None or m.size <= 0:
        return False
    trailing = params.trailing_stop_after_tp1 and m.phase is Phase.PROFIT_TAKING
    return trailing or m.breakeven_at is not None


def apply_price(m: Monitor, price: float, instrument: Instrument, params: TradingParams) -> Transition:
    """A tick of the price the stop triggers on: a waiting breakeven goes out once the price is
    beyond it, and the trailing stop after TP1 (when on) follows the best price."""
    if not wants_price(m, params):
        return Transition(m)
    sign = m.side.sign
    stop = m.sl_price
    if m.breakeven_at is not None and _beyond(m, price, m.breakeven_at) and _beyond(m, m.breakeven_at, stop):
        stop = m.breakeven_at
    best = m.trail_best
    if params.trailing_stop_after_tp1 and m.phase is Phase.PROFIT_TAKING:
        best = price if best is None else (max(best, price) if sign > 0 else min(best, price))
        trailed = instrument.round_price(
            best * (1 - sign * params.trailing_stop_pct / 100.0), "down" if sign > 0 else "up"
        )
        min_step = best * params.trailing_stop_pct / 1000.0  # amend at most every tenth of the distance
        if (trailed - stop) * sign >= min_step:
            stop = trailed
    if best == m.trail_best and stop == m.sl_price:
        return Transition(m)
    m = copy.deepcopy(m)
    m.trail_best = best
    if stop == m.sl_price:
        return Transition(m)
    m.sl_price = stop
    return finish_transition(m, instrument, params, Reason.MONITORING_UPDATE, [], None)


# --- operator decisions -------------------------------------------------------------------------


def request_close(m: Monitor, intent: str, instrument: Instrument, params: TradingParams) -> Transition:
    """Close the position at market (reduce-only) and cancel entries and TPs; the stop-loss stays
    until the position is flat. ``intent`` is the ledger reason: manual, emergency or kill_switch."""
    m = copy.deepcopy(m)
    if m.phase is Phase.CLOSED:
        return Transition(m)
    m.close_intent = intent
    m.entries_closed = True
    alert = Alert(
        Severity.WARNING, "close_requested", f"{fmt_monitor(m)}: closing at market ({intent})", key=m.key
    )
    reason = Reason.EMERGENCY if intent in ("emergency", "kill_switch") else Reason.PHASE_CHANGE
    return finish_transition(m, instrument, params, reason, [alert], None)


def cancel_orders(m: Monitor, instrument: Instrument, params: TradingParams) -> Transition:
    """Cancel the monitor's entries and take-profits. The stop-loss stays while a position is open
    (the protection invariant); with no position the monitor ends."""
    m = copy.deepcopy(m)
    m.entries_closed = True
    m.tps_enabled = False
    return finish_transition(m, instrument, params, Reason.MONITORING_UPDATE, [], None, durable=True)


def cancel_entries(m: Monitor, instrument: Instrument, params: TradingParams) -> Transition:
    """Cancel the entries not filled yet (as after TP1); take-profits and the stop-loss stay."""
    m = copy.deepcopy(m)
    m.entries_closed = True
    return finish_transition(m, instrument, params, Reason.MONITORING_UPDATE, [], None, durable=True)


def request_trim(m: Monitor, target: float, instrument: Instrument, params: TradingParams) -> Transition:
    """Reduce the position to ``target`` at market (reduce-only); take-profits and the stop-loss are
    resized to what is left. Nothing to do when the position is not above it, or is closing.
    Raises ValueError for a target that would leave nothing (that is a close, not a trim)."""
    if target <= qty_tolerance(instrument):
        raise ValueError(
            f"{fmt_monitor(m)}: trimming to {fmt_number(target)} would close the position; close it instead"
        )
    m = copy.deepcopy(m)
    if m.phase is Phase.CLOSED or m.close_intent is not None or m.size - target <= qty_tolerance(instrument):
        return Transition(m)
    m.trim_to = snap_qty(target, instrument)
    note = Alert(
        Severity.WARNING,
        "position_trim",
        f"{fmt_monitor(m)}: reducing {fmt_number(m.size, instrument.qty_step)} to "
        f"{fmt_number(m.trim_to, instrument.qty_step)} at market",
        key=m.key,
    )
    return finish_transition(m, instrument, params, Reason.MONITORING_UPDATE, [note], None, durable=True)


def breakeven_now(
    m: Monitor, price: float | None, instrument: Instrument, params: TradingParams
) -> Transition:
    """Move the stop to breakeven now. ``price`` is the one the stop triggers on
    (``trading.trigger_by``), None when not known yet. Raises ValueError when there is no position,
    the price is unknown, or it is not beyond breakeven (the venue would refuse the stop: it would
    trigger at once). The breakeven alert comes when the venue accepted the move."""
    if m.size <= 0 or m.entry_qty <= 0:
        raise ValueError(f"{fmt_monitor(m)}: no open position")
    trigger = TriggerBy(params.trigger_by).value
    if price is None:
        raise ValueError(
            f"{fmt_monitor(m)}: cannot move to breakeven: the {trigger} of {m.symbol} is not known yet"
        )
    be = breakeven_price(m.side, held_entry(m), instrument, params)
    if not _beyond(m, price, be):
        px = instrument.tick_size
        raise ValueError(
            f"{fmt_monitor(m)}: the {trigger} {fmt_number(price, px)} is not beyond breakeven "
            f"{fmt_number(be, px)}"
        )
    m = copy.deepcopy(m)
    alerts = _seek_breakeven(m, price, instrument, params)
    if m.breakeven and m.breakeven_at is None:
        px = instrument.tick_size
        stop, level = fmt_number(m.sl_price, px), fmt_number(be, px)
        note = f"{fmt_monitor(m)}: the stop-loss {stop} already is at or beyond breakeven {level}"
        alerts.append(Alert(Severity.INFO, "breakeven", note))
    return finish_transition(m, instrument, params, Reason.BREAKEVEN_MOVED, alerts, None)
