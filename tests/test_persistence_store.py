"""The store's write paths with real files: durability by reason, batching, policies, compaction, lock."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
import sys
from asyncio.subprocess import PIPE
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.core.clock import VirtualClock
from persistence import Reason, StateLocked, Store, StoreFailed, Write, durable
from persistence import store as store_module
from persistence.codec import decode_snapshot
from persistence.durable import JournalAppender
from persistence.layout import StateFiles
from persistence.metrics import rolling_rate_per_hour
from persistence.recovery import plan_recovery, scan_journal

START = 1_767_225_600.0

OpenStore = Callable[..., Awaitable[Store]]


def on_disk(state_dir: Path) -> dict[str, Any]:
    """What a restart would recover now (read-only, independent of the store object)."""
    return plan_recovery(StateFiles(state_dir)).state


def journal_lines(state_dir: Path) -> list[dict[str, Any]]:
    path = StateFiles(state_dir).journal
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=START)


@pytest.fixture
async def open_store(tmp_path: Path, clock: VirtualClock) -> AsyncIterator[OpenStore]:
    """Factory: a loaded and started store on ``tmp_path/state``; every store is closed afterwards."""
    stores: list[Store] = []

    async def factory(**options: Any) -> Store:
        store = Store(tmp_path / "state", clock=clock, **options)
        store.load()
        await store.start()
        stores.append(store)
        return store

    yield factory
    for store in stores:
        await store.close()


async def test_fresh_directory_starts_empty_with_private_files(tmp_path: Path, open_store: OpenStore) -> None:
    store = await open_store()
    assert store.recovery is not None
    assert store.recovery.source == "fresh" and not store.recovery.critical
    assert dict(store.state) == {}
    await store.save("monitor:main:BTCUSDT:Buy", {"phase": "BUILDING"}, reason=Reason.MONITOR_CREATED)
    files = StateFiles(tmp_path / "state")
    for path in (files.snapshot, files.journal, files.lock):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(files.root.stat().st_mode) & 0o077 == 0
    assert journal_lines(files.root)[0]["reason"] == "startup"


async def test_critical_save_is_on_disk_when_save_returns(tmp_path: Path, open_store: OpenStore) -> None:
    store = await open_store()
    seq = await store.save("monitor:main:ETHUSDT:Sell", {"tps_filled": 1}, reason=Reason.TP_HIT)
    assert on_disk(tmp_path / "state")["monitor:main:ETHUSDT:Sell"] == {"tps_filled": 1}
    last = journal_lines(tmp_path / "state")[-1]
    assert (last["seq"], last["reason"], last["op"]) == (seq, "tp_hit", "set")
    assert store.metrics()["pending"] == 0


async def test_non_critical_saves_are_coalesced_and_written_in_one_append(
    tmp_path: Path, open_store: OpenStore
) -> None:
    store = await open_store()
    before = store.metrics()
    for n in range(10):
        assert (
            await store.save("monitor:main:SOLUSDT:Buy", {"checks": n}, reason=Reason.MONITORING_UPDATE)
            is None
        )
    for k in range(5):
        await store.save(f"monitor:main:K{k}:Buy", {"checks": k}, reason=Reason.POSITION_UPDATE)
    assert store.state["monitor:main:SOLUSDT:Buy"] == {"checks": 9}  # the live view is current
    assert "monitor:main:SOLUSDT:Buy" not in on_disk(tmp_path / "state")
    assert store.metrics()["pending"] == 6
    result = await store.flush()
    after = store.metrics()
    assert result.records == 6 and not result.full_write and result.bytes > 0
    assert after["journal_appends"] - before["journal_appends"] == 1
    assert after["fsyncs"] - before["fsyncs"] == 1
    assert on_disk(tmp_path / "state")["monitor:main:SOLUSDT:Buy"] == {"checks": 9}
    assert after["pending"] == 0 and after["oldest_pending_age_s"] is None
    assert after["saves_by_reason"]["monitoring_update"] == 10


async def test_critical_save_carries_pending_changes(tmp_path: Path, open_store: OpenStore) -> None:
    store = await open_store()
    await store.save("stats", {"wins": 3}, reason=Reason.STATS_UPDATE)
    appends = store.metrics()["journal_appends"]
    await store.save("ledger", {"trades": [1]}, reason=Reason.TRADE_RECORDED)
    disk = on_disk(tmp_path / "state")
    assert disk["stats"] == {"wins": 3} and disk["ledger"] == {"trades": [1]}
    assert store.metrics()["journal_appends"] == appends + 1


async def test_flush_timer_runs_on_the_injected_clock(
    tmp_path: Path, clock: VirtualClock, open_store: OpenStore
) -> None:
    store = await open_store(flush_interval_s=30.0)
    await clock.drive(START + 10)
    await store.save("alerts:outbox", ["a"], reason=Reason.ALERT)
    await clock.drive(START + 39)
    await store.barrier()
    assert "alerts:outbox" not in on_disk(tmp_path / "state")
    assert store.metrics()["oldest_pending_age_s"] == pytest.approx(29.0)
    await clock.drive(START + 40)
    await store.barrier()
    assert on_disk(tmp_path / "state")["alerts:outbox"] == ["a"]
    assert store.metrics()["last_flush"] == pytest.approx(START + 40)
    assert store.metrics()["max_pending_age_s"] == pytest.approx(30.0)


async def test_force_and_delete(tmp_path: Path, open_store: OpenStore) -> None:
    store = await open_store()
    await store.save("price_alerts", [{"symbol": "BTCUSDT"}], reason=Reason.PRICE_ALERT, force=True)
    assert on_disk(tmp_path / "state")["price_alerts"] == [{"symbol": "BTCUSDT"}]
    await store.save("monitor:main:XRPUSDT:Buy", {"x": 1}, reason=Reason.MONITOR_CREATED)
    await store.delete("monitor:main:XRPUSDT:Buy", reason=Reason.MONITOR_REMOVED)
    assert "monitor:main:XRPUSDT:Buy" not in store.state
    assert "monitor:main:XRPUSDT:Buy" not in on_disk(tmp_path / "state")
    assert journal_lines(tmp_path / "state")[-1]["op"] == "del"


async def test_values_are_copied_and_must_be_json(open_store: OpenStore) -> None:
    store = await open_store()
    value = {"orders": [1, 2]}
    await store.save("k", value, reason=Reason.ORDER_UPDATE)
    value["orders"].append(3)
    assert store.state["k"] == {"orders": [1, 2]}
    with pytest.raises(ValueError):
        await store.save("bad", {"price": float("nan")}, reason=Reason.TP_HIT)
    with pytest.raises(TypeError):
        await store.save("bad", {"when": object()}, reason=Reason.TP_HIT)
    assert "bad" not in store.state
    with pytest.raises(ValueError, match="non-empty string"):
        await store.save("", 1, reason=Reason.TP_HIT)
    with pytest.raises(TypeError):
        store.state["x"] = 1  # type: ignore[index]


async def test_a_write_of_several_changes_makes_them_durable_in_one_commit(
    tmp_path: Path, open_store: OpenStore
) -> None:
    """A decision round's saves and deletes: one append and one fsync for all that must be durable,
    and a non-critical change among them rides along."""
    store = await open_store()
    await store.save("monitor:main:XRPUSDT:Buy", {"x": 1}, reason=Reason.MONITOR_CREATED)
    before = store.metrics()
    seq = await store.write(
        [
            Write("monitor:main:BTCUSDT:Buy", Reason.BREAKEVEN_MOVED, {"be": True}),
            Write("ledger:0", Reason.TRADE_RECORDED, {"trades": [1]}),
            Write("monitor:main:XRPUSDT:Buy", Reason.MONITOR_REMOVED, remove=True),
            Write("stats", Reason.STATS_UPDATE, {"wins": 3}),
        ]
    )
    after = store.metrics()
    assert after["journal_appends"] - before["journal_appends"] == 1
    assert after["fsyncs"] - before["fsyncs"] == 1
    disk = on_disk(tmp_path / "state")
    assert disk["monitor:main:BTCUSDT:Buy"] == {"be": True} and disk["ledger:0"] == {"trades": [1]}
    assert disk["stats"] == {"wins": 3} and "monitor:main:XRPUSDT:Buy" not in disk
    lines = journal_lines(tmp_path / "state")
    assert [line["key"] for line in lines[-4:]] == [
        w for w in ("monitor:main:BTCUSDT:Buy", "ledger:0", "monitor:main:XRPUSDT:Buy", "stats")
    ]
    assert seq == lines[-2]["seq"]  # the last change that had to be durable: the removal


async def test_a_key_written_twice_in_one_write_has_only_its_last_value_copied(
    tmp_path: Path, open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that closes three trades saves their ledger chunk three times: one copy, one record."""
    store = await open_store()
    copied: list[Any] = []
    canonical = store_module.canonical

    def counted(value: Any) -> str:
        copied.append(value)
        return canonical(value)

    monkeypatch.setattr(store_module, "canonical", counted)
    saves = store.metrics()["saves_by_reason"].get("trade_recorded", 0)
    await store.write(
        [
            Write("ledger:0", Reason.TRADE_RECORDED, {"trades": [1]}),
            Write("monitor:main:BTCUSDT:Buy", Reason.TP_HIT, {"tp": 1}),
            Write("ledger:0", Reason.TRADE_RECORDED, {"trades": [1, 2]}),
        ]
    )
    assert copied == [{"trades": [1, 2]}, {"tp": 1}]
    assert on_disk(tmp_path / "state")["ledger:0"] == {"trades": [1, 2]}
    assert [line["key"] for line in journal_lines(tmp_path / "state")[-2:]] == [
        "ledger:0",
        "monitor:main:BTCUSDT:Buy",
    ]
    assert store.metrics()["saves_by_reason"]["trade_recorded"] == saves + 2  # every save counted


