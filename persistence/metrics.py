"""The store's counters, read by the console's persistence panel and by the benchmark."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

HOUR_S = 3600.0
MIN_RATE_SPAN_S = 60.0  # below a minute of history a rate says more about start-up than about load


def rolling_rate_per_hour(times: deque[float], now: float, started: float) -> float:
    """Events per hour over the last hour (or over the run so far, at least a minute, when shorter)."""
    while times and times[0] <= now - HOUR_S:
        times.popleft()
    span = min(HOUR_S, max(MIN_RATE_SPAN_S, now - started))
    return len(times) * HOUR_S / span


@dataclass(slots=True)
class StoreMetrics:
    """Counters of one store since it was opened. Times are on the store's time source."""

    started: float
    saves: int = 0
    saves_by_reason: Counter[str] = field(default_factory=Counter)
    writes: int = 0  # write calls that reached the disk (journal appends + snapshot files)
    journal_appends: int = 0
    full_writes: int = 0  # whole-state snapshot writes (every save under simple, compactions under smart)
    fsyncs: int = 0
    bytes_written: int = 0
    records_written: int = 0
    compactions: int = 0
    last_flush: float | None = None
    last_compaction: float | None = None
    max_critical_delay_s: float = 0.0  # time-source seconds between a critical save call and its ack
    max_pending_age_s: float = 0.0  # the oldest non-critical change when it was finally written
    write_times: deque[float] = field(default_factory=deque)
    writes_by_reason: Counter[str] = field(default_factory=Counter)
    """Writes by what made them: the reason of the save that committed at once (a critical one, or
    any under the simple policy), ``flush`` for a batch of coalesced saves, ``compaction``, ``retry``
    (the write that follows a disk failure) or ``policy`` (the flush before a policy switch)."""
    fsyncs_by_reason: Counter[str] = field(default_factory=Counter)
    """Fsyncs by the same causes as :attr:`writes_by_reason`."""

    def count_save(self, reason: str) -> None:
        self.saves += 1
        self.saves_by_reason[reason] += 1

    def count_write(
        self, now: float, *, writes: int, fsyncs: int, nbytes: int, full: bool, reason: str = "flush"
    ) -> None:
        self.writes += writes
        self.fsyncs += fsyncs
        self.writes_by_reason[reason] += writes
        self.fsyncs_by_reason[reason] += fsyncs
        self.bytes_written += nbytes
        if full:
            self.full_writes += 1
        else:
            self.journal_appends += 1
        self.write_times.extend([now] * writes)

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "saves": self.saves,
            "saves_by_reason": dict(sorted(self.saves_by_reason.items())),
            "writes": self.writes,
            "writes_by_reason": dict(sorted(self.writes_by_reason.items())),
            "fsyncs_by_reason": dict(sorted(self.fsyncs_by_reason.items())),
            "journal_appends": self.journal_appends,
            "full_writes": self.full_writes,
            "fsyncs": self.fsyncs,
            "bytes_written": self.bytes_written,
            "records_written": self.records_written,
            "writes_per_hour": round(rolling_rate_per_hour(self.write_times, now, self.started), 1),
            "compactions": self.compactions,
            "last_flush": self.last_flush,
            "last_compaction": self.last_compaction,
            "max_critical_delay_s": self.max_critical_delay_s,
            "max_pending_age_s": self.max_pending_age_s,
        }
