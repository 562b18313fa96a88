"""Bybit V5 JSON -> engine models: REST results, private/public stream messages and request bodies.

Bybit's real shapes (see the recorded fixtures) drive every rule here: every number is a string, an
absent number is ``""``, ``"0"`` in a price field means "not set", a flat position has ``side ""``,
times are millisecond strings. Parsers are pure functions; the venue and the fake server both use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from engine.venue.errors import InvalidRequest

Payload = Mapping[str, Any]

_NO_REJECT = frozenset({"", "EC_NoError"})


# --- scalars ------------------------------------------------------------------------------------


def num(value: Any, default: float = 0.0) -> float:
    """A Bybit number (string or number); ``""`` / None (absent) gives ``default``."""
    if value is None or value == "":
        return default
    return float(value)


def opt_num(value: Any) -> float | None:
    """A Bybit number that may be absent (``""``); None when absent."""
    if value is None or value == "":
        return None
    return float(value)


def opt_price(value: Any) -> float | None:
    """A price field where both ``""`` and zero (``"0"``, ``"0.00"``) mean "not set"."""
    parsed = opt_num(value)
    return parsed if parsed else None


def ms_to_s(value: Any, default: float = 0.0) -> float:
    """Bybit's millisecond timestamps (strings or ints) as epoch seconds."""
    if value is None or value == "":
        return default
    return int(value) / 1000.0


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


def _trigger_direction(value: Any) -> TriggerDirection | None:
    code = int(value or 0)
    return TriggerDirection(code) if code in (1, 2) else None


def _trigger_by(value: Any) -> TriggerBy | None:
    return TriggerBy(value) if value in TriggerBy._value2member_map_ else None


def _order_type(value: Any) -> OrderType:
    if value not in OrderType._value2member_map_:
        raise InvalidRequest(f"orderType must be Market or Limit, got {value!r}", 10001)
    return OrderType(value)


def _time_in_force(value: Any) -> TimeInForce:
    return TimeInForce(value) if value in TimeInForce._value2member_map_ else TimeInForce.GTC


# --- REST results and stream items ----------------------------------------------------------------


def parse_instrument(item: Payload) -> Instrument:
    """One entry of ``/v5/market/instruments-info`` (category linear)."""
    lot = item.get("lotSizeFilter", {})
    price = item.get("priceFilter", {})
    leverage = item.get("leverageFilter", {})
    return Instrument(
        symbol=item["symbol"],
        tick_size=num(price.get("tickSize")),
        qty_step=num(lot.get("qtyStep")),
        min_qty=num(lot.get("minOrderQty")),
        max_qty=num(lot.get("maxOrderQty"), default=float("inf")),
        min_notional=num(lot.get("minNotionalValue"), default=5.0),
        max_leverage=num(leverage.get("maxLeverage"), default=100.0),
        min_leverage=num(leverage.get("minLeverage"), default=1.0),
    )


def parse_ticker(item: Payload, ts: float) -> Ticker:
    """A ticker from ``/v5/market/tickers`` or the ``tickers.SYMBOL`` topic (``ts`` in seconds)."""
    last = num(item.get("lastPrice"))
    return Ticker(
        symbol=item["symbol"],
        last=last,
        mark=num(item.get("markPrice"), default=last),
        bid=num(item.get("bid1Price"), default=last),
        ask=num(item.get("ask1Price"), default=last),
        ts=ts,
    )


def parse_wallet(account: str, item: Payload, ts: float, coin: str = "USDT") -> Wallet:
    """One account of ``/v5/account/wallet-balance`` (or the ``wallet`` topic), seen in ``coin``.

    ``availableToWithdraw`` is per coin but Bybit has been emptying it for UNIFIED accounts; when it
    is ``""`` the account-level ``totalAvailableBalance`` (USD) stands in for it.
    """
    row = next((c for c in item.get("coin", []) if c.get("coin") == coin), None)
    if row is None:
        return Wallet(account, 0.0, 0.0, 0.0, 0.0, ts)
    available = opt_num(row.get("availableToWithdraw"))
    if available is None:
        available = num(item.get("totalAvailableBalance"))
    return Wallet(
        account=account,
        equity=num(row.get("equity")),
        wallet_balance=num(row.get("walletBalance")),
        available=available,
        upnl=num(row.get("unrealisedPnl")),
        ts=ts,
    )


