"""DashboardCache, optimized: order and position events are patched into the cached lists (no venue
re-read), loads in flight keep their result with the events of the flight replayed onto it, and a
fill awaits the updates that follow it (a fill that comes alone still drops the lists)."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from cache_builders import make_cache
from test_cache import execution

from engine.core.clock import VirtualClock
from engine.core.models import (
    Execution,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    StreamStatus,
    Wallet,
)
from engine.core.profile import Mode
from engine.core.revision import Revision
from engine.dashboard.cache import DashboardCache, _patched_rows, account_key

ORDERS = ("orders", "main")
POSITIONS = ("positions", "main")


def order(
    order_id: str, symbol: str = "BTCUSDT", *, status: OrderStatus = OrderStatus.NEW, **fields: Any
) -> Order:
    base = Order(
        account="main",
        order_id=order_id,
        link_id="",
        symbol=symbol,
        side=Side.SELL,
        order_type=OrderType.LIMIT,
        qty=1.0,
        price=110.0,
        status=status,
        created=1.0,
        updated=1.0,
    )
    return replace(base, **fields)


def position(symbol: str, size: float, ts: float = 1.0) -> Position:
    side = Side.BUY if size else None
    return Position("main", symbol, side, size, 100.0, 100.0, 0.0, 0.0, 10.0, ts)


def fill(order_id: str = "o1", symbol: str = "BTCUSDT") -> Execution:
    return replace(execution("main", symbol), order_id=order_id, ts=2.0)


def wallet() -> Wallet:
    return Wallet("main", equity=1.0, wallet_balance=1.0, available=1.0, upnl=0.0, ts=2.0)


def venue(rows: list[Any]) -> tuple[Callable[[], Awaitable[list[Any]]], list[int]]:
    """A loader that returns a copy of ``rows`` as they are when it is called, counting its calls."""
    calls: list[int] = []

    async def load() -> list[Any]:
        calls.append(1)
        return list(rows)

    return load, calls


async def cached(cache: DashboardCache, key: tuple[Any, ...], rows: list[Any]) -> list[Any]:
    load, _ = venue(rows)
    got: list[Any] = await cache.get_or_load(key[0], key, load)
    return got


async def test_order_events_are_patched_into_the_cached_list_without_a_read() -> None:
    cache = make_cache(VirtualClock())
    resting = order("o0")
    first = await cached(cache, ORDERS, [resting])
    load, calls = venue([])  # a read would answer nothing: what is served comes from the patches

    cache.on_event(order("o1"))
    with_new = await cache.get_or_load("orders", ORDERS, load)
    assert [o.order_id for o in with_new] == ["o0", "o1"]
    assert first == [resting]  # the list given out before is not mutated

    amended = order("o1", price=111.0, updated=2.0)
    cache.on_event(amended)
    after_amend = await cache.get_or_load("orders", ORDERS, load)
    assert after_amend == [resting, amended] and with_new[1].price == 110.0

    cache.on_event(order("o1", price=109.0, updated=1.5))  # delivered late: older than the amend
    assert await cache.get_or_load("orders", ORDERS, load) is after_amend  # ignored, same list

    cache.on_event(order("o1", status=OrderStatus.FILLED, updated=3.0))
    assert await cache.get_or_load("orders", ORDERS, load) == [resting]
    assert calls == []
    assert cache.metrics()["categories"]["orders"]["writes"] == 3  # new, amend, fill


async def test_a_per_symbol_list_gets_only_its_symbols_events() -> None:
    cache = make_cache(VirtualClock())
    btc, eth = ("orders", "main", "BTCUSDT"), ("orders", "main", "ETHUSDT")
    await cached(cache, btc, [])
    eth_rows = await cached(cache, eth, [order("e0", "ETHUSDT")])
    cache.on_event(order("b1", "BTCUSDT"))
    load, calls = venue([])
    assert [o.order_id for o in await cache.get_or_load("orders", btc, load)] == ["b1"]
    assert await cache.get_or_load("orders", eth, load) is eth_rows  # untouched, still cached
    assert calls == []


async def test_position_events_are_patched_into_the_cached_positions() -> None:
    cache = make_cache(VirtualClock())
    await cached(cache, POSITIONS, [position("BTCUSDT", 1.0)])
    load, calls = venue([])
    cache.on_event(position("ETHUSDT", 2.0))  # opened
    cache.on_event(position("BTCUSDT", 0.5, ts=2.0))  # reduced
    rows = await cache.get_or_load("positions", POSITIONS, load)
    assert [(p.symbol, p.size) for p in rows] == [("BTCUSDT", 0.5), ("ETHUSDT", 2.0)]
    cache.on_event(position("BTCUSDT", 0.0, ts=3.0))  # closed: out of the list, as the venue lists it
    rows = await cache.get_or_load("positions", POSITIONS, load)
    assert [p.symbol for p in rows] == ["ETHUSDT"] and calls == []


async def test_a_fill_followed_by_its_updates_costs_no_read() -> None:
    cache = make_cache(VirtualClock())
    await cached(cache, ORDERS, [order("o1")])
    await cached(cache, POSITIONS, [])
    await cached(cache, account_key("main"), [])
    for event in (
        fill("o1"),
        order("o1", status=OrderStatus.FILLED, updated=2.0),
        position("BTCUSDT", 1.0, ts=2.0),
        wallet(),
    ):
        cache.on_event(event)
    load, calls = venue([])
    assert await cache.get_or_load("orders", ORDERS, load) == []
    assert [p.symbol for p in await cache.get_or_load("positions", POSITIONS, load)] == ["BTCUSDT"]
    assert await cache.get_or_load("account_data", account_key("main"), load) == wallet()
    assert calls == []


async def test_a_fill_that_comes_alone_drops_the_lists_at_the_next_read() -> None:
    # The execution poll (no stream) hands on fills with no order / position / wallet update after them.
    cache = make_cache(VirtualClock())
    await cached(cache, ORDERS, [order("o1")])
    await cached(cache, POSITIONS, [])
    cache.on_event(fill("o1"))
    load, calls = venue(["read again"])
    assert await cache.get_or_load("orders", ORDERS, load) == ["read again"]
    assert await cache.get_or_load("positions", POSITIONS, load) == ["read again"]
    assert len(calls) == 2


def slow_venue(
    clock: VirtualClock, rows: list[Order]
) -> tuple[Callable[[], Awaitable[list[Order]]], list[int]]:
    """A venue read answered 0.1 s (clock) after it is made, and the calls made of it."""
    calls: list[int] = []

    async def slow_read() -> list[Order]:
        calls.append(1)
        await clock.sleep(0.1)
        return list(rows)

    return slow_read, calls


async def test_a_load_in_flight_keeps_its_result_with_the_events_of_the_flight() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    # o2 read after the update below was sent
    slow_read, calls = slow_venue(clock, [order("o1"), order("o2", updated=5.0)])
    reading = asyncio.ensure_future(cache.get_or_load("orders", ORDERS, slow_read))
    await clock.drive(until=clock.now() + 0.05)
    cache.on_event(order("o1", status=OrderStatus.CANCELLED, updated=2.0))
    cache.on_event(order("o3"))
    cache.on_event(order("o2", price=99.0, updated=4.0))  # older than what the read shows
    await clock.drive(until=clock.now() + 1.0)
    stored = [(o.order_id, o.price) for o in reading.result()]
    assert stored == [("o2", 110.0), ("o3", 110.0)]
    assert [(o.order_id, o.price) for o in await cache.get_or_load("orders", ORDERS, slow_read)] == stored
    assert calls == [1]


async def test_a_fill_during_the_flight_followed_by_its_update_keeps_the_load() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    slow_read, calls = slow_venue(clock, [order("o1")])
    reading = asyncio.ensure_future(cache.get_or_load("orders", ORDERS, slow_read))
    await clock.drive(until=clock.now() + 0.05)
    cache.on_event(fill("o1"))
    cache.on_event(order("o1", status=OrderStatus.FILLED, updated=2.0))
    await clock.drive(until=clock.now() + 1.0)
    assert reading.result() == []
    assert await cache.get_or_load("orders", ORDERS, slow_read) == [] and calls == [1]


async def test_an_invalidate_during_the_flight_still_discards_the_load() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    load, _ = venue([order("o1")])

    async def slow_read() -> list[Any]:
        await clock.sleep(0.1)
        return await load()

    reading = asyncio.ensure_future(cache.get_or_load("orders", ORDERS, slow_read))
    await clock.drive(until=clock.now() + 0.05)
    cache.on_event(order("o2"))
    cache.invalidate("orders", "main")
    await clock.drive(until=clock.now() + 1.0)
    assert [o.order_id for o in reading.result()] == ["o1"]  # the callers get what was read
    assert cache.peek(ORDERS) is None


async def test_the_baseline_patches_nothing() -> None:
    cache = make_cache(VirtualClock(), mode=Mode.BASELINE)
    rows = await cached(cache, ORDERS, [order("o1")])
    cache.on_event(order("o2"))
    cache.on_event(order("o1", status=OrderStatus.FILLED, updated=2.0))
    assert cache.peek(ORDERS) is rows and [o.order_id for o in rows] == ["o1"]


async def test_updates_queued_for_a_dropped_list_never_reach_the_next_read() -> None:
    cache = make_cache(VirtualClock())
    await cached(cache, ORDERS, [])
    cache.on_event(order("o1"))  # queued for the cached list ...
    cache.invalidate("orders", "main")  # ... which is dropped before it is read
    load, calls = venue([])  # the venue: o1 has gone meanwhile
    assert await cache.get_or_load("orders", ORDERS, load) == [] and calls == [1]
    assert await cache.get_or_load("orders", ORDERS, load) == []  # no ghost of o1 patched in


# --- refresh ahead: a patched list past its TTL is served while it is read again in the background ---


class GatedVenue:
    """A venue read that waits for ``gate`` (or fails with ``error``), counting its calls."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows
        self.gate = asyncio.Event()
        self.calls = 0
        self.error: Exception | None = None

    async def read(self) -> list[Any]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        await self.gate.wait()
        return list(self.rows)


