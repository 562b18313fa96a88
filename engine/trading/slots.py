"""A monitor's order slots and the quantity grid they are sized on.

Every order of a monitor lives in a named slot: ``e1``.. (entries), ``sl`` (the stop-loss), ``tp1``..
(take-profits, nearest first) and ``cl`` (a market close). The decision modules (the state machine,
the order diff, the TP sizing, reconciliation) all read slot names and snap quantities the same
way; they share these helpers so a rule changes in one place.
"""

from __future__ import annotations

from engine.core.link_ids import make_link_id
from engine.core.models import Instrument, Monitor, round_to_step


def is_entry(slot: str) -> bool:
    """Whether ``slot`` holds an entry order (``e1``, ``e2``..)."""
    return slot.startswith("e")


def is_tp(slot: str) -> bool:
    """Whether ``slot`` holds a take-profit (``tp1``, ``tp2``..)."""
    return slot.startswith("tp")


def tp_slot(index: int) -> str:
    """The slot of the ``index``-th take-profit, counted from 0 (``tp1`` is the nearest)."""
    return f"tp{index + 1}"


def tp_index(slot: str) -> int:
    """The inverse of :func:`tp_slot`: ``tp3`` -> 2."""
    return int(slot[2:]) - 1


def slot_link_id(m: Monitor, slot: str, generation: int) -> str:
    """The deterministic ``orderLinkId`` of ``m``'s ``slot`` at ``generation`` (invariant 2)."""
    return make_link_id(m.tag, m.monitor_id, slot, generation)


def qty_tolerance(instrument: Instrument) -> float:
    """Half a qty step: two quantities closer than this are the same on the venue's grid."""
    return instrument.qty_step / 2


def snap_qty(value: float, instrument: Instrument) -> float:
    """Snap a computed quantity (a float sum or difference drifts) back onto the qty grid."""
    return round_to_step(value, instrument.qty_step, "nearest")
