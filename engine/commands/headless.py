"""``opconsole run --headless``: the engine without the UI, for scripts, CI and benchmarks.

With ``--clock virtual`` the run lasts ``--duration`` simulated seconds and goes as fast as the CPU
allows; with the real clock it lasts that many wall seconds. Either clock stops early, and cleanly,
on SIGHUP, SIGINT or SIGTERM (as the console does). Either way the engine is stopped cleanly (state
saved, the store's shutdown recorded) and the snapshot JSON is written on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from engine.core.clock import Clock, VirtualClock
from engine.core.errors import BadInput, EngineFailure
from engine.core.files import check_output, write_output
from engine.core.settings import Settings
from engine.runtime.assembly import Engine, EngineRuntime, make_clock
from engine.runtime.scenario import Scenario, load_scenario
from engine.trading.params import TradingParams
from engine.venue.errors import VenueError

log = logging.getLogger("opconsole.headless")

EXIT_OK = 0
EXIT_ENGINE_FAILURE = 1
EXIT_BAD_INPUT = 2

T = TypeVar("T")

# The signals that end a run cleanly: a closed terminal (HUP), Ctrl-C (INT), a service manager (TERM).
STOP_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class HeadlessOptions:
    """The ``run --headless`` options after parsing."""

    clock: str = "real"
    duration_s: float | None = None
    scenario: Path | None = None
    snapshot_out: Path | None = None


async def run_engine(
    settings: Settings, state_dir: Path, options: HeadlessOptions, scenario: Scenario | None = None
) -> EngineRuntime:
    """Start the engine, let it run for the requested time, stop it, and write the snapshot."""
    clock = make_clock(options.clock, settings, state_dir)
    runtime = EngineRuntime(settings, state_dir, clock)
    runtime.scenario = scenario
    if isinstance(clock, VirtualClock) and options.duration_s is None:
        raise BadInput("run", "--clock virtual needs --duration (simulated seconds)")
    stop = asyncio.Event()
    # Installed before the start and kept until the engine stopped: a stop signal at any moment
    # ends the run through the same clean shutdown, never by the signal's default action.
    with _stop_signals(stop):
        engine = await runtime.start()
        try:
            await _run_until(clock, options.duration_s, stop)
            if options.snapshot_out is not None:
                await _write_snapshot(runtime, engine, options.snapshot_out)
        finally:
            await _on_clock(clock, runtime.stop())
    return runtime


@contextlib.contextmanager
def _stop_signals(stop: asyncio.Event) -> Iterator[None]:
    """Turn SIGHUP / SIGINT / SIGTERM into ``stop.set()`` for the block."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, _on_stop_signal, stop, sig)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _on_stop_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("%s received: stopping", sig.name)
    stop.set()


async def _run_until(clock: Clock, duration_s: float | None, stop: asyncio.Event) -> None:
    """Run for the duration (driving a virtual clock) or until ``stop`` is set, whichever is first."""
    if not (isinstance(clock, VirtualClock) and duration_s is not None):
        await _wait_real(clock, duration_s, stop)
        return
    driving = asyncio.ensure_future(clock.drive(until=clock.now() + duration_s))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({driving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (driving, stopped):
            task.cancel()
        await asyncio.gather(driving, stopped, return_exceptions=True)
    error = None if driving.cancelled() else driving.exception()
    if error is not None:
        raise error


async def _write_snapshot(runtime: EngineRuntime, engine: Engine, target: Path) -> None:
    """Write the exit snapshot; when the venue cannot be read, write what the engine knows.

    A venue that is down or refuses the keys must not cost the operator the rest of the picture
    (engine state, monitors, ledger, alerts): that snapshot is written, with a critical alert in
    it saying why its venue sections are empty, and the run ends with :class:`EngineFailure`.
    """
    problem: str | None = None
    try:
        snapshot = await _on_clock(runtime.clock, engine.dashboard.snapshot())
    except VenueError as exc:
        problem = f"the venue could not be read ({exc}); the snapshot holds only what the engine knows"
        runtime.raise_critical(f"exit snapshot: {problem}")
        snapshot = engine.dashboard.engine_snapshot()
    write_output(target, snapshot.to_json() + "\n")
    log.info("snapshot written to %s", target)
    if problem is not None:
        raise EngineFailure(str(target), problem)


async def _on_clock(clock: Clock, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` after the run's duration: a virtual clock keeps being driven meanwhile.

    The snapshot's venue reads (and anything the shutdown awaits) may sleep on the clock, e.g. the
    simulated latency of ``sim.latency = "realistic"``; once ``drive(until=...)`` has returned,
    nothing else would move virtual time, and the run would never end.
    """
    if isinstance(clock, VirtualClock):
        return await clock.drive_while(awaitable)
    return await awaitable


async def _wait_real(clock: Clock, duration_s: float | None, stop: asyncio.Event) -> None:
    """Wait for the duration, or until ``stop`` is set (a stop signal)."""
    if duration_s is None:
        await stop.wait()
    else:
        with contextlib.suppress(TimeoutError):
            await clock.wait_for(stop.wait(), duration_s)


def run_headless(settings: Settings, state_dir: Path, options: HeadlessOptions) -> int:
    """Run the engine headless; returns the process exit code."""
    if options.clock == "virtual" and options.duration_s is None:
        raise BadInput("run", "--clock virtual needs --duration (simulated seconds)")
    if options.snapshot_out is not None:
        check_output(options.snapshot_out)  # refused before the run, not after it
    if options.scenario is not None and not options.scenario.is_file():
        raise BadInput(str(options.scenario), "no such scenario file")
    scenario = None
    if options.scenario is not None:
        scenario = load_scenario(options.scenario, TradingParams.from_settings(settings))
    runtime = asyncio.run(run_engine(settings, state_dir, options, scenario))
    if runtime.failures:
        log.error("engine tasks failed: %s", ", ".join(runtime.failures))
        return EXIT_ENGINE_FAILURE
    return EXIT_OK
