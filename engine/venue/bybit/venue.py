"""The Bybit venue: one account on Bybit V5 (mainnet, testnet or demo trading) through pybit.

pybit is synchronous, so every REST call runs in a bounded thread pool (``venue.threads``) whose size
also sizes the requests connection pool (kept alive, so a call reuses a warm connection). Around each
call the venue, on the event loop:

- waits when the endpoint's rate-limit budget (from ``X-Bapi-Limit*`` headers) is nearly spent;
- maps pybit's exceptions and Bybit's retCodes to the typed :mod:`engine.venue.errors`;
- retries what is safe to retry (:mod:`engine.venue.bybit.retry`), sleeping on the injected clock;
- re-syncs its timestamp offset after a 10002 (clock drift) before retrying;
- stops every call after an HTTP 403 (IP ban), shared by all venues on the same host, and raises a
  critical alert through ``on_critical``.

pybit's own retry loop is disabled (it blocks its worker thread while it sleeps, and hides retCodes).
Push streams live in :mod:`engine.venue.bybit.stream`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP
from requests.adapters import HTTPAdapter

from engine.core.clock import Clock, now_ms
from engine.core.models import (
    AmendRequest,
    CallCounter,
    CancelRequest,
    Execution,
    Instrument,
    Order,
    OrderAck,
    OrderRequest,
    Position,
    Ticker,
    VenueEvent,
    Wallet,
)
from engine.core.settings import Settings
from engine.venue.base import MAX_BATCH, BatchResult, Endpoint, Venue
from engine.venue.bybit.keys import REDACTOR, ApiKeys, install_redaction, load_keys
from engine.venue.bybit.limits import HEADER_RESET, RateBudget
from engine.venue.bybit.parse import (
    ms_to_s,
    next_cursor,
    parse_execution,
    parse_instrument,
    parse_order,
    parse_position,
    parse_ticker,
    parse_wallet,
)
from engine.venue.bybit.retry import RetryPolicy, rate_limit_wait
from engine.venue.bybit.stream import BybitStream, StreamEndpoints, StreamOptions
from engine.venue.bybit.wire import (
    CATEGORY,
    SETTLE_COIN,
    amend_params,
    batch_item,
    cancel_params,
    fmt,
    order_params,
)
from engine.venue.errors import (
    AuthError,
    DuplicateOrder,
    IpBanned,
    RateLimited,
    RequestExpired,
    TransientError,
    VenueError,
    error_from_code,
)

log = logging.getLogger(__name__)

SERVER_TIME = "/v5/market/time"
LEVERAGE_NOT_MODIFIED = 110043
IP_BAN_COOLDOWN_S = 600.0
"""Bybit lifts a temporary IP ban after about 10 minutes; calls stay stopped at least that long."""

_NEVER = frozenset({-1})
"""Given to pybit as its retry codes: a set it can never match (an empty one means its defaults)."""


# --- endpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where one venue connects: pybit's flags, and explicit URLs when the settings override them."""

    testnet: bool
    demo: bool
    rest_url: str  # "" = pybit's default for the flags
    stream: StreamEndpoints


def resolve_endpoints(network: str, base_url: str = "", ws_url: str = "") -> Endpoints:
    """Map ``venue.network`` / ``venue.base_url`` / ``venue.ws_url`` to pybit's flags and URLs.

    ``ws_url`` is the WebSocket origin (``ws://host:port``); the V5 paths are appended. A URL that
    already ends in a V5 path has it stripped first, so either spelling works.
    """
    testnet = network == "testnet"
    demo = network == "demo"
    origin = ws_url.rstrip("/")
    if "/v5/" in origin:
        origin = origin[: origin.index("/v5/")]
    stream = StreamEndpoints(
        private_url=f"{origin}/v5/private" if origin else "",
        public_url=f"{origin}/v5/public/linear" if origin else "",
        testnet=testnet,
        demo=demo,
    )
    return Endpoints(testnet=testnet, demo=demo, rest_url=base_url.rstrip("/"), stream=stream)


# --- the IP-ban stop ----------------------------------------------------------------------------


