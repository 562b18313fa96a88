"""The batched order path (``api_batching``): actions of many monitors share the batch endpoints, each
monitor's actions keep their order, failed items go again alone, a refusing account falls back to single
calls for good, and the rate budget is planned stop-losses first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from tpsl_harness import EPOCH, Harness, RequestLog, new_exchange, open_longs, past_tp1

from engine.core.clock import VirtualClock
from engine.core.models import AmendRequest, CancelRequest, OrderAck, OrderRequest, OrderType, Side
from engine.sim import ratelimit
from engine.sim.exchange import SimExchange
from engine.sim.instruments import synthetic_symbols
from engine.sim.venue import SimVenue
from engine.trading.manager import order_room
from engine.trading.orders import (
    Action,
    ActionResult,
    AmendOrder,
    CancelOrder,
    OrderSender,
    PlaceOrder,
    batch_chunks,
    batch_rounds,
    execute_actions,
    plan_calls,
    refuses_batch,
)
from engine.trading.params import TradingParams
from engine.venue.base import BatchResult, Endpoint
from engine.venue.budget import CallBudget, CallKind, IpWindow
from engine.venue.errors import (
    AuthError,
    OrderNotFound,
    QtyTooSmall,
    RateLimited,
    TransientError,
    VenueError,
    error_from_code,
)
from engine.venue.gateway import VenueGateway
from engine.venue.priority import Priority, current_priority
from engine.venue.withdrawal import Withdrawn

T = TypeVar("T")
ETH = "ETHUSDT"
BATCHES = (Endpoint.CREATE_BATCH, Endpoint.AMEND_BATCH, Endpoint.CANCEL_BATCH)


@dataclass
class Request:
    """One request the venue was sent: what it carried, when, and at which budget priority."""

    endpoint: str
    links: tuple[str, ...]
    priority: Priority
    sent_at: float
    answered_at: float | None = None


class RecordingVenue(SimVenue):
    """A SimVenue that also logs each order request (items, times, priority) and the order in which
    requests were sent and answered."""

    def __init__(self, exchange: SimExchange) -> None:
        super().__init__(exchange, "main")
        self.log: list[Request] = []
        self.events: list[tuple[str, str, tuple[str, ...]]] = []

    async def _record(self, endpoint: str, links: Sequence[str], call: Awaitable[T]) -> T:
        entry = Request(endpoint, tuple(links), current_priority(), self.exchange.clock.now())
        self.log.append(entry)
        self.events.append(("sent", endpoint, entry.links))
        try:
            return await call
        finally:
            entry.answered_at = self.exchange.clock.now()
            self.events.append(("answered", endpoint, entry.links))

    async def place(self, request: OrderRequest) -> OrderAck:
        return await self._record(Endpoint.CREATE, [request.link_id], super().place(request))

    async def amend(self, request: AmendRequest) -> OrderAck:
        return await self._record(Endpoint.AMEND, [request.link_id], super().amend(request))

    async def cancel(self, request: CancelRequest) -> OrderAck:
        return await self._record(Endpoint.CANCEL, [request.link_id], super().cancel(request))

    async def place_batch(self, requests: Sequence[OrderRequest]) -> list[BatchResult]:
        links = [r.link_id for r in requests]
        return await self._record(Endpoint.CREATE_BATCH, links, super().place_batch(requests))

    async def amend_batch(self, requests: Sequence[AmendRequest]) -> list[BatchResult]:
        links = [r.link_id for r in requests]
        return await self._record(Endpoint.AMEND_BATCH, links, super().amend_batch(requests))

    async def cancel_batch(self, requests: Sequence[CancelRequest]) -> list[BatchResult]:
        links = [r.link_id for r in requests]
        return await self._record(Endpoint.CANCEL_BATCH, links, super().cancel_batch(requests))

    def sent(self, endpoint: str) -> list[Request]:
        return [r for r in self.log if r.endpoint == endpoint]


def make_venue(latency: str = "none") -> RecordingVenue:
    clock = VirtualClock(start=10_000.0)
    exchange = SimExchange(
        clock=clock,
        seed=7,
        symbols=["BTCUSDT", ETH],
        balances={"main": 1_000_000.0},
        slippage_bps=0.0,
        latency=latency,
    )
    exchange.set_price(ETH, 3000.0)
    return RecordingVenue(exchange)


def key(n: int) -> str:
    return f"main:M{n:02d}:Buy"


def limit(link: str, price: float = 2000.0, qty: float = 0.1) -> OrderRequest:
    return OrderRequest(ETH, Side.BUY, OrderType.LIMIT, qty, price=price, link_id=link)


def place(n: int, slot: str, price: float = 2000.0, qty: float = 0.1) -> PlaceOrder:
    return PlaceOrder(key(n), slot, limit(f"m{n}-{slot}", price, qty))


def resting(venue: RecordingVenue, link: str, price: float = 2000.0) -> str:
    """An order already on the book (placed on the exchange directly: no request is counted)."""
    return venue.exchange.place("main", limit(link, price)).link_id


def amend(venue: RecordingVenue, n: int, slot: str = "tp1") -> AmendOrder:
    link = resting(venue, f"m{n}-{slot}")
    return AmendOrder(key(n), slot, AmendRequest(ETH, link_id=link, price=2500.0), (0.1, 2000.0, None))


def cancel(venue: RecordingVenue, n: int, slot: str = "tp1") -> CancelOrder:
    link = resting(venue, f"m{n}-old-{slot}")
    return CancelOrder(key(n), slot, CancelRequest(ETH, link_id=link))


async def send(venue: RecordingVenue, sender: OrderSender, actions: Sequence[Action]) -> list[ActionResult]:
    clock = venue.exchange.clock
    assert isinstance(clock, VirtualClock)
    results = await clock.drive_while(sender.send(actions))
    assert [r.action for r in results] == list(actions)  # one result per action, in the order given
    return results


def batching(venue: RecordingVenue, room: Callable[[Any], tuple[int, int, int]] | None = None) -> OrderSender:
    return OrderSender(venue, venue.exchange.clock, batching=True, room=room)


def test_batch_rounds_split_each_monitors_actions_into_runs_of_one_kind() -> None:
    venue = make_venue()
    a_cancel, a_place, a_amend = cancel(venue, 1), place(1, "tp1"), amend(venue, 1, "tp2")
    b_place, b_place2, c_cancel = place(2, "sl"), place(2, "tp1"), cancel(venue, 3)
    actions: list[Action] = [a_cancel, b_place, a_place, c_cancel, b_place2, a_amend]
    # A: [cancel] [place] [amend]; B: [place, place]; C: [cancel] -- round r is run r of each
    assert batch_rounds(actions) == [[0, 1, 4, 3], [2], [5]]
    assert batch_rounds([]) == []


def test_a_large_commits_symbols_are_packed_so_each_kind_fills_one_batch_call_per_chunk() -> None:
    """30 symbols with a stop move each: chunks of 20 and 10 (two amend-batch calls). With two
    cancels each as well, the cancels fill a chunk first (10 symbols); a symbol with more than a
    batch of one kind is a chunk of its own; one symbol, or none, is one chunk or none."""
    venue = make_venue()
    moves = [[amend(venue, n, "sl")] for n in range(30)]
    assert [len(chunk) for chunk in batch_chunks(moves)] == [20, 10]
    assert [i for chunk in batch_chunks(moves) for i in chunk] == list(range(30))
    with_cancels = [
        [amend(venue, n, "tp2"), cancel(venue, n, "e2"), cancel(venue, n, "e3")] for n in range(30)
    ]
    assert [len(chunk) for chunk in batch_chunks(with_cancels)] == [10, 10, 10]
    big = [place(99, "tp1")] * 21
    assert batch_chunks([[place(1, "tp1")], big, [place(2, "tp1")]]) == [[0], [1], [2]]
    assert batch_chunks(moves[:1]) == [[0]]
    assert batch_chunks([]) == []


def test_calls_holding_a_stop_loss_or_a_close_go_first() -> None:
    venue = make_venue()
    tps = [place(n, "tp1") for n in range(21)]
    actions: list[Action] = [*tps, place(21, "sl"), cancel(venue, 22, "cl")]
    calls = plan_calls(actions, range(len(actions)))
    # creates: the stop and 19 TPs, then the 2 TPs left; the close's cancel goes between them
    assert [[actions[i].slot for i in call.items][:2] for call in calls] == [
        ["sl", "tp1"],
        ["cl"],
        ["tp1", "tp1"],
    ]
    assert [(len(call.items), call.single) for call in calls] == [(20, False), (1, True), (2, False)]


async def test_thirty_amends_of_thirty_monitors_go_in_two_amend_batch_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An account whose order budget holds the thirty at once (Bybit raises it with the VIP level):
    # the point here is the grouping, not the rate limit.
    monkeypatch.setattr(ratelimit, "ORDER_BUDGET", 50)
    venue = make_venue()
    actions = [amend(venue, n) for n in range(30)]
    results = await send(venue, batching(venue), actions)
    assert venue.calls.counts == {Endpoint.AMEND_BATCH: 2}
    assert [len(r.links) for r in venue.log] == [20, 10]
    for action, result in zip(actions, results, strict=True):  # each answer went to its own monitor
        assert result.ok and result.ack is not None, result
        assert result.ack.link_id == action.request.link_id
    assert {o.price for o in venue.exchange.open_orders("main", ETH)} == {2500.0}


@pytest.mark.parametrize("batching", [True, False], ids=["optimized", "baseline"])
async def test_thirty_tp1_fills_in_one_push_move_the_stops_in_two_amend_batch_calls(
    monkeypatch: pytest.MonkeyPatch, batching: bool
) -> None:
    """Issue 13, through the running manager: 30 positions' TP1s fill in one tick (one push); each
    fill's answer is one amend of its stop (resized and moved to breakeven; the entries stay, so
    nothing else is sent). Optimized: two amend-batch calls of 20 and 10; baseline: 30 amends."""
    monkeypatch.setattr(ratelimit, "ORDER_BUDGET", 50)  # the grouping is the point, not the rate limit
    clock = VirtualClock(start=EPOCH)
    symbols = synthetic_symbols(30)
    h = Harness(
        TradingParams(cancel_entries_after_tp1=False),
        exchange=new_exchange(clock, balance=1_000_000.0, synthetic=len(symbols)),
        clock=clock,
    )
    await h.manager.set_batching(batching)
    await h.start()
    # Driven: thirty openings at one simulated instant meet the venue's 10 orders/s, and a refused
    # request waits for the reset on this clock (awaited undriven, it would wait forever).
    await clock.drive_while(open_longs(h.manager, h.exchange, symbols, margin=1000.0))
    await h.settle(60.0)  # every opening's orders are placed
    assert all(m.orders["sl"].order_id and not m.breakeven for m in h.manager.monitors.values())
    log = RequestLog(h.venue)
    h.exchange.set_prices(past_tp1(h.manager, symbols))
    await h.settle(30.0)
    assert all(m.tps_filled() == 1 and m.breakeven for m in h.manager.monitors.values()), h.alerts
    expected = {Endpoint.AMEND_BATCH: [20, 10]} if batching else {Endpoint.AMEND: [1] * 30}
    assert RequestLog.orders(log.sent) == expected
    await h.close()


async def test_one_monitors_cancel_is_answered_before_its_place_is_sent() -> None:
    venue = make_venue(latency="realistic")
    # Two monitors replace a TP (cancel, then place); two others place their stops.
    a_cancel, b_cancel = cancel(venue, 1), cancel(venue, 2)
    actions: list[Action] = [
        place(3, "sl"),
        a_cancel,
        place(1, "tp1"),
        place(4, "sl"),
        b_cancel,
        place(2, "tp1"),
    ]
    results = await send(venue, batching(venue), actions)
    assert all(r.ok for r in results), results
    assert [(r.endpoint, r.links) for r in venue.log] == [
        (Endpoint.CREATE_BATCH, ("m3-sl", "m4-sl")),  # the stops first
        (Endpoint.CANCEL_BATCH, ("m1-old-tp1", "m2-old-tp1")),
        (Endpoint.CREATE_BATCH, ("m1-tp1", "m2-tp1")),
    ]
    cancels_answered = venue.events.index(("answered", Endpoint.CANCEL_BATCH, venue.log[1].links))
    places_sent = venue.events.index(("sent", Endpoint.CREATE_BATCH, venue.log[2].links))
    assert cancels_answered < places_sent
    assert [r.priority for r in venue.log] == [Priority.PROTECT, Priority.TRADE, Priority.TRADE]


async def test_a_batch_item_refused_for_the_rate_limit_is_sent_again_alone() -> None:
    venue = make_venue()
    # Seven of the create-batch endpoint's ten units this second are spent: of four items, Bybit
    # admits three and fails the fourth on its own with 10006 inside a retCode-0 reply.
    venue.exchange.admit_batch("main", Endpoint.CREATE_BATCH, 7)
    actions = [place(n, "tp1", price=2000.0 + n) for n in range(4)]
    results = await send(venue, batching(venue), actions)
    assert all(r.ok and r.ack is not None and r.ack.order_id for r in results), results
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 1, Endpoint.CREATE: 1}
    assert [(r.endpoint, r.links) for r in venue.log][1:] == [(Endpoint.CREATE, ("m3-tp1",))]
    links = sorted(o.link_id for o in venue.exchange.open_orders("main", ETH))
    assert links == ["m0-tp1", "m1-tp1", "m2-tp1", "m3-tp1"]  # each order once


async def test_an_item_refused_for_what_it_asks_is_answered_at_once_not_retried() -> None:
    venue = make_venue()
    duplicate = resting(venue, "m0-tp1")  # an earlier attempt landed: a refused duplicate is success
    actions = [place(0, "tp1"), place(1, "tp1", qty=0.001), place(2, "tp1")]
    results = await send(venue, batching(venue), actions)
    assert [r.ok for r in results] == [True, False, True]
    assert results[0].ack == OrderAck(order_id="", link_id=duplicate)
    assert isinstance(results[1].error, QtyTooSmall)
    # too small stays too small: sending it again alone would only delay what the decision does next
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 1}


async def test_an_action_alone_of_its_kind_in_a_round_goes_through_the_single_endpoint_once() -> None:
    venue = make_venue()
    lost = AmendOrder(key(2), "tp1", AmendRequest(ETH, link_id="gone"), (0.1, 2000.0, None))
    results = await send(venue, batching(venue), [place(0, "sl"), place(1, "tp1"), lost])
    assert [r.ok for r in results] == [True, True, False]
    assert isinstance(results[2].error, OrderNotFound)
    # one request either way; its answer is its own, so a refusal is final, not retried
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 1, Endpoint.AMEND: 1}


@pytest.mark.parametrize(
    "refusal",
    [
        error_from_code(10020, "your account is not a unified margin account, please update your account"),
        VenueError("HTTP 404: Http status code is not 200. (ErrCode: 404)"),
        error_from_code(10017, "route not found"),
    ],
    ids=["10020-not-unified", "http-404", "10017-route"],
)
async def test_an_account_refused_batch_endpoints_falls_back_to_single_calls_and_remembers(
    refusal: VenueError, caplog: pytest.LogCaptureFixture
) -> None:
    venue = make_venue()
    venue.exchange.inject_errors("main", 10, refusal, endpoints=BATCHES)
    sender = batching(venue)
    places = [place(n, "tp1", price=2000.0 + n) for n in range(3)]
    with caplog.at_level(logging.WARNING, logger="opconsole.trading"):
        results = await send(venue, sender, places)
        assert all(r.ok for r in results), results
        assert sender.batch_refused
        assert venue.calls.counts == {Endpoint.CREATE_BATCH: 1, Endpoint.CREATE: 3}
        amends = [
            AmendOrder(key(n), "tp1", AmendRequest(ETH, link_id=f"m{n}-tp1", qty=0.2), (0.1, 2000.0, None))
            for n in range(3)
        ]
        results = await send(venue, sender, amends)
    assert all(r.ok for r in results), results
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 1, Endpoint.CREATE: 3, Endpoint.AMEND: 3}
    warnings = [r for r in caplog.records if r.name == "opconsole.trading" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings


async def test_a_transient_batch_error_sends_those_items_singly_this_time_only() -> None:
    venue = make_venue()
    venue.exchange.inject_errors("main", 1, TransientError("HTTP 502: bad gateway"), endpoints=BATCHES)
    sender = batching(venue)
    results = await send(venue, sender, [place(n, "tp1", price=2000.0 + n) for n in range(3)])
    assert all(r.ok for r in results), results
    assert not sender.batch_refused
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 1, Endpoint.CREATE: 3}
    await send(venue, sender, [place(n, "tp2", price=2100.0 + n) for n in range(3)])
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 2, Endpoint.CREATE: 3}


def test_only_answers_that_refuse_the_endpoint_count_as_batch_refusals() -> None:
    assert refuses_batch(AuthError("Permission denied, please check your API key permissions.", 10005))
    assert refuses_batch(error_from_code(10001, "category only support option"))
    for other in (
        error_from_code(10001, "params error: at most 20 orders per batch"),
        error_from_code(10006, "Too many visits!"),
        TransientError("HTTP 502: bad gateway"),
        error_from_code(10016, "internal server error"),
        VenueError("HTTP 400: bad request"),
    ):
        assert not refuses_batch(other), other


async def test_a_whole_batch_refused_for_the_rate_limit_waits_and_resends_stop_losses_first() -> None:
    venue = make_venue()
    clock = venue.exchange.clock
    reset_at = clock.now() + 0.6
    venue.exchange.inject_errors(
        "main", 1, RateLimited("Too many visits!", 10006, reset_at=reset_at), endpoints=BATCHES
    )
    c1, c2 = cancel(venue, 5), cancel(venue, 6)
    actions: list[Action] = [place(1, "tp1"), place(2, "tp1"), place(3, "sl"), place(4, "sl"), c1, c2]
    results = await send(venue, batching(venue), actions)
    assert all(r.ok for r in results), results  # a 10006 is not an answer
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 2, Endpoint.CANCEL_BATCH: 1}  # no single calls
    refused, cancels, again = venue.log
    assert refused.links == again.links == ("m3-sl", "m4-sl", "m1-tp1", "m2-tp1")
    assert again.sent_at >= reset_at  # it waited on the clock for the venue's reset
    # the cancels are another verb's budget: they went with the refused call, not after the reset
    assert cancels.endpoint == Endpoint.CANCEL_BATCH and cancels.sent_at < reset_at


class Room:
    """A rate budget of ``limit`` order units per rolling second, spent by the items sent."""

    def __init__(self, venue: RecordingVenue, limit: int) -> None:
        self.venue = venue
        self.limit = limit

    def left_at(self, now: float, before: int | None = None) -> int:
        sent = self.venue.log[:before]
        return max(0, self.limit - sum(len(r.links) for r in sent if r.sent_at > now - 1.0))

    def __call__(self, kind: object) -> tuple[int, int, int]:
        return self.left_at(self.venue.exchange.clock.now()), 0, 0  # room in the batch endpoint only


async def test_a_round_is_planned_within_the_budgets_room_stop_losses_first() -> None:
    venue = make_venue()
    room = Room(venue, 3)
    actions = [place(n, "tp1", price=2000.0 + n) for n in range(8)] + [place(8, "sl"), place(9, "sl")]
    results = await send(venue, batching(venue, room), actions)
    assert all(r.ok for r in results), results
    first = venue.log[0]
    assert first.endpoint == Endpoint.CREATE_BATCH and first.priority == Priority.PROTECT
    assert first.links[:2] == ("m8-sl", "m9-sl") and len(first.links) <= 3
    for n, request in enumerate(venue.log):  # never more than the room it had when sent
        assert len(request.links) <= room.left_at(request.sent_at, before=n), venue.log
    assert sum(len(r.links) for r in venue.log) == 10  # nothing sent to be refused


def budgeted_sender(reserve: int = 0) -> tuple[RecordingVenue, VirtualClock, OrderSender]:
    """A batching sender planning within the engine's own rate budget, on realistic latency."""
    venue = make_venue(latency="realistic")
    clock = venue.exchange.clock
    assert isinstance(clock, VirtualClock)
    gateway = VenueGateway(venue, CallBudget(clock, IpWindow(clock), protect_reserve=reserve))
    return venue, clock, OrderSender(gateway, clock, batching=True, room=order_room(gateway))


