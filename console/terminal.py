"""The console's terminal driver: Textual's Linux driver, made to survive losing its terminal.

Textual writes the screen from a writer thread fed by a bounded queue. When the terminal goes away
(the ssh session drops, the terminal window closes) a write raises ``OSError`` (EIO) and kills that
thread; the queue then fills, and the driver's ``close()``, which queues a stop marker and joins the
thread, blocks the main thread for good: the console has stopped its engine and released its lock,
but the process never exits, and its asyncio signal handlers never run again. With the terminal
wrapped in :class:`TerminalOutput`, a lost terminal swallows the writes instead, so the writer thread
keeps draining its queue and the shutdown completes.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from textual.drivers.linux_driver import LinuxDriver

if TYPE_CHECKING:
    from textual.app import App


class TerminalOutput:
    """A text stream that drops what it is given once the terminal behind it has gone away."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.lost = False  # True after the first write or flush the terminal refused

    def write(self, text: str) -> int:
        """Write ``text``, or drop it when the terminal is gone (never raises ``OSError``)."""
        if not self.lost:
            try:
                self._stream.write(text)
            except OSError:
                self.lost = True
        return len(text)

    def flush(self) -> None:
        """Flush, unless the terminal is gone."""
        if not self.lost:
            try:
                self._stream.flush()
            except OSError:
                self.lost = True

    def fileno(self) -> int:
        """The terminal's file descriptor (Textual reads the window size from it)."""
        return self._stream.fileno()

    def isatty(self) -> bool:
        """Whether the stream is a terminal (as the wrapped stream says)."""
        return self._stream.isatty()


class ConsoleDriver(LinuxDriver):
    """Textual's Linux driver writing through a :class:`TerminalOutput`."""

    def __init__(self, app: App[Any], **options: Any) -> None:
        super().__init__(app, **options)
        # The driver writes to sys.__stderr__ (the terminal) through its writer thread.
        if self._file is not None:
            self._file = TerminalOutput(self._file)  # type: ignore[assignment]

    @property
    def terminal_lost(self) -> bool:
        """True once the terminal refused a write: there is nowhere left to print to."""
        return isinstance(self._file, TerminalOutput) and self._file.lost
