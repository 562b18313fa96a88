"""The snapshot build at scale (issue 17): what it reuses between builds, and a build cancelled midway.

An account whose reads are unchanged keeps its rows (the very objects) while the composed view is
rebuilt for another account's change; the insights' running volatility is the batch figure over
its window of bucketed pairs, and its memory stays a few records per symbol whatever it has seen; a
snapshot cancelled in the middle of its sequential reads (the baseline) leaves no coroutine behind
unawaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import tracemalloc
import warnings
from dataclasses import replace
from typing import Any, cast

import pytest
from cache_builders import counting_loader, make_cache
from test_dashboard import SimHost, open_position, sim

from engine.core.clock import VirtualClock
from engine.core.models import Instrument, Order, OrderStatus, OrderType, Position, Side, Ticker, Wallet
from engine.dashboard import snapshot as snapshot_module
from engine.dashboard.insights import BUCKET_PAIRS, InsightsProvider, PriceHistory, hourly_sigma
from engine.dashboard.schema import MonitorRow
from engine.dashboard.snapshot import AccountParts, PositionRows, account_view, position_rows

__all__ = ["sim"]  # the fixture, shared with test_dashboard


def position(account: str, symbol: str, mark: float) -> Position:
    return Position(account, symbol, Side.BUY, 1.23456, mark, mark, 0.0, 0.0, 10.0, 0.0)


def stop(account: str, symbol: str, trigger: float, qty: float = 1.0) -> Order:
    return Order(
        account=account,
        order_id=f"{account}-{symbol}",
        link_id="",
        symbol=symbol,
        side=Side.SELL,
        order_type=OrderType.MARKET,
        qty=qty,
        price=None,
        status=OrderStatus.UNTRIGGERED,
        trigger_price=trigger,
        reduce_only=True,
    )


WALLETS = {name: Wallet(name, 1000.0, 1000.0, 1000.0, 0.0, 0.0) for name in ("main", "mirror")}


def test_an_unchanged_account_keeps_its_rows_and_a_changed_one_gets_new_ones() -> None:
    parts = AccountParts()
    positions = {
        "main": [position("main", "BTCUSDT", 100.0)],
        "mirror": [position("mirror", "ETHUSDT", 50.0)],
    }
    orders = {"main": [stop("main", "BTCUSDT", 95.0)], "mirror": [stop("mirror", "ETHUSDT", 45.0)]}
    first = account_view(WALLETS, positions, orders, {}, parts=parts)
    # The mirror's orders were read again (a new list: one of them changed); main's are the same entries.
    orders = {**orders, "mirror": [stop("mirror", "ETHUSDT", 45.0, qty=2.0)]}
    second = account_view(WALLETS, positions, orders, {}, parts=parts)
    assert second == account_view(WALLETS, positions, orders, {})  # what a build from scratch gives
    main_first = [r for r in first.position_rows + first.order_rows if r["account"] == "main"]
    main_second = [r for r in second.position_rows + second.order_rows if r["account"] == "main"]
    assert all(a is b for a, b in zip(main_first, main_second, strict=True))  # reused, not rebuilt
    [mirror_order] = [r for r in second.order_rows if r["account"] == "mirror"]
    assert mirror_order["qty"] == 2.0 and mirror_order is not first.order_rows[1]
    assert second.accounts["mirror"]["orders"] == 1


def test_the_rows_are_made_again_once_the_instrument_is_known() -> None:
    parts = AccountParts()
    positions = {"main": [position("main", "BTCUSDT", 100.123)], "mirror": []}
    orders: dict[str, list[Order]] = {"main": [], "mirror": []}
    before = account_view(WALLETS, positions, orders, {}, parts=parts)
    assert before.position_rows[0]["mark_price"] == 100.123 and before.position_rows[0]["size"] == 1.23456
    instruments = {"BTCUSDT": Instrument("BTCUSDT", 0.1, 0.01, 0.01, 100.0)}
    after = account_view(WALLETS, positions, orders, instruments, parts=parts)  # the same lists
    assert after.position_rows[0]["mark_price"] == 100.1 and after.position_rows[0]["size"] == 1.23


def window_pairs(pairs_seen: int, size: int, bucket: int) -> int:
    """The pairs of samples a PriceHistory's window covers after ``pairs_seen`` pairs, worked out
    apart from it: buckets of ``bucket`` pairs from the first, the oldest dropped whole while the
    others still cover ``size - 1`` pairs, the one being filled never."""
    keep = max(size - 1, 1)
    return pairs_seen if pairs_seen <= keep else pairs_seen - bucket * ((pairs_seen - keep) // bucket)


@pytest.mark.parametrize(
    ("size", "bucket"), [(1, 1), (2, 1), (2, 5), (12, 1), (12, 7), (100, 60), (900, BUCKET_PAIRS)]
)
def test_the_running_volatility_is_the_figure_of_the_window_s_samples(size: int, bucket: int) -> None:
    history = PriceHistory(size, bucket)
    seen: list[tuple[float, float]] = []
    rng = random.Random(size * 100 + bucket)
    price, previous = 100.0, -1
    compared: set[str] = set()
    for t in range(3 * size + 2 * bucket + 20):
        sample = (float(t), 0.0 if rng.random() < 0.02 else price)  # a pair with a 0 price does not count
        history.add(*sample)
        seen.append(sample)
        if rng.random() < 0.8:  # some ticks leave the price where it was
            price *= math.exp(rng.gauss(0.0, 0.002))
        pairs = window_pairs(len(seen) - 1, size, bucket)
        assert history.pairs == pairs and history.last == sample
        if len(seen) >= size >= 2:  # the documented window: size - 1 to size - 2 + bucket pairs
            assert size - 1 <= pairs <= size - 2 + bucket
        dropped, previous = pairs != previous + 1, pairs
        if size > 100 and t % 10 and not dropped:
            continue  # at 900 samples, a figure every tenth tick (and at each drop) is enough
        expected = hourly_sigma(seen[-(pairs + 1) :])
        if pairs == len(seen) - 1:  # nothing dropped yet: the very figure, to the bit
            assert history.sigma() == expected
            compared.add("exact" if expected is not None else "none")
        elif expected is None:
            assert history.sigma() is None
        else:  # the sums were made again from the buckets left: equal to rounding
            assert history.sigma() == pytest.approx(expected, rel=1e-12)
            compared.add("after a drop")
    if size >= 12:  # figures were compared both before and after the first drop
        assert {"exact", "after a drop"} <= compared


def test_the_price_history_keeps_a_few_records_whatever_it_has_seen() -> None:
    history = PriceHistory(900)
    for t in range(10_000):
        history.add(float(t), 100.0 + t % 7)
    assert history.records <= 900 // BUCKET_PAIRS + 2
    # 100 symbols x 900 samples, through the provider: per sample, a tuple and floats took ~170 MB
    # at 1000 symbols (issue 17); the buckets keep that under 5 MB (measured ~2.2 MB).
    rng = random.Random(5)
    path = [(float(t), 100.0 * math.exp(rng.gauss(0.0, 0.01))) for t in range(900)]
    symbols = [f"S{i}USDT" for i in range(100)]
    provider = InsightsProvider()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for ts, price in path:
            for symbol in symbols:
                provider.observe(Ticker(symbol, price, price, price, price, ts))
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert held < 500_000, f"{held / 1e3:.0f} kB for 100 symbols"
    assert all(provider.sigma(symbol) is not None for symbol in symbols)


async def test_a_snapshot_cancelled_midway_leaves_no_coroutine_unawaited(sim: SimHost) -> None:
    await sim.profile.rollback_all()  # the baseline reads one piece after another
    await open_position(sim, "main", "BTCUSDT", 0.01)
    assert sim.dashboard is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build = asyncio.ensure_future(sim.dashboard.snapshot())
        await asyncio.sleep(0)  # the build is waiting for its first read
        assert not build.done()
        build.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await build
        del build
        for _ in range(3):  # the cancelled build's callbacks run, and let go of what it held
            await asyncio.sleep(0)
        gc.collect()
    unawaited = [str(w.message) for w in caught if "was never awaited" in str(w.message)]
    assert unawaited == []


async def test_the_statistics_are_worked_out_again_only_when_a_trade_closed(
    sim: SimHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fill drops the stats entry, but most fills close no trade: the views are only worked out
    again once the ledger holds another trade (at a thousand positions, fills come every second),
    and then from the new trade alone, not from every trade of the ledger."""
    from engine.dashboard.statistics import StatisticsBook

    dashboard = sim.dashboard
    assert dashboard is not None
    runs: list[int] = []
    real = StatisticsBook.add

    def counted(book: StatisticsBook, trades: Any) -> Any:
        trades = list(trades)
        runs.append(len(trades))
        return real(book, trades)

    monkeypatch.setattr(StatisticsBook, "add", counted)
    sim.tpsl.manage(sl_price=90_000.0)  # a ledger with one closed trade
    first = await sim.clock.drive_while(dashboard.snapshot())
    dashboard.cache.invalidate("stats")  # what a fill does
    second = await sim.clock.drive_while(dashboard.snapshot())
    assert runs == [1] and second["statistics"] == first["statistics"]
    trade = sim.tpsl.ledger.trades[0]
    later = trade.closed_at + 60.0
    sim.tpsl.ledger.record(replace(trade, symbol="SOLUSDT", pnl=-5.0, closed_at=later))
    dashboard.cache.invalidate("stats")
    third = await sim.clock.drive_while(dashboard.snapshot())
    assert runs == [1, 1] and third["statistics"]["trades"] == 2
    assert third["statistics"] != first["statistics"]


