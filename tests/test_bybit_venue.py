"""The real pybit client (through BybitVenue) against the fake Bybit V5 server on 127.0.0.1.

Every test starts a simulated exchange, the server on an ephemeral port and a venue pointed at it;
nothing leaves the machine. Faults come from the server's switches (error bursts, 403, late answers,
dropped or muted streams) and from a server clock that is off by some seconds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bybit_rows import ADL_ROW, FUNDING_ROW, UNIFIED_IN_USDC, hedge_rows, instrument_row

from engine.core.clock import RealClock
from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Execution,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    StreamStatus,
    Ticker,
    TriggerBy,
    TriggerDirection,
    VenueEvent,
    Wallet,
)
from engine.core.settings import load_settings
from engine.sim.exchange import SimExchange
from engine.sim.server.app import BybitServer
from engine.sim.server.command import serve, serving
from engine.venue.base import Endpoint
from engine.venue.bybit.keys import MASK, ApiKeys, install_redaction
from engine.venue.bybit.retry import RetryPolicy
from engine.venue.bybit.stream import StreamOptions, _ManagedWebSocket
from engine.venue.bybit.transport import IpGuard
from engine.venue.bybit.venue import BybitVenue
from engine.venue.bybit.wire import SERVER_TIME, wallet_json
from engine.venue.errors import (
    HEDGE_MODE_FIX,
    AuthError,
    HedgeModeAccount,
    IpBanned,
    MalformedReply,
    OrderNotFound,
    QtyTooSmall,
    TransientError,
    VenueError,
)

KEY, SECRET = "MAINKEY0123456789", "MAINSECRET0123456789abcdef"
MIRROR_KEY, MIRROR_SECRET = "MIRRORKEY01234567", "MIRRORSECRET0123456789ab"
KEYS = {KEY: (SECRET, "main"), MIRROR_KEY: (MIRROR_SECRET, "mirror")}
FAST_STREAMS = StreamOptions(
    ping_interval_s=0.5, stale_after_s=1.5, check_interval_s=0.05, reconnect_base_s=0.05, reconnect_max_s=0.2
)
WAIT_S = 10.0
"""Upper bound for one awaited event (a hang fails instead of blocking the suite)."""


class OffsetClock(RealClock):
    """The wall clock, off by ``offset`` seconds (a server whose clock disagrees with ours)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return super().now() + self.offset


@pytest.fixture
def exchange() -> SimExchange:
    return SimExchange(
        clock=RealClock(),
        seed=11,
        symbols=["BTCUSDT", "ETHUSDT"],
        balances={"main": 100_000.0, "mirror": 50_000.0},
    )


@pytest.fixture
async def server(exchange: SimExchange) -> AsyncIterator[BybitServer]:
    srv = BybitServer(exchange, KEYS, RealClock(), public_interval_s=0.05)
    async with serving(srv):
        yield srv


def make_venue(
    server: BybitServer, account: str = "main", key: str = KEY, secret: str = SECRET, **kwargs: Any
) -> BybitVenue:
    params: dict[str, Any] = {
        "base_url": server.base_url,
        "ws_url": server.ws_url,
        "threads": 4,
        "ip_guard": IpGuard(RealClock()),
        "retry": RetryPolicy(max_retries=3, base_delay_s=0.02, max_delay_s=0.1),
        "stream_options": FAST_STREAMS,
        "ticker_symbols": [],
    }
    params.update(kwargs)
    return BybitVenue(account, ApiKeys(key, secret), RealClock(), **params)


@pytest.fixture
async def venue(server: BybitServer) -> AsyncIterator[BybitVenue]:
    v = make_venue(server)
    yield v
    await v.close()


def buy_limit(price: float, link: str, qty: float = 0.01) -> OrderRequest:
    return OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, qty, price=price, link_id=link)


async def next_event(
    events: AsyncIterator[VenueEvent],
    want: Callable[[VenueEvent], bool],
    seen: list[VenueEvent] | None = None,
) -> VenueEvent:
    """The next event matching ``want`` (every event read is appended to ``seen``)."""
    while True:
        event = await asyncio.wait_for(events.__anext__(), WAIT_S)
        if seen is not None:
            seen.append(event)
        if want(event):
            return event


