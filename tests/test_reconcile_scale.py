"""Reconciliation costs what differs, not what the account holds (issue 17, "Scale").

The pass copies a monitor only when it is about to change it, and skips the order diff of a monitor
it did not touch that a previous pass found in sync (:class:`~engine.trading.reconcile.SyncMemo`).
Its outcome must stay exactly what the eager pass (copy all, finish all) gave: seeded varied
accounts are compared with outcomes recorded from that pass (``fixtures/reconcile_outcomes.json``),
and with and without the memo.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from unittest import mock

import pytest
from tpsl_builders import P

from engine.core.link_ids import make_link_id
from engine.core.models import (
    Execution,
    Instrument,
    Monitor,
    Order,
    OrderAck,
    OrderStatus,
    OrderType,
    Position,
    Side,
    SlotStatus,
)
from engine.trading import reconcile as reconcile_module
from engine.trading.approaches import Approach, plan_trade, request_from_offsets
from engine.trading.monitor import (
    Transition,
    apply_execution,
    apply_results,
    new_monitor,
    open_monitor,
    request_close,
)
from engine.trading.orders import ActionResult
from engine.trading.reconcile import ReconcileOutcome, SyncMemo, VenueView, reconcile_account

NOW = 5000.0
TAG = "t3st"
RECORDED = Path(__file__).parent / "fixtures" / "reconcile_outcomes.json"
SYMBOLS = [f"S{i:02d}USDT" for i in range(40)]
INSTRUMENTS = {s: Instrument(s, tick_size=0.1, qty_step=0.001, min_qty=0.001, max_qty=100.0) for s in SYMBOLS}


def _ack(t: Transition, ids: Iterator[int], instrument: Instrument) -> Transition:
    results = [
        ActionResult(a, ack=OrderAck(f"oid-{next(ids)}", getattr(a.request, "link_id", "")))
        for a in t.actions
    ]
    return apply_results(t.monitor, results, instrument, P)


def _fill(m: Monitor, slot: str | None, qty: float, price: float, ts: float, ids: Iterator[int]) -> Execution:
    order = m.orders.get(slot) if slot else None
    return Execution(
        "main",
        f"x{next(ids)}",
        order.order_id if order else "manual",
        order.link_id if order else "",
        m.symbol,
        order.side if order else m.side.opposite,
        price,
        qty,
        round(price * qty * 0.00055, 8),
        False,
        0.0,
        OrderType.MARKET,
        ts,
    )


def _monitor(rng: random.Random, n: int, ids: Iterator[int]) -> Monitor:
    """A monitor with a filled market entry, in sync with the venue, then (sometimes) changed."""
    symbol = SYMBOLS[n]
    instrument = INSTRUMENTS[symbol]
    conservative = rng.random() < 0.7
    side = rng.choice([Side.BUY, Side.SELL])
    req = request_from_offsets(
        account="main",
        symbol=symbol,
        side=side,
        approach=Approach.CONSERVATIVE if conservative else Approach.FAST,
        margin=1000.0,
        leverage=10.0,
        mark=100_000.0,
        instrument=instrument,
        entry_offsets_pct=[0.0, -1.0, -2.0] if conservative else [0.0],
        tp_offsets_pct=[1.0, 2.0, 3.0, 4.0] if conservative else [1.0],
        sl_offset_pct=-3.0,
    )
    plan = plan_trade(req, instrument, 100_000.0, 10_000.0, P)
    m = _ack(open_monitor(new_monitor(plan, f"{n:08x}", TAG, 1000.0), instrument, P), ids, instrument).monitor
    entry = _fill(m, "e1", m.orders["e1"].qty, 100_000.0, 1000.0 + n, ids)
    m = _ack(apply_execution(m, entry, instrument, P), ids, instrument).monitor
    r = rng.random()
    if r < 0.1:  # a TP filled and its consequences are still on their way
        m = apply_execution(
            m, _fill(m, "tp1", m.orders["tp1"].qty, 101_000.0, 1500.0, ids), instrument, P
        ).monitor
    elif r < 0.2:  # a TP filled and the venue took the follow-up
        tp = _fill(m, "tp1", m.orders["tp1"].qty, 101_000.0, 1500.0, ids)
        m = _ack(apply_execution(m, tp, instrument, P), ids, instrument).monitor
    elif r < 0.27:  # a slot gave up (reconciliation retries it)
        m = m.copy()
        m.orders["tp2" if conservative else "tp1"].failures = rng.randint(1, P.sl_retry_attempts)
    elif r < 0.32:
        m = m.copy()
        m.trim_to = round(m.size / 2, 3)
    elif r < 0.36:
        m = request_close(m, "manual", instrument, P).monitor
    elif r < 0.4:  # the stop was refused once and is sent again
        m = m.copy()
        m.orders["sl"].status = SlotStatus.GONE
    return m


def _venue_order(m: Monitor, slot: str, **changes: object) -> Order:
    o = m.orders[slot]
    order = Order(
        "main",
        o.order_id,
        o.link_id,
        m.symbol,
        o.side,
        o.order_type,
        o.qty,
        o.price,
        OrderStatus.UNTRIGGERED if o.trigger_price else OrderStatus.NEW,
        trigger_price=o.trigger_price,
        reduce_only=o.reduce_only,
    )
    return replace(order, **changes)  # type: ignore[arg-type]


def _view(rng: random.Random, monitors: list[Monitor], ids: Iterator[int]) -> VenueView:
    """What the venue says: mostly the monitors' own orders and sizes, with varied differences."""
    positions: list[Position] = []
    orders: list[Order] = []
    executions: list[Execution] = []
    history: dict[str, list[Execution]] = {}
    for m in monitors:
        for slot, o in m.orders.items():
            if o.status is not SlotStatus.OPEN:
                continue
            r = rng.random()
            if r < 0.04:
                continue  # missing on the venue
            if r < 0.07:
                orders.append(_venue_order(m, slot, qty=round(o.qty + 0.001, 3)))  # a lost amend
            elif r < 0.09:
                orders.append(_venue_order(m, slot, status=OrderStatus.FILLED, filled_qty=o.qty))
            elif r < 0.11:
                orders.append(_venue_order(m, slot, status=OrderStatus.CANCELLED))
            elif r < 0.13:
                orders.append(_venue_order(m, slot, order_id=f"oid-new-{next(ids)}"))
            elif r < 0.15:  # a newer generation placed just before a crash
                link = make_link_id(TAG, m.monitor_id, slot, o.generation + 1)
                orders.append(_venue_order(m, slot, link_id=link, order_id=f"oid-{next(ids)}"))
            elif r < 0.17:  # the venue knows it by order id only
                orders.append(_venue_order(m, slot, link_id=""))
            else:
                orders.append(_venue_order(m, slot))
        r = rng.random()
        if r < 0.05:  # an older generation still open: an orphan
            orders.append(
                _venue_order(m, "sl", link_id=make_link_id(TAG, m.monitor_id, "sl", 0), order_id="old")
            )
        if r < 0.1 and "tp1" in m.orders:  # a fill the stream missed
            executions.append(
                _fill(m, "tp1", m.orders["tp1"].qty, 101_000.0, rng.choice([2000.0, 4999.0]), ids)
            )
        size = m.size
        r = rng.random()
        if r < 0.05:
            size = 0.0
        elif r < 0.1:
            size = round(size + 0.005, 3)
        elif r < 0.13:
            size = round(size / 2, 3)
        if rng.random() < 0.3:
            history[m.symbol] = []
        ts = rng.choice([NOW, 1000.0])
        positions.append(
            Position("main", m.symbol, m.side, size, 100_000.0, 100_100.0, 0.0, 0.0, 10.0, ts=ts)
        )
    for k in range(rng.randint(0, 2)):  # orders of ours with no monitor, and another instance's
        tag = TAG if k == 0 else "zzzz"
        link = make_link_id(tag, f"{900 + k:08x}", "sl", 0)
        orders.append(
            Order(
                "main",
                f"orph{k}",
                link,
                SYMBOLS[-1],
                Side.SELL,
                OrderType.MARKET,
                0.01,
                None,
                OrderStatus.NEW,
            )
        )
    if rng.random() < 0.3:  # a position nobody monitors
        positions.append(
            Position("main", SYMBOLS[-2], Side.BUY, 0.01, 100_000.0, 100_000.0, 0.0, 0.0, 10.0, ts=NOW)
        )
    with_positions = rng.random() < 0.8
    after = positions if with_positions and rng.random() < 0.2 else None
    # a second read of every symbol's orders agrees with the listing: a missing order is gone
    # (the outcomes were recorded before a missing order was read again first)
    again = {s: [o for o in orders if o.symbol == s] for s in SYMBOLS}
    return VenueView(
        positions if with_positions else None, orders, executions, {}, after, history, rechecked_orders=again
    )


