#!/usr/bin/env python3
"""A high-volatility hour with tight TPs and ``kill -9`` restarts, checked from the exchange's side.

Issue 11 asks for this evidence: run the engine as a user would (``opconsole run --headless --clock
virtual``) on the embedded simulator with a volatile market (``sim.volatility`` 4, realistic latency),
open a seeded plan of tight-TP trades (conservative 0.2/0.4/0.6/0.8 %, fast 0.4 %, SL -0.5 %) on
several symbols over the hour, SIGKILL the process at seeded random wall-clock moments and restart it
on the same state directory, then check what the *exchange* saw against what the engine recorded:

* **trades**: the round trips of each account+symbol in the simulated exchange's executions (position
  from 0 back to 0, arithmetic of :func:`engine.sim.ledger.apply_fill`: realised PnL minus every fee,
  minus funding) against the engine's ledger; both ways, so a missing and an invented trade both show;
* **PnL**: how many ledger PnLs equal the exchange's realised PnL to 0.01 USDT, with the mismatches;
* **emergency closes**: ledger trades with reason ``emergency`` (and the critical alerts of the logs);
* **positions without a stop**: before every restart and at the end, every open position on the
  exchange must have a reduce-only conditional order of ours on the closing side covering its whole
  size. At a kill moment the window between an entry fill and its stop is allowed (invariant 1), so
  those gaps are reported apart; after a clean exit, none is allowed;
* **phantom trades**: ledger trades (reason ``manual``, or exit = entry with PnL 0) that match no round
  trip of the exchange.

Each process start is a *segment*. The scenario's ``at`` counts from each start (after the engine is
ready), and the virtual clock resumes where the simulated market was saved
(:func:`engine.runtime.assembly.make_clock`), so a segment is given only the planned trades not opened
yet, at their time relative to its start; what opened is read from the engine's state (monitors and
ledger), a refusal from the segment's log. The hour ends with a clean segment, then clean *drain*
segments (no new trade) let open trades close, each ending in a clean exit.

A kill comes at a seeded random moment of the remaining time: when the process is seen (from the
market's saved time) past it, with a wall-clock backstop at the speed measured so far. Every other
kill then waits for the exchange's next acknowledged change (an order action or a fill, journaled
before it is acknowledged), so some kills land right after an entry fill, a TP fill or a stop move,
the moments that matter.

Usage::

    .venv/bin/python scripts/volatile_hour.py [--minutes 60] [--seed 7] [--kills 6] [--trades 24]
        [--mirror] [--json]

Exit code 0 when every check holds, 1 otherwise (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import tomli_w

from engine.core.clock import VirtualClock, iso_utc
from engine.core.errors import BadInput
from engine.core.link_ids import parse_link_id
from engine.core.models import Execution, Monitor, Order, Phase, Position, Side, Trade
from engine.core.settings import Settings, load_settings
from engine.core.state_keys import MONITOR_PREFIX
from engine.runtime.assembly import make_clock
from engine.sim.account import EXECUTION_HISTORY
from engine.sim.exchange import STATE_FILE, SimExchange
from engine.sim.fills import dec, money
from engine.sim.journal import journal_path, last_record_time
from engine.sim.ledger import ZERO, apply_fill
from engine.sim.state import read_state as read_sim_state
from engine.trading.ledger import Ledger
from persistence.recovery import read_state

ROOT = Path(__file__).resolve().parents[1]

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "LINKUSDT")
VOLATILITY = 4.0
"""Annualised: about 0.55 % per simulated minute, so tight TPs and stops are hit within minutes."""
CONSERVATIVE = {"entry_offsets_pct": [0.0, -0.15, -0.3], "tp_offsets_pct": [0.2, 0.4, 0.6, 0.8]}
FAST = {"entry_offsets_pct": [0.0], "tp_offsets_pct": [0.4]}
SL_OFFSET_PCT = -0.5
MARGINS = (150.0, 200.0, 250.0)
LEVERAGE = 10.0

PNL_TOLERANCE = 0.01
"""USDT: a ledger PnL within this of the exchange's realised PnL matches."""
MIN_SAME_SYMBOL_GAP_S = 120.0
"""Planned trades of one symbol are at least this far apart (one monitor per symbol and account)."""
FIRST_TRADE_S = 20.0
DRAIN_SEGMENT_S = 600.0
"""Simulated seconds of each clean segment after the hour, until no position is left."""
MAX_DRAIN_SEGMENTS = 6
SEGMENT_TIMEOUT_S = 300.0
"""Wall seconds one engine process may take before it counts as hung (and is killed)."""
STARTED_MARKER = "persistence recovery in"
"""The engine's first log line once its state directory is locked: the process is up."""
ACK_WAIT_SIM_S = 60.0
"""Simulated seconds (at the measured speed) an ``after_ack`` kill waits for the exchange's next
acknowledgement at most: a quiet market still gets its kill."""
INITIAL_RATE = 2000.0
"""Simulated seconds per wall second assumed until a segment measured more."""
STARTUP_ALLOWANCE_S = 0.3
BACKSTOP_FACTOR = 2.0
"""A kill comes when the market is seen past its simulated moment, or at the latest this many times
the wall time that moment should take (plus the start-up allowance): a slow engine still gets it."""