async def test_with_the_engines_budget_as_room_no_item_is_sent_to_be_refused() -> None:
    venue, clock, sender = budgeted_sender()
    tps = [place(n, "tp1", price=2000.0 + n) for n in range(25)]
    stops = [place(25 + n, "sl", price=1900.0 + n) for n in range(5)]
    results = await clock.drive_while(sender.send([*tps, *stops]))
    assert all(r.ok for r in results), results  # no 10006, in a batch item or whole
    # ten order units a second per endpoint: a batch of ten (the stops in it) and ten single
    # creates at once, then the last ten in a batch when the batch window has rolled
    assert venue.calls.counts == {Endpoint.CREATE_BATCH: 2, Endpoint.CREATE: 10}
    assert [len(r.links) for r in venue.log if r.endpoint == Endpoint.CREATE_BATCH] == [10, 10]
    assert set(venue.log[0].links) >= {s.request.link_id for s in stops}
    assert venue.log[0].priority == Priority.PROTECT
    first = venue.log[0].sent_at
    assert sum(1 for r in venue.log if r.sent_at == first) == 11  # twenty items in the first second


async def test_a_stops_amend_does_not_wait_behind_resizes_that_spent_the_batch_window() -> None:
    """Bybit limits amend and amend-batch on their own, 10 a second each. At 1000 positions the
    take-profits' batched resizes kept the amend budget spent, and a stop moved to breakeven waited
    a second behind them while the single amend endpoint was idle: the two were planned as one
    window. The stops now go at once, as single amends."""
    venue, clock, sender = budgeted_sender()
    resizes = asyncio.ensure_future(sender.send([amend(venue, n, "tp2") for n in range(10)]))
    await clock.drive(clock.now())  # the batch of ten resizes is on the wire
    assert [r.endpoint for r in venue.log] == [Endpoint.AMEND_BATCH]
    stops = [amend(venue, 10 + n, "sl") for n in range(2)]
    start = clock.now()
    results = await clock.drive_while(sender.send(stops))
    assert all(r.ok for r in results), results
    links = {s.request.link_id for s in stops}
    carried = [r for r in venue.log if links & set(r.links)]
    assert [(r.endpoint, r.sent_at) for r in carried] == [(Endpoint.AMEND, start)] * 2
    assert all(r.ok for r in await clock.drive_while(resizes))


