"""The dashboard snapshot: one immutable, JSON-serialisable picture of the engine, built through the
:class:`~engine.dashboard.cache.DashboardCache`.

The console renders it, ``run --headless --snapshot-out`` writes it, the benchmark measures how long
it takes to build. Its keys are pinned in ``shared/CONTRACTS.md`` and typed in
:mod:`engine.dashboard.schema`; every key is present in every snapshot, so scripts can rely on it.

How a snapshot is read depends on the profile, so both behaviours can be compared live:

- ``api_batching`` optimized: one read per account serves every symbol (positions, open orders) and
  one ticker read serves every symbol, and independent loaders run concurrently; baseline: one read
  per symbol, one after another, as the original bot did.
- ``cache_ttls`` optimized: the full-dashboard entry is checked first, so a hit costs no venue read;
  it is a composed entry (:meth:`~engine.dashboard.cache.DashboardCache.get_or_compose`), rebuilt
  from the cached parts whenever one of them changed. The positions are marked to the market
  section's prices (one source for every price on screen, written through by the ticker stream) and
  each account's uPnL is the sum of its positions'. Baseline: as the original, every piece is fetched
  (through its own cache entry) before the full-dashboard entry is checked, a hit there returns the
  older composed view, and positions show the mark of their own (older) read.

``data_age`` says how old the venue data shown is (see :class:`~engine.dashboard.schema.DataAge`).

Sections held in this process (monitors, ledger, persistence, API counters, alerts, cache metrics,
profile) are read fresh at every snapshot; only venue data, the ledger's statistics (``stats`` and
the ``statistics`` views, one entry of the ``stats`` category) and the insights go through the cache.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import chain
from operator import attrgetter, itemgetter
from types import MappingProxyType
from typing import Any, TypeVar, cast

from engine.alerts.bus import AlertBus
from engine.alerts.delivery import AlertDeliverySection
from engine.alerts.delivery import disabled_section as disabled_delivery
from engine.alerts.price import PriceAlertManager
from engine.core.clock import Clock, iso_utc, yield_to_loop
from engine.core.link_ids import purpose_of
from engine.core.models import (
    Execution,
    Instrument,
    Order,
    Position,
    StreamStatus,
    Ticker,
    VenueEvent,
    Wallet,
    round_to_step,
)
from engine.core.profile import Mode, Profile
from engine.core.read_only import read_only
from engine.core.row_memo import SortedRows
from engine.core.settings import Settings
from engine.dashboard.cache import (
    CATEGORIES,
    SHARED,
    CacheKey,
    DashboardCache,
    Reads,
    account_key,
    market_key,
)
from engine.dashboard.insights import InsightsProvider, NotesDue
from engine.dashboard.schema import (
    SNAPSHOT_KEYS,
    AccountRow,
    AlertRow,
    DataAge,
    InsightRow,
    LedgerSection,
    MarketRow,
    MonitorRow,
    OrderRow,
    PersistenceRow,
    PositionRow,
    Snapshot,
    StatisticsSection,
    StreamRow,
    Totals,
    VenuePositionRow,
)
from engine.dashboard.statistics import StatisticsBook
from engine.dashboard.stats_period import StatsPeriod
from engine.mirror.follower import MirrorSection, disabled_section
from engine.trading.manager import TpslManager
from engine.venue.base import Venue
from engine.venue.errors import VenueError
from engine.venue.gateway import VenueGateway
from engine.venue.priority import Priority, call_priority
from persistence.store import Store

T = TypeVar("T")

CACHE_CATEGORIES = CATEGORIES
"""The cache categories the snapshot's ``cache`` section lists."""
ALERTS_SHOWN = 50
"""The latest alerts a snapshot carries (the console's alerts pane shows as many)."""
FULL_KEY: CacheKey = ("full_dashboard", SHARED)
INSIGHTS_KEY: CacheKey = ("ai_insights", SHARED)
STATS_KEY: CacheKey = ("stats", SHARED)
PERSISTENCE_TIMES = ("last_flush", "last_compaction")
"""The store's metrics that are epoch times; the contract has every time as ISO 8601 UTC."""
_MONEY_DECIMALS = 4
VENUE_DATA = ("account_data", "positions", "orders", "market_data")
"""The cache categories that hold what the venue said (``data_age`` reports their age)."""
DataTimes = Mapping[tuple[str, Any], float]
"""Per ``(category, account)`` (``SHARED`` for market data), when the oldest data shown of it was
stored: clock monotonic time (see :meth:`~engine.dashboard.cache.Reads.data_at`)."""


@dataclass(frozen=True, slots=True)
class DashboardSnapshot:
    """An immutable snapshot: ``data`` is the :class:`~engine.dashboard.schema.Snapshot`, frozen
    (read-only mappings, tuples for lists), with exactly :data:`SNAPSHOT_KEYS`."""

    data: Snapshot

    def to_json(self, indent: int | None = 2) -> str:
        """Canonical JSON (sorted keys) so identical states give byte-identical files."""
        return json.dumps(self.data, indent=indent, sort_keys=True, default=_frozen_default)

    def __getitem__(self, key: str) -> Any:
        """A section by name (for scripts and tests; typed code reads ``data``)."""
        sections: Mapping[str, Any] = self.data
        return sections[key]


def _frozen_default(value: object) -> object:
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


_LEAVES = frozenset({str, int, float, bool, type(None)})
"""The types most of a snapshot's values have: returned as they are before any (slow, ABC) check."""

FREEZE_ROWS = 250
"""Rows of a long section (positions, orders, monitors) frozen between two turns of the loop."""


_FROZEN_ITEMS = _LEAVES | {MappingProxyType}
"""What a sequence's items may be for the sequence to freeze as a mere tuple of them: a long section's
rows are read-only where built, and telling so of three thousand takes one pass in C, not a call each."""


def _rows_frozen(rows: Sequence[Any]) -> bool:
    return set(map(type, rows)) <= _FROZEN_ITEMS


def _freeze(value: object) -> object:
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is MappingProxyType:  # built read-only (engine.core.read_only): already frozen
        return value
    if kind is dict or isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in cast(Mapping[Any, Any], value).items()})
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        items = cast(Sequence[Any], value)
        return tuple(items) if _rows_frozen(items) else tuple([_freeze(v) for v in items])
    return value


def _check_keys(data: Snapshot) -> None:
    missing = [k for k in SNAPSHOT_KEYS if k not in data]
    if missing:  # only reachable from untyped callers; mypy sees to the rest
        raise ValueError(f"snapshot lacks keys: {', '.join(missing)}")


def freeze(data: Snapshot) -> DashboardSnapshot:
    """Wrap a snapshot as an immutable :class:`DashboardSnapshot` (a deep, read-only copy)."""
    _check_keys(data)
    # The frozen copy has the snapshot's shape; only the container types became read-only ones.
    return DashboardSnapshot(cast(Snapshot, _freeze(data)))


