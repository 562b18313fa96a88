"""The cache's metrics: nothing counted when switched off, a rolling hit rate that forgets old
lookups, and a periodic log line while metrics are on."""

from __future__ import annotations

import asyncio
import logging

import pytest
from cache_builders import OPTIMIZED, counting_loader, make_cache

from engine.core.clock import VirtualClock
from engine.dashboard.cache import SHARED
from engine.scheduler.jobs import Scheduler


async def test_metrics_off_counts_nothing_and_says_so() -> None:
    clock = VirtualClock()
    cache = make_cache(clock, metrics=False)
    load, _ = counting_loader()
    for _ in range(3):
        await cache.get_or_load("positions", ("positions", "main"), load)
    metrics = cache.metrics()
    assert metrics["enabled"] is False and metrics["hit_rate"] is None
    assert metrics["totals"]["hits"] == 0 and metrics["totals"]["loads"] == 0
    row = metrics["categories"]["positions"]
    assert (row["hits"], row["misses"], row["hit_rate"], row["mean_load_ms"]) == (0, 0, None, None)
    assert row["ttl"] == OPTIMIZED["positions"] and row["entries"] == 1
    cache.set_metrics(True)
    await cache.get_or_load("positions", ("positions", "main"), load)
    assert cache.metrics()["categories"]["positions"]["hits"] == 1
    assert cache.metrics()["enabled"] is True


async def test_the_rolling_hit_rate_forgets_lookups_older_than_the_window() -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    load, _ = counting_loader()
    await cache.get_or_load("ai_insights", ("ai_insights", SHARED), load)  # a miss at t=0
    clock.advance(100.0)
    for _ in range(3):
        await cache.get_or_load("ai_insights", ("ai_insights", SHARED), load)  # hits at t=100
    metrics = cache.metrics()
    assert metrics["hit_rate"] == 1.0  # the t=0 miss is out of the 60 s window
    assert metrics["totals"]["hit_rate"] == 0.75  # but not out of the totals
    assert metrics["sparkline"][-1] == 1.0 and 0.0 in metrics["sparkline"]


async def test_a_log_line_every_interval_while_metrics_are_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    cache = make_cache(clock)
    scheduler = Scheduler(clock)  # the engine runs the log as a job every log_interval_s
    scheduler.add("cache-metrics-log", cache.log_metrics, cache.meter.log_interval_s)
    task = asyncio.ensure_future(scheduler.run())
    with caplog.at_level(logging.INFO, logger="opconsole.cache"):
        await clock.drive(until=25.0)
        cache.set_metrics(False)
        await clock.drive(until=55.0)
    task.cancel()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cache hit rate")]
    assert len(lines) == 2  # at 10 s and 20 s; nothing once metrics are off
    assert "positions=" in lines[0]