async def test_calls_that_protect_nothing_are_planned_outside_the_protective_reserve() -> None:
    """The last units of each window are kept for stop-losses. A stop-out's cancels (they protect
    nothing) were planned on every unit left, so their batch queued a round trip for the reserve
    to roll out; they now fill what they may take and the rest goes by the single endpoint."""
    venue, clock, sender = budgeted_sender(reserve=2)
    gateway = sender.venue
    assert isinstance(gateway, VenueGateway)
    await gateway.budget.acquire(CallKind.CANCEL_BATCH, 4)  # six left, two of them reserved
    start = clock.now()
    results = await clock.drive_while(sender.send([cancel(venue, n) for n in range(6)]))
    assert all(r.ok for r in results), results
    assert sorted((r.endpoint, len(r.links)) for r in venue.log) == [
        (Endpoint.CANCEL, 1),
        (Endpoint.CANCEL, 1),
        (Endpoint.CANCEL_BATCH, 4),
    ]
    assert {r.sent_at for r in venue.log} == {start}  # all at once, none queued


async def test_a_superseded_send_waiting_for_room_is_withdrawn_at_once() -> None:
    """A take-profit resize that waits for room in the budget (polling it, not queued in it) held a
    new fill of its position for up to two seconds: superseding only withdrew requests queued in
    the budget. The poll now ends when the position is superseded, and its items come back
    withdrawn, unsent."""
    venue = make_venue()
    clock = venue.exchange.clock
    assert isinstance(clock, VirtualClock)
    sender = batching(venue, room=lambda kind: (0, 0, 0))  # never any room
    start = clock.now()
    sending = asyncio.ensure_future(sender.send([place(1, "tp1"), place(1, "tp2")]))
    await clock.drive(start + 0.01)  # the send polls for room
    assert not sending.done()
    sender.supersede({key(1)})  # a new fill of the position waits to be decided
    await clock.drive(clock.now())
    assert sending.done() and clock.now() == start + 0.01
    assert all(isinstance(r.error, Withdrawn) for r in sending.result())
    assert venue.log == []  # nothing sent


