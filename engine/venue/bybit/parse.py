"""Bybit V5 JSON -> engine models: REST results, private/public stream messages and request bodies.

Bybit's real shapes (see the recorded fixtures) drive every rule here: every number is a string, an
absent number is ``""``, ``"0"`` in a price field means "not set", a flat position has ``side ""``,
times are millisecond strings. Parsers are pure functions; the venue and the fake server both use them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Execution,
    Instrument,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Ticker,
    TimeInForce,
    TriggerBy,
    TriggerDirection,
    Wallet,
)
from engine.venue.bybit.wire import SETTLE_COIN
from engine.venue.errors import InvalidRequest, MalformedReply

log = logging.getLogger("opconsole.venue.bybit.parse")

Payload = Mapping[str, Any]
T = TypeVar("T")

_NO_REJECT = frozenset({"", "EC_NoError"})
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
"""A decimal number as JSON and Bybit write it (no "NaN", "inf", "1_000", hex or blanks)."""
_WARN_ONCE_LIMIT = 256
"""Distinct unknown values remembered for the warn-once log (a bound against a garbage feed)."""


class UnreadableRow(Exception):
    """A list row without what identifies it (no execId, no symbol, no side...): it is skipped, with a
    warning naming the field, and the rest of the page is kept."""

    def __init__(self, field: str, value: Any) -> None:
        super().__init__(f"{field} is {value!r}")
        self.field = field
        self.value = value


# --- scalars ------------------------------------------------------------------------------------


def num(value: Any, default: float = 0.0, field: str = "number") -> float:
    """A Bybit number (string or number); ``""`` / None (absent) gives ``default``.

    Anything else that is not a finite decimal ("NaN", "inf", ``1e999``, "abc", a boolean) raises
    :class:`MalformedReply` naming ``field``: a number the engine cannot trust is never used.
    """
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MalformedReply("", field, value, "not a number")
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        raise MalformedReply("", field, value, "not a number")
    parsed = float(value)
    if not math.isfinite(parsed):
        raise MalformedReply("", field, value, "not a finite number")
    return parsed


def opt_num(value: Any, field: str = "number") -> float | None:
    """A Bybit number that may be absent (``""``); None when absent."""
    if value is None or value == "":
        return None
    return num(value, field=field)


def opt_price(value: Any, field: str = "price") -> float | None:
    """A price field where both ``""`` and zero (``"0"``, ``"0.00"``) mean "not set"."""
    parsed = opt_num(value, field)
    return parsed if parsed else None


def ms_to_s(value: Any, default: float = 0.0, field: str = "time") -> float:
    """Bybit's millisecond timestamps (strings or ints) as epoch seconds."""
    if value is None or value == "":
        return default
    return num(value, field=field) / 1000.0


def _int(value: Any, field: str) -> int:
    parsed = num(value, field=field)
    if not parsed.is_integer():
        raise MalformedReply("", field, value, "not an integer")
    return int(parsed)


def flag(value: Any) -> bool:
    """Booleans arrive as JSON booleans, or as ``"0"``/``"1"``/``"true"`` strings in some fields."""
    if isinstance(value, str):
        return value.lower() in ("1", "true")
    return bool(value)


def side_or_none(value: Any) -> Side | None:
    """``"Buy"`` / ``"Sell"``; ``""`` or ``"None"`` (a flat position) gives None."""
    return Side(value) if value in ("Buy", "Sell") else None


def _side(value: Any) -> Side:
    side = side_or_none(value)
    if side is None:
        raise InvalidRequest(f"side must be Buy or Sell, got {value!r}", 10001)
    return side


def _row_side(item: Payload) -> Side:
    """An order's or execution's side: without one the row cannot be booked."""
    side = side_or_none(item.get("side"))
    if side is None:
        raise UnreadableRow("side", item.get("side"))
    return side


def _key(item: Payload, field: str) -> str:
    """A field that identifies the row (symbol, execId, orderId): absent, the row is unreadable."""
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise UnreadableRow(field, value)
    return value


def _trigger_direction(value: Any) -> TriggerDirection | None:
    code = num(value, field="triggerDirection")
    return TriggerDirection(int(code)) if code in (1, 2) else None


def _trigger_by(value: Any) -> TriggerBy | None:
    return TriggerBy(value) if value in TriggerBy._value2member_map_ else None


_warned: set[tuple[str, str]] = set()


