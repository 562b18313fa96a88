"""The simulated exchange against hand-computed cases (scripted prices, no slippage unless stated).

Fees: taker 0.055 %, maker 0.02 % of the fill's notional. Leverage defaults to 10.
"""

from __future__ import annotations

import pytest

from engine.core.clock import VirtualClock
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
    StreamStatus,
    Ticker,
    TimeInForce,
    TriggerBy,
    TriggerDirection,
    Wallet,
)
from engine.sim.exchange import SimExchange
from engine.sim.streams import EventHub, PushQueue
from engine.venue.base import Endpoint
from engine.venue.errors import (
    AuthError,
    DuplicateOrder,
    InsufficientBalance,
    InvalidRequest,
    NothingToReduce,
    OrderNotFound,
    QtyTooSmall,
    RateLimited,
    TransientError,
)

ETH = "ETHUSDT"
BTC = "BTCUSDT"


def make_exchange(balance: float = 100_000.0, slippage_bps: float = 0.0, seed: int = 7) -> SimExchange:
    clock = VirtualClock(start=1_000.0)
    exchange = SimExchange(
        clock=clock,
        seed=seed,
        symbols=[BTC, ETH, "SOLUSDT", "XRPUSDT"],
        balances={"main": balance, "mirror": 5_000.0},
        slippage_bps=slippage_bps,
    )
    exchange.set_price(ETH, 3000.0)
    exchange.set_price(BTC, 95000.0)
    return exchange


def market(
    side: Side, qty: float, *, symbol: str = ETH, reduce_only: bool = False, link: str = ""
) -> OrderRequest:
    return OrderRequest(symbol, side, OrderType.MARKET, qty, reduce_only=reduce_only, link_id=link)


def limit(
    side: Side, qty: float, price: float, *, reduce_only: bool = False, link: str = "", tif=TimeInForce.GTC
) -> OrderRequest:
    return OrderRequest(
        ETH, side, OrderType.LIMIT, qty, price=price, reduce_only=reduce_only, link_id=link, time_in_force=tif
    )


def stop(side: Side, qty: float, trigger: float, direction: TriggerDirection, by: TriggerBy) -> OrderRequest:
    return OrderRequest(
        ETH,
        side,
        OrderType.MARKET,
        qty,
        trigger_price=trigger,
        trigger_direction=direction,
        trigger_by=by,
        reduce_only=True,
        close_on_trigger=True,
        link_id="sl",
    )


def position(exchange: SimExchange, symbol: str = ETH) -> Position:
    return exchange.positions("main", symbol)[0]


def order_status(exchange: SimExchange, order_id: str) -> Order:
    order = exchange.get_order("main", order_id=order_id)
    assert order is not None
    return order


# --- positions, PnL and fees ----------------------------------------------------------------------


def test_average_entry_after_two_fills() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    ex.set_price(ETH, 3100.0)
    ex.place("main", market(Side.BUY, 1.0))
    pos = position(ex)
    assert pos.side is Side.BUY and pos.size == 2.0
    assert pos.entry_price == 3050.0  # (3000 + 3100) / 2
    assert pos.upnl == pytest.approx(100.0)  # (3100 - 3050) * 2
    wallet = ex.wallet("main")
    assert wallet.wallet_balance == pytest.approx(100_000 - 1.65 - 1.705)  # 3000*0.00055, 3100*0.00055
    assert wallet.available == pytest.approx(wallet.equity - 2 * 3050 / 10)


def test_realised_pnl_and_fees_on_close() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    ex.set_price(ETH, 3100.0)
    ex.place("main", market(Side.BUY, 1.0))
    ex.set_price(ETH, 3200.0)
    ex.place("main", market(Side.SELL, 2.0))
    closing = ex.executions("main", since=0.0)[-1]
    assert (closing.price, closing.qty, closing.closed_size) == (3200.0, 2.0, 2.0)
    assert closing.fee == pytest.approx(3.52)  # 6400 * 0.00055
    assert not closing.is_maker
    # +300 realised ((3200 - 3050) * 2) minus the three taker fees 1.65 + 1.705 + 3.52
    assert ex.wallet("main").wallet_balance == pytest.approx(100_000 + 300 - 6.875)
    pos = position(ex)
    assert pos.side is None and pos.size == 0.0 and not pos.is_open
    assert pos.realised_pnl == pytest.approx(293.125)
    assert ex.positions("main") == []


