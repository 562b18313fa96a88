"""The trade ledger: every closed trade, persisted, with the statistics derived from it.

The ledger is stored in chunks of :data:`CHUNK` trades under the store keys
:func:`~engine.core.state_keys.ledger_key` ``(n)`` (``ledger:000000``, ``ledger:000001``, ...), so
recording a trade rewrites one small chunk, not the whole history.

Win rate, one definition (:func:`tally`), used by the snapshot's ``stats`` / ``ledger.totals`` and by
the console's statistics panel, so the two never disagree. A trade is classified by its net PnL (fees
and funding included), not by why it closed:

- a win has a net PnL above zero, a loss one below zero;
- a *breakeven* trade, net PnL exactly zero, is neither a win nor a loss, but it was taken and closed,
  so it counts in the denominator: ``win_rate = wins / all closed trades``.

Why every closed trade and not only the decided ones: the win rate answers "how often did a trade I
took make money"; leaving scratches out would raise it for trades that earned nothing. It also keeps
``wins + losses + breakeven == count``. A trade closed by the breakeven stop after a take-profit filled
is a win: its net PnL is positive.

Each account's figures are kept apart too (``ledger.by_account``, :meth:`Ledger.totals_by_account`):
a mirror account trades smaller sizes on another balance, so its PnL and win rate mean something of
their own, while ``totals`` (and ``stats``) stay the combined figures. They are the same
:func:`tally` over that account's trades, so the accounts' counts and PnLs add up to the totals.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict

from engine.core.clock import iso_utc
from engine.core.models import RecordError, Trade
from engine.core.state_keys import LEDGER_PREFIX, ledger_key

CHUNK = 100
"""Trades per stored chunk: small enough that recording a trade stays a small write."""
MAIN_ACCOUNT = "main"
"""The account that always has figures in ``ledger.by_account``, zero before its first trade."""

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
    "funding",
    "opened_at",
    "closed_at",
    "tps_hit",
    "exit_estimated",
    "monitor_id",
)
"""Every field of a :class:`~engine.core.models.Trade`; the command line pins the order, so a new
column goes at the end."""
MONEY_DECIMALS = 4
"""Decimals of the money figures in totals and rows (USDT)."""
RATE_DECIMALS = 4
"""Decimals of the win rate."""


class TradeRow(TypedDict):
    """One entry of the snapshot's ``ledger.trades[]`` (and one CSV line): times as ISO 8601 UTC."""

    account: str
    symbol: str
    side: str
    approach: str
    reason: str
    entry_price: float
    exit_price: float
    qty: float
    pnl: float
    fees: float
    funding: float  # USDT the position paid in funding (negative when received); pnl is net of it
    opened_at: str
    closed_at: str
    tps_hit: int
    exit_estimated: bool  # the exit price is an estimate (no execution explained it): so is the PnL


class Totals(TypedDict):
    """The snapshot's ``ledger.totals`` and ``stats``: see the module docstring for win and loss."""

    count: int
    wins: int
    losses: int
    win_rate: float | None  # wins / count, a 0..1 ratio (4 decimals); None before the first trade
    pnl: float  # USDT, net of fees and funding
    fees: float
    funding: float  # USDT paid in funding (negative when received), shown apart from the fees


class LedgerSection(TypedDict):
    """The snapshot's ``ledger`` section. Sequences, as the frozen snapshot holds tuples."""

    trades: Sequence[TradeRow]
    totals: Totals  # every account together
    by_account: Mapping[str, Totals]  # account -> its own totals: "main" always, every account with trades


def tally(pnls: Sequence[float], fees: Iterable[float], funding: Iterable[float] = ()) -> Totals:
    """The statistics of closed trades given by their net PnLs, fees and funding: the one definition
    of win, loss and win rate (see the module docstring) for the ledger and for the console."""
    wins = sum(1 for pnl in pnls if pnl > 0)
    count = len(pnls)
    return {
        "count": count,
        "wins": wins,
        "losses": sum(1 for pnl in pnls if pnl < 0),
        "win_rate": round(wins / count, RATE_DECIMALS) if count else None,
        "pnl": round(float(sum(pnls)), MONEY_DECIMALS),
        "fees": round(float(sum(fees)), MONEY_DECIMALS),
        "funding": round(float(sum(funding)), MONEY_DECIMALS),
    }