def streaming(cache: DashboardCache, connected: bool = True) -> DashboardCache:
    """The account's push stream connected (or dropped): what keeps a list fresh past its TTL."""
    cache.on_event(StreamStatus("main", connected=connected, gap=False, reason="", ts=0.0))
    return cache


def ids(rows: list[Order]) -> list[str]:
    return [o.order_id for o in rows]


async def settle(clock: VirtualClock) -> None:
    """Run everything that is ready (the background load's steps) without moving time."""
    await clock.drive(until=clock.now())


async def at_once(clock: VirtualClock, lookup: Awaitable[Any]) -> Any:
    """What ``lookup`` answers without waiting for a (gated) venue read: it fails if it waits."""
    task = asyncio.ensure_future(lookup)
    await settle(clock)
    if not task.done():
        task.cancel()
        raise AssertionError("the lookup waited for the venue read")
    return task.result()


async def test_a_patched_list_past_its_ttl_is_served_and_read_again_in_the_background() -> None:
    clock = VirtualClock()
    cache = streaming(make_cache(clock))  # optimized: orders TTL 15 s
    await cached(cache, ORDERS, [order("o0")])
    cache.on_event(order("o1"))
    clock.advance(15.5)  # past the TTL, within the hard limit (2 x 15 s)
    venue_ = GatedVenue([order("o0", price=111.0, updated=2.0), order("o1")])  # o0's amend was lost

    with cache.recording() as reads:
        served = await at_once(clock, cache.get_or_load("orders", ORDERS, venue_.read))
    assert ids(served) == ["o0", "o1"] and reads.stored_at(ORDERS) == 0.0  # its age: the old load's
    await settle(clock)
    assert venue_.calls == 1  # one background load started

    cache.on_event(order("o2"))  # during the flight: patched into what is served, replayed onto the read
    during = await at_once(clock, cache.get_or_load("orders", ORDERS, venue_.read))
    assert ids(during) == ["o0", "o1", "o2"]
    await settle(clock)
    assert venue_.calls == 1  # single flight: no second load

    venue_.gate.set()
    await settle(clock)
    with cache.recording() as reads:
        fresh = await at_once(clock, cache.get_or_load("orders", ORDERS, venue_.read))
    assert [(o.order_id, o.price) for o in fresh] == [("o0", 111.0), ("o1", 110.0), ("o2", 110.0)]
    assert reads.stored_at(ORDERS) == clock.monotonic() and venue_.calls == 1
    row = cache.metrics()["categories"]["orders"]
    assert (row["hits"], row["misses"], row["loads"]) == (3, 1, 2)  # served lookups are hits


