"""Test support for the TP/SL engine tests: a scripted simulated market, an in-memory store, and a
manager wired to them.

Two ways to reach the market, so the same scenario runs over both (:func:`on_both_venues`):

- ``sim``: the in-process :class:`~engine.sim.venue.SimVenue` on a virtual clock (no real sleeps,
  deterministic); :meth:`Harness.settle` drives virtual time.
- ``bybit``: :class:`~engine.venue.bybit.venue.BybitVenue` (the real pybit client, REST and WebSockets)
  against the fake Bybit V5 server on 127.0.0.1, on the wall clock. pybit's calls and WebSocket
  threads are invisible to a virtual clock, so here :meth:`BybitHarness.settle` waits for a
  condition instead of for time: the engine has applied every event the exchange published (see
  :meth:`BybitHarness.settle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.alerts.bus import AlertBus
from engine.core.clock import Clock, RealClock, VirtualClock, parse_iso_utc
from engine.core.models import Order, Position, Side, Ticker, VenueEvent, Wallet
from engine.core.settings import load_settings
from engine.runtime.assembly import Engine, EngineRuntime
from engine.sim.exchange import SimExchange
from engine.sim.server.app import BybitServer
from engine.sim.venue import SimVenue
from engine.trading.approaches import Approach, TradeRequest, request_from_offsets
from engine.trading.manager import TpslManager
from engine.trading.params import MonitorTiming, TradingParams
from engine.venue.base import Endpoint, Venue
from engine.venue.bybit.keys import ApiKeys
from engine.venue.bybit.retry import RetryPolicy
from engine.venue.bybit.stream import StreamOptions
from engine.venue.bybit.transport import IpGuard
from engine.venue.bybit.venue import BybitVenue
from persistence.reasons import Reason
from persistence.store import Write

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SYMBOL = "BTCUSDT"
PROBE_SYMBOL = "SOLUSDT"
"""Listed on every harness market, never traded: :meth:`BybitHarness.settle` probes the stream with it."""
VENUES = ("sim", "bybit")
API_KEY, API_SECRET = "TPSLHARNESSKEY0001", "TPSLHARNESSSECRET0123456789abcd"
WAIT_S = 20.0
"""Upper bound of one wait over bybit (a hang fails the test instead of blocking the suite)."""
QUIET_ROUNDS = 2
"""Probe rounds in a row with no event and a free lock before the engine counts as idle over bybit;
the second one covers a task the last event woke (e.g. the adoption of an unknown position) that
has not taken the lock yet."""
TICKER_INTERVAL_S = 0.02
"""The fake server's public ticker push interval: short, so marks follow scripted prices at once."""


def durable(write: Write) -> bool:
    """Whether the store makes ``write`` durable at once (a critical reason, or forced)."""
    return write.force or Reason(write.reason).critical


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
        self.health_listeners: list[Callable[[BaseException | None], None]] = []

    @property
    def state(self) -> dict[str, Any]:
        return self._state

    def _written(self, durable: bool) -> None:
        if not durable:
            return
        self._durable = json.loads(json.dumps(self._state))
        self.durable_writes += 1
        if self.crash_at is not None and self.durable_writes == self.crash_at:
            self.crashed = True
            raise Crash(f"crash after durable write {self.durable_writes}")

    async def save(self, key: str, value: Any, *, reason: Reason, force: bool = False) -> None:
        await self.write([Write(key, reason, value, force=force)])

    async def delete(self, key: str, *, reason: Reason, force: bool = False) -> None:
        await self.write([Write(key, reason, remove=True, force=force)])

    async def write(self, writes: Sequence[Write]) -> None:
        """Every change at once; one durable write when any of them must be durable (the real
        store's one commit)."""
        if self.crashed:
            raise Crash("dead")
        for w in writes:
            if w.remove:
                self._state.pop(w.key, None)
            else:
                self._state[w.key] = json.loads(json.dumps(w.value))
            self.reasons.append((w.key, Reason(w.reason)))
        self._written(any(durable(w) for w in writes))

    def add_health_listener(self, listener: Callable[[BaseException | None], None]) -> None:
        self.health_listeners.append(listener)

    def crash_copy(self) -> MemoryStore:
        """A store holding only what was durable."""
        return MemoryStore(json.loads(json.dumps(self._durable)))


def new_exchange(
    clock: Clock, price: float = 100_000.0, balance: float = 10_000.0, *, synthetic: int = 0
) -> SimExchange:
    """The harness market: BTC at ``price`` (scripted, no slippage), one account ``main``; with
    ``synthetic``, also that many synthetic perpetuals (``SYN0001USDT`` ...) for many positions."""
    exchange = SimExchange(
        clock=clock,
        seed=7,
        symbols=[SYMBOL, "ETHUSDT", PROBE_SYMBOL],
        balances={"main": balance},
        slippage_bps=0.0,
        synthetic=synthetic,
    )
    exchange.set_price(SYMBOL, price)
    return exchange


