"""Reaction latency: how long a fill that calls for an action waits for the request that carries it.

What is measured: from the venue's timestamp of an execution (``Execution.ts``) whose decision has
order actions (an entry fill -> the stop-loss placed or resized, TP1 -> the stop moved to breakeven,
a stop-loss fill -> the rest cancelled) to the moment the TP/SL manager hands those actions to the
account's order sender — whether the fill came as an event (stream or execution poll) or was found
by a check's reconciliation read. So it includes the stream's (or, without push streams, the poll's
or check's) delivery delay, the wait for the account's lock and the decision and its durable save;
it excludes a wait for the rate budget inside the sender and the request's own round trip. Times
are on the engine clock (simulated time under a virtual clock); a venue timestamp a little ahead
of the local clock counts as zero.

The manager feeds :class:`ReactionRecorder`; the metrics export reads it as Prometheus histograms
and the benchmark may read its recent samples for percentiles. No Prometheus import here: the
trading layer stays free of the exporter.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from engine.core.link_ids import purpose_of
from engine.core.models import Execution
from engine.trading.monitor import Transition

REACTION_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Upper bounds of the histogram buckets, in seconds: from a stream-driven reaction (milliseconds)
to a polled one in the baseline profile (the poll interval, seconds)."""

RECENT_SAMPLES = 10_000
"""Samples kept per kind of fill for percentiles (bounded memory over weeks of running)."""


def fill_kind(link_id: str) -> str:
    """The kind of fill a reaction answers: ``entry``, ``tp`` (any take-profit), ``sl``, ``close``,
    or ``external`` for an order that is not ours (a position adopted by reconciliation)."""
    purpose = purpose_of(link_id)
    if purpose is None:
        return "external"
    return "tp" if purpose.startswith("tp") else purpose


def answered_fills(
    transitions: Iterable[Transition], executions: Iterable[Execution], applied: Collection[str]
) -> dict[int, Execution]:
    """For a reconciliation pass (fills found by a read, not the stream): the fill each transition
    with actions answers, by ``id(transition)`` — the last of the fills ``applied`` to its symbol,
    the one that completed what the decision saw."""
    last: dict[str, Execution] = {}
    for exe in executions:
        if exe.exec_id in applied and (exe.symbol not in last or exe.ts >= last[exe.symbol].ts):
            last[exe.symbol] = exe
    return {id(t): last[t.monitor.symbol] for t in transitions if t.actions and t.monitor.symbol in last}


@dataclass(slots=True)
class LatencyHistogram:
    """Counts per bucket (not cumulative; one more than ``bounds`` for +Inf), their sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum_s: float = 0.0
    count: int = 0
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_SAMPLES))

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        """Count one latency (``bisect_left``: a value equal to a bound falls in that bound's bucket,
        as Prometheus' ``le`` means)."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum_s += seconds
        self.count += 1
        self.recent.append(seconds)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, count at or below it)`` per bucket, ending with ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


class ReactionRecorder:
    """Reaction latencies per kind of fill (see the module doc for what is measured)."""

    def __init__(self, buckets: tuple[float, ...] = REACTION_BUCKETS_S) -> None:
        self.buckets = buckets
        self._by_kind: dict[str, LatencyHistogram] = {}

    def observe(self, kind: str, seconds: float) -> None:
        """One reaction to a fill of ``kind`` that took ``seconds`` (negative counts as zero)."""
        histogram = self._by_kind.get(kind)
        if histogram is None:
            histogram = self._by_kind[kind] = LatencyHistogram(self.buckets)
        histogram.observe(max(0.0, seconds))

    def histograms(self) -> dict[str, LatencyHistogram]:
        """The histogram of each kind of fill seen so far, by kind (sorted)."""
        return dict(sorted(self._by_kind.items()))

    def counts(self) -> dict[str, int]:
        """Reactions observed so far, by kind of fill: a mark for :meth:`samples_since`."""
        return {kind: histogram.count for kind, histogram in self._by_kind.items()}

    def samples_since(self, mark: dict[str, int], kinds: Collection[str]) -> dict[str, list[float]]:
        """The latencies (seconds) observed since ``mark`` for each of ``kinds`` (the latest
        :data:`RECENT_SAMPLES` of each at most)."""
        samples: dict[str, list[float]] = {}
        for kind in kinds:
            histogram = self._by_kind.get(kind)
            new = 0 if histogram is None else histogram.count - mark.get(kind, 0)
            samples[kind] = list(histogram.recent)[-new:] if histogram is not None and new > 0 else []
        return samples