_ALERT_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) opconsole\.alerts: (?P<message>.*)$")
# The scenario runner's refusal: "<symbol> <side>: <why>" (engine.runtime.scenario.open_scenario_trade).
_REFUSAL = re.compile(r"^(?P<symbol>[A-Z0-9]+) (?P<side>Buy|Sell): (?P<why>.*)$")


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedTrade:
    """One trade of the seeded plan; ``offset_s`` counts from the start of the simulated hour."""

    index: int
    offset_s: float
    symbol: str
    side: Side
    approach: str
    margin: float
    account: str = "main"

    def scenario_entry(self, at: float) -> dict[str, Any]:
        """The ``[[trade]]`` table that opens this trade ``at`` seconds after a segment's start."""
        offsets = CONSERVATIVE if self.approach == "conservative" else FAST
        return {
            "at": round(max(0.0, at), 3),
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side.value,
            "approach": self.approach,
            "margin": self.margin,
            "leverage": LEVERAGE,
            **offsets,
            "sl_offset_pct": SL_OFFSET_PCT,
        }


def plan_trades(
    count: int, minutes: float, seed: int, symbols: Sequence[str] = SYMBOLS
) -> list[PlannedTrade]:
    """``count`` seeded trades in bursts of one to three (a few seconds apart, on different symbols:
    several trades opened at once also meet the exchange's rate limit), the bursts spread over the
    first 85 % of the run (the rest lets them work); both approaches and sides, round the symbols, one
    symbol's trades at least :data:`MIN_SAME_SYMBOL_GAP_S` apart when the symbols allow it."""
    rng = random.Random(f"volatile-hour:{seed}")
    sizes: list[int] = []
    while sum(sizes) < count:
        sizes.append(min(rng.randint(1, 3), count - sum(sizes)))
    span = max(0.0, minutes * 60.0 * 0.85 - FIRST_TRADE_S)
    step = span / len(sizes) if sizes else 0.0
    last_use: dict[str, float] = {}
    trades: list[PlannedTrade] = []
    for burst, size in enumerate(sizes):
        start = FIRST_TRADE_S + step * burst + rng.uniform(0.0, step * 0.5)
        for k in range(size):
            offset = start + k * rng.uniform(0.5, 3.0)
            free = [s for s in symbols if offset - last_use.get(s, -1e9) >= MIN_SAME_SYMBOL_GAP_S]
            symbol = rng.choice(free) if free else min(symbols, key=lambda s: last_use.get(s, -1e9))
            last_use[symbol] = offset
            i = len(trades)
            trades.append(
                PlannedTrade(
                    index=i,
                    offset_s=round(offset, 3),
                    symbol=symbol,
                    side=rng.choice([Side.BUY, Side.SELL]),
                    approach="conservative" if i % 2 == 0 else "fast",
                    margin=rng.choice(MARGINS),
                )
            )
    return trades


def settings_document(
    seed: int, volatility: float, symbols: Sequence[str], mirror: bool = False
) -> dict[str, Any]:
    """The run's settings file: a volatile simulated market with realistic latency, no demo trades;
    mirror trading off unless ``mirror`` (then every trade has a twin on the mirror account, whose
    round trips are checked the same way; the plan is matched on main)."""
    return {
        "mirror": {"enabled": mirror},
        "sim": {
            "seed": seed,
            "symbols": list(symbols),
            "demo_trades": 0,
            "latency": "realistic",
            "volatility": volatility,
        },
    }


# --- what the engine recorded ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineView:
    """The engine's state as a restart would recover it: its ledger and its monitors."""

    trades: list[Trade]
    monitors: list[Monitor]


def read_engine(state_dir: Path) -> EngineView:
    """Recover the engine's state from ``state_dir`` without the lock and without writing."""
    state, _report = read_state(state_dir)
    monitors = [Monitor.from_dict(v) for k, v in state.items() if k.startswith(MONITOR_PREFIX)]
    return EngineView(Ledger.from_state(state).trades, monitors)


@dataclass(frozen=True, slots=True)
class Opening:
    """A trade the engine opened (a monitor, or a ledger trade): what a planned trade is matched to."""

    monitor_id: str
    account: str
    symbol: str
    side: Side
    at: float


def openings(view: EngineView) -> list[Opening]:
    """Every trade the engine opened itself (adopted positions are not the plan's), by monitor."""
    found: dict[str, Opening] = {}
    for t in view.trades:
        if t.approach != "adopted" and t.monitor_id:
            found[t.monitor_id] = Opening(t.monitor_id, t.account, t.symbol, t.side, t.opened_at)
    for m in view.monitors:
        if m.approach != "adopted":
            found.setdefault(m.monitor_id, Opening(m.monitor_id, m.account, m.symbol, m.side, m.created_at))
    return sorted(found.values(), key=lambda o: o.at)


# --- what the exchange saw ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExchangeView:
    """The simulated exchange as a restart would find it (snapshot + journal)."""

    time: float | None
    positions: list[Position]
    orders: list[Order]
    executions: list[Execution]
    qty_steps: dict[str, float]
    history_full: bool = False
    """An account holds as many executions as the exchange keeps: the oldest may be gone."""


