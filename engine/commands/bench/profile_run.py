"""One profile's run of the workload, and its figures: what the child process measures and returns.

The engine runs on the embedded simulator on a virtual clock, with the console's dashboard refresh
beside it (:mod:`.refresh`) and the order requests recorded (:mod:`.requests`). The figures come
from the engine's own counters: the store's writes and fsyncs, the cache's hits and misses (turned
on by the benchmark in the baseline, where the ``cache_metrics`` toggle leaves them off: counting
changes no read), the venue gateways' calls per endpoint, the TP/SL manager's checks per tier, and
this process's peak RSS and CPU time.
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core.clock import VirtualClock
from engine.core.errors import EngineFailure
from engine.mirror.follower import MirrorFollower, Verb
from engine.runtime.assembly import EngineRuntime, make_clock

from .alert_log import AlertLog
from .outcome import outcomes
from .refresh import RefreshTimes, refresh_loop
from .requests import Sent, reactions, record_requests
from .stats import ms, per_hour, percentile
from .workload import Opener, Workload, bench_settings, plan

Progress = Callable[[float], None]
"""Told the fraction (0..1) of the simulated time done."""

PROGRESS_STEPS = 100
"""How many slices the measured time is driven in (one progress report each)."""
WARMUP_SHARE = 0.1
"""The part of the progress bar the opening of the trades takes."""
WARMUP_STEP_S = 10.0
"""Simulated seconds driven between two looks at the opening."""
WARMUP_LIMIT_S = 3600.0
"""The opening gives up after this much simulated time (the figures say how many trades opened)."""
DECISION_KINDS = ("tp", "sl")
"""The fills whose decisions the benchmark reports (TP -> breakeven and the entries cancelled, SL -> the
rest cancelled); entry fills (the stop resized) are the engine's too, but not in the seed's table."""
VENUE_CATEGORIES = ("account_data", "positions", "orders", "market_data")
"""The cache categories whose every load is one venue read (the others compose or compute)."""


def _peak_rss_mb() -> float:
    """This process's peak resident set so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    """CPU time of this process so far, every thread (the file-I/O executor's too), user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _latency(samples: list[float]) -> dict[str, Any]:
    return {
        "p50": ms(percentile(samples, 50)),
        "p99": ms(percentile(samples, 99)),
        "samples": len(samples),
    }


def copying(mirror: MirrorFollower | None) -> bool:
    """Whether the mirror still has openings of main's trades to copy."""
    return mirror is not None and any(task.verb is Verb.OPEN for task in mirror.tasks)


def budget_waits(runtime: EngineRuntime) -> int:
    """Requests of every account that waited for the engine's rate budget so far."""
    return sum(gateway.budget.waits for gateway in runtime.gateways.values())


def _spread(values_ms: list[float]) -> dict[str, Any]:
    return {
        "mean": round(sum(values_ms) / len(values_ms), 2) if values_ms else None,
        "p50": None if (p50 := percentile(values_ms, 50)) is None else round(p50, 2),
        "p99": None if (p99 := percentile(values_ms, 99)) is None else round(p99, 2),
        "max": round(max(values_ms), 2) if values_ms else None,
        "refreshes": len(values_ms),
    }


def _calls(runtime: EngineRuntime) -> dict[str, int]:
    """Venue requests so far per endpoint, every account together."""
    calls: dict[str, int] = {}
    for gateway in runtime.gateways.values():
        for endpoint, n in gateway.calls.as_dict().items():
            calls[endpoint] = calls.get(endpoint, 0) + n
    return calls


def measure_profile(profile: str, workload: Workload, progress: Progress) -> dict[str, Any]:
    """Run ``workload`` under ``profile`` (every toggle) and return its figures (JSON-ready)."""
    return asyncio.run(_measure(profile, workload, progress))


