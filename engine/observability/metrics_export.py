"""Prometheus metrics export: the engine's own counters, served over HTTP for a scraper to graph.

On when ``metrics.port`` is set (0, the default, is off), on ``metrics.host`` (127.0.0.1 by
default; there is no authentication, so a wider address exposes the figures to the network).
``GET /metrics`` answers in Prometheus' text format.

Design: nothing in the engine updates a Prometheus metric. :class:`EngineCollector` is a custom
``prometheus_client`` collector that reads the counters the engine keeps anyway (the cache's meter,
each account's call counter and rate budget, the store's metrics, the scheduler's job statistics,
the TP/SL manager's monitors, tiers and reaction recorder, the profile) when a scrape arrives. It is
registered on a :class:`~prometheus_client.CollectorRegistry` of its own, never on the global one,
so two engines in one process (or tests) never collide.

Serving: an aiohttp route on the engine's own event loop (aiohttp is a dependency already), not
``prometheus_client``'s HTTP server thread. The collector then reads the engine's dicts on the same
thread that changes them, so a scrape can never see a dict change size mid-iteration, and the server
stops with the engine (:meth:`MetricsServer.stop`). A scrape is a few hundred lines of text built in
well under a millisecond per hundred monitors; it never calls a venue or touches the disk.

Counters are the engine's since it started (a restart starts them over, which Prometheus' ``rate()``
handles). The cache's counters count only while the ``cache_metrics`` toggle is optimized, and start
over when it is switched on again; while it is off the hit/miss families have no samples. Durations
(scheduler jobs, reactions) are on the engine clock, which is simulated time under a virtual clock.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    StateSetMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from engine.core.profile import Mode

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from engine.core.profile import Profile
    from engine.dashboard.cache import DashboardCache
    from engine.scheduler.jobs import Scheduler
    from engine.trading.manager import TpslManager
    from engine.venue.gateway import VenueGateway
    from persistence.store import Store

log = logging.getLogger("opconsole.metrics")

PREFIX = "opconsole"
PATH = "/metrics"
ENGINE_STATES = ("running", "reconciling", "paused", "degraded")
"""The values of the engine state (``engine_state`` in the snapshot), one 0/1 series each."""
_SHUTDOWN_TIMEOUT_S = 1.0
"""How long stopping waits for a scrape in flight (a scrape takes milliseconds)."""


@dataclass(frozen=True, slots=True)
class MetricSources:
    """What the collector reads: the started engine's components (nothing is copied)."""

    manager: TpslManager
    gateways: Mapping[str, VenueGateway]
    store: Store
    cache: DashboardCache
    scheduler: Scheduler
    profile: Profile
    engine_state: Callable[[], str]


def _name(suffix: str) -> str:
    return f"{PREFIX}_{suffix}"


