"""Drift between the two legs of a mirrored trade, and what repairs it, as pure functions.

While main holds a position the mirror should hold main's size x the trade's ratio (within one qty
step), covered by a stop-loss; its stop should be at breakeven once main's is, and its entries gone
once main's are. Once main is flat the mirror should be too. What is out of line is a :class:`Drift`.

Repairs only ever reduce risk: a missing stop is placed, an excess is sold down, breakeven and
cancelled entries follow main, a mirror left open after main closed is closed. A mirror holding
*less* than its share is reported, never bought up at market. Everything but a missing stop is
repaired only when two checks in a row saw it (:func:`to_repair`): a fill on one account and its twin
on the other a moment apart is not drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from engine.core.models import Instrument, Order, Position, Side
from engine.mirror.sizing import expected_size


class DriftKind(StrEnum):
    """What is out of line between main and its mirror."""

    MISSING_STOP = "missing_stop"  # the mirror's position is not covered by a stop-loss
    EXCESS = "excess"  # the mirror holds more than main x ratio (by over a qty step)
    DEFICIT = "deficit"  # the mirror holds less (reported, never bought up)
    ORPHAN = "orphan"  # main is flat, the mirror is not
    BREAKEVEN = "breakeven"  # main's stop is at breakeven, the mirror's is not
    ENTRIES = "entries"  # main's unfilled entries are gone, the mirror's still work


IMMEDIATE = frozenset({DriftKind.MISSING_STOP})
"""Repaired as soon as seen: a position without a stop is never left waiting for a second look."""
REPORTED_ONLY = frozenset({DriftKind.DEFICIT})
"""Shown, never repaired: buying the shortfall at market would add risk the operator did not ask for."""


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a mirrored trade as seen now: the venue's position and stops, the monitor's state."""

    size: float
    stop_qty: float = 0.0
    breakeven: bool = False
    entries_live: bool = False
    closing: bool = False


@dataclass(frozen=True, slots=True)
class Drift:
    """One thing out of line; ``target`` is the size an excess is reduced to."""

    kind: DriftKind
    detail: str
    target: float | None = None


Holding = tuple[str, Side]
"""A symbol and the side of a position held on it."""


def stop_covers(orders: Iterable[Order]) -> dict[Holding, float]:
    """The quantity the live stop orders cover, per symbol and side of the position they protect.

    One pass over an account's orders serves every position's check: a scan of them per position
    made the drift check quadratic (at a thousand mirrored trades it held the loop 170 ms)."""
    covers: dict[Holding, float] = {}
    for o in orders:
        if o.trigger_price is not None and (o.reduce_only or o.close_on_trigger):
            holding = (o.symbol, o.side.opposite)
            covers[holding] = covers.get(holding, 0.0) + o.remaining_qty
    return covers


def stop_cover(orders: Iterable[Order], symbol: str, side: Side) -> float:
    """The quantity the live stop orders of ``symbol`` cover for a ``side`` position."""
    return stop_covers(o for o in orders if o.symbol == symbol).get((symbol, side), 0.0)


def held_sizes(positions: Iterable[Position]) -> dict[Holding, float]:
    """The size held per symbol and side (open positions only), in one pass over an account's."""
    held: dict[Holding, float] = {}
    for p in positions:
        if p.is_open and p.side is not None:
            holding = (p.symbol, p.side)
            held[holding] = held.get(holding, 0.0) + p.size
    return held


def find_drift(main: Leg | None, mirror: Leg, ratio: float, instrument: Instrument) -> list[Drift]:
    """What is out of line between ``main`` (None once main is flat) and ``mirror``."""
    step = instrument.qty_step
    tol = step / 2
    if mirror.size <= tol:
        return []  # nothing held on the mirror: nothing to protect (a missed open is not repaired here)
    found: list[Drift] = []
    if mirror.stop_qty < mirror.size - tol:
        found.append(Drift(DriftKind.MISSING_STOP, f"stop covers {mirror.stop_qty:g} of {mirror.size:g}"))
    if main is None or main.size <= tol:
        found.append(Drift(DriftKind.ORPHAN, f"main is flat, the mirror holds {mirror.size:g}"))
        return found
    want = expected_size(main.size, ratio, instrument)
    if mirror.size > want + step + tol:
        found.append(Drift(DriftKind.EXCESS, f"holds {mirror.size:g}, main x ratio is {want:g}", target=want))
    elif mirror.size < want - step - tol:
        found.append(Drift(DriftKind.DEFICIT, f"holds {mirror.size:g}, main x ratio is {want:g}"))
    if main.breakeven and not mirror.breakeven and not mirror.closing:
        found.append(Drift(DriftKind.BREAKEVEN, "main's stop is at breakeven, the mirror's is not"))
    if not main.entries_live and mirror.entries_live and not mirror.closing:
        found.append(Drift(DriftKind.ENTRIES, "main's unfilled entries are cancelled, the mirror's work"))
    return found


def to_repair(found: Sequence[Drift], seen_before: Iterable[str]) -> list[Drift]:
    """The drifts to repair now: a missing stop at once, the rest when the previous check saw them
    too; a deficit never. An excess that needs reducing to nothing is an orphan's close, not a trim."""
    before = set(seen_before)
    confirmed = [d for d in found if d.kind not in REPORTED_ONLY and d.kind.value in before]
    due = [d for d in found if d.kind in IMMEDIATE] + [d for d in confirmed if d.kind not in IMMEDIATE]
    return [d for d in due if not (d.kind is DriftKind.EXCESS and not d.target)]
