"""The TP/SL manager: the async shell around the pure decisions of :mod:`engine.trading.monitor`.

One registry of monitors keyed ``account:symbol:side``. Per account, one lock serialises everything
that changes monitors (stream events, polls, reconciliation, operator actions), so a decision always
sees the state the previous one left. The requests a decision sends go out without the lock (they
may wait seconds for the rate budget); their symbols are marked in flight meanwhile, and no decision,
check or reconciliation touches a symbol in flight before its answers are in, while the fills of
every other symbol are decided (and their stops sent, first in the budget) at once. A
reconciliation's reads go out without the lock as well (an answer may come only at the HTTP
timeout, and a fill's stop must not wait for it); its decision, under the lock, leaves alone the
symbols whose monitor or orders changed since its reads began.

Each event goes the same way: decide (pure) -> save with the decision's reason (a critical save is
on disk before any order is sent: write-ahead of new link ids) -> send the actions -> feed the
answers back to the decisions (retries, give-ups) -> save again.

Fills come from executions only: the private stream, and ``executions(since)`` polling as the safety
net (always when streams are off or down), de-duplicated by exec id. Start-up reconciliation runs
before anything else; until it has succeeded for every account the engine reports ``reconciling``
and refuses new entries (fail closed).

When the store cannot write (a full disk, a read-only directory) a critical save is not durable and
invariant 3 cannot hold; protection wins over durability. The manager treats "not durable" as "keep
protecting, stop entries": decisions still go out (stops placed and resized from live executions),
the store keeps them in memory and writes them when the disk is back, new entries are refused, and a
critical alert says so; the store's recovery (its health listener) lifts the refusal with an info alert.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import random
from collections import Counter, OrderedDict, deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Protocol, TypedDict, TypeVar, cast

from engine.alerts.bus import AlertBus
from engine.alerts.model import Alert, Severity
from engine.core import state_keys
from engine.core.clock import Clock, yield_to_loop
from engine.core.link_ids import new_instance_tag, new_monitor_id, other_instance_tag
from engine.core.models import (
    Execution,
    Instrument,
    Monitor,
    Order,
    Phase,
    Position,
    Side,
    StreamStatus,
    Ticker,
    Trade,
    VenueEvent,
    monitor_key,
)
from engine.core.numbers import fmt_monitor, fmt_position, fmt_usdt
from engine.core.precedence import end_urgency, renew_urgency, waiting_for_the_venue
from engine.core.read_only import read_only
from engine.core.row_memo import KeyedRows
from engine.core.tracked_dict import KeyFeed, TrackedDict
from engine.scheduler.jobs import Scheduler
from engine.scheduler.urgency import (
    Reach,
    Tier,
    UrgencyParams,
    VolatilityTracker,
    check_interval,
    tier_for,
)
from engine.trading.approaches import TradeRejected, TradeRequest, plan_trade
from engine.trading.ledger import Ledger, LedgerSection
from engine.trading.monitor import (
    ALREADY_FLAT,
    Transition,
    apply_execution,
    apply_order_update,
    apply_price,
    apply_results,
    new_monitor,
    open_monitor,
    wants_price,
)
from engine.trading.orders import (
    Action,
    ActionResult,
    AmendOrder,
    CancelOrder,
    OrderSender,
    PlaceOrder,
    Room,
    batch_chunks,
)
from engine.trading.params import MonitorTiming, TradingParams
from engine.trading.reaction import ReactionRecorder, answered_fills, fill_kind
from engine.trading.reconcile import (
    READ_ROUNDS,
    ForeignCondition,
    ReconcileOutcome,
    SyncMemo,
    VenueView,
    complete_view,
    foreign_alerts_once,
    foreign_fill_alerts,
    hedge_mode_alert,
    read_view,
    reconcile_account,
)
from engine.venue.base import MAX_BATCH, Venue
from engine.venue.budget import BATCH_KIND, CallKind
from engine.venue.errors import VenueError
from engine.venue.gateway import VenueGateway
from engine.venue.priority import Priority, call_priority
from persistence.errors import StoreFailed
from persistence.reasons import Reason
from persistence.store import Write

log = logging.getLogger("opconsole.trading")

SUBSCRIBE_WAIT_S = 5.0
"""How long an account's start waits for its own stream to subscribe before reconciling anyway."""

T = TypeVar("T")

SEEN_EXEC_IDS = 20_000
"""Execution ids remembered per account by the shell (monitors keep their own as well)."""

CHUNK_ITEMS = MAX_BATCH
"""A commit of several symbols whose actions of one kind fill more than one batch call is committed
in chunks of symbols, each chunk's kinds filling one call at most, all at once
(:meth:`TpslManager._commit_apart`): no chunk waits for the others' answers."""

GATHER_TURNS = 3
"""With ``api_batching`` on, how many turns of the event loop the stream consumer waits for more
events of the same moment after a fill or an order update (a burst of TP fills -> one amend batch)."""

JUDGED_PER_TURN = 64
"""Events of a push judged between two turns of the loop (:meth:`TpslManager.dispatch_many`): the
push's decisions go on between them. A thousand tickers took 40 ms to judge in one go."""

STREAM_RECONNECT_S = 1.0
"""The pause before a failed stream loop subscribes again."""

EventObserver = Callable[[str, VenueEvent], None]
"""Called with (account, event) for every event the manager receives."""

OpenListener = Callable[[Monitor, TradeRequest], Awaitable[None]]
"""Called with (monitor, request) after a trade was opened (the mirror follows main's trades)."""


@dataclass(frozen=True, slots=True)
class _StreamEnd:
    """Put in the stream queue by the pump when the stream ended: normally, or with ``error``."""

    error: BaseException | None = None


_Pushes = asyncio.Queue[Sequence[VenueEvent] | _StreamEnd]
"""A stream's pushes (the events that arrived together) as the pump queues them, then its end."""


async def _pump(pushes: AsyncIterator[Sequence[VenueEvent]], queue: _Pushes) -> None:
    try:
        async for push in pushes:
            queue.put_nowait(push)
    except Exception as exc:  # handed to the consumer, which reports it and reconnects
        queue.put_nowait(_StreamEnd(exc))
        return
    queue.put_nowait(_StreamEnd())


async def _reacquire(lock: asyncio.Lock) -> bool:
    """Take ``lock`` back even if the task is cancelled meanwhile (its holder's ``async with`` will
    release it); returns whether a cancellation was swallowed, for the caller to raise it again."""
    cancelled = False
    while True:
        try:
            await lock.acquire()
        except asyncio.CancelledError:
            cancelled = True
            continue
        return cancelled


def _needs_disk(transition: Transition) -> bool:
    """Whether saving ``transition`` (see :meth:`TpslManager._persist`) waits for a durable write:
    a critical reason, a forced save, a trade recorded, or a monitor removed."""
    if transition.durable or transition.trade is not None or transition.monitor.phase is Phase.CLOSED:
        return True
    return transition.reason is not None and Reason(transition.reason).critical


def _any_settled(busy: Counter[str], events: Sequence[Execution | Order]) -> bool:
    """Whether one of ``events`` is of a symbol with no orders in flight."""
    return any(not busy[e.symbol] for e in events)


async def _forever() -> None:
    await asyncio.Event().wait()


ACTION_BUDGET: dict[type[Action], CallKind] = {
    PlaceOrder: CallKind.PLACE,
    AmendOrder: CallKind.AMEND,
    CancelOrder: CallKind.CANCEL,
}
"""The rate-budget window each kind of order action spends."""


def order_room(venue: Venue) -> Room | None:
    """What the account's rate budget allows now for a kind of action: the units left in its batch
    window and in its single-order window, and their protective reserve (a gateway knows; else no
    plan)."""
    if isinstance(venue, VenueGateway):
        budget = venue.budget

        def room(kind: type[Action]) -> tuple[int, int, int]:
            single = ACTION_BUDGET[kind]
            return budget.left(BATCH_KIND[single]), budget.left(single), budget.reserve(single)

        return room
    return None


def closed_alert(key: str, trade: Trade) -> Alert:
    """``position_closed``: the trade's summary (reason, net PnL, fees, funding, how long it was held)."""
    held = max(0.0, trade.closed_at - trade.opened_at)
    hours, rest = divmod(int(held), 3600)
    duration = f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
    position = fmt_position(trade.side.value, trade.symbol, trade.account, trade.qty)
    message = (
        f"{position}: closed ({trade.reason}) net PnL {fmt_usdt(trade.pnl, signed=True)} USDT, fees "
        f"{fmt_usdt(trade.fees)}, funding {fmt_usdt(trade.funding, signed=True)}, held {duration}"
    )
    return Alert(Severity.INFO, "position_closed", message, key=key)


class MonitorRow(TypedDict):
    """One ``monitors[]`` entry (the TP/SL manager's ``snapshot_monitors``), keyed ``account:symbol:side``."""

    key: str
    account: str
    symbol: str
    side: str
    approach: str  # "fast" | "conservative" | "adopted"
    phase: str  # "BUILDING" | "MONITORING" | "PROFIT_TAKING" | "CLOSED"
    avg_entry: float
    size: float
    tps_filled: int
    sl_price: float
    breakeven: bool
    urgency: str | None  # "critical" | "active" | "standard" | "inactive" | "idle"
    monitor_id: str
    close_intent: str | None


class MonitoringRow(TypedDict):
    """``monitoring``: how the monitors are checked now, and how often they have been."""

    adaptive: bool  # checks by urgency tier (else every baseline_interval_s)
    batching: bool  # account-wide reads and batch order requests
    tiers: dict[str, int]  # tier -> monitors in it now
    checks: dict[str, int]  # tier (or "baseline") -> monitor checks made since the start
    intervals: dict[str, float]  # tier -> seconds between checks now (main account)


class StreamRow(TypedDict):
    """``streams.<account>``: whether push streams are in use and connected, and the last event's age."""

    push: bool
    connected: bool
    last_event_age_s: float | None


