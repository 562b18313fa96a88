"""Trading inside the runtime: the state store, the TP/SL manager, operator actions, and the trades a
scenario file or the simulator's demo asks for, assembled and started in one place.

The runtime calls :func:`open_state` first, :func:`start_trading` once its venues exist, and closes
the store after its tasks are cancelled. The manager's start-up (load -> reconcile -> run) happens in
its own task, so the engine reports ``reconciling`` until the venue agrees with the store.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.core.clock import Clock
from engine.core.errors import BadInput
from engine.core.settings import Settings
from engine.runtime.scenario import Scenario, demo_trades, run_trades, state_is_empty
from engine.trading.manager import AlertHook, TpslManager
from engine.trading.operator import OperatorActions
from engine.trading.params import MonitorTiming, TradingParams
from engine.venue.base import Venue
from persistence.errors import StateLocked
from persistence.recovery import RecoveryReport
from persistence.store import Store

Spawn = Callable[[str, Coroutine[Any, Any, None]], Any]


@dataclass(slots=True)
class Trading:
    """The trading side of a running engine."""

    store: Store
    manager: TpslManager
    actions: OperatorActions


def open_store(settings: Settings, state_dir: Path, clock: Clock) -> Store:
    """The state store with the persistence settings and the ``smart_persistence`` toggle's policy."""
    policy = "smart" if settings.get("profile.smart_persistence") == "optimized" else "simple"
    return Store(
        state_dir,
        clock=clock,
        flush_interval_s=float(settings.get("persistence.flush_interval_s")),
        compact_max_bytes=int(settings.get("persistence.compact_max_bytes")),
        compact_max_records=int(settings.get("persistence.compact_max_records")),
        policy=policy,
    )


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def market_is_simulated(settings: Settings) -> bool:
    """True when the market behind the venue is the simulator: the embedded one, or the fake Bybit
    V5 server (``opconsole sim-server``) reached on loopback. Only then are demo trades opened and
    order link ids made reproducible; a real Bybit endpoint is never on loopback."""
    if settings.get("venue.kind") == "sim":
        return True
    host = urlsplit(settings.get("venue.base_url")).hostname
    return host in LOOPBACK_HOSTS


async def open_state(settings: Settings, state_dir: Path, clock: Clock) -> tuple[Store, RecoveryReport]:
    """Lock the state directory, recover the state, and start the store's writer.

    The engine does this before anything else touches the state directory (the simulator saves its
    market there too), so a second console on the same directory stops here, having changed nothing.
    """
    store = open_store(settings, state_dir, clock)
    try:
        recovery = store.load()
    except StateLocked as exc:
        raise BadInput(str(state_dir), str(exc)) from None
    await store.start()
    return store, recovery


async def start_trading(
    *,
    settings: Settings,
    state_dir: Path,
    clock: Clock,
    venues: dict[str, Venue],
    spawn: Spawn,
    scenario: Scenario | None = None,
    on_alert: AlertHook | None = None,
    store: Store | None = None,
    recovery: RecoveryReport | None = None,
) -> Trading:
    """Build the manager over the store (opened here unless given), and spawn it plus the scenario or
    demo trades. ``recovery`` is the report of a store the caller opened with :func:`open_state`."""
    if store is None:
        store, recovery = await open_state(settings, state_dir, clock)
    simulated = market_is_simulated(settings)
    seed = int(settings.get("sim.seed"))
    # the instance tag: reproducible on the simulator, unique per installation on a real exchange
    rng = random.Random(f"instance:{seed}") if simulated else random.SystemRandom()
    manager = TpslManager(
        venues=venues,
        store=store,
        clock=clock,
        params=TradingParams.from_settings(settings),
        timing=MonitorTiming.from_settings(settings),
        on_alert=on_alert,
        rng=rng,
        push_streams=settings.get("profile.push_streams") == "optimized",
    )
    if recovery is not None and (recovery.critical or recovery.fell_back_to_prev or recovery.torn_tail_bytes):
        # Never a silent empty or partial state: the operator hears what recovery had to do.
        manager.raise_alert(
            "critical" if recovery.critical else "warning", "state_recovery", recovery.message
        )
    empty = state_is_empty(store.state)
    manager.load()
    spawn("tpsl", manager.run())
    trades = list(scenario.trades) if scenario is not None else []
    if scenario is None and simulated and empty:
        trades = demo_trades(int(settings.get("sim.demo_trades")), list(settings.get("sim.symbols")), seed)
    if trades:
        spawn("scenario-trades", _run_quietly(manager, trades, clock))
    return Trading(store, manager, OperatorActions(manager))


async def _run_quietly(manager: TpslManager, trades: list[Any], clock: Clock) -> None:
    await run_trades(manager, trades, clock)
