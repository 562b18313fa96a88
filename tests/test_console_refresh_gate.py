"""The console refreshes only when the engine's data changed, or once a second for the clock
(issue 16, item 13: near-zero idle cost by painting only when something changed).

The decision is pure (:class:`~console.refresh_gate.RefreshGate`); the mark it reads is the
dashboard's (:meth:`~engine.dashboard.snapshot.Dashboard.changes`, tested in test_dashboard.py),
which moves with venue events and alerts, and not with the snapshot builds themselves.
"""

from __future__ import annotations

import pytest

from console.refresh_gate import MAX_QUIET_S, METRICS_PERIOD_S, REFRESH_SHARE, RefreshGate, pause_after


def test_the_first_refresh_always_runs_and_an_unchanged_mark_waits_for_the_clock() -> None:
    gate = RefreshGate()
    assert gate.due((0, 0), now=10.0)
    gate.refreshed((0, 0), now=10.0)
    assert not gate.due((0, 0), now=10.5)  # nothing new half a second later: skipped
    assert gate.due((0, 0), now=10.0 + MAX_QUIET_S)  # the header's clock must tick
    assert gate.due((1, 0), now=10.1)  # a venue event: at once
    assert gate.due((0, 1), now=10.1)  # an alert: at once


def test_an_engine_that_cannot_say_is_always_refreshed() -> None:
    gate = RefreshGate()
    gate.refreshed(None, now=1.0)
    assert gate.due(None, now=1.01)


def test_routine_refreshes_repaint_the_cache_panel_every_other_second() -> None:
    gate = RefreshGate()
    assert gate.metrics_due(now=100.0)  # the first one paints it
    assert not gate.metrics_due(now=101.0)  # a second later: the rates over minutes can wait
    assert gate.metrics_due(now=100.0 + METRICS_PERIOD_S)
    assert not gate.metrics_due(now=100.5 + METRICS_PERIOD_S)


def test_a_costly_refresh_slows_the_rate_so_refreshing_stays_a_fifth_of_the_time() -> None:
    """At a thousand positions a refresh costs hundreds of ms: back to back (the old rule slept only a
    quarter period) they left the engine a fraction of the core the two threads share. The pause
    grows with the cost; a cheap refresh keeps the set rate."""
    assert pause_after(0.5, 0.02) == pytest.approx(0.48)
    assert pause_after(0.5, 0.5) == pytest.approx(2.0)
    took = 0.3
    pause = pause_after(0.5, took)
    assert took / (took + pause) == pytest.approx(REFRESH_SHARE)
