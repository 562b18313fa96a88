"""Bybit V5 payloads <-> models: the recorded fixtures, the fake server's shapes, and the pure helpers
of the Bybit venue (rate-limit budget, retry policy, endpoints, keys and redaction)."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.errors import BadInput
from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Execution,
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
    round_to_step,
)
from engine.core.settings import load_settings
from engine.sim.instruments import listings
from engine.venue.bybit.keys import MASK, ApiKeys, SecretRedactor, load_keys, redact
from engine.venue.bybit.limits import Budget, RateBudget, pacing_delay, parse_limit_headers
from engine.venue.bybit.parse import (
    next_cursor,
    opt_price,
    parse_amend_request,
    parse_cancel_request,
    parse_execution,
    parse_instrument,
    parse_order,
    parse_order_request,
    parse_position,
    parse_ticker,
    parse_wallet,
)
from engine.venue.bybit.retry import RetryPolicy, rate_limit_wait
from engine.venue.bybit.stream import ExecutionDedup
from engine.venue.bybit.transport import map_exception
from engine.venue.bybit.venue import batch_results, resolve_endpoints
from engine.venue.bybit.wire import (
    amend_params,
    cancel_params,
    execution_json,
    fmt,
    instrument_json,
    order_json,
    order_params,
    position_json,
    ticker_json,
    wallet_json,
)
from engine.venue.errors import (
    DuplicateOrder,
    InvalidRequest,
    IpBanned,
    OrderNotFound,
    RateLimited,
    RequestExpired,
    TransientError,
)

FIXTURES = Path(
    os.environ.get("OPCONSOLE_BYBIT_FIXTURES", Path(__file__).resolve().parent / "fixtures" / "bybit-v5")
)
BTC = listings(["BTCUSDT"])["BTCUSDT"].instrument


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


# --- the recorded fixtures ------------------------------------------------------------------------


def test_every_fixture_is_parsed() -> None:
    names = sorted(p.name for p in FIXTURES.glob("*.result.json"))
    assert names == [
        "execution-list.result.json",
        "order-realtime.result.json",
        "position-list-flat.result.json",
        "wallet-balance.result.json",
    ]


def test_flat_position_fixture() -> None:
    result = fixture("position-list-flat.result.json")
    position = parse_position("main", result["list"][0])
    assert position.side is None and not position.is_open
    assert position.size == 0.0 and position.entry_price == 0.0
    assert position.upnl == 0.0  # "" means absent
    assert position.mark_price == 43577.97
    assert position.realised_pnl == -1618.71655122
    assert position.leverage == 1.0
    assert position.ts == 1691735404.177
    assert next_cursor(result) == "BTCUSDT%2C1691735404177%2C0"


def test_open_order_fixture() -> None:
    order = parse_order("main", fixture("order-realtime.result.json")["list"][0])
    assert order.status is OrderStatus.NEW and order.status.is_open
    assert order.side is Side.BUY and order.order_type is OrderType.LIMIT
    assert order.qty == 0.01 and order.price == 10000.0
    assert order.trigger_price is None  # "0.00" means not set
    assert order.avg_fill_price is None and order.filled_qty == 0.0
    assert order.trigger_direction is None and order.trigger_by is None
    assert not order.is_conditional and not order.reduce_only
    assert order.reject_reason == ""  # EC_NoError
    assert order.link_id == "1677925633310702"
    assert order.created == 1677925633.316 and order.updated == 1677925633.323


def test_execution_fixture() -> None:
    execution = parse_execution("main", fixture("execution-list.result.json")["list"][0])
    assert execution.exec_id == "63efa380-bdb4-5b1c-83d3-937ca3938000"
    assert execution.link_id == ""
    assert execution.side is Side.SELL and execution.order_type is OrderType.MARKET
    assert (execution.price, execution.qty, execution.fee) == (26816.8, 0.01, 0.1609008)
    assert execution.closed_size == 0.01 and execution.fee_rate == 0.0006
    assert execution.is_maker is False and execution.exec_type == "Trade"
    assert execution.ts == 1684314652.233


def test_wallet_fixture_reads_the_usdt_coin() -> None:
    wallet = parse_wallet("main", fixture("wallet-balance.result.json")["list"][0], ts=5.0)
    assert wallet == Wallet("main", 1012.35705796, 1012.35705796, 912.35705796, 0.0, 5.0)


def test_wallet_falls_back_to_account_available_when_coin_field_is_empty() -> None:
    account = fixture("wallet-balance.result.json")["list"][0]
    for coin in account["coin"]:
        coin["availableToWithdraw"] = ""
    assert parse_wallet("main", account, ts=0.0).available == 30587.3509045


def test_fake_server_payloads_carry_every_fixture_field() -> None:
    """Our server's records have (at least) the keys Bybit sends, with the same value types."""
    order = Order("main", "o1", "l1", "BTCUSDT", Side.BUY, OrderType.LIMIT, 0.01, 90000.0, OrderStatus.NEW)
    position = Position("main", "BTCUSDT", None, 0.0, 0.0, 95000.0, 0.0, -1.5, 10.0, 1.0)
    execution = Execution(
        "main", "e1", "o1", "", "BTCUSDT", Side.SELL, 95000.0, 0.01, 0.5, False, 0.01, OrderType.MARKET, 1.0
    )
    wallet = Wallet("main", 100.0, 100.0, 90.0, 0.0, 1.0)
    pairs = [
        (order_json(order, BTC), fixture("order-realtime.result.json")["list"][0]),
        (position_json(position, BTC), fixture("position-list-flat.result.json")["list"][0]),
        (execution_json(execution, BTC), fixture("execution-list.result.json")["list"][0]),
        (wallet_json(wallet), fixture("wallet-balance.result.json")["list"][0]),
    ]
    for ours, theirs in pairs:
        assert set(theirs) <= set(ours)
        for key, value in theirs.items():
            assert type(ours[key]) is type(value), key


