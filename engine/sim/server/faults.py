"""The fake V5 server's own fault switches: the failures only the wire has.

The exchange's faults (error bursts, dropped subscriptions) live in :mod:`engine.sim.faults`, shared
with the in-process venue; these are the ones a test flips on the server itself.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ReplyEdit = Callable[[dict[str, Any]], Any]
"""Takes a reply's JSON envelope and returns the envelope to send instead (any JSON value)."""


@dataclass(slots=True)
class ServerFaults:
    """Faults only the wire has: added latency, HTTP 403 on every call, the reset time of injected 10006.

    Error bursts go through the exchange's own injector
    (:meth:`~engine.sim.server.app.BybitServer.error_burst`), which the in-process venue shares, and
    stream drops through :meth:`~engine.sim.server.app.BybitServer.drop_streams`.
    """

    latency_s: float = 0.0
    """Added to every REST response."""
    slow_calls: int = 0
    """The next this many REST calls are executed, then answered ``slow_s`` late (a response that
    outlives the client's timeout: the call landed, the client does not know)."""
    slow_s: float = 0.0
    forbidden: bool = False
    """Answer every REST call with HTTP 403, as Bybit does to a banned IP."""
    streams_blocked: bool = False
    """Refuse WebSocket upgrades (HTTP 503), so a dropped client stays away until this is cleared."""
    rate_limit_reset_s: float = 1.0
    """How far in the future an injected 10006 says the budget refills."""
    drops: int = 0
    """Private connections dropped so far (by a test or by the exchange ending a subscription)."""
    edits: dict[str, list[ReplyEdit]] = field(default_factory=dict)
    """By REST path: edits for the next replies of that path, one per reply (a malformed reply)."""
    outages: set[str] = field(default_factory=set)
    """Accounts whose API is down: their REST calls answer HTTP 503 and their stream logins fail."""
    flaky_rate: float = 0.0
    """The share of private REST calls that fail transiently: half answered ``10016`` without being
    executed, half executed and answered ``flaky_late_s`` late (past the client's timeout)."""
    flaky_late_s: float = 0.0
    flaky_rng: random.Random = field(default_factory=lambda: random.Random(0))
    injected: Counter[str] = field(default_factory=Counter)
    """Faults served so far, by kind (``outage``, ``flaky_error``, ``flaky_timeout``)."""

    def flaky(self) -> str | None:
        """Whether this private call fails: ``"error"``, ``"timeout"`` or None (seeded draws)."""
        if self.flaky_rate <= 0 or self.flaky_rng.random() >= self.flaky_rate:
            return None
        kind = "error" if self.flaky_rng.random() < 0.5 else "timeout"
        self.injected[f"flaky_{kind}"] += 1
        return kind

    def mangle_next(self, path: str, *edits: ReplyEdit) -> None:
        """Send the next replies of ``path`` through ``edits``, one each: a reply with no ``result``,
        a ``retCode`` that is not a number, a ``list`` that is not a list…"""
        self.edits.setdefault(path, []).extend(edits)

    def mangled(self, path: str, body: str) -> str:
        """``body`` (a JSON reply of ``path``), through the next edit waiting for that path if any."""
        waiting = self.edits.get(path)
        if not waiting:
            return body
        return json.dumps(waiting.pop(0)(json.loads(body)), separators=(",", ":"))

    def delay_next(self, calls: int, seconds: float) -> None:
        """Answer the next ``calls`` REST calls ``seconds`` late (they execute at once)."""
        self.slow_calls, self.slow_s = calls, seconds

    def late_answer(self) -> float:
        """How late to send the answer of the call just executed (uses up one delayed call)."""
        if self.slow_calls <= 0:
            return 0.0
        self.slow_calls -= 1
        return self.slow_s
