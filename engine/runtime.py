"""The engine runtime: builds the engine from settings and owns its background tasks.

One object wires the clock, the venues (the embedded simulated exchange or Bybit), and the engine's
long-running tasks, so the headless runner, the console and the tests start and stop the engine the
same way. A task that dies is logged with its traceback and turns the engine ``degraded``; it never
takes the process down silently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.clock import Clock, RealClock, VirtualClock, parse_iso_utc
from engine.settings import Settings
from engine.venue.base import Venue

log = logging.getLogger("opconsole.engine")


class EngineState(StrEnum):
    """What the engine is doing, as the header bar and the snapshot show it."""

    RUNNING = "running"
    RECONCILING = "reconciling"
    PAUSED = "paused"
    DEGRADED = "degraded"


def make_clock(kind: str, settings: Settings) -> Clock:
    """``real`` wall time, or a ``virtual`` clock starting at ``sim.epoch``."""
    if kind == "virtual":
        return VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    return RealClock()


def account_names(settings: Settings) -> list[str]:
    """``main``, plus ``mirror`` when mirror trading is enabled."""
    return ["main", "mirror"] if settings.get("mirror.enabled") else ["main"]


class EngineRuntime:
    """The engine, assembled: clock, venues per account, and the tasks that drive them."""

    def __init__(self, settings: Settings, state_dir: Path, clock: Clock) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.clock = clock
        self.state = EngineState.RECONCILING
        self.accounts = account_names(settings)
        self.venues: dict[str, Venue] = {}
        self.exchange: Any = None  # engine.sim.exchange.SimExchange when venue.kind = "sim"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: list[str] = []

    @property
    def venue_label(self) -> str:
        """``sim`` or the Bybit network (``mainnet`` / ``testnet`` / ``demo``)."""
        return "sim" if self.settings.get("venue.kind") == "sim" else self.settings.get("venue.network")

    @property
    def failures(self) -> list[str]:
        """Names of background tasks that died (the engine is degraded while this is non-empty)."""
        return list(self._failures)

    def build_venues(self) -> None:
        """Create one venue per account (the simulator's accounts are created on demand)."""
        if self.settings.get("venue.kind") == "sim":
            from engine.sim.exchange import SimExchange
            from engine.venue.sim import SimVenue

            self.exchange = SimExchange.from_settings(self.settings, self.clock, self.state_dir)
            balances = self.settings.section("sim.balances")
            for name in self.accounts:
                self.exchange.ensure_account(name, balances.get(name))
                self.venues[name] = SimVenue(self.exchange, name)
        else:
            from engine.venue.bybit import BybitVenue

            for name in self.accounts:
                self.venues[name] = BybitVenue.from_settings(self.settings, name, self.clock)

    async def start(self) -> None:
        """Build the venues and start the background tasks."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.venues:
            self.build_venues()
        if self.exchange is not None:
            self.spawn("sim-exchange", self.exchange.run())
        self.state = EngineState.RUNNING

    def spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a named background task whose death is logged and degrades the engine."""
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.critical("engine task %s died: %s", task.get_name(), exc, exc_info=exc)
            self._failures.append(task.get_name())
            self.state = EngineState.DEGRADED

    async def stop(self) -> None:
        """Cancel the tasks (the simulator saves its state when cancelled) and close the venues."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        for venue in self.venues.values():
            await venue.close()
