"""Reconciliation as a pure function of (monitors, venue view)."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import pytest
from tpsl_builders import BTC, P, fill, opened, with_position

from engine.core.link_ids import make_link_id
from engine.core.models import (
    Execution,
    Monitor,
    Order,
    OrderStatus,
    OrderType,
    Phase,
    Position,
    Side,
    SlotStatus,
)
from engine.trading.monitor import apply_execution
from engine.trading.orders import AmendOrder, CancelOrder, PlaceOrder
from engine.trading.reconcile import ADOPTION_LOOKBACK_S, VenueView, complete_view, reconcile_account
from engine.venue.base import Venue

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


def position(
    size: float, side: Side | None = Side.BUY, entry: float = 100_000.0, ts: float = NOW
) -> Position:
    return Position("main", "BTCUSDT", side, size, entry, 100_000.0, 0.0, 0.0, 10.0, ts=ts)


def run(monitors: list[Monitor], view: VenueView):
    return reconcile_account(
        account="main",
        monitors={m.key: m for m in monitors},
        view=view,
        instruments={"BTCUSDT": BTC} | {m.symbol: replace(BTC, symbol=m.symbol) for m in monitors},
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
    # "at breakeven" only once the venue accepts the move (issue 11 item 6): here it is asked for
    assert t.monitor.phase is Phase.PROFIT_TAKING and t.monitor.breakeven_at is not None
    sl = [a for a in t.actions if isinstance(a, AmendOrder) and a.slot == "sl"]
    assert sl and sl[0].request.qty == 0.005 and sl[0].request.trigger_price == t.monitor.breakeven_at
    assert out.applied_exec_ids == [exe.exec_id] and out.repairs == 1


def test_a_symbol_with_orders_in_flight_is_left_alone() -> None:
    """Its orders are on their way (sent, not answered): the view may show them half done, so the
    pass neither replays its fills, nor re-places or cancels its orders, nor touches its size."""
    m = with_position()
    exe = fill(m, "tp1", 0.028, 101_000.0)
    view = VenueView([position(0.005)], venue_orders(m, skip={"tp1", "sl"}), [exe])
    out = reconcile_account(
        account="main",
        monitors={m.key: m},
        view=view,
        instruments={"BTCUSDT": BTC},
        params=P,
        tag="t3st",
        new_monitor_id=lambda symbol: "feedbeef",
        now=NOW,
        busy=frozenset({"BTCUSDT"}),
    )
    assert out.transitions == [] and out.applied_exec_ids == [] and out.orphan_cancels == []
    assert out.repairs == 0 and not out.wants_reads


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
    view = VenueView([], venue_orders(m), [], marks={"BTCUSDT": 99_500.0}, history={"BTCUSDT": []})
    (t,) = run([m], view).transitions
    assert t.trade is not None and t.trade.reason == "manual" and t.trade.exit_price == 99_500.0
    assert any(a.type == "closed_unexplained" for a in t.alerts)


def test_a_stop_missing_from_the_listing_is_read_again_before_anything_is_placed() -> None:
    """One listing (read page by page, so not atomic) is no proof: its symbol's orders are read again."""
    m = with_position()
    out = run([m], VenueView([position(0.033)], venue_orders(m, skip={"sl"}), []))
    assert out.confirm == {"BTCUSDT"} and out.wants_reads and out.repairs == 0
    assert not any(isinstance(a, PlaceOrder) for t in out.transitions for a in t.actions)
    assert not any(a.type == "order_missing" for t in out.transitions for a in t.alerts)


def test_a_stop_the_second_read_finds_open_is_not_placed_twice() -> None:
    m = with_position()
    listing = venue_orders(m, skip={"sl"})
    view = VenueView([position(0.033)], listing, [], rechecked_orders={"BTCUSDT": venue_orders(m)})
    out = run([m], view)
    (t,) = out.transitions
    assert t.actions == [] and out.repairs == 0 and t.alerts == [] and not out.wants_reads