async def test_the_ledger_section_is_made_again_only_when_a_trade_closed(sim: SimHost) -> None:
    """The ledger only grows: an unchanged one is the last snapshot's section (the same frozen object),
    not every trade's row made and frozen again at every refresh."""
    dashboard = sim.dashboard
    assert dashboard is not None
    sim.tpsl.manage(sl_price=90_000.0)  # a ledger with one closed trade
    first = await sim.clock.drive_while(dashboard.snapshot())
    second = await sim.clock.drive_while(dashboard.snapshot())
    assert second["ledger"] is first["ledger"]
    trade = sim.tpsl.ledger.trades[0]
    sim.tpsl.ledger.record(replace(trade, symbol="SOLUSDT", pnl=-5.0, closed_at=120.0))
    third = await sim.clock.drive_while(dashboard.snapshot())
    assert len(third["ledger"]["trades"]) == 2
    assert json.loads(third.to_json())["ledger"] == json.loads(json.dumps(sim.tpsl.ledger.snapshot()))


ACCOUNTS = ("main", "mirror")
SYMBOLS = [f"S{n:02d}USDT" for n in range(12)]


def random_order(rng: random.Random, account: str, serial: int) -> Order:
    symbol = rng.choice(SYMBOLS)
    return Order(
        account=account,
        order_id=f"o{serial}",
        link_id=rng.choice(("", f"m1-tp{serial % 3}-{serial}", f"m1-sl-{serial}")),
        symbol=symbol,
        side=rng.choice((Side.BUY, Side.SELL)),
        order_type=OrderType.LIMIT,
        qty=float(rng.randint(1, 9)),
        price=float(rng.randint(90, 110)),
        status=rng.choice((OrderStatus.NEW, OrderStatus.UNTRIGGERED)),
        trigger_price=None,
        reduce_only=rng.random() < 0.5,
    )


