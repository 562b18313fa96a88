"""The two small statistics every figure of the benchmark uses: percentiles and per-hour rates."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` percentile (0-100) by nearest rank; None without values."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100.0 * len(ranked)) - 1)]


def per_hour(count: float, seconds: float) -> float:
    """``count`` events over ``seconds`` of (simulated) time, as a rate per hour (1 decimal)."""
    return round(count * 3600.0 / seconds, 1) if seconds > 0 else 0.0


def ms(seconds: float | None, decimals: int = 1) -> float | None:
    """Seconds as milliseconds, rounded; None stays None."""
    return None if seconds is None else round(seconds * 1000.0, decimals)
