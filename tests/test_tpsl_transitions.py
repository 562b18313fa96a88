"""Each TP/SL transition as a pure function: (monitor, event) -> (new monitor, actions, reason)."""

from __future__ import annotations

import json

import pytest
from tpsl_builders import BTC, P, ack_all, fill, kinds, opened, request, with_position

from engine.alerts.model import Severity
from engine.core.link_ids import MAX_LEN, make_link_id, new_monitor_id, parse_link_id, purpose_of
from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Execution,
    Monitor,
    Order,
    OrderAck,
    OrderStatus,
    OrderType,
    Phase,
    Side,
    SlotStatus,
    TriggerDirection,
)
from engine.trading.approaches import Approach, plan_trade
from engine.trading.monitor import (
    apply_execution,
    apply_order_update,
    apply_price,
    apply_results,
    breakeven_now,
    cancel_orders,
    new_monitor,
    open_monitor,
    request_close,
)
from engine.trading.orders import ActionResult, AmendOrder, CancelOrder, PlaceOrder
from engine.trading.params import TradingParams
from engine.venue.errors import InvalidRequest, NothingToReduce, NotModified, OrderNotFound, error_from_code
from engine.venue.withdrawal import Withdrawn
from persistence.reasons import Reason

# --- link ids -------------------------------------------------------------------------------------


def test_link_ids_are_deterministic_short_and_parseable() -> None:
    link = make_link_id("ab12", new_monitor_id("main:BTCUSDT:Buy", 1767225600.123, 99), "tp4", 123456)
    assert len(link) <= MAX_LEN
    assert link == make_link_id("ab12", new_monitor_id("main:BTCUSDT:Buy", 1767225600.123, 99), "tp4", 123456)
    parsed = parse_link_id(link)
    assert parsed is not None and (parsed.tag, parsed.slot, parsed.generation) == ("ab12", "tp4", 123456)
    assert str(parsed) == link
    assert parse_link_id("") is None and parse_link_id("web-1234") is None
    assert purpose_of(link) == "tp4"
    assert purpose_of(make_link_id("ab12", "0a0b0c0d", "e2", 0)) == "entry"
    assert purpose_of(make_link_id("ab12", "0a0b0c0d", "cl", 1)) == "close"
    assert new_monitor_id("main:BTCUSDT:Buy", 1.0, 1) != new_monitor_id("main:BTCUSDT:Buy", 1.0, 2)


# --- opening and entries --------------------------------------------------------------------------


def test_open_sends_the_entries_only_after_a_durable_save() -> None:
    # issue 11 changed this: the limit entries wait for the market entry's fill (the stop goes first)
    plan = plan_trade(request(), BTC, 100_000.0, 10_000.0, P)
    t = open_monitor(new_monitor(plan, "0a0b0c0d", "t3st", 1000.0), BTC, P)
    assert kinds(t) == [("PlaceOrder", "e1")]
    assert t.reason is Reason.MONITOR_CREATED and t.durable
    assert t.monitor.orders["e1"].status is SlotStatus.PENDING
    assert all(t.monitor.orders[s].status is SlotStatus.NEW for s in ("e2", "e3"))
    assert t.actions[0].request.order_type is OrderType.MARKET


def test_first_entry_fill_places_the_stop_first_then_the_tps() -> None:
    t = opened()
    after = apply_execution(t.monitor, fill(t.monitor, "e1", 0.033, 100_000.0), BTC, P)
    assert kinds(after)[:3] == [("PlaceOrder", "sl"), ("PlaceOrder", "e2"), ("PlaceOrder", "e3")]
    e2 = after.actions[1].request
    assert e2.price == 99_000.0 and not e2.reduce_only
    sl = after.actions[0].request
    assert sl.qty == 0.033 and sl.trigger_price == 97_000.0 and sl.reduce_only and sl.close_on_trigger
    assert sl.trigger_direction is TriggerDirection.FALL
    tps = {a.slot: a.request.qty for a in after.actions if a.slot.startswith("tp")}
    assert tps == {"tp1": 0.028, "tp2": 0.001, "tp3": 0.001, "tp4": 0.003}
    assert after.reason is Reason.LIMIT_FILL_PROGRESS and after.durable
    assert after.monitor.size == 0.033 and after.monitor.phase is Phase.BUILDING


