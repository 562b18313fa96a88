"""The alerts a benchmark run keeps: only what its figures read, not every alert of the run.

A run at a thousand positions raises thousands of alerts (stops hit, breakevens waiting); the figures
need the breakeven waits (their time and message: :mod:`.requests` leaves those TP1s out of the
reaction), how many alerts were critical, and the first :data:`CRITICAL_KEPT` critical ones (type and
message), which the report lists so a non-zero ``critical_events`` says what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.alerts.model import Alert, Severity

CRITICAL_KEPT = 20
"""Critical alerts listed in ``critical_messages`` (the count covers them all)."""
BREAKEVEN_WAITING = "breakeven_waiting"
"""The alert type of a breakeven that waits for the price (see :mod:`engine.trading`)."""


@dataclass(slots=True)
class AlertLog:
    """Subscribed to the alert bus (:meth:`record`); keeps the breakeven waits and the critical alerts."""

    waits: list[tuple[float, str]] = field(default_factory=list)
    """Each breakeven wait as (alert time, message)."""
    critical: int = 0
    """How many critical alerts were raised."""
    critical_messages: list[dict[str, str]] = field(default_factory=list)
    """The first :data:`CRITICAL_KEPT` critical alerts, as ``{"type": ..., "message": ...}``."""

    def record(self, alert: Alert) -> None:
        """One alert from the bus."""
        if alert.type == BREAKEVEN_WAITING:
            self.waits.append((alert.time or 0.0, alert.message))
        if alert.severity == Severity.CRITICAL:
            self.critical += 1
            if len(self.critical_messages) < CRITICAL_KEPT:
                self.critical_messages.append({"type": alert.type, "message": alert.message})
