"""The files of a state directory, named in one place."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from persistence.errors import StateUnusable

logger = logging.getLogger("opconsole.persistence")

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
# Every name the store reads or writes directly in the directory (what must be a file if present).
OWN_FILES = (*STATE_FILES, *TEMP_FILES, LOCK)


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


def check_files(files: StateFiles) -> None:
    """Refuse a directory (or device, socket…) where one of the store's files belongs.

    Nothing is read or changed: recovery must not quarantine, truncate or unlink around it, and the
    operator must be told which path to fix (``StateUnusable``).
    """
    if files.root.exists() and not files.root.is_dir():
        raise StateUnusable(files.root, "is not a directory")
    for name in OWN_FILES:
        path = files.root / name
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StateUnusable(path, f"cannot be read: {exc.strerror}") from None
        if stat.S_ISDIR(mode):
            raise StateUnusable(path, "is a directory, not a file; move it out of the state directory")
        if not stat.S_ISREG(mode):
            raise StateUnusable(path, "is not a regular file; move it out of the state directory")


def create_root(files: StateFiles) -> None:
    """Create the state directory with mode 0700 (and its missing parents), or check the one there.

    Raises ``StateUnusable`` when the path is not a directory or cannot be created; changes nothing
    else.
    """
    root = files.root
    try:
        root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    except FileExistsError:
        raise StateUnusable(root, "is not a directory") from None
    except OSError as exc:
        raise StateUnusable(root, f"cannot create the state directory: {exc.strerror}") from None


def check_writable(files: StateFiles) -> None:
    """Prove the directory takes new files (a read-only mount, permissions or an immutable flag would
    otherwise only show at the first snapshot, after recovery had started changing things)."""
    probe = files.root / f".opconsole-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError as exc:
        raise StateUnusable(files.root, f"the state directory is not writable: {exc.strerror}") from None
    os.close(fd)
    probe.unlink()


def tighten_root(files: StateFiles) -> None:
    """Make an existing state directory private (0700), saying so in the log.

    It holds positions, orders and the ledger of a trading account, and a directory other users may
    write lets them replace ``snapshot.json`` whatever the files' own modes; the files are 0600 but
    their names and sizes still tell who trades what. So a group/world-accessible directory is
    tightened rather than only warned about, and the log line says from which mode.
    """
    try:
        mode = stat.S_IMODE(files.root.stat().st_mode)
        if mode & 0o077:
            files.root.chmod(mode & ~0o077)
            logger.warning(
                "state directory %s was accessible to other users (mode %o): tightened to %o",
                files.root,
                mode,
                mode & ~0o077,
            )
    except OSError as exc:  # not the owner: keep working, but say it stays open
        logger.warning("state directory %s stays accessible to other users: %s", files.root, exc.strerror)
