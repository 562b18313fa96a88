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

from engine.core.errors import BadInput
from persistence.durable import fsync_dir_sync

PRIVATE_MODE = 0o600


def write_atomic(path: Path, data: str | bytes, *, mode: int = PRIVATE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically and durably (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = temp_path(path)
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
    fsync_dir_sync(path.parent)


def check_output(path: Path) -> None:
    """Refuse (``BadInput``) an output file the operator named that could not be written: a
    directory, a path under a file, or a directory this process may not write in. Missing parent
    directories are fine (:func:`write_atomic` creates them)."""
    if path.is_dir():
        raise BadInput(str(path), "is a directory; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(str(path), f"{parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(str(path), f"cannot write in {parent}: permission denied")


def write_output(path: Path, data: str | bytes) -> None:
    """:func:`write_atomic` for an output file the operator named (a snapshot, an export): what
    cannot be written there is ``BadInput`` naming the file, never a traceback."""
    check_output(path)
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise BadInput(str(path), f"cannot write: {exc.strerror or exc}") from None


def temp_path(path: Path) -> Path:
    """The temporary file :func:`write_atomic` writes beside ``path`` before renaming it."""
    return path.with_name(f".{path.name}.tmp")
