"""A one-line progress bar on stderr, rewritten in place with ``\\r`` (only on a terminal)."""

from __future__ import annotations

import sys
from typing import TextIO

from engine.core.clock import RealClock

WIDTH = 30
"""Characters of the bar itself."""


class ProgressBar:
    """``bench: baseline [#####.....] 50% 12 s``; silent when ``stream`` is not a terminal, so logs and
    pipes get no carriage returns."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty() if enabled is None else enabled
        self._label = ""
        self._clock = RealClock()  # elapsed real time, whatever clock the engine runs on
        self._started = self._clock.monotonic()

    def start(self, label: str) -> None:
        """Begin a new bar (one profile's run)."""
        self._label = label
        self._started = self._clock.monotonic()
        self.update(0.0)

    def update(self, done: float) -> None:
        """Show ``done`` (0..1) of the current bar."""
        if not self._enabled:
            return
        filled = int(WIDTH * min(max(done, 0.0), 1.0))
        elapsed = self._clock.monotonic() - self._started
        line = f"bench: {self._label} [{'#' * filled}{'.' * (WIDTH - filled)}] {done:4.0%} {elapsed:5.0f} s"
        self._stream.write("\r" + line)
        self._stream.flush()

    def finish(self) -> None:
        """End the line, so what follows starts on a fresh one."""
        if self._enabled:
            self._stream.write("\n")
            self._stream.flush()
