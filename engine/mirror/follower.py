"""The mirror follower: the shell that keeps the mirror account in step with the main one.

Every trade the engine opens on main gets a *link* to its mirror trade, an ordinary monitor on the
``mirror`` account (``mirror:SYMBOL:SIDE``) opened with the same approach and prices at the sized
quantity and run by the same TP/SL engine on the mirror's own fills. The mirror's own orders take its
profits, move its stop to breakeven and cancel its leftover entries; what the operator does on main
(close, cancel, breakeven now) is forwarded. A trade opened by hand on the mirror alone has no link:
the TP/SL manager protects it like any adopted position and nothing mirrors it back.

Failure isolation: every mirror action is a task in a persisted queue, run by the ``mirror-queue``
job of the engine's scheduler, never by the main trade's own path. A failed task is retried with
backoff; after ``mirror.max_failures`` failures in a row a critical ``mirror_desync`` alert is raised
and the retries go on at the slower ``retry_slow_s``. Nothing runs before both accounts have been
reconciled with the venue since the start (a restart in the middle of a mirrored trade).

The drift check (:mod:`engine.mirror.drift`) runs as the ``mirror-sync`` job every
``mirror.sync_interval_s``: it compares every link's two legs on the venue and repairs what it may.
A mirror position closed by hand while main stays open is reported and never re-opened.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, TypedDict, cast

from engine.alerts.bus import AlertBus
from engine.alerts.model import Severity
from engine.core import state_keys
from engine.core.clock import Clock
from engine.core.models import Instrument, Monitor, Phase, Side, monitor_key
from engine.core.numbers import fmt_key
from engine.core.read_only import read_only
from engine.core.row_memo import KeyedRows
from engine.core.settings import Settings
from engine.core.tracked_dict import KeyFeed, TrackedDict
from engine.mirror.drift import (
    Drift,
    DriftKind,
    Holding,
    Leg,
    find_drift,
    held_sizes,
    stop_covers,
    to_repair,
)
from engine.mirror.sizing import MirrorSizing, MirrorSkipped, expected_size, mirror_request
from engine.scheduler.jobs import Scheduler
from engine.trading.approaches import Approach, TradeRejected, TradeRequest
from engine.trading.manager import TpslManager
from engine.trading.monitor import (
    Transition,
    breakeven_now,
    cancel_entries,
    cancel_orders,
    entries_live,
    request_close,
    request_trim,
)
from engine.venue.base import Venue
from engine.venue.errors import VenueError
from persistence.errors import StoreFailed
from persistence.reasons import Reason

log = logging.getLogger("opconsole.mirror")

MAIN, MIRROR = "main", "mirror"
QUEUE_JOB, SYNC_JOB = "mirror-queue", "mirror-sync"
QUEUE_TICK_S = 1.0
"""How often the queue job looks for due tasks (it makes no venue call when none is due)."""
QUEUE_SLICE_S = 0.5 * QUEUE_TICK_S
"""How long one run of the queue job starts new tasks for (the task it is on ends the run)."""
STOP_RECHECK_S = 2.0
"""How long the drift check waits before reading again a mirror position its stops do not cover."""
LINKS_PER_TURN = 100
"""Links the drift check compares between two turns it gives the rest of the loop."""
MAIN_CLOSED = "main_closed"
"""The close intent (and ledger reason) of a mirror closed because main closed without it."""


class LinkState(StrEnum):
    """Where a main trade's mirror stands."""

    OPENING = "opening"  # main opened; the mirror's open is queued
    OPEN = "open"  # the mirror trade is open; its monitor runs
    CLOSING = "closing"  # a close was forwarded (or main closed first)
    SKIPPED = "skipped"  # not mirrored: too small, refused, or entries paused on the mirror
    CLOSED = "closed"  # the mirror closed, by its own orders or with main
    CLOSED_BY_HAND = "closed_by_hand"  # closed outside the engine while main stayed open

    @property
    def checked(self) -> bool:
        """Whether the drift check compares this link's legs."""
        return self in (LinkState.OPEN, LinkState.CLOSING)


class Verb(StrEnum):
    """What a queued task does on the mirror."""

    OPEN = "open"
    CLOSE = "close"
    CANCEL = "cancel"
    BREAKEVEN = "breakeven"


