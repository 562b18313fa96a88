"""The soaked engine's process: ``python -m engine.commands.soak.child SPEC.json``.

One engine over the Bybit venue against the soak's fake V5 server, on the soak's shared timeline.
It opens its share of the plan's trades (each at most once across kills: the index is written to a
marker file, fsync'd, before the trade is sent), makes the disk full in the plan's windows, and tells
the soak what it needs to check on stdout, one JSON object per line:

- ``{"event": "ack", "seq", "key", "reason"}``: a critical save is on disk (it must survive a kill);
- ``{"event": "alert", "type", "severity", "ts"}``: every alert the engine raised;
- ``{"event": "ready", "tag"}``: reconciled with the venue, managing positions;
- ``{"event": "trade", "index", "symbol", "opened"}`` and ``{"event": "disk", "full"}``.

Logs go to stderr. SIGTERM stops it cleanly; the soak mostly sends SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.alerts.model import Alert
from engine.core.clock import Clock, iso_utc
from engine.core.models import Phase, Side
from engine.core.settings import load_settings
from engine.core.shared_clock import SharedClock, SharedTimeline
from engine.runtime.assembly import EngineRuntime
from engine.runtime.scenario import ScenarioTrade, open_scenario_trade
from engine.trading.approaches import Approach
from engine.trading.manager import TpslManager
from persistence.disk_faults import DISK

from .plan import PlannedTrade

LEVERAGE = 10.0


def emit(event: str, **fields: Any) -> None:
    """One line for the soak on stdout (flushed: the process may be killed the next instant)."""
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def read_marker(path: Path) -> set[int]:
    """The indexes of the trades already sent by an earlier life of this engine."""
    try:
        return {int(line) for line in path.read_text().split() if line.strip().isdigit()}
    except FileNotFoundError:
        return set()


def write_marker(path: Path, index: int) -> None:
    """Record ``index`` as sent, durably, before it is sent (at most once across kills)."""
    with path.open("a") as handle:
        handle.write(f"{index}\n")
        handle.flush()
        os.fsync(handle.fileno())


def free_symbol(manager: TpslManager, preferred: str, symbols: Sequence[str]) -> str | None:
    """``preferred``, or the next of ``symbols`` with no live monitor on main (one-way mode)."""
    busy = {
        m.symbol for m in manager.monitors.values() if m.account == "main" and m.phase is not Phase.CLOSED
    }
    start = symbols.index(preferred) if preferred in symbols else 0
    for symbol in [*symbols[start:], *symbols[:start]]:
        if symbol not in busy:
            return symbol
    return None


async def open_planned(
    manager: TpslManager,
    trades: Sequence[PlannedTrade],
    origin: float,
    marker: Path,
    clock: Clock,
    symbols: Sequence[str],
) -> None:
    """Open each planned trade at its time, once, on a free symbol."""
    sent = read_marker(marker)
    for trade in sorted(trades, key=lambda t: t.at):
        if trade.index in sent:
            continue
        delay = origin + trade.at - clock.now()
        if delay > 0:
            await clock.sleep(delay)
        symbol = free_symbol(manager, trade.symbol, symbols)
        write_marker(marker, trade.index)
        if symbol is None:
            emit("trade", index=trade.index, symbol=None, opened=False)
            continue
        offsets = trade.offsets()
        opened = await open_scenario_trade(
            manager,
            ScenarioTrade(
                at=0.0,
                symbol=symbol,
                side=Side(trade.side),
                approach=Approach(trade.approach),
                margin=trade.margin,
                leverage=LEVERAGE,
                entry_offsets_pct=tuple(offsets["entries"]),
                tp_offsets_pct=tuple(offsets["tps"]),
                sl_offset_pct=float(offsets["sl"]),
            ),
        )
        emit("trade", index=trade.index, symbol=symbol, opened=opened)


async def full_disk(windows: Sequence[Sequence[float]], origin: float, clock: Clock) -> None:
    """Make the state disk full during each window (seconds after ``origin``)."""
    for start, end in windows:
        if clock.now() >= origin + end:
            continue
        if clock.now() < origin + start:
            await clock.sleep(origin + start - clock.now())
        DISK.full = True
        emit("disk", full=True)
        try:
            await clock.sleep(origin + end - clock.now())
        finally:
            DISK.full = False
            emit("disk", full=False)


async def run(spec: dict[str, Any]) -> None:
    """Run one life of the soaked engine until SIGTERM."""
    clock = SharedClock(SharedTimeline.open(Path(spec["timeline"])))
    settings = load_settings(None).with_values(spec["settings"], source="soak")
    state_dir = Path(spec["state_dir"])
    runtime = EngineRuntime(settings, state_dir, clock)

    def on_alert(alert: Alert) -> None:
        emit("alert", type=alert.type, severity=alert.severity.value, ts=clock.now())

    runtime.alerts.subscribe(on_alert)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = await runtime.start()
    tasks: list[asyncio.Task[None]] = []
    try:
        engine.store.add_durable_listener(
            lambda seq, key, reason: emit("ack", seq=seq, key=key, reason=reason)
        )
        # Main reconciled is what the soak waits for: each account starts on its own, and a mirror
        # whose API is down (the outage) must not hold back the protection of main.
        await engine.manager.wait_ready("main")
        emit("ready", tag=engine.manager.tag)
        origin = float(spec["origin"])
        trades = [PlannedTrade(**t) for t in spec["trades"]]
        marker = Path(spec["marker"])
        tasks.append(
            asyncio.create_task(open_planned(engine.manager, trades, origin, marker, clock, spec["symbols"]))
        )
        tasks.append(asyncio.create_task(full_disk(spec["disk_full"], origin, clock)))
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        DISK.full = False
        await runtime.stop()


class SimTimeFormatter(logging.Formatter):
    """Stamps each line with the simulated time (the soak's timeline), which the report speaks in."""

    def __init__(self, fmt: str, timeline: SharedTimeline) -> None:
        super().__init__(fmt)
        self.timeline = timeline

    def format(self, record: logging.LogRecord) -> str:
        record.simtime = iso_utc(self.timeline.sim_now())
        return super().format(record)


def main(argv: Sequence[str]) -> int:
    """Entry point: the spec file's path is the only argument."""
    spec = json.loads(Path(argv[1]).read_text())
    handler = logging.StreamHandler(sys.stderr)
    line = f"%(simtime)s {spec['role']} %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(SimTimeFormatter(line, SharedTimeline.open(Path(spec["timeline"]))))
    logging.basicConfig(level=logging.INFO, handlers=[handler])  # the work dir is for diagnosis
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(spec))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
