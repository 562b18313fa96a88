"""The stop-loss under real latency (issue 11, items 6, 7 and 11): breakeven the market has not
reached, the operator's "breakeven now" checked against the price the stop triggers on, and the stop
as the first order after the entry fill.

Pure decisions first, then the same over the simulated exchange and the fake V5 server.
"""

from __future__ import annotations

import re

import pytest
from tpsl_builders import BTC, P, ack_all, fill, opened, with_position
from tpsl_harness import SYMBOL, Harness, Market, assert_protected, on_both_venues, stop_orders

from engine.core.link_ids import purpose_of
from engine.core.models import Monitor, OrderAck, OrderRequest, Side, TriggerBy
from engine.trading.approaches import Approach, TradeRequest, plan_trade, request_warnings
from engine.trading.monitor import (
    apply_execution,
    apply_price,
    apply_results,
    breakeven_now,
    new_monitor,
    open_monitor,
)
from engine.trading.operator import ActionRefused, OperatorActions
from engine.trading.orders import ActionResult, AmendOrder
from engine.trading.params import TradingParams
from engine.venue.errors import InvalidRequest
from persistence.reasons import Reason

BIG = {"margin": 1000.0}
KEY = "main:BTCUSDT:Buy"
BREAKEVEN = 100_130.1  # 100 000 x (1 + 2 x 0.055 % + 0.02 %), rounded up to the tick
IN_BAND_TPS = (100_100.0, 102_000.0, 103_000.0, 104_000.0)  # TP1 below breakeven


def in_band_position() -> Monitor:
    """A conservative long of 0.033 at 100 000 whose TP1 (100 100) lies inside the breakeven band."""
    request = TradeRequest(
        "main", "BTCUSDT", Side.BUY, Approach.CONSERVATIVE, 1000.0, 10.0,
        (None, 99_000.0, 98_000.0), IN_BAND_TPS, 97_000.0,
    )  # fmt: skip
    plan = plan_trade(request, BTC, 100_000.0, 10_000.0, P)
    t = ack_all(open_monitor(new_monitor(plan, "0b0b0c0d", "t3st", 1000.0), BTC, P))
    return ack_all(apply_execution(t.monitor, fill(t.monitor, "e1", 0.033, 100_000.0), BTC, P)).monitor


def sl_triggers(t_actions: list) -> list[float | None]:
    return [a.request.trigger_price for a in t_actions if isinstance(a, AmendOrder) and a.slot == "sl"]


# --- item 6: breakeven the market has not reached ---------------------------------------------------


def test_tp1_inside_the_breakeven_band_keeps_the_stop_until_the_price_passes_breakeven() -> None:
    m = in_band_position()
    t = apply_execution(m, fill(m, "tp1", 0.028, 100_100.0), BTC, P)
    assert t.reason is Reason.TP_HIT
    after = t.monitor
    assert after.sl_price == 97_000.0 and not after.breakeven
    assert after.breakeven_at == pytest.approx(BREAKEVEN)
    assert sl_triggers(t.actions) == [None]  # the stop shrinks to the rest, where it is
    assert "breakeven_waiting" in [a.type for a in t.alerts]
    assert not any(a.type == "breakeven" for a in t.alerts)
    m = ack_all(t).monitor
    assert apply_price(m, 100_120.0, BTC, P).actions == []  # still inside the band
    up = apply_price(m, 100_200.0, BTC, P)
    assert sl_triggers(up.actions) == [pytest.approx(BREAKEVEN)]
    assert not up.monitor.breakeven and up.alerts == []  # said only once the venue accepted
    accepted = ack_all(up)
    assert accepted.monitor.breakeven and accepted.monitor.breakeven_at is None
    assert [a.type for a in accepted.alerts] == ["breakeven"]
    assert accepted.reason is Reason.BREAKEVEN_MOVED
    assert apply_price(accepted.monitor, 100_500.0, BTC, P).actions == []  # nothing left to wait for


