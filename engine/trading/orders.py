"""Order actions the TP/SL decisions emit, and the one place that sends them to a venue.

Decisions return lists of :class:`PlaceOrder` / :class:`AmendOrder` / :class:`CancelOrder`; the
manager hands them to its account's :class:`OrderSender` (reconciliation and the operator actions
call :func:`execute_actions`, the sender's one-request-per-action path). Being the one door to the
venue, it is where actions are coalesced into batch calls (``api_batching``), as long as it returns
one result per action, in order (the decisions match each answer to its action).

It is also where the account's rate limit is ridden out: an action refused with 10006 was not
refused for what it asks, only for when, so it is sent again once the venue's budget has reset
(stop-losses first) instead of being reported to the decisions as a failed order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.core.models import AmendRequest, CancelRequest, OrderAck, OrderRequest
from engine.venue.base import MAX_BATCH, BatchResult, Venue
from engine.venue.errors import DuplicateOrder, RateLimited, TransientError, VenueError
from engine.venue.priority import Priority, call_priority
from engine.venue.withdrawal import WithdrawalTicket, Withdrawn, withdrawable

if TYPE_CHECKING:  # the decisions import this module, and they stay free of clocks at run time
    from engine.core.clock import Clock

log = logging.getLogger("opconsole.trading")

RATE_LIMIT_WAITS = 20
"""Budget resets one :func:`execute_actions` call waits for before it hands a 10006 on as a refusal.

Bybit's order budget refills every second, so twenty refusals in a row mean something else is
spending the account's budget; the decisions then see the refusal and the manager's retries apply."""
RESET_FALLBACK_S = 1.0
"""The wait when a 10006 carries no reset time: one window of Bybit's per-second budget."""
RESET_MARGIN_S = 0.001
"""Sent this long after the reset, so the request lands in the new window, never on its edge."""
ROOM_POLL_S = 0.1
"""With a rate budget to plan against, how long a round waits on the clock before it asks the budget
again for room (a tenth of Bybit's one-second window)."""
ROOM_WAIT_MAX_S = 2.0
"""How long a round waits for room before it sends its most urgent item anyway (two windows: room that
has not come back by then is spent by something else, and the venue's answer decides)."""
BATCH_REFUSAL_CODES = frozenset({10005, 10017, 10020})
"""retCodes that refuse the batch endpoint itself rather than its items: 10005 the key has no
permission for the endpoint, 10017 route not found, 10020 "your account is not a unified margin
account" (Bybit's batch endpoints serve unified trading accounts only)."""


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


def result_of(action: Action, ack: OrderAck | None, error: VenueError | None) -> ActionResult:
    """The venue's answer to ``action`` (a single call's or one batch item's) as its result.

    A create refused as a duplicate link id means an earlier attempt already landed: that is the
    idempotency we want, reported as success (without an order id; reconciliation learns it).
    """
    if error is None:
        return ActionResult(action, ack=ack)
    if isinstance(error, DuplicateOrder) and isinstance(action, PlaceOrder):
        return ActionResult(action, ack=OrderAck(order_id="", link_id=action.request.link_id))
    return ActionResult(action, error=error)


async def execute_action(venue: Venue, action: Action) -> ActionResult:
    """Send one action; a venue error is returned, never raised (see :func:`result_of`)."""
    try:
        if isinstance(action, PlaceOrder):
            ack = await venue.place(action.request)
        elif isinstance(action, AmendOrder):
            ack = await venue.amend(action.request)
        else:
            ack = await venue.cancel(action.request)
    except VenueError as exc:
        return result_of(action, None, exc)
    return result_of(action, ack, None)


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


def call_priority_of(actions: Sequence[Action], rest: Priority = Priority.TRADE) -> Priority:
    """The rate-budget priority of one request carrying ``actions``: a stop-loss or a market close
    makes it protective; otherwise ``rest`` (``OPEN`` for a new trade's own orders)."""
    return Priority.PROTECT if any(protection_rank(a) < 2 for a in actions) else rest


def batch_may_have_caused(error: VenueError | None) -> bool:
    """Whether a batch item's failure may be the batch's doing (the budget ran out inside it, a
    transient fault), so the item alone may fare better."""
    return isinstance(error, RateLimited | TransientError)


