"""The ``ai_insights`` provider: local, deterministic risk notes (no network, no language model).

From the open positions, their stop-loss orders, the recent prices and the equity it has seen, it
computes: exposure per symbol, the distance of each position to its stop in units of recent
volatility, concentration, and the drawdown from the session's equity peak. It is the dashboard's
slowest loader (a note per position and per symbol, a volatility per held symbol), which is why its
cache category has the longest TTL.

The decisions are small pure functions; :class:`InsightsProvider` only keeps the price history and the
equity peak they need, and the notes of its last computation, reused while what they show is unchanged.
"""

from __future__ import annotations

import itertools
import math
import operator
from bisect import bisect_left
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter, itemgetter, not_
from typing import cast

from engine.core.models import Order, Position, Side, Ticker, Wallet
from engine.core.read_only import read_only
from engine.dashboard.schema import InsightRow

HOUR_S = 3600.0

_SEVERITY_RANK = {"critical": 0, "warn": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class Insight:
    """One risk note, as the snapshot's ``insights[]`` lists it."""

    kind: str  # exposure | stop_distance | no_stop | concentration | drawdown
    severity: str  # critical | warn | info
    account: str | None
    symbol: str | None
    value: float | None
    message: str

    def as_dict(self) -> InsightRow:
        return _row_of(self.kind, self.severity, self.account, self.symbol, self.value, self.message)


_Fields = tuple[str, str, str | None, str | None, float | None, str]
"""An :class:`Insight`'s fields, in their order: what its row shows. The provider keeps a note's
fields and its row, not the note (building the frozen dataclass cost as much as its figures)."""


def _fields_of(note: Insight) -> _Fields:
    return (note.kind, note.severity, note.account, note.symbol, note.value, note.message)


def _row_of(
    kind: str, severity: str, account: str | None, symbol: str | None, value: float | None, message: str
) -> InsightRow:
    """The row of a note with these fields (:meth:`Insight.as_dict`)."""
    return {
        "kind": kind,
        "severity": severity,
        "account": account,
        "symbol": symbol,
        "value": value,
        "message": message,
    }


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Where a note turns from info to warn to critical."""

    stop_sigma_critical: float = 0.5  # in hourly sigmas: a routine hour's move takes the stop
    stop_sigma_warn: float = 1.0
    concentration_warn: float = 0.5
    leverage_warn: float = 5.0
    drawdown_warn_pct: float = 5.0
    drawdown_critical_pct: float = 10.0


# --- pure computations ------------------------------------------------------------------------


def notional(position: Position) -> float:
    """Signed notional at the mark: + long, - short."""
    sign = position.side.sign if position.side else 0
    return sign * position.size * position.mark_price


def exposure_by_symbol(positions: Iterable[Position]) -> dict[str, tuple[float, float]]:
    """Per symbol (net, gross) notional over every account, sorted by symbol."""
    totals: dict[str, tuple[float, float]] = {}
    for position in positions:
        net, gross = totals.get(position.symbol, (0.0, 0.0))
        value = notional(position)
        totals[position.symbol] = (net + value, gross + abs(value))
    return dict(sorted(totals.items()))


def log_return(first: tuple[float, float], second: tuple[float, float]) -> tuple[float, float] | None:
    """The squared log return between two (time, price) samples and the time it spans; None when
    the pair says nothing (time not moving forward, a price not positive)."""
    (t0, p0), (t1, p1) = first, second
    if t1 > t0 and p0 > 0 and p1 > 0:
        return math.log(p1 / p0) ** 2, t1 - t0
    return None


def sigma_of(square_sum: float, span: float, returns: int) -> float | None:
    """The hourly volatility from the sum of ``returns`` squared log returns and the time they span
    (see :func:`hourly_sigma`)."""
    if returns < 10 or span <= 0 or square_sum <= 0:
        return None
    return math.sqrt(square_sum / span * HOUR_S)


def hourly_sigma(samples: Sequence[tuple[float, float]]) -> float | None:
    """Realised volatility of log prices over one hour, from (time, price) samples.

    The variance rate is the sum of squared log returns over the time they span (so irregular
    sampling is fine); None with fewer than 10 returns or no movement at all.
    """
    terms = [t for a, b in itertools.pairwise(samples) if (t := log_return(a, b)) is not None]
    # Summed in order from 0.0, as a running PriceHistory adds them: the same figure, to the bit.
    return sigma_of(sum((sq for sq, _ in terms), 0.0), sum((dt for _, dt in terms), 0.0), len(terms))


def adverse_distance(side: Side, mark: float, stop: float) -> float:
    """Log distance from the mark to the stop in the losing direction (< 0: the stop is passed)."""
    return math.log(mark / stop) if side is Side.BUY else math.log(stop / mark)


def stop_prices(positions: Iterable[Position], orders: Iterable[Order]) -> dict[tuple[str, str], float]:
    """Each position's stop: its nearest reduce-only conditional order on the losing side of the mark."""
    held = [(p, p.side) for p in positions if p.side is not None]
    if not held:  # every position has a monitor's stop (the usual case): the orders are not even read
        return {}
    # Only the orders that can be a stop of a held position are grouped: a few per position, not all.
    return _stops_among(held, _stop_triggers(orders, {(p.account, p.symbol) for p, _ in held}))


_Triggers = dict[tuple[str, str], list[tuple[Side, float]]]
"""The (side, trigger price) of the reduce-only conditional orders, by (account, symbol)."""


def _stop_triggers(orders: Iterable[Order], wanted: Container[tuple[str, str]] | None = None) -> _Triggers:
    """The orders that can be a stop, grouped: of the ``wanted`` (account, symbol) only, or of all."""
    triggers: _Triggers = {}
    for order in orders:
        if order.reduce_only and order.trigger_price is not None:
            key = (order.account, order.symbol)
            if wanted is None or key in wanted:
                triggers.setdefault(key, []).append((order.side, order.trigger_price))
    return triggers


def _stops_among(held: Iterable[tuple[Position, Side]], triggers: _Triggers) -> dict[tuple[str, str], float]:
    """:func:`stop_prices` of the ``held`` (position, side) pairs, among the grouped orders."""
    stops: dict[tuple[str, str], float] = {}
    for position, side in held:
        closing, mark = side.opposite, position.mark_price
        key = (position.account, position.symbol)
        losing = [
            trigger
            for order_side, trigger in triggers.get(key, ())
            if order_side is closing and adverse_distance(side, mark, trigger) >= 0
        ]
        if losing:
            stops[key] = max(losing) if side is Side.BUY else min(losing)
    return stops


def drawdown_pct(peak: float, equity: float) -> float:
    """How far equity is below its peak, in percent (0 at or above it)."""
    return max(0.0, (peak - equity) / peak * 100.0) if peak > 0 else 0.0


def _grade(value: float, warn: float, critical: float, higher_is_worse: bool = True) -> str:
    if higher_is_worse:
        return "critical" if value >= critical else "warn" if value >= warn else "info"
    return "critical" if value < critical else "warn" if value < warn else "info"


def note_order(note: Insight) -> tuple[int, str, str, str]:
    """The notes' order: most severe first, then by kind, account and symbol."""
    return _order_of(note.severity, note.kind, note.account, note.symbol)


def _order_of(severity: str, kind: str, account: str | None, symbol: str | None) -> tuple[int, str, str, str]:
    return (_SEVERITY_RANK[severity], kind, account or "", symbol or "")


def exposure_note(symbol: str, net: float, gross: float, equity: float, thresholds: Thresholds) -> Insight:
    """A symbol's exposure note from its (net, gross) notional and the total equity."""
    return Insight(*_exposure_fields(symbol, net, gross, equity, thresholds))


def _exposure_fields(symbol: str, net: float, gross: float, equity: float, thresholds: Thresholds) -> _Fields:
    leverage = gross / equity if equity > 0 else math.inf
    direction = "long" if net > 0 else "short" if net < 0 else "flat"
    return (
        "exposure",
        "warn" if leverage >= thresholds.leverage_warn else "info",
        None,
        symbol,
        round(net, 2),
        f"{symbol} net {direction} {abs(net):,.0f} USDT, gross {gross:,.0f} ({leverage:.2f}x equity)",
    )


def concentration_note(exposure: Mapping[str, tuple[float, float]], thresholds: Thresholds) -> Insight | None:
    """The largest symbol's share of gross exposure; None with fewer than two symbols or none held."""
    total_gross = sum(gross for _, gross in exposure.values())
    if not (len(exposure) > 1 and total_gross > 0):
        return None
    symbol, (_, gross) = max(exposure.items(), key=lambda item: (item[1][1], item[0]))
    share = gross / total_gross
    return Insight(
        "concentration",
        "warn" if share >= thresholds.concentration_warn else "info",
        None,
        symbol,
        round(share, 4),
        f"{symbol} is {share:.0%} of gross exposure across {len(exposure)} symbols",
    )


def stop_note(position: Position, stop: float | None, sigma: float | None, thresholds: Thresholds) -> Insight:
    """An open position's note: no stop, or the distance to its stop (in hourly sigmas when known)."""
    side = position.side
    if side is None:  # risk_notes passes open positions only, and an open position has a side
        raise ValueError(f"no stop note for {position.account} {position.symbol}: the position is flat")
    account, symbol = position.account, position.symbol
    where = _where(account, symbol, side)
    return Insight(*_stop_fields(account, symbol, where, side, position.mark_price, stop, sigma, thresholds))


def _where(account: str, symbol: str, side: Side) -> str:
    """Whose position a stop note is about, as its message starts."""
    return f"{account} {symbol} {side.value}"


def _stop_fields(
    account: str,
    symbol: str,
    where: str,
    side: Side,
    mark: float,
    stop: float | None,
    sigma: float | None,
    thresholds: Thresholds,
) -> _Fields:
    """:func:`stop_note`'s fields, from what it reads of the position (``where``: :func:`_where`)."""
    if stop is None:
        return ("no_stop", "critical", account, symbol, None, f"{where}: no stop-loss")
    distance = adverse_distance(side, mark, stop)
    if sigma is None:
        return (
            "stop_distance",
            "info",
            account,
            symbol,
            None,
            f"{where}: stop {distance:.2%} away (volatility not known yet)",
        )
    in_sigmas = distance / sigma
    return (
        "stop_distance",
        _grade(in_sigmas, thresholds.stop_sigma_warn, thresholds.stop_sigma_critical, higher_is_worse=False),
        account,
        symbol,
        round(in_sigmas, 3),
        f"{where}: stop {distance:.2%} away = {in_sigmas:.2f} hourly sigma",
    )


def drawdown_note(equity: float, peak_equity: float, thresholds: Thresholds) -> Insight:
    """How far the equity is below the session's peak."""
    drawdown = drawdown_pct(peak_equity, equity)
    return Insight(
        "drawdown",
        _grade(drawdown, thresholds.drawdown_warn_pct, thresholds.drawdown_critical_pct),
        None,
        None,
        round(drawdown, 4),
        f"equity {equity:,.2f} USDT is {drawdown:.2f}% below the session peak {peak_equity:,.2f}",
    )


def risk_notes(
    positions: Sequence[Position],
    stops: Mapping[tuple[str, str], float],
    sigmas: Mapping[str, float | None],
    equity: float,
    peak_equity: float,
    thresholds: Thresholds = Thresholds(),
) -> list[Insight]:
    """Every note for the given state, most severe first, then in a stable order.

    The reference: :meth:`InsightsProvider.compute` gives these notes' rows, reusing what it can.
    """
    open_positions = [p for p in positions if p.is_open]
    exposure = exposure_by_symbol(open_positions)
    notes = [
        exposure_note(symbol, net, gross, equity, thresholds) for symbol, (net, gross) in exposure.items()
    ]
    concentration = concentration_note(exposure, thresholds)
    if concentration is not None:
        notes.append(concentration)
    for position in open_positions:
        key = (position.account, position.symbol)
        notes.append(stop_note(position, stops.get(key), sigmas.get(position.symbol), thresholds))
    notes.append(drawdown_note(equity, peak_equity, thresholds))
    notes.sort(key=note_order)
    return notes


# --- the stateful shell -----------------------------------------------------------------------


class NotesDue:
    """Which symbols' notes the next computation makes again (:meth:`InsightsProvider.compute`'s
    ``refresh``): those an order, position or fill event was about since the last one. Every note
    is made again when that computation is the first, when events may have been lost, when the
    caller cannot tell what changed (no event freshness: the baseline profile), and once every
    ``every_s`` (the notes' cache TTL): a symbol no event was about keeps its notes that long, as the
    cached notes were kept before a per-symbol refresh existed."""

    def __init__(self) -> None:
        self._symbols: set[str] | None = None  # None: every note is due
        self._every_at: float | None = None  # when every note was last made

    def touched(self, symbol: str) -> None:
        """An event about ``symbol``'s positions or orders."""
        if self._symbols is not None:
            self._symbols.add(symbol)

    def everything(self) -> None:
        """Events may have been lost: every note is due."""
        self._symbols = None

    def take(self, now: float, every_s: float, events_known: bool) -> set[str] | None:
        """The ``refresh`` of a computation starting at ``now`` (None: every note), and start
        gathering for the next; ``events_known``: every change comes as an event."""
        symbols, self._symbols = self._symbols, set()
        if symbols is None or not events_known or self._every_at is None or now - self._every_at >= every_s:
            self._every_at = now
            return None
        return symbols


BUCKET_PAIRS = 60
"""How many consecutive pairs of samples a :class:`PriceHistory` bucket sums (its window's slack)."""


class _Bucket:
    """The terms of up to ``BUCKET_PAIRS`` consecutive pairs of samples, summed."""

    __slots__ = ("pairs", "returns", "span", "squares")

    def __init__(self) -> None:
        self.squares = 0.0  # squared log returns of the pairs that count
        self.span = 0.0  # the time they span
        self.returns = 0  # how many pairs count (see log_return)
        self.pairs = 0  # how many pairs, counting or not: the window's length is in pairs


class PriceHistory:
    """A symbol's price history, as the volatility needs it: the last (time, price) sample and the
    log-return terms of the consecutive pairs before it, summed in buckets of up to ``bucket`` pairs.

    The window: the oldest bucket is dropped whole once the others still cover ``size - 1`` pairs, so
    the volatility is :func:`hourly_sigma` of the last ``size - 1`` to ``size - 2 + bucket`` pairs (of
    the last ``size`` to ``size - 1 + bucket`` samples); the bucket being filled is never dropped.
    Memory is a record per ``bucket`` pairs rather than a tuple per sample (tracemalloc, 1000 symbols
    x 900 samples: ~170 MB as samples, ~2.2 MB in buckets of 60). Until a bucket drops, the running
    sums are the terms added in order, so the figure is exactly :func:`hourly_sigma` of every sample
    seen; after a drop they are summed again from the buckets left (no subtraction, so no
    cancellation) and agree to rounding.
    """

    __slots__ = ("_bucket", "_buckets", "_keep", "_last", "_pairs", "_returns", "_sigma", "_span", "_squares")

    def __init__(self, size: int, bucket: int = BUCKET_PAIRS) -> None:
        if bucket < 1:
            raise ValueError(f"a bucket holds at least one pair, got {bucket}")
        self._keep = size - 1  # the pairs the window covers at least
        self._bucket = bucket
        self._buckets: list[_Bucket] = []  # oldest first; a few dozen, so list.pop(0) is cheap
        self._last: tuple[float, float] | None = None
        # The window's totals, kept as the samples arrive: the volatility is then two sums.
        self._squares = 0.0
        self._span = 0.0
        self._returns = 0
        self._pairs = 0
        self._sigma: tuple[float | None] | None = None  # the last figure, until the next sample

    @property
    def last(self) -> tuple[float, float] | None:
        """The latest (time, price) sample, None before the first."""
        return self._last

    @property
    def pairs(self) -> int:
        """How many consecutive pairs of samples the window covers (its samples: one more)."""
        return self._pairs

    @property
    def records(self) -> int:
        """How many bucket records are stored (what the memory grows with)."""
        return len(self._buckets)

    def add(self, ts: float, price: float) -> None:
        """Append a sample (the caller keeps times increasing)."""
        sample = (ts, price)
        if self._last is not None:
            self._add_pair(log_return(self._last, sample))
        self._last = sample
        self._sigma = None

    def _add_pair(self, term: tuple[float, float] | None) -> None:
        if not self._buckets or self._buckets[-1].pairs >= self._bucket:
            self._buckets.append(_Bucket())
        newest = self._buckets[-1]
        newest.pairs += 1
        self._pairs += 1
        if term is not None:
            square, span = term
            newest.squares += square
            newest.span += span
            newest.returns += 1
            self._squares += square  # in order, as hourly_sigma sums them
            self._span += span
            self._returns += 1
        dropped = False
        while len(self._buckets) > 1 and self._pairs - self._buckets[0].pairs >= self._keep:
            oldest = self._buckets.pop(0)
            self._pairs -= oldest.pairs
            self._returns -= oldest.returns
            dropped = True
        if dropped:
            self._squares = math.fsum(b.squares for b in self._buckets)
            self._span = math.fsum(b.span for b in self._buckets)

    def sigma(self) -> float | None:
        """:func:`hourly_sigma` of the window's samples (see the class)."""
        if self._sigma is None:
            self._sigma = (sigma_of(self._squares, self._span, self._returns),)
        return self._sigma[0]


_OrderKey = tuple[int, str, str, str]
"""A note's place in the notes' order (see :func:`note_order`)."""

_NOTHING = (0.0, 0.0)  # a symbol's (net, gross) before its first position
_account_symbol = attrgetter("account", "symbol")
_order_key = attrgetter("order")
_row = attrgetter("row")


class _Shown:
    """A note as the snapshot shows it: its fields, its read-only row and its key in the notes'
    order, kept from one computation to the next (see :func:`_shown`)."""

    __slots__ = ("fields", "order", "row")

    def __init__(self, fields: _Fields, row: InsightRow, order: _OrderKey) -> None:
        self.fields = fields
        self.row = row
        self.order = order


def _shown(fields: _Fields, last: _Shown | None) -> _Shown:
    """``last`` when it shows the same note, else the note of these ``fields`` with a new row.

    A note built again because a mark moved often prints the same figures: its row object is then
    kept (the snapshot's freeze and the widgets' diff pass it through), and so is its order key
    object, so that an unchanged order is seen by identity (:meth:`InsightsProvider.compute`).
    """
    if last is not None and last.fields == fields:
        return last
    kind, severity, account, symbol, value, message = fields
    order = _order_of(severity, kind, account, symbol)
    if last is not None and last.order == order:
        order = last.order
    # Read-only where built (one per position): the snapshot's freeze passes it through.
    return _Shown(fields, read_only(_row_of(kind, severity, account, symbol, value, message)), order)


def _same_items(items: Sequence[object], last: Sequence[object]) -> bool:
    """The very same objects in the same order: compared by identity, never field by field."""
    return len(items) == len(last) and all(map(operator.is_, items, last))


# What a position's stop note was made of (side, mark, stop, sigma), the start of its message, the
# note, and the position's size and signed notional then. One tuple of inputs: compared in one go,
# it is the cheapest test of a position unchanged.
_StopEntry = tuple[tuple[Side, float, float | None, float | None], str, _Shown, float, float]
# What a symbol's exposure note was made of (net, gross, equity), and the note.
_ExposureEntry = tuple[float, float, float, _Shown]


@dataclass(slots=True)
class _Computed:
    """A computation's inputs, copied (a caller may change a list in place), and its rows."""

    positions: list[Position]
    orders: list[Order] | None  # None: not read, every position having a monitor's stop
    wallets: dict[str, Wallet]
    known: dict[tuple[str, str], float]
    peak_equity: float
    thresholds: Thresholds
    rows: list[InsightRow]
    complete: bool
    """Every note was made at this state (not a refresh of some symbols)."""

    def holds(
        self,
        positions: Sequence[Position],
        orders: Sequence[Order],
        wallets: Mapping[str, Wallet],
        known: dict[tuple[str, str], float],
        peak_equity: float,
        thresholds: Thresholds,
    ) -> bool:
        """The same state as this computation's: its rows are then the answer."""
        return (
            peak_equity == self.peak_equity
            and thresholds == self.thresholds
            and dict(wallets) == self.wallets
            and known == self.known
            and _same_items(positions, self.positions)
            and (self.orders is None or _same_items(orders, self.orders))
        )


@dataclass(slots=True)
class _ChangesSince:
    """What a computation of the due symbols alone works from (:meth:`InsightsProvider._changes_since`)."""

    due: set[str]
    """The symbols whose notes are made now."""
    keys: list[tuple[str, str]]
    """Each listed position's (account, symbol), in the list's order."""
    index: dict[tuple[str, str], int]
    """Where each key stands in the list."""
    gone: set[tuple[str, str]]
    """The keys noted last time and no longer listed."""
    new: dict[str, list[tuple[str, str]]]
    """The keys of the positions new since (by identity), by symbol."""


class InsightsProvider:
    """Keeps recent prices and the session's equity peak; computes the notes on demand.

    At a thousand positions (two thousand over two accounts) the notes are recomputed at almost
    every snapshot (order and position events drop the cached list), while marks move every second
    and few notes change in between. :meth:`compute` therefore gives the rows of the pure
    :func:`risk_notes` (the reference) while redoing only what changed: a position's or a symbol's
    note is built again only when what it is made of changed, and keeps its row object when it shows
    the same; the notes are sorted again only when one's place in the order changed; the orders are
    searched for stops again only when they, or the positions with no monitor's stop, changed; and the
    very same state, with no price seen since, gives the last rows.

    A computation may also be asked to make again only the notes of the symbols an event was about
    (``refresh``): the others keep the figures of their last computation, as a cached entry keeps
    them until its TTL. At a thousand positions, every order or position event dropped the cached
    notes, and each snapshot made two thousand notes again at the new marks (a third of a build),
    though the event was about one symbol.
    """

    def __init__(self, history: int = 900, thresholds: Thresholds = Thresholds()) -> None:
        self._history = history
        self._prices: dict[str, PriceHistory] = {}
        self._peak_equity = 0.0
        self.thresholds = thresholds
        self._sigmas: dict[str, float | None] = {}  # every observed symbol's, as of the last compute
        self._moved: set[str] = set()  # the symbols with a sample since (their sigma changed)
        self._thresholds_used: Thresholds | None = None
        self._stop_notes: dict[tuple[str, str], _StopEntry] = {}
        self._exposure_notes: dict[str, _ExposureEntry] = {}
        self._held: list[str] = []  # the symbols held, sorted
        self._concentration: _Shown | None = None
        self._drawdown: _Shown | None = None
        self._triggers: tuple[list[Order], _Triggers] = ([], {})  # the orders last read, grouped
        self._order_keys: list[_OrderKey] = []  # the notes' keys before the sort, and the sort:
        self._sorted: list[int] = []
        self._last: _Computed | None = None
        # The last computation's notes as shown: stop notes in the positions' order, exposures in
        # the symbols'; the (net, gross) of each symbol, the stops, and each symbol's positions'
        # keys (made when a computation of the due symbols alone first needs them).
        self._stop_list: list[_Shown] = []
        self._exposure_list: list[_Shown] = []
        self._totals: dict[str, tuple[float, float]] = {}
        self._stops: dict[tuple[str, str], float] = {}
        self._keys_by_symbol: dict[str, set[tuple[str, str]]] | None = None

    def observe(self, ticker: Ticker) -> None:
        """Record a price (from the ticker stream or a market read); repeats of a timestamp are ignored."""
        history = self._prices.get(ticker.symbol)
        if history is None:
            history = self._prices[ticker.symbol] = PriceHistory(self._history)
        if history.last is None or ticker.ts > history.last[0]:
            history.add(ticker.ts, ticker.last)
            self._moved.add(ticker.symbol)

    def observe_equity(self, wallets: Iterable[Wallet]) -> None:
        """Raise the session's equity peak with the total equity of the given accounts."""
        self._peak_equity = max(self._peak_equity, sum(w.equity for w in wallets))

    @property
    def peak_equity(self) -> float:
        return self._peak_equity

    def sigma(self, symbol: str) -> float | None:
        """The symbol's hourly realised volatility from the recorded prices."""
        history = self._prices.get(symbol)
        return None if history is None else history.sigma()

    def compute(
        self,
        positions: Sequence[Position],
        orders: Sequence[Order],
        wallets: Mapping[str, Wallet],
        known_stops: Mapping[tuple[str, str], float] | None = None,
        refresh: Collection[str] | None = None,
    ) -> list[InsightRow]:
        """The snapshot's ``insights`` list for this state: the rows of :func:`risk_notes`' notes.

        ``known_stops`` ((account, symbol) -> SL price, from the TP/SL monitors) take precedence over
        the stops found among the open orders.

        ``refresh``: the symbols whose notes are made at this state; None (the default) for all of
        them. So are those of the symbols where a position opened, closed, turned, was resized or
        had its stop changed since the last computation (an event lost is not a reason to show a
        stale stop). A symbol's notes are made together; the other symbols keep theirs (stop and
        exposure notes) as last computed. The concentration is made of the exposures as shown, and
        the drawdown is always the current equity's.
        """
        self.observe_equity(wallets.values())
        equity = sum(w.equity for w in wallets.values())
        known = dict(known_stops or {})
        thresholds = self.thresholds
        last = self._last
        if (
            last is not None
            # Nothing due (the same state makes no note), or every note made with no price since.
            and ((refresh is not None and not refresh) or (last.complete and not self._moved))
            and last.holds(positions, orders, wallets, known, self._peak_equity, thresholds)
        ):
            return list(last.rows)
        fresh = thresholds != self._thresholds_used  # every note is made again (its row kept if equal)
        self._thresholds_used = thresholds
        # A monitor's stop takes precedence: the orders are searched only for the other positions.
        unknown = list(
            compress(positions, map(not_, map(known.__contains__, map(_account_symbol, positions))))
        )
        found, orders_read = self._stops_found(unknown, orders)
        stops = {**found, **known}  # a monitor's stop first
        since = None if fresh or refresh is None else self._changes_since(positions, stops, refresh)
        due: set[str] | None = None if since is None else since.due
        if since is None and not fresh and refresh is not None:
            due = self._changed_symbols(positions, stops)
            due.update(symbol for symbol in refresh if symbol not in due)
        # The volatility of a symbol with new prices, for the notes made now (a thousand figures
        # at every tick otherwise, most of them for notes kept).
        moved = self._moved if due is None else self._moved & due
        for symbol in moved:
            self._sigmas[symbol] = self.sigma(symbol)
        self._moved = set() if due is None else self._moved - moved
        if since is not None:
            self._notes_of_due(positions, stops, equity, since)
        else:
            totals, self._stop_list = self._stop_notes_of(positions, stops, fresh, due)
            self._exposure_list = self._exposure_notes_of(totals, equity, fresh, due)
            self._totals, self._keys_by_symbol = totals, None
        self._stops = stops
        shown = [*self._exposure_list, *self._concentration_shown(), *self._stop_list]
        drawdown = drawdown_note(equity, self._peak_equity, thresholds)
        self._drawdown = _shown(_fields_of(drawdown), self._drawdown)
        shown.append(self._drawdown)
        # risk_notes' stable sort: its permutation depends on the keys in this order alone.
        keys = list(map(_order_key, shown))
        if keys != self._order_keys:  # element by element, by identity first: the keys are kept
            self._order_keys = keys
            self._sorted = sorted(range(len(keys)), key=keys.__getitem__)
        rows = list(map(_row, map(shown.__getitem__, self._sorted)))
        self._last = _Computed(
            list(positions),
            orders_read,
            dict(wallets),
            known,
            self._peak_equity,
            thresholds,
            rows,
            due is None,
        )
        return list(rows)

    def _stops_found(
        self, unknown: list[Position], orders: Sequence[Order]
    ) -> tuple[dict[tuple[str, str], float], list[Order] | None]:
        """:func:`stop_prices` of the positions with no monitor's stop, and the orders read (None:
        not read, as stop_prices does not when none is held). The orders are grouped again only
        when they are not the very same as last time; the grouping is of all of them, since the
        positions they are searched for may change alone."""
        held = [(p, p.side) for p in unknown if p.side is not None]
        if not held:
            return {}, None
        read, triggers = self._triggers
        if not _same_items(orders, read):
            read = list(orders)
            triggers = _stop_triggers(read)
            self._triggers = (read, triggers)
        return _stops_among(held, triggers), read

    def _changed_symbols(
        self, positions: Sequence[Position], stops: Mapping[tuple[str, str], float]
    ) -> set[str]:
        """The symbols where a position opened, closed, turned, was resized or had its stop
        changed since the last computation."""
        last, get, stop_of = self._stop_notes, self._stop_notes.get, stops.get
        changed: set[str] = set()
        kept = 0  # open positions noted before: all of them are still open when as many as noted
        for position in positions:
            side, size = position.side, position.size
            if side is None or not size > 0:
                continue
            key = (position.account, position.symbol)
            entry = get(key)
            if entry is None:
                changed.add(position.symbol)
                continue
            kept += 1
            if entry[0][0] is not side or entry[0][2] != stop_of(key) or entry[3] != size:
                changed.add(position.symbol)
        if kept != len(last):  # some closed: their symbols (a position is listed once)
            still = {(p.account, p.symbol) for p in positions if p.side is not None and p.size > 0}
            changed.update(symbol for _, symbol in last.keys() - still)
        return changed

    def _stop_notes_of(
        self,
        positions: Sequence[Position],
        stops: Mapping[tuple[str, str], float],
        fresh: bool,
        due: Container[str] | None,
    ) -> tuple[dict[str, tuple[float, float]], list[_Shown]]:
        """The open positions' stop notes, in their order, and their (net, gross) notional per
        symbol in one pass: a plain loop (no call, closure or tuple of inputs per position unless its
        note is built again), as :func:`exposure_by_symbol` sums them, to the bit. A position of a
        symbol not ``due`` (when given) keeps its note and its notional as last computed."""
        last: dict[tuple[str, str], _StopEntry] = self._stop_notes
        following: dict[tuple[str, str], _StopEntry] = {}
        totals: dict[str, tuple[float, float]] = {}
        notes: list[_Shown] = []
        for position in positions:
            side, size = position.side, position.size
            if side is None or not size > 0:  # not Position.is_open: a property call per position
                continue
            symbol, account = position.symbol, position.account
            key = (account, symbol)
            entry = last.get(key)
            if entry is None or due is None or symbol in due:
                entry = self._stop_entry(position, entry, stops, fresh)
            value = entry[4]
            net, gross = totals.get(symbol, _NOTHING)
            totals[symbol] = (net + value, gross + abs(value))
            following[key] = entry
            notes.append(entry[2])
        self._stop_notes = following  # the notes of positions no longer open are forgotten
        return totals, notes

    def _stop_entry(
        self,
        position: Position,
        entry: _StopEntry | None,
        stops: Mapping[tuple[str, str], float],
        fresh: bool,
    ) -> _StopEntry:
        """An open position's stop entry at this state: ``entry`` (its last) while it is made of the
        same, else its note made again (the row kept when it shows the same)."""
        side, size, symbol, account = (
            cast(Side, position.side),
            position.size,
            position.symbol,
            position.account,
        )
        stop = stops.get((account, symbol))
        mark = position.mark_price
        value = size * mark if side is Side.BUY else -size * mark  # notional(), the same floats
        sigma = self._sigmas.get(symbol)
        # The note shows the account, symbol (the key), side and mark, and nothing else of it.
        inputs = (side, mark, stop, sigma)
        if entry is None or fresh or entry[0] != inputs:
            if entry is not None and entry[0][0] is side:
                where, last_shown = entry[1], entry[2]
            else:
                where, last_shown = _where(account, symbol, side), None
            fields = _stop_fields(account, symbol, where, side, mark, stop, sigma, self.thresholds)
            return (inputs, where, _shown(fields, last_shown), size, value)
        if entry[3] != size:  # the same note; its notional is the new size's
            return (inputs, entry[1], entry[2], size, value)
        return entry

    def _exposure_notes_of(
        self,
        totals: dict[str, tuple[float, float]],
        equity: float,
        fresh: bool,
        due: Container[str] | None,
    ) -> list[_Shown]:
        """The exposure notes by symbol; the concentration note made again when a gross changed. A
        symbol not ``due`` (when given) keeps its note (and the equity it was made with)."""
        changed = fresh
        if totals.keys() != set(self._held):
            self._held = sorted(totals)
            changed = True
        last, following = self._exposure_notes, {}
        notes: list[_Shown] = []
        for symbol in self._held:
            entry = last.get(symbol)
            made = self._exposure_entry(
                symbol, totals[symbol], equity, entry, fresh=fresh, due=due is None or symbol in due
            )
            changed = changed or entry is None or entry[1] != made[1]
            following[symbol] = made
            notes.append(made[3])
        self._exposure_notes = following
        if changed:
            self._concentrate(totals)
        return notes

    def _exposure_entry(
        self,
        symbol: str,
        total: tuple[float, float],
        equity: float,
        entry: _ExposureEntry | None,
        *,
        fresh: bool,
        due: bool,
    ) -> _ExposureEntry:
        """A symbol's exposure entry at its (net, gross) ``total``: ``entry`` (its last) while made of
        the same figures (and, unless ``due``, whatever the equity), else (or ``fresh``) made again."""
        net, gross = total
        if (
            entry is not None
            and not fresh
            and entry[0] == net
            and entry[1] == gross
            and (entry[2] == equity or not due)
        ):
            return entry
        fields = _exposure_fields(symbol, net, gross, equity, self.thresholds)
        return (net, gross, equity, _shown(fields, None if entry is None else entry[3]))

    def _concentrate(self, totals: Mapping[str, tuple[float, float]]) -> None:
        """The concentration note made again, of the gross figures alone."""
        exposure = {symbol: totals[symbol] for symbol in self._held}
        concentration = concentration_note(exposure, self.thresholds)
        last_concentration = self._concentration
        self._concentration = (
            None if concentration is None else _shown(_fields_of(concentration), last_concentration)
        )

    def _concentration_shown(self) -> list[_Shown]:
        return [] if self._concentration is None else [self._concentration]

    def _changes_since(
        self, positions: Sequence[Position], stops: Mapping[tuple[str, str], float], refresh: Collection[str]
    ) -> _ChangesSince | None:
        """The symbols due (``refresh``, and those :meth:`_changed_symbols` would add) and what the
        notes of those alone are made from, when every listed position is open, once: the positions
        new since the last computation (opened, changed, or closed and gone from the list) told by
        identity and by key in C, then only those looked at (a re-read of a thousand positions, all
        new objects, makes only the due symbols' notes). None otherwise: the whole pass decides."""
        last, entries = self._last, self._stop_notes
        if last is None or len(entries) != len(last.positions):  # one open position each, last time
            return None
        keys = list(map(_account_symbol, positions))
        index = dict(zip(keys, range(len(keys)), strict=True))
        if len(index) != len(keys):  # a key twice
            return None
        seen = set(map(id, last.positions))  # alive (the last list holds them): no id is reused
        new = list(compress(range(len(positions)), map(not_, map(seen.__contains__, map(id, positions)))))
        gone = entries.keys() - index.keys()
        due = set(refresh)
        new_keys: dict[str, list[tuple[str, str]]] = {}
        for at in new:
            position = positions[at]
            side, size = position.side, position.size
            if side is None or not size > 0:  # listed but not open: the whole pass skips it
                return None
            entry = entries.get(keys[at])
            if entry is None or entry[0][0] is not side or entry[3] != size:
                due.add(position.symbol)
            new_keys.setdefault(position.symbol, []).append(keys[at])
        due.update(symbol for _, symbol in gone)
        if stops != self._stops:  # a stop moved (or one of a key with no position: no note shows it)
            moved = set(stops.items()).symmetric_difference(self._stops.items())
            due.update(symbol for key, symbol in map(itemgetter(0), moved) if (key, symbol) in index)
        return _ChangesSince(due, keys, index, gone, new_keys)

    def _notes_of_due(
        self,
        positions: Sequence[Position],
        stops: Mapping[tuple[str, str], float],
        equity: float,
        since: _ChangesSince,
    ) -> None:
        """:meth:`_stop_notes_of` and :meth:`_exposure_notes_of` for the due symbols alone (see
        :meth:`_changes_since`): their positions' entries, totals and exposures made again, the other
        symbols' kept as they are; a symbol held no more, or held now, leaves or joins the list."""
        entries, totals, exposures, held = self._stop_notes, self._totals, self._exposure_notes, self._held
        by_symbol = self._keys_by_symbol
        if by_symbol is None:
            by_symbol = self._keys_by_symbol = {}
            for key in entries:
                by_symbol.setdefault(key[1], set()).add(key)
        for key in since.gone:
            del entries[key]
            by_symbol[key[1]].discard(key)
        grosses_moved = False
        for symbol in since.due:
            listed = by_symbol.setdefault(symbol, set())
            listed.update(since.new.get(symbol, ()))
            places = sorted(map(since.index.__getitem__, listed))  # in the list's order, as summed there
            net, gross = _NOTHING
            for at in places:
                key = since.keys[at]
                entry = entries[key] = self._stop_entry(positions[at], entries.get(key), stops, False)
                net, gross = net + entry[4], gross + abs(entry[4])
            last = exposures.get(symbol)
            at = bisect_left(held, symbol)
            if not places:  # held no more: its notes go
                del by_symbol[symbol]
                if last is not None:
                    del exposures[symbol], totals[symbol], held[at], self._exposure_list[at]
                    grosses_moved = True
                continue
            totals[symbol] = (net, gross)
            made = exposures[symbol] = self._exposure_entry(
                symbol, (net, gross), equity, last, fresh=False, due=True
            )
            grosses_moved = grosses_moved or last is None or made[1] != last[1]
            if last is None:  # held now
                held.insert(at, symbol)
                self._exposure_list.insert(at, made[3])
            else:
                self._exposure_list[at] = made[3]
        self._stop_list = list(map(itemgetter(2), map(entries.__getitem__, since.keys)))
        if grosses_moved:
            self._concentrate(totals)