def changed_reads(
    rng: random.Random, positions: dict[str, list[Position]], orders: dict[str, list[Order]], serial: int
) -> int:
    """A few changes to one account's reads, as the cache applies events: a new list holding the
    same records but those added, amended (a new record of the same id), removed, opened or closed."""
    account = rng.choice(ACCOUNTS)
    held, working = list(positions[account]), list(orders[account])
    for _ in range(rng.choice((1, 1, 2, 3, 30))):
        action = rng.random()
        if action < 0.3 or not working:
            serial += 1
            working.insert(rng.randrange(len(working) + 1), random_order(rng, account, serial))
        elif action < 0.55:
            at = rng.randrange(len(working))
            working[at] = replace(working[at], qty=working[at].qty + 1.0)
        elif action < 0.75:
            working.pop(rng.randrange(len(working)))
        elif action < 0.85:  # a re-read of the positions: the same holdings at new marks
            held = [
                replace(p, mark_price=p.mark_price + rng.choice((-0.37, 0.0, 1.21)), upnl=rng.random())
                for p in held
            ]
        else:  # a position opened, moved or closed (size 0: not listed)
            symbol = rng.choice(SYMBOLS)
            others = [p for p in held if p.symbol != symbol]
            size = rng.choice((0.0, 1.0, 2.5))
            mark = float(rng.randint(90, 110))
            held = [*others, replace(position(account, symbol, mark), size=size)]
    positions[account], orders[account] = held, working
    return serial