@dataclass(slots=True)
class MirrorLink:
    """One main trade and its mirror."""

    main_key: str
    main_monitor_id: str
    symbol: str
    side: str
    state: LinkState = LinkState.OPENING
    ratio: float | None = None
    """The sizing ratio read when the mirror opened (balance ratio, or ``mirror.ratio``)."""
    qty_ratio: float | None = None
    """Mirror entry / main entry as sent (the ratio after rounding down to the qty step): the
    reference of the drift check, so rounding at the open is never taken for drift."""
    mirror_monitor_id: str = ""
    drift: tuple[str, ...] = ()
    """The drift kinds found at the last check (a tuple: set whole, never changed in place, so the
    snapshot sees every change as a field set)."""
    note: str = ""
    changed: bool = field(default=True, compare=False, repr=False)
    """Set whenever another field is (the snapshot's row of the link is looked at again), cleared by
    the snapshot; not part of the link's saved form."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "changed":
            object.__setattr__(self, "changed", True)

    @property
    def mirror_key(self) -> str:
        return monitor_key(MIRROR, self.symbol, Side(self.side))

    @property
    def reference_ratio(self) -> float | None:
        """The ratio the legs are compared at: as sent (``qty_ratio``), else as sized."""
        return self.qty_ratio or self.ratio

    def to_dict(self) -> dict[str, Any]:
        saved = asdict(self)
        del saved["changed"]
        saved["drift"] = list(self.drift)
        return saved

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MirrorLink:
        values = dict(data)
        values["state"] = LinkState(values["state"])
        values["drift"] = tuple(values.get("drift") or ())
        return cls(**values)


@dataclass(slots=True)
class MirrorTask:
    """A mirror action waiting to be done (again)."""

    task_id: int
    verb: Verb
    main_key: str
    main_monitor_id: str
    due_at: float
    request: dict[str, Any] | None = None  # the main trade's request (an open)
    intent: str = "manual"  # a close's ledger reason
    attempts: int = 0
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MirrorTask:
        values = dict(data)
        values["verb"] = Verb(values["verb"])
        return cls(**values)


class _Retry(Exception):
    """A task that failed for now (the venue, a transient refusal): retried with backoff."""


@dataclass(frozen=True, slots=True)
class MirrorParams:
    """The ``[mirror]`` settings the follower runs on."""

    sizing: MirrorSizing
    sync_interval_s: float = 30.0
    max_failures: int = 5
    retry_first_s: float = 2.0
    retry_max_s: float = 60.0
    retry_slow_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> MirrorParams:
        return cls(
            sizing=MirrorSizing(str(settings.get("mirror.sizing")), float(settings.get("mirror.ratio"))),
            sync_interval_s=float(settings.get("mirror.sync_interval_s")),
            max_failures=int(settings.get("mirror.max_failures")),
            retry_first_s=float(settings.get("mirror.retry_first_s")),
            retry_max_s=float(settings.get("mirror.retry_max_s")),
            retry_slow_s=float(settings.get("mirror.retry_slow_s")),
        )


class LinkRow(TypedDict):
    """One ``mirror.links[]`` entry of the snapshot."""

    main_key: str
    mirror_key: str
    state: str
    ratio: float | None
    qty_ratio: float | None
    main_size: float
    mirror_size: float
    expected_size: float | None
    drift: Sequence[str]
    note: str


class QueueRow(TypedDict):
    """``mirror.queue``: the retry queue's health."""

    pending: int
    failures_in_a_row: int
    desync: bool
    next_retry_in_s: float | None


class MirrorSection(TypedDict):
    """The snapshot's ``mirror`` section."""

    enabled: bool
    sizing: str
    links: list[LinkRow]
    queue: QueueRow
    counts: dict[str, float]


def disabled_section(sizing: str) -> MirrorSection:
    """The ``mirror`` section when mirror trading is off: every key, nothing in it."""
    return {
        "enabled": False,
        "sizing": sizing,
        "links": [],
        "queue": {"pending": 0, "failures_in_a_row": 0, "desync": False, "next_retry_in_s": None},
        "counts": {},
    }


def request_to_dict(request: TradeRequest) -> dict[str, Any]:
    """A trade request as JSON-ready data (for the persisted queue)."""
    data = asdict(request)
    data["side"] = request.side.value
    data["approach"] = request.approach.value
    data["entry_prices"] = list(request.entry_prices)
    data["tp_prices"] = list(request.tp_prices)
    return data


def request_from_dict(data: Mapping[str, Any]) -> TradeRequest:
    """The inverse of :func:`request_to_dict`."""
    values = dict(data)
    values["side"] = Side(values["side"])
    values["approach"] = Approach(values["approach"])
    values["entry_prices"] = tuple(values["entry_prices"])
    values["tp_prices"] = tuple(values["tp_prices"])
    return TradeRequest(**values)


