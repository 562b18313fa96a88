"""Position and margin arithmetic of a one-way (positionIdx 0) linear USDT perpetual account.

Sizes are signed Decimals (+ long, - short), prices and amounts Decimals, so an average entry or a
realised PnL never picks up float noise; the pure functions here decide, :mod:`engine.sim.account`
holds the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from engine.core.models import Side
from engine.sim.fills import money

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class FillOutcome:
    """A position after one fill, and what the fill closed."""

    size: Decimal
    entry: Decimal
    closed: Decimal
    """Quantity of the previous position this fill closed (Bybit's closedSize)."""
    realised: Decimal
    """Gross PnL of the closed part (before fees), rounded to 8 decimals."""
    reopened: bool
    """The fill opened a new position: from flat, or by flipping through zero."""


def apply_fill(size: Decimal, entry: Decimal, side: Side, qty: Decimal, price: Decimal) -> FillOutcome:
    """The position after a fill of ``qty`` at ``price`` on ``side``.

    Adding to a position moves the entry to the quantity-weighted average; reducing keeps the entry
    and realises ``closed * (price - entry)`` in the position's direction; a fill larger than the
    position closes it and opens the rest at the fill price.
    """
    signed = qty * side.sign
    if size == 0 or (size > 0) == (signed > 0):
        new_size = size + signed
        new_entry = (abs(size) * entry + qty * price) / abs(new_size)
        return FillOutcome(new_size, new_entry, ZERO, ZERO, reopened=size == 0)
    closed = min(abs(size), qty)
    direction = 1 if size > 0 else -1
    realised = money(closed * (price - entry) * direction)
    new_size = size + signed
    if new_size == 0:
        return FillOutcome(ZERO, ZERO, closed, realised, reopened=False)
    if (new_size > 0) == (size > 0):
        return FillOutcome(new_size, entry, closed, realised, reopened=False)
    return FillOutcome(new_size, price, closed, realised, reopened=True)


def opening_qty(size: Decimal, side: Side, qty: Decimal) -> Decimal:
    """The part of an order that would open or grow a position (the rest only closes)."""
    if size == 0 or (size > 0) == (side is Side.BUY):
        return qty
    return max(ZERO, qty - abs(size))


def closable_qty(size: Decimal, side: Side) -> Decimal:
    """How much a reduce-only order on ``side`` may fill: the position size when it is opposite, else 0."""
    if size == 0 or (size > 0) == (side is Side.BUY):
        return ZERO
    return abs(size)


def initial_margin(qty: Decimal, price: Decimal, leverage: Decimal) -> Decimal:
    """Initial margin of ``qty`` at ``price``: notional / leverage."""
    return money(abs(qty) * price / leverage)


def unrealised_pnl(size: Decimal, entry: Decimal, mark: Decimal) -> Decimal:
    """Unrealised PnL of a signed position marked at ``mark``."""
    return money((mark - entry) * size)