class Harness:
    """One simulated exchange, one account ``main``, one manager, over the in-process venue.

    ``family`` collects this harness and every one :meth:`restart` makes from it (the last one holds
    the engine that finished the scenario).
    """

    def __init__(
        self,
        params: TradingParams | None = None,
        *,
        store: MemoryStore | None = None,
        exchange: SimExchange | None = None,
        clock: Clock | None = None,
        price: float = 100_000.0,
        balance: float = 10_000.0,
        push_streams: bool = True,
        family: list[Harness] | None = None,
    ) -> None:
        self.clock: Clock = clock or VirtualClock(start=EPOCH)
        self.exchange = exchange or new_exchange(self.clock, price, balance)
        self.venue: Venue = self._make_venue()
        self.store = store or MemoryStore()
        self.params = params or TradingParams()
        self.push_streams = push_streams
        self.alerts: list[tuple[str, str, str]] = []
        bus = AlertBus(self.clock)
        bus.subscribe(lambda alert: self.alerts.append((alert.severity, alert.type, alert.message)))
        self.manager = TpslManager(
            venues={"main": self.venue},
            store=self.store,
            clock=self.clock,
            params=self.params,
            timing=MonitorTiming(),
            alerts=bus,
            push_streams=push_streams,
        )
        self.task: asyncio.Task[None] | None = None
        self.family = family if family is not None else []
        self.family.append(self)

    def _make_venue(self) -> Venue:
        return SimVenue(self.exchange, "main")

    def _again(self, store: MemoryStore) -> Harness:
        """A new engine on the same market and clock (what a restarted process would be)."""
        return Harness(
            self.params,
            store=store,
            exchange=self.exchange,
            clock=self.clock,
            push_streams=self.push_streams,
            family=self.family,
        )

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

    async def close(self) -> None:
        """Stop the engine if it runs and release the venue (idempotent)."""
        if self.task is not None:
            await self.stop()
        await self.venue.close()

    async def restart(self) -> Harness:
        """Kill this engine and start a new one on what its store made durable (same market)."""
        await self.stop()
        await self.venue.close()
        again = self._again(self.store.crash_copy())
        await again.start()
        return again

    async def settle(self, seconds: float = 2.0) -> None:
        """Let the engine handle everything pending: ``seconds`` of virtual time."""
        assert isinstance(self.clock, VirtualClock)
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


class BybitHarness(Harness):
    """The same engine and market, reached through BybitVenue (real pybit) and the fake V5 server.

    The exchange and the server run on the wall clock. :meth:`settle` knows when the engine has
    caught up by probing the private stream: it changes the leverage of :data:`PROBE_SYMBOL` (a
    position update the engine ignores) and waits until the engine has received that update.
    Events travel in order (exchange queue -> server pump -> one WebSocket -> the engine's stream
    loop, which handles each event, orders sent included, before it reads the next), so once the
    probe is seen every earlier event has been applied. Rounds in which nothing but the probe arrived,
    with the account's lock free (:data:`QUIET_ROUNDS`), mean the engine has nothing left to do.
    """

    def __init__(
        self,
        server: BybitServer,
        params: TradingParams | None = None,
        *,
        store: MemoryStore | None = None,
        push_streams: bool = True,
        family: list[Harness] | None = None,
    ) -> None:
        self.server = server
        super().__init__(
            params,
            store=store,
            exchange=server.exchange,
            clock=server.clock,
            push_streams=push_streams,
            family=family,
        )
        self._probes_sent = 0
        self._probes_seen = 0
        self._activity = 0
        self._seen_changed = asyncio.Event()
        self.manager.add_observer(self._observe)

    def _make_venue(self) -> Venue:
        return server_venue(
            self.server,
            ApiKeys(API_KEY, API_SECRET),
            self.clock,
            threads=4,
            retry=RetryPolicy(max_retries=3, base_delay_s=0.02, max_delay_s=0.1),
            stream_options=StreamOptions(ping_interval_s=5.0, stale_after_s=15.0, reconnect_base_s=0.05),
            ticker_symbols=[SYMBOL],
        )

    def _again(self, store: MemoryStore) -> Harness:
        return BybitHarness(
            self.server, self.params, store=store, push_streams=self.push_streams, family=self.family
        )

    def _observe(self, account: str, event: VenueEvent) -> None:
        if isinstance(event, Position) and event.symbol == PROBE_SYMBOL:
            self._probes_seen += 1
        elif not isinstance(event, Ticker | Wallet):  # neither makes the engine act
            self._activity += 1
        self._seen_changed.set()

    async def _until(self, done: Callable[[], bool], what: str) -> None:
        """Wait (on events the engine observed, bounded by :data:`WAIT_S`) until ``done()``."""
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not done():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"bybit harness: timed out waiting for {what}; alerts: {self.alerts}")
            self._seen_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._seen_changed.wait(), min(remaining, 0.05))

    async def _probe(self) -> None:
        current = self.exchange.positions("main", PROBE_SYMBOL)[0].leverage
        self.exchange.set_leverage("main", PROBE_SYMBOL, 2.0 if current == 1.0 else 1.0)  # a change: an event
        self._probes_sent += 1
        sent = self._probes_sent
        await self._until(lambda: self._probes_seen >= sent, f"stream probe {sent}")

    async def start(self) -> None:
        self.task = asyncio.create_task(self.manager.run())
        await self._until(lambda: self.manager.engine_state == "running", "the engine to be running")
        await self.settle()

    async def stop(self) -> None:
        await super().stop()
        await self.venue.close()  # the dead process's connections go with it

    async def settle(self, seconds: float = 2.0) -> None:
        """Wait until the engine has applied every event published so far and has nothing in hand.

        ``seconds`` (virtual time over sim) has no meaning here: scenarios that need time to pass
        (periodic reconciliation, retry back-offs) are not run over bybit.
        """
        mark = self.exchange.ticker(SYMBOL).mark
        await self._until(lambda: self.manager.marks.get(SYMBOL) == mark, f"the {SYMBOL} mark {mark}")
        quiet = 0
        while quiet < QUIET_ROUNDS:
            before = self._activity
            await self._probe()
            idle = self._activity == before and self.manager.idle("main")
            quiet = quiet + 1 if idle else 0


