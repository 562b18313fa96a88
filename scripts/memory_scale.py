"""Where does the bench's memory go at scale? RSS over time, and the allocations at the peak.

Runs the benchmark's workload (:func:`engine.commands.bench.profile_run.measure_profile`: the engine
on the embedded simulator, main and mirror, the dashboard refresh and the bench's request log) in
this process, while a thread samples the resident set (``/proc/self/statm``) every ``--sample-s``
real seconds. With ``--trace`` it also runs tracemalloc and, each time the traced memory reaches a
new high (by ``--step-mb``), keeps a snapshot: the top allocations by file:line of the highest one
are printed at the end (tracemalloc makes the run 2-3x slower and adds its own memory to the RSS:
compare RSS figures from runs without it). ``--trim-s`` calls glibc's ``malloc_trim(0)`` from the
sampling thread every that many real seconds, and prints how much RSS the calls gave back: memory
freed but kept by the allocator (run it with and without to see what trimming would be worth).
``--without-price-history`` (a diagnostic: the insights then have no volatility) keeps the
dashboard's per-symbol price history empty, to show what it costs at N symbols.

    python scripts/memory_scale.py [--positions N] [--minutes M] [--profile optimized|baseline]
                                   [--trace] [--top K] [--sample-s S] [--step-mb MB] [--no-mirror]
                                   [--trim-s S] [--without-price-history]

e.g. ``--positions 300 --minutes 3`` to iterate, ``--positions 1000 --minutes 10`` to confirm.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import resource
import threading
import time
import tracemalloc
from dataclasses import dataclass, field

from engine.commands.bench.profile_run import measure_profile
from engine.commands.bench.workload import Workload
from engine.dashboard.insights import InsightsProvider

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 1024.0 / 1024.0


def rss_mb() -> float:
    """This process's resident set now (the second field of /proc/self/statm, in pages)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_MB


@dataclass
class Sampler:
    """Samples RSS (and, tracing, the traced memory) on its own thread until stopped."""

    period_s: float
    trace_step_mb: float | None
    trim_s: float | None = None
    trimmed_mb: float = 0.0
    """RSS given back by the malloc_trim calls, summed."""
    progress: float = 0.0
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    """(real seconds since start, progress 0..1, RSS MB)."""
    peak_snapshot: tracemalloc.Snapshot | None = None
    peak_traced_mb: float = 0.0
    peak_snapshot_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """The thread's body."""
        began = time.monotonic()
        trimmed_at = began
        libc = ctypes.CDLL("libc.so.6") if self.trim_s is not None else None
        while not self._stop.wait(self.period_s):
            if libc is not None and self.trim_s is not None and time.monotonic() - trimmed_at >= self.trim_s:
                trimmed_at = time.monotonic()
                before = rss_mb()
                libc.malloc_trim(0)
                self.trimmed_mb += before - rss_mb()
            self.samples.append((time.monotonic() - began, self.progress, rss_mb()))
            if self.trace_step_mb is not None:
                traced = tracemalloc.get_traced_memory()[0] / 1024.0 / 1024.0
                if traced > self.peak_traced_mb + self.trace_step_mb:
                    self.peak_traced_mb = traced
                    self.peak_snapshot = tracemalloc.take_snapshot()
                    self.peak_snapshot_at = self.progress

    def stop(self) -> None:
        """End the thread's loop."""
        self._stop.set()


def main() -> None:
    """Parse the options, run the workload under the sampler, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--profile", default="optimized", choices=("optimized", "baseline"))
    parser.add_argument("--trace", action="store_true", help="tracemalloc, top allocations at the peak")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sample-s", type=float, default=0.25)
    parser.add_argument("--step-mb", type=float, default=2.0, help="traced growth between two snapshots")
    parser.add_argument("--no-mirror", action="store_true")
    parser.add_argument("--trim-s", type=float, help="call malloc_trim(0) every S real seconds")
    parser.add_argument("--without-price-history", action="store_true", help="diagnostic, see above")
    args = parser.parse_args()
    # The engine's warnings (scheduler overruns, stops hit) would drown the figures, as in the bench's child.
    logging.basicConfig(level=logging.ERROR, format="memory_scale: %(name)s: %(message)s")
    if args.without_price_history:
        InsightsProvider.observe = lambda self, ticker: None  # type: ignore[method-assign]
    if args.trace:
        tracemalloc.start(1)
    sampler = Sampler(args.sample_s, args.step_mb if args.trace else None, args.trim_s)
    thread = threading.Thread(target=sampler.run, name="rss-sampler", daemon=True)
    thread.start()
    workload = Workload(positions=args.positions, minutes=args.minutes, mirror=not args.no_mirror)
    started = time.monotonic()

    def progress(done: float) -> None:
        sampler.progress = done

    figures = measure_profile(args.profile, workload, progress)
    sampler.stop()
    thread.join()
    real_s = time.monotonic() - started
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        f"{args.profile}, {args.positions} positions, {args.minutes:g} min (warm-up {figures['warmup_s']} s "
        f"simulated): {real_s:.0f} s real; "
        f"peak_rss_mb {figures['peak_rss_mb']} (ru_maxrss {maxrss:.1f}); monitors {figures['monitors']}; "
        f"critical {figures['critical_events']}; refreshes {figures['dashboard_refresh_ms']['refreshes']}"
    )
    if args.trim_s is not None:
        print(f"malloc_trim(0) every {args.trim_s:g} s gave back {sampler.trimmed_mb:.1f} MB of RSS in all")
    print("RSS over time (real s, progress, MB), every ~20th sample and the peak:")
    samples = sampler.samples
    peak = max(samples, key=lambda s: s[2], default=None)
    for i, (t, done, mb) in enumerate(samples):
        if i % max(1, len(samples) // 20) == 0 or (t, done, mb) == peak:
            print(f"  {t:7.1f} s  {done:5.2f}  {mb:7.1f} MB" + ("  <- peak" if (t, done, mb) == peak else ""))
    if sampler.peak_snapshot is not None:
        stats = sampler.peak_snapshot.filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
        ).statistics("lineno")
        print(
            f"traced peak {tracemalloc.get_traced_memory()[1] / 1048576:.1f} MB; snapshot at "
            f"{sampler.peak_traced_mb:.1f} MB traced (progress {sampler.peak_snapshot_at:.2f}); "
            f"top {args.top}:"
        )
        for stat in stats[: args.top]:
            frame = stat.traceback[0]
            print(f"  {stat.size / 1048576:7.2f} MB  {stat.count:8d}  {frame.filename}:{frame.lineno}")


if __name__ == "__main__":
    main()
