"""The help screen, the compact layout's tabs and the log pane (issue 16, items 7, 8 and 12).

Pilot tests at 80x24 and 160x50 on the seeded simulator, and unit tests of the pure helpers: how a
binding's keys read, and how a third-party multi-line message is folded to one log line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_console_support import make_console, settle
from textual.app import App
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Label, Log, Static
from textual.widgets._footer import FooterKey

from console.app import OperatorConsole
from console.logging_queue import QueueLogHandler, fold_message, folded_record
from console.screens.help import HelpScreen, keys_text
from console.widgets.live_table import LiveTable
from console.widgets.log_pane import LogPane

SIZES = [(80, 24), (160, 50)]
HTML_PAGE = [
    "<!DOCTYPE html>",
    "<html>",
    "<head>",
    "<title>403 Forbidden</title>",
    *[f'<meta name="m{i}" content="x">' for i in range(30)],
    "</head>",
    "<body><h1>403 Forbidden</h1></body>",
    "</html>",
    "",
    "",
]


def log_lines(app: OperatorConsole) -> list[str]:
    app.drain_log()
    return list(app.query_one("#log", Log).lines)


def visible(app: OperatorConsole, region_y: int) -> bool:
    """Whether screen row ``region_y`` lies inside the visible part of the metrics tab."""
    metrics = app.query_one("#metrics")
    return metrics.region.y <= region_y < metrics.region.bottom


# --- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("escape", "esc"),
        ("plus", "+"),
        ("equals_sign", "="),
        ("ctrl+t", "^t"),
        ("question_mark", "?"),
        ("slash", "/"),
        ("tab", "tab"),
        ("shift+tab", "shift+tab"),
        ("escape,r", "esc / r"),
        ("plus,equals_sign", "+ / ="),
        ("escape,q,question_mark", "esc / q / ?"),
        ("d,delete", "d / del"),
    ],
)
def test_keys_read_as_a_person_types_them(key: str, shown: str) -> None:
    assert keys_text(Binding(key, "x", "X"), App().get_key_display) == shown


def test_a_bindings_own_key_display_wins() -> None:
    assert keys_text(Binding("slash", "x", "X", key_display="/"), App().get_key_display) == "/"


def test_a_multi_line_html_error_folds_to_its_first_readable_line() -> None:
    text = "\n".join(HTML_PAGE)
    assert fold_message(text) == f"403 Forbidden (+{len(text.splitlines()) - 1} lines)"
    assert fold_message("one line only") == "one line only"
    long = "x" * 500 + "\nsecond"
    folded = fold_message(long, width=40)
    assert len(folded) == 40 and folded.endswith("… (+1 lines)")


def test_only_third_party_multi_line_records_are_folded() -> None:
    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    html = "\n".join(HTML_PAGE)
    theirs = record("pybit._websocket_stream", html)
    folded = folded_record(theirs)
    assert folded is not theirs and "\n" not in folded.getMessage()
    assert theirs.getMessage() == html  # another handler (a file, stderr) still gets it whole
    ours = record("opconsole.engine", "line one\nline two")
    assert folded_record(ours) is ours
    one_line = record("pybit", "connection lost")
    assert folded_record(one_line) is one_line


# --- help screen ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [*SIZES, (100, 30)])
async def test_help_scrolls_to_its_last_section_and_reads_keys(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.query_one("#help-body", VerticalScroll)
        assert app.focused is body  # the arrows, PgUp/PgDn and Home/End scroll it at once
        text = "\n".join(str(s.content) for s in app.screen.query(".help-keys").results(Static))
        assert "esc / r" in text and "+ / =" in text and "^t" in text
        assert "escape" not in text and "equals_sign" not in text and "question_mark" not in text
        last = app.screen.query(".help-section").last(Label)
        assert str(last.content) == "Anywhere"
        await pilot.press("end")
        await pilot.pause()
        assert body.region.y <= last.region.y < body.region.bottom  # the palette section is on screen
        await pilot.press("home")
        await pilot.pause()
        assert body.scroll_y == 0
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


# --- compact tabs -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_brackets_switch_the_compact_tabs_and_the_footer_shows_them(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        footer_keys = {k.key for k in app.query(FooterKey)}
        body = app.query_one("#body")
        compact = size == (80, 24)
        assert ({"left_square_bracket", "right_square_bracket"} <= footer_keys) is compact
        if compact:
            footer = app.query_one("#footer")
            assert all(footer.region.contains_region(k.region) for k in app.query(FooterKey))
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert body.has_class("-show-metrics") is compact
        if not compact:
            return  # the wide layout shows every section; the keys do nothing there
        assert app.focused is app.query_one("#metrics")  # the keyboard follows the tab
        await pilot.press("right_square_bracket")
        assert body.has_class("-show-events")
        await pilot.press("right_square_bracket")
        assert body.has_class("-show-trading")  # wraps round
        await pilot.press("left_square_bracket")
        assert body.has_class("-show-events")
        await pilot.press("2")
        assert body.has_class("-show-metrics")
        await pilot.press("1")
        assert body.has_class("-show-trading") and app.focused is app.query_one("#positions")


@pytest.mark.parametrize("size", SIZES)
async def test_the_metrics_tab_scrolls_to_the_seventh_cache_row(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        table = app.query_one("#cache-table", LiveTable)
        assert table.row_count == 7
        app.show_section("metrics")
        app.query_one("#metrics").focus()
        await pilot.press("end")
        await pilot.pause()
        seventh_row = table.region.y + 1 + 6  # below the header
        assert visible(app, seventh_row) and seventh_row < table.region.bottom


# --- log --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_an_action_logs_one_line(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        before = len(log_lines(app))
        outcome = await app.link.set_toggle("cache_ttls", "baseline")
        app.report(outcome)
        new = log_lines(app)[before:]
        assert [line for line in new if "cache_ttls" in line] == [
            line for line in new if "profile: cache_ttls -> baseline" in line
        ]
        assert len([line for line in new if "cache_ttls" in line]) == 1, new


@pytest.mark.parametrize("size", SIZES)
async def test_an_active_log_filter_is_shown(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        pane = app.query_one(LogPane)
        assert str(pane.border_title) == "Log"
        await pilot.press("slash", *"engine", "enter")
        await pilot.pause()
        assert str(pane.border_title) == "Log · filter: engine"
        assert pane.region.height > 0 and pane.styles.border_top[0] != ""  # drawn in either layout
        await pilot.press("escape")
        await pilot.pause()
        assert str(pane.border_title) == "Log"


@pytest.mark.parametrize("size", SIZES)
async def test_a_pybit_html_error_is_one_line_in_the_pane(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        before = len(log_lines(app))
        page = "\n".join(["WebSocket handshake failed:", *HTML_PAGE[:40]])
        assert page.count("\n") >= 39
        logging.getLogger("pybit._websocket_stream").error(page)
        new = log_lines(app)[before:]
        assert len(new) == 1, new
        assert "pybit._websocket_stream: WebSocket handshake failed: (+" in new[0]


def test_the_queue_handler_keeps_our_tracebacks_whole() -> None:
    handler = QueueLogHandler(lambda: 0.0)
    logger = logging.getLogger("opconsole.test_fold")
    logger.addHandler(handler)
    try:
        logger.error("first\nsecond")
    finally:
        logger.removeHandler(handler)
    assert len(handler.drain()) == 2
