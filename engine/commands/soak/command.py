"""``opconsole soak``: a simulated day of trading under faults and kill -9, every invariant checked.

The exchange outlives the engine: this process runs the simulated market as the fake Bybit V5
server; the engine runs over the Bybit venue (the real pybit client) in a child process, which is
killed with SIGKILL every 10-20 simulated minutes and restarted on the same state directory.

Time: both processes read one shared timeline (:mod:`engine.core.shared_clock`) that runs the market
``speed`` times faster than the wall clock, so a day takes minutes. While a killed engine boots, the
timeline runs at 1x: a restart costs the market the time it costs in production (a second or two),
not ``speed`` times more; once the new engine has reconciled, the timeline speeds up again.

Faults on the plan's seeded schedule (:mod:`engine.commands.soak.plan`): transient errors and late
answers on 1% of private calls, 10006 bursts, a dropped private stream every 30 minutes, a silent
one, a 10-minute mirror outage, a full disk, a second engine trading the same account. After every
restart and at the end the invariants (:mod:`engine.commands.soak.invariants`) are checked; the
exchange-side protection is sampled throughout (:mod:`engine.commands.soak.watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.core.clock import RealClock, parse_iso_utc
from engine.core.settings import Settings, load_settings
from engine.core.shared_clock import SharedClock, SharedTimeline
from engine.sim.exchange import SimExchange
from engine.sim.server.app import BybitServer
from engine.sim.server.command import serving
from engine.trading.ledger import Ledger
from engine.venue.bybit.keys import settings_prefix

from .invariants import (
    StateView,
    duplicate_link_ids,
    ledger_mismatches,
    lost_acks,
    mirror_disagreements,
    orphan_orders,
    unclean_store,
)
from .plan import Fault, PlannedTrade, SoakPlan, make_plan
from .process import EngineProcess
from .watch import SAMPLE_S, ProtectionWatch

SPEED = 30.0
"""Simulated seconds per real second while the engine runs (the default of ``--speed``). The
stop-loss bound (one monitor interval, 5 s) is 170 ms of real time at 30x: a scheduling hiccup of
the shared 2-core machine must not pass for the engine's slowness."""
TIMEOUT_S = 30.0
"""The engine's HTTP timeout in simulated seconds (1 real s at 30x)."""
LATE_ANSWER_S = 2 * TIMEOUT_S
"""How late a 'timed out' call is answered: after the client gave up."""
STALE_AFTER_S = 90.0
"""The engine's stream staleness bound, simulated seconds (a silent stream is found within it)."""
VOLATILITY = 2.0
"""Annualised: trades reach their TPs and stops within the hour, as a soak needs."""
SETTLE_S = 60.0
"""Simulated seconds the market is frozen at the end before the last checks."""
RECHECK_S = 90.0
"""A mirror disagreement counts only if it is still there this much later (fills on both accounts
a moment apart are not drift)."""
OUTAGE_GRACE_S = 120.0
"""After the mirror outage the mirror may take this long to be repaired before it must agree."""
ACCOUNTS = ("main", "mirror")
WALL = RealClock()
"""What the soak's own durations (real seconds) are measured on; the market runs on the timeline."""


