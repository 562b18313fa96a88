"""The alert bus: every alert of the engine goes through one place.

It stamps the alert with the engine clock, logs it at its severity, keeps the latest ones for the
snapshot, and hands it to each subscribed sink (the console, a delivery channel, a test). A sink that
raises is logged and skipped: delivering an alert must never break trading.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from engine.alerts.model import Alert, AlertRow, Severity
from engine.core.clock import Clock, iso_utc

log = logging.getLogger("opconsole.alerts")

AlertSink = Callable[[Alert], None]
"""A subscriber: called once per published alert, on the engine's event loop."""

KEPT = 200
"""Alerts remembered for the snapshot and the console's alerts pane."""

_LOG_LEVELS = {Severity.CRITICAL: logging.CRITICAL, Severity.WARNING: logging.WARNING}


class AlertBus:
    """Publishes alerts to the log, the recent-alerts list and the subscribed sinks."""

    def __init__(self, clock: Clock, keep: int = KEPT) -> None:
        self.clock = clock
        self._recent: deque[Alert] = deque(maxlen=keep)
        self._sinks: list[AlertSink] = []
        self.published = 0
        """How many alerts were published so far (a reader polls it to see whether any is new)."""

    def subscribe(self, sink: AlertSink) -> None:
        """Hand every alert published from now on to ``sink``."""
        self._sinks.append(sink)

    def raise_alert(self, severity: Severity | str, type_: str, message: str, key: str = "") -> Alert:
        """Publish a new alert (``severity`` may be given as its string value) about ``key``."""
        return self.publish(Alert(Severity(severity), type_, message, key=key))

    def publish(self, alert: Alert) -> Alert:
        """Stamp ``alert`` with the clock, log it, remember it and hand it to every sink."""
        stamped = replace(alert, severity=Severity(alert.severity), time=self.clock.now())
        self._recent.append(stamped)
        self.published += 1
        log.log(_LOG_LEVELS.get(stamped.severity, logging.INFO), "%s", stamped.message)
        for sink in self._sinks:
            try:
                sink(stamped)
            except Exception:  # a sink must never break trading
                log.exception("alert sink %r failed", sink)
        return stamped

    def publish_all(self, alerts: Iterable[Alert]) -> None:
        """Publish each alert of a decision, in order."""
        for alert in alerts:
            self.publish(alert)

    def recent(self) -> list[Alert]:
        """The remembered alerts, oldest first."""
        return list(self._recent)

    def __iter__(self) -> Iterator[AlertRow]:
        """The remembered alerts as snapshot rows, oldest first (``[row["type"] for row in bus]``)."""
        return (row_of(alert) for alert in list(self._recent))

    def snapshot(self, limit: int) -> list[AlertRow]:
        """The latest ``limit`` alerts as the snapshot's ``alerts[]`` rows, newest first."""
        rows = list(self._recent)[-limit:] if limit > 0 else []
        return [row_of(alert) for alert in reversed(rows)]


def row_of(alert: Alert) -> AlertRow:
    """An alert as a snapshot row (its time as ISO 8601 UTC)."""
    when = iso_utc(alert.time) if alert.time is not None else ""
    return {
        "time": when,
        "severity": str(alert.severity),
        "type": alert.type,
        "message": alert.message,
        "key": alert.key,
    }