def _note_unknown(field: str, value: Any) -> None:
    """Log a value this code does not know, once per (field, value): it is kept, not fatal."""
    key = (field, str(value))
    if key not in _warned and len(_warned) < _WARN_ONCE_LIMIT:
        _warned.add(key)
        log.warning("unknown %s %r from Bybit: kept as UNKNOWN", field, value)


def _order_type(value: Any) -> OrderType:
    """A reply's orderType: an unknown one is UNKNOWN (Bybit itself sends "UNKNOWN" on funding rows)."""
    if value in OrderType._value2member_map_:
        return OrderType(value)
    _note_unknown("orderType", value)
    return OrderType.UNKNOWN


def _order_status(value: Any) -> OrderStatus:
    if value in OrderStatus._value2member_map_:
        return OrderStatus(value)
    _note_unknown("orderStatus", value)
    return OrderStatus.UNKNOWN


def _time_in_force(value: Any) -> TimeInForce:
    return TimeInForce(value) if value in TimeInForce._value2member_map_ else TimeInForce.GTC


# --- rows of a reply ---------------------------------------------------------------------------------


@contextmanager
def reading(endpoint: str) -> Iterator[None]:
    """Name ``endpoint`` (a REST path or a stream topic) in a :class:`MalformedReply` raised inside."""
    try:
        yield
    except MalformedReply as exc:
        if exc.endpoint:
            raise
        raise exc.at(endpoint) from None


def parse_rows(endpoint: str, items: Iterable[Any], parse: Callable[[Payload], T]) -> list[T]:
    """Every row of a list reply that can be read, in order.

    A row without what identifies it (:class:`UnreadableRow`) is skipped with a warning naming the
    field, and the rest of the page is kept; a number that does not parse refuses the whole reply
    (:class:`MalformedReply` naming ``endpoint`` and the field).
    """
    out: list[T] = []
    with reading(endpoint):
        for item in items:
            if not isinstance(item, Mapping):
                log.warning("%s: row skipped: not an object (%r)", endpoint, item)
                continue
            try:
                out.append(parse(item))
            except UnreadableRow as exc:
                log.warning("%s: row skipped: %s", endpoint, exc)
    return out


# --- REST results and stream items ----------------------------------------------------------------


def _step(value: Any, field: str) -> float:
    """A tickSize / qtyStep: a step of 0 (or absent) would make rounding a no-op, so it refuses."""
    step = num(value, field=field)
    if step <= 0:
        raise MalformedReply("", field, value, "a step must be positive")
    return step


def parse_instrument(item: Payload) -> Instrument:
    """One entry of ``/v5/market/instruments-info`` (category linear); refused (MalformedReply) when
    its tickSize or qtyStep is 0 or absent."""
    symbol = _key(item, "symbol")
    lot = item.get("lotSizeFilter") or {}
    price = item.get("priceFilter") or {}
    leverage = item.get("leverageFilter") or {}
    return Instrument(
        symbol=symbol,
        tick_size=_step(price.get("tickSize"), f"{symbol} priceFilter.tickSize"),
        qty_step=_step(lot.get("qtyStep"), f"{symbol} lotSizeFilter.qtyStep"),
        min_qty=num(lot.get("minOrderQty"), field=f"{symbol} lotSizeFilter.minOrderQty"),
        max_qty=_max_qty(lot.get("maxOrderQty"), f"{symbol} lotSizeFilter.maxOrderQty"),
        min_notional=num(lot.get("minNotionalValue"), 5.0, f"{symbol} lotSizeFilter.minNotionalValue"),
        max_leverage=num(leverage.get("maxLeverage"), 100.0, f"{symbol} leverageFilter.maxLeverage"),
        min_leverage=num(leverage.get("minLeverage"), 1.0, f"{symbol} leverageFilter.minLeverage"),
    )


def _max_qty(value: Any, field: str) -> float:
    # Absent means "no cap"; a present one must be a finite number like any other.
    return math.inf if value in (None, "") else num(value, field=field)


def parse_ticker(item: Payload, ts: float) -> Ticker:
    """A ticker from ``/v5/market/tickers`` or the ``tickers.SYMBOL`` topic (``ts`` in seconds)."""
    last = num(item.get("lastPrice"), field="lastPrice")
    return Ticker(
        symbol=_key(item, "symbol"),
        last=last,
        mark=num(item.get("markPrice"), last, "markPrice"),
        bid=num(item.get("bid1Price"), last, "bid1Price"),
        ask=num(item.get("ask1Price"), last, "ask1Price"),
        ts=ts,
    )


