"""Sizing a trade by risk, as a pure function: "risk 1% of equity" -> the quantity of each entry.

The loss at the stop of a trade whose every entry filled is, per entry at price ``e`` with quantity
``q`` and a stop at ``sl``::

    q * (|e - sl| + taker * e + taker * sl)

the price move to the stop plus the taker fee of the entry and the taker fee of the stop's exit (a
stop-loss fills as a market order). Entries are charged at the taker rate even when they are limit
orders that would pay the maker rate: the estimate may only err on the side of risking less. Every
entry of a plan has the same quantity (see :mod:`engine.trading.approaches`), so the size is one
per-entry quantity, the largest multiple of the qty step whose loss stays within the risk amount:
rounded down, never up, so the risk is never exceeded. Slippage past the stop price is not counted
(it is not known in advance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from engine.core.models import Instrument, Side
from engine.core.numbers import fmt_number, fmt_usdt
from engine.trading.slots import snap_qty

_SETTLE_PASSES = 3


@dataclass(frozen=True, slots=True)
class RiskSize:
    """What risking ``risk_amount`` on a trade comes to; ``problems`` says why it cannot be placed
    (empty when it can). The figures are those of the rounded quantity, also when it is refused."""

    risk_amount: float
    per_entry_qty: float
    total_qty: float
    notional: float
    """Sum over the entries of quantity x entry price."""
    margin: float
    """``notional`` / leverage: the initial margin of the whole position."""
    fees: float
    """The taker fees of every entry and of the stop's exit."""
    loss_at_stop: float
    """The price loss to the stop plus ``fees``: at most ``risk_amount``."""
    needed: float
    """Margin plus the entry fees: what the engine checks against the available balance."""
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the size can be placed."""
        return not self.problems


def loss_at_stop(
    side: Side, per_entry_qty: float, entry_prices: Sequence[float], sl_price: float, taker_fee_rate: float
) -> float:
    """The loss, fees included, when every entry filled ``per_entry_qty`` and the stop closed it all."""
    return sum(
        per_entry_qty * ((e - sl_price) * side.sign + taker_fee_rate * (e + sl_price)) for e in entry_prices
    )


def _input_problems(
    side: Side,
    equity: float,
    risk_pct: float,
    entry_prices: Sequence[float],
    sl_price: float,
    leverage: float,
) -> list[str]:
    """Why these inputs cannot be sized at all, one sentence each."""
    problems: list[str] = []
    if not (math.isfinite(equity) and equity > 0):
        problems.append(f"no equity to risk ({equity:g} USDT)")
    if not (math.isfinite(risk_pct) and 0 < risk_pct <= 100):
        problems.append(f"risk must be within 0..100% of equity, got {risk_pct:g}")
    if not (math.isfinite(leverage) and leverage > 0):
        problems.append(f"leverage must be > 0, got {leverage:g}")
    if not entry_prices or not all(math.isfinite(e) and e > 0 for e in entry_prices):
        problems.append("every entry needs a price (the market one too) to size by risk")
    elif not (math.isfinite(sl_price) and sl_price > 0) or any(
        (e - sl_price) * side.sign <= 0 for e in entry_prices
    ):
        problems.append(f"SL {sl_price:g} must be beyond every entry on the loss side to size by risk")
    return problems


def size_by_risk(
    *,
    side: Side,
    equity: float,
    risk_pct: float,
    entry_prices: Sequence[float],
    sl_price: float,
    leverage: float,
    available: float,
    instrument: Instrument,
    taker_fee_rate: float,
) -> RiskSize:
    """The per-entry quantity that loses at most ``risk_pct`` % of ``equity`` at the stop, fees included.

    ``entry_prices``: the price of every entry, the market one first (the last price stands for it).
    The quantity is rounded down to the qty step (one more step would lose more than the risk); it is
    refused, with the figures still given, when it rounds to zero, falls under the minimum order qty
    or value, exceeds the maximum qty, or needs more margin (plus entry fees) at ``leverage`` than
    ``available``.
    """
    problems = _input_problems(side, equity, risk_pct, entry_prices, sl_price, leverage)
    if problems:
        return RiskSize(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, tuple(problems))
    risk = equity * risk_pct / 100.0
    entries = tuple(entry_prices)

    def loss(q: float) -> float:
        return loss_at_stop(side, q, entries, sl_price, taker_fee_rate)

    unit = loss(1.0)
    step = instrument.qty_step
    qty = instrument.round_qty(risk / unit)
    # The division and the rounding are in floats, off by a step at most: settle on the grid point
    # itself, so that the loss of the result is within the risk and one more step is over it. The
    # passes are bounded: past 2**53 steps a step no longer changes the float.
    for _ in range(_SETTLE_PASSES):
        if loss(snap_qty(qty + step, instrument)) > risk:
            break
        qty = snap_qty(qty + step, instrument)
    for _ in range(_SETTLE_PASSES):
        if qty <= 0 or loss(qty) <= risk:
            break
        qty = max(0.0, snap_qty(qty - step, instrument))
    size = trade_size(
        side=side,
        per_entry_qty=qty,
        entry_prices=entries,
        sl_price=sl_price,
        leverage=leverage,
        instrument=instrument,
        taker_fee_rate=taker_fee_rate,
    )
    problems = _size_problems(instrument, size, min(entries), risk, available, leverage)
    return replace(size, risk_amount=risk, problems=tuple(problems))


def trade_size(
    *,
    side: Side,
    per_entry_qty: float,
    entry_prices: Sequence[float],
    sl_price: float,
    leverage: float,
    instrument: Instrument,
    taker_fee_rate: float,
) -> RiskSize:
    """The figures of a trade of ``per_entry_qty`` at every entry (a trade sized by margin shows
    them too); its ``risk_amount`` is its own loss at the stop, and nothing is checked."""
    n = len(entry_prices)
    notional = per_entry_qty * sum(entry_prices)
    loss = loss_at_stop(side, per_entry_qty, entry_prices, sl_price, taker_fee_rate)
    return RiskSize(
        risk_amount=loss,
        per_entry_qty=per_entry_qty,
        total_qty=snap_qty(per_entry_qty * n, instrument),
        notional=notional,
        margin=notional / leverage,
        fees=taker_fee_rate * per_entry_qty * (sum(entry_prices) + n * sl_price),
        loss_at_stop=loss,
        needed=notional / leverage + notional * taker_fee_rate,
    )


def _size_problems(
    instrument: Instrument,
    size: RiskSize,
    lowest_entry: float,
    risk: float,
    available: float,
    leverage: float,
) -> list[str]:
    """Why a per-entry quantity the risk allows cannot be placed, one sentence each."""
    symbol = instrument.symbol
    qty, total, needed = size.per_entry_qty, size.total_qty, size.needed
    step_text = fmt_number(instrument.qty_step)
    qty_text, total_text = fmt_number(qty, instrument.qty_step), fmt_number(total, instrument.qty_step)
    if qty <= 0:
        return [
            f"risking {fmt_usdt(risk)} USDT buys less than one qty step ({step_text} {symbol}) "
            "per entry: raise the risk or bring the stop closer"
        ]
    problems: list[str] = []
    if qty < instrument.min_qty:
        problems.append(
            f"risking {fmt_usdt(risk)} USDT gives {qty_text} {symbol} per entry, under the minimum "
            f"order qty {fmt_number(instrument.min_qty)}: raise the risk or bring the stop closer"
        )
    elif qty * lowest_entry < instrument.min_notional:
        problems.append(
            f"risking {fmt_usdt(risk)} USDT gives {qty_text} {symbol} per entry, worth under the "
            f"minimum order value {fmt_usdt(instrument.min_notional)} USDT"
        )
    if total > instrument.max_qty:
        problems.append(
            f"{total_text} {symbol} exceeds the maximum order qty {fmt_number(instrument.max_qty)}"
        )
    if not (math.isfinite(available) and needed <= available):
        have = available if math.isfinite(available) else 0.0
        problems.append(
            f"{total_text} {symbol} needs {fmt_usdt(needed)} USDT of margin and fees at {leverage:g}x, "
            f"available {fmt_usdt(have)}: raise the leverage or lower the risk"
        )
    return problems
