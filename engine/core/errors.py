"""The one error type for input the operator can fix (bad settings, options, files).

The command line prints it as ``opconsole: <where>: <what>`` and exits with 2; the console shows it as
a message. Nothing that raises it has changed any state.
"""

from __future__ import annotations


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
