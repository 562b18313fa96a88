"""Requests that may be withdrawn while they still wait for the rate budget.

Under a venue's rate limit a decision's take-profit resizes, new take-profits and entry cancels can
wait seconds for the budget. A new fill of the same position must not wait behind them: its symbol
has orders in flight, and a decision never runs before the answers to the previous one are in (see
:mod:`engine.trading.manager`). So the order sender runs each request that protects nothing under a
:class:`WithdrawalTicket` (:func:`withdrawable`), and when a new fill of the position waits,
withdraws it: a request the budget has not granted yet leaves its queue at once with
:class:`Withdrawn` (nothing was sent: the next decision takes the position as it is and sends what
it still calls for); one already granted goes on, since it may be on the wire.

A context variable carries the ticket from the sender through the gateway to the budget, as
:mod:`engine.venue.priority` carries the priority, so no signature in between changes.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from engine.venue.errors import VenueError


class Withdrawn(VenueError):
    """The request was withdrawn before it was sent: nothing reached the venue."""

    def __init__(self) -> None:
        super().__init__("withdrawn before it was sent (the position is decided again)")


class WithdrawalTicket:
    """A handle on the requests made under it: :meth:`withdraw` takes back those still waiting."""

    def __init__(self) -> None:
        self.withdrawn = False
        self._waiting: list[Callable[[], None]] = []

    def on_withdraw(self, take_back: Callable[[], None]) -> None:
        """Register how to take back a request that now waits (the budget registers its claim)."""
        self._waiting.append(take_back)

    def withdraw(self) -> None:
        """Take back every request under this ticket still waiting; later ones fail at once."""
        self.withdrawn = True
        waiting, self._waiting = self._waiting, []
        for take_back in waiting:
            take_back()


_TICKET: contextvars.ContextVar[WithdrawalTicket | None] = contextvars.ContextVar(
    "withdrawal_ticket", default=None
)


def current_ticket() -> WithdrawalTicket | None:
    """The ticket the current task's requests are made under (None: they cannot be withdrawn)."""
    return _TICKET.get()


@contextmanager
def withdrawable(ticket: WithdrawalTicket) -> Iterator[None]:
    """Make the requests inside the block (and the tasks started there) withdrawable by ``ticket``."""
    token = _TICKET.set(ticket)
    try:
        yield
    finally:
        _TICKET.reset(token)
