"""The cache's metrics (the ``cache_metrics`` toggle): what the cache efficiency panel and the log show.

Per category: hits, misses, loads, load errors, mean and max load time, lookups that joined a load
already in flight (coalesced), invalidations and write-throughs; with the cache's own entries, oldest
entry age and TTL, totals, and a rolling hit rate over a window with a short history for a sparkline.

Kept apart from :class:`~engine.dashboard.cache.DashboardCache` so the cache's logic (TTLs, single
flight, freshness) reads without the counting. The cache reports every lookup, load and freshness
event here; when metrics are off nothing is counted (the original bot kept no metrics), the section
says ``enabled: false`` and the periodic log line is skipped.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from engine.core.clock import Clock
from engine.core.profile import Mode
from engine.dashboard.schema import CacheCategoryRow, CacheSection

log = logging.getLogger("opconsole.cache")

Event = Literal["coalesced", "invalidations", "writes"]
"""The counters the cache bumps by name, besides lookups and loads."""


@dataclass(slots=True)
class CategoryCounters:
    """What the metrics count for one category while ``cache_metrics`` is on."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    loads: int = 0
    load_errors: int = 0
    load_ms_total: float = 0.0
    load_ms_max: float = 0.0
    invalidations: int = 0
    writes: int = 0

    @property
    def hit_rate(self) -> float | None:
        return hit_rate(self.hits, self.misses)

    @property
    def mean_load_ms(self) -> float | None:
        return self.load_ms_total / self.loads if self.loads else None


def hit_rate(hits: int, misses: int) -> float | None:
    """hits / lookups, or None before the first lookup."""
    return hits / (hits + misses) if hits + misses else None


