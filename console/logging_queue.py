"""Python logging into the console's log pane, through a queue.

The engine logs from the event loop and pybit's worker threads; a widget may only be touched from the
loop. So the handler does nothing but format the record and append the line to a thread-safe queue,
and the UI drains the queue once per tick into a single ``Log.write_lines`` call (the Dolphie rule: one
repaint per tick, however chatty the engine is).
"""

from __future__ import annotations

import logging
import queue
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"


class ClockFormatter(logging.Formatter):
    """Stamps records with the engine's clock (UTC), so a simulated session logs simulated time."""

    def __init__(self, time_source: Callable[[], float]) -> None:
        super().__init__(LOG_FORMAT, LOG_DATE_FORMAT)
        self._time_source = time_source

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(self._time_source(), tz=UTC)
        return moment.strftime(datefmt or LOG_DATE_FORMAT)


class QueueLogHandler(logging.Handler):
    """A logging handler that only queues formatted lines; never blocks, never touches a widget."""

    def __init__(
        self,
        time_source: Callable[[], float],
        level: int = logging.INFO,
        max_pending: int = 10_000,
    ) -> None:
        super().__init__(level)
        self.setFormatter(ClockFormatter(time_source))
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._max_pending = max_pending
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        # A runaway producer must not grow memory without bound while the UI is busy.
        if self._queue.qsize() >= self._max_pending:
            self.dropped += 1
            return
        for part in line.splitlines() or [""]:
            self._queue.put_nowait(part)

    def drain(self, limit: int | None = None) -> list[str]:
        """Every queued line (or at most ``limit``), oldest first."""
        lines: list[str] = []
        while limit is None or len(lines) < limit:
            try:
                lines.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return lines


class LogBuffer:
    """The last ``max_lines`` log lines, kept so the pane can be re-filtered without losing history."""

    def __init__(self, max_lines: int) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)

    def extend(self, lines: Iterable[str]) -> None:
        self._lines.extend(lines)

    def __len__(self) -> int:
        return len(self._lines)

    def matching(self, needle: str) -> list[str]:
        """Lines containing ``needle`` (case-insensitive); every line when ``needle`` is empty."""
        return filter_lines(self._lines, needle)


def filter_lines(lines: Iterable[str], needle: str) -> list[str]:
    """The lines that contain ``needle``, ignoring case; all of them for an empty needle."""
    if not needle:
        return list(lines)
    folded = needle.casefold()
    return [line for line in lines if folded in line.casefold()]


def attach(handler: QueueLogHandler, logger: logging.Logger | None = None) -> None:
    """Route ``logger`` (the root logger by default) into ``handler``, lowering its level if needed."""
    target = logger or logging.getLogger()
    if target.level == logging.NOTSET or target.level > handler.level:
        target.setLevel(handler.level)
    target.addHandler(handler)


def detach(handler: QueueLogHandler, logger: logging.Logger | None = None) -> None:
    """Undo :func:`attach`."""
    (logger or logging.getLogger()).removeHandler(handler)
