"""DashboardCache: hits, misses and TTL expiry on the virtual clock, single-flight loads, freshness
on trading events and TTL retuning (its metrics: test_cache_metrics.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cache_builders import BASELINE, OPTIMIZED, counting_loader, make_cache

from engine.core.clock import VirtualClock
from engine.core.models import Execution, Order, OrderStatus, OrderType, Side, StreamStatus, Ticker, Wallet
from engine.core.profile import Mode
from engine.dashboard.cache import SHARED, account_key, market_key


def execution(account: str = "main", symbol: str = "BTCUSDT") -> Execution:
    return Execution(
        account=account,
        exec_id="x1",
        order_id="o1",
        link_id="",
        symbol=symbol,
        side=Side.BUY,
        price=100.0,
        qty=1.0,
        fee=0.05,
        is_maker=False,
        closed_size=0.0,
        order_type=OrderType.MARKET,
        ts=0.0,
    )


def ticker(symbol: str, last: float, ts: float = 0.0) -> Ticker:
    return Ticker(symbol=symbol, last=last, mark=last, bid=last, ask=last, ts=ts)


async def test_hit_then_miss_after_ttl_expiry_on_the_virtual_clock() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    load, calls = counting_loader()
    key = ("positions", "main")
    assert await cache.get_or_load("positions", key, load) == "v"
    clock.advance(14.9)
    assert await cache.get_or_load("positions", key, load) == "v"
    assert len(calls) == 1
    clock.advance(0.2)  # 15.1 s > the optimized positions TTL of 15 s
    await cache.get_or_load("positions", key, load)
    assert len(calls) == 2
    row = cache.metrics()["categories"]["positions"]
    assert (row["hits"], row["misses"], row["loads"]) == (1, 2, 2)
    assert row["hit_rate"] == pytest.approx(1 / 3, abs=1e-4)


async def test_fifty_concurrent_callers_share_one_load() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    calls: list[int] = []

    async def slow() -> str:
        calls.append(1)
        await clock.sleep(0.1)
        return "wallet"

    waiters = [
        asyncio.ensure_future(cache.get_or_load("account_data", account_key("main"), slow)) for _ in range(50)
    ]
    await clock.drive(until=clock.now() + 1.0)
    assert [w.result() for w in waiters] == ["wallet"] * 50
    assert len(calls) == 1
    row = cache.metrics()["categories"]["account_data"]
    assert (row["loads"], row["misses"], row["coalesced"]) == (1, 50, 49)
    assert row["mean_load_ms"] == pytest.approx(100.0)


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    attempts: list[int] = []

    async def failing() -> str:
        attempts.append(1)
        await clock.sleep(0.05)
        raise ConnectionError("venue down")

    waiters = [
        asyncio.ensure_future(cache.get_or_load("orders", ("orders", "main"), failing)) for _ in range(5)
    ]
    await clock.drive(until=clock.now() + 1.0)
    for waiter in waiters:
        with pytest.raises(ConnectionError, match="venue down"):
            waiter.result()
    assert len(attempts) == 1
    assert cache.entries("orders") == 0
    load, calls = counting_loader("orders")
    assert await cache.get_or_load("orders", ("orders", "main"), load) == "orders"
    assert calls == [1]
    assert cache.metrics()["categories"]["orders"]["load_errors"] == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_load() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)

    async def slow() -> str:
        await clock.sleep(0.1)
        return "data"

    first = asyncio.ensure_future(cache.get_or_load("stats", ("stats", SHARED), slow))
    second = asyncio.ensure_future(cache.get_or_load("stats", ("stats", SHARED), slow))
    await clock.drive(until=clock.now() + 0.01)
    first.cancel()
    await clock.drive(until=clock.now() + 1.0)
    assert second.result() == "data"
    assert cache.peek(("stats", SHARED)) == "data"


async def test_an_execution_invalidates_its_account_positions_orders_balance_and_full_dashboard() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    keys = [
        ("positions", "main"),
        ("orders", "main", "BTCUSDT"),
        account_key("main"),
        ("full_dashboard", SHARED),
        ("positions", "mirror"),
        market_key("BTCUSDT"),
    ]
    for key in keys:
        cache.put(key, "cached")
    cache.on_event(execution("main"))
    assert cache.peek(("positions", "main")) is None
    assert cache.peek(("orders", "main", "BTCUSDT")) is None
    assert cache.peek(account_key("main")) is None
    assert cache.peek(("full_dashboard", SHARED)) is None
    assert cache.peek(("positions", "mirror")) == "cached"  # the other account is untouched
    assert cache.peek(market_key("BTCUSDT")) == "cached"


async def test_the_baseline_profile_ignores_events_as_the_original_did() -> None:
    clock = VirtualClock()
    cache = make_cache(clock, mode=Mode.BASELINE)
    cache.put(("positions", "main"), "cached")
    cache.on_event(execution("main"))
    cache.on_event(ticker("BTCUSDT", 101.0))
    assert cache.peek(("positions", "main")) == "cached"
    assert cache.peek(market_key("BTCUSDT")) is None


async def test_tickers_and_wallets_are_written_through() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    cache.put(market_key("ETHUSDT"), ticker("ETHUSDT", 3000.0))
    cache.on_event(ticker("ETHUSDT", 3010.5, ts=1.0))
    load, calls = counting_loader()
    got = await cache.get_or_load("market_data", market_key("ETHUSDT"), load)
    assert got.last == 3010.5 and calls == []
    wallet = Wallet("main", equity=1.0, wallet_balance=1.0, available=1.0, upnl=0.0, ts=0.0)
    cache.on_event(wallet)
    assert cache.peek(account_key("main")) is wallet


async def test_a_load_in_flight_never_overwrites_fresher_data() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)

    async def old_read() -> Ticker:
        await clock.sleep(0.1)
        return ticker("BTCUSDT", 100.0)

    async def old_positions() -> str:
        await clock.sleep(0.1)
        return "before the fill"

    reading = asyncio.ensure_future(cache.get_or_load("market_data", market_key("BTCUSDT"), old_read))
    positions = asyncio.ensure_future(cache.get_or_load("positions", ("positions", "main"), old_positions))
    await clock.drive(until=clock.now() + 0.05)
    cache.on_event(ticker("BTCUSDT", 105.0, ts=0.05))  # written through while the read is in flight
    cache.on_event(execution("main"))  # the fill lands while positions are being read
    await clock.drive(until=clock.now() + 1.0)
    assert reading.result().last == 100.0  # the caller gets what it read ...
    assert cache.peek(market_key("BTCUSDT")).last == 105.0  # ... but the cache keeps the fresher price
    assert positions.result() == "before the fill"
    assert cache.peek(("positions", "main")) is None  # and a pre-fill read is not cached


async def test_a_stream_gap_drops_that_account_and_the_prices() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    for key in (("positions", "main"), ("positions", "mirror"), market_key("BTCUSDT")):
        cache.put(key, "cached")
    cache.on_event(StreamStatus("main", connected=True, gap=False, reason="subscribed", ts=0.0))
    assert cache.peek(("positions", "main")) == "cached"
    cache.on_event(StreamStatus("main", connected=True, gap=True, reason="resubscribed", ts=0.0))
    assert cache.peek(("positions", "main")) is None
    assert cache.peek(market_key("BTCUSDT")) is None
    assert cache.peek(("positions", "mirror")) == "cached"


async def test_an_order_update_invalidates_only_orders_and_the_composed_view() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    for key in (
        ("orders", "main"),
        ("positions", "main"),
        ("full_dashboard", SHARED),
        ("ai_insights", SHARED),
    ):
        cache.put(key, "cached")
    order = Order(
        account="main",
        order_id="o1",
        link_id="",
        symbol="BTCUSDT",
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        qty=1.0,
        price=110.0,
        status=OrderStatus.NEW,
    )
    cache.on_event(order)
    assert cache.peek(("orders", "main")) is None
    assert cache.peek(("full_dashboard", SHARED)) is None
    assert cache.peek(("ai_insights", SHARED)) is None  # a new stop changes the risk notes
    assert cache.peek(("positions", "main")) == "cached"


async def test_retuning_a_ttl_applies_to_entries_already_cached() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    cache.put(("stats", SHARED), "stats")  # optimized TTL 300 s
    cache.put(("positions", "main"), "positions")  # optimized TTL 15 s
    clock.advance(20.0)
    cache.set_ttl("stats", 10.0)  # the entry is already 20 s old: gone at once
    assert cache.peek(("stats", SHARED)) is None
    cache.put(("stats", SHARED), "stats")
    cache.set_ttl("positions", 60.0)  # was expired under 15 s ...
    assert cache.peek(("positions", "main")) is None  # ... and an expired entry does not come back
    cache.put(("positions", "main"), "positions")
    clock.advance(30.0)  # older than the old 15 s, younger than the new 60 s
    assert cache.peek(("positions", "main")) == "positions"
    assert cache.peek(("stats", SHARED)) is None  # 30 s > the tuned 10 s
    assert cache.ttl("positions") == 60.0
    assert cache.metrics()["categories"]["positions"]["ttl"] == 60.0
    with pytest.raises(ValueError):
        cache.set_ttl("positions", 0)
    with pytest.raises(ValueError):
        cache.set_ttl("nonsense", 5)


async def test_switching_the_ttl_mode_keeps_a_tuned_value_of_each_mode() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    cache.set_ttl("orders", 42.0)
    cache.apply_ttl_mode(Mode.BASELINE)
    assert cache.ttls == BASELINE and not cache.invalidation
    cache.put(("positions", "main"), "read while events were ignored")
    cache.apply_ttl_mode(Mode.OPTIMIZED)
    assert cache.ttl("orders") == 42.0 and cache.invalidation
    assert cache.ttl("market_data") == OPTIMIZED["market_data"]
    assert cache.peek(("positions", "main")) is None  # may have missed events: not kept for longer


async def test_get_many_loads_all_missing_keys_with_one_call() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    batches: list[list[str]] = []

    async def load(keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Ticker]:
        batches.append([k[2] for k in keys])
        await clock.sleep(0.1)
        return {k: ticker(k[2], 1.0) for k in keys}

    cache.on_event(ticker("BTCUSDT", 2.0))
    keys = [market_key(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")]
    first = asyncio.ensure_future(cache.get_many_or_load("market_data", keys, load))
    second = asyncio.ensure_future(cache.get_many_or_load("market_data", keys[1:], load))
    await clock.drive(until=clock.now() + 1.0)
    assert batches == [["ETHUSDT", "SOLUSDT"]]  # the written-through BTC is not read; the second waits
    assert {k[2]: t.last for k, t in first.result().items()} == {
        "BTCUSDT": 2.0,
        "ETHUSDT": 1.0,
        "SOLUSDT": 1.0,
    }
    assert list(second.result()) == keys[1:]


async def test_keys_are_tuples_of_their_category() -> None:
    cache = make_cache(VirtualClock())
    load, _ = counting_loader()
    with pytest.raises(ValueError):
        await cache.get_or_load("positions", ("orders", "main"), load)
    with pytest.raises(ValueError):
        await cache.get_or_load("positions", "positions:main", load)  # type: ignore[arg-type]


async def test_a_composed_entry_is_rebuilt_from_its_cached_parts_when_one_is_written_through() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    load_ticker, ticker_reads = counting_loader(ticker("BTCUSDT", 100.0))
    load_wallet, wallet_reads = counting_loader("wallet")
    composed: list[int] = []

    async def compose() -> tuple[float, Any]:
        composed.append(1)
        price = await cache.get_or_load("market_data", market_key("BTCUSDT"), load_ticker)
        wallet = await cache.get_or_load("account_data", account_key("main"), load_wallet)
        return price.last, wallet

    full = ("full_dashboard", SHARED)
    assert await cache.get_or_compose("full_dashboard", full, compose) == (100.0, "wallet")
    assert await cache.get_or_compose("full_dashboard", full, compose) == (100.0, "wallet")
    assert len(composed) == 1  # a hit while no part changed
    cache.on_event(ticker("BTCUSDT", 101.0))  # written through: a part changed
    assert await cache.get_or_compose("full_dashboard", full, compose) == (101.0, "wallet")
    assert len(composed) == 2
    assert (len(ticker_reads), len(wallet_reads)) == (1, 1)  # rebuilt from the cache: no load


async def test_a_composed_entry_never_outlives_an_expired_part() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)  # optimized: positions 15 s, full_dashboard 30 s
    load_positions, position_reads = counting_loader(["BTCUSDT"])

    async def compose() -> Any:
        return await cache.get_or_load("positions", ("positions", "main"), load_positions)

    full = ("full_dashboard", SHARED)
    await cache.get_or_compose("full_dashboard", full, compose)
    clock.advance(14.0)
    await cache.get_or_compose("full_dashboard", full, compose)
    assert len(position_reads) == 1
    clock.advance(2.0)  # the part expired (16 s > 15 s); the composition (30 s) would still be live
    await cache.get_or_compose("full_dashboard", full, compose)
    assert len(position_reads) == 2


async def test_a_recording_tells_when_each_entry_read_was_stored() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    load, _ = counting_loader(ticker("BTCUSDT", 100.0))
    await cache.get_or_load("positions", ("positions", "main"), load)
    clock.advance(3.0)
    cache.on_event(ticker("ETHUSDT", 10.0))
    with cache.recording() as reads:
        await cache.get_or_load("positions", ("positions", "main"), load)
        await cache.get_many_or_load("market_data", [market_key("ETHUSDT")], lambda keys: load())
    assert reads.data_at() == {("positions", "main"): 0.0, ("market_data", SHARED): 3.0}
    assert reads.stored_at(market_key("ETHUSDT")) == 3.0 and reads.stored_at(market_key("XRP")) is None


async def test_many_tickers_are_read_without_a_lookup_per_key_and_expire_as_any() -> None:
    """A snapshot looks up a thousand tickers: the market's plain entries are read in one pass over
    the store (no per-key freshness lookup), with the same answers and counts: written-through ones
    served, an expired one read again, hits and misses counted as before."""
    clock = VirtualClock()
    cache = make_cache(clock)
    looked_up: list[tuple[Any, ...]] = []
    live = cache._live

    def counted_live(category: str, key: tuple[Any, ...]) -> Any:
        looked_up.append(key)
        return live(category, key)

    cache._live = counted_live  # type: ignore[method-assign]
    read: list[list[str]] = []

    async def load(keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], Ticker]:
        read.append([k[2] for k in keys])
        return {k: ticker(k[2], 1.0) for k in keys}

    keys = [market_key(s) for s in ("BTCUSDT", "ETHUSDT", "SOLUSDT")]
    cache.on_event(ticker("BTCUSDT", 2.0))
    await clock.drive_while(cache.get_many_or_load("market_data", keys, load))
    assert read == [["ETHUSDT", "SOLUSDT"]]
    clock.advance(OPTIMIZED["market_data"] - 1.0)
    cache.on_event(ticker("ETHUSDT", 3.0))  # written through: fresh again
    clock.advance(2.0)  # BTC's and SOL's entries expire, ETH's is live
    got = await clock.drive_while(cache.get_many_or_load("market_data", keys, load))
    assert read == [["ETHUSDT", "SOLUSDT"], ["BTCUSDT", "SOLUSDT"]]
    assert {k[2]: t.last for k, t in got.items()} == {"BTCUSDT": 1.0, "ETHUSDT": 3.0, "SOLUSDT": 1.0}
    assert looked_up == []
    market = cache.metrics()["categories"]["market_data"]  # type: ignore[index]
    assert (market["hits"], market["misses"]) == (2, 4)