def test_a_refused_move_of_the_stop_keeps_the_old_stop_and_is_no_emergency() -> None:
    params = TradingParams(sl_retry_attempts=3)
    m = with_position(params=params)
    t = apply_execution(m, fill(m, "tp1", 0.028, 101_000.0), BTC, params)  # the market is back: refused
    assert sl_triggers(t.actions) == [pytest.approx(BREAKEVEN)]
    refusal = InvalidRequest("expect Falling, but trigger_price[100130.1] >= current[100100]", 110093)
    for _ in range(params.sl_retry_attempts + 1):
        results = [
            ActionResult(a, error=refusal)
            if isinstance(a, AmendOrder) and a.slot == "sl" and a.request.trigger_price is not None
            else ActionResult(a, ack=OrderAck("o", ""))
            for a in t.actions
        ]
        t = apply_results(t.monitor, results, BTC, params)
        assert t.monitor.close_intent is None
        assert not any(a.severity == "critical" for a in t.alerts)
        assert t.monitor.sl_price == 97_000.0 and t.monitor.breakeven_at == pytest.approx(BREAKEVEN)
        # the stop is not asked to move again until the price allows; its size still follows
        assert sl_triggers(t.actions) in ([], [None])
    assert t.monitor.orders["sl"].failures == 0
    retried = apply_price(ack_all(t, params).monitor, 100_300.0, BTC, params)
    assert sl_triggers(retried.actions) == [pytest.approx(BREAKEVEN)]


def test_a_refused_move_is_reported_as_such() -> None:
    m = with_position()
    t = apply_execution(m, fill(m, "tp1", 0.028, 101_000.0), BTC, P)
    refusal = InvalidRequest("expect Falling", 110093)
    results = [
        ActionResult(a, error=refusal) if a.slot == "sl" else ActionResult(a, ack=OrderAck("o", ""))
        for a in t.actions
    ]
    after = apply_results(t.monitor, results, BTC, P)
    (alert,) = [a for a in after.alerts if a.type == "sl_move_refused"]
    assert alert.severity == "warning" and "97,000.0" in alert.message
    assert not any(a.type in ("sl_retry", "sl_failed", "breakeven") for a in after.alerts)
    assert [a.request.qty for a in after.actions if a.slot == "sl"] == [0.005]  # the size still follows


def test_validation_warns_when_tp1_lies_inside_the_breakeven_band() -> None:
    request = TradeRequest(
        "main", "BTCUSDT", Side.BUY, Approach.FAST, 1000.0, 10.0, (None,), (100_100.0,), 97_000.0
    )
    (warning,) = request_warnings(request, BTC, 100_000.0, P)
    assert "TP1 100,100" in warning and "breakeven" in warning
    assert plan_trade(request, BTC, 100_000.0, 10_000.0, P).warnings == (warning,)  # not refused
    beyond = TradeRequest(
        "main", "BTCUSDT", Side.BUY, Approach.FAST, 1000.0, 10.0, (None,), (101_000.0,), 97_000.0
    )
    assert request_warnings(beyond, BTC, 100_000.0, P) == []
    short = TradeRequest(
        "main", "BTCUSDT", Side.SELL, Approach.FAST, 1000.0, 10.0, (None,), (99_900.0,), 103_000.0
    )
    assert len(request_warnings(short, BTC, 100_000.0, P)) == 1


@on_both_venues
async def test_tp1_inside_the_breakeven_band_moves_the_stop_once_the_price_allows(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(tps=IN_BAND_TPS, **BIG))
    await h.settle()
    assert ("warning", "trade_warning") in {(sev, kind) for sev, kind, _ in h.alerts}
    await h.price(100_120.0)  # TP1 fills; breakeven 100 130.1 is not reached
    m = h.manager.monitors[KEY]
    assert m.phase.value == "PROFIT_TAKING" and not m.breakeven
    (stop,) = stop_orders(h.open_orders())
    assert stop.trigger_price == 97_000.0  # the old stop protects the rest
    assert_protected(h)
    kinds = {(sev, kind) for sev, kind, _ in h.alerts}
    assert not any(sev == "critical" for sev, _ in kinds) and ("info", "breakeven") not in kinds
    assert h.position().is_open  # no emergency close
    await h.price(100_300.0)  # beyond breakeven: now the venue takes it
    m = h.manager.monitors[KEY]
    assert m.breakeven and m.sl_price == pytest.approx(BREAKEVEN)
    (stop,) = stop_orders(h.open_orders())
    assert stop.trigger_price == pytest.approx(BREAKEVEN)
    assert ("info", "breakeven") in {(sev, kind) for sev, kind, _ in h.alerts}
    await h.price(100_000.0)  # back through the breakeven stop
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "breakeven" and trade.tps_hit == 1
    await h.stop()


