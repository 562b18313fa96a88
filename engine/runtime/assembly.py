"""The engine, assembled: the clock, the venues, the state store, the TP/SL manager, the alert bus,
price alerts, the dashboard and the background tasks that drive them, built from settings in one
place, so the headless runner, the console and the tests start and stop the engine the same way.

:meth:`EngineRuntime.start` returns an :class:`Engine`: the started components, typed. The console
reaches them only through its link, which holds that object.

No background task dies for good: each one runs under a supervisor (:meth:`EngineRuntime.spawn`)
that restarts it when it raises, after a backoff on the engine clock (:data:`RESTART_FIRST_S`
doubling to :data:`RESTART_MAX_S`), logs the traceback and says so in a warning alert (critical from
the :data:`CRITICAL_AFTER`-th failure in a row). The engine is ``degraded`` while a task is down. A task
that ends by itself or is cancelled is not restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from engine.alerts.bus import AlertBus
from engine.alerts.delivery import JOB_NAME as DELIVERY_JOB
from engine.alerts.delivery import AlertDelivery, DeliveryParams, sinks_from_settings
from engine.alerts.model import Severity
from engine.alerts.position import PositionAlertParams, PositionAlerts
from engine.alerts.price import PriceAlertManager
from engine.core.clock import Clock, RealClock, VirtualClock, parse_iso_utc
from engine.core.errors import state_refusal
from engine.core.profile import Mode, Profile
from engine.core.settings import Settings
from engine.dashboard.cache import DashboardCache
from engine.dashboard.snapshot import Dashboard, DashboardSources
from engine.dashboard.stats_period import StatsPeriod
from engine.mirror.follower import MirrorFollower, MirrorParams
from engine.observability.metrics_export import MetricsExportError, MetricSources, MetricsServer
from engine.runtime.collector import CHECK_INTERVAL_S as COLLECTOR_CHECK_S
from engine.runtime.collector import CollectorFreeze
from engine.runtime.daily_summary import CHECK_S as SUMMARY_CHECK_S
from engine.runtime.daily_summary import JOB_NAME as SUMMARY_JOB
from engine.runtime.daily_summary import DailySummary
from engine.runtime.repair import drop_undecodable
from engine.runtime.scenario import Scenario, ScenarioTrade, demo_trades, run_trades, state_is_empty
from engine.scheduler.jobs import Scheduler
from engine.scheduler.urgency import UrgencyParams
from engine.trading.ledger import Ledger
from engine.trading.manager import TpslManager
from engine.trading.operator import OperatorActions
from engine.trading.params import MonitorTiming, TradingParams
from engine.venue.base import Venue
from engine.venue.budget import CallBudget, shared_ip_window
from engine.venue.gateway import VenueGateway
from persistence.errors import PersistenceError
from persistence.layout import StateFiles, check_writable
from persistence.lock import StateLock
from persistence.recovery import RecoveryReport, last_write_time, plan_recovery
from persistence.store import Store

if TYPE_CHECKING:
    from engine.sim.exchange import SimExchange

log = logging.getLogger("opconsole.runtime")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

RESTART_FIRST_S = 1.0
"""The wait before a failed background task is restarted; doubled after each failure in a row."""
RESTART_MAX_S = 60.0
"""The longest wait before a restart; a task that ran this long before failing starts the count over."""
CRITICAL_AFTER = 3
"""Failures in a row of one task from which its restart alert is critical rather than a warning."""
RATE_WATCH_S = 30.0
"""How often the rate budgets are looked at for refusals and waits (``rate_limit`` alerts)."""
RATE_WAITS_NOTED = 10
"""Requests held back by the engine's own budget within one look that make a ``rate_limit`` alert."""
PRICE_ALERT_CHECK_S = 5.0
"""How often price alerts are checked on a read when no stream brought their symbol's price."""

TaskFactory = Callable[[], Coroutine[Any, Any, None]]
"""Makes a fresh run of a background task (a coroutine can be awaited only once)."""


class EngineState(StrEnum):
    """What the engine is doing, as the header bar and the snapshot show it."""

    RUNNING = "running"
    RECONCILING = "reconciling"
    PAUSED = "paused"
    DEGRADED = "degraded"