def test_short_close_and_flip_through_zero() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.SELL, 1.0))
    ex.set_price(ETH, 2900.0)
    ex.place("main", market(Side.BUY, 3.0))  # closes 1 short (+100), opens 2 long at 2900
    fill = ex.executions("main", since=0.0)[-1]
    assert fill.closed_size == 1.0 and fill.qty == 3.0
    pos = position(ex)
    assert (pos.side, pos.size, pos.entry_price) == (Side.BUY, 2.0, 2900.0)
    assert ex.wallet("main").wallet_balance == pytest.approx(100_000 + 100 - 1.65 - 4.785)  # 8700*0.00055


def test_market_fill_pays_slippage() -> None:
    ex = make_exchange(slippage_bps=2.0)
    ex.place("main", market(Side.BUY, 0.01, symbol=BTC))
    ex.place("main", market(Side.SELL, 0.01, symbol=BTC))
    buy, sell = ex.executions("main", since=0.0)
    assert buy.price == 95019.0  # 95000 * 1.0002, up to the tick
    assert sell.price == 94981.0  # 95000 * 0.9998, down to the tick
    assert sell.closed_size == 0.01


# --- reduce-only ----------------------------------------------------------------------------------


def test_reduce_only_order_is_truncated_to_the_position() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    ack = ex.place("main", market(Side.SELL, 3.0, reduce_only=True))
    order = order_status(ex, ack.order_id)
    assert order.status is OrderStatus.FILLED and order.qty == 1.0 and order.filled_qty == 1.0
    fill = ex.executions("main", since=0.0)[-1]
    assert (fill.qty, fill.closed_size) == (1.0, 1.0)
    assert position(ex).size == 0.0


def test_reduce_only_is_refused_when_flat_or_same_side() -> None:
    ex = make_exchange()
    with pytest.raises(NothingToReduce) as flat:
        ex.place("main", market(Side.SELL, 1.0, reduce_only=True))
    assert flat.value.code == 110017  # Bybit's "Reduce-only rule not satisfied"
    ex.place("main", market(Side.BUY, 1.0))
    with pytest.raises(NothingToReduce):
        ex.place("main", market(Side.BUY, 1.0, reduce_only=True))
    assert position(ex).size == 1.0


def test_resting_reduce_only_limit_is_cancelled_when_the_position_closes() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    tp = ex.place("main", limit(Side.SELL, 1.0, 3100.0, reduce_only=True, link="tp1"))
    ex.place("main", market(Side.SELL, 1.0))
    order = order_status(ex, tp.order_id)
    assert order.status is OrderStatus.CANCELLED and order.reject_reason == "CancelByReduceOnly"
    assert ex.open_orders("main") == []


def test_resting_reduce_only_limit_never_fills_more_than_the_position() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    tp = ex.place("main", limit(Side.SELL, 1.0, 3100.0, reduce_only=True))
    ex.place("main", market(Side.SELL, 0.8))  # an outside partial close leaves 0.2
    ex.set_price(ETH, 3101.0)
    order = order_status(ex, tp.order_id)
    assert order.filled_qty == 0.2 and order.status is OrderStatus.PARTIALLY_FILLED_CANCELED
    assert position(ex).size == 0.0


def test_triggered_stop_is_truncated_to_what_is_left() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    ex.place("main", limit(Side.SELL, 0.5, 3100.0, reduce_only=True))
    sl = ex.place("main", stop(Side.SELL, 1.0, 2900.0, TriggerDirection.FALL, TriggerBy.LAST_PRICE))
    ex.set_price(ETH, 3100.5)  # TP takes half
    ex.set_price(ETH, 2899.0)
    order = order_status(ex, sl.order_id)
    assert (order.status, order.qty, order.filled_qty) == (OrderStatus.FILLED, 0.5, 0.5)
    assert position(ex).size == 0.0


# --- conditional orders (stop-loss both ways, LastPrice and MarkPrice) ----------------------------


