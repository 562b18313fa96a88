"""Atomic file writes for every engine writer (settings overrides, the simulator's market, exports,
snapshots written on exit).

A reader sees the previous file or the new one, never half of one: the text goes to a temporary file
beside the target, is fsync'd, then renamed over it, and the directory is fsync'd so the rename
survives a power cut. Files are created with mode 0600 unless told otherwise (they may hold account
details). The state store has its own asynchronous writer (``persistence.durable``), because it keeps
the previous snapshot too and persistence never imports the engine.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600


def write_atomic(path: Path, data: str | bytes, *, mode: int = PRIVATE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
