"""The alert outbox: alerts waiting for their delivery sinks (Telegram, the webhook), persisted.

Every alert that should go out is put here first, under an id of its own (``<instance>-<seq>``: the
engine's instance tag and a sequence number that is persisted with the outbox, so an id is never
reused after a restart), with a state per sink: ``pending``, ``delivered`` or ``dropped``. The
delivery job sends the pending ones and marks them delivered; the outbox is saved to the store with
``force=True`` (fsync'd before the save returns) when an alert is added and after each delivery, so
an alert raised just before a crash is still sent after the restart, and one that was delivered is
not sent again.

Only items already saved are given to a sink (:meth:`Outbox.deliverable`): an id goes out only once
the sequence number it used is on disk, so a crash can never hand the same id to a second alert.
The exception is a store that cannot write (a full disk): the save is kept in the store's memory
and the alert goes out all the same, because an operator who hears nothing while the disk is full
is worse off than one who might, after a crash in that state, see an id twice.

Delivery is at least once: a crash between a sink's answer and the save that records it sends that
item again after the restart, with the same id (the sinks put the id in what they send, so the
receiver can tell).

The outbox is bounded: delivered and dropped items beyond :data:`DONE_KEPT` are forgotten, oldest
first; when more than ``max_items`` are still pending (a sink down for a long time), the oldest are
dropped for every sink, counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.alerts.model import Alert
from engine.core.state_keys import ALERT_OUTBOX_KEY
from persistence.errors import StoreFailed
from persistence.reasons import Reason

log = logging.getLogger("opconsole.alerts.outbox")

PENDING = "pending"
DELIVERED = "delivered"
DROPPED = "dropped"

DONE_KEPT = 20
"""Delivered (or dropped) items kept for inspection; older ones are forgotten (each save writes the
whole outbox, so it stays small)."""


class OutboxStore(Protocol):
    """What the outbox needs from :class:`persistence.store.Store` (the tests' MemoryStore has it)."""

    @property
    def state(self) -> Mapping[str, Any]:
        """The recovered state, by store key."""
        ...

    async def save(self, key: str, value: Any, *, reason: Reason, force: bool = False) -> Any:
        """Store ``value`` under ``key``; durable on return with ``force``."""
        ...


@dataclass(slots=True)
class OutboxItem:
    """One alert to deliver: its id, the alert's fields, and where it stands with each sink."""

    id: str
    seq: int
    time: float
    severity: str
    type: str
    key: str
    message: str
    folded: int = 0
    """Alerts of the same (type, key) the cooldown held back since the last one that went out."""
    sinks: dict[str, str] = field(default_factory=dict)
    """sink name -> ``pending`` | ``delivered`` | ``dropped``."""

    @property
    def done(self) -> bool:
        """No sink is still waiting for it."""
        return all(state != PENDING for state in self.sinks.values())

    def to_json(self) -> dict[str, Any]:
        """The item as stored."""
        return {
            "id": self.id,
            "seq": self.seq,
            "time": self.time,
            "severity": self.severity,
            "type": self.type,
            "key": self.key,
            "message": self.message,
            "folded": self.folded,
            "sinks": dict(self.sinks),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutboxItem:
        """The inverse of :meth:`to_json`; ValueError/TypeError/KeyError when its shape is wrong."""
        sinks = data["sinks"]
        if not isinstance(sinks, dict):
            raise TypeError("sinks must be a mapping")
        return cls(
            id=str(data["id"]),
            seq=int(data["seq"]),
            time=float(data["time"]),
            severity=str(data["severity"]),
            type=str(data["type"]),
            key=str(data.get("key", "")),
            message=str(data["message"]),
            folded=int(data.get("folded", 0)),
            sinks={str(k): str(v) for k, v in sinks.items()},
        )


@dataclass(slots=True)
class SinkState:
    """A sink's delivery bookkeeping (persisted with the outbox, so a retry_after survives a restart)."""

    failed_in_a_row: int = 0
    next_attempt_at: float = 0.0
    """Engine-clock time before which the sink is not tried again (backoff or its retry_after)."""
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None
    """The last failure, already redacted by the sink (never a token or a secret URL)."""
    last_delivered_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The state as stored."""
        return {
            "failed_in_a_row": self.failed_in_a_row,
            "next_attempt_at": self.next_attempt_at,
            "delivered": self.delivered,
            "failed": self.failed,
            "dropped": self.dropped,
            "last_error": self.last_error,
            "last_delivered_at": self.last_delivered_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SinkState:
        """The inverse of :meth:`to_json`."""
        last_at = data.get("last_delivered_at")
        error = data.get("last_error")
        return cls(
            failed_in_a_row=int(data.get("failed_in_a_row", 0)),
            next_attempt_at=float(data.get("next_attempt_at", 0.0)),
            delivered=int(data.get("delivered", 0)),
            failed=int(data.get("failed", 0)),
            dropped=int(data.get("dropped", 0)),
            last_error=None if error is None else str(error),
            last_delivered_at=None if last_at is None else float(last_at),
        )


class Outbox:
    """The persisted outbox of one engine; ``prefix`` (the instance tag) starts every id.

    ``sinks`` are the sinks configured now: items of a sink no longer configured (switched off since
    the outbox was saved) are dropped for it when loading, since nothing would ever deliver them.
    """

    def __init__(self, store: OutboxStore, prefix: str, sinks: Iterable[str], max_items: int = 200) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, not {max_items!r}")
        self._store = store
        self.prefix = prefix
        self.max_items = max_items
        self.sink_names = tuple(sinks)
        self.items: list[OutboxItem] = []
        self.sinks: dict[str, SinkState] = {name: SinkState() for name in self.sink_names}
        self.next_seq = 1
        self.overflow_dropped = 0
        """Pending items dropped because more than ``max_items`` were waiting."""
        self._version = 0  # bumped by every change; a save records the version it wrote
        self._saved_version = 0
        self._saved_seq = 1  # items with a lower seq are in a completed save
        self._save_lock = asyncio.Lock()

    # --- the stored form ------------------------------------------------------------------------
    def load(self) -> None:
        """Take the outbox from the store's recovered state (nothing saved yet: an empty outbox).

        A stored outbox that cannot be read is logged and set aside rather than stopping the engine:
        its sequence number is still honoured when readable, so no id is reused.
        """
        data = self._store.state.get(ALERT_OUTBOX_KEY)
        if data is None:
            return
        try:
            if not isinstance(data, dict):
                raise TypeError(f"the outbox must be a mapping, not {type(data).__name__}")
            self.next_seq = max(1, int(data.get("next_seq", 1)))
            items = [OutboxItem.from_json(item) for item in data.get("items", [])]
            states = data.get("sink_states", {})
            for name in self.sink_names:
                if isinstance(states, dict) and isinstance(states.get(name), dict):
                    self.sinks[name] = SinkState.from_json(states[name])
            self.overflow_dropped = int(data.get("overflow_dropped", 0))
        except (TypeError, ValueError, KeyError) as exc:
            log.error("the stored alert outbox cannot be read (%s); starting with an empty one", exc)
            self.items = []
            return
        for item in items:
            self.next_seq = max(self.next_seq, item.seq + 1)
            for name, state in list(item.sinks.items()):
                if state == PENDING and name not in self.sink_names:
                    item.sinks[name] = DROPPED  # that sink is switched off now
        self.items = items
        self._saved_seq = self.next_seq  # what was loaded is on disk

    def to_json(self) -> dict[str, Any]:
        """The whole outbox as stored under :data:`ALERT_OUTBOX_KEY`."""
        return {
            "next_seq": self.next_seq,
            "items": [item.to_json() for item in self.items],
            "sink_states": {name: state.to_json() for name, state in self.sinks.items()},
            "overflow_dropped": self.overflow_dropped,
        }

    # --- changes --------------------------------------------------------------------------------
    def add(self, alert: Alert, sinks: Sequence[str], folded: int = 0) -> OutboxItem:
        """Queue a (stamped) alert for ``sinks``; its id is taken from the persisted sequence."""
        seq = self.next_seq
        self.next_seq += 1
        item = OutboxItem(
            id=f"{self.prefix}-{seq:06d}",
            seq=seq,
            time=alert.time if alert.time is not None else 0.0,
            severity=str(alert.severity),
            type=alert.type,
            key=alert.key,
            message=alert.message,
            folded=folded,
            sinks=dict.fromkeys(sinks, PENDING),
        )
        self.items.append(item)
        self._bound()
        self.touch()
        return item

    def mark_delivered(self, sink: str, ids: Iterable[str], now: float) -> None:
        """Record that ``sink`` accepted the items ``ids``."""
        wanted = set(ids)
        state = self.sinks[sink]
        for item in self.items:
            if item.id in wanted and item.sinks.get(sink) == PENDING:
                item.sinks[sink] = DELIVERED
                state.delivered += 1
        state.last_delivered_at = now
        self._bound()
        self.touch()

    def touch(self) -> None:
        """Note a change (a sink's state) that the next :meth:`persist` must save."""
        self._version += 1

    def _bound(self) -> None:
        """Forget done items beyond :data:`DONE_KEPT`; drop the oldest pending beyond ``max_items``."""
        done = [item for item in self.items if item.done]
        if len(done) > DONE_KEPT:
            forget = {id(item) for item in done[: len(done) - DONE_KEPT]}
            self.items = [item for item in self.items if id(item) not in forget]
        pending = [item for item in self.items if not item.done]
        excess = len(pending) - self.max_items
        if excess <= 0:
            return
        for item in pending[:excess]:
            for name, state in item.sinks.items():
                if state == PENDING:
                    item.sinks[name] = DROPPED
                    if name in self.sinks:
                        self.sinks[name].dropped += 1
        self.overflow_dropped += excess
        log.warning(
            "alert outbox full (%d waiting, at most %d): dropped the %d oldest undelivered alert(s)",
            len(pending),
            self.max_items,
            excess,
        )
        self._bound()  # the dropped ones are done now

    # --- reading --------------------------------------------------------------------------------
    def pending(self, sink: str) -> list[OutboxItem]:
        """Items ``sink`` has not delivered yet, oldest first."""
        return [item for item in self.items if item.sinks.get(sink) == PENDING]

    def deliverable(self, sink: str) -> list[OutboxItem]:
        """The pending items of ``sink`` whose id is already saved (see the module doc)."""
        return [item for item in self.pending(sink) if item.seq < self._saved_seq]

    @property
    def dirty(self) -> bool:
        """Changes not yet in a completed save."""
        return self._version != self._saved_version

    # --- persistence ----------------------------------------------------------------------------
    async def persist(self) -> None:
        """Save the outbox (forced: on disk when this returns) if it changed since the last save.

        One save at a time; a caller that waited finds its change in the save that just ended or
        makes the next one. A store that cannot write keeps the change and writes it later (it
        raises :class:`StoreFailed` and says so itself): the items count as saved then (see the
        module doc for why).
        """
        async with self._save_lock:
            if not self.dirty:
                return
            version, next_seq, value = self._version, self.next_seq, self.to_json()
            try:
                await self._store.save(ALERT_OUTBOX_KEY, value, reason=Reason.ALERT, force=True)
            except StoreFailed as exc:
                log.warning("alert outbox not durable (%s); delivering anyway", exc)
            self._saved_version = version
            self._saved_seq = max(self._saved_seq, next_seq)