def test_a_later_entry_fill_amends_never_cancels() -> None:
    m = with_position()
    after = apply_execution(m, fill(m, "e2", 0.033, 99_000.0), BTC, P)
    assert not any(isinstance(a, CancelOrder | PlaceOrder) for a in after.actions)
    amends = {a.slot: a.request.qty for a in after.actions if isinstance(a, AmendOrder)}
    assert amends == {"sl": 0.066, "tp1": 0.056, "tp2": 0.003, "tp3": 0.003, "tp4": 0.004}
    assert after.monitor.avg_entry == pytest.approx(99_500.0)


def test_last_entry_fill_moves_to_monitoring() -> None:
    m = with_position()
    m = ack_all(apply_execution(m, fill(m, "e2", 0.033, 99_000.0), BTC, P)).monitor
    after = apply_execution(m, fill(m, "e3", 0.033, 98_000.0), BTC, P)
    assert after.monitor.phase is Phase.MONITORING and after.reason is Reason.PHASE_CHANGE


def test_partial_entry_fill_resizes_to_the_filled_size() -> None:
    m = with_position()
    after = apply_execution(m, fill(m, "e2", 0.016, 99_000.0), BTC, P)
    amends = {a.slot: a.request.qty for a in after.actions if isinstance(a, AmendOrder)}
    assert amends["sl"] == 0.049
    assert after.monitor.orders["e2"].status is SlotStatus.OPEN  # still working for the rest


def test_duplicate_and_foreign_executions_are_ignored() -> None:
    m = with_position()
    exe = fill(m, "e2", 0.033, 99_000.0)
    once = ack_all(apply_execution(m, exe, BTC, P)).monitor
    again = apply_execution(once, exe, BTC, P)
    assert again.actions == [] and again.reason is None and again.monitor.size == once.size
    other = Execution(
        **{**_fields(exe), "exec_id": "other", "link_id": make_link_id("t3st", "99999999", "e2", 0)}
    )
    assert apply_execution(once, other, BTC, P).reason is None


def _fields(exe: Execution) -> dict:
    return {name: getattr(exe, name) for name in exe.__slots__}


# --- take-profits and the stop --------------------------------------------------------------------


def test_tp1_moves_the_stop_to_breakeven_and_cancels_entries() -> None:
    m = with_position()
    after = apply_execution(m, fill(m, "tp1", 0.028, 101_000.0), BTC, P)
    assert after.reason is Reason.TP_HIT
    # issue 6 changed this: "at breakeven" (flag and alert) only once the venue accepted the move
    assert after.monitor.phase is Phase.PROFIT_TAKING and not after.monitor.breakeven
    assert after.monitor.sl_price == pytest.approx(100_130.0)
    (sl,) = [a for a in after.actions if isinstance(a, AmendOrder) and a.slot == "sl"]
    assert sl.request.qty == 0.005 and sl.request.trigger_price == pytest.approx(100_130.0)
    cancels = sorted(a.slot for a in after.actions if isinstance(a, CancelOrder))
    assert cancels == ["e2", "e3"]
    accepted = ack_all(after)
    assert accepted.monitor.breakeven and accepted.monitor.breakeven_at is None
    assert [a.type for a in accepted.alerts] == ["breakeven"]
    assert accepted.reason is Reason.BREAKEVEN_MOVED


def test_tp1_keeps_entries_when_the_setting_is_off() -> None:
    params = TradingParams(cancel_entries_after_tp1=False)
    m = with_position(params=params)
    after = apply_execution(m, fill(m, "tp1", 0.028, 101_000.0), BTC, params)
    assert not any(isinstance(a, CancelOrder) for a in after.actions)


def test_later_tps_shrink_the_stop() -> None:
    m = with_position()
    m = ack_all(apply_execution(m, fill(m, "tp1", 0.028, 101_000.0), BTC, P)).monitor
    after = apply_execution(m, fill(m, "tp2", 0.001, 102_000.0), BTC, P)
    assert after.reason is Reason.TP_HIT
    assert [a.request.qty for a in after.actions if a.slot == "sl"] == [0.004]
    assert after.monitor.tps_filled() == 2


