"""Reconciliation of an order that filled after its trade closed, while the engine could not see
either (down, or the account unreachable): the soak's lost mirror trade, as a pure decision."""

from __future__ import annotations

from test_reconcile import position, run, venue_orders
from tpsl_builders import fill, with_position

from engine.core.models import SlotStatus
from engine.trading.reconcile import VenueView

TPS = ("tp1", "tp2", "tp3", "tp4")


def test_an_entry_saved_pending_that_filled_after_the_close_is_said_late_not_unsent() -> None:
    """On disk e2 and e3 are PENDING (saved before sending; the answer was never saved). On the
    venue they were sent: the TPs flattened the trade, then e2 filled. e2 is a late fill of the
    closed trade, whose position is adopted; it is not "not sent"."""
    m = with_position()
    exes = [fill(m, slot, m.orders[slot].qty, m.tp_prices[i]) for i, slot in enumerate(TPS)]
    e2 = m.orders["e2"]
    exes.append(fill(m, "e2", e2.qty, 99_000.0))
    new = position(e2.qty, entry=99_000.0, ts=exes[-1].ts)
    on_venue = venue_orders(m, skip=set(TPS) | {"e2"})
    saved = m.copy()
    for slot in ("e2", "e3"):
        saved.orders[slot].status = SlotStatus.PENDING
    out = run([saved], VenueView([new], on_venue, exes, positions_after=[new]))
    adopted, old = out.transitions
    assert adopted.monitor.approach == "adopted" and adopted.monitor.size == e2.qty
    assert old.trade is not None and old.trade.reason == "tp" and old.trade.qty == m.size
    types = [a.type for a in old.alerts]
    assert "entry_not_sent" not in types
    (late,) = [a for a in old.alerts if a.type == "late_fill"]
    assert late.severity == "warning" and "e2" in late.message and late.key == m.key
    assert old.monitor.orders["e2"].status is SlotStatus.FILLED