def read_exchange(state_dir: Path) -> ExchangeView:
    """Load the simulated exchange saved in ``state_dir`` exactly as the engine's restart would
    (:class:`SimExchange` replays its journal onto its snapshot), on a copy, so the state directory
    is never written by the checks."""
    source = state_dir / STATE_FILE
    saved = SimExchange.saved_time(state_dir)
    if not source.exists():
        return ExchangeView(saved, [], [], [], {})
    with tempfile.TemporaryDirectory(prefix="volatile-hour-exchange-") as tmp:
        copy = Path(tmp) / STATE_FILE
        shutil.copy2(source, copy)
        if journal_path(source).exists():
            shutil.copy2(journal_path(source), journal_path(copy))
        exchange = SimExchange(
            clock=VirtualClock(start=saved or 0.0), seed=0, symbols=[], balances={}, state_path=copy
        )
        positions = [p for a in exchange.accounts for p in exchange.positions(a) if p.is_open]
        orders = [o for a in exchange.accounts for o in exchange.open_orders(a)]
        per_account = [exchange.executions(a, since=0.0) for a in exchange.accounts]
        steps = {s: i.qty_step for s, i in exchange.instruments.items()}
    full = any(len(rows) >= EXECUTION_HISTORY for rows in per_account)
    executions = [e for rows in per_account for e in rows]
    return ExchangeView(saved, positions, orders, executions, steps, full)


@dataclass(slots=True)
class RoundTrip:
    """One position of the exchange from flat back to flat, with what it realised."""

    account: str
    symbol: str
    side: str
    opened_at: float
    closed_at: float | None = None
    entry_qty: Decimal = ZERO
    realised: Decimal = ZERO
    fees: Decimal = ZERO
    funding: Decimal = ZERO
    monitor_ids: list[str] = field(default_factory=list)
    exec_types: list[str] = field(default_factory=list)

    @property
    def pnl(self) -> Decimal:
        """Net realised PnL as the exchange books it: gross minus fees minus funding paid."""
        return money(self.realised - self.fees - self.funding)

    def note(self, e: Execution) -> None:
        """Remember whose orders and which execution types made this round trip."""
        link = parse_link_id(e.link_id)
        if link is not None and link.monitor_id not in self.monitor_ids:
            self.monitor_ids.append(link.monitor_id)
        if e.exec_type not in self.exec_types:
            self.exec_types.append(e.exec_type)

    def row(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side,
            "opened_at": iso_utc(self.opened_at),
            "closed_at": iso_utc(self.closed_at) if self.closed_at is not None else None,
            "entry_qty": float(self.entry_qty),
            "pnl": float(self.pnl),
            "fees": float(self.fees),
            "funding": float(self.funding),
            "monitor_ids": list(self.monitor_ids),
            "exec_types": list(self.exec_types),
        }


def round_trips(executions: Iterable[Execution]) -> list[RoundTrip]:
    """Reconstruct every round trip from executions in the exchange's order, with the exchange's own
    position arithmetic (:func:`engine.sim.ledger.apply_fill`): a fill that flips the position through
    zero closes one round trip and opens the next, its fee split by quantity. Funding rows are money,
    never fills: they are booked on the open round trip."""
    open_trips: dict[tuple[str, str], RoundTrip] = {}
    sizes: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    done: list[RoundTrip] = []
    for e in executions:
        key = (e.account, e.symbol)
        trip = open_trips.get(key)
        if e.is_funding:
            if trip is not None:
                trip.funding += dec(e.fee)
            continue
        if not (e.is_position_fill or e.forced_exit_reason):
            continue
        size, entry = sizes.get(key, (ZERO, ZERO))
        qty, fee = dec(e.qty), dec(e.fee)
        outcome = apply_fill(size, entry, e.side, qty, dec(e.price))
        sizes[key] = (outcome.size, outcome.entry)
        if trip is None:
            trip = open_trips[key] = RoundTrip(e.account, e.symbol, e.side.value, e.ts)
        trip.note(e)
        flipped = outcome.reopened and size != 0
        closing_fee = money(fee * outcome.closed / qty) if flipped else fee
        trip.realised += outcome.realised
        trip.fees += closing_fee
        if outcome.closed == 0:
            trip.entry_qty += qty
        elif flipped or outcome.size == 0:
            trip.closed_at = e.ts
            done.append(open_trips.pop(key))
        if flipped:
            reopened = open_trips[key] = RoundTrip(e.account, e.symbol, e.side.value, e.ts)
            reopened.note(e)
            reopened.entry_qty, reopened.fees = abs(outcome.size), fee - closing_fee
    return done + sorted(open_trips.values(), key=lambda t: t.opened_at)


# --- checks (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StopGap:
    """An open position that no reduce-only stop of ours covers in full, at one check."""

    check: str  # kill (after a SIGKILL) | clean (after a clean exit)
    segment: int
    account: str
    symbol: str
    side: str
    size: float
    covered: float
    entry_window: bool
    """The position last changed by an entry fill: the window before its stop, allowed at a kill."""
    since_fill_s: float | None


def stop_gaps(view: ExchangeView, check: str, segment: int) -> list[StopGap]:
    """Open positions of ``view`` without a reduce-only conditional order of ours on the closing side
    whose remaining quantity covers the whole position (to half a qty step)."""
    gaps = []
    for p in view.positions:
        if p.side is None:
            continue
        stops = [
            o
            for o in view.orders
            if o.account == p.account
            and o.symbol == p.symbol
            and o.side is p.side.opposite
            and o.trigger_price is not None
            and (o.reduce_only or o.close_on_trigger)
            and o.status.is_open
            and parse_link_id(o.link_id) is not None
        ]
        covered = max((o.remaining_qty for o in stops), default=0.0)
        step = view.qty_steps.get(p.symbol, 0.0)
        if covered + step / 2 >= p.size:
            continue
        fills = [
            e
            for e in view.executions
            if e.account == p.account
            and e.symbol == p.symbol
            and (e.is_position_fill or e.forced_exit_reason)
        ]
        last = fills[-1] if fills else None
        entry_window = last is not None and last.side is p.side and last.closed_size == 0
        since = None if last is None or view.time is None else round(view.time - last.ts, 3)
        gaps.append(
            StopGap(check, segment, p.account, p.symbol, p.side.value, p.size, covered, entry_window, since)
        )
    return gaps


