"""The trading tables (issue 16, items 9 and 14): columns dropped whole by priority, phases in words,
heights that follow the rows, and a refresh whose drawing follows the rows on screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_console_support import make_console, settle

from console.app import OperatorConsole
from console.view_model import ORDER_COLUMNS, POSITION_COLUMNS, phase_text
from console.widgets.live_table import LiveTable, share_height, visible_columns
from engine.dashboard.snapshot import freeze

# --- pure decisions -------------------------------------------------------------------------------


def test_the_least_important_columns_are_dropped_first_and_whole() -> None:
    needs = [8, 9, 6, 10, 7]
    priorities = [2, 1, 1, 3, 3]
    assert visible_columns(needs, priorities, 40) == (0, 1, 2, 3, 4)  # all fit
    assert visible_columns(needs, priorities, 39) == (0, 1, 2, 3)  # the rightmost of the 3s goes
    assert visible_columns(needs, priorities, 30) == (0, 1, 2)
    assert visible_columns(needs, priorities, 22) == (1, 2)
    # priority 1 columns stay even when they alone do not fit (the table crops at its edge)
    assert visible_columns(needs, priorities, 5) == (1, 2)


def test_stacked_tables_share_the_height_by_their_rows() -> None:
    assert share_height(30, [5, 6, 8]) == [5, 6, 19]  # all fit: the last one reaches the bottom
    # few positions, many orders: the positions table keeps no empty rows, the orders get the rest
    assert share_height(30, [5, 6, 40]) == [5, 6, 19]
    # many positions, few orders: the orders table keeps its few rows, positions take the rest
    assert share_height(30, [5, 40, 6]) == [5, 19, 6]
    # both long: an equal share each after the short one
    assert share_height(31, [5, 40, 40]) == [5, 13, 13]
    assert share_height(0, [5, 6]) == [0, 0]


def test_phases_read_as_words() -> None:
    assert phase_text("PROFIT_TAKING") == "taking profit"
    assert phase_text("MONITORING") == "monitoring"
    assert phase_text("BUILDING") == "building"
    assert phase_text(None) == "unmonitored"
    assert phase_text("SOME_NEW_PHASE") == "some new phase"


# --- in the console -------------------------------------------------------------------------------


def _trading_snapshot(app: OperatorConsole, positions: int, orders: int, bump: float = 0.0) -> Any:
    """The console's latest snapshot with ``positions`` monitored positions (taking profit) on
    synthetic symbols and ``orders`` orders in place of the simulator's."""
    assert app.latest is not None
    data = dict(app.latest.data)
    data["positions"] = [
        {
            "account": "main",
            "symbol": f"SYN{i + 1:04d}USDT",
            "side": "Buy",
            "size": 12.5,
            "entry_price": 1234.5,
            "mark_price": 1240.25 + i + bump,
            "upnl": round((5.75 + i + bump) * 12.5, 2),
        }
        for i in range(positions)
    ]
    data["monitors"] = [
        {
            "key": f"main:SYN{i + 1:04d}USDT:Buy",
            "phase": "PROFIT_TAKING",
            "tps_filled": 1,
            "breakeven": True,
            "sl_price": 1234.5,
            "urgency": "active",
        }
        for i in range(positions)
    ]
    data["orders"] = [
        {
            "account": "main",
            "symbol": f"SYN{i + 1:04d}USDT",
            "side": "Sell",
            "order_type": "Limit",
            "qty": 12.5,
            "price": 1300.0 + i,
            "trigger_price": None,
            "status": "New",
            "purpose": "tp2",
            "link_id": f"test-{i}",
        }
        for i in range(orders)
    ]
    data["mirror"] = {"enabled": False}
    return freeze(data)  # type: ignore[arg-type]


def _screen_line(app: OperatorConsole, y: int, table: LiveTable) -> str:
    """What the terminal shows on screen line ``y`` inside ``table``'s content."""
    line = app.screen._compositor.render_strips()[y].text
    region = table.content_region
    return line[region.x : region.right]


