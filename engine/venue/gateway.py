"""The engine's one path to an account's venue: every call spends the account's rate budget first.

:class:`VenueGateway` wraps a :class:`~engine.venue.base.Venue` (the simulator's or Bybit's) and is a
Venue itself, so the manager, the dashboard and the price alerts use it unchanged. Around every call it

- waits for the units the call costs in the account's :class:`~engine.venue.budget.CallBudget` (one
  read unit per read, one unit of its verb's window per order action, one per item of a batch), at
  the priority the calling task stated (:func:`engine.venue.priority.call_priority`);
- tells the budget when the venue refuses a call for the rate limit anyway (a 10006, raised or in a
  batch item), so the next calls wait for the window to refill instead of collecting refusals;
- has the budget follow the limits the venue reports in its answers, when it reports any
  (``BybitVenue.follow_limits``: the ``X-Bapi-Limit*`` headers), see
  :meth:`~engine.venue.budget.CallBudget.observe`;
- with ``coalesce`` on (the ``api_batching`` toggle, flipped live), lets identical reads that are in
  flight at the same time share one request: the second caller awaits the first one's answer. Without
  it every read is its own request (the baseline).

Anything the wrapped venue offers beyond the contract (``BybitVenue.watch_tickers``, ``stream_state``,
``ip_guard``, ``last_rtt_ms``) passes through unchanged; ``budget`` is the gateway's
:class:`~engine.venue.budget.CallBudget` (BybitVenue's per-endpoint one is ``gateway.inner.budget``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
from engine.core.precedence import end_urgency
from engine.venue.base import BatchResult, Venue
from engine.venue.budget import CallBudget, CallKind, Claim
from engine.venue.errors import RateLimited
from engine.venue.priority import current_priority

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class _SharedRead:
    """A read in flight that later identical reads join."""

    task: asyncio.Future[Any]
    claim: Claim
    sharers: int = field(default=0)


class VenueGateway(Venue):
    """One account's venue behind its rate budget (see the module docstring)."""

    def __init__(self, inner: Venue, budget: CallBudget, *, coalesce: bool = False) -> None:
        self.inner = inner
        self.account = inner.account
        self.calls: CallCounter = inner.calls  # the same counter: a shared read is one request counted
        # The account's plan of calls. BybitVenue's own ``budget`` (the per-endpoint limits its
        # responses report) is the inner venue's: ``gateway.inner.budget``.
        self.budget = budget
        inner.follow_limits(budget.observe)
        self.coalesce = coalesce
        self.shared_reads = 0
        """Reads answered by joining an identical request in flight (a request saved each)."""
        self._in_flight: dict[Hashable, _SharedRead] = {}

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the gateway does not define: the inner venue's extras.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<VenueGateway {self.inner!r}>"

    # --- the one path of every call ----------------------------------------------------------------
    async def _send(self, claim: Claim, call: Callable[[], Awaitable[T]]) -> T:
        """Spend the claim's units, make the call, and report a rate-limit refusal to the budget."""
        end_urgency()  # the decision this call carries is out of the engine's hands: bulk work may go on
        try:
            async with claim:
                return await call()
        except RateLimited as exc:
            self.budget.refused(claim.kind, exc.reset_at)
            raise

    async def _order(self, kind: CallKind, call: Callable[[], Awaitable[T]]) -> T:
        return await self._send(self.budget.claim(kind), call)

    async def _batch(
        self,
        kind: CallKind,
        requests: Sequence[R],
        call: Callable[[Sequence[R]], Awaitable[list[BatchResult]]],
    ) -> list[BatchResult]:
        """A batch costs one unit of its verb per item; items refused for the rate limit refuse the
        budget too."""
        claim = self.budget.claim(kind, max(1, len(requests)))
        results = await self._send(claim, lambda: call(requests))
        refusal = next((r.error for r in results if isinstance(r.error, RateLimited)), None)
        if isinstance(refusal, RateLimited):
            self.budget.refused(kind, refusal.reset_at)
        return results

    async def _read(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """One read unit per request; with ``coalesce``, a read identical to one in flight joins it."""
        if not self.coalesce:
            return await self._send(self.budget.claim(CallKind.READS), call)
        shared = self._in_flight.get(key)
        if shared is None or shared.task.done():  # answered already: its forgetting is just scheduled
            claim = self.budget.claim(CallKind.READS)
            shared = _SharedRead(asyncio.ensure_future(self._send(claim, call)), claim)
            self._in_flight[key] = shared
            shared.task.add_done_callback(lambda task: self._forget(key, shared))
        else:
            # The request may still wait for the budget at the first caller's priority.
            shared.claim.urge(current_priority())
            self.shared_reads += 1
        shared.sharers += 1
        try:
            # Shielded: one sharer cancelled never cancels the request the others wait for.
            result: T = await asyncio.shield(shared.task)
        finally:
            shared.sharers -= 1
            if shared.sharers == 0 and not shared.task.done():
                shared.task.cancel()  # every sharer was cancelled: nobody wants the answer any more
        # Each caller gets its own list / dict: one caller changing its answer never changes another's.
        return copy.copy(result) if isinstance(result, list | dict) else result

    def _forget(self, key: Hashable, shared: _SharedRead) -> None:
        if self._in_flight.get(key) is shared:
            del self._in_flight[key]
        if not shared.task.cancelled():
            shared.task.exception()  # retrieved here, so a failure nobody waited for is not logged as lost

    # --- reads -------------------------------------------------------------------------------------
    async def instruments(self, symbols: Sequence[str] | None = None) -> dict[str, Instrument]:
        return await self._read(("instruments", _frozen(symbols)), lambda: self.inner.instruments(symbols))

    async def tickers(self, symbols: Sequence[str] | None = None) -> dict[str, Ticker]:
        return await self._read(("tickers", _frozen(symbols)), lambda: self.inner.tickers(symbols))

    async def wallet(self) -> Wallet:
        return await self._read(("wallet",), self.inner.wallet)

    async def positions(self, symbol: str | None = None) -> list[Position]:
        return await self._read(("positions", symbol), lambda: self.inner.positions(symbol))

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        return await self._read(("open_orders", symbol), lambda: self.inner.open_orders(symbol))

    async def executions(self, since: float, symbol: str | None = None) -> list[Execution]:
        return await self._read(("executions", since, symbol), lambda: self.inner.executions(since, symbol))

    # --- order actions -----------------------------------------------------------------------------
    async def set_leverage(self, symbol: str, leverage: float) -> None:
        return await self._order(CallKind.PLACE, lambda: self.inner.set_leverage(symbol, leverage))

    async def place(self, request: OrderRequest) -> OrderAck:
        return await self._order(CallKind.PLACE, lambda: self.inner.place(request))

    async def amend(self, request: AmendRequest) -> OrderAck:
        return await self._order(CallKind.AMEND, lambda: self.inner.amend(request))

    async def cancel(self, request: CancelRequest) -> OrderAck:
        return await self._order(CallKind.CANCEL, lambda: self.inner.cancel(request))

    async def cancel_all(self, symbol: str) -> list[OrderAck]:
        return await self._order(CallKind.CANCEL, lambda: self.inner.cancel_all(symbol))

    async def place_batch(self, requests: Sequence[OrderRequest]) -> list[BatchResult]:
        return await self._batch(CallKind.PLACE_BATCH, requests, self.inner.place_batch)

    async def amend_batch(self, requests: Sequence[AmendRequest]) -> list[BatchResult]:
        return await self._batch(CallKind.AMEND_BATCH, requests, self.inner.amend_batch)

    async def cancel_batch(self, requests: Sequence[CancelRequest]) -> list[BatchResult]:
        return await self._batch(CallKind.CANCEL_BATCH, requests, self.inner.cancel_batch)

    # --- push and lifetime -------------------------------------------------------------------------
    def stream(self) -> AsyncIterator[VenueEvent]:
        """The inner venue's events (a push stream spends no request budget)."""
        return self.inner.stream()

    def pushes(self) -> AsyncIterator[Sequence[VenueEvent]]:
        """The inner venue's pushes (see :meth:`Venue.pushes`)."""
        return self.inner.pushes()

    async def close(self) -> None:
        await self.inner.close()


def _frozen(symbols: Sequence[str] | None) -> tuple[str, ...] | None:
    """A hashable form of a symbols argument, for the key of a shared read."""
    return None if symbols is None else tuple(symbols)