def is_status(connected: bool, reason: str | None = None) -> Callable[[VenueEvent], bool]:
    return lambda e: (
        isinstance(e, StreamStatus) and e.connected == connected and (reason is None or e.reason == reason)
    )


# --- every endpoint --------------------------------------------------------------------------------


async def test_reads(venue: BybitVenue, exchange: SimExchange) -> None:
    instruments = await venue.instruments()
    assert set(instruments) == {"BTCUSDT", "ETHUSDT"}
    assert instruments["BTCUSDT"] == exchange.instruments["BTCUSDT"]
    tickers = await venue.tickers()
    assert tickers["ETHUSDT"].last == exchange.ticker("ETHUSDT").last
    assert set(await venue.tickers(["BTCUSDT"])) == {"BTCUSDT"}
    wallet = await venue.wallet()
    assert (wallet.account, wallet.equity, wallet.available) == ("main", 100_000.0, 100_000.0)
    assert await venue.positions() == [] and await venue.positions("BTCUSDT") == []  # flat: listed, filtered
    assert await venue.open_orders() == [] and await venue.executions(0.0) == []
    await venue.set_leverage("BTCUSDT", 5)
    await venue.set_leverage("BTCUSDT", 5)  # unchanged: a no-op, not an error
    assert exchange.positions("main", "BTCUSDT")[0].leverage == 5.0
    assert venue.calls.counts[Endpoint.POSITIONS] == 2 and venue.calls.counts[Endpoint.TICKERS] == 2
    assert 0 < venue.last_rtt_ms < 1000


async def test_order_actions(venue: BybitVenue, exchange: SimExchange) -> None:
    await venue.instruments()
    entry = await venue.place(
        OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.02, link_id="m-BTC-entry")
    )
    [position] = await venue.positions()
    assert (position.side, position.size) == (Side.BUY, 0.02)
    [fill] = await venue.executions(0.0)
    assert fill.order_id == entry.order_id and fill.link_id == "m-BTC-entry" and fill.qty == 0.02
    stop = await venue.place(
        OrderRequest(
            "BTCUSDT",
            Side.SELL,
            OrderType.MARKET,
            0.02,
            trigger_price=90_000.0,
            trigger_direction=TriggerDirection.FALL,
            trigger_by=TriggerBy.LAST_PRICE,
            reduce_only=True,
            close_on_trigger=True,
            link_id="m-BTC-sl",
        )
    )
    tp = await venue.place(
        OrderRequest(
            "BTCUSDT", Side.SELL, OrderType.LIMIT, 0.01, price=99_000.0, reduce_only=True, link_id="m-BTC-tp1"
        )
    )
    orders = {o.link_id: o for o in await venue.open_orders("BTCUSDT")}
    assert orders["m-BTC-sl"].status is OrderStatus.UNTRIGGERED
    assert (
        orders["m-BTC-sl"].trigger_price == 90_000.0
        and orders["m-BTC-sl"].trigger_direction is TriggerDirection.FALL
    )
    assert orders["m-BTC-tp1"].price == 99_000.0 and orders["m-BTC-tp1"].order_id == tp.order_id
    amended = await venue.amend(AmendRequest("BTCUSDT", link_id="m-BTC-sl", trigger_price=91_000.0))
    assert amended.order_id == stop.order_id
    assert {o.link_id: o for o in await venue.open_orders()}["m-BTC-sl"].trigger_price == 91_000.0
    await venue.cancel(CancelRequest("BTCUSDT", order_id=tp.order_id))
    assert [o.link_id for o in await venue.open_orders()] == ["m-BTC-sl"]
    with pytest.raises(OrderNotFound):
        await venue.cancel(CancelRequest("BTCUSDT", order_id=tp.order_id))
    cancelled = await venue.cancel_all("BTCUSDT")
    assert [a.link_id for a in cancelled] == ["m-BTC-sl"] and await venue.open_orders() == []
    with pytest.raises(QtyTooSmall):
        await venue.place(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.0001))