class IpGuard:
    """Stops every call to one host after an HTTP 403 (an IP ban), for at least ``cooldown_s``."""

    def __init__(self, clock: Clock, cooldown_s: float = IP_BAN_COOLDOWN_S) -> None:
        self._clock = clock
        self._cooldown_s = cooldown_s
        self.banned_until: float | None = None
        self.reason = ""

    @property
    def banned(self) -> bool:
        return self.banned_until is not None and self._clock.now() < self.banned_until

    def trip(self, reason: str) -> None:
        """Record a ban (from now on every call raises :class:`IpBanned` without reaching the host)."""
        self.banned_until = self._clock.now() + self._cooldown_s
        self.reason = reason

    def check(self) -> None:
        """Raise :class:`IpBanned` while the ban lasts."""
        if self.banned:
            raise IpBanned(f"calls stopped after an IP ban: {self.reason}")

    def lift(self) -> None:
        """The operator's override: allow calls again (the next one is the probe)."""
        self.banned_until = None


_IP_GUARDS: dict[str, IpGuard] = {}
"""One guard per host for the whole process: a ban hits the IP, so every account on the host stops."""


def shared_ip_guard(url: str, clock: Clock) -> IpGuard:
    """The process's guard for ``url``'s host (created on first use)."""
    host = urlsplit(url).netloc or url
    if host not in _IP_GUARDS:
        _IP_GUARDS[host] = IpGuard(clock)
    return _IP_GUARDS[host]


# --- pybit session ------------------------------------------------------------------------------