@dataclass(slots=True)
class Comparison:
    """The ledger against the exchange's round trips."""

    matched: list[tuple[Trade, RoundTrip]] = field(default_factory=list)
    ledger_only: list[Trade] = field(default_factory=list)
    exchange_only: list[RoundTrip] = field(default_factory=list)

    def mismatches(self) -> list[tuple[Trade, RoundTrip]]:
        """Matched pairs whose PnLs differ by more than :data:`PNL_TOLERANCE`."""
        return [(t, r) for t, r in self.matched if abs(t.pnl - float(r.pnl)) > PNL_TOLERANCE + 1e-9]


def compare(trades: Sequence[Trade], trips: Sequence[RoundTrip]) -> Comparison:
    """Pair each closed round trip with the ledger trade of one of its monitors (the monitor id is in
    every orderLinkId), else with an unpaired ledger trade of the same symbol and side inside its time
    span; what stays unpaired on either side is reported."""
    result = Comparison()
    free = list(trades)
    for trip in (t for t in trips if t.closed_at is not None):
        closed_at = trip.closed_at or 0.0
        same = [t for t in free if t.account == trip.account and t.symbol == trip.symbol]
        by_id = [t for t in same if t.monitor_id and t.monitor_id in trip.monitor_ids]
        by_time = [
            t
            for t in same
            if t.side.value == trip.side and trip.opened_at - 1.0 <= t.closed_at <= closed_at + 1.0
        ]
        candidates = by_id or by_time
        if not candidates:
            result.exchange_only.append(trip)
            continue
        best = min(candidates, key=lambda t: abs(t.closed_at - closed_at))
        free.remove(best)
        result.matched.append((best, trip))
    result.ledger_only = free
    return result


def is_phantom(trade: Trade) -> bool:
    """A ledger trade that looks invented: closed as ``manual``, or at its entry price with PnL 0."""
    return trade.reason == "manual" or (trade.exit_price == trade.entry_price and trade.pnl == 0)


def trade_row(trade: Trade) -> dict[str, Any]:
    """A ledger trade as the report shows it (the ledger's own row, plus the monitor id)."""
    return {**Ledger.row(trade), "monitor_id": trade.monitor_id}


@dataclass(frozen=True, slots=True)
class AlertLine:
    """An alert as the engine logged it (the log is all that outlives a kill)."""

    segment: int
    level: str
    message: str


def alert_lines(log_text: str, segment: int) -> list[AlertLine]:
    """The alerts of one segment's log."""
    found = []
    for line in log_text.splitlines():
        match = _ALERT_LINE.match(line)
        if match:
            found.append(AlertLine(segment, match["level"], match["message"]))
    return found


def refusals(alerts: Iterable[AlertLine]) -> dict[tuple[str, str], list[str]]:
    """The scenario trades the engine refused, per (symbol, side), with why, from the warning alerts
    the scenario runner raises (``<symbol> <side>: <why>``)."""
    found: dict[tuple[str, str], list[str]] = {}
    for alert in alerts:
        match = _REFUSAL.match(alert.message) if alert.level == "WARNING" else None
        if match and match["symbol"] in SYMBOLS:
            found.setdefault((match["symbol"], match["side"]), []).append(match["why"])
    return found


# --- running the engine ------------------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    """One engine process on the state directory."""

    index: int
    kind: str  # hour | drain
    sim_start: str
    sim_end: str
    sim_s: float
    trades_given: int
    killed: bool
    kill_mode: str | None  # moment | after_ack (see KillPlan), None without a kill
    exit_code: int | None
    hung: bool
    wall_s: float
    log: str


@dataclass(frozen=True, slots=True)
class KillPlan:
    """When to SIGKILL an engine process: as soon as its simulated market is seen saved at or after
    ``sim_at``, or ``after_s`` wall seconds after it is up, whichever comes first (the wall delay is
    a backstop estimated from the speed measured so far). With ``at_ack``, the kill then waits for
    the simulated exchange's next acknowledged change (a journal append: an order action or a fill),
    so it lands in the middle of a trade's life."""

    after_s: float
    sim_at: float
    at_ack: bool
    ack_wait_s: float = 0.0
    """Wall seconds to wait for the acknowledgement at most."""
    jitter_s: float = 0.0
    """Without ``at_ack``: wall seconds to wait after the moment, so a kill does not always come
    right after the save that showed it."""

    @property
    def mode(self) -> str:
        """``after_ack`` or ``moment``, as the report names it."""
        return "after_ack" if self.at_ack else "moment"


@dataclass(slots=True)
class Outcome:
    """How one engine process ended."""

    killed: bool
    exit_code: int | None
    hung: bool
    wall_s: float
    running_wall_s: float
    """Wall seconds between the engine's first log line and its end."""


