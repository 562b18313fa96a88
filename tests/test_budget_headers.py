"""The engine's rate budget follows Bybit's ``X-Bapi-Limit*`` headers: the mapping of a private
answer's headers to a :class:`WindowReport`, the transport handing them to the gateway's budget (a
fake pybit answer), and end to end through the fake V5 server (on one virtual clock that never moves,
so the venue's window cannot roll between two calls)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from tpsl_harness import server_venue

from engine.core.clock import VirtualClock
from engine.core.models import CancelRequest, OrderRequest, OrderType, Side
from engine.sim.exchange import SimExchange
from engine.sim.server.app import BybitServer
from engine.sim.server.command import serving
from engine.venue.base import Endpoint
from engine.venue.budget import CallBudget, CallKind, IpWindow, WindowReport
from engine.venue.bybit.keys import ApiKeys
from engine.venue.bybit.limits import HEADER_LIMIT, HEADER_RESET, HEADER_STATUS, window_report
from engine.venue.bybit.transport import IpGuard
from engine.venue.bybit.venue import BybitVenue
from engine.venue.gateway import VenueGateway

KEY, SECRET = "MAINKEY0123456789", "MAINSECRET0123456789abcdef"
T0 = 1_700_000_000.0
"""An epoch-like start: the server signs and stamps with the same clock."""


def limit_headers(limit: str, remaining: str, reset_ms: str) -> dict[str, str]:
    return {HEADER_LIMIT: limit, HEADER_STATUS: remaining, HEADER_RESET: reset_ms}


def test_a_private_answers_headers_are_a_report_of_its_kind_with_the_reset_from_the_answer() -> None:
    headers = limit_headers("20", "3", str(round((T0 + 0.4) * 1000)))
    assert window_report(Endpoint.AMEND, headers, T0) == WindowReport(
        CallKind.AMEND, 20, 3, pytest.approx(0.4), source=Endpoint.AMEND
    )
    # A batch endpoint's headers count its items, as the batch window does.
    report = window_report(Endpoint.CREATE_BATCH, headers, T0)
    assert report is not None and report.kind == CallKind.PLACE_BATCH
    report = window_report(Endpoint.WALLET, headers, T0)
    assert report is not None and report.kind == CallKind.READS


def test_public_answers_and_malformed_or_missing_headers_report_nothing() -> None:
    good = limit_headers("20", "3", str(round(T0 * 1000)))
    assert window_report(Endpoint.TICKERS, good, T0) is None
    assert window_report(Endpoint.INSTRUMENTS, good, T0) is None
    assert window_report(Endpoint.AMEND, None, T0) is None
    assert window_report(Endpoint.AMEND, {}, T0) is None
    assert window_report(Endpoint.AMEND, {**good, HEADER_LIMIT: "ten"}, T0) is None
    assert window_report(Endpoint.AMEND, {HEADER_LIMIT: "20", HEADER_STATUS: "3"}, T0) is None


async def test_the_transports_parse_of_the_headers_feeds_the_gateways_budget() -> None:
    """A fake pybit answer to a cancel, 5 s ahead on the server's clock: the budget follows its limit
    and its remainder, with the reset counted from the answer's own time, not from the header's epoch."""
    clock = VirtualClock(start=T0)
    venue = BybitVenue("main", ApiKeys(KEY, SECRET), clock, ip_guard=IpGuard(clock))
    budget = CallBudget(clock, IpWindow(clock), orders_per_s=10)
    gateway = VenueGateway(venue, budget)
    server_now_ms = round((T0 + 5.0) * 1000)
    answers: list[dict[str, str]] = [
        limit_headers("20", "0", str(server_now_ms + 400)),  # spent by another client until +0.4 s
        limit_headers("oops", "0", str(server_now_ms + 400)),  # malformed: changes nothing
    ]

    def answer(**params: Any) -> tuple[dict[str, Any], timedelta, dict[str, str]]:
        result = {"orderId": "o1", "list": [{"orderId": "o1"}]}
        body = {"retCode": 0, "retMsg": "OK", "result": result, "time": server_now_ms}
        return body, timedelta(milliseconds=3), answers.pop(0)

    # Two endpoints of the cancel window: the transport's own pacing (per endpoint) stays out of it.
    venue._transport._session.cancel_order = answer  # type: ignore[method-assign]
    venue._transport._session.cancel_all_orders = answer  # type: ignore[method-assign]
    try:
        await gateway.cancel(CancelRequest("BTCUSDT", order_id="o1"))
        assert budget.limit(CallKind.CANCEL) == 20
        assert budget.left(CallKind.CANCEL) == 0
        assert budget.row()["cancel"]["reset_in_s"] == 1.0  # our own unit's window outlasts the reset
        clock.advance(0.4)
        assert budget.left(CallKind.CANCEL) == 19  # the cap lifted at the reported reset
        before = budget.row()
        await gateway.cancel_all("BTCUSDT")
        assert budget.limit(CallKind.CANCEL) == 20 and budget.left(CallKind.CANCEL) == 18
        assert budget.row()["amend"] == before["amend"]
    finally:
        await venue.close()


async def test_the_transport_paces_on_the_servers_clock_not_ours() -> None:
    """Our clock 5 s behind Bybit's (the measured offset): an endpoint spent until 0.4 s from now on
    the server's clock is called again 0.4 s later, not 5.4 s (the reset header compared with our
    own clock). Through the venue alone: the transport's own pacing, not the engine's budget."""
    clock = VirtualClock(start=T0)
    venue = BybitVenue("main", ApiKeys(KEY, SECRET), clock, ip_guard=IpGuard(clock))
    venue._transport._session.time_offset_ms = 5000
    server_now_ms = round((T0 + 5.0) * 1000)

    def answer(**params: Any) -> tuple[dict[str, Any], timedelta, dict[str, str]]:
        result = {"orderId": "o1", "list": [{"orderId": "o1"}]}
        body = {"retCode": 0, "retMsg": "OK", "result": result, "time": server_now_ms}
        return body, timedelta(milliseconds=3), limit_headers("10", "0", str(server_now_ms + 400))

    venue._transport._session.cancel_order = answer  # type: ignore[method-assign]
    try:
        await venue.cancel(CancelRequest("BTCUSDT", order_id="o1"))
        started = clock.now()
        await clock.drive_while(venue.cancel(CancelRequest("BTCUSDT", order_id="o1")))
        assert clock.now() - started == pytest.approx(0.4, abs=0.01)
    finally:
        await venue.close()


# --- end to end: pybit against the fake V5 server ----------------------------------------------------


@pytest.fixture
async def world() -> AsyncIterator[tuple[SimExchange, BybitVenue]]:
    clock = VirtualClock(start=T0)
    exchange = SimExchange(clock=clock, seed=11, symbols=["BTCUSDT"], balances={"main": 100_000.0})
    server = BybitServer(exchange, {KEY: (SECRET, "main")}, clock)
    async with serving(server):
        venue = server_venue(server, ApiKeys(KEY, SECRET), clock, threads=2)
        try:
            yield exchange, venue
        finally:
            await venue.close()


def buy_limit(link: str) -> OrderRequest:
    return OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, 0.01, price=50_000.0, link_id=link)


async def test_the_budget_follows_the_fake_servers_headers(world: tuple[SimExchange, BybitVenue]) -> None:
    exchange, venue = world
    clock = venue.clock
    budget = CallBudget(clock, IpWindow(clock), orders_per_s=4, reads_per_s=50)
    gateway = VenueGateway(venue, budget)
    # The server allows 10 creates per second, more than the setting's 4.
    await gateway.place(buy_limit("e2e-1"))
    assert budget.limit(CallKind.PLACE) == 10 and budget.left(CallKind.PLACE) == 9
    # Another client on the same key spends 7 creates: after our next one the answer says 1 is left,
    # where the budget believed 8.
    for _ in range(7):
        exchange.admit("main", Endpoint.CREATE)
    await gateway.place(buy_limit("e2e-2"))
    assert budget.left(CallKind.PLACE) == 1
    # A batch's headers count its items against the batch window.
    await gateway.place_batch([buy_limit("e2e-b1"), buy_limit("e2e-b2"), buy_limit("e2e-b3")])
    assert budget.limit(CallKind.PLACE_BATCH) == 10 and budget.left(CallKind.PLACE_BATCH) == 7
    exchange.admit_batch("main", Endpoint.CREATE_BATCH, 5)
    await gateway.place_batch([buy_limit("e2e-b4")])
    assert budget.left(CallKind.PLACE_BATCH) == 1
