"""Crash-safe state store: journal + snapshot, smart (batched) and simple (baseline) save policies.

Imports nothing from ``engine``: the engine passes its clock, which satisfies :class:`TimeSource`.
"""

from persistence.errors import PersistenceError, StateLocked, StoreFailed, UnsupportedSnapshot
from persistence.reasons import Reason
from persistence.recovery import RecoveryReport, read_state
from persistence.store import FlushResult, Store, Write
from persistence.timesource import TimeSource

__all__ = [
    "FlushResult",
    "PersistenceError",
    "Reason",
    "RecoveryReport",
    "StateLocked",
    "Store",
    "StoreFailed",
    "TimeSource",
    "UnsupportedSnapshot",
    "Write",
    "read_state",
]
