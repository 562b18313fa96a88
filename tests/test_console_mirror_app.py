"""Pilot tests of the console's mirror-aware parts: the per-account pause dialog (``P``), and the
mirror badge and desync header painted from a snapshot with a drifting link."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_console_app import toasts
from test_console_mirror_view import link, mirror_section
from test_console_support import make_console, quiesce, settle
from textual.widgets import DataTable, Label

from console.app import OperatorConsole
from console.screens.help import HelpScreen
from console.screens.pause import PauseScreen
from console.widgets.live_table import LiveTable
from engine.dashboard.snapshot import freeze


async def _settled_pause(app: OperatorConsole, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await quiesce(app, pilot)
    await pilot.pause()


async def test_P_pauses_the_mirror_only_and_main_still_takes_entries(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(app, pilot)
        manager = app.runtime.tpsl
        assert manager is not None and set(manager.venues) == {"main", "mirror"}
        await pilot.press("P")
        assert isinstance(app.screen, PauseScreen)
        table = app.screen.query_one("#pause-table", DataTable)
        assert [table.get_row_at(i)[1] for i in range(table.row_count)] == ["main", "mirror", "both"]
        assert all(str(table.get_row_at(i)[2]) == "taking entries" for i in range(3))
        await pilot.press("down", "enter")  # the mirror line
        await _settled_pause(app, pilot)
        assert manager.is_paused("mirror") and not manager.is_paused("main")
        assert app.link.engine_state() == "running"  # main still takes entries
        paused = "new entries paused on mirror (protection keeps running); main still takes entries"
        assert paused in toasts(app)
        assert str(table.get_row_at(1)[2]) == "paused" and str(table.get_row_at(2)[2]) == "mixed"
        accounts = app.query_one("#accounts", LiveTable)
        assert accounts.get_cell("mirror", "entries").plain == "paused"
        assert accounts.get_cell("main", "entries").plain == "on"
        await pilot.press("3")  # both: a mixed state is made uniform the safe way
        await _settled_pause(app, pilot)
        assert manager.is_paused("main") and manager.is_paused("mirror")
        await pilot.press("2")  # mirror again: resumed, main stays paused
        await _settled_pause(app, pilot)
        assert manager.is_paused("main") and not manager.is_paused("mirror")
        assert "new entries resumed on mirror; main stays paused" in toasts(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, PauseScreen)
        await pilot.press("p")  # p still switches every account: not all paused, so it pauses both
        await _settled_pause(app, pilot)
        assert manager.is_paused("main") and manager.is_paused("mirror")
        assert app.link.engine_state() == "paused"


async def test_the_new_key_is_in_the_footer_and_the_help(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert "P" in {k.key for k in app.query("FooterKey")}
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(str(s.content) for s in app.screen.query(".help-keys"))
        assert "main, mirror or both" in text and "Pause / resume mirror" in text


async def test_a_drifting_link_and_a_desync_show_on_the_position_and_in_the_header(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.latest is not None
        positions = app.query_one("#positions", LiveTable)
        [key] = [k for k in positions.row_keys if k.startswith("main:")]  # the seeded demo trade
        _, symbol_side = key.split(":", 1)
        data = dict(app.latest.data)
        data["mirror"] = mirror_section(link(symbol_side, drift=("excess",)))
        app.paint(freeze(data))  # type: ignore[arg-type]
        await pilot.pause()
        assert positions.get_cell(key, "mirror").plain == "!excess"
        badge = app.query_one("#sb-mirror", Label)
        assert not badge.display
        data["mirror"] = mirror_section(link(symbol_side, drift=("excess",)), desync=True, pending=2)
        app.paint(freeze(data))  # type: ignore[arg-type]
        await pilot.pause()
        assert positions.get_cell(key, "mirror").plain == "DESYNC"
        assert badge.display and str(badge.content) == " MIRROR DESYNC · 2 pending "
        assert badge.region.width > 0  # on screen at 80 columns, not pushed off by the clock