@pytest.mark.parametrize("by", [TriggerBy.LAST_PRICE, TriggerBy.MARK_PRICE])
def test_long_stop_loss_triggers_when_price_falls(by: TriggerBy) -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    sl = ex.place("main", stop(Side.SELL, 1.0, 2900.0, TriggerDirection.FALL, by))
    assert order_status(ex, sl.order_id).status is OrderStatus.UNTRIGGERED
    # Only the watched price may fire it: the other one crosses first.
    if by is TriggerBy.LAST_PRICE:
        ex.set_price(ETH, 2910.0, mark=2890.0)
    else:
        ex.set_price(ETH, 2890.0, mark=2910.0)
    assert order_status(ex, sl.order_id).status is OrderStatus.UNTRIGGERED
    assert position(ex).size == 1.0
    ex.set_price(ETH, 2895.0, mark=2895.0)
    order = order_status(ex, sl.order_id)
    assert order.status is OrderStatus.FILLED and order.avg_fill_price == 2895.0
    assert position(ex).size == 0.0
    fill = ex.executions("main", since=0.0)[-1]
    assert (fill.link_id, fill.closed_size, fill.order_type) == ("sl", 1.0, OrderType.MARKET)
    # -105 realised, fees 1.65 + 2895 * 0.00055
    assert ex.wallet("main").wallet_balance == pytest.approx(100_000 - 105 - 1.65 - 1.59225)


@pytest.mark.parametrize("by", [TriggerBy.LAST_PRICE, TriggerBy.MARK_PRICE])
def test_short_stop_loss_triggers_when_price_rises(by: TriggerBy) -> None:
    ex = make_exchange()
    ex.place("main", market(Side.SELL, 1.0))
    sl = ex.place("main", stop(Side.BUY, 1.0, 3100.0, TriggerDirection.RISE, by))
    if by is TriggerBy.LAST_PRICE:
        ex.set_price(ETH, 3090.0, mark=3110.0)
    else:
        ex.set_price(ETH, 3110.0, mark=3090.0)
    assert order_status(ex, sl.order_id).status is OrderStatus.UNTRIGGERED
    ex.set_price(ETH, 3100.0, mark=3100.0)  # reaching the trigger is enough
    assert order_status(ex, sl.order_id).status is OrderStatus.FILLED
    assert position(ex).size == 0.0
    assert ex.executions("main", since=0.0)[-1].price == 3100.0


def test_conditional_refused_when_its_trigger_is_already_reached() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    with pytest.raises(InvalidRequest) as fall:
        ex.place("main", stop(Side.SELL, 1.0, 3000.0, TriggerDirection.FALL, TriggerBy.LAST_PRICE))
    assert fall.value.code == 110093
    with pytest.raises(InvalidRequest) as rise:
        ex.place("main", stop(Side.SELL, 1.0, 2999.0, TriggerDirection.RISE, TriggerBy.LAST_PRICE))
    assert rise.value.code == 110092


def test_triggered_reduce_only_with_no_position_is_cancelled() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    sl = ex.place("main", stop(Side.SELL, 1.0, 2900.0, TriggerDirection.FALL, TriggerBy.LAST_PRICE))
    ex.place("main", market(Side.SELL, 1.0))
    assert order_status(ex, sl.order_id).status is OrderStatus.UNTRIGGERED  # the engine cleans its own up
    ex.set_price(ETH, 2800.0)
    assert order_status(ex, sl.order_id).status is OrderStatus.CANCELLED
    assert position(ex).size == 0.0


def test_conditional_limit_take_profit_rests_after_trigger() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    request = OrderRequest(
        ETH,
        Side.SELL,
        OrderType.LIMIT,
        1.0,
        price=3250.0,
        trigger_price=3200.0,
        trigger_direction=TriggerDirection.RISE,
        reduce_only=True,
    )
    ack = ex.place("main", request)
    ex.set_price(ETH, 3210.0)
    assert order_status(ex, ack.order_id).status is OrderStatus.NEW  # triggered, then resting at 3250
    ex.set_price(ETH, 3260.0)
    order = order_status(ex, ack.order_id)
    assert order.status is OrderStatus.FILLED and order.avg_fill_price == 3250.0
    assert ex.executions("main", since=0.0)[-1].is_maker


# --- limit orders ---------------------------------------------------------------------------------


def test_limit_order_fills_only_when_price_crosses() -> None:
    ex = make_exchange()
    ack = ex.place("main", limit(Side.BUY, 1.0, 2950.0))
    ex.set_price(ETH, 2960.0)
    assert order_status(ex, ack.order_id).status is OrderStatus.NEW
    assert ex.executions("main", since=0.0) == []
    ex.set_price(ETH, 2949.99)
    order = order_status(ex, ack.order_id)
    assert order.status is OrderStatus.FILLED and order.avg_fill_price == 2950.0  # its own price, as maker
    fill = ex.executions("main", since=0.0)[-1]
    assert fill.is_maker and fill.fee == pytest.approx(0.59)  # 2950 * 0.0002
    assert position(ex).entry_price == 2950.0


