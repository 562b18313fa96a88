#!/usr/bin/env python3
"""What the console costs, and whether it ever stands in the way of a stop-loss (issue 16, 13-15).

Three measurements, each on the embedded simulator:

* ``idle``: the real ``opconsole`` command in a pseudo-terminal of the given size (160x50 and 80x24
  by default), a fresh state directory, the simulator's demo trades, nobody at the keyboard. After a
  warm-up it samples the process's CPU time (user + system, every thread: UI, engine, store) over
  ``--seconds`` and reports the share of one core; the same engine headless (``opconsole run
  --headless``) is measured over the same window for reference.
* ``frames``: the frame time of a refresh with every mark changed, at 15 and 1000 positions (the
  table widget's benchmark, ``scripts/console_frame_bench.py``, is what measures it; this runs it).
* ``reaction``: the console open at 160x50 (Textual headless), the engine on its own thread, the
  real clock, ``--positions`` conservative trades (one per synthetic symbol) refreshing twice a
  second, for ``--seconds``. Every order request the engine sends is timed (wall clock); the reaction
  is the time from the execution that calls for an action (TP1 fill -> stop to breakeven, or the
  stop cancelled when TP1 closed the whole position; SL fill -> cancel the rest) to the request that
  carries it, matched as in ``opconsole bench`` (``engine/commands/bench/requests.py``).
  ``budget_waits`` counts the calls that waited for the rate budget (the venue's 10 orders/s): with
  it high, reactions queue for the venue.

  ``--modes`` picks how phase two runs: ``thread`` (as shipped), ``shared`` (the engine on the UI's
  loop) and ``headless`` keep the simulated exchange embedded in the engine's process, where its
  matching, price feed and journal compete with the engine and the UI for the GIL and the CPU.
  ``server`` (console open, engine thread) and ``server-headless`` move the market into an
  ``opconsole sim-server`` process (the fake Bybit V5 REST + WebSocket server, on 127.0.0.1 and a
  free port) serving phase one's market, and the engine reaches it through the Bybit venue (pybit),
  with its own state directory, as a real deployment reaches Bybit: the exchange's CPU is not the
  engine's, and the reaction includes the loopback hop of the private stream. The executions are
  read from the server's market, saved when it stops.

Usage::

    .venv/bin/python scripts/console_cost.py idle [--seconds 60] [--sizes 160x50,80x24]
    .venv/bin/python scripts/console_cost.py reaction [--positions 1000] [--seconds 120]
    .venv/bin/python scripts/console_cost.py reaction --modes server,server-headless
    .venv/bin/python scripts/console_cost.py frames
    .venv/bin/python scripts/console_cost.py all
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

WARMUP_S = 15.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time so far, from /proc: of the whole process (all its threads), or of its
    thread ``tid`` (the UI's is the main thread: its id is the process id)."""
    stat = Path(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _drain(fd: int, stop: threading.Event) -> None:
    """Read the terminal's output and throw it away, as a terminal emulator would consume it."""
    while not stop.is_set():
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def _spawn_in_terminal(argv: Sequence[str], columns: int, rows: int) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": str(rows)}
    process = subprocess.Popen(
        list(argv), stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True, cwd=ROOT
    )
    os.close(slave)
    return process, master


def _share_of_core(pid: int, seconds: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def measure_idle(columns: int, rows: int, seconds: float, config: str | None = None) -> dict[str, Any]:
    """The console left alone at ``columns`` x ``rows``: the share of one core it uses."""
    opconsole = shutil.which("opconsole", path=str(ROOT / ".venv" / "bin")) or "opconsole"
    with tempfile.TemporaryDirectory(prefix="console-cost-") as state:
        argv = [opconsole, "--state-dir", state, *(["--config", config] if config else [])]
        process, master = _spawn_in_terminal(argv, columns, rows)
        stop = threading.Event()
        reader = threading.Thread(target=_drain, args=(master, stop), daemon=True)
        reader.start()
        try:
            time.sleep(WARMUP_S)
            if process.poll() is not None:
                raise RuntimeError(f"opconsole exited early with {process.returncode}")
            ui_before = cpu_seconds(process.pid, process.pid)
            share = _share_of_core(process.pid, seconds)
            ui_share = (cpu_seconds(process.pid, process.pid) - ui_before) / seconds
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
            stop.set()
            os.close(master)
        positions = _open_positions(Path(state))  # the simulator saved its state on the way out
    return {"size": f"{columns}x{rows}", "cpu_share": share, "ui_share": ui_share, "positions": positions}


def _open_positions(state_dir: Path) -> int | None:
    """How many positions the simulator holds (from its state file), to say what was on screen."""
    path = state_dir / "sim-exchange.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return sum(
        1
        for account in data.get("accounts", [])
        for position in (account.get("positions") or {}).values()
        if float(position.get("size", 0) or 0) != 0  # negative: short
    )


def measure_headless(seconds: float) -> float:
    """The same engine with no console, over the same window: the share of one core."""
    opconsole = shutil.which("opconsole", path=str(ROOT / ".venv" / "bin")) or "opconsole"
    with tempfile.TemporaryDirectory(prefix="console-cost-headless-") as state:
        argv = [
            opconsole,
            "run",
            "--headless",
            "--state-dir",
            state,
            "--duration",
            str(WARMUP_S + seconds + 30),
        ]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            time.sleep(WARMUP_S)
            return _share_of_core(process.pid, seconds)
        finally:
            process.terminate()
            process.wait(30)


# --- reaction latency with the console open ---------------------------------------------------------

MARGIN_EACH = 20.0
"""USDT per trade: a thousand trades fit the account (``sim.balances.main`` is raised to match)."""


def _reaction_settings(state_dir: Path, positions: int, seed: int, volatility: float, epoch: str) -> Any:
    from engine.core.settings import load_settings

    values: dict[str, Any] = {
        "sim.latency": "none",
        "sim.seed": seed,
        "sim.epoch": epoch,
        "sim.demo_trades": 0,
        "sim.synthetic_symbols": positions,
        "sim.volatility": volatility,
        "sim.balances.main": max(10_000.0, positions * MARGIN_EACH * 3),
        "mirror.enabled": False,
    }
    return load_settings(None, state_dir).with_values(values, source="console_cost")


async def _open_positions_fast(state_dir: Path, positions: int, seed: int) -> float:
    """Phase one, on a virtual clock (minutes of Bybit's 10 orders/s in seconds): open ``positions``
    conservative trades, one per synthetic symbol, ending at the present wall time; returns how many
    simulated seconds it took. The console then continues the same market on the real clock."""
    from dataclasses import replace

    from engine.commands.bench.workload import plan
    from engine.core.clock import VirtualClock, iso_utc
    from engine.runtime.assembly import EngineRuntime
    from engine.runtime.scenario import Scenario

    trades = [replace(t, at=0.5 * i, margin=MARGIN_EACH) for i, t in enumerate(plan(positions, seed))]
    budget_s = 60.0 + positions * 1.2  # Bybit's 10 orders/s: entries, stop and take-profits of each
    start = time.time() - budget_s
    # calm while the positions open, so they are all still open when the console starts
    settings = _reaction_settings(state_dir, positions, seed, 0.05, iso_utc(start))
    clock = VirtualClock(start=start)
    runtime = EngineRuntime(settings, state_dir, clock)
    runtime.scenario = Scenario(seed, tuple(trades))
    await runtime.start()
    try:
        manager = runtime.started().manager
        while clock.now() < start + budget_s:
            await clock.drive(until=clock.now() + 10.0)
            if len(manager.monitors) >= positions and clock.now() > start + trades[-1].at + 30.0:
                break
        opened = len(manager.monitors)
    finally:
        await clock.drive_while(runtime.stop())
    print(
        f"phase one: {opened} positions opened in {clock.now() - start:.0f} simulated seconds",
        file=sys.stderr,
    )
    return clock.now() - start


MODES = ("thread", "shared", "headless", "server", "server-headless")
"""How phase two runs: the console with the engine on its own thread (as shipped), the console with
the engine on the UI's loop (``ui.engine_thread = false``, as before), or the engine alone; the last
two are ``thread`` and ``headless`` with the market in an ``opconsole sim-server`` process."""
CONSOLE_MODES = ("thread", "shared", "server")
ENGINE_THREAD_MODES = ("thread", "server")
SERVER_MODES = ("server", "server-headless")

SERVER_READY_S = 120.0
"""Real seconds the sim-server may take to load phase one's market and listen."""
SERVER_STOP_S = 120.0
"""Real seconds it may take to save the market and exit on SIGINT before it is killed."""


def _move_market(state_dir: Path, market_dir: Path) -> None:
    """Move phase one's market (the simulator's state file and journal) from ``state_dir`` to
    ``market_dir``, the sim-server's: it holds the lock of the directory it serves, so the engine
    keeps its own state (monitors, ledger) in ``state_dir``."""
    from engine.sim.exchange import STATE_FILE
    from engine.sim.journal import journal_path

    market_dir.mkdir()
    for path in (state_dir / STATE_FILE, journal_path(state_dir / STATE_FILE)):
        if path.exists():
            shutil.move(path, market_dir / path.name)


@contextlib.asynccontextmanager
async def _sim_server(market: Settings, market_dir: Path, work: Path) -> AsyncIterator[dict[str, Any]]:
    """``opconsole sim-server`` over ``market_dir`` (the ``market`` settings) in a process of its
    own on a free loopback port, with throw-away keys that this process's Bybit venue uses too;
    yields the engine's venue settings. Stopped with SIGINT on the way out: it saves its market."""
    from engine.commands.soak.command import child_env, fake_keys

    env = child_env(market, fake_keys())
    os.environ.update(env)  # the keys, for the Bybit venue this process builds (read from the env)
    config = work / "market.toml"
    config.write_text(market.to_toml())
    log_path = work / "sim-server.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "console", "sim-server", "--config", str(config),
            "--state-dir", str(market_dir), "--host", "127.0.0.1", "--port", "0",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        if process.stdout is None:
            raise RuntimeError("no pipe from the sim-server")
        announce = (await asyncio.wait_for(process.stdout.readline(), SERVER_READY_S)).decode()
        urls = re.search(r"REST (\S+)\s+WebSocket (\S+)", announce)
        if urls is None:
            # its log goes with the temporary directory: quote its end
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            raise RuntimeError("the sim-server did not start:\n" + "\n".join([announce, *tail]))
        cpu_before, started = cpu_seconds(process.pid), time.monotonic()
        yield {"venue.kind": "bybit", "venue.base_url": urls[1], "venue.ws_url": urls[2]}
        share = (cpu_seconds(process.pid) - cpu_before) / (time.monotonic() - started)
        print(f"sim-server: {share:.1%} of one core while serving", file=sys.stderr)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # as Ctrl-C: the market is saved on the way out
            try:
                await asyncio.wait_for(process.wait(), SERVER_STOP_S)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _reaction(
    positions: int,
    seconds: float,
    seed: int,
    volatility: float,
    mode: str,
    cache: Path | None = None,
    warmup: float = 0.0,
) -> dict[str, Any]:
    from console.app import OperatorConsole
    from engine.commands.bench.profile_run import DECISION_KINDS, budget_waits
    from engine.commands.bench.requests import Sent, reactions, record_requests
    from engine.commands.bench.stats import percentile
    from engine.core.clock import RealClock, iso_utc
    from engine.runtime.assembly import EngineRuntime
    from engine.sim.exchange import SimExchange

    with tempfile.TemporaryDirectory(prefix="console-cost-reaction-") as tmp:
        state_dir = Path(tmp) / "state"
        if cache is not None and (cache / "sim-exchange.json").exists():
            shutil.copytree(cache, state_dir)  # phase one's positions, from an earlier run
            (state_dir / "opconsole.lock").unlink(missing_ok=True)
        else:
            state_dir.mkdir()
            await _open_positions_fast(state_dir, positions, seed)
            if cache is not None:
                shutil.copytree(state_dir, cache, dirs_exist_ok=True)
        settings = _reaction_settings(state_dir, positions, seed, volatility, iso_utc(time.time()))
        settings = settings.with_values(
            {"ui.engine_thread": mode in ENGINE_THREAD_MODES}, source="console_cost"
        )
        market_settings = settings
        market_dir = Path(tmp) / "market" if mode in SERVER_MODES else None
        market: SimExchange | None = None  # the server's market, as this process can read it
        async with contextlib.AsyncExitStack() as server:
            if market_dir is not None:
                _move_market(state_dir, market_dir)
                # phase one's orders, read before the server serves them (an amend may name only the id)
                market = SimExchange.from_settings(market_settings, RealClock(), market_dir)
                bybit = await server.enter_async_context(_sim_server(market_settings, market_dir, Path(tmp)))
                settings = settings.with_values(bybit, source="console_cost")
            clock = RealClock()
            app = OperatorConsole(settings, state_dir, clock=clock) if mode in CONSOLE_MODES else None
            runtime = app.runtime if app is not None else EngineRuntime(settings, state_dir, clock)
            runtime.build_venues()
            exchange = market or runtime.exchange
            if exchange is None:
                raise RuntimeError("no simulated exchange")
            sent: dict[str, list[Sent]] = {}
            order_links: dict[str, str] = {}
            for account, venue in runtime.venues.items():
                sent[account] = []
                record_requests(venue, clock, sent[account], order_links)
                # the orders phase one placed: an amend may name only the order id
                order_links |= {o.order_id: o.link_id for o in exchange.open_orders(account) if o.link_id}
            decided_mark: dict[str, int] = {}  # the reactions the engine had timed when measuring began
            decided: dict[str, list[float]] = {}  # those timed while measuring, by kind of fill
            frames: list[float] = []  # whole refreshes: the snapshot from the engine, then the paint
            views: list[float] = []  # the snapshot alone (built on the engine's loop)
            shown = 0

            async def measure() -> tuple[float, int]:
                while runtime.state.value == "reconciling":  # noqa: ASYNC110 (the restart's pass is not a reaction)
                    await asyncio.sleep(0.2)
                # the restarted market catches up first (entries filled while away): not the steady state
                await asyncio.sleep(warmup)
                frames.clear()
                views.clear()
                if runtime.tpsl is not None:
                    decided_mark.update(runtime.tpsl.reactions.counts())
                print(
                    f"phase two ({mode}): reconciled, warmed up {warmup:g}s; measuring {seconds:g}s",
                    file=sys.stderr,
                )
                since = clock.now()
                await asyncio.sleep(seconds)
                if runtime.tpsl is not None:  # read before the engine stops
                    decided.update(runtime.tpsl.reactions.samples_since(decided_mark, DECISION_KINDS))
                return since, 0

            if app is None:
                await runtime.start()
                try:
                    measured_from, _ = await measure()
                finally:
                    await runtime.stop()
            else:
                async with app.run_test(size=(160, 50)) as pilot:
                    await app.engine_ready.wait()
                    real_refresh = app.refresh_dashboard

                    async def timed_refresh(*, routine: bool = False) -> bool:
                        started = time.perf_counter()
                        done = await real_refresh(routine=routine)
                        frames.append(time.perf_counter() - started)
                        return done

                    app.refresh_dashboard = timed_refresh  # type: ignore[method-assign]
                    real_view = app.link.view

                    async def timed_view() -> Any:
                        started = time.perf_counter()
                        view = await real_view()
                        views.append(time.perf_counter() - started)
                        return view

                    app.link.view = timed_view  # type: ignore[method-assign]
                    measured_from, _ = await measure()
                    shown = len(app.latest["positions"]) if app.latest is not None else 0
                    await app.shutdown("measured")
                    await pilot.pause()
        if market_dir is not None:  # the server has stopped and saved its market, executions included
            exchange = SimExchange.from_settings(market_settings, RealClock(), market_dir)
        lat: list[float] = []
        fills = {"tp1": 0, "sl": 0}
        for account in runtime.venues:
            found, n_tp1, n_sl = reactions(
                exchange.executions(account, measured_from), sent[account], order_links
            )
            lat += [s for _ts, s, _sym in found["tp1"] + found["sl"]]
            fills["tp1"] += n_tp1
            fills["sl"] += n_sl
        # calls that waited for the engine's rate budget: the venue's 10 orders/s, not the engine
        waited = budget_waits(runtime)
        waits_by: Counter[str] = Counter()
        for gateway in runtime.gateways.values():
            for (kind, priority), n in gateway.budget.waits_by.items():
                waits_by[f"{kind}:{priority.name.lower()}"] += n
        # the engine's own share: from the fill to the hand-off to the order sender (no budget wait)
        decisions = [seconds for samples in decided.values() for seconds in samples]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000.0, 2)

    return {
        "mode": mode,
        "positions": positions,
        "positions_on_screen": shown,
        "seconds": seconds,
        "warmup_s": warmup,
        "refreshes": len(frames),
        "refresh_ms_p50": ms(median(frames)) if frames else None,
        "refresh_ms_p99": ms(percentile(frames, 99)),
        "snapshot_ms_p50": ms(median(views)) if views else None,
        "snapshot_ms_p99": ms(percentile(views, 99)),
        "reactions": len(lat),
        "tp1_fills": fills["tp1"],
        "sl_fills": fills["sl"],
        "reaction_ms_p50": ms(percentile(lat, 50)),
        "reaction_ms_p99": ms(percentile(lat, 99)),
        "reaction_ms_max": ms(max(lat)) if lat else None,
        "decision_ms_p50": ms(percentile(decisions, 50)),
        "decision_ms_p99": ms(percentile(decisions, 99)),
        "budget_waits": waited,
        "budget_waits_by": dict(sorted(waits_by.items())),
    }


