"""The state directory's lock file: one process writes a state directory, a second one is refused.

``flock`` is tied to the open file, so the kernel releases it when the holder exits or is killed; a
stale lock file after a crash therefore never blocks a restart. The holder's pid is written into the
file only to make the refusal message useful.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from persistence.errors import StateLocked, StateUnusable
from persistence.layout import FILE_MODE


class StateLock:
    """An exclusive, non-blocking lock on ``path`` held until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateLocked` naming the holder (``StateUnusable`` when the
        lock file cannot be opened at all)."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except IsADirectoryError:
            raise StateUnusable(self._path, "is a directory, not the lock file") from None
        except OSError as exc:  # a read-only directory, a lock file of another user...
            raise StateUnusable(self._path, f"cannot open the lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateLocked(
                f"state directory {self._path.parent} is in use by another opconsole process"
                f"{f' (pid {holder})' if holder else ''}; stop it or choose another --state-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent). The file stays; its content no longer means anything."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
