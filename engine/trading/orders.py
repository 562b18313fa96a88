"""Order actions the TP/SL decisions emit, and the one place that sends them to a venue.

Decisions return lists of :class:`PlaceOrder` / :class:`AmendOrder` / :class:`CancelOrder`; the
manager hands each list to :func:`execute_actions`. Being the one door to the venue, it is where
actions may be coalesced into batch calls, as long as it returns one result per action, in order
(the decisions match each answer to its action).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.core.models import AmendRequest, CancelRequest, OrderAck, OrderRequest
from engine.venue.base import Venue
from engine.venue.errors import DuplicateOrder, VenueError


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


async def execute_actions(venue: Venue, actions: Sequence[Action]) -> list[ActionResult]:
    """Send actions in order (protection first: decisions put the stop-loss ahead of the rest)."""
    return [await execute_action(venue, action) for action in actions]