def test_flat_position_and_unset_prices_are_spelled_like_bybit() -> None:
    flat = position_json(Position("main", "BTCUSDT", None, 0.0, 0.0, 95000.0, 0.0, 0.0, 10.0, 1.0), BTC)
    assert flat["side"] == "" and flat["size"] == "0.000" and flat["avgPrice"] == "0"
    assert flat["unrealisedPnl"] == "" and flat["positionValue"] == "" and flat["liqPrice"] == ""
    market = Order("main", "o", "", "BTCUSDT", Side.SELL, OrderType.MARKET, 0.01, None, OrderStatus.FILLED)
    wire = order_json(market, BTC)
    assert wire["triggerPrice"] == "0.0" and wire["price"] == "0.0" and wire["avgPrice"] == "0.0"
    assert parse_order("main", wire).trigger_price is None
    assert opt_price("0.00") is None and opt_price("") is None and opt_price("1.5") == 1.5


# --- round trips through our own wire -------------------------------------------------------------


prices = st.integers(min_value=1, max_value=2_000_000).map(lambda n: round_to_step(n * 0.1, 0.1))
qtys = st.integers(min_value=1, max_value=100_000).map(lambda n: round_to_step(n * 0.001, 0.001))


@given(
    price=prices,
    qty=qtys,
    filled=st.integers(min_value=0, max_value=100),
    status=st.sampled_from(list(OrderStatus)),
    trigger=st.one_of(st.none(), prices),
)
def test_order_round_trip(
    price: float, qty: float, filled: int, status: OrderStatus, trigger: float | None
) -> None:
    filled_qty = round_to_step(qty * filled / 100, 0.001, "down")
    order = Order(
        "main",
        "oid",
        "link",
        "BTCUSDT",
        Side.SELL,
        OrderType.LIMIT,
        qty,
        price,
        status,
        filled_qty=filled_qty,
        avg_fill_price=price if filled_qty else None,
        trigger_price=trigger,
        trigger_direction=TriggerDirection.FALL if trigger else None,
        trigger_by=TriggerBy.MARK_PRICE if trigger else None,
        reduce_only=True,
        close_on_trigger=bool(trigger),
        time_in_force=TimeInForce.GTC,
        created=1700000000.123,
        updated=1700000001.5,
    )
    assert parse_order("main", order_json(order, BTC)) == order


@given(price=prices, qty=qtys, side=st.sampled_from([Side.BUY, Side.SELL]))
def test_position_execution_ticker_round_trip(price: float, qty: float, side: Side) -> None:
    position = Position("main", "BTCUSDT", side, qty, price, price, 1.25, -0.5, 10.0, 1700000000.25)
    assert parse_position("main", position_json(position, BTC)) == position
    execution = Execution(
        "main",
        "e",
        "o",
        "l",
        "BTCUSDT",
        side,
        price,
        qty,
        0.00012345,
        True,
        qty,
        OrderType.LIMIT,
        1.5,
        "Trade",
        0.0002,
    )
    assert parse_execution("main", execution_json(execution, BTC)) == execution
    ticker = Ticker("BTCUSDT", price, price, price, price, 2.0)
    assert parse_ticker(ticker_json(ticker, BTC), 2.0) == ticker


def test_instrument_round_trip() -> None:
    for listing in listings(["BTCUSDT", "XRPUSDT", "DOGEUSDT"]).values():
        assert parse_instrument(instrument_json(listing.instrument)) == listing.instrument