def refuses_batch(error: VenueError) -> bool:
    """Whether ``error``, raised by a whole batch call, means the account cannot use batch endpoints.

    What Bybit answers then (its docs and client reports; our requests always carry a valid
    ``category=linear``): HTTP 404 on ``/v5/order/*-batch`` ("cannot find path ... category value
    does not match account mode", what non-unified accounts get, pybit #165), 10017 route not
    found, 10020 not a unified account, 10005 no permission for the endpoint, and a 10001 that
    complains about the category. Choosing is cheap either way, since the items go out as single
    calls at once; a refusal remembered wrongly costs requests, a transient error remembered would
    cost them for good, so only these count.
    """
    if error.code in BATCH_REFUSAL_CODES:
        return True
    if error.code == 10001:
        return "category" in error.message.lower()
    # The Bybit transport reports HTTP errors other than 403 / 5xx as a plain "HTTP <status>: ...".
    return error.code == 0 and error.message.startswith("HTTP 404")


def batch_rounds(actions: Sequence[Action]) -> list[list[int]]:
    """The rounds in which batched ``actions`` go (indexes into ``actions``).

    Each monitor's actions (by ``key``, in the order given) split into runs of consecutive actions
    of the same kind; round ``r`` holds run ``r`` of every monitor. A monitor's cancel is thus
    answered before its replacement is sent, while different monitors share each round's requests.
    """
    runs: dict[str, list[list[int]]] = {}
    for index, action in enumerate(actions):
        mine = runs.setdefault(action.key, [])
        if mine and type(actions[mine[-1][-1]]) is type(action):
            mine[-1].append(index)
        else:
            mine.append([index])
    depth = max((len(r) for r in runs.values()), default=0)
    return [[i for r in runs.values() if n < len(r) for i in r[n]] for n in range(depth)]


def batch_chunks(groups: Sequence[Sequence[Action]], limit: int = MAX_BATCH) -> list[list[int]]:
    """``groups`` (each symbol's actions, in order) packed into chunks (indexes into ``groups``, in
    order) in which each kind of action fills at most one batch call (``limit`` items).

    A commit too large for one batch call is committed chunk by chunk, all at once
    (:meth:`~engine.trading.manager.TpslManager._commit_apart`): a chunk's symbols are free once its
    own calls are answered, while the symbols of one chunk still share those calls. A group that
    alone holds more than a batch of some kind is a chunk of its own."""
    chunks: list[list[int]] = []
    counts: Counter[type] = Counter()
    for index, group in enumerate(groups):
        mine = Counter(type(action) for action in group)
        if not chunks or any(counts[kind] + n > limit for kind, n in mine.items()):
            chunks.append([])
            counts = Counter()
        chunks[-1].append(index)
        counts.update(mine)
    return chunks


Room = Callable[[type[Action]], tuple[int, int, int]]
"""What the account's rate budget allows now for one kind of action: (items its batch endpoint may
carry, requests its single-order endpoint may take, the last units of each that only a protective
call may take). Bybit limits each endpoint on its own, so a verb's batch and single endpoints each
have their own 10 a second."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request of a round: its items (indexes into the actions), all of one kind, and whether it
    goes to the single-order endpoint (one item) or to the kind's batch endpoint."""

    items: tuple[int, ...]
    single: bool


def plan_calls(actions: Sequence[Action], items: Sequence[int], room: Room | None = None) -> list[Call]:
    """The requests that carry ``items`` (indexes into ``actions``), in the order to send them; with
    ``room``, only the items the budget has room for now (the rest wait for the next plan).

    Items are taken stop-losses first, then market closes, then the rest (:func:`resend_order`),
    grouped by kind. A kind's items fill its batch room first, in calls of at most
    :data:`MAX_BATCH`; what does not fit there goes as single requests while the single endpoint
    has room. A lone item goes alone (one request either way, and its answer is its own) unless
    only the batch endpoint has room. A call that protects nothing is planned only within the room
    the budget gives such calls (not its protective reserve), so that it is sent, not queued
    behind the reserve for a round trip. Without ``room`` every item is planned, batches as large
    as the endpoint takes. The calls holding a stop-loss or a close go first.
    """
    by_kind: dict[type, list[int]] = {}
    for index in resend_order(actions, items):
        by_kind.setdefault(type(actions[index]), []).append(index)
    calls: list[Call] = []
    for kind, group in by_kind.items():
        protective = [protection_rank(actions[index]) < 2 for index in group]
        batch_room, single_room, reserve = (len(group), len(group), 0) if room is None else room(kind)
        # A batch holding a stop-loss is protective as a whole: it may take the reserve.
        in_batch = group[: max(0, batch_room if protective[0] else batch_room - reserve)]
        if len(in_batch) == 1 and single_room > (0 if protective[0] else reserve):
            in_batch = []
        alone: list[int] = []
        single_left = single_room
        for index, protects in zip(group[len(in_batch) :], protective[len(in_batch) :], strict=True):
            if single_left - (0 if protects else reserve) <= 0:
                break
            alone.append(index)
            single_left -= 1
        calls += [Call(tuple(in_batch[i : i + MAX_BATCH]), False) for i in range(0, len(in_batch), MAX_BATCH)]
        calls += [Call((index,), True) for index in alone]
    return sorted(calls, key=lambda call: min(protection_rank(actions[i]) for i in call.items))