def parse_position(account: str, item: Payload) -> Position:
    """One entry of ``/v5/position/list`` or of the ``position`` topic (``entryPrice`` there)."""
    entry = item.get("avgPrice")
    if entry in (None, ""):
        entry = item.get("entryPrice")
    return Position(
        account=account,
        symbol=item["symbol"],
        side=side_or_none(item.get("side")),
        size=num(item.get("size")),
        entry_price=num(entry),
        mark_price=num(item.get("markPrice")),
        upnl=num(item.get("unrealisedPnl")),
        realised_pnl=num(item.get("cumRealisedPnl")),
        leverage=num(item.get("leverage"), default=1.0),
        ts=ms_to_s(item.get("updatedTime")),
        position_idx=int(item.get("positionIdx") or 0),
    )


def parse_order(account: str, item: Payload) -> Order:
    """One entry of ``/v5/order/realtime`` or of the ``order`` topic."""
    reject = item.get("rejectReason", "")
    return Order(
        account=account,
        order_id=item["orderId"],
        link_id=item.get("orderLinkId", ""),
        symbol=item["symbol"],
        side=_side(item.get("side")),
        order_type=_order_type(item.get("orderType")),
        qty=num(item.get("qty")),
        price=opt_price(item.get("price")),
        status=OrderStatus(item["orderStatus"]),
        filled_qty=num(item.get("cumExecQty")),
        avg_fill_price=opt_price(item.get("avgPrice")),
        trigger_price=opt_price(item.get("triggerPrice")),
        trigger_direction=_trigger_direction(item.get("triggerDirection")),
        trigger_by=_trigger_by(item.get("triggerBy")),
        reduce_only=flag(item.get("reduceOnly")),
        close_on_trigger=flag(item.get("closeOnTrigger")),
        time_in_force=_time_in_force(item.get("timeInForce")),
        created=ms_to_s(item.get("createdTime")),
        updated=ms_to_s(item.get("updatedTime")),
        reject_reason="" if reject in _NO_REJECT else str(reject),
    )


def parse_execution(account: str, item: Payload) -> Execution:
    """One entry of ``/v5/execution/list`` or of the ``execution`` topic."""
    return Execution(
        account=account,
        exec_id=item["execId"],
        order_id=item.get("orderId", ""),
        link_id=item.get("orderLinkId", ""),
        symbol=item["symbol"],
        side=_side(item.get("side")),
        price=num(item.get("execPrice")),
        qty=num(item.get("execQty")),
        fee=num(item.get("execFee")),
        is_maker=flag(item.get("isMaker")),
        closed_size=num(item.get("closedSize")),
        order_type=_order_type(item.get("orderType")),
        ts=ms_to_s(item.get("execTime")),
        exec_type=item.get("execType") or "Trade",
        fee_rate=num(item.get("feeRate")),
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
        return float(_required(params, key))
    except (TypeError, ValueError):
        raise InvalidRequest(f"params error: {key} must be a number", 10001) from None


def _opt_req_num(params: Payload, key: str) -> float | None:
    if params.get(key) in (None, ""):
        return None
    return _req_num(params, key)


def parse_order_request(params: Payload) -> OrderRequest:
    """The body of ``/v5/order/create`` (or one item of create-batch) as an :class:`OrderRequest`."""
    order_type = _order_type(_required(params, "orderType"))
    price = _opt_req_num(params, "price") if order_type is OrderType.LIMIT else None
    if order_type is OrderType.LIMIT and not price:
        raise InvalidRequest("params error: price is required for a Limit order", 10001)
    return OrderRequest(
        symbol=_required(params, "symbol"),
        side=_side(_required(params, "side")),
        order_type=order_type,
        qty=_req_num(params, "qty"),
        price=price,
        trigger_price=opt_price(params.get("triggerPrice")),
        trigger_direction=_trigger_direction(params.get("triggerDirection")),
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
