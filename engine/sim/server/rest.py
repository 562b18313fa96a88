"""The REST side of the fake Bybit V5 server: routing, authentication, admission, endpoint handlers.

It speaks Bybit's envelope ``{retCode, retMsg, result, retExtInfo, time}`` with its checks in Bybit's
order: API key (10003), timestamp within ``recv_window`` (10002), HMAC-SHA256 signature (10004); then
the per-endpoint rate limit (10006, with a reset time in the future), whose ``X-Bapi-Limit-Status`` /
``X-Bapi-Limit`` / ``X-Bapi-Limit-Reset-Timestamp`` headers go on every response. Batch endpoints
answer retCode 0 with one code per item in ``retExtInfo.list``. Accounts are told apart by API key.

Each HTTP response is one aiohttp ``Response``, whose headers and body leave in one write: a server
that writes them separately stalls 40 ms per call on loopback (Nagle + delayed ACK).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from engine.core.clock import Clock, now_ms
from engine.core.models import Execution, Order, OrderAck, Position
from engine.sim.ratelimit import RateStatus
from engine.sim.server.auth import KeyPair
from engine.sim.server.faults import ServerFaults
from engine.venue.base import MAX_BATCH, Endpoint
from engine.venue.bybit.limits import HEADER_LIMIT, HEADER_RESET, HEADER_STATUS
from engine.venue.bybit.parse import parse_amend_request, parse_cancel_request, parse_order_request
from engine.venue.bybit.wire import (
    CATEGORY,
    SERVER_TIME,
    JsonDict,
    envelope,
    execution_json,
    instrument_json,
    order_json,
    position_json,
    ticker_json,
    wallet_json,
)
from engine.venue.errors import InvalidRequest, RateLimited, VenueError

if TYPE_CHECKING:
    from engine.sim.exchange import SimExchange

AUTH_FUTURE_TOLERANCE_MS = 1000
"""Bybit accepts a timestamp at most this far ahead of its clock (and ``recv_window`` behind it)."""
EXECUTION_LOOKBACK_S = 7 * 24 * 3600.0
"""Without startTime, /v5/execution/list answers the last 7 days."""


class _Reject(Exception):
    """A request refused before it reached the exchange (auth, parameters, rate limit)."""

    def __init__(self, code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


Handler = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


class RestApi:
    """The V5 REST endpoints over one :class:`~engine.sim.exchange.SimExchange` (see the module doc).

    ``keys`` is the server's key table; ``clock`` stamps envelopes and judges request timestamps (a
    test skews it to provoke 10002); ``faults`` are the wire's switches, shared with the server.
    """

    def __init__(
        self, exchange: SimExchange, keys: Mapping[str, KeyPair], clock: Clock, faults: ServerFaults
    ) -> None:
        self.exchange = exchange
        self.clock = clock
        self.faults = faults
        self.requests = 0
        """REST calls received (refused ones included)."""
        self.raw_rows: dict[tuple[str, str], list[JsonDict]] = {}
        """Hand-made rows by (account, endpoint path), put at the head of that list's first page
        (account "" for the public endpoints); for the wallet, they replace the account's entry.
        A test's way to serve Bybit's shapes the simulator does not make (funding rows, hedge-mode
        positions, a wallet funded in USDC, an instrument with a zero step)."""
        self._keys = keys
        # method, path -> (handler, whether the call is signed); the server time needs no handler.
        self._routes: dict[tuple[str, str], tuple[Handler | None, bool]] = {
            ("GET", SERVER_TIME): (None, False),
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

    def add_routes(self, app: web.Application) -> None:
        """Register every REST route on ``app``."""
        for method, path in self._routes:
            app.router.add_route(method, path, self._rest)

    # --- one request: faults, envelope, authentication, admission ------------------------------
    async def _rest(self, request: web.Request) -> web.Response:
        """Every REST route: the wire's faults around :meth:`_answer`."""
        self.requests += 1
        latency = self.faults.latency_s + self.exchange.latency_s()
        if latency > 0:
            await self.clock.sleep(latency)
        response = await self._answer(request)
        if isinstance(response.text, str) and self.faults.edits.get(request.path):
            response.text = self.faults.mangled(request.path, response.text)
        late = self.faults.late_answer()
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
            flaky = None
            if private:
                account = self._authenticate(request, raw)
                if account in self.faults.outages:
                    self.faults.injected["outage"] += 1
                    return web.Response(status=503, text="503 Service Unavailable", content_type="text/html")
                flaky = self.faults.flaky()
                if flaky == "error":
                    return self._reply(10016, "Internal system error.", {}, headers)
                admitted = self._admit(account, request.path, params)
                headers = self._limit_headers(self.exchange.rate_status(account, request.path))
            result, ext = await self._dispatch(handler, account, params, admitted)
            if flaky == "timeout":  # executed; the answer comes after the client gave up
                await self.clock.sleep(self.faults.flaky_late_s)
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
        pair = self._keys.get(key)
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
        if not pair.signed(origin, request.headers.get("X-BAPI-SIGN", "")):
            raise _Reject(10004, f"error sign! origin_string[{origin}]")
        return pair.account

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

    # --- endpoint handlers (the exchange calls are synchronous and fast) ------------------------
    def _symbols(self, params: Mapping[str, Any]) -> list[str]:
        symbol = params.get("symbol")
        if symbol:
            if symbol not in self.exchange.instruments:
                raise _Reject(10001, f"params error: symbol invalid: {symbol}")
            return [symbol]
        return sorted(self.exchange.instruments)

    def _raw(self, account: str, path: str, params: Mapping[str, Any]) -> list[JsonDict]:
        """The hand-made rows of ``path`` for the first page of a list (see :attr:`raw_rows`)."""
        if params.get("cursor") not in (None, "", "0"):
            return []
        symbol = params.get("symbol") or None
        rows = self.raw_rows.get((account, path), [])
        return [r for r in rows if symbol is None or not isinstance(r, dict) or r.get("symbol") == symbol]

    async def _instruments(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        raw = self._raw("", Endpoint.INSTRUMENTS, params)
        names = {r.get("symbol") for r in raw if isinstance(r, dict)}
        symbols = [s for s in self._symbols(params) if s not in names] if names else self._symbols(params)
        # Paged as Bybit pages it (limit 1-1000, default 500): with many synthetic symbols a client
        # that reads one page only would miss listings.
        page, cursor = _page(symbols, params, rank=lambda s: (s,), ident=str, default=500, maximum=1000)
        items = raw + [instrument_json(self.exchange.instruments[s]) for s in page]
        return {"category": CATEGORY, "list": items, "nextPageCursor": cursor}

    async def _tickers(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        items = [
            ticker_json(self.exchange.ticker(s), self.exchange.instruments.get(s))
            for s in self._symbols(params)
        ]
        return {"category": CATEGORY, "list": self._raw("", Endpoint.TICKERS, params) + items}

    async def _wallet(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        if params.get("accountType") != "UNIFIED":
            raise _Reject(10001, "accountType only support UNIFIED.")
        raw = self._raw(account, Endpoint.WALLET, {})
        return {"list": raw or [wallet_json(self.exchange.wallet(account))]}

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
        page, cursor = _page(
            positions,
            params,
            rank=_position_rank,
            ident=lambda p: f"{p.symbol}:{p.position_idx}",
            default=20,
            maximum=200,
        )
        items = [position_json(p, self.exchange.instruments.get(p.symbol)) for p in page]
        items = self._raw(account, Endpoint.POSITIONS, params) + items
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
        # (created, orderId): the order's key for as long as it lives; unique, so the cursor is exact
        page, cursor = _page(
            orders,
            params,
            rank=lambda o: (o.created, o.order_id),
            ident=lambda o: o.order_id,
            default=20,
            maximum=50,
        )
        items = [order_json(o, self.exchange.instruments.get(o.symbol)) for o in page]
        if not order_id and not link_id:
            items = self._raw(account, Endpoint.OPEN_ORDERS, params) + items
        return {"category": CATEGORY, "list": items, "nextPageCursor": cursor}

    async def _executions(self, account: str, params: Mapping[str, Any]) -> JsonDict:
        now = self.clock.now()
        since = int(params["startTime"]) / 1000 if params.get("startTime") else now - EXECUTION_LOOKBACK_S
        until = int(params["endTime"]) / 1000 if params.get("endTime") else float("inf")
        fills: list[Execution] = self.exchange.executions(account, since, params.get("symbol") or None)
        # Newest first, fills of one instant too (the list is oldest first): the venue reverses it to
        # get them in the order they happened. Ranked by time alone, so those ties keep that order.
        newest_first = [f for f in reversed(fills) if f.ts <= until]
        page, cursor = _page(
            newest_first,
            params,
            rank=lambda f: (f.ts,),
            ident=lambda f: f.exec_id,
            default=50,
            maximum=100,
            newest_first=True,
        )
        items = [execution_json(f, self.exchange.instruments.get(f.symbol)) for f in page]
        items = self._raw(account, Endpoint.EXECUTIONS, params) + items
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
        with self.exchange.acknowledged_together(account):
            for name in symbols:
                acks.extend(self.exchange.cancel_all(account, name))
        return {"list": [_ack_json(a) for a in acks], "success": "1"}

    async def _batch(
        self,
        account: str,
        params: Mapping[str, Any],
        apply: Callable[[Mapping[str, Any]], OrderAck],
        endpoint: str,
    ) -> tuple[JsonDict, JsonDict]:
        items = params.get("request")
        if not isinstance(items, list) or not items:
            raise _Reject(10001, "params error: request must be a non-empty list")
        if len(items) > MAX_BATCH:
            raise _Reject(10001, f"params error: at most {MAX_BATCH} orders per batch")
        admitted = params.admitted if isinstance(params, _WithAdmitted) else len(items)
        results: list[JsonDict] = []
        codes: list[JsonDict] = []
        with self.exchange.acknowledged_together(account):
            for index, item in enumerate(items):
                symbol = item.get("symbol", "") if isinstance(item, dict) else ""
                try:
                    if index >= admitted:
                        raise RateLimited("Too many visits!")
                    if not isinstance(item, dict):
                        raise InvalidRequest("params error: each request item must be an object", 10001)
                    self.exchange.check_item_fault(account, endpoint)
                    ack = apply(item)
                except VenueError as exc:
                    results.append(
                        {
                            "category": CATEGORY,
                            "symbol": symbol,
                            "orderId": "",
                            "orderLinkId": "",
                            "createAt": "",
                        }
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
            account,
            params,
            lambda p: self.exchange.place(account, parse_order_request(p)),
            Endpoint.CREATE_BATCH,
        )

    async def _amend_batch(self, account: str, params: Mapping[str, Any]) -> tuple[JsonDict, JsonDict]:
        return await self._batch(
            account,
            params,
            lambda p: self.exchange.amend(account, parse_amend_request(p)),
            Endpoint.AMEND_BATCH,
        )

    async def _cancel_batch(self, account: str, params: Mapping[str, Any]) -> tuple[JsonDict, JsonDict]:
        return await self._batch(
            account,
            params,
            lambda p: self.exchange.cancel(account, parse_cancel_request(p)),
            Endpoint.CANCEL_BATCH,
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


class _WithAdmitted(dict[str, Any]):
    """Request parameters, plus how many batch items the rate budget admitted."""

    def __init__(self, params: Mapping[str, Any], admitted: int) -> None:
        super().__init__(params)
        self.admitted = admitted


def _ack_json(ack: OrderAck) -> JsonDict:
    return {"orderId": ack.order_id, "orderLinkId": ack.link_id}


T = TypeVar("T")
Rank = tuple[str | float, ...]
"""Where an item sorts in its listing (a time, a symbol, an id), as the cursor carries it."""


def _position_rank(p: Position) -> Rank:
    return (p.symbol, p.position_idx)


def _page(
    items: Sequence[T],
    params: Mapping[str, Any],
    *,
    rank: Callable[[T], Rank],
    ident: Callable[[T], str],
    default: int,
    maximum: int,
    newest_first: bool = False,
) -> tuple[list[T], str]:
    """One page of ``items`` by Bybit's ``limit`` / ``cursor``, the cursor naming the last item returned.

    The listing is ``items`` sorted by ``rank`` (descending when ``newest_first``); the sort is stable,
    so items of equal rank keep the order they come in. The next page starts right after the
    cursor's item (``ident``), wherever it is now: an item removed meanwhile (cancelled, filled) shifts
    nothing, so no item listed throughout is skipped, as on Bybit (whose cursor is the last
    ``orderId``). When the cursor's item itself is gone, the page starts at the first item not
    ranked before it: exact when ranks are unique, otherwise its ties may come again (never skipped).
    An item created meanwhile is listed if it sorts after the cursor: a paged read is no snapshot.
    """
    try:
        limit = int(params.get("limit") or default)
    except (TypeError, ValueError):
        raise _Reject(10001, "params error: limit must be an integer") from None
    limit = max(1, min(maximum, limit))
    ordered = sorted(items, key=rank, reverse=newest_first)
    start = 0
    after = _decode_cursor(params.get("cursor"))
    if after is not None:
        last_rank, last_id = after
        start = next((n + 1 for n, item in enumerate(ordered) if ident(item) == last_id), -1)
        if start < 0:
            try:
                start = next(
                    (
                        n
                        for n, item in enumerate(ordered)
                        if not _ranked_before(rank(item), last_rank, newest_first)
                    ),
                    len(ordered),
                )
            except TypeError:  # a rank of another listing's shape
                raise _Reject(10001, "params error: cursor invalid") from None
    page = ordered[start : start + limit]
    more = start + limit < len(ordered)
    return page, (_encode_cursor(rank(page[-1]), ident(page[-1])) if more and page else "")


def _ranked_before(rank: Rank, cursor: Rank, newest_first: bool) -> bool:
    return rank > cursor if newest_first else rank < cursor


def _encode_cursor(rank: Rank, ident: str) -> str:
    """An opaque, URL-safe token (no character a query string must escape)."""
    raw = json.dumps([list(rank), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> tuple[Rank, str] | None:
    """The (rank, ident) a :func:`_encode_cursor` token names; None for the first page."""
    if cursor in (None, "", "0"):
        return None
    try:
        text = str(cursor)
        rank, ident = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(rank, list) or not isinstance(ident, str):
            raise ValueError(cursor)
        if not all(isinstance(part, str | int | float) for part in rank):
            raise ValueError(cursor)
    except (ValueError, TypeError):  # (binascii.Error and JSONDecodeError are ValueErrors)
        raise _Reject(10001, "params error: cursor invalid") from None
    return tuple(rank), ident
