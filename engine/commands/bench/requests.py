"""Reaction latency: the order requests the engine sent, matched to the executions that called for them.

* **TP1 -> its orders**: from the execution that fills a TP1 to the first later request that carries
  an action of the same monitor: its stop moved to breakeven (an amend, or an amend-batch item), its
  unfilled entries cancelled, or its stop cancelled when TP1 closed the whole position (small TPs fold
  into TP1). Not the stop's move alone: a breakeven the price has already passed waits for the price
  to come back (by design, seconds or minutes), while the entries' cancels go at once;
* **SL -> cancel rest**: from a stop-loss execution to the first later request that cancels an
  order of the same monitor (a cancel, a cancel-batch item, or a cancel-all on its symbol).

A fill the engine never answered with such a request (a breakeven still waiting for the price, a
stop that left nothing to cancel) gives no sample.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.clock import Clock
from engine.core.link_ids import parse_link_id
from engine.core.models import AmendRequest, CancelRequest, Execution, OrderAck, OrderRequest
from engine.venue.base import BatchResult

ORDER_METHODS = ("place", "amend", "cancel", "cancel_all", "place_batch", "amend_batch", "cancel_batch")
"""The Venue methods that send order requests (each call is one request)."""

Item = tuple[str, str, str, bool]
"""One item of a request: (symbol, link id, order id, moves a trigger)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One order request as the engine sent it: simulated send time, venue method, and its items."""

    ts: float
    method: str
    items: tuple[Item, ...]


Answered = dict[str, list[tuple[float, float, str]]]
"""Per slot (``tp1``, ``sl``), each answered fill as (fill time, seconds to the answer, symbol)."""


def _items(method: str, args: tuple[Any, ...]) -> tuple[Item, ...]:
    """The items of one request (a cancel-all names only its symbol)."""
    if method == "cancel_all":
        return ((str(args[0]), "", "", False),)
    requests: Sequence[OrderRequest | AmendRequest | CancelRequest] = (
        args[0] if method.endswith("_batch") else [args[0]]
    )
    return tuple(
        (
            r.symbol,
            r.link_id,
            "" if isinstance(r, OrderRequest) else r.order_id,  # a new order has none yet
            isinstance(r, AmendRequest) and r.trigger_price is not None,
        )
        for r in requests
    )


def record_requests(venue: Any, clock: Clock, sent: list[Sent], order_links: dict[str, str]) -> None:
    """Wrap the venue instance's order methods: each call is logged in ``sent`` at its send time, and
    each ack's order id -> link id in ``order_links`` (an amend or cancel may name only the order id)."""
    for method in ORDER_METHODS:
        original: Callable[..., Awaitable[Any]] = getattr(venue, method)

        async def wrapper(
            *args: Any, _method: str = method, _original: Callable[..., Awaitable[Any]] = original
        ) -> Any:
            sent.append(Sent(clock.now(), _method, _items(_method, args)))
            result = await _original(*args)
            acks = result if isinstance(result, list) else [result]
            for answer in acks:
                ack = answer.ack if isinstance(answer, BatchResult) else answer
                if isinstance(ack, OrderAck) and ack.order_id and ack.link_id:
                    order_links[ack.order_id] = ack.link_id
            return result

        setattr(venue, method, wrapper)


def _monitor(link_id: str) -> str | None:
    parsed = parse_link_id(link_id)
    return parsed.monitor_id if parsed is not None else None


def _slot(link_id: str) -> str | None:
    parsed = parse_link_id(link_id)
    return parsed.slot if parsed is not None else None


def _answers(slot: str, monitor: str | None, symbol: str, sent: Sent, order_links: dict[str, str]) -> bool:
    """Is ``sent`` the engine's answer to a ``slot`` fill of ``monitor`` on ``symbol``?"""

    def link(item: Item) -> str:
        return item[1] or order_links.get(item[2], "")

    if slot == "tp1":
        return any(_monitor(link(i)) == monitor for i in sent.items)
    if slot == "sl" and sent.method == "cancel_all":
        return any(i[0] == symbol for i in sent.items)
    if slot == "sl" and sent.method in ("cancel", "cancel_batch"):
        return any(_monitor(link(i)) == monitor for i in sent.items)
    return False


def reactions(
    executions: Sequence[Execution], sent: Sequence[Sent], order_links: dict[str, str]
) -> tuple[Answered, int, int]:
    """The answered fills (see :data:`Answered`) and how many TP1 and SL orders filled.

    From each TP1 fill to the first later stop-loss move of its monitor (or the stop's cancel, when
    TP1 closed the whole position), and from each stop-loss fill to the first later cancel of its
    monitor's orders; an order filled in several executions counts from its last."""
    # The execution that completes an order is its last (the engine moves the stop once TP1 is
    # filled, not at a partial fill).
    last: dict[str, Execution] = {}
    for e in executions:
        if e.link_id and _slot(e.link_id) in ("tp1", "sl"):
            last[e.link_id] = e
    ordered = sorted(sent, key=lambda s: s.ts)
    found: Answered = {"tp1": [], "sl": []}
    fills = {"tp1": 0, "sl": 0}
    for link_id, e in last.items():
        slot = _slot(link_id) or ""
        monitor = _monitor(link_id)
        fills[slot] += 1
        answer = next(
            (s for s in ordered if s.ts >= e.ts and _answers(slot, monitor, e.symbol, s, order_links)), None
        )
        if answer is not None:
            found[slot].append((e.ts, answer.ts - e.ts, e.symbol))
    return found, fills["tp1"], fills["sl"]
