"""The simulated price feed: a seeded geometric Brownian motion per symbol, with a mark price.

Each tick draws two standard normals per symbol, in the listing order, from the exchange's one
``random.Random``: the first moves the (unrounded) price by GBM with zero drift, the second moves the
mark's basis, a small mean-reverting offset (AR(1), capped at +-0.2 %), so the mark differs slightly
from the last price as on a real venue. The published last and mark are rounded to the tick size.
The same seed therefore gives the same path, and saving the RNG state continues it exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.core.models import Instrument, Ticker, TriggerBy

SECONDS_PER_YEAR = 365.0 * 24.0 * 3600.0
BASIS_PERSISTENCE = 0.95
"""How much of the mark's basis survives one tick (AR(1) coefficient)."""
BASIS_NOISE = 0.0001
"""Standard deviation of the basis innovation per tick (1 bp), giving a ~3 bp typical basis."""
BASIS_CAP = 0.002


def gbm_step(price: float, volatility: float, dt_s: float, z: float) -> float:
    """One zero-drift geometric Brownian step of ``dt_s`` seconds with annualised ``volatility``."""
    dt = dt_s / SECONDS_PER_YEAR
    return price * math.exp(-0.5 * volatility * volatility * dt + volatility * math.sqrt(dt) * z)


def basis_step(basis: float, z: float) -> float:
    """The mark's next relative offset from the price: mean-reverting, capped."""
    return max(-BASIS_CAP, min(BASIS_CAP, BASIS_PERSISTENCE * basis + BASIS_NOISE * z))


@dataclass(slots=True)
class SymbolPrice:
    """One symbol's market state: the unrounded GBM price, the mark basis, and the published prices."""

    price: float
    basis: float
    last: float
    mark: float


class PriceFeed:
    """Last and mark prices of the listed symbols, advanced one tick at a time from a shared RNG."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        start_prices: Mapping[str, float],
        rng: random.Random,
        *,
        volatility: float,
        tick_interval_s: float,
    ) -> None:
        self._instruments = dict(instruments)
        self._rng = rng
        self.volatility = volatility
        self.tick_interval_s = tick_interval_s
        self._prices: dict[str, SymbolPrice] = {}
        for symbol, instrument in self._instruments.items():
            start = instrument.round_price(start_prices[symbol])
            self._prices[symbol] = SymbolPrice(price=start, basis=0.0, last=start, mark=start)

    @property
    def symbols(self) -> list[str]:
        """The symbols in feed order (the order their random draws are taken in)."""
        return list(self._prices)

    def step(self) -> None:
        """Advance every symbol by one tick."""
        for symbol, state in self._prices.items():
            instrument = self._instruments[symbol]
            z_price = self._rng.gauss(0.0, 1.0)
            z_basis = self._rng.gauss(0.0, 1.0)
            # The floor keeps a crashing path on the grid instead of reaching zero.
            state.price = max(
                instrument.tick_size, gbm_step(state.price, self.volatility, self.tick_interval_s, z_price)
            )
            state.basis = basis_step(state.basis, z_basis)
            state.last = instrument.round_price(state.price)
            state.mark = max(instrument.tick_size, instrument.round_price(state.price * (1.0 + state.basis)))

    def set_price(self, symbol: str, last: float, mark: float | None = None) -> None:
        """Put the market at a scripted price; the mark equals ``last`` unless given."""
        instrument = self._instruments[symbol]
        last = instrument.round_price(last)
        mark = last if mark is None else instrument.round_price(mark)
        if last <= 0 or mark <= 0:
            raise ValueError(f"{symbol}: prices must be > 0, got last={last} mark={mark}")
        self._prices[symbol] = SymbolPrice(price=last, basis=mark / last - 1.0, last=last, mark=mark)

    def last(self, symbol: str) -> float:
        return self._prices[symbol].last

    def mark(self, symbol: str) -> float:
        return self._prices[symbol].mark

    def reference(self, symbol: str, trigger_by: TriggerBy | None) -> float:
        """The price a conditional order watches (IndexPrice is served by the mark: there is no index)."""
        return self.last(symbol) if trigger_by in (None, TriggerBy.LAST_PRICE) else self.mark(symbol)

    def marks(self) -> dict[str, float]:
        """Every symbol's mark price."""
        return {symbol: state.mark for symbol, state in self._prices.items()}

    def ticker(self, symbol: str, ts: float) -> Ticker:
        """The symbol's ticker; the book is one tick either side of the last price."""
        state = self._prices[symbol]
        tick = self._instruments[symbol].tick_size
        bid = self._instruments[symbol].round_price(max(tick, state.last - tick))
        ask = self._instruments[symbol].round_price(state.last + tick)
        return Ticker(symbol=symbol, last=state.last, mark=state.mark, bid=bid, ask=ask, ts=ts)

    # --- persistence -------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-ready prices (floats round-trip exactly through JSON)."""
        return {
            symbol: {"price": s.price, "basis": s.basis, "last": s.last, "mark": s.mark}
            for symbol, s in self._prices.items()
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the prices of the symbols present in ``state`` (others keep their start price)."""
        for symbol, s in state.items():
            if symbol in self._prices:
                self._prices[symbol] = SymbolPrice(
                    price=float(s["price"]),
                    basis=float(s["basis"]),
                    last=float(s["last"]),
                    mark=float(s["mark"]),
                )
