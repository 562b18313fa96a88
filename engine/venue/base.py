"""The Venue contract: what the engine needs from an exchange account, whatever the exchange.

One instance serves one account (``main``, ``mirror``). The simulated venue
(:class:`engine.sim.venue.SimVenue`) and the Bybit venue (:class:`engine.venue.bybit.venue.BybitVenue`)
both implement it, so the engine runs unchanged on either. Every implementation counts its calls per
endpoint path in :attr:`Venue.calls`, using Bybit's V5 paths (:class:`Endpoint`) so the benchmark
compares like with like.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
from engine.venue.errors import VenueError

if TYPE_CHECKING:  # the budget imports this module
    from engine.venue.budget import WindowReport


class Endpoint:
    """Bybit V5 paths, used as the keys of the per-endpoint call counters."""

    INSTRUMENTS = "/v5/market/instruments-info"
    TICKERS = "/v5/market/tickers"
    WALLET = "/v5/account/wallet-balance"
    POSITIONS = "/v5/position/list"
    OPEN_ORDERS = "/v5/order/realtime"
    EXECUTIONS = "/v5/execution/list"
    CREATE = "/v5/order/create"
    AMEND = "/v5/order/amend"
    CANCEL = "/v5/order/cancel"
    CANCEL_ALL = "/v5/order/cancel-all"
    CREATE_BATCH = "/v5/order/create-batch"
    AMEND_BATCH = "/v5/order/amend-batch"
    CANCEL_BATCH = "/v5/order/cancel-batch"
    SET_LEVERAGE = "/v5/position/set-leverage"


MAX_BATCH = 20
"""Bybit's limit of orders per batch request for the linear category."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one item of a batch: an ack, or the error that item got."""

    ack: OrderAck | None = None
    error: VenueError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Venue(abc.ABC):
    """One exchange account, seen through Bybit V5's linear-perpetual vocabulary."""

    #: Account name (``main`` or ``mirror``).
    account: str
    #: Calls per endpoint path since the venue was created.
    calls: CallCounter

    # --- reads -------------------------------------------------------------------------------
    @abc.abstractmethod
    async def instruments(self, symbols: Sequence[str] | None = None) -> dict[str, Instrument]:
        """Trading filters of the given symbols (all when None)."""

    @abc.abstractmethod
    async def tickers(self, symbols: Sequence[str] | None = None) -> dict[str, Ticker]:
        """Latest prices of the given symbols (all when None) in one call."""

    @abc.abstractmethod
    async def wallet(self) -> Wallet:
        """The account's USDT balance."""

    @abc.abstractmethod
    async def positions(self, symbol: str | None = None) -> list[Position]:
        """Open positions: all symbols in one call (``symbol=None``) or one symbol."""

    @abc.abstractmethod
    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Working orders (including untriggered conditionals): all symbols or one."""

    @abc.abstractmethod
    async def executions(self, since: float, symbol: str | None = None) -> list[Execution]:
        """Fills at or after ``since`` (epoch seconds), oldest first."""

    # --- order actions -----------------------------------------------------------------------
    @abc.abstractmethod
    async def set_leverage(self, symbol: str, leverage: float) -> None:
        """Set the symbol's leverage (no-op when already set)."""

    @abc.abstractmethod
    async def place(self, request: OrderRequest) -> OrderAck:
        """Create one order; raises a :class:`VenueError` subclass when refused."""

    @abc.abstractmethod
    async def amend(self, request: AmendRequest) -> OrderAck:
        """Amend one open order in place."""

    @abc.abstractmethod
    async def cancel(self, request: CancelRequest) -> OrderAck:
        """Cancel one open order."""

    @abc.abstractmethod
    async def cancel_all(self, symbol: str) -> list[OrderAck]:
        """Cancel every open order of the symbol (conditionals included)."""

    @abc.abstractmethod
    async def place_batch(self, requests: Sequence[OrderRequest]) -> list[BatchResult]:
        """Create up to :data:`MAX_BATCH` orders in one call; one result per item, in order."""

    @abc.abstractmethod
    async def amend_batch(self, requests: Sequence[AmendRequest]) -> list[BatchResult]:
        """Amend up to :data:`MAX_BATCH` orders in one call; one result per item, in order."""

    @abc.abstractmethod
    async def cancel_batch(self, requests: Sequence[CancelRequest]) -> list[BatchResult]:
        """Cancel up to :data:`MAX_BATCH` orders in one call; one result per item, in order."""

    # --- push --------------------------------------------------------------------------------
    @abc.abstractmethod
    def stream(self) -> AsyncIterator[VenueEvent]:
        """Events as they happen: executions, order updates, position updates, wallet updates,
        tickers, and :class:`~engine.core.models.StreamStatus` when the stream drops or resumes."""

    async def pushes(self) -> AsyncIterator[Sequence[VenueEvent]]:
        """:meth:`stream`'s events, those that arrived together in one sequence (a venue that can tell
        them apart overrides this; here each event is a push of its own). The engine's consumer takes
        a push whole: at a thousand symbols, a tick's tickers handed on one by one were milliseconds
        of its loop before the fill behind them was seen."""
        async for event in self.stream():
            yield (event,)

    def follow_limits(self, observer: Callable[[WindowReport], None] | None) -> None:  # noqa: B027
        """Tell ``observer`` (the engine's rate budget) what the venue's answers say of its rate limits
        (Bybit's ``X-Bapi-Limit*`` headers); None stops it. A venue that reports none ignores it."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most venues hold nothing
        """Release connections and threads."""
