"""The shared, scaled clock of a two-process simulation (``opconsole soak``): one timeline file, read
by every process, on which simulated time runs ``speed`` times faster than real time.

No test asserts a speed: readings are compared with each other (continuity, order, bracketing), and
the one test about a speed-up bounds the wait generously, far below what speed 1 would take.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from test_bybit_venue import KEY, KEYS, SECRET, is_status, next_event
from tpsl_harness import server_venue

from engine.core.clock import RealClock, VirtualClock, real_seconds
from engine.core.models import Execution, OrderRequest, OrderType, Side
from engine.core.shared_clock import SharedClock, SharedTimeline, TimelineError
from engine.sim.exchange import SimExchange
from engine.sim.server.app import BybitServer
from engine.sim.server.command import serving
from engine.venue.bybit.keys import ApiKeys

START = 4_000_000_000.0
"""Simulated epoch (2096): ahead of the wall clock, as a sped-up timeline soon is."""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "timeline.bin"


@pytest.fixture
def timeline(path: Path) -> Iterator[SharedTimeline]:
    with SharedTimeline.create(path, START, speed=100.0) as shared:
        yield shared


def test_set_speed_rebases_without_a_jump(timeline: SharedTimeline) -> None:
    clock = SharedClock(timeline)
    before = timeline.read()
    first = clock.now()
    timeline.set_speed(1000.0)
    after = timeline.read()
    # The new origin is the old line at the rebase instant: simulated time did not jump.
    assert after.sim_origin == pytest.approx(before.at(after.real_origin), abs=1e-6)
    assert (after.speed, after.nominal_speed) == (1000.0, 100.0)
    assert START <= first <= after.sim_origin <= clock.now()
    with pytest.raises(TimelineError):
        timeline.set_speed(0.0)


def test_time_never_goes_back_while_another_thread_changes_the_speed(timeline: SharedTimeline) -> None:
    clock = SharedClock(timeline)
    stop = threading.Event()

    def toggle() -> None:
        speeds = (0.001, 1000.0)
        i = 0
        while not stop.is_set():
            timeline.set_speed(speeds[i % 2])
            i += 1

    writer = threading.Thread(target=toggle)
    writer.start()
    try:
        raw, smoothed = [], []
        for _ in range(20_000):
            raw.append(timeline.sim_now())
            smoothed.append(clock.monotonic())
    finally:
        stop.set()
        writer.join()
    # The raw timeline too: a reading is taken inside the seqlock, so old and new speeds never mix.
    assert raw == sorted(raw)
    assert smoothed == sorted(smoothed)


def test_a_second_process_reads_the_same_time_and_can_change_the_speed(
    timeline: SharedTimeline, path: Path
) -> None:
    clock = SharedClock(timeline)
    script = (
        "import sys; from pathlib import Path\n"
        "from engine.core.shared_clock import SharedClock, SharedTimeline\n"
        "timeline = SharedTimeline.open(Path(sys.argv[1]))\n"
        "print(repr(SharedClock(timeline).now()))\n"
        "timeline.set_speed(7.0)\n"
    )
    before = clock.now()
    child = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60, check=True
    )
    after = clock.now()
    assert before <= float(child.stdout) <= after
    reading = timeline.read()
    assert (reading.speed, reading.nominal_speed) == (7.0, 100.0)


def test_open_refuses_a_file_that_is_not_a_timeline(path: Path) -> None:
    path.write_bytes(b"x" * 48)
    with pytest.raises(TimelineError):
        SharedTimeline.open(path)


@pytest.mark.timeout(60)
async def test_a_slow_sleeper_follows_a_speed_up(timeline: SharedTimeline) -> None:
    clock = SharedClock(timeline)
    timeline.set_speed(1.0)  # below nominal (100): the sleeper looks again every 0.05 real s
    start = clock.now()
    sleeper = asyncio.create_task(clock.sleep(30.0))
    await asyncio.sleep(0.1)
    assert not sleeper.done()
    timeline.set_speed(1000.0)
    # At speed 1 it would take 30 real seconds; at 1000 a few hundredths (the bound is generous).
    async with asyncio.timeout(15.0):
        await sleeper
    assert clock.now() >= start + 30.0


async def test_wait_for_times_out_on_the_shared_time(timeline: SharedTimeline) -> None:
    clock = SharedClock(timeline)
    start = clock.now()
    never = asyncio.Event()
    with pytest.raises(TimeoutError):
        await clock.wait_for(never.wait(), 5.0)
    assert clock.now() >= start + 5.0

    async def answer() -> int:
        return 42

    assert await clock.wait_for(answer(), 3600.0) == 42


def test_real_seconds_of_each_clock_kind(timeline: SharedTimeline) -> None:
    assert real_seconds(RealClock(), 10.0) == 10.0
    assert real_seconds(VirtualClock(START), 10.0) == 10.0
    shared = SharedClock(timeline)
    assert real_seconds(shared, 10.0) == pytest.approx(0.1)
    timeline.set_speed(1.0)  # library timeouts are set once: they follow the nominal speed
    assert real_seconds(shared, 10.0) == pytest.approx(0.1)


# --- end to end: the fake V5 server and the pybit venue on one shared clock -------------------------


@pytest.fixture
async def shared_server(path: Path) -> AsyncIterator[tuple[SharedClock, BybitServer]]:
    # Both sides in one process here; in a soak each opens the file in its own.
    with (
        SharedTimeline.create(path, START, speed=30.0) as server_side,
        SharedTimeline.open(path) as venue_side,
    ):
        server_clock = SharedClock(server_side)
        exchange = SimExchange(
            clock=server_clock, seed=11, symbols=["BTCUSDT", "ETHUSDT"], balances={"main": 100_000.0}
        )
        server = BybitServer(exchange, KEYS, server_clock)
        async with serving(server):
            yield SharedClock(venue_side), server


async def test_venue_trades_and_streams_against_the_server_on_one_shared_clock(
    shared_server: tuple[SharedClock, BybitServer],
) -> None:
    clock, server = shared_server
    venue = server_venue(server, ApiKeys(KEY, SECRET), clock, threads=4)
    try:
        tickers = await venue.tickers()
        assert set(tickers) == {"BTCUSDT", "ETHUSDT"}
        events = venue.stream()
        await next_event(events, is_status(True, "connected"))
        ack = await venue.place(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.01, link_id="sc-1"))
        fill = await next_event(events, lambda e: isinstance(e, Execution))
        assert isinstance(fill, Execution) and fill.order_id == ack.order_id
        assert fill.ts >= START  # stamped on the simulated timeline, not the wall clock
        # The libraries' real-second timeouts are the clock's seconds at the nominal speed (30x).
        assert venue._transport._session.timeout == pytest.approx(10.0 / 30)
        socket = venue._stream._private.ws if venue._stream else None
        assert socket is not None
        assert (socket.ping_interval, socket.ping_timeout) == pytest.approx((20.0 / 30, 10.0 / 30))
    finally:
        await venue.close()
