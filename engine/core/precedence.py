"""Decisions first: the engine's bulk work steps aside on the loop while a fill is being decided.

A fill's decision (apply it to its monitor, write it ahead, send its orders) shares the engine's
event loop with bulk work: judging a push's thousand tickers, the scheduler's checks, the
dashboard's snapshot. Measured at a thousand positions on a calm market, a TP1 fill took 55-70 ms
from the push to its first request although its own work is a few milliseconds: at every await the
decision queued behind every ready step of bulk work, and while that work held the interpreter's
lock, the worker thread writing the decision ahead waited a whole switch interval (5 ms) at each of
its hand-overs (start, after the write, after the fsync, back to the loop).

So a decision is *urgent* from the moment its push is taken until its first request goes out
(:func:`end_urgency`, called where requests leave) or it ends, and bulk work yields with
:meth:`DecisionsFirst.turn` instead of a bare yield: while a decision is urgent it waits, the loop
idles, and the decision's thread hand-overs are immediate. The wait is bounded (``patience_s``): a
decision stuck on a slow disk never holds the rest of the engine for long, and after a wait that ran
out, bulk work runs as long again unhindered, so a stream of fills slows it down by half at most.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from engine.core.clock import Clock, yield_to_loop

T = TypeVar("T")

PATIENCE_S = 0.025
"""How long bulk work waits for urgent decisions at one turn before it goes on anyway."""


class Urgency:
    """One decision's claim to go first, from :meth:`DecisionsFirst.urgent` until :meth:`end`;
    set aside while the decision waits for the venue (:func:`waiting_for_the_venue`)."""

    __slots__ = ("_aside", "_ended", "_owner")

    def __init__(self, owner: DecisionsFirst) -> None:
        self._owner = owner
        self._ended = False
        self._aside = 0

    def end(self) -> None:
        """The decision no longer goes first (idempotent)."""
        if not self._ended:
            self._ended = True
            if not self._aside:
                self._owner._ended_one()

    def renew(self) -> None:
        """The decision goes first again (a next step of it, after its first request went out)."""
        if self._ended:
            self._ended = False
            if not self._aside:
                self._owner._began_one()

    def _set_aside(self) -> None:
        self._aside += 1
        if self._aside == 1 and not self._ended:
            self._owner._ended_one()

    def _take_up(self) -> None:
        self._aside -= 1
        if self._aside == 0 and not self._ended:
            self._owner._began_one()


_CURRENT: contextvars.ContextVar[Urgency | None] = contextvars.ContextVar("urgency", default=None)


@contextmanager
def waiting_for_the_venue() -> Iterator[None]:
    """The current decision waits for the venue (the answers to its position's previous orders): it
    is not urgent meanwhile, or bulk work would wait for a round trip; it is again afterwards."""
    urgency = _CURRENT.get()
    if urgency is None:
        yield
        return
    urgency._set_aside()
    try:
        yield
    finally:
        urgency._take_up()


def renew_urgency() -> None:
    """The current task's decision goes first again (see :meth:`Urgency.renew`), if it has one."""
    urgency = _CURRENT.get()
    if urgency is not None:
        urgency.renew()


def end_urgency() -> None:
    """End the urgency of the decision the current task works for, if any: its request is leaving.
    Tasks started inside a decision see its urgency too (a context variable follows them)."""
    urgency = _CURRENT.get()
    if urgency is not None:
        urgency.end()


class DecisionsFirst:
    """The engine loop's precedence: urgent decisions first, bulk work at its :meth:`turn`.

    Lives on one event loop (the engine's).
    """

    def __init__(self, clock: Clock, patience_s: float = PATIENCE_S) -> None:
        self._clock = clock
        self._patience_s = patience_s
        self._urgent = 0
        self._calm: asyncio.Event | None = None
        self._free_until = float("-inf")
        self.pressing = False
        """A decision is urgent now."""
        self.waits = 0
        """Turns of bulk work that waited for a decision (what a probe or the bench looks at)."""
        self.lapses = 0
        """Turns that stopped waiting at ``patience_s`` with a decision still urgent."""

    def urgent(self) -> Urgency:
        """A new urgent decision; the caller ends it."""
        self._began_one()
        return Urgency(self)

    def _began_one(self) -> None:
        self._urgent += 1
        self.pressing = True
        if self._calm is not None:
            self._calm.clear()

    def start_ahead(self, decision: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run ``decision`` in a task of its own that goes first until its first request leaves
        (:func:`end_urgency` there, and in the tasks it starts) and no longer once it ends, however it
        ends: cancelled before its first step, it leaves nothing urgent behind."""
        urgency = self.urgent()
        token = _CURRENT.set(urgency)  # the task takes a copy of this context
        try:
            task = asyncio.get_running_loop().create_task(decision, name=name)
        finally:
            _CURRENT.reset(token)
        task.add_done_callback(lambda _task: urgency.end())
        return task

    def _ended_one(self) -> None:
        self._urgent -= 1
        if self._urgent <= 0:
            self._urgent = 0
            self.pressing = False
            if self._calm is not None:
                self._calm.set()

    async def turn(self) -> None:
        """Bulk work's yield point: let every ready task run once, then :meth:`calm`."""
        await yield_to_loop()
        await self.calm()

    async def calm(self) -> None:
        """Return at once when no decision is urgent; else wait for the urgent ones to end (at most
        ``patience_s`` on the engine clock)."""
        if not self.pressing or self._clock.monotonic() < self._free_until:
            return
        if self._calm is None:
            self._calm = asyncio.Event()
        self.waits += 1
        try:
            await self._clock.wait_for(self._calm.wait(), self._patience_s)
        except TimeoutError:
            # Decisions kept the loop past the patience: bulk work runs as long again before it
            # waits, so a stream of fills halves its pace at most and a push is never left behind.
            self.lapses += 1
            self._free_until = self._clock.monotonic() + self._patience_s