def measure_frames() -> int:
    """Run the table widget's frame benchmark (15 and 1000 positions)."""
    bench = ROOT / "scripts" / "console_frame_bench.py"
    if not bench.exists():
        print("scripts/console_frame_bench.py is missing", file=sys.stderr)
        return 1
    return subprocess.call([sys.executable, str(bench)], cwd=ROOT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("idle", "frames", "reaction", "all"))
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window (idle, reaction)")
    parser.add_argument("--config", metavar="FILE", help="idle: a settings file for the console")
    parser.add_argument("--sizes", default="160x50,80x24", help="terminal sizes for idle")
    parser.add_argument("--positions", type=int, default=1000, help="positions for reaction")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--volatility", type=float, default=2.0, help="annualised, while measuring reactions")
    parser.add_argument(
        "--modes", default="thread,shared,headless", help=f"reaction runs, of {', '.join(MODES)}"
    )
    parser.add_argument("--warmup", type=float, default=0.0, help="reaction: seconds before measuring")
    parser.add_argument(
        "--state-cache", default=None, help="reaction: keep phase one's state here and reuse it next time"
    )
    args = parser.parse_args(argv)
    code = 0
    if args.what in ("idle", "all"):
        for size in args.sizes.split(","):
            columns, rows = (int(n) for n in size.split("x"))
            figure = measure_idle(columns, rows, args.seconds, args.config)
            print(
                f"idle {figure['size']}: {figure['cpu_share']:.1%} of one core over {args.seconds:g}s "
                f"(UI thread {figure['ui_share']:.1%}; {figure['positions']} open positions)"
            )
        print(f"idle headless engine: {measure_headless(args.seconds):.1%} of one core")
    if args.what in ("frames", "all"):
        code = measure_frames() or code
    if args.what in ("reaction", "all"):
        for mode in args.modes.split(","):
            cache = Path(args.state_cache) if args.state_cache else None
            figures = asyncio.run(
                _reaction(args.positions, args.seconds, args.seed, args.volatility, mode, cache, args.warmup)
            )
            print("reaction: " + json.dumps(figures))
    return code


if __name__ == "__main__":
    sys.exit(main())
