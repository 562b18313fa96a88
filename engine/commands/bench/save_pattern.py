"""The original bot's save pattern, replayed into the store to measure the save policies.

The original saved its whole state on every monitoring check (every 5 s per position) and on every
fill and TP/SL event. :func:`monitor_hour` scripts that stream for N monitors (seeded, deterministic);
:func:`replay` plays it into a :class:`~persistence.store.Store` on a virtual time source and reports
what reached the disk; :func:`measure` does both in a fresh state directory. Used by the policy test
and ``scripts/persistence_policy_bench.py``. ``opconsole bench`` measures the engine's own saves
instead (the store's counters during the workload); this replay shows what the seed's save pattern
costs under each policy (its full hour under the simple policy takes half a minute of fsyncs, too
long for every benchmark run).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from engine.core.clock import RealClock, VirtualClock
from persistence import Store
from persistence.layout import StateFiles
from persistence.reasons import Reason
from persistence.recovery import plan_recovery, scan_journal

from .stats import per_hour

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: any fixed epoch keeps runs identical

SYMBOLS = (
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT", "LINKUSDT",
    "DOTUSDT", "LTCUSDT", "BNBUSDT", "TRXUSDT", "NEARUSDT", "APTUSDT", "ARBUSDT",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class WorkloadEvent:
    """One save of the script: at ``t`` seconds from the start; ``value`` None means delete."""

    t: float
    order: int  # tie-breaker: events at the same t keep their script order
    key: str
    reason: Reason
    value: Any


def monitor_hour(
    *, monitors: int = 15, duration_s: float = 3600.0, check_interval_s: float = 5.0, seed: int = 7
) -> list[WorkloadEvent]:
    """The save stream of ``monitors`` positions managed for ``duration_s`` seconds.

    Each slot runs position after position: created (critical), 1-3 limit fills, a phase change, TP
    hits with a breakeven move and a rebalance, a close by the last TP or the stop, the trade recorded
    in the ledger and the monitor removed, then a pause before the next one. A monitoring save lands
    on every check while a monitor lives, as the original bot did.
    """
    rng = random.Random(seed)
    raw: list[tuple[float, str, Reason, Any]] = []
    ledger: list[dict[str, Any]] = []
    for slot in range(monitors):
        symbol = SYMBOLS[slot % len(SYMBOLS)] + ("" if slot < len(SYMBOLS) else f"-{slot}")
        offset = slot * check_interval_s / max(1, monitors)  # checks spread over the interval
        t = offset
        while t < duration_s:
            lifetime = rng.uniform(600.0, 2400.0)
            closes = t + lifetime < duration_s  # a position still open at the end is not closed
            end = min(t + lifetime, duration_s)
            raw.extend(_position_events(rng, symbol, t, end, check_interval_s, closes=closes))
            t += lifetime + rng.uniform(30.0, 300.0)
            t = offset + check_interval_s * round((t - offset) / check_interval_s)
    raw.sort(key=lambda item: item[0])
    events = []
    for order, (t, key, reason, value) in enumerate(raw):
        if reason is Reason.TRADE_RECORDED:
            ledger.append(value)
            value = {"trades": list(ledger)}
        events.append(WorkloadEvent(t=t, order=order, key=key, reason=reason, value=value))
    return events


def _position_events(
    rng: random.Random, symbol: str, start: float, end: float, check_interval_s: float, *, closes: bool
) -> list[tuple[float, str, Reason, Any]]:
    """The events of one position of ``symbol`` living from ``start`` to ``end``."""
    side = rng.choice(("Buy", "Sell"))
    key = f"monitor:main:{symbol}:{side}"
    span = end - start
    lifecycle: list[tuple[float, Reason, dict[str, Any]]] = [(start, Reason.MONITOR_CREATED, {})]
    fills = rng.randint(1, 3)
    for n in range(fills):
        lifecycle.append((start + span * 0.02 * (n + 1), Reason.LIMIT_FILL_PROGRESS, {"fills": n + 1}))
    lifecycle.append((start + span * 0.08, Reason.PHASE_CHANGE, {"phase": "MONITORING"}))
    tps_hit = rng.randint(0, 4)
    for n in range(tps_hit):
        at = start + span * (0.2 + 0.18 * n)
        lifecycle.append((at, Reason.TP_HIT, {"tps_filled": n + 1, "phase": "PROFIT_TAKING"}))
        if n == 0:
            lifecycle.append((at, Reason.BREAKEVEN_MOVED, {"breakeven": True}))
        lifecycle.append((at, Reason.TP_REBALANCED, {"rebalanced": n + 1}))
    exit_reason = Reason.TP_HIT if tps_hit == 4 else Reason.SL_HIT
    checks = int(span // check_interval_s)
    lifecycle += [(start + check_interval_s * (n + 1), Reason.MONITORING_UPDATE, {}) for n in range(checks)]
    lifecycle.sort(key=lambda item: item[0])

    link_prefix = f"{symbol[:6]}-{side[0]}"
    orders = [f"{link_prefix}-tp{n}-g1" for n in range(1, 5)] + [f"{link_prefix}-sl-g1"]
    monitor: dict[str, Any] = {
        "key": key, "symbol": symbol, "side": side, "approach": "conservative", "phase": "BUILDING",
        "avg_entry": round(rng.uniform(1.0, 60000.0), 2), "size": round(rng.uniform(0.01, 50.0), 3),
        "tps_filled": 0, "sl_price": 0.0, "breakeven": False, "fills": 0, "checks": 0, "mark": 0.0,
        "orders": orders,
    }  # fmt: skip
    monitor["sl_price"] = round(monitor["avg_entry"] * (0.97 if side == "Buy" else 1.03), 2)
    out: list[tuple[float, str, Reason, Any]] = []
    for at, reason, change in lifecycle:
        if at >= end:
            break
        monitor.update(change)
        if reason is Reason.MONITORING_UPDATE:
            monitor["checks"] += 1
            monitor["mark"] = round(monitor["avg_entry"] * (1 + rng.uniform(-0.02, 0.02)), 2)
        out.append((at, key, reason, dict(monitor)))
    if closes:
        trade = {"symbol": symbol, "side": side, "closed_at": end, "pnl": round(rng.uniform(-50, 80), 2)}
        out.append((end, key, exit_reason, dict(monitor, phase="CLOSED")))
        out.append((end, key, Reason.POSITION_CLOSED, dict(monitor, phase="CLOSED")))
        out.append((end, "ledger", Reason.TRADE_RECORDED, trade))
        out.append((end, "stats", Reason.STATS_UPDATE, {"last_close": end, "symbol": symbol}))
        out.append((end, key, Reason.MONITOR_REMOVED, None))
    return out


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What one replay of a workload wrote."""

    policy: str
    simulated_s: float
    saves: int
    critical_saves: int
    full_writes: int
    journal_appends: int
    writes: int
    fsyncs: int
    bytes_written: int
    compactions: int
    max_critical_delay_s: float
    max_pending_age_s: float
    critical_not_durable: int


