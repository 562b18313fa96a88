"""Why a save happened: every ``Store.save`` names a :class:`Reason`, and the reason decides durability.

Critical reasons are events the engine must never forget after a crash (a fill that closed a position,
a monitor that now exists, a stop that moved): their save is appended and fsync'd before it returns.
The rest are frequent, recomputable updates that are coalesced per key and written in batches.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """The reason of a save; the value is what the journal records."""

    # critical: durable before save() returns
    TP_HIT = "tp_hit"
    SL_HIT = "sl_hit"
    POSITION_CLOSED = "position_closed"
    MONITOR_CREATED = "monitor_created"
    MONITOR_REMOVED = "monitor_removed"
    BREAKEVEN_MOVED = "breakeven_moved"
    PHASE_CHANGE = "phase_change"
    EMERGENCY = "emergency"
    STARTUP = "startup"
    SHUTDOWN = "shutdown"
    TRADE_RECORDED = "trade_recorded"  # a closed trade in the ledger must survive a crash

    # non-critical: coalesced per key, flushed every flush_interval_s or on flush()
    POSITION_UPDATE = "position_update"
    ORDER_UPDATE = "order_update"
    LIMIT_FILL_PROGRESS = "limit_fill_progress"
    TP_REBALANCED = "tp_rebalanced"
    MONITORING_UPDATE = "monitoring_update"
    STATS_UPDATE = "stats_update"
    LEDGER_APPEND = "ledger_append"  # derived ledger bookkeeping; a closed trade is TRADE_RECORDED
    ALERT = "alert"
    SETTINGS = "settings"
    PRICE_ALERT = "price_alert"
    MIRROR_SYNC = "mirror_sync"  # the mirror follower's links and retry queue (queued actions force)

    @property
    def critical(self) -> bool:
        """True when a save with this reason must be on disk before ``save`` returns."""
        return self in CRITICAL_REASONS


CRITICAL_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.TP_HIT,
        Reason.SL_HIT,
        Reason.POSITION_CLOSED,
        Reason.MONITOR_CREATED,
        Reason.MONITOR_REMOVED,
        Reason.BREAKEVEN_MOVED,
        Reason.PHASE_CHANGE,
        Reason.EMERGENCY,
        Reason.STARTUP,
        Reason.SHUTDOWN,
        Reason.TRADE_RECORDED,
    }
)