class Market:
    """One harness market of the given ``kind`` (see :data:`VENUES`) for one test: the exchange, and
    over bybit the fake server on an ephemeral 127.0.0.1 port. :meth:`harness` makes engines on it;
    leaving the block stops every one of them and the server."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.harnesses: list[Harness] = []
        self.server: BybitServer | None = None

    async def __aenter__(self) -> Market:
        if self.kind == "bybit":
            clock = RealClock()
            self.server = BybitServer(
                new_exchange(clock),
                {API_KEY: (API_SECRET, "main")},
                clock,
                public_interval_s=TICKER_INTERVAL_S,
            )
            await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for h in self.harnesses:
            await h.close()
        if self.server is not None:
            await self.server.stop()

    def harness(
        self,
        params: TradingParams | None = None,
        *,
        store: MemoryStore | None = None,
        push_streams: bool = True,
    ) -> Harness:
        """A new engine on this market (start it with :meth:`Harness.start`)."""
        if self.server is not None:
            return BybitHarness(
                self.server, params, store=store, push_streams=push_streams, family=self.harnesses
            )
        return Harness(params, store=store, push_streams=push_streams, family=self.harnesses)

    def ledger(self) -> list[tuple[Any, ...]]:
        """The trades of the engine that finished the scenario, without times and ids (which differ
        between venues), amounts rounded to Bybit's 8 decimals."""
        if not self.harnesses:
            return []
        return [
            (
                t.account,
                t.symbol,
                t.side,
                t.approach,
                t.reason,
                t.tps_hit,
                *(round(v, 8) for v in (t.qty, t.entry_price, t.exit_price, t.pnl, t.fees)),
            )
            for t in self.harnesses[-1].manager.ledger.trades
        ]


Scenario = Callable[..., Awaitable[None]]


def on_both_venues(test: Scenario) -> Scenario:
    """Run a scenario test (which takes a ``market: Market``) over ``sim`` and over ``bybit``.

    The test is parametrised ``[sim]`` / ``[bybit]`` and gets a fresh :class:`Market` of that kind.
    Over bybit it then runs once more over sim, and both runs must leave the same ledger: the same
    script gives the same trades whichever venue the engine talks to.
    """

    @functools.wraps(test)
    async def run(*args: Any, market: str, **kwargs: Any) -> None:
        async with Market(market) as chosen:
            await test(*args, market=chosen, **kwargs)
            ledger = chosen.ledger()
        if market == "bybit":
            async with Market("sim") as reference:
                await test(*args, market=reference, **kwargs)
                expected = reference.ledger()
            assert ledger == expected, f"ledger over bybit:\n{ledger}\nover sim:\n{expected}"

    return pytest.mark.parametrize("market", VENUES)(run)


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


