"""The collector's full passes skip the state that survived start-up (engine/runtime/collector.py)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from engine.core.clock import VirtualClock
from engine.core.settings import load_settings
from engine.runtime.assembly import EngineRuntime
from engine.runtime.collector import CHECK_INTERVAL_S, REFREEZE_S, THRESHOLDS, CollectorFreeze

EPOCH = 1_767_225_600.0


@pytest.fixture(autouse=True)
def thawed() -> object:
    gc.unfreeze()
    yield
    gc.unfreeze()


async def test_frozen_once_ready_and_again_each_period_never_before() -> None:
    clock = VirtualClock(start=EPOCH)
    ready = False
    collector = CollectorFreeze(clock, lambda: ready)
    await collector.tick()
    assert gc.get_freeze_count() == 0 and collector.frozen_at is None  # reconciling: not yet
    ready = True
    await collector.tick()
    assert gc.get_freeze_count() > 0 and collector.frozen_at == EPOCH
    await clock.drive(EPOCH + REFREEZE_S / 2)
    await collector.tick()
    assert collector.frozen_at == EPOCH  # not again within the period
    await clock.drive(EPOCH + REFREEZE_S)
    await collector.tick()
    assert collector.frozen_at == EPOCH + REFREEZE_S
    collector.release()
    assert gc.get_freeze_count() == 0 and collector.frozen_at is None


async def test_the_engine_freezes_its_state_once_reconciled_and_thaws_it_when_stopped(tmp_path: Path) -> None:
    settings = load_settings(None, tmp_path).with_values(
        {"venue.kind": "sim", "sim.demo_trades": 0, "mirror.enabled": False}, source="test"
    )
    clock = VirtualClock(start=EPOCH)
    runtime = EngineRuntime(settings, tmp_path, clock)
    engine = await runtime.start()
    await clock.drive_while(engine.manager.wait_ready())
    await clock.drive(clock.now() + 2 * CHECK_INTERVAL_S)
    assert gc.get_freeze_count() > 0
    await clock.drive_while(runtime.stop())
    assert gc.get_freeze_count() == 0


async def test_the_engine_runs_the_collector_less_often_and_gives_the_thresholds_back() -> None:
    """A thousand positions' snapshot set off a young collection every 700 allocations (CPython's
    default) and a middle pass every ten of those: collector pauses p99 68 ms inside the builds."""
    before = gc.get_threshold()
    assert before != THRESHOLDS
    collector = CollectorFreeze(VirtualClock(start=EPOCH), lambda: False)
    try:
        assert gc.get_threshold() == THRESHOLDS
    finally:
        collector.release()
    assert gc.get_threshold() == before
