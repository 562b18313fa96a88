"""Errors the store raises to its callers."""

from __future__ import annotations


class PersistenceError(Exception):
    """Base class of the store's errors."""


class StateLocked(PersistenceError):
    """Another process holds the state directory's lock file; two writers would corrupt the state."""


class UnsupportedSnapshot(PersistenceError):
    """The snapshot was written by a newer format version; refuse rather than misread or overwrite it."""


class StoreFailed(PersistenceError):
    """A disk write or fsync failed; the store halts instead of silently dropping writes."""


class StoreNotStarted(PersistenceError):
    """A save, flush or timer ran before :meth:`Store.start` (or after :meth:`Store.close`)."""