async def test_a_composition_whose_part_is_due_is_composed_again_without_waiting() -> None:
    clock = VirtualClock()
    cache = streaming(make_cache(clock))  # optimized: orders 15 s, full_dashboard 30 s
    venue_ = GatedVenue([order("o1")])
    full = ("full_dashboard", "*")

    async def compose() -> list[str]:
        return ids(await cache.get_or_load("orders", ORDERS, venue_.read))

    def view() -> Awaitable[Any]:
        return at_once(clock, cache.get_or_compose("full_dashboard", full, compose))

    await cached(cache, ORDERS, [order("o0")])
    assert await view() == ["o0"]
    clock.advance(16.0)  # the part is due; the composition itself would still be live
    assert await view() == ["o0"]  # composed again, without waiting for the part's read
    await settle(clock)
    assert venue_.calls == 1
    venue_.gate.set()
    await settle(clock)
    assert await view() == ["o1"]  # the part's new read
    assert venue_.calls == 1


async def assert_waits(clock: VirtualClock, cache: DashboardCache, key: tuple[Any, ...]) -> None:
    """A lookup of ``key`` waits for the (gated) venue read, and gets what it read."""
    venue_ = GatedVenue([order("o1")])
    reading = asyncio.ensure_future(cache.get_or_load(key[0], key, venue_.read))
    await settle(clock)
    assert not reading.done() and venue_.calls == 1, key
    venue_.gate.set()
    await settle(clock)
    assert ids(reading.result()) == ["o1"]