async def test_a_key_written_twice_stays_durable_when_its_first_write_had_to_be(
    tmp_path: Path, open_store: OpenStore
) -> None:
    store = await open_store()
    await store.write(
        [
            Write("monitor:main:BTCUSDT:Buy", Reason.TP_HIT, {"tp": 1}),
            Write("monitor:main:BTCUSDT:Buy", Reason.MONITORING_UPDATE, {"tp": 1, "checks": 2}),
        ]
    )
    assert on_disk(tmp_path / "state")["monitor:main:BTCUSDT:Buy"] == {"tp": 1, "checks": 2}


async def test_a_write_with_a_bad_value_changes_nothing(open_store: OpenStore) -> None:
    store = await open_store()
    with pytest.raises(ValueError):
        await store.write(
            [Write("a", Reason.TP_HIT, {"ok": 1}), Write("b", Reason.TP_HIT, {"price": float("nan")})]
        )
    assert "a" not in store.state and store.metrics()["pending"] == 0


async def test_under_the_simple_policy_each_change_of_a_write_is_its_own_full_write(
    open_store: OpenStore,
) -> None:
    """The baseline reproduces the original bot's writes: a save call, a snapshot."""
    store = await open_store(policy="simple")
    full = store.metrics()["full_writes"]
    await store.write([Write("a", Reason.MONITORING_UPDATE, 1), Write("b", Reason.TP_HIT, 2)])
    assert store.metrics()["full_writes"] == full + 2


