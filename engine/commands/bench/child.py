"""Each profile's run in a fresh child process (``spawn``), so its memory and CPU are its own.

The child sends ``("progress", fraction)`` messages while it runs and one ``("result", figures)``
or ``("error", text)`` at the end, over a multiprocessing queue; the parent relays the progress and
returns the figures, or raises :class:`~engine.core.errors.EngineFailure` when the run failed.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

from engine.core.errors import EngineFailure

from .workload import Workload

POLL_S = 0.5
"""Seconds between two looks at a quiet child (is it still alive?)."""
DRAIN_S = 2.0
"""After the child exited: how long its last message may still take to come through the pipe."""


def _child_main(profile: str, workload: Workload, messages: Any) -> None:
    """The child's entry point (a module-level function, as ``spawn`` needs)."""
    # The engine's warnings (stops hit, overruns) would break the parent's progress line; errors
    # still show.
    logging.basicConfig(level=logging.ERROR, format=f"opconsole: bench ({profile}): %(name)s: %(message)s")
    from .profile_run import measure_profile  # imported here: counted in the child's own memory

    try:
        figures = measure_profile(profile, workload, lambda done: messages.put(("progress", done)))
    except Exception as exc:  # reported to the parent as one line; the child then exits
        messages.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    messages.put(("result", figures))


def run_in_child(profile: str, workload: Workload, on_progress: Callable[[float], None]) -> dict[str, Any]:
    """Run ``profile`` over ``workload`` in a new spawned process and return its figures."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    process = context.Process(
        target=_child_main, args=(profile, workload, messages), name=f"bench-{profile}", daemon=True
    )
    process.start()
    try:
        while True:
            try:
                kind, value = messages.get(timeout=POLL_S if process.is_alive() else DRAIN_S)
            except queue.Empty:
                if process.is_alive():
                    continue
                raise EngineFailure(
                    "bench", f"the {profile} run ended without figures (exit code {process.exitcode})"
                ) from None
            if kind == "progress":
                on_progress(float(value))
            elif kind == "result":
                return dict(value)
            else:
                raise EngineFailure("bench", f"the {profile} run failed: {value}")
    finally:
        process.join(timeout=10.0)
        if process.is_alive():  # interrupted, or stuck after its answer: it must not outlive us
            process.terminate()
            process.join()
        messages.close()
