"""The fake Bybit V5 server: one aiohttp application over a simulated exchange, so the real pybit
client runs against it locally.

:class:`BybitServer` composes the REST side (:mod:`~engine.sim.server.rest`) and the WebSocket side
(:mod:`~engine.sim.server.ws`) over one :class:`~engine.sim.exchange.SimExchange`, one key table
(:mod:`~engine.sim.server.auth`) and one set of fault switches (:mod:`~engine.sim.server.faults`),
listens, and holds the switches a test flips: added latency, late answers, error bursts (any retCode,
e.g. a 10006 burst), HTTP 403 on every call, refused, dropped or muted private streams.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from engine.core.clock import Clock
from engine.sim.server.auth import key_pairs
from engine.sim.server.faults import ServerFaults
from engine.sim.server.rest import RestApi
from engine.sim.server.ws import WebSocketApi
from engine.venue.errors import error_from_code

if TYPE_CHECKING:
    from engine.sim.exchange import SimExchange

_DEFAULT_MESSAGES = {
    10000: "Server Timeout",
    10006: "Too many visits!",
    10016: "Internal system error.",
}
"""Bybit's own wording of the codes tests inject most, used when a burst gives no message."""


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
        self.keys = key_pairs(keys)
        self.faults = ServerFaults()
        self.base_url = ""
        self.ws_url = ""
        self.rest = RestApi(exchange, self.keys, clock, self.faults)
        self.streams = WebSocketApi(
            exchange, self.keys, clock, self.faults, public_interval_s=public_interval_s
        )
        self._runner: web.AppRunner | None = None

    @property
    def requests(self) -> int:
        """REST calls received so far (refused ones included)."""
        return self.rest.requests

    # --- life cycle ------------------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application (the two WebSocket paths and the REST routes)."""
        app = web.Application()
        self.streams.add_routes(app)
        self.rest.add_routes(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = a free port) and start the stream pumps; returns the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        # aiohttp does not expose the port it bound, which port 0 makes us need.
        sockets = getattr(site._server, "sockets", None) or []
        bound_port = sockets[0].getsockname()[1] if sockets else port
        self.base_url = f"http://{host}:{bound_port}"
        self.ws_url = f"ws://{host}:{bound_port}"
        self.streams.start()
        return self.base_url

    async def stop(self) -> None:
        """Stop the pumps, close every WebSocket and the listener."""
        await self.streams.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- fault switches --------------------------------------------------------------------------
    def error_burst(
        self, account: str, n: int, code: int, message: str = "", endpoints: Collection[str] | None = None
    ) -> None:
        """Answer the account's next ``n`` REST calls (to ``endpoints`` when given) with ``code``."""
        text = message or _DEFAULT_MESSAGES.get(code, "error")
        self.exchange.inject_errors(account, n, error_from_code(code, text), endpoints)

    async def drop_streams(self, account: str, *, abrupt: bool = False) -> int:
        """Close the account's private WebSockets (see :meth:`WebSocketApi.drop_streams`)."""
        return await self.streams.drop_streams(account, abrupt=abrupt)

    async def set_outage(self, account: str, down: bool) -> None:
        """Take an account's API down (REST calls answer 503, stream logins fail, its open private
        streams are cut) or bring it back up."""
        if down:
            self.faults.outages.add(account)
            await self.streams.drop_streams(account, abrupt=True)
        else:
            self.faults.outages.discard(account)

    def mute_streams(self, account: str) -> int:
        """Silence the account's private WebSockets (see :meth:`WebSocketApi.mute_streams`)."""
        return self.streams.mute_streams(account)

    async def push_raw(self, account: str, topic: str, data: list[Any]) -> None:
        """Send a hand-made private message to the account's subscribers (a test's malformed payload)."""
        await self.streams.push_raw(account, topic, data)

    def add_raw_rows(self, account: str, endpoint: str, rows: list[Any]) -> None:
        """Serve hand-made rows in ``endpoint``'s REST list (account "" for public endpoints; see
        :attr:`RestApi.raw_rows`): Bybit shapes the simulator does not make."""
        self.rest.raw_rows.setdefault((account, endpoint), []).extend(rows)

    def connections(self, account: str | None = None) -> int:
        """Open private connections (of one account, or all)."""
        return self.streams.connections(account)
