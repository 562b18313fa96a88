"""Trade approaches as pure functions: (request, instrument, mark, balance, params) -> order plan.

**Fast**: one market entry, one take-profit for the whole position, one stop-loss.
**Conservative**: ``params.entries`` entries of equal quantity (the first at market, the others limit
orders at the given prices), take-profits split by ``params.tp_split`` of the *filled* size, one
stop-loss for the whole position.

Nothing here talks to a venue: a request is validated in full (every problem listed, nothing sent
when there is one) and turned into a :class:`TradePlan` that the TP/SL manager executes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from engine.core.models import Instrument, OrderType, Side
from engine.core.numbers import fmt_number, fmt_usdt
from engine.trading.params import TradingParams
from engine.trading.slots import snap_qty


class Approach(StrEnum):
    """How a position was opened; ``adopted`` positions were found on the venue."""

    FAST = "fast"
    CONSERVATIVE = "conservative"
    ADOPTED = "adopted"


class TradeRejected(Exception):
    """A trade request that was refused before anything was sent; ``errors`` says why, one per line.

    ``transient``: the request itself was fine but the moment was not (the venue could not be read,
    the engine was reconciling, the state could not be written); the same request may pass later.
    """

    def __init__(self, errors: list[str], *, transient: bool = False) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.transient = transient


@dataclass(frozen=True, slots=True)
class TradeRequest:
    """What the operator (or a scenario) asks for. ``entry_prices[0]`` is None: the first entry is
    at market; further entries are limit prices. TPs are ordered nearest first."""

    account: str
    symbol: str
    side: Side
    approach: Approach
    margin: float
    leverage: float
    entry_prices: tuple[float | None, ...]
    tp_prices: tuple[float, ...]
    sl_price: float
    qty: float | None = None
    """The quantity of each entry, when it is given rather than derived from margin x leverage
    (a mirror trade is sized from the main trade's quantity); ``margin`` must then match it."""


@dataclass(frozen=True, slots=True)
class EntryOrder:
    """One planned entry: slot ``e1``.. , market or limit."""

    slot: str
    order_type: OrderType
    qty: float
    price: float | None


@dataclass(frozen=True, slots=True)
class TradePlan:
    """A validated request turned into orders: entries now, TPs and SL as entries fill."""

    request: TradeRequest
    entries: tuple[EntryOrder, ...]
    tp_prices: tuple[float, ...]
    tp_split: tuple[float, ...]
    sl_price: float
    total_qty: float
    warnings: tuple[str, ...] = ()
    """What :func:`request_warnings` found: allowed, but probably not what the operator meant."""


def breakeven_price(side: Side, avg_entry: float, instrument: Instrument, params: TradingParams) -> float:
    """Average entry moved by round-trip taker fees plus the buffer, rounded away from the entry so
    a stop there never loses money."""
    move = 2 * params.taker_fee_rate + params.breakeven_buffer_pct / 100.0
    return instrument.round_price(avg_entry * (1 + side.sign * move), "up" if side is Side.BUY else "down")


def offset_price(side: Side, mark: float, offset_pct: float, instrument: Instrument) -> float:
    """A price ``offset_pct`` percent from the mark, + on the trade's profit side."""
    return instrument.round_price(mark * (1 + side.sign * offset_pct / 100.0))


def request_from_offsets(
    *,
    account: str,
    symbol: str,
    side: Side,
    approach: Approach,
    margin: float,
    leverage: float,
    mark: float,
    instrument: Instrument,
    entry_offsets_pct: list[float],
    tp_offsets_pct: list[float],
    sl_offset_pct: float,
) -> TradeRequest:
    """Build a request from offsets relative to the mark (the scenario file's notation); the first
    entry is always at market whatever its offset.

    Raises :class:`TradeRejected` when the mark or an offset is not a finite number (a NaN offset
    would become a NaN price that no check below can refuse).
    """
    numbers = {"mark": mark, "sl_offset_pct": sl_offset_pct}
    numbers |= {f"entry_offsets_pct[{i}]": v for i, v in enumerate(entry_offsets_pct)}
    numbers |= {f"tp_offsets_pct[{i}]": v for i, v in enumerate(tp_offsets_pct)}
    problems = [
        f"{name} must be a finite number, got {value!r}"
        for name, value in numbers.items()
        if not _finite(value)
    ]
    if problems:
        raise TradeRejected(problems)
    entries: list[float | None] = [None]
    entries += [offset_price(side, mark, off, instrument) for off in entry_offsets_pct[1:]]
    return TradeRequest(
        account=account,
        symbol=symbol,
        side=side,
        approach=approach,
        margin=margin,
        leverage=leverage,
        entry_prices=tuple(entries),
        tp_prices=tuple(offset_price(side, mark, off, instrument) for off in tp_offsets_pct),
        sl_price=offset_price(side, mark, sl_offset_pct, instrument),
    )


def _finite(value: object) -> bool:
    """A real, finite number (not a bool, a string, NaN or an infinity)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _named_prices(request: TradeRequest) -> list[tuple[str, float]]:
    """Every price of ``request`` with the name a message gives it (the market entry has none)."""
    prices = [(f"entry {i + 1}", p) for i, p in enumerate(request.entry_prices) if p is not None]
    prices += [(f"TP{i + 1}", p) for i, p in enumerate(request.tp_prices)]
    prices.append(("SL", request.sl_price))
    return prices


def _non_finite(request: TradeRequest) -> list[str]:
    """One sentence per number of ``request`` that is not a finite number.

    Checked before anything else: NaN compares false with everything, so every later check
    (``tp > entry``, ``sl < entry``) would let it through, and an infinity passes half of them.
    """
    numbers = [("margin", request.margin), ("leverage", request.leverage), *_named_prices(request)]
    if request.qty is not None:
        numbers.append(("qty", request.qty))
    return [f"{name} must be a finite number, got {value!r}" for name, value in numbers if not _finite(value)]


MAX_PRICE_FACTOR = 100.0
"""A price more than this many times the mark is a typo (an extra digit, ``1e308``), never a plan:
the venue would refuse it after the leverage call had gone out."""


def _far_from_mark(request: TradeRequest, mark: float, mark_text: str) -> list[str]:
    """One sentence per price of ``request`` absurdly far above the mark (``mark_text``, as shown)."""
    return [
        f"{name} {fmt_number(price)} is over {MAX_PRICE_FACTOR:g} times the mark {mark_text}"
        for name, price in _named_prices(request)
        if price > mark * MAX_PRICE_FACTOR
    ]


def _shape(approach: Approach, params: TradingParams) -> tuple[int, tuple[float, ...]]:
    """(number of entries, TP split) of an approach."""
    if approach is Approach.FAST:
        return 1, (100.0,)
    return params.entries, params.tp_split


def per_entry_qty(request: TradeRequest, instrument: Instrument, mark: float, n_entries: int) -> float:
    """The quantity of each entry: the request's own, or margin x leverage at the mark split evenly,
    rounded down to the qty step."""
    if request.qty is not None:
        return instrument.round_qty(request.qty)
    return instrument.round_qty(request.margin * request.leverage / mark / n_entries)


def validate_request(
    request: TradeRequest,
    instrument: Instrument | None,
    mark: float,
    available: float,
    params: TradingParams,
) -> list[str]:
    """Every problem with a request, as readable sentences; empty when it can be sent."""
    errors: list[str] = []
    if instrument is None or instrument.symbol != request.symbol:
        return [f"unknown symbol {request.symbol!r}"]
    if not isinstance(request.side, Side):
        errors.append(f"side must be Buy or Sell, got {request.side!r}")
        return errors
    if request.approach not in (Approach.FAST, Approach.CONSERVATIVE):
        errors.append(f"approach must be fast or conservative, got {request.approach!r}")
        return errors
    errors = _non_finite(request)
    if errors:
        return errors
    if not _finite(available):
        available = 0.0  # an unreadable balance can pay for nothing
    if not request.margin > 0:
        errors.append(f"margin must be > 0 USDT, got {fmt_number(request.margin)}")
    max_lev = min(instrument.max_leverage, params.max_leverage)
    if not instrument.min_leverage <= request.leverage <= max_lev:
        errors.append(
            f"leverage must be within {instrument.min_leverage:g}..{max_lev:g}, got {request.leverage:g}"
        )
    if not (_finite(mark) and mark > 0):
        errors.append(f"no market price for {request.symbol}")
        return errors
    # the operator's own prices as typed, the venue's at the tick (thousands separators on both)
    mark_text = fmt_number(mark, instrument.tick_size)
    errors += _far_from_mark(request, mark, mark_text)
    n_entries, split = _shape(request.approach, params)
    sign = request.side.sign
    if len(request.entry_prices) != n_entries:
        errors.append(f"{request.approach.value} takes {n_entries} entries, got {len(request.entry_prices)}")
    elif request.entry_prices[0] is not None:
        errors.append("the first entry is at market (no price)")
    limits = [p for p in request.entry_prices[1:] if p is not None]
    if len(limits) != len(request.entry_prices[1:]):
        errors.append("entries after the first need a limit price")
    for price in limits:
        if not price > 0 or (price - mark) * sign >= 0:
            where = "below" if request.side is Side.BUY else "above"
            errors.append(f"limit entry {fmt_number(price)} must be {where} the mark {mark_text}")
    entry_refs = [mark, *limits]
    if len(request.tp_prices) != len(split):
        n_tps = len(request.tp_prices)
        errors.append(f"{request.approach.value} takes {len(split)} take-profits, got {n_tps}")
    worst_entry = max(entry_refs) if request.side is Side.BUY else min(entry_refs)
    best_entry = min(entry_refs) if request.side is Side.BUY else max(entry_refs)
    for i, tp in enumerate(request.tp_prices):
        if (tp - worst_entry) * sign <= 0:
            errors.append(f"TP{i + 1} {fmt_number(tp)} is not beyond the entries on the profit side")
        elif i > 0 and (tp - request.tp_prices[i - 1]) * sign <= 0:
            earlier = fmt_number(request.tp_prices[i - 1])
            errors.append(f"TP{i + 1} {fmt_number(tp)} must be further than TP{i} {earlier}")
    if not request.sl_price > 0 or (request.sl_price - best_entry) * sign >= 0:
        errors.append(f"SL {fmt_number(request.sl_price)} is not beyond the entries on the loss side")
    if errors or not request.margin > 0:
        return errors
    per_entry = per_entry_qty(request, instrument, mark, n_entries)
    if per_entry < instrument.min_qty:
        errors.append(
            f"each entry would be {fmt_number(per_entry, instrument.qty_step)} {request.symbol}, below the "
            f"minimum order qty {fmt_number(instrument.min_qty)}: raise the margin or the leverage"
        )
    elif per_entry * min(entry_refs) < instrument.min_notional:
        errors.append(
            "each entry is worth less than the minimum order value "
            f"{fmt_number(instrument.min_notional)} USDT"
        )
    if per_entry * n_entries > instrument.max_qty:
        errors.append(f"the position would exceed the maximum order qty {fmt_number(instrument.max_qty)}")
    needed = request.margin + request.margin * request.leverage * params.taker_fee_rate
    if needed > available:
        # fmt_usdt shows a fat-fingered margin of 1e300 as 1e+300, not 300 digits
        errors.append(
            f"not enough available balance: need {fmt_usdt(needed)} USDT, have {fmt_usdt(available)}"
        )
    return errors


def request_warnings(
    request: TradeRequest, instrument: Instrument, mark: float, params: TradingParams
) -> list[str]:
    """What a valid request allows but the operator probably did not mean, as readable sentences.

    TP1 inside the breakeven band (between the market entry and breakeven = entry plus round-trip
    fees plus the buffer): when TP1 fills, the stop cannot move to breakeven yet (the venue refuses
    a stop beyond the price); it stays where it is until the price passes breakeven.
    """
    if not request.tp_prices or not mark > 0:
        return []
    tp1 = request.tp_prices[0]
    be = breakeven_price(request.side, mark, instrument, params)
    if (tp1 - be) * request.side.sign > 0:
        return []

    def tick(price: float) -> str:
        return fmt_number(price, instrument.tick_size)

    return [
        f"TP1 {fmt_number(tp1)} lies inside the breakeven band (breakeven {tick(be)} from the entry at "
        f"{tick(mark)}): after TP1 the stop stays at {fmt_number(request.sl_price)} until the price "
        f"passes {tick(be)}"
    ]


def plan_trade(
    request: TradeRequest,
    instrument: Instrument | None,
    mark: float,
    available: float,
    params: TradingParams,
) -> TradePlan:
    """Validate and plan a trade; raises :class:`TradeRejected` listing every problem. The plan
    carries the :func:`request_warnings` (they do not refuse it)."""
    errors = validate_request(request, instrument, mark, available, params)
    if errors or instrument is None:  # an unknown symbol (no instrument) is one of the errors
        raise TradeRejected(errors)
    n_entries, split = _shape(request.approach, params)
    per_entry = per_entry_qty(request, instrument, mark, n_entries)
    entries = tuple(
        EntryOrder(
            slot=f"e{i + 1}",
            order_type=OrderType.MARKET if price is None else OrderType.LIMIT,
            qty=per_entry,
            price=price,
        )
        for i, price in enumerate(request.entry_prices)
    )
    return TradePlan(
        request=request,
        entries=entries,
        tp_prices=request.tp_prices,
        tp_split=split,
        sl_price=request.sl_price,
        total_qty=snap_qty(per_entry * n_entries, instrument),
        warnings=tuple(request_warnings(request, instrument, mark, params)),
    )