async def test_lists_are_paginated(venue: BybitVenue, exchange: SimExchange) -> None:
    for i in range(55):  # straight into the exchange: no rate limit in the way
        exchange.place("main", buy_limit(80_000.0 + i, f"p{i}", qty=0.001))
    orders = await venue.open_orders()
    assert [o.link_id for o in orders] == [f"p{i}" for i in range(55)]
    assert venue.calls.counts[Endpoint.OPEN_ORDERS] == 2  # 50 per page


# --- auth, clocks and limits -----------------------------------------------------------------------


async def test_bad_signature_is_an_auth_error_that_never_leaks_the_key(server: BybitServer) -> None:
    install_redaction(KEY)
    forged = make_venue(server, secret="not-the-secret-at-all")
    try:
        with pytest.raises(AuthError) as info:
            await forged.wallet()
        assert info.value.code == 10004
        assert KEY not in str(info.value) and MASK in str(info.value)  # Bybit quotes the signed string
        assert forged.calls.counts[Endpoint.WALLET] == 1  # not retried
        unknown = make_venue(server, key="NOSUCHKEY12345")
        with pytest.raises(AuthError) as info:
            await unknown.positions()
        assert info.value.code == 10003
        await unknown.close()
    finally:
        await forged.close()


@pytest.mark.parametrize("skew_s", [30.0, -30.0])
async def test_clock_skew_is_resynced(exchange: SimExchange, skew_s: float) -> None:
    srv = BybitServer(exchange, KEYS, OffsetClock(skew_s))
    async with serving(srv):
        v = make_venue(srv)
        try:
            wallet = await v.wallet()
            assert wallet.equity == 100_000.0
            assert abs(v.time_offset_ms - skew_s * 1000) < 1000
            assert v.calls.counts[Endpoint.WALLET] == 2 and v.calls.counts[SERVER_TIME] == 1
            await v.positions()  # signed with the offset from now on: no more 10002
            assert v.calls.counts[SERVER_TIME] == 1
        finally:
            await v.close()


async def test_a_10006_burst_is_ridden_out_without_losing_the_order(
    server: BybitServer, venue: BybitVenue, exchange: SimExchange
) -> None:
    server.faults.rate_limit_reset_s = 0.05
    server.error_burst("main", 4, 10006, endpoints=[Endpoint.CREATE])
    ack = await venue.place(buy_limit(90_000.0, "burst"))
    assert venue.calls.counts[Endpoint.CREATE] == 5
    assert [o.order_id for o in exchange.open_orders("main")] == [ack.order_id]


async def test_the_real_budget_paces_a_rush_of_orders(venue: BybitVenue, exchange: SimExchange) -> None:
    acks = await asyncio.gather(
        *(venue.place(buy_limit(90_000.0 - i, f"rush{i}", qty=0.001)) for i in range(14))
    )
    batch = await venue.place_batch([buy_limit(80_000.0 - i, f"batch{i}", qty=0.001) for i in range(20)])
    assert all(r.ok for r in batch)  # 10 fit the window, 10 were refused one by one and sent again
    links = sorted(o.link_id for o in exchange.open_orders("main"))
    assert links == sorted([f"rush{i}" for i in range(14)] + [f"batch{i}" for i in range(20)])
    assert len({a.order_id for a in acks}) == 14
    assert venue.budget.get(Endpoint.CREATE) is not None


async def test_a_create_that_landed_but_timed_out_is_not_duplicated(
    server: BybitServer, exchange: SimExchange
) -> None:
    v = make_venue(server, timeout_s=0.3)
    try:
        await v.instruments(["BTCUSDT"])  # read before the delay, so the delayed call is the create
        server.faults.delay_next(1, 0.6)  # the order executes, its answer comes too late
        ack = await v.place(buy_limit(90_000.0, "once"))
        [order] = exchange.open_orders("main")
        assert (order.link_id, order.order_id) == ("once", ack.order_id)
        assert v.calls.counts[Endpoint.CREATE] == 2  # the retry met 110072: the first one had landed
        server.faults.delay_next(1, 0.6)
        with pytest.raises(TransientError):  # no orderLinkId: never retried
            await v.place(OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, 0.01, price=89_000.0))
        assert v.calls.counts[Endpoint.CREATE] == 3
    finally:
        await v.close()


