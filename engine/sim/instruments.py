"""The simulator's listing catalog: which linear USDT perpetuals it can trade, with Bybit-like filters.

The filters follow what ``/v5/market/instruments-info`` reports for these symbols (tickSize, qtyStep,
minOrderQty, maxOrderQty, minNotionalValue, leverage range); the start prices are round, plausible
levels where a fresh simulated market opens.

Beyond the named catalog, the simulator lists synthetic perpetuals ``SYN0001USDT`` ... ``SYN10000USDT``
(``sim.synthetic_symbols`` says how many a market lists), to test with many more positions than nine
symbols allow. Each one's filters and start price are a pure function of its number
(:func:`synthetic_listing`), so a symbol is the same listing whatever the count, in a saved market too.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
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


MAX_SYNTHETIC = 10_000
"""The highest synthetic symbol number (the upper bound of ``sim.synthetic_symbols``'s range)."""
SYNTHETIC_PRICE_RANGE = (0.001, 50_000.0)
"""Start prices of synthetic symbols spread log-uniformly over this range (almost 8 orders of magnitude)."""
SYNTHETIC_STEP_VALUE = 1.0
"""A synthetic symbol's qtyStep is the power of ten worth at most this many USDT at its start price,
well under the 5 USDT minimum order value, so the minimum is reachable in small increments."""
SYNTHETIC_MAX_NOTIONAL = 2_000_000.0
"""maxOrderQty of a synthetic symbol is the power of ten nearest to this many USDT at its start price."""
_SYNTHETIC_NAME = re.compile(r"SYN(\d{4,5})USDT")


def synthetic_symbol(number: int) -> str:
    """The name of synthetic symbol ``number`` (1 -> ``SYN0001USDT``)."""
    return f"SYN{number:04d}USDT"


def synthetic_symbols(count: int) -> list[str]:
    """The first ``count`` synthetic symbols, in number order."""
    return [synthetic_symbol(n) for n in range(1, count + 1)]


def synthetic_number(symbol: str) -> int | None:
    """The number of a synthetic symbol name (``SYN0007USDT`` -> 7), None for any other name.

    Only the canonical spelling counts (``SYN007USDT`` or ``SYN00007USDT`` are not synthetic), so one
    number has one name, and only numbers 1 to :data:`MAX_SYNTHETIC`.
    """
    match = _SYNTHETIC_NAME.fullmatch(symbol)
    if match is None:
        return None
    number = int(match.group(1))
    return number if 1 <= number <= MAX_SYNTHETIC and synthetic_symbol(number) == symbol else None


def is_synthetic(symbol: str) -> bool:
    """Whether ``symbol`` names a synthetic listing (of any number in range)."""
    return synthetic_number(symbol) is not None


def _power_of_ten(exponent: int) -> float:
    # float(Decimal) is the float nearest to the exact power, as a literal like 0.0001 would be.
    return float(Decimal(1).scaleb(exponent))


@lru_cache(maxsize=MAX_SYNTHETIC)
def synthetic_listing(number: int) -> Listing:
    """Synthetic symbol ``number``'s filters and start price, drawn from its number alone.

    A private RNG seeded by the number (string seeds hash the same on every platform and run) draws a
    log-uniform start price in :data:`SYNTHETIC_PRICE_RANGE` and a max leverage of 25, 50, 75 or 100.
    The rest follows from the price, as on real listings: tickSize is the power of ten about 1e-4 of
    the price (1e-5 to 1e-4 of it), the start price is a multiple of it; qtyStep (= minOrderQty) is
    the power of ten worth at most :data:`SYNTHETIC_STEP_VALUE` USDT; maxOrderQty a power of ten worth
    about :data:`SYNTHETIC_MAX_NOTIONAL`; minNotionalValue 5 USDT. Raises ValueError outside
    1..:data:`MAX_SYNTHETIC`.
    """
    if not 1 <= number <= MAX_SYNTHETIC:
        raise ValueError(f"synthetic symbols are numbered 1 to {MAX_SYNTHETIC}, not {number}")
    rng = random.Random(f"opconsole-synthetic-listing:{number}")
    low, high = (math.log10(bound) for bound in SYNTHETIC_PRICE_RANGE)
    raw = 10.0 ** rng.uniform(low, high)
    leverage = rng.choice((25.0, 50.0, 75.0, 100.0))
    tick_exp = math.floor(math.log10(raw)) - 4
    # The price as an exact decimal multiple of the tick, then the float nearest to it (what a
    # reply's "lastPrice" string parses to), so Decimal(str(price)) is a whole number of ticks.
    units = max(1, round(raw / 10.0**tick_exp))
    start = float(Decimal(units).scaleb(tick_exp))
    step_exp = math.floor(math.log10(SYNTHETIC_STEP_VALUE / start))
    max_exp = max(step_exp, round(math.log10(SYNTHETIC_MAX_NOTIONAL / start)))
    symbol = synthetic_symbol(number)
    return _listing(
        symbol,
        _power_of_ten(tick_exp),
        _power_of_ten(step_exp),
        _power_of_ten(max_exp),
        leverage,
        start,
    )


def listing(symbol: str) -> Listing | None:
    """The listing of ``symbol``: a catalog entry or a synthetic symbol (any number), else None."""
    found = CATALOG.get(symbol)
    if found is not None:
        return found
    number = synthetic_number(symbol)
    return synthetic_listing(number) if number is not None else None


def unlisted_problem(symbols: Sequence[str], synthetic: int | None = None) -> str | None:
    """Why the simulator cannot list ``symbols`` (the unknown ones, and what it does list), or None.

    ``synthetic`` is ``sim.synthetic_symbols``: synthetic symbols above it are refused. None accepts
    every synthetic number (a saved market keeps the synthetic symbols it listed when the count is
    lowered later).
    """
    limit = MAX_SYNTHETIC if synthetic is None else synthetic
    numbers = {s: synthetic_number(s) for s in symbols if s not in CATALOG}
    unknown = [s for s, number in numbers.items() if number is None or number > limit]
    if not unknown:
        return None
    lists = ", ".join(CATALOG)
    if limit:
        lists += f" and {synthetic_symbol(1)} to {synthetic_symbol(limit)}"
    problem = f"no simulated listing for {', '.join(unknown)}; the simulator lists {lists}"
    beyond = [number for s in unknown if (number := numbers[s]) is not None]
    if beyond:
        # The name is fine, the count is too small: say which count would list them.
        highest = max(beyond)
        problem += (
            f" (sim.synthetic_symbols = {synthetic}; {synthetic_symbol(highest)} needs at least {highest})"
        )
    return problem


def check_symbols(symbols: Sequence[str], synthetic: int = 0, where: str = "sim.symbols") -> None:
    """Refuse, as bad input naming the setting, symbols the simulator does not list, synthetic ones
    above ``synthetic`` (``sim.synthetic_symbols``) included.

    Called where a simulator is built from settings and by ``check-config`` when the venue is the
    simulator: core cannot know the catalog (it must not import the simulator), and with
    ``venue.kind = "bybit"`` the same key lists real symbols to watch, which the catalog need not hold.
    """
    problem = unlisted_problem(symbols, synthetic)
    if problem:
        raise BadInput(where, problem)


def listings(symbols: Sequence[str]) -> dict[str, Listing]:
    """The listings of ``symbols`` in the given order (catalog entries and synthetic symbols of any
    number); raises ValueError naming unknown ones."""
    problem = unlisted_problem(symbols)
    if problem:
        raise ValueError(problem)
    found = {s: listing(s) for s in dict.fromkeys(symbols)}
    return {s: item for s, item in found.items() if item is not None}