def test_request_round_trips() -> None:
    stop = OrderRequest(
        "BTCUSDT",
        Side.SELL,
        OrderType.MARKET,
        0.015,
        trigger_price=90000.5,
        trigger_direction=TriggerDirection.FALL,
        trigger_by=TriggerBy.LAST_PRICE,
        reduce_only=True,
        close_on_trigger=True,
        link_id="m:BTC:sl:1",
    )
    params = order_params(stop, BTC)
    assert params["qty"] == "0.015" and params["triggerPrice"] == "90000.5" and "price" not in params
    assert parse_order_request(params) == stop
    limit = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, 1.0, price=91000.0, link_id="x")
    assert parse_order_request(order_params(limit)) == limit
    amend = AmendRequest("BTCUSDT", link_id="x", price=91010.0)
    assert parse_amend_request(amend_params(amend, BTC)) == amend
    cancel = CancelRequest("BTCUSDT", order_id="abc")
    assert parse_cancel_request(cancel_params(cancel)) == cancel


def test_bad_request_bodies_are_10001() -> None:
    for bad in (
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "1"},  # no price
        {"symbol": "BTCUSDT", "side": "Up", "orderType": "Market", "qty": "1"},
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "lots"},
    ):
        with pytest.raises(InvalidRequest) as info:
            parse_order_request(bad)
        assert info.value.code == 10001
    with pytest.raises(InvalidRequest):
        parse_cancel_request({"symbol": "BTCUSDT"})


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_fmt_is_exact_and_never_scientific(value: float) -> None:
    text = fmt(value)
    assert "e" not in text.lower() and float(text) == value


# --- batch answers and errors ----------------------------------------------------------------------


def test_batch_results_read_per_item_codes() -> None:
    body = {
        "retCode": 0,
        "result": {
            "list": [
                {"orderId": "1", "orderLinkId": "a"},
                {"orderId": "", "orderLinkId": ""},
                {"orderId": "3", "orderLinkId": "c"},
            ]
        },
        "retExtInfo": {
            "list": [{"code": 0, "msg": "OK"}, {"code": 110001, "msg": "not exists"}, {"code": 0}]
        },
    }
    results = batch_results(body, 4)
    assert [r.ok for r in results] == [True, False, True, False]
    assert results[0].ack is not None and results[0].ack.order_id == "1"
    assert isinstance(results[1].error, OrderNotFound) and results[1].error.code == 110001
    assert results[3].error is not None  # the server answered fewer items than sent


def test_pybit_exceptions_map_to_typed_errors() -> None:
    from pybit.exceptions import FailedRequestError, InvalidRequestError

    limited, headers = map_exception(
        InvalidRequestError("req", "Too many visits!", 10006, "t", {"X-Bapi-Limit-Reset-Timestamp": "1500"})
    )
    assert isinstance(limited, RateLimited) and limited.reset_at == 1.5 and headers
    assert isinstance(map_exception(InvalidRequestError("r", "dup", 110072, "t", {}))[0], DuplicateOrder)
    assert isinstance(map_exception(InvalidRequestError("r", "old", 10002, "t", {}))[0], RequestExpired)
    assert isinstance(map_exception(FailedRequestError("r", "ban", 403, "t", None))[0], IpBanned)
    assert isinstance(map_exception(FailedRequestError("r", "oops", 502, "t", None))[0], TransientError)
    import requests

    assert isinstance(map_exception(requests.exceptions.ReadTimeout("slow"))[0], TransientError)


# --- rate-limit budget and retry policy ---------------------------------------------------------


def test_limit_headers_and_pacing() -> None:
    budget = parse_limit_headers(
        {"x-bapi-limit-status": "1", "X-Bapi-Limit": "10", "X-Bapi-Limit-Reset-Timestamp": "2000"}
    )
    assert budget == Budget(limit=10, remaining=1, reset_at=2.0)
    assert pacing_delay(budget, now=1.5) == 0.5  # 1 left is the reserve: wait for the refill
    assert pacing_delay(Budget(10, 5, 2.0), now=1.5) == 0.0
    assert pacing_delay(budget, now=2.5) == 0.0  # the window has passed
    assert parse_limit_headers({"X-Bapi-Limit": "x"}) is None