def monitor_row(tps_filled: int) -> MonitorRow:
    """The part of a monitor's row a position row shows (a new object each time)."""
    return cast(
        MonitorRow,
        {
            "phase": "MONITORING",
            "tps_filled": tps_filled,
            "sl_price": 90.0,
            "breakeven": False,
            "urgency": None,
        },
    )


def test_an_account_view_kept_from_build_to_build_is_the_one_made_from_scratch() -> None:
    rng = random.Random(29)
    instruments = {s: Instrument(s, 0.1, 0.01, 0.01, 100.0) for s in SYMBOLS[:6]}
    parts = AccountParts()
    memo = PositionRows()
    monitors: dict[tuple[str, str, str | None], MonitorRow] = {}
    positions: dict[str, list[Position]] = {a: [] for a in ACCOUNTS}
    orders: dict[str, list[Order]] = {a: [] for a in ACCOUNTS}
    serial = 0
    for step in range(400):
        serial = changed_reads(rng, positions, orders, serial)
        if step == 200:  # an instrument learnt: every position row is made again, at its tick
            instruments = {**instruments, SYMBOLS[7]: Instrument(SYMBOLS[7], 0.5, 0.1, 0.1, 100.0)}
        kept = account_view(WALLETS, positions, orders, instruments, parts=parts)
        assert kept == account_view(WALLETS, positions, orders, instruments)
        assert kept.symbols == {p.symbol for p in kept.positions} | {o.symbol for o in kept.orders}
        # The positions section at this build's marks (some moved, some not shown): kept rows too.
        marks = {(a, s): float(rng.randint(95, 105)) for a in ACCOUNTS for s in SYMBOLS if rng.random() < 0.5}
        if rng.random() < 0.3:  # a monitor's row changes (a new object), or a monitor comes or goes
            p = rng.choice(kept.positions) if kept.positions else None
            if p is not None and rng.random() < 0.2:
                monitors.pop((p.account, p.symbol, p.side), None)
            elif p is not None:
                monitors[(p.account, p.symbol, p.side)] = monitor_row(rng.randint(0, 3))
        shown = position_rows(kept, marks, monitors, instruments, memo)
        assert shown == position_rows(kept, marks, monitors, instruments)
        assert list(map(dict, shown)) == [dict(r) for r in position_rows(kept, marks, monitors, instruments)]


def test_an_amended_order_is_placed_without_a_sort_and_the_other_rows_are_kept() -> None:
    parts = AccountParts()
    rng = random.Random(5)
    orders = {"main": [random_order(rng, "main", n) for n in range(300)], "mirror": []}
    positions: dict[str, list[Position]] = {
        "main": [position("main", s, 100.0) for s in SYMBOLS],
        "mirror": [],
    }
    first = account_view(WALLETS, positions, orders, {}, parts=parts)
    sorts, built = parts.sorts, parts.built
    amended = replace(orders["main"][10], qty=99.0)
    orders = {**orders, "main": [amended if o is orders["main"][10] else o for o in orders["main"]]}
    second = account_view(WALLETS, positions, orders, {}, parts=parts)
    assert second == account_view(WALLETS, positions, orders, {})
    assert parts.sorts == sorts and parts.built == built + 1  # one row built, nothing sorted again
    assert [r is s for r, s in zip(first.order_rows, second.order_rows, strict=True)].count(False) == 1
    assert all(r is s for r, s in zip(first.position_rows, second.position_rows, strict=True))


