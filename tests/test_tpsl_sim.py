"""Scripted price paths through the simulated exchange: the TP/SL engine end to end.

Every scenario runs twice (``@on_both_venues``): over the in-process venue on a virtual clock, and
over the Bybit venue (real pybit) against the fake V5 server on 127.0.0.1, where it must also leave
the same ledger as over the in-process venue.
"""

from __future__ import annotations

import pytest
from tpsl_harness import SYMBOL, Harness, Market, assert_protected, on_both_venues, stop_orders

from engine.core.link_ids import purpose_of
from engine.core.models import OrderRequest, OrderType, Phase, Side
from engine.trading.approaches import Approach, TradeRejected
from engine.trading.params import TradingParams
from engine.venue.base import Endpoint
from engine.venue.errors import InvalidRequest, RateLimited

BIG = {"margin": 1000.0}  # 0.1 BTC at 10x: 0.033 per entry, enough for four TPs


def by_purpose(h: Harness) -> dict[str, list]:
    out: dict[str, list] = {}
    for order in h.open_orders():
        out.setdefault(purpose_of(order.link_id) or "foreign", []).append(order)
    return out


def tp_qtys(h: Harness) -> dict[str, float]:
    return {p: o[0].qty for p, o in by_purpose(h).items() if p.startswith("tp")}


def monitor(h: Harness):
    return h.manager.monitors["main:BTCUSDT:Buy"]


