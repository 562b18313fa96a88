"""Another engine instance (same code, another state directory and tag) trading the same account:
detected, reported loudly, never fought (no cancels, no adoption, its fills applied to nothing)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_reconcile import NOW, position, venue_orders
from tpsl_builders import BTC, P, fill, with_position
from tpsl_harness import SYMBOL, Harness, MemoryStore, stop_orders

from engine.core import state_keys
from engine.core.link_ids import make_link_id, other_instance_tag
from engine.core.models import Execution, Instrument, Monitor, Order, OrderStatus, OrderType, Side
from engine.trading.approaches import Approach
from engine.trading.reconcile import (
    ADOPTION_LOOKBACK_S,
    ForeignCondition,
    VenueView,
    foreign_alerts_once,
    foreign_fill_alerts,
    reconcile_account,
)

OURS, THEIRS = "t3st", "zzzz"
ETH = Instrument("ETHUSDT", tick_size=0.01, qty_step=0.01, min_qty=0.01, max_qty=1000.0)


def run(monitors: list[Monitor], view: VenueView, scope: frozenset[str] | None = None):
    return reconcile_account(
        account="main",
        monitors={m.key: m for m in monitors},
        view=view,
        instruments={"BTCUSDT": BTC, "ETHUSDT": ETH},
        params=P,
        tag=OURS,
        new_monitor_id=lambda symbol: "feedbeef",
        now=NOW,
        scope=scope,
    )


def stop(link_id: str, symbol: str = "BTCUSDT", qty: float = 0.05, trigger: float = 98_000.0) -> Order:
    """A reduce-only stop-loss protecting a long, with ``link_id``."""
    return Order(
        "main",
        f"oid-{link_id or 'manual'}",
        link_id,
        symbol,
        Side.SELL,
        OrderType.MARKET,
        qty,
        None,
        OrderStatus.UNTRIGGERED,
        trigger_price=trigger,
        reduce_only=True,
    )


def their_fill(
    symbol: str, qty: float, *, tag: str = THEIRS, side: Side = Side.BUY, ts: float = NOW - 100.0
) -> Execution:
    """A fill of the other engine's (``tag``) entry order."""
    return Execution(
        account="main",
        exec_id=f"{tag}-{symbol}-{qty}",
        order_id=f"{tag}-oid",
        link_id=make_link_id(tag, "12345678", "e1", 0),
        symbol=symbol,
        side=side,
        price=100_000.0,
        qty=qty,
        fee=1.0,
        is_maker=False,
        closed_size=0.0,
        order_type=OrderType.MARKET,
        ts=ts,
    )


def test_the_rule_tells_another_instance_from_ours_and_from_manual() -> None:
    assert other_instance_tag(make_link_id(THEIRS, "12345678", "sl", 3), OURS) == THEIRS
    assert other_instance_tag(make_link_id(OURS, "12345678", "sl", 3), OURS) is None
    assert other_instance_tag("", OURS) is None and other_instance_tag("my-manual-order", OURS) is None


def test_another_engines_position_and_stop_are_left_alone() -> None:
    """Its position is protected by its own stop: not adopted (its stop not taken, not amended, not
    cancelled), and reported as critical."""
    theirs = stop(make_link_id(THEIRS, "12345678", "sl", 0))
    out = run([], VenueView([position(0.05)], [theirs], []))
    assert out.transitions == [] and out.orphan_cancels == []
    by_type = {a.type: a for a in out.alerts}
    assert set(by_type) == {"foreign_orders", "foreign_position"}
    alert = by_type["foreign_position"]
    assert alert.severity == "critical" and alert.key == "main:BTCUSDT:Buy"
    assert "main" in alert.message and "BTCUSDT" in alert.message and THEIRS in alert.message


def test_a_position_their_fills_opened_is_not_adopted_even_before_their_stop_is_listed() -> None:
    exe = their_fill("BTCUSDT", 0.05)
    out = run([], VenueView([position(0.05)], [], [exe]))
    assert out.transitions == [] and out.foreign_fills == [exe] and out.applied_exec_ids == []
    assert [a.type for a in out.alerts] == ["foreign_position"]


