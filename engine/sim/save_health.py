"""What to tell the operator when the simulated exchange cannot write its market, and when (pure).

A full disk or an immutable state directory makes every save and every journal write of the
simulated exchange fail, once a tick. The market keeps running in memory (the next write that works
carries everything since), but the operator must hear of it once, loudly, be reminded while it
lasts, and hear when it is over: :class:`SaveHealth` turns the outcome of each write into at most
one :class:`SaveReport`, which the exchange hands to its ``on_alert`` callback (the engine's alert
bus is above the exchange, so the exchange only knows a callback).
"""

from __future__ import annotations

from dataclasses import dataclass

REMIND_EVERY_S = 600.0
"""While writes keep failing, a reminder this often (clock seconds): loud enough, never a flood."""


@dataclass(frozen=True, slots=True)
class SaveReport:
    """One thing to tell the operator: ``severity`` is an alert severity value (``critical``,
    ``info``) and ``message`` says what happened and what it means."""

    severity: str
    message: str


class SaveHealth:
    """Tracks whether the exchange's writes fail, and decides what each outcome is worth saying."""

    def __init__(self, remind_every_s: float = REMIND_EVERY_S) -> None:
        self.remind_every_s = remind_every_s
        self.failing_since: float | None = None  # clock time of the first failure of this outage
        self._reported_at = 0.0

    @property
    def failing(self) -> bool:
        """True from a failed write until the next write that works."""
        return self.failing_since is not None

    def failed(self, now: float, problem: str) -> SaveReport | None:
        """A write failed: a critical report the first time, then one every ``remind_every_s``."""
        if self.failing_since is None:
            self.failing_since = self._reported_at = now
            return SaveReport(
                "critical",
                f"the simulated exchange cannot save its market ({problem}); it keeps running in "
                "memory and saves everything at the first write that works, but a stop before then "
                "loses what changed since",
            )
        if now - self._reported_at < self.remind_every_s:
            return None
        self._reported_at = now
        return SaveReport(
            "critical",
            f"the simulated exchange still cannot save its market, for {_duration(now - self.failing_since)} "
            f"now ({problem})",
        )

    def succeeded(self, now: float) -> SaveReport | None:
        """A write worked: an info report when it ends an outage, else nothing."""
        if self.failing_since is None:
            return None
        lasted, self.failing_since = now - self.failing_since, None
        return SaveReport(
            "info", f"the simulated exchange saves its market again (after {_duration(lasted)})"
        )


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