class EngineNotStarted(Exception):
    """An operator action arrived before :meth:`EngineRuntime.start` finished (or after it failed)."""


@dataclass(frozen=True, slots=True)
class Engine:
    """The components of a started engine: what the console's link and the commands call."""

    store: Store
    alerts: AlertBus
    manager: TpslManager
    actions: OperatorActions
    price_alerts: PriceAlertManager
    dashboard: Dashboard
    profile: Profile
    mirror: MirrorFollower | None = None
    """The mirror follower (None when mirror trading is off)."""
    delivery: AlertDelivery | None = None
    """Alert delivery to Telegram / the webhook (None when no sink is enabled)."""
    summary: DailySummary | None = None
    """The daily summary; ``summary.publish_now()`` is the on-demand one (raised as an alert, and
    its text returned)."""

    @property
    def cache(self) -> DashboardCache:
        """The dashboard's TTL cache."""
        return self.dashboard.cache


async def _check_positions(position_alerts: PositionAlerts, manager: TpslManager) -> None:
    """The position-alerts job: every monitor at the price its stop triggers on (or its mark)."""
    symbols = {m.symbol for m in manager.monitors.values()}
    prices = {s: p for s in symbols if (p := manager.trigger_price(s) or manager.marks.get(s)) is not None}
    position_alerts.check(list(manager.monitors.values()), prices)


def make_clock(kind: str, settings: Settings, state_dir: Path | None = None) -> Clock:
    """``real`` wall time, or a ``virtual`` clock starting at ``sim.epoch`` — or, when the state
    directory holds a simulated market or engine records written later than that, at the latest of
    them, so a restarted simulation never runs backwards (the market may have been saved before the
    engine's last record: an execution cursor must never be ahead of the clock)."""
    if kind != "virtual":
        return RealClock()
    start = parse_iso_utc(settings.get("sim.epoch"))
    if state_dir is not None:
        start = max(start, last_write_time(state_dir) or start)
        if settings.get("venue.kind") == "sim":
            from engine.sim.exchange import SimExchange

            start = max(start, SimExchange.saved_time(state_dir) or start)
    return VirtualClock(start=start)


def account_names(settings: Settings) -> list[str]:
    """``main``, plus ``mirror`` when mirror trading is enabled."""
    return ["main", "mirror"] if settings.get("mirror.enabled") else ["main"]


def market_is_simulated(settings: Settings) -> bool:
    """True when the market behind the venue is the simulator: the embedded one, or the fake Bybit
    V5 server (``opconsole sim-server``) reached on loopback. Only then are demo trades opened and
    order link ids made reproducible; a real Bybit endpoint is never on loopback."""
    if settings.get("venue.kind") == "sim":
        return True
    host = urlsplit(settings.get("venue.base_url")).hostname
    return host in LOOPBACK_HOSTS


def open_store(settings: Settings, state_dir: Path, clock: Clock, *, flush_timer: bool = True) -> Store:
    """The state store with the persistence settings and the ``smart_persistence`` toggle's policy;
    ``flush_timer=False`` when the engine's scheduler flushes it (``store.flush_pending``)."""
    policy = "smart" if settings.get("profile.smart_persistence") == "optimized" else "simple"
    return Store(
        state_dir,
        clock=clock,
        flush_interval_s=float(settings.get("persistence.flush_interval_s")),
        compact_max_bytes=int(settings.get("persistence.compact_max_bytes")),
        compact_max_records=int(settings.get("persistence.compact_max_records")),
        policy=policy,
        flush_timer=flush_timer,
    )


async def open_state(
    settings: Settings, state_dir: Path, clock: Clock, *, flush_timer: bool = True
) -> tuple[Store, RecoveryReport]:
    """Lock the state directory, recover the state, and start the store's writer.

    The engine does this before anything else touches the state directory (the simulator saves its
    market there too), so a second console on the same directory stops here, having changed nothing.
    """
    store = open_store(settings, state_dir, clock, flush_timer=flush_timer)
    try:
        recovery = store.load()
    except PersistenceError as exc:
        raise state_refusal(exc, state_dir) from None
    await store.start()
    return store, recovery