async def freeze_yielding(
    data: Snapshot, turn: Callable[[], Awaitable[None]] = yield_to_loop
) -> DashboardSnapshot:
    """:func:`freeze`, awaiting ``turn`` (the engine's precedence: see :mod:`engine.core.precedence`)
    every :data:`FREEZE_ROWS` rows of a long section: the snapshot is built on the engine's loop,
    and a fill that arrives meanwhile is decided between two chunks rather than after a whole
    thousand-position copy."""
    _check_keys(data)
    frozen: dict[str, object] = {}
    for key, section in data.items():
        if type(section) is not list or len(section) <= FREEZE_ROWS or _rows_frozen(section):
            frozen[key] = _freeze(section)  # a section of read-only rows: a tuple of them, at once
            continue
        rows: list[object] = []
        for start in range(0, len(section), FREEZE_ROWS):
            await turn()
            rows += [_freeze(row) for row in section[start : start + FREEZE_ROWS]]
        frozen[key] = tuple(rows)
    return DashboardSnapshot(cast(Snapshot, MappingProxyType(frozen)))


# --- the rows (pure) -------------------------------------------------------------------------------


def _money(value: float) -> float:
    return round(value, _MONEY_DECIMALS)


def account_row(
    wallet: Wallet, positions: int, orders: int, unreachable: str | None = None, upnl: float | None = None
) -> AccountRow:
    """The ``accounts.<name>`` entry (``unreachable`` when these are the last figures read).

    ``upnl``: the account's uPnL at newer marks than the wallet's read (the sum of its positions
    shown); the equity moves with it, since it is the wallet balance plus the uPnL.
    """
    equity = wallet.equity if upnl is None else wallet.equity - wallet.upnl + upnl
    row: AccountRow = {
        "equity": _money(equity),
        "available": _money(wallet.available),
        "upnl": _money(wallet.upnl if upnl is None else upnl),
        "positions": positions,
        "orders": orders,
    }
    if unreachable is not None:
        row["unreachable"] = unreachable
    return row


_on_step = lru_cache(maxsize=1 << 14)(round_to_step)
""":func:`~engine.core.models.round_to_step` (a pure function), remembered: it rounds in Decimal
(microseconds a value), and a position's record sent again with a new mark has the same entry price
and size, a main position and its mirror's the same mark. Called with positional arguments only."""


def _on_tick(value: float, instrument: Instrument | None) -> float:
    """``instrument.round_price(value)`` (nearest tick), remembered; ``value`` as it is without one."""
    if instrument is None:
        return value
    if not value:  # 0.0 and -0.0 are one key to the memo, and round to zeros of their own sign
        return instrument.round_price(value)
    return _on_step(value, instrument.tick_size, "nearest")


def _on_qty_step(value: float, instrument: Instrument | None) -> float:
    """``instrument.round_qty(value)`` (down to the step), remembered; ``value`` as it is without one."""
    if instrument is None:
        return value
    if not value:
        return instrument.round_qty(value)
    return _on_step(value, instrument.qty_step, "down")


def position_row(position: Position, instrument: Instrument | None) -> VenuePositionRow:
    """The venue's part of a ``positions[]`` entry, prices rounded to the instrument's tick and sizes
    to its step."""
    mark, upnl = _venue_marked(position, instrument)
    return {
        "account": position.account,
        "symbol": position.symbol,
        "side": position.side.value if position.side else None,
        "size": _on_qty_step(position.size, instrument),
        "entry_price": _on_tick(position.entry_price, instrument),
        "mark_price": mark,
        "upnl": upnl,
    }


def _venue_marked(position: Position, instrument: Instrument | None) -> tuple[float, float]:
    """The figures of a :func:`position_row` that move with the venue's mark: the mark (at the tick)
    and the uPnL."""
    return _on_tick(position.mark_price, instrument), _money(position.upnl)


def marked_to(row: VenuePositionRow, mark: float, instrument: Instrument | None) -> VenuePositionRow:
    """The position row at a newer ``mark`` (rounded to the tick), its uPnL recomputed at that mark."""
    price, upnl = _marked(row, mark, instrument)
    return {**row, "mark_price": price, "upnl": upnl}


def _marked(row: VenuePositionRow, mark: float, instrument: Instrument | None) -> tuple[float, float]:
    """The mark price (rounded to the tick) and uPnL of ``row`` at ``mark``."""
    price = _on_tick(mark, instrument)
    return price, _upnl(price, row["entry_price"], row["size"], -1.0 if row["side"] == "Sell" else 1.0)


def _upnl(price: float, entry: float, size: float, direction: float) -> float:
    """A position's uPnL at ``price`` (``direction``: 1.0 long, -1.0 short), to the cent's hundredth."""
    return _money((price - entry) * size * direction)


def accounts_at(view: AccountView, rows: Iterable[VenuePositionRow]) -> dict[str, AccountRow]:
    """The view's accounts with each uPnL the sum of that account's position ``rows``, as shown."""
    upnl: dict[str, float] = {}
    for row in rows:
        upnl[row["account"]] = upnl.get(row["account"], 0.0) + row["upnl"]
    return {
        name: account_row(
            view.wallets[name],
            acct["positions"],
            acct["orders"],
            acct.get("unreachable"),
            upnl.get(name, 0.0),
        )
        if name in view.wallets
        else acct
        for name, acct in view.accounts.items()
    }


def position_rows(
    view: AccountView,
    marks: Mapping[tuple[str, str], float],
    monitors: Mapping[tuple[str, str, str | None], MonitorRow],
    instruments: Mapping[str, Instrument],
    kept: PositionRows | None = None,
) -> list[PositionRow]:
    """The ``positions`` section: the view's rows at ``marks`` ((account, symbol) -> mark, where one
    is to be shown) with their ``monitors`` (by (account, symbol, side)). With ``kept``, the rows are
    made from the last build's where they can be (:class:`PositionRows`): the same rows."""
    if kept is not None:
        return kept.rows(view, marks, monitors, instruments)
    rows: list[PositionRow] = []
    for row in view.position_rows:
        account, symbol, side = row["account"], row["symbol"], row["side"]
        mark = marks.get((account, symbol))
        rows.append(_shown_position_row(row, mark, monitors.get((account, symbol, side)), instruments))
    return rows


class _KeptPosition:
    """A position's row as the last build made it (changed in place from one build to the next): the
    venue row last seen, the monitor row it joins, the instrument that rounds its mark, the two
    joined (a dict handed out only read-only) and the venue row that was made of, the mark shown and
    the row shown; and, made once, the keys it is looked up by and the figures its uPnL is made of."""

    __slots__ = (
        "direction",
        "entry",
        "instrument",
        "joined",
        "joined_of",
        "key",
        "mark",
        "mark_key",
        "monitor",
        "row",
        "shown",
        "size",
    )

    def __init__(
        self, row: VenuePositionRow, monitor: MonitorRow | None, instrument: Instrument | None
    ) -> None:
        self.row = self.joined_of = row
        self.key: tuple[str, str, str | None] = (row["account"], row["symbol"], row["side"])
        self.mark_key = (row["account"], row["symbol"])
        self.monitor, self.instrument = monitor, instrument
        self.joined = self.shown = with_monitor(row, monitor)  # the row at the venue's mark
        self.mark: float | None = None
        self.entry, self.size = row["entry_price"], row["size"]
        self.direction = -1.0 if row["side"] == "Sell" else 1.0