async def _measure(profile: str, workload: Workload, progress: Progress) -> dict[str, Any]:
    rss_idle_mb = _peak_rss_mb()  # the interpreter and the engine's modules, before any state
    with tempfile.TemporaryDirectory(prefix=f"opconsole-bench-{profile}-") as tmp:
        state_dir = Path(tmp)
        settings = bench_settings(workload, profile, state_dir)
        clock = make_clock("virtual", settings, state_dir)
        if not isinstance(clock, VirtualClock):  # make_clock("virtual") always is one
            raise EngineFailure("bench", "a virtual clock was expected")
        runtime = EngineRuntime(settings, state_dir, clock)
        # Built before the start, so the recorders are in place before the first request.
        runtime.build_venues()
        sent: dict[str, list[Sent]] = {}
        order_links: dict[str, str] = {}
        for account, venue in runtime.venues.items():
            sent[account] = []
            record_requests(venue, clock, sent[account], order_links)
        alerts = AlertLog()  # only what the figures read: a run raises thousands of alerts
        runtime.alerts.subscribe(alerts.record)
        began = clock.now()
        engine = await runtime.start()
        opener = Opener(plan(workload.positions, workload.seed))
        opening = asyncio.ensure_future(opener.run(engine.manager, clock))
        refresher: asyncio.Future[None] | None = None
        end = began + WARMUP_LIMIT_S + workload.seconds  # until the opening is done
        try:
            # The warm-up: the trades are opened, on the mirror too (their own figures are not the
            # steady state's: at 1000 positions the mirror's copies were still being placed for
            # minutes after main's last opening, and their requests were most of the window's).
            while (not opening.done() or copying(engine.mirror)) and clock.now() < began + WARMUP_LIMIT_S:
                await clock.drive(until=clock.now() + WARMUP_STEP_S)
                progress(WARMUP_SHARE * opener.finished / max(1, len(opener.trades)))
            warmup_s = clock.now() - began
            # The measured window: every counter is read at its start and its end.
            start = clock.now()
            end = start + workload.seconds
            cpu_started = _cpu_seconds()
            store_before = engine.store.metrics()
            calls_before = _calls(runtime)
            checks_before = dict(engine.manager.checks)
            decisions_before = engine.manager.reactions.counts()
            waits_before = budget_waits(runtime)
            engine.cache.set_metrics(True)  # the baseline counts too (see the module docstring)
            engine.cache.reset_metrics()
            times = RefreshTimes()
            period_s = 1.0 / float(settings.get("ui.refresh_hz"))
            refresher = asyncio.ensure_future(refresh_loop(engine.dashboard, clock, period_s, end, times))
            monitors = len(engine.manager.monitors)
            for step in range(1, PROGRESS_STEPS + 1):
                await clock.drive(until=start + workload.seconds * step / PROGRESS_STEPS)
                monitors = max(monitors, len(engine.manager.monitors))
                progress(WARMUP_SHARE + (1.0 - WARMUP_SHARE) * step / PROGRESS_STEPS)
            elapsed = clock.now() - start
            cpu_seconds = _cpu_seconds() - cpu_started
            store = {k: engine.store.metrics()[k] - store_before[k] for k in ("saves", "writes", "fsyncs")}
            cache = engine.cache.metrics()
            calls = {k: n - calls_before.get(k, 0) for k, n in _calls(runtime).items()}
            checks = {k: n - checks_before.get(k, 0) for k, n in engine.manager.checks.items()}
            decisions = engine.manager.reactions.samples_since(decisions_before, DECISION_KINDS)
            waits = budget_waits(runtime) - waits_before
            trades = outcomes(engine.manager.ledger.trades)
            failures = list(runtime.failures)
        finally:
            if not opening.done():
                opening.cancel()
            if refresher is not None:
                if clock.now() < end:  # interrupted: the loop would wait for time that will not come
                    refresher.cancel()
                await clock.drive_while(asyncio.gather(refresher, return_exceptions=True))
            await clock.drive_while(runtime.stop())
        exchange = runtime.exchange
        if exchange is None:
            raise EngineFailure("bench", "the benchmark needs the embedded simulator (venue.kind = sim)")
        # Reaction: a TP1 whose breakeven waited for the price (the engine says so in an alert) is
        # the market's wait, not a reaction, and is left out.
        price_waits = alerts.waits
        tp1: list[float] = []
        sl: list[float] = []
        fills = {"tp1": 0, "sl": 0}
        waited = 0
        for account in runtime.venues:
            executions = exchange.executions(account, start)  # the fills of the measured window
            found, n_tp1, n_sl = reactions(executions, sent[account], order_links)
            for fill_ts, seconds, symbol in found["tp1"]:
                if any(fill_ts <= ts <= fill_ts + seconds and f":{symbol}:" in m for ts, m in price_waits):
                    waited += 1
                else:
                    tp1.append(seconds)
            sl += [seconds for _ts, seconds, _symbol in found["sl"]]
            fills["tp1"] += n_tp1
            fills["sl"] += n_sl
    peak_rss_mb = _peak_rss_mb()
    venue_reads = sum(cache["categories"][c].get("loads", 0) for c in VENUE_CATEGORIES)
    refreshes = len(times.virtual_ms)
    return {
        "positions_opened": opener.opened,
        "warmup_s": round(warmup_s, 1),
        "dashboard_refresh_ms": _spread(times.virtual_ms),
        "snapshot_build_ms": _spread(times.real_ms),
        "snapshot_build_cpu_ms": _spread(times.cpu_ms),
        "dashboard_reads_per_refresh": round(venue_reads / refreshes, 2) if refreshes else None,
        "persistence_writes_per_hour": per_hour(store["writes"], elapsed),
        "persistence_fsyncs_per_hour": per_hour(store["fsyncs"], elapsed),
        "persistence_saves_per_hour": per_hour(store["saves"], elapsed),
        "cache_hit_rate": cache["totals"]["hit_rate"],
        "api_calls_per_hour": per_hour(sum(calls.values()), elapsed),
        "api_calls_by_endpoint": {k: per_hour(v, elapsed) for k, v in sorted(calls.items())},
        "reaction_ms": _latency(tp1 + sl),
        "tp1_to_orders_ms": _latency(tp1) | {"fills": fills["tp1"], "waited_for_price": waited},
        "sl_to_cancel_ms": _latency(sl) | {"fills": fills["sl"]},
        "decision_ms": {kind: _latency(samples) for kind, samples in decisions.items()},
        "budget_waits": waits,
        "monitor_checks_per_hour": per_hour(sum(checks.values()), elapsed),
        "monitor_checks_by_tier": {k: per_hour(v, elapsed) for k, v in sorted(checks.items())},
        "monitors": monitors,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "rss_per_monitor_kb": round((peak_rss_mb - rss_idle_mb) * 1024.0 / monitors, 1) if monitors else None,
        "cpu_seconds": round(cpu_seconds, 2),
        "cpu_seconds_per_sim_minute": round(cpu_seconds * 60.0 / elapsed, 3) if elapsed else None,
        "critical_events": alerts.critical,
        "critical_messages": alerts.critical_messages,
        "trades_closed": len(trades),
        "pnl": round(sum(t.pnl for t in trades), 6),
        "trades": [t.as_dict() for t in trades],
        "task_failures": failures,
    }
