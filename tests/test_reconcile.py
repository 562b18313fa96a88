"""Reconciliation as a pure function of (monitors, venue view)."""

from __future__ import annotations

import pytest
from tpsl_builders import BTC, P, fill, with_position

from engine.core.link_ids import make_link_id
from engine.core.models import Monitor, Order, OrderStatus, OrderType, Phase, Position, Side, SlotStatus
from engine.trading.orders import AmendOrder, PlaceOrder
from engine.trading.reconcile import VenueView, reconcile_account

NOW = 5000.0


def venue_orders(m: Monitor, skip: set[str] = frozenset(), **changes: float) -> list[Order]:
    """What the venue would list for the monitor's open slots (optionally with changed qty)."""
    return [
        Order(
            "main",
            o.order_id,
            o.link_id,
            m.symbol,
            o.side,
            o.order_type,
            changes.get(slot, o.qty),
            o.price,
            OrderStatus.UNTRIGGERED if o.trigger_price else OrderStatus.NEW,
            trigger_price=o.trigger_price,
            reduce_only=o.reduce_only,
        )
        for slot, o in m.orders.items()
        if o.status is SlotStatus.OPEN and slot not in skip
    ]


def position(size: float, side: Side | None = Side.BUY, entry: float = 100_000.0) -> Position:
    return Position("main", "BTCUSDT", side, size, entry, 100_000.0, 0.0, 0.0, 10.0, ts=NOW)


def run(monitors: list[Monitor], view: VenueView):
    return reconcile_account(
        account="main",
        monitors={m.key: m for m in monitors},
        view=view,
        instruments={"BTCUSDT": BTC},
        params=P,
        tag="t3st",
        new_monitor_id=lambda symbol: "feedbeef",
        now=NOW,
    )


def test_in_agreement_nothing_happens() -> None:
    m = with_position()
    out = run([m], VenueView([position(0.033)], venue_orders(m), []))
    (t,) = out.transitions
    assert t.actions == [] and out.orphan_cancels == [] and out.repairs == 0 and out.alerts == []


def test_a_missed_tp1_fill_is_replayed_with_its_consequences() -> None:
    m = with_position()
    exe = fill(m, "tp1", 0.028, 101_000.0)
    out = run([m], VenueView([position(0.005)], venue_orders(m, skip={"tp1"}), [exe]))
    (t,) = out.transitions
    assert t.monitor.phase is Phase.PROFIT_TAKING and t.monitor.breakeven
    sl = [a for a in t.actions if isinstance(a, AmendOrder) and a.slot == "sl"]
    assert sl and sl[0].request.qty == 0.005
    assert out.applied_exec_ids == [exe.exec_id] and out.repairs == 1


def test_closed_while_down_with_the_real_exit() -> None:
    m = with_position()
    exe = fill(m, "sl", 0.033, 96_990.0)
    out = run([m], VenueView([], venue_orders(m, skip={"sl"}), [exe]))
    (t,) = out.transitions
    assert t.trade is not None and t.trade.reason == "sl" and t.trade.exit_price == 96_990.0
    assert t.monitor.phase is Phase.CLOSED
    assert {a.slot for a in t.actions} == {"e2", "e3", "tp1", "tp2", "tp3", "tp4"}


def test_flat_without_any_execution_closes_as_manual_at_the_mark() -> None:
    m = with_position()
    view = VenueView([], venue_orders(m), [], marks={"BTCUSDT": 99_500.0})
    (t,) = run([m], view).transitions
    assert t.trade is not None and t.trade.reason == "manual" and t.trade.exit_price == 99_500.0
    assert any(a.type == "closed_unexplained" for a in t.alerts)


def test_missing_stop_is_placed_again_with_the_next_generation() -> None:
    m = with_position()
    out = run([m], VenueView([position(0.033)], venue_orders(m, skip={"sl"}), []))
    (t,) = out.transitions
    (place,) = [a for a in t.actions if isinstance(a, PlaceOrder)]
    assert place.slot == "sl" and place.request.link_id.endswith("-sl-1") and place.request.qty == 0.033
    assert any(a.type == "order_missing" and a.severity == "warning" for a in t.alerts)


def test_a_lost_amend_is_sent_again() -> None:
    m = with_position()
    out = run([m], VenueView([position(0.033)], venue_orders(m, tp1=0.02), []))
    (t,) = out.transitions
    assert [(a.slot, a.request.qty) for a in t.actions] == [("tp1", 0.028)]


def test_orphans_of_ours_are_cancelled_foreign_ones_only_reported() -> None:
    m = with_position()
    stale = Order(
        "main",
        "old",
        make_link_id("t3st", m.monitor_id, "sl", 0).replace("-sl-0", "-tp1-0"),
        "BTCUSDT",
        Side.SELL,
        OrderType.LIMIT,
        0.01,
        101_000.0,
        OrderStatus.NEW,
        reduce_only=True,
    )
    m.orders["tp1"].generation = 2
    m.orders["tp1"].link_id = make_link_id("t3st", m.monitor_id, "tp1", 2)
    orphan = Order(
        "main",
        "orph",
        make_link_id("t3st", "12345678", "tp1", 0),
        "BTCUSDT",
        Side.SELL,
        OrderType.LIMIT,
        0.01,
        101_000.0,
        OrderStatus.NEW,
    )
    foreign = Order(
        "main",
        "frgn",
        make_link_id("zzzz", "12345678", "tp1", 0),
        "BTCUSDT",
        Side.SELL,
        OrderType.LIMIT,
        0.01,
        101_000.0,
        OrderStatus.NEW,
    )
    out = run([m], VenueView([position(0.033)], [*venue_orders(m), stale, orphan, foreign], []))
    assert sorted(c.request.order_id for c in out.orphan_cancels) == ["old", "orph"]
    assert [a.type for a in out.alerts] == ["foreign_orders"] and out.alerts[0].severity == "critical"


def test_unknown_position_is_adopted_with_a_default_stop() -> None:
    out = run([], VenueView([position(0.05, Side.SELL)], [], []))
    (t,) = out.transitions
    assert t.monitor.approach == "adopted" and t.monitor.side is Side.SELL
    assert t.monitor.sl_price == pytest.approx(102_000.0)
    (place,) = t.actions
    assert place.slot == "sl" and place.request.qty == 0.05 and place.request.side is Side.BUY


def test_an_existing_stop_is_adopted_and_stretched_to_the_whole_position() -> None:
    stop = Order(
        "main",
        "theirs",
        "",
        "BTCUSDT",
        Side.SELL,
        OrderType.MARKET,
        0.03,
        None,
        OrderStatus.UNTRIGGERED,
        trigger_price=98_000.0,
        reduce_only=True,
    )
    out = run([], VenueView([position(0.05)], [stop], []))
    (t,) = out.transitions
    assert t.monitor.sl_price == 98_000.0
    assert [(type(a).__name__, a.request.order_id, a.request.qty) for a in t.actions] == [
        ("AmendOrder", "theirs", 0.05)
    ]


def test_size_drift_is_taken_from_the_venue() -> None:
    m = with_position()
    out = run([m], VenueView([position(0.050, entry=99_000.0)], venue_orders(m), []))
    (t,) = out.transitions
    assert t.monitor.size == 0.050 and t.durable
    assert any(a.type == "size_drift" for a in t.alerts)
    assert [a.request.qty for a in t.actions if a.slot == "sl"] == [0.05]
