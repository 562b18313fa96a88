"""Restarts: kill the engine in every phase (and right after every durable write), recover from
what the store made durable, reconcile, and finish the trade with no duplicate and no orphan order.

``@on_both_venues`` tests also run over the Bybit venue against the fake V5 server (same ledger
required). Sim-only, because they wait for time to pass, which only the virtual clock makes cheap:
the periodic reconciliation tests (``settle(11.0)``: the 10 s orders pass) and the crash loop (a
restart after every durable write, dozens of engines per path).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter

import pytest
from tpsl_harness import SYMBOL, Crash, Harness, Market, MemoryStore, assert_protected, on_both_venues

from engine.core.link_ids import make_link_id, parse_link_id
from engine.core.models import OrderRequest, OrderType, Phase, Side
from engine.trading.approaches import Approach

PATH = [98_900.0, 97_900.0, 101_100.0, 102_100.0, 103_100.0, 104_100.0]
"""e2, e3, TP1 (breakeven), TP2, TP3, TP4: a full conservative trade."""


def placed_link_ids(h: Harness) -> Counter[str]:
    """Every order the account ever had (open and finished), counted by link id."""
    orders = h.exchange.open_orders("main") + h.exchange.order_history("main")
    return Counter(o.link_id for o in orders if o.link_id)


def assert_no_duplicates(h: Harness) -> None:
    counts = placed_link_ids(h)
    assert all(n == 1 for n in counts.values()), counts
    live = Counter(
        (p.monitor_id, p.slot) for o in h.open_orders() if (p := parse_link_id(o.link_id)) is not None
    )
    assert all(n == 1 for n in live.values()), live


async def finish(h: Harness, prices: list[float]) -> Harness:
    for price in prices:
        await h.price(price)
        assert_protected(h)
        assert_no_duplicates(h)
    return h


@pytest.mark.parametrize(
    ("before", "while_down", "after", "phase_before"),
    [
        ([], [98_900.0], PATH[1:], Phase.BUILDING),  # e2 fills while down
        (PATH[:2], [101_100.0], PATH[3:], Phase.MONITORING),  # TP1 fills while down
        (PATH[:3], [102_100.0], PATH[4:], Phase.PROFIT_TAKING),  # TP2 fills while down
        (PATH[:3], [], PATH[3:], Phase.PROFIT_TAKING),  # nothing happens while down
    ],
)
@on_both_venues
async def test_restart_in_each_phase_finishes_the_trade(
    market: Market, before, while_down, after, phase_before
) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(margin=1000.0))
    await h.settle()
    await finish(h, before)
    assert h.manager.monitors["main:BTCUSDT:Buy"].phase is phase_before
    await h.stop()
    for price in while_down:
        h.exchange.set_price(SYMBOL, price)
    h = await h.restart()
    assert_protected(h)
    assert_no_duplicates(h)
    await finish(h, after)
    assert h.open_orders() == [] and not h.position().is_open
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "tp" and trade.tps_hit == 4
    await h.stop()


@on_both_venues
async def test_stop_loss_hit_while_down_closes_with_the_real_exit(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, margin=1000.0))
    await h.settle()
    await h.stop()
    h.exchange.set_price(SYMBOL, 96_500.0)
    h = await h.restart()
    assert h.manager.monitors == {}
    assert h.open_orders() == []  # the take-profit of the closed monitor is gone
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "sl"
    assert trade.exit_price == pytest.approx(96_500.0)
    assert trade.fees > 0
    await h.stop()


@on_both_venues
async def test_unknown_position_is_adopted_and_protected(market: Market) -> None:
    h = market.harness()
    h.exchange.place("main", OrderRequest(SYMBOL, Side.SELL, OrderType.MARKET, qty=0.05))
    await h.start()
    (m,) = h.manager.monitors.values()
    assert m.approach == "adopted" and m.phase is Phase.MONITORING and m.side is Side.SELL
    assert m.sl_price == pytest.approx(102_000.0)  # adopt_stop_loss_pct = 2 from the entry
    assert_protected(h)
    assert any(kind == "position_adopted" for _, kind, _ in h.alerts)
    await h.stop()


async def test_orphan_orders_of_ours_are_cancelled_and_foreign_ones_alerted() -> None:
    h = Harness()
    await h.start()
    tag = h.manager.tag
    orphan = make_link_id(tag, "0badf00d", "tp1", 0)
    foreign = make_link_id("zzzz" if tag != "zzzz" else "yyyy", "12345678", "tp1", 0)
    for link in (orphan, foreign):
        h.exchange.place(
            "main", OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, qty=0.01, price=90_000.0, link_id=link)
        )
    await h.settle(11.0)  # one periodic orders reconciliation
    links = {o.link_id for o in h.open_orders()}
    assert orphan not in links and foreign in links
    assert any(sev == "critical" and kind == "foreign_orders" for sev, kind, _ in h.alerts)
    await h.stop()


async def test_missing_stop_loss_is_replaced_by_reconciliation() -> None:
    h = Harness(push_streams=False)  # no stream: only polling and reconciliation see the venue
    await h.start()
    await h.manager.open_trade(h.request(margin=1000.0))
    await h.settle(3.0)
    assert_protected(h)
    (stop,) = [o for o in h.open_orders() if o.trigger_price is not None]
    h.exchange.cancel("main", _cancel(stop.order_id))
    await h.settle(11.0)
    assert_protected(h)
    (again,) = [o for o in h.open_orders() if o.trigger_price is not None]
    assert again.link_id.endswith("-sl-1")  # the next generation, never the same id twice
    await h.stop()


def _cancel(order_id: str):
    from engine.core.models import CancelRequest

    return CancelRequest(SYMBOL, order_id=order_id)


CRASH_POINTS = int(os.environ.get("OPCONSOLE_CRASH_POINTS", "40"))


@pytest.mark.parametrize(
    ("path", "reasons"),
    [(PATH, {"tp"}), ([98_900.0, 101_100.0, 99_000.0], {"breakeven", "tp"}), ([97_900.0, 96_500.0], {"sl"})],
    ids=["take-profits", "breakeven", "stopped-out"],
)
async def test_crash_after_every_durable_write_never_duplicates_or_orphans(path, reasons) -> None:
    """Kill the engine right after its n-th durable write (before it acts on it), restart from the
    durable state, and finish the trade; for every n until the trade completes without a crash."""
    steps: list[float | None] = [None, *path]  # None: open the trade
    completed_without_crash = False
    crashes = 0
    for crash_at in range(1, CRASH_POINTS + 1):
        store = MemoryStore(crash_at=crash_at)
        h = Harness(store=store)
        with contextlib.suppress(Crash, AssertionError):
            await h.start()
        for step in steps:
            if store.crashed or h.task is None or h.task.done():
                h = await h.restart()
                crashes += 1
                store = h.store
            try:
                if step is None:
                    await h.manager.open_trade(h.request(margin=1000.0))
                    await h.settle()
                else:
                    await h.price(step)
            except Crash:
                pass
        if store.crashed or h.task is None or h.task.done():
            h = await h.restart()
            crashes += 1
        await h.settle(31.0)  # a full reconciliation pass
        assert h.open_orders() == [], (crash_at, h.open_orders())
        assert not h.position().is_open, crash_at
        assert_no_duplicates(h)
        trades = h.manager.ledger.trades
        if not trades:
            # killed after the monitor was written but before its entry was sent: entries whose
            # fate is unknown are never sent again, so the trade simply did not happen
            assert h.exchange.executions("main", 0.0) == [], crash_at
        else:
            assert len(trades) == 1, (crash_at, trades)
            assert trades[0].reason in reasons, (crash_at, trades)
        await h.stop()
        if not store.crashed and crashes == 0:
            completed_without_crash = True
            break
        crashes = 0
    assert completed_without_crash, "raise OPCONSOLE_CRASH_POINTS: the trade makes more durable writes"


@on_both_venues
async def test_a_position_opened_by_hand_while_running_is_adopted_at_once(market: Market) -> None:
    h = market.harness()
    await h.start()
    h.exchange.place("main", OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, qty=0.02))
    await h.settle(0.5)  # well before the 30 s periodic pass
    assert_protected(h)
    assert h.manager.monitors["main:BTCUSDT:Buy"].approach == "adopted"
    await h.stop()
