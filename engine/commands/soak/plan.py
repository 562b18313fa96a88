"""The soak's seeded schedule: which trades open when, when the engine is killed, which faults land.

Pure: :func:`make_plan` turns (hours, seed) into a :class:`SoakPlan`, the same one on every run, so
a failing soak is replayed by running it again with the same seed.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "LINKUSDT")
"""What the soaked engine trades (the simulator's listed symbols but one)."""
INTRUDER_SYMBOL = "AVAXUSDT"
"""The second engine's symbol: listed for both engines, traded only by the intruder, so the two
never share a one-way position and the soaked engine's reaction to it is all that is tested."""

TRADES_PER_HOUR = 1.5
MIN_TRADES = 4
QUIET_END_S = 20 * 60.0
"""No trade opens in the last minutes: the end's checks see positions that had time to settle."""
KILL_GAP_S = (10 * 60.0, 20 * 60.0)
BURST_GAP_S = (20 * 60.0, 60 * 60.0)
BURST_CALLS = (5, 20)
STREAM_DROP_EVERY_S = 30 * 60.0
SILENT_FIRST_S = 45 * 60.0
SILENT_EVERY_S = 3 * 3600.0
MIRROR_OUTAGE_S = 10 * 60.0
DISK_FULL_S = 3 * 60.0
INTRUDER_S = 5 * 60.0
FLAKY_RATE = 0.01
"""The share of private calls that fail transiently (an error, or an answer after the timeout)."""

CONSERVATIVE_OFFSETS = {"entries": [0.0, -0.3, -0.6], "tps": [0.4, 0.8, 1.2, 1.6], "sl": -1.2}
FAST_OFFSETS = {"entries": [0.0], "tps": [0.8], "sl": -0.8}


@dataclass(frozen=True, slots=True)
class PlannedTrade:
    """A trade to open ``at`` seconds into the soak; ``symbol`` is preferred (a busy one is skipped
    for the next free symbol)."""

    index: int
    at: float
    symbol: str
    side: str
    approach: str
    margin: float

    def offsets(self) -> dict[str, Any]:
        """Entry, TP and SL offsets (percent from the mark, signed in the trade's favour)."""
        return CONSERVATIVE_OFFSETS if self.approach == "conservative" else FAST_OFFSETS


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: ``kind`` at ``at`` seconds into the soak, for ``duration_s`` (0: an instant)."""

    at: float
    kind: str
    """``rate_limit_burst``, ``stream_drop``, ``stream_silent``, ``mirror_outage``, ``disk_full``,
    ``intruder``."""
    account: str = "main"
    duration_s: float = 0.0
    calls: int = 0
    """A burst's length in calls."""


@dataclass(frozen=True, slots=True)
class SoakPlan:
    """Everything the soak does, by time."""

    hours: float
    seed: int
    trades: tuple[PlannedTrade, ...]
    kills: tuple[float, ...]
    faults: tuple[Fault, ...]
    symbols: tuple[str, ...] = SYMBOLS
    intruder_symbol: str = INTRUDER_SYMBOL
    flaky_rate: float = FLAKY_RATE

    @property
    def seconds(self) -> float:
        """The soak's simulated length."""
        return self.hours * 3600.0

    def windows(self, kind: str) -> list[tuple[float, float]]:
        """The (start, end) of every fault of ``kind`` that lasts."""
        return [(f.at, f.at + f.duration_s) for f in self.faults if f.kind == kind]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the engine child reads its part of it)."""
        return asdict(self)


def _times(rng: random.Random, start: float, end: float, gap: tuple[float, float]) -> list[float]:
    """Instants from ``start`` to ``end``, each a random ``gap`` after the one before."""
    out: list[float] = []
    t = start + rng.uniform(*gap)
    while t < end:
        out.append(round(t, 3))
        t += rng.uniform(*gap)
    return out


def _once_per_day(
    rng: random.Random, seconds: float, share: tuple[float, float], length: float
) -> list[float]:
    """One start per simulated day (at least one), at a random share of its day, ending in time."""
    days = max(1, round(seconds / 86400.0))
    day = seconds / days
    starts = []
    for d in range(days):
        at = d * day + rng.uniform(*share) * day
        starts.append(round(min(at, seconds - length - 60.0), 3))
    return [s for s in starts if s > 0]


def make_plan(hours: float, seed: int) -> SoakPlan:
    """The seeded schedule of a soak of ``hours`` simulated hours."""
    rng = random.Random(f"soak:{seed}")
    seconds = hours * 3600.0
    opening_end = max(seconds - QUIET_END_S, seconds * 0.6)
    count = max(MIN_TRADES, round(TRADES_PER_HOUR * hours))
    starts = sorted(rng.uniform(60.0, opening_end) for _ in range(count))
    trades = tuple(
        PlannedTrade(
            index=i,
            at=round(at, 3),
            symbol=SYMBOLS[i % len(SYMBOLS)],
            side=rng.choice(["Buy", "Sell"]),
            approach="conservative" if rng.random() < 0.6 else "fast",
            margin=float(rng.choice([100, 150, 200, 250])),
        )
        for i, at in enumerate(starts)
    )
    kills = tuple(_times(rng, 0.0, seconds - 5 * 60.0, KILL_GAP_S))
    faults: list[Fault] = []
    for at in _times(rng, 0.0, seconds, BURST_GAP_S):
        faults.append(
            Fault(at, "rate_limit_burst", rng.choice(["main", "mirror"]), calls=rng.randint(*BURST_CALLS))
        )
    drops = int(seconds // STREAM_DROP_EVERY_S)
    for k in range(1, drops + 1):
        if k * STREAM_DROP_EVERY_S < seconds:
            faults.append(Fault(k * STREAM_DROP_EVERY_S, "stream_drop", "main" if k % 2 else "mirror"))
    at = SILENT_FIRST_S
    while at < seconds - 60.0:
        faults.append(Fault(at, "stream_silent", "main"))
        at += SILENT_EVERY_S
    for at in _once_per_day(rng, seconds, (0.25, 0.45), MIRROR_OUTAGE_S):
        faults.append(Fault(at, "mirror_outage", "mirror", duration_s=MIRROR_OUTAGE_S))
    for at in _once_per_day(rng, seconds, (0.55, 0.75), DISK_FULL_S):
        faults.append(Fault(at, "disk_full", "main", duration_s=DISK_FULL_S))
    for at in _once_per_day(rng, seconds, (0.08, 0.2), INTRUDER_S):
        faults.append(Fault(at, "intruder", "main", duration_s=INTRUDER_S))
    return SoakPlan(
        hours=hours,
        seed=seed,
        trades=trades,
        kills=kills,
        faults=tuple(sorted(faults, key=lambda f: f.at)),
    )
