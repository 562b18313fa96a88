"""The Bybit venue: one account on Bybit V5 (mainnet, testnet or demo trading) through pybit.

This module maps the :class:`~engine.venue.base.Venue` contract onto Bybit's V5 endpoints: request
parameters (:mod:`~engine.venue.bybit.wire`), typed records from the replies
(:mod:`~engine.venue.bybit.parse`), batches split to Bybit's size and their per-item outcomes. Calls go
through :mod:`~engine.venue.bybit.transport` (threads, pacing, retries, the IP-ban stop); push streams
live in :mod:`~engine.venue.bybit.stream`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.clock import Clock
from engine.core.models import (
    AmendRequest,
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
from engine.venue.budget import WindowReport
from engine.venue.bybit.keys import REDACTOR, ApiKeys, install_redaction, load_keys
from engine.venue.bybit.limits import RateBudget
from engine.venue.bybit.parse import (
    UnreadableRow,
    parse_execution,
    parse_instrument,
    parse_order,
    parse_position,
    parse_rows,
    parse_ticker,
    parse_wallet,
    reading,
)
from engine.venue.bybit.retry import RetryPolicy
from engine.venue.bybit.stream import BybitStream, StreamEndpoints, StreamOptions
from engine.venue.bybit.transport import AlreadyPlaced, BybitTransport, IpGuard
from engine.venue.bybit.wire import (
    CATEGORY,
    PRIVATE_WS_PATH,
    PUBLIC_WS_PATH,
    SETTLE_COIN,
    amend_params,
    batch_item,
    cancel_params,
    fmt,
    order_params,
)
from engine.venue.errors import (
    DuplicateOrder,
    InvalidRequest,
    MalformedReply,
    RateLimited,
    VenueError,
    error_from_code,
)

log = logging.getLogger("opconsole.venue.bybit")

LEVERAGE_NOT_MODIFIED = 110043


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
        private_url=f"{origin}{PRIVATE_WS_PATH}" if origin else "",
        public_url=f"{origin}{PUBLIC_WS_PATH}" if origin else "",
        testnet=testnet,
        demo=demo,
    )
    return Endpoints(testnet=testnet, demo=demo, rest_url=base_url.rstrip("/"), stream=stream)


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
        self.clock = clock
        self.endpoints = resolve_endpoints(network, base_url, ws_url)
        self._transport = BybitTransport(
            account,
            keys,
            clock,
            testnet=self.endpoints.testnet,
            demo=self.endpoints.demo,
            rest_url=self.endpoints.rest_url,
            threads=threads,
            timeout_s=timeout_s,
            recv_window_ms=recv_window_ms,
            retry=retry,
            seed=seed,
            ip_guard=ip_guard,
            on_critical=on_critical,
        )
        # The contract's counter is the transport's: it counts what actually went on the wire.
        self.calls = self._transport.calls
        self._keys = keys
        self._seed = seed
        self._stream_options = stream_options or StreamOptions()
        self._ticker_symbols = set(ticker_symbols)
        self._instruments: dict[str, Instrument] = {}
        self._refused: dict[str, MalformedReply] = {}
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
        return f"<BybitVenue {self.account} {self._transport.url}>"

    @property
    def budget(self) -> RateBudget:
        """The rate-limit budgets Bybit reported, per endpoint."""
        return self._transport.budget

    def follow_limits(self, observer: Callable[[WindowReport], None] | None) -> None:
        """Tell ``observer`` (the engine's :meth:`~engine.venue.budget.CallBudget.observe`) what every
        private answer's ``X-Bapi-Limit*`` headers say; None stops it."""
        self._transport.on_limits = observer

    @property
    def ip_guard(self) -> IpGuard:
        """The IP-ban stop this venue obeys (shared by every venue on the same host by default)."""
        return self._transport.ip_guard

    @property
    def last_rtt_ms(self) -> float:
        """Round trip of the last successful REST call."""
        return self._transport.last_rtt_ms

    @property
    def time_offset_ms(self) -> int:
        """The measured offset of the server's clock to ours (applied to every signature)."""
        return self._transport.time_offset_ms

    # --- reads ---------------------------------------------------------------------------------
    async def instruments(self, symbols: Sequence[str] | None = None) -> dict[str, Instrument]:
        """Trading filters; an instrument whose filters cannot be trusted (a tickSize or qtyStep of 0,
        a number that does not parse) is refused: asked for by name, it raises :class:`MalformedReply`;
        in a listing of all of them, it is left out with an error log, so one bad listing never stops
        the others."""
        items = await self._transport.paged(
            Endpoint.INSTRUMENTS, "get_instruments_info", {"category": CATEGORY, "limit": 1000}
        )
        for item in items:
            symbol = str(item.get("symbol") or "") if isinstance(item, dict) else ""
            try:
                with reading(Endpoint.INSTRUMENTS):
                    instrument = parse_instrument(item)
            except UnreadableRow as exc:
                log.warning("%s: row skipped: %s", Endpoint.INSTRUMENTS, exc)
                continue
            except MalformedReply as exc:
                if symbol not in self._refused:
                    log.error("%s: instrument %s refused: %s", self.account, symbol, exc)
                self._refused[symbol] = exc
                self._instruments.pop(symbol, None)
                continue
            self._refused.pop(instrument.symbol, None)
            self._instruments[instrument.symbol] = instrument
        wanted = set(symbols) if symbols is not None else set(self._instruments)
        refused = sorted(wanted & set(self._refused))
        if symbols is not None and refused:
            raise self._refused[refused[0]]
        return {s: i for s, i in self._instruments.items() if s in wanted}

    async def _instrument(self, symbol: str) -> Instrument:
        """The symbol's filters for an order's wire format, read once: no order leaves with a
        quantity or price that is not rounded to the instrument's steps."""
        instrument = self._instruments.get(symbol)
        if instrument is None:
            instrument = (await self.instruments([symbol])).get(symbol)
        if instrument is None:
            raise InvalidRequest(f"params error: symbol invalid: {symbol}", 10001)
        return instrument

    async def tickers(self, symbols: Sequence[str] | None = None) -> dict[str, Ticker]:
        params: dict[str, Any] = {"category": CATEGORY}
        if symbols is not None and len(symbols) == 1:
            params["symbol"] = symbols[0]
        reply = await self._transport.call(Endpoint.TICKERS, "get_tickers", params)
        wanted = set(symbols) if symbols is not None else None
        with reading(Endpoint.TICKERS):
            ts = reply.time
        rows = [
            item
            for item in reply.result.get("list", [])
            if wanted is None or (isinstance(item, dict) and item.get("symbol") in wanted)
        ]
        tickers = parse_rows(Endpoint.TICKERS, rows, lambda item: parse_ticker(item, ts))
        return {t.symbol: t for t in tickers}

    async def wallet(self) -> Wallet:
        reply = await self._transport.call(Endpoint.WALLET, "get_wallet_balance", {"accountType": "UNIFIED"})
        accounts = reply.result.get("list", [])
        with reading(Endpoint.WALLET):
            if not accounts:
                return Wallet(self.account, 0.0, 0.0, 0.0, 0.0, reply.time)
            return parse_wallet(self.account, accounts[0], reply.time, SETTLE_COIN)

    async def positions(self, symbol: str | None = None) -> list[Position]:
        params: dict[str, Any] = {"category": CATEGORY, "limit": 200}
        params.update({"symbol": symbol} if symbol else {"settleCoin": SETTLE_COIN})
        items = await self._transport.paged(Endpoint.POSITIONS, "get_positions", params)
        parsed = parse_rows(Endpoint.POSITIONS, items, lambda item: parse_position(self.account, item))
        # A size-0 row is never a position: a flat symbol, or (hedge mode) the unused side.
        return [p for p in parsed if p.is_open]

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        params: dict[str, Any] = {"category": CATEGORY, "openOnly": 0, "limit": 50}
        params.update({"symbol": symbol} if symbol else {"settleCoin": SETTLE_COIN})
        items = await self._transport.paged(Endpoint.OPEN_ORDERS, "get_open_orders", params)
        return parse_rows(Endpoint.OPEN_ORDERS, items, lambda item: parse_order(self.account, item))

    async def executions(self, since: float, symbol: str | None = None) -> list[Execution]:
        params: dict[str, Any] = {"category": CATEGORY, "startTime": round(since * 1000), "limit": 100}
        if symbol:
            params["symbol"] = symbol
        items = await self._transport.paged(Endpoint.EXECUTIONS, "get_executions", params)
        # Funding, ADL, liquidation... rows are executions too: all are read, none fails the page.
        fills = parse_rows(Endpoint.EXECUTIONS, items, lambda item: parse_execution(self.account, item))
        # Bybit lists newest first; the contract is oldest first. Reversed before the (stable) sort,
        # so fills of the same millisecond keep their order too (TPs that flattened a position
        # before an entry reopened it must not be read the other way round).
        return sorted((f for f in reversed(fills) if f.ts >= since), key=lambda f: f.ts)

    # --- order actions -------------------------------------------------------------------------
    async def set_leverage(self, symbol: str, leverage: float) -> None:
        value = fmt(leverage)
        params = {"category": CATEGORY, "symbol": symbol, "buyLeverage": value, "sellLeverage": value}
        try:
            await self._transport.call(Endpoint.SET_LEVERAGE, "set_leverage", params)
        except VenueError as exc:
            if exc.code != LEVERAGE_NOT_MODIFIED:
                raise

    async def place(self, request: OrderRequest) -> OrderAck:
        params = order_params(request, await self._instrument(request.symbol))
        try:
            reply = await self._transport.call(
                Endpoint.CREATE, "place_order", params, idempotent=bool(request.link_id)
            )
        except AlreadyPlaced:
            return await self._ack_by_link(request.symbol, request.link_id)
        return _ack(reply.result)

    async def amend(self, request: AmendRequest) -> OrderAck:
        params = amend_params(request, await self._instrument(request.symbol))
        reply = await self._transport.call(Endpoint.AMEND, "amend_order", params)
        return _ack(reply.result)

    async def cancel(self, request: CancelRequest) -> OrderAck:
        reply = await self._transport.call(Endpoint.CANCEL, "cancel_order", cancel_params(request))
        return _ack(reply.result)

    async def cancel_all(self, symbol: str) -> list[OrderAck]:
        reply = await self._transport.call(
            Endpoint.CANCEL_ALL, "cancel_all_orders", {"category": CATEGORY, "symbol": symbol}
        )
        return [_ack(item) for item in reply.result.get("list", [])]

    async def place_batch(self, requests: Sequence[OrderRequest]) -> list[BatchResult]:
        items = [batch_item(order_params(r, await self._instrument(r.symbol))) for r in requests]

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
        items = [batch_item(amend_params(r, await self._instrument(r.symbol))) for r in requests]
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
        not executed, so they are sent again once the budget refills; the transport paces that. A
        create item that a retry of ours finds already placed (110072) is that order: ``landed``
        looks its id up.
        """
        results: list[BatchResult | None] = [None] * len(items)
        pending = list(range(len(items)))
        rounds = 0
        while pending:
            sent, pending = pending[:MAX_BATCH], pending[MAX_BATCH:]
            params = {"category": CATEGORY, "request": [items[i] for i in sent]}
            reply = await self._transport.call(endpoint, method, params, idempotent=idempotent)
            again: list[int] = []
            for index, result in zip(sent, batch_results(reply.body, len(sent)), strict=True):
                if (
                    isinstance(result.error, RateLimited)
                    and rounds < self._transport.retry.max_rate_limit_waits
                ):
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
        reply = await self._transport.call(Endpoint.OPEN_ORDERS, "get_open_orders", params)
        for item in reply.result.get("list", []):
            return _ack(item)
        return OrderAck(order_id="", link_id=link_id)

    # --- push ----------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[VenueEvent]:
        """Executions, orders, positions, wallet and tickers as they happen (:class:`BybitStream`)."""
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
                try:
                    held = {p.symbol for p in await self.positions()}
                except VenueError as exc:
                    # The fills must stream even when the positions cannot be read: the held
                    # symbols only add ticker subscriptions, which the engine asks for anyway.
                    log.warning("%s: positions unreadable at stream start (%s)", self.account, exc)
                    held = set()
                stream = BybitStream(
                    self.account,
                    self._keys,
                    self.endpoints.stream,
                    self.clock,
                    self._stream_options,
                    run_blocking=self._transport.run_blocking,
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
        self._transport.close()


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
