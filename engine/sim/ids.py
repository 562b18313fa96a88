"""Deterministic exchange ids: UUID-shaped like Bybit's orderId / execId, reproducible from the seed.

A uuid5 of (seed, kind, counter) instead of uuid4, so two runs with the same seed name their orders
and fills identically, and no random draw is taken from the price feed's generator.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1c7a52-3a8e-4f0b-9d57-0c4b1f3e2a10")


class IdFactory:
    """Issues order and execution ids; the counter is part of the exchange's saved state."""

    def __init__(self, seed: int, counter: int = 0) -> None:
        self.seed = seed
        self.counter = counter

    def next(self, kind: str) -> str:
        """A fresh id for an ``order`` or an ``exec``."""
        self.counter += 1
        return str(uuid.uuid5(_NAMESPACE, f"{self.seed}:{kind}:{self.counter}"))