def _case(seed: int) -> tuple[dict[str, Monitor], VenueView, frozenset[str] | None, frozenset[str]]:
    rng = random.Random(seed)
    ids = itertools.count()
    monitors = [_monitor(rng, n, ids) for n in range(rng.randint(1, 8))]
    view = _view(rng, monitors, ids)
    symbols = [m.symbol for m in monitors]
    scope = None if rng.random() < 0.6 else frozenset(rng.sample(symbols, rng.randint(0, len(symbols))))
    busy = frozenset(rng.sample(symbols, 1)) if rng.random() < 0.15 else frozenset()
    return {m.key: m for m in monitors}, view, scope, busy


def _run(
    monitors: dict[str, Monitor],
    view: VenueView,
    scope: frozenset[str] | None,
    busy: frozenset[str],
    memo: SyncMemo | None = None,
) -> ReconcileOutcome:
    return reconcile_account(
        account="main",
        monitors=monitors,
        view=view,
        instruments=INSTRUMENTS,
        params=P,
        tag=TAG,
        new_monitor_id=lambda symbol: "feedbeef",
        now=NOW,
        scope=scope,
        busy=busy,
        in_sync=memo,
    )


def _digest(out: ReconcileOutcome) -> str:
    """The whole outcome as text (a hash of it is what the recorded file holds)."""
    data = {
        "transitions": [
            [
                t.monitor.to_dict(),
                [repr(a) for a in t.actions],
                t.reason.value if t.reason else None,
                [(a.severity.value, a.type, a.message, a.key) for a in t.alerts],
                t.trade.to_dict() if t.trade else None,
                t.durable,
            ]
            for t in out.transitions
        ],
        "orphans": [repr(c) for c in out.orphan_cancels],
        "alerts": [(a.severity.value, a.type, a.message, a.key) for a in out.alerts],
        "repairs": out.repairs,
        "applied": out.applied_exec_ids,
        "recheck": sorted(out.recheck),
        "lookups": sorted(out.lookups.items()),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _commit(monitors: dict[str, Monitor], out: ReconcileOutcome) -> dict[str, Monitor]:
    """The registry after the manager took the outcome (transitions that carry something)."""
    after = dict(monitors)
    for t in out.transitions:
        if t.reason or t.actions or t.trade or t.durable:
            after[t.monitor.key] = t.monitor
    return after


CASES = range(400)


def test_the_outcome_is_the_one_the_eager_pass_recorded() -> None:
    """Copy-on-write changes no outcome: every seeded case gives what copying and finishing every
    monitor gave (recorded before the change)."""
    recorded = json.loads(RECORDED.read_text())
    got = {str(seed): _digest(_run(*_case(seed))) for seed in CASES}
    assert got == recorded


@pytest.mark.parametrize("seed", range(0, 400, 7))
def test_the_memo_changes_no_outcome(seed: int) -> None:
    """A pass that skips the diff of monitors a previous pass found in sync decides exactly what a
    pass without the memo decides, on the same view and on the registry after a commit."""
    monitors, view, scope, busy = _case(seed)
    first = _run(monitors, view, scope, busy)
    assert _digest(_run(monitors, view, scope, busy, first.in_sync)) == _digest(first)
    committed = _commit(monitors, first)
    again = _run(committed, view, scope, busy, first.in_sync)
    assert _digest(again) == _digest(_run(committed, view, scope, busy))
    for other_scope in (None, frozenset({next(iter(monitors.values())).symbol})):
        assert _digest(_run(committed, view, other_scope, busy, again.in_sync)) == _digest(
            _run(committed, view, other_scope, busy)
        )


def _venue_of(monitors: list[Monitor]) -> VenueView:
    orders = [
        _venue_order(m, s) for m in monitors for s, o in m.orders.items() if o.status is SlotStatus.OPEN
    ]
    positions = [
        Position("main", m.symbol, m.side, m.size, 100_000.0, 100_100.0, 0.0, 0.0, 10.0, ts=NOW)
        for m in monitors
    ]
    return VenueView(positions, orders, [])


def test_a_pass_copies_and_diffs_only_what_differs() -> None:
    """500 monitors in sync, 3 of them differing on the venue: once a pass has found the account in
    sync, the next copies and diffs those 3 (plus a small constant), not 500."""
    ids = itertools.count()
    instruments = {f"Q{i:03d}USDT": Instrument(f"Q{i:03d}USDT", 0.1, 0.001, 0.001, 100.0) for i in range(500)}
    monitors: list[Monitor] = []
    for i, symbol in enumerate(instruments):
        req = request_from_offsets(
            account="main",
            symbol=symbol,
            side=Side.BUY,
            approach=Approach.CONSERVATIVE,
            margin=1000.0,
            leverage=10.0,
            mark=100_000.0,
            instrument=instruments[symbol],
            entry_offsets_pct=[0.0, -1.0, -2.0],
            tp_offsets_pct=[1.0, 2.0, 3.0, 4.0],
            sl_offset_pct=-3.0,
        )
        plan = plan_trade(req, instruments[symbol], 100_000.0, 10_000.0, P)
        m = _ack(
            open_monitor(new_monitor(plan, f"{i:08x}", TAG, 1000.0), instruments[symbol], P),
            ids,
            instruments[symbol],
        ).monitor
        entry = _fill(m, "e1", m.orders["e1"].qty, 100_000.0, 1000.0, ids)
        monitors.append(
            _ack(apply_execution(m, entry, instruments[symbol], P), ids, instruments[symbol]).monitor
        )
    registry = {m.key: m for m in monitors}
    view = _venue_of(monitors)

    def run(memo: SyncMemo | None, v: VenueView) -> ReconcileOutcome:
        return reconcile_account(
            account="main",
            monitors=registry,
            view=v,
            instruments=instruments,
            params=P,
            tag=TAG,
            new_monitor_id=lambda symbol: "feedbeef",
            now=NOW,
            in_sync=memo,
        )

    first = run(None, view)
    assert all(not t.actions and t.reason is None for t in first.transitions)
    differing = replace(
        view,
        open_orders=[
            o for o in view.open_orders if not (o.symbol in ("Q007USDT", "Q250USDT") and "-sl-" in o.link_id)
        ],
        positions=[
            replace(p, size=p.size + 0.004) if p.symbol == "Q499USDT" else p for p in view.positions or []
        ],
        history={"Q499USDT": []},
    )
    # their stops are missing from a second read of their orders too
    differing = replace(
        differing,
        rechecked_orders={
            s: [o for o in differing.open_orders if o.symbol == s] for s in ("Q007USDT", "Q250USDT")
        },
    )
    copies = mock.patch.object(Monitor, "copy", autospec=True, side_effect=Monitor.copy)
    finishes = mock.patch.object(
        reconcile_module, "finish_transition", side_effect=reconcile_module.finish_transition
    )
    with copies as copied, finishes as finished:
        out = run(first.in_sync, differing)
    assert [t.monitor.symbol for t in out.transitions if t.actions] == ["Q007USDT", "Q250USDT", "Q499USDT"]
    assert copied.call_count <= 3 + 2 and finished.call_count <= 3 + 2