async def test_without_batching_one_request_per_action_as_execute_actions() -> None:
    def actions_on(venue: RecordingVenue) -> list[Action]:
        return [place(1, "sl"), amend(venue, 2), amend(venue, 3), cancel(venue, 4), place(5, "tp1")]

    baseline = make_venue()
    clock = baseline.exchange.clock
    assert isinstance(clock, VirtualClock)
    expected = await clock.drive_while(execute_actions(baseline, actions_on(baseline), clock))
    assert all(r.ok for r in expected), expected
    assert baseline.calls.counts == {Endpoint.CREATE: 2, Endpoint.AMEND: 2, Endpoint.CANCEL: 1}

    off = make_venue()
    results = await send(off, OrderSender(off, off.exchange.clock), actions_on(off))
    switched = make_venue()
    sender = batching(switched)
    sender.batching = False  # the api_batching toggle flipped live
    results_switched = await send(switched, sender, actions_on(switched))
    for venue, answers in ((off, results), (switched, results_switched)):
        assert venue.calls.counts == baseline.calls.counts
        assert [(r.endpoint, r.links) for r in venue.log] == [(r.endpoint, r.links) for r in baseline.log]
        assert [r.ok for r in answers] == [r.ok for r in expected]


async def test_stop_losses_never_poll_a_full_budget_for_room() -> None:
    """Other calls queued at the budget take every unit the moment it frees, so a poll for room
    finds none: stop-losses go at once (the budget serves them first) instead of after
    ``ROOM_WAIT_MAX_S``; the take-profits still wait for room."""
    venue = make_venue()
    clock = venue.exchange.clock
    start = clock.now()
    actions: list[Action] = [place(1, "sl"), place(2, "sl"), place(3, "tp1")]
    results = await send(venue, batching(venue, room=lambda kind: (0, 0, 0)), actions)
    assert all(r.ok for r in results), results
    sent = {link: r.sent_at for r in venue.log for link in r.links}
    assert sent["m1-sl"] == sent["m2-sl"] == start
    assert sent["m3-tp1"] > start