async def test_the_alerts_section_is_made_again_only_when_an_alert_was_published(sim: SimHost) -> None:
    dashboard = sim.dashboard
    assert dashboard is not None
    sim.alerts.raise_alert("warning", "test", "first")
    first = await sim.clock.drive_while(dashboard.snapshot())
    second = await sim.clock.drive_while(dashboard.snapshot())
    assert second["alerts"] is first["alerts"]
    sim.alerts.raise_alert("info", "test", "second")
    third = await sim.clock.drive_while(dashboard.snapshot())
    assert [a["message"] for a in third["alerts"]][:2] == ["second", "first"]
    assert json.loads(third.to_json())["alerts"] == json.loads(json.dumps(sim.alerts.snapshot(50)))


async def test_the_oldest_age_is_that_of_the_oldest_live_entry() -> None:
    """Read past the TLRU cache's per-key access (a thousand tickers per snapshot): an expired entry
    does not count."""
    clock = VirtualClock()
    cache = make_cache(clock)
    load, _ = counting_loader()
    assert cache.oldest_age_s("positions") is None
    await cache.get_or_load("positions", ("positions", "main"), load)
    clock.advance(10.0)
    await cache.get_or_load("positions", ("positions", "mirror"), load)
    clock.advance(2.0)
    assert cache.oldest_age_s("positions") == pytest.approx(12.0)
    assert cache.metrics()["categories"]["positions"]["oldest_age_s"] == pytest.approx(12.0)
    clock.advance(4.0)  # main's entry (16 s old) is past the 15 s TTL: mirror's is the oldest live one
    assert cache.oldest_age_s("positions") == pytest.approx(6.0)
    assert cache.entries("positions") == 1


def test_a_row_shown_at_the_market_mark_is_kept_when_only_the_venues_mark_moved() -> None:
    """A position update that moves the venue's mark of every position (most of the slowest builds at
    1000 positions made every row again for it) changes no row shown at the market's mark: only
    its size and entry price are shown of it then. A row shown at the venue's mark follows it."""
    instruments = {s: Instrument(s, 0.1, 0.01, 0.01, 100.0) for s in SYMBOLS[:2]}
    memo = PositionRows()
    held = {"main": [position("main", s, 100.0) for s in SYMBOLS[:2]], "mirror": []}
    marks = {("main", SYMBOLS[0]): 101.0}  # the second is shown at its own (venue) mark
    first = position_rows(account_view(WALLETS, held, {}, instruments), marks, {}, instruments, memo)
    moved = {"main": [replace(p, mark_price=104.0, upnl=4.0) for p in held["main"]], "mirror": []}
    view = account_view(WALLETS, moved, {}, instruments)
    second = position_rows(view, marks, {}, instruments, memo)
    assert second == position_rows(view, marks, {}, instruments)
    assert second[0] is first[0] and second[1] is not first[1] and second[1]["mark_price"] == 104.0
    grown = {"main": [replace(p, size=3.0) for p in moved["main"]], "mirror": []}
    view = account_view(WALLETS, grown, {}, instruments)
    third = position_rows(view, marks, {}, instruments, memo)
    assert third == position_rows(view, marks, {}, instruments) and third[0]["size"] == 3.0


