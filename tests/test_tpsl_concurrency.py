"""A commit's requests may wait seconds for the rate budget: the fills of other symbols are decided
and their stops move meanwhile, instead of queueing behind it (issue 16, item 15)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest
from tpsl_harness import EPOCH, PROBE_SYMBOL, SYMBOL, Harness, MemoryStore, RequestLog, durable

import engine.trading.manager as manager_module
from engine.core.clock import VirtualClock
from engine.core.link_ids import make_link_id, parse_link_id, purpose_of
from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Execution,
    Order,
    OrderAck,
    OrderRequest,
    OrderType,
    Side,
    Ticker,
    VenueEvent,
)
from engine.trading.approaches import Approach
from engine.venue.base import BatchResult
from engine.venue.priority import Priority, current_priority
from persistence.store import Write

ETH = "ETHUSDT"
MARGIN = 1000.0  # 0.1 BTC at 10x: enough for four TPs


class Gate:
    """Holds every cancel of ``symbol`` (and every amend, with ``amends``) until opened, as a rate
    budget spent by other orders would."""

    def __init__(self, harness: Harness, symbol: str, *, amends: bool = False, creates: bool = False) -> None:
        self.opened = asyncio.Event()
        self.waiting = 0
        venue = harness.venue
        cancel, cancel_batch = venue.cancel, venue.cancel_batch
        amend, amend_batch = venue.amend, venue.amend_batch
        place, place_batch = venue.place, venue.place_batch

        async def gated_place(request: OrderRequest) -> OrderAck:
            await self._hold([request])
            return await place(request)

        async def gated_place_batch(requests: Sequence[OrderRequest]) -> list[BatchResult]:
            await self._hold(requests)
            return await place_batch(requests)

        async def gated_cancel(request: CancelRequest) -> OrderAck:
            await self._hold([request])
            return await cancel(request)

        async def gated_cancel_batch(requests: Sequence[CancelRequest]) -> list[BatchResult]:
            await self._hold(requests)
            return await cancel_batch(requests)

        async def gated_amend(request: AmendRequest) -> OrderAck:
            await self._hold([request])
            return await amend(request)

        async def gated_amend_batch(requests: Sequence[AmendRequest]) -> list[BatchResult]:
            await self._hold(requests)
            return await amend_batch(requests)

        self.symbol = symbol
        venue.cancel = gated_cancel  # type: ignore[method-assign]
        venue.cancel_batch = gated_cancel_batch  # type: ignore[method-assign]
        if amends:
            venue.amend = gated_amend  # type: ignore[method-assign]
            venue.amend_batch = gated_amend_batch  # type: ignore[method-assign]
        if creates:
            venue.place = gated_place  # type: ignore[method-assign]
            venue.place_batch = gated_place_batch  # type: ignore[method-assign]

    async def _hold(self, requests: Sequence[CancelRequest | AmendRequest | OrderRequest]) -> None:
        if any(r.symbol == self.symbol for r in requests):
            self.waiting += 1
            await self.opened.wait()


async def open_eth(h: Harness) -> tuple[float, ...]:
    """Open a conservative ETH long with TPs 1-4 % above the price; returns the TP levels."""
    eth = h.exchange.ticker(ETH).mark
    levels = tuple(round(eth * (1 + k / 100), 1) for k in (1, 2, 3, 4))
    entries = (None, round(eth * 0.99, 1), round(eth * 0.98, 1))
    await h.manager.open_trade(
        h.request(
            Approach.CONSERVATIVE, symbol=ETH, margin=MARGIN, entries=entries, tps=levels, sl=eth * 0.97
        )
    )
    return levels


async def test_a_tp1_fill_moves_the_stop_while_a_reconciliation_waits_for_the_budget() -> None:
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    await h.settle()
    # An order of ours that belongs to no monitor (a crashed run's leftover): the pass cancels it,
    # and that cancel waits (for the budget, here for the gate).
    h.exchange.set_price(ETH, 3_000.0)
    orphan = make_link_id(h.manager.tag, "deadbeef", "tp1", 0)
    request = OrderRequest(
        ETH, Side.SELL, OrderType.LIMIT, 0.1, price=3_300.0, reduce_only=False, link_id=orphan
    )
    h.exchange.place("main", request)
    gate = Gate(h, ETH)
    reconciling = asyncio.create_task(h.manager.reconcile("main", full=True))
    await h.settle()
    assert gate.waiting and not reconciling.done()

    for price in (101_200.0, 101_400.0, 101_600.0):  # TP1 fills meanwhile (the book fills it in parts)
        await h.price(price)

    monitor = h.manager.monitors["main:BTCUSDT:Buy"]
    assert monitor.breakeven, h.alerts  # decided and sent while the pass still waits
    stop = next(o for o in h.open_orders() if o.link_id == monitor.orders["sl"].link_id)
    assert stop.trigger_price is not None and stop.trigger_price > 100_000.0
    assert not reconciling.done()
    gate.opened.set()
    await h.settle()
    assert reconciling.done() and reconciling.exception() is None
    assert all(o.link_id != orphan for o in h.open_orders())
    await h.close()


async def test_a_fill_of_a_symbol_with_orders_in_flight_waits_for_their_answers() -> None:
    """The per-symbol order holds: a decision about a symbol whose orders are on their way is taken
    once their answers are in, never on the state before them."""
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    await h.settle()
    monitor = h.manager.monitors["main:BTCUSDT:Buy"]
    gate = Gate(h, "BTCUSDT")
    h.exchange.set_price("BTCUSDT", 96_900.0)  # the stop fills: the leftovers' cancels wait at the gate
    await h.settle()
    assert gate.waiting
    assert not h.manager.idle("main")
    gate.opened.set()
    await h.settle()
    assert h.manager.idle("main")
    assert "main:BTCUSDT:Buy" not in h.manager.monitors
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "sl" and trade.monitor_id == monitor.monitor_id
    assert h.open_orders() == []
    assert isinstance(h.clock, VirtualClock) and h.clock.now() > EPOCH
    await h.close()


async def test_a_wave_of_fills_moves_every_stop_at_once_whatever_waits_for_the_budget() -> None:
    """Fills of several symbols in one push (a busy tick): each position's stop moves at once, while
    another symbol's orders from the same push still wait for the rate budget. Before, a push was
    decided one symbol at a time (at each symbol's position update), so every later fill waited for
    the earlier symbols' cancels and take-profits to be answered: at 1000 positions a stop's move to
    breakeven waited seconds behind other positions' take-profits queued at the venue's limit."""
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    levels = await open_eth(h)
    await h.settle()
    entry = h.manager.monitors["main:ETHUSDT:Buy"].avg_entry
    gate = Gate(h, "BTCUSDT")  # BTC's cancels wait, as behind a spent budget
    # One tick: BTC's stop fills (its leftovers are cancelled: held at the gate) and ETH's TP1 fills.
    h.exchange.set_prices({"BTCUSDT": 96_900.0, ETH: round(levels[0] * 1.004, 1)})
    await h.settle()
    assert gate.waiting
    stop = next(o for o in h.open_orders() if o.symbol == ETH and o.trigger_price is not None)
    assert stop.trigger_price is not None and stop.trigger_price >= entry  # at breakeven already
    gate.opened.set()
    await h.settle()
    assert h.manager.idle("main")
    assert "main:BTCUSDT:Buy" not in h.manager.monitors
    assert h.manager.monitors["main:ETHUSDT:Buy"].breakeven
    await h.close()


async def test_a_fill_is_decided_while_a_stop_that_follows_the_price_waits_for_its_answer() -> None:
    """A ticker of a position whose breakeven waits for the price, and in the same push a fill of
    another position: the fill is decided at once, while the first position's stop move waits for
    its answer. Before, the stream's dispatch decided the price itself: it waited for the account's
    lock and the answers of that symbol's orders, and every event behind it in the push waited too
    (across accounts: the mirror's TP1 was decided only once main's breakeven was answered)."""
    h = Harness()
    await h.start()
    in_band = (100_100.0, 102_000.0, 103_000.0, 104_000.0)  # TP1 inside BTC's breakeven band
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN, tps=in_band))
    levels = await open_eth(h)
    await h.settle()
    await h.price(100_120.0)  # BTC's TP1 fills short of breakeven: its stop waits for the price
    btc = h.manager.monitors["main:BTCUSDT:Buy"]
    assert btc.breakeven_at is not None and not btc.breakeven
    entry = h.manager.monitors["main:ETHUSDT:Buy"].avg_entry
    gate = Gate(h, "BTCUSDT", amends=True)  # BTC's stop move waits, as behind a spent budget
    # One tick: BTC passes its breakeven (its stop's move is held at the gate), ETH's TP1 fills.
    h.exchange.set_prices({"BTCUSDT": 100_300.0, ETH: round(levels[0] * 1.004, 1)})
    await h.settle()
    assert gate.waiting
    assert h.manager.monitors["main:ETHUSDT:Buy"].breakeven, h.alerts
    stop = next(o for o in h.open_orders() if o.symbol == ETH and o.trigger_price is not None)
    assert stop.trigger_price is not None and stop.trigger_price >= entry
    assert not h.manager.idle("main")  # the price decision is still in hand
    gate.opened.set()
    await h.settle()
    assert h.manager.idle("main")
    assert h.manager.monitors["main:BTCUSDT:Buy"].breakeven
    await h.close()


async def test_a_new_trades_orders_wait_behind_the_upkeep_of_open_positions() -> None:
    """A new trade's own orders go at the ``OPEN`` priority: short of budget, they wait behind the
    orders of the positions already open. Once its entry fills, the position's stop is protective and
    its other orders are upkeep (``TRADE``). Before, a burst of openings shared the queue with them:
    at 300 positions a take-profit placement waited 70 s behind the openings, and a stop-out's
    decision behind it."""
    h = Harness()
    await h.start()
    asked: list[tuple[str, Priority]] = []
    place, place_batch = h.venue.place, h.venue.place_batch

    async def recorded_place(request: OrderRequest) -> OrderAck:
        asked.append((request.link_id, current_priority()))
        return await place(request)

    async def recorded_place_batch(requests: Sequence[OrderRequest]) -> list[BatchResult]:
        asked.extend((r.link_id, current_priority()) for r in requests)
        return await place_batch(requests)

    h.venue.place = recorded_place  # type: ignore[method-assign]
    h.venue.place_batch = recorded_place_batch  # type: ignore[method-assign]
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    await h.settle()
    by_slot = {parsed.slot: priority for link, priority in asked if (parsed := parse_link_id(link))}
    assert by_slot["e1"] is Priority.OPEN
    assert by_slot["sl"] is Priority.PROTECT
    # the rest is upkeep (protective too when it rides in the stop's batch request)
    assert set(by_slot) == {"e1", "e2", "e3", "sl", "tp1", "tp2", "tp3", "tp4"}
    assert all(by_slot[slot] <= Priority.TRADE for slot in by_slot if slot != "e1"), by_slot
    await h.close()


async def test_a_stop_out_is_decided_while_another_positions_take_profit_is_answered() -> None:
    """One push: BTC's stop fills and ETH's TP1 fills. A push is decided in rounds of one event per
    position; the stop-out's fill comes second for BTC (behind its stop's order update), so it is in
    the second round, and ETH's breakeven move (held at the gate) in the first. The second round
    decides BTC as soon as the first sends: BTC's leftovers are cancelled while ETH's amend waits.
    Before, the second round waited for every request of the first (at 300 positions, 214 ms)."""
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, margin=MARGIN))  # no entry to fill on the way
    levels = await open_eth(h)
    await h.settle()
    gate = Gate(h, ETH, amends=True)  # ETH's stop move waits, as behind a spent budget
    h.exchange.set_prices({"BTCUSDT": 96_900.0, ETH: round(levels[0] * 1.004, 1)})
    await h.settle()
    assert gate.waiting
    assert "main:BTCUSDT:Buy" not in h.manager.monitors, h.alerts
    assert not [o for o in h.open_orders() if o.symbol == "BTCUSDT"]
    gate.opened.set()
    await h.settle()
    assert h.manager.idle("main")
    assert h.manager.monitors["main:ETHUSDT:Buy"].breakeven
    await h.close()


async def test_a_large_commit_frees_each_symbol_once_its_own_answers_are_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A commit of many symbols (a restart with take-profits of a thousand positions to place) is
    committed symbol by symbol: a symbol whose answers are in is decided again at its next fill,
    while another symbol of the same commit still waits for the budget. Sent together, every symbol
    of the commit waited for the last answer: at 1000 positions, minutes of fills left undecided."""
    monkeypatch.setattr(manager_module, "CHUNK_ITEMS", 1)  # two positions stand for a thousand
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    levels = await open_eth(h)
    await h.settle()
    await h.stop()
    await h.venue.close()
    # While the engine is down, both positions lose their last take-profit.
    for order in h.exchange.open_orders("main"):
        if (parsed := parse_link_id(order.link_id)) is not None and parsed.slot == "tp4":
            h.exchange.cancel("main", CancelRequest(order.symbol, order_id=order.order_id))
    again = h._again(h.store.crash_copy())
    gate = Gate(again, "BTCUSDT", creates=True)  # BTC's new take-profit waits, as behind a spent budget
    again.task = asyncio.create_task(again.manager.run())
    await again.settle()
    assert gate.waiting and not again.manager.ready  # start-up's commit: both TP4s, BTC's held
    assert any(parsed_slot(o.link_id) == "tp4" for o in again.open_orders() if o.symbol == ETH)
    # ETH's TP1 fills while BTC's take-profit of the same commit still waits: decided at once.
    again.exchange.set_prices({ETH: round(levels[0] * 1.004, 1)})
    await again.settle()
    assert gate.waiting and again.manager.monitors["main:ETHUSDT:Buy"].breakeven
    gate.opened.set()
    await again.settle()
    assert again.manager.ready and again.manager.idle("main")
    assert any(parsed_slot(o.link_id) == "tp4" for o in again.open_orders() if o.symbol == "BTCUSDT")
    await again.close()