async def replay(
    store: Store,
    events: list[WorkloadEvent],
    *,
    advance_to: Callable[[float], Awaitable[None]],
    duration_s: float,
    is_durable: Callable[[str, Any], bool] | None = None,
) -> ReplayResult:
    """Play ``events`` into a started ``store``; ``advance_to(t)`` moves the virtual clock to ``t``.

    ``is_durable(key, value)``, when given, is asked right after every critical save returns whether
    the disk already holds that value (an independent read of the directory); failures are counted.
    """
    critical, not_durable = 0, 0
    before = store.metrics()  # start-up writes (the first snapshot, the STARTUP record) are not counted
    for event in events:
        await advance_to(event.t)
        if event.value is None:
            await store.delete(event.key, reason=event.reason)
        else:
            await store.save(event.key, event.value, reason=event.reason)
        if event.reason.critical:
            critical += 1
            if is_durable is not None and not is_durable(event.key, event.value):
                not_durable += 1
    await advance_to(duration_s)
    m = store.metrics()
    return ReplayResult(
        policy=m["policy"],
        simulated_s=duration_s,
        saves=len(events),
        critical_saves=critical,
        full_writes=m["full_writes"] - before["full_writes"],
        journal_appends=m["journal_appends"] - before["journal_appends"],
        writes=m["writes"] - before["writes"],
        fsyncs=m["fsyncs"] - before["fsyncs"],
        bytes_written=m["bytes_written"] - before["bytes_written"],
        compactions=m["compactions"] - before["compactions"],
        max_critical_delay_s=m["max_critical_delay_s"],
        max_pending_age_s=m["max_pending_age_s"],
        critical_not_durable=not_durable,
    )


