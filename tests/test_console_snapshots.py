"""Screenshots of the console (pytest-textual-snapshot) on the seeded simulator with a frozen clock.

The virtual clock never moves, the engine is left to go quiet before the one refresh, and the state
directory is relative to the test's working directory, so every run paints the same screen.
Regenerate after a deliberate UI change with ``pytest tests/test_console_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_console_support import make_console, settle


def _prepared(*keys: str) -> Callable[[Any], Any]:
    async def run_before(pilot: Any) -> None:
        await settle(pilot.app, pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_main_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    assert snap_compare(make_console(tmp_path), terminal_size=size, run_before=_prepared())


def test_rollback_panel(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_console(tmp_path), terminal_size=(120, 36), run_before=_prepared("r"))


def test_ttl_screen(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_console(tmp_path), terminal_size=(120, 36), run_before=_prepared("t"))


def test_trade_form(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_console(tmp_path), terminal_size=(120, 36), run_before=_prepared("n"))


def test_help_screen(snap_compare: Any, tmp_path: Path) -> None:
    help_key = _prepared("question_mark")
    assert snap_compare(make_console(tmp_path), terminal_size=(120, 40), run_before=help_key)
