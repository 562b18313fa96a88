"""Push subscriptions of the simulated exchange: per-account event queues, with drops and overflow.

A subscriber is an ``asyncio.Queue``. Dropping an account's stream (fault injection) or a queue that
fills up (a consumer that stopped reading) both end that subscription the same way: a
``StreamStatus(connected=False, gap=True)`` becomes its last item and it receives nothing more; the
consumer must subscribe again and reconcile the gap, as after a real WebSocket disconnect. A drop
keeps the events already queued (they were delivered); an overflow discards them to make room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from engine.core.models import StreamStatus, VenueEvent

MAX_QUEUE = 20_000
"""Events a subscriber may have pending before it is treated as disconnected."""


class EventHub:
    """Fan-out of venue events to the subscribers of each account."""

    def __init__(self, max_queue: int = MAX_QUEUE) -> None:
        self.max_queue = max_queue
        self._subscribers: dict[str, list[asyncio.Queue[VenueEvent]]] = {}

    def subscribe(self, account: str) -> asyncio.Queue[VenueEvent]:
        """A new queue receiving the account's events from now on."""
        queue: asyncio.Queue[VenueEvent] = asyncio.Queue(maxsize=self.max_queue)
        self._subscribers.setdefault(account, []).append(queue)
        return queue

    def unsubscribe(self, account: str, queue: asyncio.Queue[VenueEvent]) -> None:
        """Stop delivering to ``queue`` (no-op when it was already dropped)."""
        queues = self._subscribers.get(account, [])
        if queue in queues:
            queues.remove(queue)

    def subscriber_count(self, account: str) -> int:
        return len(self._subscribers.get(account, ()))

    def publish(self, account: str, events: Iterable[VenueEvent], ts: float) -> None:
        """Deliver events to every subscriber of ``account``."""
        batch = list(events)
        for queue in list(self._subscribers.get(account, ())):
            if queue.maxsize - queue.qsize() >= len(batch):
                # Room for all of it (the usual case): no overflow check per event, which counts with a
                # thousand tickers a tick (sim.synthetic_symbols).
                for event in batch:
                    queue.put_nowait(event)
                continue
            for event in batch:
                if queue.full():
                    self._disconnect(account, queue, "subscriber queue overflow", ts, discard=True)
                    break
                queue.put_nowait(event)

    def broadcast(self, events: Iterable[VenueEvent], ts: float) -> None:
        """Deliver events (tickers) to every subscriber of every account."""
        batch = list(events)
        for account in list(self._subscribers):
            self.publish(account, batch, ts)

    def drop(self, account: str, ts: float, reason: str = "stream dropped") -> None:
        """Disconnect every subscriber of ``account``; events are lost until they subscribe again."""
        for queue in list(self._subscribers.get(account, ())):
            self._disconnect(account, queue, reason, ts, discard=False)

    def _disconnect(
        self, account: str, queue: asyncio.Queue[VenueEvent], reason: str, ts: float, *, discard: bool
    ) -> None:
        while not queue.empty() and (discard or queue.full()):
            queue.get_nowait()
        queue.put_nowait(StreamStatus(account=account, connected=False, gap=True, reason=reason, ts=ts))
        self.unsubscribe(account, queue)
