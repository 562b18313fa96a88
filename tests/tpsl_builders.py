"""Pure builders for TP/SL unit tests: a planned monitor, acknowledged actions, executions."""

from __future__ import annotations

import itertools

from engine.core.models import Execution, Instrument, Monitor, OrderAck, OrderType, Side
from engine.trading.approaches import Approach, TradeRequest, plan_trade
from engine.trading.monitor import Transition, apply_execution, apply_results, new_monitor, open_monitor
from engine.trading.orders import ActionResult
from engine.trading.params import TradingParams

BTC = Instrument("BTCUSDT", tick_size=0.1, qty_step=0.001, min_qty=0.001, max_qty=100.0)
P = TradingParams()
_ids = itertools.count()


def request(approach: Approach = Approach.CONSERVATIVE) -> TradeRequest:
    fast = approach is Approach.FAST
    return TradeRequest(
        "main",
        "BTCUSDT",
        Side.BUY,
        approach,
        1000.0,
        10.0,
        (None,) if fast else (None, 99_000.0, 98_000.0),
        (101_000.0,) if fast else (101_000.0, 102_000.0, 103_000.0, 104_000.0),
        97_000.0,
    )


def opened(approach: Approach = Approach.CONSERVATIVE, params: TradingParams = P) -> Transition:
    plan = plan_trade(request(approach), BTC, 100_000.0, 10_000.0, params)
    return ack_all(open_monitor(new_monitor(plan, "0a0b0c0d", "t3st", 1000.0), BTC, params), params)


def ack_all(t: Transition, params: TradingParams = P) -> Transition:
    """The venue accepts every action of ``t``; returns the transition after the answers."""
    results = [
        ActionResult(a, ack=OrderAck(f"oid-{a.slot}-{next(_ids)}", getattr(a.request, "link_id", "")))
        for a in t.actions
    ]
    after = apply_results(t.monitor, results, BTC, params)
    after.reason = after.reason or t.reason
    return after


def fill(m: Monitor, slot: str | None, qty: float, price: float, side: Side | None = None) -> Execution:
    order = m.orders.get(slot) if slot else None
    return Execution(
        account="main",
        exec_id=f"x{next(_ids)}",
        order_id=order.order_id if order else "manual",
        link_id=order.link_id if order else "",
        symbol="BTCUSDT",
        side=side or (order.side if order else m.side.opposite),
        price=price,
        qty=qty,
        fee=round(price * qty * 0.00055, 8),
        is_maker=False,
        closed_size=0.0,
        order_type=OrderType.MARKET,
        ts=1001.0 + next(_ids),
    )


def kinds(t: Transition) -> list[tuple[str, str]]:
    return [(type(a).__name__, a.slot or "") for a in t.actions]


def with_position(approach: Approach = Approach.CONSERVATIVE, params: TradingParams = P) -> Monitor:
    t = opened(approach, params)
    qty = t.monitor.orders["e1"].qty
    return ack_all(
        apply_execution(t.monitor, fill(t.monitor, "e1", qty, 100_000.0), BTC, params), params
    ).monitor
