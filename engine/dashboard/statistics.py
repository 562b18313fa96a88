"""Statistics views over the trade ledger (pure): the snapshot's ``statistics`` section.

Every figure is computed from a sequence of closed :class:`~engine.core.models.Trade` s and nothing
else (no clock, no venue, no file), so a test can check it against numbers worked out by hand.

- The trades are those closed at or after the **period start** (``None``: every trade). A reset of
  the statistics starts a new period (:class:`~engine.dashboard.stats_period.StatsPeriod`); the
  ledger itself keeps every trade, and ``ledger.totals`` / ``stats`` stay over the whole ledger.
- Win, loss and win rate are the ledger's one definition (:func:`~engine.trading.ledger.tally`): a
  trade is classified by its net PnL; a scratch (net 0) is neither, but counts in the denominator.
- ``net_pnl`` is what the exchange realised (fees and funding included); ``gross_pnl`` is before
  them (``pnl + fees + funding``). Averages, expectancy, profit factor, best and worst are on net PnL.
- Streaks follow the close order; a scratch ends a streak (the current streak is then 0).
- The equity curve is the cumulative net PnL of the period, by close time, starting from 0 at the
  period start; the max drawdown is its largest fall from a running peak (USDT, >= 0).
- Each account has its figures, and ``all`` combines them; ``by_approach`` and ``by_symbol`` are
  given for each of those too, so a view switched to one account shows that account's tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TypedDict

from engine.core.clock import iso_utc
from engine.core.models import Trade
from engine.trading.ledger import MAIN_ACCOUNT, tally

ALL_ACCOUNTS = "all"
"""The combined figures of every account, beside each account's own."""
TP_LEVELS = 4
"""TP hit counts are given for TP1..TP4 (the Conservative approach's ladder)."""
EQUITY_POINTS = 500
"""The latest equity-curve points a snapshot carries (the drawdown is computed on the whole curve)."""
DAILY_DAYS = 366
"""The latest days of the daily PnL series a snapshot carries."""
SL_REASON = "sl"
BREAKEVEN_REASON = "breakeven"
_MONEY = 4
_RATIO = 4


class GroupStats(TypedDict):
    """The statistics of one group of trades (an account, an approach, a symbol); money in USDT."""

    trades: int
    wins: int
    losses: int
    win_rate: float | None  # wins / trades (0..1), None before the first trade
    gross_pnl: float  # before fees and funding
    net_pnl: float  # what the exchange realised
    fees: float
    funding: float  # paid (negative when received)
    avg_win: float | None  # mean net PnL of the wins
    avg_loss: float | None  # mean net PnL of the losses (negative)
    expectancy: float | None  # net PnL per trade
    profit_factor: float | None  # net won / |net lost|; None with no loss
    best: float | None  # the best trade's net PnL
    worst: float | None
    longest_win_streak: int
    longest_loss_streak: int
    current_streak: int  # +n: the last n trades won; -n: lost; 0: none yet, or the last was a scratch
    max_drawdown: float  # the equity curve's largest peak-to-trough fall, >= 0
    tp_hits: Sequence[int]  # [trades that reached TP1, TP2, TP3, TP4]
    sl_exits: int  # closed by the stop-loss (not at breakeven)
    breakeven_exits: int  # closed by the stop-loss at breakeven
    avg_hold_s: float | None  # mean of closed_at - opened_at


class EquityPoint(TypedDict):
    """One point of the equity curve: the period's cumulative net PnL after a trade closed."""

    time: str  # ISO 8601 UTC
    equity: float


class DailyPnl(TypedDict):
    """One UTC day's net PnL (days without a close in between are 0)."""

    day: str  # YYYY-MM-DD
    pnl: float


class StatisticsSection(TypedDict):
    """The snapshot's ``statistics`` section; every mapping is keyed by account (and ``all``)."""

    period_start: str | None  # ISO 8601 UTC; None: since the first trade
    trades: int  # trades in the period, every account
    by_account: Mapping[str, GroupStats]
    by_approach: Mapping[str, Mapping[str, GroupStats]]  # account -> approach -> stats
    by_symbol: Mapping[str, Mapping[str, GroupStats]]  # account -> symbol -> stats
    daily_pnl: Mapping[str, Sequence[DailyPnl]]  # account -> the latest DAILY_DAYS days
    equity_curve: Mapping[str, Sequence[EquityPoint]]  # account -> the latest EQUITY_POINTS points


def in_period(trades: Iterable[Trade], start: float | None) -> list[Trade]:
    """The trades closed at or after ``start`` (every one when None), in close order."""
    chosen = [t for t in trades if start is None or t.closed_at >= start]
    return sorted(chosen, key=lambda t: t.closed_at)  # stable: the ledger's order breaks ties


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), _MONEY) if values else None


def streaks(pnls: Sequence[float]) -> tuple[int, int, int]:
    """(longest win streak, longest loss streak, current streak signed) of net PnLs in close order."""
    longest_win = longest_loss = current = 0
    for pnl in pnls:
        if pnl > 0:
            current = current + 1 if current > 0 else 1
        elif pnl < 0:
            current = current - 1 if current < 0 else -1
        else:
            current = 0
        longest_win = max(longest_win, current)
        longest_loss = max(longest_loss, -current)
    return longest_win, longest_loss, current


