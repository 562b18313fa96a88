"""Did both profiles trade alike? The trades each closed, and the first difference between two runs.

The optimizations change what trading costs, never what it decides: both profiles must close the
same trades (account, symbol, side), for the same reason, with the same TPs hit and the same size.
A mirror trade closed because main closed (``main_closed``) is compared by main's reason: the mirror
follows main out either by its own stop of the same kind or by the follower's close, whichever comes
first, and that race is decided by the profiles' costs (how soon the mirror's stop moved), not by a
different decision.
Their PnL is compared within :data:`PNL_TOLERANCE_BPS` of the trade's notional: the same decision
may send a market order (an entry, a close) a few hundred simulated milliseconds apart under the two
profiles (their requests take other paths, each with the simulator's realistic latency), and the
price moves that much in the meantime. A decision that differs (a stop not moved, a TP not taken)
moves the PnL by far more, and is named by its own field anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.core.models import Trade
from engine.mirror.follower import MAIN_CLOSED

PNL_TOLERANCE_BPS = 5.0
"""Basis points of a trade's notional (entry price x size) within which two PnLs are the same."""


@dataclass(frozen=True, slots=True)
class TradeOutcome:
    """What a closed trade decided and realised, as compared across profiles (JSON-friendly)."""

    account: str
    symbol: str
    side: str
    reason: str
    tps_hit: int
    qty: float
    pnl: float
    notional: float
    decided: str
    """The reason compared across profiles: ``reason``, or main's for a mirror trade that closed with
    main (see the module docstring)."""

    @property
    def identity(self) -> tuple[str, str, str]:
        """Which position the trade was: (account, symbol, side)."""
        return self.account, self.symbol, self.side

    def label(self) -> str:
        """``main SYN0001USDT Buy``: the trade as the difference names it."""
        return " ".join(self.identity)

    def as_dict(self) -> dict[str, Any]:
        """The outcome as the JSON report lists it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> TradeOutcome:
        """The inverse of :meth:`as_dict` (the child process sends dictionaries)."""
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


def outcomes(trades: Iterable[Trade]) -> list[TradeOutcome]:
    """The ledger's closed trades as outcomes, in a profile-independent order."""
    ordered = sorted(trades, key=lambda t: (t.account, t.symbol, t.side.value, t.opened_at))
    leaders: dict[tuple[str, str], list[str]] = {}  # (symbol, side) -> reasons of trades main closed
    for t in ordered:
        if t.reason != MAIN_CLOSED:
            leaders.setdefault((t.symbol, t.side.value), []).append(t.reason)

    def decided(t: Trade) -> str:
        led = leaders.get((t.symbol, t.side.value), [])
        return led[0] if t.reason == MAIN_CLOSED and len(set(led)) == 1 else t.reason

    return [
        TradeOutcome(
            account=t.account,
            symbol=t.symbol,
            side=t.side.value,
            reason=t.reason,
            tps_hit=t.tps_hit,
            qty=t.qty,
            pnl=round(t.pnl, 6),
            notional=round(t.entry_price * t.qty, 6),
            decided=decided(t),
        )
        for t in ordered
    ]


def first_difference(
    names: tuple[str, str], first: Sequence[TradeOutcome], second: Sequence[TradeOutcome]
) -> str | None:
    """The first way the two runs' trades differ, in words naming both runs (``names``), or None."""
    a, b = names
    for n, (x, y) in enumerate(zip(first, second, strict=False), start=1):
        if x.identity != y.identity:
            return f"trade {n}: {a} closed {x.label()}, {b} closed {y.label()}"
        for field in ("decided", "tps_hit", "qty"):
            left, right = getattr(x, field), getattr(y, field)
            if left != right:
                name = "reason" if field == "decided" else field
                return f"{x.label()}: {name} {left} ({a}) vs {right} ({b})"
        tolerance = abs(x.notional) * PNL_TOLERANCE_BPS / 10_000.0
        if abs(x.pnl - y.pnl) > tolerance:
            return (
                f"{x.label()}: pnl {x.pnl:+.4f} ({a}) vs {y.pnl:+.4f} ({b}), "
                f"more than {PNL_TOLERANCE_BPS:g} bp of its notional apart"
            )
    if len(first) != len(second):
        longer, name = (first, a) if len(first) > len(second) else (second, b)
        extra = longer[min(len(first), len(second))]
        return f"{a} closed {len(first)} trades, {b} {len(second)}: only {name} closed {extra.label()}"
    return None


def max_pnl_difference(first: Sequence[TradeOutcome], second: Sequence[TradeOutcome]) -> float:
    """The largest PnL difference between matching trades (USDT; 0 without any)."""
    return round(max((abs(x.pnl - y.pnl) for x, y in zip(first, second, strict=False)), default=0.0), 6)
