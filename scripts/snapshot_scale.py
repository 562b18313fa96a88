#!/usr/bin/env python3
"""What one dashboard snapshot build costs with N open positions (issue 17: p99 < 50 ms at 1000).

The engine runs on the embedded simulator on a virtual clock, as ``opconsole bench`` runs it (the
bench's workload: one conservative trade per synthetic symbol, ``sim.latency = "realistic"``, the
mirror on, every toggle of ``--profile``). Phase one opens the N trades (a few real minutes at 1000:
the venue's 10 orders/s in simulated time); with ``--state-cache DIR`` its state directory is kept
there and reused by the next run with the same N, seed and profile. Phase two restarts the engine
on a copy of that state, lets it reconcile, then builds ``--builds`` snapshots, driving the clock
``--step`` simulated seconds between two (the marks move, the ticker stream writes them through):

* ``build_cpu_ms``: the build's own CPU, as ``opconsole bench`` counts it
  (``engine/commands/bench/build_cpu.py``): the thread's CPU time of every step the event loop ran
  for the build's task and the tasks it started (the cache's loads, the simulated venue's reads in
  them);
* ``cpu_ms``: ``time.process_time`` around each build (the loop is driven while it awaits a read,
  so engine work that was due meanwhile is in it too: an upper bound of the build's own CPU);
* ``real_ms``: the wall time of the same;
* ``virtual_ms``: the simulated time the build waited for venue reads (0 when the cache served it);
* ``gc_ms``: the garbage collector's pauses while the build ran (whoever's allocation set them off).

Medians and p99s are printed as JSON; ``--cprofile FILE`` also writes a cProfile of the builds
(``python -m pstats FILE``); ``--gc-freeze`` calls ``gc.freeze()`` once the engine reconciled, to
see what the collector's full passes over a thousand positions' state cost the builds. Others may
share the machine: compare CPU times, not wall times.

Usage::

    .venv/bin/python scripts/snapshot_scale.py --positions 300 --builds 200 --state-cache /tmp/snap300
    .venv/bin/python scripts/snapshot_scale.py --positions 1000 --builds 200 \\
        --state-cache /tmp/snap1000 --cprofile /tmp/snap1000.prof
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.commands.bench.build_cpu import BuildCpu, in_build  # noqa: E402
from engine.commands.bench.profile_run import WARMUP_LIMIT_S, WARMUP_STEP_S  # noqa: E402
from engine.commands.bench.stats import percentile  # noqa: E402
from engine.commands.bench.workload import Opener, Workload, bench_settings, plan  # noqa: E402
from engine.core.clock import VirtualClock  # noqa: E402
from engine.core.settings import Settings  # noqa: E402
from engine.runtime.assembly import EngineRuntime, make_clock  # noqa: E402

RECONCILE_LIMIT_S = 600.0
"""Simulated seconds the restarted engine gets to reconcile before the builds start."""


class GcPauses:
    """Adds up the garbage collector's pauses (``gc.callbacks``) while it is entered."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def _callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def _settings(state_dir: Path, positions: int, seed: int, profile: str) -> Settings:
    return bench_settings(Workload(positions=positions, seed=seed), profile, state_dir)


def _virtual_clock(settings: Settings, state_dir: Path) -> VirtualClock:
    clock = make_clock("virtual", settings, state_dir)
    if not isinstance(clock, VirtualClock):  # make_clock("virtual") always is one
        raise RuntimeError("a virtual clock was expected")
    return clock


async def open_positions(state_dir: Path, positions: int, seed: int, profile: str) -> int:
    """Phase one: open the bench's ``positions`` trades in ``state_dir``; returns how many opened."""
    settings = _settings(state_dir, positions, seed, profile)
    clock = _virtual_clock(settings, state_dir)
    runtime = EngineRuntime(settings, state_dir, clock)
    engine = await runtime.start()
    opener = Opener(plan(positions, seed))
    opening = asyncio.ensure_future(opener.run(engine.manager, clock))
    began = clock.now()
    try:
        while not opening.done() and clock.now() < began + WARMUP_LIMIT_S:
            await clock.drive(until=clock.now() + WARMUP_STEP_S)
    finally:
        if not opening.done():
            opening.cancel()
        await clock.drive_while(runtime.stop())
    print(f"phase one: {opener.opened} of {positions} trades opened", file=sys.stderr)
    return opener.opened


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    p99 = percentile(values, 99)
    return {
        "p50": round(median(values), 2) if values else None,
        "p99": None if p99 is None else round(p99, 2),
        "max": round(max(values), 2) if values else None,
    }


