"""``opconsole bench``: run the workload once per profile, each in its own child, and report.

Exit 0 when the runs agree (or a single profile ran), 1 when the profiles closed different trades
(the first difference is named on stderr) or a run failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from engine.core.clock import RealClock

from .child import run_in_child
from .progress import ProgressBar
from .report import document, render
from .workload import PROFILES, Workload

EXIT_OK = 0
EXIT_DIFFERENT = 1


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The machine's CPU as ``/proc/cpuinfo`` names it, with the number of cores; ``unknown`` elsewhere."""
    try:
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "unknown"
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return f"{models[0]} x {len(models)}" if models else "unknown"


def run_bench(
    workload: Workload,
    profile: str = "both",
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Measure ``profile`` (``both``, ``baseline`` or ``optimized``), print the table or the JSON on
    ``out``, and return the exit code."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    profiles = PROFILES if profile == "both" else (profile,)
    bar = ProgressBar(err)
    wall_clock = RealClock()  # the benchmark's own duration is real time
    runs: dict[str, dict[str, Any]] = {}
    wall: dict[str, float] = {}
    for name in profiles:
        bar.start(name)
        began = wall_clock.monotonic()
        try:
            runs[name] = run_in_child(name, workload, bar.update)
        finally:
            bar.finish()
        wall[name] = wall_clock.monotonic() - began
    doc = document(workload, cpu_model(), runs, wall)
    out.write((json.dumps(doc, indent=2) if as_json else render(doc)) + "\n")
    difference = doc["comparison"]["first_difference"]
    if difference is not None:
        print(f"opconsole: bench: the profiles traded differently: {difference}", file=err)
        return EXIT_DIFFERENT
    return EXIT_OK