class MirrorFollower:
    """Opens, forwards, checks and repairs the mirror of every trade opened on main."""

    def __init__(
        self,
        *,
        manager: TpslManager,
        venues: Mapping[str, Venue],
        store: Any,
        clock: Clock,
        scheduler: Scheduler,
        alerts: AlertBus,
        params: MirrorParams,
    ) -> None:
        self.manager = manager
        self.venues = venues
        self.store = store
        self.clock = clock
        self.scheduler = scheduler
        self.alerts = alerts
        self.params = params
        self.links: dict[str, MirrorLink] = TrackedDict()
        """By main's monitor key. A TrackedDict: the snapshot follows which links were added or removed."""
        self.tasks: list[MirrorTask] = []
        self.failures_in_a_row = 0
        self.desync = False
        self.counts: dict[str, float] = {
            "drift_events": 0,
            "repairs": 0,
            "skipped": 0,
            "missed": 0,
            "largest_gap_steps": 0.0,
        }
        """``skipped``: trades not mirrored (too small, refused, paused); ``missed``: main closed
        before its mirror could open (an outage); ``largest_gap_steps``: the largest size difference
        between the legs, in qty steps, seen while no mirror action was failing (outside an outage)."""
        self._seq = 0
        self._loaded = False
        self._link_rows: KeyedRows[str, _LinkInputs, LinkRow] = KeyedRows(self._link_inputs, _link_row)
        """The ``links`` rows, made again only for the links said to have changed since the last one."""
        self._link_feeds: _LinkFeeds | None = None
        """(the links, monitors and instruments they follow; feeds of the three's keys)."""

    # --- state --------------------------------------------------------------------------------
    def load(self) -> None:
        """Take the links and the queue from the store's recovered state."""
        if self._loaded:
            return
        state = self.store.state.get(state_keys.MIRROR_KEY) or {}
        try:
            self.links = TrackedDict(
                (k, MirrorLink.from_dict(v)) for k, v in (state.get("links") or {}).items()
            )
            self.tasks = [MirrorTask.from_dict(t) for t in state.get("tasks") or []]
        except (TypeError, ValueError, KeyError) as exc:
            message = f"the mirror's saved links could not be read ({exc}); the drift check rebuilds nothing"
            self.alerts.raise_alert(Severity.CRITICAL, "mirror_desync", message, key=MIRROR)
            self.links, self.tasks = TrackedDict(), []
        self._seq = max([int(state.get("seq") or 0), *(t.task_id for t in self.tasks)])
        self.failures_in_a_row = int(state.get("failures_in_a_row") or 0)
        self.desync = bool(state.get("desync"))
        self.counts.update(state.get("counts") or {})
        self._loaded = True

    async def _save(self, *, force: bool = False) -> None:
        value = {
            "links": {k: link.to_dict() for k, link in self.links.items()},
            "tasks": [t.to_dict() for t in self.tasks],
            "seq": self._seq,
            "failures_in_a_row": self.failures_in_a_row,
            "desync": self.desync,
            "counts": self.counts,
        }
        try:
            await self.store.save(state_keys.MIRROR_KEY, value, reason=Reason.MIRROR_SYNC, force=force)
        except StoreFailed as exc:
            self.manager.on_store_health(exc)  # kept in memory, written when the disk is back

    def install(self) -> None:
        """Follow main's trades and start the queue and drift-check jobs."""
        self.load()
        self.manager.add_open_listener(self.on_opened)
        self.scheduler.add(QUEUE_JOB, self.run_queue, QUEUE_TICK_S)
        self.scheduler.add(SYNC_JOB, self.check_drift, self.params.sync_interval_s)

    def _ready(self) -> bool:
        """Both accounts reconciled since the start: before that no mirror action is taken."""
        return self.manager.is_ready(MAIN) and self.manager.is_ready(MIRROR)

    # --- following main -----------------------------------------------------------------------
    async def on_opened(self, monitor: Monitor, request: TradeRequest) -> None:
        """A trade opened on main: link it and queue the mirror's open (on disk before returning)."""
        if monitor.account != MAIN:
            return  # a trade on the mirror itself is never mirrored back
        link = MirrorLink(monitor.key, monitor.monitor_id, monitor.symbol, monitor.side.value)
        self.links[monitor.key] = link
        self._enqueue(Verb.OPEN, link, request=request_to_dict(request))
        await self._save(force=True)
        self.scheduler.run_soon(QUEUE_JOB)

    async def follow(self, verb: str, key: str, intent: str = "manual") -> None:
        """The operator did ``verb`` (close, cancel, breakeven) on the main monitor ``key``: queue the
        same on its mirror. A mirror whose open is still queued is simply not opened any more."""
        link = self.links.get(key)
        if link is None or link.state not in (LinkState.OPENING, LinkState.OPEN):
            return
        if verb == Verb.CLOSE and link.state is LinkState.OPENING:
            self.tasks = [t for t in self.tasks if t.main_key != key]
            self._settle(link, LinkState.CLOSED, "main closed before the mirror opened")
            self.counts["missed"] += 1
        else:
            self._enqueue(Verb(verb), link, intent=intent)
            if verb == Verb.CLOSE:
                link.state = LinkState.CLOSING
        await self._save(force=True)
        self.scheduler.run_soon(QUEUE_JOB)

    def _enqueue(self, verb: Verb, link: MirrorLink, **extra: Any) -> None:
        self._seq += 1
        task = MirrorTask(self._seq, verb, link.main_key, link.main_monitor_id, self.clock.now(), **extra)
        self.tasks.append(task)

    def _settle(self, link: MirrorLink, state: LinkState, note: str) -> None:
        link.state, link.note, link.drift = state, note, ()

    # --- the queue ----------------------------------------------------------------------------
    async def run_queue(self) -> None:
        """The ``mirror-queue`` job: run the due tasks in order; a task that fails holds back the
        later tasks of the same trade (an open before its close) and is retried with backoff.

        A run takes about its interval at most (:data:`QUEUE_SLICE_S`) and saves what it did; the
        next run goes on from there. A thousand tasks at the venue's rate (after a restart, or a
        wave of openings) made one run of minutes: the scheduler reported it overrunning every
        second, and a crash meanwhile lost the record of every task done in it."""
        if not self.tasks or not self._ready():
            return
        now = self.clock.now()
        held: set[str] = set()
        changed = False
        for task in list(self.tasks):
            if changed and self.clock.now() - now >= QUEUE_SLICE_S:
                break  # the rest in the next run, the queue's order kept
            if task.main_key in held or task.due_at > now:
                held.add(task.main_key)
                continue
            try:
                reached = await self._run(task)
            except _Retry as exc:
                self._failed(task, str(exc))
                held.add(task.main_key)
            else:
                self.tasks.remove(task)
                if reached:
                    self._succeeded()
            changed = True
        if changed:
            await self._save(force=True)

    def _failed(self, task: MirrorTask, error: str) -> None:
        task.attempts += 1
        task.last_error = error
        self.failures_in_a_row += 1
        p = self.params
        if self.failures_in_a_row >= p.max_failures:
            delay = p.retry_slow_s
            if not self.desync:
                self.desync = True
                message = (
                    f"mirror out of sync: {self.failures_in_a_row} mirror actions failed in a row "
                    f"(last: {task.verb} {fmt_key(task.main_key)}: {error}); main trades on, retrying every "
                    f"{delay:g} s"
                )
                self.alerts.raise_alert(Severity.CRITICAL, "mirror_desync", message, key=MIRROR)
        else:
            delay = min(p.retry_first_s * 2 ** (task.attempts - 1), p.retry_max_s)
            message = (
                f"mirror {task.verb} of {fmt_key(task.main_key)} failed ({error}); retrying in {delay:g} s"
            )
            self.alerts.raise_alert(Severity.WARNING, "mirror_retry", message, key=task.main_key)
        task.due_at = self.clock.now() + delay

    def _succeeded(self) -> None:
        if self.desync:
            message = f"mirror back in sync after {self.failures_in_a_row} failed actions"
            self.alerts.raise_alert(Severity.INFO, "mirror_resynced", message, key=MIRROR)
        self.failures_in_a_row = 0
        self.desync = False

    async def _run(self, task: MirrorTask) -> bool:
        """Do ``task``; True when the mirror venue answered it (which ends a failure streak). A
        forwarded action is handed to the mirror's monitor, whose own retries carry it: neutral."""
        link = self.links.get(task.main_key)
        if link is None or link.main_monitor_id != task.main_monitor_id:
            return False  # that trade is gone: nothing left to do
        try:
            if task.verb is Verb.OPEN:
                return await self._open(task, link)
            await self._forward(task, link)
            return False
        except VenueError as exc:
            raise _Retry(str(exc)) from None

    async def _open(self, task: MirrorTask, link: MirrorLink) -> bool:
        """Open the mirror of ``link``, or settle why not; True when the mirror venue answered."""
        main = self.manager.monitors.get(link.main_key)
        if main is None or main.monitor_id != link.main_monitor_id:
            self._settle(link, LinkState.CLOSED, "main closed before the mirror opened")
            self.counts["missed"] += 1
            return False
        if main.phase is Phase.PROFIT_TAKING or main.close_intent is not None:
            # Opening now would chase a trade main is already taking profit on (or closing).
            self._skip(link, "main had already taken profit or was closing when the mirror could open")
            return False
        current = self.manager.monitors.get(link.mirror_key)
        if current is not None:
            ours = current.tag == self.manager.tag and current.approach == main.approach
            if ours and current.created_at >= main.created_at:
                # opened before a restart cut the task short: that is this link's mirror
                link.state, link.mirror_monitor_id = LinkState.OPEN, current.monitor_id
                return False
            self._skip(link, f"the mirror already holds a {current.approach} position on {link.symbol}")
            return False
        if self.manager.is_paused(MIRROR):
            self._skip(link, "new entries are paused on the mirror")
            return False
        if task.request is None:
            self._skip(link, "the main trade's request was not kept")
            return False
        request = request_from_dict(task.request)
        instrument = self.manager.instruments.get(link.symbol)
        first = main.orders.get("e1")
        if instrument is None or first is None:
            self._skip(link, f"main's entry of {link.symbol} is unknown")
            return False
        main_wallet = await self.venues[MAIN].wallet()
        mirror_wallet = await self.venues[MIRROR].wallet()
        tickers = await self.venues[MIRROR].tickers([link.symbol])
        ticker = tickers.get(link.symbol)
        if ticker is None:
            raise _Retry(f"no price for {link.symbol} on the mirror")
        try:
            ratio = self.params.sizing.ratio(main_wallet.equity, mirror_wallet.equity)
            copy = mirror_request(
                request, first.qty, ratio, instrument, ticker.last, self.manager.params.max_leverage
            )
        except MirrorSkipped as exc:
            self._skip(link, str(exc))
            return True
        try:
            opened = await self.manager.open_trade(copy)
        except TradeRejected as exc:
            if exc.transient:
                raise _Retry(str(exc)) from None
            self._skip(link, str(exc))
            return True
        link.state, link.ratio, link.mirror_monitor_id = LinkState.OPEN, ratio, opened.monitor_id
        link.qty_ratio = copy.qty / first.qty if copy.qty and first.qty > 0 else ratio
        link.note = ""
        log.info("mirrored %s as %s at ratio %.6g", fmt_key(link.main_key), fmt_key(link.mirror_key), ratio)
        return True

    def _skip(self, link: MirrorLink, why: str) -> None:
        self._settle(link, LinkState.SKIPPED, why)
        self.counts["skipped"] += 1
        message = f"{fmt_key(link.main_key)} not mirrored: {why}"
        self.alerts.raise_alert(Severity.WARNING, "mirror_skipped", message, key=link.main_key)

    def _mirror_monitor(self, link: MirrorLink) -> Monitor | None:
        monitor = self.manager.monitors.get(link.mirror_key)
        if monitor is None or monitor.monitor_id != link.mirror_monitor_id:
            return None
        return monitor

    async def _forward(self, task: MirrorTask, link: MirrorLink) -> None:
        if self._mirror_monitor(link) is None:
            return  # the mirror is not open (any more): nothing to forward
        params = self.manager.params
        if task.verb is Verb.CLOSE:
            intent = task.intent
            await self._transact(link, lambda m, inst: request_close(m, intent, inst, params))
            link.state = LinkState.CLOSING
        elif task.verb is Verb.CANCEL:
            await self._transact(link, lambda m, inst: cancel_orders(m, inst, params))
        elif task.verb is Verb.BREAKEVEN:
            await self._breakeven(link)

    async def _transact(self, link: MirrorLink, decide: Callable[[Monitor, Instrument], Transition]) -> None:
        with contextlib.suppress(KeyError):  # closed meanwhile
            await self.manager.transact(link.mirror_key, decide)

    async def _breakeven(self, link: MirrorLink) -> bool:
        """Move the mirror's stop to breakeven; False (with the reason noted) when refused."""
        params = self.manager.params
        price = self.manager.trigger_price(link.symbol)
        try:
            await self._transact(link, lambda m, inst: breakeven_now(m, price, inst, params))
        except ValueError as exc:
            link.note = f"breakeven not moved yet: {exc}"
            return False
        return True

    # --- the drift check ----------------------------------------------------------------------
    async def check_drift(self) -> None:
        """The ``mirror-sync`` job: compare every open link's legs on the venue and repair. Its reads
        double as the probe of a mirror that was failing: once they work, the queue retries at once
        instead of at its slow pace."""
        if not self._ready():
            return
        links = [
            link
            for link in self.links.values()
            if link.state.checked or (link.state is not LinkState.OPENING and self._main_gone(link))
        ]
        waiting = self.failures_in_a_row > 0
        if not links and not waiting:
            return
        try:
            await self._check_all(links)
        except VenueError as exc:
            # An outage: the queue's desync alert speaks for it; the next check catches up.
            log.warning("mirror drift check could not read the venues (%s)", exc)
            return
        if waiting and self.tasks:
            now = self.clock.now()
            for task in self.tasks:
                task.due_at = min(task.due_at, now)
            self.scheduler.run_soon(QUEUE_JOB)
        elif waiting:
            self._succeeded()  # the mirror reads again and no action of it is left failing
        await self._save()

    async def _check_all(self, links: Sequence[MirrorLink]) -> None:
        main_held, mirror_held, covers = await self._read_legs()
        if any(_uncovered(_holding(link), mirror_held, covers) for link in links):
            # An entry that just filled has its stop resized a moment later: look again before
            # calling a position unprotected.
            await self.clock.sleep(STOP_RECHECK_S)
            main_held, mirror_held, covers = await self._read_legs()
        turn = self.scheduler.precedence.turn
        for checked, link in enumerate(links, start=1):
            if checked % LINKS_PER_TURN == 0:
                await turn()  # a thousand links are a long stretch: fills and the dashboard go between
            if self.links.get(link.main_key) is not link:
                continue  # settled and forgotten meanwhile (or replaced by a new trade's link)
            holding = _holding(link)
            await self._check(
                link, main_held.get(holding, 0.0), mirror_held.get(holding, 0.0), covers.get(holding, 0.0)
            )

    async def _read_legs(self) -> tuple[dict[Holding, float], dict[Holding, float], dict[Holding, float]]:
        """What both accounts hold and what the mirror's stops cover, per symbol and side."""
        main_positions = await self.venues[MAIN].positions()
        mirror_positions = await self.venues[MIRROR].positions()
        mirror_orders = await self.venues[MIRROR].open_orders()
        return held_sizes(main_positions), held_sizes(mirror_positions), stop_covers(mirror_orders)

    def _main_gone(self, link: MirrorLink) -> bool:
        main = self.manager.monitors.get(link.main_key)
        return main is None or main.monitor_id != link.main_monitor_id

    async def _check(self, link: MirrorLink, main_size: float, mirror_size: float, stop_qty: float) -> None:
        main = None if self._main_gone(link) else self.manager.monitors[link.main_key]
        if not link.state.checked:  # skipped or closed: forget it once main is done
            if main is None:
                del self.links[link.main_key]
            return
        mirror = self._mirror_monitor(link) or self._take_over(link)
        instrument = self.manager.instruments.get(link.symbol)
        if instrument is None:
            return
        if mirror is None and mirror_size <= instrument.qty_step / 2:
            self._mirror_closed(link, main is not None)
            return
        if mirror is None or mirror.phase is Phase.CLOSED:
            return  # open on the venue but not (yet) under any monitor: reconciliation adopts it
        main_leg = None
        if main is not None:
            main_leg = Leg(main_size, breakeven=main.breakeven, entries_live=entries_live(main))
        mirror_leg = Leg(
            mirror_size,
            stop_qty=stop_qty,
            breakeven=mirror.breakeven,
            entries_live=entries_live(mirror),
            closing=mirror.close_intent is not None,
        )
        ratio = link.reference_ratio or 1.0
        found = find_drift(main_leg, mirror_leg, ratio, instrument)
        if main_leg is not None and not self.failures_in_a_row:
            gap = abs(mirror_size - expected_size(main_size, ratio, instrument)) / instrument.qty_step
            self.counts["largest_gap_steps"] = max(self.counts["largest_gap_steps"], round(gap, 3))
        new = [d for d in found if d.kind.value not in link.drift]
        if new:
            self.counts["drift_events"] += len(new)
            detail = "; ".join(f"{d.kind.value}: {d.detail}" for d in new)
            self.alerts.raise_alert(
                Severity.WARNING, "mirror_drift", f"{fmt_key(link.mirror_key)}: {detail}", key=link.mirror_key
            )
        repairs = to_repair(found, link.drift)
        link.drift = tuple(d.kind.value for d in found)
        for drift in repairs:
            await self._repair(link, drift)

    def _take_over(self, link: MirrorLink) -> Monitor | None:
        """The position reconciliation adopted on an open link's mirror symbol and side, made the
        link's mirror; None when there is none.

        The link's own monitor is gone while the mirror still holds a position there: its orders
        went on working unseen (the mirror unreachable, or the engine down), e.g. an entry that
        filled after the TPs had closed the trade, and reconciliation adopted what they left. On a
        one-way account that is the only position the link's symbol and side can have, and the drift
        check already measures it as the link's; taking its monitor makes it follow main again:
        trimmed to main's share, and closed when main is flat (as an orphan) — never left open
        alone because its monitor's id changed."""
        current = self.manager.monitors.get(link.mirror_key)
        if (
            current is None
            or current.phase is Phase.CLOSED
            or current.tag != self.manager.tag
            or current.approach != Approach.ADOPTED
        ):
            return None
        link.mirror_monitor_id = current.monitor_id
        message = (
            f"{fmt_key(link.mirror_key)}: the position reconciliation adopted on the mirror "
            f"({current.size:g}) is taken as the mirror of {fmt_key(link.main_key)}"
        )
        self.alerts.raise_alert(Severity.WARNING, "mirror_relinked", message, key=link.mirror_key)
        return current

    def _mirror_closed(self, link: MirrorLink, main_open: bool) -> None:
        """The mirror is flat and its monitor gone: done with main, or closed without it."""
        if not main_open or link.state is LinkState.CLOSING:
            self._settle(link, LinkState.CLOSED, "")
            if not main_open:
                del self.links[link.main_key]
            return
        reason = self._exit_reason(link)
        if reason in ("manual", None):
            self._settle(link, LinkState.CLOSED_BY_HAND, "closed outside the engine; not re-opened")
            message = (
                f"{fmt_key(link.mirror_key)} was closed outside the engine while main stays open; "
                "not re-opened"
            )
            self.alerts.raise_alert(Severity.WARNING, "mirror_closed_by_hand", message, key=link.mirror_key)
        else:
            self._settle(link, LinkState.CLOSED, f"closed by its own orders ({reason}) while main stays open")

    def _exit_reason(self, link: MirrorLink) -> str | None:
        for trade in reversed(self.manager.ledger.trades):
            if trade.monitor_id == link.mirror_monitor_id:
                return trade.reason
        return None

    async def _repair(self, link: MirrorLink, drift: Drift) -> None:
        params = self.manager.params
        kind = drift.kind
        if kind is DriftKind.MISSING_STOP:
            await self.manager.reconcile(MIRROR, scope=frozenset({link.symbol}), symbol=link.symbol)
        elif kind is DriftKind.ORPHAN:
            await self._transact(link, lambda m, inst: request_close(m, MAIN_CLOSED, inst, params))
            link.state = LinkState.CLOSING
        elif kind is DriftKind.EXCESS and drift.target:
            target = drift.target
            await self._transact(link, lambda m, inst: request_trim(m, target, inst, params))
        elif kind is DriftKind.ENTRIES:
            await self._transact(link, lambda m, inst: cancel_entries(m, inst, params))
        elif kind is DriftKind.BREAKEVEN and not await self._breakeven(link):
            return  # refused for now (the price is not beyond breakeven): seen again next check
        self.counts["repairs"] += 1
        message = f"{fmt_key(link.mirror_key)}: repaired {kind.value} ({drift.detail})"
        self.alerts.raise_alert(Severity.INFO, "mirror_repair", message, key=link.mirror_key)

    # --- snapshot -----------------------------------------------------------------------------
    def snapshot(self) -> MirrorSection:
        """The snapshot's ``mirror`` section. Its links' rows are made again only for the links that
        changed since the last one (see :meth:`_links_changed`): at a thousand links a look at each
        was milliseconds of every dashboard build."""
        rows = self._link_rows.rows(self._links_changed())
        due = [t.due_at for t in self.tasks]
        return {
            "enabled": True,
            "sizing": self.params.sizing.mode,
            "links": rows,
            "queue": {
                "pending": len(self.tasks),
                "failures_in_a_row": self.failures_in_a_row,
                "desync": self.desync,
                "next_retry_in_s": round(max(0.0, min(due) - self.clock.now()), 3) if due else None,
            },
            "counts": dict(self.counts),
        }

    def _links_changed(self) -> set[str]:
        """The links whose row may differ from the last snapshot's: added or removed, a field of the
        link set (:attr:`MirrorLink.changed`), or either leg's monitor set. Every link, when the
        links, monitors or instruments are not followed by feeds (plain dicts, or new ones) or an
        instrument was learnt (its step rounds the expected size)."""
        links = self.links
        made_of = (links, self.manager.monitors, self.manager.instruments)
        feeds = self._link_feeds
        whole = feeds is None or not all(map(operator.is_, made_of, feeds[0]))
        if whole:
            self._link_feeds = feeds = _link_feeds(*made_of)
        changed: set[str]
        if whole or feeds is None or feeds[3]:
            if feeds is not None:
                for feed in feeds[1:]:
                    feed.clear()
            changed = {*self._link_rows.keys(), *links}
        else:
            changed = feeds[1].take()
            for key in feeds[2].take():  # a leg's monitor: the link is keyed by main's key
                main = f"{MAIN}:{key.partition(':')[2]}"
                if main in links:
                    changed.add(main)
            changed.update(key for key, link in links.items() if link.changed)
        for key in changed:
            link = links.get(key)
            if link is not None:
                link.changed = False
        return changed

    def _link_inputs(self, key: str) -> _LinkInputs | None:
        """Every value the row of link ``key`` is made of (None: no such link)."""
        link = self.links.get(key)
        if link is None:
            return None
        monitors = self.manager.monitors
        main_size = 0.0 if self._main_gone(link) else monitors[key].size
        mirror_key = _mirror_key(link.symbol, link.side)  # as link.mirror_key, made once per leg
        mirror = monitors.get(mirror_key)  # as _mirror_monitor(link)
        ours = mirror is not None and mirror.monitor_id == link.mirror_monitor_id
        mirror_size = mirror.size if mirror is not None and ours else 0.0
        return (
            mirror_key, link.state, link.ratio, link.qty_ratio, main_size, mirror_size,
            self.manager.instruments.get(link.symbol), link.drift, link.note,
        )  # fmt: skip


