"""``opconsole run --headless``: the engine without the UI, for scripts, CI and benchmarks.

With ``--clock virtual`` the run lasts ``--duration`` simulated seconds and goes as fast as the CPU
allows; with the real clock it lasts that many wall seconds, or until SIGINT / SIGTERM. Either way
the engine is stopped cleanly (state saved) and the snapshot JSON is written on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from engine.core.clock import Clock, VirtualClock
from engine.core.errors import BadInput
from engine.core.files import write_atomic
from engine.core.settings import Settings
from engine.runtime.assembly import EngineRuntime, make_clock
from engine.runtime.scenario import Scenario, load_scenario
from engine.trading.params import TradingParams

log = logging.getLogger("opconsole.headless")

EXIT_OK = 0
EXIT_ENGINE_FAILURE = 1
EXIT_BAD_INPUT = 2

T = TypeVar("T")


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
    engine = await runtime.start()
    try:
        if isinstance(clock, VirtualClock) and options.duration_s is not None:
            await clock.drive(until=clock.now() + options.duration_s)
        else:
            await _wait_real(clock, options.duration_s)
        if options.snapshot_out is not None:
            snapshot = await _on_clock(clock, engine.dashboard.snapshot())
            write_atomic(options.snapshot_out, snapshot.to_json() + "\n")
            log.info("snapshot written to %s", options.snapshot_out)
    finally:
        await _on_clock(clock, runtime.stop())
    return runtime


async def _on_clock(clock: Clock, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` after the run's duration: a virtual clock keeps being driven meanwhile.

    The snapshot's venue reads (and anything the shutdown awaits) may sleep on the clock, e.g. the
    simulated latency of ``sim.latency = "realistic"``; once ``drive(until=...)`` has returned,
    nothing else would move virtual time, and the run would never end.
    """
    if isinstance(clock, VirtualClock):
        return await clock.drive_while(awaitable)
    return await awaitable


async def _wait_real(clock: Clock, duration_s: float | None) -> None:
    """Wait for the duration, or until SIGINT / SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if duration_s is None:
        await stop.wait()
    else:
        with contextlib.suppress(TimeoutError):
            await clock.wait_for(stop.wait(), duration_s)


def run_headless(settings: Settings, state_dir: Path, options: HeadlessOptions) -> int:
    """Run the engine headless; returns the process exit code."""
    if options.clock == "virtual" and options.duration_s is None:
        raise BadInput("run", "--clock virtual needs --duration (simulated seconds)")
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
