"""The Bybit venue's push streams: pybit WebSockets, hopped onto the event loop, kept alive.

pybit runs each WebSocket on its own thread and calls our callbacks there. Each callback only hops the
raw message onto the loop with ``call_soon_threadsafe`` and swallows anything that goes wrong (pybit
closes a connection for good when a callback raises); parsing happens on the loop. pybit's own
reconnect is off: one watchdog owns the connections. It declares a channel dead when pybit says it is
not connected or when nothing (no message, no pong) arrived for ``stale_after_s``, reconnects with
backoff, re-subscribes, and then backfills the executions since the last one it delivered, so no fill
is lost in the gap — and an execution id seen before is never delivered twice.

pybit registers a topic's callback only after it has sent the subscription, and Bybit answers a ticker
subscription with a snapshot at once (later messages are deltas, sent only when a field changes), so
the first push can beat the callback. Such pushes are held and replayed in order when the callback is
registered (:class:`_ManagedWebSocket`): a quiet market would otherwise never give the engine a mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pybit._http_manager import generate_signature
from pybit.unified_trading import WebSocket

from engine.core.clock import Clock, now_ms, real_seconds
from engine.core.models import Execution, StreamStatus, VenueEvent
from engine.venue.bybit.keys import REDACTOR, ApiKeys
from engine.venue.bybit.parse import (
    ms_to_s,
    parse_execution,
    parse_order,
    parse_position,
    parse_rows,
    parse_ticker,
    parse_wallet,
)
from engine.venue.bybit.wire import PRIVATE_TOPICS
from engine.venue.errors import MalformedReply, TransientError

log = logging.getLogger("opconsole.venue.bybit.stream")

AUTH_TRANSIT_S = 1.0
"""Real seconds a private stream's auth message may take to reach the server (pybit's default)."""

EARLY_PUSH_LIMIT = 1_000
"""Pushes held per topic while its callback is not registered yet (a guard: that window is a few
statements of pybit's ``subscribe``, so in practice it holds one snapshot, or a handful of events)."""


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """Liveness and reconnection bounds of the streams."""

    ping_interval_s: float = 20.0
    stale_after_s: float = 45.0
    check_interval_s: float = 1.0
    reconnect_base_s: float = 0.5
    reconnect_max_s: float = 30.0
    backfill_overlap_s: float = 1.0
    remember_exec_ids: int = 20_000
    connect_timeout_s: float = 15.0

    @property
    def ping_timeout_s(self) -> float:
        # websocket-client refuses a ping timeout that is not below the interval.
        return min(10.0, self.ping_interval_s / 2)


@dataclass(frozen=True, slots=True)
class StreamEndpoints:
    """Where the WebSockets connect: explicit URLs, or pybit's templates picked by its flags."""

    private_url: str = ""
    public_url: str = ""
    testnet: bool = False
    demo: bool = False


class ExecutionDedup:
    """Remembers the latest execution ids (bounded) so a fill seen twice is delivered once."""

    def __init__(self, capacity: int) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def admit(self, exec_id: str) -> bool:
        """True the first time an id is offered, False afterwards."""
        if exec_id in self._seen:
            return False
        self._seen[exec_id] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True


class _ManagedWebSocket(WebSocket):
    """pybit's WebSocket, pointed at an explicit URL when one is given, reporting its liveness, and
    never losing a push that beats its topic's callback.

    pybit formats its module-level URL templates in ``_connect``; overriding ``_connect`` is the one
    place to substitute a URL without touching pybit's globals (two venues may point at different
    servers). ``_on_message`` / ``_on_pong`` / ``_on_close`` are pybit's hooks on its own thread.

    pybit's ``subscribe`` sends the request and only then registers the topic's callback, on the
    subscribing thread, while its reader thread handles whatever the server answers; a push whose topic
    has no callback yet makes pybit raise (and close the connection), and merely skipping it, as this
    class once did, still loses it. Bybit sends a ticker snapshot right after a subscription, and
    nothing more until a field changes, so losing that snapshot leaves the symbol without a mark for
    as long as the market is quiet. A
    topic is therefore *pending* from the moment pybit checks it (``_check_callback_directory``, just
    before the send) until its callback is registered (``_set_callback``); pushes of a pending topic
    are held, and replayed through pybit's own handling, in arrival order, when the callback arrives.
    One lock orders the reader's dispatch against that registration, so a later push can neither slip
    in before the replay nor land in the hold after it has been emptied.
    """

    def __init__(
        self,
        channel_type: str,
        *,
        url: str,
        clock: Clock,
        on_activity: Callable[[], None],
        on_closed: Callable[[], None],
        abandon: threading.Event | None = None,
        **kwargs: Any,
    ) -> None:
        # Set before pybit's __init__, which connects at once.
        self._abandon = abandon or threading.Event()
        self._custom_url = url
        self._clock = clock
        self._activity = on_activity
        self._closed_hook = on_closed
        # Callbacks run under this lock: ours only hop the message onto the loop, they never block.
        self._dispatch = threading.Lock()
        self._early: dict[str, list[dict[str, Any]]] = {}
        """Pending topic -> the pushes that arrived before its callback, oldest first."""
        super().__init__(channel_type, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ws_name}>"

    def _connect(self, url: str) -> None:
        super()._connect(self._custom_url or url)

    def is_connected(self) -> bool:
        # pybit spins on this, without a bound, while it connects and before it subscribes; an
        # attempt the stream gave up on must end here, or its thread (one of the transport's, which
        # REST calls need too) would spin forever: a server that refuses logins (an account's API
        # outage) would starve the account's REST calls after a few reconnect attempts.
        if self._abandon.is_set():
            raise ConnectionAbortedError("connection attempt abandoned (it took too long)")
        return bool(super().is_connected())

    def _on_message(self, message: str) -> None:
        self._activity()
        super()._on_message(message)

    def _on_pong(self) -> None:
        self._activity()
        super()._on_pong()

    def _on_close(self) -> None:
        super()._on_close()
        self._closed_hook()

    def _process_subscription_message(self, message: dict[str, Any]) -> None:
        # pybit records a subscription only after sending it, so a server that answers faster than
        # that thread runs makes pybit raise KeyError on its own reply (and drop the connection).
        req_id = message.get("req_id")
        if req_id and req_id not in self.subscriptions:
            if message.get("success") is False:
                log.error("subscription refused: %s", message.get("ret_msg"))
            return
        super()._process_subscription_message(message)

    def _auth(self) -> None:
        # pybit stamps the auth expiry with the wall clock, but the server judges it on its own clock,
        # which is ours: on a sped-up simulated clock, ahead of the wall, every expiry would be past.
        # The allowance covers the message's transit, which takes real time.
        allowance_s = AUTH_TRANSIT_S / real_seconds(self._clock, 1.0)
        expires = now_ms(self._clock) + round(allowance_s * 1000)
        signature = generate_signature(self.rsa_authentication, self.api_secret, f"GET/realtime{expires}")
        self.ws.send(json.dumps({"op": "auth", "args": [self.api_key, expires, signature]}))

    # --- pushes that beat their callback (see the class doc) -------------------------------------
    def _check_callback_directory(self, topics: list[str]) -> None:
        # pybit calls this in subscribe() before sending: from here on the topics' pushes are held.
        super()._check_callback_directory(topics)
        with self._dispatch:
            for topic in topics:
                self._early.setdefault(topic, [])

    def _set_callback(self, topic: str, callback_function: Callable[[dict[str, Any]], None]) -> None:
        with self._dispatch:
            super()._set_callback(topic, callback_function)
            held = self._early.pop(topic, [])
            if held:
                log.debug("%s: replaying %d push(es) that beat the callback", topic, len(held))
            for message in held:
                super()._process_normal_message(message)

    def _process_normal_message(self, message: dict[str, Any]) -> None:
        topic = str(message.get("topic", ""))
        with self._dispatch:
            if topic in self.callback_directory:
                super()._process_normal_message(message)
                return
            held = self._early.get(topic)
            if held is None:
                # Not subscribed (or no longer): pybit itself would raise on it and close the socket.
                log.debug("%s: push for a topic without a subscription dropped", topic)
                return
            if len(held) >= EARLY_PUSH_LIMIT:
                log.warning("%s: more than %d pushes before its callback; dropped", topic, EARLY_PUSH_LIMIT)
                return
            held.append(message)


class _Channel:
    """One WebSocket connection and what it must be subscribed to."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ws: _ManagedWebSocket | None = None
        self.last_activity = 0.0
        self.symbols: set[str] = set()  # public channel: ticker symbols
        # Held while (re)connecting, so the watchdog and a new subscription never race.
        self.lock = asyncio.Lock()


RunBlocking = Callable[..., Awaitable[Any]]


def _drop_socket(ws: _ManagedWebSocket) -> None:
    """Close an attempt's socket without waiting for it (pybit's ``exit`` may wait without bound)."""
    try:
        ws.exited = True
        ws.ws.close()
    except Exception as exc:  # half-built: there may be nothing to close
        log.debug("closing an abandoned connection attempt: %s", exc)


class BybitStream:
    """The private (execution, order, position, wallet) and public (tickers) streams of one account."""

    def __init__(
        self,
        account: str,
        keys: ApiKeys,
        endpoints: StreamEndpoints,
        clock: Clock,
        options: StreamOptions,
        *,
        run_blocking: RunBlocking,
        backfill: Callable[[float], Awaitable[list[Execution]]],
        seed: int = 0,
    ) -> None:
        self.account = account
        self.queue: asyncio.Queue[VenueEvent] = asyncio.Queue()
        self._keys = keys
        self._endpoints = endpoints
        self._clock = clock
        self._options = options
        self._run_blocking = run_blocking
        self._backfill = backfill
        self._rng = random.Random(seed)
        self._dedup = ExecutionDedup(options.remember_exec_ids)
        self._private = _Channel("private")
        self._public = _Channel("public")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        self._last_exec_ts = 0.0
        self.reconnects = 0
        self.delivered_executions = 0

    # --- life cycle -----------------------------------------------------------------------------
    async def start(self, ticker_symbols: Iterable[str] = ()) -> None:
        """Connect the private channel (and the public one when there are symbols), then watch them."""
        self._loop = asyncio.get_running_loop()
        self._last_exec_ts = self._clock.now()
        self._public.symbols.update(ticker_symbols)
        await self._connect(self._private)
        if self._public.symbols:
            await self._connect(self._public)
        self._put(
            StreamStatus(self.account, connected=True, gap=False, reason="connected", ts=self._clock.now())
        )
        self._watchdog = asyncio.create_task(self._watch(), name=f"bybit-stream-{self.account}")

    async def close(self) -> None:
        """Stop watching and close both connections."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        for channel in (self._private, self._public):
            await self._teardown(channel)

    async def watch_tickers(self, symbols: Iterable[str]) -> None:
        """Add ticker subscriptions (opening the public channel if needed)."""
        channel = self._public
        async with channel.lock:
            new = set(symbols) - channel.symbols
            if not new:
                return
            channel.symbols.update(new)
            ws = channel.ws
            if ws is None or not ws.is_connected():
                await self._teardown(channel)
                await self._connect(channel)
                return
            await self._run_blocking(ws.ticker_stream, symbol=sorted(new), callback=self._hop(channel))

    def status(self) -> dict[str, bool]:
        """Whether each channel is connected (public only when it has symbols)."""
        return {
            channel.name: channel.ws is not None and channel.ws.is_connected()
            for channel in (self._private, self._public)
            if channel is self._private or channel.symbols
        }

    # --- connecting ------------------------------------------------------------------------------
    def _new_socket(self, channel: _Channel, abandon: threading.Event) -> _ManagedWebSocket:
        """Blocking (runs in the pool): open, authenticate and subscribe one channel. Setting
        ``abandon`` (the stream gave up waiting) ends the attempt and closes what it opened."""
        ws: _ManagedWebSocket | None = None
        try:
            ws = self._open_socket(channel, abandon)
            if abandon.is_set():  # done after the stream stopped waiting: nobody will use it
                raise ConnectionAbortedError("connection attempt abandoned (it took too long)")
        except BaseException:
            if ws is not None:
                _drop_socket(ws)
            raise
        return ws

    def _open_socket(self, channel: _Channel, abandon: threading.Event) -> _ManagedWebSocket:
        touch = self._toucher(channel)
        closed = self._threadsafe(self._wake.set)
        opts = self._options
        common: dict[str, Any] = {
            "clock": self._clock,
            "on_activity": touch,
            "on_closed": closed,
            # websocket-client counts real seconds; both are divided alike, so the timeout stays
            # below the interval as it requires.
            "ping_interval": real_seconds(self._clock, opts.ping_interval_s),
            "ping_timeout": real_seconds(self._clock, opts.ping_timeout_s),
            # pybit's retry counter gives N-1 usable attempts; our watchdog does the real retrying.
            "retries": 2,
            "restart_on_error": False,
            "abandon": abandon,
        }
        ends = self._endpoints
        callback = self._hop(channel)
        if channel is self._private:
            ws = _ManagedWebSocket(
                "private",
                url=ends.private_url,
                testnet=ends.testnet,
                demo=ends.demo,
                api_key=self._keys.api_key,
                api_secret=self._keys.api_secret,
                **common,
            )
            for topic in PRIVATE_TOPICS:
                ws.subscribe(topic, callback)
        else:
            # Demo trading has private streams only; its public data is mainnet's.
            ws = _ManagedWebSocket(
                "linear",
                url=ends.public_url,
                testnet=ends.testnet and not ends.demo,
                **common,
            )
            ws.ticker_stream(symbol=sorted(channel.symbols), callback=callback)
        touch()
        return ws

    async def _connect(self, channel: _Channel) -> None:
        # Bounded: pybit waits for a connection without limit in places (subscribe spins until
        # connected), and a stream must never hang on one attempt.
        bound = self._options.connect_timeout_s
        abandon = threading.Event()
        try:
            attempt = self._run_blocking(self._new_socket, channel, abandon)
            channel.ws = await self._clock.wait_for(attempt, bound)
        except asyncio.CancelledError:  # the stream is closing: its attempt must end too
            abandon.set()
            raise
        except Exception as exc:  # pybit's and websocket's own types: a typed venue error leaves here
            abandon.set()  # the attempt's thread stops spinning and closes what it opened
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise TransientError(f"{channel.name} stream of {self.account}: cannot connect ({why})") from exc

    async def _teardown(self, channel: _Channel) -> None:
        ws, channel.ws = channel.ws, None
        if ws is not None:
            try:
                await self._run_blocking(ws.exit)
            except Exception as exc:  # a socket that is already gone may complain on close
                log.debug("closing %s stream of %s: %s", channel.name, self.account, exc)

    def _is_dead(self, channel: _Channel) -> bool:
        ws = channel.ws
        if ws is None or not ws.is_connected():
            return True
        return self._clock.monotonic() - channel.last_activity > self._options.stale_after_s

    async def _watch(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await self._clock.wait_for(self._wake.wait(), self._options.check_interval_s)
            self._wake.clear()
            if self._closed:
                return
            if self._is_dead(self._private):
                await self._recover_private()
            if self._public.symbols and self._is_dead(self._public):
                async with self._public.lock:
                    if self._is_dead(self._public):
                        await self._reconnect(self._public)

    async def _reconnect(self, channel: _Channel) -> None:
        """Tear the channel down and reconnect with backoff until it works (or the stream closes)."""
        await self._teardown(channel)
        attempt = 0
        while not self._closed:
            attempt += 1
            try:
                await self._connect(channel)
            except Exception as exc:
                delay = min(
                    self._options.reconnect_max_s, self._options.reconnect_base_s * 2 ** (attempt - 1)
                )
                delay = delay / 2 + self._rng.uniform(0.0, delay / 2)
                log.warning(
                    "%s %s stream: reconnect %d failed (%s); next in %.1fs",
                    self.account,
                    channel.name,
                    attempt,
                    REDACTOR.redact(str(exc)),
                    delay,
                )
                await self._clock.sleep(delay)
                continue
            self.reconnects += 1
            log.info("%s %s stream reconnected (attempt %d)", self.account, channel.name, attempt)
            return

    async def _recover_private(self) -> None:
        now = self._clock.now()
        self._put(StreamStatus(self.account, connected=False, gap=True, reason="stream lost", ts=now))
        await self._reconnect(self._private)
        if self._closed:
            return
        # Subscribed again first, then backfilled: whatever arrives twice is dropped by id.
        since = self._last_exec_ts - self._options.backfill_overlap_s
        try:
            missed = await self._backfill(since)
        except Exception as exc:
            log.error("%s: executions backfill failed: %s", self.account, REDACTOR.redact(str(exc)))
            missed = []
        for execution in sorted(missed, key=lambda e: e.ts):
            self._deliver_execution(execution)
        self._put(
            StreamStatus(self.account, connected=True, gap=True, reason="resumed", ts=self._clock.now())
        )

    # --- thread -> loop hops ---------------------------------------------------------------------
    def _threadsafe(self, fn: Callable[[], None]) -> Callable[[], None]:
        loop = self._loop

        def hop() -> None:
            try:
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(fn)
            except Exception:  # the loop went away while pybit's thread was still talking
                pass

        return hop

    def _toucher(self, channel: _Channel) -> Callable[[], None]:
        clock = self._clock

        def touch() -> None:
            # A float assignment is atomic; the watchdog only reads it.
            channel.last_activity = clock.monotonic()

        return touch

    def _hop(self, channel: _Channel) -> Callable[[dict[str, Any]], None]:
        """The callback pybit calls on its thread: hand the message to the loop, never raise."""
        loop = self._loop
        handle = self._on_private if channel is self._private else self._on_public

        def callback(message: dict[str, Any]) -> None:
            try:
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(self._safely, handle, message)
            except Exception:
                pass

        return callback

    def _safely(self, handle: Callable[[dict[str, Any]], None], message: dict[str, Any]) -> None:
        try:
            handle(message)
        except Exception:
            log.exception("%s: bad stream message on topic %s", self.account, message.get("topic"))

    # --- parsing (on the loop) ---------------------------------------------------------------------
    def _on_private(self, message: dict[str, Any]) -> None:
        """Each item of a private message on its own: one that cannot be read (no execId, a number
        that does not parse) is logged and dropped, and the message's other items still count. The
        REST reads behind the stream (backfill, polls, reconciliation) report a malformed reply
        loudly; the stream cannot refuse one."""
        topic = str(message.get("topic", ""))
        try:
            ts = ms_to_s(message.get("creationTime"), default=self._clock.now())
        except MalformedReply:
            ts = self._clock.now()
        if topic not in PRIVATE_TOPICS:
            return
        for item in message.get("data", []):
            try:
                events = parse_rows(
                    f"stream {topic}", [item], lambda row: self._parse_private(topic, row, ts)
                )
            except MalformedReply as exc:
                log.error("%s: bad stream message item dropped: %s", self.account, exc)
                continue
            for event in events:
                if isinstance(event, Execution):
                    self._deliver_execution(event)
                else:
                    self._put(event)

    def _parse_private(self, topic: str, item: Mapping[str, Any], ts: float) -> VenueEvent:
        if topic == "execution":
            return parse_execution(self.account, item)
        if topic == "order":
            return parse_order(self.account, item)
        if topic == "position":
            return parse_position(self.account, item)
        return parse_wallet(self.account, item, ts)

    def _on_public(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if isinstance(data, dict) and data.get("symbol"):
            ts = ms_to_s(message.get("ts"), default=self._clock.now())
            self._put(parse_ticker(data, ts))

    def _deliver_execution(self, execution: Execution) -> None:
        if not self._dedup.admit(execution.exec_id):
            return
        self._last_exec_ts = max(self._last_exec_ts, execution.ts)
        self.delivered_executions += 1
        self._put(execution)

    def _put(self, event: VenueEvent) -> None:
        self.queue.put_nowait(event)