@dataclass(slots=True)
class RollingHitRate:
    """Hits and misses in fixed time buckets: the rate over a window and a per-bucket history.

    Buckets keep memory bounded whatever the lookup rate (a few hundred integers).
    """

    window_s: float
    bucket_s: float = 5.0
    history: int = 60
    _buckets: deque[list[float]] = field(default_factory=deque)

    def record(self, now: float, hit: bool) -> None:
        """Count one lookup at ``now``."""
        self.record_many(now, int(hit), int(not hit))

    def record_many(self, now: float, hits: int, misses: int) -> None:
        """Count ``hits`` and ``misses`` lookups made at ``now``."""
        start = now - now % self.bucket_s
        if not self._buckets or self._buckets[-1][0] != start:
            self._buckets.append([start, 0, 0])
            keep = max(self.history, int(self.window_s // self.bucket_s) + 1)
            while len(self._buckets) > keep:
                self._buckets.popleft()
        bucket = self._buckets[-1]
        bucket[1] += hits
        bucket[2] += misses

    def rate(self, now: float) -> float | None:
        """The hit rate over the last ``window_s`` seconds (None when there was no lookup)."""
        hits = misses = 0
        for start, h, m in self._buckets:
            if start + self.bucket_s > now - self.window_s:
                hits += int(h)
                misses += int(m)
        return hit_rate(hits, misses)

    def series(self, now: float) -> list[float]:
        """One hit rate per bucket over the last ``history`` buckets, oldest first, for a sparkline.

        A bucket without lookups repeats the previous rate so the line does not fall to zero when the
        dashboard is idle; buckets before the first lookup are left out.
        """
        first = now - now % self.bucket_s - (self.history - 1) * self.bucket_s
        by_start = {b[0]: b for b in self._buckets}
        series: list[float] = []
        for i in range(self.history):
            bucket = by_start.get(first + i * self.bucket_s)
            rate = hit_rate(int(bucket[1]), int(bucket[2])) if bucket else None
            if rate is not None:
                series.append(rate)
            elif series:
                series.append(series[-1])
        return series

    def clear(self) -> None:
        self._buckets.clear()


class MeasuredCache(Protocol):
    """What the metrics section reads of the cache it describes (a
    :class:`~engine.dashboard.cache.DashboardCache`): its state, which the counters do not hold."""

    @property
    def mode(self) -> Mode: ...

    @property
    def invalidation(self) -> bool: ...

    def ttl(self, category: str) -> float: ...

    def entries(self, category: str) -> int: ...

    def oldest_age_s(self, category: str) -> float | None: ...


class CacheMetrics:
    """Per-category counters, the rolling hit rate and the periodic log line of one cache."""

    def __init__(
        self,
        clock: Clock,
        categories: Sequence[str],
        *,
        enabled: bool = True,
        window_s: float = 60.0,
        log_interval_s: float = 300.0,
    ) -> None:
        """``categories`` in display order; ``window_s`` is the rolling hit rate's window."""
        self.clock = clock
        self.categories = tuple(categories)
        self.log_interval_s = log_interval_s
        self._enabled = enabled
        self._counters = {c: CategoryCounters() for c in self.categories}
        self._rolling = RollingHitRate(window_s=window_s)

    # --- switching -----------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, enabled: bool) -> None:
        """Turn counting on (from zero, so the figures never mix in counts from before) or off."""
        if enabled and not self._enabled:
            self.reset()
        self._enabled = enabled

    def reset(self) -> None:
        """Forget every count."""
        self._counters = {c: CategoryCounters() for c in self.categories}
        self._rolling.clear()

    # --- counting (called by the cache) --------------------------------------------------------
    def lookup(self, category: str, hit: bool) -> None:
        """Count one lookup of ``category``: a hit (served from the cache) or a miss."""
        if not self._enabled:
            return
        counters = self._counters[category]
        if hit:
            counters.hits += 1
        else:
            counters.misses += 1
        self._rolling.record(self.clock.monotonic(), hit)

    def lookups(self, category: str, hits: int, misses: int) -> None:
        """Count ``hits`` + ``misses`` lookups of ``category`` made at once (:meth:`lookup` each)."""
        if not self._enabled or hits + misses == 0:
            return
        counters = self._counters[category]
        counters.hits += hits
        counters.misses += misses
        self._rolling.record_many(self.clock.monotonic(), hits, misses)

    def count(self, category: str, event: Event, n: int = 1) -> None:
        """Count ``n`` coalesced lookups, invalidated entries or write-throughs of ``category``."""
        if self._enabled:
            counters = self._counters[category]
            setattr(counters, event, getattr(counters, event) + n)

    def load(self, category: str, started: float, failed: bool) -> None:
        """Count one finished load of ``category`` that started at ``started`` (clock monotonic)."""
        if not self._enabled:
            return
        elapsed_ms = (self.clock.monotonic() - started) * 1000.0
        counters = self._counters[category]
        counters.loads += 1
        counters.load_errors += int(failed)
        counters.load_ms_total += elapsed_ms
        counters.load_ms_max = max(counters.load_ms_max, elapsed_ms)

    # --- reporting -----------------------------------------------------------------------------
    def hit_rate(self) -> float | None:
        """The rolling hit rate over the window (None when off or before any lookup)."""
        return self._rolling.rate(self.clock.monotonic()) if self._enabled else None

    def section(self, cache: MeasuredCache) -> CacheSection:
        """The snapshot's ``cache`` section for ``cache`` (JSON-ready)."""
        now = self.clock.monotonic()
        on = self._enabled
        counters = self._counters.values()
        hits = sum(c.hits for c in counters) if on else 0
        misses = sum(c.misses for c in counters) if on else 0
        return {
            "enabled": on,
            "hit_rate": _rounded(self._rolling.rate(now)) if on else None,
            "window_s": self._rolling.window_s,
            "sparkline": [round(r, 4) for r in self._rolling.series(now)] if on else [],
            "ttl_profile": cache.mode.value,
            "invalidation": cache.invalidation,
            "totals": {
                "hits": hits,
                "misses": misses,
                "loads": sum(c.loads for c in counters) if on else 0,
                "load_errors": sum(c.load_errors for c in counters) if on else 0,
                "hit_rate": _rounded(hit_rate(hits, misses)),
            },
            "categories": {c: self._category_row(cache, c) for c in self.categories},
        }

    def _category_row(self, cache: MeasuredCache, category: str) -> CacheCategoryRow:
        row: CacheCategoryRow = {
            "ttl": cache.ttl(category),
            "entries": cache.entries(category),
            "hits": 0,
            "misses": 0,
            "hit_rate": None,
            "mean_load_ms": None,
        }
        if not self._enabled:
            return row
        c = self._counters[category]
        return {
            **row,
            "hits": c.hits,
            "misses": c.misses,
            "hit_rate": _rounded(c.hit_rate),
            "mean_load_ms": _rounded(c.mean_load_ms, 3),
            "max_load_ms": round(c.load_ms_max, 3),
            "loads": c.loads,
            "load_errors": c.load_errors,
            "coalesced": c.coalesced,
            "invalidations": c.invalidations,
            "writes": c.writes,
            "oldest_age_s": _rounded(cache.oldest_age_s(category), 3),
        }

    def summary_line(self) -> str:
        """One log line: the rolling and per-category hit rates."""
        parts = [f"{c}={_pct(self._counters[c].hit_rate)}" for c in self.categories]
        return f"cache hit rate {_pct(self.hit_rate())} over {self._rolling.window_s:g}s; " + " ".join(parts)

    async def log_once(self) -> None:
        """Log :meth:`summary_line` while metrics are on (a scheduler job every ``log_interval_s``)."""
        if self._enabled:
            log.info(self.summary_line())


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
