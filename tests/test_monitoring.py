"""The monitors' checks on the engine's scheduler: urgency tiers driving them, the stream's safety
net, and the ``adaptive_intervals`` / ``api_batching`` toggles flipped live with the engine running."""

from __future__ import annotations

from pathlib import Path

import pytest
from tpsl_harness import SYMBOL, Harness, assert_protected

from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.settings import load_settings
from engine.runtime.assembly import EngineRuntime
from engine.scheduler.urgency import Tier
from engine.venue.base import Endpoint

KEY = f"main:{SYMBOL}:Buy"
BIG = {"margin": 1000.0}


async def test_a_price_walking_to_the_stop_moves_the_monitor_up_to_critical_checks() -> None:
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))  # stop at 97 000, entries at 99 000 / 98 000
    await h.price(100_000.0)
    assert h.manager.tiers[KEY] is not Tier.CRITICAL
    before = h.manager.checks.get("critical", 0)
    for last in (99_500.0, 99_200.0, 98_950.0):  # the unfilled entry at 99 000 comes within reach
        await h.price(last)
    assert h.manager.tiers[KEY] is Tier.CRITICAL
    assert h.manager.monitor_interval(KEY) == h.manager.urgency.intervals[Tier.CRITICAL] * (
        h.manager.urgency.stream_stretch
    )
    await h.settle(30.0)
    assert h.manager.checks.get("critical", 0) > before  # checked at the critical tier's pace
    assert h.manager.snapshot_monitors()[0]["urgency"] == "critical"
    await h.stop()


async def test_fills_during_a_stream_gap_are_found_by_the_poll() -> None:
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    h.exchange.drop_stream("main")  # the e2 fill below happens while nobody listens
    h.exchange.set_price(SYMBOL, 98_900.0)
    await h.settle(5.0)
    assert h.position().size == pytest.approx(0.066)
    assert h.manager.monitors[KEY].size == pytest.approx(0.066)
    assert_protected(h)
    await h.stop()


async def test_without_streams_the_checks_and_polls_carry_a_trade_through_tp1() -> None:
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    await h.manager.set_push_streams(False)  # the stream is off mid-trade: polling is the source
    assert h.manager.scheduler.interval("fills:main") == h.manager.timing.execution_poll_s
    await h.price(98_900.0)  # e2
    await h.price(101_100.0)  # TP1: breakeven comes from a polled fill
    await h.settle(10.0)
    m = h.manager.monitors[KEY]
    assert m.tps_filled() == 1 and m.breakeven
    assert_protected(h)
    await h.stop()


def _calls(runtime: EngineRuntime) -> int:
    return sum(gateway.calls.total for gateway in runtime.gateways.values())


async def test_adaptive_intervals_and_api_batching_flip_live_in_both_directions(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path).with_values(
        {"sim.demo_trades": 3, "mirror.enabled": False}, source="test"
    )
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, tmp_path, clock)
    engine = await runtime.start()
    manager = engine.manager
    try:
        await clock.drive(clock.now() + 60.0)  # the demo trades are open and settled
        assert len(manager.monitors) == 3

        async def window() -> tuple[int, dict[str, int]]:
            calls, by_path = _calls(runtime), dict(runtime.gateways["main"].calls.as_dict())
            await clock.drive(clock.now() + 120.0)
            after = runtime.gateways["main"].calls.as_dict()
            return _calls(runtime) - calls, {p: after[p] - by_path.get(p, 0) for p in after}

        optimized, _ = await window()
        await engine.profile.set("adaptive_intervals", "baseline")
        await engine.profile.set("api_batching", "baseline")
        assert engine.profile.states()["adaptive_intervals"] == "baseline"
        assert manager.scheduler.interval("check:main") == manager.urgency.baseline_interval_s
        checks_before = manager.checks.get("baseline", 0)
        baseline, paths = await window()
        # every monitor every 5 s, one at a time, each with its own per-symbol reads
        assert manager.checks["baseline"] - checks_before >= 3 * 120 / 5 - 3
        assert paths.get(Endpoint.POSITIONS, 0) >= 3 * 120 / 5 - 3
        assert baseline > 3 * optimized

        await engine.profile.set("adaptive_intervals", "optimized")
        await engine.profile.set("api_batching", "optimized")
        assert manager.adaptive and manager.batching
        assert all(gateway.coalesce for gateway in runtime.gateways.values())
        again, _ = await window()
        assert again * 3 < baseline
        assert all(m["urgency"] in {t.value for t in Tier} for m in manager.snapshot_monitors())
    finally:
        await runtime.stop()