def test_their_entry_filled_before_the_views_window_is_looked_up_not_adopted() -> None:
    """The soak's race: their market entry filled before the executions window this engine reads
    (its cursor), and their stop is not placed yet: nothing in the view says whose the position is.
    Its symbol's executions are looked up before adopting it; their fill carries their tag."""
    exe = their_fill("BTCUSDT", 0.05, ts=NOW - 3.0)
    view = VenueView([position(0.05, ts=NOW - 3.0)], [], [], since=NOW - 1.0)
    first = run([], view)
    assert first.transitions == [] and first.repairs == 0
    assert first.lookups == {"BTCUSDT": NOW - 3.0 - ADOPTION_LOOKBACK_S}
    out = run([], replace(view, history={"BTCUSDT": [exe]}))
    assert out.transitions == [] and out.foreign_fills == [exe] and out.applied_exec_ids == []
    assert [a.type for a in out.alerts] == ["foreign_position"] and not out.wants_reads


def test_another_engines_orders_and_position_are_raised_once_while_they_last() -> None:
    """Every pass says what it finds; the caller raises each condition once (per tag, per symbol),
    says when a whole-account pass finds it over (a scoped pass judges nothing), and raises it again
    when it comes back."""
    orders = [stop(make_link_id(THEIRS, "12345678", "sl", 0))]
    raised: frozenset[ForeignCondition] = frozenset()

    def said(view: VenueView, scope: frozenset[str] | None = None) -> list[tuple[str, str]]:
        nonlocal raised
        alerts, raised = foreign_alerts_once("main", run([], view, scope), raised)
        return [(a.severity, a.type) for a in alerts]

    both = VenueView([position(0.05)], orders, [])
    assert said(both) == [("critical", "foreign_orders"), ("critical", "foreign_position")]
    assert said(both) == [] and said(replace(both, open_orders=[*orders, *orders])) == []
    assert said(VenueView([], [], []), scope=frozenset()) == []  # sees nothing of the account
    assert said(VenueView(None, [], [])) == [("info", "foreign_orders")]  # positions not read
    assert said(VenueView(None, [], [])) == []
    assert said(VenueView([], [], [])) == [("info", "foreign_position")]
    assert said(both) == [("critical", "foreign_orders"), ("critical", "foreign_position")]
    over, _ = foreign_alerts_once("main", run([], VenueView([], [], [])), raised)
    assert [a.key for a in over] == ["main", "main:BTCUSDT"] and THEIRS in over[0].message


def test_a_manual_position_is_still_adopted_next_to_another_engines() -> None:
    """Another engine holds BTC; ETH was opened by hand (no link id) with a stop of its own: ETH is
    adopted with that stop, BTC is left alone."""
    manual = replace(position(2.0), symbol="ETHUSDT", mark_price=3_000.0, entry_price=3_000.0)
    manual_stop = stop("", symbol="ETHUSDT", qty=2.0, trigger=2_900.0)
    theirs = stop(make_link_id(THEIRS, "12345678", "sl", 0))
    out = run([], VenueView([position(0.05), manual], [theirs, manual_stop], []))
    (adopted,) = out.transitions
    assert adopted.monitor.symbol == "ETHUSDT" and adopted.monitor.approach == "adopted"
    assert adopted.monitor.orders["sl"].order_id == manual_stop.order_id
    assert "foreign_position" in [a.type for a in out.alerts] and out.orphan_cancels == []


def test_another_engines_fill_on_our_symbol_is_not_applied() -> None:
    m = with_position()
    exe = their_fill("BTCUSDT", 0.01)
    mine = fill(m, "tp1", 0.01, 101_000.0)  # a fill of ours in the same view is still applied
    out = run([m], VenueView(None, venue_orders(m), [exe, mine]))
    (t,) = out.transitions
    assert out.foreign_fills == [exe] and out.applied_exec_ids == [mine.exec_id]
    assert exe.exec_id not in t.monitor.exec_ids and t.monitor.size == pytest.approx(m.size - 0.01)
    (alert,) = foreign_fill_alerts("main", out.foreign_fills)
    assert alert.type == "foreign_fills" and alert.severity == "critical" and alert.key == "main:BTCUSDT"
    assert "main" in alert.message and "BTCUSDT" in alert.message and THEIRS in alert.message


