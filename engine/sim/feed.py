"""The simulated price feed: a seeded geometric Brownian motion per symbol, with a mark price.

Each tick draws two standard normals per symbol, in the listing order, from the exchange's
``random.Random`` (the synthetic symbols from a second one of their own, so listing any number of
them leaves the named symbols' paths exactly as they were): the first moves the (unrounded) price by
GBM with zero drift, the second moves the mark's basis, a small mean-reverting offset (AR(1), capped
at +-0.2 %), so the mark differs slightly from the last price as on a real venue. The published last
and mark are rounded to the tick size. The same seed therefore gives the same path, and saving the
RNG states continues it exactly.

With a thousand synthetic symbols the feed is the simulator's hot loop, so they round with float
arithmetic (:func:`power_of_ten_rounder`: their ticks are exact powers of ten by construction) rather
than through ``Decimal``; the catalog's symbols keep the ``Decimal`` rounding their recorded paths
were made with.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from engine.core.models import Instrument, Ticker, TriggerBy
from engine.sim.instruments import is_synthetic

SECONDS_PER_YEAR = 365.0 * 24.0 * 3600.0
BASIS_PERSISTENCE = 0.95
"""How much of the mark's basis survives one tick (AR(1) coefficient)."""
BASIS_NOISE = 0.0001
"""Standard deviation of the basis innovation per tick (1 bp), giving a ~3 bp typical basis."""
BASIS_CAP = 0.002

Rounder = Callable[[float], float]
"""Rounds a price to the nearest multiple of a symbol's tick."""


def gbm_step(price: float, volatility: float, dt_s: float, z: float) -> float:
    """One zero-drift geometric Brownian step of ``dt_s`` seconds with annualised ``volatility``."""
    dt = dt_s / SECONDS_PER_YEAR
    return price * math.exp(-0.5 * volatility * volatility * dt + volatility * math.sqrt(dt) * z)


def basis_step(basis: float, z: float) -> float:
    """The mark's next relative offset from the price: mean-reverting, capped."""
    return max(-BASIS_CAP, min(BASIS_CAP, BASIS_PERSISTENCE * basis + BASIS_NOISE * z))


def power_of_ten_rounder(tick: float) -> Rounder | None:
    """A fast nearest rounding to ``tick`` when it is an exact power of ten (as written: 1e-7, 0.01,
    1, 100); None for any other tick.

    The result is the float nearest to a whole number of ticks, the same float ``Decimal`` rounding
    gives for that number of ticks (an integer divided by an exact power of ten is correctly rounded);
    only a value within an ulp of a half tick may land on the other neighbour.
    """
    digits, exponent = Decimal(repr(tick)).normalize().as_tuple()[1:]
    if digits != (1,) or not isinstance(exponent, int) or abs(exponent) > 15:
        return None
    if exponent < 0:
        scale = float(10**-exponent)
        return lambda value: round(value * scale) / scale
    step = float(10**exponent)
    return lambda value: round(value / step) * step


@dataclass(slots=True)
class SymbolPrice:
    """One symbol's market state: the unrounded GBM price, the mark basis, and the published prices."""

    price: float
    basis: float
    last: float
    mark: float


@dataclass(frozen=True, slots=True)
class _Lane:
    """A symbol as the tick loop walks it: its state, tick and rounding, resolved once."""

    symbol: str
    state: SymbolPrice
    tick: float
    round: Rounder