_LinkInputs = tuple[
    str, LinkState, float | None, float | None, float, float, Instrument | None, tuple[str, ...], str
]
"""What a ``mirror.links[]`` row is made of: the mirror's key, the link's state, ratio and qty ratio,
main's and the mirror's sizes, the instrument, the drift and the note."""


_LinkFeeds = tuple[tuple[object, object, object], KeyFeed[str], KeyFeed[str], KeyFeed[str]]


def _link_feeds(
    links: Mapping[str, MirrorLink], monitors: Mapping[str, Monitor], instruments: Mapping[str, Instrument]
) -> _LinkFeeds | None:
    """Feeds of the changes to the links, the monitors and the instruments, with the three they follow
    (None unless all three are TrackedDicts)."""
    dicts = (links, monitors, instruments)
    if not all(isinstance(d, TrackedDict) for d in dicts):
        return None
    tracked = cast(tuple[TrackedDict[str, Any], ...], dicts)
    return dicts, tracked[0].feed(), tracked[1].feed(), tracked[2].feed()


@functools.cache
def _mirror_key(symbol: str, side: str) -> str:
    """:attr:`MirrorLink.mirror_key` of a link on ``symbol`` and ``side``, made once per leg (every
    snapshot asks it of every link)."""
    return monitor_key(MIRROR, symbol, Side(side))


