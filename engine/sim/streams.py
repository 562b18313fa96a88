"""Push subscriptions of the simulated exchange: per-account queues of pushes, with drops and overflow.

A subscriber is a :class:`PushQueue`: each item is one push, the events the exchange sent together
(a tick's tickers, a fill and the wallet after it), handed on whole as a WebSocket message is: at a
thousand symbols, a tick queued and taken event by event was milliseconds of the consumer's loop
before the fill at its end was seen. Dropping an account's stream (fault injection) or a queue that
fills up (a consumer that stopped reading) both end that subscription the same way: a
``StreamStatus(connected=False, gap=True)`` becomes its last push and it receives nothing more; the
consumer must subscribe again and reconcile the gap, as after a real WebSocket disconnect. A drop
keeps the pushes already queued (they were delivered); an overflow discards them to make room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from engine.core.models import StreamStatus, VenueEvent

MAX_QUEUE = 20_000
"""Events a subscriber may have pending before it is treated as disconnected."""

Push = tuple[VenueEvent, ...]
"""The events the exchange sent together, in order."""


class PushQueue(asyncio.Queue[Push]):
    """A subscriber's queue of pushes, counting the events they hold (:attr:`events`)."""

    def __init__(self) -> None:
        super().__init__()
        self.events = 0
        """Events in the pushes queued."""

    def _put(self, item: Push) -> None:
        super()._put(item)
        self.events += len(item)

    def _get(self) -> Push:
        item: Push = super()._get()
        self.events -= len(item)
        return item

    def drain(self) -> list[VenueEvent]:
        """Every event queued now, in order, taken out of the queue."""
        events: list[VenueEvent] = []
        while not self.empty():
            events += self.get_nowait()
        return events


class EventHub:
    """Fan-out of venue events to the subscribers of each account."""

    def __init__(self, max_queue: int = MAX_QUEUE) -> None:
        self.max_queue = max_queue
        self._subscribers: dict[str, list[PushQueue]] = {}

    def subscribe(self, account: str) -> PushQueue:
        """A new queue receiving the account's pushes from now on."""
        queue = PushQueue()
        self._subscribers.setdefault(account, []).append(queue)
        return queue

    def unsubscribe(self, account: str, queue: PushQueue) -> None:
        """Stop delivering to ``queue`` (no-op when it was already dropped)."""
        queues = self._subscribers.get(account, [])
        if queue in queues:
            queues.remove(queue)

    def subscriber_count(self, account: str) -> int:
        return len(self._subscribers.get(account, ()))

    def publish(self, account: str, events: Iterable[VenueEvent], ts: float) -> None:
        """Deliver events, as one push, to every subscriber of ``account``; a subscriber without room
        for all of them (``max_queue`` events pending) is disconnected instead."""
        push = tuple(events)
        if not push:
            return
        for queue in list(self._subscribers.get(account, ())):
            if queue.events + len(push) > self.max_queue:
                self._disconnect(account, queue, "subscriber queue overflow", ts, discard=True)
            else:
                queue.put_nowait(push)

    def broadcast(self, events: Iterable[VenueEvent], ts: float) -> None:
        """Deliver events (tickers) to every subscriber of every account."""
        push = tuple(events)
        for account in list(self._subscribers):
            self.publish(account, push, ts)

    def drop(self, account: str, ts: float, reason: str = "stream dropped") -> None:
        """Disconnect every subscriber of ``account``; events are lost until they subscribe again."""
        for queue in list(self._subscribers.get(account, ())):
            self._disconnect(account, queue, reason, ts, discard=False)

    def _disconnect(self, account: str, queue: PushQueue, reason: str, ts: float, *, discard: bool) -> None:
        if discard:
            queue.drain()
        queue.put_nowait((StreamStatus(account=account, connected=False, gap=True, reason=reason, ts=ts),))
        self.unsubscribe(account, queue)