def parsed_slot(link_id: str) -> str | None:
    parsed = parse_link_id(link_id)
    return None if parsed is None else parsed.slot


class Requests:
    """Counts, at the moment of each order request, how many of a push's events the engine's
    observers had been handed (what it had judged of the push by then)."""

    def __init__(self, harness: Harness) -> None:
        self.judged: list[object] = []
        self.at: list[int] = []
        harness.manager.add_observer(self._judge)
        venue = harness.venue
        for name in ("place", "place_batch", "amend", "amend_batch", "cancel", "cancel_batch"):
            setattr(venue, name, self._counted(getattr(venue, name)))

    def _judge(self, _account: str, event: object) -> None:
        self.judged.append(event)

    def _counted(self, call: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        async def counted(request: Any) -> Any:
            self.at.append(len(self.judged))
            return await call(request)

        return counted


async def test_a_pushs_decisions_start_on_their_own_prices_before_the_others_are_noted() -> None:
    """A push of a thousand tickers around a fill: the fill's decision starts once its own symbol's
    price is noted; the other 300 prices are noted as the push is judged, while the decision waits
    for the disk and the venue, not before it starts."""
    h, push, prices = await tp1_push_and_prices(Harness(), 300)
    noted: list[str] = []
    at_decision: list[int] = []
    note, decide_now = h.manager._note_price, h.manager._decide_now

    def counted_note(ticker: Ticker) -> bool:
        noted.append(ticker.symbol)
        return note(ticker)

    async def counted_decide(account: str, events: Sequence[Execution | Order]) -> None:
        at_decision.append(len(noted))
        await decide_now(account, events)

    h.manager._note_price = counted_note  # type: ignore[method-assign]
    h.manager._decide_now = counted_decide  # type: ignore[method-assign]
    await h.manager.dispatch_many("main", prices + push)
    assert at_decision and at_decision[0] == sum(1 for e in push if isinstance(e, Ticker))
    assert noted.count(PROBE_SYMBOL) == len(prices)  # every price of the push noted all the same
    assert h.manager.tickers[PROBE_SYMBOL] is prices[-1]
    await h.close()


async def test_a_pushs_fills_are_decided_before_its_prices_are_judged() -> None:
    """At a thousand symbols a push is a thousand tickers around a few fills. The fills' decisions
    start at once, on the push's prices, and their requests go out while the rest of the push is
    judged. Before, every ticker of the push was judged first (each retiers its monitors and feeds
    the dashboard: 40 ms at a thousand symbols) and a TP1 fill's stop move waited for all of it."""
    h, push, prices = await tp1_push_and_prices(Harness(), 300)
    requests = Requests(h)
    await h.manager.dispatch_many("main", prices + push)
    assert requests.at, "the TP1 fill sent nothing"
    assert requests.at[0] < len(prices)  # before the push was judged to its end
    assert {id(e) for e in prices + push} <= {id(e) for e in requests.judged}  # and all of it judged
    assert h.manager.monitors["main:BTCUSDT:Buy"].breakeven
    await h.close()


async def tp1_push_and_prices(h: Harness, count: int) -> tuple[Harness, list[VenueEvent], list[Ticker]]:
    """``h`` started with a conservative BTC long, the stream push that carries its TP1 fill (held
    back, not handled) and ``count`` earlier tickers of another symbol: a push at a thousand symbols."""
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    await h.settle()
    push = await held_push(h, lambda: h.exchange.set_price(SYMBOL, 101_100.0))
    return h, push, earlier_prices(h, count)


async def held_push(h: Harness, move: Callable[[], None]) -> list[VenueEvent]:
    """Make the price ``move`` and return the stream push with the TP1 fill it caused, held back
    (not handled by the manager)."""
    held: list[list[VenueEvent]] = []

    async def hold(_account: str, events: Sequence[VenueEvent]) -> None:
        held.append(list(events))

    h.manager.dispatch_many = hold  # type: ignore[method-assign]
    move()
    await h.settle(0.5)
    del h.manager.dispatch_many  # the manager's own again
    return next(p for p in held if any(isinstance(e, Execution) and _slot(e) == "tp1" for e in p))


def earlier_prices(h: Harness, count: int) -> list[Ticker]:
    """``count`` tickers of another symbol, a little older than now: the rest of a big push."""
    now = h.clock.now()
    return [Ticker(PROBE_SYMBOL, 150.0, 150.0, 149.9, 150.1, now - 1.0 + i / 1000) for i in range(count)]


def _slot(execution: Execution) -> str | None:
    return purpose_of(execution.link_id) if execution.link_id else None


async def btc_and_eth(store: MemoryStore) -> tuple[Harness, tuple[float, ...]]:
    """A started harness on ``store`` with a conservative BTC long and an ETH long (its TP levels)."""
    h = Harness(store=store)
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    levels = await open_eth(h)
    await h.settle()
    return h, levels


class SlowDisk(MemoryStore):
    """A durable write takes a few turns of the loop, as a write and an fsync off the loop do;
    records how many durable changes were under way at once (in one write or in several)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = 0
        self.most_at_once = 0
        self.batches: list[list[str]] = []  # the keys of each durable write

    async def write(self, writes: Sequence[Write]) -> None:
        if any(map(durable, writes)):
            self.batches.append([w.key for w in writes])
        await self._disk(sum(map(durable, writes)))
        return await super().write(writes)

    async def _disk(self, changes: int) -> None:
        if not changes:
            return
        self.writing += changes
        self.most_at_once = max(self.most_at_once, self.writing)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            self.writing -= changes


async def test_a_rounds_decisions_are_made_durable_together() -> None:
    """Two positions' TP1 fills in one tick are one round: both decisions go to the store in one
    write, so they are durable after one commit and one fsync. One after the other, a round of a
    dozen fills made a dozen commits in turn, and the last fill's stop waited for all of them; as
    a task each, the saves that came after the first commit had started waited for a second."""
    store = SlowDisk()
    h, levels = await btc_and_eth(store)
    store.most_at_once = 0
    store.batches.clear()
    h.exchange.set_prices({SYMBOL: 101_100.0, ETH: round(levels[0] * 1.004, 1)})
    await h.settle()
    assert h.manager.monitors["main:BTCUSDT:Buy"].breakeven
    assert h.manager.monitors["main:ETHUSDT:Buy"].breakeven
    assert store.most_at_once >= 2
    assert {"monitor:main:BTCUSDT:Buy", "monitor:main:ETHUSDT:Buy"} <= set(store.batches[0])


async def test_a_late_price_does_not_replace_a_newer_one() -> None:
    """Pushes are judged a slice at a time, so a later push's prices may be noted before an earlier
    push's last ones: the newer price stays (the stops and the snapshot go by it)."""
    h = Harness()
    await h.start()
    now = h.clock.now()
    newer = Ticker(PROBE_SYMBOL, 151.0, 151.0, 150.9, 151.1, now)
    late = Ticker(PROBE_SYMBOL, 149.0, 149.0, 148.9, 149.1, now - 0.5)
    await h.manager.dispatch_many("main", [newer])
    await h.manager.dispatch_many("main", [late])
    assert h.manager.tickers[PROBE_SYMBOL] is newer
    assert h.manager.marks[PROBE_SYMBOL] == 151.0
    await h.close()


async def test_a_price_both_streams_bring_is_judged_and_handed_on_once_and_a_late_one_not_at_all() -> None:
    """Each account's stream brings every price: the second copy is no news (judged and handed on
    twice, a thousand symbols' tickers were half the engine's work); a late price is not handed on
    either (the dashboard would have shown it over the newer one)."""
    h = Harness()
    await h.start()
    seen: list[Ticker] = []
    h.manager.add_observer(lambda _account, event: seen.append(event) if isinstance(event, Ticker) else None)
    judged: list[Ticker] = []
    judge = h.manager._judge_price
    h.manager._judge_price = lambda ticker: judged.append(ticker) or judge(ticker)  # type: ignore[method-assign,func-returns-value]
    now = h.clock.now() + 1.0
    first = Ticker(PROBE_SYMBOL, 151.0, 151.0, 150.9, 151.1, now)
    await h.manager.dispatch_many("main", [first])
    await h.manager.dispatch_many("main", [replace(first)])  # the same price, from the other stream
    await h.manager.dispatch_many("main", [replace(first, ts=now - 0.5, last=149.0, mark=149.0)])
    moved = replace(first, last=151.5, mark=151.5)  # a new price at the same stamp is news
    await h.manager.dispatch_many("main", [moved])
    assert seen == [first, moved] and judged == [first, moved]
    assert h.manager.tickers[PROBE_SYMBOL] is moved
    await h.close()


class GatedDisk(MemoryStore):
    """Durable writes wait until the disk is opened (a slow fsync); records what began writing."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()
        self.opened.set()
        self.began: list[str] = []

    async def write(self, writes: Sequence[Write]) -> None:
        if any(map(durable, writes)):
            self.began += [w.key for w in writes if durable(w)]
            await self.opened.wait()
        return await super().write(writes)


async def test_a_fill_is_decided_while_another_waits_for_the_disk() -> None:
    """One position's TP1 decision waits for its durable write; meanwhile another position's TP1
    fill is decided and its write begins, to share the disk's next commit. Before, the account's
    lock was held through the write, so every other fill (and every order update) queued behind
    each decision's fsync in turn."""
    store = GatedDisk()
    h, levels = await btc_and_eth(store)
    store.opened.clear()  # the disk stalls from here
    store.began.clear()
    await h.price(101_100.0)  # BTC's TP1: its decision waits for the disk
    assert any("BTCUSDT" in key for key in store.began)
    h.exchange.set_price(ETH, round(levels[0] * 1.004, 1))  # ETH's TP1, BTC still on disk
    await h.settle()
    assert any("ETHUSDT" in key for key in store.began)
    store.opened.set()
    await h.settle()
    assert h.manager.monitors["main:BTCUSDT:Buy"].breakeven
    assert h.manager.monitors["main:ETHUSDT:Buy"].breakeven
    await h.close()


async def test_a_closed_trade_and_its_monitors_removal_are_written_together() -> None:
    """A stop-out records the trade and removes the monitor, both durable before the cancels go
    out: they are written at once (one commit of the store), not one fsync after the other."""
    store = SlowDisk()
    h = Harness(store=store)
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    await h.settle()
    store.most_at_once = 0
    await h.price(96_900.0)  # the stop fills: the trade closes
    assert "main:BTCUSDT:Buy" not in h.manager.monitors
    assert store.most_at_once >= 2
    await h.close()


async def test_a_pushs_judging_steps_aside_while_its_fill_is_written_ahead() -> None:
    """While a fill's decision waits for its durable write, its push is not judged: bulk work on
    the loop held the interpreter's lock then, and the write's worker thread waited a switch
    interval at each of its hand-overs (50 ms p50 at a thousand positions, for a write of a
    millisecond). The push is judged once the decision's first request is out."""
    h, push, prices = await tp1_push_and_prices(Harness(store=SlowDisk()), 600)
    requests = Requests(h)
    await h.manager.dispatch_many("main", push + prices)
    assert requests.at, "the TP1 fill sent nothing"
    assert requests.at[0] == 0  # nothing of the push judged yet: the loop was the decision's
    assert {id(e) for e in prices + push} <= {id(e) for e in requests.judged}
    assert not h.manager.precedence.pressing
    await h.close()


async def test_a_fill_decided_in_a_later_round_of_its_push_goes_first_too() -> None:
    """A push is decided in rounds of one event per symbol. ETH's order update comes first here, so
    its fill is decided in the second round, after BTC's stop move went out: that fill's write and
    request still go before the push's judging (each round goes first on its own). With one claim
    for the whole push, BTC's request ended it, and the push was judged through ETH's write."""
    h, levels = await btc_and_eth(SlowDisk())
    push = await held_push(
        h, lambda: h.exchange.set_prices({SYMBOL: 101_100.0, ETH: round(levels[0] * 1.004, 1)})
    )
    eth_update = next(e for e in push if isinstance(e, Order) and e.symbol == ETH)
    push.remove(eth_update)
    requests = Requests(h)
    await h.manager.dispatch_many("main", [eth_update, *push, *earlier_prices(h, 600)])
    assert len(requests.at) >= 2  # BTC's stop move, then ETH's
    assert requests.at == [0] * len(requests.at)
    assert h.manager.monitors["main:BTCUSDT:Buy"].breakeven
    assert h.manager.monitors["main:ETHUSDT:Buy"].breakeven
    assert not h.manager.precedence.pressing
    await h.close()


async def test_a_push_cancelled_while_handled_leaves_nothing_urgent_and_its_fill_decided() -> None:
    """A stream's restart cancels a push being handled. Its decision, started, is decided to the
    end, and every claim to go first ends with it: a claim left behind would make every turn of
    bulk work wait from then on."""
    h, push, prices = await tp1_push_and_prices(Harness(), 10)
    handling = asyncio.ensure_future(h.manager.dispatch_many("main", push + prices))
    await asyncio.sleep(0)  # the push is taken: its decision is on its way
    assert h.manager.precedence.pressing
    handling.cancel()
    await asyncio.gather(handling, return_exceptions=True)
    assert handling.cancelled()
    await h.settle()
    assert not h.manager.precedence.pressing
    assert h.manager.monitors["main:BTCUSDT:Buy"].breakeven
    await h.close()


async def test_a_reconciliation_decides_without_the_lock_and_again_under_it_only_after_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pure reconciliation takes tens of ms at a thousand positions: made under the account's
    lock, a fill arriving meanwhile was decided behind it (200 ms at the slowest). It is made before
    the lock; under it again only when a symbol changed in between, which it would not leave alone."""
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=MARGIN))
    await h.settle()
    decided = manager_module.reconcile_account
    locked: list[bool] = []
    change_in_between = False

    def watched(**kwargs: Any) -> Any:
        locked.append(h.manager.lock("main").locked())
        if change_in_between and len(locked) == 1:
            h.manager._touch("main", {SYMBOL})  # a fill decided while the pass was deciding
        return decided(**kwargs)

    monkeypatch.setattr(manager_module, "reconcile_account", watched)
    await h.manager.reconcile("main")
    assert locked == [False]  # decided once, before the lock
    locked.clear()
    change_in_between = True
    await h.manager.reconcile("main")
    assert locked == [False, True]  # and again under the lock, leaving the changed symbol alone
    await h.close()


async def test_a_fill_that_lands_while_a_reconciliations_reads_are_out_is_decided_before_the_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A check's or reconciliation's decision is one step of 8-35 ms at a thousand positions. When its
    reads answer just as a push with a fill lands, the fill's stop move goes out first: before, the
    pass's step ran first and the fill waited for it (a 128 ms reaction in a calm-market trace)."""
    h, push, _prices = await tp1_push_and_prices(Harness(), 0)
    log = RequestLog(h.venue)
    orders_sent_at_decision: list[int] = []
    decided = manager_module.reconcile_account

    def watched(**kwargs: Any) -> Any:
        orders_sent_at_decision.append(sum(map(len, RequestLog.orders(log.sent).values())))
        return decided(**kwargs)

    monkeypatch.setattr(manager_module, "reconcile_account", watched)
    answered = asyncio.Event()
    read = h.manager._read

    async def slow_read(account: str, reading: Awaitable[Any]) -> Any:
        result = await read(account, reading)
        await answered.wait()  # the answer lands with the push
        return result

    monkeypatch.setattr(h.manager, "_read", slow_read)
    passing = asyncio.ensure_future(h.manager.reconcile("main"))
    await h.settle(0.5)
    assert not orders_sent_at_decision  # the pass's reads are out
    answered.set()
    handling = asyncio.ensure_future(h.manager.dispatch_many("main", push))
    await asyncio.gather(passing, handling)
    assert orders_sent_at_decision[0] > 0  # the stop move went out before the pass decided anything
    assert h.manager.monitors["main:BTCUSDT:Buy"].breakeven
    await h.close()