async def test_simple_policy_writes_the_whole_snapshot_on_every_save(
    tmp_path: Path, open_store: OpenStore
) -> None:
    store = await open_store(policy="simple")
    files = StateFiles(tmp_path / "state")
    full = store.metrics()["full_writes"]
    await store.save("a", 1, reason=Reason.MONITORING_UPDATE)
    await store.save("b", 2, reason=Reason.POSITION_UPDATE)
    assert store.metrics()["full_writes"] == full + 2
    assert store.metrics()["pending"] == 0
    assert decode_snapshot(files.snapshot.read_bytes()).state == {"a": 1, "b": 2}
    assert decode_snapshot(files.snapshot_prev.read_bytes()).state == {"a": 1}
    assert not files.journal.exists() or files.journal.stat().st_size == 0


async def test_policy_switch_flushes_first_and_loses_nothing(
    tmp_path: Path, clock: VirtualClock, open_store: OpenStore
) -> None:
    store = await open_store()
    await store.save("m1", {"n": 1}, reason=Reason.MONITORING_UPDATE)
    await store.set_policy("simple")
    assert store.policy_name == "simple"
    assert on_disk(tmp_path / "state")["m1"] == {"n": 1}
    await store.save("m2", {"n": 2}, reason=Reason.MONITORING_UPDATE)
    assert on_disk(tmp_path / "state")["m2"] == {"n": 2}
    await store.set_policy("smart")
    await store.save("m3", {"n": 3}, reason=Reason.MONITORING_UPDATE)
    with pytest.raises(ValueError, match="unknown persistence policy"):
        await store.set_policy("fast")
    await store.close()
    again = Store(tmp_path / "state", clock=clock)
    again.load()
    assert dict(again.state) == {"m1": {"n": 1}, "m2": {"n": 2}, "m3": {"n": 3}}
    await again.close()