def test_final_tp_closes_and_records_the_trade() -> None:
    m = with_position(Approach.FAST)
    after = apply_execution(m, fill(m, "tp1", 0.1, 101_000.0), BTC, P)
    assert after.reason is Reason.POSITION_CLOSED and after.monitor.phase is Phase.CLOSED
    assert after.trade is not None and after.trade.reason == "tp" and after.trade.tps_hit == 1
    assert after.trade.pnl == pytest.approx(100.0 - 5.5 - 5.555)
    assert [(type(a).__name__, a.slot) for a in after.actions] == [("CancelOrder", "sl")]


def test_stop_fill_closes_as_sl_and_cancels_the_rest() -> None:
    m = with_position()
    after = apply_execution(m, fill(m, "sl", 0.033, 96_990.0), BTC, P)
    assert after.trade is not None and after.trade.reason == "sl"
    cancelled = sorted(a.slot for a in after.actions if isinstance(a, CancelOrder))
    assert cancelled == ["e2", "e3", "tp1", "tp2", "tp3", "tp4"]


def test_a_fill_we_did_not_order_closes_as_manual() -> None:
    m = with_position()
    after = apply_execution(m, fill(m, None, 0.033, 100_500.0), BTC, P)
    assert after.trade is not None and after.trade.reason == "manual"
    assert after.trade.exit_price == 100_500.0
    assert any(a.type == "manual_close" for a in after.alerts)


def test_sl_cancelled_outside_is_placed_again_with_the_next_generation() -> None:
    m = with_position()
    sl = m.orders["sl"]
    update = Order(
        "main",
        sl.order_id,
        sl.link_id,
        "BTCUSDT",
        Side.SELL,
        OrderType.MARKET,
        sl.qty,
        None,
        OrderStatus.DEACTIVATED,
        trigger_price=97_000.0,
    )
    after = apply_order_update(m, update, BTC, P)
    (place,) = [a for a in after.actions if isinstance(a, PlaceOrder)]
    assert place.slot == "sl" and place.request.link_id.endswith("-sl-1")
    assert any(a.type == "sl_gone" for a in after.alerts) and after.durable


def test_sl_refused_repeatedly_closes_at_market() -> None:
    params = TradingParams(sl_retry_attempts=2)
    t = opened(params=params)
    t = apply_execution(t.monitor, fill(t.monitor, "e1", 0.033, 100_000.0), BTC, params)
    # a refusal that retrying could cure (a trigger already passed is the next test's case)
    refusal = InvalidRequest("params error: qty", 10001)
    for attempt in range(2):
        results = [
            ActionResult(
                a,
                error=refusal if a.slot == "sl" else None,
                ack=None if a.slot == "sl" else OrderAck("o", ""),
            )
            for a in t.actions
        ]
        t = apply_results(t.monitor, results, BTC, params)
        if attempt == 0:
            assert ("PlaceOrder", "sl") in kinds(t)
    assert t.monitor.close_intent == "emergency"
    assert any(a.severity == "critical" and a.type == "sl_failed" for a in t.alerts)
    (close,) = [a for a in t.actions if a.slot == "cl"]
    assert close.request.order_type is OrderType.MARKET and close.request.reduce_only
    assert close.request.qty == 0.033
    assert ("PlaceOrder", "sl") not in kinds(t)


def test_a_stop_whose_level_is_already_passed_closes_at_market_as_a_stop_out() -> None:
    t = opened()
    t = apply_execution(t.monitor, fill(t.monitor, "e1", 0.033, 100_000.0), BTC, P)
    refusal = InvalidRequest("expect Falling, but trigger_price[97000] >= current[96900]", 110093)
    results = [
        ActionResult(a, error=refusal) if a.slot == "sl" else ActionResult(a, ack=OrderAck("o", ""))
        for a in t.actions
    ]
    after = apply_results(t.monitor, results, BTC, P)
    # no instant retries of a level the venue cannot take, no emergency: the stop-out, at market
    assert after.monitor.close_intent == "sl" and after.monitor.orders["sl"].failures == 1
    assert [a.type for a in after.alerts if a.severity == "critical"] == []
    assert any(a.type == "sl_passed" for a in after.alerts)
    (close,) = [a for a in after.actions if a.slot == "cl"]
    assert close.request.order_type is OrderType.MARKET and close.request.reduce_only
    assert close.request.qty == 0.033
    assert ("PlaceOrder", "sl") not in kinds(after)
    done = apply_execution(after.monitor, fill(after.monitor, "cl", 0.033, 96_900.0), BTC, P)
    assert done.trade is not None and done.trade.reason == "sl"


