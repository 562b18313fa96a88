"""What the widgets show, computed from a DashboardSnapshot by small pure functions.

The widgets stay thin: they receive rows of :class:`Cell` keyed by a stable row key and only diff and
paint them. Everything that decides what a cell says (badges, ladders, rates, derived statistics) lives
here and is tested without Textual. A cell carries a *tone* (the name of a theme variable such as
``pnl-positive``), never a colour, so every colour still comes from the active theme.

What a function reads is annotated with the snapshot's types (:mod:`engine.dashboard.schema`), so mypy
checks the view model against what the engine produces. Figures the engine already computes (the
ledger's counts and win rate) are read from the snapshot, never computed a second way here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Any, NamedTuple

from engine.core.clock import parse_iso_utc
from engine.core.numbers import fmt_key, fmt_number, fmt_usdt
from engine.dashboard.schema import (
    AlertRow,
    LedgerSection,
    MonitorRow,
    OrderRow,
    PersistenceRow,
    PositionRow,
    Snapshot,
    Totals,
    TradeRow,
)
from engine.trading.ledger import MAIN_ACCOUNT, tally

POSITIVE = "pnl-positive"
NEGATIVE = "pnl-negative"
MUTED = "muted-text"
ATTENTION = "state-attention"
HEALTHY = "state-running"
ALARM = "state-degraded"
MIRROR_ACCOUNT = "mirror"

# Bybit's per-account request budgets for linear (what the simulator emulates): 50 reads and 10 order
# actions a second. The header shows the calls of the last minute against that total.
READ_BUDGET_PER_S = 50
ORDER_BUDGET_PER_S = 10


class Cell(NamedTuple):
    """One table cell: its text, an optional tone (a theme variable name), and its alignment.

    A named tuple rather than a frozen dataclass: a refresh of a thousand positions builds and
    compares tens of thousands of cells, and a tuple is built and compared in C (several times
    faster than a dataclass's ``__init__`` and ``__eq__``)."""

    text: str
    tone: str | None = None
    right: bool = False


Row = tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its key, its header label and its priority (1: always shown; a higher number
    is dropped sooner when the table is too narrow for every column)."""

    key: str
    label: str
    priority: int = 1


# --- formatting --------------------------------------------------------------------------------


@lru_cache(maxsize=16_384)  # sizes, entries and stops repeat refresh after refresh, row after row
def fmt_num(value: float | None, step: float | None = None) -> str:
    """A price or size with thousands separators, or an em dash; with ``step`` (the instrument's
    tick size or qty step) at exactly its decimals, so a right-aligned column lines up."""
    if value is None:
        return "—"
    return fmt_number(value, step)


def fmt_money(value: float | None, signed: bool = False, short: bool = False) -> str:
    """USDT with two decimals (``+`` for gains when ``signed``); ``short``: from 10,000 on, three
    significant figures with k, M or B (``+12.3k``), for a column that has no room for every digit."""
    if value is None:
        return "—"
    sign = "+" if signed else ""
    if short and abs(value) >= 10_000:
        for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                scaled = value / scale
                digits = 2 if abs(scaled) < 10 else 1 if abs(scaled) < 100 else 0
                return f"{scaled:{sign},.{digits}f}{suffix}"
    return fmt_usdt(value, signed)


def fmt_pct(value: float | None, signed: bool = False) -> str:
    """A percentage with one decimal, or an em dash."""
    if value is None:
        return "—"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def fmt_age(seconds: float | None) -> str:
    """``42s``, ``3m``, ``2h`` — the age of something, or an em dash."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def sign_tone(value: float | None) -> str | None:
    """The PnL tone of a number: positive, negative, or none for zero / unknown."""
    if not value:
        return None
    return POSITIVE if value > 0 else NEGATIVE


def clock_text(iso_time: str, short: bool = False) -> str:
    """``2026-01-01 00:00:05 UTC`` from the snapshot's ISO time; ``short``: ``00:00:05 UTC`` (a
    narrow header drops the date first: the operator knows the day, not the second)."""
    moment = datetime.fromtimestamp(parse_iso_utc(iso_time), tz=UTC)
    return moment.strftime("%H:%M:%S UTC" if short else "%Y-%m-%d %H:%M:%S UTC")


HEADER_FULL_WIDTH = 110
"""Below this many columns the header uses its short forms (date, API rate and profile dropped to
what fits at 80 columns next to the badges, streams and the data age)."""
STALE_ALARM_FACTOR = 10.0
"""Venue data this many times older than ``ui.stale_after_s`` is shown as an alarm, not a warning."""


def header_is_short(width: int) -> bool:
    """Whether a header ``width`` columns wide uses the short forms."""
    return width < HEADER_FULL_WIDTH


def data_age_text(age_s: float | None) -> str:
    """``data 0.8s``, ``data 14s``, ``data 3m``: the age of the oldest venue data on screen."""
    if age_s is None:
        return "data —"
    return f"data {age_s:.1f}s" if age_s < 10 else f"data {fmt_age(age_s)}"


def data_age_tone(age_s: float | None, stale_after_s: float) -> str | None:
    """None while the data is fresh; attention (amber) past ``stale_after_s``; alarm (red) past
    :data:`STALE_ALARM_FACTOR` times that. Unknown (nothing shown yet) is not stale."""
    if age_s is None or age_s <= stale_after_s:
        return None
    return ALARM if age_s > stale_after_s * STALE_ALARM_FACTOR else ATTENTION


def api_text(per_min: float | None, budget_per_min: int, short: bool = False) -> str:
    """``API 121/min (2%)``, or only the share of the budget (``API 2%``) in a narrow header."""
    if per_min is None:
        return "API —" if short else "API —/min"
    share = f"{per_min / budget_per_min:.0%}"
    return f"API {share}" if short else f"API {per_min:,.0f}/min ({share})"


PROFILE_SHORT = {"OPTIMIZED": "OPT", "PENDING": "…"}
"""The profile badge in a narrow header: the normal state shortened; BASELINE and MIXED, which say
that something was rolled back, stay spelled out."""


# --- header ------------------------------------------------------------------------------------


def venue_badge(venue: str) -> tuple[str, str]:
    """The venue badge text and its tone; mainnet is spelled out so nobody mistakes it for a test."""
    label = (venue or "sim").upper()
    if label == "MAINNET":
        return " MAINNET · REAL MONEY ", "mainnet"
    return f" {label} ", "network"


def profile_badge(profile: Mapping[str, str]) -> str:
    """OPTIMIZED, BASELINE or MIXED over the toggles that exist (``pending`` ones do not count)."""
    states = {value for value in profile.values() if value in ("optimized", "baseline")}
    if not states:
        return "PENDING"
    if len(states) == 2:
        return "MIXED"
    return states.pop().upper()


def state_tone(engine_state: str) -> str:
    """The header tone of an engine state."""
    return {
        "running": "state-running",
        "degraded": "state-degraded",
    }.get(engine_state, "state-attention")


def api_budget_per_minute(accounts: int) -> int:
    """How many calls a minute the accounts may make in all (reads plus order actions)."""
    return max(1, accounts) * (READ_BUDGET_PER_S + ORDER_BUDGET_PER_S) * 60


def total_api_calls(api_calls: Mapping[str, Mapping[str, int]]) -> int:
    """Every call the snapshot counts, over accounts and endpoints."""
    return sum(sum(endpoints.values()) for endpoints in api_calls.values())


class RateTracker:
    """Per-minute rate of a growing counter, over a sliding window of (engine time, total) samples.

    Engine time, not wall time: on a frozen or virtual clock the rate is what the engine experienced.
    """

    def __init__(self, window_s: float = 60.0) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def add(self, at: float, total: float) -> None:
        if self._samples and at <= self._samples[-1][0]:
            # Time stood still (frozen clock) or went back: keep the newest total, not a new sample.
            self._samples[-1] = (self._samples[-1][0], total)
            return
        self._samples.append((at, total))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self._window_s:
            self._samples.popleft()

    def per_minute(self) -> float | None:
        """Increase per minute over the window, or None before two distinct moments were seen."""
        if len(self._samples) < 2:
            return None
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return max(0.0, v1 - v0) * 60.0 / (t1 - t0)


# --- positions and orders ----------------------------------------------------------------------


def tp_ladder(filled: int, total: int) -> str:
    """``●●○○``: filled take-profits, then the ones still working."""
    total = max(total, filled)
    return "●" * filled + "○" * (total - filled) if total else "—"


def position_key(row: PositionRow | OrderRow) -> str:
    """The monitor key ``account:symbol:side`` of a position or order row."""
    return f"{row['account']}:{row['symbol']}:{row['side']}"


def position_words(data: Snapshot | Mapping[str, Any], key: str) -> str:
    """A monitor key ``account:symbol:side`` in a trader's words, for a dialog, toast or log line:
    ``SELL 0.45 ETHUSDT on main`` (the size from the snapshot, at the symbol's qty step; left out
    when the position is not in it)."""
    account, symbol, side = [*key.split(":"), "", "", ""][:3]  # to find the row; fmt_key words it
    size = next(
        (
            p.get("size")
            for p in data.get("positions", ())
            if (p.get("account"), p.get("symbol"), p.get("side")) == (account, symbol, side)
        ),
        None,
    )
    return fmt_key(key, size, symbol_steps(data, symbol)[1])


# What a trader needs to act on a position stays at 80 columns; the rest goes first, urgency (the
# engine's check interval) before the entry price.
POSITION_COLUMNS: tuple[Column, ...] = (
    Column("account", "Acct", 2),
    Column("symbol", "Symbol"),
    Column("side", "Side"),
    Column("mirror", "Mirror", 2),  # the drift badge: after the essentials, before the figures
    Column("size", "Size"),
    Column("entry", "Entry", 4),
    Column("mark", "Mark", 2),
    Column("upnl", "uPnL"),
    Column("upnl_pct", "%", 3),
    Column("tps", "TPs", 3),
    Column("sl", "SL"),
    Column("phase", "Phase"),
    Column("urgency", "Urgency", 5),
)

PHASE_WORDS = {
    "BUILDING": "building",
    "MONITORING": "monitoring",
    "PROFIT_TAKING": "taking profit",
    "CLOSED": "closed",
}
"""A monitor's phase (:class:`~engine.core.models.Phase`) as the positions table spells it."""


def phase_text(phase: str | None) -> str:
    """The readable word for a monitor phase; ``unmonitored`` without one; an unknown phase with
    its underscores as spaces."""
    if not phase:
        return "unmonitored"
    return PHASE_WORDS.get(phase.upper(), phase.lower().replace("_", " "))


def symbol_steps(snapshot: Snapshot | Mapping[str, Any], symbol: str) -> tuple[float | None, float | None]:
    """The tick size and qty step of ``symbol`` from the snapshot's market rows (None when not
    reported), so every price of a symbol shows its tick's decimals and a column lines up."""
    row = snapshot.get("market", {}).get(symbol) or {}
    return row.get("tick_size"), row.get("qty_step")


def _open_tp_orders(orders: Iterable[OrderRow]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for order in orders:
        purpose = order.get("purpose") or ""
        if purpose.startswith("tp"):
            where = (order["account"], order["symbol"])
            counts[where] = counts.get(where, 0) + 1
    return counts


class RowSource:
    """A table's rows, made on demand: the row keys in display order, and a row's cells when asked
    for. A table of a thousand positions shows forty at a time; the table makes the rows it shows
    (:class:`~console.widgets.live_table.LiveTable`), so a refresh formats forty rows, not every
    row of the snapshot."""

    __slots__ = ("_make", "keys")

    def __init__(self, keys: Sequence[str], make: Callable[[str], Row]) -> None:
        self.keys = keys
        self._make = make

    @classmethod
    def of(cls, rows: Mapping[str, Row]) -> RowSource:
        """Rows already made."""
        return cls(tuple(rows), rows.__getitem__)

    def row(self, key: str) -> Row:
        """The cells of the row ``key`` (one of :attr:`keys`)."""
        return self._make(key)

    def rows(self) -> dict[str, Row]:
        """Every row, in display order."""
        return {key: self._make(key) for key in self.keys}


class _PositionContext:
    """What the rows of one snapshot's positions read besides the position itself; each part is
    worked out when the first row that needs it is made, once for all of them."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    @cached_property
    def monitors(self) -> dict[str, MonitorRow]:
        return {m["key"]: m for m in self.snapshot.get("monitors", ())}

    @cached_property
    def mirror(self) -> MirrorView:
        return mirror_view(self.snapshot)

    @cached_property
    def open_tps(self) -> dict[tuple[str, str], int]:
        return _open_tp_orders(self.snapshot.get("orders", ()))


def position_source(snapshot: Snapshot) -> RowSource:
    """The positions table: one row per open position, keyed by its monitor key; the mirror column
    holds :func:`mirror_badge` and a mirror account's rows have their account name in colour."""
    positions = {position_key(pos): pos for pos in snapshot.get("positions", ())}
    context = _PositionContext(snapshot)
    return RowSource(tuple(positions), lambda key: _position_row(key, positions[key], context))


def position_rows(snapshot: Snapshot) -> dict[str, Row]:
    """Every row of :func:`position_source`."""
    return position_source(snapshot).rows()


def _position_row(key: str, pos: PositionRow, context: _PositionContext) -> Row:
    monitor = context.monitors.get(key)
    notional = (pos.get("entry_price") or 0.0) * (pos.get("size") or 0.0)
    upnl = pos.get("upnl")
    pct = (upnl / notional * 100.0) if notional and upnl is not None else None
    filled = int(monitor.get("tps_filled") or 0) if monitor else 0
    tick, step = symbol_steps(context.snapshot, pos["symbol"])
    head, tail = _position_cells(
        pos["account"],
        pos["symbol"],
        pos.get("side"),
        pos.get("size"),
        pos.get("entry_price"),
        tick,
        step,
        monitor is not None,
        tp_ladder(filled, filled + context.open_tps.get((pos["account"], pos["symbol"]), 0)),
        monitor.get("sl_price") if monitor else None,
        bool(monitor and monitor.get("breakeven")),
        monitor.get("phase") if monitor else None,
        monitor.get("urgency") if monitor else None,
    )
    tone = sign_tone(upnl)
    moving = (
        Cell(fmt_num(pos.get("mark_price"), tick), right=True),
        Cell(fmt_money(upnl, signed=True), tone, right=True),
        Cell(fmt_pct(pct, signed=True), tone, right=True),
    )
    return (*head[:3], mirror_badge(context.mirror, key), *head[3:], *moving, *tail)


# A position's row is mostly what changes only with a fill (size, entry, stop, ladder, phase); the
# mark, uPnL and % move with every tick. The first part is memoised: with a thousand positions,
# building their cells again on every refresh was most of the view model's time.
@lru_cache(maxsize=8_192)
def _position_cells(
    account: str,
    symbol: str,
    side: str | None,
    size: float | None,
    entry: float | None,
    tick: float | None,
    step: float | None,
    monitored: bool,
    ladder: str,
    sl_price: float | None,
    breakeven: bool,
    phase: str | None,
    urgency: str | None,
) -> tuple[Row, Row]:
    """The cells of a position row before the mirror badge and the moving figures (account, symbol,
    side; size, entry) and after them (TPs, SL, phase, urgency)."""
    sl = fmt_num(sl_price, tick) if monitored else "—"
    if breakeven:
        sl += " BE"
    head = (
        Cell(account, "accent" if account == MIRROR_ACCOUNT else None),
        Cell(symbol),
        Cell(side or "—", POSITIVE if side == "Buy" else NEGATIVE),
        Cell(fmt_num(size, step), right=True),
        Cell(fmt_num(entry, tick), right=True),
    )
    tail = (
        Cell(ladder),
        Cell(sl, ATTENTION if breakeven else None, right=True),
        Cell(phase_text(phase), None if monitored else ATTENTION),
        Cell(str(urgency or "—") if monitored else "—"),
    )
    return head, tail


# --- mirror -------------------------------------------------------------------------------------

MIRROR_DRIFT_WORDS = {
    "excess": "excess",
    "deficit": "deficit",
    "missing_stop": "no SL",
    "orphan": "orphan",
    "breakeven": "BE",
    "entries": "entries",
}
"""The drift kinds as the positions table's badge spells them (a short column at 80x24)."""
_MIRROR_STATES = {
    "open": ("sync", HEALTHY),
    "opening": ("opening", MUTED),
    "closing": ("closing", MUTED),
    "closed": ("closed", MUTED),
    "closed_by_hand": ("by hand", ATTENTION),  # the operator closed the mirror leg: it no longer follows
}
_FINISHED = frozenset({"closed", "closed_by_hand"})


@dataclass(frozen=True, slots=True)
class MirrorLink:
    """One link of the snapshot's ``mirror.links[]``: a main trade and its mirror trade."""

    main_key: str
    mirror_key: str
    state: str  # opening | open | closing | skipped | closed | closed_by_hand
    drift: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class MirrorView:
    """What the console shows of the snapshot's ``mirror`` section (absent or disabled: off)."""

    enabled: bool = False
    desync: bool = False
    pending: int = 0
    links: Mapping[str, MirrorLink] = field(default_factory=lambda: MappingProxyType({}))
    """By monitor key: each link under its main key and under its mirror key."""


MIRROR_OFF = MirrorView()


def mirror_view(snapshot: Snapshot | Mapping[str, Any]) -> MirrorView:
    """The snapshot's ``mirror`` section, read defensively: it is absent when mirroring is off.

    When a key has several links (a closed one and the new trade's), the live one is shown.
    """
    section = snapshot.get("mirror")
    if not isinstance(section, Mapping) or not section.get("enabled"):
        return MIRROR_OFF
    queue = section.get("queue")
    queue = queue if isinstance(queue, Mapping) else {}
    links: dict[str, MirrorLink] = {}
    for row in section.get("links") or ():
        if not isinstance(row, Mapping):
            continue
        link = MirrorLink(
            main_key=str(row.get("main_key") or ""),
            mirror_key=str(row.get("mirror_key") or ""),
            state=str(row.get("state") or ""),
            drift=tuple(str(kind) for kind in row.get("drift") or ()),
            note=str(row.get("note") or ""),
        )
        for key in (link.main_key, link.mirror_key):
            shown = links.get(key)
            if key and (shown is None or shown.state in _FINISHED or link.state not in _FINISHED):
                links[key] = link
    return MirrorView(
        enabled=True,
        desync=bool(queue.get("desync")),
        pending=int(queue.get("pending") or 0),
        links=MappingProxyType(links),
    )


def mirror_badge(view: MirrorView, key: str) -> Cell:
    """The positions table's mirror column for the position of monitor ``key``.

    ``—`` when mirroring is off (or a mirror position no link explains); ``none`` for a main position
    with no mirror trade; ``skipped`` when its mirror was too small to open; ``DESYNC`` (red) while
    the mirror's action queue keeps failing; ``!<kind>`` (amber) for drift, naming the first kind and
    counting the others (``!excess+1``); else the link's state (``sync`` once both legs are open).
    """
    link = view.links.get(key) if view.enabled else None
    if link is None:
        main_row = not key.startswith(f"{MIRROR_ACCOUNT}:")
        return Cell("none" if view.enabled and main_row else "—", MUTED)
    if link.state == "skipped":
        return Cell("skipped", MUTED)
    if view.desync and link.state not in _FINISHED:
        return Cell("DESYNC", ALARM)
    if link.drift:
        first = MIRROR_DRIFT_WORDS.get(link.drift[0], link.drift[0])
        more = f"+{len(link.drift) - 1}" if len(link.drift) > 1 else ""
        return Cell(f"!{first}{more}", ATTENTION)
    text, tone = _MIRROR_STATES.get(link.state, (link.state or "—", MUTED))
    return Cell(text, tone)


def mirror_header(view: MirrorView) -> str | None:
    """The header's red badge while the mirror is out of sync (its actions keep failing), else None."""
    if not (view.enabled and view.desync):
        return None
    return f" MIRROR DESYNC · {view.pending} pending " if view.pending else " MIRROR DESYNC "


ORDER_COLUMNS: tuple[Column, ...] = (
    Column("account", "Acct", 2),
    Column("symbol", "Symbol"),
    Column("purpose", "Purpose"),
    Column("side", "Side"),
    Column("type", "Type", 3),
    Column("qty", "Qty"),
    Column("price", "Price/Trigger"),
    Column("status", "Status", 2),
)


def _order_key(order: OrderRow) -> str:
    if order.get("link_id"):
        return f"{order['account']}:{order['link_id']}"
    parts = (order["account"], order["symbol"], order["side"], order.get("order_type"), order.get("qty"))
    return ":".join(str(p) for p in (*parts, order.get("price"), order.get("trigger_price")))


def order_source(snapshot: Snapshot) -> RowSource:
    """The orders table, keyed by account and orderLinkId (or the order's terms when it has none)."""
    orders: dict[str, OrderRow] = {}
    for order in snapshot.get("orders", ()):
        key = base = _order_key(order)
        n = 1
        while key in orders:  # two foreign orders with identical terms
            n += 1
            key = f"{base}#{n}"
        orders[key] = order
    return RowSource(tuple(orders), lambda key: _order_row_of(orders[key], snapshot))


def order_rows(snapshot: Snapshot) -> dict[str, Row]:
    """Every row of :func:`order_source`."""
    return order_source(snapshot).rows()


def _order_row_of(order: OrderRow, snapshot: Snapshot) -> Row:
    tick, step = symbol_steps(snapshot, order["symbol"])
    return _order_row(
        order["account"],
        order["symbol"],
        order.get("purpose"),
        order["side"],
        order.get("order_type"),
        order.get("qty"),
        order.get("price"),
        order.get("trigger_price"),
        order.get("status"),
        tick,
        step,
    )


# Orders rarely change between two refreshes: with a thousand positions the table holds thousands of
# them, and formatting each one's cells again was most of a refresh's view-model time.
@lru_cache(maxsize=16_384)
def _order_row(
    account: str,
    symbol: str,
    purpose: str | None,
    side: str,
    order_type: str | None,
    qty: float | None,
    price: float | None,
    trigger: float | None,
    status: str | None,
    tick: float | None,
    step: float | None,
) -> Row:
    """One order's cells, from its terms (memoised: the same terms give the same row)."""
    shown = f"⚑ {fmt_num(trigger, tick)}" if trigger is not None else fmt_num(price, tick)
    return (
        Cell(account),
        Cell(symbol),
        Cell(purpose.upper() if purpose else "foreign", None if purpose else ATTENTION),
        Cell(side, POSITIVE if side == "Buy" else NEGATIVE),
        Cell(str(order_type or "—")),
        Cell(fmt_num(qty, step), right=True),
        Cell(shown, right=True),
        Cell(str(status or "—")),
    )


# --- accounts ----------------------------------------------------------------------------------

ACCOUNT_COLUMNS: tuple[Column, ...] = (
    Column("account", "Account"),
    Column("equity", "Equity"),
    Column("available", "Available", 2),
    Column("upnl", "uPnL"),
    Column("positions", "Pos", 3),
    Column("orders", "Ord", 3),
    Column("entries", "Entries"),
)


def account_rows(snapshot: Snapshot, paused: Collection[str] = ()) -> dict[str, Row]:
    """The accounts panel: main and mirror, each saying whether it takes new entries (``paused``
    names the accounts whose entries are paused; the engine reports it, the snapshot does not)."""
    rows: dict[str, Row] = {}
    for name, acct in snapshot.get("accounts", {}).items():
        rows[name] = (
            Cell(name, "accent" if name == MIRROR_ACCOUNT else None),
            Cell(fmt_money(acct.get("equity")), right=True),
            Cell(fmt_money(acct.get("available")), right=True),
            Cell(fmt_money(acct.get("upnl"), signed=True), sign_tone(acct.get("upnl")), right=True),
            Cell(str(acct.get("positions", 0)), right=True),
            Cell(str(acct.get("orders", 0)), right=True),
            _entries_cell(name, acct, paused),
        )
    return rows


def _entries_cell(name: str, acct: Mapping[str, Any], paused: Collection[str]) -> Cell:
    """``down`` while the account cannot be read (its figures are the last read), else on / paused."""
    if acct.get("unreachable"):
        return Cell("down", ALARM)
    return Cell("paused", ATTENTION) if name in paused else Cell("on")


@dataclass(frozen=True, slots=True)
class PauseChoice:
    """One line of the pause dialog: which accounts it switches, their state now, what it does."""

    label: str  # "main", "mirror" or "both"
    accounts: tuple[str, ...]
    now: str  # "paused", "taking entries", "mixed"
    pause: bool  # True: choosing it pauses these accounts; False: it resumes them


def pause_choices(paused: Mapping[str, bool]) -> list[PauseChoice]:
    """The pause dialog's lines from each account's state (account -> paused): one per account,
    then ``both`` when there are two. A line resumes what is paused; ``both`` pauses both unless
    both are paused already (a mixed state is made uniform the safe way: paused)."""

    def state(flags: Iterable[bool]) -> str:
        values = set(flags)
        return "mixed" if len(values) > 1 else ("paused" if values == {True} else "taking entries")

    choices = [PauseChoice(name, (name,), state([flag]), not flag) for name, flag in paused.items()]
    if len(paused) > 1:
        every = all(paused.values())
        choices.append(PauseChoice("both", tuple(paused), state(paused.values()), not every))
    return choices


# --- statistics --------------------------------------------------------------------------------


def _ratio_pct(value: float | None) -> float | None:
    """The snapshot's rates (hit rates, the win rate) are 0..1 ratios; the panels show percentages."""
    return None if value is None else value * 100.0


@dataclass(frozen=True, slots=True)
class TradeStats:
    """The statistics panel's figures: the ledger's totals, and what the panel derives from the trades."""

    trades: int
    wins: int
    losses: int
    win_rate: float | None  # percent
    pnl: float
    fees: float
    profit_factor: float | None
    max_drawdown: float
    streak: int  # > 0 wins in a row, < 0 losses in a row
    cumulative: tuple[float, ...]
    funding: float = 0.0  # paid (negative when received); already inside ``pnl``, shown apart


def ledger_stats(ledger: LedgerSection) -> TradeStats:
    """The statistics panel's figures from the snapshot's ``ledger`` section: its totals as the engine
    computed them (the same win rate as the snapshot's ``stats``), the rest from its trades."""
    return trade_stats(ledger.get("trades", ()), ledger.get("totals"))


def trade_stats(trades: Sequence[TradeRow], totals: Totals | None = None) -> TradeStats:
    """Win rate, profit factor, max drawdown of cumulative PnL, the current streak, the PnL curve.

    The counts, win rate, PnL and fees are ``totals`` (the ledger's, from the snapshot); without them
    they are computed from ``trades`` by the ledger's own definition
    (:func:`~engine.trading.ledger.tally`: a trade with a net PnL of exactly 0 is neither a win nor a
    loss, and it counts as a trade in the win rate). Trades are taken in closing order; a breakeven
    trade breaks a streak.
    """
    ordered = sorted(trades, key=lambda t: str(t.get("closed_at") or ""))
    pnls = [float(t.get("pnl") or 0.0) for t in ordered]
    if totals is None:
        fees = (float(t.get("fees") or 0.0) for t in ordered)
        totals = tally(pnls, fees, (float(t.get("funding") or 0.0) for t in ordered))
    gross_win = sum(p for p in pnls if p > 0)
    gross_loss = -sum(p for p in pnls if p < 0)
    cumulative: list[float] = []
    running = peak = drawdown = 0.0
    for p in pnls:
        running += p
        cumulative.append(round(running, 4))
        peak = max(peak, running)
        drawdown = max(drawdown, peak - running)
    streak = 0
    for p in reversed(pnls):
        if p == 0 or (streak > 0 and p < 0) or (streak < 0 and p > 0):
            break
        streak += 1 if p > 0 else -1
    return TradeStats(
        trades=totals["count"],
        wins=totals["wins"],
        losses=totals["losses"],
        win_rate=_ratio_pct(totals["win_rate"]),
        pnl=totals["pnl"],
        fees=totals["fees"],
        profit_factor=(gross_win / gross_loss) if gross_loss else None,
        max_drawdown=round(drawdown, 4),
        streak=streak,
        cumulative=tuple(cumulative),
        funding=totals.get("funding", 0.0),
    )


def streak_text(streak: int) -> str:
    """``3 wins``, ``1 loss``, ``2 losses`` or an em dash."""
    if not streak:
        return "—"
    n = abs(streak)
    word = "win" if streak > 0 else "loss"
    plural = "" if n == 1 else ("s" if streak > 0 else "es")
    return f"{n} {word}{plural}"


def stats_lines(
    stats: TradeStats, funding_line: bool | None = None, short: bool = False
) -> list[tuple[str, str, str | None]]:
    """(label, value, tone) lines of the statistics panel; the funding line only when ``funding_line``
    (by default: when this account paid or received some); ``short`` abbreviates large sums
    (:func:`fmt_money`)."""
    pf = "—" if stats.profit_factor is None else f"{stats.profit_factor:.2f}"
    # funding only once there is some: accounts that never held a position over a funding time
    # (and the simulator, which charges none) keep the panel as it was
    shown = bool(stats.funding) if funding_line is None else funding_line
    funding = [("Funding paid", fmt_money(stats.funding, short=short), None)] if shown else []
    drawdown = -stats.max_drawdown if stats.max_drawdown else 0.0
    return [
        # count and wins/losses on two lines: three accounts' figures side by side stay narrow
        ("Trades", str(stats.trades), None),
        ("Wins/losses", f"{stats.wins}/{stats.losses}", None),
        ("Win rate", fmt_pct(stats.win_rate), None),
        ("Total PnL", fmt_money(stats.pnl, signed=True, short=short), sign_tone(stats.pnl)),
        ("Fees", fmt_money(stats.fees, short=short), None),
        *funding,
        ("Profit factor", pf, None),
        ("Max drawdown", fmt_money(drawdown, short=short), None),
        ("Streak", streak_text(stats.streak), sign_tone(stats.streak)),
    ]


@dataclass(frozen=True, slots=True)
class StatsView:
    """The statistics panel: one column of figures per account and the combined one, and the curve of
    cumulative PnL over every account."""

    columns: tuple[tuple[str, TradeStats], ...]  # (heading, figures)
    cumulative: tuple[float, ...]
    chart_span: float = 1.0  # USDT the chart's full height stands for at least (pnl_chart_span)


PNL_CHART_EQUITY_SHARE = 0.01
"""The PnL chart's full height stands for at least this share of the equity (1%), so a trade of a few
cents draws as a small mark, not as a wall of blocks."""


def pnl_chart_span(snapshot: Snapshot | Mapping[str, Any]) -> float:
    """The smallest span of the PnL chart: 1% of the accounts' equity, rounded down to a power of
    ten so that the ticking equity does not repaint the chart (1 USDT with no equity known)."""
    equity = sum(float(a.get("equity") or 0.0) for a in snapshot.get("accounts", {}).values())
    share = equity * PNL_CHART_EQUITY_SHARE
    return 10.0 ** math.floor(math.log10(share)) if share >= 1.0 else 1.0


def stats_view(snapshot: Snapshot) -> StatsView:
    """Main, mirror (only when the snapshot has a mirror account) and all together.

    Each account's counts, win rate and PnL are the ledger's own (``ledger.by_account``, the same
    tally as the combined ``ledger.totals``); the rest is derived from that account's trades. When
    main is the only column and its figures are the combined ones, the panel shows one column.
    """
    ledger = snapshot.get("ledger")
    trades: Sequence[TradeRow] = ledger.get("trades", ()) if ledger else ()
    by_account: Mapping[str, Totals] = (ledger.get("by_account") if ledger else None) or {}
    combined = ledger_stats(ledger) if ledger else trade_stats(())
    names = [MAIN_ACCOUNT]
    if MIRROR_ACCOUNT in snapshot.get("accounts", {}):
        names.append(MIRROR_ACCOUNT)
    columns = [
        (name.capitalize(), trade_stats([t for t in trades if t["account"] == name], by_account.get(name)))
        for name in names
    ]
    if len(columns) == 1 and columns[0][1] == combined:
        return StatsView((("All", combined),), combined.cumulative, pnl_chart_span(snapshot))
    return StatsView((*columns, ("All", combined)), combined.cumulative, pnl_chart_span(snapshot))


StatsTable = tuple[tuple[str, ...], list[tuple[str, tuple[tuple[str, str | None], ...]]]]


def stats_table(view: StatsView, short: bool = False) -> StatsTable:
    """The panel's headings (none for a single column) and its (label, ((value, tone), ...)) lines:
    the lines of :func:`stats_lines` side by side, with the funding line when any column has one
    (``short``: large sums abbreviated, for a narrow panel)."""
    funding = any(stats.funding for _, stats in view.columns)
    per_column = [stats_lines(stats, funding, short) for _, stats in view.columns]
    headings = tuple(name for name, _ in view.columns) if len(view.columns) > 1 else ()
    lines = [
        (cells[0][0], tuple((value, tone) for _, value, tone in cells))
        for cells in zip(*per_column, strict=True)
    ]
    return headings, lines


# --- cache efficiency --------------------------------------------------------------------------

CACHE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("category", "Category"),
    ("ttl", "TTL"),
    ("hits", "Hits"),
    ("misses", "Miss"),
    ("hit_rate", "Hit%"),
    ("load", "Load ms"),
    ("age", "Age"),
)


def cache_metrics_on(snapshot: Snapshot) -> bool:
    """False when the cache_metrics toggle is rolled back to the baseline (nothing is counted)."""
    return snapshot.get("profile", {}).get("cache_metrics") != "baseline"


def cache_rows(snapshot: Snapshot) -> dict[str, Row]:
    """One row per cache category: TTL, hits, misses, hit rate, mean load time, oldest entry age."""
    rows: dict[str, Row] = {}
    metrics_on = cache_metrics_on(snapshot)
    for name, cat in snapshot.get("cache", {}).get("categories", {}).items():
        ttl = cat.get("ttl")
        age = cat.get("oldest_age_s")
        if metrics_on:
            hits, misses = str(cat.get("hits", 0)), str(cat.get("misses", 0))
            rate = fmt_pct(_ratio_pct(cat.get("hit_rate")))
            load = "—" if cat.get("mean_load_ms") is None else f"{cat['mean_load_ms']:.1f}"
        else:
            hits = misses = rate = load = "off"
        rows[name] = (
            Cell(name),
            Cell("—" if ttl is None else f"{ttl:g}s", right=True),
            Cell(hits, right=True),
            Cell(misses, right=True),
            Cell(rate, right=True),
            Cell(load, right=True),
            Cell(fmt_age(age), right=True),
        )
    return rows


CACHE_SUMMARY_LOWEST = 2
"""How many categories the cache headline names beside the overall rate (the table has them all)."""


def cache_summary(snapshot: Snapshot) -> str:
    """The line above the cache table: the overall hit rate and, beside it, the categories below it,
    lowest first (a 98% overall can hide positions and orders at 12-25%); or why there is none."""
    if not cache_metrics_on(snapshot):
        return "metrics off (rollback)"
    cache = snapshot.get("cache", {})
    if not cache.get("enabled"):
        return "cache not active"
    rated = [
        (rate, name)
        for name, cat in cache.get("categories", {}).items()
        if (rate := _ratio_pct(cat.get("hit_rate"))) is not None
    ]
    overall = _ratio_pct(cache.get("hit_rate"))
    headline = f"hit rate {fmt_pct(overall)} overall"
    lowest = [(rate, name) for rate, name in sorted(rated) if overall is None or rate < overall]
    if not lowest:
        return headline
    named = " · ".join(f"{name} {rate:.0f}%" for rate, name in lowest[:CACHE_SUMMARY_LOWEST])
    return f"{headline} · lowest: {named}"


CACHE_CHART_CAPTION = "overall hit rate, recent minutes · 0-100%"
"""What the cache panel's chart shows: its height is always 0 to 100%, so 97% and 99% look alike and
a fall to 50% is plain."""


def persistence_summary(persistence: PersistenceRow, now_iso: str) -> str:
    """``smart · 12 writes/h · 3 pending · flushed 20s ago`` from the snapshot's persistence section."""
    if not persistence:
        return "persistence: not reported"
    parts = [str(persistence.get("policy", "?"))]
    per_hour = persistence.get("writes_per_hour")
    if per_hour is not None:
        parts.append(f"{per_hour:,.0f} writes/h")
    parts.append(f"{persistence.get('pending', 0)} pending")
    last = persistence.get("last_flush")
    if last:
        try:  # the snapshot has every time as ISO 8601 UTC; show a malformed one as it came
            age = parse_iso_utc(now_iso) - parse_iso_utc(last)
            parts.append(f"flushed {fmt_age(max(0.0, age))} ago")
        except ValueError:
            parts.append(f"flushed {last}")
    else:
        parts.append("never flushed")
    return " · ".join(parts)


# --- alerts ------------------------------------------------------------------------------------

SEVERITY_TONES = {"critical": "state-degraded", "error": "state-degraded", "warning": ATTENTION}


def alert_lines(alerts: Iterable[AlertRow], limit: int = 50) -> list[tuple[str, str | None]]:
    """Alerts, latest first: (``HH:MM:SS SEVERITY type: message``, tone)."""
    ordered = sorted(alerts, key=lambda a: str(a.get("time") or ""), reverse=True)[:limit]
    lines = []
    for alert in ordered:
        when = str(alert.get("time") or "")[11:19]
        severity = str(alert.get("severity") or "info")
        text = f"{when} {severity.upper():<8} {alert.get('type', '')}: {alert.get('message', '')}"
        lines.append((text, SEVERITY_TONES.get(severity)))
    return lines


# --- alert notices -------------------------------------------------------------------------------

NOTICE_SEVERITIES = ("warning", "critical")
"""Alerts that become a toast (info ones stay in the alerts pane)."""
NOTICES_REMEMBERED = 500
"""Alerts remembered as already noticed (the snapshot carries the latest 50)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """A toast for one new alert: its text, Textual's severity and how long it stays."""

    text: str
    severity: str  # "warning" | "error"
    timeout: float
    critical: bool


class AlertNotices:
    """Which alerts of a snapshot are new to the operator: the toasts to show, and how many arrived
    while the alerts section was out of sight (the compact layout's tab count).

    The same warning (type and key) is toasted at most once per ``cooldown_s`` (``alerts.cooldown_s``,
    as for Telegram): a poll failing every 10 s during an outage is one toast, not a stream of them.
    The alerts pane still lists every one; a critical alert is always toasted."""

    def __init__(self, cooldown_s: float = 0.0) -> None:
        self.cooldown_s = cooldown_s
        self._seen: deque[tuple[str, str, str, str]] = deque(maxlen=NOTICES_REMEMBERED)
        self._seen_set: set[tuple[str, str, str, str]] = set()
        self._toasted: dict[tuple[str, str], float] = {}  # (type, key) -> when its last toast's alert came
        self.unseen = 0

    def take(self, alerts: Iterable[AlertRow], *, in_sight: bool) -> list[Notice]:
        """The toasts for the alerts not noticed before, oldest first; counts them as unseen unless
        the alerts section is ``in_sight``."""
        fresh = []
        for alert in sorted(alerts, key=lambda a: str(a.get("time") or "")):
            ident = (
                str(alert.get("time")),
                str(alert.get("type")),
                str(alert.get("key", "")),
                str(alert.get("message")),
            )
            if ident in self._seen_set:
                continue
            if len(self._seen) == self._seen.maxlen:
                self._seen_set.discard(self._seen[0])
            self._seen.append(ident)
            self._seen_set.add(ident)
            fresh.append(alert)
        self.unseen = 0 if in_sight else self.unseen + len(fresh)
        notices = []
        for alert in fresh:
            severity = str(alert.get("severity") or "info")
            if severity not in NOTICE_SEVERITIES:
                continue
            critical = severity == "critical"
            when = parse_iso_utc(str(alert.get("time"))) if alert.get("time") else 0.0
            family = (str(alert.get("type")), str(alert.get("key", "")))
            last = self._toasted.get(family)
            if not critical and last is not None and when - last < self.cooldown_s:
                continue
            self._toasted[family] = when
            text = f"{alert.get('type', '')}: {alert.get('message', '')}"
            notices.append(
                Notice(text, "error" if critical else "warning", 20.0 if critical else 8.0, critical)
            )
        return notices

    def seen_all(self) -> None:
        """The operator looked at the alerts section."""
        self.unseen = 0


def events_tab_label(unseen: int) -> str:
    """The compact layout's alerts tab: its name, and how many alerts arrived out of sight."""
    return f"Alerts + log ({unseen})" if unseen else "Alerts + log"
