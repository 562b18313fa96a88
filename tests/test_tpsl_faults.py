"""Issue 12, "protection must outlive a failing component": a state store that cannot write and a
background task that fails never stop the protection of open positions.

The full disk is an ``OSError(ENOSPC)`` injected into the store's durable write path (the journal
append and the snapshot write), under the real :class:`~persistence.store.Store` on the harness's
virtual clock.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tpsl_harness import EPOCH, SYMBOL, Harness, assert_protected, stop_orders

from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.models import OrderRequest, OrderType, Phase, Side
from engine.core.settings import load_settings
from engine.runtime.assembly import EngineRuntime
from engine.trading.approaches import Approach, TradeRejected, TradeRequest
from persistence import Store, read_state
from persistence import store as store_module
from persistence.durable import JournalAppender


class FullDisk:
    """Makes every durable write of the store fail with ENOSPC while :attr:`full` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.full = False
        self.failures = 0
        real_append = JournalAppender.append
        real_snapshot = store_module.write_snapshot

        async def append(appender: JournalAppender, data: bytes) -> Any:
            self._check()
            return await real_append(appender, data)

        async def snapshot(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return await real_snapshot(*args, **kwargs)

        monkeypatch.setattr(JournalAppender, "append", append)
        monkeypatch.setattr(store_module, "write_snapshot", snapshot)

    def _check(self) -> None:
        if self.full:
            self.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device")


def eth_request(h: Harness) -> TradeRequest:
    """A valid fast long on ETHUSDT (a second symbol: the BTC one is taken)."""
    mark = h.exchange.ticker("ETHUSDT").mark
    return h.request(Approach.FAST, symbol="ETHUSDT", entries=(None,), tps=(mark * 1.02,), sl=mark * 0.98)


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Stores opened by a test; closed at the end."""
    opened: list[Store] = []
    yield opened
    for store in opened:
        await store.close()


async def open_store(state_dir: Path, clock: VirtualClock, stores: list[Store]) -> Store:
    store = Store(state_dir, clock=clock)
    store.load()
    await store.start()
    stores.append(store)
    return store


async def test_a_full_disk_keeps_protecting_refuses_entries_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[Store]
) -> None:
    disk = FullDisk(monkeypatch)
    clock = VirtualClock(start=EPOCH)
    state_dir = tmp_path / "state"
    store = await open_store(state_dir, clock, stores)
    h = Harness(store=store, clock=clock)  # type: ignore[arg-type]
    await h.start()
    await h.manager.open_trade(h.request(margin=1000.0))
    await h.settle()
    assert_protected(h)
    first_size = h.position().size

    disk.full = True
    await h.settle(45.0)  # a flush of the periodic saves finds the disk full
    assert disk.failures > 0 and store.failed
    await h.price(98_900.0)  # the second (limit) entry fills while nothing can be written
    assert h.position().size > first_size
    assert_protected(h)  # the stop was resized to the whole position all the same
    (critical,) = [m for sev, kind, m in h.alerts if kind == "store_failed"]
    assert "cannot be written" in critical and "stay protected" in critical and "refused" in critical
    assert any(sev == "critical" and kind == "store_failed" for sev, kind, _ in h.alerts)
    assert h.manager.engine_state == "degraded"
    with pytest.raises(TradeRejected, match="cannot be written"):
        await h.manager.open_trade(eth_request(h))
    await h.price(97_900.0)  # the third entry fills: still protected
    assert_protected(h)
    await h.settle(30.0)  # retries with backoff, all failing
    assert store.failed and not any(kind == "store_recovered" for _, kind, _ in h.alerts)

    disk.full = False
    await h.settle(61.0)  # the next retry (at most 60 s away) gets through
    assert not store.failed
    assert any(sev == "info" and kind == "store_recovered" for sev, kind, _ in h.alerts)
    assert h.manager.engine_state == "running"
    monitor = h.manager.monitors[f"main:{SYMBOL}:Buy"]
    on_disk, _ = read_state(state_dir)  # what a restart would read, without the lock
    assert on_disk[f"monitor:main:{SYMBOL}:Buy"] == monitor.to_dict()

    # A restart from the disk finds the decisions made while it was full.
    await h.stop()
    await store.close()
    again = Harness(store=await open_store(state_dir, clock, stores), exchange=h.exchange, clock=clock)  # type: ignore[arg-type]
    await again.start()
    recovered = again.manager.monitors[f"main:{SYMBOL}:Buy"]
    assert (
        recovered.monitor_id == monitor.monitor_id and recovered.phase is Phase.MONITORING
    )  # all 3 entries in
    assert recovered.size == pytest.approx(again.position().size)
    assert_protected(again)
    assert len(stop_orders(again.open_orders())) == 1
    # New entries are allowed again.
    await again.manager.open_trade(eth_request(again))
    await again.stop()


async def test_an_entry_whose_creation_cannot_be_written_is_not_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[Store]
) -> None:
    """The disk fills just before a trade is opened: its write-ahead (monitor_created) is the first
    write to fail, so the entry is refused with the reason and nothing is sent."""
    disk = FullDisk(monkeypatch)
    clock = VirtualClock(start=EPOCH)
    store = await open_store(tmp_path / "state", clock, stores)
    h = Harness(store=store, clock=clock)  # type: ignore[arg-type]
    await h.start()
    disk.full = True
    with pytest.raises(TradeRejected, match="cannot be written"):
        await h.manager.open_trade(h.request(margin=1000.0))
    assert h.open_orders() == [] and not h.position().is_open
    assert h.manager.monitors == {}
    assert any(kind == "store_failed" for _, kind, _ in h.alerts)
    await h.stop()


# --- the supervisor: no background task dies for good -------------------------------------------


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[EngineRuntime]:
    """The whole engine on the embedded simulator and a virtual clock, no demo trades."""
    settings = load_settings(state_dir=tmp_path).with_values({"sim.demo_trades": 0})
    engine = EngineRuntime(settings, tmp_path, VirtualClock(start=parse_iso_utc(settings.get("sim.epoch"))))
    await engine.start()
    yield engine
    await engine.stop()


def virtual(runtime: EngineRuntime) -> VirtualClock:
    assert isinstance(runtime.clock, VirtualClock)
    return runtime.clock


def alerts_of(runtime: EngineRuntime, type_: str) -> list[tuple[str, str]]:
    return [(a.severity.value, a.message) for a in runtime.alerts.recent() if a.type == type_]


async def test_a_task_that_fails_twice_is_restarted_and_the_engine_runs_again(
    runtime: EngineRuntime,
) -> None:
    clock = virtual(runtime)
    await clock.drive(clock.now() + 5.0)  # reconciled
    assert runtime.state.value == "running"
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"glitch {runs}")
        await clock.sleep(3600.0)  # then it works

    runtime.spawn("flaky", flaky)
    await clock.drive(clock.now())  # the first run fails at once
    assert runtime.state.value == "degraded" and runtime.failures == ["flaky"]
    await clock.drive(clock.now() + 1.0)  # restarted after 1 s, fails again
    assert runtime.state.value == "degraded" and runs == 2
    await clock.drive(clock.now() + 2.0)  # restarted after 2 s: works
    assert runs == 3 and runtime.failures == [] and runtime.state.value == "running"
    assert runtime.restarts["flaky"] == 2
    restarted = alerts_of(runtime, "task_restarted")
    assert [sev for sev, _ in restarted] == ["warning", "warning"]
    assert "flaky failed (RuntimeError: glitch 1); restarting in 1 s" in restarted[0][1]
    assert "restarting in 2 s (failure 2 in a row)" in restarted[1][1]


async def test_restarts_back_off_and_turn_critical_and_endings_are_not_restarted(
    runtime: EngineRuntime,
) -> None:
    clock = virtual(runtime)
    failing = 0
    ended = 0

    async def broken() -> None:
        nonlocal failing
        failing += 1
        raise KeyError("result")

    async def done() -> None:
        nonlocal ended
        ended += 1

    runtime.spawn("broken", broken)
    runtime.spawn("done", done)
    await clock.drive(clock.now() + 1.0 + 2.0 + 4.0 + 8.0 + 16.0 + 32.0 + 60.0 + 60.0)
    assert failing == 9  # restarts after 1, 2, 4, … capped at 60 s
    assert ended == 1 and "done" not in runtime.failures
    severities = [sev for sev, _ in alerts_of(runtime, "task_restarted")]
    assert severities[:3] == ["warning", "warning", "critical"] and set(severities[3:]) == {"critical"}
    assert "restarting in 60 s" in alerts_of(runtime, "task_restarted")[-1][1]
    assert runtime.state.value == "degraded"
    cancelled = runtime.spawn("cancelled", lambda: clock.sleep(3600.0))
    cancelled.cancel()
    await clock.drive(clock.now() + 5.0)
    assert "cancelled" not in runtime.failures and "cancelled" not in runtime.restarts


async def test_a_periodic_job_that_fails_is_reported_runs_again_and_protects_later_fills(
    runtime: EngineRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = virtual(runtime)
    manager, exchange = runtime.tpsl, runtime.exchange
    assert manager is not None and exchange is not None
    await clock.drive(clock.now() + 5.0)
    assert manager.ready
    real_reconcile = manager.reconcile
    calls = 0

    async def fails_once(account: str, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected")
        return await real_reconcile(account, **kwargs)

    monkeypatch.setattr(manager, "reconcile", fails_once)
    await clock.drive(clock.now() + 31.0)  # the reconciliation job raises once, then runs again
    assert calls > 1
    [(severity, message)] = alerts_of(runtime, "job_failed")
    assert severity == "warning" and "RuntimeError: injected" in message
    assert runtime.failures == [] and manager.ready  # no task died: the scheduler keeps the job
    assert runtime.state.value == "running"

    exchange.place("main", OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, qty=0.02))  # a fill afterwards
    await clock.drive(clock.now() + 2.0)
    position = exchange.positions("main", SYMBOL)[0]
    stops = stop_orders(exchange.open_orders("main"))
    assert position.is_open and len(stops) == 1 and stops[0].qty == pytest.approx(position.size)
    assert manager.monitors[f"main:{SYMBOL}:Buy"].approach == "adopted"
