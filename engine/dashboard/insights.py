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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.core.models import Order, Position, Side, Ticker, Wallet
from engine.core.read_only import read_only
from engine.core.row_memo import RowMemo
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
        return {
            "kind": self.kind,
            "severity": self.severity,
            "account": self.account,
            "symbol": self.symbol,
            "value": self.value,
            "message": self.message,
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
    wanted = {(p.account, p.symbol) for p, _ in held}
    # Only the orders that can be a stop of a held position are grouped: a few per position, not all.
    triggers: dict[tuple[str, str], list[tuple[Side, float]]] = {}
    for order in orders:
        if order.reduce_only and order.trigger_price is not None:
            key = (order.account, order.symbol)
            if key in wanted:
                triggers.setdefault(key, []).append((order.side, order.trigger_price))
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
    return (_SEVERITY_RANK[note.severity], note.kind, note.account or "", note.symbol or "")


def exposure_note(symbol: str, net: float, gross: float, equity: float, thresholds: Thresholds) -> Insight:
    """A symbol's exposure note from its (net, gross) notional and the total equity."""
    leverage = gross / equity if equity > 0 else math.inf
    direction = "long" if net > 0 else "short" if net < 0 else "flat"
    return Insight(
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
    where = f"{position.account} {position.symbol} {side.value}"
    if stop is None:
        return Insight(
            "no_stop", "critical", position.account, position.symbol, None, f"{where}: no stop-loss"
        )
    distance = adverse_distance(side, position.mark_price, stop)
    if sigma is None:
        return Insight(
            "stop_distance",
            "info",
            position.account,
            position.symbol,
            None,
            f"{where}: stop {distance:.2%} away (volatility not known yet)",
        )
    in_sigmas = distance / sigma
    return Insight(
        "stop_distance",
        _grade(in_sigmas, thresholds.stop_sigma_warn, thresholds.stop_sigma_critical, higher_is_worse=False),
        position.account,
        position.symbol,
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


class NoteBuilders(Protocol):
    """Builds the per-symbol and per-position notes: the pure functions, or the provider's memo of
    them (the same notes, reused while their inputs are unchanged)."""

    def exposure(
        self, symbol: str, net: float, gross: float, equity: float, thresholds: Thresholds
    ) -> Insight:
        """As :func:`exposure_note`."""
        ...

    def stop(
        self, position: Position, stop: float | None, sigma: float | None, thresholds: Thresholds
    ) -> Insight:
        """As :func:`stop_note`."""
        ...


class _PureBuilders:
    """The note builders as they are: no memory."""

    def exposure(
        self, symbol: str, net: float, gross: float, equity: float, thresholds: Thresholds
    ) -> Insight:
        return exposure_note(symbol, net, gross, equity, thresholds)

    def stop(
        self, position: Position, stop: float | None, sigma: float | None, thresholds: Thresholds
    ) -> Insight:
        return stop_note(position, stop, sigma, thresholds)


PURE_BUILDERS: NoteBuilders = _PureBuilders()


def risk_notes(
    positions: Sequence[Position],
    stops: Mapping[tuple[str, str], float],
    sigmas: Mapping[str, float | None],
    equity: float,
    peak_equity: float,
    thresholds: Thresholds = Thresholds(),
    builders: NoteBuilders = PURE_BUILDERS,
) -> list[Insight]:
    """Every note for the given state, most severe first, then in a stable order.

    ``builders`` makes the per-symbol and per-position notes; the result is the same whichever
    builders (pure or memoized) are given.
    """
    open_positions = [p for p in positions if p.is_open]
    exposure = exposure_by_symbol(open_positions)
    notes = [
        builders.exposure(symbol, net, gross, equity, thresholds) for symbol, (net, gross) in exposure.items()
    ]
    concentration = concentration_note(exposure, thresholds)
    if concentration is not None:
        notes.append(concentration)
    for position in open_positions:
        key = (position.account, position.symbol)
        notes.append(builders.stop(position, stops.get(key), sigmas.get(position.symbol), thresholds))
    notes.append(drawdown_note(equity, peak_equity, thresholds))
    notes.sort(key=note_order)
    return notes


# --- the stateful shell -----------------------------------------------------------------------


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


class _MemoBuilders:
    """The note builders with a memory: a symbol's exposure note and a position's stop note are
    reused while what they are made of (their arguments, the thresholds included) is unchanged."""

    def __init__(self) -> None:
        self.exposures: RowMemo[str, Insight] = RowMemo()
        self.stops: RowMemo[tuple[str, str], Insight] = RowMemo()

    def exposure(
        self, symbol: str, net: float, gross: float, equity: float, thresholds: Thresholds
    ) -> Insight:
        return self.exposures.row(
            symbol,
            (net, gross, equity, thresholds),
            lambda: exposure_note(symbol, net, gross, equity, thresholds),
        )

    def stop(
        self, position: Position, stop: float | None, sigma: float | None, thresholds: Thresholds
    ) -> Insight:
        # The note shows the position's account, symbol (the key), side and mark, and nothing else of it.
        return self.stops.row(
            (position.account, position.symbol),
            (position.side, position.mark_price, stop, sigma, thresholds),
            lambda: stop_note(position, stop, sigma, thresholds),
        )

    def end_pass(self) -> None:
        """Forget the notes of symbols and positions no longer held."""
        self.exposures.end_pass()
        self.stops.end_pass()


class InsightsProvider:
    """Keeps recent prices and the session's equity peak; computes the notes on demand.

    At a thousand positions the notes are recomputed at almost every snapshot (order and position
    events drop the cached list), while few of them change in between: a note, and its read-only
    row, is rebuilt only when what it shows changed (:class:`RowMemo`); the list is the same as the
    pure :func:`risk_notes` gives.
    """

    def __init__(self, history: int = 900, thresholds: Thresholds = Thresholds()) -> None:
        self._history = history
        self._prices: dict[str, PriceHistory] = {}
        self._peak_equity = 0.0
        self.thresholds = thresholds
        self._builders = _MemoBuilders()
        self._rows: RowMemo[tuple[str, str | None, str | None], InsightRow] = RowMemo()

    def observe(self, ticker: Ticker) -> None:
        """Record a price (from the ticker stream or a market read); repeats of a timestamp are ignored."""
        history = self._prices.get(ticker.symbol)
        if history is None:
            history = self._prices[ticker.symbol] = PriceHistory(self._history)
        if history.last is None or ticker.ts > history.last[0]:
            history.add(ticker.ts, ticker.last)

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
    ) -> list[InsightRow]:
        """The snapshot's ``insights`` list for this state.

        ``known_stops`` ((account, symbol) -> SL price, from the TP/SL monitors) take precedence over
        the stops found among the open orders.
        """
        self.observe_equity(wallets.values())
        equity = sum(w.equity for w in wallets.values())
        held = sorted({p.symbol for p in positions if p.is_open})
        known = dict(known_stops or {})
        # A monitor's stop takes precedence: the orders are searched only for the other positions.
        unknown = [p for p in positions if (p.account, p.symbol) not in known]
        notes = risk_notes(
            positions,
            stop_prices(unknown, orders) | known,
            {symbol: self.sigma(symbol) for symbol in held},
            equity,
            self._peak_equity,
            self.thresholds,
            self._builders,
        )
        self._builders.end_pass()
        # Read-only where built (one per position): the snapshot's freeze passes them through. The
        # inputs are a 1-tuple so that a reused note compares by identity (tuple ==), an equal new one
        # by its fields.
        rows = [self._row(note) for note in notes]
        self._rows.end_pass()
        return rows

    def _row(self, note: Insight) -> InsightRow:
        return self._rows.row(
            (note.kind, note.account, note.symbol), (note,), lambda: read_only(note.as_dict())
        )