async def test_batches_report_per_item_results(venue: BybitVenue, exchange: SimExchange) -> None:
    results = await venue.place_batch(
        [buy_limit(90_000.0, "b1"), buy_limit(90_000.0, "b2", qty=0.0001), buy_limit(89_000.0, "b3")]
    )
    assert [r.ok for r in results] == [True, False, True]
    assert isinstance(results[1].error, QtyTooSmall) and results[1].error.code == 10001
    assert sorted(o.link_id for o in exchange.open_orders("main")) == ["b1", "b3"]
    amended = await venue.amend_batch(
        [
            AmendRequest("BTCUSDT", link_id="b1", price=90_100.0),
            AmendRequest("BTCUSDT", link_id="nope", price=1.0),
        ]
    )
    assert amended[0].ok and isinstance(amended[1].error, OrderNotFound)
    assert {o.link_id: o.price for o in exchange.open_orders("main")}["b1"] == 90_100.0
    cancelled = await venue.cancel_batch(
        [CancelRequest("BTCUSDT", link_id=link) for link in ("b1", "nope", "b3")]
    )
    assert [r.ok for r in cancelled] == [True, False, True] and exchange.open_orders("main") == []
    assert venue.calls.counts[Endpoint.CREATE_BATCH] == 1


async def test_http_403_stops_every_call_and_alerts_once(server: BybitServer, exchange: SimExchange) -> None:
    guard = IpGuard(RealClock())
    alerts: list[str] = []
    main = make_venue(server, ip_guard=guard, on_critical=alerts.append)
    mirror = make_venue(server, "mirror", MIRROR_KEY, MIRROR_SECRET, ip_guard=guard)
    try:
        server.faults.forbidden = True
        with pytest.raises(IpBanned):
            await main.wallet()
        server.faults.forbidden = False  # lifted at the server, but we must not probe it
        reached = server.requests
        with pytest.raises(IpBanned):
            await main.positions()
        with pytest.raises(IpBanned):
            await mirror.place(buy_limit(90_000.0, "m"))  # same IP, same stop
        assert server.requests == reached and exchange.open_orders("mirror") == []
        assert len(alerts) == 1 and "403" in alerts[0]
        guard.lift()  # the operator's override
        assert (await mirror.wallet()).equity == 50_000.0
    finally:
        await main.close()
        await mirror.close()


# --- streams ---------------------------------------------------------------------------------------


async def test_stream_delivers_private_topics_and_tickers(venue: BybitVenue, exchange: SimExchange) -> None:
    events = venue.stream()
    await next_event(events, is_status(True, "connected"))
    await venue.watch_tickers(["ETHUSDT"])
    ack = await venue.place(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.01, link_id="s1"))
    seen: list[VenueEvent] = []
    fill = await next_event(events, lambda e: isinstance(e, Execution), seen)
    assert isinstance(fill, Execution) and fill.order_id == ack.order_id
    await next_event(events, lambda e: isinstance(e, Wallet), seen)
    assert any(isinstance(e, Order) and e.status is OrderStatus.FILLED for e in seen)
    assert any(isinstance(e, Position) and e.size == 0.01 for e in seen)
    exchange.set_price("ETHUSDT", 3456.78)
    ticker = await next_event(
        events, lambda e: isinstance(e, Ticker) and e.symbol == "ETHUSDT" and e.last == 3456.78
    )
    assert isinstance(ticker, Ticker) and ticker.mark == 3456.78


async def _open_long_with_tp(venue: BybitVenue) -> None:
    await venue.place(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.02, link_id="x-entry"))
    await venue.place(
        OrderRequest(
            "BTCUSDT", Side.SELL, OrderType.LIMIT, 0.01, price=96_000.0, reduce_only=True, link_id="x-tp1"
        )
    )