def test_a_stop_that_filled_between_the_reads_is_booked_not_placed_again() -> None:
    m = with_position()
    exe = fill(m, "sl", 0.033, 96_990.0)
    view = VenueView(
        [position(0.033, ts=1000.0)],  # read before the fill
        venue_orders(m, skip={"sl"}),
        [],
        rechecked_orders={"BTCUSDT": venue_orders(m, skip={"sl"})},
        rechecked_fills=[exe],
    )
    (t,) = run([m], view).transitions
    assert t.trade is not None and t.trade.reason == "sl" and t.trade.exit_price == 96_990.0
    assert not any(isinstance(a, PlaceOrder) for a in t.actions)


async def test_the_second_read_is_the_symbols_orders_then_its_executions() -> None:
    m = with_position()
    reads: list[tuple[str, str | None]] = []

    class Reads:
        async def open_orders(self, symbol: str | None = None) -> list[Order]:
            reads.append(("orders", symbol))
            return venue_orders(m)

        async def executions(self, since: float, symbol: str | None = None) -> list[Execution]:
            reads.append(("executions", symbol))
            return []

    view = VenueView([position(0.033)], venue_orders(m, skip={"sl"}), [], since=4000.0)
    first = run([m], view)
    view = await complete_view(cast(Venue, Reads()), view, first)
    assert reads == [("orders", "BTCUSDT"), ("executions", "BTCUSDT")]
    again = run([m], view)
    assert not again.wants_reads and again.transitions[0].actions == [] and again.repairs == 0


def test_missing_stop_is_placed_again_with_the_next_generation() -> None:
    m = with_position()
    listing = venue_orders(m, skip={"sl"})  # and missing from a second read of the symbol too
    out = run([m], VenueView([position(0.033)], listing, [], rechecked_orders={"BTCUSDT": listing}))
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
    view = VenueView([position(0.050, entry=99_000.0)], venue_orders(m), [], history={"BTCUSDT": []})
    (t,) = run([m], view).transitions
    assert t.monitor.size == 0.050 and t.durable
    assert any(a.type == "size_drift" for a in t.alerts)
    assert [a.request.qty for a in t.actions if a.slot == "sl"] == [0.05]


# --- reads that race fills, exits the executions must explain, adoption next to our own orders ---

TPS = ("tp1", "tp2", "tp3", "tp4")


def test_a_position_read_older_than_the_fill_that_closed_it_is_not_adopted() -> None:
    """The stop filled after the positions read: the fill closes the monitor with its real exit, and
    the stale read does not bring the position back as an adopted one; a read made after the
    executions decides (flat: nothing; still open: adopted)."""
    m = with_position()
    exe = fill(m, "sl", 0.033, 96_990.0)
    stale = VenueView([position(0.033, ts=exe.ts - 1.0)], venue_orders(m), [exe])
    out = run([m], stale)
    (t,) = out.transitions
    assert t.trade is not None and t.trade.reason == "sl" and t.trade.exit_price == 96_990.0
    assert out.recheck == {"BTCUSDT"}
    flat = run([m], replace(stale, positions_after=[]))
    assert [tr.monitor.approach for tr in flat.transitions] == ["conservative"] and not flat.wants_reads
    still_open = run([m], replace(stale, positions_after=[position(0.01, ts=exe.ts + 1.0)]))
    assert [tr.monitor.approach for tr in still_open.transitions] == ["adopted", "conservative"]


def test_a_flat_read_that_a_newer_entry_fill_contradicts_is_read_again() -> None:
    """An entry fills after a flat positions read: the monitor is not closed as manual on that read."""
    t0 = opened()
    e1 = fill(t0.monitor, "e1", t0.monitor.orders["e1"].qty, 100_000.0)
    out = run([t0.monitor], VenueView([], venue_orders(t0.monitor), [e1]))
    (t,) = out.transitions
    assert t.trade is None and t.monitor.size == 0.033 and out.recheck == {"BTCUSDT"}


def test_an_unexplained_close_looks_the_executions_up_before_estimating() -> None:
    m = with_position()
    view = VenueView([], venue_orders(m), [], marks={"BTCUSDT": 99_500.0})
    out = run([m], view)
    (t,) = out.transitions
    assert t.trade is None and out.lookups == {"BTCUSDT": m.created_at}
    exe = fill(m, "sl", 0.033, 96_990.0)  # older than the cursor, but in the history
    (t,) = run([m], replace(view, history={"BTCUSDT": [exe]})).transitions
    assert t.trade is not None and t.trade.reason == "sl" and t.trade.exit_price == 96_990.0
    assert not t.trade.exit_estimated and not any(a.type == "closed_unexplained" for a in t.alerts)


