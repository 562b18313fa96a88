"""Builders for the DashboardCache tests: a cache on the virtual clock with the settings' TTL tables,
and a loader that counts its calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.core.clock import VirtualClock
from engine.core.profile import Mode
from engine.dashboard.cache import CATEGORIES, DashboardCache

BASELINE = dict(zip(CATEGORIES, (30.0, 10.0, 10.0, 60.0, 60.0, 600.0, 20.0), strict=True))
OPTIMIZED = dict(zip(CATEGORIES, (60.0, 15.0, 15.0, 300.0, 180.0, 1800.0, 30.0), strict=True))


def make_cache(clock: VirtualClock, mode: Mode = Mode.OPTIMIZED, metrics: bool = True) -> DashboardCache:
    return DashboardCache(
        clock,
        {Mode.BASELINE: BASELINE, Mode.OPTIMIZED: OPTIMIZED},
        mode=mode,
        metrics=metrics,
        hit_rate_window_s=60.0,
        log_interval_s=10.0,
    )


def counting_loader(value: Any = "v") -> tuple[Callable[[], Any], list[int]]:
    calls: list[int] = []

    async def load() -> Any:
        calls.append(1)
        return value

    return load, calls
