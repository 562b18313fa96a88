"""Alert delivery: from the bus, through the cooldown and the persisted outbox, to Telegram and webhooks.

:class:`AlertDelivery` subscribes to the alert bus. The bus itself keeps, logs and shows every alert
(the console and the snapshot see them all); the cooldown applies here, to what goes *out*, which is
where a flood costs the operator (a phone buzzing for every repeat). An alert reaches a sink when its
severity is at or above the sink's ``min_severity`` (the daily summary, an info alert, always does),
and the cooldown admits it; it is then put in the :class:`~engine.alerts.outbox.Outbox` and saved.

The delivery job (``alert-delivery``, a job of the engine's one scheduler) sends what is pending,
sink by sink, concurrently: never from the bus's call, so a slow or dead sink delays delivery only,
never trading. A failure backs off (:func:`retry_delay`: ``retry_first_s`` doubling to
``retry_max_s``, never earlier than a ``retry_after`` the server gave); the third failure in a row
raises one ``alert_delivery_failed`` warning (key: the sink), and the first success after it an
``alert_delivery_recovered`` info.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict

from engine.alerts.bus import AlertBus
from engine.alerts.cooldown import Cooldown
from engine.alerts.model import Alert, Severity
from engine.alerts.outbox import Outbox, OutboxStore, SinkState
from engine.alerts.sink import DeliveryError, Sink, wants
from engine.alerts.telegram import TelegramSink
from engine.alerts.webhook import WebhookSink
from engine.core.clock import Clock, iso_utc
from engine.core.settings import Settings

log = logging.getLogger("opconsole.alerts.delivery")

ALWAYS_DELIVERED = frozenset({"daily_summary"})
"""Alert types every sink gets whatever its ``min_severity`` (the summary is an info alert)."""
FAILURES_NOTED = 3
"""Failures in a row of one sink that raise its ``alert_delivery_failed`` warning."""
JOB_NAME = "alert-delivery"


def retry_delay(
    failures_in_a_row: int, first_s: float, max_s: float, retry_after: float | None = None
) -> float:
    """Seconds before a sink that failed ``failures_in_a_row`` times is tried again: ``first_s``
    doubling per failure up to ``max_s``, and never sooner than the server's ``retry_after``."""
    backoff = min(max_s, first_s * 2 ** max(0, failures_in_a_row - 1))
    return max(backoff, retry_after or 0.0)


@dataclass(frozen=True, slots=True)
class DeliveryParams:
    """The ``[alerts]`` numbers of delivery."""

    cooldown_s: float = 60.0
    interval_s: float = 2.0
    retry_first_s: float = 2.0
    retry_max_s: float = 300.0
    outbox_max: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryParams:
        """From ``alerts.cooldown_s``, ``delivery_interval_s``, ``retry_first_s``, ``retry_max_s``,
        ``outbox_max``."""
        return cls(
            cooldown_s=float(settings.get("alerts.cooldown_s")),
            interval_s=float(settings.get("alerts.delivery_interval_s")),
            retry_first_s=float(settings.get("alerts.retry_first_s")),
            retry_max_s=float(settings.get("alerts.retry_max_s")),
            outbox_max=int(settings.get("alerts.outbox_max")),
        )


def sinks_from_settings(
    settings: Settings, env: Mapping[str, str] | None = None
) -> tuple[list[Sink], list[str]]:
    """The enabled sinks (``alerts.telegram.enabled``, ``alerts.webhook.enabled``) and, for an
    enabled sink that cannot work (no token in its variable, no chat id, no URL), a line saying why:
    the runtime raises it as a warning, and trading goes on without that sink."""
    env = os.environ if env is None else env
    sinks: list[Sink] = []
    problems: list[str] = []
    if settings.get("alerts.telegram.enabled"):
        token_env = str(settings.get("alerts.telegram.token_env"))
        token = env.get(token_env, "") if token_env else ""
        chat_id = str(settings.get("alerts.telegram.chat_id"))
        if not token:
            problems.append(f"telegram alerts are enabled but ${token_env or '(unnamed)'} is not set")
        elif not chat_id:
            problems.append("telegram alerts are enabled but alerts.telegram.chat_id is empty")
        else:
            sinks.append(
                TelegramSink(
                    token=token,
                    chat_id=chat_id,
                    base_url=str(settings.get("alerts.telegram.base_url")),
                    timeout_s=float(settings.get("alerts.telegram.timeout_s")),
                    min_severity=Severity(settings.get("alerts.telegram.min_severity")),
                    per_minute=int(settings.get("alerts.telegram.per_minute")),
                )
            )
    if settings.get("alerts.webhook.enabled"):
        url = str(settings.get("alerts.webhook.url"))
        secret_env = str(settings.get("alerts.webhook.secret_env"))
        if not url:
            problems.append("webhook alerts are enabled but alerts.webhook.url is empty")
        else:
            sinks.append(
                WebhookSink(
                    url=url,
                    timeout_s=float(settings.get("alerts.webhook.timeout_s")),
                    secret=env.get(secret_env) if secret_env else None,
                    min_severity=Severity(settings.get("alerts.webhook.min_severity")),
                )
            )
    return sinks, problems