@pytest.mark.parametrize(("marks", "exit_price"), [({"BTCUSDT": 99_500.0}, 99_500.0), ({}, 100_000.0)])
def test_an_exit_no_execution_explains_is_marked_estimated(
    marks: dict[str, float], exit_price: float
) -> None:
    """Never a silent PnL: the trade says its exit is an estimate, and an alert says how it was priced."""
    m = with_position()
    (t,) = run([m], VenueView([], venue_orders(m), [], marks=marks, history={"BTCUSDT": []})).transitions
    assert t.trade is not None and t.trade.exit_estimated and t.trade.exit_price == exit_price
    (alert,) = [a for a in t.alerts if a.type == "closed_unexplained"]
    assert "exit_estimated" in alert.message and ("unknown" in alert.message) is (not marks)


def test_a_partial_exit_no_execution_explains_marks_the_later_trade_estimated() -> None:
    m = with_position()
    view = VenueView(
        [position(0.020)], venue_orders(m), [], marks={"BTCUSDT": 99_000.0}, history={"BTCUSDT": []}
    )
    (t,) = run([m], view).transitions
    assert t.monitor.size == 0.020 and t.monitor.exit_estimated
    after = apply_execution(t.monitor, fill(t.monitor, "sl", 0.020, 97_000.0), BTC, P)
    assert after.trade is not None and after.trade.reason == "sl" and after.trade.exit_estimated


def test_round_trip_while_down_then_a_leftover_entry_opens_a_new_position() -> None:
    """The TPs flattened the position, then e2 filled: the old trade closes with its real exits, the
    new position is adopted with a stop of its own, committed before the old monitor's cancels."""
    m = with_position()
    exes = [fill(m, slot, m.orders[slot].qty, m.tp_prices[i]) for i, slot in enumerate(TPS)]
    e2 = m.orders["e2"]
    exes.append(fill(m, "e2", e2.qty, 99_000.0))
    new = position(e2.qty, entry=99_000.0, ts=exes[-1].ts)
    view = VenueView([new], venue_orders(m, skip=set(TPS) | {"e2"}), exes, positions_after=[new])
    out = run([m], view)
    adopted, old = out.transitions
    assert adopted.monitor.approach == "adopted" and old.monitor.monitor_id == m.monitor_id
    assert old.trade is not None and old.trade.reason == "tp" and old.trade.tps_hit == 4
    (place,) = adopted.actions
    assert isinstance(place, PlaceOrder) and place.slot == "sl" and place.request.qty == e2.qty
    assert place.request.link_id.startswith(f"opc-t3st-{adopted.monitor.monitor_id}-sl-")
    cancelled = {a.request.order_id for a in old.actions if isinstance(a, CancelOrder)}
    assert cancelled == {m.orders["sl"].order_id, m.orders["e3"].order_id}


def test_a_position_older_than_the_executions_window_is_adopted_once_its_fills_are_known() -> None:
    """Its last change is before the view's executions: whose it is is looked up first (another
    engine's entry would carry its tag); a manual fill, read after the positions, asks for a read
    made after it, then the position is adopted."""
    view = VenueView([position(0.033, ts=NOW - 10.0)], [], [], since=NOW - 2.0)
    first = run([], view)
    assert first.transitions == [] and first.lookups == {"BTCUSDT": NOW - 10.0 - ADOPTION_LOOKBACK_S}
    manual = replace(fill(with_position(), None, 0.033, 100_000.0, Side.BUY), ts=NOW - 10.0)
    looked = run([], replace(view, history={"BTCUSDT": [manual]}))
    assert looked.transitions == [] and looked.recheck == {"BTCUSDT"} and not looked.lookups
    out = run([], replace(view, history={"BTCUSDT": [manual]}, positions_after=view.positions))
    (adopted,) = out.transitions
    assert adopted.monitor.approach == "adopted" and not out.wants_reads
    inside = run([], replace(view, since=NOW - 10.0))  # its last change is in the window: no lookup
    assert [t.monitor.approach for t in inside.transitions] == ["adopted"] and not inside.wants_reads


