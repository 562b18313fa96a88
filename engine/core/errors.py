"""The one error type for input the operator can fix (bad settings, options, files).

The command line prints it as ``opconsole: <where>: <what>`` and exits with 2; the console shows it as
a message. Nothing that raises it has changed any state.
"""

from __future__ import annotations

from pathlib import Path

from persistence.errors import PersistenceError, StateUnusable, UnsupportedSnapshot


class BadInput(Exception):
    """Input the operator can fix: ``where`` names the file/option/key, ``what`` says what is wrong."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what


class EngineFailure(Exception):
    """The engine could not do all it was asked (e.g. read the venue for the exit snapshot).

    The command line prints it as ``opconsole: <where>: <what>`` and exits with 1; what could be done
    was done (the state saved, the snapshot written with what is known).
    """

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where
        self.what = what


def state_refusal(exc: PersistenceError, state_dir: Path) -> BadInput:
    """The one-line refusal for a state directory the store cannot open as it is (in use by another
    process, a file in the way, read-only, written by a newer version): the path and what is wrong."""
    if isinstance(exc, StateUnusable):
        return BadInput(exc.path, exc.what)
    if isinstance(exc, UnsupportedSnapshot) and exc.path is not None:
        return BadInput(exc.path, str(exc))
    return BadInput(str(state_dir), str(exc))
