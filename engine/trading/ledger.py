"""The trade ledger: every closed trade, persisted, with the totals derived from it.

The ledger is stored in chunks of :data:`CHUNK` trades under ``ledger:<n>`` so recording a trade
rewrites one small chunk, not the whole history. The statistics views (per day, per symbol, ...)
are built on :meth:`Ledger.trades` later.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from engine.core.clock import iso_utc
from engine.core.models import Trade

CHUNK = 100
KEY_PREFIX = "ledger:"
CSV_FIELDS = (
    "account",
    "symbol",
    "side",
    "approach",
    "reason",
    "entry_price",
    "exit_price",
    "qty",
    "pnl",
    "fees",
    "opened_at",
    "closed_at",
    "tps_hit",
)


def chunk_key(index: int) -> str:
    """The store key of the ``index``-th chunk."""
    return f"{KEY_PREFIX}{index:06d}"


class Ledger:
    """Closed trades in the order they closed."""

    def __init__(self, trades: Iterable[Trade] = ()) -> None:
        self._trades: list[Trade] = list(trades)
        self._monitor_ids = {t.monitor_id for t in self._trades if t.monitor_id}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Ledger:
        """Rebuild from the store's state (the ``ledger:<n>`` chunks in order)."""
        trades: list[Trade] = []
        for key in sorted(k for k in state if k.startswith(KEY_PREFIX)):
            trades += [Trade.from_dict(t) for t in state[key]["trades"]]
        return cls(trades)

    @property
    def trades(self) -> list[Trade]:
        return list(self._trades)

    def __len__(self) -> int:
        return len(self._trades)

    def record(self, trade: Trade) -> tuple[str, dict[str, Any]] | None:
        """Append a trade; returns (key, value) of the chunk to save, or None when this monitor's
        trade is already recorded (a restart replaying the closing fill must not count it twice)."""
        if trade.monitor_id and trade.monitor_id in self._monitor_ids:
            return None
        self._monitor_ids.add(trade.monitor_id)
        self._trades.append(trade)
        index = (len(self._trades) - 1) // CHUNK
        part = self._trades[index * CHUNK : (index + 1) * CHUNK]
        return chunk_key(index), {"trades": [t.to_dict() for t in part]}

    def monitor_ids(self) -> set[str]:
        """Ids of every monitor that ever closed a trade (to tell our old orders from others')."""
        return set(self._monitor_ids)

    def totals(self) -> dict[str, Any]:
        """count, wins, losses, win_rate (None with no trade), pnl (net) and fees, in USDT."""
        wins = sum(1 for t in self._trades if t.pnl > 0)
        losses = sum(1 for t in self._trades if t.pnl < 0)
        count = len(self._trades)
        return {
            "count": count,
            "wins": wins,
            "losses": losses,
            "win_rate": round(wins / count, 4) if count else None,
            "pnl": round(float(sum(t.pnl for t in self._trades)), 4),
            "fees": round(float(sum(t.fees for t in self._trades)), 4),
        }

    @staticmethod
    def row(trade: Trade) -> dict[str, Any]:
        """One trade as the snapshot shows it (times as ISO 8601 UTC)."""
        return {
            "account": trade.account,
            "symbol": trade.symbol,
            "side": trade.side.value,
            "approach": trade.approach,
            "reason": trade.reason,
            "entry_price": trade.entry_price,
            "exit_price": trade.exit_price,
            "qty": trade.qty,
            "pnl": round(trade.pnl, 4),
            "fees": round(trade.fees, 4),
            "opened_at": iso_utc(trade.opened_at),
            "closed_at": iso_utc(trade.closed_at),
            "tps_hit": trade.tps_hit,
        }

    def snapshot(self, limit: int | None = None) -> dict[str, Any]:
        """The snapshot's ``ledger`` section: the trades (latest ``limit`` when given) and totals."""
        trades = self._trades if limit is None else self._trades[-limit:]
        return {"trades": [self.row(t) for t in trades], "totals": self.totals()}

    def to_csv(self) -> str:
        """The ledger as CSV (``opconsole export-trades``)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for trade in self._trades:
            writer.writerow(self.row(trade))
        return out.getvalue()
