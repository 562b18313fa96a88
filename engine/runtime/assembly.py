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

from engine.alerts.price import PriceAlertManager
from engine.core.clock import Clock, RealClock, VirtualClock, parse_iso_utc
from engine.core.profile import Mode, Profile
from engine.core.settings import Settings
from engine.dashboard.cache import DashboardCache
from engine.dashboard.snapshot import Dashboard
from engine.runtime.scenario import Scenario
from engine.runtime.trading_setup import Trading, open_state, start_trading
from engine.trading.ledger import Ledger
from engine.trading.manager import TpslManager
from engine.venue.base import Venue
from persistence.recovery import RecoveryReport
from persistence.store import Store

log = logging.getLogger("opconsole.engine")


class EngineState(StrEnum):
    """What the engine is doing, as the header bar and the snapshot show it."""

    RUNNING = "running"
    RECONCILING = "reconciling"
    PAUSED = "paused"
    DEGRADED = "degraded"


def make_clock(kind: str, settings: Settings, state_dir: Path | None = None) -> Clock:
    """``real`` wall time, or a ``virtual`` clock starting at ``sim.epoch`` — or, when the state
    directory holds a simulated market saved later than that, where that market stopped, so a
    restarted simulation never runs backwards."""
    if kind != "virtual":
        return RealClock()
    start = parse_iso_utc(settings.get("sim.epoch"))
    if state_dir is not None and settings.get("venue.kind") == "sim":
        from engine.sim.exchange import SimExchange

        start = max(start, SimExchange.saved_time(state_dir) or start)
    return VirtualClock(start=start)


def account_names(settings: Settings) -> list[str]:
    """``main``, plus ``mirror`` when mirror trading is enabled."""
    return ["main", "mirror"] if settings.get("mirror.enabled") else ["main"]


class EngineRuntime:
    """The engine, assembled: clock, venues per account, and the tasks that drive them."""

    def __init__(self, settings: Settings, state_dir: Path, clock: Clock) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.clock = clock
        self._started = False
        self.accounts = account_names(settings)
        self.venues: dict[str, Venue] = {}
        self.exchange: Any = None  # engine.sim.exchange.SimExchange when venue.kind = "sim"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: list[str] = []
        # The optimization toggles; subsystems register their apply callbacks as they are built.
        self.profile = Profile.from_settings(settings, state_dir)
        self.dashboard: Dashboard | None = None  # built in start(), with its cache
        self.cache: DashboardCache | None = None
        # Trading: the store, the TP/SL manager and operator actions, built in start().
        self.scenario: Scenario | None = None  # trades to open (run --headless --scenario)
        self.trading: Trading | None = None
        self.tpsl: TpslManager | None = None
        self.store: Store | None = None
        self.price_alerts: PriceAlertManager | None = None  # built in start(), over the store

    @property
    def state(self) -> EngineState:
        """Degraded if a task died; else what the TP/SL manager says (reconciling until the venue
        agrees with the store, paused, degraded while a stream is down, running)."""
        if self._failures:
            return EngineState.DEGRADED
        if not self._started:
            return EngineState.RECONCILING
        if self.tpsl is not None:
            return EngineState(self.tpsl.engine_state)
        return EngineState.RUNNING

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
            from engine.sim.venue import SimVenue

            self.exchange = SimExchange.from_settings(self.settings, self.clock, self.state_dir)
            balances = self.settings.section("sim.balances")
            for name in self.accounts:
                self.exchange.ensure_account(name, balances.get(name))
                self.venues[name] = SimVenue(self.exchange, name)
        else:
            from engine.venue.bybit.venue import BybitVenue

            for name in self.accounts:
                self.venues[name] = BybitVenue.from_settings(
                    self.settings, name, self.clock, on_critical=self.raise_critical
                )

    async def start(self) -> None:
        """Lock and recover the state, build the venues, and start the background tasks.

        If any step fails, what was started is stopped again (the state saved, the lock released)
        before the error propagates.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store, recovery = await open_state(self.settings, self.state_dir, self.clock)
        try:
            if not self.venues:
                self.build_venues()
            if self.exchange is not None:
                self.spawn("sim-exchange", self.exchange.run())
            await self._start_dashboard()
            await self._start_trading(recovery)
        except BaseException:
            await self.stop()
            raise
        self._started = True

    async def _start_dashboard(self) -> None:
        """The cache-backed dashboard, its metrics log line, and its event feed."""
        self.dashboard = await Dashboard.create(self, self.profile)
        self.cache = self.dashboard.cache
        self.spawn("cache-metrics-log", self.cache.run_metrics_log())

    async def _start_trading(self, recovery: RecoveryReport) -> None:
        """The TP/SL manager over the store; the manager reconciles in its own task."""
        self.trading = await start_trading(
            settings=self.settings,
            state_dir=self.state_dir,
            clock=self.clock,
            venues=self.venues,
            spawn=self.spawn,
            scenario=self.scenario,
            store=self.store,
            recovery=recovery,
        )
        self.tpsl = self.trading.manager
        if self.dashboard is not None:
            dashboard = self.dashboard
            # The manager consumes each venue's stream once and hands every event on to the cache.
            self.tpsl.add_observer(lambda _account, event: dashboard.on_event(event))
        store = self.store
        assert store is not None  # opened by start() before trading
        self._start_price_alerts(store, self.tpsl)
        await self.profile.register(
            "smart_persistence",
            lambda mode: store.set_policy("smart" if mode is Mode.OPTIMIZED else "simple"),
        )
        manager = self.tpsl
        await self.profile.register(
            "push_streams", lambda mode: manager.set_push_streams(mode is Mode.OPTIMIZED)
        )

    def _start_price_alerts(self, store: Store, manager: TpslManager) -> None:
        """The operator's price alerts: recovered from the store, fed by the manager's tickers."""
        alerts = PriceAlertManager(
            store=store, clock=self.clock, venues=self.venues, raise_alert=manager.raise_alert
        )
        alerts.load()
        manager.add_observer(alerts.on_event)
        self.spawn("price-alerts", alerts.run())
        self.price_alerts = alerts

    def raise_critical(self, message: str) -> None:
        """A critical alert from below the TP/SL manager (e.g. the venue's IP-ban guard)."""
        if self.tpsl is not None:
            self.tpsl.raise_alert("critical", "venue", message)
        else:
            log.critical("%s", message)

    @property
    def ledger(self) -> Ledger | None:
        """The trade ledger (the dashboard's ``ledger`` section)."""
        return self.tpsl.ledger if self.tpsl is not None else None

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

    async def stop(self) -> None:
        """Cancel the tasks (the simulator saves its state when cancelled) and close the venues."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self.dashboard is not None:
            await self.dashboard.close()
        for venue in self.venues.values():
            await venue.close()
        if self.store is not None:
            # Last, so everything the tasks saved on their way out is flushed; then the lock goes.
            store, self.store = self.store, None
            await store.close()
