"""Order actions the TP/SL decisions emit, and the one place that sends them to a venue.

Decisions return lists of :class:`PlaceOrder` / :class:`AmendOrder` / :class:`CancelOrder`; the
manager hands each list to :func:`execute_actions`. Being the one door to the venue, it is where
actions may be coalesced into batch calls, as long as it returns one result per action, in order
(the decisions match each answer to its action).

It is also where the account's rate limit is ridden out: an action refused with 10006 was not
refused for what it asks, only for when, so it is sent again once the venue's budget has reset
(stop-losses first) instead of being reported to the decisions as a failed order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.core.models import AmendRequest, CancelRequest, OrderAck, OrderRequest
from engine.venue.base import Venue
from engine.venue.errors import DuplicateOrder, RateLimited, VenueError

if TYPE_CHECKING:  # the decisions import this module, and they stay free of clocks at run time
    from engine.core.clock import Clock

RATE_LIMIT_WAITS = 20
"""Budget resets one :func:`execute_actions` call waits for before it hands a 10006 on as a refusal.

Bybit's order budget refills every second, so twenty refusals in a row mean something else is
spending the account's budget; the decisions then see the refusal and the manager's retries apply."""
RESET_FALLBACK_S = 1.0
"""The wait when a 10006 carries no reset time: one window of Bybit's per-second budget."""
RESET_MARGIN_S = 0.001
"""Sent this long after the reset, so the request lands in the new window, never on its edge."""


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Create the order of a monitor's slot (``key`` is the monitor key)."""

    key: str
    slot: str
    request: OrderRequest


@dataclass(frozen=True, slots=True)
class AmendOrder:
    """Amend a slot's order in place; ``previous`` (qty, price, trigger) is restored if it fails."""

    key: str
    slot: str
    request: AmendRequest
    previous: tuple[float, float | None, float | None]


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancel an order; ``slot`` is None for an orphan that belongs to no monitor."""

    key: str
    slot: str | None
    request: CancelRequest


Action = PlaceOrder | AmendOrder | CancelOrder


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What became of one action: an ack, or the venue's error."""

    action: Action
    ack: OrderAck | None = None
    error: VenueError | None = None

    @property
    def ok(self) -> bool:
        """Whether the venue accepted the action."""
        return self.error is None


async def execute_action(venue: Venue, action: Action) -> ActionResult:
    """Send one action; a venue error is returned, never raised.

    A create refused as a duplicate link id means an earlier attempt already landed: that is the
    idempotency we want, reported as success (without an order id; reconciliation learns it).
    """
    try:
        if isinstance(action, PlaceOrder):
            return ActionResult(action, ack=await venue.place(action.request))
        if isinstance(action, AmendOrder):
            return ActionResult(action, ack=await venue.amend(action.request))
        return ActionResult(action, ack=await venue.cancel(action.request))
    except DuplicateOrder as exc:
        if isinstance(action, PlaceOrder):
            return ActionResult(action, ack=OrderAck(order_id="", link_id=action.request.link_id))
        return ActionResult(action, error=exc)
    except VenueError as exc:
        return ActionResult(action, error=exc)


def protection_rank(action: Action) -> int:
    """How urgently an action protects a position: 0 the stop-loss, 1 a market close, 2 the rest
    (entries, take-profits, cancels of either)."""
    if action.slot == "sl":
        return 0
    return 1 if action.slot == "cl" else 2


def resend_order(actions: Sequence[Action], pending: Sequence[int]) -> list[int]:
    """The ``pending`` actions (indexes into ``actions``) in the order to send them again after a
    rate-limit reset: stop-losses first, then market closes, then the rest; each group keeps its
    order (so a slot's cancel stays ahead of its replacement)."""
    return sorted(pending, key=lambda index: protection_rank(actions[index]))


def reset_wait(error: RateLimited, now: float) -> float:
    """Seconds from ``now`` until a rate-limited request may be sent again."""
    if error.reset_at is None:
        return RESET_FALLBACK_S
    return max(0.0, error.reset_at - now) + RESET_MARGIN_S


async def execute_actions(venue: Venue, actions: Sequence[Action], clock: Clock) -> list[ActionResult]:
    """Send actions in the decisions' order (they put the stop-loss ahead of the rest); returns one
    result per action, in the order given.

    A rate-limit refusal (10006) is not an answer: that action and every one after it (the budget
    is spent for them too) wait on ``clock`` until the venue's reset time, then go again in
    :func:`resend_order` (stop-losses first). Only after :data:`RATE_LIMIT_WAITS` resets does a
    10006 reach the decisions as a refusal.
    """
    results: dict[int, ActionResult] = {}
    queue = list(range(len(actions)))
    waits = 0
    while queue:
        deferred: list[int] = []
        limited: RateLimited | None = None
        for position, index in enumerate(queue):
            result = await execute_action(venue, actions[index])
            if isinstance(result.error, RateLimited) and waits < RATE_LIMIT_WAITS:
                deferred, limited = queue[position:], result.error
                break
            results[index] = result
        if limited is None:
            break
        waits += 1
        await clock.sleep(reset_wait(limited, clock.now()))
        queue = resend_order(actions, deferred)
    return [results[index] for index in range(len(actions))]