class StateStore(Protocol):
    """What the TP/SL manager needs from :class:`persistence.store.Store`."""

    @property
    def state(self) -> Mapping[str, Any]:
        """The recovered state, by store key."""
        ...

    async def save(self, key: str, value: Any, *, reason: Reason, force: bool = False) -> Any:
        """Store ``value`` under ``key``; durable on return when ``reason`` is critical or ``force``."""
        ...

    async def delete(self, key: str, *, reason: Reason, force: bool = False) -> Any:
        """Remove ``key``, with the same durability rule as :meth:`save`."""
        ...

    async def write(self, writes: Sequence[Write]) -> Any:
        """Several saves and deletes at once; what must be durable is in one commit."""
        ...

    def add_health_listener(self, listener: Callable[[BaseException | None], None]) -> None:
        """Call ``listener(error)`` when writes start failing, ``listener(None)`` when they work again."""
        ...


_MonitorInputs = tuple[Monitor, Instrument | None, Tier]
"""What a ``monitors[]`` row is made of: the monitor, its symbol's instrument and its urgency tier."""


def _feeds_of(
    monitors: Mapping[str, Monitor], tiers: Mapping[str, Tier], instruments: Mapping[str, Instrument]
) -> tuple[KeyFeed[str], KeyFeed[str], KeyFeed[str]] | None:
    """Feeds of the changes to the three dicts a ``monitors[]`` row is made of (None unless all three
    are TrackedDicts: then every build looks at every key). The instruments' feed starts marked, so
    the first pass after it reads every key (what was there before the feeds is in no feed)."""
    dicts = (monitors, tiers, instruments)
    if not all(isinstance(d, TrackedDict) for d in dicts):
        return None
    feeds = tuple(cast(TrackedDict[str, Any], d).feed() for d in dicts)
    feeds[2].add("")
    return feeds[0], feeds[1], feeds[2]


