"""Test support for the TP/SL engine tests: a scripted simulated market, an in-memory store, and a
manager wired to them on a virtual clock (no real sleeps, deterministic)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from engine.approaches import Approach, TradeRequest
from engine.clock import VirtualClock
from engine.models import Order, Position, Side
from engine.sim.exchange import SimExchange
from engine.tpsl import TpslManager
from engine.trading_params import MonitorTiming, TradingParams
from engine.venue.sim import SimVenue
from persistence.reasons import Reason

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SYMBOL = "BTCUSDT"


class Crash(BaseException):
    """The process dies here (raised by MemoryStore right after a durable write)."""


class MemoryStore:
    """The StateStore protocol in memory, with the durability of the real store: critical (and
    forced) saves are "on disk" at once together with everything pending; others only until the next
    durable write. :meth:`crash_copy` is what a restart would recover. With ``crash_at=n`` the n-th
    durable write completes and then the process "dies" (:class:`Crash`)."""

    def __init__(self, state: dict[str, Any] | None = None, crash_at: int | None = None) -> None:
        self._state: dict[str, Any] = dict(state or {})
        self._durable: dict[str, Any] = json.loads(json.dumps(self._state))
        self.reasons: list[tuple[str, Reason]] = []
        self.durable_writes = 0
        self.crash_at = crash_at
        self.crashed = False

    @property
    def state(self) -> dict[str, Any]:
        return self._state

    def _written(self, reason: Reason, force: bool) -> None:
        if not (Reason(reason).critical or force):
            return
        self._durable = json.loads(json.dumps(self._state))
        self.durable_writes += 1
        if self.crash_at is not None and self.durable_writes == self.crash_at:
            self.crashed = True
            raise Crash(f"crash after durable write {self.durable_writes}")

    async def save(self, key: str, value: Any, *, reason: Reason, force: bool = False) -> None:
        if self.crashed:
            raise Crash("dead")
        self._state[key] = json.loads(json.dumps(value))
        self.reasons.append((key, Reason(reason)))
        self._written(reason, force)

    async def delete(self, key: str, *, reason: Reason, force: bool = False) -> None:
        if self.crashed:
            raise Crash("dead")
        self._state.pop(key, None)
        self.reasons.append((key, Reason(reason)))
        self._written(reason, force)

    def crash_copy(self) -> MemoryStore:
        """A store holding only what was durable."""
        return MemoryStore(json.loads(json.dumps(self._durable)))


class Harness:
    """One simulated exchange, one account ``main``, one manager."""

    def __init__(
        self,
        params: TradingParams | None = None,
        *,
        store: MemoryStore | None = None,
        exchange: SimExchange | None = None,
        clock: VirtualClock | None = None,
        price: float = 100_000.0,
        balance: float = 10_000.0,
        push_streams: bool = True,
    ) -> None:
        self.clock = clock or VirtualClock(start=EPOCH)
        self.exchange = exchange or SimExchange(
            clock=self.clock,
            seed=7,
            symbols=[SYMBOL, "ETHUSDT"],
            balances={"main": balance},
            slippage_bps=0.0,
        )
        if exchange is None:
            self.exchange.set_price(SYMBOL, price)
        self.venue = SimVenue(self.exchange, "main")
        self.store = store or MemoryStore()
        self.params = params or TradingParams()
        self.alerts: list[tuple[str, str, str]] = []
        self.manager = TpslManager(
            venues={"main": self.venue},
            store=self.store,
            clock=self.clock,
            params=self.params,
            timing=MonitorTiming(),
            on_alert=lambda sev, typ, msg: self.alerts.append((sev, typ, msg)),
            push_streams=push_streams,
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.manager.run())
        await self.settle()
        assert self.manager.ready, self.alerts

    async def stop(self) -> None:
        """Kill the engine (as a crash would: no flush, no goodbye)."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Crash):
            await self.task

    async def restart(self) -> Harness:
        """Kill this engine and start a new one on what its store made durable (same market)."""
        await self.stop()
        again = Harness(self.params, store=self.store.crash_copy(), exchange=self.exchange, clock=self.clock)
        await again.start()
        return again

    async def settle(self, seconds: float = 2.0) -> None:
        await self.clock.drive(self.clock.now() + seconds)

    async def price(self, last: float, symbol: str = SYMBOL) -> None:
        self.exchange.set_price(symbol, last)
        await self.settle()

    def open_orders(self) -> list[Order]:
        return self.exchange.open_orders("main")

    def position(self, symbol: str = SYMBOL) -> Position:
        return self.exchange.positions("main", symbol)[0]

    def request(
        self,
        approach: Approach = Approach.CONSERVATIVE,
        side: Side = Side.BUY,
        *,
        margin: float = 100.0,
        leverage: float = 10.0,
        entries: tuple[float | None, ...] = (None, 99_000.0, 98_000.0),
        tps: tuple[float, ...] = (101_000.0, 102_000.0, 103_000.0, 104_000.0),
        sl: float = 97_000.0,
        symbol: str = SYMBOL,
    ) -> TradeRequest:
        if approach is Approach.FAST:
            entries = entries[:1]
            tps = tps[:1]
        return TradeRequest("main", symbol, side, approach, margin, leverage, entries, tps, sl)


def stop_orders(orders: list[Order]) -> list[Order]:
    return [o for o in orders if o.trigger_price is not None and o.reduce_only]


def assert_protected(h: Harness) -> None:
    """Invariant 1: an open position has exactly one stop of ours covering its whole size."""
    pos = h.position()
    stops = stop_orders(h.open_orders())
    if pos.is_open:
        assert len(stops) == 1, (pos, stops)
        assert abs(stops[0].qty - pos.size) < 1e-9, (pos, stops)
        assert stops[0].side is pos.side.opposite  # type: ignore[union-attr]