@pytest.mark.parametrize("batched", [True, False])
async def test_a_superseded_request_waiting_for_the_budget_is_withdrawn_unsent(batched: bool) -> None:
    """A new fill of a position waits for the answers to its orders in flight; at the venue's limit a
    take-profit's resize waited seconds in the budget, and the fill behind it. Superseding the
    position withdraws its requests that still wait and protect nothing: they come back Withdrawn,
    nothing is sent, and another position's request in the same queue still goes. A stop-loss's
    request is never withdrawn."""
    venue = make_venue()
    clock = venue.exchange.clock
    assert isinstance(clock, VirtualClock)
    budget = CallBudget(clock, IpWindow(clock))
    sender = OrderSender(VenueGateway(venue, budget), clock, batching=batched, room=None)
    # (a batch holding a stop-loss item is protective as a whole and waits little: never withdrawn)
    actions = [amend(venue, 0), amend(venue, 1), place(2, "sl", price=1900.0)]
    await budget.acquire(CallKind.AMEND, 10)  # both amend windows are spent for a second
    await budget.acquire(CallKind.AMEND_BATCH, 10)
    sending = asyncio.ensure_future(sender.send(actions))
    for _ in range(5):
        await asyncio.sleep(0)  # the requests queue in the budget
    assert not sending.done()
    assert all("m0-tp1" not in request.links for request in venue.log)
    sender.supersede({key(0)})
    results = await clock.drive_while(sending)
    assert isinstance(results[0].error, Withdrawn) and not results[0].ok
    assert results[1].ok and results[2].ok
    sent = {link for request in venue.log for link in request.links}
    assert "m0-tp1" not in sent and {"m1-tp1", "m2-sl"} <= sent


