"""The time source the store runs on, duck-typed so that persistence never imports the engine.

The engine passes its ``engine.core.clock.Clock`` (RealClock or VirtualClock); both satisfy this protocol,
so flush timers sleep on virtual time in a simulation and replay an hour in a fraction of a second.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class TimeSource(Protocol):
    """What the store needs from a clock: read the time and sleep on it."""

    def now(self) -> float:
        """Seconds since the Unix epoch (virtual or real)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller until ``seconds`` have passed on this clock."""
        ...
