"""Errors the store raises to its callers."""

from __future__ import annotations


class PersistenceError(Exception):
    """Base class of the store's errors."""


class StateLocked(PersistenceError):
    """Another process holds the state directory's lock file; two writers would corrupt the state."""


class UnsupportedSnapshot(PersistenceError):
    """The snapshot was written by a newer format version; refuse rather than misread or overwrite it.

    ``path`` names the file once it is known (the decoder sees bytes only).
    """

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = None if path is None else str(path)


class StoreFailed(PersistenceError):
    """A change that had to be durable is not: the disk cannot be written (full, read-only, I/O error).

    The store keeps the change in memory, in order, and writes it when the disk takes writes again
    (it retries by itself); the caller decides how to go on without durability.
    """


class StoreNotStarted(PersistenceError):
    """A save, flush or timer ran before :meth:`Store.start` (or after :meth:`Store.close`)."""


class StateUnusable(PersistenceError):
    """A file or the directory of the state cannot be used as it is (a directory where a file belongs,
    unreadable, not writable): the operator must fix it; nothing was changed."""

    def __init__(self, path: object, what: str) -> None:
        super().__init__(f"{path}: {what}")
        self.path = str(path)
        self.what = what
