"""SimVenue: the Venue contract over the simulated exchange (counters, batches, limits, faults, stream)."""

from __future__ import annotations

import asyncio

import pytest

from engine.core.clock import VirtualClock
from engine.core.models import (
    CancelRequest,
    Execution,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    StreamStatus,
    Ticker,
)
from engine.sim.exchange import SimExchange
from engine.sim.venue import SimVenue
from engine.venue.base import Endpoint, Venue
from engine.venue.errors import InvalidRequest, QtyTooSmall, RateLimited, TransientError

ETH = "ETHUSDT"


def make_venue(latency: str = "none") -> SimVenue:
    clock = VirtualClock(start=5_000.0)
    exchange = SimExchange(
        clock=clock,
        seed=3,
        symbols=["BTCUSDT", ETH],
        balances={"main": 100_000.0},
        slippage_bps=0.0,
        latency=latency,
    )
    exchange.set_price(ETH, 3000.0)
    return SimVenue(exchange, "main")


def buy_limit(price: float, qty: float = 0.1, link: str = "") -> OrderRequest:
    return OrderRequest(ETH, Side.BUY, OrderType.LIMIT, qty, price=price, link_id=link)


async def test_implements_the_venue_contract_and_counts_calls() -> None:
    venue = make_venue()
    assert isinstance(venue, Venue)
    instruments = await venue.instruments()
    assert (instruments[ETH].tick_size, instruments[ETH].qty_step, instruments[ETH].min_qty) == (
        0.01,
        0.01,
        0.01,
    )
    assert (await venue.tickers([ETH]))[ETH].last == 3000.0
    ack = await venue.place(OrderRequest(ETH, Side.BUY, OrderType.MARKET, 1.0, link_id="e1"))
    assert ack.link_id == "e1"
    assert (await venue.positions())[0].size == 1.0
    assert (await venue.wallet()).upnl == 0.0
    fills = await venue.executions(since=0.0, symbol=ETH)
    assert [f.order_id for f in fills] == [ack.order_id]
    await venue.set_leverage(ETH, 5)
    await venue.place(buy_limit(2900.0, link="e2"))
    assert [o.link_id for o in await venue.open_orders(ETH)] == ["e2"]
    assert len(await venue.cancel_all(ETH)) == 1
    assert venue.calls.as_dict() == {
        Endpoint.CANCEL_ALL: 1,
        Endpoint.EXECUTIONS: 1,
        Endpoint.INSTRUMENTS: 1,
        Endpoint.OPEN_ORDERS: 1,
        Endpoint.POSITIONS: 1,
        Endpoint.CREATE: 2,
        Endpoint.SET_LEVERAGE: 1,
        Endpoint.TICKERS: 1,
        Endpoint.WALLET: 1,
    }


async def test_batch_returns_one_result_per_item_with_the_bad_one_failed() -> None:
    venue = make_venue()
    results = await venue.place_batch(
        [buy_limit(2900.0, link="a"), buy_limit(2901.0, qty=0.001, link="b"), buy_limit(2902.0, link="c")]
    )
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, QtyTooSmall) and results[1].ack is None
    assert [r.ack.link_id for r in results if r.ack] == ["a", "c"]
    cancels = await venue.cancel_batch([CancelRequest(ETH, link_id="a"), CancelRequest(ETH, link_id="zzz")])
    assert [r.ok for r in cancels] == [True, False]
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 1, Endpoint.CANCEL_BATCH: 1}


async def test_batch_size_is_limited_to_twenty() -> None:
    venue = make_venue()
    with pytest.raises(InvalidRequest):
        await venue.place_batch([buy_limit(2000.0 + i) for i in range(21)])
    with pytest.raises(InvalidRequest):
        await venue.place_batch([])


async def test_eleventh_order_in_one_second_is_rate_limited_until_the_reset() -> None:
    venue = make_venue()
    clock = venue.exchange.clock
    assert isinstance(clock, VirtualClock)
    for i in range(10):
        await venue.place(buy_limit(2000.0 + i))
    with pytest.raises(RateLimited) as limited:
        await venue.place(buy_limit(2100.0))
    assert limited.value.reset_at == 5_001.0
    assert len(await venue.open_orders()) == 10  # the refused order never reached the book
    clock.advance(1.0)
    await venue.place(buy_limit(2100.0))
    assert venue.calls.counts[Endpoint.CREATE] == 12  # refused calls are calls too


