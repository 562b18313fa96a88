"""Engine models -> Bybit V5 JSON: request parameters (the venue) and result records (the fake server).

The inverse of :mod:`engine.venue.bybit.parse`, and shaped like the recorded fixtures: numbers as
strings with the instrument's decimals, ``""`` for a number that is absent, ``"0"`` (padded to the tick)
for a price that is not set, ``side ""`` for a flat position, millisecond timestamps as strings.
"""

from __future__ import annotations

from decimal import Decimal
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
    Ticker,
    Wallet,
    format_step,
)
from engine.venue.errors import InvalidRequest

CATEGORY = "linear"
SETTLE_COIN = "USDT"
SERVER_TIME = "/v5/market/time"
"""Bybit's unsigned server-time endpoint (the venue measures its clock offset with it)."""
PRIVATE_WS_PATH = "/v5/private"
PUBLIC_WS_PATH = "/v5/public/linear"
PRIVATE_TOPICS = ("execution", "order", "position", "wallet")
"""The private stream's topics the engine uses (Bybit has more)."""
MONEY_STEP = 0.00000001
"""Balances and PnL carry 8 decimals, as Bybit's wallet payloads do."""

JsonDict = dict[str, Any]


def fmt(value: float, step: float | None = None) -> str:
    """A number as Bybit writes it: with ``step``'s decimals, or the shortest exact decimal."""
    if step:
        return format_step(value, step)
    text = format(Decimal(repr(float(value))).normalize(), "f")
    return "0" if text in ("-0", "") else text


def fmt_opt(value: float | None, step: float | None = None) -> str:
    """An optional number: ``""`` when absent."""
    return "" if value is None else fmt(value, step)


def fmt_price_field(value: float | None, tick: float | None = None) -> str:
    """A price that may be unset: ``"0"`` (padded to the tick) when None, as Bybit does."""
    return fmt(value or 0.0, tick)


def ms(seconds: float) -> str:
    """Epoch seconds as Bybit's millisecond string."""
    return str(round(seconds * 1000))


def _steps(instrument: Instrument | None) -> tuple[float | None, float | None]:
    return (instrument.tick_size, instrument.qty_step) if instrument else (None, None)


# --- request parameters (what the venue sends) ------------------------------------------------------


def order_params(request: OrderRequest, instrument: Instrument | None = None) -> JsonDict:
    """``/v5/order/create`` parameters (also one item of create-batch) for one-way mode.

    An order of a type read back as UNKNOWN is refused here (InvalidRequest), never sent."""
    if request.order_type is OrderType.UNKNOWN:
        raise InvalidRequest(f"{request.symbol}: an order of unknown type is never sent", 10001)
    tick, step = _steps(instrument)
    params: JsonDict = {
        "category": CATEGORY,
        "symbol": request.symbol,
        "side": request.side.value,
        "orderType": request.order_type.value,
        "qty": fmt(request.qty, step),
        "timeInForce": request.time_in_force.value,
        "positionIdx": 0,
    }
    if request.price is not None and request.order_type is OrderType.LIMIT:
        params["price"] = fmt(request.price, tick)
    if request.trigger_price is not None:
        params["triggerPrice"] = fmt(request.trigger_price, tick)
        if request.trigger_direction is not None:
            params["triggerDirection"] = int(request.trigger_direction)
        if request.trigger_by is not None:
            params["triggerBy"] = request.trigger_by.value
    if request.reduce_only:
        params["reduceOnly"] = True
    if request.close_on_trigger:
        params["closeOnTrigger"] = True
    if request.link_id:
        params["orderLinkId"] = request.link_id
    return params


def _address(request: AmendRequest | CancelRequest) -> JsonDict:
    params: JsonDict = {"category": CATEGORY, "symbol": request.symbol}
    if request.order_id:
        params["orderId"] = request.order_id
    if request.link_id:
        params["orderLinkId"] = request.link_id
    return params


def amend_params(request: AmendRequest, instrument: Instrument | None = None) -> JsonDict:
    """``/v5/order/amend`` parameters; fields left None are not sent (left as they are)."""
    tick, step = _steps(instrument)
    params = _address(request)
    if request.qty is not None:
        params["qty"] = fmt(request.qty, step)
    if request.price is not None:
        params["price"] = fmt(request.price, tick)
    if request.trigger_price is not None:
        params["triggerPrice"] = fmt(request.trigger_price, tick)
    return params


def cancel_params(request: CancelRequest) -> JsonDict:
    """``/v5/order/cancel`` parameters."""
    return _address(request)


def batch_item(params: JsonDict) -> JsonDict:
    """A batch item: the single-order parameters without ``category`` (it is set once per batch)."""
    return {k: v for k, v in params.items() if k != "category"}


