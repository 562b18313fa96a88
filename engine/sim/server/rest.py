"""A fake Bybit V5 server over the simulated exchange, so the real pybit client runs against it locally.

REST speaks Bybit's envelope ``{retCode, retMsg, result, retExtInfo, time}`` with its checks in
Bybit's order: API key (10003), timestamp within ``recv_window`` (10002), HMAC-SHA256 signature
(10004); then the per-endpoint rate limit (10006, with a reset time in the future), whose
``X-Bapi-Limit-Status`` / ``X-Bapi-Limit`` / ``X-Bapi-Limit-Reset-Timestamp`` headers go on every
response. Batch endpoints answer retCode 0 with one code per item in ``retExtInfo.list``.
WebSockets: ``/v5/private`` (auth, subscribe, ping/pong; topics execution, order, position, wallet)
and ``/v5/public/linear`` (``tickers.SYMBOL``). Accounts are told apart by API key.

Each HTTP response is one aiohttp ``Response``, whose headers and body leave in one write: a server
that writes them separately stalls 40 ms per call on loopback (Nagle + delayed ACK).

Fault injection for tests (:class:`ServerFaults`): added latency, error bursts (any retCode, e.g. a
10006 burst), HTTP 403 on every call, and dropped private streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from engine.core.clock import Clock, RealClock, now_ms
from engine.core.errors import BadInput
from engine.core.models import (
    Execution,
    Instrument,
    Order,
    OrderAck,
    Position,
    StreamStatus,
    VenueEvent,
    Wallet,
)
from engine.core.settings import Settings
from engine.sim.ratelimit import RateStatus
from engine.venue.base import MAX_BATCH, Endpoint
from engine.venue.bybit.keys import settings_prefix
from engine.venue.bybit.limits import HEADER_LIMIT, HEADER_RESET, HEADER_STATUS
from engine.venue.bybit.parse import parse_amend_request, parse_cancel_request, parse_order_request
from engine.venue.bybit.wire import (
    CATEGORY,
    JsonDict,
    envelope,
    execution_json,
    instrument_json,
    order_json,
    position_json,
    ticker_json,
    wallet_json,
)
from engine.venue.errors import InvalidRequest, RateLimited, VenueError, error_from_code

if TYPE_CHECKING:
    from engine.sim.exchange import SimExchange

log = logging.getLogger(__name__)

PUBLIC_PATH = "/v5/public/linear"
PRIVATE_PATH = "/v5/private"
PRIVATE_TOPICS = frozenset({"execution", "order", "position", "wallet"})
AUTH_FUTURE_TOLERANCE_MS = 1000
"""Bybit accepts a timestamp at most this far ahead of its clock (and ``recv_window`` behind it)."""
EXECUTION_LOOKBACK_S = 7 * 24 * 3600.0
"""Without startTime, /v5/execution/list answers the last 7 days."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """What the server knows of one API key: its secret and the account it trades."""

    secret: str
    account: str


# --- fault injection ----------------------------------------------------------------------------


@dataclass(slots=True)
class ServerFaults:
    """Faults only the wire has: added latency, HTTP 403 on every call, the reset time of injected 10006.

    Error bursts go through the exchange's own injector (:meth:`BybitServer.error_burst`), which the
    in-process venue shares, and stream drops through :meth:`BybitServer.drop_streams`.
    """

    latency_s: float = 0.0
    """Added to every REST response."""
    slow_calls: int = 0
    """The next this many REST calls are executed, then answered ``slow_s`` late (a response that
    outlives the client's timeout: the call landed, the client does not know)."""
    slow_s: float = 0.0
    forbidden: bool = False
    """Answer every REST call with HTTP 403, as Bybit does to a banned IP."""
    streams_blocked: bool = False
    """Refuse WebSocket upgrades (HTTP 503), so a dropped client stays away until this is cleared."""
    rate_limit_reset_s: float = 1.0
    """How far in the future an injected 10006 says the budget refills."""
    drops: int = 0

    def delay_next(self, calls: int, seconds: float) -> None:
        """Answer the next ``calls`` REST calls ``seconds`` late (they execute at once)."""
        self.slow_calls, self.slow_s = calls, seconds

    def _late_answer(self) -> float:
        if self.slow_calls <= 0:
            return 0.0
        self.slow_calls -= 1
        return self.slow_s


_DEFAULT_MESSAGES = {
    10000: "Server Timeout",
    10006: "Too many visits!",
    10016: "Internal system error.",
}


# --- the server ---------------------------------------------------------------------------------


class _Reject(Exception):
    """A request refused before it reached the exchange (auth, parameters, rate limit)."""

    def __init__(self, code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


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


Handler = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


class BybitServer:
    """The fake V5 server for one :class:`~engine.sim.exchange.SimExchange`.

    ``keys`` maps API key -> (secret, account name). ``clock`` is the server's time: it stamps
    envelopes and judges request timestamps (a test skews it to provoke 10002).
    """

    def __init__(
        self,
        exchange: SimExchange,
        keys: Mapping[str, tuple[str, str]],
        clock: Clock,
        *,
        public_interval_s: float = 0.25,
    ) -> None:
        self.exchange = exchange
        self.clock = clock
        self.keys = {key: KeyPair(secret, account) for key, (secret, account) in keys.items()}
        self.faults = ServerFaults()
        self.public_interval_s = public_interval_s
        self.requests = 0
        self.base_url = ""
        self.ws_url = ""
        self._conn_ids = itertools.count(1)
        self._private: list[_Conn] = []
        self._public: list[_Conn] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._cs = itertools.count(1)
        self._routes: dict[tuple[str, str], tuple[Handler | None, bool]] = {
            ("GET", "/v5/market/time"): (None, False),
            ("GET", Endpoint.INSTRUMENTS): (self._instruments, False),
            ("GET", Endpoint.TICKERS): (self._tickers, False),
            ("GET", Endpoint.WALLET): (self._wallet, True),
            ("GET", Endpoint.POSITIONS): (self._positions, True),
            ("GET", Endpoint.OPEN_ORDERS): (self._open_orders, True),
            ("GET", Endpoint.EXECUTIONS): (self._executions, True),
            ("POST", Endpoint.CREATE): (self._create, True),
            ("POST", Endpoint.AMEND): (self._amend, True),
            ("POST", Endpoint.CANCEL): (self._cancel, True),
            ("POST", Endpoint.CANCEL_ALL): (self._cancel_all, True),
            ("POST", Endpoint.CREATE_BATCH): (self._create_batch, True),
            ("POST", Endpoint.AMEND_BATCH): (self._amend_batch, True),
            ("POST", Endpoint.CANCEL_BATCH): (self._cancel_batch, True),
            ("POST", Endpoint.SET_LEVERAGE): (self._set_leverage, True),
        }

    # --- life cycle ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application (REST routes and the two WebSocket paths)."""
        app = web.Application()
        app.router.add_get(PRIVATE_PATH, self._ws_private)
        app.router.add_get(PUBLIC_PATH, self._ws_public)
        for method, path in self._routes:
            app.router.add_route(method, path, self._rest)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = a free port) and start the stream pumps; returns the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1] if sockets else port
        self.base_url = f"http://{host}:{bound_port}"
        self.ws_url = f"ws://{host}:{bound_port}"
        for account in sorted({pair.account for pair in self.keys.values()}):
            self._tasks.append(asyncio.create_task(self._pump_private(account), name=f"v5-pump-{account}"))
        self._tasks.append(asyncio.create_task(self._pump_public(), name="v5-pump-public"))
        return self.base_url

    async def stop(self) -> None:
        """Stop the pumps, close every WebSocket and the listener."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for conn in [*self._private, *self._public]:
            with contextlib.suppress(Exception):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- fault switches that act on connections ----------------------------------------------------
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

    # --- REST --------------------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.Response:
        self.requests += 1
        latency = self.faults.latency_s + self.exchange.latency_s()
        if latency > 0:
            await self.clock.sleep(latency)
        response = await self._answer(request)
        late = self.faults._late_answer()
        if late > 0:
            await self.clock.sleep(late)
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        if self.faults.forbidden:
            return web.Response(status=403, text="403 Forbidden", content_type="text/html")
        handler, private = self._routes[(request.method, request.path)]
        raw = await request.text() if request.method == "POST" else request.rel_url.raw_query_string
        headers: dict[str, str] = {}
        try:
            params = self._params(request, raw)
            if handler is None:
                return self._reply(0, "OK", self._server_time(), headers)
            account = ""
            admitted = 0
            if private:
                account = self._authenticate(request, raw)
                admitted = self._admit(account, request.path, params)
                headers = self._limit_headers(self.exchange.rate_status(account, request.path))
            result, ext = await self._dispatch(handler, account, params, admitted)
            return self._reply(0, "OK", result, headers, ext)
        except _Reject as reject:
            return self._reply(reject.code, reject.message, {}, {**headers, **reject.headers})
        except VenueError as exc:
            return self._reply(exc.code or 10001, exc.message, {}, headers)

    def _reply(
        self, code: int, message: str, result: Any, headers: Mapping[str, str], ext: Any = None
    ) -> web.Response:
        body = json.dumps(envelope(code, message, result, now_ms(self.clock), ext), separators=(",", ":"))
        return web.Response(text=body, content_type="application/json", headers=headers)

    def _server_time(self) -> JsonDict:
        now = self.clock.now()
        return {"timeSecond": str(int(now)), "timeNano": str(int(now * 1_000_000_000))}

    @staticmethod
    def _params(request: web.Request, raw: str) -> Mapping[str, Any]:
        if request.method == "GET":
            return request.query
        try:
            params = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise _Reject(10001, "params error: body is not valid JSON") from None
        if not isinstance(params, dict):
            raise _Reject(10001, "params error: body must be a JSON object")
        return params

    def _authenticate(self, request: web.Request, raw: str) -> str:
        """Bybit's checks, in Bybit's order: key (10003), timestamp (10002), signature (10004)."""
        key = request.headers.get("X-BAPI-API-KEY", "")
        pair = self.keys.get(key)
        if pair is None:
            raise _Reject(10003, "API key is invalid.")
        try:
            timestamp = int(request.headers.get("X-BAPI-TIMESTAMP", ""))
            recv_window = int(request.headers.get("X-BAPI-RECV-WINDOW", "5000"))
        except ValueError:
            raise _Reject(
                10001, "params error: X-BAPI-TIMESTAMP and X-BAPI-RECV-WINDOW must be integers"
            ) from None
        server_ms = now_ms(self.clock)
        if not server_ms - recv_window <= timestamp < server_ms + AUTH_FUTURE_TOLERANCE_MS:
            raise _Reject(
                10002,
                "invalid request, please check your server timestamp or recv_window param. "
                f"req_timestamp[{timestamp}],server_timestamp[{server_ms}],recv_window[{recv_window}]",
            )
        origin = f"{timestamp}{key}{recv_window}{raw}"
        expected = hmac.new(pair.secret.encode(), origin.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-BAPI-SIGN", "")):
            raise _Reject(10004, f"error sign! origin_string[{origin}]")
        return pair.account

    def error_burst(
        self, account: str, n: int, code: int, message: str = "", endpoints: Collection[str] | None = None
    ) -> None:
        """Answer the account's next ``n`` REST calls (to ``endpoints`` when given) with ``code``."""
        text = message or _DEFAULT_MESSAGES.get(code, "error")
        self.exchange.inject_errors(account, n, error_from_code(code, text), endpoints)

    def _admit(self, account: str, path: str, params: Mapping[str, Any]) -> int:
        """The exchange's gateway: injected faults, then the rate budget (one unit per batch item).

        Returns how many batch items fit the budget (the rest fail one by one with 10006, as on
        Bybit); a refusal becomes a 10006 answer whose reset time is in the future.
        """
        try:
            if path.endswith("-batch"):
                items = params.get("request")
                return self.exchange.admit_batch(
                    account, path, max(1, len(items) if isinstance(items, list) else 1)
                )
            self.exchange.admit(account, path)
            return 1
        except RateLimited as exc:
            now = self.clock.now()
            status = self.exchange.rate_status(account, path)
            reset_at = exc.reset_at if exc.reset_at is not None and exc.reset_at > now else None
            if reset_at is None:
                reset_at = max(status.reset_at, now + self.faults.rate_limit_reset_s)
            headers = self._limit_headers(RateStatus(status.limit, 0, reset_at))
            raise _Reject(exc.code, exc.message, headers) from None

    def _limit_headers(self, status: RateStatus) -> dict[str, str]:
        # While budget remains Bybit puts the current time in the reset header.
        reset_at = status.reset_at if status.remaining == 0 else self.clock.now()
        return {
            HEADER_STATUS: str(status.remaining),
            HEADER_LIMIT: str(status.limit),
            HEADER_RESET: str(round(reset_at * 1000)),
        }

    async def _dispatch(
        self, handler: Handler, account: str, params: Mapping[str, Any], admitted: int
    ) -> tuple[Any, Any]:
        if "category" in params and params["category"] != CATEGORY:
            raise _Reject(10001, "params error: only category=linear is simulated")
        outcome = await handler(account, _WithAdmitted(params, admitted))
        return outcome if isinstance(outcome, tuple) else (outcome, None)

    # --- REST handlers (the exchange calls are synchronous and fast) -------------------------------
    def _instrument(self, symbol: str) -> Instrument | None:
        return self.exchange.instruments.get(symbol)

    def _symbols(self, params: Mapping[str, Any]) -> list[str]:
        symbol = params.get("symbol")
        if symbol:
            if symbol not in self.exchange.instruments:
                raise _Reject(10001, f"params error: symbol invalid: {symbol}")
            return [symbol]
        return sorted(self.exchange.instruments)

    async def _instruments(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        items = [instrument_json(self.exchange.instruments[s]) for s in self._symbols(params)]
        return {"category": CATEGORY, "list": items, "nextPageCursor": ""}

    async def _tickers(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        items = [ticker_json(self.exchange.ticker(s), self._instrument(s)) for s in self._symbols(params)]
        return {"category": CATEGORY, "list": items}

    async def _wallet(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        if params.get("accountType") != "UNIFIED":
            raise _Reject(10001, "accountType only support UNIFIED.")
        return {"list": [wallet_json(self.exchange.wallet(account))]}

    @staticmethod
    def _require_scope(params: Mapping[str, Any]) -> str | None:
        symbol = params.get("symbol") or None
        if symbol is None and not params.get("settleCoin"):
            raise _Reject(10001, "Missing some parameters that must be filled in, symbol or settleCoin")
        return symbol

    async def _positions(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        symbol = self._require_scope(params)
        # Asked by name, a flat symbol is listed too (side ""), as Bybit does.
        positions = self.exchange.positions(account, symbol)
        page, cursor = _page(positions, params, default=20, maximum=200)
        items = [position_json(p, self._instrument(p.symbol)) for p in page]
        return {"category": CATEGORY, "list": items, "nextPageCursor": cursor}

    async def _open_orders(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        symbol = params.get("symbol") or None
        if symbol is None and not params.get("settleCoin") and not params.get("baseCoin"):
            raise _Reject(10001, "Missing some parameters that must be filled in, symbol or settleCoin")
        order_id, link_id = str(params.get("orderId") or ""), str(params.get("orderLinkId") or "")
        orders: list[Order]
        if order_id or link_id:
            # By id Bybit also finds a recently finished order.
            found = self.exchange.get_order(account, order_id, link_id)
            orders = [found] if found is not None and (symbol is None or found.symbol == symbol) else []
        else:
            orders = self.exchange.open_orders(account, symbol)
        page, cursor = _page(orders, params, default=20, maximum=50)
        items = [order_json(o, self._instrument(o.symbol)) for o in page]
        return {"category": CATEGORY, "list": items, "nextPageCursor": cursor}

    async def _executions(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        now = self.clock.now()
        since = int(params["startTime"]) / 1000 if params.get("startTime") else now - EXECUTION_LOOKBACK_S
        until = int(params["endTime"]) / 1000 if params.get("endTime") else float("inf")
        fills: list[Execution] = self.exchange.executions(account, since, params.get("symbol") or None)
        newest_first = sorted((f for f in fills if f.ts <= until), key=lambda f: f.ts, reverse=True)
        page, cursor = _page(newest_first, params, default=50, maximum=100)
        items = [execution_json(f, self._instrument(f.symbol)) for f in page]
        return {"category": CATEGORY, "list": items, "nextPageCursor": cursor}

    async def _create(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        return _ack_json(self.exchange.place(account, parse_order_request(params)))

    async def _amend(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        return _ack_json(self.exchange.amend(account, parse_amend_request(params)))

    async def _cancel(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        return _ack_json(self.exchange.cancel(account, parse_cancel_request(params)))

    async def _cancel_all(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        symbol = params.get("symbol")
        if symbol:
            symbols = [symbol]
        elif params.get("settleCoin"):
            symbols = sorted({o.symbol for o in self.exchange.open_orders(account)})
        else:
            raise _Reject(10001, "Missing some parameters that must be filled in, symbol or settleCoin")
        acks: list[OrderAck] = []
        for name in symbols:
            acks.extend(self.exchange.cancel_all(account, name))
        return {"list": [_ack_json(a) for a in acks], "success": "1"}

    async def _batch(
        self, account: str, params: Mapping[str, Any], apply: Callable[[Mapping[str, Any]], OrderAck]
    ) -> tuple[JsonDict, JsonDict]:
        items = params.get("request")
        if not isinstance(items, list) or not items:
            raise _Reject(10001, "params error: request must be a non-empty list")
        if len(items) > MAX_BATCH:
            raise _Reject(10001, f"params error: at most {MAX_BATCH} orders per batch")
        admitted = params.admitted if isinstance(params, _WithAdmitted) else len(items)
        results: list[JsonDict] = []
        codes: list[JsonDict] = []
        for index, item in enumerate(items):
            symbol = item.get("symbol", "") if isinstance(item, dict) else ""
            try:
                if index >= admitted:
                    raise RateLimited("Too many visits!")
                if not isinstance(item, dict):
                    raise InvalidRequest("params error: each request item must be an object", 10001)
                ack = apply(item)
            except VenueError as exc:
                results.append(
                    {"category": CATEGORY, "symbol": symbol, "orderId": "", "orderLinkId": "", "createAt": ""}
                )
                codes.append({"code": exc.code or 10001, "msg": exc.message})
                continue
            results.append(
                {
                    "category": CATEGORY,
                    "symbol": symbol,
                    **_ack_json(ack),
                    "createAt": str(now_ms(self.clock)),
                }
            )
            codes.append({"code": 0, "msg": "OK"})
        return {"list": results}, {"list": codes}

    async def _create_batch(self, account: str, params: Mapping[str, Any]) -> tuple[JsonDict, JsonDict]:
        return await self._batch(
            account, params, lambda p: self.exchange.place(account, parse_order_request(p))
        )

    async def _amend_batch(self, account: str, params: Mapping[str, Any]) -> tuple[JsonDict, JsonDict]:
        return await self._batch(
            account, params, lambda p: self.exchange.amend(account, parse_amend_request(p))
        )

    async def _cancel_batch(self, account: str, params: Mapping[str, Any]) -> tuple[JsonDict, JsonDict]:
        return await self._batch(
            account, params, lambda p: self.exchange.cancel(account, parse_cancel_request(p))
        )

    async def _set_leverage(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        symbol = params.get("symbol")
        if not symbol or not params.get("buyLeverage"):
            raise InvalidRequest("params error: symbol and buyLeverage are required", 10001)
        if params.get("buyLeverage") != params.get("sellLeverage", params.get("buyLeverage")):
            raise InvalidRequest("buy leverage not equal sell leverage in one-way mode", 10001)
        try:
            leverage = float(params["buyLeverage"])
        except (TypeError, ValueError):
            raise InvalidRequest("params error: buyLeverage must be a number", 10001) from None
        self.exchange.set_leverage(account, symbol, leverage)
        return {}

    # --- WebSockets ----------------------------------------------------------------------------------
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
        pair = self.keys.get(key)
        if pair is None:
            return False, "Invalid apikey"
        try:
            expires_ms = int(expires)
        except (TypeError, ValueError):
            return False, "Params Error"
        if expires_ms <= now_ms(self.clock):
            return False, "Request expired"
        expected = hmac.new(
            pair.secret.encode(), f"GET/realtime{expires_ms}".encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return False, "Invalid sign"
        conn.account = pair.account
        return True, ""

    async def _send(self, conn: _Conn, message: JsonDict) -> None:
        try:
            await conn.ws.send_str(json.dumps(message, separators=(",", ":")))
        except (ConnectionResetError, RuntimeError):
            for registry in (self._private, self._public):
                if conn in registry:
                    registry.remove(conn)

    # --- pumps: exchange events -> WebSocket messages --------------------------------------------------
    def _private_message(self, event: VenueEvent) -> tuple[str, JsonDict] | None:
        if isinstance(event, Execution):
            return "execution", {
                "category": CATEGORY,
                **execution_json(event, self._instrument(event.symbol)),
            }
        if isinstance(event, Order):
            return "order", {"category": CATEGORY, **order_json(event, self._instrument(event.symbol))}
        if isinstance(event, Position):
            item = position_json(event, self._instrument(event.symbol))
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
            while True:
                event = await queue.get()
                if isinstance(event, StreamStatus):
                    if not event.connected:
                        await self.drop_streams(account)
                        break
                    continue
                shaped = self._private_message(event)
                if shaped is None:
                    continue
                topic, item = shaped
                message = {
                    "id": f"{account}-{next(self._cs)}",
                    "topic": topic,
                    "creationTime": now_ms(self.clock),
                    "data": [item],
                }
                for conn in [
                    c for c in self._private if c.account == account and topic in c.topics and not c.muted
                ]:
                    await self._send(conn, message)

    async def _send_snapshots(self, conn: _Conn, topics: list[Any]) -> None:
        for topic in topics:
            symbol = str(topic).partition(".")[2]
            if symbol in self.exchange.instruments:
                data = ticker_json(self.exchange.ticker(symbol), self._instrument(symbol))
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
                        current[symbol] = ticker_json(self.exchange.ticker(symbol), self._instrument(symbol))
                    data = current[symbol]
                    delta = {k: v for k, v in data.items() if sent.get(k) != v}
                    if delta:
                        conn.tickers[symbol] = data
                        await self._send(
                            conn, self._ticker_message(symbol, {"symbol": symbol, **delta}, "delta")
                        )


class _WithAdmitted(dict[str, Any]):
    """Request parameters, plus how many batch items the rate budget admitted."""

    def __init__(self, params: Mapping[str, Any], admitted: int) -> None:
        super().__init__(params)
        self.admitted = admitted


def _ack_json(ack: OrderAck) -> JsonDict:
    return {"orderId": ack.order_id, "orderLinkId": ack.link_id}


def _page(
    items: list[Any], params: Mapping[str, Any], *, default: int, maximum: int
) -> tuple[list[Any], str]:
    """One page of ``items`` by Bybit's ``limit`` / ``cursor`` (an opaque offset here)."""
    try:
        limit = int(params.get("limit") or default)
        start = int(params.get("cursor") or 0)
    except (TypeError, ValueError):
        raise _Reject(10001, "params error: limit and cursor must be integers") from None
    limit = max(1, min(maximum, limit))
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else "")


# --- running it ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serving(server: BybitServer, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run ``server`` for the block (on a free port by default) and yield its base URL."""
    url = await server.start(host, port)
    try:
        yield url
    finally:
        await server.stop()


def keys_from_env(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """The key pairs the server accepts, read from the variables the client reads (main required)."""
    env = os.environ if env is None else env
    keys: dict[str, tuple[str, str]] = {}
    accounts = ["main", "mirror"] if settings.get("mirror.enabled") else ["main"]
    for account in accounts:
        prefix = settings_prefix(account)
        key_env, secret_env = settings.get(f"{prefix}.api_key_env"), settings.get(f"{prefix}.api_secret_env")
        key, secret = env.get(key_env, ""), env.get(secret_env, "")
        if key and secret:
            keys[key] = (secret, account)
        elif account == "main":
            raise BadInput(
                f"{prefix}.api_key_env",
                f"set ${key_env} and ${secret_env}: the server accepts the same key pairs the client uses",
            )
    return keys


async def serve(
    settings: Settings,
    host: str,
    port: int,
    state_dir: Path,
    *,
    ready: Callable[[BybitServer], None] | None = None,
) -> None:
    """Run the fake V5 server over a simulated exchange until cancelled (``opconsole sim-server``)."""
    from engine.sim.exchange import SimExchange

    keys = keys_from_env(settings)
    clock = RealClock()
    exchange = SimExchange.from_settings(settings, clock, state_dir)
    balances = settings.section("sim.balances")
    for _secret, account in keys.values():
        exchange.ensure_account(account, balances.get(account))
    server = BybitServer(exchange, keys, clock)
    running = asyncio.create_task(exchange.run(), name="sim-exchange")
    try:
        async with serving(server, host, port):
            if ready is not None:
                ready(server)
            await asyncio.Event().wait()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        exchange.save()


def main(settings: Settings, host: str, port: int, state_dir: Path) -> int:
    """``opconsole sim-server``: serve until interrupted; prints where it listens."""

    def announce(server: BybitServer) -> None:
        accounts = ", ".join(sorted({pair.account for pair in server.keys.values()}))
        print(
            f"opconsole sim-server: REST {server.base_url}  WebSocket {server.ws_url}  accounts: {accounts}\n"
            f'point the console at it with venue.kind = "bybit", venue.base_url = "{server.base_url}", '
            f'venue.ws_url = "{server.ws_url}"',
            flush=True,
        )

    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, host, port, state_dir, ready=announce))
    return 0
