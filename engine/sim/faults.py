"""Fault injection for tests and the soak: make an account's next calls fail with a chosen error."""

from __future__ import annotations

import copy
from collections.abc import Collection
from dataclasses import dataclass

from engine.venue.errors import VenueError


@dataclass(slots=True)
class _Fault:
    remaining: int
    error: VenueError
    endpoints: frozenset[str] | None


class FaultInjector:
    """Queues of pending failures per account, consumed one per matching call, oldest first."""

    def __init__(self) -> None:
        self._faults: dict[str, list[_Fault]] = {}

    def inject(
        self, account: str, n: int, error: VenueError, endpoints: Collection[str] | None = None
    ) -> None:
        """Fail the account's next ``n`` calls (only calls to ``endpoints`` when given) with ``error``."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        scope = None if endpoints is None else frozenset(endpoints)
        self._faults.setdefault(account, []).append(_Fault(n, error, scope))

    def check(self, account: str, endpoint: str, *, named_only: bool = False) -> None:
        """Raise the next pending failure that applies to this call, if any (a fresh copy each time).
        ``named_only``: only a failure injected for ``endpoint`` by name applies (a batch item)."""
        pending = self._faults.get(account)
        if not pending:
            return
        for fault in pending:
            if (fault.endpoints is None and not named_only) or (
                fault.endpoints is not None and endpoint in fault.endpoints
            ):
                fault.remaining -= 1
                if fault.remaining == 0:
                    pending.remove(fault)
                raise copy.copy(fault.error)

    def pending(self, account: str) -> int:
        """How many injected failures the account still has queued."""
        return sum(f.remaining for f in self._faults.get(account, ()))

    def clear(self, account: str | None = None) -> None:
        """Drop the pending failures of one account, or of all."""
        if account is None:
            self._faults.clear()
        else:
            self._faults.pop(account, None)
