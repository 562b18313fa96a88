#!/usr/bin/env python3
"""Crash test of the persistence store: SIGKILL a writer at random moments and check recovery.

A child process drives a :class:`persistence.Store` with a seeded stream of critical and non-critical
saves (and critical deletes) and prints ``ACK`` for every critical change once ``save``/``delete``
returned. The parent kills it with SIGKILL, either after a random delay or while it is paused inside
a chosen step of a compaction (the store's trace hook), then recovers the directory and checks:

* every acknowledged critical save is present with its value (and every acknowledged delete absent),
* a key saved with increasing counters never goes back below its last acknowledged value,
* no journal record is duplicated, and the files always load without a critical recovery.

Usage: ``python scripts/crash_test.py [--kills N] [--seed S] [--json]`` (``OPCONSOLE_CRASH_KILLS``
sets the default number of kills; 50 by default). Exit code 0 only if every check held.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.core.clock import RealClock
from persistence import Reason, Store
from persistence.codec import canonical
from persistence.layout import StateFiles
from persistence.recovery import scan_journal

# The steps the trace hook names; a paused child is killed exactly there.
COMPACTION_STEPS = (
    "compaction:start",
    "snapshot:tmp_synced",
    "snapshot:prev_kept",
    "snapshot:renamed",
    "compaction:journal_rotated",
    "compaction:done",
)
CRITICAL = [
    reason for reason in Reason if reason.critical and reason not in (Reason.STARTUP, Reason.SHUTDOWN)
]
NON_CRITICAL = [reason for reason in Reason if not reason.critical]
MONITOR_KEYS = 8
CHILD_TIMEOUT_S = 15.0


# ----------------------------------------------------------------------------------------- child


async def run_child(
    state_dir: Path, seed: int, generation: int, pause_step: str | None, pause_at: int
) -> None:
    """Drive the store until killed, printing an ACK line per durable critical change."""
    rng = random.Random(seed * 1_000_003 + generation)
    seen: Counter[str] = Counter()

    def trace(step: str) -> None:
        print(f"STEP {step}", flush=True)
        seen[step] += 1
        if step == pause_step and seen[step] == pause_at:
            time.sleep(CHILD_TIMEOUT_S * 2)  # hold the writer inside this step until the parent kills us

    store = Store(
        state_dir,
        clock=RealClock(),
        flush_interval_s=rng.choice([0.005, 0.02, 0.05]),
        compact_max_bytes=rng.choice([4096, 16384]),
        compact_max_records=rng.choice([12, 30, 60]),
        trace=trace,
    )
    store.load()
    await store.start()
    print("READY", flush=True)
    counters = {f"mon:{k}": _counter(store.state.get(f"mon:{k}")) for k in range(MONITOR_KEYS)}
    acked_here: list[str] = []
    i = 0
    while True:
        i += 1
        pad = "x" * rng.randint(0, 400)
        roll = rng.random()
        if roll < 0.22:
            key, value = f"crit:{generation}:{i}", {"gen": generation, "i": i, "pad": pad}
            seq = await store.save(key, value, reason=rng.choice(CRITICAL))
            print(f"ACK {seq} {key} {canonical(value)}", flush=True)
            acked_here.append(key)
        elif roll < 0.25 and acked_here:
            key = acked_here.pop(rng.randrange(len(acked_here)))
            print(f"DELETING 0 {key}", flush=True)  # a kill before ACKDEL may or may not have removed it
            seq = await store.delete(key, reason=Reason.MONITOR_REMOVED)
            print(f"ACKDEL {seq} {key}", flush=True)
        elif roll < 0.85:
            key = f"mon:{rng.randrange(MONITOR_KEYS)}"
            counters[key] += 1
            value = {"n": counters[key], "pad": pad}
            critical = roll < 0.38
            seq = await store.save(
                key, value, reason=rng.choice(CRITICAL if critical else NON_CRITICAL), force=roll < 0.30
            )
            if seq is not None:
                print(f"ACKN {seq} {key} {counters[key]}", flush=True)
        elif roll < 0.93:
            key = f"tmp:{rng.randrange(4)}"
            if rng.random() < 0.5:
                await store.save(key, {"pad": pad}, reason=Reason.POSITION_UPDATE)
            else:
                await store.delete(key, reason=Reason.ORDER_UPDATE)
        else:
            await store.flush()
        if rng.random() < 0.2:
            await asyncio.sleep(rng.random() * 0.002)  # let the flush timer and the writer interleave


def _counter(value: Any) -> int:
    return int(value["n"]) if isinstance(value, dict) and "n" in value else 0


# ---------------------------------------------------------------------------------------- parent


@dataclass
class Totals:
    """The counts the crash test reports."""

    kills: int = 0
    kills_random: int = 0
    kills_in_compaction: int = 0
    kills_by_step: dict[str, int] = field(default_factory=dict)
    kills_on_timeout: int = 0
    acked_critical_saves: int = 0
    acked_critical_deletes: int = 0
    acked_counter_saves: int = 0
    keys_verified: int = 0
    recoveries: int = 0
    records_replayed: int = 0
    torn_tails_dropped: int = 0
    stale_tmp_removed: int = 0
    compactions_completed: int = 0
    journal_records_checked: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Expected:
    """What the acknowledgements promise the next recovery must contain."""

    values: dict[str, Any] = field(default_factory=dict)
    deleting: dict[str, Any] = field(default_factory=dict)  # delete issued, not acknowledged: either
    deleted: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)

    def absorb(self, line: str, totals: Totals) -> None:
        kind, _seq, rest = line.split(" ", 2)
        if kind == "ACK":
            key, text = rest.split(" ", 1)
            self.values[key] = json.loads(text)
            self.deleted.discard(key)
            totals.acked_critical_saves += 1
        elif kind == "DELETING":
            self.deleting[rest] = self.values.pop(rest)
        elif kind == "ACKDEL":
            self.deleting.pop(rest, None)
            self.deleted.add(rest)
            totals.acked_critical_deletes += 1
        elif kind == "ACKN":
            key, n = rest.split(" ")
            self.counters[key] = max(self.counters.get(key, 0), int(n))
            totals.acked_counter_saves += 1


def run_generation(
    script: Path,
    state_dir: Path,
    seed: int,
    generation: int,
    rng: random.Random,
    totals: Totals,
    expected: Expected,
) -> None:
    """Start one child, kill it, absorb its acknowledgements."""
    pause_step: str | None = None
    pause_at = 1
    delay: float | None = None
    if rng.random() < 0.45:
        pause_step = rng.choice(COMPACTION_STEPS)
        pause_at = rng.randint(1, 4)
    else:
        delay = rng.uniform(0.0, 0.25)
    command = [sys.executable, str(script), "child", "--dir", str(state_dir), "--seed", str(seed)]
    command += ["--generation", str(generation)]
    if pause_step:
        command += ["--pause-step", pause_step, "--pause-at", str(pause_at)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    os.set_blocking(child.stdout.fileno(), False)
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ)
    buffer = b""
    lines: list[str] = []
    started = time.monotonic()
    kill_at: float | None = None
    killed_in: str | None = None
    open_compaction = False
    while True:
        now = time.monotonic()
        if now - started > CHILD_TIMEOUT_S:
            totals.kills_on_timeout += 1
            break
        if kill_at is not None and now >= kill_at:
            break
        timeout = 0.05 if kill_at is None else max(0.0, kill_at - now)
        if not selector.select(timeout):
            if child.poll() is not None:
                break
            continue
        chunk = child.stdout.read()
        if not chunk:
            if child.poll() is not None:
                break
            continue
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        hit = False
        for raw in complete:
            line = raw.decode()
            lines.append(line)
            if line == "READY" and delay is not None:
                kill_at = time.monotonic() + delay
            elif line.startswith("STEP "):
                step = line[5:]
                open_compaction = step != "compaction:done" and (
                    open_compaction or step == "compaction:start"
                )
                if step == pause_step:
                    pause_at -= 1
                    hit = hit or pause_at == 0
        if hit:
            killed_in = pause_step
            break
    child.send_signal(signal.SIGKILL)
    rest, err = child.communicate()
    selector.close()
    for raw in (buffer + rest).split(b"\n"):
        if raw:
            lines.append(raw.decode())
    if child.returncode != -signal.SIGKILL:
        totals.violations.append(
            f"gen {generation}: child exited with {child.returncode}: {err.decode()[-500:]}"
        )
    totals.kills += 1
    if killed_in is not None:
        totals.kills_by_step[killed_in] = totals.kills_by_step.get(killed_in, 0) + 1
        totals.kills_in_compaction += 1
    else:
        totals.kills_random += 1
        # a random kill that landed between "compaction:start" and "compaction:done" counts too
        totals.kills_in_compaction += int(open_compaction)
    for line in lines:
        if line.startswith(("ACK", "DELETING")):
            expected.absorb(line, totals)
        elif line == "STEP compaction:done":
            totals.compactions_completed += 1


def verify(state_dir: Path, generation: int, totals: Totals, expected: Expected) -> None:
    """Recover the directory as a restart would and check every promise."""
    store = Store(state_dir, clock=RealClock())
    try:
        report = store.load()
    except Exception as exc:  # the files must always load
        totals.violations.append(f"gen {generation}: load failed: {exc!r}")
        return
    try:
        state = store.state
        totals.recoveries += 1
        totals.records_replayed += report.records_replayed
        totals.torn_tails_dropped += int(report.torn_tail_bytes > 0)
        totals.stale_tmp_removed += len(report.stale_tmp_removed)
        if report.critical:
            totals.violations.append(f"gen {generation}: critical recovery: {report.message}")
        for key, value in expected.values.items():
            if state.get(key) != value:
                found, acked = repr(state.get(key))[:80], repr(value)[:80]
                totals.violations.append(f"gen {generation}: {key} = {found}, acked {acked}")
        for key in expected.deleted:
            if key in state:
                totals.violations.append(f"gen {generation}: {key} was deleted (acked) but is back")
        for key, value in expected.deleting.items():  # the recovered state settles an unacked delete
            if key not in state:
                expected.deleted.add(key)
            elif state[key] == value:
                expected.values[key] = value
            else:
                totals.violations.append(f"gen {generation}: {key} being deleted came back changed")
        expected.deleting.clear()
        for key, n in expected.counters.items():
            if _counter(state.get(key)) < n:
                totals.violations.append(f"gen {generation}: {key} at {_counter(state.get(key))} < acked {n}")
        totals.keys_verified += len(expected.values) + len(expected.deleted) + len(expected.counters)
        files = StateFiles(state_dir)
        seqs: Counter[int] = Counter()
        for path in (files.journal_prev, files.journal):
            if path.exists():
                seqs.update(record.seq for record in scan_journal(path.read_bytes()).records)
        totals.journal_records_checked += sum(seqs.values())
        duplicated = sorted(seq for seq, count in seqs.items() if count > 1)
        if duplicated:
            totals.violations.append(f"gen {generation}: duplicated journal seqs {duplicated[:10]}")
    finally:
        asyncio.run(store.close())


def run_parent(kills: int, seed: int, state_dir: Path | None) -> Totals:
    """Run ``kills`` generations in one state directory and return the counts."""
    rng = random.Random(seed)
    totals, expected = Totals(), Expected()
    script = Path(__file__).resolve()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="opconsole-crash-") as scratch:
        root = state_dir or Path(scratch) / "state"
        for generation in range(1, kills + 1):
            run_generation(script, root, seed, generation, rng, totals, expected)
            verify(root, generation, totals, expected)
    totals.seconds = round(time.monotonic() - started, 2)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    child = sub.add_parser("child", help="(internal) the process that gets killed")
    child.add_argument("--dir", type=Path, required=True)
    child.add_argument("--seed", type=int, required=True)
    child.add_argument("--generation", type=int, required=True)
    child.add_argument("--pause-step", choices=COMPACTION_STEPS)
    child.add_argument("--pause-at", type=int, default=1)
    parser.add_argument("--kills", type=int, default=int(os.environ.get("OPCONSOLE_CRASH_KILLS", "50")))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="state directory to use (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    if args.mode == "child":
        asyncio.run(run_child(args.dir, args.seed, args.generation, args.pause_step, args.pause_at))
        return 0
    logging.basicConfig(level=logging.ERROR)  # recovery notes are counted; only failures are shown
    totals = run_parent(args.kills, args.seed, args.dir)
    if args.json:
        print(json.dumps(asdict(totals), indent=2))
    else:
        for name, value in asdict(totals).items():
            if name != "violations":
                print(f"{name:>24}: {value}")
        for violation in totals.violations:
            print(f"VIOLATION {violation}")
        print("crash test:", "FAILED" if totals.violations else "passed")
    return 1 if totals.violations else 0


if __name__ == "__main__":
    sys.exit(main())
