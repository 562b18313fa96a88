"""Pure builders for TP/SL unit tests: a planned monitor, acknowledged actions, executions."""

from __future__ import annotations

import itertools

from engine.core.models import Execution, Instrument, Monitor, OrderAck, OrderType, Side
from engine.trading.approaches import Approach, TradeRequest, plan_trade, request_from_offsets
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


def ack_all(t: Transition, params: TradingParams = P, instrument: Instrument = BTC) -> Transition:
    """The venue accepts every action of ``t``; returns the transition after the answers."""
    results = [
        ActionResult(a, ack=OrderAck(f"oid-{a.slot}-{next(_ids)}", getattr(a.request, "link_id", "")))
        for a in t.actions
    ]
    after = apply_results(t.monitor, results, instrument, params)
    after.reason = after.reason or t.reason
    return after


def fill(m: Monitor, slot: str | None, qty: float, price: float, side: Side | None = None) -> Execution:
    order = m.orders.get(slot) if slot else None
    return Execution(
        account="main",
        exec_id=f"x{next(_ids)}",
        order_id=order.order_id if order else "manual",
        link_id=order.link_id if order else "",
        symbol=m.symbol,
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


def position_at(
    instrument: Instrument,
    side: Side,
    mark: float,
    *,
    sl_pct: float,
    tp_pcts: list[float],
    entry_pcts: list[float] | None = None,
    params: TradingParams = P,
) -> Monitor:
    """A monitor whose market entry filled at ``mark``: the stop ``sl_pct`` percent away on the loss
    side, TPs ``tp_pcts`` on the profit side, and (conservative, when ``entry_pcts`` is given) limit
    entries that far on the loss side, still working. Fast when ``entry_pcts`` is None."""
    approach = Approach.FAST if entry_pcts is None else Approach.CONSERVATIVE
    req = request_from_offsets(
        account="main",
        symbol=instrument.symbol,
        side=side,
        approach=approach,
        margin=1000.0,
        leverage=10.0,
        mark=mark,
        instrument=instrument,
        entry_offsets_pct=[0.0, *(-pct for pct in entry_pcts or [])],
        tp_offsets_pct=tp_pcts,
        sl_offset_pct=-sl_pct,
    )
    plan = plan_trade(req, instrument, mark, 10_000.0, params)
    t = open_monitor(new_monitor(plan, f"{next(_ids):08x}", "t3st", 1000.0), instrument, params)
    m = ack_all(t, params, instrument).monitor
    entry = fill(m, "e1", m.orders["e1"].qty, mark)
    return ack_all(apply_execution(m, entry, instrument, params), params, instrument).monitor
