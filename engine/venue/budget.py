"""The engine's plan of venue calls per account: a rate budget that paces calls before the venue refuses.

What Bybit V5 allows (https://bybit-exchange.github.io/docs/v5/rate-limit, checked for this module):

- **Per UID, per endpoint, over a rolling one-second window.** For the linear category the order
  endpoints (``/v5/order/create``, ``amend``, ``cancel``, ``cancel-all``, ``create-batch``,
  ``amend-batch``, ``cancel-batch``, ``/v5/position/set-leverage``) allow 10/s each; the private reads
  (``/v5/order/realtime``, ``/v5/execution/list``, ``/v5/position/list``,
  ``/v5/account/wallet-balance``) 50/s each. Over the limit a call gets retCode 10006 "Too many
  visits!", and the ``X-Bapi-Limit-Reset-Timestamp`` header says when the window refills.
- **Batch endpoints are counted per order, not per request**: a batch of 5 orders consumes 5 of the
  batch endpoint's own limit (which is not shared with the single-order endpoint); when the batch holds
  more orders than are left, the first ones succeed and the rest fail with 10006 one by one.
- **Per IP: 600 requests in any 5-second window**, across every account and endpoint behind the IP
  (public market data included). Over it Bybit answers HTTP 403 "access too frequent" and the IP is
  banned for at least 10 minutes (``engine.venue.bybit.transport.IpGuard`` stops every call then).
  The public market endpoints (tickers, instruments) have no per-UID limit, only this one.

The simulator (``engine.sim.ratelimit``) enforces the same per-account budgets: 10 units/s for each
order endpoint, 50/s for each read, one unit per batch item.

This budget is venue-neutral and plans per account and *kind* of call rather than per endpoint: per
order verb — placing, amending, cancelling — one 10/s window for its single-order endpoints (create
and set-leverage; amend; cancel and cancel-all) and one for its batch endpoint (create-batch,
amend-batch, cancel-batch, counted per item), and one 50/s window for all reads (market data
included, as the simulator counts it), plus the IP window shared by every account on the same host.
A window that merges endpoints with 10/s each never plans more than any one of them allows. Keeping
the verbs apart, and each verb's batch endpoint apart from its single one, matters at scale: a wave
of TP1 fills needs thirty amends (stops to breakeven) while the entries' cancels and the take-profits'
resizes queue. With one window per verb, the single and batch endpoints' 10/s each were planned as
10/s together, and at a thousand positions a stop's amend waited a second behind the take-profits'
resizes; the order sender (:class:`engine.trading.orders.OrderSender`) fills a verb's batch window
first and sends what does not fit there as single requests.

A call waits on the injected clock until its units fit. When calls queue, the most urgent goes first
(:mod:`engine.venue.priority`: stop-losses, then other orders, then checks, then the dashboard), oldest
first within a priority, and a less urgent call never takes units that a more urgent waiter needs:
behind a kind's first waiter that does not fit, no call of that kind passes, and the IP units it needs
are kept from the other kinds' less urgent calls.
The last ``protect_reserve`` units of each order window (``venue.rate_protect_reserve``) are kept for
protective calls: under a steady stream of entries and take-profits the window is always nearly spent,
and a stop moved or a position closed must not wait for a unit to roll out of it.
A batch larger than the order limit is granted once the window is empty, but the venue still admits
only as many of its items per second as its limit (the rest come back 10006), so batches should not
carry more than :meth:`CallBudget.limit` items.

A request's units count from the moment it is sent until one window after its answer arrives
(:meth:`CallBudget.claim`): the venue counts it somewhere in between, so a window that rolls from the
answer can never overlap the venue's, whatever the round trip. One gateway call counts as one request
even when the Bybit transport pages or retries inside it; the per-endpoint pacing on the
``X-Bapi-Limit*`` headers in :mod:`engine.venue.bybit.limits` stays underneath as the last guard.

The settings' limits are a starting point: what the venue reports about a window
(:class:`WindowReport`, which the Bybit venue makes from every private answer's ``X-Bapi-Limit*``
headers) is followed (:meth:`CallBudget.observe`). A reported limit replaces the setting for the
kind's window (the least of its endpoints' limits, as above: a higher VIP level allows 20/s, say), and
a report of fewer calls left than the budget believes it has (another client on the same key spent
them) lets at most that many more through until the reported reset.

Priority is arbitrated within one account; between accounts the IP window is first come, first served
(it binds only with more than two busy accounts on one host). One budget lives on one event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TypedDict
from urllib.parse import urlsplit

from engine.core.clock import Clock
from engine.venue.base import Endpoint
from engine.venue.priority import Priority, current_priority
from engine.venue.withdrawal import Withdrawn, current_ticket

log = logging.getLogger("opconsole.venue.budget")

WINDOW_S = 1.0
"""Bybit's per-UID windows roll over one second."""