def test_touching_the_limit_fills_half_the_remaining_qty() -> None:
    ex = make_exchange()
    ack = ex.place("main", limit(Side.BUY, 1.0, 2950.0))
    ex.set_price(ETH, 2950.0)
    order = order_status(ex, ack.order_id)
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.filled_qty == 0.5
    ex.set_price(ETH, 2950.0)
    assert order_status(ex, ack.order_id).filled_qty == 0.75
    ex.set_price(ETH, 2949.0)
    assert order_status(ex, ack.order_id).status is OrderStatus.FILLED
    assert [e.qty for e in ex.executions("main", since=0.0)] == [0.5, 0.25, 0.25]
    assert position(ex).size == 1.0


def test_marketable_limit_fills_at_once_as_taker() -> None:
    ex = make_exchange()
    ex.place("main", limit(Side.BUY, 1.0, 3010.0))
    fill = ex.executions("main", since=0.0)[-1]
    assert (fill.price, fill.is_maker) == (3000.0, False)
    assert fill.fee == pytest.approx(1.65)


def test_post_only_that_would_take_is_cancelled_and_ioc_does_not_rest() -> None:
    ex = make_exchange()
    post = ex.place("main", limit(Side.BUY, 1.0, 3010.0, tif=TimeInForce.POST_ONLY))
    assert order_status(ex, post.order_id).status is OrderStatus.CANCELLED
    ioc = ex.place("main", limit(Side.BUY, 1.0, 2990.0, tif=TimeInForce.IOC))
    assert order_status(ex, ioc.order_id).status is OrderStatus.CANCELLED
    assert ex.executions("main", since=0.0) == [] and ex.open_orders("main") == []


def test_resting_limit_holds_margin_and_cancel_releases_it() -> None:
    ex = make_exchange(balance=1_000.0)
    before = ex.wallet("main").available
    ack = ex.place("main", limit(Side.BUY, 1.0, 2900.0))
    assert ex.wallet("main").available == pytest.approx(before - 290.0)  # 2900 / 10
    ex.cancel("main", CancelRequest(ETH, order_id=ack.order_id))
    assert ex.wallet("main").available == pytest.approx(before)
    assert order_status(ex, ack.order_id).status is OrderStatus.CANCELLED


def test_amend_price_and_qty_of_a_resting_limit() -> None:
    ex = make_exchange()
    ack = ex.place("main", limit(Side.BUY, 1.0, 2900.0, link="e1"))
    ex.amend("main", AmendRequest(ETH, link_id="e1", qty=2.0, price=2950.0))
    order = order_status(ex, ack.order_id)
    assert (order.qty, order.price, order.status) == (2.0, 2950.0, OrderStatus.NEW)
    with pytest.raises(InvalidRequest):
        ex.amend("main", AmendRequest(ETH, link_id="e1", qty=2.0))  # unchanged
    ex.amend("main", AmendRequest(ETH, order_id=ack.order_id, price=3005.0))  # now marketable
    assert order_status(ex, ack.order_id).status is OrderStatus.FILLED
    assert position(ex).size == 2.0


def test_amend_trigger_price_of_untriggered_stop() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    ack = ex.place("main", stop(Side.SELL, 1.0, 2900.0, TriggerDirection.FALL, TriggerBy.LAST_PRICE))
    ex.amend("main", AmendRequest(ETH, link_id="sl", trigger_price=2950.0))
    assert order_status(ex, ack.order_id).trigger_price == 2950.0
    with pytest.raises(InvalidRequest) as exc:
        ex.amend("main", AmendRequest(ETH, link_id="sl", trigger_price=3050.0))  # above the market
    assert exc.value.code == 110093
    ex.set_price(ETH, 2949.0)
    assert position(ex).size == 0.0


# --- refusals -------------------------------------------------------------------------------------


def test_insufficient_balance_is_refused_like_bybit() -> None:
    ex = make_exchange(balance=1_000.0)
    # 0.105 BTC at 95000 and 10x: margin 997.5 + taker fee 5.48625 > 1000
    with pytest.raises(InsufficientBalance) as exc:
        ex.place("main", market(Side.BUY, 0.105, symbol=BTC))
    assert exc.value.code == 110007
    assert ex.positions("main") == [] and ex.wallet("main").wallet_balance == 1_000.0
    ex.place("main", market(Side.BUY, 0.104, symbol=BTC))  # 988 + 5.434 fits
    assert position(ex, BTC).size == 0.104
    # Closing needs no margin, even with nothing available.
    ex.place("main", market(Side.SELL, 0.104, symbol=BTC))
    assert position(ex, BTC).size == 0.0