def test_an_accounts_rows_are_made_once_not_at_every_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each new part made an account's rows object and dropped it (a reference cycle through its
    bound methods: garbage only the collector frees, a few lists each, at every build)."""
    made: list[object] = []
    original = snapshot_module._AccountRows

    def counted() -> object:
        rows = original()
        made.append(rows)
        return rows

    monkeypatch.setattr(snapshot_module, "_AccountRows", counted)
    parts = AccountParts()
    positions = {"main": [position("main", s, 100.0) for s in SYMBOLS[:3]], "mirror": []}
    for step in range(5):
        moved = {"main": [replace(p, size=p.size + step) for p in positions["main"]], "mirror": []}
        account_view(WALLETS, moved, {}, {}, parts=parts)
    assert len(made) == 2  # one per account


def test_positions_read_again_at_new_marks_are_their_last_rows_with_two_figures_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every TTL re-read of a thousand positions brings new records that differ from the last ones
    by their mark and uPnL: each row was made again from scratch (12-14 ms of the build it landed
    in). A position still holding what it held is its last row with those two figures set."""
    made = 0
    original = snapshot_module.position_row

    def counted(p: Position, instrument: Instrument | None) -> Any:
        nonlocal made
        made += 1
        return original(p, instrument)

    monkeypatch.setattr(snapshot_module, "position_row", counted)
    instruments = {s: Instrument(s, 0.1, 0.01, 0.01, 100.0) for s in SYMBOLS[:6]}
    held = [position("main", s, 100.0) for s in SYMBOLS[:6]]
    parts = AccountParts()
    account_view(WALLETS, {"main": held, "mirror": []}, {}, instruments, parts=parts)
    assert made == 6
    read = [replace(p, mark_price=101.27, upnl=1.5) for p in held]
    read[0] = replace(read[0], size=2.0)  # this one's holding changed
    view = account_view(WALLETS, {"main": read, "mirror": []}, {}, instruments, parts=parts)
    assert made == 7
    assert view == account_view(WALLETS, {"main": read, "mirror": []}, {}, instruments)
    assert {row["mark_price"] for row in view.position_rows} == {101.3}


class CountedRow(dict[str, Any]):
    """A venue position row that counts the fields read from it."""

    reads = 0

    def __getitem__(self, key: str) -> Any:
        CountedRow.reads += 1
        return super().__getitem__(key)


def test_a_build_reads_no_field_of_the_venue_rows_it_saw_last_time_at_the_same_marks() -> None:
    """At a thousand positions, each build made three keys of every venue row to find its last row
    (account, symbol and side read from each): a venue row seen at the last build is found by
    its identity, and at the same marks and monitors it is the last row, nothing read."""
    instruments = {s: Instrument(s, 0.1, 0.01, 0.01, 100.0) for s in SYMBOLS[:4]}
    held = {"main": [position("main", s, 100.0) for s in SYMBOLS[:4]], "mirror": []}
    view = account_view(WALLETS, held, {}, instruments)
    counted = replace(view, position_rows=tuple(CountedRow(row) for row in view.position_rows))
    marks = {("main", s): 101.0 for s in SYMBOLS[:2]}  # two shown at a mark, two at the venue's
    monitors = {("main", SYMBOLS[0], "Buy"): monitor_row(1)}
    memo = PositionRows()
    first = position_rows(counted, marks, monitors, instruments, memo)  # type: ignore[arg-type]
    CountedRow.reads = 0
    second = position_rows(counted, marks, monitors, instruments, memo)  # type: ignore[arg-type]
    assert CountedRow.reads == 0 and all(a is b for a, b in zip(first, second, strict=True))
    moved = {**marks, ("main", SYMBOLS[1]): 102.0}
    third = position_rows(counted, moved, monitors, instruments, memo)  # type: ignore[arg-type]
    assert third == position_rows(view, moved, monitors, instruments)
    assert [a is b for a, b in zip(second, third, strict=True)] == [True, False, True, True]


async def test_the_positions_section_takes_a_turn_every_chunk_of_rows_and_is_the_same_section() -> None:
    """At a thousand positions at new marks the section is tens of ms of the engine's loop: it is made
    in chunks of FREEZE_ROWS rows with the engine's turn between them (a fill is decided there), and
    is the section made in one go."""
    symbols = [f"Z{n:04d}USDT" for n in range(3 * snapshot_module.FREEZE_ROWS + 10)]
    instruments = {s: Instrument(s, 0.1, 0.01, 0.01, 100.0) for s in symbols}
    held = {"main": [position("main", s, 100.0) for s in symbols], "mirror": []}
    view = account_view(WALLETS, held, {}, instruments)
    turns = 0

    async def turn() -> None:
        nonlocal turns
        turns += 1

    memo = PositionRows()
    for mark in (101.0, 102.0):
        marks = {("main", s): mark for s in symbols}
        turns = 0
        shown = await memo.rows_yielding(view, marks, {}, instruments, turn)
        assert turns == 3 and shown == position_rows(view, marks, {}, instruments)
