"""Sizing a mirror trade from the main one, as pure functions.

``balance_ratio``: the mirror holds main's quantity x mirror equity / main equity, with the equities
read when the trade opens; ``fixed_ratio``: main's quantity x ``mirror.ratio``. Quantities are rounded
down to the qty step (a mirror never holds more than its share); a quantity under the minimum order
quantity or value is skipped, never sent. The leverage is main's, or the highest the mirror allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from engine.core.models import Instrument
from engine.trading.approaches import TradeRequest


class MirrorSkipped(Exception):
    """The mirror trade cannot be sized (too small, no equity to compare): the message says why."""


@dataclass(frozen=True, slots=True)
class MirrorSizing:
    """How mirror quantities follow main's: ``balance_ratio`` or ``fixed_ratio`` at ``ratio``."""

    mode: str
    fixed_ratio: float = 1.0

    def ratio(self, main_equity: float, mirror_equity: float) -> float:
        """The quantity ratio for a trade opening now; raises :class:`MirrorSkipped` when the
        balances cannot give one (main has no equity, the mirror none either)."""
        if self.mode == "fixed_ratio":
            return self.fixed_ratio
        if not (math.isfinite(main_equity) and main_equity > 0):
            raise MirrorSkipped(f"main equity {main_equity:g} USDT gives no balance ratio")
        if not (math.isfinite(mirror_equity) and mirror_equity > 0):
            raise MirrorSkipped(f"the mirror has no equity ({mirror_equity:g} USDT)")
        return mirror_equity / main_equity


def mirror_qty(main_qty: float, ratio: float, instrument: Instrument) -> float:
    """Main's quantity x ``ratio``, rounded down to the qty step."""
    # A hair of tolerance: 0.03 x 0.5 is 0.014999... in floats, and must stay 0.015.
    return instrument.round_qty(main_qty * ratio * (1 + 1e-9))


def expected_size(main_size: float, ratio: float, instrument: Instrument) -> float:
    """The size the mirror should hold while main holds ``main_size``."""
    return mirror_qty(main_size, ratio, instrument)


def mirror_leverage(main_leverage: float, instrument: Instrument, max_leverage: float) -> float:
    """Main's leverage, or the highest the mirror's instrument and settings allow if that is lower."""
    return min(main_leverage, instrument.max_leverage, max_leverage)


def mirror_request(
    main: TradeRequest,
    main_entry_qty: float,
    ratio: float,
    instrument: Instrument,
    mark: float,
    max_leverage: float,
) -> TradeRequest:
    """The mirror's copy of ``main``: same prices and approach, each entry ``main_entry_qty`` x ratio
    (rounded down), the margin that quantity needs at the mark. Raises :class:`MirrorSkipped` when an
    entry would be under the minimum order quantity or value."""
    qty = mirror_qty(main_entry_qty, ratio, instrument)
    if qty < instrument.min_qty:
        raise MirrorSkipped(
            f"{main_entry_qty:g} x {ratio:.4g} = {qty:g} {main.symbol} per entry, under the minimum "
            f"order qty {instrument.min_qty:g}"
        )
    lowest = min([mark, *(p for p in main.entry_prices if p is not None)])
    if qty * lowest < instrument.min_notional:
        raise MirrorSkipped(
            f"{qty:g} {main.symbol} per entry is worth under the minimum order value "
            f"{instrument.min_notional:g} USDT"
        )
    leverage = mirror_leverage(main.leverage, instrument, max_leverage)
    margin = qty * len(main.entry_prices) * mark / leverage
    return replace(main, account="mirror", qty=qty, leverage=leverage, margin=margin)
