"""Per-call latency profiles of the simulated exchange, drawn from their own seeded generator."""

from __future__ import annotations

import random

LATENCY_PROFILES: dict[str, tuple[float, float]] = {
    "none": (0.0, 0.0),
    "realistic": (0.030, 0.120),
}
"""Profile name -> (min, max) seconds of one request's round trip, drawn uniformly."""


class LatencyModel:
    """Draws request latencies for a profile (``none`` draws nothing and is always 0)."""

    def __init__(self, profile: str, rng: random.Random) -> None:
        if profile not in LATENCY_PROFILES:
            raise ValueError(f"latency must be one of {', '.join(LATENCY_PROFILES)}; got {profile!r}")
        self.profile = profile
        self.rng = rng

    def draw(self) -> float:
        """Seconds the next call takes on the wire."""
        low, high = LATENCY_PROFILES[self.profile]
        return 0.0 if high == 0.0 else self.rng.uniform(low, high)