def test_amend_of_a_vanished_order_places_a_new_generation() -> None:
    m = with_position()
    t = apply_execution(m, fill(m, "e2", 0.033, 99_000.0), BTC, P)
    results = [
        ActionResult(
            a,
            error=OrderNotFound("gone", 110001) if a.slot == "sl" else None,
            ack=None if a.slot == "sl" else OrderAck("o", ""),
        )
        for a in t.actions
    ]
    after = apply_results(t.monitor, results, BTC, P)
    (place,) = [a for a in after.actions if isinstance(a, PlaceOrder)]
    assert place.slot == "sl" and place.request.qty == 0.066 and place.request.link_id.endswith("-sl-1")


def test_failed_amend_is_reverted_and_retried() -> None:
    m = with_position()
    t = apply_execution(m, fill(m, "e2", 0.033, 99_000.0), BTC, P)
    results = [
        ActionResult(
            a,
            error=InvalidRequest("busy", 10001) if a.slot == "tp1" else None,
            ack=None if a.slot == "tp1" else OrderAck("o", ""),
        )
        for a in t.actions
    ]
    after = apply_results(t.monitor, results, BTC, P)
    assert [(type(a).__name__, a.slot, a.request.qty) for a in after.actions] == [
        ("AmendOrder", "tp1", 0.056)
    ]


# --- price-driven and operator decisions ----------------------------------------------------------


def test_trailing_stop_after_tp1_only_when_enabled() -> None:
    params = TradingParams(trailing_stop_after_tp1=True, trailing_stop_pct=1.0)
    m = with_position(params=params)
    m = ack_all(apply_execution(m, fill(m, "tp1", 0.028, 101_000.0), BTC, params), params).monitor
    up = apply_price(m, 103_000.0, BTC, params)
    assert up.monitor.sl_price == pytest.approx(101_970.0)
    assert [a.slot for a in up.actions] == ["sl"]
    small = apply_price(ack_all(up, params).monitor, 103_050.0, BTC, params)
    assert small.actions == []  # less than a tenth of the distance: no amend
    assert apply_price(m, 103_000.0, BTC, P).actions == []


def test_close_request_cancels_entries_and_tps_keeps_the_stop_and_sends_a_market_close() -> None:
    m = with_position()
    t = request_close(m, "manual", BTC, P)
    assert ("PlaceOrder", "cl") in kinds(t)
    assert ("CancelOrder", "sl") not in kinds(t)
    assert {s for k, s in kinds(t) if k == "CancelOrder"} == {"e2", "e3", "tp1", "tp2", "tp3", "tp4"}
    after = apply_execution(ack_all(t).monitor, fill(ack_all(t).monitor, "cl", 0.033, 100_100.0), BTC, P)
    assert after.trade is not None and after.trade.reason == "manual"


def test_kill_switch_intent_is_the_ledger_reason() -> None:
    m = with_position(Approach.FAST)
    t = ack_all(request_close(m, "kill_switch", BTC, P))
    after = apply_execution(t.monitor, fill(t.monitor, "cl", 0.1, 99_000.0), BTC, P)
    assert after.trade is not None and after.trade.reason == "kill_switch"
    assert t.reason is Reason.EMERGENCY or request_close(m, "kill_switch", BTC, P).reason is Reason.EMERGENCY


def test_cancel_orders_keeps_the_stop_while_a_position_is_open() -> None:
    m = with_position()
    t = cancel_orders(m, BTC, P)
    assert {s for k, s in kinds(t) if k == "CancelOrder"} == {"e2", "e3", "tp1", "tp2", "tp3", "tp4"}
    assert t.durable