def check_state_free(state_dir: Path) -> None:
    """Refuse (``BadInput``) when another process holds ``state_dir``'s lock; change nothing.

    The console calls this before its UI opens, so a second console on a directory in use stops
    with one line instead of showing an engine that never starts. The lock is only probed: the
    store takes it for good in :func:`open_state` (which refuses the same way if a race lost it).
    """
    if not state_dir.is_dir():
        return  # nobody holds a directory that does not exist yet
    files = StateFiles(state_dir)
    lock = StateLock(files.lock)
    try:
        lock.acquire()
        try:
            # What the store's load would refuse (a file in the way, read-only, a newer snapshot),
            # refused here too, read-only, so the console never opens on a directory it cannot use.
            check_writable(files)
            plan_recovery(files)
        finally:
            lock.release()
    except PersistenceError as exc:
        raise state_refusal(exc, state_dir) from None
    except OSError:
        return  # anything else is reported by the engine's own start


def recovery_alert(bus: AlertBus, recovery: RecoveryReport) -> None:
    """Never a silent empty or partial state: the operator hears what recovery had to do."""
    if recovery.critical or recovery.fell_back_to_prev or recovery.torn_tail_bytes:
        severity = Severity.CRITICAL if recovery.critical else Severity.WARNING
        bus.raise_alert(severity, "state_recovery", recovery.message)


