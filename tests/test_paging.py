"""Paged reads of the fake Bybit V5 server: a keyset cursor, as Bybit's, never skips a listed item.

Bybit's ``nextPageCursor`` names the last item returned (``page_args=<orderId>...``), so an order
cancelled or filled between two page reads does not shift the list under the reader. An offset
cursor did: the engine over ``opconsole sim-server`` saw live stop-losses "missing on the venue".
Each test reads one page at a time over signed HTTP and changes the exchange between the reads.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from engine.core.clock import VirtualClock, now_ms
from engine.core.models import CancelRequest, OrderRequest, OrderType, Side
from engine.sim.exchange import SimExchange
from engine.sim.server.app import BybitServer
from engine.sim.server.command import serving
from engine.venue.base import Endpoint

KEY, SECRET = "PAGEKEY0123456789", "PAGESECRET0123456789abcd"
SYMBOL = "BTCUSDT"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=1_700_000_000.0)


@pytest.fixture
def exchange(clock: VirtualClock) -> SimExchange:
    # Virtual time stands still: every order and fill below shares one timestamp (the hard case).
    return SimExchange(clock=clock, seed=5, symbols=[SYMBOL, "ETHUSDT"], balances={"main": 1_000_000.0})


@pytest.fixture
async def server(exchange: SimExchange, clock: VirtualClock) -> AsyncIterator[BybitServer]:
    srv = BybitServer(exchange, {KEY: (SECRET, "main")}, clock)
    async with serving(srv):
        yield srv


async def get(server: BybitServer, path: str, **params: Any) -> dict[str, Any]:
    """One signed GET; the envelope's ``retCode`` and ``result``."""
    query = urlencode(params)
    ts, recv = str(now_ms(server.clock)), "5000"
    sign = hmac.new(SECRET.encode(), f"{ts}{KEY}{recv}{query}".encode(), hashlib.sha256).hexdigest()
    headers = {"X-BAPI-API-KEY": KEY, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": recv, "X-BAPI-SIGN": sign}
    url = URL(f"{server.base_url}{path}?{query}", encoded=True)
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        body: dict[str, Any] = await response.json()
    return {"retCode": body["retCode"], **body["result"]}


def rest(exchange: SimExchange, n: int, prefix: str = "o") -> list[str]:
    """``n`` resting limit buys, far under the price; their link ids, oldest first."""
    for i in range(n):
        request = OrderRequest(
            SYMBOL, Side.BUY, OrderType.LIMIT, 0.001, price=50_000.0 - i, link_id=f"{prefix}{i}"
        )
        exchange.place("main", request)
    return [f"{prefix}{i}" for i in range(n)]


async def orders_page(server: BybitServer, cursor: str = "", limit: int = 3) -> tuple[list[str], str]:
    params: dict[str, Any] = {"category": "linear", "settleCoin": "USDT", "limit": limit}
    if cursor:
        params["cursor"] = cursor
    result = await get(server, Endpoint.OPEN_ORDERS, **params)
    assert result["retCode"] == 0
    return [row["orderLinkId"] for row in result["list"]], result["nextPageCursor"]


@pytest.mark.parametrize("removed", [0, 2], ids=["first-of-page", "last-of-page"])
async def test_an_order_cancelled_between_pages_skips_no_open_order(
    server: BybitServer, exchange: SimExchange, removed: int
) -> None:
    links = rest(exchange, 7)
    page1, cursor = await orders_page(server)
    assert len(page1) == 3 and cursor
    exchange.cancel("main", CancelRequest(SYMBOL, link_id=page1[removed]))  # the cursor's own order too
    seen = list(page1)
    while cursor:
        page, cursor = await orders_page(server, cursor)
        seen += page
    assert len(seen) == len(set(seen))  # none listed twice
    assert set(seen) == set(links)  # and every order open throughout was listed


async def test_an_order_filled_between_pages_skips_no_open_order(
    server: BybitServer, exchange: SimExchange
) -> None:
    links = rest(exchange, 6)
    page1, cursor = await orders_page(server, limit=2)
    # the price falls onto the first listed order: it fills and leaves the list (with any higher bid)
    exchange.set_price(SYMBOL, 50_000.0 - int(page1[0][1:]) - 0.5)
    still_open = {o.link_id for o in exchange.open_orders("main")}
    assert page1[0] not in still_open and still_open
    seen = list(page1)
    while cursor:
        page, cursor = await orders_page(server, cursor, limit=2)
        seen += page
    assert len(seen) == len(set(seen)) and still_open <= set(seen) <= set(links)


async def test_an_order_placed_later_is_listed_on_a_later_page(
    server: BybitServer, exchange: SimExchange, clock: VirtualClock
) -> None:
    links = rest(exchange, 4)
    page1, cursor = await orders_page(server, limit=2)
    clock.advance(1.0)
    rest(exchange, 1, prefix="late")  # created after every listed order: its key sorts after the cursor
    seen = list(page1)
    while cursor:
        page, cursor = await orders_page(server, cursor, limit=2)
        seen += page
    # oldest first (orders of one instant in orderId order), the late one last
    assert sorted(seen[:-1]) == links and seen[-1] == "late0"


async def test_executions_page_newest_first_and_a_new_fill_shifts_nothing(
    server: BybitServer, exchange: SimExchange
) -> None:
    def fill(link: str) -> None:
        exchange.place("main", OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, 0.001, link_id=link))

    for i in range(5):
        fill(f"f{i}")  # one virtual instant: the same execTime for all
    params: dict[str, Any] = {"category": "linear", "limit": 2}
    seen: list[str] = []
    cursor = ""
    while True:
        result = await get(server, Endpoint.EXECUTIONS, **params, **({"cursor": cursor} if cursor else {}))
        seen += [row["orderLinkId"] for row in result["list"]]
        cursor = result["nextPageCursor"]
        if not cursor:
            break
        if len(seen) == 2:
            fill("new")  # newer than the cursor: not on a later page, and it shifts nothing
    # newest first, fills of one instant too (the venue reverses the list to get them oldest first)
    assert seen == ["f4", "f3", "f2", "f1", "f0"]


async def test_a_cursor_the_server_never_gave_is_refused(server: BybitServer, exchange: SimExchange) -> None:
    rest(exchange, 1)
    result = await get(server, Endpoint.OPEN_ORDERS, category="linear", settleCoin="USDT", cursor="!!")
    assert result["retCode"] == 10001