async def test_superseding_a_monitor_with_nothing_in_flight_marks_nothing() -> None:
    """The mark ends with the send it withdrew from: a monitor superseded while none of its actions
    was being sent (its symbol busy with other orders) still sends its next actions."""
    venue = make_venue()
    clock = venue.exchange.clock
    assert isinstance(clock, VirtualClock)
    budget = CallBudget(clock, IpWindow(clock))
    sender = OrderSender(VenueGateway(venue, budget), clock, batching=True, room=None)
    sender.supersede({key(0)})
    results = await send(venue, sender, [amend(venue, 0)])
    assert results[0].ok


@pytest.mark.parametrize("batched", [True, False])
async def test_a_fill_between_a_commits_sends_withdraws_what_it_still_had_to_send(batched: bool) -> None:
    """A commit goes round again with what the answers call for (an entry's fill: the stop and the
    next entry, then the take-profits). A new fill of the position that arrives between two of its
    sends supersedes the sends still to come, not only the one under way: at 300 positions a stop-out
    waited 35 s for a take-profit placement queued behind the opening burst, because the mark had
    ended with the previous send."""
    venue = make_venue()
    clock = venue.exchange.clock
    assert isinstance(clock, VirtualClock)
    budget = CallBudget(clock, IpWindow(clock))
    sender = OrderSender(VenueGateway(venue, budget), clock, batching=batched, room=None)
    with sender.sending({key(0)}):
        first = await clock.drive_while(sender.send([place(0, "e2", price=1900.0)]))
        assert first[0].ok
        await clock.drive_while(budget.acquire(CallKind.PLACE, 10))  # the place window is spent
        sender.supersede({key(0)})  # the position's next fill, between the commit's two sends
        second = await clock.drive_while(sender.send([place(0, "tp2", price=2100.0)]))
    assert isinstance(second[0].error, Withdrawn)
    assert all("m0-tp2" not in request.links for request in venue.log)
    third = await clock.drive_while(sender.send([place(0, "tp2", price=2100.0)]))
    assert third[0].ok  # the mark ended with the commit: the next decision's orders go