@dataclass(slots=True)
class SoakReport:
    """What happened and which invariants broke (``--json`` prints it)."""

    hours: float
    seed: int
    speed: float
    trades_planned: int = 0
    trades_opened: int = 0
    trades_refused: int = 0
    trades_closed: int = 0
    kills: int = 0
    restarts: int = 0
    acks_checked: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    critical_alerts: Counter[str] = field(default_factory=Counter)
    violations: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)
    worst_unprotected_s: float = 0.0
    worst_unprotected: str = ""
    worst_unprotected_in_outage_s: float = 0.0
    real_seconds: float = 0.0
    interrupted: bool = False
    """Stopped by a signal before the end: the counts are those seen up to then."""
    boot_seconds: list[float] = field(default_factory=list)
    """Real seconds from each start of the engine to main reconciled (the market runs at 1x)."""
    work_dir: str = ""

    def violate(self, kind: str, lines: list[str]) -> None:
        """Count ``lines`` as violations of ``kind`` (the first ones are kept for the report)."""
        if not lines:
            return
        self.violations[kind] += len(lines)
        self.details += [f"{kind}: {line}" for line in lines[: max(0, 50 - len(self.details))]]

    @property
    def ok(self) -> bool:
        """Every invariant held, over the whole planned run."""
        return not self.violations and not self.interrupted

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "hours": self.hours,
            "seed": self.seed,
            "speed": self.speed,
            "real_seconds": round(self.real_seconds, 1),
            "boot_seconds": {
                "median": round(statistics.median(self.boot_seconds), 2) if self.boot_seconds else None,
                "max": round(max(self.boot_seconds), 2) if self.boot_seconds else None,
            },
            "trades": {
                "planned": self.trades_planned,
                "opened": self.trades_opened,
                "refused": self.trades_refused,
                "closed": self.trades_closed,
            },
            "kills": self.kills,
            "restarts": self.restarts,
            "acks_checked": self.acks_checked,
            "faults": dict(sorted(self.faults.items())),
            "alerts": dict(sorted(self.alerts.items())),
            "critical_alerts": dict(sorted(self.critical_alerts.items())),
            "violations": dict(sorted(self.violations.items())),
            "violation_details": self.details,
            "worst_unprotected_s": round(self.worst_unprotected_s, 1),
            "worst_unprotected": self.worst_unprotected,
            "worst_unprotected_in_outage_s": round(self.worst_unprotected_in_outage_s, 1),
            "ok": self.ok,
            "interrupted": self.interrupted,
            "work_dir": self.work_dir,
        }

    def table(self) -> str:
        """The human summary."""
        lines = [
            f"opconsole soak: {self.hours:g} simulated hour(s), seed {self.seed}, {self.speed:g}x, "
            f"{self.real_seconds / 60:.1f} real minutes",
            f"  trades: {self.trades_opened} opened of {self.trades_planned} planned "
            f"({self.trades_refused} refused or skipped), {self.trades_closed} closed",
            f"  kills: {self.kills}, restarts: {self.restarts}, critical saves checked: {self.acks_checked}",
            f"  engine start to main reconciled (at 1x): median "
            f"{statistics.median(self.boot_seconds or [0]):.1f} s, max {max(self.boot_seconds or [0]):.1f} s",
            "  faults: " + (", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"),
            "  critical alerts: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.critical_alerts.items())) or "none"),
            f"  worst unprotected: {self.worst_unprotected_s:.1f} s {self.worst_unprotected}".rstrip()
            + f" (during the mirror outage: {self.worst_unprotected_in_outage_s:.1f} s)",
        ]
        if self.interrupted:
            lines.append("  INTERRUPTED before the end: the figures are those seen up to then")
        if self.ok:
            lines.append("  every invariant held")
        else:
            lines.append("  VIOLATIONS: " + ", ".join(f"{k} {v}" for k, v in sorted(self.violations.items())))
            lines += [f"    {line}" for line in self.details[:20]]
        lines.append(f"  files: {self.work_dir}")
        return "\n".join(lines)


def fake_keys() -> dict[str, tuple[str, str]]:
    """Fresh throw-away API keys for the two simulated accounts: {key: (secret, account)}."""
    return {f"soak{account}{secrets.token_hex(6)}": (secrets.token_hex(16), account) for account in ACCOUNTS}


def child_env(settings: Settings, keys: dict[str, tuple[str, str]]) -> dict[str, str]:
    """The engine child's environment: ours without any real key, plus the soak's fake keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_", "OPCONSOLE_"))}
    for key, (secret, account) in keys.items():
        prefix = settings_prefix(account)
        env[settings.get(f"{prefix}.api_key_env")] = key
        env[settings.get(f"{prefix}.api_secret_env")] = secret
    return env


def market_values(seed: int, plan: SoakPlan) -> dict[str, Any]:
    """The simulated market's settings."""
    return {
        "sim.seed": seed,
        "sim.symbols": [*plan.symbols, plan.intruder_symbol],
        "sim.synthetic_symbols": 0,
        "sim.volatility": VOLATILITY,
        "sim.latency": "none",  # the loopback round trip is the latency
        "sim.save_interval_s": 3600.0,
        "mirror.enabled": True,
    }