def parse_wallet(account: str, item: Payload, ts: float, coin: str = SETTLE_COIN) -> Wallet:
    """One account of ``/v5/account/wallet-balance`` (or the ``wallet`` topic), seen in ``coin``.

    The coin's own row speaks when it holds money. A UNIFIED account margins USDT perpetuals with all
    its collateral, so when the coin's row is absent, holds nothing (the money is in USDC, BTC...), or
    a field is ``""`` (Bybit empties many per-coin fields), the account-level totals stand in:
    ``totalEquity``, ``totalWalletBalance``, ``totalAvailableBalance``, ``totalPerpUPL`` (in USD).
    An account that holds money never reads as 0.
    """
    total_equity = num(item.get("totalEquity"), field="totalEquity")
    totals = (
        total_equity,
        num(item.get("totalWalletBalance"), total_equity, "totalWalletBalance"),
        num(item.get("totalAvailableBalance"), field="totalAvailableBalance"),
        num(item.get("totalPerpUPL"), field="totalPerpUPL"),
    )
    rows = item.get("coin") or []
    row = next((c for c in rows if isinstance(c, Mapping) and c.get("coin") == coin), None)
    equity = opt_num(row.get("equity"), f"{coin} equity") if row is not None else None
    if row is None or equity is None or equity <= 0 < total_equity:
        return Wallet(account, *totals, ts=ts)
    fields = ("walletBalance", "availableToWithdraw", "unrealisedPnl")
    balance, available, upnl = (opt_num(row.get(name), f"{coin} {name}") for name in fields)
    return Wallet(
        account=account,
        equity=equity,
        wallet_balance=totals[1] if balance is None else balance,
        available=totals[2] if available is None else available,
        upnl=totals[3] if upnl is None else upnl,
        ts=ts,
    )


def parse_position(account: str, item: Payload) -> Position:
    """One entry of ``/v5/position/list`` or of the ``position`` topic (``entryPrice`` there)."""
    entry = item.get("avgPrice")
    field = "avgPrice"
    if entry in (None, ""):
        entry, field = item.get("entryPrice"), "entryPrice"
    return Position(
        account=account,
        symbol=_key(item, "symbol"),
        side=side_or_none(item.get("side")),
        size=num(item.get("size"), field="size"),
        entry_price=num(entry, field=field),
        mark_price=num(item.get("markPrice"), field="markPrice"),
        upnl=num(item.get("unrealisedPnl"), field="unrealisedPnl"),
        realised_pnl=num(item.get("cumRealisedPnl"), field="cumRealisedPnl"),
        leverage=num(item.get("leverage"), 1.0, "leverage"),
        ts=ms_to_s(item.get("updatedTime"), field="updatedTime"),
        position_idx=_int(item.get("positionIdx") or 0, "positionIdx"),
    )


def parse_order(account: str, item: Payload) -> Order:
    """One entry of ``/v5/order/realtime`` or of the ``order`` topic."""
    reject = item.get("rejectReason", "")
    return Order(
        account=account,
        order_id=_key(item, "orderId"),
        link_id=str(item.get("orderLinkId") or ""),
        symbol=_key(item, "symbol"),
        side=_row_side(item),
        order_type=_order_type(item.get("orderType")),
        qty=num(item.get("qty"), field="qty"),
        price=opt_price(item.get("price"), "price"),
        status=_order_status(item.get("orderStatus")),
        filled_qty=num(item.get("cumExecQty"), field="cumExecQty"),
        avg_fill_price=opt_price(item.get("avgPrice"), "avgPrice"),
        trigger_price=opt_price(item.get("triggerPrice"), "triggerPrice"),
        trigger_direction=_trigger_direction(item.get("triggerDirection")),
        trigger_by=_trigger_by(item.get("triggerBy")),
        reduce_only=flag(item.get("reduceOnly")),
        close_on_trigger=flag(item.get("closeOnTrigger")),
        time_in_force=_time_in_force(item.get("timeInForce")),
        created=ms_to_s(item.get("createdTime"), field="createdTime"),
        updated=ms_to_s(item.get("updatedTime"), field="updatedTime"),
        reject_reason="" if reject in _NO_REJECT else str(reject),
    )