def run_engine(
    command: Sequence[str], log_path: Path, kill: KillPlan | None, state_dir: Path, timeout_s: float
) -> Outcome:
    """Run one engine process with its output in ``log_path``; SIGKILL it as ``kill`` says (when it
    has not ended by then), or after ``timeout_s`` (hung)."""
    started = time.monotonic()
    deadline = started + timeout_s
    sent_kill = False
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            list(command), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        up = _wait_until_up(proc, log_path, deadline)
        if kill is not None:
            _wait_for_kill_moment(proc, kill, state_dir, min(deadline, up + kill.after_s))
            if kill.at_ack:
                wait_until = min(deadline, time.monotonic() + kill.ack_wait_s)
                _wait_for_append(proc, journal_path(state_dir / STATE_FILE), wait_until)
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=kill.jitter_s)
            if proc.poll() is None and time.monotonic() < deadline:
                os.kill(proc.pid, signal.SIGKILL)
                sent_kill = True
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            code = proc.wait()
            hung = True
        else:
            hung = False
    ended = time.monotonic()
    killed = sent_kill and code == -signal.SIGKILL
    return Outcome(killed, None if killed or hung else code, hung, ended - started, ended - up)


class MarketTime:
    """How far a running engine's simulated market got: :meth:`SimExchange.saved_time`'s rule (the
    later of the snapshot's save and the journal's last record), each file re-read only when it
    changed, so watching costs the engine next to nothing."""

    def __init__(self, state_dir: Path) -> None:
        self.snapshot = state_dir / STATE_FILE
        self.journal = journal_path(self.snapshot)
        self._seen: dict[Path, tuple[tuple[int, int, int], float | None]] = {}

    def now(self) -> float | None:
        """The market's saved time (None before anything was saved)."""
        times = [self._read(self.snapshot, _saved_at), self._read(self.journal, last_record_time)]
        return max((t for t in times if t is not None), default=None)

    def _read(self, path: Path, reader: Callable[[Path], float | None]) -> float | None:
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if path in self._seen and self._seen[path][0] == key:
                return self._seen[path][1]
            value = reader(path)
        except (BadInput, OSError):  # a file being replaced: look again next time
            return None
        self._seen[path] = (key, value)
        return value


def _saved_at(path: Path) -> float | None:
    saved = read_sim_state(path).get("saved_at")
    return None if saved is None else float(saved)


def _wait_for_kill_moment(
    proc: subprocess.Popen[bytes], kill: KillPlan, state_dir: Path, wall_moment: float
) -> None:
    """Return at ``wall_moment``, once the simulated market was saved at or after ``kill.sim_at``,
    or when the process ended."""
    market = MarketTime(state_dir)
    while proc.poll() is None and time.monotonic() < wall_moment:
        saved = market.now()
        if saved is not None and saved >= kill.sim_at:
            return
        time.sleep(0.001)


def _wait_for_append(proc: subprocess.Popen[bytes], journal: Path, deadline: float) -> None:
    """Return as soon as ``journal`` grows (a save empties it: the emptied file is the new base), the
    process ends, or the deadline passed."""
    base = _size(journal)
    while proc.poll() is None and time.monotonic() < deadline:
        size = _size(journal)
        if size > base:
            return
        base = min(base, size)
        time.sleep(0.0005)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _wait_until_up(proc: subprocess.Popen[bytes], log_path: Path, deadline: float) -> float:
    """Poll the log for the engine's first line; returns the monotonic time it appeared (or when
    the process ended, or the deadline passed)."""
    while time.monotonic() < deadline and proc.poll() is None:
        if STARTED_MARKER in log_path.read_text(encoding="utf-8", errors="replace"):
            break
        time.sleep(0.005)
    return time.monotonic()


@dataclass(slots=True)
class Plan:
    """The planned trades and where each stands: given to a segment, opened (monitor id), refused."""

    trades: list[PlannedTrade]
    opened: dict[int, str] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    given: set[int] = field(default_factory=set)
    seen_monitors: set[str] = field(default_factory=set)

    def pending(self) -> list[PlannedTrade]:
        """Trades neither opened nor refused."""
        return [t for t in self.trades if t.index not in self.opened and t.index not in self.refused]

    def attribute(self, view: EngineView, epoch: float) -> None:
        """Match the engine's new openings to given trades: the same account, symbol and side, and the
        latest planned time not after the opening (a scenario trade never opens before its time)."""
        for opening in openings(view):
            if opening.monitor_id in self.seen_monitors:
                continue
            self.seen_monitors.add(opening.monitor_id)
            candidates = [
                t
                for t in self.pending()
                if t.index in self.given
                and (t.account, t.symbol, t.side) == (opening.account, opening.symbol, opening.side)
                and epoch + t.offset_s <= opening.at + 1e-3
            ]
            if candidates:
                chosen = max(candidates, key=lambda t: t.offset_s)
                self.opened[chosen.index] = opening.monitor_id

    def note_refusals(self, found: dict[tuple[str, str], list[str]], given: Sequence[PlannedTrade]) -> None:
        """Mark as refused, earliest first, as many given-but-unopened trades per (symbol, side) as the
        segment's log shows refusals for, with the engine's reason."""
        for (symbol, side), reasons in found.items():
            waiting = [
                t
                for t in given
                if (t.symbol, t.side.value) == (symbol, side)
                and t.index not in self.opened
                and t.index not in self.refused
            ]
            for t, why in zip(waiting, reasons, strict=False):
                self.refused[t.index] = f"refused: {why}"


@dataclass(slots=True)
class Run:
    """Everything one run measured; :func:`report` turns it into the figures."""

    args: dict[str, Any]
    state_dir: Path
    epoch: float
    plan: Plan
    segments: list[Segment] = field(default_factory=list)
    gaps: list[StopGap] = field(default_factory=list)
    stop_checks: int = 0
    positions_checked: int = 0
    alerts: list[AlertLine] = field(default_factory=list)
    wall_s: float = 0.0
    sim_end: float = 0.0


