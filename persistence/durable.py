"""Durable file operations, off the event loop through aiofiles.

Two primitives, each ending with its data on disk: :class:`JournalAppender` (append + fsync, the new
file's directory entry fsync'd too) and :func:`write_snapshot` (temp file + fsync, the current snapshot
hard-linked to ``snapshot.prev.json``, rename over, directory fsync). Every step leaves a directory that
recovery reads correctly; ``trace`` names the step just completed so the crash test can kill there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiofiles
import aiofiles.os

from persistence.disk_faults import DISK
from persistence.layout import FILE_MODE, StateFiles

Trace = Callable[[str], None]


@dataclass(slots=True)
class IoCost:
    """What one durable operation cost: write calls, fsyncs and bytes."""

    writes: int = 0
    fsyncs: int = 0
    bytes: int = 0

    def __iadd__(self, other: IoCost) -> IoCost:
        self.writes += other.writes
        self.fsyncs += other.fsyncs
        self.bytes += other.bytes
        return self


def _private_opener(path: str, flags: int) -> int:
    """Open with mode 0600: state may hold account details, so no other user may read it."""
    return os.open(path, flags, FILE_MODE)


def fsync_dir_sync(path: Path) -> None:
    """Make a rename (or a new file) in directory ``path`` durable; every writer of the project
    uses this one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_fsync = aiofiles.os.wrap(os.fsync)


def append_durably_sync(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (unbuffered writes may be partial), then fsync: the
    journal's append, off the loop here and, in the simulated exchange's journal, on it."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


_append_durably = aiofiles.os.wrap(append_durably_sync)
"""A journal append in one trip off the loop: a critical save waits for the disk and for a worker
thread to get the interpreter's lock and the loop to take the answer back, at every trip (5 ms
each at worst, tens of ms while the loop is busy); a write and an fsync in two trips paid it twice."""
fsync_dir = aiofiles.os.wrap(fsync_dir_sync)


class JournalAppender:
    """The open ``journal.jsonl``: every :meth:`append` is one write + one fsync."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: Any = None

    async def append(self, data: bytes) -> IoCost:
        """Append ``data`` and return once it is on disk."""
        DISK.check()
        cost = IoCost(writes=1, fsyncs=1, bytes=len(data))
        if self._handle is None:
            created = not await aiofiles.os.path.exists(self._path)
            self._handle = await aiofiles.open(self._path, "ab", buffering=0, opener=_private_opener)
            if created:
                await fsync_dir(self._path.parent)
                cost.fsyncs += 1
        await _append_durably(self._handle.fileno(), data)
        return cost

    async def close(self) -> None:
        """Close the handle (the next append reopens, creating the file if it was rotated away)."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            await handle.close()


async def write_snapshot(files: StateFiles, data: bytes, trace: Trace | None = None) -> IoCost:
    """Replace ``snapshot.json`` by ``data`` atomically, keeping the old one as ``snapshot.prev.json``."""
    note = trace or (lambda _step: None)
    DISK.check()
    async with aiofiles.open(files.snapshot_tmp, "wb", buffering=0, opener=_private_opener) as handle:
        await _write_all(handle, data)
        await _fsync(handle.fileno())
    note("snapshot:tmp_synced")
    cost = IoCost(writes=1, fsyncs=2, bytes=len(data))
    # A hard link keeps snapshot.json in place the whole time: there is no moment without one.
    kept = await _link_prev(files)
    if kept is None:  # a filesystem without hard links: copy instead
        cost += await _copy_durably(files.snapshot, files.snapshot_prev_tmp)
        kept = True
    if kept:
        await aiofiles.os.replace(files.snapshot_prev_tmp, files.snapshot_prev)
        note("snapshot:prev_kept")
    await aiofiles.os.replace(files.snapshot_tmp, files.snapshot)
    await fsync_dir(files.root)
    note("snapshot:renamed")
    return cost


async def _link_prev(files: StateFiles) -> bool | None:
    """Hard-link snapshot.json to the prev temp name: True, False (no snapshot yet), None (no links)."""
    for _attempt in range(2):
        try:
            await aiofiles.os.link(files.snapshot, files.snapshot_prev_tmp)
            return True
        except FileNotFoundError:
            return False
        except FileExistsError:  # a stale temp name from a crash: recovery removes it, so rarely here
            await aiofiles.os.unlink(files.snapshot_prev_tmp)
        except OSError:
            return None
    return None


async def _write_all(handle: Any, data: bytes) -> None:
    """Unbuffered writes may be partial; loop until every byte is handed to the kernel."""
    view = memoryview(data)
    while view:
        written = await handle.write(view)
        view = view[written:]


async def _copy_durably(source: Path, target: Path) -> IoCost:
    async with aiofiles.open(source, "rb") as reader:
        data = await reader.read()
    async with aiofiles.open(target, "wb", buffering=0, opener=_private_opener) as writer:
        await _write_all(writer, data)
        await _fsync(writer.fileno())
    return IoCost(writes=1, fsyncs=1, bytes=len(data))


async def rotate_journal(files: StateFiles, appender: JournalAppender) -> IoCost:
    """Move ``journal.jsonl`` to ``journal.prev.jsonl`` (kept for a fallback to the previous snapshot)."""
    await appender.close()
    await aiofiles.os.replace(files.journal, files.journal_prev)
    await fsync_dir(files.root)
    return IoCost(fsyncs=1)
