"""Per-endpoint rate-limit budget, fed by Bybit's ``X-Bapi-Limit*`` response headers.

Bybit answers every private call with the endpoint's limit, what is left of it, and (once it is spent)
when it refills. The venue keeps that per endpoint, counts its own calls in flight against it, and waits
for the refill *before* the last calls are spent, so a busy moment slows down instead of collecting
10006 refusals. The decisions are pure functions of the budget and the time; the venue does the waiting.

The same headers feed the engine's plan of calls (:mod:`engine.venue.budget`): :func:`window_report`
turns them into a venue-neutral :class:`~engine.venue.budget.WindowReport` of the call kind the
endpoint spends (a batch endpoint's headers count items, as its window does), with the reset as seconds
from the answer, so the engine's clock need not be the wall clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from engine.venue.base import Endpoint
from engine.venue.budget import WindowReport, kind_of
from engine.venue.bybit.wire import SERVER_TIME

HEADER_STATUS = "X-Bapi-Limit-Status"
HEADER_LIMIT = "X-Bapi-Limit"
HEADER_RESET = "X-Bapi-Limit-Reset-Timestamp"

PUBLIC_ENDPOINTS = frozenset({Endpoint.INSTRUMENTS, Endpoint.TICKERS, SERVER_TIME})
"""Unsigned paths: no per-UID limit, so their limit headers (if any) say nothing about the account."""

RESERVE_FRACTION = 0.1
"""Keep this share of an endpoint's limit (at least one call) unspent until the window refills."""


@dataclass(slots=True)
class Budget:
    """What is known about one endpoint's window: its limit, what is left, and when it refills."""

    limit: int
    remaining: int
    reset_at: float  # epoch seconds

    @property
    def reserve(self) -> int:
        return max(1, math.ceil(self.limit * RESERVE_FRACTION))


def parse_limit_headers(headers: Mapping[str, str]) -> Budget | None:
    """A :class:`Budget` from the response headers, or None when they are absent or malformed.

    Header names are matched case-insensitively (requests' CaseInsensitiveDict does that already; a
    plain dict from elsewhere may spell them differently).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        return Budget(
            limit=int(lowered[HEADER_LIMIT.lower()]),
            remaining=int(lowered[HEADER_STATUS.lower()]),
            reset_at=int(lowered[HEADER_RESET.lower()]) / 1000.0,
        )
    except (KeyError, ValueError):
        return None


def window_report(
    endpoint: str, headers: Mapping[str, str] | None, answered_at: float
) -> WindowReport | None:
    """What a private answer's headers say about the engine's window for ``endpoint``, with the reset
    counted from ``answered_at`` (the answer's time, on the server's clock as the header is); None for
    a public endpoint, or when the headers are absent or malformed."""
    if endpoint in PUBLIC_ENDPOINTS or not headers:
        return None
    reported = parse_limit_headers(headers)
    if reported is None:
        return None
    return WindowReport(
        kind=kind_of(endpoint),
        limit=reported.limit,
        remaining=reported.remaining,
        reset_in_s=reported.reset_at - answered_at,
        source=endpoint,
    )


def pacing_delay(budget: Budget | None, now: float) -> float:
    """Seconds to wait before the next call on this endpoint (0 when there is room)."""
    if budget is None or now >= budget.reset_at or budget.remaining > budget.reserve:
        return 0.0
    return budget.reset_at - now


class RateBudget:
    """The budgets of one account's endpoints (Bybit limits per UID and endpoint)."""

    def __init__(self, window_s: float = 1.0) -> None:
        self._budgets: dict[str, Budget] = {}
        self._window_s = window_s

    def get(self, endpoint: str) -> Budget | None:
        """The endpoint's budget, if a response has told us one."""
        return self._budgets.get(endpoint)

    def delay(self, endpoint: str, now: float) -> float:
        """How long to wait before calling ``endpoint`` (see :func:`pacing_delay`)."""
        return pacing_delay(self._budgets.get(endpoint), now)

    def spend(self, endpoint: str, now: float) -> None:
        """Count a call about to be sent, so concurrent callers see it before its response arrives."""
        budget = self._budgets.get(endpoint)
        if budget is None:
            return
        if now >= budget.reset_at:
            # A new window: assume it refilled; the response will tell the truth.
            budget.remaining = budget.limit
            budget.reset_at = now + self._window_s
        budget.remaining = max(0, budget.remaining - 1)

    def update(self, endpoint: str, headers: Mapping[str, str] | None, now: float) -> None:
        """Record the budget a response reported.

        While the budget is not spent Bybit puts the current time in the reset header; the window
        then ends at most ``window_s`` later, which is what we assume.
        """
        if not headers:
            return
        budget = parse_limit_headers(headers)
        if budget is None:
            return
        if budget.reset_at <= now:
            budget.reset_at = now + self._window_s
        self._budgets[endpoint] = budget

    def exhaust(self, endpoint: str, reset_at: float) -> None:
        """A 10006 answer: nothing is left until ``reset_at``."""
        budget = self._budgets.get(endpoint)
        limit = budget.limit if budget else 1
        self._budgets[endpoint] = Budget(limit=limit, remaining=0, reset_at=reset_at)
