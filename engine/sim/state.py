"""The simulated exchange's own state file: atomic JSON writes, strict reads, RNG state as JSON.

The exchange is the world, not the engine: its file (``sim-exchange.json`` in the state directory)
holds accounts, positions, orders, recent executions, prices and the generators' states, so a restart
continues the same market; ``journal_seq`` names the last record of :mod:`engine.sim.journal` it holds
(the changes after it are replayed from the journal). A file that cannot be read back is an error
(:class:`SimStateError`), never a silently empty exchange. JSON only: nothing that runs code on load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.core.errors import BadInput
from engine.core.files import write_atomic

STATE_FORMAT = "opconsole-sim-exchange"
STATE_VERSION = 1


class SimStateError(BadInput):
    """The exchange's state file exists but cannot be used (unreadable, corrupt, wrong format).

    The operator can fix it (move the file away to start a new simulated market), so it is reported
    as bad input, in one line, and the file is left as it is.
    """

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(str(path), what)
        self.path = path


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` as JSON through :func:`~engine.core.files.write_atomic` (mode 0600).

    A reader sees either the previous file or the new one.
    """
    text = json.dumps({"format": STATE_FORMAT, "version": STATE_VERSION, **state}, separators=(",", ":"))
    write_atomic(path, text)


def read_state(path: Path) -> dict[str, Any]:
    """Read a state file written by :func:`write_state`; raises :class:`SimStateError` when unusable."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimStateError(path, f"cannot read the simulated exchange's state: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SimStateError(path, "corrupt simulated exchange state: not UTF-8 text") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SimStateError(path, f"corrupt simulated exchange state: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise SimStateError(path, "not a simulated exchange state file")
    if data.get("version") != STATE_VERSION:
        raise SimStateError(
            path, f"unsupported state version {data.get('version')!r}, expected {STATE_VERSION}"
        )
    return data


def rng_state_to_json(state: tuple[Any, ...]) -> list[Any]:
    """``random.Random.getstate()`` as JSON: [version, [625 ints], gauss_next]."""
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def rng_state_from_json(data: Any) -> tuple[Any, ...]:
    """Inverse of :func:`rng_state_to_json`, ready for ``random.Random.setstate``."""
    version, internal, gauss_next = data
    return (int(version), tuple(int(x) for x in internal), None if gauss_next is None else float(gauss_next))
