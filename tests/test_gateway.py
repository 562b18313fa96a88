"""VenueGateway over SimVenue: budget spent per call, refusals fed back, identical reads shared."""

from __future__ import annotations

import asyncio

import pytest

from engine.core.clock import VirtualClock
from engine.core.models import AmendRequest, OrderRequest, OrderType, Side, StreamStatus
from engine.sim.exchange import SimExchange
from engine.sim.venue import SimVenue
from engine.venue.base import Endpoint, Venue
from engine.venue.budget import CallBudget, CallKind, IpWindow
from engine.venue.errors import RateLimited, TransientError
from engine.venue.gateway import VenueGateway
from engine.venue.priority import Priority, call_priority

ETH = "ETHUSDT"
T0 = 30_000.0


def make_gateway(
    latency: str = "realistic", *, coalesce: bool = False, orders: int = 10, reads: int = 50
) -> tuple[VenueGateway, SimVenue, VirtualClock]:
    clock = VirtualClock(start=T0)
    exchange = SimExchange(
        clock=clock,
        seed=11,
        symbols=["BTCUSDT", ETH],
        balances={"main": 1_000_000.0},
        slippage_bps=0.0,
        latency=latency,
    )
    exchange.set_price(ETH, 3000.0)
    inner = SimVenue(exchange, "main")
    budget = CallBudget(clock, IpWindow(clock), orders_per_s=orders, reads_per_s=reads)
    return VenueGateway(inner, budget, coalesce=coalesce), inner, clock


def bid(i: int) -> OrderRequest:
    """A resting limit buy far below the market (it never fills)."""
    return OrderRequest(ETH, Side.BUY, OrderType.LIMIT, 0.01, price=2000.0 + i, link_id=f"g{i}")


async def settle(clock: VirtualClock) -> None:
    await clock.drive(clock.now())


async def test_the_gateway_is_a_venue_over_the_inner_account() -> None:
    gateway, inner, _ = make_gateway("none")
    assert isinstance(gateway, Venue)
    assert gateway.account == "main"
    assert gateway.calls is inner.calls
    await gateway.place(bid(1))
    assert [o.link_id for o in await gateway.open_orders(ETH)] == ["g1"]
    assert inner.calls.as_dict() == {Endpoint.CREATE: 1, Endpoint.OPEN_ORDERS: 1}
    assert gateway.budget.left(CallKind.PLACE) == 9
    assert (gateway.budget.left(CallKind.AMEND), gateway.budget.left(CallKind.CANCEL)) == (10, 10)
    assert gateway.budget.left(CallKind.READS) == 49


async def test_extras_of_the_inner_venue_pass_through() -> None:
    gateway, inner, _ = make_gateway("none")
    assert gateway.exchange is inner.exchange
    assert gateway.reconnect_delay_s == inner.reconnect_delay_s
    with pytest.raises(AttributeError):
        _ = gateway.no_such_thing
    assert gateway.budget is not getattr(inner, "budget", None)  # the gateway's plan of calls
    first = await anext(gateway.stream())
    assert isinstance(first, StreamStatus) and first.connected


async def test_two_identical_reads_in_flight_share_one_request_with_coalesce() -> None:
    gateway, inner, clock = make_gateway(coalesce=True)
    await clock.drive_while(gateway.place(OrderRequest(ETH, Side.BUY, OrderType.MARKET, 1.0, link_id="open")))
    first, second = await clock.drive_while(asyncio.gather(gateway.positions(), gateway.positions()))
    assert inner.calls.counts[Endpoint.POSITIONS] == 1
    assert first == second and [p.size for p in first] == [1.0]
    assert first is not second  # each caller owns its list
    assert gateway.shared_reads == 1
    # Different arguments are different reads.
    await clock.drive_while(asyncio.gather(gateway.positions(ETH), gateway.positions()))
    assert inner.calls.counts[Endpoint.POSITIONS] == 3


async def test_without_coalesce_every_read_is_its_own_request() -> None:
    gateway, inner, clock = make_gateway(coalesce=False)
    await clock.drive_while(asyncio.gather(gateway.positions(), gateway.positions()))
    assert inner.calls.counts[Endpoint.POSITIONS] == 2
    gateway.coalesce = True  # the api_batching toggle, flipped live
    await clock.drive_while(asyncio.gather(gateway.positions(), gateway.positions()))
    assert inner.calls.counts[Endpoint.POSITIONS] == 3


async def test_a_cancelled_sharer_does_not_cancel_the_request_of_the_others() -> None:
    gateway, inner, clock = make_gateway(coalesce=True)
    first = asyncio.ensure_future(gateway.wallet())
    second = asyncio.ensure_future(gateway.wallet())
    await settle(clock)  # both joined; the request is on the wire (30-120 ms)
    first.cancel()
    wallet = await clock.drive_while(second)
    assert wallet.wallet_balance == 1_000_000.0
    assert first.cancelled()
    assert inner.calls.counts[Endpoint.WALLET] == 1


async def test_an_error_reaches_every_sharer() -> None:
    gateway, inner, clock = make_gateway(coalesce=True)
    inner.exchange.inject_errors(
        "main", 1, TransientError("server busy", 10016), endpoints=[Endpoint.OPEN_ORDERS]
    )
    results = await clock.drive_while(
        asyncio.gather(gateway.open_orders(), gateway.open_orders(), return_exceptions=True)
    )
    assert [type(r) for r in results] == [TransientError, TransientError]
    assert inner.calls.counts[Endpoint.OPEN_ORDERS] == 1
    assert await clock.drive_while(gateway.open_orders()) == []  # the next read is a new request


