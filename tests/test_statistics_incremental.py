"""The statistics section kept up to date trade by trade (:class:`StatisticsBook`) and the snapshot's
use of it: always exactly the pure :func:`statistics` of the trades so far (the same floats, ints
where it has ints, the same key order), the rows of untouched groups kept as the very objects.

The reference is the pure function itself: the book is an optimisation of it, never a second opinion.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest
from test_dashboard import SimHost, sim

from engine.core.clock import parse_iso_utc
from engine.core.models import Side, Trade
from engine.dashboard.statistics import DAILY_DAYS, StatisticsBook, statistics
from engine.trading.ledger import Ledger

__all__ = ["sim"]  # the fixture, shared with test_dashboard

T0 = parse_iso_utc("2026-01-01T00:00:00Z")
DAY = 86_400.0
ACCOUNTS = ("main", "mirror", "third")
APPROACHES = ("fast", "conservative")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT")
REASONS = ("tp", "sl", "breakeven", "manual")


def exact(value: Any) -> Any:
    """``value`` in a form whose == also checks key order, int against float and the float's bits
    (-0.0 is not 0.0), read-only or not alike (by exact types: the sections hold no others)."""
    kind = type(value)
    if kind is dict or kind is MappingProxyType:
        return ("map", [(key, exact(item)) for key, item in value.items()])
    if kind is list or kind is tuple:
        return ("seq", [exact(item) for item in value])
    if kind is float:
        return ("float", value.hex())
    assert kind in (int, str, type(None)), kind
    return (kind.__name__, value)


def assert_frozen(value: Any) -> None:
    """Every mapping in ``value`` read-only and every list a tuple (what a snapshot carries)."""
    kind = type(value)
    assert kind is not dict and kind is not list
    if kind is MappingProxyType:
        for item in value.values():
            assert_frozen(item)
    elif kind is tuple:
        for item in value:
            assert_frozen(item)


def make_trade(
    rng: random.Random, closed: float, number: int, symbols: Sequence[str] = SYMBOLS, account: str = ""
) -> Trade:
    """A random trade closed at ``closed``: a win, a loss or a scratch, amounts of very different
    sizes (so that the order of a sum shows in its last bits)."""
    kind = rng.random()
    scale = rng.choice((0.01, 0.1, 1.0, 37.0, 1e4))
    pnl = 0.0 if kind < 0.15 else round(rng.uniform(-1.0, 1.0) * scale, 6)
    return Trade(
        account=account or rng.choice(ACCOUNTS),
        symbol=rng.choice(symbols),
        side=rng.choice((Side.BUY, Side.SELL)),
        approach=rng.choice(APPROACHES),
        reason=rng.choice(REASONS),
        entry_price=100.0,
        exit_price=101.0,
        qty=1.0,
        pnl=pnl,
        fees=round(rng.uniform(0.0, 0.3) * scale, 6),
        opened_at=closed - rng.uniform(1.0, 3 * DAY),
        closed_at=closed,
        tps_hit=rng.choice((0, 0, 1, 2, 3, 4, 5)),
        monitor_id=f"m{number}",
        funding=round(rng.uniform(-0.05, 0.1) * scale, 6),
    )


def random_ledger(rng: random.Random, size: int, long_gap: bool) -> tuple[list[Trade], int]:
    """``size`` trades as a ledger records them: mostly in close order, with ties, some days without
    a trade (and, with ``long_gap``, once more days than a chart shows), and some trades recorded
    after a later one (out of close order). Returns them and how many are out of order."""
    trades: list[Trade] = []
    now, late = T0, 0
    for number in range(size):
        step = rng.random()
        if step < 0.1:
            now += 0.0  # closed at the same time as the one before
        elif step < 0.97:
            now += rng.uniform(1.0, DAY / 3)
        else:
            now += 3 * DAY
        if long_gap and number == size // 4:
            now += (DAILY_DAYS + 40) * DAY
        closed = now
        if rng.random() < 0.05 and trades:  # recorded late: closed before the last one recorded
            closed = now - rng.uniform(1.0, 2 * DAY)
            late += closed < max(t.closed_at for t in trades)
        trades.append(make_trade(rng, closed, number))
    return trades, late


@pytest.mark.parametrize("seed", range(12))
def test_the_book_is_the_pure_section_after_every_chunk_of_trades(seed: int) -> None:
    rng = random.Random(seed)
    trades, late = random_ledger(rng, 160, long_gap=seed % 4 == 0)
    assert late > 0  # the ledgers do test the trades recorded out of close order
    closes = sorted(t.closed_at for t in trades)
    start = None if seed % 3 == 0 else closes[len(closes) // 2]  # a period started mid-way
    accounts = ("main", "mirror") if seed % 2 else ("mirror",)
    points = 500 if seed % 4 < 2 else 7  # a short curve shows the window sliding
    book = StatisticsBook(start, accounts, points=points)
    given = 0
    while given < len(trades):
        chunk = rng.randint(1, 5)
        book.add(trades[given : given + chunk])
        given = min(given + chunk, len(trades))
        assert len(book) == given
        section = book.section()
        assert_frozen(section)
        expected = statistics(trades[:given], start, accounts, points=points)
        assert exact(section) == exact(expected)
        assert exact(book.totals()) == exact(Ledger(trades[:given]).totals())  # every trade, as recorded


def test_an_empty_book_is_the_pure_section_of_no_trade() -> None:
    book = StatisticsBook(None, ["mirror"])
    assert exact(book.section()) == exact(statistics([], None, ["mirror"]))
    assert exact(book.totals()) == exact(Ledger().totals())
    book.add([])
    assert exact(book.section()) == exact(statistics([], None, ["mirror"]))


def test_the_daily_series_past_a_gap_longer_than_the_chart_is_the_pure_one() -> None:
    rng = random.Random(7)
    closes = [T0, T0 + DAY, T0 + (2 * DAILY_DAYS + 30) * DAY, T0 + (2 * DAILY_DAYS + 32) * DAY]
    trades = [make_trade(rng, closed, n) for n, closed in enumerate(closes)]
    trades += [make_trade(rng, closes[-1] + n * DAY, 10 + n) for n in range(1, 3 * DAILY_DAYS)]
    book = StatisticsBook()
    for number, trade in enumerate(trades):
        book.add([trade])
        if number % 97 == 0 or number == len(trades) - 1:
            assert exact(book.section()) == exact(statistics(trades[: number + 1]))


def test_the_rows_of_groups_no_new_trade_touched_are_the_same_objects() -> None:
    rng = random.Random(3)
    trades = [make_trade(rng, T0 + n * 600.0, n, SYMBOLS[:4]) for n in range(60)]
    book = StatisticsBook(None, ["main", "mirror", "third"])
    book.add(trades)
    before = book.section()
    new = replace(trades[-1], account="main", symbol="SOLUSDT", approach="fast", closed_at=T0 + DAY)
    book.add([new])
    after = book.section()
    assert exact(after) == exact(statistics([*trades, new], None, ["main", "mirror", "third"]))
    for name in ("mirror", "third"):  # accounts the trade is not of: every one of their views
        for view in ("by_account", "by_approach", "by_symbol", "daily_pnl", "equity_curve"):
            assert after[view][name] is before[view][name]
    for name in ("main", "all"):
        assert after["by_account"][name] is not before["by_account"][name]
        assert after["by_symbol"][name]["SOLUSDT"] is not before["by_symbol"][name]["SOLUSDT"]
        assert after["by_approach"][name]["fast"] is not before["by_approach"][name]["fast"]
        for symbol in set(after["by_symbol"][name]) - {"SOLUSDT"}:
            assert after["by_symbol"][name][symbol] is before["by_symbol"][name][symbol]
        assert after["by_approach"][name]["conservative"] is before["by_approach"][name]["conservative"]
        # The day rows and curve points before the new trade's are kept too.
        assert after["daily_pnl"][name][0] is before["daily_pnl"][name][0]
        assert after["equity_curve"][name][-2] is before["equity_curve"][name][-1]


def test_a_trade_closed_before_the_period_changes_nothing() -> None:
    rng = random.Random(5)
    trades = [make_trade(rng, T0 + DAY + n * 60.0, n) for n in range(20)]
    book = StatisticsBook(T0 + DAY, ACCOUNTS)
    book.add(trades)
    before = book.section()
    book.add([make_trade(rng, T0, 99)])  # recorded now, closed before the period started
    assert book.section() is before and len(book) == 21


def ledger_trade(symbol: str, closed: float, pnl: float, account: str = "main") -> Trade:
    return Trade(account, symbol, Side.BUY, "fast", "tp", 100.0, 110.0, 1.0, pnl, 0.1, closed - 60.0, closed)


async def test_the_snapshot_s_statistics_follow_the_ledger_and_keep_untouched_rows(sim: SimHost) -> None:
    """Through the dashboard: a trade recorded makes the section anew from the last one, equal to the
    pure one, keeping the rows of the groups it is not in; a ledger replaced starts over."""
    dashboard = sim.dashboard
    assert dashboard is not None
    ledger = sim.tpsl.ledger = Ledger(
        [ledger_trade("ETHUSDT", T0, 9.9), ledger_trade("BTCUSDT", T0 + 1, -2.5)]
    )
    venues = list(sim.venues)

    async def section() -> Any:
        dashboard.cache.invalidate("stats")  # what a fill does
        snap = await sim.clock.drive_while(dashboard.snapshot())
        assert exact(snap["statistics"]) == exact(statistics(sim.tpsl.ledger.trades, None, venues))
        return snap["statistics"]

    first = await section()
    assert await section() is first  # no trade closed since: the very section
    ledger.record(ledger_trade("SOLUSDT", T0 + 2, 4.0))
    second = await section()
    assert second["by_symbol"]["main"]["ETHUSDT"] is first["by_symbol"]["main"]["ETHUSDT"]
    assert second["by_account"]["mirror"] is first["by_account"]["mirror"]
    ledger.record(ledger_trade("ETHUSDT", T0 - 5, 1.0, "mirror"))  # recorded late: closed before the others
    third = await section()
    assert third["trades"] == 4
    sim.tpsl.ledger = Ledger([ledger_trade("XRPUSDT", T0, 3.0)])  # the state loaded: another ledger
    fourth = await section()
    assert fourth["trades"] == 1 and list(fourth["by_symbol"]["main"]) == ["XRPUSDT"]