def engine_values(server: BybitServer, seed: int, mirror: bool) -> dict[str, Any]:
    """An engine's settings: the Bybit venue against the soak's server. ``seed`` draws the instance
    tag (reproducible on a simulated market): two engines need two seeds, or they share a tag."""
    return {
        "sim.seed": seed,
        "venue.kind": "bybit",
        "venue.base_url": server.base_url,
        "venue.ws_url": server.ws_url,
        "venue.timeout_s": TIMEOUT_S,
        "venue.ws_stale_after_s": STALE_AFTER_S,
        "sim.demo_trades": 0,
        "mirror.enabled": mirror,
        "metrics.port": 0,
    }


class Soak:
    """One soak run (see the module doc)."""

    def __init__(
        self, plan: SoakPlan, base: Settings, work_dir: Path, speed: float, log: Callable[[str], None]
    ):
        self.plan = plan
        self.base = base
        self.work = work_dir
        self.speed = speed
        self.log = log
        self.report = SoakReport(
            plan.hours, plan.seed, speed, trades_planned=len(plan.trades), work_dir=str(work_dir)
        )
        self.origin = parse_iso_utc(base.get("sim.epoch"))
        self.timeline = SharedTimeline.create(work_dir / "timeline.bin", self.origin, speed)
        self.clock = SharedClock(self.timeline)
        self.limit_s = float(base.get("monitor.baseline_interval_s"))
        self._rechecks: list[asyncio.Task[None]] = []
        self._processes: list[EngineProcess] = []

    # --- the run ---------------------------------------------------------------------------------
    async def run(self) -> SoakReport:
        """Run the whole soak and return its report."""
        started = WALL.monotonic()
        market = self.base.with_values(market_values(self.plan.seed, self.plan), source="soak")
        exchange = SimExchange.from_settings(market, self.clock, self.work / "exchange")
        keys = fake_keys()
        for _secret, account in keys.values():
            exchange.ensure_account(account, market.section("sim.balances").get(account))
        server = BybitServer(exchange, keys, self.clock)
        server.faults.flaky_rate = self.plan.flaky_rate
        server.faults.flaky_late_s = LATE_ANSWER_S
        server.faults.flaky_rng.seed(f"soak-flaky:{self.plan.seed}")
        async with serving(server):
            market_task = asyncio.create_task(exchange.run(), name="soak-market")
            env = child_env(self.base, keys)
            main = self._engine("main", server, env, self.plan.trades, self.plan.symbols, mirror=True)
            watch = ProtectionWatch(exchange, ACCOUNTS, self.limit_s, self._in_outage)
            sampler = asyncio.create_task(self._sample(watch))
            try:
                await self._restart(main, exchange, first=True)
                for at, action in self._events(main, server, exchange):
                    await self._until(at)
                    await action()
                # The end: the market stops, the engine settles, then stops cleanly.
                market_task.cancel()
                await asyncio.gather(market_task, return_exceptions=True)
                await self.clock.sleep(SETTLE_S)
                watch.sample(self.clock.now())
                await main.stop()
                await asyncio.gather(*self._rechecks, return_exceptions=True)
                self._final_checks(main, exchange)
            finally:
                # Also on an interruption: no engine outlives the soak, and the report says what
                # was seen up to then.
                sampler.cancel()
                market_task.cancel()
                for task in self._rechecks:
                    task.cancel()
                await asyncio.gather(sampler, market_task, *self._rechecks, return_exceptions=True)
                for process in self._processes:
                    await process.kill()
                watch.finish(self.clock.now())
                self._protection(watch)
                self.report.alerts = main.reports.alerts
                self.report.critical_alerts = main.reports.critical_alerts
                self.report.trades_opened = main.reports.trades_opened
                self.report.trades_refused = main.reports.trades_refused
                self.report.faults.update(server.faults.injected)
                self.report.real_seconds = WALL.monotonic() - started
        return self.report

    def _engine(
        self,
        role: str,
        server: BybitServer,
        env: dict[str, str],
        trades: tuple[PlannedTrade, ...],
        symbols: tuple[str, ...],
        *,
        mirror: bool,
    ) -> EngineProcess:
        state_dir = self.work / role
        spec = {
            "role": role,
            "state_dir": str(state_dir),
            "timeline": str(self.timeline.path),
            "origin": self.origin,
            "settings": engine_values(server, self.plan.seed + (0 if role == "main" else 1), mirror),
            "trades": [asdict(t) for t in trades],
            "symbols": list(symbols),
            "disk_full": [list(w) for w in self.plan.windows("disk_full")] if role == "main" else [],
            "marker": str(self.work / f"{role}-trades-sent.txt"),
        }
        spec_path = self.work / f"{role}-spec.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        process = EngineProcess(role, spec_path, state_dir, env, self.work / f"{role}.log")
        self._processes.append(process)
        return process

    def _events(
        self, main: EngineProcess, server: BybitServer, exchange: SimExchange
    ) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
        """Every scheduled action, by time (seconds into the soak), the end last."""
        events: list[tuple[float, Callable[[], Awaitable[None]]]] = []
        for at in self.plan.kills:
            events.append((at, lambda: self._kill(main, exchange)))
        for fault in self.plan.faults:
            events += self._fault_events(fault, server, exchange, main)
        events.sort(key=lambda e: e[0])
        events.append((self.plan.seconds, _nothing))
        return events

    def _fault_events(
        self, fault: Fault, server: BybitServer, exchange: SimExchange, main: EngineProcess
    ) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
        kind, account = fault.kind, fault.account

        async def count() -> None:
            self.report.faults[kind] += 1

        if kind == "rate_limit_burst":

            async def burst() -> None:
                await count()
                server.error_burst(account, fault.calls, 10006)

            return [(fault.at, burst)]
        if kind == "stream_drop":

            async def drop() -> None:
                await count()
                await server.drop_streams(account)

            return [(fault.at, drop)]
        if kind == "stream_silent":

            async def mute() -> None:
                await count()
                server.mute_streams(account)

            return [(fault.at, mute)]
        if kind == "mirror_outage":

            async def down() -> None:
                await count()
                await server.set_outage(account, True)

            async def up() -> None:
                await server.set_outage(account, False)

            return [(fault.at, down), (fault.at + fault.duration_s, up)]
        if kind == "disk_full":  # the engine child makes its own disk full (it knows the windows)
            return [(fault.at, count)]
        if kind == "intruder":
            intruder: list[EngineProcess] = []

            async def arrive() -> None:
                await count()
                trade = PlannedTrade(0, fault.at + 20.0, self.plan.intruder_symbol, "Buy", "fast", 150.0)
                process = self._engine(
                    "intruder", server, main.env, (trade,), (self.plan.intruder_symbol,), mirror=False
                )
                intruder.append(process)
                await process.start()
                if not await process.wait_ready():
                    self.report.violate("intruder", ["the second engine did not start"])

            async def leave() -> None:
                for process in intruder:
                    await process.stop()
                seen = {k: n for k, n in main.reports.critical_alerts.items() if k.startswith("foreign")}
                if not seen:
                    self.report.violate(
                        "intruder_undetected",
                        ["another engine traded the account and no critical alert said so"],
                    )

            return [(fault.at, arrive), (fault.at + fault.duration_s, leave)]
        raise ValueError(f"unknown fault kind {kind!r}")

    async def _until(self, at: float) -> None:
        delay = self.origin + at - self.clock.now()
        if delay > 0:
            await self.clock.sleep(delay)

    async def _sample(self, watch: ProtectionWatch) -> None:
        while True:
            watch.sample(self.clock.now())
            await self.clock.sleep(SAMPLE_S)

    def _in_outage(self, account: str, when: float) -> bool:
        if account != "mirror":
            return False
        t = when - self.origin
        return any(start <= t <= end + OUTAGE_GRACE_S for start, end in self.plan.windows("mirror_outage"))

    # --- kills and restarts ------------------------------------------------------------------------
    async def _kill(self, main: EngineProcess, exchange: SimExchange) -> None:
        self.timeline.set_speed(1.0)  # the boot costs the market what it costs in production
        await main.kill()
        self.report.kills += 1
        view = StateView.read(main.state_dir)
        self._check_state(main, view)
        await self._restart(main, exchange, first=False)
        hours = (self.clock.now() - self.origin) / 3600.0
        self.log(
            f"soak: {hours:5.2f}/{self.plan.hours:g} h  kills {self.report.kills}  "
            f"violations {sum(self.report.violations.values())}"
        )

    async def _restart(self, main: EngineProcess, exchange: SimExchange, *, first: bool) -> None:
        self.timeline.set_speed(1.0)
        booting = WALL.monotonic()
        await main.start()
        ready = await main.wait_ready()
        self.timeline.set_speed(self.speed)
        self.report.boot_seconds.append(WALL.monotonic() - booting)
        if not first:
            self.report.restarts += 1
        if not ready:
            self.report.violate("restart", [f"the engine was not ready after restart {self.report.restarts}"])
            return
        self.report.violate("duplicate_order", duplicate_link_ids(exchange, ACCOUNTS))
        if not first:
            self._rechecks.append(asyncio.create_task(self._agreement(main, exchange)))

    def _check_state(self, main: EngineProcess, view: StateView) -> None:
        self.report.acks_checked += len(main.acks)
        self.report.violate("lost_critical_event", lost_acks(main.acks, view))
        self.report.violate("store", unclean_store(view))

    async def _agreement(self, main: EngineProcess, exchange: SimExchange) -> None:
        """Main and mirror agree (outside the outage), confirmed by a second look."""
        if self._in_outage("mirror", self.clock.now()):
            return
        first = set(mirror_disagreements(exchange, StateView.read(main.state_dir)))
        if not first:
            return
        await self.clock.sleep(RECHECK_S)
        if self._in_outage("mirror", self.clock.now()):
            return
        still = first & set(mirror_disagreements(exchange, StateView.read(main.state_dir)))
        self.report.violate("mirror_disagrees", sorted(still))

    # --- the end -----------------------------------------------------------------------------------
    def _final_checks(self, main: EngineProcess, exchange: SimExchange) -> None:
        view = StateView.read(main.state_dir)
        self._check_state(main, view)
        self.report.violate("duplicate_order", duplicate_link_ids(exchange, ACCOUNTS))
        self.report.violate("orphan_order", orphan_orders(exchange, ACCOUNTS, view))
        self.report.violate("mirror_disagrees", mirror_disagreements(exchange, view))
        self.report.violate(
            "ledger", ledger_mismatches(exchange, ACCOUNTS, view, self.origin, self.plan.symbols)
        )
        self.report.trades_closed = len(Ledger.from_state(view.state).trades)

    def _protection(self, watch: ProtectionWatch) -> None:
        self.report.violate(
            "unprotected",
            [
                f"{s.account} {s.symbol} without a full stop for {s.seconds:.1f} s from "
                f"{(s.start - self.origin) / 3600:.2f} h"
                for s in watch.violations()
            ],
        )
        worst = watch.worst()
        if worst is not None:
            self.report.worst_unprotected_s = worst.seconds
            self.report.worst_unprotected = f"({worst.account} {worst.symbol})"
        worst_any = watch.worst(exempt=True)
        if worst_any is not None and worst_any.seconds > self.report.worst_unprotected_s:
            self.report.worst_unprotected_in_outage_s = worst_any.seconds


async def _nothing() -> None:
    return None


def run_soak(
    config: str | None,
    hours: float,
    seed: int,
    *,
    as_json: bool,
    speed: float = SPEED,
    work_dir: Path | None = None,
) -> int:
    """``opconsole soak``: run it, print the report; 0 only if every invariant held."""
    base = load_settings(config)
    work = work_dir or Path(tempfile.mkdtemp(prefix="opconsole-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    plan = make_plan(hours, seed)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    soak = Soak(plan, base, work, speed, log)
    report = asyncio.run(_interruptible(soak))
    print(json.dumps(report.as_dict(), indent=1) if as_json else report.table(), flush=True)
    return 0 if report.ok else 1


async def _interruptible(soak: Soak) -> SoakReport:
    """Run ``soak``; SIGINT, SIGTERM or SIGHUP end it early with the report so far (not ok)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if task is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, task.cancel)
    try:
        return await soak.run()
    except asyncio.CancelledError:  # SIGINT too: asyncio.run cancels the main task on Ctrl-C
        soak.report.interrupted = True
        return soak.report