async def test_a_joiner_raises_a_waiting_shared_read_to_its_priority() -> None:
    gateway, inner, clock = make_gateway(coalesce=True, reads=1)
    # One read spends the one-per-second read window until a second after its answer.
    await clock.drive_while(gateway.tickers([ETH]))
    served: list[str] = []

    async def read(priority: Priority, what: str) -> None:
        with call_priority(priority):
            await (gateway.positions() if what == "positions" else gateway.open_orders())
        served.append(f"{what}@{priority.name}")

    tasks = [asyncio.ensure_future(read(Priority.DASHBOARD, "positions"))]
    await settle(clock)
    tasks.append(asyncio.ensure_future(read(Priority.CHECK, "orders")))
    await settle(clock)
    tasks.append(asyncio.ensure_future(read(Priority.CHECK, "positions")))  # joins the dashboard's read
    await clock.drive_while(asyncio.gather(*tasks))
    # The shared positions read went at CHECK priority and, being older, before the orders check.
    assert served[0].startswith("positions") and served[-1] == "orders@CHECK"
    assert inner.calls.counts[Endpoint.POSITIONS] == 1


async def test_a_refusal_from_the_venue_pauses_the_budget_until_its_reset() -> None:
    gateway, inner, clock = make_gateway("none")
    inner.exchange.inject_errors(
        "main", 1, RateLimited("Too many visits!", 10006, reset_at=T0 + 3.0), endpoints=[Endpoint.CREATE]
    )
    with pytest.raises(RateLimited):
        await gateway.place(bid(1))
    assert gateway.budget.left(CallKind.PLACE) == 0
    assert gateway.budget.row()["place"]["reset_in_s"] == gateway.budget.row()["orders"]["reset_in_s"] == 3.0
    await clock.drive_while(gateway.place(bid(2)))
    assert clock.now() == T0 + 3.0  # waited for the reset instead of collecting another 10006


async def test_a_batch_spends_one_unit_per_item_and_its_refused_items_pause_the_budget() -> None:
    gateway, inner, clock = make_gateway("none")
    results = await gateway.place_batch([bid(i) for i in range(4)])
    assert all(r.ok for r in results)
    assert (gateway.budget.left(CallKind.PLACE_BATCH), gateway.budget.left(CallKind.PLACE)) == (6, 10)
    # Another client spent the venue's amend-batch budget behind our back: the venue admits the first
    # item and refuses the second with 10006.
    inner.exchange.check_rate("main", Endpoint.AMEND_BATCH, 9)
    amends = [AmendRequest(ETH, link_id=f"g{i}", price=1900.0 + i) for i in range(2)]
    refused = await gateway.amend_batch(amends)
    assert [type(r.error) for r in refused] == [type(None), RateLimited]
    assert (gateway.budget.left(CallKind.AMEND_BATCH), gateway.budget.left(CallKind.PLACE_BATCH)) == (0, 6)
    assert gateway.budget.left(CallKind.AMEND) == 10  # the single endpoint is limited on its own
    await clock.drive_while(gateway.amend_batch(amends))
    assert clock.now() == pytest.approx(T0 + 1.0)


async def test_a_burst_of_thirty_orders_is_paced_not_refused() -> None:
    gateway, inner, clock = make_gateway("realistic")
    acks = await clock.drive_while(asyncio.gather(*(gateway.place(bid(i)) for i in range(30))))
    assert [a.link_id for a in acks] == [f"g{i}" for i in range(30)]
    assert inner.calls.counts[Endpoint.CREATE] == 30
    assert clock.now() - T0 > 2.0  # three windows' worth of orders

    # The same burst straight to the venue collects 10006 refusals.
    _, raw_inner, raw_clock = make_gateway("realistic")
    outcomes = await raw_clock.drive_while(
        asyncio.gather(*(raw_inner.place(bid(i)) for i in range(30)), return_exceptions=True)
    )
    assert sum(isinstance(o, RateLimited) for o in outcomes) == 20


async def test_a_slow_answer_then_fast_ones_never_overlap_the_venues_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway, inner, clock = make_gateway("realistic")
    # The first ten requests take 120 ms, the next ten 30 ms: counted from when they were sent, the
    # second wave would reach the venue while the first one is still in its window.
    draws = iter([0.12] * 10 + [0.03] * 10)
    monkeypatch.setattr(inner.exchange, "latency_s", lambda: next(draws))
    acks = await clock.drive_while(asyncio.gather(*(gateway.place(bid(i)) for i in range(20))))
    assert len(acks) == 20
    assert clock.now() == pytest.approx(T0 + 0.12 + 1.0 + 0.03)


async def test_orders_waiting_for_the_budget_go_by_the_callers_priority() -> None:
    gateway, _, clock = make_gateway("none", orders=1)
    await gateway.place(bid(0))
    placed: list[str] = []

    async def place(priority: Priority, i: int) -> None:
        with call_priority(priority):
            ack = await gateway.place(bid(i))
        placed.append(ack.link_id)

    trade = asyncio.ensure_future(place(Priority.TRADE, 1))
    await settle(clock)
    stop = asyncio.ensure_future(place(Priority.PROTECT, 2))
    await clock.drive_while(asyncio.gather(trade, stop))
    assert placed == ["g2", "g1"]
