"""The snapshot's shape as types: the keys pinned in ``shared/CONTRACTS.md``, one TypedDict per section.

The dashboard builds a :class:`Snapshot`, ``--snapshot-out`` writes it as JSON and the console's view
model reads it, so mypy checks the reader against what the engine produces. Sections produced below
the dashboard are typed where they are produced and only re-exported here: the alert rows by the
alert bus (:mod:`engine.alerts.model`), the price alerts (:mod:`engine.alerts.price`), the ledger's
rows and totals by the ledger (:mod:`engine.trading.ledger`), the statistics views by
:mod:`engine.dashboard.statistics`, the monitors and stream health by the
TP/SL manager (:mod:`engine.trading.manager`), the mirror's by its follower
(:mod:`engine.mirror.follower`); the dashboard may import those layers, they may not
import it.

A built snapshot is frozen (:class:`~engine.dashboard.snapshot.DashboardSnapshot`): its mappings are
read-only proxies and its lists are tuples. That is why containers are typed ``Mapping`` and
``Sequence``: the same types describe the snapshot while it is built and once it is frozen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NotRequired, TypedDict

from engine.alerts.delivery import AlertDeliverySection
from engine.alerts.model import AlertRow
from engine.alerts.price import PriceAlertRow
from engine.dashboard.statistics import StatisticsSection
from engine.mirror.follower import MirrorSection
from engine.scheduler.jobs import JobRow
from engine.trading.ledger import LedgerSection, Totals, TradeRow
from engine.trading.manager import MonitoringRow, MonitorRow, StreamRow
from engine.venue.budget import BudgetRow

__all__ = [
    "SNAPSHOT_KEYS",
    "AccountRow",
    "AlertDeliverySection",
    "AlertRow",
    "BudgetRow",
    "CacheCategoryRow",
    "CacheSection",
    "CacheTotals",
    "DataAge",
    "InsightRow",
    "JobRow",
    "LedgerSection",
    "MarketRow",
    "MirrorSection",
    "MonitorRow",
    "MonitoringRow",
    "OrderRow",
    "PersistenceRow",
    "PositionRow",
    "PriceAlertRow",
    "Snapshot",
    "StatisticsSection",
    "StreamRow",
    "Totals",
    "TradeRow",
    "VenuePositionRow",
]

SNAPSHOT_KEYS = (
    "time",
    "venue",
    "engine_state",
    "profile",
    "accounts",
    "positions",
    "orders",
    "monitors",
    "ledger",
    "stats",
    "market",
    "insights",
    "cache",
    "persistence",
    "api_calls",
    "alerts",
    "streams",
    "price_alerts",
    "scheduler",
    "monitoring",
    "api_budget",
    "mirror",
    "statistics",
    "alert_delivery",
    "data_age",
)
"""The snapshot's top-level keys, in the order the contract lists them (the keys of :class:`Snapshot`;
a test holds the two together). Scripts rely on every one being present."""


class AccountRow(TypedDict):
    """``accounts.<name>``: the wallet in USDT and how many positions and orders the account has."""

    equity: float
    available: float
    upnl: float
    positions: int
    orders: int
    unreachable: NotRequired[str]  # why the account could not be read now (its figures are the last read)


class VenuePositionRow(TypedDict):
    """What the venue says of one position: prices rounded to the instrument's tick, sizes to its step.

    Cached with the account data; the monitor's fields are joined fresh at every snapshot.
    """

    account: str
    symbol: str
    side: str | None  # "Buy" | "Sell"
    size: float
    entry_price: float
    mark_price: float
    upnl: float


class PositionRow(VenuePositionRow):
    """One ``positions[]`` entry: the venue's position and its monitor's state (None when unmonitored)."""

    phase: str | None
    tps_filled: int | None
    sl_price: float | None
    breakeven: bool | None
    urgency: str | None


class OrderRow(TypedDict):
    """One ``orders[]`` entry; ``purpose`` ("entry", "tp1".., "sl", "close") is None for foreign orders."""

    account: str
    symbol: str
    side: str
    order_type: str
    qty: float
    price: float | None
    trigger_price: float | None
    reduce_only: bool
    link_id: str
    purpose: str | None
    status: str


class MarketRow(TypedDict):
    """``market.<symbol>``: the last traded and the mark price; the instrument's tick size and qty
    step once its filters are known (the console formats the symbol's prices and sizes with them)."""

    last: float
    mark: float
    tick_size: NotRequired[float]
    qty_step: NotRequired[float]


class InsightRow(TypedDict):
    """One ``insights[]`` risk note (see :mod:`engine.dashboard.insights`)."""

    kind: str  # "exposure" | "stop_distance" | "no_stop" | "concentration" | "drawdown"
    severity: str  # "critical" | "warn" | "info"
    account: str | None
    symbol: str | None
    value: float | None
    message: str


class CacheCategoryRow(TypedDict):
    """``cache.categories.<category>``. With ``cache_metrics`` off only the first six keys are present:
    nothing is counted, so hits and misses read 0 and the rates None."""

    ttl: float
    entries: int
    hits: int
    misses: int
    hit_rate: float | None
    mean_load_ms: float | None
    max_load_ms: NotRequired[float]
    loads: NotRequired[int]
    load_errors: NotRequired[int]
    coalesced: NotRequired[int]
    invalidations: NotRequired[int]
    writes: NotRequired[int]
    oldest_age_s: NotRequired[float | None]


class CacheTotals(TypedDict):
    """``cache.totals``: the counts over every category since metrics were last switched on."""

    hits: int
    misses: int
    loads: int
    load_errors: int
    hit_rate: float | None


class CacheSection(TypedDict):
    """The snapshot's ``cache`` section: the rolling hit rate, its sparkline and one row per category."""

    enabled: bool
    hit_rate: float | None
    window_s: float
    sparkline: Sequence[float]
    ttl_profile: str  # "optimized" | "baseline"
    invalidation: bool
    totals: CacheTotals
    categories: Mapping[str, CacheCategoryRow]


class PersistenceRow(TypedDict):
    """The snapshot's ``persistence`` section: the store's metrics, its times as ISO 8601 UTC."""

    policy: str  # "smart" | "simple"
    saves: int
    saves_by_reason: Mapping[str, int]
    writes: int
    writes_by_reason: Mapping[str, int]  # by cause: a save's reason, flush, compaction, retry, policy
    fsyncs_by_reason: Mapping[str, int]
    journal_appends: int
    full_writes: int
    fsyncs: int
    bytes_written: int
    records_written: int
    writes_per_hour: float
    compactions: int
    last_flush: str | None
    last_compaction: str | None
    max_critical_delay_s: float
    max_pending_age_s: float
    pending: int
    oldest_pending_age_s: float | None
    seq: int
    journal_bytes: int
    journal_records: int
    flush_interval_s: float
    failed: str | None
    recovery: Mapping[str, object] | None


class DataAge(TypedDict):
    """``data_age``: how old the venue data the snapshot shows is, in seconds (None: none shown).

    Per category, the oldest piece of it; ``oldest`` is the oldest of all (the console's header).
    Data that a connected push stream keeps fresh (optimized profile: every event invalidates or
    writes through what it changes) is as old as that stream's last event, not as its last read.
    """

    account_data: float | None
    positions: float | None
    orders: float | None
    market_data: float | None
    oldest: float | None


class Snapshot(TypedDict):
    """The whole snapshot; its keys are :data:`SNAPSHOT_KEYS`."""

    time: str
    venue: str  # "sim" | "mainnet" | "testnet" | "demo"
    engine_state: str  # "running" | "reconciling" | "paused" | "degraded"
    profile: Mapping[str, str]  # toggle -> "optimized" | "baseline" | "pending"
    accounts: Mapping[str, AccountRow]
    positions: Sequence[PositionRow]
    orders: Sequence[OrderRow]
    monitors: Sequence[MonitorRow]
    ledger: LedgerSection
    stats: Totals
    market: Mapping[str, MarketRow]
    insights: Sequence[InsightRow]
    cache: CacheSection
    persistence: PersistenceRow
    api_calls: Mapping[str, Mapping[str, int]]  # account -> endpoint path -> calls
    alerts: Sequence[AlertRow]
    streams: Mapping[str, StreamRow]
    price_alerts: Sequence[PriceAlertRow]
    scheduler: Mapping[str, JobRow]  # job name -> its statistics
    monitoring: MonitoringRow
    api_budget: Mapping[str, BudgetRow]  # account -> what its rate budget allows now
    mirror: MirrorSection  # the mirror's links, drift and retry queue ("enabled": false when off)
    statistics: StatisticsSection  # the views over the ledger's trades of the current period
    alert_delivery: AlertDeliverySection  # Telegram / webhook: per sink pending, delivered, failures
    data_age: DataAge  # how old the venue data shown is, per category and the oldest
