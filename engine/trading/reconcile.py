"""Reconciliation: make the monitors agree with the venue before (and while) the engine acts.

:func:`reconcile_account` is pure: given the monitors of one account and a :class:`VenueView` (its
positions, open orders and recent executions), it returns the transitions that repair the monitors,
the orphan orders to cancel and the alerts to raise:

- executions we missed (the engine was down, a stream dropped) are replayed through the same fill
  logic as the live path, so positions that closed meanwhile close with their real exit;
- our open orders are matched to monitor slots by link id; slots whose order vanished are marked
  gone and re-placed (a stop-loss missing on the venue comes back in the same pass), once a second
  read of their symbol's orders, then of its executions, confirms it (a listing read page by page is
  not atomic: a stop re-placed on its word alone may be a second stop); our orders belonging to
  no live monitor, or to an older generation of a slot, are cancelled;
- another engine instance (our prefix, another tag: :func:`~engine.core.link_ids.other_instance_tag`)
  is never fought: its orders raise a critical alert and are never cancelled, its fills are applied
  to no monitor (:attr:`ReconcileOutcome.foreign_fills`, :func:`foreign_fill_alerts`), and a
  position on a symbol with its orders or fills in the view is reported, never adopted;
- (with positions) a size that disagrees with the monitor is first explained from executions: a
  positions read older than a fill in the view is read again (:attr:`ReconcileOutcome.recheck`), a
  size still unexplained gets its symbol's executions looked up further back than the cursor
  (:attr:`ReconcileOutcome.lookups`). Only then is an exit estimated (at the mark; the monitor and
  its trade are marked ``exit_estimated``, with an alert) or a size taken from the venue;
- (with positions) a position with no monitor is adopted only when the read it comes from is newer
  than every fill of its symbol in the view (a stop that filled after the read must not bring back
  the position it closed), and only once the fills that made it are known: a position last changed
  before the view's executions window (:attr:`VenueView.since`) gets its symbol's executions looked
  up first, for another engine's entry fills before its stop is listed tell nothing else. It is
  protected by a stop of its own or by a stop order of no engine: an order of ours belongs to a
  monitor (live, closing, or orphaned and cancelled by this very pass). A manual position (no other
  instance's order or fill on its symbol) is adopted as ever.
- another engine instance's open orders and positions are said in :attr:`ReconcileOutcome.alerts` by
  every pass that finds them; :attr:`ReconcileOutcome.foreign_seen` tells which ones a pass found and
  could judge, so that :func:`foreign_alerts_once` raises each once while it lasts.

The outcome lists the transitions in the order to carry them out: adoptions first (protect first),
then the known monitors (whose closing cancels their leftovers), and the orphan cancels last.

A decision that wants another read says so instead of guessing; :func:`read_view` makes the reads
(positions and orders first, executions last, so no fill is lost between two answers) and
:func:`complete_view` the reads a decision asked for; the caller decides again on the completed view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from engine.alerts.model import Alert, Severity
from engine.core.link_ids import other_instance_tag, parse_link_id
from engine.core.models import (
    CancelRequest,
    Execution,
    Instrument,
    ManagedOrder,
    Monitor,
    Order,
    Phase,
    Position,
    SlotStatus,
    Trade,
    monitor_key,
)
from engine.core.numbers import fmt_monitor, fmt_number
from engine.trading.monitor import (
    Transition,
    adopt_position,
    apply_fill,
    book_exit,
    close_trade,
    finish_transition,
    held_entry,
    observe_order,
    observed_slot,
    stronger,
)
from engine.trading.orders import CancelOrder
from engine.trading.params import TradingParams
from engine.trading.slots import is_entry, qty_tolerance, snap_qty
from engine.venue.base import Venue
from engine.venue.errors import HEDGE_MODE_FIX
from persistence.reasons import Reason

STREAM_GRACE_S = 5.0
"""A fill younger than this that reconciliation applies first is not counted as drift."""

ADOPTION_LOOKBACK_S = 60.0
"""How far before a position's last update (the venue's ``updatedTime``) its symbol's executions
are looked up before adopting it. The fill that last changed a position is at that update; another
engine places its stop seconds after its entry fill (its invariant 1), from then on its orders say
whose the position is, so a minute is ample for clocks and millisecond rounding."""

CONFIRM_BY_SYMBOL = 3
"""Up to this many symbols to confirm, their orders and fills are read symbol by symbol (a page
each); more, and the whole listing and every fill are read again instead (two reads in all)."""

READ_ROUNDS = 3
"""How many times one pass completes its view (:func:`complete_view`): positions read after the
executions, then the executions of the symbols still unexplained, and once more for what those
positions reflect; a decision never asks for the same read twice, so this bounds it."""


@dataclass(frozen=True, slots=True)
class VenueView:
    """What the venue says about one account. ``positions`` is None for an orders-only pass.

    ``positions_after`` is a positions read made after the executions read (asked for by
    :attr:`ReconcileOutcome.recheck`): when present, positions are judged on it. ``history`` holds
    per symbol the executions looked up from further back (:attr:`ReconcileOutcome.lookups`).
    ``since``: where the ``executions`` window starts (:func:`read_view`'s cursor); a fill before it
    is not in the view (minus infinity: the executions are every fill there is).
    ``rechecked_orders``: per symbol, its open orders read again (asked for by
    :attr:`ReconcileOutcome.confirm`), then ``rechecked_fills``, those symbols' executions since
    ``since`` read after them: an order of ours missing from ``open_orders`` is judged on these.
    """

    positions: list[Position] | None
    open_orders: list[Order]
    executions: list[Execution]
    marks: Mapping[str, float] = field(default_factory=dict)
    positions_after: list[Position] | None = None
    history: Mapping[str, list[Execution]] = field(default_factory=dict)
    since: float = float("-inf")
    rechecked_orders: Mapping[str, list[Order]] = field(default_factory=dict)
    rechecked_fills: list[Execution] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SyncMemo:
    """The monitors a pass found in sync: their order diff (:func:`finish_transition`) changed
    nothing and asked for nothing, with these params and each one's instrument.

    That diff is a function of the monitor, its instrument and the params only, and a monitor in the
    registry is replaced, never changed in place (every decision copies first), so the same object
    with the same instrument and params is still in sync: the next pass skips its diff unless the
    pass itself changes it. This is what makes a pass over a thousand positions cost what differs.
    """

    params: TradingParams
    monitors: Mapping[str, tuple[Monitor, Instrument]] = field(default_factory=dict)

    def holds(self, key: str, m: Monitor, instrument: Instrument) -> bool:
        """Whether ``m`` (this very object) was found in sync with ``instrument``."""
        entry = self.monitors.get(key)
        return entry is not None and entry[0] is m and (entry[1] is instrument or entry[1] == instrument)


ORDERS = "orders"
POSITION = "position"


class ForeignCondition(NamedTuple):
    """Something another engine instance holds on the account, raised once while it lasts: its open
    orders (``kind`` :data:`ORDERS`, ``name`` its tag) or a position (:data:`POSITION`, the symbol)."""

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class ForeignSeen:
    """Another engine instance as one pass saw it: each condition found, with the alert that says it
    (in :attr:`ReconcileOutcome.alerts` too), and what the pass could judge: the kinds it looked for
    over the whole account, except the positions of ``unsettled`` symbols (orders of ours in flight,
    a read still wanted). A condition raised before that the pass judged and did not find is over."""

    found: Mapping[ForeignCondition, Alert] = field(default_factory=dict)
    judged: frozenset[str] = frozenset()
    unsettled: frozenset[str] = frozenset()

    def over(self, condition: ForeignCondition) -> bool:
        """Whether ``condition`` (raised before) is over, as far as this pass can tell."""
        if condition in self.found or condition.kind not in self.judged:
            return False
        return condition.kind != POSITION or condition.name not in self.unsettled


@dataclass(slots=True)
class ReconcileOutcome:
    """Transitions in the order to commit them (adoptions first), orphan cancels (sent last),
    alerts, a drift count, and the reads the decision still wants.

    ``recheck``: symbols whose positions read may be older than a fill in the view; read positions
    again, after the executions, and decide again (their positions are left alone meanwhile).
    ``lookups``: symbol -> since, for sizes the executions do not explain; look up the symbol's
    executions from ``since`` (and its price) and decide again.
    ``in_sync``: the monitors found in sync, for the next pass (see :class:`SyncMemo`).
    ``foreign_fills``: fills of another engine instance in the view, applied to no monitor; the
    caller raises :func:`foreign_fill_alerts` for those it has not seen yet (a pass reads the last
    fills again, the stream had them first).
    ``foreign_seen``: another instance's open orders and positions this pass found (their alerts are
    in ``alerts``, every pass): the caller raises them once while they last (:func:`foreign_alerts_once`).
    ``confirm``: symbols with a live order of ours (unfilled) missing from the listing; read their
    open orders again, then their executions, and decide again (those monitors are left as they
    are meanwhile, so a pass that runs out of reads repairs nothing on a listing's word alone).
    """

    transitions: list[Transition] = field(default_factory=list)
    orphan_cancels: list[CancelOrder] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    repairs: int = 0
    applied_exec_ids: list[str] = field(default_factory=list)
    recheck: set[str] = field(default_factory=set)
    lookups: dict[str, float] = field(default_factory=dict)
    in_sync: SyncMemo | None = None
    foreign_fills: list[Execution] = field(default_factory=list)
    foreign_seen: ForeignSeen = field(default_factory=ForeignSeen)
    confirm: set[str] = field(default_factory=set)

    @property
    def wants_reads(self) -> bool:
        """Whether the decision asked for more reads (see :func:`complete_view`)."""
        return bool(self.recheck or self.lookups or self.confirm)


def _marks(positions: list[Position] | None) -> dict[str, float]:
    return {p.symbol: p.mark_price for p in positions or [] if p.is_open}


async def read_view(
    venue: Venue, since: float, *, with_positions: bool, symbol: str | None = None
) -> VenueView:
    """Read positions (optional), open orders, then executions since ``since`` (a fill that lands
    between the reads is then in the executions, never lost between two answers): of the whole
    account in one call each, or of one ``symbol`` (the baseline's per-position check)."""
    positions = await venue.positions(symbol) if with_positions else None
    orders = await venue.open_orders(symbol)
    executions = await venue.executions(since, symbol)
    return VenueView(positions, orders, executions, _marks(positions), since=since)


async def complete_view(venue: Venue, view: VenueView, outcome: ReconcileOutcome) -> VenueView:
    """Make the reads ``outcome`` asked for: positions again (read after the view's executions, so
    they reflect every fill in it), the open orders of the symbols to confirm then their executions,
    then the executions and prices of the symbols to look up (read after those positions, so they
    hold every fill the positions reflect)."""
    positions_after = view.positions_after
    marks = dict(view.marks)
    if outcome.recheck and positions_after is None:
        positions_after = await venue.positions()
        marks.update(_marks(positions_after))
    rechecked = dict(view.rechecked_orders)
    rechecked_fills = list(view.rechecked_fills)
    confirm = sorted(outcome.confirm - rechecked.keys())
    if len(confirm) > CONFIRM_BY_SYMBOL:
        # Many symbols (a restart after a long stop): the whole listing again, then every fill,
        # is two reads where one per symbol would be two a symbol, one after another.
        listing = await venue.open_orders()
        fills = await venue.executions(max(view.since, 0.0))
        wanted = set(confirm)
        for symbol in confirm:
            rechecked[symbol] = []
        for order in listing:
            if order.symbol in wanted:
                rechecked[order.symbol].append(order)
        rechecked_fills += [f for f in fills if f.symbol in wanted]
    else:
        for symbol in confirm:  # one symbol's orders: one page, not a long listing read page by page
            rechecked[symbol] = await venue.open_orders(symbol)
        for symbol in confirm:  # after the orders: a fill that took one of them away is in these
            rechecked_fills += await venue.executions(max(view.since, 0.0), symbol)
    history = dict(view.history)
    if outcome.lookups:
        for symbol, since in sorted(outcome.lookups.items()):
            history[symbol] = await venue.executions(since, symbol)
        tickers = await venue.tickers(sorted(outcome.lookups))
        marks.update({s: t.mark for s, t in tickers.items() if t.mark > 0})
    return replace(
        view,
        positions_after=positions_after,
        history=history,
        marks=marks,
        rechecked_orders=rechecked,
        rechecked_fills=rechecked_fills,
    )


def _is_stop_for(order: Order, position: Position) -> bool:
    """An order that protects ``position`` as a stop-loss would, and that no engine owns: an order
    with our tag is a monitor's, or an orphan this pass cancels; one with another instance's tag is
    that engine's (its symbol is not adopted at all). Neither is ever adopted."""
    return (
        parse_link_id(order.link_id) is None
        and order.symbol == position.symbol
        and position.side is not None
        and order.side is position.side.opposite
        and order.trigger_price is not None
        and (order.reduce_only or order.close_on_trigger)
        and (order.trigger_price - position.mark_price) * position.side.sign < 0
    )


def _other_instances(orders: Iterable[Order], fills: Iterable[Execution], tag: str) -> dict[str, set[str]]:
    """symbol -> the tags of the other engine instances whose open orders or fills are on it."""
    found: dict[str, set[str]] = {}
    rows: list[Order | Execution] = [*orders, *fills]
    for row in rows:
        other = other_instance_tag(row.link_id, tag)
        if other is not None:
            found.setdefault(row.symbol, set()).add(other)
    return found


def _foreign_position_alert(account: str, p: Position, tags: set[str]) -> Alert:
    """A position that is another engine instance's: left alone, said loudly (said by every
    whole-account pass while it lasts, as ``foreign_orders``; raised once: :func:`foreign_alerts_once`)."""
    side = p.side.value if p.side is not None else ""
    return Alert(
        Severity.CRITICAL,
        "foreign_position",
        f"{account}: the {side} {p.symbol} position ({fmt_number(p.size)}) has orders or fills of another "
        f"engine instance ({', '.join(sorted(tags))}): another process is trading this account; "
        "the position is not adopted nor protected by this engine, its orders are left alone",
        key=monitor_key(account, p.symbol, p.side) if p.side is not None else account,
    )


def foreign_fill_alerts(account: str, fills: Iterable[Execution]) -> list[Alert]:
    """One critical ``foreign_fills`` alert per symbol for fills of other engine instances (applied
    to no monitor of ours). Keyed ``account:symbol``: the bus's de-duplication is per (type, key).

    A monitor of ours on that symbol will see its size disagree with the venue's, which the next
    reconciliation takes as the venue's (``size_drift``): the operator must stop the other process."""
    by_symbol: dict[str, list[Execution]] = {}
    for exe in fills:
        by_symbol.setdefault(exe.symbol, []).append(exe)
    alerts = []
    for symbol, rows in sorted(by_symbol.items()):
        tags = sorted({link.tag for e in rows if (link := parse_link_id(e.link_id)) is not None})
        alerts.append(
            Alert(
                Severity.CRITICAL,
                "foreign_fills",
                f"{account}: {len(rows)} fill(s) on {symbol} from another engine instance "
                f"({', '.join(tags)}): another process is trading this account; not applied to this "
                "engine's monitors (a position of ours there would take the venue's size): stop it",
                key=f"{account}:{symbol}",
            )
        )
    return alerts


def foreign_alerts_once(
    account: str, outcome: ReconcileOutcome, raised: frozenset[ForeignCondition]
) -> tuple[list[Alert], frozenset[ForeignCondition]]:
    """The alerts of ``outcome`` to raise on ``account``, given the conditions of other engine
    instances ``raised`` there so far: each is raised once while it lasts (a pass says it every time,
    ``foreign_orders`` and ``foreign_position`` repeated by every pass), and said once more (INFO)
    when a pass finds it over, as ``hedge_mode``. Returns the alerts and the conditions now raised."""
    seen = outcome.foreign_seen
    said = list(seen.found.values())
    new = [alert for condition, alert in seen.found.items() if condition not in raised]
    alerts = [a for a in outcome.alerts if a not in said or a in new]
    over = sorted(c for c in raised if seen.over(c))
    alerts += [_foreign_over_alert(account, c) for c in over]
    return alerts, frozenset(c for c in raised if c not in over) | frozenset(seen.found)


def _foreign_over_alert(account: str, condition: ForeignCondition) -> Alert:
    """The all-clear of a condition raised by :func:`foreign_alerts_once`."""
    if condition.kind == ORDERS:
        message = f"{account}: no open order of another engine instance ({condition.name}) left"
        return Alert(Severity.INFO, "foreign_orders", message, key=account)
    message = f"{account}: no {condition.name} position of another engine instance left"
    return Alert(Severity.INFO, "foreign_position", message, key=f"{account}:{condition.name}")


def _adopt_order(m: Monitor, slot: str, order: Order, generation: int) -> None:
    """Take a newer-generation order of ours (placed just before a crash) into its slot."""
    previous = m.orders.get(slot)
    m.orders[slot] = ManagedOrder(
        slot=slot,
        link_id=order.link_id,
        generation=generation,
        side=order.side,
        order_type=order.order_type,
        qty=order.qty,
        price=order.price,
        trigger_price=order.trigger_price,
        reduce_only=order.reduce_only or order.close_on_trigger,
        status=SlotStatus.OPEN,
        order_id=order.order_id,
        filled_qty=order.filled_qty,
        prior_filled=previous.total_filled if previous is not None else 0.0,
    )


def reconcile_account(
    *,
    account: str,
    monitors: Mapping[str, Monitor],
    view: VenueView,
    instruments: Mapping[str, Instrument],
    params: TradingParams,
    tag: str,
    new_monitor_id: Callable[[str], str],
    now: float,
    scope: frozenset[str] | None = None,
    busy: frozenset[str] = frozenset(),
    in_sync: SyncMemo | None = None,
) -> ReconcileOutcome:
    """Repair one account's monitors against the venue (see the module doc).

    ``scope``: a monitor check verifies only the orders and positions of these symbols (the
    monitors due); fills in the view are still applied to every monitor (the execution cursor moves
    for all of them), while orders, positions and adoption outside the scope are left to the next
    pass that covers them. None is the whole account.

    ``busy``: symbols whose orders are on their way to the venue right now (sent, not answered):
    the view may show them half done, so they are left alone entirely (their fills, orders and
    positions) until a pass that finds them settled.

    ``in_sync``: the previous pass's :attr:`ReconcileOutcome.in_sync`; the order diff of a monitor
    this pass leaves as it is and that the memo holds is skipped (its outcome would be empty).

    Cost: a monitor is copied only when the pass is about to change it (copy-on-write), so a pass
    over an account that agrees with the venue copies nothing and, with the memo, diffs nothing.
    """
    out = ReconcileOutcome()

    def in_scope(symbol: str) -> bool:
        return (scope is None or symbol in scope) and symbol not in busy

    # 1. fills we have not seen yet (looked-up ones too: a monitor skips those it has counted)
    fills = {e.exec_id: e for rows in view.history.values() for e in rows}
    fills.update((e.exec_id, e) for e in view.executions)
    fills.update((e.exec_id, e) for e in view.rechecked_fills)
    filled = {e.symbol for e in fills.values()}
    # The monitors this pass may change: those in scope, and those a fill may reach (an order's
    # monitor has the order's symbol). They are copied only when about to change (``own``): copying
    # a thousand monitors per pass held the engine's loop for a good part of a second.
    ms = {
        k: m
        for k, m in monitors.items()
        if m.account == account
        and m.phase is not Phase.CLOSED
        and m.symbol in instruments
        and (in_scope(m.symbol) or (m.symbol in filled and m.symbol not in busy))
    }
    by_id = {m.monitor_id: k for k, m in ms.items()}  # -> key (its monitor: ``ms[key]``, copied or not)
    copied: set[str] = set()

    def own(m: Monitor) -> Monitor:
        """The pass's own copy of ``m``, to change (the input monitors are never changed)."""
        if m.key in copied:
            return m
        twin = m.copy()
        ms[m.key] = twin
        copied.add(m.key)
        return twin

    reasons: dict[str, Reason | None] = {k: None for k in ms}
    alerts: dict[str, list[Alert]] = {k: [] for k in ms}
    trades: dict[str, Trade] = {}
    durable: set[str] = set()

    def live_for(symbol: str) -> Monitor | None:
        return next((m for m in ms.values() if m.symbol == symbol and m.phase is not Phase.CLOSED), None)

    for exe in sorted(fills.values(), key=lambda e: e.ts):
        if exe.symbol in busy:
            continue  # decided when its symbol's answers are in (the stream, or the next pass)
        if other_instance_tag(exe.link_id, tag) is not None:
            out.foreign_fills.append(exe)  # another engine's position moved, not ours
            continue
        parsed = parse_link_id(exe.link_id)
        if parsed is None:
            target = live_for(exe.symbol)  # a manual fill: it moved the position of our monitor
        else:
            known = by_id.get(parsed.monitor_id)
            target = ms[known] if known is not None else None
        if target is None or exe.exec_id in target.exec_ids:
            continue
        if target.phase is Phase.CLOSED:
            # closed by an earlier fill of this pass (``ms`` holds no monitor closed before it)
            late = _late_fill(own(target), exe, instruments[target.symbol])
            if late is not None:
                alerts[target.key].append(late)
            continue
        target = own(target)
        reason, fill_alerts, trade = apply_fill(target, exe, instruments[target.symbol], params)
        if reason is None:
            continue
        out.applied_exec_ids.append(exe.exec_id)
        if now - exe.ts > STREAM_GRACE_S:
            out.repairs += 1  # a recent fill is most likely still on its way through the stream
        reasons[target.key] = stronger(reasons[target.key], reason)
        alerts[target.key] += fill_alerts
        if trade is not None:
            trades[target.key] = trade

    # 2. open orders against slots
    seen: set[tuple[str, str]] = set()
    foreign: list[Order] = []
    listed = {o.order_id for o in view.open_orders}
    again = [o for rows in view.rechecked_orders.values() for o in rows if o.order_id not in listed]
    for order in [*view.open_orders, *again]:
        parsed = parse_link_id(order.link_id)
        if parsed is not None and parsed.tag != tag:
            if scope is None or order.symbol in scope:  # (ours in flight there change nothing of its)
                foreign.append(order)
            continue
        if not in_scope(order.symbol):
            continue
        if parsed is not None:
            owner_key = by_id.get(parsed.monitor_id)
            owner = ms[owner_key] if owner_key is not None else None
            slot = owner.orders.get(parsed.slot) if owner is not None else None
            if owner is None or (slot is not None and parsed.generation < slot.generation):
                out.orphan_cancels.append(
                    CancelOrder("", None, CancelRequest(order.symbol, order_id=order.order_id))
                )
                continue
            if slot is None or parsed.generation > slot.generation:
                _adopt_order(own(owner), parsed.slot, order, parsed.generation)
                reasons[owner.key] = stronger(reasons[owner.key], Reason.ORDER_UPDATE)
            elif owner.tag != tag or _news(slot, order):  # (another tag: the slot is matched by id)
                owner = own(owner)
                changed, _, _ = observe_order(owner, order)
                changed |= _take_terms(owner.orders[parsed.slot], order)
                if changed:
                    reasons[owner.key] = stronger(reasons[owner.key], Reason.ORDER_UPDATE)
            seen.add((owner_key or owner.key, parsed.slot))
            continue
        for m in list(ms.values()):
            if m.symbol != order.symbol:
                continue
            if not any(mo.order_id and mo.order_id == order.order_id for mo in m.orders.values()):
                continue
            m = own(m)
            for slot_name, mo in m.orders.items():
                if mo.order_id and mo.order_id == order.order_id:
                    observe_order(m, order)
                    _take_terms(mo, order)
                    seen.add((m.key, slot_name))
    for key, m in list(ms.items()):
        if not in_scope(m.symbol):
            continue
        eps = qty_tolerance(instruments[m.symbol])
        unseen = [mo for slot_name, mo in m.orders.items() if mo.status.live and (key, slot_name) not in seen]
        if not unseen:
            continue  # every live slot is on the venue: nothing to mark
        if m.symbol not in view.rechecked_orders and any(mo.filled_qty < mo.qty - eps for mo in unseen):
            # Absent from one (paged, so not atomic) listing is no proof it is gone: a stop re-placed
            # on that alone may be a second stop. Its symbol's orders are read again first.
            out.confirm.add(m.symbol)
            continue
        m = own(m)
        for slot_name, mo in m.orders.items():
            if not mo.status.live or (m.key, slot_name) in seen:
                continue
            was = mo.status
            if mo.filled_qty >= mo.qty - eps:
                mo.status = SlotStatus.FILLED
            else:
                mo.status = SlotStatus.GONE
                if was is SlotStatus.PENDING and is_entry(slot_name):
                    # saved as about to be sent, then the engine stopped: the operator asked for it
                    alerts[m.key].append(
                        Alert(
                            Severity.WARNING,
                            "entry_not_sent",
                            f"{fmt_monitor(m)}: entry {slot_name} was not sent before the engine stopped; "
                            "it is not on the venue (open the trade again if still wanted)",
                            key=m.key,
                        )
                    )
                if was is SlotStatus.OPEN and not is_entry(slot_name):
                    out.repairs += 1
                    severity = Severity.WARNING if slot_name == "sl" else Severity.INFO
                    alerts[m.key].append(
                        Alert(
                            severity,
                            "order_missing",
                            f"{fmt_monitor(m)}: {slot_name.upper()} missing on the venue",
                            key=m.key,
                        )
                    )
            reasons[m.key] = stronger(reasons[m.key], Reason.ORDER_UPDATE)
    found_foreign: dict[ForeignCondition, Alert] = {}
    if foreign:
        tags = sorted({link.tag for o in foreign if (link := parse_link_id(o.link_id)) is not None})
        out.alerts.append(
            Alert(
                Severity.CRITICAL,
                "foreign_orders",
                f"{account}: {len(foreign)} open order(s) carry our link-id prefix from another engine "
                f"instance ({', '.join(tags)}): another process may be trading this account",
                key=account,
            )
        )
        found_foreign.update((ForeignCondition(ORDERS, t), out.alerts[-1]) for t in tags)
    judged = {ORDERS} if scope is None else set()
    unsettled = set(busy)

    # 3. positions: sizes the fills do not explain, then adoption
    adopted: list[Transition] = []
    if view.positions is not None:
        fresh = view.positions_after is not None  # read after the executions: reflects all of them
        current = view.positions_after if view.positions_after is not None else view.positions
        open_positions = {p.symbol: p for p in current if p.is_open and in_scope(p.symbol)}
        last_fill: dict[str, float] = {}
        for exe in fills.values():
            if not exe.is_funding:  # funding moves money, not the position
                last_fill[exe.symbol] = max(last_fill.get(exe.symbol, exe.ts), exe.ts)

        def stale(symbol: str, p: Position | None) -> bool:
            """The read may predate a fill of the view (for a flat read, any fill of the symbol)."""
            if fresh or symbol not in last_fill:
                return False
            return p is None or last_fill[symbol] >= p.ts

        for m in list(ms.values()):
            if m.phase is Phase.CLOSED or not in_scope(m.symbol):
                continue
            instrument = instruments[m.symbol]
            eps = qty_tolerance(instrument)
            p = open_positions.get(m.symbol)
            venue_size = p.size if p is not None and p.side is m.side else 0.0
            if abs(venue_size - m.size) <= eps:
                continue
            if stale(m.symbol, p):
                out.recheck.add(m.symbol)  # fills raced the read: judge on a read made after them
                continue
            if m.symbol not in view.history:
                out.lookups[m.symbol] = min(out.lookups.get(m.symbol, m.created_at), m.created_at)
                continue  # a fill older than the cursor may explain it
            m = own(m)
            out.repairs += 1
            mark = view.marks.get(m.symbol) or (p.mark_price if p is not None else 0.0)
            if venue_size <= eps and m.size > eps:
                price = _synthetic_exit(m, m.size, mark, instrument)
                trades[m.key] = close_trade(m, "manual", now, instrument)
                reasons[m.key] = Reason.POSITION_CLOSED
                alerts[m.key].append(
                    Alert(
                        Severity.WARNING,
                        "closed_unexplained",
                        f"{fmt_monitor(m)}: flat on the venue and no execution explains it; "
                        + _estimate_note(price, mark),
                        key=m.key,
                    )
                )
                continue
            if venue_size > m.size:
                extra = venue_size - m.size
                entry = p.entry_price if p is not None else mark
                m.entry_qty = instrument.round_qty(m.entry_qty + extra, "nearest")
                m.entry_cost += entry * extra
                m.size = venue_size
                if m.opened_at is None:
                    m.opened_at = now
                note = ""
            else:
                price = _synthetic_exit(m, m.size - venue_size, mark, instrument)
                note = "; the missing exit " + _estimate_note(price, mark)
            durable.add(m.key)
            reasons[m.key] = stronger(reasons[m.key], Reason.POSITION_UPDATE)
            alerts[m.key].append(
                Alert(
                    Severity.WARNING,
                    "size_drift",
                    f"{fmt_monitor(m)}: size corrected to the venue's {fmt_number(venue_size)}{note}",
                    key=m.key,
                )
            )
        covered = {m.symbol for m in ms.values() if m.phase is not Phase.CLOSED}
        unmonitored = open_positions.values() if scope is None else ()  # adopted by whole-account passes
        others = _other_instances(view.open_orders, fills.values(), tag) if unmonitored else {}
        for p in unmonitored:
            if p.symbol in covered or p.symbol not in instruments or p.side is None:
                continue
            if p.symbol in others:
                out.alerts.append(_foreign_position_alert(account, p, others[p.symbol]))
                found_foreign[ForeignCondition(POSITION, p.symbol)] = out.alerts[-1]
                continue  # another engine's, protected by its own stop: adopting it would fight it
            if stale(p.symbol, p):
                out.recheck.add(p.symbol)  # a newer fill may have closed it (e.g. a stop after the read)
                unsettled.add(p.symbol)
                continue
            if p.ts < view.since and p.symbol not in view.history:
                # its fills are older than the view: another engine's entry (its stop not placed yet)
                # would be taken for a manual position; their link ids tell, so look them up first
                anchor = p.ts if p.ts > 0 else now  # (no update time: the lookback from now)
                out.lookups[p.symbol] = anchor - ADOPTION_LOOKBACK_S
                unsettled.add(p.symbol)
                continue
            stop = next((o for o in view.open_orders if _is_stop_for(o, p) and o.qty > 0), None)
            out.repairs += 1
            adopted.append(
                adopt_position(
                    monitor_id=new_monitor_id(p.symbol),
                    tag=tag,
                    position=p,
                    stop_order=stop,
                    mark=view.marks.get(p.symbol, p.mark_price),
                    now=now,
                    instrument=instruments[p.symbol],
                    params=params,
                )
            )
        if scope is None:
            judged.add(POSITION)  # (an unsettled symbol's position excepted)
    out.foreign_seen = ForeignSeen(found_foreign, frozenset(judged), frozenset(unsettled))

    # 4. give up-counts restart (the periodic pass is the retry), then derive the order actions;
    # adoptions go first: a new position's stop is on the venue before a closed monitor on the
    # same symbol cancels its leftovers (its old stop among them)
    out.transitions += adopted
    memo = in_sync if in_sync is not None and in_sync.params == params else None
    found = dict(memo.monitors) if memo is not None else {}
    for key, m in list(ms.items()):
        if not in_scope(m.symbol) and reasons[key] is None and key not in trades:
            continue  # outside the check and no fill of its own: nothing was decided for it
        instrument = instruments[m.symbol]
        untouched = key not in copied
        if untouched and memo is not None and memo.holds(key, m, instrument):
            out.transitions.append(Transition(m))  # what its diff gives: nothing (see SyncMemo)
            continue
        mine = own(m)
        for mo in mine.orders.values():
            mo.failures = 0
        t = finish_transition(mine, instrument, params, reasons[key], alerts[key], trades.get(key))
        t.durable = key in durable
        out.transitions.append(t)
        in_sync_now = untouched and not (t.actions or t.reason or t.trade or t.alerts) and mine == m
        if in_sync_now:
            found[key] = (m, instrument)
        else:
            found.pop(key, None)
    # (entries of monitors replaced since are dropped: they would never match again)
    out.in_sync = SyncMemo(params, {k: e for k, e in found.items() if monitors.get(k) is e[0]})
    return out


def _late_fill(m: Monitor, exe: Execution, instrument: Instrument) -> Alert | None:
    """A fill of ``m``'s own order after an earlier fill of the same pass closed ``m``: an order the
    engine would have cancelled at the close, had it seen the close (it was down, or the account
    unreachable) — e.g. an entry that filled after the TPs had flattened the trade.

    The fill is not booked to ``m``'s trade, which ended with the close; the position it leaves is
    adopted by the pass. Its slot is marked as sent (filled), so a slot saved ``PENDING`` before the
    order went out is not reported as never sent. Returns the alert that says so (None when the fill
    is of no slot of ``m``)."""
    parsed = parse_link_id(exe.link_id)
    slot = m.orders.get(parsed.slot) if parsed is not None and parsed.monitor_id == m.monitor_id else None
    if parsed is None or slot is None:
        return None
    if parsed.generation == slot.generation:
        slot.filled_qty = snap_qty(slot.filled_qty + exe.qty, instrument)
        if slot.filled_qty >= slot.qty - qty_tolerance(instrument):
            slot.status = SlotStatus.FILLED
        elif slot.status is SlotStatus.PENDING:
            slot.status = SlotStatus.OPEN  # it reached the venue: what is left of it is live or gone
    return Alert(
        Severity.WARNING,
        "late_fill",
        f"{fmt_monitor(m)}: {parsed.slot} filled {fmt_number(exe.qty)} at {fmt_number(exe.price)} after "
        "the trade had closed (the close was not seen in time to cancel it); not booked to that trade, "
        "the position it leaves is adopted",
        key=m.key,
    )


def _news(slot: ManagedOrder, order: Order) -> bool:
    """Whether the venue's view of a slot's current order changes the slot (:func:`observe_order`
    then :func:`_take_terms`), told before copying its monitor."""
    terms = (order.qty, order.price, order.trigger_price)
    held = (slot.qty, slot.price, slot.trigger_price)
    if slot.status is SlotStatus.OPEN and order.status.is_open:  # the usual case, told at once
        return order.order_id not in ("", slot.order_id) or terms != held
    status, order_id = observed_slot(slot, order)
    if (status, order_id) != (slot.status, slot.order_id):
        return True
    return order.status.is_open and status is SlotStatus.OPEN and terms != held


def _take_terms(slot: ManagedOrder, order: Order) -> bool:
    """Believe the venue about an open order's qty and prices (an amend may have been lost in a
    crash); the next sync amends it back to what the monitor wants. True when anything changed."""
    if not order.status.is_open or slot.status is not SlotStatus.OPEN:
        return False
    terms = (order.qty, order.price, order.trigger_price)
    changed = terms != (slot.qty, slot.price, slot.trigger_price)
    slot.qty, slot.price, slot.trigger_price = terms
    return changed


def _synthetic_exit(m: Monitor, qty: float, mark: float, instrument: Instrument) -> float:
    """Book an exit no execution shows, at ``mark`` (at the held entry when no price is known), no
    fee known; the monitor (and so its trade) is marked ``exit_estimated``. Returns the price used."""
    price = mark if mark > 0 else held_entry(m)
    book_exit(m, qty, price, instrument)
    m.exit_estimated = True
    return price


def _estimate_note(price: float, mark: float) -> str:
    """How an estimated exit was priced, for the alert (the ledger's PnL is then no venue figure)."""
    if mark > 0:
        return f"exit estimated at the mark {fmt_number(price)} (trade marked exit_estimated)"
    at = fmt_number(price)
    return f"exit price unknown, booked at the entry {at} (trade marked exit_estimated, PnL unknown)"


def hedge_mode_alert(account: str, positions: Sequence[Position]) -> Alert | None:
    """The refusal of an account in hedge mode (positions by ``positionIdx`` 1 / 2), or None.

    The engine's orders are one-way (``positionIdx`` 0), which Bybit refuses on such an account, so it
    can neither protect nor adopt those positions: it leaves them and their orders on the exchange
    alone (an adoption would only pile refused stops and emergency closes on them), takes no new
    entry there, and says so. The empty row Bybit lists for the unused side is never a position.
    """
    hedged = sorted(
        (p for p in positions if p.hedge_mode and p.is_open and p.side is not None),
        key=lambda p: (p.symbol, p.position_idx),
    )
    if not hedged:
        return None
    held = ", ".join(f"{p.symbol} {p.side.value if p.side else ''} {fmt_number(p.size)}" for p in hedged)
    return Alert(
        Severity.CRITICAL,
        "hedge_mode",
        f"{account}: the account is in hedge mode; the engine does not trade it: no new entries, and "
        f"its {len(hedged)} position(s) ({held}) are NOT protected by the engine, their orders on the "
        f"exchange are left alone. Fix: {HEDGE_MODE_FIX} (Bybit allows it once the symbol has no "
        "position or order).",
        key=account,
    )
