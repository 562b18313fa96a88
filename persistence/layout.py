"""The files of a state directory, named in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SNAPSHOT = "snapshot.json"
SNAPSHOT_PREV = "snapshot.prev.json"
SNAPSHOT_TMP = "snapshot.json.tmp"
SNAPSHOT_PREV_TMP = "snapshot.prev.json.tmp"
JOURNAL = "journal.jsonl"
JOURNAL_PREV = "journal.prev.jsonl"
LOCK = "opconsole.lock"
QUARANTINE_PREFIX = "quarantine-"

# Files that only exist while a write is in flight; finding one at start-up means a crash interrupted it.
TEMP_FILES = (SNAPSHOT_TMP, SNAPSHOT_PREV_TMP)
# Everything that holds state (moved aside together when the state cannot be trusted).
STATE_FILES = (SNAPSHOT, SNAPSHOT_PREV, JOURNAL, JOURNAL_PREV)

FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass(frozen=True, slots=True)
class StateFiles:
    """Paths of one state directory."""

    root: Path

    @property
    def snapshot(self) -> Path:
        return self.root / SNAPSHOT

    @property
    def snapshot_prev(self) -> Path:
        return self.root / SNAPSHOT_PREV

    @property
    def snapshot_tmp(self) -> Path:
        return self.root / SNAPSHOT_TMP

    @property
    def snapshot_prev_tmp(self) -> Path:
        return self.root / SNAPSHOT_PREV_TMP

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    @property
    def journal_prev(self) -> Path:
        return self.root / JOURNAL_PREV

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    def quarantine_dir(self, epoch_seconds: float) -> Path:
        """A fresh ``quarantine-<UTC time>`` directory path (suffixed when the name is taken)."""
        stamp = datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        candidate = self.root / f"{QUARANTINE_PREFIX}{stamp}"
        n = 1
        while candidate.exists():
            n += 1
            candidate = self.root / f"{QUARANTINE_PREFIX}{stamp}-{n}"
        return candidate