class VolatileHour:
    """The driver: segments of the engine with kills, the checks between them, the final figures."""

    def __init__(self, args: argparse.Namespace, state_dir: Path) -> None:
        self.args = args
        self.state_dir = state_dir
        self.work = state_dir.parent
        self.config = self.work / "settings.toml"
        document = settings_document(args.seed, args.volatility, SYMBOLS, args.mirror)
        self.config.write_text(tomli_w.dumps(document), encoding="utf-8")
        self.settings: Settings = load_settings(self.config, state_dir)
        self.epoch = make_clock("virtual", self.settings).now()
        self.hour_end = self.epoch + args.minutes * 60.0
        self.rng = random.Random(f"volatile-hour-kills:{args.seed}")
        self.rate = INITIAL_RATE
        self.run = Run(
            args=vars(args),
            state_dir=state_dir,
            epoch=self.epoch,
            plan=Plan(plan_trades(args.trades, args.minutes, args.seed)),
        )

    def sim_now(self) -> float:
        """Where the next engine start's virtual clock begins (the engine's own rule)."""
        return make_clock("virtual", self.settings, self.state_dir).now()

    def command(self, duration_s: float, scenario: Path | None) -> list[str]:
        """The user's command line for one engine start."""
        cmd = [sys.executable, "-m", "console", "run", "--headless", "--clock", "virtual"]
        cmd += ["--duration", f"{duration_s:.3f}", "--config", str(self.config)]
        cmd += ["--state-dir", str(self.state_dir)]
        if scenario is not None:
            cmd += ["--scenario", str(scenario)]
        return cmd

    def execute(self) -> Run:
        """Run the hour with its kills, then drain, then return the measurements."""
        wall_start = time.monotonic()
        kills_left = self.args.kills
        # Each segment is killed (one kill fewer) or runs to the end of the hour; the bound only
        # guards against an engine whose clean exit would not reach it.
        for _ in range(self.args.kills + 2):
            start = self.sim_now()
            remaining = self.hour_end - start
            if remaining <= 1.0:
                break
            kill = self._kill_plan(start, remaining, kills_left) if kills_left else None
            segment = self._segment("hour", start, remaining, kill)
            if segment.killed:
                kills_left -= 1
            elif segment.hung or segment.exit_code != 0:
                break  # a failing engine: report it rather than loop on it
        for plan_trade in self.run.plan.pending():
            self.run.plan.refused.setdefault(plan_trade.index, "never opened during the hour")
        for _ in range(MAX_DRAIN_SEGMENTS):
            last = self.run.segments[-1] if self.run.segments else None
            # A kill may land after the hour's last second: the run still ends with a clean exit.
            ended_clean = last is not None and not last.killed and not last.hung
            if ended_clean and self._flat():
                break
            segment = self._segment("drain", self.sim_now(), DRAIN_SEGMENT_S, None)
            if segment.hung or segment.exit_code != 0:
                break
        self.run.wall_s = time.monotonic() - wall_start
        self.run.sim_end = self.sim_now()
        return self.run

    def _kill_plan(self, start: float, remaining_s: float, kills_left: int) -> KillPlan:
        """The next kill: at a seeded share (half to one and a half) of this kill's part of the
        remaining simulated time, so the kills spread over the hour; the wall-clock backstop allows
        for the start-up and for the speed measured so far. Every other kill then waits for the
        exchange's next acknowledgement (see :class:`KillPlan`)."""
        target_sim = self.rng.uniform(0.5, 1.5) * remaining_s / (kills_left + 1)
        backstop = STARTUP_ALLOWANCE_S + BACKSTOP_FACTOR * target_sim / self.rate
        at_ack = kills_left % 2 == 0
        jitter = self.rng.uniform(0.0, ACK_WAIT_SIM_S) / self.rate
        return KillPlan(backstop, start + target_sim, at_ack, ACK_WAIT_SIM_S / self.rate, jitter)

    def _flat(self) -> bool:
        """No position on the exchange and no open monitor in the engine: nothing left to drain."""
        monitors = read_engine(self.state_dir).monitors
        return not read_exchange(self.state_dir).positions and all(m.phase is Phase.CLOSED for m in monitors)

    def _segment(self, kind: str, start: float, duration_s: float, kill: KillPlan | None) -> Segment:
        """One engine process: give it its trades, run (and maybe kill) it, then check the state."""
        index = len(self.run.segments)
        plan = self.run.plan
        given = (
            [t for t in plan.pending() if self.epoch + t.offset_s < start + duration_s]
            if kind == "hour"
            else []
        )
        scenario = None
        if given:
            scenario = self.work / f"scenario-{index:02d}.toml"
            doc = {
                "seed": self.args.seed,
                "trade": [t.scenario_entry(self.epoch + t.offset_s - start) for t in given],
            }
            scenario.write_text(tomli_w.dumps(doc), encoding="utf-8")
            plan.given.update(t.index for t in given)
        log_path = self.work / f"segment-{index:02d}.log"
        outcome = run_engine(
            self.command(duration_s, scenario), log_path, kill, self.state_dir, self.args.segment_timeout
        )
        end = self.sim_now()
        if outcome.running_wall_s > 0:
            # The saved time lags the kill (the market is saved every minute and on changes), so each
            # measure is a lower bound of the speed: keep the highest, and kill early rather than never.
            self.rate = max(self.rate, (end - start) / outcome.running_wall_s)
        engine = read_engine(self.state_dir)
        plan.attribute(engine, self.epoch)
        alerts = alert_lines(log_path.read_text(encoding="utf-8", errors="replace"), index)
        self.run.alerts += alerts
        plan.note_refusals(refusals(alerts), given)
        view = read_exchange(self.state_dir)
        self.run.stop_checks += 1
        self.run.positions_checked += len(view.positions)
        self.run.gaps += stop_gaps(view, "kill" if outcome.killed or outcome.hung else "clean", index)
        segment = Segment(
            index=index,
            kind=kind,
            sim_start=iso_utc(start),
            sim_end=iso_utc(end),
            sim_s=round(end - start, 3),
            trades_given=len(given),
            killed=outcome.killed,
            kill_mode=kill.mode if outcome.killed and kill is not None else None,
            exit_code=outcome.exit_code,
            hung=outcome.hung,
            wall_s=round(outcome.wall_s, 3),
            log=str(log_path),
        )
        self.run.segments.append(segment)
        return segment


