"""What the soak sees on the exchange side while it runs: how long each position goes uncovered.

A position is protected when the stop orders resting for it (reduce-only or close-on-trigger
conditionals on the exit side) cover its whole size, within half a qty step. The watch samples every
account every :data:`SAMPLE_S` simulated seconds and keeps, per stretch without full cover, when it
began and how long it lasted; a stretch longer than the limit is a violation unless it lies in an
exempt window (the account's API was down: nothing could have been sent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.mirror.drift import stop_covers

if TYPE_CHECKING:
    from engine.sim.exchange import SimExchange

SAMPLE_S = 1.0


@dataclass(frozen=True, slots=True)
class Uncovered:
    """One stretch of a position without a stop for its whole size."""

    account: str
    symbol: str
    start: float
    seconds: float
    exempt: bool


@dataclass(slots=True)
class ProtectionWatch:
    """Samples the exchange for positions whose stops do not cover them (see the module doc)."""

    exchange: SimExchange
    accounts: Sequence[str]
    limit_s: float
    exempt: Callable[[str, float], bool]
    """``exempt(account, time)``: the account's API was down at that time."""
    stretches: list[Uncovered] = field(default_factory=list)
    samples: int = 0
    _open: dict[tuple[str, str], float] = field(default_factory=dict)

    def sample(self, now: float) -> None:
        """Look at every position once."""
        self.samples += 1
        seen: set[tuple[str, str]] = set()
        for account in self.accounts:
            covers = stop_covers(self.exchange.open_orders(account))
            for position in self.exchange.positions(account):
                if not position.is_open or position.side is None:
                    continue
                step = self.exchange.instruments[position.symbol].qty_step
                if covers.get((position.symbol, position.side), 0.0) >= position.size - step / 2:
                    continue
                key = (account, position.symbol)
                seen.add(key)
                self._open.setdefault(key, now)
        for key in [k for k in self._open if k not in seen]:
            self._close(key, now)

    def finish(self, now: float) -> None:
        """Close the stretches still open at the end (they count as they are)."""
        for key in list(self._open):
            self._close(key, now)

    def _close(self, key: tuple[str, str], now: float) -> None:
        start = self._open.pop(key)
        account, symbol = key
        exempt = self.exempt(account, start) or self.exempt(account, now)
        self.stretches.append(Uncovered(account, symbol, start, now - start, exempt))

    def violations(self) -> list[Uncovered]:
        """Stretches longer than the limit outside the exempt windows."""
        return [s for s in self.stretches if s.seconds > self.limit_s and not s.exempt]

    def worst(self, *, exempt: bool = False) -> Uncovered | None:
        """The longest stretch (outside the exempt windows unless ``exempt``)."""
        pool = [s for s in self.stretches if exempt or not s.exempt]
        return max(pool, key=lambda s: s.seconds, default=None)
