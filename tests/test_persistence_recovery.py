"""Corruption and crash-point recovery: each damaged directory recovers as specified and says so."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import pytest

from engine.core.clock import VirtualClock
from persistence import Reason, RecoveryReport, Store, StoreFailed, UnsupportedSnapshot
from persistence.codec import canonical
from persistence.layout import StateFiles

START = 1_767_225_600.0
LOGGER = "opconsole.persistence"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=START)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


async def populate(state_dir: Path, clock: VirtualClock, keys: int, **options: Any) -> dict[str, Any]:
    """Write ``keys`` critical saves (plus a pending non-critical one flushed by close); return the state."""
    store = Store(state_dir, clock=clock, **options)
    store.load()
    await store.start()
    for n in range(keys):
        await store.save(f"monitor:main:S{n}:Buy", {"n": n, "sl": 100.0 + n}, reason=Reason.BREAKEVEN_MOVED)
    await store.save("stats", {"trades": keys}, reason=Reason.STATS_UPDATE)
    state = dict(store.state)
    await store.close()
    return state


async def reopen(state_dir: Path, clock: VirtualClock) -> tuple[Store, RecoveryReport]:
    store = Store(state_dir, clock=clock)
    return store, store.load()


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


async def assert_clean_restart(state_dir: Path, clock: VirtualClock, expected: dict[str, Any]) -> None:
    """After a repaired start, the next start is clean and holds the same state."""
    store, _ = await reopen(state_dir, clock)
    await store.start()
    await store.close()
    store, report = await reopen(state_dir, clock)
    assert not report.critical and report.source == "snapshot", report.message
    assert dict(store.state) == expected
    await store.close()


async def test_flipped_snapshot_falls_back_to_prev_without_loss(
    state_dir: Path, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    expected = await populate(state_dir, clock, keys=12, compact_max_records=4)
    files = StateFiles(state_dir)
    assert files.snapshot_prev.exists() and files.journal_prev.exists()
    flip_middle_byte(files.snapshot)
    with caplog.at_level(logging.CRITICAL, logger=LOGGER):
        store, report = await reopen(state_dir, clock)
    assert report.critical and report.fell_back_to_prev and report.source == "snapshot.prev"
    assert (
        "snapshot.json is corrupt" in report.message and "fell back to snapshot.prev.json" in report.message
    )
    assert dict(store.state) == expected  # journal.prev.jsonl bridges prev -> current: nothing lost
    assert report.quarantine_dir is not None
    assert (Path(report.quarantine_dir) / "snapshot.json").exists() and not files.snapshot.exists()
    assert any(r.levelno == logging.CRITICAL and "fell back" in r.getMessage() for r in caplog.records)
    await store.close()
    await assert_clean_restart(state_dir, clock, expected)


async def test_both_snapshots_corrupt_quarantines_and_starts_empty_loudly(
    state_dir: Path, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    await populate(state_dir, clock, keys=12, compact_max_records=4)
    files = StateFiles(state_dir)
    flip_middle_byte(files.snapshot)
    flip_middle_byte(files.snapshot_prev)
    with caplog.at_level(logging.CRITICAL, logger=LOGGER):
        store, report = await reopen(state_dir, clock)
    assert report.critical and report.source == "empty" and dict(store.state) == {}
    assert "STARTING EMPTY" in report.message and "reconciliation" in report.message
    quarantine = Path(report.quarantine_dir or "")
    assert quarantine.name.startswith("quarantine-2026") and quarantine.parent == state_dir
    assert sorted(os.listdir(quarantine)) == [
        "journal.jsonl", "journal.prev.jsonl", "snapshot.json", "snapshot.prev.json",
    ]  # fmt: skip
    assert any(r.levelno == logging.CRITICAL and "STARTING EMPTY" in r.getMessage() for r in caplog.records)
    assert store.metrics()["recovery"]["critical"] is True
    await store.close()
    await assert_clean_restart(state_dir, clock, {})


@pytest.mark.parametrize("damage", ["cut_last_line", "half_line_appended"])
async def test_torn_journal_tail_is_dropped_and_reported(
    state_dir: Path, clock: VirtualClock, damage: str
) -> None:
    expected = await populate(state_dir, clock, keys=3)
    journal = StateFiles(state_dir).journal
    data = journal.read_bytes()
    if damage == "cut_last_line":  # the SHUTDOWN marker, half written
        last_start = data.rstrip(b"\n").rfind(b"\n") + 1
        data = data[: last_start + (len(data) - last_start) // 2]
    else:
        data += b'{"key":"monitor:main:S9:Buy","op":"set","reason":"tp_hit","seq":99,"ts":1.0,"val'
    journal.write_bytes(data)
    store, report = await reopen(state_dir, clock)
    assert not report.critical and report.torn_tail_bytes > 0
    assert "torn journal tail" in report.message
    assert dict(store.state) == expected
    assert journal.read_bytes().endswith(b"\n")  # truncated to the last whole record, ready for appends
    await store.start()
    await store.save("after", 1, reason=Reason.TP_HIT)
    await store.close()
    await assert_clean_restart(state_dir, clock, {**expected, "after": 1})


async def test_corrupt_record_mid_journal_is_critical_and_kept(state_dir: Path, clock: VirtualClock) -> None:
    await populate(state_dir, clock, keys=6)
    journal = StateFiles(state_dir).journal
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"n":2', b'"n":7')  # a valid-looking record whose crc no longer matches
    journal.write_bytes(b"".join(lines))
    store, report = await reopen(state_dir, clock)
    assert report.critical and report.dropped_records == len(lines) - 3
    assert "corrupt mid-file" in report.message
    assert set(store.state) == {"monitor:main:S0:Buy", "monitor:main:S1:Buy"}
    assert (Path(report.quarantine_dir or "") / "journal.jsonl").read_bytes() == b"".join(lines)
    await store.close()


async def test_deleted_snapshot_falls_back_to_prev(state_dir: Path, clock: VirtualClock) -> None:
    expected = await populate(state_dir, clock, keys=12, compact_max_records=4)
    StateFiles(state_dir).snapshot.unlink()
    store, report = await reopen(state_dir, clock)
    assert report.critical and report.fell_back_to_prev and "snapshot.json is missing" in report.message
    assert dict(store.state) == expected
    await store.close()
    await assert_clean_restart(state_dir, clock, expected)


async def test_deleted_first_snapshot_is_rebuilt_from_the_journal(
    state_dir: Path, clock: VirtualClock
) -> None:
    expected = await populate(state_dir, clock, keys=4)  # no compaction: one snapshot (seq 0), journal from 1
    StateFiles(state_dir).snapshot.unlink()
    store, report = await reopen(state_dir, clock)
    assert report.critical and report.source == "journal" and "rebuilt from the journal" in report.message
    assert dict(store.state) == expected
    await store.close()
    await assert_clean_restart(state_dir, clock, expected)


async def test_stale_temp_files_are_removed_and_reported(state_dir: Path, clock: VirtualClock) -> None:
    expected = await populate(state_dir, clock, keys=3)
    files = StateFiles(state_dir)
    files.snapshot_tmp.write_bytes(b'{"format":"opconsole.state","ver')
    files.snapshot_prev_tmp.write_bytes(b"")
    store, report = await reopen(state_dir, clock)
    assert not report.critical
    assert sorted(report.stale_tmp_removed) == ["snapshot.json.tmp", "snapshot.prev.json.tmp"]
    assert "removed stale snapshot.json.tmp" in report.message
    assert not files.snapshot_tmp.exists() and not files.snapshot_prev_tmp.exists()
    assert dict(store.state) == expected
    await store.close()


async def test_missing_journal_records_are_reported(state_dir: Path, clock: VirtualClock) -> None:
    await populate(state_dir, clock, keys=5)
    journal = StateFiles(state_dir).journal
    lines = journal.read_bytes().splitlines(keepends=True)
    gone = json.loads(lines[2])
    journal.write_bytes(b"".join(lines[:2] + lines[3:]))
    store, report = await reopen(state_dir, clock)
    assert report.critical and report.missing_seqs == [(gone["seq"], gone["seq"])]
    assert gone["key"] not in store.state and "monitor:main:S4:Buy" in store.state
    await store.close()


async def test_a_newer_snapshot_format_is_refused_untouched(state_dir: Path, clock: VirtualClock) -> None:
    await populate(state_dir, clock, keys=1)
    snapshot = StateFiles(state_dir).snapshot
    body = canonical({"format": "opconsole.state", "version": 99, "seq": 5, "ts": 0.0, "state": {}})
    newer = (body[:-1] + f',"crc":{zlib.crc32(body.encode())}}}\n').encode()
    snapshot.write_bytes(newer)
    for _ in range(2):  # the lock was released: the second attempt fails the same way
        with pytest.raises(UnsupportedSnapshot, match="version 99 is newer"):
            Store(state_dir, clock=clock).load()
    assert snapshot.read_bytes() == newer


STEPS = [
    "compaction:start",
    "snapshot:tmp_synced",
    "snapshot:prev_kept",
    "snapshot:renamed",
    "compaction:journal_rotated",
    "compaction:done",
]


@pytest.mark.parametrize("step", STEPS)
async def test_a_crash_at_any_compaction_step_loses_nothing(
    state_dir: Path, clock: VirtualClock, step: str
) -> None:
    """The trace hook copies the directory at ``step`` (what a crash there leaves) and fails the write.

    The copy recovers every acknowledged change; the store itself keeps the changes it could not
    write and writes them later (a failed write no longer halts it), so nothing is lost either way.
    """
    compactions = 0
    image = state_dir.parent / "crashed"
    acked: dict[str, Any] = {}
    acked_at_crash: dict[str, Any] = {}

    def crash_on_second_compaction(name: str) -> None:
        nonlocal compactions
        compactions += name == "compaction:start"
        # the second compaction: a prev snapshot and journal.prev exist; once
        if name == step and compactions >= 2 and not image.exists():
            shutil.copytree(state_dir, image)
            acked_at_crash.update(acked)
            raise OSError(5, f"simulated crash at {name}")

    store = Store(state_dir, clock=clock, compact_max_records=4, trace=crash_on_second_compaction)
    store.load()
    await store.start()
    saved = {f"k{n}": {"n": n} for n in range(100)}
    for key, value in saved.items():
        with contextlib.suppress(StoreFailed):  # not durable at once, kept and written later
            await store.save(key, value, reason=Reason.TP_HIT)
            acked[key] = value
    assert image.exists()
    await store.close()
    crashed, report = await reopen(image, clock)
    assert not report.critical, report.message
    recovered = dict(crashed.state)
    assert acked_at_crash.items() <= recovered.items()
    assert recovered == {f"k{n}": {"n": n} for n in range(len(recovered))}  # a prefix of the saves
    await crashed.close()
    await assert_clean_restart(image, clock, recovered)
    await assert_clean_restart(state_dir, clock, saved)