async def test_past_the_hard_limit_a_lookup_waits_for_the_load() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    await cached(cache, ORDERS, [order("o0")])
    clock.advance(30.5)  # 2 x the 15 s TTL
    await assert_waits(clock, cache, ORDERS)


async def test_the_baseline_and_unpatched_entries_still_wait_once_expired() -> None:
    clock = VirtualClock()
    baseline = make_cache(clock, mode=Mode.BASELINE)  # orders TTL 10 s
    await cached(baseline, ORDERS, [order("o0")])
    optimized = make_cache(clock)
    await cached(optimized, account_key("main"), [order("o0")])  # a category events do not patch

    async def not_a_list() -> str:
        return "not a list"  # nothing a patch can apply to

    await optimized.get_or_load("positions", POSITIONS, not_a_list)
    clock.advance(10.5)
    await assert_waits(clock, baseline, ORDERS)
    clock.advance(5.0)  # 15.5 s > the optimized positions TTL
    await assert_waits(clock, optimized, POSITIONS)
    clock.advance(45.0)  # 60.5 s > the optimized account_data TTL
    await assert_waits(clock, optimized, account_key("main"))


async def test_a_failed_background_load_keeps_the_list_and_is_retried_after_the_back_off() -> None:
    clock = VirtualClock()
    cache = streaming(make_cache(clock))
    leaked: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: leaked.append(context))
    await cached(cache, ORDERS, [order("o0")])
    venue_ = GatedVenue([order("o1")])
    venue_.error = ConnectionError("venue down")

    clock.advance(15.5)
    assert ids(await at_once(clock, cache.get_or_load("orders", ORDERS, venue_.read))) == ["o0"]
    await settle(clock)
    assert venue_.calls == 1
    clock.advance(4.0)  # within the 5 s back-off: served, not tried again
    assert ids(await at_once(clock, cache.get_or_load("orders", ORDERS, venue_.read))) == ["o0"]
    await settle(clock)
    assert venue_.calls == 1
    clock.advance(1.5)  # back-off over: the next lookup tries again (and fails again)
    assert ids(await at_once(clock, cache.get_or_load("orders", ORDERS, venue_.read))) == ["o0"]
    await settle(clock)
    assert venue_.calls == 2
    row = cache.metrics()["categories"]["orders"]
    assert (row["hits"], row["load_errors"]) == (3, 2)

    venue_.error = None  # the venue is back: the retry after the back-off replaces the list
    clock.advance(5.0)
    assert ids(await at_once(clock, cache.get_or_load("orders", ORDERS, venue_.read))) == ["o0"]
    venue_.gate.set()
    await settle(clock)
    assert ids(await at_once(clock, cache.get_or_load("orders", ORDERS, venue_.read))) == ["o1"]
    assert venue_.calls == 3
    gc.collect()
    await settle(clock)
    assert leaked == []  # no "exception was never retrieved"