# --- the figures -------------------------------------------------------------------------------


def report(run: Run) -> dict[str, Any]:
    """The run's figures and checks (the ``--json`` document)."""
    engine = read_engine(run.state_dir)
    exchange = read_exchange(run.state_dir)
    trips = round_trips(exchange.executions)
    closed = [t for t in trips if t.closed_at is not None]
    comparison = compare(engine.trades, trips)
    mismatches = comparison.mismatches()
    phantoms = [t for t in comparison.ledger_only if is_phantom(t)]
    emergencies = [t for t in engine.trades if t.reason == "emergency"]
    emergency_monitors = [
        m.key for m in engine.monitors if m.close_intent == "emergency" and m.phase is not Phase.CLOSED
    ]
    critical = [a for a in run.alerts if a.level == "CRITICAL"]
    # The last segment's check is the one at the end (the state has not changed since).
    kill_gaps = [g for g in run.gaps if g.check == "kill"]
    clean_gaps = [g for g in run.gaps if g.check != "kill"]
    bad_segments = [s for s in run.segments if s.hung or (not s.killed and s.exit_code != 0)]
    kills = sum(1 for s in run.segments if s.killed)
    reasons = Counter(t.reason for t in engine.trades)
    plan = run.plan
    # Opened (a monitor was saved) but neither in the ledger nor open at the end: the trade is gone.
    kept = {t.monitor_id for t in engine.trades} | {m.monitor_id for m in engine.monitors}
    vanished = [t for t in plan.trades if t.index in plan.opened and plan.opened[t.index] not in kept]
    checks = {
        "trades_happened": (len(closed) > 0 and len(engine.trades) > 0, f"{len(closed)} round trips"),
        "exchange_history_complete": (
            not exchange.history_full,
            f"the exchange kept {len(exchange.executions)} executions (at most {EXECUTION_HISTORY} each)",
        ),
        "kills_done": (kills == run.args["kills"], f"{kills} of {run.args['kills']}"),
        "engine_exits_cleanly": (not bad_segments, f"{len(bad_segments)} failed or hung segment(s)"),
        "ends_with_clean_exit": (
            bool(run.segments) and not run.segments[-1].killed and run.segments[-1].exit_code == 0,
            "the last segment exited by itself" if run.segments else "no segment",
        ),
        "every_round_trip_in_ledger": (
            not comparison.exchange_only,
            f"{len(comparison.exchange_only)} round trip(s) missing from the ledger",
        ),
        "every_ledger_trade_on_exchange": (
            not comparison.ledger_only,
            f"{len(comparison.ledger_only)} ledger trade(s) the exchange never had",
        ),
        "pnl_matches": (
            not mismatches,
            f"{len(comparison.matched) - len(mismatches)} of {len(comparison.matched)}",
        ),
        "no_emergency_closes": (
            not emergencies and not emergency_monitors,
            f"{len(emergencies)} trade(s), {len(emergency_monitors)} open",
        ),
        "no_phantom_trades": (not phantoms, f"{len(phantoms)}"),
        "stop_after_clean_exit": (not clean_gaps, f"{len(clean_gaps)} unprotected position(s)"),
        "stop_at_kill_only_in_entry_window": (
            all(g.entry_window for g in kill_gaps),
            f"{sum(1 for g in kill_gaps if not g.entry_window)} outside the entry window",
        ),
    }
    return {
        "seed": run.args["seed"],
        "minutes": run.args["minutes"],
        "volatility": run.args["volatility"],
        "state_dir": str(run.state_dir),
        "kills_requested": run.args["kills"],
        "kills": kills,
        "segments": len(run.segments),
        "simulated_minutes": round((run.sim_end - run.epoch) / 60.0, 2),
        "wall_s": round(run.wall_s, 2),
        "planned_trades": len(plan.trades),
        "opened_trades": len(plan.opened),
        "not_opened": [
            {"trade": asdict(t) | {"side": t.side.value}, "why": plan.refused[t.index]}
            for t in plan.trades
            if t.index in plan.refused
        ],
        "vanished_trades": [
            asdict(t) | {"side": t.side.value, "monitor_id": plan.opened[t.index]} for t in vanished
        ],
        "exchange_round_trips": len(closed),
        "exchange_open_positions": len(exchange.positions),
        "ledger_trades": len(engine.trades),
        "ledger_reasons": dict(sorted(reasons.items())),
        "tp1_trades": sum(1 for t in engine.trades if t.tps_hit >= 1),
        "pnl_matched": len(comparison.matched) - len(mismatches),
        "pnl_compared": len(comparison.matched),
        "pnl_mismatches": [
            {"ledger": trade_row(t), "exchange": r.row(), "diff": round(t.pnl - float(r.pnl), 8)}
            for t, r in mismatches
        ],
        "missing_from_ledger": [r.row() for r in comparison.exchange_only],
        "ledger_only": [trade_row(t) for t in comparison.ledger_only],
        "phantom_trades": [trade_row(t) for t in phantoms],
        "emergency_closes": len(emergencies),
        "emergency_trades": [trade_row(t) for t in emergencies],
        "emergency_open_monitors": emergency_monitors,
        "critical_alerts": [asdict(a) for a in critical],
        "stop_checks": run.stop_checks,
        "positions_checked": run.positions_checked,
        "gaps_at_kill": [asdict(g) for g in kill_gaps],
        "gaps_after_clean_exit": [asdict(g) for g in clean_gaps],
        "segment_runs": [asdict(s) for s in run.segments],
        "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()},
        "ok": all(ok for ok, _ in checks.values()),
    }