async def test_batch_spends_one_unit_per_item_and_fails_the_excess() -> None:
    venue = make_venue()
    for i in range(4):
        await venue.place_batch([buy_limit(2000.0 + i)])
    results = await venue.place_batch([buy_limit(2100.0 + i) for i in range(8)])
    assert [r.ok for r in results] == [True] * 6 + [False] * 2
    assert all(isinstance(r.error, RateLimited) for r in results[6:])
    with pytest.raises(RateLimited):
        await venue.place_batch([buy_limit(2200.0)])


async def test_injected_faults_fail_calls_and_then_clear() -> None:
    venue = make_venue()
    venue.exchange.inject_errors("main", 2, TransientError("timeout"))
    for _ in range(2):
        with pytest.raises(TransientError):
            await venue.wallet()
    assert (await venue.wallet()).wallet_balance == 100_000.0
    venue.exchange.inject_errors("main", 1, TransientError("timeout"), endpoints=[Endpoint.CREATE_BATCH])
    with pytest.raises(TransientError):
        await venue.place_batch([buy_limit(2000.0)])
    assert venue.exchange.open_orders("main") == []


async def test_realistic_latency_takes_30_to_120_ms_of_clock_time() -> None:
    venue = make_venue(latency="realistic")
    clock = venue.exchange.clock
    assert isinstance(clock, VirtualClock)

    async def timed() -> float:
        start = clock.now()
        await venue.wallet()
        return clock.now() - start

    task = asyncio.create_task(timed())
    await clock.drive(until=clock.now() + 1.0)
    assert 0.030 <= task.result() <= 0.120
    same_seed = make_venue(latency="realistic").exchange
    assert same_seed.latency_s() == pytest.approx(task.result())


async def test_pushes_yield_what_the_exchange_sent_together_as_one() -> None:
    venue = make_venue()
    exchange = venue.exchange
    pushes = venue.pushes()
    (opened,) = await anext(pushes)
    assert isinstance(opened, StreamStatus) and opened.connected
    exchange.place("main", OrderRequest(ETH, Side.BUY, OrderType.MARKET, 1.0))
    exchange.step()
    fill = await anext(pushes)
    assert [type(e).__name__ for e in fill] == ["Execution", "Order", "Position", "Wallet"]
    tick = await anext(pushes)  # every symbol's ticker of the tick (and nothing filled)
    assert {type(e) for e in tick} == {Ticker} and len(tick) == len(exchange.instruments)
    await pushes.aclose()
    # a venue that cannot tell its pushes apart (the base's pushes) hands on each event as one
    one_by_one = Venue.pushes(make_venue())
    assert [type(e).__name__ for e in await anext(one_by_one)] == ["StreamStatus"]
    await one_by_one.aclose()


async def test_stream_yields_events_and_resubscribes_after_a_drop() -> None:
    venue = make_venue()
    exchange = venue.exchange
    clock = exchange.clock
    assert isinstance(clock, VirtualClock)
    stream = venue.stream()
    opened = await anext(stream)
    assert isinstance(opened, StreamStatus) and opened.connected and not opened.gap
    exchange.place("main", OrderRequest(ETH, Side.BUY, OrderType.MARKET, 1.0))
    kinds = [type(await anext(stream)).__name__ for _ in range(4)]
    assert kinds == ["Execution", "Order", "Position", "Wallet"]
    exchange.step()
    assert isinstance(await anext(stream), Ticker)
    await anext(stream)  # the second symbol's ticker
    exchange.drop_stream("main")
    dropped = await anext(stream)
    assert isinstance(dropped, StreamStatus) and not dropped.connected and dropped.gap

    reconnected = asyncio.ensure_future(anext(stream))
    await clock.drive(until=clock.now() + 0.5)
    exchange.place("main", OrderRequest(ETH, Side.SELL, OrderType.MARKET, 1.0))  # lost: not subscribed
    await clock.drive(until=clock.now() + 1.0)
    status = await reconnected
    assert isinstance(status, StreamStatus) and status.connected and status.gap
    exchange.place("main", OrderRequest(ETH, Side.BUY, OrderType.MARKET, 1.0))
    fill = await anext(stream)
    assert isinstance(fill, Execution) and fill.side is Side.BUY
    await stream.aclose()
    assert exchange.open_orders("main") == []
    assert (await venue.positions(ETH))[0].size == 1.0
    assert [o.status for o in exchange.order_history("main")] == [OrderStatus.FILLED] * 3