class _Session(HTTP):
    """pybit's HTTP session, signing with the venue's clock plus a measured offset to the server's.

    pybit stamps requests with the wall clock and offers no offset; after a 10002 (our clock is off)
    the venue measures the server's clock and this session applies the difference. Its ``repr`` hides
    the keys (pybit's dataclass repr would print them).
    """

    def __init__(self, *, clock: Clock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.time_offset_ms = 0

    def __repr__(self) -> str:
        return f"<BybitSession {self.endpoint}>"

    def _prepare_headers(
        self, payload: Any, recv_window: int, content_type: str = "application/json"
    ) -> dict[str, str]:
        timestamp = now_ms(self.clock) + self.time_offset_ms
        signature = self._auth(payload=payload, recv_window=recv_window, timestamp=timestamp)
        return {
            "Content-Type": content_type,
            "X-BAPI-API-KEY": self.api_key,
            "X-BAPI-SIGN": signature,
            "X-BAPI-SIGN-TYPE": "2",
            "X-BAPI-TIMESTAMP": str(timestamp),
            "X-BAPI-RECV-WINDOW": str(recv_window),
        }


def tune_connection_pool(session: requests.Session, size: int) -> None:
    """Keep up to ``size`` warm keep-alive connections, one per worker thread, and block rather than
    open throwaway connections when all are busy; requests' own retries stay off (we retry)."""
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=size, pool_block=True, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


# --- errors -------------------------------------------------------------------------------------


def map_exception(exc: BaseException) -> tuple[VenueError, Any]:
    """pybit / requests exceptions as typed venue errors, with the response headers when there are.

    Messages are redacted: Bybit's 10004 answer quotes the signed string, API key included.
    """
    if isinstance(exc, InvalidRequestError):
        headers = exc.resp_headers or {}
        reset_at = None
        if exc.status_code == 10006 and headers.get(HEADER_RESET):
            reset_at = int(headers[HEADER_RESET]) / 1000.0
        message = REDACTOR.redact(str(exc.message))
        return error_from_code(int(exc.status_code), message, reset_at=reset_at), headers
    if isinstance(exc, FailedRequestError):
        status = int(exc.status_code or 0)
        if status == 403:
            return IpBanned("HTTP 403 from Bybit: the IP is banned or rate-limited; all calls stop"), None
        if status >= 500 or status == 409:  # 409 is pybit's "could not decode JSON"
            return TransientError(f"HTTP {status}: {REDACTOR.redact(str(exc.message))}"), None
        return VenueError(f"HTTP {status}: {REDACTOR.redact(str(exc.message))}"), None
    if isinstance(exc, requests.exceptions.RequestException):
        return TransientError(f"network error: {type(exc).__name__}: {REDACTOR.redact(str(exc))}"), None
    if isinstance(exc, PermissionError):
        return AuthError(str(exc)), None
    return VenueError(f"{type(exc).__name__}: {REDACTOR.redact(str(exc))}"), None


@dataclass(slots=True)
class _Outcome:
    """What one blocking pybit call produced (built on the worker, read on the loop)."""

    body: dict[str, Any] | None = None
    headers: Any = None
    error: BaseException | None = None
    elapsed_ms: float = 0.0


@dataclass(slots=True)
class _Reply:
    """A successful call's envelope, and whether it took a retry to get it."""

    body: dict[str, Any]
    retried: bool = False
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> float:
        return ms_to_s(self.body.get("time"))


# --- the venue ----------------------------------------------------------------------------------


class BybitVenue(Venue):
    """One Bybit account (``main`` or ``mirror``) behind the :class:`~engine.venue.base.Venue` contract."""

    def __init__(
        self,
        account: str,
        keys: ApiKeys,
        clock: Clock,
        *,
        network: str = "testnet",
        base_url: str = "",
        ws_url: str = "",
        threads: int = 8,
        timeout_s: float = 10.0,
        recv_window_ms: int = 5000,
        retry: RetryPolicy | None = None,
        stream_options: StreamOptions | None = None,
        ticker_symbols: Iterable[str] = (),
        seed: int = 0,
        ip_guard: IpGuard | None = None,
        on_critical: Callable[[str], None] | None = None,
    ) -> None:
        self.account = account
        self.calls = CallCounter()
        self.clock = clock
        self.endpoints = resolve_endpoints(network, base_url, ws_url)
        self.budget = RateBudget()
        self.retry = retry or RetryPolicy()
        self.last_rtt_ms = 0.0
        self.on_critical = on_critical
        self._keys = keys
        self._rng = random.Random(seed)
        self._seed = seed
        self._stream_options = stream_options or StreamOptions()
        self._ticker_symbols = set(ticker_symbols)
        self._instruments: dict[str, Instrument] = {}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"bybit-{account}")
        self._session = _Session(
            clock=clock,
            testnet=self.endpoints.testnet,
            demo=self.endpoints.demo,
            api_key=keys.api_key,
            api_secret=keys.api_secret,
            timeout=timeout_s,
            recv_window=recv_window_ms,
            max_retries=1,
            retry_codes=set(_NEVER),
            return_response_headers=True,
        )
        if self.endpoints.rest_url:
            self._session.endpoint = self.endpoints.rest_url
        tune_connection_pool(self._session.client, threads)
        self.ip_guard = ip_guard or shared_ip_guard(self._session.endpoint, clock)
        self._stream: BybitStream | None = None
        self._stream_lock = asyncio.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, account: str, clock: Clock, env: dict[str, str] | None = None, **kwargs: Any
    ) -> BybitVenue:
        """A venue configured from ``venue.*`` and the account's key settings (raises BadInput)."""
        keys = load_keys(settings, account, env)
        install_redaction(keys.api_key, keys.api_secret)
        options = StreamOptions(
            ping_interval_s=settings.get("venue.ws_ping_interval_s"),
            stale_after_s=settings.get("venue.ws_stale_after_s"),
        )
        params: dict[str, Any] = {
            "network": settings.get("venue.network"),
            "base_url": settings.get("venue.base_url"),
            "ws_url": settings.get("venue.ws_url"),
            "threads": settings.get("venue.threads"),
            "timeout_s": settings.get("venue.timeout_s"),
            "recv_window_ms": settings.get("venue.recv_window_ms"),
            "retry": RetryPolicy(max_retries=settings.get("venue.max_retries")),
            "stream_options": options,
            "ticker_symbols": settings.get("sim.symbols"),
            "seed": settings.get("sim.seed"),
        }
        params.update(kwargs)
        return cls(account, keys, clock, **params)

    def __repr__(self) -> str:
        return f"<BybitVenue {self.account} {self._session.endpoint}>"

    @property
    def time_offset_ms(self) -> int:
        """The measured offset of the server's clock to ours (applied to every signature)."""
        return self._session.time_offset_ms

    # --- the call core -------------------------------------------------------------------------
    def _blocking(self, method: str, params: dict[str, Any]) -> _Outcome:
        """On a worker thread: one pybit call, every exception captured for the loop to map."""
        try:
            body, elapsed, headers = getattr(self._session, method)(**params)
        except BaseException as exc:
            return _Outcome(error=exc)
        return _Outcome(body=body, headers=headers, elapsed_ms=elapsed.total_seconds() * 1000)

    async def _run_blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def _call(
        self, endpoint: str, method: str, params: dict[str, Any], *, idempotent: bool = True
    ) -> _Reply:
        """One V5 call with pacing, typed errors and retries. ``idempotent`` permits transient retries."""
        transient = waits = 0
        while True:
            self.ip_guard.check()
            delay = self.budget.delay(endpoint, self.clock.now())
            if delay > 0:
                await self.clock.sleep(delay)
            self.budget.spend(endpoint, self.clock.now())
            self.calls.hit(endpoint)
            outcome = await self._run_blocking(self._blocking, method, dict(params))
            if outcome.error is None:
                assert outcome.body is not None
                self.last_rtt_ms = outcome.elapsed_ms
                self.budget.update(endpoint, outcome.headers, self.clock.now())
                return _Reply(outcome.body, retried=bool(transient or waits), result=outcome.body["result"])
            error, headers = map_exception(outcome.error)
            self.budget.update(endpoint, headers, self.clock.now())
            if isinstance(error, IpBanned):
                self._ip_banned(error)
                raise error
            if isinstance(error, DuplicateOrder) and (transient or waits):
                raise _AlreadyPlaced(error)
            if not self.retry.should_retry(
                error, idempotent=idempotent, transient_attempts=transient, rate_limit_waits=waits
            ):
                raise error
            if isinstance(error, RateLimited):
                waits += 1
                reset_at = error.reset_at or (self.clock.now() + 1.0)
                self.budget.exhaust(endpoint, reset_at)
                pause = rate_limit_wait(error, self.clock.now(), self._rng)
            else:
                transient += 1
                if isinstance(error, RequestExpired):
                    await self._resync_time()
                pause = self.retry.backoff(transient, self._rng)
            log.warning("%s %s: %s; retrying in %.2fs", self.account, endpoint, error, pause)
            await self.clock.sleep(pause)

    def _ip_banned(self, error: IpBanned) -> None:
        first = not self.ip_guard.banned
        self.ip_guard.trip(str(error))
        if first:
            log.critical("%s: %s", self.account, error)
            if self.on_critical is not None:
                self.on_critical(f"{self.account}: {error}")

    async def _resync_time(self) -> None:
        """Measure the server clock's offset to ours (``/v5/market/time``) and sign with it."""
        before = now_ms(self.clock)
        self.calls.hit(SERVER_TIME)
        outcome = await self._run_blocking(self._blocking, "get_server_time", {})
        after = now_ms(self.clock)
        if outcome.error is not None or outcome.body is None:
            return
        result = outcome.body.get("result", {})
        server_ms = int(result.get("timeNano", 0)) // 1_000_000 or int(outcome.body.get("time", 0))
        if server_ms:
            self._session.time_offset_ms = server_ms - (before + after) // 2
            log.warning("%s: clock offset to Bybit is %d ms; re-synced", self.account, self.time_offset_ms)

    async def _paged(self, endpoint: str, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item of a cursor-paginated list."""
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = dict(params, cursor=cursor) if cursor else params
            reply = await self._call(endpoint, method, page)
            batch = reply.result.get("list", [])
            items.extend(batch)
            cursor = next_cursor(reply.result)
            if not cursor or not batch:
                return items

    # --- reads ---------------------------------------------------------------------------------
    async def instruments(self, symbols: Sequence[str] | None = None) -> dict[str, Instrument]:
        items = await self._paged(
            Endpoint.INSTRUMENTS, "get_instruments_info", {"category": CATEGORY, "limit": 1000}
        )
        for item in items:
            instrument = parse_instrument(item)
            self._instruments[instrument.symbol] = instrument
        wanted = set(symbols) if symbols is not None else set(self._instruments)
        return {s: i for s, i in self._instruments.items() if s in wanted}

    async def tickers(self, symbols: Sequence[str] | None = None) -> dict[str, Ticker]:
        params: dict[str, Any] = {"category": CATEGORY}
        if symbols is not None and len(symbols) == 1:
            params["symbol"] = symbols[0]
        reply = await self._call(Endpoint.TICKERS, "get_tickers", params)
        wanted = set(symbols) if symbols is not None else None
        out: dict[str, Ticker] = {}
        for item in reply.result.get("list", []):
            if wanted is None or item["symbol"] in wanted:
                out[item["symbol"]] = parse_ticker(item, reply.time)
        return out

    async def wallet(self) -> Wallet:
        reply = await self._call(Endpoint.WALLET, "get_wallet_balance", {"accountType": "UNIFIED"})
        accounts = reply.result.get("list", [])
        if not accounts:
            return Wallet(self.account, 0.0, 0.0, 0.0, 0.0, reply.time)
        return parse_wallet(self.account, accounts[0], reply.time, SETTLE_COIN)

    async def positions(self, symbol: str | None = None) -> list[Position]:
        params: dict[str, Any] = {"category": CATEGORY, "limit": 200}
        params.update({"symbol": symbol} if symbol else {"settleCoin": SETTLE_COIN})
        items = await self._paged(Endpoint.POSITIONS, "get_positions", params)
        parsed = (parse_position(self.account, item) for item in items)
        return [p for p in parsed if p.is_open]

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        params: dict[str, Any] = {"category": CATEGORY, "openOnly": 0, "limit": 50}
        params.update({"symbol": symbol} if symbol else {"settleCoin": SETTLE_COIN})
        items = await self._paged(Endpoint.OPEN_ORDERS, "get_open_orders", params)
        return [parse_order(self.account, item) for item in items]

    async def executions(self, since: float, symbol: str | None = None) -> list[Execution]:
        params: dict[str, Any] = {"category": CATEGORY, "startTime": round(since * 1000), "limit": 100}
        if symbol:
            params["symbol"] = symbol
        items = await self._paged(Endpoint.EXECUTIONS, "get_executions", params)
        fills = [parse_execution(self.account, item) for item in items]
        # Bybit lists newest first; the contract is oldest first.
        return sorted((f for f in fills if f.ts >= since), key=lambda f: f.ts)

    # --- order actions -------------------------------------------------------------------------
    async def set_leverage(self, symbol: str, leverage: float) -> None:
        value = fmt(leverage)
        params = {"category": CATEGORY, "symbol": symbol, "buyLeverage": value, "sellLeverage": value}
        try:
            await self._call(Endpoint.SET_LEVERAGE, "set_leverage", params)
        except VenueError as exc:
            if exc.code != LEVERAGE_NOT_MODIFIED:
                raise

    async def place(self, request: OrderRequest) -> OrderAck:
        params = order_params(request, self._instruments.get(request.symbol))
        try:
            reply = await self._call(Endpoint.CREATE, "place_order", params, idempotent=bool(request.link_id))
        except _AlreadyPlaced:
            return await self._ack_by_link(request.symbol, request.link_id)
        return _ack(reply.result)

    async def amend(self, request: AmendRequest) -> OrderAck:
        params = amend_params(request, self._instruments.get(request.symbol))
        reply = await self._call(Endpoint.AMEND, "amend_order", params)
        return _ack(reply.result)

    async def cancel(self, request: CancelRequest) -> OrderAck:
        reply = await self._call(Endpoint.CANCEL, "cancel_order", cancel_params(request))
        return _ack(reply.result)

    async def cancel_all(self, symbol: str) -> list[OrderAck]:
        reply = await self._call(
            Endpoint.CANCEL_ALL, "cancel_all_orders", {"category": CATEGORY, "symbol": symbol}
        )
        return [_ack(item) for item in reply.result.get("list", [])]

    async def place_batch(self, requests: Sequence[OrderRequest]) -> list[BatchResult]:
        items = [batch_item(order_params(r, self._instruments.get(r.symbol))) for r in requests]

        async def landed(index: int) -> OrderAck:
            return await self._ack_by_link(requests[index].symbol, requests[index].link_id)

        return await self._batch(
            Endpoint.CREATE_BATCH,
            "place_batch_order",
            items,
            idempotent=all(r.link_id for r in requests),
            landed=landed,
        )

    async def amend_batch(self, requests: Sequence[AmendRequest]) -> list[BatchResult]:
        items = [batch_item(amend_params(r, self._instruments.get(r.symbol))) for r in requests]
        return await self._batch(Endpoint.AMEND_BATCH, "amend_batch_order", items)

    async def cancel_batch(self, requests: Sequence[CancelRequest]) -> list[BatchResult]:
        items = [batch_item(cancel_params(r)) for r in requests]
        return await self._batch(Endpoint.CANCEL_BATCH, "cancel_batch_order", items)

    async def _batch(
        self,
        endpoint: str,
        method: str,
        items: list[dict[str, Any]],
        *,
        idempotent: bool = True,
        landed: Callable[[int], Awaitable[OrderAck]] | None = None,
    ) -> list[BatchResult]:
        """Send ``items`` in batches of :data:`MAX_BATCH`; one result per item, in order.

        Items refused with 10006 (Bybit admits only as many items as the budget has room for) were
        not executed, so they are sent again once the budget refills; :meth:`_call` paces that. A
        create item that a retry of ours finds already placed (110072) is that order: ``landed``
        looks its id up.
        """
        results: list[BatchResult | None] = [None] * len(items)
        pending = list(range(len(items)))
        rounds = 0
        while pending:
            sent, pending = pending[:MAX_BATCH], pending[MAX_BATCH:]
            params = {"category": CATEGORY, "request": [items[i] for i in sent]}
            reply = await self._call(endpoint, method, params, idempotent=idempotent)
            again: list[int] = []
            for index, result in zip(sent, batch_results(reply.body, len(sent)), strict=True):
                if isinstance(result.error, RateLimited) and rounds < self.retry.max_rate_limit_waits:
                    again.append(index)
                    continue
                if landed is not None and reply.retried and isinstance(result.error, DuplicateOrder):
                    result = BatchResult(ack=await landed(index))
                results[index] = result
            if again:
                rounds += 1
                pending = again + pending
        return [r for r in results if r is not None]

    async def _ack_by_link(self, symbol: str, link_id: str) -> OrderAck:
        """The ack of an order that a retry found already placed (looked up by its orderLinkId)."""
        params = {"category": CATEGORY, "symbol": symbol, "orderLinkId": link_id}
        reply = await self._call(Endpoint.OPEN_ORDERS, "get_open_orders", params)
        for item in reply.result.get("list", []):
            return _ack(item)
        return OrderAck(order_id="", link_id=link_id)

    # --- push ----------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[VenueEvent]:
        """Executions, orders, positions, wallet and tickers as they happen (see ``bybit_stream``)."""
        stream = await self._ensure_stream()
        while True:
            yield await stream.queue.get()

    async def watch_tickers(self, symbols: Iterable[str]) -> None:
        """Also stream tickers of ``symbols`` (symbols held are streamed without asking)."""
        self._ticker_symbols.update(symbols)
        if self._stream is not None:
            await self._stream.watch_tickers(self._ticker_symbols)

    @property
    def stream_state(self) -> BybitStream | None:
        """The live stream (for status and counters), once ``stream()`` started it."""
        return self._stream

    async def _ensure_stream(self) -> BybitStream:
        async with self._stream_lock:
            if self._stream is None:
                held = {p.symbol for p in await self.positions()}
                stream = BybitStream(
                    self.account,
                    self._keys,
                    self.endpoints.stream,
                    self.clock,
                    self._stream_options,
                    run_blocking=self._run_blocking,
                    backfill=self.executions,
                    seed=self._seed,
                )
                await stream.start(held | self._ticker_symbols)
                self._stream = stream
            return self._stream

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._session.client.close()


class _AlreadyPlaced(Exception):
    """A retried create got 110072: the first attempt had landed."""

    def __init__(self, error: DuplicateOrder) -> None:
        super().__init__(str(error))
        self.error = error


def _ack(item: dict[str, Any]) -> OrderAck:
    return OrderAck(order_id=str(item.get("orderId", "")), link_id=str(item.get("orderLinkId", "")))


def batch_results(body: dict[str, Any], count: int) -> list[BatchResult]:
    """Per-item outcomes of a batch answer: ``result.list[i]`` with its code in ``retExtInfo.list[i]``.

    Bybit answers a batch with retCode 0 even when items failed; each item's own code says. A reply
    with fewer items than sent (never seen, but cheap to survive) fails the missing ones.
    """
    items = (body.get("result") or {}).get("list", [])
    codes = (body.get("retExtInfo") or {}).get("list", [])
    out: list[BatchResult] = []
    for index in range(count):
        item = items[index] if index < len(items) else {}
        status: dict[str, Any] = (
            codes[index] if index < len(codes) else {"code": -1, "msg": "no result for this item"}
        )
        code = int(status.get("code", 0))
        if code == 0:
            out.append(BatchResult(ack=_ack(item)))
        else:
            out.append(BatchResult(error=error_from_code(code, REDACTOR.redact(str(status.get("msg", ""))))))
    return out