def test_rate_budget_counts_calls_in_flight() -> None:
    rates = RateBudget(window_s=1.0)
    rates.update(
        "/e",
        {"X-Bapi-Limit-Status": "3", "X-Bapi-Limit": "10", "X-Bapi-Limit-Reset-Timestamp": "100000"},
        now=100.0,
    )
    assert rates.delay("/e", 100.0) == 0.0
    rates.spend("/e", 100.1)
    rates.spend("/e", 100.1)
    assert rates.delay("/e", 100.2) == pytest.approx(0.8)  # reset assumed one window after "now"
    rates.spend("/e", 101.5)  # a new window refills
    assert rates.delay("/e", 101.5) == 0.0
    rates.exhaust("/e", reset_at=105.0)
    assert rates.delay("/e", 104.0) == 1.0


def test_retry_policy_decisions() -> None:
    policy = RetryPolicy(max_retries=2)
    transient = TransientError("timeout")
    assert policy.should_retry(transient, idempotent=True, transient_attempts=0, rate_limit_waits=0)
    assert not policy.should_retry(transient, idempotent=False, transient_attempts=0, rate_limit_waits=0)
    assert not policy.should_retry(transient, idempotent=True, transient_attempts=2, rate_limit_waits=0)
    limited = RateLimited("busy", reset_at=10.0)
    assert policy.should_retry(limited, idempotent=False, transient_attempts=9, rate_limit_waits=5)
    assert not policy.should_retry(limited, idempotent=True, transient_attempts=0, rate_limit_waits=20)
    assert policy.should_retry(
        RequestExpired("skew", 10002), idempotent=False, transient_attempts=0, rate_limit_waits=0
    )
    assert not policy.should_retry(
        InvalidRequest("bad", 10001), idempotent=True, transient_attempts=0, rate_limit_waits=0
    )
    rng = random.Random(1)
    delays = [policy.backoff(n, rng) for n in (1, 2, 3, 10)]
    assert 0.1 <= delays[0] <= 0.2 and 0.2 <= delays[1] <= 0.4 and 0.4 <= delays[2] <= 0.8
    assert 2.5 <= delays[3] <= 5.0
    assert rate_limit_wait(limited, now=9.5, rng=rng) >= 0.5
    assert rate_limit_wait(limited, now=11.0, rng=rng) < 0.1


def test_execution_dedup_is_bounded() -> None:
    dedup = ExecutionDedup(capacity=2)
    assert dedup.admit("a") and not dedup.admit("a")
    assert dedup.admit("b") and dedup.admit("c")
    assert dedup.admit("a")  # forgotten after two newer ids


# --- endpoints, keys and redaction ------------------------------------------------------------------


def test_resolve_endpoints() -> None:
    demo = resolve_endpoints("demo")
    assert demo.demo and not demo.testnet and demo.rest_url == "" and demo.stream.private_url == ""
    local = resolve_endpoints("testnet", "http://127.0.0.1:9/", "ws://127.0.0.1:9/v5/private")
    assert local.rest_url == "http://127.0.0.1:9"
    assert local.stream.private_url == "ws://127.0.0.1:9/v5/private"
    assert local.stream.public_url == "ws://127.0.0.1:9/v5/public/linear"


def test_keys_from_env_and_key_file(tmp_path: Path) -> None:
    settings = load_settings()
    keys = load_keys(settings, "main", {"BYBIT_API_KEY": "k" * 18, "BYBIT_API_SECRET": "s" * 36})
    assert keys.api_key == "k" * 18 and "s" * 36 not in repr(keys) and "k" * 18 not in repr(keys)
    with pytest.raises(BadInput) as info:
        load_keys(settings, "mirror", {})
    assert "BYBIT_MIRROR_API_KEY" in info.value.what
    key_file = tmp_path / "keys.toml"
    key_file.write_text('api_key = "filekey123"\napi_secret = "filesecret123"\n')
    key_file.chmod(0o644)
    with_file = settings.with_values({"accounts.main.key_file": str(key_file)})
    with pytest.raises(BadInput, match="chmod 600"):
        load_keys(with_file, "main", {})
    key_file.chmod(0o600)
    assert load_keys(with_file, "main", {}) == ApiKeys("filekey123", "filesecret123")


def test_redaction_filter_masks_secrets_in_messages_and_tracebacks() -> None:
    redactor = SecretRedactor()
    redactor.add("APIKEY123456", "SECRET987654321")
    record = logging.LogRecord(
        "pybit._http_manager",
        logging.ERROR,
        __file__,
        1,
        "sig %s for %s",
        ("SECRET987654321", "APIKEY123456"),
        None,
    )
    try:
        raise ValueError("origin_string[1700APIKEY1234565000]")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert redactor.filter(record)
    assert record.getMessage() == f"sig {MASK} for {MASK}"
    assert "APIKEY123456" not in (record.exc_text or "") and MASK in (record.exc_text or "")
    assert redact("a-APIKEY123456-b", ["APIKEY123456"]) == f"a-{MASK}-b"