class PositionRows:
    """The ``positions`` section from one build to the next (:func:`position_rows` with ``kept``).

    At a thousand positions every mark moves at every tick, so a build makes most rows again: each
    row keeps its venue row joined with its monitor row, and a new mark costs a copy of that with two
    figures set. A row whose venue row, monitor row and mark are the ones of the last build is that
    build's row. A row shown at a mark shows none of the venue's own mark and uPnL, only its size and
    entry price: a position update that moved the venue's mark of every position changes none of
    those rows while the market's marks are the same. Rows of positions no longer listed are dropped.

    A venue row the last build saw (the account view keeps them from one build to the next) is found
    by its identity: a build makes no key and reads no field of the thousands that did not change.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str | None], _KeptPosition] = {}
        # The same, by the id of the venue row each last saw (and holds: no id is reused meanwhile).
        self._by_row: dict[int, _KeptPosition] = {}

    def rows(
        self,
        view: AccountView,
        marks: Mapping[tuple[str, str], float],
        monitors: Mapping[tuple[str, str, str | None], MonitorRow],
        instruments: Mapping[str, Instrument],
    ) -> list[PositionRow]:
        """This build's section (see the class)."""
        rows: list[PositionRow] = []
        for _ in self._made(view, marks, monitors, instruments, rows):
            pass
        return rows

    async def rows_yielding(
        self,
        view: AccountView,
        marks: Mapping[tuple[str, str], float],
        monitors: Mapping[tuple[str, str, str | None], MonitorRow],
        instruments: Mapping[str, Instrument],
        turn: Callable[[], Awaitable[None]],
    ) -> list[PositionRow]:
        """:meth:`rows`, awaiting ``turn`` (the engine's precedence) every :data:`FREEZE_ROWS` rows:
        at a thousand positions at new marks the section is tens of ms of the engine's loop, and a
        fill that arrives meanwhile is decided between two chunks, not after the whole section."""
        rows: list[PositionRow] = []
        for _ in self._made(view, marks, monitors, instruments, rows):
            await turn()
        return rows

    def _made(
        self,
        view: AccountView,
        marks: Mapping[tuple[str, str], float],
        monitors: Mapping[tuple[str, str, str | None], MonitorRow],
        instruments: Mapping[str, Instrument],
        rows: list[PositionRow],
    ) -> Iterator[None]:
        """Append this build's rows to ``rows``, pausing (a ``None``) after every :data:`FREEZE_ROWS`
        of them. Each kept row is changed in place, its mark and row together, so a build that
        another one overtakes at a pause still makes each of its rows from what it reads then."""
        last, by_row = self._last, self._by_row
        following: dict[tuple[str, str, str | None], _KeptPosition] = {}
        append, mark_of, monitor_of, instrument_of = rows.append, marks.get, monitors.get, instruments.get
        pause = FREEZE_ROWS
        for row in view.position_rows:
            if not pause:
                yield None
                pause = FREEZE_ROWS
            pause -= 1
            kept = by_row.get(id(row))
            if kept is None or kept.row is not row:  # a venue row the last build did not see
                kept = last.get((row["account"], row["symbol"], row["side"]))
                if kept is not None:
                    kept.row = row
            if kept is None or kept.monitor is not monitor_of(kept.key):
                key = (row["account"], row["symbol"], row["side"])
                kept = _KeptPosition(row, monitor_of(key), instrument_of(row["symbol"]))
            elif kept.instrument is not instrument_of(kept.key[1]):
                kept = _KeptPosition(row, kept.monitor, instrument_of(kept.key[1]))
            mark = mark_of(kept.mark_key)
            if kept.joined_of is not row and (
                mark is None or row["size"] != kept.size or row["entry_price"] != kept.entry
            ):  # holds something else, or is shown at the venue's own mark: joined again
                kept = _KeptPosition(row, kept.monitor, kept.instrument)
            if mark is None:
                if kept.mark is not None:  # shown at a mark last time: at the venue's now
                    kept.mark, kept.shown = None, kept.joined
            elif kept.mark != mark:
                full = kept.joined.copy()
                price = _on_tick(mark, kept.instrument)
                full["mark_price"] = price  # keys keep their place: the row's order is as marked_to's
                full["upnl"] = _upnl(price, kept.entry, kept.size, kept.direction)
                kept.mark, kept.shown = mark, read_only(full)
            following[kept.key] = kept
            append(kept.shown)
        self._last = following
        self._by_row = {id(kept.row): kept for kept in following.values()}


def _shown_position_row(
    row: VenuePositionRow,
    mark: float | None,
    monitor: MonitorRow | None,
    instruments: Mapping[str, Instrument],
) -> PositionRow:
    """:func:`with_monitor` of the row :func:`marked_to` ``mark`` (when there is one to show), made
    as one dict (at a thousand positions, hundreds of rows move with the market at every refresh)."""
    if mark is None:
        return with_monitor(row, monitor)
    return with_monitor(row, monitor, _marked(row, mark, instruments.get(row["symbol"])))


def data_age(
    data_at: DataTimes,
    now: float,
    streams: Mapping[str, StreamRow],
    market_account: str | None,
    event_fresh: bool,
) -> DataAge:
    """How old the venue data shown is (pure): ``now`` minus when each piece was stored, per category.

    With ``event_fresh`` (the optimized profile: events invalidate or write through what they
    change), data of an account whose push stream is connected is no older than that stream's last
    event: any change would have come through it. Market data goes by ``market_account``'s stream.
    """
    ages: dict[str, float] = {}
    for (category, account), stored_at in data_at.items():
        if category not in VENUE_DATA:
            continue
        age = max(0.0, now - stored_at)
        owner = market_account if account == SHARED else account
        stream = streams.get(owner) if event_fresh and owner is not None else None
        if stream is not None and stream_live(streams, owner):
            age = min(age, stream["last_event_age_s"] or 0.0)
        ages[category] = max(age, ages.get(category, 0.0))
    return {
        "account_data": _age(ages.get("account_data")),
        "positions": _age(ages.get("positions")),
        "orders": _age(ages.get("orders")),
        "market_data": _age(ages.get("market_data")),
        "oldest": _age(max(ages.values(), default=None)),
    }


def stream_live(streams: Mapping[str, StreamRow], account: str | None) -> bool:
    """Whether ``account``'s push stream is connected and has delivered an event."""
    stream = streams.get(account) if account is not None else None
    return stream is not None and stream["connected"] and stream["last_event_age_s"] is not None


