"""Python logging into the console's log pane, through a queue.

The engine logs from the event loop and pybit's worker threads; a widget may only be touched from the
loop. So the handler does nothing but format the record and append the line to a thread-safe queue,
and the UI drains the queue once per tick into a single ``Log.write_lines`` call (the Dolphie rule: one
repaint per tick, however chatty the engine is).
"""

from __future__ import annotations

import copy
import logging
import queue
import re
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"
OWN_LOGGER = "opconsole"  # our loggers' prefix: their multi-line records (tracebacks) stay whole
FOLD_WIDTH = 160  # a folded third-party message is cut to this many characters, note included
_TAG = re.compile(r"<[^>]*>")


def readable(line: str) -> str:
    """``line`` without markup tags or runs of blanks (``<b>403</b>  Forbidden`` reads ``403 Forbidden``)."""
    return " ".join(_TAG.sub(" ", line).split())


def fold_message(text: str, width: int = FOLD_WIDTH) -> str:
    """A multi-line message as one line: its first line with something to read (an HTML page's
    ``<!DOCTYPE html>`` and ``<head>`` carry nothing), cut to ``width`` with ``…``, and a
    ``(+N lines)`` note for the lines left out. A one-line message comes back as it was."""
    lines = text.splitlines()
    if len(lines) <= 1:
        return text
    head = next((found for found in map(readable, lines) if any(c.isalnum() for c in found)), "")
    note = f" (+{len(lines) - 1} lines)"
    room = max(width - len(note), 1)
    if len(head) > room:
        head = head[: room - 1] + "…"
    return head + note


def is_own(logger_name: str) -> bool:
    """Whether a record comes from one of the console's or the engine's own loggers."""
    return logger_name == OWN_LOGGER or logger_name.startswith(OWN_LOGGER + ".")


def folded_record(record: logging.LogRecord, width: int = FOLD_WIDTH) -> logging.LogRecord:
    """``record`` as the log pane shows it: a third-party record whose message (with its traceback)
    spans several lines becomes a copy with that message folded to one line (:func:`fold_message`);
    our own records and one-line messages are returned unchanged. The original is never modified,
    so any other handler (a log file, stderr) still writes it whole."""
    if is_own(record.name):
        return record
    text = record.getMessage()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        text = f"{text}\n{record.exc_text}"
    if record.stack_info:
        text = f"{text}\n{record.stack_info}"
    if "\n" not in text.strip("\n"):
        return record
    folded = copy.copy(record)
    folded.msg, folded.args = fold_message(text.strip("\n"), width), None
    folded.exc_info, folded.exc_text, folded.stack_info = None, None, None
    return folded


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
            line = self.format(folded_record(record))
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