@on_both_venues
async def test_conservative_all_entries_then_tp1_breakeven_and_tp2_to_tp4(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    assert_protected(h)
    assert h.position().size == pytest.approx(0.033)
    assert tp_qtys(h) == {"tp1": 0.028, "tp2": 0.001, "tp3": 0.001, "tp4": 0.003}
    assert len(by_purpose(h)["entry"]) == 2
    await h.price(98_900.0)  # through e2
    assert_protected(h)
    assert h.position().size == pytest.approx(0.066)
    assert tp_qtys(h) == {"tp1": 0.056, "tp2": 0.003, "tp3": 0.003, "tp4": 0.004}
    await h.price(97_900.0)  # through e3; the stop at 97 000 is not reached
    assert_protected(h)
    assert h.position().size == pytest.approx(0.099)
    assert sum(tp_qtys(h).values()) == pytest.approx(0.099)
    assert monitor(h).phase is Phase.MONITORING
    await h.price(101_100.0)  # TP1
    m = monitor(h)
    assert m.phase is Phase.PROFIT_TAKING and m.breakeven
    assert m.avg_entry == pytest.approx(99_000.0)
    breakeven = 99_000.0 * (1 + 2 * 0.00055 + 0.0002)
    assert m.sl_price == pytest.approx(round(breakeven + 0.05, 1), abs=0.1)
    assert m.sl_price > breakeven
    (stop,) = stop_orders(h.open_orders())
    assert stop.trigger_price == m.sl_price
    assert_protected(h)
    for price in (102_100.0, 103_100.0):
        await h.price(price)
        assert_protected(h)
    await h.price(104_100.0)
    assert not h.position().is_open
    assert h.open_orders() == []
    assert h.manager.monitors == {}
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "tp" and trade.tps_hit == 4
    assert trade.qty == pytest.approx(0.099)
    assert trade.entry_price == pytest.approx(99_000.0)
    assert trade.pnl > 0 and trade.fees > 0
    # the venue's own realised PnL of the position (net of fees) agrees with the ledger
    assert h.position().realised_pnl == pytest.approx(trade.pnl, abs=1e-6)
    await h.stop()


@on_both_venues
async def test_tp1_cancels_unfilled_entries(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    await h.price(101_100.0)
    assert "entry" not in by_purpose(h)
    m = monitor(h)
    assert m.phase is Phase.PROFIT_TAKING
    assert m.sl_price == pytest.approx(100_130.0)
    assert_protected(h)
    assert h.position().size == pytest.approx(0.005)
    await h.stop()


@on_both_venues
async def test_entries_kept_after_tp1_when_the_setting_is_off(market: Market) -> None:
    h = market.harness(TradingParams(cancel_entries_after_tp1=False))
    await h.start()
    # TP1 inside the breakeven band (< 100 130): the stop stays at 97 000 after TP1, so e2 can fill
    # without the price crossing it (a stop at breakeven lies between TP1 and e2: the path reaches it
    # first, and since the stop goes out first the exchange now matches it first)
    await h.manager.open_trade(h.request(tps=(100_100.0, 102_000.0, 103_000.0, 104_000.0), **BIG))
    await h.settle()
    await h.price(100_120.0)
    assert monitor(h).phase is Phase.PROFIT_TAKING
    assert len(by_purpose(h)["entry"]) == 2
    await h.price(98_900.0)  # e2 fills after TP1: SL grows, the surplus goes to the last TP
    assert_protected(h)
    assert sum(tp_qtys(h).values()) == pytest.approx(h.position().size)
    await h.stop()


@on_both_venues
async def test_stopped_out(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    await h.price(97_900.0)  # e2 and e3 through
    assert h.position().size == pytest.approx(0.099)
    assert_protected(h)
    await h.price(96_900.0)
    assert not h.position().is_open
    assert h.open_orders() == []
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "sl" and trade.tps_hit == 0
    assert trade.pnl < 0
    assert trade.exit_price == pytest.approx(96_900.0)
    # the venue's own realised PnL of the position (net of fees) agrees with the ledger
    assert h.position().realised_pnl == pytest.approx(trade.pnl, abs=1e-6)
    await h.stop()


@on_both_venues
async def test_stopped_at_breakeven_after_tp1(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    await h.price(101_100.0)
    await h.price(100_100.0)  # below the breakeven stop at 100 130
    assert not h.position().is_open
    assert h.open_orders() == []
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "breakeven" and trade.tps_hit == 1
    assert trade.pnl > 0  # TP1 profit plus a stop beyond fees
    await h.stop()


@on_both_venues
async def test_partial_entry_fill_resizes_tps_and_sl(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    await h.price(99_000.0)  # touching the limit fills half of it
    size = h.position().size
    assert size == pytest.approx(0.033 + 0.016)
    assert_protected(h)
    qtys = tp_qtys(h)
    assert sum(qtys.values()) == pytest.approx(size)
    assert qtys["tp1"] == pytest.approx(0.041)  # 0.049 * 85 % rounded down to 0.001
    assert monitor(h).phase is Phase.BUILDING
    await h.stop()


@on_both_venues
async def test_manual_close_on_the_venue_is_recorded_as_manual(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    await h.price(100_500.0)
    h.exchange.place("main", OrderRequest(SYMBOL, Side.SELL, OrderType.MARKET, qty=0.033, reduce_only=True))
    await h.settle()
    assert h.open_orders() == []
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "manual"
    assert trade.exit_price == pytest.approx(100_500.0)
    entry_fee = 100_000.0 * 0.033 * 0.00055
    exit_fee = 100_500.0 * 0.033 * 0.00055
    assert trade.fees == pytest.approx(entry_fee + exit_fee)
    assert trade.pnl == pytest.approx(500.0 * 0.033 - entry_fee - exit_fee)
    assert any(kind == "manual_close" for _, kind, _ in h.alerts)
    await h.stop()


@on_both_venues
async def test_fast_trade_takes_profit(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, **BIG))
    await h.settle()
    assert h.position().size == pytest.approx(0.1)
    assert tp_qtys(h) == {"tp1": 0.1}
    assert_protected(h)
    await h.price(101_100.0)
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "tp" and trade.approach == "fast"
    assert h.open_orders() == []
    await h.stop()


@on_both_venues
async def test_short_conservative_trade_mirrors_the_long(market: Market) -> None:
    h = market.harness()
    await h.start()
    request = h.request(
        side=Side.SELL,
        entries=(None, 101_000.0, 102_000.0),
        tps=(99_000.0, 98_000.0, 97_000.0, 96_000.0),
        sl=103_000.0,
        **BIG,
    )
    await h.manager.open_trade(request)
    await h.settle()
    assert h.position().side is Side.SELL
    assert_protected(h)
    await h.price(98_900.0)
    m = h.manager.monitors["main:BTCUSDT:Sell"]
    assert m.breakeven and m.sl_price < 100_000.0
    await h.price(99_900.0)  # back above the breakeven stop of the short
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "breakeven" and trade.pnl > 0
    assert h.open_orders() == []
    await h.stop()


@on_both_venues
async def test_sl_refused_closes_at_market_with_a_critical_alert(market: Market) -> None:
    h = market.harness(TradingParams(sl_retry_attempts=2))
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, **BIG))
    # the entry is filled; every create of the next two rounds (SL first, then TP1) is refused
    # a refusal retrying could cure; a trigger already passed (110092/110093) is a stop-out instead
    refusal = InvalidRequest("params error", 10001)
    h.exchange.inject_errors("main", 4, refusal, endpoints=[Endpoint.CREATE])
    await h.settle()
    assert not h.position().is_open
    assert h.open_orders() == []
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "emergency"
    assert ("critical", "sl_failed") in {(sev, kind) for sev, kind, _ in h.alerts}
    await h.stop()


@on_both_venues
async def test_a_stop_whose_level_is_passed_closes_at_market_as_a_stop_out(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, **BIG))
    # the venue refuses the stop because the price it watches is already through it
    refusal = InvalidRequest("expect Falling, but trigger_price >= current", 110093)
    h.exchange.inject_errors("main", 1, refusal, endpoints=[Endpoint.CREATE])
    await h.settle()
    assert not h.position().is_open
    assert h.open_orders() == []
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "sl"
    assert not any(sev == "critical" for sev, _, _ in h.alerts)
    assert any(kind == "sl_passed" for _, kind, _ in h.alerts)
    await h.stop()


@on_both_venues
async def test_rate_limited_sl_is_retried_not_abandoned(market: Market) -> None:
    h = market.harness(TradingParams(sl_retry_attempts=3))
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, **BIG))
    h.exchange.inject_errors("main", 1, RateLimited("Too many visits!", 10006), endpoints=[Endpoint.CREATE])
    await h.settle()
    assert_protected(h)
    assert h.position().is_open
    await h.stop()