class SteppableClock(Protocol):
    """A virtual time source a driver can step (``engine.core.clock.VirtualClock`` is one)."""

    def now(self) -> float: ...

    def next_deadline(self) -> float | None: ...

    async def drive(self, until: float) -> None: ...


def virtual_driver(clock: SteppableClock, store: Store, start: float) -> Callable[[float], Awaitable[None]]:
    """``advance_to(t)`` for :func:`replay`: step the clock deadline by deadline up to ``start + t``.

    After each deadline it waits for the store's writer (:meth:`Store.barrier`), so a flush started
    by the timer finishes at the virtual moment it was due instead of while time runs on.
    """

    async def advance_to(t: float) -> None:
        target = start + t
        while (deadline := clock.next_deadline()) is not None and deadline <= target:
            await clock.drive(deadline)
            await store.barrier()
        await clock.drive(target)

    return advance_to


class DiskFollower:
    """An independent reader of a state directory, for checking that a save is already on disk.

    It recovers the directory as a restart would (read-only) and then reads only the journal bytes
    appended since, re-reading everything when the snapshot or the journal file changes identity
    (a compaction). ``is_durable`` is the check :func:`replay` takes.
    """

    def __init__(self, state_dir: Path) -> None:
        self._files = StateFiles(state_dir)
        self._identity: tuple[Any, Any] | None = None
        self._offset = 0
        self._state: dict[str, Any] = {}

    def state(self) -> dict[str, Any]:
        """The state a recovery would produce right now."""
        identity = (_identity(self._files.snapshot), _identity(self._files.journal, inode_only=True))
        if identity != self._identity:
            plan = plan_recovery(self._files)
            self._identity, self._state, self._offset = identity, plan.state, plan.journal_bytes
            return self._state
        with open(self._files.journal, "rb") as handle:
            handle.seek(self._offset)
            scan = scan_journal(handle.read())
        for record in scan.records:
            record.apply(self._state)
        self._offset += scan.valid_bytes
        return self._state

    def is_durable(self, key: str, value: Any) -> bool:
        """Does the disk hold ``key`` = ``value`` (or, for None, no ``key``)?"""
        state = self.state()
        return state.get(key) == value if value is not None else key not in state


def _identity(path: Path, *, inode_only: bool = False) -> Any:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino if inode_only else (st.st_ino, st.st_mtime_ns, st.st_size)


async def measure(policy: str, *, monitors: int, minutes: float, seed: int, verify: bool) -> dict[str, Any]:
    """Replay the pattern of ``monitors`` positions for ``minutes`` under ``policy`` (``simple`` or
    ``smart``) in a temporary state directory; with ``verify`` every critical save is re-read from
    the disk at once. The :class:`ReplayResult` fields plus per-hour rates and the wall time."""
    duration = minutes * 60.0
    events = monitor_hour(monitors=monitors, duration_s=duration, seed=seed)
    clock = VirtualClock(start=START)
    with tempfile.TemporaryDirectory(prefix="opconsole-policy-") as scratch:
        store = Store(Path(scratch), clock=clock, policy=policy)
        store.load()
        await store.start()
        began = RealClock().monotonic()  # the replay's real duration
        result = await replay(
            store,
            events,
            advance_to=virtual_driver(clock, store, START),
            duration_s=duration,
            is_durable=DiskFollower(Path(scratch)).is_durable if verify else None,
        )
        wall = RealClock().monotonic() - began
        await store.close()
    row = asdict(result)
    row["writes_per_hour"] = per_hour(result.writes, duration)
    row["full_writes_per_hour"] = per_hour(result.full_writes, duration)
    row["saves_per_minute_per_monitor"] = round(result.saves / minutes / monitors, 2)
    row["wall_seconds"] = round(wall, 2)
    return row