def test_adoption_after_lost_state_never_takes_an_orphan_as_its_stop() -> None:
    """No monitor (the state was lost): the old trade's orders are orphans of ours and are cancelled;
    the position gets a new stop, not the orphan stop the same pass cancels."""
    lost = with_position()
    out = run([], VenueView([position(0.033)], venue_orders(lost), []))
    (adopted,) = out.transitions
    (place,) = adopted.actions
    assert isinstance(place, PlaceOrder) and place.slot == "sl" and place.request.qty == 0.033
    assert lost.orders["sl"].order_id in {c.request.order_id for c in out.orphan_cancels}


def test_an_entry_saved_but_never_sent_before_a_restart_is_said_not_silently_dropped() -> None:
    from tpsl_builders import request

    from engine.trading.approaches import Approach, plan_trade
    from engine.trading.monitor import new_monitor, open_monitor

    plan = plan_trade(request(Approach.FAST), BTC, 100_000.0, 10_000.0, P)
    m = open_monitor(new_monitor(plan, "0a0b0c0d", "t3st", 1000.0), BTC, P).monitor
    assert m.orders["e1"].status is SlotStatus.PENDING  # on disk, then the engine was killed
    view = VenueView(positions=[], open_orders=[], executions=[], rechecked_orders={"BTCUSDT": []})
    out = run([m], view)
    raised = [*out.alerts, *(a for t in out.transitions for a in t.alerts)]
    alerts = [a for a in raised if a.type == "entry_not_sent"]
    assert len(alerts) == 1 and "e1" in alerts[0].message and alerts[0].severity == "warning"


def test_a_monitor_copy_is_a_deep_copy() -> None:
    """Reconciliation copies monitors with ``Monitor.copy`` (deepcopy is too slow for a thousand):
    equal to a deep copy, sharing no container with the original."""
    import copy
    from dataclasses import fields

    m = with_position()
    m.exec_ids.append("x1")
    twin = m.copy()
    assert twin == copy.deepcopy(m)
    for f in fields(m):
        value = getattr(m, f.name)
        if not isinstance(value, str | int | float | bool | type(None)):  # enums are ints / strs
            assert getattr(twin, f.name) is not value, f.name
    for slot, order in m.orders.items():
        assert twin.orders[slot] is not order and twin.orders[slot] == order


def on_symbol(symbol: str, index: int) -> Monitor:
    """A monitor of its own (its id in its orders' link ids) like :func:`with_position`'s, on ``symbol``."""
    m = with_position()
    old_id, m.symbol, m.monitor_id = m.monitor_id, symbol, f"0a0b0c{index:02x}"
    for order in m.orders.values():
        order.link_id = order.link_id.replace(old_id, m.monitor_id)
    return m


async def test_many_symbols_to_confirm_are_read_again_in_two_reads_not_two_a_symbol() -> None:
    """A restart after a long stop may miss orders of hundreds of symbols in one listing: the whole
    listing and every fill are read again once, not one symbol after another."""
    monitors = [on_symbol(s, i) for i, s in enumerate(("AUSDT", "BUSDT", "CUSDT", "DUSDT"))]
    reads: list[tuple[str, str | None]] = []
    kept = {m.symbol: venue_orders(m) for m in monitors}

    class Reads:
        async def open_orders(self, symbol: str | None = None) -> list[Order]:
            reads.append(("orders", symbol))
            return [o for s, orders in kept.items() for o in orders if symbol in (None, s)]

        async def executions(self, since: float, symbol: str | None = None) -> list[Execution]:
            reads.append(("executions", symbol))
            return []

    positions = [replace(position(0.033), symbol=m.symbol) for m in monitors]
    listing = [o for m in monitors for o in venue_orders(m, skip={"sl"})]
    view = VenueView(positions, listing, [], since=4000.0)
    first = run(monitors, view)
    assert first.confirm == {m.symbol for m in monitors}
    view = await complete_view(cast(Venue, Reads()), view, first)
    assert reads == [("orders", None), ("executions", None)]
    again = run(monitors, view)
    assert not again.wants_reads and again.repairs == 0
    assert all(t.actions == [] for t in again.transitions)