@on_both_venues
async def test_rejected_requests_send_nothing(market: Market) -> None:
    h = market.harness()
    await h.start()
    calls_before = dict(h.venue.calls.counts)
    with pytest.raises(TradeRejected) as err:
        await h.manager.open_trade(h.request(tps=(99_500.0, 102_000.0, 103_000.0, 104_000.0), **BIG))
    assert "TP1" in str(err.value)
    assert "/v5/order/create" not in h.venue.calls.counts or (
        h.venue.calls.counts["/v5/order/create"] == calls_before.get("/v5/order/create", 0)
    )
    with pytest.raises(TradeRejected, match="balance"):
        await h.manager.open_trade(h.request(margin=20_000.0))
    assert h.open_orders() == [] and not h.position().is_open
    await h.manager.open_trade(h.request(**BIG))
    with pytest.raises(TradeRejected, match="already"):
        await h.manager.open_trade(h.request(**BIG))
    await h.stop()


async def test_trailing_stop_after_tp1_follows_the_best_price_and_closes_on_the_pullback() -> None:
    """With the trailing stop on, after TP1 the stop ratchets behind the best price (never back)
    and the pull-back closes the rest as a stop at a profit."""
    h = Harness(TradingParams(trailing_stop_after_tp1=True, trailing_stop_pct=1.0))
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    await h.price(101_100.0)  # TP1: breakeven first
    assert monitor(h).phase is Phase.PROFIT_TAKING
    breakeven_stop = monitor(h).sl_price
    await h.price(101_800.0)  # best so far: the stop trails to 1% below it
    (stop,) = stop_orders(h.open_orders())
    assert stop.trigger_price == pytest.approx(100_782.0)
    assert stop.trigger_price > breakeven_stop
    assert_protected(h)
    await h.price(101_500.0)  # a dip that stays above the stop: the stop does not move back
    (stop,) = stop_orders(h.open_orders())
    assert stop.trigger_price == pytest.approx(100_782.0)
    await h.price(100_700.0)  # through the trailed stop
    assert not h.position().is_open
    assert h.open_orders() == []
    (trade,) = h.manager.ledger.trades
    assert trade.tps_hit == 1 and trade.pnl > 0
    await h.stop()


async def test_push_streams_can_be_rolled_back_to_polling_and_restored_live() -> None:
    """The push_streams toggle at runtime: without the stream, fills are found by polling
    /v5/execution/list; with it back, the stream is the source again."""
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    polls_before = h.venue.calls.counts.get(Endpoint.EXECUTIONS, 0)
    await h.manager.set_push_streams(False)
    assert h.manager._stream_tasks == {}
    await h.price(98_900.0)  # e2 fills; only polling can see it now
    await h.clock.drive(until=h.clock.now() + 5)
    assert h.position().size == pytest.approx(0.066)
    assert sum(tp_qtys(h).values()) == pytest.approx(0.066)
    assert_protected(h)
    assert h.venue.calls.counts[Endpoint.EXECUTIONS] > polls_before
    assert h.manager.engine_state == "running"  # no stream is not "degraded" when streams are off
    await h.manager.set_push_streams(True)
    await h.settle()
    assert set(h.manager._stream_tasks) == {"main"}
    await h.price(97_900.0)  # e3 fills, seen on the stream
    assert h.position().size == pytest.approx(0.099)
    assert_protected(h)
    await h.stop()