def server_venue(server: BybitServer, keys: ApiKeys, clock: Clock, **options: Any) -> BybitVenue:
    """``main``'s BybitVenue (pybit) against the fake V5 ``server``, on ``clock``; no ticker
    subscriptions unless ``options`` name some (any other BybitVenue option goes there too)."""
    return BybitVenue(
        "main",
        keys,
        clock,
        base_url=server.base_url,
        ws_url=server.ws_url,
        ip_guard=IpGuard(clock),
        **{"ticker_symbols": [], **options},
    )


async def open_longs(
    manager: TpslManager, exchange: SimExchange, symbols: Iterable[str], *, margin: float = 200.0
) -> None:
    """A conservative long on ``main`` for each of ``symbols``, at its price now: entries at market,
    1 % and 2 % below, take-profits 1-4 % above, the stop 3 % below."""
    for symbol in symbols:
        request = request_from_offsets(
            account="main",
            symbol=symbol,
            side=Side.BUY,
            approach=Approach.CONSERVATIVE,
            margin=margin,
            leverage=10.0,
            mark=exchange.ticker(symbol).last,
            instrument=exchange.instruments[symbol],
            entry_offsets_pct=[0.0, -1.0, -2.0],
            tp_offsets_pct=[1.0, 2.0, 3.0, 4.0],
            sl_offset_pct=-3.0,
        )
        await manager.open_trade(request)


def past_tp1(manager: TpslManager, symbols: Iterable[str]) -> dict[str, float]:
    """A price a little beyond the TP1 of each of ``symbols``' longs on ``main``: given to
    :meth:`SimExchange.set_prices`, one tick fills every TP1 and the stream pushes the fills together."""
    prices: dict[str, float] = {}
    for symbol in symbols:
        tp1 = manager.monitors[f"main:{symbol}:Buy"].orders["tp1"].price
        assert tp1 is not None
        prices[symbol] = tp1 * 1.002
    return prices


@dataclass(frozen=True)
class Sent:
    """One request a venue was sent: its endpoint, how many order items it carried, the symbol a
    read asked for (None: the whole account)."""

    endpoint: str
    items: int = 1
    symbol: str | None = None


ORDER_CALLS = {
    "place": Endpoint.CREATE,
    "amend": Endpoint.AMEND,
    "cancel": Endpoint.CANCEL,
    "place_batch": Endpoint.CREATE_BATCH,
    "amend_batch": Endpoint.AMEND_BATCH,
    "cancel_batch": Endpoint.CANCEL_BATCH,
}
READ_CALLS = {"positions": Endpoint.POSITIONS, "open_orders": Endpoint.OPEN_ORDERS}


class RequestLog:
    """Logs the order requests and position / open-order reads a venue instance is sent (its
    methods are wrapped in place, so it works on a venue an engine already holds)."""

    def __init__(self, venue: Venue) -> None:
        self.sent: list[Sent] = []
        for name, endpoint in ORDER_CALLS.items():
            setattr(venue, name, self._order(endpoint, getattr(venue, name)))
        for name, endpoint in READ_CALLS.items():
            setattr(venue, name, self._read(endpoint, getattr(venue, name)))

    def _order(self, endpoint: str, call: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        async def logged(request: Any) -> Any:
            self.sent.append(Sent(endpoint, len(request) if endpoint.endswith("-batch") else 1))
            return await call(request)

        return logged

    def _read(self, endpoint: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def logged(symbol: str | None = None) -> Any:
            self.sent.append(Sent(endpoint, 0, symbol))
            return await call(symbol)

        return logged

    def mark(self) -> int:
        """Where the log is now: :meth:`since` that mark is what was sent after it."""
        return len(self.sent)

    def since(self, mark: int) -> list[Sent]:
        return self.sent[mark:]

    @staticmethod
    def orders(sent: Iterable[Sent]) -> dict[str, list[int]]:
        """Order endpoint -> the items of each of its requests, in the order sent."""
        calls: dict[str, list[int]] = {}
        for request in sent:
            if request.endpoint in ORDER_CALLS.values():
                calls.setdefault(request.endpoint, []).append(request.items)
        return calls


async def start_runtime(
    state_dir: Path, values: Mapping[str, Any]
) -> tuple[EngineRuntime, Engine, VirtualClock]:
    """The whole engine as the console runs it, on the simulator and a virtual clock, with the
    settings ``values`` over the shipped defaults (stop it with :meth:`EngineRuntime.stop`)."""
    settings = load_settings(state_dir=state_dir).with_values(dict(values), source="test")
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, state_dir, clock)
    return runtime, await runtime.start(), clock