class SinkRow(TypedDict):
    """One sink in the snapshot's ``alert_delivery.sinks``."""

    min_severity: str
    pending: int
    delivered: int
    failed: int
    failed_in_a_row: int
    dropped: int
    last_error: str | None  # redacted: never a token or a secret URL
    last_delivered: str | None
    next_attempt_in_s: float | None  # while backing off


class AlertDeliverySection(TypedDict):
    """The snapshot's ``alert_delivery`` section."""

    enabled: bool
    cooldown_s: float
    suppressed: int  # alerts the cooldown held back from the sinks since the start
    suppressed_by_type: Mapping[str, int]
    outbox: int  # items in the outbox (pending and recently done)
    overflow_dropped: int
    sinks: Mapping[str, SinkRow]


def disabled_section(cooldown_s: float) -> AlertDeliverySection:
    """The section when no sink is enabled."""
    return {
        "enabled": False,
        "cooldown_s": cooldown_s,
        "suppressed": 0,
        "suppressed_by_type": {},
        "outbox": 0,
        "overflow_dropped": 0,
        "sinks": {},
    }


class AlertDelivery:
    """Delivers the bus's alerts to ``sinks`` through the cooldown and the persisted outbox.

    Life cycle: :meth:`load` (the stored outbox), :meth:`install` (subscribe to the bus), the
    scheduler runs :meth:`run_once` every ``params.interval_s``, :meth:`close` at stop.
    ``on_queued`` is called (on the loop) when an item is queued, e.g. to run the job soon.
    """

    def __init__(
        self,
        *,
        store: OutboxStore,
        clock: Clock,
        sinks: Sequence[Sink],
        prefix: str,
        params: DeliveryParams | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.params = params or DeliveryParams()
        self.clock = clock
        self.sinks = list(sinks)
        self.cooldown = Cooldown(self.params.cooldown_s)
        self.outbox = Outbox(store, prefix, [s.name for s in self.sinks], self.params.outbox_max)
        self._on_queued = on_queued
        self._bus: AlertBus | None = None
        self._save_task: asyncio.Task[None] | None = None
        self._noted: set[str] = set()  # sinks whose failure was raised as an alert, until they recover
        self._closed = False

    def load(self) -> None:
        """Take the outbox (pending items, sink states, the id sequence) from the store."""
        self.outbox.load()
        pending = {s.name: len(self.outbox.pending(s.name)) for s in self.sinks}
        if any(pending.values()):
            log.info("alert outbox: %s pending from before the restart", pending)

    def install(self, bus: AlertBus) -> None:
        """Subscribe to ``bus``; alerts it published before (this process's start-up: a recovery
        alert, say) are taken too."""
        self._bus = bus
        for alert in bus.recent():
            self.on_alert(alert)
        bus.subscribe(self.on_alert)

    # --- the bus's side (synchronous, cheap) --------------------------------------------------
    def on_alert(self, alert: Alert) -> None:
        """The bus sink: filter, cooldown, queue; the save and the sending happen off this call."""
        if self._closed:
            return  # the engine is stopping: the store is about to close (the log has the alert)
        always = alert.type in ALWAYS_DELIVERED
        names = [s.name for s in self.sinks if always or wants(s.min_severity, alert.severity)]
        if not names:
            return
        now = alert.time if alert.time is not None else self.clock.now()
        folded = self.cooldown.admit(alert.severity, alert.type, alert.key, now)
        if folded is None:
            return
        self.outbox.add(alert, names, folded)
        self._persist_soon()
        if self._on_queued is not None:
            self._on_queued()

    def _persist_soon(self) -> None:
        """Save the outbox in a task of its own (the bus cannot await): at once, so an alert raised
        just before a crash is on disk; one task at a time, looping while changes keep coming."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous test): the delivery job saves before it sends
        if self._save_task is None or self._save_task.done():
            self._save_task = loop.create_task(self._persist_all(), name="alert-outbox-save")

    async def _persist_all(self) -> None:
        try:
            while self.outbox.dirty:
                await self.outbox.persist()
        except Exception:  # a store that refuses (closed, crashed): logged, never a lost task error
            log.exception("the alert outbox could not be saved")

    async def saved(self) -> None:
        """Return once the save the bus's sink started (in a task of its own) has completed."""
        if self._save_task is not None:
            await asyncio.gather(self._save_task, return_exceptions=True)

    # --- the delivery job -----------------------------------------------------------------------
    async def run_once(self) -> None:
        """One run of the delivery job: save what is queued, then each sink sends what it may."""
        await self.outbox.persist()
        await asyncio.gather(*(self._deliver(sink) for sink in self.sinks))
        await self.outbox.persist()

    async def _deliver(self, sink: Sink) -> None:
        state = self.outbox.sinks[sink.name]
        now = self.clock.now()
        if now < state.next_attempt_at:
            return
        items = self.outbox.deliverable(sink.name)
        if not items:
            return
        for batch in sink.plan(items, now):
            try:
                await sink.send(batch, now)
            except Exception as exc:  # a sink's failure is retried, never a failure of the job
                error = exc if isinstance(exc, DeliveryError) else self._unexpected(sink, exc)
                self._failed(sink, state, error)
                return
            self.outbox.mark_delivered(sink.name, [item.id for item in batch], self.clock.now())
            self._succeeded(sink, state)
            # Durable before the next request: a crash now must not send these again.
            await self.outbox.persist()

    @staticmethod
    def _unexpected(sink: Sink, exc: Exception) -> DeliveryError:
        return DeliveryError(sink.redact(f"{sink.name}: {type(exc).__name__}: {exc}"))

    def _failed(self, sink: Sink, state: SinkState, error: DeliveryError) -> None:
        state.failed += 1
        state.failed_in_a_row += 1
        state.last_error = str(error)
        delay = retry_delay(
            state.failed_in_a_row, self.params.retry_first_s, self.params.retry_max_s, error.retry_after
        )
        state.next_attempt_at = self.clock.now() + delay
        self.outbox.touch()
        log.warning(
            "alert delivery to %s failed (%d in a row): %s; next try in %g s",
            sink.name,
            state.failed_in_a_row,
            error,
            delay,
        )
        if state.failed_in_a_row >= FAILURES_NOTED and sink.name not in self._noted and self._bus is not None:
            self._noted.add(sink.name)
            message = (
                f"alerts cannot be delivered to {sink.name} ({state.failed_in_a_row} failures in a row:"
                f" {error}); they wait in the outbox and are retried"
            )
            self._bus.raise_alert(Severity.WARNING, "alert_delivery_failed", message, key=sink.name)

    def _succeeded(self, sink: Sink, state: SinkState) -> None:
        state.failed_in_a_row = 0
        state.next_attempt_at = 0.0
        state.last_error = None
        if sink.name in self._noted and self._bus is not None:
            self._noted.discard(sink.name)
            message = f"alerts are delivered to {sink.name} again"
            self._bus.raise_alert(Severity.INFO, "alert_delivery_recovered", message, key=sink.name)

    # --- reading and stopping -------------------------------------------------------------------
    def snapshot(self) -> AlertDeliverySection:
        """The snapshot's ``alert_delivery`` section (errors are already redacted)."""
        now = self.clock.now()
        sinks: dict[str, SinkRow] = {}
        for sink in self.sinks:
            state = self.outbox.sinks[sink.name]
            waiting = state.next_attempt_at - now
            sinks[sink.name] = {
                "min_severity": str(sink.min_severity),
                "pending": len(self.outbox.pending(sink.name)),
                "delivered": state.delivered,
                "failed": state.failed,
                "failed_in_a_row": state.failed_in_a_row,
                "dropped": state.dropped,
                "last_error": state.last_error,
                "last_delivered": iso_utc(state.last_delivered_at) if state.last_delivered_at else None,
                "next_attempt_in_s": round(waiting, 3) if waiting > 0 else None,
            }
        return {
            "enabled": True,
            "cooldown_s": self.cooldown.cooldown_s,
            "suppressed": self.cooldown.suppressed,
            "suppressed_by_type": dict(sorted(self.cooldown.suppressed_by_type.items())),
            "outbox": len(self.outbox.items),
            "overflow_dropped": self.outbox.overflow_dropped,
            "sinks": sinks,
        }

    async def close(self) -> None:
        """Save the outbox a last time and close the sinks' sessions (the store is still open)."""
        self._closed = True
        await self.saved()
        await self._persist_all()
        for sink in self.sinks:
            await sink.close()