async def _tp_fills_until_live(
    venue: BybitVenue, events: AsyncIterator[VenueEvent], seen: list[VenueEvent]
) -> list[Execution]:
    """Read on until an order placed now shows up, so any duplicate TP fill would have been read."""
    await venue.place(buy_limit(80_000.0, "x-probe"))
    await next_event(events, lambda e: isinstance(e, Order) and e.link_id == "x-probe", seen)
    return [e for e in seen if isinstance(e, Execution) and e.link_id == "x-tp1"]


@pytest.mark.parametrize("abrupt", [False, True])
async def test_tp_fill_during_a_dropped_stream_is_backfilled_once(
    server: BybitServer, venue: BybitVenue, exchange: SimExchange, abrupt: bool
) -> None:
    await _open_long_with_tp(venue)
    events = venue.stream()
    seen: list[VenueEvent] = []
    await next_event(events, is_status(True, "connected"), seen)
    server.faults.streams_blocked = True  # the client cannot come back until we say so
    assert await server.drop_streams("main", abrupt=abrupt) == 1
    exchange.set_price("BTCUSDT", 96_100.0)  # the TP fills while nobody listens
    await next_event(events, is_status(False), seen)
    assert not any(isinstance(e, Execution) and e.link_id == "x-tp1" for e in seen)
    server.faults.streams_blocked = False
    await next_event(events, is_status(True, "resumed"), seen)
    fills = await _tp_fills_until_live(venue, events, seen)
    assert len(fills) == 1 and fills[0].qty == 0.01 and fills[0].price == 96_000.0
    assert venue.stream_state is not None and venue.stream_state.reconnects >= 1


async def test_tp_fill_seen_before_the_drop_is_not_delivered_again(
    server: BybitServer, venue: BybitVenue, exchange: SimExchange
) -> None:
    await _open_long_with_tp(venue)
    events = venue.stream()
    seen: list[VenueEvent] = []
    await next_event(events, is_status(True, "connected"), seen)
    exchange.set_price("BTCUSDT", 96_100.0)
    await next_event(events, lambda e: isinstance(e, Execution) and e.link_id == "x-tp1", seen)
    await server.drop_streams("main")  # the backfill after the reconnect returns that fill again
    await next_event(events, is_status(True, "resumed"), seen)
    fills = await _tp_fills_until_live(venue, events, seen)
    assert len(fills) == 1
    assert venue.calls.counts[Endpoint.EXECUTIONS] >= 1


async def test_a_silent_stream_is_declared_dead_and_replaced(server: BybitServer, venue: BybitVenue) -> None:
    events = venue.stream()
    await next_event(events, is_status(True, "connected"))
    assert server.mute_streams("main") == 1  # TCP stays up; no pong, no message
    await next_event(events, is_status(False))
    await next_event(events, is_status(True, "resumed"))
    assert server.connections("main") == 1


async def test_a_bad_message_never_kills_the_stream(
    server: BybitServer, venue: BybitVenue, caplog: pytest.LogCaptureFixture
) -> None:
    events = venue.stream()
    await next_event(events, is_status(True, "connected"))
    with caplog.at_level(logging.WARNING, logger="opconsole.venue.bybit"):
        await server.push_raw("main", "execution", [{"symbol": "BTCUSDT", "side": "Sideways"}])
        ack = await venue.place(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.01, link_id="after"))
        fill = await next_event(events, lambda e: isinstance(e, Execution))
    assert isinstance(fill, Execution) and fill.order_id == ack.order_id
    # The unreadable row is skipped with a warning naming the field (issue 11: rows, not messages).
    assert "stream execution: row skipped: execId" in caplog.text
    assert venue.stream_state is not None and venue.stream_state.reconnects == 0