def test_breakeven_now_requires_the_price_beyond_breakeven() -> None:
    m = with_position()
    with pytest.raises(ValueError, match="not beyond breakeven"):
        breakeven_now(m, 100_100.0, BTC, P)
    t = breakeven_now(m, 100_500.0, BTC, P)
    assert t.monitor.sl_price == pytest.approx(100_130.0) and t.reason is Reason.BREAKEVEN_MOVED


def test_monitor_state_round_trips_through_json() -> None:
    m = with_position()
    assert Monitor.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_a_close_refused_for_no_position_to_reduce_is_not_retried_nor_an_emergency() -> None:
    """Bybit's 110017 ("Reduce-only rule not satisfied": no position to reduce) means the position is
    already flat on the venue (its stop filled first). At 1000 positions the mirror's market closes
    raised this as a critical close_failed after retries; sending it again is refused again. The
    slot gives up at once and says so once; the fills, or the check, close the monitor."""
    m = with_position()
    pending = request_close(m, "manual", BTC, P)
    (close,) = [a for a in pending.actions if a.slot == "cl"]
    refused = NothingToReduce("BTCUSDT: reduce-only Sell order has no position to reduce", 110017)
    after = apply_results(pending.monitor, [ActionResult(close, error=refused)], BTC, P)
    assert ("PlaceOrder", "cl") not in kinds(after)
    assert [(a.severity, a.type) for a in after.alerts] == [(Severity.WARNING, "already_flat")]
    assert after.monitor.orders["cl"].failures >= P.sl_retry_attempts


def test_actions_withdrawn_unsent_are_undone_and_left_to_the_next_decision() -> None:
    """A fill of the position waits to be decided: its unsent take-profit resize and entry cancels
    were withdrawn (nothing reached the venue). Their slots are as before, and nothing is derived
    again here: the fill's decision, taken next, sends what the position then calls for."""
    m = with_position()
    tp1 = m.orders["tp1"]
    before = (tp1.qty, tp1.price, tp1.trigger_price)
    resize = AmendOrder(m.key, "tp1", AmendRequest(m.symbol, order_id=tp1.order_id, qty=0.05), before)
    m.orders["tp1"].qty = 0.05  # as the decision left it
    cancel = CancelOrder(m.key, "e2", CancelRequest(m.symbol, order_id=m.orders["e2"].order_id))
    m.orders["e2"].status = SlotStatus.CANCELLING
    t = apply_results(
        m, [ActionResult(resize, error=Withdrawn()), ActionResult(cancel, error=Withdrawn())], BTC, P
    )
    assert t.actions == [] and t.alerts == []
    assert t.monitor.orders["tp1"].qty == before[0]
    assert t.monitor.orders["e2"].status is SlotStatus.OPEN
    assert t.monitor.orders["tp1"].failures == 0


def test_an_amend_the_venue_finds_already_done_is_a_success_not_a_failed_stop() -> None:
    """Soak, seed 11: the stop's resize landed while its answer was lost (a timeout); each retry was
    answered "the order remains unchanged" (10001), counted as a refusal, and after three the
    position was closed at market though its stop was in place."""
    m = with_position()
    t = apply_execution(m, fill(m, "e2", 0.033, 99_000.0), BTC, P)
    wording = "The order remains unchanged as the parameters entered match the existing ones"
    unchanged = error_from_code(10001, wording)
    assert isinstance(unchanged, NotModified)
    for _attempt in range(P.sl_retry_attempts + 1):
        amends = [a for a in t.actions if isinstance(a, AmendOrder) and a.slot == "sl"]
        if not amends:
            break
        results = [
            ActionResult(a, error=unchanged) if a in amends else ActionResult(a, ack=OrderAck("o", ""))
            for a in t.actions
        ]
        t = apply_results(t.monitor, results, BTC, P)
    assert t.monitor.close_intent is None
    assert not [a for a in t.alerts if a.severity == "critical"]
    assert t.monitor.orders["sl"].qty == 0.066 and t.monitor.orders["sl"].failures == 0
    assert not [a for a in t.actions if a.slot in ("sl", "cl")]