def render(figures: dict[str, Any]) -> str:
    """The figures as a table for a terminal."""
    rows = [
        ("seed / volatility", f"{figures['seed']} / {figures['volatility']}"),
        ("kills done", f"{figures['kills']} of {figures['kills_requested']}"),
        ("segments", figures["segments"]),
        ("simulated minutes", figures["simulated_minutes"]),
        ("wall seconds", figures["wall_s"]),
        ("planned / opened trades", f"{figures['planned_trades']} / {figures['opened_trades']}"),
        ("opened, then gone", len(figures["vanished_trades"])),
        ("exchange round trips", figures["exchange_round_trips"]),
        ("ledger trades", figures["ledger_trades"]),
        ("ledger reasons", ", ".join(f"{k} {v}" for k, v in figures["ledger_reasons"].items()) or "-"),
        ("trades with TP1", figures["tp1_trades"]),
        ("ledger PnL = exchange PnL", f"{figures['pnl_matched']} of {figures['ledger_trades']}"),
        ("missing from ledger", len(figures["missing_from_ledger"])),
        ("ledger-only trades", len(figures["ledger_only"])),
        ("phantom trades", len(figures["phantom_trades"])),
        ("emergency closes", figures["emergency_closes"]),
        ("critical alerts", len(figures["critical_alerts"])),
        ("stop checks (positions)", f"{figures['stop_checks']} ({figures['positions_checked']})"),
        ("no stop at a kill", len(figures["gaps_at_kill"])),
        ("no stop after clean exit", len(figures["gaps_after_clean_exit"])),
        ("open positions at the end", figures["exchange_open_positions"]),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("")
    for name, check in figures["checks"].items():
        lines.append(f"{'ok  ' if check['ok'] else 'FAIL'} {name}: {check['detail']}")
    for mismatch in figures["pnl_mismatches"]:
        t = mismatch["ledger"]
        lines.append(
            f"  PnL mismatch {t['symbol']} {t['side']} {t['reason']}: ledger {t['pnl']} "
            f"exchange {mismatch['exchange']['pnl']} (diff {mismatch['diff']})"
        )
    for trip in figures["missing_from_ledger"]:
        lines.append(
            f"  missing from ledger: {trip['symbol']} {trip['side']} pnl {trip['pnl']} {trip['opened_at']}"
        )
    for t in figures["ledger_only"]:
        lines.append(
            f"  ledger only: {t['symbol']} {t['side']} {t['reason']} pnl {t['pnl']} {t['opened_at']}"
        )
    for gap in figures["gaps_after_clean_exit"] + figures["gaps_at_kill"]:
        lines.append(
            f"  no stop ({gap['check']}, segment {gap['segment']}): {gap['symbol']} {gap['side']} "
            f"{gap['size']} covered {gap['covered']} entry window {gap['entry_window']}"
        )
    for alert in figures["critical_alerts"]:
        lines.append(f"  critical alert (segment {alert['segment']}): {alert['message']}")
    lines.append(f"state: {figures['state_dir']}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated minutes of trading")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kills", type=int, default=6, help="SIGKILLs during the hour")
    parser.add_argument("--trades", type=int, default=24, help="planned trades")
    parser.add_argument("--volatility", type=float, default=VOLATILITY, help="annualised")
    parser.add_argument("--segment-timeout", type=float, default=SEGMENT_TIMEOUT_S, help="wall s per process")
    parser.add_argument("--dir", type=Path, help="work directory (kept); default: a new temp dir")
    parser.add_argument("--mirror", action="store_true", help="mirror every trade onto the second account")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.kills < 0 or args.trades < 0 or args.volatility <= 0:
        parser.error("--minutes and --volatility must be > 0, --kills and --trades >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the hour and print the figures; 0 when every check holds."""
    args = parse_args(argv)
    work = args.dir if args.dir is not None else Path(tempfile.mkdtemp(prefix="volatile-hour-"))
    work.mkdir(parents=True, exist_ok=True)
    state_dir = work / "state"
    if state_dir.exists() and any(state_dir.iterdir()):
        print(f"volatile_hour: {state_dir}: not empty", file=sys.stderr)
        return 2
    figures = report(VolatileHour(args, state_dir).execute())
    print(json.dumps(figures, indent=2) if args.json else render(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