def parse_execution(account: str, item: Payload) -> Execution:
    """One entry of ``/v5/execution/list`` or of the ``execution`` topic.

    Every ``execType`` is read (``Funding``, ``AdlTrade``, ``BustTrade``, ``Settle``... and any new
    one), kept as Bybit's string: what a row means is the engine's decision, not the parser's.
    Funding rows carry no order (``orderId`` / ``orderLinkId`` often empty, ``orderType`` "UNKNOWN").
    """
    return Execution(
        account=account,
        exec_id=_key(item, "execId"),
        order_id=str(item.get("orderId") or ""),
        link_id=str(item.get("orderLinkId") or ""),
        symbol=_key(item, "symbol"),
        side=_row_side(item),
        price=num(item.get("execPrice"), field="execPrice"),
        qty=num(item.get("execQty"), field="execQty"),
        fee=num(item.get("execFee"), field="execFee"),
        is_maker=flag(item.get("isMaker")),
        closed_size=num(item.get("closedSize"), field="closedSize"),
        order_type=_order_type(item.get("orderType")),
        ts=ms_to_s(item.get("execTime"), field="execTime"),
        exec_type=str(item.get("execType") or "Trade"),
        fee_rate=num(item.get("feeRate"), field="feeRate"),
    )


def next_cursor(result: Payload) -> str:
    """The cursor of the next page, or ``""`` at the end."""
    return str(result.get("nextPageCursor") or "")


# --- request bodies (what the fake server reads) ---------------------------------------------------


def _required(params: Payload, key: str) -> Any:
    value = params.get(key)
    if value is None or value == "":
        raise InvalidRequest(f"params error: {key} is required", 10001)
    return value


def _req_num(params: Payload, key: str) -> float:
    try:
        return num(_required(params, key), field=key)
    except MalformedReply:
        raise InvalidRequest(f"params error: {key} must be a number", 10001) from None


def _request_order_type(value: Any) -> OrderType:
    """The server validating input: an order is Market or Limit, nothing else."""
    if value not in (OrderType.MARKET.value, OrderType.LIMIT.value):
        raise InvalidRequest(f"orderType must be Market or Limit, got {value!r}", 10001)
    return OrderType(value)


def _opt_req_num(params: Payload, key: str) -> float | None:
    if params.get(key) in (None, ""):
        return None
    return _req_num(params, key)


def parse_order_request(params: Payload) -> OrderRequest:
    """The body of ``/v5/order/create`` (or one item of create-batch) as an :class:`OrderRequest`."""
    order_type = _request_order_type(_required(params, "orderType"))
    price = _opt_req_num(params, "price") if order_type is OrderType.LIMIT else None
    if order_type is OrderType.LIMIT and not price:
        raise InvalidRequest("params error: price is required for a Limit order", 10001)
    try:
        direction = _trigger_direction(params.get("triggerDirection"))
    except MalformedReply:
        raise InvalidRequest("params error: triggerDirection must be 1 or 2", 10001) from None
    return OrderRequest(
        symbol=_required(params, "symbol"),
        side=_side(_required(params, "side")),
        order_type=order_type,
        qty=_req_num(params, "qty"),
        price=price,
        trigger_price=_opt_req_num(params, "triggerPrice") or None,
        trigger_direction=direction,
        trigger_by=_trigger_by(params.get("triggerBy")),
        reduce_only=flag(params.get("reduceOnly")),
        close_on_trigger=flag(params.get("closeOnTrigger")),
        time_in_force=_time_in_force(params.get("timeInForce")),
        link_id=str(params.get("orderLinkId") or ""),
    )


def _address(params: Payload) -> tuple[str, str]:
    order_id = str(params.get("orderId") or "")
    link_id = str(params.get("orderLinkId") or "")
    if not order_id and not link_id:
        raise InvalidRequest("params error: orderId or orderLinkId is required", 10001)
    return order_id, link_id


def parse_amend_request(params: Payload) -> AmendRequest:
    """The body of ``/v5/order/amend`` (or one item of amend-batch)."""
    order_id, link_id = _address(params)
    return AmendRequest(
        symbol=_required(params, "symbol"),
        order_id=order_id,
        link_id=link_id,
        qty=_opt_req_num(params, "qty"),
        price=_opt_req_num(params, "price"),
        trigger_price=_opt_req_num(params, "triggerPrice"),
    )


def parse_cancel_request(params: Payload) -> CancelRequest:
    """The body of ``/v5/order/cancel`` (or one item of cancel-batch)."""
    order_id, link_id = _address(params)
    return CancelRequest(symbol=_required(params, "symbol"), order_id=order_id, link_id=link_id)
