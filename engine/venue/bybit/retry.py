"""When to retry a Bybit call, and how long to wait first: pure decisions, no I/O.

Three kinds of failure are retried, each with its own bound:

- refusals that guarantee nothing happened (10006 rate limit, 10002 expired timestamp): always safe;
  10006 waits for the window's reset, 10002 after re-syncing the clock offset;
- transient failures (timeouts, resets, HTTP 5xx, 10000 / 10016): the request may have landed, so
  a non-idempotent call (an order create) is retried only when it carries an ``orderLinkId`` —
  Bybit then refuses the duplicate with 110072 instead of opening a second order;
- everything else (bad parameters, auth, balance, IP ban) is final.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.venue.errors import RateLimited, RequestExpired, VenueError

MAX_RATE_LIMIT_WAITS = 20
"""A burst of 10006 refusals is ridden out up to this many times per call."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry bounds and the exponential backoff (with jitter) between transient failures."""

    max_retries: int = 3
    base_delay_s: float = 0.2
    max_delay_s: float = 5.0
    max_rate_limit_waits: int = MAX_RATE_LIMIT_WAITS

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` (1-based): "equal jitter" exponential backoff.

        Half of the exponential step is fixed and half is random, so retries of many callers spread
        out while each still waits a growing minimum.
        """
        step = min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempt - 1)))
        return step / 2 + rng.uniform(0.0, step / 2)

    def should_retry(
        self, error: VenueError, *, idempotent: bool, transient_attempts: int, rate_limit_waits: int
    ) -> bool:
        """Whether to try ``error``'s call again, given the retries already spent."""
        if isinstance(error, RateLimited):
            return rate_limit_waits < self.max_rate_limit_waits
        if isinstance(error, RequestExpired):
            return transient_attempts < self.max_retries
        if not error.retryable:
            return False
        return idempotent and transient_attempts < self.max_retries


def rate_limit_wait(error: RateLimited, now: float, rng: random.Random, fallback_s: float = 1.0) -> float:
    """Seconds to wait after a 10006: until the reported reset, plus a little jitter (never negative)."""
    base = (error.reset_at - now) if error.reset_at is not None else fallback_s
    return max(0.0, base) + rng.uniform(0.0, 0.05)