class _SubscriptionRace:
    """Forces the ordering that lost the first push: pybit sends a subscription, the server answers
    with the topic's first message at once, and pybit's reader thread handles that message before the
    subscribing thread has registered the topic's callback (pybit does that only after sending).

    Patched onto the venue's WebSocket class: registering the callback of a ``topic`` in ``late``
    blocks until the reader has handled a message of that topic (``before_register`` runs first, to
    make the server send one). The gate only reorders what pybit does anyway; it adds no message.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, late: Callable[[str], bool]) -> None:
        self.handled: dict[str, threading.Event] = {}
        self._guard = threading.Lock()
        self.before_register: Callable[[str], None] = lambda topic: None
        race = self
        handle = _ManagedWebSocket._process_normal_message
        register = _ManagedWebSocket._set_callback

        def handle_and_note(ws: _ManagedWebSocket, message: dict[str, Any]) -> None:
            handle(ws, message)
            race.event(str(message.get("topic", ""))).set()

        def register_late(ws: _ManagedWebSocket, topic: str, callback: Callable[..., None]) -> None:
            if late(topic):
                race.before_register(topic)
                if not race.event(topic).wait(WAIT_S):
                    raise AssertionError(f"no {topic} message arrived before its callback: no race forced")
            register(ws, topic, callback)

        monkeypatch.setattr(_ManagedWebSocket, "_process_normal_message", handle_and_note)
        monkeypatch.setattr(_ManagedWebSocket, "_set_callback", register_late)

    def event(self, topic: str) -> threading.Event:
        with self._guard:
            return self.handled.setdefault(topic, threading.Event())


async def test_a_ticker_snapshot_that_beats_its_callback_still_gives_the_mark(
    server: BybitServer, exchange: SimExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The price never moves: the snapshot sent on subscribe is the only ticker message there is.
    race = _SubscriptionRace(monkeypatch, late=lambda topic: topic == "tickers.BTCUSDT")
    v = make_venue(server, ticker_symbols=["BTCUSDT"])
    try:
        events = v.stream()
        ticker = await next_event(events, lambda e: isinstance(e, Ticker) and e.symbol == "BTCUSDT")
        assert isinstance(ticker, Ticker) and ticker.mark == exchange.ticker("BTCUSDT").mark
        assert race.event("tickers.BTCUSDT").is_set()
    finally:
        await v.close()


async def test_a_private_push_that_beats_its_callback_is_delivered(
    server: BybitServer, exchange: SimExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    race = _SubscriptionRace(monkeypatch, late=lambda topic: topic == "wallet")
    loop = asyncio.get_running_loop()
    pushed = replace(exchange.wallet("main"), equity=123_456.0)

    def push_wallet(topic: str) -> None:
        # A push reaches only connections the server knows are subscribed, and the subscription may
        # still be on its way: push (on the loop) until the reader thread has handled one.
        for _ in range(int(WAIT_S / 0.05)):
            push = server.push_raw("main", "wallet", [wallet_json(pushed)])
            asyncio.run_coroutine_threadsafe(push, loop).result(WAIT_S)
            if race.event(topic).wait(0.05):
                return

    race.before_register = push_wallet
    v = make_venue(server)
    try:
        events = v.stream()
        wallet = await next_event(events, lambda e: isinstance(e, Wallet))
        assert isinstance(wallet, Wallet) and wallet.equity == 123_456.0
    finally:
        await v.close()


# --- the sim-server command ---------------------------------------------------------------------


async def test_serve_runs_the_command_with_the_clients_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BYBIT_API_KEY", KEY)
    monkeypatch.setenv("BYBIT_API_SECRET", SECRET)
    monkeypatch.delenv("BYBIT_MIRROR_API_KEY", raising=False)
    settings = load_settings(state_dir=tmp_path)
    started: asyncio.Future[BybitServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, "127.0.0.1", 0, tmp_path, ready=started.set_result))
    srv = await asyncio.wait_for(started, WAIT_S)
    v = BybitVenue.from_settings(settings, "main", RealClock(), base_url=srv.base_url, ws_url=srv.ws_url)
    try:
        assert (await v.wallet()).equity == settings.get("sim.balances.main")
    finally:
        await v.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (tmp_path / "sim-exchange.json").exists()


# --- Bybit's shapes the simulator does not make (issue 11), served by hand -----------------------------


async def test_a_funding_row_does_not_fail_the_executions_page(
    venue: BybitVenue, server: BybitServer
) -> None:
    since = RealClock().now() - 1.0
    ack = await venue.place(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.01, link_id="entry"))
    now_ms = str(round(RealClock().now() * 1000))
    funding = dict(FUNDING_ROW, execTime=now_ms)
    unreadable = dict(FUNDING_ROW, execTime=now_ms, execId="")
    server.add_raw_rows("main", Endpoint.EXECUTIONS, [funding, unreadable, dict(ADL_ROW, execTime=now_ms)])
    fills = await venue.executions(since)
    assert sorted(f.exec_type for f in fills) == ["AdlTrade", "Funding", "Trade"]
    [paid] = [f for f in fills if f.is_funding]
    assert paid.fee == 0.0350062 and paid.order_type is OrderType.UNKNOWN and paid.link_id == ""
    [trade] = [f for f in fills if f.is_position_fill]
    assert trade.order_id == ack.order_id


async def test_funding_and_adl_arrive_on_the_stream(server: BybitServer, venue: BybitVenue) -> None:
    events = venue.stream()
    await next_event(events, is_status(True, "connected"))
    # One message: a funding row (orderType "UNKNOWN"), an unreadable row, and an ADL exit.
    await server.push_raw("main", "execution", [FUNDING_ROW, {"symbol": "BTCUSDT"}, ADL_ROW])
    first = await next_event(events, lambda e: isinstance(e, Execution))
    second = await next_event(events, lambda e: isinstance(e, Execution))
    assert isinstance(first, Execution) and first.is_funding and first.fee == 0.0350062
    assert isinstance(second, Execution) and second.forced_exit_reason == "adl"


async def test_a_unified_wallet_funded_in_usdc_is_not_zero(venue: BybitVenue, server: BybitServer) -> None:
    server.add_raw_rows("main", Endpoint.WALLET, [UNIFIED_IN_USDC])
    wallet = await venue.wallet()
    assert (wallet.equity, wallet.available) == (20512.44318322, 20400.1)


async def test_a_hedge_mode_list_never_reads_the_empty_side(venue: BybitVenue, server: BybitServer) -> None:
    server.add_raw_rows("main", Endpoint.POSITIONS, hedge_rows())
    [short] = await venue.positions()
    assert (short.side, short.size, short.position_idx, short.hedge_mode) == (Side.SELL, 0.5, 2, True)
    assert [p.side for p in await venue.positions("BTCUSDT")] == [Side.SELL]


async def test_an_order_refused_for_hedge_mode_is_typed(venue: BybitVenue, server: BybitServer) -> None:
    server.error_burst("main", 1, 10001, "position idx not match position mode", [Endpoint.CREATE])
    with pytest.raises(HedgeModeAccount) as info:
        await venue.place(OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.01, link_id="h"))
    assert HEDGE_MODE_FIX in str(info.value)


async def test_an_instrument_with_a_zero_step_is_refused_and_never_traded(
    venue: BybitVenue, server: BybitServer, exchange: SimExchange
) -> None:
    server.add_raw_rows("", Endpoint.INSTRUMENTS, [instrument_row(step="0")])
    assert set(await venue.instruments()) == {"BTCUSDT", "ETHUSDT"}  # the others stay tradable
    with pytest.raises(MalformedReply) as info:
        await venue.instruments(["ZEROUSDT"])
    assert info.value.endpoint == Endpoint.INSTRUMENTS and info.value.field.endswith("qtyStep")
    with pytest.raises(MalformedReply):
        await venue.place(OrderRequest("ZEROUSDT", Side.BUY, OrderType.MARKET, 0.0123, link_id="z"))
    assert venue.calls.counts.get(Endpoint.CREATE, 0) == 0 and exchange.open_orders("main") == []


async def test_an_order_is_sent_rounded_to_the_step(venue: BybitVenue, exchange: SimExchange) -> None:
    # The venue never read the instrument: it reads it before the first order, not send 0.0100000001.
    ack = await venue.place(buy_limit(90_000.0, "r", qty=0.0100000001))
    [order] = exchange.open_orders("main")
    assert order.order_id == ack.order_id and order.qty == 0.01


@pytest.mark.parametrize("bad", ["NaN", "inf", "1e999", "lots"])
async def test_a_reply_whose_numbers_do_not_parse_is_refused(
    venue: BybitVenue, server: BybitServer, bad: str
) -> None:
    row = hedge_rows()[0]
    row.update(positionIdx=0, markPrice=bad)
    server.add_raw_rows("main", Endpoint.POSITIONS, [row])
    with pytest.raises(MalformedReply) as info:
        await venue.positions()
    assert (info.value.endpoint, info.value.field, info.value.value) == (Endpoint.POSITIONS, "markPrice", bad)
    assert "/v5/position/list" in str(info.value) and "markPrice" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda body: {k: v for k, v in body.items() if k != "result"}, "result"),
        (lambda body: dict(body, retCode="abc"), "retCode"),
        (lambda body: dict(body, retCode=None), "retCode"),
        (lambda body: dict(body, result={**body["result"], "list": "not a list"}), "result.list"),
        (lambda body: dict(body, result={**body["result"], "list": [1, 2]}), "result.list"),
    ],
    ids=["no-result", "retCode-abc", "retCode-null", "list-is-a-string", "list-of-numbers"],
)
async def test_a_malformed_envelope_is_a_typed_venue_error(
    venue: BybitVenue, server: BybitServer, edit: Callable[[dict[str, Any]], Any], field: str
) -> None:
    """Issue 12 item 2: a reply whose envelope is wrong (over the real pybit client) is a
    MalformedReply naming the endpoint and the field, never a KeyError or TypeError; the next
    well-formed reply is read as usual."""
    server.faults.mangle_next(Endpoint.POSITIONS, edit)
    with pytest.raises(MalformedReply) as info:
        await venue.positions()
    assert isinstance(info.value, VenueError)
    assert (info.value.endpoint, info.value.field) == (Endpoint.POSITIONS, field)
    await venue.positions()  # the glitch is over
    server.faults.mangle_next(Endpoint.POSITIONS, lambda body: [body])  # pybit itself trips on it
    with pytest.raises(VenueError):
        await venue.positions()


async def test_refused_stream_logins_never_starve_the_accounts_rest_calls(
    server: BybitServer, exchange: SimExchange
) -> None:
    """An account's API outage refuses stream logins; pybit then spins without bound waiting for a
    connection. Each attempt the stream gives up on must free its thread (the transport's, which
    REST calls need too): once the outage is over, REST answers and the stream comes back."""
    options = StreamOptions(
        ping_interval_s=0.5,
        stale_after_s=1.5,
        check_interval_s=0.05,
        reconnect_base_s=0.05,
        reconnect_max_s=0.1,
        connect_timeout_s=0.3,
    )
    venue = make_venue(server, threads=2, stream_options=options)
    try:
        events = venue.stream()
        seen: list[VenueEvent] = []
        await next_event(events, is_status(True, "connected"), seen)
        await server.set_outage("main", True)  # logins refused, the open stream cut
        await next_event(events, is_status(False), seen)
        await asyncio.sleep(2.0)  # many more attempts than the pool has threads
        await server.set_outage("main", False)
        wallet = await asyncio.wait_for(venue.wallet(), WAIT_S)  # a starved pool never answers
        assert wallet.equity > 0
        await next_event(events, is_status(True), seen)
    finally:
        await venue.close()


@pytest.mark.timeout(60)
async def test_closing_the_venue_during_a_stream_connect_ends_its_thread(server: BybitServer) -> None:
    """A connection attempt under way when the venue closes (the engine stopping during an account's
    outage) must end: pybit would spin on its pool thread forever and the process could never exit."""
    await server.set_outage("main", True)  # logins refused: pybit waits for a connection that never comes
    options = StreamOptions(connect_timeout_s=30.0, check_interval_s=0.05, reconnect_base_s=0.05)
    venue = make_venue(server, stream_options=options)
    events = venue.stream()
    first = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(1.0)  # the attempt is spinning; its 30 s bound is far away
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await venue.close()
    alive = []
    for _ in range(100):
        alive = [t.name for t in threading.enumerate() if t.name.startswith("bybit-main")]
        if not alive:
            break
        await asyncio.sleep(0.05)
    assert alive == []
