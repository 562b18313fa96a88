"""The monitors' checks on the engine's scheduler: urgency tiers driving them, the stream's safety
net, and the ``adaptive_intervals`` / ``api_batching`` toggles flipped live with the engine running."""

from __future__ import annotations

from pathlib import Path

import pytest
from tpsl_harness import SYMBOL, Harness, RequestLog, assert_protected, open_longs, past_tp1, start_runtime

from engine.runtime.assembly import EngineRuntime
from engine.scheduler.urgency import TIERS, Tier, check_interval
from engine.sim.instruments import synthetic_symbols
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
    runtime, engine, clock = await start_runtime(tmp_path, {"sim.demo_trades": 3, "mirror.enabled": False})
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


async def test_adaptive_intervals_alone_flips_live_in_both_directions(tmp_path: Path) -> None:
    """Baseline: every monitor checked every ``baseline_interval_s`` whatever its tier; optimized
    again: each at its tier's interval. ``api_batching`` stays as it is throughout."""
    runtime, engine, clock = await start_runtime(tmp_path, {"sim.demo_trades": 3, "mirror.enabled": False})
    manager = engine.manager
    baseline_s = manager.urgency.baseline_interval_s
    try:
        await clock.drive(clock.now() + 60.0)  # the demo trades are open and settled
        keys = sorted(manager.monitors)
        assert len(keys) == 3

        def tier_intervals() -> dict[str, float]:
            return {
                key: check_interval(manager.tiers[key], manager.urgency, streaming=True, adaptive=True)
                for key in keys
            }

        async def checks_in(seconds: float) -> int:
            before = sum(manager.checks.values())
            await clock.drive(clock.now() + seconds)
            return sum(manager.checks.values()) - before

        assert {manager.monitor_interval(k) for k in keys} != {baseline_s}  # tiers, stretched by the stream
        optimized = await checks_in(120.0)

        await engine.profile.set("adaptive_intervals", "baseline")
        assert engine.profile.states()["adaptive_intervals"] == "baseline"
        assert engine.profile.states()["api_batching"] == "optimized" and manager.batching
        assert all(gateway.coalesce for gateway in runtime.gateways.values())
        assert manager.scheduler.interval("check:main") == baseline_s
        assert {manager.monitor_interval(k) for k in keys} == {baseline_s}
        assert set(manager.snapshot_monitoring()["intervals"].values()) == {baseline_s}
        baseline_before = manager.checks.get("baseline", 0)
        baseline = await checks_in(120.0)
        assert manager.checks["baseline"] - baseline_before == baseline  # counted as baseline checks
        every_5s = len(keys) * (120.0 / baseline_s - 1)
        assert baseline >= every_5s > optimized  # every monitor every 5 s, not by its tier

        await engine.profile.set("adaptive_intervals", "optimized")
        assert manager.adaptive and manager.batching
        assert manager.scheduler.interval("check:main") == check_interval(
            Tier.CRITICAL, manager.urgency, streaming=True, adaptive=True
        )
        monitoring = manager.snapshot_monitoring()
        assert monitoring["intervals"] == {
            t.value: check_interval(t, manager.urgency, streaming=True, adaptive=True) for t in TIERS
        }
        assert {k: manager.monitor_interval(k) for k in keys} == tier_intervals()
        baseline_count = manager.checks["baseline"]
        again = await checks_in(120.0)
        assert manager.checks["baseline"] == baseline_count  # no baseline check any more
        assert again < every_5s
        assert all(m["urgency"] in {t.value for t in Tier} for m in manager.snapshot_monitors())
    finally:
        await runtime.stop()


async def test_api_batching_alone_flips_live_in_both_directions(tmp_path: Path) -> None:
    """Baseline: a wave of TP1 fills goes out as single order requests and the checks read one
    symbol at a time; optimized again: batch requests and account-wide reads. ``adaptive_intervals``
    stays as it is throughout."""
    symbols = synthetic_symbols(9)
    values = {"sim.demo_trades": 0, "sim.synthetic_symbols": len(symbols), "mirror.enabled": False}
    runtime, engine, clock = await start_runtime(tmp_path, values)
    manager = engine.manager
    assert runtime.exchange is not None
    exchange = runtime.exchange
    log = RequestLog(runtime.venues["main"])
    try:
        await clock.drive(clock.now() + 5.0)
        check_tick = manager.scheduler.interval("check:main")
        await clock.drive_while(open_longs(manager, exchange, symbols))
        await clock.drive(clock.now() + 60.0)  # every opening's orders are placed

        async def wave(of: list[str]) -> tuple[dict[str, list[int]], list[str | None]]:
            """TP1 of ``of`` fills in one tick; the order requests and the checks' reads that follow."""
            mark = log.mark()
            exchange.set_prices(past_tp1(manager, of))
            await clock.drive(clock.now() + 90.0)
            assert all(manager.monitors[f"main:{s}:Buy"].breakeven for s in of)
            sent = log.since(mark)
            return RequestLog.orders(sent), [r.symbol for r in sent if r.endpoint == Endpoint.POSITIONS]

        batched = {Endpoint.CANCEL_BATCH: [6], Endpoint.AMEND_BATCH: [3]}  # e2, e3 and the stop of 3
        orders, reads = await wave(symbols[:3])
        assert orders == batched
        assert reads and set(reads) == {None}  # account-wide

        await engine.profile.set("api_batching", "baseline")
        assert engine.profile.states()["api_batching"] == "baseline" and not manager.batching
        assert engine.profile.states()["adaptive_intervals"] == "optimized" and manager.adaptive
        assert manager.scheduler.interval("check:main") == check_tick
        orders, reads = await wave(symbols[3:6])
        assert orders == {Endpoint.CANCEL: [1] * 6, Endpoint.AMEND: [1] * 3}
        assert set(reads) - {None}  # the checks read one symbol at a time

        await engine.profile.set("api_batching", "optimized")
        assert manager.batching and manager.adaptive
        orders, reads = await wave(symbols[6:])
        assert orders == batched
        assert reads and set(reads) == {None}
    finally:
        await runtime.stop()