async def test_a_lookup_of_many_keys_reads_the_due_ones_in_the_background() -> None:
    clock = VirtualClock()
    cache = streaming(make_cache(clock))
    btc, eth = ("positions", "main", "BTCUSDT"), ("positions", "main", "ETHUSDT")
    await cached(cache, btc, [position("BTCUSDT", 1.0)])
    clock.advance(10.0)
    await cached(cache, eth, [position("ETHUSDT", 2.0)])
    clock.advance(6.0)  # BTC's list is 16 s old (due), ETH's 6 s
    asked: list[list[Any]] = []
    gate = asyncio.Event()

    async def read(keys: list[Any]) -> dict[Any, Any]:
        asked.append(keys)
        await gate.wait()
        return {key: [position(key[2], 3.0, ts=2.0)] for key in keys}

    got = await at_once(clock, cache.get_many_or_load("positions", [btc, eth], read))
    assert [rows[0].size for rows in got.values()] == [1.0, 2.0] and asked == [[btc]]
    gate.set()
    await settle(clock)
    got = await at_once(clock, cache.get_many_or_load("positions", [btc, eth], read))
    assert [rows[0].size for rows in got.values()] == [3.0, 2.0] and asked == [[btc]]


async def test_without_a_connected_stream_a_list_is_not_served_past_its_ttl() -> None:
    """No event keeps the list fresh while the stream is down: past its TTL, it is read again first."""
    clock = VirtualClock()
    cache = streaming(make_cache(clock), connected=False)
    await cached(cache, ORDERS, [order("o0")])
    clock.advance(15.5)
    await assert_waits(clock, cache, ORDERS)


def reference_patch(rows: list[Order], events: list[Order]) -> tuple[list[Order], int]:
    """What patching means, one row at a time: each record ends as its newest version (a tie to the
    later update), replaced while open, removed once not, an open one not held added at the end; a
    second row of the same record is left as it is; the very list when nothing changed."""
    newest: dict[str, Order] = {}
    for event in events:
        seen = newest.get(event.order_id)
        if seen is None or seen.updated <= event.updated:
            newest[event.order_id] = event
    out: list[Order] = []
    changes = 0
    for row in rows:
        update = newest.pop(row.order_id, None)
        if update is None or row.updated > update.updated or update == row:
            out.append(row)
        elif update.status.is_open:
            out.append(update)
            changes += 1
        else:
            changes += 1
    for update in newest.values():
        if update.status.is_open:
            out.append(update)
            changes += 1
    return (out, changes) if changes else (rows, 0)