def _link_row(key: str, inputs: _LinkInputs) -> LinkRow:
    """One ``mirror.links[]`` row, read-only where built (the snapshot's freeze passes it through)."""
    mirror_key, state, ratio, qty_ratio, main_size, mirror_size, instrument, drift, note = inputs
    reference = qty_ratio or ratio  # as MirrorLink.reference_ratio
    expected = None
    if reference is not None and instrument is not None:
        expected = expected_size(main_size, reference, instrument)
    row: LinkRow = {
        "main_key": key,
        "mirror_key": mirror_key,
        "state": state.value,
        "ratio": round(ratio, 8) if ratio is not None else None,
        "qty_ratio": round(qty_ratio, 8) if qty_ratio is not None else None,
        "main_size": main_size,
        "mirror_size": mirror_size,
        "expected_size": expected,
        "drift": drift,
        "note": note,
    }
    return read_only(row)


def _holding(link: MirrorLink) -> Holding:
    return (link.symbol, Side(link.side))


def _uncovered(holding: Holding, held: Mapping[Holding, float], covers: Mapping[Holding, float]) -> bool:
    """Whether the mirror's position on ``holding`` is bigger than its stops cover."""
    size = held.get(holding, 0.0)
    return size > 0 and covers.get(holding, 0.0) < size * (1 - 1e-9)
