"""The WebSocket side of the fake Bybit V5 server: private and public connections, ops and pumps.

``/v5/private`` answers ``auth``, ``subscribe`` / ``unsubscribe`` and ``ping`` (topics execution, order,
position, wallet) and pushes each account's exchange events to its subscribers; ``/v5/public/linear``
serves ``tickers.SYMBOL``: a snapshot on subscribe, then deltas of the fields that changed. Tests
reach the connections through the server's switches: drop (closed or cut), mute (a half-dead link),
push a hand-made message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from engine.core.clock import Clock, now_ms
from engine.core.models import Execution, Order, Position, StreamStatus, VenueEvent, Wallet
from engine.sim.server.auth import KeyPair, account_names
from engine.sim.server.faults import ServerFaults
from engine.venue.bybit.wire import (
    CATEGORY,
    PRIVATE_TOPICS,
    PRIVATE_WS_PATH,
    PUBLIC_WS_PATH,
    JsonDict,
    execution_json,
    order_json,
    position_json,
    ticker_json,
    wallet_json,
)

if TYPE_CHECKING:
    from engine.sim.exchange import SimExchange


@dataclass(slots=True)
class _Conn:
    """One WebSocket connection: whose it is and what it subscribed to."""

    ws: web.WebSocketResponse
    request: web.Request
    conn_id: str
    account: str = ""
    topics: set[str] = field(default_factory=set)
    muted: bool = False
    tickers: dict[str, JsonDict] = field(default_factory=dict)
    """Public channel: the ticker each symbol was last sent at (deltas are relative to it)."""


class WebSocketApi:
    """The V5 WebSockets over one :class:`~engine.sim.exchange.SimExchange` (see the module doc).

    ``keys`` is the server's key table (the ``auth`` op checks against it); ``faults`` are the wire's
    switches, shared with the server; tickers are pushed every ``public_interval_s``.
    """

    def __init__(
        self,
        exchange: SimExchange,
        keys: Mapping[str, KeyPair],
        clock: Clock,
        faults: ServerFaults,
        *,
        public_interval_s: float = 0.25,
    ) -> None:
        self.exchange = exchange
        self.clock = clock
        self.faults = faults
        self.public_interval_s = public_interval_s
        self._keys = keys
        self._conn_ids = itertools.count(1)
        self._private: list[_Conn] = []
        self._public: list[_Conn] = []
        self._tasks: list[asyncio.Task[None]] = []
        # One sequence for private message ids and public "cs" fields: both only need to grow.
        self._cs = itertools.count(1)

    # --- life cycle ----------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        """Register the private and public WebSocket paths on ``app``."""
        app.router.add_get(PRIVATE_WS_PATH, self._ws_private)
        app.router.add_get(PUBLIC_WS_PATH, self._ws_public)

    def start(self) -> None:
        """Start the pumps: one per account the keys trade, and one for the public tickers."""
        for account in account_names(self._keys):
            self._tasks.append(asyncio.create_task(self._pump_private(account), name=f"v5-pump-{account}"))
        self._tasks.append(asyncio.create_task(self._pump_public(), name="v5-pump-public"))

    async def stop(self) -> None:
        """Stop the pumps and close every connection."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for conn in [*self._private, *self._public]:
            with contextlib.suppress(Exception):
                await conn.ws.close()

    # --- fault switches that act on connections ------------------------------------------------
    async def drop_streams(self, account: str, *, abrupt: bool = False) -> int:
        """Close the account's private WebSockets (``abrupt``: cut the TCP connection, no close frame).

        Events published while the client is away are lost to it, as on Bybit: it must backfill.
        """
        conns = [c for c in self._private if c.account == account]
        for conn in conns:
            self._private.remove(conn)
            if abrupt and conn.request.transport is not None:
                conn.request.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    await conn.ws.close()
        self.faults.drops += len(conns)
        return len(conns)

    async def push_raw(self, account: str, topic: str, data: list[Any]) -> None:
        """Send a hand-made private message (a test's malformed payload) to the account's subscribers."""
        message = {"id": "raw", "topic": topic, "creationTime": now_ms(self.clock), "data": data}
        for conn in [c for c in self._private if c.account == account and topic in c.topics]:
            await self._send(conn, message)

    def mute_streams(self, account: str) -> int:
        """Make the account's open private connections fall silent: no pongs, no replies, no events.

        The TCP connection stays up, so only the client's liveness check can notice.
        """
        conns = [c for c in self._private if c.account == account]
        for conn in conns:
            conn.muted = True
        return len(conns)

    def connections(self, account: str | None = None) -> int:
        """Open private connections (of one account, or all)."""
        return sum(1 for c in self._private if account is None or c.account == account)

    # --- connections ---------------------------------------------------------------------------
    async def _ws_private(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(request, private=True)

    async def _ws_public(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_ws(request, private=False)

    async def _serve_ws(self, request: web.Request, *, private: bool) -> web.StreamResponse:
        if self.faults.streams_blocked:
            return web.Response(status=503, text="stream service unavailable")
        # Pings are answered by hand, so a muted connection can fall silent (a half-dead link).
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        conn = _Conn(ws, request, conn_id=f"sim-{next(self._conn_ids)}")
        registry = self._private if private else self._public
        registry.append(conn)
        try:
            async for message in ws:
                if message.type == WSMsgType.PING:
                    if not conn.muted:
                        await ws.pong(message.data)
                    continue
                if message.type != WSMsgType.TEXT or conn.muted:
                    continue
                try:
                    payload = json.loads(message.data)
                except json.JSONDecodeError:
                    continue
                reply = self._on_ws_op(conn, payload, private)
                if reply is not None:
                    await ws.send_str(json.dumps(reply, separators=(",", ":")))
                if not private and payload.get("op") == "subscribe":
                    await self._send_snapshots(conn, payload.get("args") or [])
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if conn in registry:
                registry.remove(conn)
        return ws

    def _on_ws_op(self, conn: _Conn, payload: Mapping[str, Any], private: bool) -> JsonDict | None:
        op = payload.get("op")
        req_id = payload.get("req_id", "")
        base: JsonDict = {"conn_id": conn.conn_id, "req_id": req_id} if req_id else {"conn_id": conn.conn_id}
        if op == "ping":
            if private:
                return {**base, "op": "pong", "args": [str(now_ms(self.clock))]}
            return {**base, "success": True, "ret_msg": "pong", "op": "ping"}
        if op == "auth":
            ok, why = self._ws_auth(conn, payload.get("args") or [])
            return {**base, "success": ok, "ret_msg": why, "op": "auth"}
        if op in ("subscribe", "unsubscribe"):
            topics = [str(t) for t in payload.get("args") or []]
            if private and not conn.account:
                return {**base, "success": False, "ret_msg": "Request not authorized", "op": op}
            allowed = PRIVATE_TOPICS if private else None
            bad = [
                t
                for t in topics
                if (allowed is not None and t not in allowed)
                or (allowed is None and not self._is_ticker_topic(t))
            ]
            if bad:
                return {
                    **base,
                    "success": False,
                    "ret_msg": f"error:handler not found,topic:{bad[0]}",
                    "op": op,
                }
            if op == "subscribe":
                conn.topics.update(topics)
            else:
                conn.topics.difference_update(topics)
                for topic in topics:
                    conn.tickers.pop(topic.partition(".")[2], None)
            return {**base, "success": True, "ret_msg": "" if private else op, "op": op}
        return {**base, "success": False, "ret_msg": f"error:unknown op {op!r}", "op": str(op)}

    def _is_ticker_topic(self, topic: str) -> bool:
        prefix, _, symbol = topic.partition(".")
        return prefix == "tickers" and symbol in self.exchange.instruments

    def _ws_auth(self, conn: _Conn, args: list[Any]) -> tuple[bool, str]:
        if len(args) != 3:
            return False, "Params Error"
        key, expires, signature = str(args[0]), args[1], str(args[2])
        pair = self._keys.get(key)
        if pair is None:
            return False, "Invalid apikey"
        try:
            expires_ms = int(expires)
        except (TypeError, ValueError):
            return False, "Params Error"
        if expires_ms <= now_ms(self.clock):
            return False, "Request expired"
        if not pair.signed(f"GET/realtime{expires_ms}", signature):
            return False, "Invalid sign"
        if pair.account in self.faults.outages:
            return False, "Service unavailable"
        conn.account = pair.account
        return True, ""

    async def _send(self, conn: _Conn, message: JsonDict) -> None:
        try:
            await conn.ws.send_str(json.dumps(message, separators=(",", ":")))
        except (ConnectionResetError, RuntimeError):
            for registry in (self._private, self._public):
                if conn in registry:
                    registry.remove(conn)

    # --- pumps: exchange events -> WebSocket messages ---------------------------------------------
    def _private_message(self, event: VenueEvent) -> tuple[str, JsonDict] | None:
        if isinstance(event, Execution):
            return "execution", {
                "category": CATEGORY,
                **execution_json(event, self.exchange.instruments.get(event.symbol)),
            }
        if isinstance(event, Order):
            return "order", {
                "category": CATEGORY,
                **order_json(event, self.exchange.instruments.get(event.symbol)),
            }
        if isinstance(event, Position):
            item = position_json(event, self.exchange.instruments.get(event.symbol))
            return "position", {"category": CATEGORY, "entryPrice": item["avgPrice"], **item}
        if isinstance(event, Wallet):
            return "wallet", wallet_json(event)
        return None

    async def _pump_private(self, account: str) -> None:
        """Forward the account's exchange events to its subscribed private connections.

        When the exchange ends the subscription (its own drop_stream fault, or an overflow), the
        account's connections are closed as well — the wire sees the drop — and we subscribe again.
        """
        while True:
            queue = self.exchange.subscribe(account)
            dropped = False
            while not dropped:
                for event in await queue.get():
                    if isinstance(event, StreamStatus):
                        if not event.connected:
                            await self.drop_streams(account)
                            dropped = True
                            break
                        continue
                    await self._forward(account, event)

    async def _forward(self, account: str, event: VenueEvent) -> None:
        """Send one private event to the account's connections subscribed to its topic."""
        shaped = self._private_message(event)
        if shaped is None:
            return
        topic, item = shaped
        message = {
            "id": f"{account}-{next(self._cs)}",
            "topic": topic,
            "creationTime": now_ms(self.clock),
            "data": [item],
        }
        for conn in [c for c in self._private if c.account == account and topic in c.topics and not c.muted]:
            await self._send(conn, message)

    async def _send_snapshots(self, conn: _Conn, topics: list[Any]) -> None:
        for topic in topics:
            symbol = str(topic).partition(".")[2]
            if symbol in self.exchange.instruments:
                data = ticker_json(self.exchange.ticker(symbol), self.exchange.instruments.get(symbol))
                conn.tickers[symbol] = data
                await self._send(conn, self._ticker_message(symbol, data, "snapshot"))

    def _ticker_message(self, symbol: str, data: JsonDict, kind: str) -> JsonDict:
        return {
            "topic": f"tickers.{symbol}",
            "type": kind,
            "data": data,
            "cs": next(self._cs),
            "ts": now_ms(self.clock),
        }

    async def _pump_public(self) -> None:
        """Push each connection a ticker delta (the fields that changed since what it was last sent)."""
        while True:
            await self.clock.sleep(self.public_interval_s)
            current: dict[str, JsonDict] = {}
            for conn in list(self._public):
                for symbol, sent in list(conn.tickers.items()):
                    if symbol not in current:
                        current[symbol] = ticker_json(
                            self.exchange.ticker(symbol), self.exchange.instruments.get(symbol)
                        )
                    data = current[symbol]
                    delta = {k: v for k, v in data.items() if sent.get(k) != v}
                    if delta:
                        conn.tickers[symbol] = data
                        await self._send(
                            conn, self._ticker_message(symbol, {"symbol": symbol, **delta}, "delta")
                        )
