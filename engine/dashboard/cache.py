"""DashboardCache: the dashboard's read cache, one ``cachetools.TLRUCache`` per category.

Why TLRU and not TTLCache: a TTLCache fixes an item's expiry when it is inserted, from one cache-wide
``ttl``, so a TTL tuned at runtime would only reach entries loaded afterwards. Here every entry keeps
the (clock) time it was stored, and the category's time-to-use function computes its expiry as
``stored_at + current TTL``; :meth:`DashboardCache.set_ttl` re-files the live entries under the new
TTL (entries already older than it drop out at once). cachetools' timed caches take a ``timer``:
the engine clock's ``monotonic`` is injected, so with a :class:`~engine.core.clock.VirtualClock` the TTLs
run on simulated time and tests expire entries by advancing the clock.

Keys are tuples ``(category, account, ...)`` (``SHARED`` as the account for data that belongs to no
account, e.g. market data) and are never parsed from strings: invalidation matches ``key[1]``.

Loads are single-flight: concurrent callers of a missing key share one loader run; a failed load is
not cached and its exception reaches every caller that waited on it. A load whose key was invalidated
or written through while it was in flight still answers its callers but is not stored, so an older
read never overwrites fresher data.

Freshness (the ``cache_ttls`` toggle, optimized): trading events invalidate what they change and
tickers / wallet updates are written through, so the longer optimized TTLs never show stale trading
data. The baseline has no invalidation at all, as the original bot.

Metrics (the ``cache_metrics`` toggle): per-category hits, misses, loads, load errors, mean and max
load time, entries, oldest entry age and TTL, totals, and a rolling hit rate over a window with a
short history for a sparkline. When metrics are off nothing is counted, and :meth:`metrics` says
``enabled: false``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cachetools import TLRUCache

from engine.core.clock import Clock
from engine.core.models import Execution, Order, Position, StreamStatus, Ticker, VenueEvent, Wallet
from engine.core.profile import Mode, Profile, parse_mode
from engine.core.settings import Settings

log = logging.getLogger("opconsole.cache")

CATEGORIES = (
    "account_data",
    "positions",
    "orders",
    "stats",
    "market_data",
    "ai_insights",
    "full_dashboard",
)
"""The cache categories, in display order."""

SHARED = "*"
"""The account part of keys for data that belongs to no account (market data, insights, stats)."""

CacheKey = tuple[Any, ...]
"""``(category, account, ...)``."""

_MAX_ENTRIES = 4096
"""Per category; far above accounts x symbols, only a guard against a runaway key."""

EVENT_INVALIDATES: Mapping[type, tuple[str, ...]] = {
    Execution: ("positions", "orders", "account_data", "full_dashboard", "stats", "ai_insights"),
    Order: ("orders", "full_dashboard", "ai_insights"),
    Position: ("positions", "full_dashboard", "ai_insights"),
    Wallet: ("full_dashboard",),
}
"""What each trading event makes stale (optimized profile). A fill changes the account's positions,
orders and balance, and may close a trade (stats); the risk notes (ai_insights) are about positions
and their stops, so a new stop-loss must not leave a "no stop" note up for the insights' long TTL."""

PER_ACCOUNT = frozenset({"account_data", "positions", "orders"})
"""Categories keyed by account: an event drops only its account's entries. The others (the composed
full dashboard, stats) span every account and are dropped whole."""


def market_key(symbol: str) -> CacheKey:
    """The market_data key of one symbol (a :class:`~engine.core.models.Ticker`)."""
    return ("market_data", SHARED, symbol)


def account_key(account: str) -> CacheKey:
    """The account_data key of one account (a :class:`~engine.core.models.Wallet`)."""
    return ("account_data", account)