class EngineCollector(Collector):
    """Reads the engine's counters at scrape time and yields them as metric families."""

    def __init__(self, sources: MetricSources) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        """Every family, in a fixed order (see the README's "Metrics export" for the list)."""
        yield from self._engine()
        yield from self._cache()
        yield from self._api()
        yield from self._persistence()
        yield from self._reactions()
        yield from self._scheduler()
        yield from self._monitors()
        yield from self._profile()

    # --- one method per part of the engine ----------------------------------------------------
    def _engine(self) -> Iterator[Metric]:
        state = self.sources.engine_state()
        family = StateSetMetricFamily(_name("engine_state"), "What the engine is doing (1 = current state).")
        family.add_metric([], {s: s == state for s in ENGINE_STATES})
        yield family

    def _cache(self) -> Iterator[Metric]:
        section = self.sources.cache.metrics()
        rows = section["categories"]
        entries = GaugeMetricFamily(
            _name("cache_entries"), "Entries held per dashboard cache category.", labels=["category"]
        )
        ttl = GaugeMetricFamily(
            _name("cache_ttl_seconds"), "Current TTL per dashboard cache category.", labels=["category"]
        )
        hits = CounterMetricFamily(
            _name("cache_hits"), "Dashboard cache lookups served from the cache.", labels=["category"]
        )
        misses = CounterMetricFamily(
            _name("cache_misses"), "Dashboard cache lookups that had to load.", labels=["category"]
        )
        for category, row in rows.items():
            entries.add_metric([category], row["entries"])
            ttl.add_metric([category], row["ttl"])
            if section["enabled"]:  # off (baseline cache_metrics): nothing is counted, no samples
                hits.add_metric([category], row["hits"])
                misses.add_metric([category], row["misses"])
        enabled = GaugeMetricFamily(
            _name("cache_metrics_enabled"), "1 while the cache counts hits and misses (cache_metrics toggle)."
        )
        enabled.add_metric([], 1 if section["enabled"] else 0)
        yield from (enabled, hits, misses, entries, ttl)

    def _api(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            _name("api_calls"), "Venue requests per account and V5 endpoint.", labels=["account", "endpoint"]
        )
        left = GaugeMetricFamily(
            _name("api_budget_left"),
            "Requests the engine's rate budget allows now, per account and window (orders, reads, ip).",
            labels=["account", "window"],
        )
        limit = GaugeMetricFamily(
            _name("api_budget_limit"), "Limit of each rate-budget window.", labels=["account", "window"]
        )
        refusals = CounterMetricFamily(
            _name("api_rate_refusals"), "Requests the venue refused for its rate limit.", labels=["account"]
        )
        waits = CounterMetricFamily(
            _name("api_budget_waits"),
            "Requests that waited for the engine's rate budget.",
            labels=["account"],
        )
        for account, gateway in sorted(self.sources.gateways.items()):
            for endpoint, n in gateway.calls.as_dict().items():
                calls.add_metric([account, endpoint], n)
            budget = gateway.budget
            # every window: each order verb's, ``orders`` (the verb with the least left), reads, IP
            for window, row in budget.windows().items():
                left.add_metric([account, window], row["left"])
                limit.add_metric([account, window], row["limit"])
            refusals.add_metric([account], budget.refusals)
            waits.add_metric([account], budget.waits)
        yield from (calls, left, limit, refusals, waits)

    def _persistence(self) -> Iterator[Metric]:
        metrics = self.sources.store.metrics()
        saves = CounterMetricFamily(
            _name("persistence_saves"), "State saves requested, by reason.", labels=["reason"]
        )
        writes = CounterMetricFamily(
            _name("persistence_writes"),
            "Writes that reached the disk, by what made them (a save reason, flush, compaction, retry).",
            labels=["reason"],
        )
        fsyncs = CounterMetricFamily(
            _name("persistence_fsyncs"), "Fsyncs, by what made them (as for writes).", labels=["reason"]
        )
        for family, key in (
            (saves, "saves_by_reason"),
            (writes, "writes_by_reason"),
            (fsyncs, "fsyncs_by_reason"),
        ):
            for reason, n in metrics.get(key, {}).items():
                family.add_metric([reason], n)
        written = CounterMetricFamily(_name("persistence_bytes_written"), "Bytes written to the state files.")
        written.add_metric([], metrics["bytes_written"])
        pending = GaugeMetricFamily(_name("persistence_pending"), "Coalesced changes not yet on disk.")
        pending.add_metric([], metrics["pending"])
        failing = GaugeMetricFamily(
            _name("persistence_failing"), "1 while the state directory cannot be written."
        )
        failing.add_metric([], 0 if metrics["failed"] is None else 1)
        yield from (saves, writes, fsyncs, written, pending, failing)

    def _reactions(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            _name("reaction_seconds"),
            "From a fill that calls for an action (venue time) to its requests handed to the order "
            "sender, by kind of fill (entry, tp, sl, close, external).",
            labels=["fill"],
        )
        for kind, histogram in self.sources.manager.reactions.histograms().items():
            buckets = [(floatToGoString(bound), n) for bound, n in histogram.cumulative()]
            family.add_metric([kind], buckets, histogram.sum_s)
        yield family

    def _scheduler(self) -> Iterator[Metric]:
        # The total is runs x the scheduler's mean, which it rounds to the microsecond: close enough
        # for a rate over minutes, and the scheduler keeps no second copy of the figure.
        durations = SummaryMetricFamily(
            _name("scheduler_job_duration_seconds"),
            "Runs of each scheduler job and their total duration (engine clock).",
            labels=["job"],
        )
        longest = GaugeMetricFamily(
            _name("scheduler_job_max_seconds"), "The longest run of each scheduler job.", labels=["job"]
        )
        overruns = CounterMetricFamily(
            _name("scheduler_job_overruns"), "Runs still going when the next was due.", labels=["job"]
        )
        failures = CounterMetricFamily(_name("scheduler_job_failures"), "Runs that raised.", labels=["job"])
        for job, row in self.sources.scheduler.stats().items():
            durations.add_metric([job], row["runs"], row["mean_ms"] * row["runs"] / 1000.0)
            longest.add_metric([job], row["max_ms"] / 1000.0)
            overruns.add_metric([job], row["overruns"])
            failures.add_metric([job], row["failures"])
        yield from (durations, longest, overruns, failures)

    def _monitors(self) -> Iterator[Metric]:
        manager = self.sources.manager
        monitoring = manager.snapshot_monitoring()
        tiers = GaugeMetricFamily(
            _name("monitors"), "Monitors by urgency tier (adaptive_intervals).", labels=["tier"]
        )
        for tier, n in monitoring["tiers"].items():
            tiers.add_metric([tier], n)
        checks = CounterMetricFamily(
            _name("monitor_checks"),
            "Monitor checks made, by tier (baseline when not adaptive).",
            labels=["tier"],
        )
        for tier, n in monitoring["checks"].items():
            checks.add_metric([tier], n)
        open_by_account: dict[str, int] = dict.fromkeys(sorted(manager.venues), 0)
        for monitor in manager.monitors.values():
            if monitor.size > 0:
                open_by_account[monitor.account] = open_by_account.get(monitor.account, 0) + 1
        positions = GaugeMetricFamily(
            _name("open_positions"), "Monitored positions with size open, per account.", labels=["account"]
        )
        for account, n in open_by_account.items():
            positions.add_metric([account], n)
        yield from (tiers, checks, positions)

    def _profile(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            _name("profile_optimized"), "Each profile toggle: 1 optimized, 0 baseline.", labels=["toggle"]
        )
        for toggle, mode in self.sources.profile.modes.items():
            family.add_metric([toggle], 1 if mode is Mode.OPTIMIZED else 0)
        yield family