def equity_curve(trades: Sequence[Trade]) -> list[tuple[float, float]]:
    """(close time, cumulative net PnL) after each trade, in close order."""
    points: list[tuple[float, float]] = []
    equity = 0.0
    for trade in trades:
        equity += trade.pnl
        points.append((trade.closed_at, equity))
    return points


def max_drawdown(equities: Iterable[float]) -> float:
    """The largest fall from a running peak; the curve starts at 0 (the period start)."""
    peak = worst = 0.0
    for equity in equities:
        peak = max(peak, equity)
        worst = max(worst, peak - equity)
    return worst


def group_stats(trades: Sequence[Trade]) -> GroupStats:
    """Every figure of one group of trades, given in close order (see the module docstring)."""
    pnls = [t.pnl for t in trades]
    totals = tally(pnls, (t.fees for t in trades), (t.funding for t in trades))
    won = [p for p in pnls if p > 0]
    lost = [p for p in pnls if p < 0]
    longest_win, longest_loss, current = streaks(pnls)
    count = len(trades)
    return {
        "trades": count,
        "wins": totals["wins"],
        "losses": totals["losses"],
        "win_rate": totals["win_rate"],
        "gross_pnl": round(sum(t.pnl + t.fees + t.funding for t in trades), _MONEY),
        "net_pnl": totals["pnl"],
        "fees": totals["fees"],
        "funding": totals["funding"],
        "avg_win": _mean(won),
        "avg_loss": _mean(lost),
        "expectancy": round(sum(pnls) / count, _MONEY) if count else None,
        "profit_factor": round(sum(won) / -sum(lost), _RATIO) if lost else None,
        "best": round(max(pnls), _MONEY) if pnls else None,
        "worst": round(min(pnls), _MONEY) if pnls else None,
        "longest_win_streak": longest_win,
        "longest_loss_streak": longest_loss,
        "current_streak": current,
        "max_drawdown": round(max_drawdown(e for _, e in equity_curve(trades)), _MONEY),
        "tp_hits": [sum(1 for t in trades if t.tps_hit >= k) for k in range(1, TP_LEVELS + 1)],
        "sl_exits": sum(1 for t in trades if t.reason == SL_REASON),
        "breakeven_exits": sum(1 for t in trades if t.reason == BREAKEVEN_REASON),
        "avg_hold_s": _mean([t.closed_at - t.opened_at for t in trades]),
    }


def _utc_day(ts: float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def daily_pnl(trades: Sequence[Trade], days: int = DAILY_DAYS) -> list[DailyPnl]:
    """Net PnL per UTC day of close, from the first close to the last, days between at 0 (a bar
    chart's axis is calendar days); the latest ``days`` days."""
    by_day: dict[date, float] = {}
    for trade in trades:
        day = _utc_day(trade.closed_at)
        by_day[day] = by_day.get(day, 0.0) + trade.pnl
    if not by_day:
        return []
    last = max(by_day)
    first = max(min(by_day), last - timedelta(days=days - 1))
    span = (last - first).days + 1
    return [
        {"day": d.isoformat(), "pnl": round(by_day.get(d, 0.0), _MONEY)}
        for d in (first + timedelta(days=n) for n in range(span))
    ]


def _grouped(trades: Sequence[Trade], key: str) -> dict[str, GroupStats]:
    groups: dict[str, list[Trade]] = {}
    for trade in trades:
        groups.setdefault(str(getattr(trade, key)), []).append(trade)
    return {name: group_stats(groups[name]) for name in sorted(groups)}


def statistics(
    trades: Iterable[Trade],
    period_start: float | None = None,
    accounts: Iterable[str] = (),
    *,
    points: int = EQUITY_POINTS,
) -> StatisticsSection:
    """The ``statistics`` section over the ledger's ``trades`` closed at or after ``period_start``.

    ``accounts``: names that get figures even before their first trade (the runtime's accounts);
    ``main`` always does, and so does every account with a trade in the period, then ``all``.
    """
    chosen = in_period(trades, period_start)
    by_name: dict[str, list[Trade]] = {MAIN_ACCOUNT: []}
    for name in accounts:
        by_name.setdefault(name, [])
    for trade in chosen:
        by_name.setdefault(trade.account, []).append(trade)
    names = [MAIN_ACCOUNT, *sorted(set(by_name) - {MAIN_ACCOUNT})]
    groups = {name: by_name[name] for name in names} | {ALL_ACCOUNTS: chosen}
    return {
        "period_start": iso_utc(period_start) if period_start is not None else None,
        "trades": len(chosen),
        "by_account": {name: group_stats(group) for name, group in groups.items()},
        "by_approach": {name: _grouped(group, "approach") for name, group in groups.items()},
        "by_symbol": {name: _grouped(group, "symbol") for name, group in groups.items()},
        "daily_pnl": {name: daily_pnl(group) for name, group in groups.items()},
        "equity_curve": {
            name: [
                {"time": iso_utc(ts), "equity": round(equity, _MONEY)}
                for ts, equity in equity_curve(group)[-points:]
            ]
            for name, group in groups.items()
        },
    }