def _tally_trades(trades: Sequence[Trade]) -> Totals:
    return tally([t.pnl for t in trades], (t.fees for t in trades), (t.funding for t in trades))


def chunk_trades(key: str, value: Any) -> list[Trade]:
    """The trades of the stored chunk ``key``; :class:`RecordError` naming it when it is not
    ``{"trades": [trade, ...]}`` or a trade in it cannot be decoded."""
    trades = value.get("trades") if isinstance(value, dict) else None
    if not isinstance(trades, list):
        raise RecordError(f"{key}: a ledger chunk must be {{'trades': [...]}}")
    try:
        return [Trade.from_dict(t) for t in trades]
    except (ValueError, TypeError) as exc:
        raise RecordError(f"{key}: {exc}") from None


class Ledger:
    """Closed trades in the order they closed."""

    def __init__(self, trades: Iterable[Trade] = ()) -> None:
        self._trades: list[Trade] = list(trades)
        # each trade's stored form, made once: a trade recorded saves its whole chunk of CHUNK
        self._dicts: list[dict[str, Any]] = [t.to_dict() for t in self._trades]
        self._monitor_ids = {t.monitor_id for t in self._trades if t.monitor_id}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Ledger:
        """Rebuild from the store's state (the ledger's chunks, in key order); raises
        :class:`~engine.core.models.RecordError` (a ValueError) naming the chunk whose shape is
        wrong (see :func:`chunk_trades`)."""
        trades: list[Trade] = []
        for key in sorted(k for k in state if k.startswith(LEDGER_PREFIX)):
            trades += chunk_trades(key, state[key])
        return cls(trades)

    def chunks(self) -> list[tuple[str, dict[str, Any]]]:
        """Every chunk as (store key, value): what rewrites the whole ledger after a repair."""
        return [self._chunk(index) for index in range(-(-len(self._trades) // CHUNK))]

    def _chunk(self, index: int) -> tuple[str, dict[str, Any]]:
        """Chunk ``index`` as (store key, value): its trades' stored forms, made once each."""
        return ledger_key(index), {"trades": self._dicts[index * CHUNK : (index + 1) * CHUNK]}

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
        self._dicts.append(trade.to_dict())
        return self._chunk((len(self._trades) - 1) // CHUNK)

    def monitor_ids(self) -> set[str]:
        """Ids of every monitor that ever closed a trade (to tell our old orders from others')."""
        return set(self._monitor_ids)

    def totals(self) -> Totals:
        """count, wins, losses, win_rate, pnl (net), fees and funding of every closed trade (see
        :func:`tally`)."""
        return _tally_trades(self._trades)

    def totals_by_account(self) -> dict[str, Totals]:
        """Each account's own totals (the same :func:`tally` over its trades): :data:`MAIN_ACCOUNT`
        first and always, zero before its first trade, then every other account that closed a trade,
        by name."""
        by_account: dict[str, list[Trade]] = {MAIN_ACCOUNT: []}
        for trade in self._trades:
            by_account.setdefault(trade.account, []).append(trade)
        names = [MAIN_ACCOUNT, *sorted(set(by_account) - {MAIN_ACCOUNT})]
        return {name: _tally_trades(by_account[name]) for name in names}

    @staticmethod
    def row(trade: Trade) -> TradeRow:
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
            "pnl": round(trade.pnl, MONEY_DECIMALS),
            "fees": round(trade.fees, MONEY_DECIMALS),
            "funding": round(trade.funding, MONEY_DECIMALS),
            "opened_at": iso_utc(trade.opened_at),
            "closed_at": iso_utc(trade.closed_at),
            "tps_hit": trade.tps_hit,
            "exit_estimated": trade.exit_estimated,
        }

    def snapshot(self, limit: int | None = None) -> LedgerSection:
        """The snapshot's ``ledger`` section: the trades (latest ``limit`` when given), the totals of
        every trade, and each account's own totals."""
        trades = self._trades if limit is None else self._trades[-limit:]
        return {
            "trades": [self.row(t) for t in trades],
            "totals": self.totals(),
            "by_account": self.totals_by_account(),
        }

    def to_csv(self) -> str:
        """The ledger as CSV (``opconsole export-trades``)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for trade in self._trades:
            # The snapshot's row, plus what only the export carries (the monitor that made the trade).
            writer.writerow({**self.row(trade), "monitor_id": trade.monitor_id})
        return out.getvalue()