class EngineRuntime:
    """The engine, assembled: clock, venues per account, components, and the tasks that drive them."""

    def __init__(self, settings: Settings, state_dir: Path, clock: Clock) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.clock = clock
        self.accounts = account_names(settings)
        self.venues: dict[str, Venue] = {}
        """Each account's venue as built (the simulator's or Bybit's)."""
        self.gateways: dict[str, VenueGateway] = {}
        """The same venues behind the engine's rate budget: the only way the engine reaches them."""
        # All periodic engine work runs as jobs of this one scheduler, on the engine clock.
        self.scheduler = Scheduler(clock, on_failure=self._job_failed)
        self.exchange: SimExchange | None = None  # the embedded market when venue.kind = "sim"
        self.scenario: Scenario | None = None  # trades to open (run --headless --scenario)
        # The optimization toggles; each subsystem registers how it applies a switch.
        self.profile = Profile.from_settings(settings, state_dir)
        # Built first, so the venues' IP-ban guard and the store's recovery can raise alerts.
        self.alerts = AlertBus(clock)
        self.engine: Engine | None = None  # set when start() completed
        self._start_failure: str | None = None
        self._store: Store | None = None
        self._dashboard: Dashboard | None = None
        self._delivery: AlertDelivery | None = None
        self._collector: CollectorFreeze | None = None  # keeps the started state out of full collections
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._down: set[str] = set()  # tasks that failed and wait for their restart
        self._rate_seen: dict[str, tuple[int, int]] = {}  # account -> (refusals, waits) at the last look
        self.restarts: dict[str, int] = {}
        """Restarts of each background task since the start."""
        self.metrics: MetricsServer | None = None
        """The Prometheus export while it serves (``metrics.port`` set and bound)."""

    # --- the started components ---------------------------------------------------------------
    def started(self) -> Engine:
        """The started engine; raises :class:`EngineNotStarted` while it is still starting."""
        if self.engine is None:
            if self._start_failure is not None:
                raise EngineNotStarted(f"the engine did not start: {self._start_failure}")
            raise EngineNotStarted("the engine is still starting")
        return self.engine

    @property
    def store(self) -> Store | None:
        """The state store (open from the start of :meth:`start` until :meth:`stop`)."""
        return self._store

    @property
    def tpsl(self) -> TpslManager | None:
        """The TP/SL manager, once started."""
        return self.engine.manager if self.engine is not None else None

    @property
    def dashboard(self) -> Dashboard | None:
        """The cache-backed dashboard, once started."""
        return self.engine.dashboard if self.engine is not None else None

    @property
    def cache(self) -> DashboardCache | None:
        """The dashboard's TTL cache, once started."""
        return self.engine.cache if self.engine is not None else None

    @property
    def price_alerts(self) -> PriceAlertManager | None:
        """The operator's price alerts, once started."""
        return self.engine.price_alerts if self.engine is not None else None

    @property
    def ledger(self) -> Ledger | None:
        """The trade ledger, once started."""
        return self.engine.manager.ledger if self.engine is not None else None

    # --- state --------------------------------------------------------------------------------
    @property
    def state(self) -> EngineState:
        """Degraded while a task is down (waiting for its restart); else what the TP/SL manager says
        (reconciling until the venue agrees with the store, paused, degraded while a stream is down
        or the state cannot be written, running)."""
        if self._down:
            return EngineState.DEGRADED
        if self.engine is None:
            return EngineState.RECONCILING
        return EngineState(self.engine.manager.engine_state)

    @property
    def venue_label(self) -> str:
        """``sim`` or the Bybit network (``mainnet`` / ``testnet`` / ``demo``)."""
        return "sim" if self.settings.get("venue.kind") == "sim" else self.settings.get("venue.network")

    @property
    def failures(self) -> list[str]:
        """Names of background tasks that are down now, waiting for their restart (the engine is
        degraded while this is non-empty)."""
        return sorted(self._down)

    # --- start / stop -------------------------------------------------------------------------
    def build_venues(self) -> None:
        """Create one venue per account (the simulator's accounts are created on demand)."""
        if self.settings.get("venue.kind") == "sim":
            from engine.sim.exchange import SimExchange
            from engine.sim.venue import SimVenue

            exchange = SimExchange.from_settings(self.settings, self.clock, self.state_dir)
            balances = self.settings.section("sim.balances")
            for name in self.accounts:
                exchange.ensure_account(name, balances.get(name))
                self.venues[name] = SimVenue(exchange, name)
            exchange.on_alert = self.raise_sim_alert
            self.exchange = exchange
        else:
            from engine.venue.bybit.venue import BybitVenue

            for name in self.accounts:
                self.venues[name] = BybitVenue.from_settings(
                    self.settings, name, self.clock, on_critical=self.raise_critical
                )

    async def start(self) -> Engine:
        """Lock and recover the state, build the venues and the components, start the tasks.

        The TP/SL manager reconciles in its own task, so the engine reports ``reconciling`` until the
        venue agrees with the store. If any step fails, what was started is stopped again (the state
        saved, the lock released) before the error propagates.
        """
        if self.settings.get("venue.kind") == "sim" and not self.venues:
            from engine.sim.exchange import STATE_FILE
            from engine.sim.journal import check_state_files

            # Read-only, before the store writes its startup mark: a market that cannot be continued
            # is refused with the whole directory left as it was.
            check_state_files(self.state_dir / STATE_FILE)
        # The store creates the directory (mode 0700) once it knows the path is usable.
        self._store, recovery = await open_state(self.settings, self.state_dir, self.clock, flush_timer=False)
        try:
            self.spawn("scheduler", self.scheduler.run)
            if not self.venues:
                self.build_venues()
            self._build_gateways()
            if self.exchange is not None:
                self.spawn("sim-exchange", self.exchange.run)
            engine = await self._assemble(self._store, recovery)
        except BaseException as exc:
            self._start_failure = str(exc) or type(exc).__name__
            await self.stop()
            raise
        self.engine = engine
        await self._start_metrics(engine)
        return engine

    async def _start_metrics(self, engine: Engine) -> None:
        """Serve the Prometheus export when ``metrics.port`` is set (0 = off). An address that cannot
        be bound (a port in use) is one line in the log and a critical alert, never a traceback: the
        engine runs on without the export, protecting positions as before (invariant 7)."""
        port = int(self.settings.get("metrics.port"))
        if port == 0:
            return
        sources = MetricSources(
            manager=engine.manager,
            gateways=self.gateways,
            store=engine.store,
            cache=engine.cache,
            scheduler=self.scheduler,
            profile=self.profile,
            engine_state=lambda: self.state.value,
        )
        server = MetricsServer(sources, str(self.settings.get("metrics.host")), port)
        try:
            await server.start()
        except Exception as exc:  # whatever it is, the export is optional and trading is not
            message = str(exc) if isinstance(exc, MetricsExportError) else f"metrics export off: {exc!r}"
            log.error("%s", message)
            self.alerts.raise_alert(Severity.CRITICAL, "metrics_export", message)
            return
        self.metrics = server

    async def _assemble(self, store: Store, recovery: RecoveryReport) -> Engine:
        """Build the components over the open store, wire their events, and spawn their tasks."""
        recovery_alert(self.alerts, recovery)
        self.scheduler.add(
            "store-flush", self._flush_store, float(self.settings.get("persistence.flush_interval_s"))
        )
        manager = self._build_manager(store)
        self._collector = CollectorFreeze(self.clock, lambda: manager.ready)
        self.scheduler.add("collector", self._collector.tick, COLLECTOR_CHECK_S)
        empty = state_is_empty(store.state)
        # Before anything decodes the state: a record of the wrong shape is quarantined and dropped
        # (reconciliation rebuilds its monitor from the exchange), never a crash in a task later.
        await drop_undecodable(store, self.alerts, self.clock.now())
        manager.load()
        delivery = self._build_delivery(store, manager.tag)
        summary = self._build_summary(store, manager)
        price_alerts = PriceAlertManager(
            store=store, clock=self.clock, venues=self.gateways, alerts=self.alerts
        )
        price_alerts.load()
        follower = self._build_follower(store, manager)
        stats_period = StatsPeriod(store, self.clock)
        stats_period.load()
        sources = DashboardSources(
            settings=self.settings,
            clock=self.clock,
            venues=self.gateways,
            manager=manager,
            store=store,
            price_alerts=price_alerts,
            alerts=self.alerts,
            engine_state=lambda: self.state.value,
            venue_label=self.venue_label,
            mirror=follower.snapshot if follower is not None else None,
            alert_delivery=delivery.snapshot if delivery is not None else None,
            stats_period=stats_period,
        )
        dashboard = await Dashboard.create(sources, self.profile)
        self._dashboard = dashboard
        # The manager consumes each venue's stream once and hands every event on.
        manager.add_observer(lambda _account, event: dashboard.on_event(event))
        manager.add_observer(price_alerts.on_event)
        await self.profile.register(
            "smart_persistence",
            lambda mode: store.set_policy("smart" if mode is Mode.OPTIMIZED else "simple"),
        )
        await self.profile.register(
            "push_streams", lambda mode: manager.set_push_streams(mode is Mode.OPTIMIZED)
        )
        await self.profile.register(
            "adaptive_intervals", lambda mode: manager.set_adaptive(mode is Mode.OPTIMIZED)
        )
        await self.profile.register("api_batching", lambda mode: manager.set_batching(mode is Mode.OPTIMIZED))
        self.scheduler.add(
            "cache-metrics-log", dashboard.cache.log_metrics, float(self.settings.get("cache.log_interval_s"))
        )
        self.scheduler.add(
            "price-alerts", lambda: price_alerts.tick(PRICE_ALERT_CHECK_S), PRICE_ALERT_CHECK_S
        )
        self.scheduler.add("rate-limit-watch", self._watch_rate_limits, RATE_WATCH_S)
        position_alerts = PositionAlerts(PositionAlertParams.from_settings(self.settings), self.alerts)
        self.scheduler.add(
            "position-alerts", lambda: _check_positions(position_alerts, manager), PRICE_ALERT_CHECK_S
        )
        self.spawn("tpsl", manager.run)
        trades = self._trades_to_open(empty)
        if trades:
            # Not restarted: a second run would open the scenario's trades again.
            self.spawn("scenario-trades", lambda: self._open_trades(manager, trades), restart=False)
        return Engine(
            store=store,
            alerts=self.alerts,
            manager=manager,
            actions=OperatorActions(manager, followers=[follower.follow] if follower else []),
            price_alerts=price_alerts,
            dashboard=dashboard,
            profile=self.profile,
            mirror=follower,
            delivery=delivery,
            summary=summary,
        )

    def _build_gateways(self) -> None:
        """Put every venue behind its account's rate budget; the accounts share the IP's window."""
        if self.settings.get("venue.kind") == "sim":
            host = "sim"
        else:
            host = f"bybit:{self.settings.get('venue.network')}:{self.settings.get('venue.base_url')}"
        ip = shared_ip_window(host, self.clock, int(self.settings.get("venue.rate_ip_per_5s")))
        batching = self.settings.get("profile.api_batching") == "optimized"
        for name, venue in self.venues.items():
            if name not in self.gateways:
                budget = CallBudget(
                    self.clock,
                    ip,
                    orders_per_s=int(self.settings.get("venue.rate_orders_per_s")),
                    reads_per_s=int(self.settings.get("venue.rate_reads_per_s")),
                    protect_reserve=int(self.settings.get("venue.rate_protect_reserve")),
                )
                self.gateways[name] = VenueGateway(venue, budget, coalesce=batching)

    async def _watch_rate_limits(self) -> None:
        """``rate_limit``: the venue refused requests for its rate limit (10006), or requests had to
        wait for the engine's own budget, since the last look; once per account and look."""
        for name, gateway in self.gateways.items():
            budget = gateway.budget
            seen = self._rate_seen.get(name, (0, 0))
            now = (budget.refusals, budget.waits)
            self._rate_seen[name] = now
            refused, waited = now[0] - seen[0], now[1] - seen[1]
            if refused:
                message = (
                    f"{name}: the venue refused {refused} request(s) for its rate limit in the last "
                    f"{RATE_WATCH_S:g} s; requests wait for the reset, stop-losses first"
                )
                self.alerts.raise_alert(Severity.WARNING, "rate_limit", message, key=name)
            elif waited >= RATE_WAITS_NOTED:
                message = (
                    f"{name}: {waited} request(s) waited for the rate budget in the last {RATE_WATCH_S:g} s"
                    " (near the venue's limit); stop-losses go first"
                )
                self.alerts.raise_alert(Severity.WARNING, "rate_limit", message, key=name)

    async def _flush_store(self) -> None:
        if self._store is not None:
            await self._store.flush_pending()

    def _job_failed(self, name: str, exc: BaseException, in_a_row: int) -> None:
        """A scheduler job raised: it keeps its schedule; the operator hears of it."""
        severity = Severity.CRITICAL if in_a_row >= CRITICAL_AFTER else Severity.WARNING
        message = (
            f"engine job {name} failed ({type(exc).__name__}: {exc}); {in_a_row} in a row, it runs again"
        )
        self.alerts.raise_alert(severity, "job_failed", message, key=name)

    def _build_manager(self, store: Store) -> TpslManager:
        simulated = market_is_simulated(self.settings)
        seed = int(self.settings.get("sim.seed"))
        # the instance tag: reproducible on the simulator, unique per installation on a real exchange
        rng = random.Random(f"instance:{seed}") if simulated else random.SystemRandom()
        return TpslManager(
            venues=self.gateways,
            store=store,
            clock=self.clock,
            params=TradingParams.from_settings(self.settings),
            timing=MonitorTiming.from_settings(self.settings),
            alerts=self.alerts,
            rng=rng,
            push_streams=self.settings.get("profile.push_streams") == "optimized",
            scheduler=self.scheduler,
            urgency=UrgencyParams.from_settings(self.settings),
            adaptive=self.settings.get("profile.adaptive_intervals") == "optimized",
            batching=self.settings.get("profile.api_batching") == "optimized",
        )

    def _build_follower(self, store: Store, manager: TpslManager) -> MirrorFollower | None:
        """The mirror follower when mirror trading is on: it follows main's trades from now on."""
        if "mirror" not in self.accounts:
            return None
        follower = MirrorFollower(
            manager=manager,
            venues=self.gateways,
            store=store,
            clock=self.clock,
            scheduler=self.scheduler,
            alerts=self.alerts,
            params=MirrorParams.from_settings(self.settings),
        )
        follower.install()
        return follower

    def _build_delivery(self, store: Store, instance_tag: str) -> AlertDelivery | None:
        """Alert delivery when a sink is enabled: its outbox loaded, its job on the scheduler (and run
        soon whenever an alert is queued), subscribed to the bus. An enabled sink that cannot work
        (no token, no URL) is left out with a warning: trading never waits for a sink."""
        sinks, problems = sinks_from_settings(self.settings)
        for problem in problems:
            self.alerts.raise_alert(Severity.WARNING, "alert_delivery_config", problem)
        if not sinks:
            return None
        params = DeliveryParams.from_settings(self.settings)
        delivery = AlertDelivery(
            store=store,
            clock=self.clock,
            sinks=sinks,
            prefix=instance_tag,
            params=params,
            on_queued=lambda: self.scheduler.run_soon(DELIVERY_JOB),
        )
        delivery.load()
        self._delivery = delivery
        self.scheduler.add(DELIVERY_JOB, delivery.run_once, params.interval_s)
        delivery.install(self.alerts)
        return delivery

    def _build_summary(self, store: Store, manager: TpslManager) -> DailySummary:
        """The daily summary at ``alerts.daily_summary_utc``, checked by a job every minute."""
        summary = DailySummary(
            manager=manager,
            alerts=self.alerts,
            store=store,
            clock=self.clock,
            at_utc=str(self.settings.get("alerts.daily_summary_utc")),
            accounts=self.accounts,
        )
        summary.load()
        self.scheduler.add(SUMMARY_JOB, summary.tick, SUMMARY_CHECK_S)
        return summary

    def _trades_to_open(self, state_was_empty: bool) -> list[ScenarioTrade]:
        """The scenario's trades, or the seeded demo trades on a simulated market's first start."""
        if self.scenario is not None:
            return list(self.scenario.trades)
        if market_is_simulated(self.settings) and state_was_empty:
            count = int(self.settings.get("sim.demo_trades"))
            return demo_trades(
                count, list(self.settings.get("sim.symbols")), int(self.settings.get("sim.seed"))
            )
        return []

    async def _open_trades(self, manager: TpslManager, trades: list[ScenarioTrade]) -> None:
        await run_trades(manager, trades, self.clock)

    def raise_critical(self, message: str) -> None:
        """A critical alert from below the TP/SL manager (e.g. the venue's IP-ban guard)."""
        self.alerts.raise_alert(Severity.CRITICAL, "venue", message)

    def raise_sim_alert(self, severity: str, message: str) -> None:
        """An alert from the embedded simulated exchange (it cannot save its market, or can again)."""
        self.alerts.raise_alert(severity, "sim_exchange", message)

    def spawn(self, name: str, factory: TaskFactory, *, restart: bool = True) -> asyncio.Task[None]:
        """Run ``factory()`` as the named background task ``name``, under the supervisor: restarted
        when it raises (see the module doc), unless ``restart`` is False (then it stays down, and the
        engine degraded, after an alert)."""
        task = asyncio.create_task(self._supervise(name, factory, restart), name=name)
        self._tasks[name] = task
        return task

    async def _supervise(self, name: str, factory: TaskFactory, restart: bool) -> None:
        delay = RESTART_FIRST_S
        in_a_row = 0
        while True:
            started = self.clock.now()
            try:
                await factory()
                return  # ended by itself: nothing to restart
            except Exception as exc:  # CancelledError is not one: a cancelled task stays cancelled
                if self.clock.now() - started >= RESTART_MAX_S:  # it had been running well: start over
                    delay, in_a_row = RESTART_FIRST_S, 0
                in_a_row += 1
                self._down.add(name)
                log.error("engine task %s failed: %s", name, exc, exc_info=exc)
                severity = (
                    Severity.CRITICAL if in_a_row >= CRITICAL_AFTER or not restart else Severity.WARNING
                )
                what = f"engine task {name} failed ({type(exc).__name__}: {exc})"
                if not restart:
                    self.alerts.raise_alert(severity, "task_failed", f"{what}; not restarted", key=name)
                    return
                message = f"{what}; restarting in {delay:g} s (failure {in_a_row} in a row)"
                self.alerts.raise_alert(severity, "task_restarted", message, key=name)
            await self.clock.sleep(delay)
            delay = min(delay * 2, RESTART_MAX_S)
            self._down.discard(name)
            self.restarts[name] = self.restarts.get(name, 0) + 1

    async def stop(self) -> None:
        """Cancel the tasks (the simulator saves its state when cancelled) and close the venues."""
        if self.metrics is not None:  # first: nothing scrapes components that are closing
            metrics, self.metrics = self.metrics, None
            await metrics.stop()
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self.engine is not None:
            with contextlib.suppress(Exception):  # a full disk: the store keeps it and says so
                await self.engine.price_alerts.save_fired()
        if self._dashboard is not None:
            await self._dashboard.close()
        if self._delivery is not None:  # before the store closes: the outbox's last save
            delivery, self._delivery = self._delivery, None
            await delivery.close()
        for venue in self.venues.values():
            await venue.close()
        if self._collector is not None:
            self._collector.release()
        if self._store is not None:
            # Last, so everything the tasks saved on their way out is flushed; then the lock goes.
            store, self._store = self._store, None
            await store.close()
