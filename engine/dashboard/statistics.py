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

:func:`statistics` is the reference; :class:`StatisticsBook` keeps the same section up to date as
the ledger grows (the snapshot's), each new trade costing only the groups it is in.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TypedDict

from engine.core.clock import iso_utc
from engine.core.models import Trade
from engine.core.read_only import read_only
from engine.trading.ledger import MAIN_ACCOUNT, MONEY_DECIMALS, RATE_DECIMALS, Totals, tally

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


# --- the running version: the snapshot's section, trade by trade --------------------------------

_COMPENSATED_SUM = sum([1e16, 1.0, -1e16]) != 0.0
"""Whether this interpreter's ``sum()`` of floats is compensated (Neumaier's, Python 3.12+) rather
than added left to right; :class:`_Sum` follows it, so a running total is the very float of ``sum()``."""


class _Sum:
    """A running float sum: always the float ``sum()`` gives for the values added so far, in order."""

    __slots__ = ("high", "low")

    def __init__(self) -> None:
        self.high = 0.0
        self.low = 0.0  # the low-order bits lost so far (compensated sum only)

    def add(self, value: float) -> None:
        high = self.high
        total = high + value
        if _COMPENSATED_SUM:  # CPython's builtin_sum, step for step
            self.low += (high - total) + value if abs(high) >= abs(value) else (value - total) + high
        self.high = total

    @property
    def value(self) -> float:
        low = self.low
        return self.high + low if low and math.isfinite(low) else self.high


def _frozen_row(stats: GroupStats) -> GroupStats:
    stats["tp_hits"] = tuple(stats["tp_hits"])
    return read_only(stats)


class _Group:
    """The running figures of one group of trades, added in close order (:func:`group_stats`'s, the
    sums in the same order), and its frozen row, made once per change."""

    __slots__ = (
        "_row",
        "best",
        "breakeven_exits",
        "count",
        "current",
        "drawdown",
        "equity",
        "fees",
        "funding",
        "gross",
        "hold",
        "longest_loss",
        "longest_win",
        "losses",
        "lost",
        "net",
        "peak",
        "sl_exits",
        "tp_hits",
        "wins",
        "won",
        "worst",
    )

    def __init__(self) -> None:
        self.count = self.wins = self.losses = self.sl_exits = self.breakeven_exits = 0
        self.net, self.fees, self.funding, self.gross = _Sum(), _Sum(), _Sum(), _Sum()
        self.won, self.lost, self.hold = _Sum(), _Sum(), _Sum()
        self.best: float | None = None
        self.worst: float | None = None
        self.longest_win = self.longest_loss = self.current = 0
        self.equity = self.peak = self.drawdown = 0.0  # the group's equity curve, as max_drawdown runs it
        self.tp_hits = [0] * TP_LEVELS
        self._row: GroupStats | None = None

    def add(self, trade: Trade) -> None:
        """Count ``trade``, closed at or after every trade added before."""
        pnl = trade.pnl
        self.count += 1
        self.net.add(pnl)
        self.fees.add(trade.fees)
        self.funding.add(trade.funding)
        self.gross.add(pnl + trade.fees + trade.funding)
        self.hold.add(trade.closed_at - trade.opened_at)
        # As streaks() does.
        current = self.current
        if pnl > 0:
            self.wins += 1
            self.won.add(pnl)
            current = current + 1 if current > 0 else 1
        elif pnl < 0:
            self.losses += 1
            self.lost.add(pnl)
            current = current - 1 if current < 0 else -1
        else:
            current = 0
        self.current = current
        self.longest_win = max(self.longest_win, current)
        self.longest_loss = max(self.longest_loss, -current)
        # max() and min() keep the first of equal values; so do these.
        if self.best is None or pnl > self.best:
            self.best = pnl
        if self.worst is None or pnl < self.worst:
            self.worst = pnl
        self.equity += pnl
        self.peak = max(self.peak, self.equity)
        self.drawdown = max(self.drawdown, self.peak - self.equity)
        for level in range(min(trade.tps_hit, TP_LEVELS)):
            self.tp_hits[level] += 1
        self.sl_exits += trade.reason == SL_REASON
        self.breakeven_exits += trade.reason == BREAKEVEN_REASON
        self._row = None

    def row(self) -> GroupStats:
        """The group's :class:`GroupStats`, read-only; the same object until a trade is added."""
        if self._row is None:
            self._row = _frozen_row(self._figures() if self.count else group_stats(()))
        return self._row

    def totals(self) -> Totals:
        """:func:`~engine.trading.ledger.tally` of the trades added (in the order added)."""
        count, wins = self.count, self.wins
        if not count:
            return tally((), ())
        return {
            "count": count,
            "wins": wins,
            "losses": self.losses,
            "win_rate": round(wins / count, RATE_DECIMALS),
            "pnl": round(self.net.value, MONEY_DECIMALS),
            "fees": round(self.fees.value, MONEY_DECIMALS),
            "funding": round(self.funding.value, MONEY_DECIMALS),
        }

    def _figures(self) -> GroupStats:
        # group_stats' formulas on the running sums, in its key order.
        count, wins, losses = self.count, self.wins, self.losses
        net, won, lost = self.net.value, self.won.value, self.lost.value
        totals = self.totals()
        assert self.best is not None and self.worst is not None  # set by the first trade
        return {
            "trades": count,
            "wins": wins,
            "losses": losses,
            "win_rate": totals["win_rate"],
            "gross_pnl": round(self.gross.value, _MONEY),
            "net_pnl": totals["pnl"],
            "fees": totals["fees"],
            "funding": totals["funding"],
            "avg_win": round(won / wins, _MONEY) if wins else None,
            "avg_loss": round(lost / losses, _MONEY) if losses else None,
            "expectancy": round(net / count, _MONEY),
            "profit_factor": round(won / -lost, _RATIO) if losses else None,
            "best": round(self.best, _MONEY),
            "worst": round(self.worst, _MONEY),
            "longest_win_streak": self.longest_win,
            "longest_loss_streak": self.longest_loss,
            "current_streak": self.current,
            "max_drawdown": round(self.drawdown, _MONEY),
            "tp_hits": list(self.tp_hits),
            "sl_exits": self.sl_exits,
            "breakeven_exits": self.breakeven_exits,
            "avg_hold_s": round(self.hold.value / count, _MONEY),
        }


class _Table:
    """One account's groups by a trade field (``approach`` or ``symbol``, as :func:`_grouped`), and
    its last read-only mapping, made again only for the groups a trade touched since."""

    __slots__ = ("_groups", "_rows", "_touched", "_view", "field")

    def __init__(self, field: str) -> None:
        self.field = field
        self._groups: dict[str, _Group] = {}
        self._touched: set[str] = set()
        self._rows: dict[str, GroupStats] = {}  # what _view shows: never changed once shown
        self._view: Mapping[str, GroupStats] = read_only(self._rows)

    def add(self, trade: Trade) -> None:
        """Count ``trade`` in its group."""
        name = str(getattr(trade, self.field))
        group = self._groups.get(name)
        if group is None:
            group = self._groups[name] = _Group()
        group.add(trade)
        self._touched.add(name)

    def view(self) -> Mapping[str, GroupStats]:
        """Every group's row by name, sorted; the rows of untouched groups are the last ones."""
        if self._touched:
            rows = dict(self._rows)  # a copy (a C-level one): the shown mapping stays as it was
            known = len(rows)
            for name in self._touched:
                rows[name] = self._groups[name].row()
            if len(rows) != known:  # a new group: in its sorted place
                rows = {name: rows[name] for name in sorted(rows)}
            self._rows, self._view = rows, read_only(rows)
            self._touched.clear()
        return self._view


def _day_row(day: date, pnl: float) -> DailyPnl:
    row: DailyPnl = {"day": day.isoformat(), "pnl": round(pnl, _MONEY)}
    return read_only(row)


def _curve_point(ts: float, equity: float) -> EquityPoint:
    point: EquityPoint = {"time": iso_utc(ts), "equity": round(equity, _MONEY)}
    return read_only(point)


class _Figures:
    """An account's (or ``all``'s) running figures: its group, its tables by approach and by symbol,
    its daily PnL and the latest points of its equity curve, each frozen once per change."""

    __slots__ = (
        "_curve",
        "_curve_view",
        "_daily_view",
        "_day_pnl",
        "_days",
        "_last_day",
        "by_approach",
        "by_symbol",
        "group",
    )

    def __init__(self, points: int) -> None:
        self.group = _Group()
        self.by_approach = _Table("approach")
        self.by_symbol = _Table("symbol")
        # The days from the first close to the last, each a frozen row (a gap longer than the
        # DAILY_DAYS shown is only filled where shown); the last one's PnL is still summing.
        self._days: list[DailyPnl] = []
        self._last_day: date | None = None
        self._day_pnl = 0.0
        self._curve: deque[EquityPoint] = deque(maxlen=points if points > 0 else None)
        self._daily_view: Sequence[DailyPnl] | None = ()
        self._curve_view: Sequence[EquityPoint] | None = ()

    def add(self, trade: Trade) -> None:
        """Count ``trade``, closed at or after every trade added before."""
        group = self.group
        group.add(trade)
        self.by_approach.add(trade)
        self.by_symbol.add(trade)
        day = _utc_day(trade.closed_at)
        last = self._last_day
        new_day = day != last
        if new_day:
            if last is not None:  # the days in between at 0, as many as can be shown
                gap = min((day - last).days - 1, DAILY_DAYS - 1)
                self._days += [_day_row(day - timedelta(days=n), 0.0) for n in range(gap, 0, -1)]
                if len(self._days) > 2 * DAILY_DAYS:
                    del self._days[:-DAILY_DAYS]
            self._last_day, self._day_pnl = day, 0.0
        self._day_pnl += trade.pnl  # as daily_pnl: by_day.get(day, 0.0) + trade.pnl
        row = _day_row(day, self._day_pnl)
        if new_day:
            self._days.append(row)
        else:
            self._days[-1] = row
        self._curve.append(_curve_point(trade.closed_at, group.equity))
        self._daily_view = self._curve_view = None

    def daily(self) -> Sequence[DailyPnl]:
        """:func:`daily_pnl` of the trades added, frozen."""
        if self._daily_view is None:
            self._daily_view = tuple(self._days[-DAILY_DAYS:])
        return self._daily_view

    def curve(self) -> Sequence[EquityPoint]:
        """The latest points of the equity curve of the trades added, frozen."""
        if self._curve_view is None:
            self._curve_view = tuple(self._curve)
        return self._curve_view


class StatisticsBook:
    """The frozen ``statistics`` section of the trades given so far, kept up to date as trades are
    added: a trade costs the groups it belongs to (its account and ``all``; its approach and symbol
    in each), not the whole ledger, and the section is always equal to the frozen
    :func:`statistics` of every trade given (the same floats, the same key order).

    The rows of the groups no new trade touched stay the very objects shown before, so a snapshot
    keeps them without a copy. The running sums follow the close order, as the pure version's do: a
    trade of the period closed before its last one (out of close order) makes the book start again
    from every trade given (rare: trades are recorded as they close).
    """

    def __init__(
        self, period_start: float | None = None, accounts: Iterable[str] = (), *, points: int = EQUITY_POINTS
    ) -> None:
        self.period_start = period_start
        self._names = tuple(accounts)
        self._points = points
        self._given: list[Trade] = []
        self._every = _Group()  # every trade given, in the order given: the ledger's totals
        self._totals: Totals | None = None
        self._start_over()

    def _start_over(self) -> None:
        self._accounts: dict[str, _Figures] = {}
        for name in (MAIN_ACCOUNT, *self._names):
            self._accounts.setdefault(name, _Figures(self._points))
        self._all = _Figures(self._points)
        self._last_close = -math.inf
        self._section: StatisticsSection | None = None

    def __len__(self) -> int:
        """How many trades were given (in the period or not)."""
        return len(self._given)

    def add(self, trades: Iterable[Trade]) -> None:
        """Take the ledger's next ``trades`` (those recorded after the ones given before)."""
        new = list(trades)
        self._given += new
        for trade in new:
            self._every.add(trade)
        if new:
            self._totals = None
        start = self.period_start
        for trade in new:
            if start is not None and trade.closed_at < start:
                continue
            if trade.closed_at < self._last_close:  # out of close order: every sum in a new order
                self._start_over()
                for chosen in in_period(self._given, start):
                    self._add(chosen)
                return
            self._add(trade)

    def _add(self, trade: Trade) -> None:
        self._last_close = trade.closed_at
        figures = self._accounts.get(trade.account)
        if figures is None:
            figures = self._accounts[trade.account] = _Figures(self._points)
        figures.add(trade)
        self._all.add(trade)
        self._section = None

    def totals(self) -> Totals:
        """:func:`~engine.trading.ledger.tally` of every trade given, in the order given (in the period
        or not): ``ledger.totals()`` when given the ledger's trades; read-only."""
        if self._totals is None:
            self._totals = read_only(self._every.totals())
        return self._totals

    def section(self) -> StatisticsSection:
        """The ``statistics`` section, read-only (mappings and tuples); the same object until a
        trade of the period is added."""
        if self._section is None:
            start = self.period_start
            names = [MAIN_ACCOUNT, *sorted(set(self._accounts) - {MAIN_ACCOUNT})]
            figures = {name: self._accounts[name] for name in names} | {ALL_ACCOUNTS: self._all}
            section: StatisticsSection = {
                "period_start": iso_utc(start) if start is not None else None,
                "trades": self._all.group.count,
                "by_account": read_only({n: f.group.row() for n, f in figures.items()}),
                "by_approach": read_only({n: f.by_approach.view() for n, f in figures.items()}),
                "by_symbol": read_only({n: f.by_symbol.view() for n, f in figures.items()}),
                "daily_pnl": read_only({n: f.daily() for n, f in figures.items()}),
                "equity_curve": read_only({n: f.curve() for n, f in figures.items()}),
            }
            self._section = read_only(section)
        return self._section