class OrderSender:
    """Sends order actions for one account: one request per action (baseline) or through the batch
    endpoints.

    ``batching`` is the ``api_batching`` toggle and may be flipped at any time: each send (and each
    round of one) reads it. ``room``, when given, says how many order units the engine's rate budget
    allows now for the given kinds of action (the least of their windows); batched rounds are
    planned within it. ``batch_refused`` is set for good once the
    venue refuses batch endpoints for this account (see :func:`refuses_batch`).
    """

    def __init__(
        self,
        venue: Venue,
        clock: Clock,
        *,
        batching: bool = False,
        room: Room | None = None,
    ) -> None:
        self.venue = venue
        self.clock = clock
        self.batching = batching
        self.room = room
        self.batch_refused = False
        self._superseded: set[str] = set()
        self._sending: Counter[str] = Counter()  # monitor key -> sends in flight carrying its actions
        self._tickets: dict[WithdrawalTicket, frozenset[str]] = {}
        # plans waiting for room (see _plan), woken in the order they began waiting: a set of
        # futures iterates in the order of their addresses, which differ from run to run
        self._planners: dict[asyncio.Future[None], None] = {}

    def supersede(self, keys: Collection[str]) -> None:
        """New fills of these monitors wait to be decided: withdraw their requests that still wait for
        the rate budget and protect nothing (:mod:`engine.venue.withdrawal`). Their actions come back
        :class:`~engine.venue.withdrawal.Withdrawn`, unsent (a batch shared with other monitors is
        planned again without them); the next decision takes each position as it is and sends what
        it still calls for, instead of being taken seconds later behind them."""
        # Only a send in flight is superseded: the mark ends with it, and never touches the next one.
        self._superseded.update(k for k in keys if self._sending[k] > 0)
        for ticket, owners in list(self._tickets.items()):
            if not owners.isdisjoint(self._superseded):
                ticket.withdraw()
        for planner in self._planners:  # plans waiting for room look again now
            if not planner.done():
                planner.set_result(None)

    @contextmanager
    def _withdrawable(self, chosen: Sequence[Action]) -> Iterator[None]:
        """Make one request for ``chosen`` under a withdrawal ticket, unless it protects a position
        (a stop-loss or a market close is never withdrawn)."""
        if any(protection_rank(a) < 2 for a in chosen):
            yield
            return
        ticket = WithdrawalTicket()
        owners = frozenset(a.key for a in chosen)
        self._tickets[ticket] = owners
        if not owners.isdisjoint(self._superseded):
            ticket.withdraw()  # superseded before it was sent: it fails at once, unsent
        try:
            with withdrawable(ticket):
                yield
        finally:
            del self._tickets[ticket]

    def _drop_superseded(
        self, actions: Sequence[Action], items: list[int], results: dict[int, ActionResult]
    ) -> list[int]:
        """Answer the items of superseded monitors that protect nothing as withdrawn (unsent); the
        rest are still to send."""
        keep: list[int] = []
        for index in items:
            action = actions[index]
            if action.key in self._superseded and protection_rank(action) >= 2:
                results[index] = result_of(action, None, Withdrawn())
            else:
                keep.append(index)
        return keep

    @property
    def batches(self) -> bool:
        """Whether the next request may be a batch."""
        return self.batching and not self.batch_refused

    async def send(self, actions: Sequence[Action], rest: Priority = Priority.TRADE) -> list[ActionResult]:
        """Send ``actions`` (of any monitors of this account); one result per action, in the order
        given. A venue error is a result, never raised. Requests that protect nothing wait for the
        rate budget at priority ``rest``.

        Without batching: one request per action in the order given, rate-limit waits as
        :meth:`_singly`. With batching, round by round (:func:`batch_rounds`); a round's items go
        in batch requests (:func:`plan_calls`) within the room the budget has; a kind with a single
        item in a round goes through the single endpoint (one request either way, and its answer is
        the item's own). An item that failed for what the batch may have caused (its budget, a
        transient fault) is sent again alone, once, and that answer is final; an item refused for
        what it asks (a bad price, a trigger already passed) is answered at once, so a stop-out or
        an emergency close is never a round trip late.
        """
        with self.sending({a.key for a in actions}):
            if not self.batches:
                return await self._singly(actions, rest)
            results: dict[int, ActionResult] = {}
            for items in batch_rounds(actions):
                if self.batches:
                    await self._round(actions, items, results, rest)
                else:  # refused (or switched off) during this send: the rest goes one by one
                    picked = _pick(actions, items)
                    for index, result in zip(items, await self._singly(picked, rest), strict=True):
                        results[index] = result
            return [results[index] for index in range(len(actions))]

    @contextmanager
    def sending(self, keys: Collection[str]) -> Iterator[None]:
        """Mark ``keys``' actions as on their way until the block ends, however many sends it makes
        (a commit goes round again with what the answers call for): a new fill of one of them
        meanwhile supersedes every request still to go for it (:meth:`supersede`), not only the
        send under way. The mark ends with the block and never touches the next one."""
        keys = set(keys)
        self._sending.update(keys)
        try:
            yield
        finally:
            self._sending.subtract(keys)
            for key in keys:
                if self._sending[key] <= 0:
                    del self._sending[key]
                    self._superseded.discard(key)  # decided again next

    async def _singly(self, actions: Sequence[Action], rest: Priority) -> list[ActionResult]:
        """One request per action, in the order given (the decisions put the stop-loss first).

        A rate-limit refusal (10006) is not an answer: that action and every one after it (the
        budget is spent for them too) wait on the clock until the venue's reset time, then go again
        in :func:`resend_order` (stop-losses first). Only after :data:`RATE_LIMIT_WAITS` resets does
        a 10006 reach the decisions as a refusal.
        """
        results: dict[int, ActionResult] = {}
        queue = list(range(len(actions)))
        waits = 0
        while queue:
            deferred: list[int] = []
            limited: RateLimited | None = None
            for position, index in enumerate(queue):
                chosen = [actions[index]]
                with call_priority(call_priority_of(chosen, rest)), self._withdrawable(chosen):
                    result = await execute_action(self.venue, actions[index])
                if isinstance(result.error, RateLimited) and waits < RATE_LIMIT_WAITS:
                    deferred, limited = queue[position:], result.error
                    break
                results[index] = result
            if limited is None:
                break
            waits += 1
            await self.clock.sleep(reset_wait(limited, self.clock.now()))
            queue = resend_order(actions, deferred)
        return [results[index] for index in range(len(actions))]

    async def _round(
        self, actions: Sequence[Action], items: list[int], results: dict[int, ActionResult], rest: Priority
    ) -> None:
        """Send one round's ``items`` and put their results in ``results``.

        A round's calls are planned within the budget's room, protective ones first
        (:func:`plan_calls`), and go out together: they hold different monitors' actions, so none
        waits for another's answer (one after the other, a stop-out's cancels waited a round trip
        behind another position's stop move, in another verb's window). The budget still serves
        them most urgent first. A whole call refused for the rate limit waits for the reset, then
        what is left of the round is planned again (stop-losses first); refused as a batch endpoint,
        it goes as single calls, and the account remembers it; any other error sends its items as
        single calls this time.
        """
        pending = list(items)
        waits = 0
        while pending:
            pending = self._drop_superseded(actions, pending, results)
            if not pending:
                break
            calls = await self._plan(actions, pending)
            taken = {index for call in calls for index in call.items}
            pending = [i for i in pending if i not in taken]
            outcomes = await asyncio.gather(*(self._call(actions, call, results, rest) for call in calls))
            limited = [outcome for outcome in outcomes if isinstance(outcome, RateLimited)]
            exhausted = waits >= RATE_LIMIT_WAITS  # a 10006 now is the venue's answer
            for call, outcome in zip(calls, outcomes, strict=True):
                if isinstance(outcome, RateLimited) and exhausted:
                    for index in call.items:
                        results[index] = result_of(actions[index], None, outcome)
                elif outcome is not None:
                    pending += call.items  # planned again (after the reset, when rate-limited)
            if limited and not exhausted:
                waits += 1
                now = self.clock.now()
                await self.clock.sleep(max(reset_wait(exc, now) for exc in limited))

    async def _call(
        self, actions: Sequence[Action], planned: Call, results: dict[int, ActionResult], rest: Priority
    ) -> Withdrawn | RateLimited | None:
        """Send one call of a round and put its items' results in ``results``; returns None when
        they are in, or why the call is to be planned again: :class:`Withdrawn` (the superseded
        monitors' items drop out) or :class:`RateLimited` (after the reset)."""
        call = list(planned.items)
        if planned.single or not self.batches:  # a lone item, or refused by an earlier call
            await self._alone(actions, call, results, rest)
            return None
        try:
            with self._withdrawable(_pick(actions, call)):
                answers = await self._batch(actions, call, rest)
        except (Withdrawn, RateLimited) as exc:
            return exc
        except VenueError as exc:
            if refuses_batch(exc):
                self.batch_refused = True
                log.warning(
                    "%s: the venue refuses batch order requests (%s); single requests from now on",
                    self.venue.account,
                    exc,
                )
            await self._alone(actions, call, results, rest)
            return None
        failed = []
        for index, answer in zip(call, answers, strict=True):
            results[index] = result_of(actions[index], answer.ack, answer.error)
            if not results[index].ok and batch_may_have_caused(results[index].error):
                failed.append(index)
        await self._alone(actions, failed, results, rest)  # a failed item, once more on its own
        return None

    async def _batch(self, actions: Sequence[Action], call: list[int], rest: Priority) -> list[BatchResult]:
        """One batch request for ``call`` (items of one kind); one answer per item, in order."""
        chosen = _pick(actions, call)
        with call_priority(call_priority_of(chosen, rest)):
            if isinstance(chosen[0], PlaceOrder):
                answers = await self.venue.place_batch(
                    [a.request for a in chosen if isinstance(a, PlaceOrder)]
                )
            elif isinstance(chosen[0], AmendOrder):
                answers = await self.venue.amend_batch(
                    [a.request for a in chosen if isinstance(a, AmendOrder)]
                )
            else:
                answers = await self.venue.cancel_batch(
                    [a.request for a in chosen if isinstance(a, CancelOrder)]
                )
        if len(answers) != len(call):  # a venue that broke its contract: trust none of its answers
            raise VenueError(f"a batch of {len(call)} orders got {len(answers)} answers")
        return answers

    async def _alone(
        self,
        actions: Sequence[Action],
        items: Sequence[int],
        results: dict[int, ActionResult],
        rest: Priority,
    ) -> None:
        """Send ``items`` as single requests (stop-losses first); their answers are final."""
        order = resend_order(actions, items)
        for index, result in zip(order, await self._singly(_pick(actions, order), rest), strict=True):
            results[index] = result

    async def _plan(self, actions: Sequence[Action], pending: Sequence[int]) -> list[Call]:
        """The calls of the next plan (:func:`plan_calls`): every item without a budget; else what
        the budget has room for, waiting on the clock (polling every :data:`ROOM_POLL_S`) while it
        has none, and after :data:`ROOM_WAIT_MAX_S` the most urgent item alone anyway.

        A plan holding a stop-loss or a market close is never polled for. A budget kept full by
        queued calls shows no room at any poll, since each unit that frees goes at once to a waiter;
        the budget serves protective calls first, so the most urgent item goes now and waits there,
        ahead of everything less urgent, rather than seconds here.

        A poll ends early when a monitor is superseded (:meth:`supersede`): no plan is returned
        then if one of ``pending`` is that monitor's, so that the caller drops its items and plans
        the rest (a new fill of the position waits for this send, and must not wait out the poll)."""
        if self.room is None:
            return plan_calls(actions, pending)
        urgent = any(protection_rank(actions[i]) < 2 for i in pending)
        started = self.clock.now()
        while not (calls := plan_calls(actions, pending, self.room)):
            if urgent or self.clock.now() - started >= ROOM_WAIT_MAX_S:
                return [Call((resend_order(actions, pending)[0],), True)]
            await self._poll()
            if any(actions[i].key in self._superseded for i in pending):
                return []
        return calls

    async def _poll(self) -> None:
        """Wait :data:`ROOM_POLL_S` on the clock, or less if a monitor is superseded meanwhile."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._planners[woken] = None
        try:
            await self.clock.wait_for(woken, ROOM_POLL_S)
        except TimeoutError:
            pass
        finally:
            del self._planners[woken]


def _pick(actions: Sequence[Action], items: Sequence[int]) -> list[Action]:
    return [actions[index] for index in items]


async def execute_actions(venue: Venue, actions: Sequence[Action], clock: Clock) -> list[ActionResult]:
    """Send actions one request each, in the decisions' order (they put the stop-loss ahead of the
    rest); returns one result per action, in the order given. A 10006 waits for the venue's reset
    and goes again, stop-losses first (:meth:`OrderSender.send` without batching)."""
    return await OrderSender(venue, clock).send(actions)