# --- two engines on one simulated exchange -------------------------------------------------------


def _of(h: Harness, type_: str) -> list[tuple[str, str, str]]:
    return [a for a in h.alerts if a[1] == type_]


async def test_two_engines_on_one_account_never_fight() -> None:
    """The first engine holds BTC; a second one (its own state, tag ``b2b2``) starts on the same
    account and opens ETH. Neither adopts, cancels or accounts the other's; both say so, critically,
    and a fill is reported once however many passes read it again."""
    first = Harness()
    await first.start()
    second: Harness | None = None
    try:
        mine = await first.manager.open_trade(first.request(Approach.FAST, margin=1000.0))
        await first.settle()
        btc_orders = {o.order_id for o in first.open_orders()}
        store = MemoryStore({state_keys.MANAGER_KEY: {"instance_tag": "b2b2"}})
        second = Harness(store=store, exchange=first.exchange, clock=first.clock)
        await second.start()
        assert second.manager.tag == "b2b2" != first.manager.tag
        assert second.manager.monitors == {}  # the first engine's BTC is not the second's to adopt
        (seen,) = {(s, m) for s, _, m in _of(second, "foreign_position")}
        assert seen[0] == "critical" and first.manager.tag in seen[1]

        first.exchange.set_price("ETHUSDT", 3_000.0)
        req = second.request(Approach.FAST, margin=100.0, tps=(3_100.0,), sl=2_900.0, symbol="ETHUSDT")
        theirs = await second.manager.open_trade(req)
        await first.settle(40.0)  # the stream's fills, then whole-account passes of both engines
        assert set(first.manager.monitors) == {mine.key}
        assert set(second.manager.monitors) == {theirs.key}
        open_ids = {o.order_id for o in first.open_orders()}
        assert btc_orders <= open_ids  # the second engine cancelled nothing of the first's
        held = second.manager.monitors[theirs.key].orders.values()
        their_ids = {o.order_id for o in held if o.status.live}
        assert their_ids and their_ids <= open_ids  # nor the first of the second's
        for symbol in (SYMBOL, "ETHUSDT"):  # each engine's position keeps exactly its own stop
            (pos,) = first.exchange.positions("main", symbol)
            (sl,) = [o for o in stop_orders(first.open_orders()) if o.symbol == symbol]
            assert pos.is_open and sl.qty == pytest.approx(pos.size)
        fills = _of(first, "foreign_fills")
        assert fills and all(s == "critical" and "ETHUSDT" in m and "b2b2" in m for s, _, m in fills)
        assert any("ETHUSDT" in m for _, _, m in _of(first, "foreign_position"))
        await first.settle(60.0)  # passes read the last fills again: not reported again
        assert _of(first, "foreign_fills") == fills
        # every pass finds the other's orders and position again: each is raised once
        for engine, symbol in ((first, "ETHUSDT"), (second, SYMBOL)):
            assert [s for s, _, _ in _of(engine, "foreign_orders")] == ["critical"]
            assert [(s, symbol in m) for s, _, m in _of(engine, "foreign_position")] == [("critical", True)]

        # the live path: another engine's fill on our own symbol changes nothing of ours, said once
        before = first.manager.monitors[mine.key]
        exe = their_fill(SYMBOL, 0.002, tag="b2b2", ts=first.clock.now())
        await first.manager.on_execution("main", exe)
        await first.manager.on_execution("main", exe)
        assert first.manager.monitors[mine.key].size == before.size
        assert exe.exec_id not in first.manager.monitors[mine.key].exec_ids
        (last,) = _of(first, "foreign_fills")[len(fills) :]
        assert SYMBOL in last[2] and "b2b2" in last[2]
    finally:
        if second is not None:
            await second.close()
        await first.close()