async def measure(
    state_dir: Path,
    positions: int,
    seed: int,
    profile: str,
    builds: int,
    step_s: float,
    profiler: cProfile.Profile | None,
    gc_freeze: bool = False,
) -> dict[str, Any]:
    """Phase two: restart on ``state_dir``, reconcile, time ``builds`` snapshot builds."""
    settings = _settings(state_dir, positions, seed, profile)
    clock = _virtual_clock(settings, state_dir)
    runtime = EngineRuntime(settings, state_dir, clock)
    engine = await runtime.start()
    cpu_ms: list[float] = []
    build_cpu_ms: list[float] = []
    gc_ms: list[float] = []
    real_ms: list[float] = []
    virtual_ms: list[float] = []
    try:
        began = clock.now()
        while runtime.state.value == "reconciling" and clock.now() < began + RECONCILE_LIMIT_S:
            await clock.drive(until=clock.now() + 1.0)
        await clock.drive_while(engine.dashboard.snapshot())  # the cache filled: the steady state
        if gc_freeze:  # what-if: the state built so far leaves the collector's sight (gc.freeze)
            gc.collect()
            gc.freeze()
        for _ in range(builds):
            await clock.drive(until=clock.now() + step_s)
            started_virtual = clock.now()
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            with BuildCpu() as own, GcPauses() as pauses:
                snapshot = await clock.drive_while(in_build(engine.dashboard.snapshot))
            if profiler is not None:
                profiler.disable()
            cpu_ms.append((time.process_time() - started_cpu) * 1000.0)
            build_cpu_ms.append(own.seconds * 1000.0)
            gc_ms.append(pauses.seconds * 1000.0)
            real_ms.append((time.perf_counter() - started_wall) * 1000.0)
            virtual_ms.append((clock.now() - started_virtual) * 1000.0)
        shown = len(snapshot["positions"]) if builds else 0
    finally:
        await clock.drive_while(runtime.stop())
    return {
        "positions": positions,
        "positions_shown": shown,
        "profile": profile,
        "builds": builds,
        "build_cpu_ms": _spread(build_cpu_ms),
        "cpu_ms": _spread(cpu_ms),
        "real_ms": _spread(real_ms),
        "virtual_ms": _spread(virtual_ms),
        "gc_ms": _spread(gc_ms),
        "gc_freeze": gc_freeze,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the two phases and print the figures as one JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--positions", type=int, default=300)
    parser.add_argument("--builds", type=int, default=200, help="snapshot builds timed")
    parser.add_argument("--step", type=float, default=0.5, help="simulated seconds between two builds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", default="optimized", choices=("optimized", "baseline"))
    parser.add_argument("--state-cache", default=None, help="keep phase one's state here, reuse it next time")
    parser.add_argument("--cprofile", default=None, metavar="FILE", help="write a cProfile of the builds")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() once reconciled (what the GC pauses cost)"
    )
    args = parser.parse_args(argv)
    cache = Path(args.state_cache) if args.state_cache else None
    profiler = cProfile.Profile() if args.cprofile else None
    with tempfile.TemporaryDirectory(prefix="snapshot-scale-") as tmp:
        state_dir = Path(tmp) / "state"
        tag = f"{args.positions}-{args.seed}-{args.profile}"
        cached = cache / tag if cache is not None else None
        if cached is not None and (cached / "sim-exchange.json").exists():
            shutil.copytree(cached, state_dir)
            (state_dir / "opconsole.lock").unlink(missing_ok=True)
        else:
            state_dir.mkdir()
            asyncio.run(open_positions(state_dir, args.positions, args.seed, args.profile))
            if cached is not None:
                shutil.copytree(state_dir, cached, dirs_exist_ok=True)
        figures = asyncio.run(
            measure(
                state_dir,
                args.positions,
                args.seed,
                args.profile,
                args.builds,
                args.step,
                profiler,
                args.gc_freeze,
            )
        )
    if profiler is not None:
        profiler.dump_stats(args.cprofile)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