# --- result records (what the fake server answers) ---------------------------------------------------


def envelope(code: int, msg: str, result: Any, time_ms: int, ext: Any = None) -> JsonDict:
    """Bybit's response envelope."""
    return {
        "retCode": code,
        "retMsg": msg,
        "result": result if result is not None else {},
        "retExtInfo": ext if ext is not None else {},
        "time": time_ms,
    }


def instrument_json(instrument: Instrument, launch_ms: int = 0) -> JsonDict:
    """An entry of ``/v5/market/instruments-info`` (linear perpetual)."""
    tick, step = instrument.tick_size, instrument.qty_step
    return {
        "symbol": instrument.symbol,
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "baseCoin": instrument.symbol.removesuffix(SETTLE_COIN),
        "quoteCoin": SETTLE_COIN,
        "launchTime": str(launch_ms),
        "deliveryTime": "0",
        "deliveryFeeRate": "",
        "priceScale": str(len(fmt(tick, tick).partition(".")[2])),
        "leverageFilter": {
            "minLeverage": fmt(instrument.min_leverage),
            "maxLeverage": fmt(instrument.max_leverage, 0.01),
            "leverageStep": "0.01",
        },
        "priceFilter": {
            "minPrice": fmt(tick, tick),
            "maxPrice": fmt(1_000_000.0, tick),
            "tickSize": fmt(tick),
        },
        "lotSizeFilter": {
            "maxOrderQty": fmt(instrument.max_qty, step),
            "minOrderQty": fmt(instrument.min_qty, step),
            "qtyStep": fmt(step),
            "postOnlyMaxOrderQty": fmt(instrument.max_qty, step),
            "maxMktOrderQty": fmt(instrument.max_qty, step),
            "minNotionalValue": fmt(instrument.min_notional),
        },
        "unifiedMarginTrade": True,
        "fundingInterval": 480,
        "settleCoin": SETTLE_COIN,
    }


def ticker_json(ticker: Ticker, instrument: Instrument | None = None) -> JsonDict:
    """An entry of ``/v5/market/tickers`` (and the data of a ``tickers.SYMBOL`` message)."""
    tick, _ = _steps(instrument)
    return {
        "symbol": ticker.symbol,
        "lastPrice": fmt(ticker.last, tick),
        "indexPrice": fmt(ticker.mark, tick),
        "markPrice": fmt(ticker.mark, tick),
        "prevPrice24h": "",
        "price24hPcnt": "",
        "highPrice24h": "",
        "lowPrice24h": "",
        "prevPrice1h": "",
        "openInterest": "",
        "openInterestValue": "",
        "turnover24h": "",
        "volume24h": "",
        "fundingRate": "",
        "nextFundingTime": "",
        "predictedDeliveryPrice": "",
        "basisRate": "",
        "deliveryFeeRate": "",
        "deliveryTime": "0",
        "bid1Price": fmt(ticker.bid, tick),
        "bid1Size": "",
        "ask1Price": fmt(ticker.ask, tick),
        "ask1Size": "",
    }


def wallet_json(wallet: Wallet) -> JsonDict:
    """An account of ``/v5/account/wallet-balance`` (UNIFIED, with its USDT coin)."""
    money = MONEY_STEP
    return {
        "totalEquity": fmt(wallet.equity, money),
        "accountIMRate": "0",
        "totalMarginBalance": fmt(wallet.equity, money),
        "totalInitialMargin": fmt(wallet.equity - wallet.available, money),
        "accountType": "UNIFIED",
        "totalAvailableBalance": fmt(wallet.available, money),
        "accountMMRate": "0",
        "totalPerpUPL": fmt(wallet.upnl, money),
        "totalWalletBalance": fmt(wallet.wallet_balance, money),
        "totalMaintenanceMargin": "0",
        "coin": [
            {
                "availableToBorrow": "",
                "accruedInterest": "0",
                "availableToWithdraw": fmt(wallet.available, money),
                "totalOrderIM": "0",
                "equity": fmt(wallet.equity, money),
                "totalPositionMM": "0",
                "usdValue": fmt(wallet.equity, money),
                "unrealisedPnl": fmt(wallet.upnl, money),
                "borrowAmount": "0.0",
                "totalPositionIM": "0",
                "walletBalance": fmt(wallet.wallet_balance, money),
                "cumRealisedPnl": "0",
                "coin": SETTLE_COIN,
            }
        ],
    }


