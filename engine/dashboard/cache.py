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
read never overwrites fresher data. Order and position events that arrive while a load of their list
is in flight are kept (for that key, while it loads) and replayed onto what it read, which is then
stored: the events carry whole records and come in order per account, so read + replay converges.

Composed entries (:meth:`DashboardCache.get_or_compose`, the full dashboard): built from other entries
read through this cache, and valid only while every entry they read is still the live one. A part
written through, invalidated or expired makes the next lookup rebuild the composition from the parts
still cached (CPU only; a venue read only for a part that is really gone), so a composed entry never
hides a fresher part for its own, longer TTL.

:meth:`DashboardCache.recording` records the entries read in a scope (:class:`Reads`), with the time
each one's data came from the venue: the snapshot reports how old the venue data it shows is.

Freshness (the ``cache_ttls`` toggle, optimized): events keep the entries they change fresh, so the
longer optimized TTLs never show stale trading data, and an event costs no venue read:

- tickers and wallet updates are written through;
- an order or position update is patched into the cached lists of its account that cover its symbol
  (keys ``(category, account)`` and ``(category, account, symbol)``): a new list with the record
  replaced, added, or removed once it is no longer open (a :class:`~engine.core.revision.Revision`,
  which tells the dashboard's rows what changed), unless the list already holds a newer one
  (queued, and applied at the list's next read in one pass: an event costs the engine's loop no scan
  of thousands of orders). A patched entry keeps the time it was LOADED: the TTL still forces a
  full re-read now and then, the net under an event lost without a gap (the reported data age is
  that of the last full read). That re-read is done AHEAD (stale-while-revalidate): a lookup of a
  patched list past its TTL is served from the cache and starts one background load of the key,
  whose result (with the events of its flight replayed) replaces the entry; the list stays servable
  until :data:`_STALE_LIMIT` TTLs after its load, past which a lookup waits for a load as any miss
  (a venue that cannot be read for long leaves no very old data on screen). One background re-read
  is in flight at a time: lists loaded together (an account's positions and orders, two accounts)
  fall due together, and re-read at once they landed in one snapshot build (at a thousand positions,
  four lists of thousands of records, compared and placed: 30-40 ms of one build, and a burst of
  paged calls on the venue); the others are served a little longer and re-read one after another,
  well inside the stale limit. A failed background
  load is counted as a failed load and retried no sooner than :data:`_REFRESH_BACKOFF_S` later. A
  composition whose part is due for its re-read is composed again, so the part's lookup starts it;
- a fill (execution) is followed by its order's, its position's and the wallet's updates, which
  patch what it changed (the simulator sends them with it; Bybit on its ``order`` / ``position`` /
  ``wallet`` topics). A fill those do not follow (found by the execution poll, without a stream)
  invalidates, lazily: what it awaits is noted, the next read of a list still awaiting one drops it;
- a stream gap drops everything of the account; every event drops what it composes (the full
  dashboard; stats and insights as :data:`EVENT_INVALIDATES` says).

The baseline has no invalidation at all, as the original bot.

Metrics (the ``cache_metrics`` toggle) are counted apart, by
:class:`~engine.dashboard.cache_metrics.CacheMetrics` (:attr:`DashboardCache.meter`): the cache reports
its lookups, loads, invalidations and write-throughs to it, and :meth:`DashboardCache.metrics` is the
snapshot's ``cache`` section.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from itertools import compress
from operator import attrgetter
from typing import Any, TypeVar

from cachetools import Cache, TLRUCache

from engine.core.clock import Clock
from engine.core.models import Execution, Order, Position, StreamStatus, Ticker, VenueEvent, Wallet
from engine.core.profile import Mode, Profile, parse_mode
from engine.core.revision import Revision
from engine.core.settings import Settings
from engine.dashboard.cache_metrics import CacheMetrics
from engine.dashboard.schema import CacheSection

log = logging.getLogger("opconsole.cache")

T = TypeVar("T")

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
    Execution: ("full_dashboard", "stats", "ai_insights"),
    Order: ("full_dashboard", "ai_insights"),
    Position: ("full_dashboard", "ai_insights"),
    Wallet: ("full_dashboard",),
}
"""What each trading event drops (optimized profile). A fill may close a trade (stats); the risk notes
(ai_insights) are about positions and their stops, so a new stop-loss must not leave a "no stop" note
up for the insights' long TTL. The account's own entries are not dropped: orders and positions are
patched, the wallet written through, and a fill awaits those updates (see
:meth:`DashboardCache.on_event`)."""

_MAX_QUEUED = 1024
"""Updates queued for one cached list beyond which they are applied at once (a bound on memory for a
list that is not read, before its TTL would have brought a read)."""

_MAX_AWAITED = 1024
"""Per account and category: the fills awaiting their updates beyond which the lists are dropped at
once (a bound for a run whose fills come without them and whose dashboard is not read)."""

PATCHABLE = frozenset({"orders", "positions"})
"""The categories whose cached lists events patch (optimized): re-read ahead of their TTL's end."""

_STALE_LIMIT = 2.0
"""A patched list past its TTL is served (while it is re-read in the background) until this many
TTLs after its load; past that a lookup waits for a load. 2: a re-read started at the TTL has as long
again to land (one venue round trip is ~0.1 s) or to be retried after a failure."""

_REFRESH_BACKOFF_S = 5.0
"""After a failed background re-read of a key, the next one starts no sooner than this (clock
seconds): a venue that cannot be read costs one attempt per back-off, not one per lookup (2-4 per
second); with the optimized 15 s TTL that is two more attempts before the 30 s limit."""

PER_ACCOUNT = frozenset({"account_data", "positions", "orders"})
"""Categories keyed by account: an event drops only its account's entries. The others (the composed
full dashboard, stats) span every account and are dropped whole."""


def market_key(symbol: str) -> CacheKey:
    """The market_data key of one symbol (a :class:`~engine.core.models.Ticker`)."""
    return ("market_data", SHARED, symbol)


def account_key(account: str) -> CacheKey:
    """The account_data key of one account (a :class:`~engine.core.models.Wallet`)."""
    return ("account_data", account)


@dataclass(frozen=True, slots=True, eq=False)
class _Entry:
    """A cached value. Compared by identity: a composed entry is valid while each of its ``parts`` is
    still the very entry its key holds."""

    value: Any
    stored_at: float
    parts: tuple[tuple[CacheKey, _Entry], ...] = ()
    """The entries a composed value was built from (empty for a value read from a venue)."""


class Reads:
    """The cache entries read in a :meth:`DashboardCache.recording` scope (the first read of each key)."""

    def __init__(self) -> None:
        self._entries: dict[CacheKey, _Entry] = {}

    def add(self, key: CacheKey, entry: _Entry) -> None:
        """Record one read; a key read again keeps its first entry (the older data, if it changed)."""
        self._entries.setdefault(key, entry)

    def add_many(self, entries: Mapping[CacheKey, _Entry]) -> None:
        """:meth:`add` each of ``entries``, in order."""
        mine = self._entries
        for key, entry in entries.items():
            mine.setdefault(key, entry)

    @property
    def parts(self) -> tuple[tuple[CacheKey, _Entry], ...]:
        """What a composition built in this scope depends on."""
        return tuple(self._entries.items())

    def stored_at(self, key: CacheKey) -> float | None:
        """When the data read under ``key`` was stored (clock monotonic time), None if not read."""
        entry = self._entries.get(key)
        return None if entry is None else entry.stored_at

    def stored_at_each(self, names: Iterable[T], key: Callable[[T], CacheKey]) -> dict[T, float]:
        """:meth:`stored_at` of ``key(name)`` for each of ``names`` read, by name (one pass over a
        thousand symbols a snapshot, mostly in C)."""
        names = list(names)
        entries = list(map(self._entries.get, map(key, names)))
        return {name: e.stored_at for name, e in zip(names, entries, strict=True) if e is not None}

    def data_at(self) -> dict[tuple[str, Any], float]:
        """Per ``(category, account)``, when the oldest data read was stored (clock monotonic time).

        Composed entries are skipped: their data is their parts', which tell their own times.
        """
        oldest: dict[tuple[str, Any], float] = {}
        for key, entry in self._entries.items():
            if entry.parts:
                continue
            scope = (key[0], key[1])
            oldest[scope] = min(entry.stored_at, oldest.get(scope, entry.stored_at))
        return oldest


_RECORDING: ContextVar[tuple[Reads, ...]] = ContextVar("opconsole_cache_recording", default=())
"""The recordings open in this context (nested scopes all record); tasks started inside inherit them."""


def _note(key: CacheKey, entry: _Entry) -> None:
    for reads in _RECORDING.get():
        reads.add(key, entry)


def _note_many(entries: Mapping[CacheKey, _Entry]) -> None:
    for reads in _RECORDING.get():
        reads.add_many(entries)


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
        self._streaming: set[Any] = set()  # accounts whose push stream is connected (StreamStatus)
        self._load_tasks: set[asyncio.Task[None]] = set()
        # Per key whose background re-read failed: the clock time before which none starts again.
        self._refresh_after: dict[CacheKey, float] = {}
        self._refreshing: set[CacheKey] = set()  # the keys of the background re-read in flight
        # Bumped by invalidation and write-through; a load stores its result only if none moved.
        self._category_epoch: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
        self._account_epoch: dict[tuple[str, Any], int] = {}
        self._key_epoch: dict[CacheKey, int] = {}
        # Order / position events of a cached list not applied yet, in arrival order: applied at
        # its next read, all in one pass (an event costs the engine's loop no scan of the list).
        self._patches: dict[CacheKey, list[Order | Position]] = {}
        # The same for a list whose load is in flight: replayed onto the read. Kept only meanwhile.
        self._replays: dict[CacheKey, list[Order | Position]] = {}
        # Per (category, account): what fills still await (order ids, symbols, the wallet) before
        # the account's lists of the category are known to be patched (see _await_fill).
        self._awaited: dict[tuple[str, Any], set[Any]] = {}
        # The counters behind metrics() and the periodic log line (the ``cache_metrics`` toggle).
        self.meter = CacheMetrics(
            clock, CATEGORIES, enabled=metrics, window_s=hit_rate_window_s, log_interval_s=log_interval_s
        )

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
        if not self.invalidation:
            self._awaited.clear()  # the baseline invalidates nothing, not even a fill noted before
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

    def set_metrics(self, enabled: bool) -> None:
        """Turn metrics on (counting starts from zero) or off (nothing is counted): the
        ``cache_metrics`` toggle's apply callback."""
        self.meter.set_enabled(enabled)

    def reset_metrics(self) -> None:
        """Forget every count (a measurement starting from a known point)."""
        self.meter.reset()

    # --- reads -------------------------------------------------------------------------------
    def peek(self, key: CacheKey) -> Any | None:
        """The live value of ``key`` or None; not counted as a lookup."""
        entry = self._live(_category_of(key), key)
        return None if entry is None else entry.value

    @contextmanager
    def recording(self) -> Iterator[Reads]:
        """Record every entry read in this scope (and in the tasks started from it) into a :class:`Reads`."""
        reads = Reads()
        with self._recording_into(reads):
            yield reads

    async def get_or_load(self, category: str, key: CacheKey, loader: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value of ``key``, or the result of ``loader()`` (stored for the category's TTL).

        Concurrent callers of a missing key share one ``loader`` run. If the loader raises, nothing is
        stored and every caller waiting on that run gets the exception.
        """
        return await self._get_one(category, key, loader, composed=False)

    async def get_or_compose(
        self, category: str, key: CacheKey, compose: Callable[[], Awaitable[Any]]
    ) -> Any:
        """A composed value: ``compose()`` builds it from entries it reads through this cache, and it
        is served only while every one of those is still the live entry of its key (and within the
        category's TTL). A part written through, invalidated or expired makes the next lookup compose
        again, from the parts still cached: CPU only, unless a part itself has to be read again.
        """
        return await self._get_one(category, key, compose, composed=True)

    async def _get_one(
        self, category: str, key: CacheKey, loader: Callable[[], Awaitable[Any]], *, composed: bool
    ) -> Any:
        _check_key(category, key)
        cached = self._live(category, key)
        self.meter.lookup(category, cached is not None)
        if cached is not None:
            _note(key, cached)
            if not composed and self._refresh_due(category, key, cached):
                self._refresh_ahead(category, (key,), _load_one(key, loader))
            return cached.value
        future = self._inflight.get(key)
        if future is not None:
            self.meter.count(category, "coalesced")
        else:
            future = self._start_load(category, (key,), _load_one(key, loader), composed=composed)[key]
        entry = await asyncio.shield(future)
        _note(key, entry)
        return entry.value

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
        entries: dict[CacheKey, _Entry] = {}
        waits: dict[CacheKey, asyncio.Future[_Entry]] = {}
        to_load: list[CacheKey] = []
        _checked_category(category)
        # A thousand symbols' tickers are read at every snapshot: the loop does per key only what
        # is per key; the lookups are counted once for all (the same counts, at the same time).
        # A category of plain values (no account's fills to settle, no patches: market data) is read
        # from the store's own mapping once its expired entries are dropped, as oldest_age_s reads
        # it: TLRUCache's access (a timer context, a membership test and an LRU move per key) was
        # most of a snapshot's ticker lookups. The LRU order it skips only matters past _MAX_ENTRIES.
        plain = category not in PER_ACCOUNT and category not in PATCHABLE
        store, raw = self._stores[category], Cache.__getitem__
        if plain:
            with store.timer as now:
                store.expire(now)
        for key in dict.fromkeys(keys):
            if type(key) is not tuple or len(key) < 2 or key[0] != category:
                _check_key(category, key)  # raises the error that says what is wrong
            if plain:
                try:
                    entry = raw(store, key)
                except KeyError:
                    entry = None
                if entry is not None and entry.parts:  # a composition: valid while its parts are
                    entry = self._live(category, key)
            else:
                entry = self._live(category, key)
            if entry is not None:
                entries[key] = entry
            elif key in self._inflight:
                waits[key] = self._inflight[key]
            else:
                to_load.append(key)
        misses = len(waits) + len(to_load)
        self.meter.lookups(category, len(entries), misses)
        self.meter.count(category, "coalesced", len(waits))
        due = (
            [k for k, e in entries.items() if self._refresh_due(category, k, e)]
            if category in PATCHABLE
            else []
        )
        if due:

            async def load_due() -> Mapping[CacheKey, Any]:
                return await loader(list(due))

            self._refresh_ahead(category, tuple(due), load_due)
        if to_load:

            async def load_many() -> Mapping[CacheKey, Any]:
                return await loader(list(to_load))

            waits |= self._start_load(category, tuple(to_load), load_many)
        if waits:
            results = await asyncio.gather(*(asyncio.shield(f) for f in waits.values()))
            entries.update(zip(waits, results, strict=True))
        _note_many(entries)
        return {key: entries[key].value for key in dict.fromkeys(keys)}

    def _start_load(
        self,
        category: str,
        keys: tuple[CacheKey, ...],
        run: Callable[[], Awaitable[Mapping[CacheKey, Any]]],
        *,
        composed: bool = False,
    ) -> dict[CacheKey, asyncio.Future[_Entry]]:
        loop = asyncio.get_running_loop()
        futures: dict[CacheKey, asyncio.Future[_Entry]] = {}
        for key in keys:
            future = loop.create_future()
            # Mark a failure as retrieved even if every waiter was cancelled (no "never retrieved").
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            futures[key] = future
        self._inflight.update(futures)
        epochs = {key: self._epoch_of(key) for key in keys}
        # The load runs in its own task so a cancelled caller does not cancel the other waiters.
        task = loop.create_task(self._run_load(category, futures, epochs, run, composed))
        self._load_tasks.add(task)
        task.add_done_callback(self._load_tasks.discard)
        return futures

    async def _run_load(
        self,
        category: str,
        futures: dict[CacheKey, asyncio.Future[_Entry]],
        epochs: dict[CacheKey, tuple[int, int, int]],
        run: Callable[[], Awaitable[Mapping[CacheKey, Any]]],
        composed: bool,
    ) -> None:
        started = self.clock.monotonic()
        reads = Reads()
        replays: dict[CacheKey, list[Order | Position]] = {}
        try:
            if composed:  # a composition records the entries it reads: it stays valid with them
                with self._recording_into(reads):
                    values = await run()
            else:
                values = await run()
        except BaseException as exc:
            self.meter.load(category, started, failed=True)
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
                if key in self._replays:
                    replays[key] = self._replays.pop(key)
        self.meter.load(category, started, failed=False)
        stored_at = self.clock.monotonic()
        parts = reads.parts
        for key, future in futures.items():
            if key not in values:
                future.set_exception(LookupError(f"the loader returned no value for {key!r}"))
                continue
            entry = _Entry(values[key], stored_at, parts)
            if category in PER_ACCOUNT:
                self._settle(category, key[1])  # a fill arrived meanwhile whose updates did not
            # Not stored when the key moved meanwhile, or a part already changed under the
            # composition: the callers get it, the next lookup reads or composes again.
            if self._epoch_of(key) == epochs[key] and self._parts_live(entry):
                keep = True
                if key in replays:  # the updates that came during the read, applied to it
                    rows = self._patched(category, entry.value, replays[key])
                    keep = rows is not None
                    if rows is not None:
                        entry = _Entry(rows, stored_at, parts)
                if keep:
                    self._stores[category][key] = entry
                self._patches.pop(key, None)  # queued for an entry before this read: in it or older
            future.set_result(entry)

    def _refresh_ahead(
        self, category: str, keys: tuple[CacheKey, ...], run: Callable[[], Awaitable[Mapping[CacheKey, Any]]]
    ) -> None:
        """Start the background re-read of ``keys`` (served meanwhile: see :meth:`_refresh_due`). It is
        an ordinary load (single flight, replay, counted as a load); nobody awaits it."""
        for key, future in self._start_load(category, keys, run).items():
            self._refreshing.add(key)
            future.add_done_callback(partial(self._refreshed, key))

    def _refreshed(self, key: CacheKey, future: asyncio.Future[_Entry]) -> None:
        """A background re-read ended: on a failure, back off before the next one."""
        self._refreshing.discard(key)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            self._refresh_after.pop(key, None)
            return
        self._refresh_after[key] = self.clock.monotonic() + _REFRESH_BACKOFF_S
        log.warning(
            "cache: background re-read of %r failed (%s: %s); serving the cached list, retry in %gs",
            key,
            type(exc).__name__,
            exc,
            _REFRESH_BACKOFF_S,
        )

    def _serves_stale(self, category: str, entry: _Entry) -> bool:
        """Whether ``entry`` is re-read ahead, served past its TTL: a patchable list (optimized)."""
        return (
            category in PATCHABLE and self.invalidation and isinstance(entry.value, list) and not entry.parts
        )

    def _stale_unpatched(self, category: str, key: CacheKey, entry: _Entry) -> bool:
        """A list re-read ahead, past its TTL, while its account's stream is not connected: no event
        keeps it fresh, so it is not served past its TTL (the refresh-ahead holds for a live stream)."""
        return (
            key[1] not in self._streaming
            and self._serves_stale(category, entry)
            and self.clock.monotonic() >= entry.stored_at + self._ttl[category]
        )

    def _refresh_due(self, category: str, key: CacheKey, entry: _Entry) -> bool:
        """Whether serving ``entry`` should start its background re-read: it is re-read ahead, past its
        TTL, no load of the key is in flight, no failed one is backing off, and no other background
        re-read is in flight (one at a time)."""
        if self._refreshing or not self._serves_stale(category, entry) or key in self._inflight:
            return False
        now = self.clock.monotonic()
        return now >= entry.stored_at + self._ttl[category] and now >= self._refresh_after.get(key, now)

    @contextmanager
    def _recording_into(self, reads: Reads) -> Iterator[None]:
        token = _RECORDING.set((*_RECORDING.get(), reads))
        try:
            yield
        finally:
            _RECORDING.reset(token)

    def _live(self, category: str, key: CacheKey) -> _Entry | None:
        """The key's entry if it is live: unexpired and, if composed, built from the parts still live."""
        if self._awaited and category in PER_ACCOUNT:
            self._settle(category, key[1])
        if key in self._patches:
            self._apply_patches(category, key)
        store = self._stores[category]
        entry = store.get(key)
        if entry is not None and self._stale_unpatched(category, key, entry):
            store.pop(key, None)  # past its TTL with no stream patching it: read it again, as any other
            return None
        if entry is not None and not self._parts_live(entry):
            store.pop(key, None)  # a part changed or expired: the composition is out of date
            self.meter.count(category, "invalidations")
            return None
        return entry

    def _parts_live(self, entry: _Entry) -> bool:
        # A part due for its re-read counts as gone: composing again looks it up, which starts it.
        return all(
            self._live(key[0], key) is part and not self._refresh_due(key[0], key, part)
            for key, part in entry.parts
        )

    # --- writes and freshness ----------------------------------------------------------------
    def put(self, key: CacheKey, value: Any) -> None:
        """Write ``value`` through into the cache (a fresher value than any load in flight)."""
        category = _category_of(key)
        self._key_epoch[key] = self._key_epoch.get(key, 0) + 1
        self._stores[category][key] = _Entry(value, self.clock.monotonic())
        self._patches.pop(key, None)  # updates queued for the value it replaces
        self.meter.count(category, "writes")

    def invalidate(self, category: str, account: Any | None = None) -> int:
        """Drop a category's entries (of one account, or all); returns how many were dropped."""
        _checked_category(category)
        store = self._stores[category]
        if account is None:
            self._category_epoch[category] += 1
            dropped = len(store)
            store.clear()
            for scope in [s for s in self._awaited if s[0] == category]:
                del self._awaited[scope]
            for key in [k for k in self._patches if k[0] == category]:
                del self._patches[key]
        else:
            scope = (category, account)
            self._account_epoch[scope] = self._account_epoch.get(scope, 0) + 1
            self._awaited.pop(scope, None)  # dropped: nothing of it is left to await updates for
            for key in [k for k in self._patches if k[0] == category and k[1] == account]:
                del self._patches[key]  # queued for entries gone: never applied to a new read
            doomed = [k for k in list(store.keys()) if k[1] == account]
            for key in doomed:
                store.pop(key, None)
            dropped = len(doomed)
        self.meter.count(category, "invalidations", dropped)
        return dropped

    def on_event(self, event: VenueEvent) -> None:
        """Keep the cache fresh on a venue event (optimized profile only; the baseline ignores them).

        Tickers and wallet updates carry the whole value and are written through; order and position
        updates are patched into the account's cached lists (:meth:`_patch`); a fill awaits the
        updates that follow it (:meth:`_await_fill`); each drops what :data:`EVENT_INVALIDATES` says.
        """
        if not self.invalidation:
            return
        if isinstance(event, Ticker):
            self.put(market_key(event.symbol), event)
            return
        if isinstance(event, StreamStatus):
            if event.connected:
                self._streaming.add(event.account)
            else:
                self._streaming.discard(event.account)
            if event.gap:  # events were lost: nothing of that account (or any price) can be trusted
                for category in sorted(PER_ACCOUNT):
                    self.invalidate(category, event.account)
                self.invalidate("full_dashboard")
                self.invalidate("market_data")
            return
        if isinstance(event, Wallet):
            self.put(account_key(event.account), event)
            self._confirm("account_data", event.account, event.account)
        elif isinstance(event, Order):
            self._patch("orders", event)
            self._confirm("orders", event.account, event.order_id)
        elif isinstance(event, Position):
            self._patch("positions", event)
            self._confirm("positions", event.account, event.symbol)
        else:
            self._await_fill(event)
        for category in EVENT_INVALIDATES.get(type(event), ()):
            self.invalidate(category, event.account if category in PER_ACCOUNT else None)

    def _patch(self, category: str, event: Order | Position) -> None:
        """Queue an order / position update for the account's cached lists that cover its symbol
        (applied at their next read: :meth:`_apply_patches`), and for the replay of such a list's
        load in flight."""
        store = self._stores[category]
        for key in ((category, event.account), (category, event.account, event.symbol)):
            if key in self._inflight:
                self._replays.setdefault(key, []).append(event)
            if key in store:
                queued = self._patches.setdefault(key, [])
                queued.append(event)
                if len(queued) >= _MAX_QUEUED:
                    self._apply_patches(category, key)

    def _apply_patches(self, category: str, key: CacheKey) -> None:
        """Apply the queued updates of ``key`` to its entry: a NEW list (the dashboard compares list
        identity to reuse its rows) that keeps the entry's LOAD time, so the TTL still brings a full
        read (the net under an update lost without a gap)."""
        events = self._patches.pop(key)
        store = self._stores[category]
        entry = store.get(key)
        if entry is None:  # expired meanwhile: the next read is a full one
            return
        rows = self._patched(category, entry.value, events)
        if rows is None:
            store.pop(key, None)
            self.meter.count(category, "invalidations")
        elif rows is not entry.value:
            store[key] = _Entry(rows, entry.stored_at)

    def _patched(self, category: str, rows: Any, events: list[Order | Position]) -> list[Any] | None:
        """``rows`` with ``events`` applied (:func:`_patched_rows`), each change counted as a write;
        None when ``rows`` is not a list of records (no venue read gives one): it cannot be kept."""
        if not isinstance(rows, list):
            return None
        patched, changes = _patched_rows(rows, events)
        self.meter.count(category, "writes", changes)
        return patched

    def _await_fill(self, fill: Execution) -> None:
        """Note what a fill changed that its updates must still patch: its order (none for a funding
        row), its symbol's position, the wallet. Each update clears its part (:meth:`_confirm`); a
        read of a list that still awaits one drops the account's lists of it first (:meth:`_settle`),
        as a fill dropped them before: so a fill that comes alone (from the execution poll) is not
        hidden. Noted only where something is cached or loading that the fill could make stale."""
        account, symbol = fill.account, fill.symbol
        awaits = (
            ("orders", fill.order_id, (("orders", account), ("orders", account, symbol))),
            ("positions", symbol, (("positions", account), ("positions", account, symbol))),
            ("account_data", account, (account_key(account),)),
        )
        for category, token, keys in awaits:
            store = self._stores[category]
            if not token or not any(k in store or k in self._inflight for k in keys):
                continue
            awaited = self._awaited.setdefault((category, account), set())
            awaited.add(token)
            if len(awaited) > _MAX_AWAITED:
                self._settle(category, account)

    def _confirm(self, category: str, account: Any, token: Any) -> None:
        """An update arrived that a fill of ``account`` may await."""
        awaited = self._awaited.get((category, account))
        if awaited is not None:
            awaited.discard(token)
            if not awaited:
                del self._awaited[(category, account)]

    def _settle(self, category: str, account: Any) -> None:
        """Drop the account's entries of ``category`` if a fill still awaits an update of them."""
        if self._awaited.pop((category, account), None):
            self.invalidate(category, account)

    def _epoch_of(self, key: CacheKey) -> tuple[int, int, int]:
        category = key[0]
        return (
            self._category_epoch[category],
            self._account_epoch.get((category, key[1]), 0),
            self._key_epoch.get(key, 0),
        )

    def _expires_at(self, key: CacheKey, entry: _Entry, now: float) -> float:
        ttl = self._ttl[key[0]]
        # A list re-read ahead stays in the store past its TTL, up to the hard limit.
        return entry.stored_at + (ttl * _STALE_LIMIT if self._serves_stale(key[0], entry) else ttl)

    # --- state the metrics report ------------------------------------------------------------
    def entries(self, category: str) -> int:
        """Live (unexpired) entries of a category."""
        return len(self._stores[_checked_category(category)])

    def oldest_age_s(self, category: str) -> float | None:
        """Age of the category's oldest live entry, or None when it is empty."""
        store = self._stores[_checked_category(category)]
        # Read past TLRUCache's own access (a timer context and an LRU move per entry: a thousand
        # tickers at every snapshot), once the expired entries are dropped, as len() drops them.
        with store.timer as now:
            store.expire(now)
            raw = Cache.__getitem__
            stamps = [raw(store, key).stored_at for key in Cache.__iter__(store)]
        return self.clock.monotonic() - min(stamps) if stamps else None

    def metrics(self) -> CacheSection:
        """The snapshot's ``cache`` section (JSON-ready)."""
        return self.meter.section(self)

    async def log_metrics(self) -> None:
        """Log the hit rates while metrics are on (a scheduler job every ``log_interval_s``)."""
        await self.meter.log_once()

    async def close(self) -> None:
        """Cancel the loads still in flight (at engine stop)."""
        for task in list(self._load_tasks):
            task.cancel()
        await asyncio.gather(*self._load_tasks, return_exceptions=True)


def _load_one(
    key: CacheKey, loader: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[dict[CacheKey, Any]]]:
    """``loader`` (the value of one key) as a load run (the values of its keys)."""

    async def load_one() -> dict[CacheKey, Any]:
        return {key: await loader()}

    return load_one


_ORDER_FIELDS = (attrgetter("order_id"), attrgetter("updated"))
_POSITION_FIELDS = (attrgetter("symbol", "position_idx"), attrgetter("ts"))
"""What an update replaces (the order of the same id; the position of the same symbol and index) and
the record's venue time."""


def _is_open(record: Order | Position) -> bool:
    return record.status.is_open if isinstance(record, Order) else record.is_open


def _patched_rows(rows: list[Any], events: Sequence[Order | Position]) -> tuple[list[Any], int]:
    """``rows`` with order / position updates applied (a :class:`~engine.core.revision.Revision` of
    it, which tells its reader what changed), and how many records changed.

    Each record ends as the newest version of it (``updated`` / ``ts``; a tie goes to the later
    update) among the row held and the updates: a late delivery, or an update the read already
    shows, changes nothing. The newest replaces the row while open and removes it once not; an open
    record not held is added at the end (open orders are listed oldest first). Closed positions
    stay out, as the venues list only open ones. ``rows`` itself (not a copy) when nothing changed:
    the dashboard reuses the rows of a list it has seen. One pass over ``rows``, for any number of
    updates."""
    if not events:
        return rows, 0
    identity_of, updated_of = _ORDER_FIELDS if isinstance(events[0], Order) else _POSITION_FIELDS
    newest: dict[Any, Order | Position] = {}
    for event in events:
        ident = identity_of(event)
        seen = newest.get(ident)
        if seen is None or updated_of(seen) <= updated_of(event):
            newest[ident] = event
    # The rows an update is for, found in C (a few among thousands of orders): only they are visited.
    idents = list(map(identity_of, rows))
    hits = list(compress(range(len(rows)), map(newest.__contains__, idents)))
    out = list(rows)
    dropped: list[int] = []
    changes: dict[Any, tuple[Any, Any]] = {}  # identity -> (the row, the update), for the Revision
    for at in hits:
        ident = idents[at]
        update = newest.pop(ident, None)
        if update is None:  # a second row of the same record: the update went to the first
            continue
        row = rows[at]
        if updated_of(row) > updated_of(update) or update == row:
            continue  # older, or the same record again: the row object kept (its display row reused)
        if _is_open(update):
            out[at] = update
            changes[ident] = (row, update)
        else:
            dropped.append(at)
            changes[ident] = (row, None)
    if dropped:
        kept = [True] * len(out)
        for at in dropped:
            kept[at] = False
        out = list(compress(out, kept))
    for ident, update in newest.items():
        if _is_open(update):
            out.append(update)
            changes[ident] = (None, update)
    return (Revision(out, rows, changes), len(changes)) if changes else (rows, 0)


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