async def test_a_compaction_lets_the_loop_run_while_it_encodes_the_state(
    tmp_path: Path, open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state of a thousand positions is 2 MB: encoded in one call, 95 ms in which a fill's
    decision could not run. It is encoded a part at a time, with the loop's turn between parts."""
    store = await open_store()
    for n in range(300):
        await store.save(f"monitor:main:S{n:03d}USDT:Buy", {"n": n}, reason=Reason.MONITORING_UPDATE)
    await store.flush()
    turns = 0
    seen: list[int] = []  # the loop's turns so far, at each part encoded
    parts = store_module.snapshot_parts

    def counted(*args: Any, **kwargs: Any) -> Any:
        for part in parts(*args, **kwargs):
            seen.append(turns)
            yield part

    monkeypatch.setattr(store_module, "snapshot_parts", counted)

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    running = asyncio.create_task(other_work())
    try:
        await store.compact()
    finally:
        running.cancel()
    assert len(seen) == 302
    assert seen[-1] - seen[0] >= 300 // store_module.SNAPSHOT_PARTS_PER_TURN
    assert on_disk(tmp_path / "state")["monitor:main:S299USDT:Buy"] == {"n": 299}


@pytest.mark.parametrize("bound", ["records", "bytes"])
async def test_compaction_past_a_bound_starts_a_new_journal(
    tmp_path: Path, clock: VirtualClock, open_store: OpenStore, bound: str
) -> None:
    options = {"compact_max_records": 5} if bound == "records" else {"compact_max_bytes": 600}
    store = await open_store(**options)
    for n in range(12):
        await store.save(f"monitor:{n}", {"n": n, "pad": "x" * 40}, reason=Reason.PHASE_CHANGE)
    metrics = store.metrics()
    assert metrics["compactions"] >= 2 and metrics["last_compaction"] == pytest.approx(START)
    assert metrics["journal_records"] < 5 or bound == "bytes"
    files = StateFiles(tmp_path / "state")
    assert files.journal_prev.exists() and files.snapshot_prev.exists()
    snapshot = decode_snapshot(files.snapshot.read_bytes())
    assert all(record.seq > snapshot.seq for record in scan_journal(files.journal.read_bytes()).records)
    expected = dict(store.state)
    await store.close()
    again = Store(tmp_path / "state", clock=clock)
    report = again.load()
    assert dict(again.state) == expected and report.source == "snapshot" and not report.critical
    await again.close()


async def test_close_writes_shutdown_and_releases_the_lock(
    tmp_path: Path, clock: VirtualClock, open_store: OpenStore
) -> None:
    store = await open_store()
    await store.save("stats", {"n": 1}, reason=Reason.STATS_UPDATE)
    with pytest.raises(StateLocked, match=f"in use by another opconsole process \\(pid {os.getpid()}\\)"):
        Store(tmp_path / "state", clock=clock).load()
    await store.close()
    await store.close()  # idempotent
    lines = journal_lines(tmp_path / "state")
    assert [line["reason"] for line in lines[-2:]] == ["stats_update", "shutdown"]
    with pytest.raises(RuntimeError, match="closed"):
        await store.save("x", 1, reason=Reason.ALERT)
    again = Store(tmp_path / "state", clock=clock)
    again.load()
    assert again.state["stats"] == {"n": 1}
    await again.close()


async def test_another_process_is_refused(tmp_path: Path, open_store: OpenStore) -> None:
    await open_store()
    code = (
        "import sys\nfrom pathlib import Path\nfrom persistence import Store, StateLocked\n"
        "from engine.core.clock import RealClock\n"
        "try:\n    Store(Path(sys.argv[1]), clock=RealClock()).load()\n"
        "except StateLocked as exc:\n    print('LOCKED', exc)\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, str(tmp_path / "state"), stdout=PIPE, stderr=PIPE
    )
    out, err = await child.communicate()
    assert out.decode().startswith("LOCKED state directory"), err.decode()


async def test_store_must_be_loaded_and_started(tmp_path: Path, clock: VirtualClock) -> None:
    store = Store(tmp_path / "state", clock=clock)
    with pytest.raises(RuntimeError, match="load"):
        await store.start()
    store.load()
    with pytest.raises(RuntimeError, match="start"):
        await store.save("k", 1, reason=Reason.TP_HIT)
    await store.close()
    with pytest.raises(ValueError):
        Store(tmp_path / "other", clock=clock, policy="clever")


async def test_a_full_disk_keeps_changes_in_order_and_recovers_by_itself(
    tmp_path: Path,
    open_store: OpenStore,
    clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12 item 1: a failed write no longer halts the store. The change that could not be
    written and every later one are kept in memory; the store retries on its clock with a backoff
    and, once the disk takes writes again, writes them all (a snapshot first: the failed append may
    have left a torn journal tail); its health listeners hear the failure and the recovery."""
    state_dir = tmp_path / "state"
    store = await open_store()
    await store.save("k", 0, reason=Reason.SL_HIT)
    health: list[BaseException | None] = []
    store.add_health_listener(health.append)
    full = True
    real_append = JournalAppender.append
    real_snapshot = durable.write_snapshot

    async def append(self: JournalAppender, data: bytes) -> Any:
        if full:
            await real_append(self, data[: len(data) // 2])  # a torn record, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_append(self, data)

    async def snapshot(*args: Any, **kwargs: Any) -> Any:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real_snapshot(*args, **kwargs)

    monkeypatch.setattr(JournalAppender, "append", append)
    monkeypatch.setattr(store_module, "write_snapshot", snapshot)
    with (
        caplog.at_level(logging.CRITICAL, logger="opconsole.persistence"),
        pytest.raises(StoreFailed, match="not durable"),
    ):
        await store.save("k", 1, reason=Reason.SL_HIT)
    assert any("kept in memory" in record.getMessage() for record in caplog.records)
    assert store.failed and store.metrics()["failed"] and len(health) == 1
    assert store.state["k"] == 1
    await store.save("other", 2, reason=Reason.POSITION_UPDATE)  # not critical: kept, no error
    with pytest.raises(StoreFailed):  # critical: kept, not durable
        await store.delete("k", reason=Reason.MONITOR_REMOVED)
    await store.save("k", 3, reason=Reason.MONITORING_UPDATE)
    await clock.drive(clock.now() + 10.0)  # retries (1 s, 2 s, 4 s) fail: still failed
    assert store.failed and len(health) == 1
    full = False
    await clock.drive(clock.now() + 10.0)  # the next retry gets through
    assert not store.failed and health[-1] is None
    assert on_disk(state_dir) == {"k": 3, "other": 2}
    await store.save("k", 4, reason=Reason.TP_HIT)  # appends again, after the torn tail was moved aside
    assert on_disk(state_dir) == {"k": 4, "other": 2}
    assert plan_recovery(StateFiles(state_dir)).report.torn_tail_bytes == 0


async def test_metrics_have_the_documented_keys(open_store: OpenStore) -> None:
    store = await open_store()
    await store.save("k", 1, reason=Reason.POSITION_UPDATE)
    metrics = store.metrics()
    for key in (
        "policy", "writes", "fsyncs", "bytes_written", "writes_per_hour", "pending", "oldest_pending_age_s",
        "last_flush", "last_compaction", "saves_by_reason", "recovery", "full_writes", "compactions",
    ):  # fmt: skip
        assert key in metrics, key
    assert metrics["policy"] == "smart" and metrics["pending"] == 1
    assert metrics["recovery"]["source"] == "fresh"
    json.dumps(metrics)  # the console and the benchmark serialise it


def test_writes_per_hour_is_a_rolling_window() -> None:
    times = deque([0.0, 10.0, 20.0, 3000.0])
    # 30 s into a run: 4 writes over the one-minute floor, scaled to an hour
    assert rolling_rate_per_hour(times, now=30.0, started=0.0) == pytest.approx(4 * 60)
    # an hour and 5 s in: the write at 0 s has left the window
    assert rolling_rate_per_hour(times, now=3605.0, started=0.0) == pytest.approx(3)
    assert list(times) == [10.0, 20.0, 3000.0]


async def test_a_journal_append_goes_off_the_loop_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A critical save waits for the disk and, at every trip to a worker thread, for that thread to
    get the interpreter's lock and for the loop to take the answer back: tens of ms each while the
    loop is busy. The append's write and fsync go in one trip (two before), once the file is open."""
    appender = JournalAppender(tmp_path / "journal.jsonl")
    await appender.append(b"first\n")  # opens the file (its own trips)
    loop = asyncio.get_running_loop()
    trips: list[object] = []
    real = loop.run_in_executor

    def counted(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        trips.append(func)
        return real(executor, func, *args)

    monkeypatch.setattr(loop, "run_in_executor", counted)
    cost = await appender.append(b"second\n")
    assert len(trips) == 1
    assert (cost.writes, cost.fsyncs) == (1, 1)
    assert (tmp_path / "journal.jsonl").read_bytes() == b"first\nsecond\n"
    await appender.close()