def position_json(position: Position, instrument: Instrument | None = None) -> JsonDict:
    """An entry of ``/v5/position/list`` (and the ``position`` topic, which adds ``entryPrice``)."""
    tick, step = _steps(instrument)
    open_ = position.is_open
    return {
        "symbol": position.symbol,
        "leverage": fmt(position.leverage),
        "avgPrice": fmt(position.entry_price, tick) if open_ else "0",
        "liqPrice": "",
        "riskLimitValue": "2000000",
        "takeProfit": "",
        "positionValue": fmt(position.size * position.entry_price, MONEY_STEP) if open_ else "",
        "tpslMode": "Full",
        "riskId": 1,
        "trailingStop": "0",
        "unrealisedPnl": fmt(position.upnl, MONEY_STEP) if open_ else "",
        "markPrice": fmt(position.mark_price, tick),
        "cumRealisedPnl": fmt(position.realised_pnl, MONEY_STEP),
        "adlRankIndicator": 2 if open_ else 0,
        "isReduceOnly": False,
        "mmrSysUpdatedTime": "",
        "leverageSysUpdatedTime": "",
        "positionMM": "0",
        "positionBalance": "0",
        "createdTime": ms(position.ts),
        "updatedTime": ms(position.ts),
        "seq": round(position.ts * 1000),
        "positionIdx": position.position_idx,
        "positionIM": "0",
        "side": position.side.value if position.side is not None else "",
        "bustPrice": "",
        "size": fmt(position.size, step),
        "positionStatus": "Normal",
        "stopLoss": "",
        "tradeMode": 0,
        "autoAddMargin": 0,
    }


def _stop_order_type(order: Order) -> str:
    return "Stop" if order.trigger_price is not None else ""


def order_json(order: Order, instrument: Instrument | None = None) -> JsonDict:
    """An entry of ``/v5/order/realtime`` (and the ``order`` topic)."""
    tick, step = _steps(instrument)
    price = order.price if order.price is not None else 0.0
    leaves = 0.0 if not order.status.is_open else order.remaining_qty
    untriggered = order.status is OrderStatus.UNTRIGGERED
    return {
        "symbol": order.symbol,
        "orderType": order.order_type.value,
        "orderLinkId": order.link_id,
        "orderId": order.order_id,
        "cancelType": "UNKNOWN",
        "avgPrice": fmt_price_field(order.avg_fill_price, tick),
        "stopOrderType": _stop_order_type(order),
        "lastPriceOnCreated": "",
        "orderStatus": order.status.value,
        "takeProfit": "",
        "cumExecValue": fmt(order.filled_qty * (order.avg_fill_price or 0.0), MONEY_STEP),
        "triggerDirection": int(order.trigger_direction) if order.trigger_direction else 0,
        "isLeverage": "",
        "rejectReason": order.reject_reason or "EC_NoError",
        "price": fmt(price, tick),
        "orderIv": "",
        "createdTime": ms(order.created),
        "tpTriggerBy": "",
        "positionIdx": 0,
        "timeInForce": order.time_in_force.value,
        "leavesValue": fmt(leaves * price, MONEY_STEP) if not untriggered else "0",
        "updatedTime": ms(order.updated),
        "side": order.side.value,
        "triggerPrice": fmt_price_field(order.trigger_price, tick),
        "cumExecFee": "0",
        "leavesQty": fmt(leaves, step),
        "slTriggerBy": "",
        "closeOnTrigger": order.close_on_trigger,
        "cumExecQty": fmt(order.filled_qty, step),
        "reduceOnly": order.reduce_only,
        "qty": fmt(order.qty, step),
        "stopLoss": "",
        "triggerBy": order.trigger_by.value if order.trigger_by else "",
    }


def execution_json(execution: Execution, instrument: Instrument | None = None) -> JsonDict:
    """An entry of ``/v5/execution/list`` (and the ``execution`` topic)."""
    tick, step = _steps(instrument)
    return {
        "symbol": execution.symbol,
        "orderId": execution.order_id,
        "orderLinkId": execution.link_id,
        "side": execution.side.value,
        "orderPrice": "",
        "orderQty": "",
        "leavesQty": "",
        "orderType": execution.order_type.value,
        "stopOrderType": "UNKNOWN",
        "execFee": fmt(execution.fee, MONEY_STEP),
        "execId": execution.exec_id,
        "execPrice": fmt(execution.price, tick),
        "execQty": fmt(execution.qty, step),
        "execType": execution.exec_type,
        "execValue": fmt(execution.price * execution.qty, MONEY_STEP),
        "execTime": ms(execution.ts),
        "isMaker": execution.is_maker,
        "feeRate": fmt(execution.fee_rate),
        "tradeIv": "",
        "markIv": "",
        "markPrice": "",
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": fmt(execution.closed_size, step),
    }
