"""Each account starts on its own: an account whose stream cannot log in (its API is down) never
holds back another account's reconciliation, and so its protection (soak, seed 13: a restart during
the mirror outage waited 5 s for the mirror's stream before reconciling main)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from tpsl_harness import EPOCH, MemoryStore, new_exchange

from engine.alerts.bus import AlertBus
from engine.core.clock import VirtualClock
from engine.core.models import VenueEvent
from engine.sim.venue import SimVenue
from engine.trading.manager import SUBSCRIBE_WAIT_S, TpslManager
from engine.trading.params import MonitorTiming, TradingParams


class LoginRefused(SimVenue):
    """The account's REST answers; its private stream never logs in."""

    async def pushes(self) -> AsyncIterator[Sequence[VenueEvent]]:
        await asyncio.Event().wait()
        yield ()  # never reached: makes this an async generator like the venue's own


async def test_an_account_whose_stream_never_logs_in_does_not_delay_another_accounts_start() -> None:
    clock = VirtualClock(start=EPOCH)
    exchange = new_exchange(clock)
    exchange.ensure_account("mirror", 5_000.0)
    manager = TpslManager(
        venues={"main": SimVenue(exchange, "main"), "mirror": LoginRefused(exchange, "mirror")},
        store=MemoryStore(),
        clock=clock,
        params=TradingParams(),
        timing=MonitorTiming(),
        alerts=AlertBus(clock),
        push_streams=True,
    )
    running = asyncio.create_task(manager.run())
    started = clock.now()
    try:
        await clock.drive_while(manager.wait_ready("main"))
        main_ready_after = clock.now() - started
        await clock.drive_while(manager.wait_ready("mirror"))  # reconciled without its stream
        assert main_ready_after < SUBSCRIBE_WAIT_S / 2
        assert clock.now() - started >= SUBSCRIBE_WAIT_S  # the mirror gave its stream its chance
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
