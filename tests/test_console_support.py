"""Shared helpers of the console tests (no tests here): a console on a seeded simulator, frozen clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from console.app import OperatorConsole
from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.settings import load_settings


def make_console(tmp_path: Path, **values: Any) -> OperatorConsole:
    """A console over the embedded simulator (seed 42) whose virtual clock is never driven, so
    every run paints the same screen; refreshing is left to the test.

    The state directory is given relative to the test's working directory (``tmp_path``, set by the
    conftest) so that log lines naming it read the same in every run.
    """
    assert Path.cwd() == tmp_path
    state_dir = Path("state")
    settings = load_settings(None, state_dir)
    # The clock never moves, so a rate window never refills: a budget that cannot run dry here.
    unmetered = {"venue.rate_orders_per_s": 100_000, "venue.rate_reads_per_s": 100_000}
    # The engine shares the test's loop: the test drives the frozen clock and reads the engine's
    # objects directly (tests/test_console_engine_thread.py covers the engine on its own thread).
    shared = {"ui.engine_thread": False}
    settings = settings.with_values(
        {**unmetered, "venue.rate_ip_per_5s": 100_000, **shared, **values}, source="test"
    )
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    return OperatorConsole(settings, state_dir, clock=clock, auto_refresh=False)


def _progress(app: OperatorConsole) -> tuple[Any, ...]:
    """What moves while the engine is still working: venue calls, store writes, monitors."""
    runtime = app.runtime
    calls = sum(venue.calls.total for venue in runtime.venues.values())
    store = runtime.store
    seq = store.metrics()["seq"] if store is not None else None
    manager = runtime.tpsl
    monitors = sorted(manager.monitors) if manager is not None else None
    return calls, seq, monitors, app.link.engine_state()


async def quiesce(app: OperatorConsole, pilot: Any, rounds: int = 200) -> None:
    """Let the engine's tasks run until they all wait on the (frozen) clock; time does not move.

    Store writes finish in threads, outside the event loop, so "nothing ready to run" is not enough:
    wait until nothing the engine does has changed for a few consecutive rounds.
    """
    clock = app.runtime.clock
    assert isinstance(clock, VirtualClock)
    quiet = 0
    last = _progress(app)
    for _ in range(rounds):
        await clock.drive(until=clock.now())
        await pilot.pause(0.02)
        now = _progress(app)
        quiet = quiet + 1 if now == last else 0
        last = now
        if quiet >= 4:
            return
    raise AssertionError(f"the engine did not go quiet: {last}")


async def settle(app: OperatorConsole, pilot: Any) -> None:
    """Wait for the engine to start and go quiet, paint one snapshot, move log lines to the pane."""
    await app.engine_ready.wait()
    await quiesce(app, pilot)
    await app.refresh_dashboard()
    app.drain_log()
    await pilot.pause()
