"""``opconsole sim-server``: the fake Bybit V5 server as a process of its own, and helpers to run it.

The server accepts the key pairs the client reads (the same environment variables), so a console
started with ``venue.kind = "bybit"`` and the printed URLs trades on the simulated market through the
real pybit client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from engine.core.clock import RealClock
from engine.core.errors import BadInput, state_refusal
from engine.core.settings import Settings
from engine.sim.exchange import SimExchange
from engine.sim.instruments import check_symbols
from engine.sim.server.app import BybitServer
from engine.sim.server.auth import account_names
from engine.venue.bybit.keys import settings_prefix
from persistence.errors import PersistenceError
from persistence.layout import StateFiles
from persistence.lock import StateLock


@contextlib.asynccontextmanager
async def serving(server: BybitServer, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run ``server`` for the block (on a free port by default) and yield its base URL.

    An address it cannot listen on (port in use, unknown host, no permission) is ``BadInput``.
    """
    try:
        url = await server.start(host, port)
    except OSError as exc:  # socket.gaierror (a bad host) is an OSError too
        await server.stop()
        raise BadInput(f"{host}:{port}", f"cannot listen there: {exc.strerror or exc}") from None
    try:
        yield url
    finally:
        await server.stop()


def check_address(host: str, port: int) -> None:
    """Refuse (``BadInput``) an address the server could not listen on, before anything is loaded.

    Binding a throw-away socket the way aiohttp binds (``SO_REUSEADDR``) finds a port in use, a
    host that does not resolve or is not ours, and a privileged port, without touching the state
    directory; :func:`serving` still reports a bind that fails later (a race) the same way.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror (a bad host) is an OSError too
        raise BadInput(f"{host}:{port}", f"cannot listen there: {exc.strerror or exc}") from None


def keys_from_env(settings: Settings, env: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """The key pairs the server accepts, read from the variables the client reads (main required)."""
    env = os.environ if env is None else env
    keys: dict[str, tuple[str, str]] = {}
    accounts = ["main", "mirror"] if settings.get("mirror.enabled") else ["main"]
    for account in accounts:
        prefix = settings_prefix(account)
        key_env, secret_env = settings.get(f"{prefix}.api_key_env"), settings.get(f"{prefix}.api_secret_env")
        key, secret = env.get(key_env, ""), env.get(secret_env, "")
        if key and secret:
            keys[key] = (secret, account)
        elif account == "main":
            raise BadInput(
                f"{prefix}.api_key_env",
                f"set ${key_env} and ${secret_env}: the server accepts the same key pairs the client uses",
            )
    return keys


def lock_state_dir(state_dir: Path) -> StateLock:
    """Create ``state_dir`` if needed and take its lock (the engine's lock file), or refuse with
    ``BadInput`` naming the holder: a server and an engine on one directory are exclusive."""
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = StateLock(StateFiles(state_dir).lock)
    try:
        lock.acquire()
    except PersistenceError as exc:
        raise state_refusal(exc, state_dir) from None
    return lock


async def serve(
    settings: Settings,
    host: str,
    port: int,
    state_dir: Path,
    *,
    ready: Callable[[BybitServer], None] | None = None,
) -> None:
    """Run the fake V5 server over a simulated exchange until cancelled (``opconsole sim-server``).

    The market continues from ``state_dir`` and is saved there on the way out; ``ready`` is called
    once the server listens. The server holds ``state_dir``'s lock (the engine's lock file) while it
    runs, so a server and an engine never write one directory's market at the same time: the second
    one is refused with ``BadInput`` before it reads or writes anything.
    """
    keys = keys_from_env(settings)
    check_address(host, port)
    # The server's market is the simulator's, always.
    check_symbols(list(settings.get("sim.symbols")), int(settings.get("sim.synthetic_symbols")))
    lock = lock_state_dir(state_dir)
    try:
        clock = RealClock()
        exchange = SimExchange.from_settings(settings, clock, state_dir)
        balances = settings.section("sim.balances")
        for _secret, account in keys.values():
            exchange.ensure_account(account, balances.get(account))
        server = BybitServer(exchange, keys, clock)
        async with serving(server, host, port):
            running = asyncio.create_task(exchange.run(), name="sim-exchange")
            try:
                if ready is not None:
                    ready(server)
                await asyncio.Event().wait()
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
    finally:
        lock.release()


def main(settings: Settings, host: str, port: int, state_dir: Path) -> int:
    """``opconsole sim-server``: serve until interrupted; prints where it listens."""

    def announce(server: BybitServer) -> None:
        names = ", ".join(account_names(server.keys))
        print(
            f"opconsole sim-server: REST {server.base_url}  WebSocket {server.ws_url}  accounts: {names}\n"
            f'point the console at it with venue.kind = "bybit", venue.base_url = "{server.base_url}", '
            f'venue.ws_url = "{server.ws_url}"',
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, host, port, state_dir, ready=announce))
    return 0