# --- item 7: the operator's breakeven against the price the stop triggers on -----------------------


def test_breakeven_now_refuses_an_unknown_price() -> None:
    m = with_position()
    with pytest.raises(ValueError, match="LastPrice of BTCUSDT is not known"):
        breakeven_now(m, None, BTC, P)
    with pytest.raises(ValueError, match="not beyond breakeven"):
        breakeven_now(m, 100_100.0, BTC, P)


@on_both_venues
async def test_breakeven_now_is_checked_against_the_last_price_the_stop_triggers_on(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    ops = OperatorActions(h.manager)
    h.exchange.set_price(SYMBOL, 100_100.0, mark=100_600.0)  # the mark is beyond breakeven, the last not
    await h.settle()
    with pytest.raises(
        ActionRefused, match=re.escape("LastPrice 100,100.0 is not beyond breakeven 100,130.1")
    ):
        await ops.breakeven_now(KEY)
    assert not h.manager.monitors[KEY].breakeven
    (stop,) = stop_orders(h.open_orders())
    assert stop.trigger_price == 97_000.0
    h.exchange.set_price(SYMBOL, 100_600.0, mark=100_100.0)
    await h.settle()
    m = await ops.breakeven_now(KEY)
    assert m is not None and m.breakeven and m.sl_price == pytest.approx(BREAKEVEN)
    assert not any(kind in ("sl_move_refused", "sl_failed") for _, kind, _ in h.alerts)
    await h.stop()


async def test_breakeven_now_on_the_mark_when_the_stop_triggers_on_the_mark() -> None:
    h = Harness(TradingParams(trigger_by=TriggerBy.MARK_PRICE))
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    ops = OperatorActions(h.manager)
    h.exchange.set_price(SYMBOL, 100_100.0, mark=100_600.0)
    await h.settle()
    m = await ops.breakeven_now(KEY)
    assert m is not None and m.breakeven
    await h.stop()


async def test_breakeven_now_is_refused_while_no_price_is_known() -> None:
    h = Harness()  # the in-process market publishes a ticker only when its price moves
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    assert h.manager.trigger_price(SYMBOL) is None
    with pytest.raises(ActionRefused, match="not known yet"):
        await OperatorActions(h.manager).breakeven_now(KEY)
    await h.stop()


# --- item 11: the stop goes first -------------------------------------------------------------------


def test_the_limit_entries_wait_for_the_market_entrys_fill() -> None:
    t = opened()
    assert t.monitor.orders["e2"].status.value == "new"  # held back, not sent
    after = apply_execution(t.monitor, fill(t.monitor, "e1", 0.033, 100_000.0), BTC, P)
    assert [a.slot for a in after.actions][:3] == ["sl", "e2", "e3"]


@on_both_venues
async def test_the_stop_is_the_first_order_after_the_entry_fill(market: Market) -> None:
    h = market.harness()
    await h.start()
    received: list[str | None] = []
    place = h.exchange.place

    def recording(account: str, request: OrderRequest) -> OrderAck:
        received.append(purpose_of(request.link_id))
        return place(account, request)

    h.exchange.place = recording  # type: ignore[method-assign]  # what reaches the exchange, in order
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    assert received[:2] == ["entry", "sl"]
    assert sorted(received) == sorted(["entry", "sl", "entry", "entry", "tp1", "tp2", "tp3", "tp4"])
    assert_protected(h)
    assert len([o for o in h.open_orders() if purpose_of(o.link_id) == "entry"]) == 2
    await h.stop()
