"""The console's terminal driver: Textual's Linux driver, made to survive losing its terminal.

Textual writes the screen from a writer thread fed by a bounded queue. When the terminal goes away
(the ssh session drops, the terminal window closes) a write raises ``OSError`` (EIO) and kills that
thread; the queue then fills, and the driver's ``close()``, which queues a stop marker and joins the
thread, blocks the main thread for good: the console has stopped its engine and released its lock,
but the process never exits, and its asyncio signal handlers never run again. With the terminal
wrapped in :class:`TerminalOutput`, a lost terminal swallows the writes instead, so the writer thread
keeps draining its queue and the shutdown completes.

Two more things happen when the terminal goes away, and the driver handles both:

- The kernel sends SIGHUP *and SIGCONT* to the terminal's processes. Textual takes any SIGCONT for
  the end of a Ctrl+Z suspension and starts application mode again: a second writer thread and a
  second (non-daemon) input thread, the first ones orphaned, on a terminal that is gone. The driver
  resumes only when it suspended itself.
- The input thread's read may fail (EIO) before the app has handled SIGHUP. Textual would call
  ``app.panic()``, which ends the app's message loop at once and cancels its workers, a shutdown under
  way included. The driver posts :class:`TerminalLost` to the app instead (``post_message`` is
  thread-safe), and the app shuts down as on SIGHUP, whichever of the two comes first.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message

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


class TerminalLost(Message):
    """Posted to the app by the driver's input thread when the terminal could not be read any more."""

    def __init__(self, problem: str) -> None:
        super().__init__()
        self.problem = problem  # the read's error, for the log


class ConsoleDriver(LinuxDriver):
    """Textual's Linux driver writing through a :class:`TerminalOutput`, resuming only after its own
    suspension, and reporting a terminal it cannot read as :class:`TerminalLost`."""

    # A class attribute: LinuxDriver.__init__ installs the SIGCONT handler before our __init__ runs.
    _suspended = False

    def __init__(self, app: App[Any], **options: Any) -> None:
        super().__init__(app, **options)
        # The driver writes to sys.__stderr__ (the terminal) through its writer thread.
        if self._file is not None:
            self._file = TerminalOutput(self._file)  # type: ignore[assignment]
        self._input_lost = False

    @property
    def terminal_lost(self) -> bool:
        """True once the terminal refused a write or a read: there is nowhere left to print to."""
        return self._input_lost or (isinstance(self._file, TerminalOutput) and self._file.lost)

    def suspend_application_mode(self) -> None:
        """Leave application mode (Ctrl+Z, ``App.suspend``); a later SIGCONT may resume it."""
        self._suspended = True
        super().suspend_application_mode()

    def resume_application_mode(self) -> None:
        """Enter application mode again after :meth:`suspend_application_mode`."""
        self._suspended = False
        super().resume_application_mode()

    def _sigcont_application(self, *args: Any) -> None:
        # A SIGCONT that does not end our own suspension (the kernel's, on a hang-up) changes nothing.
        if self._suspended:
            super()._sigcont_application(*args)

    def run_input_thread(self) -> None:
        """Textual's input loop; a read error ends it with :class:`TerminalLost` posted to the app."""
        try:
            super().run_input_thread()
        except OSError as exc:
            self._input_lost = True
            self._app.post_message(TerminalLost(f"{type(exc).__name__}: {exc}"))