def test_higher_leverage_lowers_the_margin_needed() -> None:
    ex = make_exchange(balance=1_000.0)
    ex.set_leverage("main", BTC, 20)
    ex.place("main", market(Side.BUY, 0.2, symbol=BTC))  # 950 + 10.45 at 20x
    assert position(ex, BTC).leverage == 20.0
    with pytest.raises(InsufficientBalance):
        ex.set_leverage("main", BTC, 5)  # 3800 margin for a 1000 wallet
    with pytest.raises(InvalidRequest):
        ex.set_leverage("main", BTC, 101)
    ex.set_leverage("main", BTC, 20)  # unchanged: a no-op


def test_qty_below_minimum_and_off_step() -> None:
    ex = make_exchange()
    with pytest.raises(QtyTooSmall) as small:
        ex.place("main", market(Side.BUY, 0.0005, symbol=BTC))
    assert small.value.code == 10001
    with pytest.raises(QtyTooSmall):
        ex.place("main", market(Side.BUY, 0.0, symbol=BTC))  # what 0.0004 becomes on the wire
    with pytest.raises(InvalidRequest) as off_step:
        ex.place("main", market(Side.BUY, 0.0015, symbol=BTC))
    assert off_step.value.code == 10001
    with pytest.raises(InvalidRequest):
        ex.place("main", limit(Side.BUY, 1.0, 2950.005))  # off the 0.01 tick
    with pytest.raises(InvalidRequest) as value:
        ex.place("main", market(Side.BUY, 1.0, symbol="XRPUSDT"))  # 2.2 USDT < 5 USDT minimum
    assert value.value.code == 110094
    assert ex.executions("main", since=0.0) == []


def test_unknown_order_duplicate_link_id_unknown_symbol_and_account() -> None:
    ex = make_exchange()
    with pytest.raises(OrderNotFound) as missing:
        ex.cancel("main", CancelRequest(ETH, link_id="nope"))
    assert missing.value.code == 110001
    ex.place("main", limit(Side.BUY, 1.0, 2900.0, link="e1"))
    with pytest.raises(DuplicateOrder) as dup:
        ex.place("main", limit(Side.BUY, 1.0, 2800.0, link="e1"))
    assert dup.value.code == 110072
    ex.cancel("main", CancelRequest(ETH, link_id="e1"))
    ex.place("main", limit(Side.BUY, 1.0, 2800.0, link="e1"))  # free again once the first is gone
    with pytest.raises(OrderNotFound):
        ex.amend("main", AmendRequest(ETH, order_id="00000000-0000-0000-0000-000000000000", qty=1.0))
    with pytest.raises(InvalidRequest):
        ex.place("main", market(Side.BUY, 1.0, symbol="FOOUSDT"))
    with pytest.raises(AuthError):
        ex.wallet("nobody")


def test_cancel_all_includes_conditionals() -> None:
    ex = make_exchange()
    ex.place("main", market(Side.BUY, 1.0))
    ex.place("main", limit(Side.BUY, 1.0, 2900.0))
    sl = ex.place("main", stop(Side.SELL, 1.0, 2800.0, TriggerDirection.FALL, TriggerBy.MARK_PRICE))
    acks = ex.cancel_all("main", ETH)
    assert len(acks) == 2 and ex.open_orders("main") == []
    assert order_status(ex, sl.order_id).status is OrderStatus.DEACTIVATED


def test_accounts_are_isolated() -> None:
    ex = make_exchange()
    ex.place("mirror", market(Side.BUY, 1.0))
    assert ex.positions("main") == [] and position(ex).size == 0.0
    assert ex.positions("mirror")[0].size == 1.0
    assert ex.wallet("mirror").wallet_balance == pytest.approx(5_000.0 - 1.65)


# --- rate limits and faults ----------------------------------------------------------------------


