"""Policy test: the original bot's save stream under SimplePolicy and SmartPolicy.

15 monitors, a save on every 5-second monitoring check plus the fills and TP/SL events. Simple writes
the whole state once per save; smart must need at most 5% of those writes and never delay a critical
save (each one is re-read from disk, independently, the moment ``save`` returns). The simple run covers
``OPCONSOLE_POLICY_TEST_MINUTES`` (default 10) simulated minutes because every save is a real
snapshot write; the smart run always covers the full hour. ``scripts/persistence_policy_bench.py``
prints the full-hour figures of both.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.commands.bench.save_pattern import (
    DiskFollower,
    ReplayResult,
    monitor_hour,
    replay,
    virtual_driver,
)
from engine.core.clock import VirtualClock
from persistence import Reason, Store

START = 1_767_225_600.0
MONITORS = 15
FLUSH_INTERVAL_S = 30.0
SIMPLE_MINUTES = float(os.environ.get("OPCONSOLE_POLICY_TEST_MINUTES", "10"))


async def run(state_dir: Path, policy: str, minutes: float) -> ReplayResult:
    events = monitor_hour(monitors=MONITORS, duration_s=minutes * 60, seed=7)
    clock = VirtualClock(start=START)
    store = Store(state_dir, clock=clock, policy=policy, flush_interval_s=FLUSH_INTERVAL_S)
    store.load()
    await store.start()
    result = await replay(
        store,
        events,
        advance_to=virtual_driver(clock, store, START),
        duration_s=minutes * 60,
        is_durable=DiskFollower(state_dir).is_durable,
    )
    await store.close()
    return result


def test_workload_is_the_original_save_pattern() -> None:
    events = monitor_hour(monitors=MONITORS, duration_s=3600, seed=7)
    assert events == monitor_hour(monitors=MONITORS, duration_s=3600, seed=7)  # deterministic
    per_minute_per_monitor = len(events) / 60 / MONITORS
    assert 10 <= per_minute_per_monitor <= 15  # the seed's estimate of the original bot
    reasons = {event.reason for event in events}
    assert {Reason.MONITORING_UPDATE, Reason.TP_HIT, Reason.SL_HIT, Reason.LIMIT_FILL_PROGRESS} <= reasons
    assert [e.t for e in events] == sorted(e.t for e in events)


async def test_smart_needs_at_most_5_percent_of_simple_writes(tmp_path: Path) -> None:
    simple = await run(tmp_path / "simple", "simple", SIMPLE_MINUTES)
    smart_same = await run(tmp_path / "smart-same", "smart", SIMPLE_MINUTES)
    smart_hour = await run(tmp_path / "smart-hour", "smart", 60)
    hour_saves = len(monitor_hour(monitors=MONITORS, duration_s=3600, seed=7))
    print(f"\nsimple, {SIMPLE_MINUTES:g} min: {simple}")
    print(f"smart,  {SIMPLE_MINUTES:g} min: {smart_same}")
    print(f"smart,  60 min: {smart_hour}")
    print(f"one hour: {hour_saves} saves = simple's full writes; smart's disk writes = {smart_hour.writes}")

    # simple: one whole-state write per save call, whatever the reason
    assert simple.full_writes == simple.saves == simple.writes
    assert simple.critical_not_durable == 0

    # smart: at most 5% of simple's writes on the same stream, over the short window and the hour
    assert smart_same.saves == simple.saves
    assert smart_same.writes <= 0.05 * simple.full_writes
    assert smart_hour.writes <= 0.05 * hour_saves  # simple's full writes for the hour = its saves
    for smart in (smart_same, smart_hour):
        assert smart.critical_not_durable == 0  # each critical save was on disk when save returned
        assert smart.max_critical_delay_s == 0.0  # and no (virtual) time passed while it waited
        assert smart.max_pending_age_s <= FLUSH_INTERVAL_S  # the rest waited at most one interval
        assert smart.full_writes == 0  # an hour stays under the default compaction bounds


async def test_the_disk_check_sees_a_pending_change_as_not_durable(tmp_path: Path) -> None:
    """The durability check of the test above can fail: a non-critical save is not on disk yet."""
    clock = VirtualClock(start=START)
    store = Store(tmp_path, clock=clock)
    store.load()
    await store.start()
    follower = DiskFollower(tmp_path)
    await store.save("m", {"n": 1}, reason=Reason.MONITORING_UPDATE)
    assert not follower.is_durable("m", {"n": 1})
    await store.save("m", {"n": 2}, reason=Reason.PHASE_CHANGE)
    assert follower.is_durable("m", {"n": 2})
    await store.compact()
    assert follower.is_durable("m", {"n": 2})  # follows the compaction to the new snapshot
    await store.close()