@pytest.mark.parametrize("size", [(80, 24), (100, 30)])
async def test_narrow_positions_table_drops_whole_columns_and_shows_phase_words(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        app.paint(_trading_snapshot(app, positions=3, orders=2))
        await pilot.pause()
        table = app.query_one("#positions", LiveTable)
        header = _screen_line(app, table.content_region.y, table).split()
        labels = {column.label for column in POSITION_COLUMNS}
        assert header and all(word in labels for word in header), header  # no label cut mid-text
        for essential in ("Symbol", "Side", "Size", "uPnL", "SL", "Phase"):
            assert essential in header
        assert "Urgency" not in header  # the least important column went first
        assert table.shown_columns == [c.key for c in POSITION_COLUMNS if c.label in header]
        first_row = _screen_line(app, table.content_region.y + 1, table)
        assert "SYN0001USDT" in first_row and first_row.rstrip().endswith("taking profit")


async def test_positions_and_orders_heights_follow_their_rows(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        positions = app.query_one("#positions", LiveTable)
        orders = app.query_one("#orders", LiveTable)
        border = positions.styles.gutter.height
        # few positions, many orders: no empty position rows while the orders scroll
        app.paint(_trading_snapshot(app, positions=2, orders=60))
        await pilot.pause()
        assert positions.outer_size.height == 1 + 2 + border  # the header and its two rows
        stack = app.query_one("#trading")
        # the orders take every other line of the stack
        accounts = app.query_one("#accounts").outer_size.height
        assert orders.outer_size.height == stack.content_size.height - accounts - 1 - 2 - border
        # many positions, few orders: the orders table shrinks to its rows, positions take the room
        app.paint(_trading_snapshot(app, positions=60, orders=3))
        await pilot.pause()
        assert orders.outer_size.height == 1 + 3 + border
        assert positions.outer_size.height == stack.content_size.height - accounts - 1 - 3 - border


async def test_a_refresh_of_1000_rows_makes_and_draws_only_the_rows_on_screen(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        table = app.query_one("#positions", LiveTable)
        app.paint(_trading_snapshot(app, positions=1000, orders=0))
        await pilot.pause()
        assert table.row_count == 1000
        on_screen = table.scrollable_content_region.height - 1  # below the header
        made, cells, lines = table.rows_made, table.cells_painted, table.lines_rendered
        written = table.cells_written
        app.paint(_trading_snapshot(app, positions=1000, orders=0, bump=0.5))  # every mark moves
        await pilot.pause()
        # the rows on screen were made again, their mark and uPnL changed; the other 900-odd were not
        assert 0 < table.rows_made - made <= on_screen
        assert table.cells_written - written >= 2 * (table.rows_made - made)
        assert 0 < table.lines_rendered - lines <= on_screen
        assert 0 < table.cells_painted - cells <= on_screen * len(table.shown_columns)
        # a row off screen is made when it is asked for, or scrolled into view: at the new mark
        assert table.get_cell("main:SYN0900USDT:Buy", "mark").plain == "2,139.75"
        table.focus()
        await pilot.press("end")
        await pilot.pause()
        row_y = table.content_region.y + table.cursor_row - int(table.scroll_offset.y) + 1
        assert "2,239.75" in _screen_line(app, row_y, table)  # SYN1000USDT's mark, bumped


async def test_the_cursor_moves_with_the_arrows_and_keeps_its_row(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.paint(_trading_snapshot(app, positions=30, orders=0))
        await pilot.pause()
        table = app.query_one("#positions", LiveTable)
        table.focus()
        await pilot.press("down", "down", "pagedown", "up")
        chosen = table.selected_key
        assert chosen is not None and table.cursor_row > 2
        # rows above the cursor go away: it stays on its position
        data = dict(_trading_snapshot(app, positions=30, orders=0).data)
        data["positions"] = data["positions"][2:]
        app.paint(freeze(data))  # type: ignore[arg-type]
        await pilot.pause()
        assert table.selected_key == chosen
        await pilot.press("end")
        assert table.selected_key == "main:SYN0030USDT:Buy"
        row_y = table.content_region.y + table.cursor_row - int(table.scroll_offset.y) + 1
        assert "SYN0030USDT" in _screen_line(app, row_y, table)  # scrolled into view
        # a click selects the row under the mouse (the first row on screen, below the header)
        top = int(table.scroll_offset.y)
        header_y = table.content_region.y - table.region.y
        await pilot.click(table, offset=(3, header_y + 1))
        assert table.selected_key == table.row_keys[top]


def test_order_columns_keep_what_a_trader_acts_on() -> None:
    essential = {c.key for c in ORDER_COLUMNS if c.priority == 1}
    assert {"symbol", "purpose", "side", "qty", "price"} <= essential
