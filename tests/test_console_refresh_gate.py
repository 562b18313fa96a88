"""The console refreshes only when the engine's data changed, or once a second for the clock
(issue 16, item 13: near-zero idle cost by painting only when something changed).

The decision is pure (:class:`~console.refresh_gate.RefreshGate`); the mark it reads is the
dashboard's (:meth:`~engine.dashboard.snapshot.Dashboard.changes`), which moves with venue events
and alerts, and not with the snapshot builds themselves (they move the cache's hit counters, which
a refresh then painted, which was a refresh that only showed itself).
"""

from __future__ import annotations

from test_dashboard import SimHost, clock_of, open_position, sim, snapshot  # noqa: F401 (fixture)

from console.refresh_gate import MAX_QUIET_S, RefreshGate


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


async def test_the_mark_moves_with_venue_events_and_alerts_not_with_snapshots(sim: SimHost) -> None:
    dashboard = sim.dashboard
    assert dashboard is not None
    clock = clock_of(sim)
    before = dashboard.changes()
    for _ in range(3):
        await snapshot(sim)  # building snapshots (cache hits and misses) changes no data
    assert dashboard.changes() == before

    await clock.drive(until=clock.now() + 2.0)  # the simulator's prices tick: ticker events
    ticked = dashboard.changes()
    assert ticked[0] > before[0] and ticked[1] == before[1]

    await open_position(sim, "main", "BTCUSDT", 0.01)  # an execution, order and position updates
    filled = dashboard.changes()
    assert filled[0] > ticked[0]

    sim.alerts.raise_alert("warning", "test", "something to show")
    assert dashboard.changes() == (filled[0], filled[1] + 1)
