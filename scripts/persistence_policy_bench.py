#!/usr/bin/env python3
"""Measure the save policies on the original bot's save pattern (15 monitors, one simulated hour).

Replays the same scripted stream (a save on every 5-second monitoring check, plus the fills and TP/SL
events) into a fresh store under SimplePolicy and under SmartPolicy on a virtual clock, and prints
what reached the disk: full (whole-state) writes, journal appends, fsyncs, bytes, the worst delay of a
critical save and the oldest a non-critical change got before it was written.

The replay and its figures are the benchmark's (``engine/commands/bench/save_pattern.py``); this
script runs it for both policies and prints them.

Usage: ``python scripts/persistence_policy_bench.py [--monitors 15] [--minutes 60] [--seed 7]
[--verify] [--json]``. ``--verify`` re-reads the directory after every critical save to prove it
was already on disk (slower).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from engine.commands.bench.save_pattern import measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=15)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--verify", action="store_true", help="check every critical save is on disk at once")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    options = {"monitors": args.monitors, "minutes": args.minutes, "seed": args.seed, "verify": args.verify}
    simple = asyncio.run(measure("simple", **options))
    smart = asyncio.run(measure("smart", **options))
    ratio = smart["writes"] / simple["writes"] if simple["writes"] else 0.0
    if args.json:
        print(json.dumps({"simple": simple, "smart": smart, "smart_writes_vs_simple": ratio}, indent=2))
    else:
        print(f"workload: {args.monitors} monitors, {args.minutes:g} simulated minutes, seed {args.seed}: "
              f"{simple['saves']} saves ({simple['saves_per_minute_per_monitor']}/min/monitor), "
              f"{simple['critical_saves']} critical")  # fmt: skip
        names = ("writes", "writes_per_hour", "full_writes", "journal_appends", "fsyncs", "bytes_written",
                 "compactions", "max_critical_delay_s", "max_pending_age_s", "critical_not_durable",
                 "wall_seconds")  # fmt: skip
        print(f"{'':>22} {'simple':>12} {'smart':>12}")
        for name in names:
            print(f"{name:>22} {simple[name]:>12} {smart[name]:>12}")
        print(f"smart disk writes = {ratio:.2%} of simple")
    ok = smart["critical_not_durable"] == 0 and simple["critical_not_durable"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