@dataclass(frozen=True, slots=True)
class _Entry:
    value: Any
    stored_at: float


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
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None

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
        start = now - now % self.bucket_s
        if not self._buckets or self._buckets[-1][0] != start:
            self._buckets.append([start, 0, 0])
            keep = max(self.history, int(self.window_s // self.bucket_s) + 1)
            while len(self._buckets) > keep:
                self._buckets.popleft()
        self._buckets[-1][1 if hit else 2] += 1

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


class DashboardCache:
    """Per-category TTL caches with single-flight loads, event freshness and optional metrics."""

    def __init__(
        self,
        clock: Clock,
        ttls: Mapping[str, Mapping[str, float]],
        *,
        mode: Mode | str = Mode.OPTIMIZED,
        metrics: bool = True,
        hit_rate_window_s: float = 60.0,
        log_interval_s: float = 300.0,
    ) -> None:
        """``ttls`` maps each ``cache_ttls`` mode (optimized, baseline) to its TTL per category."""
        self.clock = clock
        self.log_interval_s = log_interval_s
        self._profile_ttls = {parse_mode(m): _checked_table(table) for m, table in ttls.items()}
        self._mode = parse_mode(mode)
        if set(self._profile_ttls) != set(Mode):
            raise ValueError("cache TTLs are needed for both the optimized and the baseline profile")
        self._ttl: dict[str, float] = dict(self._profile_ttls[self._mode])
        self._stores: dict[str, TLRUCache[CacheKey, _Entry]] = {
            c: TLRUCache(maxsize=_MAX_ENTRIES, ttu=self._expires_at, timer=clock.monotonic)
            for c in CATEGORIES
        }
        self._inflight: dict[CacheKey, asyncio.Future[Any]] = {}
        self._load_tasks: set[asyncio.Task[None]] = set()
        # Bumped by invalidation and write-through; a load stores its result only if none moved.
        self._category_epoch: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self._account_epoch: dict[tuple[str, Any], int] = {}
        self._key_epoch: dict[CacheKey, int] = {}
        self._metrics_on = metrics
        self._counters = {c: CategoryCounters() for c in CATEGORIES}
        self._rolling = RollingHitRate(window_s=hit_rate_window_s)

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock, profile: Profile) -> DashboardCache:
        """The cache the ``[cache]`` settings describe, in the profile's current modes."""
        return cls(
            clock,
            {m: settings.section(f"cache.ttl.{m.value}") for m in Mode},
            mode=profile.mode("cache_ttls"),
            metrics=profile.is_optimized("cache_metrics"),
            hit_rate_window_s=float(settings.get("cache.hit_rate_window_s")),
            log_interval_s=float(settings.get("cache.log_interval_s")),
        )

    # --- configuration -----------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        """The ``cache_ttls`` mode in force: its TTL table, and invalidation only when optimized."""
        return self._mode

    @property
    def invalidation(self) -> bool:
        """Whether events invalidate / write through (the optimized profile; the original had none)."""
        return self._mode is Mode.OPTIMIZED

    def apply_ttl_mode(self, mode: Mode | str) -> None:
        """Switch to a ``cache_ttls`` mode: its TTLs (applied to live entries) and its event freshness."""
        previous, self._mode = self._mode, parse_mode(mode)
        for category, seconds in self._profile_ttls[self._mode].items():
            self._retime(category, seconds)
        if previous is Mode.BASELINE and self._mode is Mode.OPTIMIZED:
            # Events were ignored until now: what is cached may miss some, and must not live on
            # under the longer TTLs that event freshness justifies.
            for category in CATEGORIES:
                self.invalidate(category)
        log.info("cache: %s TTLs, invalidation %s", self._mode.value, "on" if self.invalidation else "off")

    def ttl(self, category: str) -> float:
        """The category's current TTL in seconds."""
        return self._ttl[_checked_category(category)]

    @property
    def ttls(self) -> dict[str, float]:
        """Every category's current TTL."""
        return dict(self._ttl)

    def set_ttl(self, category: str, seconds: float) -> None:
        """Tune a category's TTL live: applied to the entries already cached (measured from when each
        was stored) and kept for the current mode, so flipping ``cache_ttls`` back and forth keeps it."""
        _checked_category(category)
        seconds = _checked_ttl(category, seconds)
        self._profile_ttls[self._mode][category] = seconds
        self._retime(category, seconds)
        log.info("cache: %s TTL = %gs (%s profile)", category, seconds, self._mode.value)

    def _retime(self, category: str, seconds: float) -> None:
        self._ttl[category] = seconds
        store = self._stores[category]
        # TLRU computes an item's expiry when it is set: re-set the live entries so they are filed
        # under the new TTL (an entry already older than the new TTL is dropped by the store).
        for key, entry in list(store.items()):
            store[key] = entry

    @property
    def metrics_enabled(self) -> bool:
        return self._metrics_on

    def set_metrics(self, enabled: bool) -> None:
        """Turn metrics on (counting starts from zero) or off (nothing is counted)."""
        if enabled and not self._metrics_on:
            self.reset_metrics()
        self._metrics_on = enabled

    def reset_metrics(self) -> None:
        """Forget every count."""
        self._counters = {c: CategoryCounters() for c in CATEGORIES}
        self._rolling.clear()

    # --- reads -------------------------------------------------------------------------------
    def peek(self, key: CacheKey) -> Any | None:
        """The live value of ``key`` or None; not counted as a lookup."""
        entry = self._stores[_category_of(key)].get(key)
        return None if entry is None else entry.value

    async def get_or_load(self, category: str, key: CacheKey, loader: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value of ``key``, or the result of ``loader()`` (stored for the category's TTL).

        Concurrent callers of a missing key share one ``loader`` run. If the loader raises, nothing is
        stored and every caller waiting on that run gets the exception.
        """
        _check_key(category, key)
        entry = self._stores[category].get(key)
        self._count_lookup(category, entry is not None)
        if entry is not None:
            return entry.value
        future = self._inflight.get(key)
        if future is not None:
            self._count(category, "coalesced")
        else:

            async def load_one() -> dict[CacheKey, Any]:
                return {key: await loader()}

            future = self._start_load(category, (key,), load_one)[key]
        return await asyncio.shield(future)

    async def get_many_or_load(
        self,
        category: str,
        keys: Sequence[CacheKey],
        loader: Callable[[list[CacheKey]], Awaitable[Mapping[CacheKey, Any]]],
    ) -> dict[CacheKey, Any]:
        """Values of several keys; the missing ones not already loading are fetched by ONE loader call.

        ``loader(missing_keys)`` returns a mapping with a value for each key it was given (a key it
        leaves out fails with ``LookupError``). Keys already loading elsewhere are awaited, not loaded.
        """
        values: dict[CacheKey, Any] = {}
        waits: dict[CacheKey, asyncio.Future[Any]] = {}
        to_load: list[CacheKey] = []
        store = self._stores[category]
        for key in dict.fromkeys(keys):
            _check_key(category, key)
            entry = store.get(key)
            self._count_lookup(category, entry is not None)
            if entry is not None:
                values[key] = entry.value
            elif key in self._inflight:
                self._count(category, "coalesced")
                waits[key] = self._inflight[key]
            else:
                to_load.append(key)
        if to_load:

            async def load_many() -> Mapping[CacheKey, Any]:
                return await loader(list(to_load))

            waits |= self._start_load(category, tuple(to_load), load_many)
        if waits:
            results = await asyncio.gather(*(asyncio.shield(f) for f in waits.values()))
            values.update(zip(waits, results, strict=True))
        return {key: values[key] for key in dict.fromkeys(keys)}

    def _start_load(
        self,
        category: str,
        keys: tuple[CacheKey, ...],
        run: Callable[[], Awaitable[Mapping[CacheKey, Any]]],
    ) -> dict[CacheKey, asyncio.Future[Any]]:
        loop = asyncio.get_running_loop()
        futures: dict[CacheKey, asyncio.Future[Any]] = {}
        for key in keys:
            future = loop.create_future()
            # Mark a failure as retrieved even if every waiter was cancelled (no "never retrieved").
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            futures[key] = future
        self._inflight.update(futures)
        epochs = {key: self._epoch_of(key) for key in keys}
        # The load runs in its own task so a cancelled caller does not cancel the other waiters.
        task = loop.create_task(self._run_load(category, futures, epochs, run))
        self._load_tasks.add(task)
        task.add_done_callback(self._load_tasks.discard)
        return futures

    async def _run_load(
        self,
        category: str,
        futures: dict[CacheKey, asyncio.Future[Any]],
        epochs: dict[CacheKey, tuple[int, int, int]],
        run: Callable[[], Awaitable[Mapping[CacheKey, Any]]],
    ) -> None:
        started = self.clock.monotonic()
        try:
            values = await run()
        except BaseException as exc:
            self._record_load(category, started, failed=True)
            for future in futures.values():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            for key, future in futures.items():
                if self._inflight.get(key) is future:
                    del self._inflight[key]
        self._record_load(category, started, failed=False)
        stored_at = self.clock.monotonic()
        for key, future in futures.items():
            if key not in values:
                future.set_exception(LookupError(f"the loader returned no value for {key!r}"))
                continue
            if self._epoch_of(key) == epochs[key]:
                self._stores[category][key] = _Entry(values[key], stored_at)
            future.set_result(values[key])

    # --- writes and freshness ----------------------------------------------------------------
    def put(self, key: CacheKey, value: Any) -> None:
        """Write ``value`` through into the cache (a fresher value than any load in flight)."""
        category = _category_of(key)
        self._key_epoch[key] = self._key_epoch.get(key, 0) + 1
        self._stores[category][key] = _Entry(value, self.clock.monotonic())
        self._count(category, "writes")

    def invalidate(self, category: str, account: Any | None = None) -> int:
        """Drop a category's entries (of one account, or all); returns how many were dropped."""
        _checked_category(category)
        store = self._stores[category]
        if account is None:
            self._category_epoch[category] += 1
            dropped = len(store)
            store.clear()
        else:
            scope = (category, account)
            self._account_epoch[scope] = self._account_epoch.get(scope, 0) + 1
            doomed = [k for k in list(store.keys()) if k[1] == account]
            for key in doomed:
                store.pop(key, None)
            dropped = len(doomed)
        self._count(category, "invalidations", dropped)
        return dropped

    def on_event(self, event: VenueEvent) -> None:
        """Keep the cache fresh on a venue event (optimized profile only; the baseline ignores them).

        Tickers and wallet updates carry the whole value and are written through; fills, order and
        position updates drop the entries of their account that they change.
        """
        if not self.invalidation:
            return
        if isinstance(event, Ticker):
            self.put(market_key(event.symbol), event)
            return
        if isinstance(event, StreamStatus):
            if event.gap:  # events were lost: nothing of that account (or any price) can be trusted
                for category in sorted(PER_ACCOUNT):
                    self.invalidate(category, event.account)
                self.invalidate("full_dashboard")
                self.invalidate("market_data")
            return
        if isinstance(event, Wallet):
            self.put(account_key(event.account), event)
        for category in EVENT_INVALIDATES.get(type(event), ()):
            self.invalidate(category, event.account if category in PER_ACCOUNT else None)

    def _epoch_of(self, key: CacheKey) -> tuple[int, int, int]:
        category = key[0]
        return (
            self._category_epoch[category],
            self._account_epoch.get((category, key[1]), 0),
            self._key_epoch.get(key, 0),
        )

    def _expires_at(self, key: CacheKey, entry: _Entry, now: float) -> float:
        return entry.stored_at + self._ttl[key[0]]

    # --- metrics -----------------------------------------------------------------------------
    def _count_lookup(self, category: str, hit: bool) -> None:
        if not self._metrics_on:
            return
        counters = self._counters[category]
        if hit:
            counters.hits += 1
        else:
            counters.misses += 1
        self._rolling.record(self.clock.monotonic(), hit)

    def _count(self, category: str, name: str, n: int = 1) -> None:
        if self._metrics_on:
            counters = self._counters[category]
            setattr(counters, name, getattr(counters, name) + n)

    def _record_load(self, category: str, started: float, failed: bool) -> None:
        if not self._metrics_on:
            return
        elapsed_ms = (self.clock.monotonic() - started) * 1000.0
        counters = self._counters[category]
        counters.loads += 1
        counters.load_errors += int(failed)
        counters.load_ms_total += elapsed_ms
        counters.load_ms_max = max(counters.load_ms_max, elapsed_ms)

    def entries(self, category: str) -> int:
        """Live (unexpired) entries of a category."""
        return len(self._stores[_checked_category(category)])

    def oldest_age_s(self, category: str) -> float | None:
        """Age of the category's oldest live entry, or None when it is empty."""
        store = self._stores[_checked_category(category)]
        stamps = [entry.stored_at for entry in store.values()]
        return self.clock.monotonic() - min(stamps) if stamps else None

    def hit_rate(self) -> float | None:
        """The rolling hit rate over the window (None when off or before any lookup)."""
        return self._rolling.rate(self.clock.monotonic()) if self._metrics_on else None

    def metrics(self) -> dict[str, Any]:
        """The snapshot's ``cache`` section (JSON-ready)."""
        now = self.clock.monotonic()
        on = self._metrics_on
        categories: dict[str, Any] = {}
        for category in CATEGORIES:
            c = self._counters[category]
            row: dict[str, Any] = {"ttl": self._ttl[category], "entries": self.entries(category)}
            if on:
                age = self.oldest_age_s(category)
                row |= {
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
                    "oldest_age_s": _rounded(age, 3),
                }
            else:
                row |= {"hits": 0, "misses": 0, "hit_rate": None, "mean_load_ms": None}
            categories[category] = row
        hits = sum(c.hits for c in self._counters.values()) if on else 0
        misses = sum(c.misses for c in self._counters.values()) if on else 0
        loads = sum(c.loads for c in self._counters.values()) if on else 0
        return {
            "enabled": on,
            "hit_rate": _rounded(self._rolling.rate(now)) if on else None,
            "window_s": self._rolling.window_s,
            "sparkline": [round(r, 4) for r in self._rolling.series(now)] if on else [],
            "ttl_profile": self._mode.value,
            "invalidation": self.invalidation,
            "totals": {
                "hits": hits,
                "misses": misses,
                "loads": loads,
                "load_errors": sum(c.load_errors for c in self._counters.values()) if on else 0,
                "hit_rate": _rounded(hit_rate(hits, misses)),
            },
            "categories": categories,
        }

    def summary_line(self) -> str:
        """One log line: the rolling and per-category hit rates."""
        parts = [f"{c}={_pct(self._counters[c].hit_rate)}" for c in CATEGORIES]
        return f"cache hit rate {_pct(self.hit_rate())} over {self._rolling.window_s:g}s; " + " ".join(parts)

    async def run_metrics_log(self) -> None:
        """Log :meth:`summary_line` every ``log_interval_s`` while metrics are on (a background task)."""
        while True:
            await self.clock.sleep(self.log_interval_s)
            if self._metrics_on:
                log.info(self.summary_line())

    async def close(self) -> None:
        """Cancel the loads still in flight (at engine stop)."""
        for task in list(self._load_tasks):
            task.cancel()
        await asyncio.gather(*self._load_tasks, return_exceptions=True)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f}%"


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _checked_table(table: Mapping[str, float]) -> dict[str, float]:
    missing = [c for c in CATEGORIES if c not in table]
    if missing:
        raise ValueError(f"no TTL for cache categories: {', '.join(missing)}")
    return {c: _checked_ttl(c, table[c]) for c in CATEGORIES}


def _checked_category(category: str) -> str:
    if category not in CATEGORIES:
        raise ValueError(f"unknown cache category {category!r}; expected one of {', '.join(CATEGORIES)}")
    return category


def _checked_ttl(category: str, seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ValueError(f"cache TTL of {category} must be a number > 0, got {seconds!r}")
    return float(seconds)


def _category_of(key: CacheKey) -> str:
    if not isinstance(key, tuple) or len(key) < 2:
        raise ValueError(f"cache keys are (category, account, ...) tuples, got {key!r}")
    return _checked_category(key[0])


def _check_key(category: str, key: CacheKey) -> None:
    if _category_of(key) != category:
        raise ValueError(f"key {key!r} does not belong to category {category!r}")