def test_rate_limit_hit_at_the_eleventh_order_in_one_second_and_lifted_after_reset() -> None:
    ex = make_exchange()
    clock = ex.clock
    assert isinstance(clock, VirtualClock)
    start = clock.now()
    for i in range(10):
        clock.advance(0.05)
        ex.check_rate("main", Endpoint.CREATE)
        ex.place("main", limit(Side.BUY, 0.01, 2000.0 + i))
    with pytest.raises(RateLimited) as limited:
        ex.check_rate("main", Endpoint.CREATE)
    assert limited.value.code == 10006
    assert limited.value.reset_at == pytest.approx(start + 0.05 + 1.0)  # the oldest unit expires
    ex.check_rate("main", Endpoint.AMEND)  # other endpoints keep their own budget
    ex.check_rate("mirror", Endpoint.CREATE)  # and so do other accounts
    clock.advance(limited.value.reset_at - clock.now())
    ex.check_rate("main", Endpoint.CREATE)
    with pytest.raises(RateLimited):
        ex.check_rate("main", Endpoint.CREATE)  # only one unit expired so far


def test_reads_have_a_budget_of_fifty_per_second() -> None:
    ex = make_exchange()
    for _ in range(50):
        ex.check_rate("main", Endpoint.POSITIONS)
    status = ex.rate_status("main", Endpoint.POSITIONS)
    assert (status.limit, status.remaining) == (50, 0)
    with pytest.raises(RateLimited):
        ex.admit("main", Endpoint.POSITIONS)


def test_injected_errors_fail_the_next_calls_then_stop() -> None:
    ex = make_exchange()
    ex.inject_errors("main", 2, TransientError("server busy", 10016), endpoints=[Endpoint.CREATE])
    ex.admit("main", Endpoint.WALLET)  # not in scope
    for _ in range(2):
        with pytest.raises(TransientError) as exc:
            ex.admit("main", Endpoint.CREATE)
        assert exc.value.code == 10016
    ex.admit("main", Endpoint.CREATE)


# --- push events ----------------------------------------------------------------------------------


def drain(queue: PushQueue) -> list:
    return queue.drain()


def test_events_are_pushed_after_each_change() -> None:
    ex = make_exchange()
    queue = ex.subscribe("main")
    other = ex.subscribe("mirror")
    ex.place("main", market(Side.BUY, 1.0, link="e1"))
    events = drain(queue)
    assert [type(e) for e in events] == [Execution, Order, Position, Wallet]
    assert events[1].status is OrderStatus.FILLED and events[2].size == 1.0
    assert drain(other) == []
    ex.step()
    tickers = drain(queue)
    assert {t.symbol for t in tickers if isinstance(t, Ticker)} == {BTC, ETH, "SOLUSDT", "XRPUSDT"}
    assert len(drain(other)) == 4  # tickers go to everyone


def test_a_tick_is_one_push_and_a_subscriber_that_stops_reading_is_cut_off_with_a_gap() -> None:
    hub = EventHub(max_queue=10)
    reader, stalled = hub.subscribe("main"), hub.subscribe("main")
    ticks = [[Ticker(f"S{n}USDT", 1.0, 1.0, 1.0, 1.0, float(t)) for n in range(4)] for t in range(3)]
    hub.publish("main", ticks[0], 0.0)
    assert reader.qsize() == 1 and reader.events == 4  # the tick's four tickers, as one push
    assert [t.symbol for t in reader.get_nowait()] == ["S0USDT", "S1USDT", "S2USDT", "S3USDT"]
    hub.publish("main", ticks[1], 1.0)
    hub.publish("main", ticks[2], 2.0)  # 12 events pending for the stalled one: over 10
    assert reader.events == 8 and hub.subscriber_count("main") == 1
    (status,) = stalled.drain()  # what it held is discarded: the gap tells it to reconcile
    assert isinstance(status, StreamStatus) and (status.connected, status.gap) == (False, True)
    assert status.reason == "subscriber queue overflow"
    hub.publish("main", [], 3.0)  # nothing to push: no empty push
    assert reader.qsize() == 2


def test_drop_stream_ends_the_subscription_with_a_gap() -> None:
    ex = make_exchange()
    queue = ex.subscribe("main")
    ex.drop_stream("main")
    ex.place("main", market(Side.BUY, 1.0))
    events = drain(queue)
    assert len(events) == 1 and isinstance(events[0], StreamStatus)
    assert (events[0].connected, events[0].gap) == (False, True)
    fresh = ex.subscribe("main")
    ex.place("main", market(Side.SELL, 1.0))
    assert any(isinstance(e, Execution) for e in drain(fresh))
