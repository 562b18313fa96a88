"""What the dashboard shows is fresh and agrees with itself (issue 16, item 1).

Optimized profile, streams up, the simulator ticking every second: the marks on screen are never
older than one refresh plus one tick, the positions and the market section (what the trade form
reads) show the same mark, each account's uPnL is the sum of its positions', and the composed view
follows its parts without extra venue reads. The baseline keeps the original's staleness.
"""

from __future__ import annotations

import itertools

from test_dashboard import SimHost, calls, clock_of, engine, open_position, sim, snapshot

from engine.core.models import Ticker, VenueEvent
from engine.runtime.assembly import EngineRuntime
from engine.venue.base import Endpoint

__all__ = ["engine", "sim"]  # the fixtures, shared with test_dashboard

REFRESH_S = 0.5  # ui.refresh_hz = 2
TICK_S = 1.0  # sim.tick_interval_s


class Marks:
    """Every mark the venue published, per symbol, with its (virtual) time."""

    def __init__(self) -> None:
        self.published: dict[str, list[tuple[float, float]]] = {}

    def observe(self, _account: str, event: VenueEvent) -> None:
        if isinstance(event, Ticker):
            self.published.setdefault(event.symbol, []).append((event.ts, event.mark))

    def age(self, symbol: str, mark: float, now: float) -> float:
        """Seconds since ``mark`` was last published (infinite if it never was)."""
        times = [ts for ts, published in self.published.get(symbol, []) if published == mark and ts <= now]
        return now - max(times) if times else float("inf")


async def test_marks_on_screen_follow_every_tick_and_agree_everywhere(engine: EngineRuntime) -> None:
    clock = clock_of(engine)
    assert engine.tpsl is not None
    marks = Marks()
    engine.tpsl.add_observer(marks.observe)
    await open_position(engine, "main", "BTCUSDT", 0.01)
    await open_position(engine, "mirror", "ETHUSDT", 0.1)
    await clock.drive(until=clock.now() + 5.0)
    shown: list[float] = []
    for _ in range(int(40 / REFRESH_S)):  # 40 s of refreshes at the console's rate
        snap = await snapshot(engine)
        now = clock.now()
        assert snap["streams"]["main"]["connected"] and snap["profile"]["cache_ttls"] == "optimized"
        upnl: dict[str, float] = {}
        for row in snap["positions"]:
            assert marks.age(row["symbol"], row["mark_price"], now) <= REFRESH_S + TICK_S
            assert row["mark_price"] == snap["market"][row["symbol"]]["mark"]  # one source
            upnl[row["account"]] = upnl.get(row["account"], 0.0) + row["upnl"]
        for name, account in snap["accounts"].items():
            assert abs(account["upnl"] - upnl.get(name, 0.0)) < 1e-6
        assert snap["data_age"]["oldest"] is not None
        assert snap["data_age"]["oldest"] <= REFRESH_S + TICK_S
        shown.append(next(r["mark_price"] for r in snap["positions"] if r["symbol"] == "BTCUSDT"))
        await clock.drive(until=now + REFRESH_S)
    changes = sum(1 for a, b in itertools.pairwise(shown) if a != b)
    assert changes >= 30  # the mark moved with the ticks (40 s, 80 refreshes), not every 15-30 s


async def test_the_composed_view_follows_the_tickers_without_a_venue_read(sim: SimHost) -> None:
    clock = clock_of(sim)
    await open_position(sim, "main", "BTCUSDT", 0.01)
    first = await snapshot(sim)
    for _ in range(10):  # ten ticks, inside every TTL
        await clock.drive(until=clock.now() + TICK_S)
        snap = await snapshot(sim)
        assert snap["api_calls"] == first["api_calls"]  # no venue read: the tickers are written through
        [position] = snap["positions"]
        assert position["mark_price"] == sim.exchange.ticker("BTCUSDT").mark
        assert snap["accounts"]["main"]["upnl"] == position["upnl"]


async def test_the_composed_view_never_outlives_its_parts(sim: SimHost) -> None:
    clock = clock_of(sim)
    await open_position(sim, "main", "BTCUSDT", 0.01)
    first = await snapshot(sim)
    await clock.drive(until=clock.now() + 14.0)
    assert calls(await snapshot(sim), "main", Endpoint.POSITIONS) == calls(first, "main", Endpoint.POSITIONS)
    await clock.drive(until=clock.now() + 2.0)  # positions (15 s) expired, full_dashboard (30 s) not
    later = await snapshot(sim)
    assert calls(later, "main", Endpoint.POSITIONS) == calls(first, "main", Endpoint.POSITIONS) + 1
    # The stream is up: the list is served (its age told) while it is read again in the background.
    assert later["data_age"]["positions"] == 16.0
    # One background re-read at a time: the four lists due (two accounts' positions and orders) are
    # read again one after another, each started by the build after the last one landed.
    ages = []
    for _ in range(4):
        await clock.drive(until=clock.now() + 0.5)
        after = await snapshot(sim)
        ages.append(after["data_age"]["positions"])
    assert ages[-1] is not None and ages[-1] <= 2.0 and max(ages) <= 18.0
    assert calls(after, "main", Endpoint.POSITIONS) == calls(first, "main", Endpoint.POSITIONS) + 1


async def test_the_baseline_keeps_the_original_staleness(sim: SimHost) -> None:
    clock = clock_of(sim)
    await sim.profile.rollback_all()
    await open_position(sim, "main", "BTCUSDT", 0.01)
    first = await snapshot(sim)
    await clock.drive(until=clock.now() + 8.0)  # eight ticks, inside the baseline's TTLs
    later = await snapshot(sim)
    assert later["positions"] == first["positions"]  # the mark of the first read, as the original
    assert later["api_calls"] == first["api_calls"]
    assert later["positions"][0]["mark_price"] != sim.exchange.ticker("BTCUSDT").mark
    assert later["data_age"]["positions"] == 8.0 and later["data_age"]["oldest"] == 8.0


async def test_data_age_grows_while_nothing_is_read(sim: SimHost) -> None:
    clock = clock_of(sim)
    await open_position(sim, "main", "BTCUSDT", 0.01)
    assert (await snapshot(sim))["data_age"]["oldest"] == 0.0
    await clock.drive(until=clock.now() + 10.0)
    age = (await snapshot(sim))["data_age"]
    # No stream row in this bare host: the positions and orders entries are as old as their read;
    # the tickers were written through at the last tick.
    assert age["positions"] == 10.0 and age["orders"] == 10.0 and age["market_data"] == 0.0
    assert age["oldest"] == 10.0
