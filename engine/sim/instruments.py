"""The simulator's listing catalog: which linear USDT perpetuals it can trade, with Bybit-like filters.

The filters follow what ``/v5/market/instruments-info`` reports for these symbols (tickSize, qtyStep,
minOrderQty, maxOrderQty, minNotionalValue, leverage range); the start prices are round, plausible
levels where a fresh simulated market opens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from engine.core.errors import BadInput
from engine.core.models import Instrument


@dataclass(frozen=True, slots=True)
class Listing:
    """A symbol the simulator can list: its trading filters and the price a fresh market opens at."""

    instrument: Instrument
    start_price: float


def _listing(
    symbol: str, tick: float, step: float, max_qty: float, max_leverage: float, start: float
) -> Listing:
    # Every listed perpetual has minOrderQty == qtyStep and a 5 USDT minimum order value, as on Bybit.
    instrument = Instrument(
        symbol=symbol,
        tick_size=tick,
        qty_step=step,
        min_qty=step,
        max_qty=max_qty,
        min_notional=5.0,
        max_leverage=max_leverage,
        min_leverage=1.0,
    )
    return Listing(instrument, start)


CATALOG: Mapping[str, Listing] = MappingProxyType(
    {
        item.instrument.symbol: item
        for item in (
            _listing("BTCUSDT", 0.1, 0.001, 1190.0, 100.0, 95000.0),
            _listing("ETHUSDT", 0.01, 0.01, 7240.0, 100.0, 3300.0),
            _listing("SOLUSDT", 0.01, 0.1, 80000.0, 100.0, 180.0),
            _listing("BNBUSDT", 0.01, 0.01, 1500.0, 75.0, 680.0),
            _listing("XRPUSDT", 0.0001, 1.0, 3_000_000.0, 75.0, 2.2),
            _listing("DOGEUSDT", 0.00001, 1.0, 20_000_000.0, 75.0, 0.32),
            _listing("ADAUSDT", 0.0001, 1.0, 3_000_000.0, 75.0, 0.9),
            _listing("LINKUSDT", 0.001, 0.1, 40_000.0, 75.0, 22.0),
            _listing("AVAXUSDT", 0.001, 0.1, 40_000.0, 50.0, 38.0),
        )
    }
)
"""Every symbol the simulator can list, by name."""


def unlisted_problem(symbols: Sequence[str]) -> str | None:
    """Why the simulator cannot list ``symbols`` (the unknown ones, and what it does list), or None."""
    unknown = [s for s in symbols if s not in CATALOG]
    if not unknown:
        return None
    return f"no simulated listing for {', '.join(unknown)}; the simulator lists {', '.join(CATALOG)}"


def check_symbols(symbols: Sequence[str], where: str = "sim.symbols") -> None:
    """Refuse, as bad input naming the setting, symbols the simulator does not list.

    Called where a simulator is built from settings and by ``check-config`` when the venue is the
    simulator: core cannot know the catalog (it must not import the simulator), and with
    ``venue.kind = "bybit"`` the same key lists real symbols to watch, which the catalog need not hold.
    """
    problem = unlisted_problem(symbols)
    if problem:
        raise BadInput(where, problem)


def listings(symbols: Sequence[str]) -> dict[str, Listing]:
    """The catalog entries of ``symbols`` in the given order; raises ValueError naming unknown ones."""
    problem = unlisted_problem(symbols)
    if problem:
        raise ValueError(problem)
    return {s: CATALOG[s] for s in dict.fromkeys(symbols)}