def test_patching_visits_only_the_rows_updated_and_agrees_with_the_reference() -> None:
    """The patch finds the rows its updates are for among thousands of orders without a Python step
    per row; the result (records, their objects, the count of changes) is the reference's."""
    rng = random.Random(11)
    closed = (OrderStatus.FILLED, OrderStatus.CANCELLED)
    for _ in range(300):
        rows = [order(f"o{n}", updated=float(rng.randrange(5))) for n in range(rng.randrange(30))]
        if rows and rng.random() < 0.2:
            rows.append(rows[rng.randrange(len(rows))])  # a record twice
        events = [
            order(
                f"o{rng.randrange(40)}",
                updated=float(rng.randrange(5)),
                qty=float(rng.randrange(1, 3)),
                status=rng.choice((OrderStatus.NEW, OrderStatus.NEW, *closed)),
            )
            for _ in range(rng.randrange(6))
        ]
        got, changes = _patched_rows(rows, events)
        expected, expected_changes = reference_patch(rows, events)
        assert changes == expected_changes and got == expected
        assert all(a is b for a, b in zip(got, expected, strict=True))
        assert (got is rows) == (expected is rows)
        if got is not rows and len({id(r) for r in rows}) == len(rows):
            # the patched list tells its reader what changed (SortedRows applies it)
            assert isinstance(got, Revision)
            told = got.changes_since(rows)
            assert told is not None
            before, after = {id(r) for r in rows}, {id(r) for r in got}
            assert {id(new) for _, new in told if new is not None} == after - before
            assert {id(old) for old, _ in told if old is not None} == before - after


async def test_lists_due_together_are_read_again_one_after_another() -> None:
    """An account's positions and orders (and the other account's) are loaded together, so their
    TTLs end together: re-read at once, at a thousand positions four lists of thousands of records
    landed in one snapshot build (30-40 ms of it). One background re-read is in flight at a time;
    the others are served meanwhile, and each starts once the one before has landed."""
    clock = VirtualClock()
    cache = streaming(make_cache(clock))  # optimized: orders and positions TTL 15 s
    await cached(cache, ORDERS, [order("o0")])
    await cached(cache, POSITIONS, [position("BTCUSDT", 1.0)])
    clock.advance(15.5)  # both past their TTL, within the hard limit
    orders_venue = GatedVenue([order("o0", price=111.0, updated=2.0)])
    positions_venue = GatedVenue([position("BTCUSDT", 2.0, ts=2.0)])

    assert ids(await at_once(clock, cache.get_or_load("orders", ORDERS, orders_venue.read))) == ["o0"]
    served = await at_once(clock, cache.get_or_load("positions", POSITIONS, positions_venue.read))
    assert [p.size for p in served] == [1.0]  # served as cached
    await settle(clock)
    assert (orders_venue.calls, positions_venue.calls) == (1, 0)  # one re-read in flight

    orders_venue.gate.set()
    await settle(clock)
    fresh = await at_once(clock, cache.get_or_load("orders", ORDERS, orders_venue.read))
    assert [o.price for o in fresh] == [111.0]
    await at_once(clock, cache.get_or_load("positions", POSITIONS, positions_venue.read))
    await settle(clock)
    assert positions_venue.calls == 1  # its turn, once the orders landed
    positions_venue.gate.set()
    await settle(clock)
    fresh_positions = await at_once(clock, cache.get_or_load("positions", POSITIONS, positions_venue.read))
    assert [p.size for p in fresh_positions] == [2.0] and orders_venue.calls == 1
