"""The Venue contract over the in-process simulated exchange (one instance per account).

Each call plays one Bybit V5 request: it is counted under its V5 path in :attr:`SimVenue.calls`, takes
the exchange's latency on the injected clock (``sim.latency = "realistic"``: 30-120 ms), and passes
the exchange's gateway (injected faults, then the per-account rate limit) before it acts. Batches
cost one rate unit per item; items beyond the remaining budget fail individually with 10006.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

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
    StreamStatus,
    Ticker,
    VenueEvent,
    Wallet,
)
from engine.sim.exchange import SimExchange
from engine.venue.base import MAX_BATCH, BatchResult, Endpoint, Venue
from engine.venue.errors import InvalidRequest, RateLimited, VenueError

R = TypeVar("R")

RECONNECT_DELAY_S = 1.0
"""How long the stream waits before subscribing again after a drop (a WebSocket reconnect)."""


class SimVenue(Venue):
    """One account of a :class:`~engine.sim.exchange.SimExchange`, behind the Venue contract."""

    def __init__(
        self, exchange: SimExchange, account: str, *, reconnect_delay_s: float = RECONNECT_DELAY_S
    ) -> None:
        exchange.ensure_account(account)
        self.exchange = exchange
        self.account = account
        self.calls = CallCounter()
        self.reconnect_delay_s = reconnect_delay_s
        self._clock = exchange.clock

    async def _request(self, endpoint: str, units: int = 1) -> None:
        """Count, travel, and pass the gateway (faults, rate limit) as one API request."""
        self.calls.hit(endpoint)
        await self._travel()
        self.exchange.admit(self.account, endpoint, units)

    async def _travel(self) -> None:
        delay = self.exchange.latency_s()
        if delay > 0:
            await self._clock.sleep(delay)

    # --- reads -------------------------------------------------------------------------------
    async def instruments(self, symbols: Sequence[str] | None = None) -> dict[str, Instrument]:
        await self._request(Endpoint.INSTRUMENTS)
        listed = self.exchange.instruments
        wanted = list(listed) if symbols is None else list(symbols)
        unknown = [s for s in wanted if s not in listed]
        if unknown:
            raise InvalidRequest(f"params error: symbol invalid: {', '.join(unknown)}", 10001)
        return {s: listed[s] for s in wanted}

    async def tickers(self, symbols: Sequence[str] | None = None) -> dict[str, Ticker]:
        await self._request(Endpoint.TICKERS)
        return self.exchange.tickers(symbols)

    async def wallet(self) -> Wallet:
        await self._request(Endpoint.WALLET)
        return self.exchange.wallet(self.account)

    async def positions(self, symbol: str | None = None) -> list[Position]:
        await self._request(Endpoint.POSITIONS)
        return self.exchange.positions(self.account, symbol)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        await self._request(Endpoint.OPEN_ORDERS)
        return self.exchange.open_orders(self.account, symbol)

    async def executions(self, since: float, symbol: str | None = None) -> list[Execution]:
        await self._request(Endpoint.EXECUTIONS)
        return self.exchange.executions(self.account, since, symbol)

    # --- order actions -----------------------------------------------------------------------
    async def set_leverage(self, symbol: str, leverage: float) -> None:
        await self._request(Endpoint.SET_LEVERAGE)
        self.exchange.set_leverage(self.account, symbol, leverage)

    async def place(self, request: OrderRequest) -> OrderAck:
        await self._request(Endpoint.CREATE)
        return self.exchange.place(self.account, request)

    async def amend(self, request: AmendRequest) -> OrderAck:
        await self._request(Endpoint.AMEND)
        return self.exchange.amend(self.account, request)

    async def cancel(self, request: CancelRequest) -> OrderAck:
        await self._request(Endpoint.CANCEL)
        return self.exchange.cancel(self.account, request)

    async def cancel_all(self, symbol: str) -> list[OrderAck]:
        await self._request(Endpoint.CANCEL_ALL)
        return self.exchange.cancel_all(self.account, symbol)

    async def place_batch(self, requests: Sequence[OrderRequest]) -> list[BatchResult]:
        return await self._batch(Endpoint.CREATE_BATCH, requests, self.exchange.place)

    async def amend_batch(self, requests: Sequence[AmendRequest]) -> list[BatchResult]:
        return await self._batch(Endpoint.AMEND_BATCH, requests, self.exchange.amend)

    async def cancel_batch(self, requests: Sequence[CancelRequest]) -> list[BatchResult]:
        return await self._batch(Endpoint.CANCEL_BATCH, requests, self.exchange.cancel)

    async def _batch(
        self, endpoint: str, items: Sequence[R], action: Callable[[str, R], OrderAck]
    ) -> list[BatchResult]:
        """One batch request: the whole call fails on a bad size (10001), an injected fault or an empty
        budget (10006); otherwise each item gets its own result, in order."""
        self.calls.hit(endpoint)
        await self._travel()
        if not items or len(items) > MAX_BATCH:
            raise InvalidRequest(f"a batch carries 1-{MAX_BATCH} orders, got {len(items)}", 10001)
        admitted = self.exchange.admit_batch(self.account, endpoint, len(items))
        results: list[BatchResult] = []
        with self.exchange.acknowledged_together(self.account):
            for index, item in enumerate(items):
                if index >= admitted:
                    reset_at = self.exchange.rate_status(self.account, endpoint).reset_at
                    results.append(
                        BatchResult(error=RateLimited("Too many visits!", 10006, reset_at=reset_at))
                    )
                    continue
                try:
                    self.exchange.check_item_fault(self.account, endpoint)
                    results.append(BatchResult(ack=action(self.account, item)))
                except VenueError as exc:
                    results.append(BatchResult(error=exc))
        return results

    # --- push --------------------------------------------------------------------------------
    async def stream(self) -> AsyncIterator[VenueEvent]:
        """The account's events, one by one, from the moment the stream is first iterated (see
        :meth:`pushes`)."""
        async for push in self.pushes():
            for event in push:
                yield event

    async def pushes(self) -> AsyncIterator[Sequence[VenueEvent]]:
        """The account's events as the exchange pushes them, the events of one push together.

        It opens with ``StreamStatus(connected=True, gap=False)``. When the exchange drops the stream
        it yields ``StreamStatus(connected=False, gap=True)``, waits ``reconnect_delay_s`` on the clock,
        subscribes again and yields ``StreamStatus(connected=True, gap=True)``: the events in between
        are lost, and the consumer reconciles by polling, as after a real WebSocket reconnect.
        """
        gap, reason = False, "subscribed"
        while True:
            queue = self.exchange.subscribe(self.account)
            try:
                yield (
                    StreamStatus(self.account, connected=True, gap=gap, reason=reason, ts=self._clock.now()),
                )
                while True:
                    push = await queue.get()
                    yield push
                    last = push[-1]
                    if isinstance(last, StreamStatus) and not last.connected:
                        break
            finally:
                self.exchange.unsubscribe(self.account, queue)
            await self._clock.sleep(self.reconnect_delay_s)
            gap, reason = True, "resubscribed"