def _age(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def with_monitor(
    row: VenuePositionRow, monitor: MonitorRow | None, marked: tuple[float, float] | None = None
) -> PositionRow:
    """A position row (read-only) with its monitor's phase, TPs filled, SL, breakeven flag and
    urgency (None for a position no monitor manages); ``marked``: its mark price and uPnL at a newer
    mark than the row's (see :func:`marked_to`)."""
    full: PositionRow
    if monitor is None:
        full = {
            **row,
            "phase": None,
            "tps_filled": None,
            "sl_price": None,
            "breakeven": None,
            "urgency": None,
        }
    else:
        full = {
            **row,
            "phase": monitor["phase"],
            "tps_filled": monitor["tps_filled"],
            "sl_price": monitor["sl_price"],
            "breakeven": monitor["breakeven"],
            "urgency": monitor["urgency"],
        }
    if marked is not None:  # keys already there keep their place: the row's order is as marked_to's
        full["mark_price"], full["upnl"] = marked
    return read_only(full)


def order_row(order: Order, purpose: str | None) -> OrderRow:
    """One ``orders[]`` entry (read-only); ``purpose`` is None for orders that are not ours."""
    row: OrderRow = {
        "account": order.account,
        "symbol": order.symbol,
        "side": order.side.value,
        "order_type": order.order_type.value,
        "qty": order.qty,
        "price": order.price,
        "trigger_price": order.trigger_price,
        "reduce_only": order.reduce_only,
        "link_id": order.link_id,
        "purpose": purpose,
        "status": order.status.value,
    }
    return read_only(row)


def market_row(ticker: Ticker, instrument: Instrument | None = None) -> MarketRow:
    """The ``market.<symbol>`` entry; with the instrument, its tick size and qty step, so the console
    shows every price of the symbol at the tick's decimals (a column of them lines up)."""
    row: MarketRow = {"last": ticker.last, "mark": ticker.mark}
    if instrument is not None:
        row["tick_size"] = instrument.tick_size
        row["qty_step"] = instrument.qty_step
    return read_only(row)


def persistence_row(metrics: Mapping[str, Any]) -> PersistenceRow:
    """The store's metrics with its epoch times as ISO 8601 UTC strings, as the contract has all times."""
    row = dict(metrics)
    for key in PERSISTENCE_TIMES:
        if isinstance(row.get(key), int | float):
            row[key] = iso_utc(row[key])
    # Store.metrics() is an untyped mapping (the store knows nothing of the engine's schema).
    return cast(PersistenceRow, row)


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """The ``stats`` cache entry: the whole ledger's totals (``stats``) and the period's views
    (``statistics``), computed together from one read of the ledger."""

    totals: Totals
    statistics: StatisticsSection


@dataclass(frozen=True, slots=True)
class AccountRead:
    """One account's read: its wallet, positions and orders, and when each was stored."""

    wallet: Wallet
    positions: list[Position]
    orders: list[Order]
    data_at: DataTimes


@dataclass(frozen=True, slots=True)
class AccountView:
    """What the venues said about the accounts (the full_dashboard entry): records and their rows."""

    wallets: Mapping[str, Wallet]
    positions: tuple[Position, ...]
    orders: tuple[Order, ...]
    accounts: Mapping[str, AccountRow]
    position_rows: tuple[VenuePositionRow, ...]
    order_rows: tuple[OrderRow, ...]
    data_at: DataTimes = field(default_factory=dict)
    """When the data of each (category, account) in this view was stored (see :data:`DataTimes`)."""
    symbols: frozenset[str] = frozenset()
    """Symbols with an open position or a working order (each part's, gathered once per view:
    every snapshot asks it, twice)."""


@dataclass(frozen=True, slots=True)
class AccountPart:
    """One account's open positions and orders, sorted as the snapshot lists them, with their rows:
    what :func:`account_view` puts together, one account after another."""

    positions: tuple[Position, ...]
    orders: tuple[Order, ...]
    position_rows: tuple[VenuePositionRow, ...]
    order_rows: tuple[OrderRow, ...]
    symbols: frozenset[str] = frozenset()
    """The symbols of its positions and orders."""


def _symbols_of(positions: Iterable[Position], orders: Iterable[Order]) -> frozenset[str]:
    return frozenset(map(_symbol, positions)).union(map(_symbol, orders))


# Sort keys, read in C. A side is a StrEnum: it sorts as its value (an open position has a side).
_monitor_join = itemgetter("account", "symbol", "side")
"""A monitor row's (account, symbol, side): the position row it joins."""
_position_order = attrgetter("account", "symbol", "side")
_order_order = attrgetter("account", "symbol", "link_id", "side", "order_id")
_order_id = attrgetter("order_id")
_position_slot = attrgetter("symbol", "position_idx")
_symbol = attrgetter("symbol")
_is_open = attrgetter("is_open")


def _same_holding(before: Position, after: Position) -> bool:
    """``after`` holds what ``before`` held (account, side, size, a non-zero entry price): its
    :func:`position_row` differs from ``before``'s in its mark and uPnL alone."""
    return (
        after.side is before.side
        and after.size == before.size
        and after.entry_price == before.entry_price
        and after.entry_price != 0.0
        and after.account == before.account
    )


def _our_order_row(order: Order) -> OrderRow:
    """:func:`order_row` with the purpose its link id says."""
    return order_row(order, purpose_of(order.link_id))


def account_part(
    positions: Iterable[Position],
    orders: Iterable[Order],
    instruments: Mapping[str, Instrument],
    rows: _AccountRows | None = None,
) -> AccountPart:
    """One account's part of the view: its open positions and its orders, sorted, and their rows
    (pure without ``rows``; :class:`AccountParts` passes the account's, kept from its last part)."""
    if rows is not None:
        return rows.part(positions, orders, instruments)
    open_positions = sorted((p for p in positions if p.is_open), key=_position_order)
    sorted_orders = sorted(orders, key=_order_order)
    return AccountPart(
        positions=tuple(open_positions),
        orders=tuple(sorted_orders),
        position_rows=tuple(position_row(p, instruments.get(p.symbol)) for p in open_positions),
        order_rows=tuple(_our_order_row(o) for o in sorted_orders),
        symbols=_symbols_of(open_positions, sorted_orders),
    )


class _AccountRows:
    """One account's positions and orders, kept sorted with their rows from one part to the next
    (:class:`~engine.core.row_memo.SortedRows`): the cache applies an order or position event to its
    list as a new list holding the same records but the one changed, so a part rebuilt for a few
    changed orders of three thousand sorts nothing and builds a few rows."""

    def __init__(self) -> None:
        self._instruments: Mapping[str, Instrument] = {}
        # each slot's last position and its row (a row derived from it is made at the same tick);
        # one per symbol ever held, emptied with the instruments
        self._rows_made: dict[object, tuple[Position, VenuePositionRow]] = {}
        self._positions = self._position_section()
        self._orders: SortedRows[Order, OrderRow] = SortedRows(
            _order_order, _order_id, _our_order_row, tally=_symbol
        )
        self._built_before = self._sorts_before = 0  # by the position sections a new instrument ended
        self._positions_read: object = None
        self._positions_shown: tuple[list[Position], list[VenuePositionRow]] = ([], [])

    @property
    def built(self) -> int:
        """Rows built (not reused) so far."""
        return self._built_before + self._positions.built + self._orders.built

    @property
    def sorts(self) -> int:
        """Whole sorts so far (see :attr:`~engine.core.row_memo.SortedRows.sorts`)."""
        return self._sorts_before + self._positions.sorts + self._orders.sorts

    def _position_row(self, position: Position) -> VenuePositionRow:
        """:func:`position_row`; a position read again as it was but for its mark and uPnL (every
        TTL re-read of a thousand positions) is the last row with those two figures set."""
        instrument = self._instruments.get(position.symbol)
        slot = _position_slot(position)
        last = self._rows_made.get(slot)
        if last is not None and _same_holding(last[0], position):
            mark, upnl = _venue_marked(position, instrument)
            row: VenuePositionRow = {**last[1], "mark_price": mark, "upnl": upnl}
        else:
            row = position_row(position, instrument)
        self._rows_made[slot] = (position, row)
        return row

    def _position_section(self) -> SortedRows[Position, VenuePositionRow]:
        return SortedRows(_position_order, _position_slot, self._position_row, _is_open, tally=_symbol)

    def part(
        self, positions: Iterable[Position], orders: Iterable[Order], instruments: Mapping[str, Instrument]
    ) -> AccountPart:
        """:func:`account_part` of these reads, the rows of the records kept since the last part
        reused. A new instrument (its tick rounds a position's prices) makes every position row anew."""
        if len(instruments) != len(self._instruments):  # only ever added: the count says if one was
            self._instruments = dict(instruments)
            self._rows_made.clear()  # made at the old ticks
            self._built_before += self._positions.built
            self._sorts_before += self._positions.sorts
            self._positions = self._position_section()
            self._positions_read = None
        # The very list read last time (the cache's lists are never changed in place, as
        # AccountParts has it): its section as it was, not a pass over a thousand positions again.
        if positions is not self._positions_read:
            self._positions_read, self._positions_shown = positions, self._positions.update(positions)
        open_positions, position_rows = self._positions_shown
        sorted_orders, order_rows = self._orders.update(orders)
        return AccountPart(
            positions=tuple(open_positions),
            orders=tuple(sorted_orders),
            position_rows=tuple(position_rows),
            order_rows=tuple(order_rows),
            # counted as the sections change: a pass over thousands of records was 1-2 ms a part
            symbols=frozenset(cast(set[str], self._positions.tallies.keys() | self._orders.tallies.keys())),
        )


class AccountParts:
    """The last :class:`AccountPart` of each account, rebuilt only when what it is made of changed.

    The composed view is rebuilt whenever any of its entries changed (a wallet update, one account's
    order): the part of an account whose positions and orders are the very lists read before (the
    same cache entries), with no instrument learnt since, is the same part, and is reused as it is.
    A part that is rebuilt keeps the rows of the records that did not change (:class:`_AccountRows`).
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[object, object, int, AccountPart]] = {}
        self._rows: dict[str, _AccountRows] = {}

    @property
    def built(self) -> int:
        """Position and order rows built (not reused) so far, over every account."""
        return sum(rows.built for rows in self._rows.values())

    @property
    def sorts(self) -> int:
        """Passes that sorted an account's positions or orders whole (not placed the changed ones)."""
        return sum(rows.sorts for rows in self._rows.values())

    def part(
        self,
        account: str,
        positions: Sequence[Position],
        orders: Sequence[Order],
        instruments: Mapping[str, Instrument],
    ) -> AccountPart:
        """``account``'s part of these reads (the last one when they are the same lists)."""
        # Instruments are only ever added (never replaced): their count says whether any was learnt.
        last = self._last.get(account)
        if last is not None and last[0] is positions and last[1] is orders and last[2] == len(instruments):
            return last[3]
        rows = self._rows.get(account)
        if rows is None:  # made once: setdefault's default would be made (and dropped) at every part
            rows = self._rows[account] = _AccountRows()
        part = account_part(positions, orders, instruments, rows)
        self._last[account] = (positions, orders, len(instruments), part)
        return part


def account_view(
    wallets: Mapping[str, Wallet],
    positions: Mapping[str, Sequence[Position]],
    orders: Mapping[str, Sequence[Order]],
    instruments: Mapping[str, Instrument],
    unreachable: Mapping[str, str] | None = None,
    data_at: DataTimes | None = None,
    parts: AccountParts | None = None,
) -> AccountView:
    """Compose the accounts, positions and orders sections from what was read (pure, but for the
    ``parts`` it may reuse); ``unreachable``: accounts whose figures are their last read, and why;
    ``data_at``: when what was read was stored."""
    memo = parts if parts is not None else AccountParts()
    by_account = {
        name: memo.part(name, positions.get(name, ()), orders.get(name, ()), instruments) for name in wallets
    }
    # The sections are sorted by account first: one account's part after another, by name.
    ordered = [by_account[name] for name in sorted(by_account)]
    return AccountView(
        wallets=dict(wallets),
        positions=tuple(chain.from_iterable(part.positions for part in ordered)),
        orders=tuple(chain.from_iterable(part.orders for part in ordered)),
        accounts={
            name: account_row(
                wallet,
                len(by_account[name].positions),
                len(by_account[name].orders),
                (unreachable or {}).get(name),
            )
            for name, wallet in wallets.items()
        },
        position_rows=tuple(chain.from_iterable(part.position_rows for part in ordered)),
        order_rows=tuple(chain.from_iterable(part.order_rows for part in ordered)),
        data_at=dict(data_at or {}),
        symbols=frozenset(chain.from_iterable(part.symbols for part in ordered)),
    )


def _as_account_view(value: object) -> AccountView:
    """The full_dashboard entry, checked: the cache holds ``Any``, and only an AccountView belongs there."""
    if not isinstance(value, AccountView):
        raise TypeError(f"the full_dashboard cache entry holds a {type(value).__name__}, not an AccountView")
    return value


async def _run(concurrent: bool, *steps: Awaitable[Any]) -> list[Any]:
    """Await ``steps`` concurrently (optimized) or one after another (baseline), results in order.

    Coroutines do not start until awaited, so in the sequential case each read waits for the last;
    when one fails or the build is cancelled meanwhile, the steps not started yet are closed (a
    coroutine dropped unawaited would say so in a RuntimeWarning).
    """
    if concurrent:
        return list(await asyncio.gather(*steps))
    results: list[Any] = []
    try:
        for step in steps:
            results.append(await step)
    finally:
        for step in steps[len(results) + 1 :]:  # the one that raised (if any) has run, the rest not
            if inspect.iscoroutine(step):
                step.close()
    return results


# --- the dashboard ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DashboardSources:
    """The parts of the engine a snapshot is read from, built once by the runtime.

    Typed components rather than the runtime itself, so the dashboard depends on what it reads and
    a test can hand it stand-ins.
    """

    settings: Settings
    clock: Clock
    venues: Mapping[str, Venue]
    """The accounts' venues, by account name; the first one also serves market data."""
    manager: TpslManager
    """Monitors (``snapshot_monitors``, ``.monitors``), the ledger (``.ledger``) and stream health."""
    store: Store
    """Persistence metrics (``metrics()``)."""
    price_alerts: PriceAlertManager
    """The operator's price alerts (``snapshot()``)."""
    alerts: AlertBus
    """The latest alerts (``snapshot(limit)``)."""
    engine_state: Callable[[], str]
    """The runtime's state value (``running``, ``reconciling``, ``paused``, ``degraded``)."""
    venue_label: str
    """``sim`` or the Bybit network."""
    mirror: Callable[[], MirrorSection] | None = None
    """The mirror follower's section (``snapshot()``); None when mirror trading is off."""
    stats_period: StatsPeriod | None = None
    """The statistics' period (its start, and the reset); None: the statistics cover every trade."""
    alert_delivery: Callable[[], AlertDeliverySection] | None = None
    """Alert delivery's section (``AlertDelivery.snapshot``); None when no sink is enabled."""


@dataclass(frozen=True, slots=True)
class PositionsShown:
    """The positions and accounts sections of a snapshot, and when the data they show was stored."""

    positions: list[PositionRow]
    accounts: Mapping[str, AccountRow]
    data_at: DataTimes
    streams: Mapping[str, StreamRow]


class Dashboard:
    """Builds :class:`DashboardSnapshot` s of an engine (its :class:`DashboardSources`) through its
    :class:`DashboardCache`."""

    def __init__(
        self, sources: DashboardSources, cache: DashboardCache, profile: Profile, insights: InsightsProvider
    ) -> None:
        self.sources = sources
        self.cache = cache
        self.profile = profile
        self.insights = insights
        self._configured_symbols: list[str] = list(sources.settings.get("sim.symbols"))
        self._instruments: dict[str, Instrument] = {}
        self._known_symbols: set[str] = set()
        self._last_read: dict[str, AccountRead] = {}
        # (ledger, period start, accounts), the book of their statistics, and the last stats made.
        self._last_stats: tuple[tuple[object, ...], StatisticsBook, LedgerStats] | None = None
        self._last_ledger: tuple[object, int, LedgerSection] | None = None
        self._last_alerts: tuple[int, Sequence[AlertRow]] | None = None
        self._parts = AccountParts()  # each account's rows, reused while its reads are unchanged
        # The positions and market sections' rows, reused while what each shows is unchanged.
        self._position_rows = PositionRows()
        # Each symbol's market row, with the ticker and instrument it shows.
        self._market_kept: dict[str, tuple[Ticker, Instrument | None, MarketRow]] = {}
        self._unreachable: dict[str, str] = {}  # account -> why its venue cannot be read now
        self._events = 0  # venue events fed so far (see changes)
        self._notes_due = NotesDue()  # the symbols whose risk notes are made again at the next load
        self._notes_mode: Mode | None = None  # the cache_ttls mode of the last load

    @classmethod
    async def create(cls, sources: DashboardSources, profile: Profile) -> Dashboard:
        """A dashboard with its cache, attached to the profile's ``cache_ttls`` and ``cache_metrics``."""
        cache = DashboardCache.from_settings(sources.settings, sources.clock, profile)
        dashboard = cls(sources, cache, profile, InsightsProvider())
        await profile.register("cache_ttls", cache.apply_ttl_mode)
        await profile.register("cache_metrics", lambda mode: cache.set_metrics(mode is Mode.OPTIMIZED))
        return dashboard

    # --- events ------------------------------------------------------------------------------
    def on_event(self, event: VenueEvent) -> None:
        """Feed one venue event: cache freshness (optimized) and the insights' price history."""
        self._events += 1
        self.cache.on_event(event)
        if isinstance(event, Ticker):
            self.insights.observe(event)
        elif isinstance(event, Order | Position | Execution):
            self._notes_due.touched(event.symbol)
        elif isinstance(event, StreamStatus) and event.gap:
            self._notes_due.everything()

    async def follow(self, venue: Venue) -> None:
        """Feed :meth:`on_event` from a venue's event stream until cancelled (a background task)."""
        async for event in venue.stream():
            self.on_event(event)

    def changes(self) -> tuple[int, int]:
        """A mark that moves whenever the venue sent something (a price, a fill, an order or position
        update) or an alert was raised: equal marks mean the data behind a snapshot did not change,
        so a display that polls it can skip building and painting one. Plain integers, cheap to
        read from another thread (a read that races a change only sees it one poll later)."""
        return self._events, self.sources.alerts.published

    # --- the snapshot ------------------------------------------------------------------------
    async def snapshot(self) -> DashboardSnapshot:
        """Build the snapshot through the cache (see the module docstring for the two behaviours)."""
        with call_priority(Priority.DASHBOARD):  # short of budget, the engine's calls go first
            return await self._snapshot()

    async def _snapshot(self) -> DashboardSnapshot:
        batched = self.profile.is_optimized("api_batching")
        optimized = self.cache.mode is Mode.OPTIMIZED
        symbols = await self._ensure_instruments()
        view_job = self._view_early if optimized else self._view_late
        view: AccountView
        market: dict[str, Ticker]
        stats: LedgerStats
        with self.cache.recording() as reads:  # when each ticker shown was stored
            view, market, stats = await _run(
                batched, view_job(batched, symbols), self._market(batched, symbols), self._stats()
            )
            extra = sorted(view.symbols - set(market))
            if extra:  # a position or order on a symbol we had not seen yet
                self._known_symbols |= set(extra)
                await self._ensure_instruments()
                market |= await self._market(batched, extra)
        self.insights.observe_equity(view.wallets.values())
        insights: Sequence[InsightRow] = await self.cache.get_or_load(
            "ai_insights", INSIGHTS_KEY, lambda: self._compute_insights(view)
        )
        # The reads are in. The long pieces each take a turn of their own (tens of ms at a thousand
        # positions), so a fill that arrives meanwhile waits for one of them at most, not for the
        # whole composition; and a fill being decided goes before the next piece.
        turn = self.sources.manager.scheduler.precedence.turn
        await turn()
        monitors = self.sources.manager.snapshot_monitors()
        await turn()
        market_rows = self._market_rows(market)
        await turn()
        shown = await self._positions_shown_yielding(view, market, reads, monitors, turn, mark=optimized)
        await turn()
        composed = self._compose(
            view, market, stats, insights, shown, monitors=monitors, market_rows=market_rows
        )
        return await freeze_yielding(composed, turn)

    def _market_rows(self, market: Mapping[str, Ticker]) -> dict[str, MarketRow]:
        """The ``market`` section: a symbol's row is the last build's while its instrument is the
        same and its ticker is, or shows the same last and mark (all a row shows of it). At a
        thousand symbols every ticker is new at every tick: compared field by field (a dataclass's
        ==) and wrapped in a tuple of inputs, they were a good part of a build."""
        last, following, instrument_of = self._market_kept, {}, self._instruments.get
        rows: dict[str, MarketRow] = {}
        for symbol in sorted(market):
            ticker, instrument = market[symbol], instrument_of(symbol)
            kept = last.get(symbol)
            if (
                kept is None
                or kept[1] is not instrument
                or (kept[0] is not ticker and (kept[0].last != ticker.last or kept[0].mark != ticker.mark))
            ):
                kept = (ticker, instrument, market_row(ticker, instrument))
            following[symbol] = kept
            rows[symbol] = kept[2]
        self._market_kept = following
        return rows

    def engine_snapshot(self) -> DashboardSnapshot:
        """What the engine knows by itself, without reading the venue (when it cannot be read).

        Every key is present: the engine state, profile, monitors, ledger and its totals,
        persistence, API counters, alerts, streams and price alerts are this process's own; the
        venue's sections (accounts, positions, orders, market, insights) are empty, since nothing
        the venue says is known, rather than an older answer passed off as current.
        """
        nothing = account_view({}, {}, {}, self._instruments)
        shown = PositionsShown([], nothing.accounts, {}, self.sources.manager.snapshot_streams())
        return freeze(self._compose(nothing, {}, self._ledger_stats(), [], shown))

    def _compose(
        self,
        view: AccountView,
        market: Mapping[str, Ticker],
        stats: LedgerStats,
        insights: Sequence[InsightRow],
        shown: PositionsShown,
        *,
        monitors: list[MonitorRow] | None = None,
        market_rows: dict[str, MarketRow] | None = None,
    ) -> Snapshot:
        """The snapshot of what was read, with its positions and accounts sections ``shown``
        (``monitors`` and ``market_rows``: those sections when made already, each in a turn of the
        loop of its own)."""
        sources = self.sources
        manager = sources.manager
        if monitors is None:
            monitors = manager.snapshot_monitors()
        return {
            "time": iso_utc(sources.clock.now()),
            "venue": sources.venue_label,
            "engine_state": sources.engine_state(),
            "profile": self.profile.states(),
            "accounts": shown.accounts,
            "positions": shown.positions,
            "orders": view.order_rows,
            "monitors": monitors,
            "ledger": self._ledger_section(),
            "stats": stats.totals,
            "market": self._market_rows(market) if market_rows is None else market_rows,
            "insights": insights,
            "cache": self.cache.metrics(),
            "persistence": persistence_row(sources.store.metrics()),
            "api_calls": {name: venue.calls.as_dict() for name, venue in sources.venues.items()},
            "alerts": self._alerts_section(),
            "streams": shown.streams,
            "price_alerts": sources.price_alerts.snapshot(),
            "scheduler": manager.scheduler.stats(),
            "monitoring": manager.snapshot_monitoring(),
            "api_budget": {
                name: venue.budget.row()
                for name, venue in sources.venues.items()
                if isinstance(venue, VenueGateway)
            },
            "mirror": (
                sources.mirror()
                if sources.mirror is not None
                else disabled_section(str(sources.settings.get("mirror.sizing")))
            ),
            "statistics": stats.statistics,
            "alert_delivery": (
                sources.alert_delivery()
                if sources.alert_delivery is not None
                else disabled_delivery(float(sources.settings.get("alerts.cooldown_s")))
            ),
            "data_age": data_age(
                shown.data_at,
                sources.clock.monotonic(),
                shown.streams,
                next(iter(sources.venues), None),
                self.cache.invalidation,
            ),
        }

    async def _positions_shown_yielding(
        self,
        view: AccountView,
        market: Mapping[str, Ticker],
        reads: Reads | None,
        monitors: Sequence[MonitorRow],
        turn: Callable[[], Awaitable[None]],
        *,
        mark: bool,
    ) -> PositionsShown:
        """The positions and accounts sections, and when what they show was stored. With ``mark``
        (optimized) the positions are marked to the market's prices, and the accounts' uPnL is their
        positions': always while a connected stream writes the tickers through (one source for every
        price on screen), and otherwise where the ticker is newer than the position's own read (never
        an older price than before). The rows are made in chunks with ``turn`` between them
        (:meth:`PositionRows.rows_yielding`)."""
        marks, by_key, data_at, streams = self._positions_inputs(view, market, reads, monitors, mark=mark)
        positions = await self._position_rows.rows_yielding(view, marks, by_key, self._instruments, turn)
        return self._positions_and_accounts(view, positions, data_at, streams, mark=mark)

    def _positions_inputs(
        self,
        view: AccountView,
        market: Mapping[str, Ticker],
        reads: Reads | None,
        monitors: Sequence[MonitorRow],
        *,
        mark: bool,
    ) -> tuple[
        dict[tuple[str, str], float],
        dict[tuple[str, str, str | None], MonitorRow],
        dict[tuple[str, Any], float],
        Mapping[str, StreamRow],
    ]:
        """What the positions section is made of (see :meth:`_positions_shown_yielding`): the marks to show
        ((account, symbol) -> mark), the monitor rows by (account, symbol, side), when the data
        shown was stored, and the streams."""
        sources = self.sources
        manager = sources.manager
        # Passes over a thousand rows each build: in C where they can be.
        by_key: dict[tuple[str, str, str | None], MonitorRow] = dict(
            zip(map(_monitor_join, monitors), monitors, strict=True)
        )
        data_at: dict[tuple[str, Any], float] = dict(view.data_at)
        ticker_at = reads.stored_at_each(market, market_key) if reads is not None else {}
        if ticker_at:
            data_at[("market_data", SHARED)] = min(ticker_at.values())
        streams = manager.snapshot_streams()
        market_account = next(iter(sources.venues), None)
        marks: dict[tuple[str, str], float] = {}
        if mark:
            streamed = self.cache.invalidation and stream_live(streams, market_account)
            marks = {
                (row["account"], row["symbol"]): market[row["symbol"]].mark
                for row in view.position_rows
                if row["symbol"] in ticker_at
                and (
                    streamed
                    or ticker_at[row["symbol"]] >= data_at.get(("positions", row["account"]), math.inf)
                )
            }
        return marks, by_key, data_at, streams

    @staticmethod
    def _positions_and_accounts(
        view: AccountView,
        positions: list[PositionRow],
        data_at: DataTimes,
        streams: Mapping[str, StreamRow],
        *,
        mark: bool,
    ) -> PositionsShown:
        # Marked to the market, each account's uPnL is the sum of its positions' as shown.
        accounts = accounts_at(view, positions) if mark else view.accounts
        return PositionsShown(positions, accounts, data_at, streams)

    def _symbols(self) -> list[str]:
        """The symbols read one by one in the baseline: configured, held, and monitored."""
        monitored = map(_symbol, self.sources.manager.monitors.values())
        return sorted({*self._configured_symbols, *self._known_symbols, *monitored})

    def _market_venue(self) -> Venue | None:
        """The venue that serves instruments and tickers (market data is the same on every account)."""
        return next(iter(self.sources.venues.values()), None)

    async def _ensure_instruments(self) -> list[str]:
        """Learn the instruments of :meth:`_symbols` not known yet; returns those symbols (as they
        are once the instruments are in: a monitor may have come meanwhile)."""
        symbols = self._symbols()
        missing = [s for s in symbols if s not in self._instruments]
        venue = self._market_venue()
        if missing and venue is not None:
            self._instruments |= await venue.instruments(missing)
            return self._symbols()
        return symbols

    # --- the account view (full_dashboard) ---------------------------------------------------
    async def _view_early(self, batched: bool, symbols: list[str]) -> AccountView:
        """Optimized: the full-dashboard entry first, composed from its pieces' cache entries and
        composed again whenever one of them changed; a piece is read only when it is not cached."""
        view = await self.cache.get_or_compose(
            "full_dashboard", FULL_KEY, lambda: self._read_view(batched, symbols)
        )
        return _as_account_view(view)

    async def _view_late(self, batched: bool, symbols: list[str]) -> AccountView:
        """Baseline (the original): every piece is fetched, then the full-dashboard entry is checked."""
        fresh = await self._read_view(batched, symbols)

        async def composed() -> AccountView:
            return fresh

        return _as_account_view(await self.cache.get_or_load("full_dashboard", FULL_KEY, composed))

    async def _read_view(self, batched: bool, symbols: list[str]) -> AccountView:
        names = list(self.sources.venues)
        parts: list[AccountRead] = await _run(
            batched, *(self._read_or_last(name, batched, symbols) for name in names)
        )
        read = dict(zip(names, parts, strict=True))
        view = account_view(
            {name: part.wallet for name, part in read.items()},
            {name: part.positions for name, part in read.items()},
            {name: part.orders for name, part in read.items()},
            self._instruments,
            self._unreachable,
            {scope: at for part in parts for scope, at in part.data_at.items()},
            self._parts,
        )
        self._known_symbols |= view.symbols
        return view

    async def _read_or_last(self, name: str, batched: bool, symbols: list[str]) -> AccountRead:
        """One account's read; when its venue cannot be read (a mirror account's outage), its last
        good read (nothing, if it was never read), marked ``unreachable``, so the other accounts stay
        on screen and fresh."""
        try:
            with self.cache.recording() as reads:
                wallet, positions, orders = await self._read_account(name, batched, symbols)
        except VenueError as exc:
            self._unreachable[name] = str(exc)
            nothing = Wallet(name, 0.0, 0.0, 0.0, 0.0, self.sources.clock.now())
            return self._last_read.get(name, AccountRead(nothing, [], [], {}))
        self._unreachable.pop(name, None)
        part = self._last_read[name] = AccountRead(wallet, positions, orders, reads.data_at())
        return part

    async def _read_account(
        self, name: str, batched: bool, symbols: list[str]
    ) -> tuple[Wallet, list[Position], list[Order]]:
        venue = self.sources.venues[name]
        wallet, positions, orders = await _run(
            batched,
            self.cache.get_or_load("account_data", account_key(name), venue.wallet),
            self._per_account_or_symbol("positions", name, venue.positions, batched, symbols),
            self._per_account_or_symbol("orders", name, venue.open_orders, batched, symbols),
        )
        return wallet, positions, orders

    async def _per_account_or_symbol(
        self,
        category: str,
        account: str,
        read: Callable[[str | None], Awaitable[list[T]]],
        batched: bool,
        symbols: list[str],
    ) -> list[T]:
        """One read for the account (optimized), or one read per symbol, in turn (baseline)."""
        if batched:
            found: list[T] = await self.cache.get_or_load(category, (category, account), partial(read, None))
            return found
        rows: list[T] = []
        for symbol in symbols:
            rows += await self.cache.get_or_load(category, (category, account, symbol), partial(read, symbol))
        return rows

    # --- market, stats, insights -------------------------------------------------------------
    async def _market(self, batched: bool, symbols: Sequence[str]) -> dict[str, Ticker]:
        """Tickers of ``symbols``: one read for all the missing ones (optimized) or one per symbol.

        The insights see each price once, where it comes in: a ticker read here, or one the stream
        pushed (:meth:`on_event`); one served from the cache was seen when it was stored (at a
        thousand symbols, seeing every ticker served again was a thousand calls a build)."""
        venue = self._market_venue()
        if venue is None:
            return {}
        observe = self.insights.observe
        if batched:

            async def load(keys: list[CacheKey]) -> dict[CacheKey, Ticker]:
                tickers = await venue.tickers([k[2] for k in keys])
                for ticker in tickers.values():
                    observe(ticker)
                return {market_key(s): t for s, t in tickers.items()}

            found = await self.cache.get_many_or_load("market_data", [market_key(s) for s in symbols], load)
            return {key[2]: ticker for key, ticker in found.items()}
        tickers: dict[str, Ticker] = {}
        for symbol in symbols:

            async def load_one(symbol: str = symbol) -> Ticker:
                ticker = (await venue.tickers([symbol]))[symbol]
                observe(ticker)
                return ticker

            tickers[symbol] = await self.cache.get_or_load("market_data", market_key(symbol), load_one)
        return tickers

    def _ledger_stats(self) -> LedgerStats:
        # The manager's ledger, read when called: the manager replaces it when it loads the state.
        ledger = self.sources.manager.ledger
        period = self.sources.stats_period
        start = period.start if period is not None else None
        # The ledger only ever grows (closed trades are immutable): with the same ledger, as many
        # trades and the same period, the statistics are the last ones. A fill drops the stats
        # entry, but most fills close no trade, and at a thousand positions there are several a second.
        made_of = (ledger, start, tuple(self.sources.venues))
        last = self._last_stats
        book = last[1] if last is not None and last[0][0] is ledger and last[0][1:] == made_of[1:] else None
        if last is not None and book is not None and len(book) == len(ledger):
            return last[2]
        if book is None or len(book) > len(ledger):
            book = StatisticsBook(start, made_of[2])
        # The book takes only the trades recorded since (a trade closes about once a second at a
        # thousand positions), and its section is frozen already, untouched groups' rows reused.
        book.add(ledger.trades[len(book) :])
        stats = LedgerStats(book.totals(), book.section())  # the totals: ledger.totals(), running
        self._last_stats = (made_of, book, stats)
        return stats

    def _alerts_section(self) -> Sequence[AlertRow]:
        """The latest alerts, frozen: the last snapshot's while no alert was published since (the
        bus only changes by publishing one, and an alert is immutable)."""
        published = self.sources.alerts.published
        last = self._last_alerts
        if last is not None and last[0] == published:
            return last[1]
        rows = cast(Sequence[AlertRow], _freeze(self.sources.alerts.snapshot(ALERTS_SHOWN)))
        self._last_alerts = (published, rows)
        return rows

    def _ledger_section(self) -> LedgerSection:
        """The ``ledger`` section, frozen: the last one while the ledger is the same, with as many
        trades (it only ever grows, and a closed trade is immutable, as :meth:`_ledger_stats` has
        it). Made and frozen again at every snapshot, its rows were a good part of the freeze."""
        ledger = self.sources.manager.ledger
        last = self._last_ledger
        if last is not None and last[0] is ledger and last[1] == len(ledger):
            return last[2]
        section = cast(LedgerSection, _freeze(ledger.snapshot()))
        self._last_ledger = (ledger, len(ledger), section)
        return section

    async def _stats(self) -> LedgerStats:
        """The ledger's statistics, through the ``stats`` cache entry (a fill drops it when optimized)."""

        async def load() -> LedgerStats:
            return self._ledger_stats()

        stats: LedgerStats = await self.cache.get_or_load("stats", STATS_KEY, load)
        return stats

    async def reset_statistics(self) -> float:
        """Start a new statistics period now (the ledger is kept), durably; returns its start. The
        ``stats`` entry is dropped so the next snapshot shows the new period, whatever the TTL."""
        period = self.sources.stats_period
        if period is None:
            raise RuntimeError("this dashboard has no statistics period to reset")
        start = await period.reset()
        self.cache.invalidate("stats")
        return start

    async def _compute_insights(self, view: AccountView) -> list[InsightRow]:
        monitor_stops = {
            (m.account, m.symbol): m.sl_price
            for m in self.sources.manager.monitors.values()
            if m.sl_price and m.sl_price > 0
        }
        # With event freshness (and the mode unchanged since the last load), the notes of the
        # symbols no event was about since are kept, up to the notes' TTL (see NotesDue).
        mode, last_mode = self.cache.mode, self._notes_mode
        self._notes_mode = mode
        refresh = self._notes_due.take(
            self.sources.clock.monotonic(),
            self.cache.ttl("ai_insights"),
            self.cache.invalidation and mode is last_mode,
        )
        try:
            return self.insights.compute(view.positions, view.orders, view.wallets, monitor_stops, refresh)
        except BaseException:
            self._notes_due.everything()  # the symbols taken were not made: the next one makes all
            raise

    async def close(self) -> None:
        """Stop the loads in flight (engine stop)."""
        await self.cache.close()