ORDERS_PER_S = 10
READS_PER_S = 50
IP_LIMIT = 600
IP_WINDOW_S = 5.0

REPORT_HORIZON_S = 60.0
"""A reported reset further away than this is no per-second window's: the report is malformed, and
what it says is left is ignored."""

_EPSILON_S = 1e-9
"""Time tolerance: a sleep on the clock to the moment a unit expires may land a rounding error short
of it, and must still find the unit expired (or the budget would wake again and again at once)."""


class CallKind(StrEnum):
    """The budget a call spends from: per order verb, one window for its single-order endpoints and
    one for its batch endpoint; one window for reads."""

    PLACE = "place"
    AMEND = "amend"
    CANCEL = "cancel"
    PLACE_BATCH = "place_batch"
    AMEND_BATCH = "amend_batch"
    CANCEL_BATCH = "cancel_batch"
    READS = "reads"


SINGLE_KINDS = (CallKind.PLACE, CallKind.AMEND, CallKind.CANCEL)
"""The order verbs' single-order windows."""
BATCH_KIND = {
    CallKind.PLACE: CallKind.PLACE_BATCH,
    CallKind.AMEND: CallKind.AMEND_BATCH,
    CallKind.CANCEL: CallKind.CANCEL_BATCH,
}
"""Each verb's batch window, by its single window."""
ORDER_KINDS = (*SINGLE_KINDS, *BATCH_KIND.values())
"""Every order window (each :data:`ORDERS_PER_S`)."""

ORDER_ENDPOINTS: dict[str, CallKind] = {
    Endpoint.CREATE: CallKind.PLACE,
    Endpoint.CREATE_BATCH: CallKind.PLACE_BATCH,
    Endpoint.SET_LEVERAGE: CallKind.PLACE,
    Endpoint.AMEND: CallKind.AMEND,
    Endpoint.AMEND_BATCH: CallKind.AMEND_BATCH,
    Endpoint.CANCEL: CallKind.CANCEL,
    Endpoint.CANCEL_BATCH: CallKind.CANCEL_BATCH,
    Endpoint.CANCEL_ALL: CallKind.CANCEL,
}
"""The V5 paths that spend an order window; every other path is a read."""


def kind_of(endpoint: str) -> CallKind:
    """Which budget a call to the V5 path ``endpoint`` spends."""
    return ORDER_ENDPOINTS.get(endpoint, CallKind.READS)


@dataclass(frozen=True, slots=True)
class WindowReport:
    """What the venue said about one window in an answer (venue-neutral: the venue maps its endpoint
    to the kind, and its reset time to seconds from the answer, so the budget's clock may be virtual).
    """

    kind: CallKind
    limit: int
    """Units per window the venue allows on ``source``."""
    remaining: int
    """Units the venue says are left in its current window."""
    reset_in_s: float
    """Seconds from the answer until the venue's window refills (0 or less: unknown, one window)."""
    source: str = ""
    """The endpoint reported on: a window over several endpoints follows the least of their limits."""


