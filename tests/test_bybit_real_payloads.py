"""Bybit's real payload shapes that are not plain trades (issue 11): funding, ADL and liquidation
executions, unknown enum values, UNIFIED wallets funded in another coin, hedge-mode position lists,
instruments with a zero step and numbers that do not parse.

The rows (:mod:`bybit_rows`) are written from the Bybit V5 documentation; the same rows go through the
real pybit client in ``test_bybit_venue.py``.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
from bybit_rows import (
    ADL_ROW,
    BUST_ROW,
    FIXTURES,
    FUNDING_ROW,
    UNIFIED_IN_USDC,
    funding_received,
    hedge_rows,
    instrument_row,
)

from engine.alerts.model import Severity
from engine.core.models import Instrument, OrderRequest, OrderStatus, OrderType, Side, round_to_step
from engine.trading.reconcile import hedge_mode_alert
from engine.venue.base import Endpoint
from engine.venue.bybit.parse import (
    num,
    parse_execution,
    parse_instrument,
    parse_order,
    parse_order_request,
    parse_position,
    parse_rows,
    parse_ticker,
    parse_wallet,
)
from engine.venue.bybit.wire import order_params
from engine.venue.errors import (
    HEDGE_MODE_FIX,
    HedgeModeAccount,
    InvalidRequest,
    MalformedReply,
    VenueError,
    error_from_code,
)

# --- 1. executions that are not trades ----------------------------------------------------------------


def test_a_funding_row_is_read_and_never_a_fill() -> None:
    paid = parse_execution("main", FUNDING_ROW)
    assert paid.exec_type == "Funding" and paid.is_funding and not paid.is_position_fill
    assert paid.order_type is OrderType.UNKNOWN
    assert (paid.order_id, paid.link_id) == ("", "")
    assert (paid.qty, paid.price, paid.fee) == (0.01, 35006.2, 0.0350062)
    assert paid.closed_size == 0.0 and paid.forced_exit_reason is None
    received = parse_execution("main", funding_received())
    assert received.side is Side.SELL and received.fee == -0.0350062


def test_adl_and_liquidation_rows_are_forced_exits() -> None:
    adl = parse_execution("main", ADL_ROW)
    assert adl.forced_exit_reason == "adl" and adl.closed_size == 0.005
    assert adl.order_type is OrderType.UNKNOWN and adl.price == 37120.5
    bust = parse_execution("main", BUST_ROW)
    assert bust.forced_exit_reason == "liquidation" and bust.fee == 0.0945


def test_unknown_enum_values_are_kept_not_rejected() -> None:
    spread = parse_execution("main", dict(FUNDING_ROW, execType="FutureSpread", orderType="Spread"))
    assert spread.exec_type == "FutureSpread" and spread.order_type is OrderType.UNKNOWN
    order = json.loads((FIXTURES / "order-realtime.result.json").read_text())["list"][0]
    odd = parse_order("main", dict(order, orderType="TrailingStop", orderStatus="Created"))
    assert odd.order_type is OrderType.UNKNOWN and odd.status is OrderStatus.UNKNOWN
    # An order in a state we cannot read may still be working: taking it for gone would duplicate it.
    assert odd.status.is_open


def test_a_page_keeps_every_row_it_can_read(caplog: pytest.LogCaptureFixture) -> None:
    fill = json.loads((FIXTURES / "execution-list.result.json").read_text())["list"][0]
    no_id = dict(FUNDING_ROW, execId="")
    no_symbol = {k: v for k, v in ADL_ROW.items() if k != "symbol"}
    page = [FUNDING_ROW, no_id, fill, "not a row", no_symbol, ADL_ROW]
    with caplog.at_level(logging.WARNING, logger="opconsole.venue.bybit"):
        rows = parse_rows(Endpoint.EXECUTIONS, page, lambda item: parse_execution("main", item))
    assert [r.exec_type for r in rows] == ["Funding", "Trade", "AdlTrade"]
    assert "/v5/execution/list: row skipped: execId is ''" in caplog.text
    assert "/v5/execution/list: row skipped: symbol is None" in caplog.text


# --- 2. unified wallets ---------------------------------------------------------------------------------


def test_a_unified_wallet_funded_in_usdc_reads_the_account_totals() -> None:
    wallet = parse_wallet("main", UNIFIED_IN_USDC, ts=1.0)
    assert wallet.equity == 20512.44318322 and wallet.available == 20400.1
    assert wallet.wallet_balance == 20499.94318322 and wallet.upnl == 12.5


def test_a_usdt_row_with_empty_fields_falls_back_to_the_totals() -> None:
    account = json.loads((FIXTURES / "wallet-balance.result.json").read_text())["list"][0]
    usdt = next(c for c in account["coin"] if c["coin"] == "USDT")
    usdt.update(equity="", walletBalance="", availableToWithdraw="", unrealisedPnl="")
    wallet = parse_wallet("main", account, ts=1.0)
    assert wallet.equity == 30587.3509045 and wallet.available == 30587.3509045
    assert wallet.wallet_balance == 30587.3509045


def test_an_empty_usdt_row_beside_other_collateral_is_not_zero() -> None:
    account = copy.deepcopy(UNIFIED_IN_USDC)
    empty_usdt = dict(account["coin"][0], coin="USDT", equity="0", walletBalance="0", usdValue="0")
    account["coin"].append(dict(empty_usdt, availableToWithdraw="0"))
    wallet = parse_wallet("main", account, ts=1.0)
    assert wallet.equity == 20512.44318322 and wallet.available == 20400.1


# --- 3. hedge mode --------------------------------------------------------------------------------------


def test_a_hedge_mode_list_has_one_position_and_says_so() -> None:
    live, empty = (parse_position("main", row) for row in hedge_rows())
    assert live.is_open and live.side is Side.SELL and live.size == 0.5 and live.hedge_mode
    assert not empty.is_open and empty.hedge_mode  # the unused side is never a position
    alert = hedge_mode_alert("main", [live, empty])
    assert alert is not None and alert.severity is Severity.CRITICAL and alert.type == "hedge_mode"
    assert HEDGE_MODE_FIX in alert.message and "BTCUSDT Sell 0.5" in alert.message
    assert "NOT protected" in alert.message and "left alone" in alert.message
    one_way = json.loads((FIXTURES / "position-list-flat.result.json").read_text())["list"][0]
    assert hedge_mode_alert("main", [parse_position("main", one_way)]) is None


def test_bybits_hedge_mode_refusal_is_typed() -> None:
    error = error_from_code(10001, "position idx not match position mode")
    assert isinstance(error, HedgeModeAccount) and isinstance(error, InvalidRequest)
    assert HEDGE_MODE_FIX in str(error)
    assert type(error_from_code(10001, "params error: qty")) is InvalidRequest


# --- 4. zero steps and numbers that do not parse ------------------------------------------------------


@pytest.mark.parametrize(("tick", "step", "field"), [("0", "0.001", "tickSize"), ("0.10", "0", "qtyStep")])
def test_an_instrument_with_a_zero_step_is_refused(tick: str, step: str, field: str) -> None:
    with pytest.raises(MalformedReply) as info:
        parse_instrument(instrument_row(tick, step))
    assert field in info.value.field and isinstance(info.value, VenueError)
    named = info.value.at(Endpoint.INSTRUMENTS)
    assert str(named).startswith("/v5/market/instruments-info: malformed reply: ZEROUSDT")


@pytest.mark.parametrize("bad", ["NaN", "nan", "inf", "-Infinity", "1e999", "abc", "1_000", "0x10", " "])
def test_numbers_that_do_not_parse_are_refused_naming_the_field(bad: str) -> None:
    row = hedge_rows()[0]
    row["size"] = bad
    with pytest.raises(MalformedReply) as info:
        parse_rows(Endpoint.POSITIONS, [row], lambda item: parse_position("main", item))
    assert (info.value.endpoint, info.value.field, info.value.value) == (Endpoint.POSITIONS, "size", bad)
    with pytest.raises(MalformedReply):
        parse_ticker({"symbol": "BTCUSDT", "lastPrice": "1", "markPrice": bad}, 0.0)
    with pytest.raises(MalformedReply):
        parse_execution("main", dict(FUNDING_ROW, execFee=bad))


def test_the_numbers_bybit_does_send_still_parse() -> None:
    assert [num(v) for v in ("0", "-0.5", "43577.97", "1e-8", ".5", "7.", 3, 2.5)] == [
        0.0,
        -0.5,
        43577.97,
        1e-8,
        0.5,
        7.0,
        3.0,
        2.5,
    ]
    assert num("", 4.0) == 4.0 and num(None) == 0.0


def test_rounding_to_a_zero_step_is_impossible() -> None:
    with pytest.raises(ValueError):
        round_to_step(0.0123, 0.0)
    with pytest.raises(ValueError):
        Instrument("ZEROUSDT", tick_size=0.1, qty_step=0.0, min_qty=0.001, max_qty=10.0)


def test_the_server_still_rejects_an_order_of_unknown_type() -> None:
    for bad in (
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "UNKNOWN", "qty": "1"},
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "NaN"},
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "1", "triggerPrice": "inf"},
    ):
        with pytest.raises(InvalidRequest) as info:
            parse_order_request(bad)
        assert info.value.code == 10001


def test_an_order_of_unknown_type_is_never_sent() -> None:
    # A type read back as UNKNOWN (a funding row's) must not become an order on the wire.
    request = OrderRequest("BTCUSDT", Side.SELL, OrderType.UNKNOWN, 0.01, link_id="x")
    with pytest.raises(InvalidRequest):
        order_params(request)