class PriceFeed:
    """Last and mark prices of the listed symbols, advanced one tick at a time from a shared RNG
    (``synthetic_rng`` for the synthetic symbols; ``rng`` for those too when it is None)."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        start_prices: Mapping[str, float],
        rng: random.Random,
        *,
        volatility: float,
        tick_interval_s: float,
        synthetic_rng: random.Random | None = None,
    ) -> None:
        self._instruments = dict(instruments)
        self._rng = rng
        self.volatility = volatility
        self.tick_interval_s = tick_interval_s
        self._prices: dict[str, SymbolPrice] = {}
        self._marks: Mapping[str, float] | None = None  # see marks()
        self._lanes: dict[str, _Lane] = {}
        # Per RNG, its symbols in feed order: the order that RNG's draws are taken in.
        self._streams: dict[int, tuple[random.Random, list[_Lane]]] = {}
        for symbol, instrument in self._instruments.items():
            start = instrument.round_price(start_prices[symbol])
            state = SymbolPrice(price=start, basis=0.0, last=start, mark=start)
            synthetic = synthetic_rng is not None and is_synthetic(symbol)
            fast = power_of_ten_rounder(instrument.tick_size) if synthetic else None
            lane = _Lane(symbol, state, instrument.tick_size, fast or instrument.round_price)
            self._prices[symbol] = state
            self._lanes[symbol] = lane
            stream_rng = synthetic_rng if synthetic and synthetic_rng is not None else rng
            self._streams.setdefault(id(stream_rng), (stream_rng, []))[1].append(lane)

    @property
    def symbols(self) -> list[str]:
        """The symbols in feed order (the order their random draws are taken in)."""
        return list(self._prices)

    def step(self) -> None:
        """Advance every symbol by one tick."""
        self._marks = None
        dt = self.tick_interval_s / SECONDS_PER_YEAR
        # gbm_step's exponent, its terms computed once per tick in the same order (same floats).
        drift = -0.5 * self.volatility * self.volatility * dt
        diffusion = self.volatility * math.sqrt(dt)
        exp = math.exp
        for rng, lanes in self._streams.values():
            gauss = rng.gauss
            for lane in lanes:
                state, tick = lane.state, lane.tick
                z_price = gauss(0.0, 1.0)
                z_basis = gauss(0.0, 1.0)
                # The floor keeps a crashing path on the grid instead of reaching zero.
                price = max(tick, state.price * exp(drift + diffusion * z_price))
                basis = basis_step(state.basis, z_basis)
                state.price, state.basis = price, basis
                state.last = lane.round(price)
                state.mark = max(tick, lane.round(price * (1.0 + basis)))

    def set_price(self, symbol: str, last: float, mark: float | None = None) -> None:
        """Put the market at a scripted price; the mark equals ``last`` unless given."""
        instrument = self._instruments[symbol]
        last = instrument.round_price(last)
        mark = last if mark is None else instrument.round_price(mark)
        if last <= 0 or mark <= 0:
            raise ValueError(f"{symbol}: prices must be > 0, got last={last} mark={mark}")
        self._set(symbol, price=last, basis=mark / last - 1.0, last=last, mark=mark)

    def _set(self, symbol: str, *, price: float, basis: float, last: float, mark: float) -> None:
        # In place: the tick loop holds the state objects.
        self._marks = None
        state = self._prices[symbol]
        state.price, state.basis, state.last, state.mark = price, basis, last, mark

    def last(self, symbol: str) -> float:
        return self._prices[symbol].last

    def mark(self, symbol: str) -> float:
        return self._prices[symbol].mark

    def reference(self, symbol: str, trigger_by: TriggerBy | None) -> float:
        """The price a conditional order watches (IndexPrice is served by the mark: there is no index)."""
        return self.last(symbol) if trigger_by in (None, TriggerBy.LAST_PRICE) else self.mark(symbol)

    def marks(self) -> Mapping[str, float]:
        """Every symbol's mark price: the same mapping until a price moves (never changed once
        handed out), so what is worked out from it can be kept by its identity. Every acknowledged
        action pushes the account's wallet, which is worked out from the marks: at a thousand
        symbols, a new mapping per action cost more than the action."""
        if self._marks is None:
            self._marks = MappingProxyType({symbol: state.mark for symbol, state in self._prices.items()})
        return self._marks

    def ticker(self, symbol: str, ts: float) -> Ticker:
        """The symbol's ticker; the book is one tick either side of the last price."""
        return self._ticker(self._lanes[symbol], ts)

    def tickers(self, ts: float) -> list[Ticker]:
        """Every symbol's ticker, in feed order."""
        return [self._ticker(lane, ts) for lane in self._lanes.values()]

    @staticmethod
    def _ticker(lane: _Lane, ts: float) -> Ticker:
        last, tick = lane.state.last, lane.tick
        bid = lane.round(max(tick, last - tick))
        return Ticker(lane.symbol, last, lane.state.mark, bid, lane.round(last + tick), ts)

    # --- persistence -------------------------------------------------------------------------
    def to_state(self, symbols: Collection[str] | None = None) -> dict[str, Any]:
        """JSON-ready prices (floats round-trip exactly through JSON), of ``symbols`` only when given."""
        return {
            symbol: {"price": s.price, "basis": s.basis, "last": s.last, "mark": s.mark}
            for symbol, s in self._prices.items()
            if symbols is None or symbol in symbols
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the prices of the symbols present in ``state`` (others keep their start price)."""
        for symbol, s in state.items():
            if symbol in self._prices:
                self._set(
                    symbol,
                    price=float(s["price"]),
                    basis=float(s["basis"]),
                    last=float(s["last"]),
                    mark=float(s["mark"]),
                )
