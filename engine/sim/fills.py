"""Pure fill rules of the simulated exchange: when an order fills, at what price, for how much.

The book is modelled as infinitely deep at the last price, with one documented exception for resting
limit orders:

- A market order fills at once, in full, at the last price moved against the taker by the slippage
  (buy: up, sell: down), rounded to the tick away from the taker. Taker fee.
- A limit order is *marketable* when the last price is strictly through its price (buy: last < price,
  sell: last > price). A marketable limit fills at once, in full, as taker, at the market fill price
  capped by its limit.
- A resting limit order fills as maker at its own price on a later tick or price change: in full when
  the last price trades strictly through it, and for half of its remaining quantity (rounded down to
  the qty step; everything when that half would be below the minimum) when the last price only
  touches it, as if half the queue at that level were ahead of it. This is the simulator's only source
  of partial fills, and it is deterministic: no random draw decides a fill.
- A conditional order triggers when its watched price reaches the trigger: at or above it for
  triggerDirection 1 (rise), at or below it for 2 (fall).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from engine.core.models import Instrument, Side, TriggerDirection

MONEY = Decimal("0.00000001")
"""Balances, fees and PnL are kept to 8 decimals, as Bybit reports them."""


def dec(value: float | int | str) -> Decimal:
    """A float as the Decimal of its shortest repr (0.1 -> Decimal('0.1'), not the binary expansion)."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def money(value: Decimal) -> Decimal:
    """Round an amount of USDT to 8 decimals."""
    return value.quantize(MONEY, rounding=ROUND_HALF_EVEN)


def market_fill_price(side: Side, last: float, slippage_bps: float, instrument: Instrument) -> float:
    """Where a market order fills: ``last`` moved against the taker by the slippage, on the tick grid."""
    raw = last * (1.0 + side.sign * slippage_bps / 10_000.0)
    price = instrument.round_price(raw, "up" if side is Side.BUY else "down")
    return max(instrument.tick_size, price)


def is_through(side: Side, limit_price: float, last: float) -> bool:
    """The last price is strictly on the far side of the limit (a buy limit above the market, ...)."""
    return last < limit_price if side is Side.BUY else last > limit_price


def taker_limit_price(
    side: Side, limit_price: float, last: float, slippage_bps: float, instrument: Instrument
) -> float:
    """The fill price of a marketable limit: the market fill price, never worse than the limit."""
    market = market_fill_price(side, last, slippage_bps, instrument)
    return min(limit_price, market) if side is Side.BUY else max(limit_price, market)


def resting_fill_qty(
    side: Side, limit_price: float, last: float, remaining: Decimal, instrument: Instrument
) -> Decimal:
    """How much of a resting limit fills at ``last``: all when traded through, half when touched, else 0."""
    if is_through(side, limit_price, last):
        return remaining
    if last != limit_price:
        return Decimal(0)
    step = dec(instrument.qty_step)
    half = ((remaining / 2) / step).to_integral_value(rounding=ROUND_FLOOR) * step
    return remaining if half < dec(instrument.min_qty) else half


def trigger_hit(direction: TriggerDirection, trigger_price: float, price: float) -> bool:
    """Whether a conditional order with this direction fires at ``price``."""
    return price >= trigger_price if direction is TriggerDirection.RISE else price <= trigger_price


def fee(price: float, qty: Decimal, rate: Decimal) -> Decimal:
    """The fee of one fill (positive = paid), rounded to 8 decimals."""
    return money(dec(price) * qty * rate)