class MetricsExportError(Exception):
    """The metrics endpoint could not start (one line, e.g. the port is in use)."""


class MetricsServer:
    """``GET /metrics`` on ``host:port`` on the running event loop; ``port`` 0 binds a free port
    (read it back from :attr:`port`)."""

    def __init__(self, sources: MetricSources, host: str, port: int) -> None:
        self.sources = sources
        self.host = host
        self.requested_port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(sources))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        """The port listened on, once started."""

    async def start(self) -> None:
        """Listen; raises :class:`MetricsExportError` (one line) when the address cannot be bound."""
        app = web.Application()
        app.router.add_get(PATH, self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except OSError as exc:
            await runner.cleanup()
            # asyncio's message repeats the address; the errno's text alone says what went wrong
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise MetricsExportError(
                f"metrics export off: cannot listen on {self.host}:{self.requested_port} ({reason}); "
                "set metrics.port to a free port"
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("metrics export on http://%s:%d%s", self.host, self.port, PATH)

    @property
    def url(self) -> str | None:
        """Where to scrape, once started."""
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PATH}"

    async def _handle(self, request: web.Request) -> web.Response:
        # The format the scraper asks for (Prometheus text, or OpenMetrics), as prometheus_client's
        # own server negotiates it.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})

    async def stop(self) -> None:
        """Stop listening (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
