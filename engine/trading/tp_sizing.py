"""Take-profit sizing as pure functions: how much each TP of a position should close.

:func:`split_tp_quantities` splits a size by the TP split (the plan of a fresh position);
:func:`tp_order_qtys` applies it to a live monitor, where some TPs already filled and the position
may have been resized since. Both keep the TPs on the venue's qty grid and above its minimums, and
make them sum exactly to what is left to close. They live apart from the state machine so that any
other sizing of take-profits (a follower account's, for one) follows the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.core.models import Instrument, ManagedOrder, Monitor, SlotStatus
from engine.trading.params import TradingParams
from engine.trading.slots import qty_tolerance, snap_qty, tp_slot


def split_tp_quantities(
    size: float,
    split: Sequence[float],
    prices: Sequence[float],
    instrument: Instrument,
    min_tp_notional: float,
) -> list[float]:
    """Quantities of the TPs for a position of ``size``: each share rounded down to qtyStep; a TP
    (other than TP1) below minOrderQty or ``min_tp_notional`` folds into TP1; the rounding remainder
    goes to the last TP that is kept, so the result sums exactly to ``size``."""
    n = len(split)
    if size <= 0 or n == 0:
        return [0.0] * n
    raw = [instrument.round_qty(size * part / 100.0) for part in split]
    qty = list(raw)
    for i in range(1, n):
        if raw[i] < instrument.min_qty or raw[i] * prices[i] < min_tp_notional:
            qty[0] = snap_qty(qty[0] + raw[i], instrument)
            qty[i] = 0.0
    last = max(i for i in range(n) if i == 0 or qty[i] > 0)
    qty[last] = snap_qty(qty[last] + size - sum(qty), instrument)
    return qty


def _total_filled(order: ManagedOrder | None) -> float:
    return order.total_filled if order is not None else 0.0


def tp_order_qtys(m: Monitor, instrument: Instrument, params: TradingParams) -> dict[str, float]:
    """The order quantity each open TP slot should have now (current generation), by slot.

    Targets are the split of the filled entry size; TPs already finished keep what they took; the
    open ones together cover exactly what is left of the position (a surplus goes to the last TP, a
    shortfall is trimmed from the last ones), and an open TP left below minOrderQty folds into the
    first open one.
    """
    n = len(m.tp_prices)
    eps = qty_tolerance(instrument)
    if n == 0 or m.size <= eps or not m.tps_enabled:
        return {}
    targets = split_tp_quantities(m.entry_qty, m.tp_split, m.tp_prices, instrument, params.min_tp_notional)
    slots = [tp_slot(i) for i in range(n)]
    orders = [m.orders.get(s) for s in slots]
    finished = {i: o for i, o in enumerate(orders) if o is not None and o.status is SlotStatus.FILLED}
    locked = set(finished)
    pending_locked = sum(max(0.0, o.qty - o.filled_qty) for o in finished.values())
    # While a trim is under way the TPs cover what stays, so the market trim never finds the
    # position already promised to them.
    held = m.size if m.trim_to is None else min(m.size, m.trim_to)
    need = snap_qty(held - pending_locked, instrument)
    open_idx = [i for i in range(n) if i not in locked]
    if not open_idx or need <= eps:
        return {}
    done = {i: _total_filled(orders[i]) for i in open_idx}
    rem = {i: max(0.0, snap_qty(targets[i] - done[i], instrument)) for i in open_idx}
    delta = snap_qty(need - sum(rem.values()), instrument)
    if delta > eps:
        receivers = [i for i in open_idx if targets[i] > 0] or open_idx
        rem[receivers[-1]] = snap_qty(rem[receivers[-1]] + delta, instrument)
    elif delta < -eps:
        excess = -delta
        for i in reversed(open_idx):
            cut = min(rem[i], excess)
            rem[i] = snap_qty(rem[i] - cut, instrument)
            excess = snap_qty(excess - cut, instrument)
            if excess <= eps:
                break
    first = next((i for i in open_idx if rem[i] > eps), None)
    if first is None:
        return {}
    for i in open_idx:
        if i != first and eps < rem[i] < instrument.min_qty:
            rem[first] = snap_qty(rem[first] + rem[i], instrument)
            rem[i] = 0.0
    result: dict[str, float] = {}
    for i in open_idx:
        if rem[i] > eps:
            order = orders[i]
            current = order.filled_qty if order is not None else 0.0
            result[slots[i]] = snap_qty(rem[i] + current, instrument)
    return result
