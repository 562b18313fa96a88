"""Start-up recovery: rebuild the state from snapshot + journal and say exactly what was done.

Recovery is split in two: :func:`plan_recovery` only reads the directory and decides (so a test or a
monitoring tool can inspect a state directory without touching it), :func:`carry_out` performs the
repairs the plan calls for (drop a torn journal tail, remove stale temp files, move damaged files into
``quarantine-<time>/``). The state is never silently empty: every path that loses or may lose data
makes the report ``critical`` with a message for the operator's alert.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persistence.codec import CorruptData, JournalRecord, Snapshot, decode_record, decode_snapshot
from persistence.durable import fsync_dir_sync
from persistence.errors import StateUnusable, UnsupportedSnapshot
from persistence.layout import DIR_MODE, STATE_FILES, TEMP_FILES, StateFiles, check_files


@dataclass(slots=True)
class RecoveryReport:
    """What the last start-up recovery did (also exported in the store's metrics)."""

    source: str = "fresh"  # fresh | snapshot | snapshot.prev | journal | empty
    snapshot_seq: int | None = None
    records_replayed: int = 0
    last_seq: int = 0
    keys: int = 0
    torn_tail_bytes: int = 0
    dropped_records: int = 0
    missing_seqs: list[tuple[int, int]] = field(default_factory=list)
    fell_back_to_prev: bool = False
    quarantine_dir: str | None = None
    stale_tmp_removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    critical: bool = False
    needs_snapshot: bool = False

    @property
    def message(self) -> str:
        """One line for the log and the operator's alert."""
        if not self.notes and self.source == "fresh":
            return "new state directory: starting empty"
        if not self.notes:
            return f"state recovered cleanly from {self.source} ({self.keys} keys, seq {self.last_seq})"
        return "; ".join(self.notes)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view for metrics and the console."""
        return {
            "source": self.source,
            "snapshot_seq": self.snapshot_seq,
            "records_replayed": self.records_replayed,
            "last_seq": self.last_seq,
            "keys": self.keys,
            "torn_tail_bytes": self.torn_tail_bytes,
            "dropped_records": self.dropped_records,
            "missing_seqs": [list(gap) for gap in self.missing_seqs],
            "fell_back_to_prev": self.fell_back_to_prev,
            "quarantine_dir": self.quarantine_dir,
            "stale_tmp_removed": list(self.stale_tmp_removed),
            "critical": self.critical,
            "message": self.message,
        }


@dataclass(slots=True)
class JournalScan:
    """The readable prefix of one journal file."""

    records: list[JournalRecord] = field(default_factory=list)
    valid_bytes: int = 0
    total_bytes: int = 0
    dropped_lines: int = 0
    problem: str | None = None

    @property
    def damaged(self) -> bool:
        return self.valid_bytes < self.total_bytes

    @property
    def torn_tail_only(self) -> bool:
        """Only the last line is bad: an append interrupted by a crash, never acknowledged."""
        return self.dropped_lines <= 1


def scan_journal(data: bytes) -> JournalScan:
    """Decode lines until the first bad one (half line, bad checksum, seq not increasing)."""
    scan = JournalScan(total_bytes=len(data))
    pos, last_seq = 0, 0
    while pos < len(data):
        newline = data.find(b"\n", pos)
        if newline == -1:
            scan.problem = "half-written last line"
            break
        try:
            record = decode_record(data[pos:newline])
        except CorruptData as exc:
            scan.problem = str(exc)
            break
        if record.seq <= last_seq:
            scan.problem = f"seq {record.seq} after {last_seq}"
            break
        scan.records.append(record)
        last_seq = record.seq
        pos = newline + 1
    scan.valid_bytes = pos
    rest = data[pos:]
    scan.dropped_lines = rest.count(b"\n") + (1 if rest and not rest.endswith(b"\n") else 0)
    return scan


@dataclass(slots=True)
class SnapshotRead:
    """One snapshot file: decoded, missing, or damaged (with why)."""

    snapshot: Snapshot | None
    problem: str | None  # None when decoded; "missing" or the damage

    @property
    def missing(self) -> bool:
        return self.problem == "missing"


def read_snapshot(path: Path) -> SnapshotRead:
    """Read and verify a snapshot file (``UnsupportedSnapshot`` propagates: never overwrite newer data)."""
    data = _read_bytes(path)
    if data is None:
        return SnapshotRead(None, "missing")
    try:
        return SnapshotRead(decode_snapshot(data), None)
    except CorruptData as exc:
        return SnapshotRead(None, str(exc))
    except UnsupportedSnapshot as exc:
        raise UnsupportedSnapshot(str(exc), path) from None


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes, None when it does not exist; ``StateUnusable`` when it cannot be read (a
    permission, an I/O error): that is not damage to quarantine, the operator must look."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateUnusable(path, f"cannot be read: {exc.strerror}") from None


@dataclass(slots=True)
class RecoveryPlan:
    """The recovered state and the repairs that make the directory match it."""

    state: dict[str, Any]
    last_seq: int
    journal_bytes: int
    journal_records: int
    report: RecoveryReport
    truncate_journal_to: int | None = None
    remove: list[Path] = field(default_factory=list)
    quarantine_move: list[Path] = field(default_factory=list)
    quarantine_copy: list[Path] = field(default_factory=list)


def _read_journal(path: Path) -> JournalScan:
    data = _read_bytes(path)
    return JournalScan() if data is None else scan_journal(data)


def plan_recovery(files: StateFiles) -> RecoveryPlan:
    """Decide how to recover ``files.root`` without changing anything on disk.

    Raises ``StateUnusable`` when a file is in the way (a directory where a file belongs) or cannot be
    read, and ``UnsupportedSnapshot`` for a newer format: the operator's to fix, never quarantined.
    """
    check_files(files)
    report = RecoveryReport()
    remove = [files.root / name for name in TEMP_FILES if (files.root / name).exists()]
    report.stale_tmp_removed = [path.name for path in remove]
    for path in remove:
        report.notes.append(f"removed stale {path.name} left by an interrupted snapshot write")

    current, journal_prev = _read_journal(files.journal), _read_journal(files.journal_prev)
    main = read_snapshot(files.snapshot)
    prev = read_snapshot(files.snapshot_prev) if main.snapshot is None else SnapshotRead(None, None)
    quarantine_move: list[Path] = []
    quarantine_copy: list[Path] = []

    records = _merge(journal_prev.records, current.records, report)
    base: Snapshot | None = main.snapshot
    if base is not None:
        report.source = "snapshot"
    else:
        nothing_else = (
            main.missing
            and prev.missing
            and not records
            and current.total_bytes == 0
            and journal_prev.total_bytes == 0
        )
        if nothing_else:
            report.source = "fresh"
            report.needs_snapshot = True
            return RecoveryPlan({}, 0, 0, 0, report, remove=remove)
        report.critical = True
        report.needs_snapshot = True
        what = "is missing" if main.missing else f"is corrupt ({main.problem})"
        if not main.missing:
            quarantine_move.append(files.snapshot)
        if prev.snapshot is not None:
            base = prev.snapshot
            report.source = "snapshot.prev"
            report.fell_back_to_prev = True
            report.notes.append(f"snapshot.json {what}: fell back to snapshot.prev.json (seq {base.seq})")
        elif records and records[0].seq == 1:
            base = Snapshot(seq=0, ts=0.0, state={})
            report.source = "journal"
            report.notes.append(
                f"snapshot.json {what} and no usable snapshot.prev.json: rebuilt from the journal alone"
            )
        else:
            prev_what = "missing" if prev.missing else f"corrupt ({prev.problem})"
            quarantine_move = [files.root / name for name in STATE_FILES if (files.root / name).exists()]
            report.source = "empty"
            report.notes.append(
                f"snapshot.json {what} and snapshot.prev.json is {prev_what}: state files moved to "
                "quarantine, STARTING EMPTY; reconciliation with the exchange must rebuild the monitors"
            )
            return RecoveryPlan({}, 0, 0, 0, report, remove=remove, quarantine_move=quarantine_move)

    report.snapshot_seq = base.seq
    state = dict(base.state)
    expected = base.seq + 1
    for record in records:
        if record.seq <= base.seq:
            continue  # already in the snapshot (a crash between snapshot rename and journal rotation)
        if record.seq != expected:
            report.missing_seqs.append((expected, record.seq - 1))
        record.apply(state)
        report.records_replayed += 1
        expected = record.seq + 1
    last_seq = expected - 1
    if report.missing_seqs:
        report.critical = True
        report.needs_snapshot = True
        gaps = ", ".join(f"{a}-{b}" for a, b in report.missing_seqs)
        report.notes.append(f"journal records {gaps} are missing: some keys may be stale, reconcile")

    truncate_to: int | None = None
    if current.damaged:
        truncate_to = current.valid_bytes
        dropped = current.total_bytes - current.valid_bytes
        if current.torn_tail_only:
            report.torn_tail_bytes = dropped
            report.notes.append(
                f"dropped a torn journal tail ({dropped} bytes: {current.problem}); it was never acknowledged"
            )
        else:
            report.critical = True
            report.dropped_records = current.dropped_lines
            quarantine_copy.append(files.journal)
            report.notes.append(
                f"journal corrupt mid-file ({current.problem}): {current.dropped_lines} later lines dropped, "
                "a copy of the journal was quarantined"
            )
    if report.fell_back_to_prev and journal_prev.damaged:
        report.notes.append(f"journal.prev.jsonl is damaged too ({journal_prev.problem})")

    report.last_seq = last_seq
    report.keys = len(state)
    return RecoveryPlan(
        state=state,
        last_seq=last_seq,
        journal_bytes=current.valid_bytes,
        journal_records=len(current.records),
        report=report,
        truncate_journal_to=truncate_to,
        remove=remove,
        quarantine_move=quarantine_move,
        quarantine_copy=quarantine_copy,
    )


def _merge(
    older: list[JournalRecord], newer: list[JournalRecord], report: RecoveryReport
) -> list[JournalRecord]:
    """Records of journal.prev.jsonl and journal.jsonl in seq order, each seq once."""
    by_seq: dict[int, JournalRecord] = {}
    for record in (*older, *newer):
        seen = by_seq.get(record.seq)
        if seen is not None and seen != record:
            report.critical = True
            report.notes.append(f"two different journal records carry seq {record.seq}; kept the newer")
        by_seq[record.seq] = record
    return [by_seq[seq] for seq in sorted(by_seq)]


def carry_out(plan: RecoveryPlan, files: StateFiles, now: float) -> RecoveryReport:
    """Perform the plan's repairs (synchronously: this runs once, at start-up, before the loop works)."""
    report = plan.report
    if plan.quarantine_move or plan.quarantine_copy:
        target = _quarantine(files, now, copy=plan.quarantine_copy, move=plan.quarantine_move)
        report.quarantine_dir = str(target)
        report.notes.append(f"damaged files kept in {target.name}/")
    if plan.truncate_journal_to is not None and files.journal.exists():
        with open(files.journal, "r+b") as handle:
            handle.truncate(plan.truncate_journal_to)
            handle.flush()
            os.fsync(handle.fileno())
    for path in plan.remove:
        path.unlink(missing_ok=True)
    fsync_dir_sync(files.root)
    return report


def _quarantine(files: StateFiles, now: float, *, copy: list[Path], move: list[Path]) -> Path:
    target = files.quarantine_dir(now)
    target.mkdir(mode=DIR_MODE)
    for path in copy:
        shutil.copy2(path, target / path.name)
    for path in move:
        os.replace(path, target / path.name)
    fsync_dir_sync(target)
    return target


def quarantine_copy(files: StateFiles, now: float) -> Path:
    """Copy the state files as they are into a new ``quarantine-<time>/`` (returned): what the
    engine keeps before it drops records it cannot decode (their checksums were fine, their shape
    was not), so the operator still has them."""
    present = [files.root / name for name in STATE_FILES if (files.root / name).is_file()]
    return _quarantine(files, now, copy=present, move=[])


def read_state(root: Path) -> tuple[dict[str, Any], RecoveryReport]:
    """The state a recovery of ``root`` would produce, read without the lock and without changing
    anything on disk — for read-only tools (``opconsole export-trades``) that may run beside the
    console that owns the directory."""
    plan = plan_recovery(StateFiles(root))
    return plan.state, plan.report


def last_write_time(root: Path) -> float | None:
    """The time (on the writer's clock) of the newest record in ``root``: the snapshot or the last
    journal record; None when there is none or the files cannot be read (recovery reports that).

    A virtual clock restarted on this state starts no earlier, so the engine's own records never
    go backwards in time after a restart. Read-only.
    """
    files = StateFiles(root)
    try:
        journal = _read_journal(files.journal)
        snapshot = read_snapshot(files.snapshot)
    except (OSError, StateUnusable, UnsupportedSnapshot):
        return None
    times = [record.ts for record in journal.records]
    if snapshot.snapshot is not None:
        times.append(snapshot.snapshot.ts)
    return max(times, default=None)