class WindowRow(TypedDict):
    """One window as the snapshot shows it."""

    limit: int
    left: int
    reset_in_s: float
    """Seconds until the whole limit is available again (0 when nothing is spent)."""


class BudgetRow(TypedDict):
    """An account's budget as the snapshot shows it."""

    orders: WindowRow
    """The order window with the least left (what the next busy order call faces)."""
    place: WindowRow
    amend: WindowRow
    cancel: WindowRow
    place_batch: WindowRow
    amend_batch: WindowRow
    cancel_batch: WindowRow
    reads: WindowRow
    ip: WindowRow


class RollingWindow:
    """Units spent over a rolling window of ``window_s`` seconds on ``clock``, at most ``limit``.

    A unit is either *stamped* (it expires ``window_s`` after its stamp) or *in flight* (its request
    has not been answered yet, so it cannot expire; :meth:`land` stamps it). Every stamp is "now", so
    the stamped units stay in time order. A :meth:`cap` from the venue lets at most so many more
    units in until a given moment, whatever the window holds; ``limit`` may change as the venue reports.
    """

    def __init__(self, clock: Clock, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError(f"a window needs limit >= 1 and window_s > 0, got {limit} and {window_s}")
        self.clock = clock
        self.limit = limit
        self.window_s = window_s
        self._stamped: deque[tuple[float, int]] = deque()
        self._stamped_units = 0  # their sum, kept so that a look at the window costs O(1)
        self._in_flight = 0
        self._cap: tuple[float, int] | None = None  # until when, and how many more units may go in

    def _roll(self) -> float:
        """Drop the expired units and the lapsed cap; returns now."""
        now = self.clock.now()
        while self._stamped and self._stamped[0][0] + self.window_s <= now + _EPSILON_S:
            self._stamped_units -= self._stamped.popleft()[1]
        if self._cap is not None and self._cap[0] <= now + _EPSILON_S:
            self._cap = None
        return now

    def used(self) -> int:
        """Units counted in the window now (while capped, at least all but what the cap allows)."""
        self._roll()
        spent = self._in_flight + self._stamped_units
        return spent if self._cap is None else max(spent, self.limit - self._cap[1])

    def left(self) -> int:
        """Units that fit now."""
        return max(0, self.limit - self.used())

    def fits(self, need: int) -> bool:
        """Whether ``need`` more units fit now (``need`` is already capped at the limit)."""
        return self.used() + need <= self.limit

    def free_at(self, need: int) -> float | None:
        """The moment ``need`` more units will fit as the window rolls (now if they fit now), or None
        when that depends on requests still in flight, or on more than the limit."""
        now = self._roll()
        if need > self.limit:
            return None
        used = self._in_flight + self._stamped_units
        moment = now
        if used + need > self.limit:
            for stamp, units in self._stamped:
                used -= units
                if used + need <= self.limit:
                    moment = stamp + self.window_s
                    break
            else:
                return None
        if self._cap is not None and need > self._cap[1]:
            moment = max(moment, self._cap[0])
        return moment

    def take(self, units: int, *, in_flight: bool) -> None:
        """Spend ``units`` now: in flight until :meth:`land`, or stamped now."""
        now = self._roll()
        if self._cap is not None:
            self._cap = (self._cap[0], max(0, self._cap[1] - units))
        if in_flight:
            self._in_flight += units
        else:
            self._stamp(now, units)

    def land(self, units: int) -> None:
        """The request holding ``units`` in flight was answered: they expire one window from now."""
        now = self._roll()
        self._in_flight = max(0, self._in_flight - units)
        self._stamp(now, units)

    def _stamp(self, now: float, units: int) -> None:
        self._stamped.append((now, units))
        self._stamped_units += units

    def cap(self, until: float, allowance: int) -> None:
        """The venue says only ``allowance`` more units fit before ``until``: let no more in until
        then. Caps combine to the stricter of the two (the fewer units, the later moment)."""
        self._roll()
        if self._cap is not None:
            until, allowance = max(until, self._cap[0]), min(allowance, self._cap[1])
        self._cap = (until, max(0, allowance))

    def block(self, until: float) -> None:
        """The venue refused a call for the rate limit: count the window as spent until ``until``."""
        self.cap(until, 0)

    def row(self) -> WindowRow:
        """The window for the snapshot."""
        now = self._roll()
        full_at = now
        if self._stamped:
            full_at = self._stamped[-1][0] + self.window_s
        if self._in_flight:
            full_at = max(full_at, now + self.window_s)
        if self._cap is not None:
            full_at = max(full_at, self._cap[0])
        return WindowRow(limit=self.limit, left=self.left(), reset_in_s=round(full_at - now, 3))


class IpWindow(RollingWindow):
    """The IP-wide limit, shared by every account behind the same host: ``limit`` per rolling
    ``window_s`` (Bybit: 600 per 5 s). Every :class:`CallBudget` over it is told when units land, so a
    waiter blocked by another account's requests in flight wakes when they are answered."""

    def __init__(self, clock: Clock, limit: int = IP_LIMIT, window_s: float = IP_WINDOW_S) -> None:
        super().__init__(clock, limit, window_s)
        # told in the order they attached: a WeakSet iterates in the order of their addresses
        self._budgets: weakref.WeakKeyDictionary[CallBudget, None] = weakref.WeakKeyDictionary()

    def attach(self, budget: CallBudget) -> None:
        """Tell ``budget`` whenever units land here."""
        self._budgets[budget] = None

    def land(self, units: int) -> None:
        super().land(units)
        for budget in list(self._budgets):
            budget._dispatch()


_IP_WINDOWS: dict[tuple[str, int], IpWindow] = {}
"""One IP window per host for the whole process (the limit is the IP's, whatever the account), and
per clock: engines on clocks of their own (tests, virtual runs) do not share simulated time. A window
keeps its clock alive, so a clock's id is never reused while its key is here."""


def shared_ip_window(host: str, clock: Clock, limit: int = IP_LIMIT) -> IpWindow:
    """The process's IP window for ``host`` (a host name or a URL) on ``clock``, created on first use
    with ``limit`` per window, as :func:`engine.venue.bybit.transport.shared_ip_guard` shares the
    IP-ban stop."""
    key = (urlsplit(host).netloc or host, id(clock))
    if key not in _IP_WINDOWS:
        _IP_WINDOWS[key] = IpWindow(clock, limit)
    return _IP_WINDOWS[key]


class Claim:
    """One request's units of a :class:`CallBudget`: ``async with budget.claim(...)`` waits until they
    fit, holds them in flight while the block runs (the request), and lets them expire one window after
    it ends (the answer). A caller that joins the request can :meth:`urge` it to its own priority."""

    def __init__(
        self, budget: CallBudget, kind: CallKind, units: int, priority: Priority, *, hold: bool
    ) -> None:
        if units < 1:
            raise ValueError(f"a call spends at least one unit, got {units}")
        self.budget = budget
        self.kind = kind
        self.units = units
        self.priority = priority
        self.hold = hold
        self.granted = False
        self.seq = 0
        self.future: asyncio.Future[None] | None = None

    def urge(self, priority: Priority) -> None:
        """Raise the claim to ``priority`` if that is more urgent and it is still waiting."""
        if not self.granted and priority < self.priority:
            self.budget._reorder(self, priority)

    def withdraw(self) -> None:
        """Leave the queue if still waiting: the waiter gets :class:`Withdrawn` (nothing was sent)."""
        if self.granted or self.future is None or self.future.done():
            return
        self.budget._withdraw(self)

    async def wait(self) -> None:
        """Wait until the units are granted (see :meth:`CallBudget.acquire`)."""
        await self.budget._wait(self)

    async def __aenter__(self) -> Claim:
        await self.wait()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.budget._land(self)


def _rank(claim: Claim) -> tuple[Priority, int]:
    """A waiting claim's place: most urgent first, then oldest."""
    return claim.priority, claim.seq


class CallBudget:
    """One account's plan of calls: a rolling window per :class:`CallKind` and the shared IP window.

    See the module docstring for the limits and the order in which waiting calls are served.
    """

    def __init__(
        self,
        clock: Clock,
        ip: IpWindow,
        *,
        orders_per_s: int = ORDERS_PER_S,
        reads_per_s: int = READS_PER_S,
        protect_reserve: int = 0,
    ) -> None:
        self.clock = clock
        self.ip = ip
        self._protect_reserve = protect_reserve
        self._windows = {kind: RollingWindow(clock, orders_per_s, WINDOW_S) for kind in ORDER_KINDS}
        self._windows[CallKind.READS] = RollingWindow(clock, reads_per_s, WINDOW_S)
        self._reserve = {kind: self._reserve_of(kind) for kind in CallKind}
        # The limits the venue reported per kind and endpoint (:meth:`observe`).
        self._reported: dict[CallKind, dict[str, int]] = {kind: {} for kind in CallKind}
        # Waiting claims per kind, most urgent first, then oldest (:func:`_rank`).
        self._queues: dict[CallKind, list[Claim]] = {kind: [] for kind in CallKind}
        self._seq = itertools.count(1)
        self._timer: asyncio.Task[None] | None = None
        self._timer_at: float | None = None
        self.refusals = 0
        """Requests the venue refused for its rate limit (10006) since the start."""
        self.waits = 0
        """Claims that had to wait for the budget since the start (pressure, not a refusal)."""
        self.waits_by: Counter[tuple[CallKind, Priority]] = Counter()
        """:attr:`waits` by window and priority (which endpoint is short, and for whom)."""
        ip.attach(self)

    # --- what callers use --------------------------------------------------------------------------
    def limit(self, kind: CallKind) -> int:
        """Units per window of ``kind`` (a batch larger than this waits for an empty window)."""
        return self._windows[kind].limit

    def left(self, kind: CallKind) -> int:
        """Units of ``kind`` that may be spent now: the least of the kind's window and the IP window."""
        return min(self._windows[kind].left(), self.ip.left())

    def reserve(self, kind: CallKind) -> int:
        """The last units of ``kind``'s window that only protective calls may take."""
        return self._reserve[kind]

    def claim(self, kind: CallKind, units: int = 1, priority: Priority | None = None) -> Claim:
        """A request's units, for ``async with``: waits like :meth:`acquire`, and counts the units from
        the moment the request is sent until one window after the block ends (its answer)."""
        urgency = current_priority() if priority is None else priority
        return Claim(self, kind, units, urgency, hold=True)

    async def acquire(self, kind: CallKind, units: int = 1, priority: Priority | None = None) -> None:
        """Wait on the clock until ``units`` of ``kind`` fit, then spend them (they expire one window
        from now).

        Waiting callers are served most urgent first (then oldest), and a less urgent caller never takes
        units a more urgent waiter needs. More units than the limit (a 20-item batch on a 10/s budget)
        are granted when the window is empty. ``priority`` None means :func:`current_priority`.
        """
        await Claim(
            self, kind, units, current_priority() if priority is None else priority, hold=False
        ).wait()

    def refused(self, kind: CallKind, reset_at: float | None) -> None:
        """The venue answered 10006 anyway (another client on the account, a limit lower than planned):
        count the kind's window as spent until ``reset_at``, or for one window when it is unknown."""
        self.refusals += 1
        now = self.clock.now()
        window = self._windows[kind]
        until = reset_at if reset_at is not None and reset_at > now else now + window.window_s
        log.warning("%s budget refused by the venue; paused for %.3fs", kind, until - now)
        window.block(until)
        self._dispatch()

    def observe(self, report: WindowReport) -> None:
        """Follow what the venue reported about a window in an answer: its limit replaces the planned
        one (the least of the limits reported for the kind's endpoints), and fewer units left than
        the budget believes it has cap the window at that many until the reported reset (at least one
        window while units are left: Bybit then reports its clock, not a reset). Nonsense changes
        nothing."""
        window = self._windows[report.kind]
        if report.limit >= 1:
            reported = self._reported[report.kind]
            reported[report.source] = report.limit
            limit = min(reported.values())
            if limit != window.limit:
                log.info(
                    "%s budget follows the venue's limit: %d per window (was %d)",
                    report.kind,
                    limit,
                    window.limit,
                )
                window.limit = limit
                self._reserve[report.kind] = self._reserve_of(report.kind)
        if 0 <= report.remaining < window.left() and report.reset_in_s <= REPORT_HORIZON_S:
            reset_in = report.reset_in_s
            if report.remaining > 0 or reset_in <= 0:
                # While units are left Bybit's reset is just its clock: the window ends within one.
                reset_in = max(reset_in, window.window_s)
            window.cap(self.clock.now() + reset_in, report.remaining)
        self._dispatch()

    def row(self) -> BudgetRow:
        """The budget for the snapshot's ``api_calls`` section."""
        windows = self.windows()
        return BudgetRow(
            orders=windows["orders"],
            place=windows["place"],
            amend=windows["amend"],
            cancel=windows["cancel"],
            place_batch=windows["place_batch"],
            amend_batch=windows["amend_batch"],
            cancel_batch=windows["cancel_batch"],
            reads=windows["reads"],
            ip=windows["ip"],
        )

    def windows(self) -> dict[str, WindowRow]:
        """Every window by name: each order window, ``orders`` (the one with the least left: what the
        next busy order call faces), ``reads`` and ``ip``."""
        rows = {str(kind): self._windows[kind].row() for kind in CallKind}
        verbs = [rows[str(kind)] for kind in ORDER_KINDS]
        return {"orders": min(verbs, key=lambda row: row["left"]), **rows, "ip": self.ip.row()}

    @property
    def waiting(self) -> dict[Priority, int]:
        """How many calls wait, per priority."""
        counts = Counter(claim.priority for queue in self._queues.values() for claim in queue)
        return {priority: counts[priority] for priority in Priority}

    def _reserve_of(self, kind: CallKind) -> int:
        """The protective reserve of ``kind``'s window at its limit now: never the whole window (a
        less urgent call must still be able to pass), and none for reads."""
        if kind == CallKind.READS:
            return 0
        return max(0, min(self._protect_reserve, self._windows[kind].limit - 1))

    # --- the queue ---------------------------------------------------------------------------------
    async def _wait(self, claim: Claim) -> None:
        ticket = current_ticket()
        if ticket is not None and ticket.withdrawn:
            raise Withdrawn()
        claim.seq = next(self._seq)
        claim.future = asyncio.get_running_loop().create_future()
        bisect.insort(self._queues[claim.kind], claim, key=_rank)
        self._dispatch()
        if not claim.granted:
            self.waits += 1
            self.waits_by[(claim.kind, claim.priority)] += 1
            if ticket is not None:
                ticket.on_withdraw(claim.withdraw)
        try:
            await claim.future
        except asyncio.CancelledError:
            if claim.granted:
                # Granted in the same instant the caller was cancelled: the request is never sent,
                # but its units are counted as if it had been answered now (the cautious side).
                self._land(claim)
            else:
                self._queues[claim.kind].remove(claim)
                self._dispatch()  # it no longer holds back the less urgent waiters behind it
            raise

    def _withdraw(self, claim: Claim) -> None:
        """Take a waiting claim out of its queue and fail its waiter with :class:`Withdrawn`."""
        queue = self._queues[claim.kind]
        if claim in queue:
            queue.remove(claim)
        if claim.future is not None and not claim.future.done():
            claim.future.set_exception(Withdrawn())
        self._dispatch()  # it no longer holds back the less urgent waiters behind it

    def _reorder(self, claim: Claim, priority: Priority) -> None:
        """Move a waiting claim to its new, more urgent place in the queue."""
        queue = self._queues[claim.kind]
        if claim in queue:
            queue.remove(claim)
            claim.priority = priority
            bisect.insort(queue, claim, key=_rank)
            self._dispatch()
        else:  # not queued yet (its request has not asked for the units): it will queue at this rank
            claim.priority = priority

    def _land(self, claim: Claim) -> None:
        """The claim's request was answered (or never sent): its in-flight units start to expire."""
        if not (claim.granted and claim.hold):
            return
        claim.hold = False
        self._windows[claim.kind].land(claim.units)
        self.ip.land(claim.units)  # dispatches every budget on the IP, this one included

    def _dispatch(self) -> None:
        """Grant the waiting claims that fit, most urgent first; then sleep until the next one may.

        A kind's first claim that does not fit closes that kind (no less urgent claim of it passes),
        and reserves its units of the IP window from the less urgent claims of the other kind.
        """
        reserved_ip = 0
        heads: list[tuple[Claim, int]] = []  # each kind's blocked first claim, and the IP reserved ahead
        open_kinds = [kind for kind, queue in self._queues.items() if queue]
        while open_kinds:
            kind = min(open_kinds, key=lambda k: _rank(self._queues[k][0]))
            queue, window = self._queues[kind], self._windows[kind]
            claim = queue[0]
            need, ip_need = self._need(claim), min(claim.units, self.ip.limit)
            if window.fits(need) and self.ip.fits(reserved_ip + ip_need):
                queue.pop(0)
                self._grant(claim)
                if not queue:
                    open_kinds.remove(kind)
                continue
            heads.append((claim, reserved_ip))
            reserved_ip += ip_need
            open_kinds.remove(kind)
        self._arm(self._next_wake(heads))

    def _need(self, claim: Claim) -> int:
        """The room ``claim`` needs in its kind's window before it may go: its units (capped at the
        limit), plus the units kept for protective calls when it is not one of them."""
        window = self._windows[claim.kind]
        reserve = self._reserve[claim.kind] if claim.priority > Priority.PROTECT else 0
        return min(claim.units + reserve, window.limit)

    def _grant(self, claim: Claim) -> None:
        self._windows[claim.kind].take(claim.units, in_flight=claim.hold)
        self.ip.take(claim.units, in_flight=claim.hold)
        claim.granted = True
        if claim.future is not None and not claim.future.done():
            claim.future.set_result(None)

    def _next_wake(self, heads: list[tuple[Claim, int]]) -> float | None:
        """When the first blocked claim of some kind will fit (the ones behind it wait for it anyway);
        None when only answers to requests in flight can free units (:meth:`_land` dispatches then)."""
        moments: list[float] = []
        for claim, ip_ahead in heads:
            window = self._windows[claim.kind]
            own = window.free_at(self._need(claim))
            shared = self.ip.free_at(ip_ahead + min(claim.units, self.ip.limit))
            if own is not None and shared is not None:
                moments.append(max(own, shared))
        return min(moments) if moments else None

    def _arm(self, wake: float | None) -> None:
        """Sleep until ``wake`` (one timer per budget), then dispatch again."""
        if self._timer is not None and not self._timer.done():
            if wake == self._timer_at:
                return
            self._timer.cancel()
        self._timer, self._timer_at = None, wake
        if wake is not None:
            # A floor keeps a wake computed a rounding error in the past from spinning the loop.
            delay = max(wake - self.clock.now(), _EPSILON_S * 1000)
            self._timer = asyncio.get_running_loop().create_task(self._sleep_then_dispatch(delay))

    async def _sleep_then_dispatch(self, delay: float) -> None:
        await self.clock.sleep(delay)
        self._timer = None
        self._dispatch()
