"""Per-account API rate limits with Bybit's budgets, measured on the injected clock.

Bybit limits each endpoint per UID over a rolling one-second window: 10 requests/s for the order
endpoints (create, amend, cancel, cancel-all, set-leverage and their batch forms) and, here, 50/s for
every read. A batch costs one unit per order in it. When a call does not fit, it is refused with
10006 and the time at which enough of the window will have expired (``reset_at``), which is what
Bybit's ``X-Bapi-Limit-Reset-Timestamp`` header carries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from engine.venue.budget import ORDER_ENDPOINTS
from engine.venue.errors import RateLimited

WINDOW_S = 1.0
ORDER_BUDGET = 10
READ_BUDGET = 50


def budget_for(endpoint: str) -> int:
    """Units per window of an endpoint path."""
    return ORDER_BUDGET if endpoint in ORDER_ENDPOINTS else READ_BUDGET


@dataclass(frozen=True, slots=True)
class RateStatus:
    """An endpoint's budget as the X-Bapi-Limit* headers report it."""

    limit: int
    remaining: int
    reset_at: float
    """When the oldest unit in the window expires (``now`` when the window is empty)."""


class RateLimiter:
    """Rolling-window unit counters per (account, endpoint)."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._spent: dict[tuple[str, str], deque[tuple[float, int]]] = {}

    def _window(self, account: str, endpoint: str, now: float) -> deque[tuple[float, int]]:
        spent = self._spent.setdefault((account, endpoint), deque())
        while spent and spent[0][0] <= now - self.window_s:
            spent.popleft()
        return spent

    def status(self, account: str, endpoint: str, now: float) -> RateStatus:
        spent = self._window(account, endpoint, now)
        limit = budget_for(endpoint)
        used = sum(units for _, units in spent)
        reset_at = spent[0][0] + self.window_s if spent else now
        return RateStatus(limit=limit, remaining=max(0, limit - used), reset_at=reset_at)

    def acquire(self, account: str, endpoint: str, units: int, now: float, *, partial: bool = False) -> int:
        """Spend ``units`` (or, with ``partial``, as many as fit, at least one); returns the units spent.

        Raises :class:`RateLimited` when nothing can be spent (or, without ``partial``, when not all
        of ``units`` fit), with ``reset_at`` = the moment enough units will have expired.
        """
        if units < 1:
            raise ValueError(f"units must be >= 1, got {units}")
        spent = self._window(account, endpoint, now)
        limit = budget_for(endpoint)
        remaining = limit - sum(u for _, u in spent)
        wanted = min(units, limit) if partial else units
        granted = min(units, remaining) if partial else units
        if remaining <= 0 or (not partial and units > remaining):
            raise RateLimited(
                f"Too many visits! {endpoint} allows {limit} per {self.window_s:g}s for {account}",
                10006,
                reset_at=self._reset_at(spent, limit, wanted),
            )
        spent.append((now, granted))
        return granted

    def _reset_at(self, spent: deque[tuple[float, int]], limit: int, units: int) -> float:
        """When, as the window rolls, ``units`` more will fit (never, if ``units`` exceeds the limit)."""
        used = sum(u for _, u in spent)
        for ts, freed in spent:
            used -= freed
            if used + units <= limit:
                return ts + self.window_s
        return spent[-1][0] + self.window_s if spent else 0.0
