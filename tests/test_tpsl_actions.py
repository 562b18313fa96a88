"""Operator actions and the fail-closed start-up, on the simulated venue.

``@on_both_venues`` tests also run over the Bybit venue against the fake V5 server (same ledger
required). Sim-only, because they wait on virtual time: cancelling a monitor's orders (the next 30 s
reconciliation pass must not restore them) and the fail-closed start-up (its retry back-off).
"""

from __future__ import annotations

import asyncio

import pytest
from tpsl_harness import SYMBOL, Harness, Market, assert_protected, on_both_venues

from engine.core.models import OrderRequest, OrderType, Side
from engine.trading.approaches import Approach, TradeRejected
from engine.trading.operator import ActionRefused, OperatorActions
from engine.venue.base import Endpoint
from engine.venue.errors import TransientError

KEY = "main:BTCUSDT:Buy"


async def opened(
    market: Market | None = None, approach: Approach = Approach.CONSERVATIVE
) -> tuple[Harness, OperatorActions]:
    h = market.harness() if market is not None else Harness()
    await h.start()
    await h.manager.open_trade(h.request(approach, margin=1000.0))
    await h.settle()
    return h, OperatorActions(h.manager)


@on_both_venues
async def test_close_position_at_market(market: Market) -> None:
    h, ops = await opened(market)
    await h.price(100_400.0)
    await ops.close_position(KEY)
    await h.settle()
    assert not h.position().is_open and h.open_orders() == []
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "manual" and trade.exit_price == pytest.approx(100_400.0)
    await h.stop()


async def test_cancel_orders_leaves_only_the_stop() -> None:
    h, ops = await opened()
    await ops.cancel_orders(KEY)
    await h.settle()
    (only,) = h.open_orders()
    assert only.trigger_price is not None
    assert_protected(h)
    await h.settle(31.0)  # reconciliation must not bring the TPs back
    assert len(h.open_orders()) == 1
    await h.stop()


@on_both_venues
async def test_breakeven_now(market: Market) -> None:
    h, ops = await opened(market)
    with pytest.raises(ActionRefused, match="breakeven"):
        await ops.breakeven_now(KEY)
    await h.price(100_600.0)
    m = await ops.breakeven_now(KEY)
    assert m is not None and m.breakeven and m.sl_price == pytest.approx(100_130.0)
    await h.settle()
    (stop,) = [o for o in h.open_orders() if o.trigger_price is not None]
    assert stop.trigger_price == pytest.approx(100_130.0)
    with pytest.raises(ActionRefused, match="no monitor"):
        await ops.breakeven_now("main:ETHUSDT:Buy")
    await h.stop()


@on_both_venues
async def test_kill_switch_closes_everything_and_pauses_entries(market: Market) -> None:
    h, ops = await opened(market)
    # an unmonitored position on another symbol and a foreign order
    h.exchange.set_price("ETHUSDT", 3300.0)
    h.exchange.place("main", OrderRequest("ETHUSDT", Side.BUY, OrderType.LIMIT, qty=0.5, price=3000.0))
    (report,) = await ops.kill_switch()
    await h.settle()
    assert report.monitors_closing == [KEY] and report.orders_cancelled == 1
    assert h.open_orders() == [] and not h.position().is_open
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "kill_switch"
    assert h.manager.engine_state == "paused"
    with pytest.raises(TradeRejected, match="paused"):
        await h.manager.open_trade(h.request(margin=1000.0))
    await ops.resume_entries()
    await h.manager.open_trade(h.request(Approach.FAST, margin=1000.0))
    await h.stop()


@on_both_venues
async def test_pause_keeps_protecting(market: Market) -> None:
    h, ops = await opened(market)
    await ops.pause_entries(["main"])
    await h.price(98_900.0)  # an entry that was already working still fills and is protected
    assert_protected(h)
    assert h.position().size == pytest.approx(0.066)
    await h.stop()


async def test_reconciling_until_the_venue_can_be_read_fail_closed() -> None:
    h = Harness()
    h.exchange.inject_errors("main", 3, TransientError("502 Bad Gateway"), endpoints=[Endpoint.POSITIONS])
    h.exchange.place("main", OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, qty=0.01))
    h.task = asyncio.create_task(h.manager.run())
    await h.settle(0.5)
    assert h.manager.engine_state == "reconciling"
    with pytest.raises(TradeRejected, match="reconciling"):
        await h.manager.open_trade(h.request(margin=1000.0))
    assert any(kind == "reconcile_failed" for _, kind, _ in h.alerts)
    await h.settle(20.0)
    assert h.manager.engine_state == "running"
    assert KEY in h.manager.monitors  # adopted once the venue could be read
    assert_protected(h)
    await h.stop()
