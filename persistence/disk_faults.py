"""The store's fault-injection point: a full disk on demand, for the soak and tests.

The durable primitives (:mod:`persistence.durable`) ask :data:`DISK` before every write; while it is
full they fail with ``OSError(ENOSPC)`` exactly as a real full disk fails them, so the store's own
handling (keep the change, report, retry) is what is exercised. Off by default; nothing in the
engine turns it on.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass


@dataclass(slots=True)
class DiskFaults:
    """Whether the state disk is (made) full, and how many writes that has refused."""

    full: bool = False
    refused: int = 0

    def check(self) -> None:
        """Raise ``OSError(ENOSPC)`` while the disk is full."""
        if self.full:
            self.refused += 1
            raise OSError(errno.ENOSPC, "No space left on device (injected)")


DISK = DiskFaults()
"""The process's one state disk, as the durable writes see it."""