class TpslManager:
    """Every monitored position of every account, driven by venue events."""

    def __init__(
        self,
        *,
        venues: Mapping[str, Venue],
        store: StateStore,
        clock: Clock,
        params: TradingParams,
        timing: MonitorTiming | None = None,
        alerts: AlertBus,
        rng: random.Random | None = None,
        push_streams: bool = True,
        scheduler: Scheduler | None = None,
        urgency: UrgencyParams | None = None,
        adaptive: bool = True,
        batching: bool = True,
    ) -> None:
        self.venues = dict(venues)
        self.store = store
        self.clock = clock
        self.params = params
        self.timing = timing or MonitorTiming()
        self.alerts = alerts
        self.push_streams = push_streams
        # The engine's one scheduler (the runtime's); a manager built alone runs its own in run().
        self._own_scheduler = scheduler is None
        self.scheduler = scheduler or Scheduler(clock)
        self.precedence = self.scheduler.precedence
        """Decisions before bulk work on the loop: the judging of pushes and the scheduler's jobs
        (the scheduler's own, so both step aside for the same decisions)."""
        self.urgency = urgency or UrgencyParams.defaults()
        self.adaptive = adaptive
        """``adaptive_intervals``: each monitor checked at its urgency tier's interval, or every
        ``baseline_interval_s`` one at a time as the original bot."""
        self.batching = batching
        """``api_batching``: one account-wide read per check cycle and batched order requests, or
        one read per symbol per monitor and one request per action."""
        self.volatility = VolatilityTracker()
        self.tiers: dict[str, Tier] = TrackedDict()
        self._last_check: dict[str, float] = {}
        self._last_full: dict[str, float] = {}
        self._full_soon: set[str] = set()  # accounts with a position to adopt: a full pass next
        self._next_check: dict[str, float] = {}
        self._reaches: dict[str, tuple[Monitor, Reach]] = {}
        """Each monitor's :class:`Reach`, with the version of the monitor it was taken from."""
        self.checks: dict[str, int] = {}
        """Monitor checks made since the start, by tier (``baseline`` when adaptive intervals are off)."""
        self._senders = {
            a: OrderSender(v, clock, batching=batching, room=order_room(v)) for a, v in self.venues.items()
        }
        self.monitors: dict[str, Monitor] = TrackedDict()
        self._monitor_rows: KeyedRows[str, _MonitorInputs, MonitorRow] = KeyedRows(
            self._monitor_inputs, self._monitor_row
        )
        """The ``monitors`` section's rows, made again only for the keys whose monitor or tier was
        set since the last one (the feeds of the two dicts), or every key when the instruments,
        or the dicts themselves, were replaced or added to."""
        self._monitor_feeds: tuple[KeyFeed[str], KeyFeed[str], KeyFeed[str]] | None = None
        self._monitor_rows_of: tuple[object, ...] = ()  # the dicts the section was last made of
        self.ledger = Ledger()
        self.reactions = ReactionRecorder()
        """Fill -> request latencies (engine.trading.reaction), read by the metrics export."""
        self.instruments: dict[str, Instrument] = TrackedDict()
        self.marks: dict[str, float] = {}
        self.tickers: dict[str, Ticker] = {}
        self.tag = ""
        self._rng = rng or random.Random(0)
        self._locks = {a: asyncio.Lock() for a in self.venues}
        # Symbols whose orders are on their way to the venue: a commit sends without the lock (see
        # _send_unlocked), and nothing decides about these symbols until the answers are in.
        self._in_flight: dict[str, Counter[str]] = {a: Counter() for a in self.venues}
        self._settled = {a: asyncio.Condition(lock) for a, lock in self._locks.items()}
        # Per account, symbol -> the number of its last change (monitor or orders; see _touch): a
        # reconciliation reads without the lock and leaves alone what changed after its reads began.
        self._changes = 0
        self._changed_at: dict[str, dict[str, int]] = {a: {} for a in self.venues}
        self._reading: Counter[str] = Counter()  # account -> its reconciliations' reads under way
        # the monitors the last reconciliation found in sync: the next one skips their order diff
        self._in_sync: dict[str, SyncMemo | None] = {}
        self._ticked_at: dict[str, float] = {}  # symbol -> when its last ticker arrived
        self._handling: dict[str, set[asyncio.Task[None]]] = {a: set() for a in self.venues}
        # Price decisions under way (see _take_price), per account; and per monitor, the one not
        # yet at its price (a new price is left to it).
        self._pricing: dict[str, set[asyncio.Task[None]]] = {a: set() for a in self.venues}
        self._price_waiting: dict[str, asyncio.Task[None]] = {}
        self._seen: dict[str, OrderedDict[str, None]] = {a: OrderedDict() for a in self.venues}
        self._cursor: dict[str, float] = {}
        self._ready: dict[str, bool] = dict.fromkeys(self.venues, False)
        self._ready_event = asyncio.Event()
        self._account_ready: dict[str, asyncio.Event] = {a: asyncio.Event() for a in self.venues}
        self._connected: dict[str, bool] = dict.fromkeys(self.venues, False)
        self._ever_connected: set[str] = set()  # a first connection is no "stream back" news
        self._subscribed: dict[str, asyncio.Event] = {a: asyncio.Event() for a in self.venues}
        self._hedge_mode: dict[str, str] = {}
        """Accounts refused for being in hedge mode (account -> the alert's message)."""
        self._foreign: dict[str, frozenset[ForeignCondition]] = {}
        """Another engine instance's orders and positions raised per account, each once while it lasts."""
        self._paused: set[str] = set()
        self._loaded = False
        self._seq = 0
        self._observers: list[EventObserver] = []
        self._open_listeners: list[OpenListener] = []
        self._stream_tasks: dict[str, asyncio.Task[None]] = {}
        self._last_event: dict[str, float] = {}
        self._store_error: str | None = None
        """Why the store cannot write, while it cannot (new entries are refused meanwhile)."""
        store.add_health_listener(self.on_store_health)

    # --- state --------------------------------------------------------------------------------
    @property
    def engine_state(self) -> str:
        """``reconciling`` until every account reconciled, then ``paused`` / ``degraded`` / ``running``."""
        if not all(self._ready.values()):
            return "reconciling"
        if self._store_error is not None:
            return "degraded"
        if self._paused and self._paused >= set(self.venues):
            return "paused"
        if self.push_streams and not all(self._connected.values()):
            return "degraded"
        return "running"

    @property
    def ready(self) -> bool:
        """Whether start-up reconciliation has succeeded for every account."""
        return all(self._ready.values())

    async def wait_ready(self, account: str | None = None) -> None:
        """Return once start-up reconciliation has succeeded for ``account`` (None: every account)."""
        await (self._ready_event if account is None else self._account_ready[account]).wait()

    def is_ready(self, account: str) -> bool:
        """Whether ``account`` has been reconciled with the venue since the start (its jobs run)."""
        return self._ready.get(account, False)

    def is_paused(self, account: str) -> bool:
        """Whether new entries are paused on ``account`` (its positions stay protected)."""
        return account in self._paused

    def load(self) -> None:
        """Take monitors, ledger, cursors and the instance tag from the store's recovered state."""
        if self._loaded:
            return
        state = self.store.state
        for key, value in state.items():
            if key.startswith(state_keys.MONITOR_PREFIX):
                monitor = Monitor.from_dict(value)
                if monitor.account in self.venues and monitor.phase is not Phase.CLOSED:
                    self.monitors[monitor.key] = monitor
        self.ledger = Ledger.from_state(state)
        engine = state.get(state_keys.MANAGER_KEY) or {}
        self.tag = engine.get("instance_tag") or new_instance_tag(self._rng)
        self._cursor = {a: float(t) for a, t in (engine.get("cursors") or {}).items()}
        self._paused = set(engine.get("paused") or []) & set(self.venues)
        self._loaded = True

    async def _save_engine(self, reason: Reason = Reason.MONITORING_UPDATE, force: bool = False) -> None:
        value = {"instance_tag": self.tag, "cursors": self._cursor, "paused": sorted(self._paused)}
        await self._save(state_keys.MANAGER_KEY, value, reason=reason, force=force)

    async def _save(self, key: str, value: Any, *, reason: Reason, force: bool = False) -> None:
        """Save through the store, as :meth:`_write`."""
        await self._write([Write(key, reason, value, force=force)])

    async def _delete(self, key: str, *, reason: Reason) -> None:
        """Delete through the store, as :meth:`_write`."""
        await self._write([Write(key, reason, remove=True)])

    async def _write(self, writes: Sequence[Write]) -> None:
        """Write through the store; a change that is not durable (the disk is out) is kept by the
        store and written later, and the decision goes on: protection wins (see the module doc)."""
        if not writes:
            return
        try:
            await self.store.write(writes)
        except StoreFailed as exc:
            self.on_store_health(exc)

    def on_store_health(self, error: BaseException | None) -> None:
        """The store's health listener: refuse new entries (and say why, once) while it cannot write;
        allow them again when it writes again."""
        if error is not None:
            if self._store_error is None:
                self._store_error = str(error)
                message = (
                    f"the engine state cannot be written ({error}); open positions stay protected "
                    "(stops are placed and resized from live executions, decisions are kept in memory "
                    "and written when the disk is back); new entries are refused; retrying the write"
                )
                self.alerts.raise_alert(Severity.CRITICAL, "store_failed", message)
            return
        if self._store_error is not None:
            self._store_error = None
            message = "the engine state is written again (kept decisions are on disk); new entries allowed"
            self.alerts.raise_alert(Severity.INFO, "store_recovered", message)

    def lock(self, account: str) -> asyncio.Lock:
        """The lock that serialises every decision about ``account``'s monitors and orders (a
        commit's requests and a reconciliation's reads go out without it; see :meth:`idle`)."""
        return self._locks[account]

    def idle(self, account: str) -> bool:
        """Whether nothing of ``account`` is in hand: no decision under way, no order in flight, no
        reconciliation reading, no stream event or price decision waiting to be handled."""
        return not (
            self._locks[account].locked()
            or self._in_flight[account]
            or self._reading[account]
            or self._handling[account]
            or self._pricing[account]
        )

    # --- life cycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Load, subscribe, reconcile every account (retrying while the venue cannot be read), then
        keep the streams, the execution polls and the periodic reconciliation going until cancelled.

        Safe to run again after it failed (the runtime's supervisor does): the monitors in memory are
        kept, and every account is reconciled with the venue again, with new entries refused until
        then, before the loops restart (a fill missed while it was down is found there)."""
        self.load()
        self._ready = dict.fromkeys(self.venues, False)
        for event in self._account_ready.values():
            event.clear()
        await self._save_engine(Reason.STARTUP)
        tasks: list[asyncio.Task[None]] = []
        try:
            if self._own_scheduler:
                tasks.append(self._spawn(self.scheduler.run(), "tpsl-scheduler"))
            if self.push_streams:
                self._start_streams()
            # Each account starts on its own: one that cannot be read or whose stream cannot log in
            # (a mirror account's outage) never holds back the protection and the entries of another.
            starts = [self._spawn(self._start_account(a), f"tpsl-start-{a}") for a in self.venues]
            tasks += starts  # cancelled on the way out if one of them failed
            done, _ = await asyncio.wait(starts, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if (error := task.exception()) is not None:
                    raise error
            self._ready_event.set()
            tasks.append(self._spawn(_forever(), "tpsl-jobs"))  # the jobs run on the scheduler
            await asyncio.gather(*tasks)
        finally:
            self._remove_jobs()
            tasks += self._stream_tasks.values()
            self._stream_tasks.clear()
            tasks += [task for pricing in self._pricing.values() for task in pricing]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- the periodic work: jobs of the engine's scheduler --------------------------------------
    def _job_names(self, account: str) -> tuple[str, str, str]:
        return f"fills:{account}", f"reconcile:{account}", f"check:{account}"

    async def _start_account(self, account: str) -> None:
        """Reconcile ``account`` with the venue (retrying while it cannot be read), then start its jobs.

        With push streams, its own stream is given up to :data:`SUBSCRIBE_WAIT_S` to subscribe
        first, so a fill between the reads and the subscription is not left to the first poll."""
        if self.push_streams:
            await self._sleep_or_wake(self._subscribed[account], SUBSCRIBE_WAIT_S)
        await self._reconcile_until_ready(account)
        self._install_jobs(account)

    def _install_jobs(self, account: str) -> None:
        """The account's execution poll (the net under the stream), whole-account reconciliation
        (adoption, orphans), and monitor checks (see :meth:`run_checks`)."""
        fills, reconcile, check = self._job_names(account)
        self.scheduler.add(fills, functools.partial(self._fills_job, account), self._fills_interval(account))
        self.scheduler.add(
            reconcile, functools.partial(self._reconcile_job, account), self._reconcile_interval(account)
        )
        self.scheduler.add(
            check, functools.partial(self._check_job, account), self._check_tick(account), align=True
        )

    async def _check_job(self, account: str) -> None:
        await self.run_checks(account)

    def _remove_jobs(self) -> None:
        for account in self.venues:
            for name in self._job_names(account):
                if self.scheduler.has(name):
                    self.scheduler.remove(name)

    def _run_soon(self, job: str) -> None:
        if self.scheduler.has(job):
            self.scheduler.run_soon(job)

    def _streaming(self, account: str) -> bool:
        return self.push_streams and self._connected.get(account, False)

    def _fills_interval(self, account: str) -> float:
        """Polling for executions: the source of fills without a stream; with one, a slow net (the
        stream's gaps wake it at once, and the reconciliation reads executions too)."""
        if self._streaming(account):
            return self.timing.reconcile_positions_s * self.urgency.stream_stretch
        return self.timing.execution_poll_s

    def _reconcile_interval(self, account: str) -> float:
        """The whole-account pass (orphans, foreign orders, adoption): every ``reconcile_orders_s``,
        stream or not; an orphan of ours or another process's order is never left for long."""
        return self.timing.reconcile_orders_s

    def _check_tick(self, account: str) -> float:
        """How often the check job looks for due monitors: the shortest interval a monitor can have."""
        return self._tier_interval(Tier.CRITICAL, account)

    def _tier_interval(self, tier: Tier, account: str) -> float:
        """Seconds between checks of ``account``'s monitors in ``tier``, as the toggles and streams stand."""
        return check_interval(tier, self.urgency, streaming=self._streaming(account), adaptive=self.adaptive)

    def _retime(self, account: str) -> None:
        """Stream health or a toggle changed: the account's jobs take their new intervals."""
        fills, reconcile, check = self._job_names(account)
        if self.scheduler.has(fills):
            self.scheduler.set_interval(fills, self._fills_interval(account))
        if self.scheduler.has(reconcile):
            self.scheduler.set_interval(reconcile, self._reconcile_interval(account))
        if self.scheduler.has(check):
            self.scheduler.set_interval(check, self._check_tick(account))
        for key in [k for k, m in self.monitors.items() if m.account == account]:
            self._schedule_check(key)

    async def _fills_job(self, account: str) -> None:
        try:
            await self.poll_executions(account)
        except VenueError as exc:
            message = f"{account}: execution poll failed ({exc})"
            self.alerts.raise_alert(Severity.WARNING, "poll_failed", message, key=account)

    async def _reconcile_job(self, account: str) -> None:
        """The whole-account pass (orphan orders, foreign orders) every ``reconcile_orders_s``; with
        positions (adoption, unexplained sizes) every ``reconcile_positions_s``."""
        now = self.clock.now()
        full = account in self._full_soon
        full |= now - self._last_full.get(account, float("-inf")) >= self.timing.reconcile_positions_s - 1e-9
        self._full_soon.discard(account)
        try:
            await self.reconcile(account, full=full)
            if full:
                self._last_full[account] = now
        except VenueError as exc:
            message = f"{account}: periodic reconciliation failed ({exc})"
            self.alerts.raise_alert(Severity.WARNING, "reconcile_failed", message, key=account)

    # --- urgency and the monitor checks ----------------------------------------------------------
    def monitor_interval(self, key: str) -> float:
        """How often the monitor ``key`` is checked against the venue now."""
        monitor = self.monitors.get(key)
        account = monitor.account if monitor is not None else ""
        return self._tier_interval(self.tiers.get(key, Tier.ACTIVE), account)

    def _update_tier(self, monitor: Monitor) -> None:
        """Recompute the monitor's tier from the latest price, the symbol's volatility and its fills;
        a monitor that became more urgent is checked sooner."""
        key = monitor.key  # a property that formats the key: once, on this per-price path
        kept = self._reaches.get(key)
        if kept is None or kept[0] is not monitor:  # a new version of the monitor (never changed in place)
            kept = self._reaches[key] = (monitor, Reach.of(monitor))
        tier = tier_for(
            kept[1],
            self.trigger_price(monitor.symbol),
            move_pct_per_min=self.volatility.move_pct_per_min(monitor.symbol),
            now=self.clock.now(),
            params=self.urgency,
        )
        if self.tiers.get(key) is not tier:
            self.tiers[key] = tier
            self._schedule_check(key)

    def _forget_checks(self, key: str) -> None:
        for table in (self.tiers, self._last_check, self._next_check, self._reaches):
            table.pop(key, None)

    def _schedule_check(self, key: str) -> None:
        """The monitor's next check: its interval after the last one, never later than planned."""
        last = self._last_check.get(key)
        due = self.clock.now() if last is None else last + self.monitor_interval(key)
        planned = self._next_check.get(key)
        self._next_check[key] = due if planned is None or last is None else min(planned, due)

    def due_checks(self, account: str) -> list[str]:
        """Keys of ``account``'s monitors whose check is due (all of them without adaptive intervals)."""
        now = self.clock.now() + 1e-9
        keys = sorted(k for k, m in self.monitors.items() if m.account == account)
        if not self.adaptive:
            return keys
        for key in keys:
            if key not in self._next_check:
                self._schedule_check(key)
        return [k for k in keys if self._next_check[k] <= now]

    async def run_checks(self, account: str) -> int:
        """The check job: verify the due monitors' orders and positions against the venue, poll
        their executions and (without a live stream) their prices — the safety net for a silent
        stream. Batched: one account-wide read of each kind serves every due monitor; baseline: one
        monitor at a time, one read per symbol, as the original bot. Returns the monitors checked."""
        keys = self.due_checks(account)
        if not keys:
            return 0
        with call_priority(Priority.CHECK):
            try:
                if self.batching:
                    await self._check(account, keys)
                else:
                    for key in keys:
                        await self._check(account, [key])
            except VenueError as exc:
                message = f"{account}: monitor check failed ({exc})"
                self.alerts.raise_alert(Severity.WARNING, "check_failed", message, key=account)
        return len(keys)

    async def _check(self, account: str, keys: Sequence[str]) -> None:
        monitors = [self.monitors[k] for k in keys if k in self.monitors]
        if not monitors:
            return
        symbols = sorted({m.symbol for m in monitors})
        one = symbols[0] if not self.batching else None
        if not self._streaming(account):
            await self._read_prices(account, symbols)
        await self.reconcile(account, full=True, scope=frozenset(symbols), symbol=one)
        now = self.clock.now()
        for monitor in monitors:
            tier = self.tiers.get(monitor.key, Tier.ACTIVE).value if self.adaptive else "baseline"
            self.checks[tier] = self.checks.get(tier, 0) + 1
            self._last_check[monitor.key] = now
            self._next_check[monitor.key] = now + self.monitor_interval(monitor.key)

    async def _read_prices(self, account: str, symbols: Sequence[str]) -> None:
        """Prices for monitors without a live stream: one read for all, or one per symbol."""
        venue = self.venues[account]
        tickers = await venue.tickers(symbols)
        for symbol in symbols:
            ticker = tickers.get(symbol)
            if ticker is not None:
                self._notify(account, ticker)
                await self.on_ticker(ticker)

    async def set_adaptive(self, enabled: bool) -> None:
        """The ``adaptive_intervals`` toggle, live: checks by urgency tier, or every monitor every
        ``baseline_interval_s``. Each monitor's next check is planned again at once."""
        self.adaptive = enabled
        self._next_check.clear()
        for account in self.venues:
            self._retime(account)

    async def set_batching(self, enabled: bool) -> None:
        """The ``api_batching`` toggle, live: account-wide reads and batch order requests, or one
        read per symbol per monitor and one request per action."""
        self.batching = enabled
        for sender in self._senders.values():
            sender.batching = enabled
        for venue in self.venues.values():
            if isinstance(venue, VenueGateway):
                venue.coalesce = enabled

    def snapshot_monitoring(self) -> MonitoringRow:
        """The snapshot's ``monitoring`` section."""
        # Counted in C: a pass in Python over two thousand monitors was 1-2 ms of every snapshot.
        held = Counter(map(self.tiers.get, self.monitors, repeat(Tier.ACTIVE)))
        counts = {tier.value: held[tier] for tier in Tier}
        main = next(iter(self.venues), "")
        return {
            "adaptive": self.adaptive,
            "batching": self.batching,
            "tiers": counts,
            "checks": dict(sorted(self.checks.items())),
            "intervals": {tier.value: self._tier_interval(tier, main) for tier in Tier},
        }

    def _start_streams(self) -> None:
        for account in self.venues:
            if account not in self._stream_tasks:
                self._stream_tasks[account] = self._spawn(
                    self._stream_loop(account), f"tpsl-stream-{account}"
                )

    async def set_push_streams(self, enabled: bool) -> None:
        """The ``push_streams`` toggle, live: subscribe to the venue's streams (polling stays as the
        safety net) or drop them and poll for executions, as the original bot did.

        The poll loops are woken so they pick the new interval at once; a poll right after the
        switch also catches any fill that arrived while the stream was being torn down.
        """
        if enabled == self.push_streams:
            return
        self.push_streams = enabled
        if enabled:
            self._start_streams()
        else:
            tasks = list(self._stream_tasks.values())
            self._stream_tasks.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for account in self.venues:
                self._connected[account] = False
        for account in self.venues:
            self._retime(account)
            self._run_soon(self._job_names(account)[0])  # a poll now catches what the switch lost

    @staticmethod
    def _spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.create_task(coro, name=name)

    async def _load_instruments(self, account: str) -> None:
        symbols = {m.symbol for m in self.monitors.values()} - set(self.instruments)
        positions = await self.venues[account].positions()
        symbols |= {p.symbol for p in positions if p.is_open} - set(self.instruments)
        if symbols or not self.instruments:
            self.instruments.update(await self.venues[account].instruments(sorted(symbols) or None))

    async def _reconcile_until_ready(self, account: str) -> None:
        delay = 1.0
        while True:
            try:
                await self._load_instruments(account)
                await self.reconcile(account, full=True)
            except VenueError as exc:
                message = f"{account}: cannot read the venue ({exc}); retrying"
                self.alerts.raise_alert(Severity.CRITICAL, "reconcile_failed", message, key=account)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            self._ready[account] = True
            self._account_ready[account].set()
            self._last_full[account] = self.clock.now()
            return

    # --- reconciliation -----------------------------------------------------------------------
    def _since(self, account: str) -> float:
        if account in self._cursor:
            return self._cursor[account]
        created = [m.created_at for m in self.monitors.values() if m.account == account]
        return min(created, default=self.clock.now())

    def _next_monitor_id(self, account: str, symbol: str, side_value: str = "") -> str:
        self._seq += 1
        return new_monitor_id(f"{account}:{symbol}:{side_value}", self.clock.now(), self._seq)

    def _would_refuse_hedge_mode(self, account: str, positions: Sequence[Position] | None) -> bool:
        """:meth:`_refuse_hedge_mode`'s answer, without raising or clearing its alert."""
        if positions is None:
            return account in self._hedge_mode
        return hedge_mode_alert(account, positions) is not None

    def _refuse_hedge_mode(self, account: str, positions: Sequence[Position] | None) -> bool:
        """Whether ``account`` is refused for hedge mode, judged on a positions read when there is
        one: nothing is reconciled, adopted or cancelled there while it is (see
        :func:`~engine.trading.reconcile.hedge_mode_alert`); the alert is raised once per refusal."""
        if positions is None:
            return account in self._hedge_mode
        alert = hedge_mode_alert(account, positions)
        if alert is None:
            if self._hedge_mode.pop(account, None) is not None:
                message = f"{account}: no hedge-mode position left"
                self.alerts.raise_alert(Severity.INFO, "hedge_mode", message, key=account)
            return False
        if account not in self._hedge_mode:
            self.alerts.publish(alert)
        self._hedge_mode[account] = alert.message
        return True

    async def reconcile(
        self,
        account: str,
        *,
        full: bool = True,
        scope: frozenset[str] | None = None,
        symbol: str | None = None,
    ) -> int:
        """One reconciliation pass of ``account`` (positions too when ``full``); returns the number of
        repairs. Raises VenueError when the venue cannot be read (nothing is changed then).

        ``scope``: verify only these symbols' orders and positions (a monitor check; see
        :func:`~engine.trading.reconcile.reconcile_account`). ``symbol``: read only that symbol (the
        baseline's per-position reads); its executions then do not move the account's cursor.

        When the decision asks for more reads (a positions read older than a fill, a size no fill in
        the window explains), they are made and the decision is taken again before anything is done.

        The reads are made without the account's lock (a read answered late never holds back the
        fills decided meanwhile); the decision is taken under it, and leaves alone the symbols that
        changed since the reads began, as those with orders in flight.
        """
        venue = self.venues[account]
        read_at = self.clock.now()
        # The reads go out without the lock: an answer may come late (up to the HTTP timeout), and
        # the fills decided meanwhile must not wait for it (their stops would). Whatever changes
        # meanwhile is left alone by this pass (see _left_alone).
        changes = self._changes
        view = await self._read(
            account, read_view(venue, self._since(account), with_positions=full, symbol=symbol)
        )
        # The decision is pure and takes tens of ms at a thousand positions: it is made before the
        # lock is taken, so a fill that comes meanwhile is not decided behind it, and made again
        # under the lock only when a symbol changed or went in flight in between. A push that landed
        # while the reads were out is taken first, and its fills decided before this (one step).
        await self.precedence.turn()
        early = self._left_alone(account, changes)
        ahead = None
        if not self._would_refuse_hedge_mode(account, view.positions):
            ahead = await self._decide_reconcile(account, view, scope, early)
        async with self._locks[account]:
            if self._refuse_hedge_mode(account, view.positions):
                return 0
            # Nothing can be sent while the lock is held: the symbols in flight now stay so until
            # this decision is made, and are left alone by it.
            busy = self._left_alone(account, changes)
            if ahead is not None and busy == early:
                outcome = ahead
            else:
                outcome = await self._decide_reconcile(account, view, scope, busy)
            for _ in range(READ_ROUNDS):
                if not outcome.wants_reads:
                    break
                view = await self._unlocked(account, self._read(account, complete_view(venue, view, outcome)))
                busy = self._left_alone(account, changes)
                outcome = await self._decide_reconcile(account, view, scope, busy)
            for marked, mark in view.marks.items():  # (not ``symbol``: the cursor below reads it)
                if self._ticked_at.get(marked, float("-inf")) < read_at:  # no newer ticker meanwhile
                    self.marks[marked] = mark
            for exec_id in outcome.applied_exec_ids:
                self._remember(account, exec_id)
            # another engine's fills, applied to nothing: said once each (a pass reads the last again)
            foreign = [e for e in outcome.foreign_fills if self._remember(account, e.exec_id)]
            self.alerts.publish_all(foreign_fill_alerts(account, foreign))
            # A fill of a symbol left alone (orders in flight) that was not decided yet holds the
            # cursor back, so the next poll still finds it if the stream lost it.
            held = min(
                (e.ts for e in view.executions if e.symbol in busy and e.exec_id not in self._seen[account]),
                default=float("inf"),
            )
            for exe in view.executions if symbol is None else ():  # one symbol's reads cover only it
                if exe.ts < held:  # (nor the looked-up history: only some symbols)
                    self._advance_cursor(account, exe)
            alerts, self._foreign[account] = foreign_alerts_once(
                account, outcome, self._foreign.get(account, frozenset())
            )
            self.alerts.publish_all(alerts)
            pending = [t for t in outcome.transitions if t.reason or t.actions or t.trade or t.durable]
            # The trades the fills closed are in the ledger before any order goes out: an adoption
            # on the same key replaces the closed monitor's record, and a crash must not lose both.
            for transition in pending:
                if transition.trade is not None:
                    await self._persist(transition)
            # in the outcome's order, adoptions (protection) first; the sender keeps that order
            causes = answered_fills(pending, view.executions, outcome.applied_exec_ids)
            await self._commit_all(account, pending, causes=causes)
            if outcome.orphan_cancels:
                count = len(outcome.orphan_cancels)
                message = f"{account}: cancelling {count} orphan order(s)"
                self.alerts.raise_alert(Severity.WARNING, "orphan_orders", message, key=account)
                symbols = [c.request.symbol for c in outcome.orphan_cancels]
                await self._send_unlocked(account, symbols, outcome.orphan_cancels)
            if outcome.repairs and self._ready.get(account):
                message = f"{account}: reconciliation repaired {outcome.repairs} difference(s)"
                self.alerts.raise_alert(Severity.WARNING, "drift", message, key=account)
            await self._save_engine()
            return outcome.repairs

    async def _decide_reconcile(
        self,
        account: str,
        view: VenueView,
        scope: frozenset[str] | None = None,
        busy: frozenset[str] = frozenset(),
    ) -> ReconcileOutcome:
        """The pure reconciliation of ``account`` on ``view`` (instruments of new symbols loaded)."""
        positions = [*(view.positions or []), *(view.positions_after or [])]
        missing = {p.symbol for p in positions if p.is_open} - set(self.instruments)
        if missing:
            self.instruments.update(await self.venues[account].instruments(sorted(missing)))
        outcome = reconcile_account(
            account=account,
            monitors=self.monitors,
            view=view,
            instruments=self.instruments,
            params=self.params,
            tag=self.tag,
            new_monitor_id=lambda symbol: self._next_monitor_id(account, symbol),
            now=self.clock.now(),
            scope=scope,
            busy=busy,
            in_sync=self._in_sync.get(account),
        )
        self._in_sync[account] = outcome.in_sync  # a fact about those monitor objects, committed or not
        return outcome

    # --- events -------------------------------------------------------------------------------
    def _remember(self, account: str, exec_id: str) -> bool:
        """Note an exec id; False when it was seen before."""
        seen = self._seen[account]
        if exec_id in seen:
            return False
        seen[exec_id] = None
        while len(seen) > SEEN_EXEC_IDS:
            seen.popitem(last=False)
        return True

    def _advance_cursor(self, account: str, exe: Execution) -> None:
        if exe.ts > self._cursor.get(account, float("-inf")):
            self._cursor[account] = exe.ts

    def _monitor_for(self, account: str, symbol: str) -> Monitor | None:
        # by key (account:symbol:side), not by a scan: this runs for every event of every symbol
        return next(
            (m for side in Side if (m := self.monitors.get(monitor_key(account, symbol, side))) is not None),
            None,
        )

    async def _stream_loop(self, account: str) -> None:
        venue = self.venues[account]
        while True:
            try:
                await self._consume(account, venue.pushes())
            except VenueError as exc:
                message = f"{account}: stream failed ({exc})"
                self.alerts.raise_alert(Severity.WARNING, "stream_error", message, key=account)
            except Exception as exc:  # not gathered by run(): no supervisor would see it die
                log.exception("%s: stream loop failed", account)
                message = f"{account}: stream loop failed ({type(exc).__name__}: {exc}); reconnecting"
                self.alerts.raise_alert(Severity.WARNING, "stream_error", message, key=account)
            self._set_connected(account, False)
            await self.clock.sleep(STREAM_RECONNECT_S)

    async def _consume(self, account: str, pushes: AsyncIterator[Sequence[VenueEvent]]) -> None:
        """Hand the stream's events on until it ends (an error in it is raised here). A pump task
        reads the stream's pushes into a queue, so events that arrived together are handed on
        together.

        Each batch is handled in a task of its own: the next fill is decided while the previous
        one's orders still wait for the rate budget. The order per symbol holds: the batches take
        the account's lock in turn, and a symbol with orders in flight waits for their answers."""
        queue: _Pushes = asyncio.Queue()
        pump = asyncio.create_task(_pump(pushes, queue), name=f"tpsl-stream-pump-{account}")
        handling = self._handling[account]
        pending: deque[VenueEvent] = deque()  # a push's events not handed on yet (see _next_events)
        try:
            while True:
                batch, end = await self._next_events(queue, pending)
                if batch:
                    task = asyncio.create_task(
                        self._handle(account, batch), name=f"tpsl-stream-events-{account}"
                    )
                    handling.add(task)
                    task.add_done_callback(handling.discard)
                    await yield_to_loop()  # it takes its place in the lock's queue before the next batch
                if end is not None:
                    if end.error is not None:
                        raise end.error
                    return
        except asyncio.CancelledError:
            for task in handling:
                task.cancel()
            raise
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def _handle(self, account: str, events: Sequence[VenueEvent]) -> None:
        """Stream events in a task of their own (see :meth:`_consume`): a failure is logged and
        alerted, never lost with the task."""
        try:
            await self.dispatch_many(account, events)
        except Exception as exc:
            self._task_failed(account, "handling stream events", exc)

    def _task_failed(self, account: str, what: str, exc: Exception, key: str | None = None) -> None:
        """A stream-driven task failed: a venue error is alerted, anything else logged with its
        traceback too; the next event or check tries again."""
        if isinstance(exc, VenueError):
            message = f"{account}: {what} failed ({exc})"
        else:
            log.exception("%s: %s failed", account, what)
            message = f"{account}: {what} failed ({type(exc).__name__}: {exc})"
        self.alerts.raise_alert(Severity.WARNING, "stream_error", message, key=key or account)

    async def _next_events(
        self, queue: _Pushes, pending: deque[VenueEvent]
    ) -> tuple[list[VenueEvent], _StreamEnd | None]:
        """The next events to hand on: with ``api_batching``, every event that arrived together
        (queued now, or landing while the loop turns over once more) so their actions share batch
        requests; without it, one event at a time, as the original bot (the rest of its push waits
        in ``pending``). No event is held back for a timer: a fill that needs a stop moved is
        decided at once."""
        while not pending:
            item = await queue.get()
            if isinstance(item, _StreamEnd):
                return [], item
            pending.extend(item)
        if not self.batching:
            return [pending.popleft()], None
        batch = list(pending)
        pending.clear()
        turns = 0
        while True:
            if not queue.empty():
                item = queue.get_nowait()
                if isinstance(item, _StreamEnd):
                    return batch, item
                batch += item
                continue
            if turns >= GATHER_TURNS or not any(isinstance(e, Execution | Order) for e in batch):
                return batch, None
            turns += 1
            await yield_to_loop()  # events delivered in the same moment are on their way
            if queue.empty():
                return batch, None

    def add_observer(self, observer: EventObserver) -> None:
        """Also hand every venue event (streamed or polled fills) to ``observer`` (e.g. the cache).

        The manager is the one consumer of each venue's stream, so a Bybit venue with a single
        stream serves the dashboard too.
        """
        self._observers.append(observer)

    def _notify(self, account: str, event: VenueEvent) -> None:
        for observer in self._observers:
            observer(account, event)

    async def dispatch(self, account: str, event: VenueEvent) -> None:
        """Handle one venue event of ``account``."""
        await self.dispatch_many(account, [event])

    async def dispatch_many(self, account: str, events: Sequence[VenueEvent]) -> None:
        """Handle venue events of ``account``; fills and order updates that come together are
        decided together (see :meth:`_decide`), before the rest of the push is looked at.

        A push at a thousand symbols is a thousand tickers around a few fills: judged first (each
        price retiers its monitors and feeds the dashboard), they held a stop's move back by tens
        of milliseconds. So the decisions start at once, on their own symbols' prices in the push
        (noted first; the other prices are noted as the push is judged: a thousand dict writes
        before the first decision were 2 ms of a stop's move), and the push is judged while they
        wait for the disk and the venue, giving them the loop every :data:`JUDGED_PER_TURN`
        events. A deciding symbol's position and price updates are judged after its decisions, as
        every other symbol's at once; nor does a decision hold back other symbols' events: deciding
        waits for the answers to the orders it sends, and a wave of fills across many symbols was
        decided one symbol at a time, each new fill behind the previous one's take-profits queued at
        the venue's rate limit."""
        self._last_event[account] = self.clock.now()
        decisions = [event for event in events if isinstance(event, Execution | Order)]
        symbols = {event.symbol for event in decisions}
        if symbols:  # the deciding symbols' prices first; the push's others are noted as it is judged
            for event in events:
                if isinstance(event, Ticker) and event.symbol in symbols:
                    self._note_price(event)
        deciding = self.precedence.start_ahead(self._decide(account, decisions)) if decisions else None
        held: list[Position | Ticker] = []  # a deciding symbol's, judged once it is decided
        try:
            if deciding is not None:  # the decisions go first: judging waits for their first requests
                await self.precedence.turn()
            for judged, event in enumerate(events, start=1):
                if judged % JUDGED_PER_TURN == 0:
                    await self.precedence.turn()
                if isinstance(event, Ticker) and event.symbol not in symbols and not self._note_price(event):
                    continue  # late, or brought by the other account's stream already
                self._notify(account, event)
                if isinstance(event, Position | Ticker):
                    if event.symbol in symbols:
                        held.append(event)
                    elif isinstance(event, Position):
                        self._on_position(account, event)
                    else:
                        self._judge_price(event)  # decided in tasks of their own: see _judge_price
                elif isinstance(event, StreamStatus):
                    self._on_status(account, event)
        except asyncio.CancelledError:
            if deciding is not None:  # cancelled with the push: a stream's restart, the engine's stop
                deciding.cancel()
                await asyncio.gather(deciding, return_exceptions=True)
            raise
        except Exception:
            if deciding is not None:  # the fills are decided even when judging the push failed
                await deciding
            raise
        if deciding is not None:
            await deciding
        for event in held:
            if isinstance(event, Position):
                self._on_position(account, event)
            else:
                self._judge_price(event)

    def _on_status(self, account: str, status: StreamStatus) -> None:
        """The stream connected, dropped, or came back with a gap: catch up with a check if so."""
        self._set_connected(account, status.connected)
        if status.connected:
            self._subscribed[account].set()
        if status.gap or not status.connected:
            self._run_soon(self._job_names(account)[0])  # catch up on what the gap may have lost

    def _set_connected(self, account: str, connected: bool) -> None:
        if self._connected.get(account) != connected:
            self._connected[account] = connected
            self._retime(account)  # checks stretch while the stream is healthy, tighten without it
            if not connected:
                poll = self._fills_interval(account)
                message = f"{account}: private stream down; polling executions every {poll:g} s meanwhile"
                self.alerts.raise_alert(Severity.WARNING, "stream_down", message, key=account)
                return
            if account in self._ever_connected:
                message = f"{account}: private stream back"
                self.alerts.raise_alert(Severity.INFO, "stream_up", message, key=account)
            self._ever_connected.add(account)

    async def _decide(self, account: str, events: Sequence[Execution | Order]) -> None:
        """Fills and order updates, decided in rounds of at most one event per monitor (a monitor
        sees each event after the answers to the previous one); every round's decisions are
        committed together, so the actions of many monitors share batch requests.

        Each round is a task of its own, queued for the account's lock behind the previous one: a
        round decides its symbols that are settled as soon as the previous round sends its orders,
        and waits only for its own symbols' answers. Awaited one after the other, a stop-out whose
        fill came second in its push (behind the stop's order update) waited for every request of
        another position's take-profit in the first round."""
        rounds: list[list[Execution | Order]] = []
        pending = list(events)
        while pending:
            round_: list[Execution | Order] = []
            later: list[Execution | Order] = []
            symbols: set[str] = set()
            for event in pending:
                (later if event.symbol in symbols else round_).append(event)
                symbols.add(event.symbol)
            rounds.append(round_)
            pending = later
        if len(rounds) == 1:  # the usual push: no task needed
            await self._decide_round(account, rounds[0])
            return
        tasks: list[asyncio.Task[None]] = []
        for round_ in rounds:
            name = f"tpsl-round-{account}"
            tasks.append(self.precedence.start_ahead(self._decide_round(account, round_), name=name))
            await yield_to_loop()  # it takes its place in the lock's queue before the next round
        end_urgency()  # the push's, if any: each round goes first on its own now
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, BaseException):  # every round finished: the first failure is told
                raise outcome

    async def _decide_round(self, account: str, events: Sequence[Execution | Order]) -> None:
        """One round (at most one event per symbol): the symbols without orders in flight are
        decided at once, the others as soon as their answers are in."""
        async with self._locks[account]:
            waiting = list(events)
            busy = self._in_flight[account]
            while waiting:
                # (an event of a symbol with no monitor decides nothing: it need not wait)
                ready = [
                    e for e in waiting if not busy[e.symbol] or self._monitor_for(account, e.symbol) is None
                ]
                if not ready:
                    self._supersede(account, waiting)
                    with waiting_for_the_venue():
                        await self._settled[account].wait_for(functools.partial(_any_settled, busy, waiting))
                    continue
                waiting = [e for e in waiting if e not in ready]
                renew_urgency()  # a request of the previous step ended it: these go first too
                await self._decide_now(account, ready)

    def _supersede(self, account: str, waiting: Sequence[Execution | Order]) -> None:
        """New fills wait for their positions' orders in flight: withdraw those orders' requests that
        still wait for the rate budget and protect nothing, so the fills are decided now rather than
        behind them (at a thousand positions a take-profit's resize waited seconds in the amend
        window, and the position's next fill behind it). An order update waits as before: it is
        mostly the answer itself."""
        keys = {
            monitor.key
            for e in waiting
            if isinstance(e, Execution)
            and e.exec_id not in self._seen[account]
            and other_instance_tag(e.link_id, self.tag) is None  # another engine's: not our monitor's
            and (monitor := self._monitor_for(account, e.symbol)) is not None
        }
        if keys:
            self._senders[account].supersede(keys)

    async def _decide_now(self, account: str, events: Sequence[Execution | Order]) -> None:
        """Decide and commit ``events`` (their symbols settled); the caller holds the lock."""
        transitions: list[Transition] = []
        causes: dict[int, Execution] = {}  # id(transition) -> the fill it answers (reaction latency)
        foreign: list[Execution] = []
        for event in events:
            if isinstance(event, Execution):
                if not self._remember(account, event.exec_id):
                    continue
                self._advance_cursor(account, event)
                if other_instance_tag(event.link_id, self.tag) is not None:
                    foreign.append(event)  # another engine's fill: never applied to a monitor of ours
                    continue
            monitor = self._monitor_for(account, event.symbol)
            if monitor is None:
                continue  # not ours to decide; reconciliation adopts unknown positions
            instrument = self.instruments[monitor.symbol]
            if isinstance(event, Execution):
                transitions.append(apply_execution(monitor, event, instrument, self.params))
                causes[id(transitions[-1])] = event
            else:
                transitions.append(apply_order_update(monitor, event, instrument, self.params))
        self.alerts.publish_all(foreign_fill_alerts(account, foreign))
        if transitions:
            await self._commit_all(account, transitions, causes=causes)

    async def on_execution(self, account: str, exe: Execution) -> None:
        """A fill (from the stream or a poll)."""
        await self._decide_round(account, [exe])

    async def on_order(self, account: str, order: Order) -> None:
        """An order update (status and ids only)."""
        await self._decide_round(account, [order])

    def trigger_price(self, symbol: str) -> float | None:
        """The latest price the stops of ``symbol`` trigger on (``trading.trigger_by``), None before
        the first ticker."""
        ticker = self.tickers.get(symbol)
        return ticker.trigger_reference(self.params.trigger_by) if ticker is not None else None

    async def on_ticker(self, ticker: Ticker) -> None:
        """A price: remembered for the snapshot and validation; moves the stops that wait for the
        price (a breakeven not reached yet, the trailing stop when that is on), and returns once
        their orders are answered."""
        tasks = self._take_price(ticker)
        if tasks:
            await asyncio.gather(*tasks)

    def _take_price(self, ticker: Ticker) -> list[asyncio.Task[None]]:
        """:meth:`_note_price` then :meth:`_judge_price` (nothing for a late price)."""
        return self._judge_price(ticker) if self._note_price(ticker) else []

    def _note_price(self, ticker: Ticker) -> bool:
        """Remember a price for the decisions and the snapshot (a few dict writes: a push's prices
        are noted before its fills are decided); False when it is no news, which changes nothing:
        a ticker older than the one held (pushes are judged a slice at a time, so a later push may
        be noted first), or the very one held (each account's stream brings every price: judged
        and handed on twice, a thousand symbols' tickers were half the engine's work)."""
        held = self.tickers.get(ticker.symbol)
        if held is not None and (ticker.ts < held.ts or (ticker.ts == held.ts > 0 and ticker == held)):
            return False
        self.marks[ticker.symbol] = ticker.mark
        self._ticked_at[ticker.symbol] = self.clock.now()
        self.tickers[ticker.symbol] = ticker
        return True

    def _judge_price(self, ticker: Ticker) -> list[asyncio.Task[None]]:
        """Retier the monitors of a price noted (:meth:`_note_price`); returns the tasks that
        decide the monitors whose stops wait for the price (:meth:`_price_decision`), without
        waiting for them.

        A stream hands its next events on meanwhile: a decision waits for its account's lock and
        for the answers to its symbol's orders in flight, and awaited in the stream's dispatch it
        held back every event behind the ticker, the other account's too (the mirror's TP1 fill
        was decided only once main's breakeven and cancels were answered). A monitor has at most
        one such task waiting, and it reads the latest price when its turn comes."""
        price = ticker.trigger_reference(self.params.trigger_by)
        if price is None:
            return []
        self.volatility.observe(ticker.symbol, price, ticker.ts or self.clock.now())
        tasks: list[asyncio.Task[None]] = []
        # by key, not by a scan of every monitor: a thousand symbols tick many times a second
        candidates = (monitor_key(a, ticker.symbol, side) for a in self.venues for side in Side)
        for monitor in [m for key in candidates if (m := self.monitors.get(key)) is not None]:
            self._update_tier(monitor)
            if not wants_price(monitor, self.params):
                continue
            task = self._price_waiting.get(monitor.key)
            if task is None:
                task = asyncio.create_task(
                    self._price_decision(monitor.account, monitor.key), name=f"tpsl-price-{monitor.key}"
                )
                self._price_waiting[monitor.key] = task
                pricing = self._pricing[monitor.account]
                pricing.add(task)
                task.add_done_callback(pricing.discard)
            tasks.append(task)
        return tasks

    async def _price_decision(self, account: str, key: str) -> None:
        """Apply the latest price to monitor ``key`` once its symbol's orders are answered, and commit
        what it calls for. A failure is logged and alerted, never lost with the task."""
        mine = asyncio.current_task()
        try:
            async with self._locks[account]:
                monitor = self.monitors.get(key)
                if monitor is not None:
                    await self._settle(account, [monitor.symbol])
                self._release_price_slot(key, mine)  # a price from now on needs a task of its own
                current = self.monitors.get(key)
                price = None if current is None else self.trigger_price(current.symbol)
                if current is None or price is None:
                    return
                transition = apply_price(current, price, self.instruments[current.symbol], self.params)
                if transition.monitor is not current:
                    await self._commit(account, transition)
        except Exception as exc:
            self._task_failed(account, f"moving the stop of {key} with the price", exc, key)
        finally:
            self._release_price_slot(key, mine)

    def _release_price_slot(self, key: str, task: asyncio.Task[Any] | None) -> None:
        """``task`` no longer takes new prices of monitor ``key`` (if it still did)."""
        if self._price_waiting.get(key) is task:
            del self._price_waiting[key]

    def _on_position(self, account: str, position: Position) -> None:
        monitor = self._monitor_for(account, position.symbol)
        if monitor is None and position.is_open and self._ready.get(account):
            self._full_soon.add(account)
            self._run_soon(self._job_names(account)[1])  # adopt and protect it now, not at the next pass
            return
        size = position.size if monitor is not None and position.side is monitor.side else 0.0
        if monitor is not None and abs(size - monitor.size) > self.instruments[monitor.symbol].qty_step / 2:
            self._run_soon(self._job_names(account)[0])  # sizes disagree: the executions will tell why

    async def poll_executions(self, account: str) -> int:
        """Fetch fills since the cursor and handle the ones not seen yet; returns how many were new."""
        executions = await self.venues[account].executions(self._since(account))
        fresh = [e for e in executions if e.exec_id not in self._seen[account]]
        for exe in fresh:
            self._notify(account, exe)
        await self._decide(account, fresh)
        if fresh:
            await self._save_engine()
        return len(fresh)

    async def _sleep_or_wake(self, wake: asyncio.Event, seconds: float) -> bool:
        """Sleep on the clock until ``seconds`` pass or ``wake`` is set; True when woken.
        Both waiters are cancelled on the way out, so a cancelled loop leaves nothing pending."""
        waiter = asyncio.ensure_future(wake.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
        return wake.is_set()

    # --- committing decisions -----------------------------------------------------------------
    async def _persist_all(self, account: str, transitions: Sequence[Transition]) -> None:
        """:meth:`_persist` each of ``transitions`` (of different monitors of ``account``) at once:
        their durable saves go in one write and one fsync (the store commits every change pending
        together). One after the other, a round of a dozen fills made a dozen commits in turn, and
        the last fill's stop waited for all of them.

        A round that must reach the disk waits for it without the account's lock (the caller holds
        it, and holds it again on return), its symbols in flight meanwhile as while their orders
        are sent: no decision about them before they are durable, and the other symbols' fills
        are decided meanwhile and share the write. Held through the write, the lock queued a fill
        behind every order update's save at a thousand positions."""
        if not transitions:
            return
        if not any(map(_needs_disk, transitions)):
            await self._persist_each(transitions)  # returns at once: not worth a place in the lock's queue
            return
        symbols = [t.monitor.symbol for t in transitions]
        self._in_flight[account].update(symbols)
        try:
            await self._unlocked(account, self._persist_each(transitions))
        finally:
            self._release(account, symbols)

    async def _persist_each(self, transitions: Sequence[Transition]) -> None:
        """:meth:`_persist` every one of ``transitions`` in one write to the store: what must be
        durable is on disk after one commit (a task and a trip to the writer each was a second
        fsync for the saves that came after the first commit started, at a wave of fills)."""
        writes: list[Write] = []
        recorded: list[tuple[str, Trade]] = []
        for transition in transitions:
            trade = self._apply(transition, writes)
            if trade is not None:
                recorded.append((transition.monitor.key, trade))
        await self._write(writes)
        for key, trade in recorded:
            self.alerts.publish(closed_alert(key, trade))

    async def _persist(self, transition: Transition) -> None:
        await self._persist_each([transition])

    def _apply(self, transition: Transition, writes: list[Write]) -> Trade | None:
        """Take ``transition``'s monitor as the one in place (or gone, once closed) and add what
        saves it to ``writes``; the trade it recorded in the ledger, if any."""
        monitor = transition.monitor
        self._touch(monitor.account, (monitor.symbol,))  # the one place a monitor changes
        # The trade and the monitor's change are saved together: one durable write, not two in turn.
        recorded = None
        if transition.trade is not None:
            chunk = self.ledger.record(transition.trade)
            if chunk is not None:
                writes.append(Write(chunk[0], Reason.TRADE_RECORDED, chunk[1]))
                recorded = transition.trade
        if monitor.phase is Phase.CLOSED:
            current = self.monitors.get(monitor.key)
            if current is not None and current.monitor_id == monitor.monitor_id:
                del self.monitors[monitor.key]
                self._forget_checks(monitor.key)
                removed = state_keys.monitor_key(monitor.key)
                writes.append(Write(removed, Reason.MONITOR_REMOVED, remove=True))
        else:
            self.monitors[monitor.key] = monitor
            self._update_tier(monitor)  # a fill or a moved order changes what is near
            if transition.reason is not None or transition.durable:
                reason = transition.reason or Reason.MONITORING_UPDATE
                key = state_keys.monitor_key(monitor.key)
                writes.append(Write(key, reason, monitor.to_dict(), force=transition.durable))
        return recorded

    async def _commit(self, account: str, transition: Transition, *, opening: bool = False) -> list[Alert]:
        """Save a decision, send its actions, feed the answers back; bounded retries. Returns the
        alerts the decisions raised on the way (e.g. a refused entry, for :meth:`open_trade`).

        ``opening``: the decision opens a new trade; if its write-ahead did not reach the disk, the
        monitor is dropped and nothing is sent (no new exposure without durability).

        The caller holds the account's lock.
        """
        if opening:
            await self._persist(transition)
            if self._store_error is not None:
                return await self._drop_entry(transition.monitor)
        rest = Priority.OPEN if opening else Priority.TRADE
        return await self._commit_all(account, [transition], saved=opening, rest=rest)

    async def _commit_all(
        self,
        account: str,
        transitions: Sequence[Transition],
        *,
        saved: bool = False,
        causes: Mapping[int, Execution] | None = None,
        rest: Priority = Priority.TRADE,
    ) -> list[Alert]:
        """Commit decisions of different monitors together: save each (a critical save is on disk
        before anything is sent), send all their actions through the account's order sender (batch
        requests with ``api_batching``), hand each monitor the answers to its own actions, and go
        round again with what the answers call for; bounded retries. The caller holds the lock.
        ``saved``: the transitions are saved already (an opening's write-ahead). ``causes``: the fill
        each transition answers, by ``id(transition)``, timed into :attr:`reactions` when its first
        requests go to the sender. ``rest``: the rate-budget priority of the requests that protect
        nothing (``OPEN`` for a new trade's own orders)."""
        if not saved:  # every decision durable before any request, in one write
            await self._persist_all(account, transitions)
            saved = True
        groups: dict[str, list[Transition]] = {}
        for transition in transitions:
            groups.setdefault(transition.monitor.symbol, []).append(transition)
        if len(groups) > 1 and self._senders[account].batches:
            by_symbol = list(groups.values())
            chunks = batch_chunks([[a for t in group for a in t.actions] for group in by_symbol], CHUNK_ITEMS)
            if len(chunks) > 1:
                parts = [[t for i in chunk for t in by_symbol[i]] for chunk in chunks]
                return await self._commit_apart(account, parts, saved=saved, causes=causes, rest=rest)
        with self._senders[account].sending({t.monitor.key for t in transitions}):
            return await self._commit_rounds(account, transitions, saved=saved, causes=causes, rest=rest)

    async def _commit_apart(
        self,
        account: str,
        chunks: Sequence[Sequence[Transition]],
        *,
        saved: bool,
        causes: Mapping[int, Execution] | None,
        rest: Priority,
    ) -> list[Alert]:
        """:meth:`_commit_all` of a commit too large for one batch call per kind of action: each
        chunk of symbols (see :func:`batch_chunks`) is committed on its own, all at once (each takes
        the lock for its decisions and lets it go while its requests wait for the budget), and its
        symbols are free again as soon as its own answers are in. Sent together, every symbol of the
        commit stayed in flight until the last request was answered: a restart that had two thousand
        take-profits to place held every position's fills undecided for minutes, at the venue's 10
        orders a second. Symbol by symbol, a push's thirty stop moves went as thirty requests."""
        lock, busy = self._locks[account], self._in_flight[account]
        by_chunk = [list(dict.fromkeys(t.monitor.symbol for t in chunk)) for chunk in chunks]
        # in hand from now: no other decision about them before their own commit
        busy.update([symbol for symbols in by_chunk for symbol in symbols])

        async def one(chunk: Sequence[Transition], symbols: list[str]) -> list[Alert]:
            held = False
            try:
                async with lock:
                    held = True
                    try:
                        with self._senders[account].sending({t.monitor.key for t in chunk}):
                            return await self._commit_rounds(
                                account, chunk, saved=saved, causes=causes, rest=rest
                            )
                    finally:
                        self._release(account, symbols)
            finally:
                if not held:  # cancelled before its turn: nothing of it was sent
                    busy.subtract(symbols)
                    for symbol in symbols:
                        if busy[symbol] <= 0:
                            del busy[symbol]

        tasks = [
            asyncio.ensure_future(one(chunk, symbols))
            for chunk, symbols in zip(chunks, by_chunk, strict=True)
        ]

        async def every_group() -> list[list[Alert]]:
            try:
                return list(await asyncio.gather(*tasks))
            finally:  # one failed or the commit was cancelled: the others stop too, lock released
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        raised = await self._unlocked(account, every_group())
        return [alert for alerts in raised for alert in alerts]

    async def _commit_rounds(
        self,
        account: str,
        transitions: Sequence[Transition],
        *,
        saved: bool,
        causes: Mapping[int, Execution] | None,
        rest: Priority,
    ) -> list[Alert]:
        """:meth:`_commit_all`'s rounds: send, apply the answers, send what they call for."""
        raised: list[Alert] = []
        live = list(transitions)
        for _ in range(self.params.sl_retry_attempts + 4):
            if not saved:
                await self._persist_all(account, live)
            for transition in live:
                self.alerts.publish_all(transition.alerts)
                raised += transition.alerts
                if any(a.type == ALREADY_FLAT for a in transition.alerts):
                    self._run_soon(self._job_names(account)[0])  # the check confirms it is flat
            saved = False
            live = [t for t in live if t.actions]
            if not live:
                return raised
            # A rate-limited action waits for the reset inside the sender: not a refusal here.
            symbols = [t.monitor.symbol for t in live]
            if causes:  # the first requests answer fills: their reaction time ends here
                now = self.clock.now()
                for t in live:
                    if (fill := causes.get(id(t))) is not None:
                        self.reactions.observe(fill_kind(fill.link_id), now - fill.ts)
                causes = None
            actions = [a for t in live for a in t.actions]
            results = await self._send_unlocked(account, symbols, actions, rest)
            answered: list[Transition] = []
            for transition in live:
                mine, results = results[: len(transition.actions)], results[len(transition.actions) :]
                instrument = self.instruments[transition.monitor.symbol]
                answered.append(apply_results(transition.monitor, mine, instrument, self.params))
            live = answered
        await self._persist_all(account, live)
        for transition in live:
            self.alerts.publish_all(transition.alerts)
            raised += transition.alerts
            if transition.actions:
                message = f"{fmt_monitor(transition.monitor)}: orders still refused; reconciliation retries"
                self.alerts.raise_alert(
                    Severity.WARNING, "retries_exhausted", message, key=transition.monitor.key
                )
        return raised

    async def _send_unlocked(
        self, account: str, symbols: Sequence[str], actions: Sequence[Action], rest: Priority = Priority.TRADE
    ) -> list[ActionResult]:
        """Send a commit's ``actions`` without holding the account's lock (the caller holds it, and
        holds it again on return). The requests may wait seconds for the rate budget behind other
        orders; meanwhile fills of other symbols are decided and their stops go out (protective
        calls go first in the budget), instead of queueing behind this commit. ``symbols`` are
        marked in flight until the answers are back: no decision, check or reconciliation touches
        them before (see :meth:`_settle`)."""
        self._in_flight[account].update(symbols)
        try:
            return await self._unlocked(account, self._senders[account].send(actions, rest))
        finally:
            self._release(account, symbols)

    def _release(self, account: str, symbols: Collection[str]) -> None:
        """``symbols`` are no longer in flight (once per mark; the caller holds the lock): the
        decisions waiting for them may go."""
        busy = self._in_flight[account]
        busy.subtract(symbols)
        for symbol in [s for s, n in busy.items() if n <= 0]:
            del busy[symbol]
        self._touch(account, symbols)  # answered: a pass that read before must not judge them
        self._settled[account].notify_all()

    async def _unlocked(self, account: str, work: Awaitable[T]) -> T:
        """Await ``work`` without holding ``account``'s lock (the caller holds it, and holds it again
        on return, even when cancelled meanwhile: the cancellation is raised once it is back)."""
        lock = self._locks[account]
        lock.release()
        try:
            return await work
        finally:
            if await _reacquire(lock):
                raise asyncio.CancelledError

    async def _read(self, account: str, reads: Awaitable[T]) -> T:
        """Await a reconciliation's ``reads``, made without the lock, counted as in hand (:meth:`idle`)."""
        self._reading[account] += 1
        try:
            return await reads
        finally:
            self._reading[account] -= 1

    def _touch(self, account: str, symbols: Collection[str]) -> None:
        """Note that ``symbols``' monitors or orders changed now (see :meth:`_left_alone`)."""
        self._changes += 1
        changed = self._changed_at.setdefault(account, {})
        for symbol in symbols:
            changed[symbol] = self._changes

    def _left_alone(self, account: str, since: int) -> frozenset[str]:
        """The symbols a reconciliation that began reading at change ``since`` must leave alone: those
        with orders in flight, and those whose monitor or orders changed since (its reads may show
        the venue before that change: a fill decided meanwhile, an order placed or cancelled)."""
        changed = self._changed_at.get(account, {})
        return frozenset(self._in_flight[account]) | {s for s, n in changed.items() if n > since}

    async def _settle(self, account: str, symbols: Collection[str]) -> None:
        """Wait (holding the account's lock on return) until none of ``symbols`` has orders in
        flight, so a decision sees the answers to the previous one."""
        busy = self._in_flight[account]
        if any(busy[s] for s in symbols):
            await self._settled[account].wait_for(lambda: not any(busy[s] for s in symbols))

    async def _drop_entry(self, monitor: Monitor) -> list[Alert]:
        """Forget a monitor whose entry was never sent (the store could not write its creation)."""
        if self.monitors.get(monitor.key) is monitor:
            del self.monitors[monitor.key]
        await self._delete(state_keys.monitor_key(monitor.key), reason=Reason.MONITOR_REMOVED)
        message = (
            f"{fmt_monitor(monitor)}: the engine state cannot be written ({self._store_error}); "
            "entry not sent"
        )
        alert = self.alerts.raise_alert(Severity.WARNING, "entry_refused", message, key=monitor.key)
        return [alert]

    async def transact(self, key: str, decide: Callable[[Monitor, Instrument], Transition]) -> Monitor | None:
        """Apply an operator decision to one monitor under its account's lock; returns the monitor
        after it (None when it closed). Raises KeyError for an unknown key."""
        account = key.split(":", 1)[0]
        if account not in self._locks:
            raise KeyError(key)
        async with self._locks[account]:
            await self._settle(account, [self.monitors[key].symbol])
            monitor = self.monitors[key]
            await self._commit(account, decide(monitor, self.instruments[monitor.symbol]))
            return self.monitors.get(key)

    # --- trading ------------------------------------------------------------------------------
    async def set_paused(self, accounts: Sequence[str], paused: bool) -> None:
        """Pause or resume new entries on the given accounts (protection keeps running)."""
        for account in accounts:
            if account not in self.venues:
                raise KeyError(account)
            (self._paused.add if paused else self._paused.discard)(account)
        await self._save_engine(force=True)

    async def open_trade(self, request: TradeRequest) -> Monitor:
        """Validate, plan and open a trade; returns its monitor (the market entry has been sent).

        Raises :class:`TradeRejected` (nothing sent) for a bad request, while reconciling, while
        entries are paused, when the symbol already has a position or monitor, or when the venue
        refused the entry itself.
        """
        account = request.account
        if account not in self.venues:
            raise TradeRejected([f"unknown account {account!r}"])
        if not self._ready.get(account):
            raise TradeRejected(
                [f"{account} is reconciling with the venue; no new entries yet"], transient=True
            )
        if account in self._paused:
            raise TradeRejected([f"new entries are paused on {account}"])
        if self._store_error is not None:
            reason = f"the engine state cannot be written ({self._store_error}); no new entries until it can"
            raise TradeRejected([reason], transient=True)
        if account in self._hedge_mode:
            raise TradeRejected([self._hedge_mode[account]])
        venue = self.venues[account]
        taken = f"{request.symbol} already has a monitored position on {account}"
        if self._monitor_for(account, request.symbol) is not None:
            raise TradeRejected([taken])
        # The reads and the leverage call are made without the account's lock: a late answer must
        # never hold back the fills (and stops) of the account's other positions. What they found is
        # checked again under the lock before anything is sent.
        try:
            if request.symbol not in self.instruments:
                self.instruments.update(await venue.instruments([request.symbol]))
            tickers = await venue.tickers([request.symbol])
            wallet = await venue.wallet()
            held = await venue.positions(request.symbol)
        except VenueError as exc:
            if request.symbol not in self.instruments:
                raise TradeRejected([f"unknown symbol {request.symbol!r}"]) from None
            raise TradeRejected([f"cannot read the venue: {exc}"], transient=True) from None
        if any(p.is_open for p in held):
            raise TradeRejected([f"{request.symbol} already has an open position on {account}"])
        ticker = tickers.get(request.symbol)
        mark = ticker.last if ticker is not None else 0.0
        instrument = self.instruments.get(request.symbol)
        plan = plan_trade(request, instrument, mark, wallet.available, self.params)
        if instrument is None:  # plan_trade refuses an unknown symbol; this narrows the type
            raise RuntimeError(f"plan_trade accepted {request.symbol} with no instrument")
        try:
            await venue.set_leverage(request.symbol, request.leverage)
        except VenueError as exc:
            raise TradeRejected([f"leverage refused: {exc}"], transient=exc.retryable) from None
        async with self._locks[account]:
            await self._settle(account, [request.symbol])
            if self._monitor_for(account, request.symbol) is not None:  # opened meanwhile
                raise TradeRejected([taken])
            key = monitor_key(account, request.symbol, request.side)
            self._seq += 1
            monitor_id = new_monitor_id(key, self.clock.now(), self._seq)
            monitor = new_monitor(plan, monitor_id, self.tag, self.clock.now())
            raised = await self._commit(account, open_monitor(monitor, instrument, self.params), opening=True)
            current = self.monitors.get(key)
            if current is None or current.monitor_id != monitor.monitor_id:
                refused = [a.message for a in raised if a.type == "entry_refused"]
                raise TradeRejected(refused or ["the venue refused the entry"])
            for warning in plan.warnings:
                message = f"{fmt_monitor(current)}: {warning}"
                self.alerts.raise_alert(Severity.WARNING, "trade_warning", message, key=key)
        for listener in self._open_listeners:
            await listener(current, request)
        return current

    def add_open_listener(self, listener: OpenListener) -> None:
        """Call ``listener(monitor, request)`` after each trade this manager opened (its entry sent)."""
        self._open_listeners.append(listener)

    # --- snapshot -----------------------------------------------------------------------------
    def snapshot_streams(self) -> dict[str, StreamRow]:
        """Stream health per account (the snapshot's ``streams``): whether push streams are in use,
        connected, and how long ago the last event arrived."""
        now = self.clock.now()
        return {
            account: {
                "push": self.push_streams,
                "connected": self.push_streams and self._connected[account],
                "last_event_age_s": (
                    round(now - self._last_event[account], 3) if account in self._last_event else None
                ),
            }
            for account in self.venues
        }

    def snapshot_monitors(self) -> list[MonitorRow]:
        """The snapshot's ``monitors`` section (keys pinned in CONTRACTS.md), sorted by key.

        A monitor's row is the last build's, the same object, while it is the same monitor object
        with the same instrument and urgency tier: a monitor is never changed in place (a decision
        works on a copy and :meth:`_persist` puts the new object in), so only the keys set in
        :attr:`monitors` or :attr:`tiers` since the last build are looked at; the thousands of
        others are not even read. A new object equal to the last one (a reconciliation's copy)
        keeps the row too.
        """
        made_of = (self.monitors, self.tiers, self.instruments)
        feeds = self._monitor_feeds
        if feeds is None or not all(map(operator.is_, made_of, self._monitor_rows_of)):
            feeds = self._monitor_feeds = _feeds_of(*made_of)  # replaced (by a test): read whole
            self._monitor_rows_of = made_of
        changed: Iterable[str]
        if feeds is None or feeds[2]:  # plain dicts, or an instrument learnt: its tick rounds the entry
            if feeds is not None:
                for feed in feeds:
                    feed.clear()
            changed = {*self._monitor_rows.keys(), *self.monitors}
        else:
            changed = feeds[0].take() | feeds[1].take()
        return self._monitor_rows.rows(changed)

    def _monitor_inputs(self, key: str) -> _MonitorInputs | None:
        """What the monitor row of ``key`` is made of (None: no such monitor)."""
        monitor = self.monitors.get(key)
        if monitor is None:
            return None
        return monitor, self.instruments.get(monitor.symbol), self.tiers.get(key, Tier.ACTIVE)

    @staticmethod
    def _monitor_row(key: str, inputs: _MonitorInputs) -> MonitorRow:
        """One ``monitors[]`` row of ``key`` and its (monitor, instrument, tier), read-only where
        built: the snapshot keeps it without a copy."""
        m, instrument, tier = inputs
        avg = instrument.round_price(m.avg_entry) if instrument and m.entry_qty else m.avg_entry
        row: MonitorRow = {
            "key": key,
            "account": m.account,
            "symbol": m.symbol,
            "side": m.side.value,
            "approach": m.approach,
            "phase": m.phase.value,
            "avg_entry": avg,
            "size": m.size,
            "tps_filled": m.tps_filled(),
            "sl_price": m.sl_price,
            "breakeven": m.breakeven,
            "urgency": tier.value,
            "monitor_id": m.monitor_id,
            "close_intent": m.close_intent,
        }
        return read_only(row)

    def snapshot_ledger(self) -> LedgerSection:
        """The snapshot's ``ledger`` section."""
        return self.ledger.snapshot()
