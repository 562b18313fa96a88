"""Pilot tests of the console's risk keys and questions (issue 16, items 5, 6 and 11), at 80x24 and 160x50.

The kill switch and closing stay available while paused; ``x`` and ``q`` ask first in a trader's words;
the price-alerts dialog opens on its input, where ``d`` is just a letter, and deletes only from the list
after a question that names the alert. Every check goes through the engine (the simulator's positions
and orders, the engine's price alerts), not only through what the screen shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_console_support import make_console, quiesce, settle
from textual.widgets import Button, Input, Label

from console.app import OperatorConsole, QuitQuestion
from console.screens.confirm import NO_LABEL, YES_LABEL, ConfirmScreen
from console.screens.price_alerts import AlertTable, PriceAlertsScreen
from console.widgets.live_table import LiveTable

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 50), id="160x50")]


def toasts(app: OperatorConsole) -> list[str]:
    return [n.message for n in app._notifications]


def sim_positions(app: OperatorConsole) -> list[tuple[str, str, float]]:
    """Every open position on the simulator, on every account: (account, symbol, size)."""
    exchange = app.runtime.exchange
    assert exchange is not None
    return [
        (account, p.symbol, p.size)
        for account in app.runtime.venues
        for p in exchange.positions(account)
        if p.is_open
    ]


def prompt(app: OperatorConsole) -> str:
    return str(app.screen.query_one("#dialog-prompt", Label).content)


async def after_action(app: OperatorConsole, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await quiesce(app, pilot)
    await app.refresh_dashboard()
    await pilot.pause()


async def select_first_position(app: OperatorConsole, pilot: Any) -> str:
    table = app.query_one("#positions", LiveTable)
    table.focus()
    table.move_cursor(row=0)
    await pilot.pause()
    assert table.selected_key is not None
    return table.selected_key


@pytest.mark.parametrize("size", SIZES)
async def test_kill_switch_works_while_paused_and_p_resumes(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(app, pilot)
        assert len(sim_positions(app)) == 2  # the demo trade on main and its mirror
        await pilot.press("p")
        await after_action(app, pilot)
        assert app.link.engine_state() == "paused"
        assert app.check_action("kill", ()) is True and app.check_action("close_position", ()) is True
        await pilot.press("k")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "close all 2 open position(s)" in prompt(app) and "on every account" in prompt(app)
        assert "p resumes" in prompt(app)
        await pilot.press("y")
        await after_action(app, pilot)
        assert sim_positions(app) == []
        assert app.runtime.exchange is not None
        assert all(app.runtime.exchange.open_orders(account) == [] for account in app.runtime.venues)
        kill = [t for t in toasts(app) if t.startswith("kill switch:")]
        assert kill and kill[0].endswith("entries paused; p resumes")
        # The kill switch paused every account; one key takes entries again, and k still works.
        assert app.link.is_paused() and app.check_action("kill", ()) is True
        await pilot.press("p")
        await after_action(app, pilot)
        assert not app.link.is_paused() and app.link.engine_state() == "running"


@pytest.mark.parametrize("size", SIZES)
async def test_c_closes_a_position_while_paused(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("p")
        await after_action(app, pilot)
        key = await select_first_position(app, pilot)
        account, symbol, _ = key.split(":")
        await pilot.press("c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await after_action(app, pilot)
        assert (account, symbol) not in {(a, s) for a, s, _ in sim_positions(app)}
        assert app.link.is_paused()  # closing does not resume entries


@pytest.mark.parametrize("size", SIZES)
async def test_x_asks_in_a_traders_words_before_cancelling(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(app, pilot)
        key = await select_first_position(app, pilot)
        account, symbol, side = key.split(":")
        exchange = app.runtime.exchange
        assert exchange is not None
        before = exchange.open_orders(account, symbol)
        assert len(before) > 1  # entries / TPs and the stop
        size_text = f"{exchange.positions(account, symbol)[0].size:,.10g}"
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        words = f"{side.upper()} {size_text} {symbol} on {account}"
        assert prompt(app) == f"Cancel the entries and TPs of {words}? The stop-loss stays."
        await pilot.press("n")  # no: every order stays
        await after_action(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert len(exchange.open_orders(account, symbol)) == len(before)
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await after_action(app, pilot)
        left = exchange.open_orders(account, symbol)
        assert len(left) == 1 and left[0].reduce_only  # only the stop-loss is left
        assert exchange.positions(account, symbol)[0].is_open


@pytest.mark.parametrize("size", SIZES)
async def test_confirm_dialogs_name_y_n_and_esc(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("k")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConfirmScreen)
        assert str(screen.query_one("#yes", Button).label) == YES_LABEL == "Yes (y)"
        assert str(screen.query_one("#no", Button).label) == NO_LABEL == "No (n / esc)"
        for button in screen.query(Button):  # both on screen, whatever the terminal size
            assert button.region.right <= size[0] and button.region.bottom <= size[1]
        await pilot.press("escape")
        await after_action(app, pilot)
        assert not isinstance(app.screen, ConfirmScreen) and len(sim_positions(app)) == 2


@pytest.mark.parametrize("size", SIZES)
async def test_q_with_open_positions_asks_once(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, QuitQuestion)
        assert "2 open positions stay protected by exchange-side stop-losses" in prompt(app)
        await pilot.press("q")  # asked once: no second question on top
        await pilot.pause()
        assert len(app.screen_stack) == 2
        await pilot.press("n")
        await pilot.pause()
        assert not app._stopping and app.runtime.engine is not None
        await pilot.press("q", "y")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert app.return_code == 0 and app._engine_stopped


async def test_q_quits_at_once_when_confirm_quit_is_off(tmp_path: Path) -> None:
    app = make_console(tmp_path, **{"ui.confirm_quit": False})
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and app._engine_stopped


async def test_q_without_positions_quits_at_once(tmp_path: Path) -> None:
    app = make_console(tmp_path, **{"sim.demo_trades": 0})
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0 and app._engine_stopped


async def _add_alert(app: OperatorConsole, pilot: Any) -> tuple[PriceAlertsScreen, float]:
    assert app.latest is not None
    level = round(app.latest["market"]["BTCUSDT"]["last"] * 1.05, 1)
    await pilot.press("a")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, PriceAlertsScreen)
    await pilot.press(*f"BTCUSDT above {level}", "enter")
    await pilot.pause()
    assert [r["id"] for r in app.link.price_alerts()] == [1]
    return screen, level


@pytest.mark.parametrize("size", SIZES)
async def test_price_alerts_open_on_the_input_where_d_is_a_letter(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(app, pilot)
        screen, _ = await _add_alert(app, pilot)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("a")  # again, now that the list has a row: focus still on the input
        await pilot.pause()
        again = app.screen
        assert isinstance(again, PriceAlertsScreen) and again is not screen
        field = again.query_one("#pa-input", Input)
        assert field.has_focus
        await pilot.press(*"ETHUSDT d", "delete", "backspace")
        await pilot.pause()
        assert field.value == "ETHUSDT "  # typed, not acted on
        assert not isinstance(app.screen, ConfirmScreen)
        assert [r["id"] for r in app.link.price_alerts()] == [1]


@pytest.mark.parametrize("size", SIZES)
async def test_price_alert_delete_asks_naming_the_alert(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size, notifications=True) as pilot:
        await settle(app, pilot)
        screen, level = await _add_alert(app, pilot)
        screen.query_one("#pa-table", AlertTable).focus()
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert prompt(app) == f"Delete alert #1: BTCUSDT above {level:,.10g}?"
        await pilot.press("n")  # cancelled: the alert is still there
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is screen and [r["id"] for r in app.link.price_alerts()] == [1]
        await pilot.press("delete", "y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is screen and app.link.price_alerts() == [] and screen.rows == []
