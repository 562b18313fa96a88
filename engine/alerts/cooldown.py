"""Cooldown and de-duplication of alerts per (type, key), before they go out to a delivery sink.

The same alert about the same thing (``sl_move_refused`` for ``main:BTCUSDT:Buy``, say) repeated
within ``cooldown_s`` of the last one that went out is *suppressed*: counted, not delivered. The next
one admitted after the cooldown carries how many were folded into it, so the operator still learns
that it kept happening. Critical alerts are never suppressed.

The window counts from the last *admitted* alert of the pair, not the last one seen: an alert that
repeats every few seconds for an hour goes out once per cooldown, never falls silent for good.

Pure apart from its own bookkeeping: the time is passed in (the engine clock's ``now``).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.alerts.model import Severity

PRUNE_AT = 4096
"""Pairs remembered before the ones whose cooldown has ended are forgotten (bounds the memory)."""


@dataclass(slots=True)
class _Seen:
    last_admitted: float
    folded: int = 0  # suppressed since ``last_admitted``


class Cooldown:
    """Admits at most one alert per (type, key) per ``cooldown_s``; critical ones always.

    ``cooldown_s = 0`` admits everything. :attr:`suppressed` counts every alert held back since the
    start; :attr:`suppressed_by_type` the same per alert type.
    """

    def __init__(self, cooldown_s: float) -> None:
        if cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, not {cooldown_s!r}")
        self.cooldown_s = float(cooldown_s)
        self.suppressed = 0
        self.suppressed_by_type: dict[str, int] = {}
        self._seen: dict[tuple[str, str], _Seen] = {}

    def admit(self, severity: Severity | str, type_: str, key: str, now: float) -> int | None:
        """None when the alert is suppressed; else how many of the pair were suppressed since the
        last one admitted (0 usually), which the delivered alert may mention."""
        pair = (type_, key)
        seen = self._seen.get(pair)
        if (
            seen is not None
            and Severity(severity) is not Severity.CRITICAL
            and now - seen.last_admitted < self.cooldown_s
        ):
            seen.folded += 1
            self.suppressed += 1
            self.suppressed_by_type[type_] = self.suppressed_by_type.get(type_, 0) + 1
            return None
        folded = seen.folded if seen is not None else 0
        self._seen[pair] = _Seen(last_admitted=now)
        if len(self._seen) > PRUNE_AT:
            self._prune(now)
        return folded

    def _prune(self, now: float) -> None:
        """Forget the pairs whose cooldown has ended (their next alert is admitted anyway); their
        folded counts are lost, which only shortens a "(+n similar)" note."""
        self._seen = {p: s for p, s in self._seen.items() if now - s.last_admitted < self.cooldown_s}
