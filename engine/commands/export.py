"""``opconsole export-trades FILE``: the trade ledger as CSV, read from the state directory.

It reads the state the way recovery would, without taking the lock and without writing to the
state directory, so it can run while the console is open.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.core.errors import BadInput, state_refusal
from engine.core.files import check_output, write_output
from engine.trading.ledger import Ledger
from persistence.errors import PersistenceError
from persistence.recovery import read_state


def ledger_csv(state_dir: Path) -> str:
    """The ledger stored in ``state_dir`` as CSV (a header only when no trade closed yet)."""
    if not state_dir.is_dir():
        raise BadInput(str(state_dir), "no such state directory")
    try:
        state, report = read_state(state_dir)
    except PersistenceError as exc:
        raise state_refusal(exc, state_dir) from None
    if report.critical:
        raise BadInput(str(state_dir), f"the state cannot be read: {report.message}")
    return Ledger.from_state(state).to_csv()


def export_trades(state_dir: Path, target: str) -> int:
    """Write the CSV to ``target`` (``-`` for stdout); returns the exit code.

    A target that cannot be written (a directory, no permission) is ``BadInput``, checked before
    the state is read."""
    if target != "-":
        check_output(Path(target))
    text = ledger_csv(state_dir)
    if target == "-":
        sys.stdout.write(text)
    else:
        write_output(Path(target), text)
    return 0
