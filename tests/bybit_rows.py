"""Bybit V5 rows the simulator does not make, written from the Bybit V5 documentation: funding, ADL
and liquidation executions, a UNIFIED wallet funded in USDC, a hedge-mode position list, an
instrument with a zero step. Every number a string, ``""`` where Bybit sends nothing. Used by the
payload tests and, through the fake server's ``add_raw_rows``, by the tests of the real pybit client.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bybit-v5"

# --- rows written from the Bybit V5 documentation ----------------------------------------------------

FUNDING_ROW: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "orderType": "UNKNOWN",
    "underlyingPrice": "",
    "orderLinkId": "",
    "orderId": "",
    "stopOrderType": "UNKNOWN",
    "execTime": "1699257600000",
    "feeRate": "0.0001",
    "tradeIv": "",
    "blockTradeId": "",
    "markPrice": "35006.20",
    "execPrice": "35006.20",
    "markIv": "",
    "orderQty": "0",
    "orderPrice": "0",
    "execValue": "350.062",
    "closedSize": "0",
    "execType": "Funding",
    "seq": 4688002127,
    "side": "Buy",
    "indexPrice": "",
    "leavesQty": "0",
    "isMaker": False,
    "execFee": "0.0350062",
    "execId": "2a1b0b8e-7d43-4c9b-9f5e-5f0a5c4b1a01",
    "execQty": "0.01",
}
"""A long of 0.01 BTC paying one interval's funding (rate 0.01 % of 350.062 USDT at the mark)."""


def funding_received() -> dict[str, Any]:
    """The short side of the same interval: it receives, so ``execFee`` is negative."""
    row = dict(FUNDING_ROW, side="Sell", execFee="-0.0350062")
    row["execId"] = "2a1b0b8e-7d43-4c9b-9f5e-5f0a5c4b1a02"
    return row


ADL_ROW: dict[str, Any] = {
    **FUNDING_ROW,
    "orderType": "UNKNOWN",
    "orderId": "1699260000-BTCUSDT-ADL-592334",
    "execTime": "1699260000000",
    "feeRate": "0",
    "execPrice": "37120.50",
    "markPrice": "37118.00",
    "execValue": "185.6025",
    "closedSize": "0.005",
    "execType": "AdlTrade",
    "side": "Sell",
    "execFee": "0",
    "execId": "5c1d9e4a-2b77-4e0f-8a16-0d8e6f3c2b11",
    "execQty": "0.005",
}
"""Auto-deleveraging closes half of a long at the bankruptcy-price counterparty (no fee)."""

BUST_ROW: dict[str, Any] = {
    **ADL_ROW,
    "orderId": "1699263600-BTCUSDT-LIQ-77",
    "execType": "BustTrade",
    "execPrice": "31500.00",
    "execValue": "157.5",
    "execFee": "0.0945",
    "execId": "9f7e6d5c-4b3a-4291-8e7f-6a5b4c3d2e1f",
}

UNIFIED_IN_USDC: dict[str, Any] = {
    "totalEquity": "20512.44318322",
    "accountIMRate": "0",
    "totalMarginBalance": "20512.44318322",
    "totalInitialMargin": "0",
    "accountType": "UNIFIED",
    "totalAvailableBalance": "20400.1",
    "accountMMRate": "0",
    "totalPerpUPL": "12.5",
    "totalWalletBalance": "20499.94318322",
    "totalMaintenanceMargin": "0",
    "coin": [
        {
            "availableToBorrow": "",
            "bonus": "0",
            "accruedInterest": "0",
            "availableToWithdraw": "",
            "totalOrderIM": "0",
            "equity": "20520.1",
            "totalPositionMM": "0",
            "usdValue": "20512.44318322",
            "spotHedgingQty": "0",
            "unrealisedPnl": "0",
            "collateralSwitch": True,
            "borrowAmount": "0.000000000000000000",
            "totalPositionIM": "0",
            "walletBalance": "20520.1",
            "cumRealisedPnl": "0",
            "locked": "0",
            "marginCollateral": True,
            "coin": "USDC",
        }
    ],
}
"""A UNIFIED account funded in USDC only: Bybit lists no USDT row at all."""


def hedge_rows() -> list[dict[str, Any]]:
    """pybit #367's list, in the shape of ``/v5/position/list``: a live short on the Sell side
    (``positionIdx`` 2) and the unused Buy side as a real row with ``side ""`` and size 0."""
    live = json.loads((FIXTURES / "position-list-flat.result.json").read_text())["list"][0]
    live.update(
        symbol="BTCUSDT",
        positionIdx=2,
        side="Sell",
        size="0.5",
        avgPrice="43500.5",
        positionValue="21750.25",
        unrealisedPnl="-38.735",
        markPrice="43577.97",
        leverage="10",
    )
    empty = copy.deepcopy(live)
    empty.update(positionIdx=1, side="", size="0", avgPrice="0", positionValue="", unrealisedPnl="")
    return [live, empty]


def instrument_row(tick: str = "0.10", step: str = "0.001") -> dict[str, Any]:
    return {
        "symbol": "ZEROUSDT",
        "contractType": "LinearPerpetual",
        "status": "Trading",
        "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": tick},
        "lotSizeFilter": {
            "maxOrderQty": "1190.000",
            "minOrderQty": "0.001",
            "qtyStep": step,
            "minNotionalValue": "5",
        },
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
    }
