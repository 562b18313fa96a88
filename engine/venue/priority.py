"""How urgent a venue call is, carried with the task that makes it.

When the account's rate budget runs short, calls are served by priority: protective actions
(stop-losses, emergency closes) first, then the other order changes, then new trades' orders, then
the monitors' checks, and the dashboard's reads last. The caller states it once with
:func:`call_priority` around its work; the budget (see :mod:`engine.venue.budget`) reads it with
:func:`current_priority`. A context variable follows the call through every await and into the
tasks it starts, so no signature changes.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum


class Priority(IntEnum):
    """Lower is more urgent."""

    PROTECT = 0
    """A stop-loss placed or resized, a position closed at market."""
    TRADE = 1
    """Entries, take-profits, cancels: the rest of the decisions' orders about open positions."""
    OPEN = 2
    """A new trade's own orders: the exposure it asks for waits for the upkeep of the positions
    already open (a burst of openings kept a stop-out's cancels and new take-profits a minute
    behind it in the same queue)."""
    CHECK = 3
    """The monitors' verification reads (the safety net of a silent stream)."""
    DASHBOARD = 4
    """What the console shows: it can wait for the budget to refill."""


_PRIORITY: contextvars.ContextVar[Priority] = contextvars.ContextVar("call_priority", default=Priority.TRADE)


def current_priority() -> Priority:
    """The priority of the calls the current task makes (``TRADE`` unless stated)."""
    return _PRIORITY.get()


@contextmanager
def call_priority(priority: Priority) -> Iterator[None]:
    """Make the calls inside the block (and the tasks started there) at ``priority``."""
    token = _PRIORITY.set(priority)
    try:
        yield
    finally:
        _PRIORITY.reset(token)
