"""Pilot tests of the console: every key does what the footer says, on the seeded simulator.

The engine runs on the app's loop with a virtual clock that is not driven, so nothing moves unless a
test moves it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import tomllib
from pathlib import Path
from typing import Any

from test_console_support import make_console, quiesce, settle
from textual.widgets import DataTable, Input, Label, Log

from console.app import MAIN_SCREEN_ACTIONS, OperatorConsole
from console.engine_link import TOGGLES
from console.screens.confirm import ConfirmScreen
from console.screens.help import HelpScreen
from console.screens.price_alerts import PriceAlertsScreen
from console.screens.rollback import RollbackScreen
from console.screens.trade_form import TradeFormScreen
from console.screens.ttl import TtlScreen
from console.widgets.live_table import LiveTable
from console.widgets.log_pane import LogPane
from engine.alerts.delivery import disabled_section as disabled_delivery
from engine.core.numbers import fmt_key
from engine.core.settings import OVERRIDE_FILE
from engine.dashboard.snapshot import freeze
from engine.dashboard.statistics import statistics
from engine.mirror.follower import disabled_section


def toasts(app: OperatorConsole) -> list[str]:
    return [n.message for n in app._notifications]


def overrides(app: OperatorConsole) -> dict[str, Any]:
    path = app.state_dir / OVERRIDE_FILE
    return tomllib.loads(path.read_text()) if path.exists() else {}


def log_text(app: OperatorConsole) -> str:
    app.drain_log()
    return "\n".join(app.query_one("#log", Log).lines)


async def test_main_screen_shows_the_simulator(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        assert app.latest is not None and app.refreshes >= 1
        assert app.query_one("#accounts", LiveTable).row_keys == ["main", "mirror"]
        assert str(app.query_one("#sb-venue").content) == " SIM "
        assert str(app.query_one("#sb-state").content) == " RUNNING "
        assert str(app.query_one("#sb-clock").content) == "2026-01-01 00:00:00 UTC"
        assert not app.screen.has_class("-compact")
        assert "engine started on sim" in log_text(app)


def _snapshot(marks: dict[str, float], time: str = "2026-01-01T00:00:00.000Z") -> Any:
    positions = [
        {
            "account": "main",
            "symbol": s,
            "side": "Buy",
            "size": 1.0,
            "entry_price": 100.0,
            "mark_price": m,
            "upnl": m - 100.0,
        }
        for s, m in marks.items()
    ]
    empty_cache = {"enabled": True, "hit_rate": None, "categories": {}}
    return freeze(
        {
            "time": time,
            "venue": "sim",
            "engine_state": "running",
            "profile": {},
            "accounts": {},
            "positions": positions,
            "orders": [],
            "monitors": [],
            "ledger": {"trades": []},
            "stats": {},
            "market": {},
            "insights": [],
            "cache": empty_cache,
            "persistence": {},
            "api_calls": {},
            "alerts": [],
            "streams": {},
            "price_alerts": [],
            "scheduler": {},
            "monitoring": {},
            "api_budget": {},
            "mirror": disabled_section("balance_ratio"),
            "alert_delivery": disabled_delivery(60.0),
            "statistics": statistics(()),
            "data_age": {
                "account_data": None,
                "positions": None,
                "orders": None,
                "market_data": None,
                "oldest": None,
            },
        }
    )


async def test_refresh_updates_only_changed_cells_and_keeps_the_cursor(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        table = app.query_one("#positions", LiveTable)
        app.paint(_snapshot({"AUSDT": 101.0, "BUSDT": 102.0, "CUSDT": 103.0}))
        await pilot.pause()
        table.move_cursor(row=1)
        written = table.cells_written
        app.paint(_snapshot({"AUSDT": 101.0, "BUSDT": 102.0, "CUSDT": 103.0}))
        assert table.cells_written == written  # nothing changed, nothing painted
        # B's mark moves (mark, uPnL, % change), A goes away, D arrives.
        app.paint(_snapshot({"BUSDT": 105.0, "CUSDT": 103.0, "DUSDT": 99.0}))
        await pilot.pause()
        assert table.cells_written == written + 3 + len(table.columns)
        assert table.row_keys == ["main:BUSDT:Buy", "main:CUSDT:Buy", "main:DUSDT:Buy"]
        assert table.selected_key == "main:CUSDT:Buy" or table.selected_key == "main:BUSDT:Buy"
        assert table.get_cell("main:BUSDT:Buy", "mark").plain == "105"


async def test_a_log_drain_while_the_screen_is_torn_down_keeps_the_lines(tmp_path: Path) -> None:
    """The log-drain timer can fire while the app exits and the log pane is already gone: that must
    not crash the app (it did, once in a CI run), and the lines stay queued."""
    app = make_console(tmp_path)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await app.query_one(LogPane).remove()
        logging.getLogger("opconsole.console").info("a line while the pane is gone")
        app.drain_log()
        await pilot.pause()
        assert any("a line while the pane is gone" in line for line in app._log_handler.drain())


async def test_a_log_drain_while_the_pane_loses_its_log_keeps_the_lines(tmp_path: Path) -> None:
    """At exit the pane's children are removed before the pane: a drain then must neither crash the
    app (a full run once failed a close test so) nor lose the lines."""
    app = make_console(tmp_path)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        app.drain_log()  # the pane is known from here on
        await app.query_one(LogPane).query_one("#log").remove()
        logging.getLogger("opconsole.console").info("a line while the log is gone")
        app.drain_log()
        await pilot.pause()
        assert any("a line while the log is gone" in line for line in app._log_handler.drain())


async def test_refreshes_never_overlap(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        gate = asyncio.Event()
        real = app.link.view

        async def slow() -> Any:
            await gate.wait()
            return await real()

        app.link.view = slow  # type: ignore[method-assign]
        before = app.refreshes
        first = asyncio.create_task(app.refresh_dashboard())
        await asyncio.sleep(0)
        assert await app.refresh_dashboard() is False  # skipped, not queued
        gate.set()
        assert await first is True
        assert app.skipped_refreshes == 1 and app.refreshes == before + 1


async def test_f_flushes_the_store_and_says_what_was_written(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("f")
        await app.workers.wait_for_complete()
        await pilot.pause()
        flushed = [t for t in toasts(app) if t.startswith("store flushed:")]
        assert flushed and flushed[0] in log_text(app)


async def test_r_then_a_rolls_every_toggle_back_and_o_restores(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("r")
        assert isinstance(app.screen, RollbackScreen)
        await pilot.press("a")
        await pilot.pause()
        modes = {t: m.value for t, m in app.runtime.profile.modes.items()}
        assert modes == dict.fromkeys(TOGGLES, "baseline")
        assert overrides(app)["profile"] == dict.fromkeys(TOGGLES, "baseline")
        assert str(app.query_one("#sb-profile").content) == " BASELINE "
        assert app.latest is not None and app.latest["profile"]["cache_metrics"] == "baseline"
        assert app.screen.query_one("#toggles").get_cell("cache_ttls", "state").plain == "BASELINE"
        await pilot.press("o")
        await pilot.pause()
        assert all(m.value == "optimized" for m in app.runtime.profile.modes.values())
        await pilot.press("space")  # the cursor is on the first toggle
        await pilot.pause()
        assert app.runtime.profile.mode("cache_ttls").value == "baseline"
        assert str(app.query_one("#sb-profile").content) == " MIXED "
        await pilot.press("escape")
        assert not isinstance(app.screen, RollbackScreen)


async def test_cache_panel_says_metrics_off_after_rollback(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await app.runtime.profile.set("cache_metrics", "baseline")
        await app.refresh_dashboard()
        assert str(app.query_one("#cache-summary").content) == "metrics off (rollback)"


async def test_ttl_screen_changes_the_live_cache_ttl_and_saves_it(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        cache = app.runtime.cache
        assert cache is not None and cache.ttl("account_data") == 60.0
        await pilot.press("t")
        assert isinstance(app.screen, TtlScreen)
        await pilot.press("plus")
        await pilot.pause()
        assert cache.ttl("account_data") == 90.0
        assert overrides(app)["cache"]["ttl"]["optimized"]["account_data"] == 90.0
        await pilot.press("down", "enter")
        field = app.screen.query_one("#ttl-input", Input)
        field.value = ""
        await pilot.press(*"45", "enter")
        await pilot.pause()
        assert cache.ttl("positions") == 45.0
        assert overrides(app)["cache"]["ttl"]["optimized"]["positions"] == 45.0
        await pilot.press("escape")
        await app.refresh_dashboard()
        assert app.latest is not None and app.latest["cache"]["categories"]["positions"]["ttl"] == 45.0


async def test_trade_form_shows_problems_and_sends_nothing(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50), notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("n")
        assert isinstance(app.screen, TradeFormScreen)
        form = app.screen
        form.query_one("#tf-margin", Input).value = "lots"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        errors = form.query_one("#tf-errors")
        assert errors.display and "margin: not a number: 'lots'" in str(errors.content)
        assert isinstance(app.screen, TradeFormScreen)  # still open: nothing was sent
        assert app.latest is not None
        last = app.latest["market"]["BTCUSDT"]["last"]
        form.query_one("#tf-margin", Input).value = "100"
        form.query_one("#tf-approach").value = "fast"
        form.query_one("#tf-tps", Input).value = f"{last * 1.02:.1f}"
        form.query_one("#tf-sl", Input).value = f"{last * 1.01:.1f}"  # above the entry of a long
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "is not beyond the entries on the loss side" in str(errors.content)
        assert isinstance(app.screen, TradeFormScreen)


async def _select_first_position(app: OperatorConsole, pilot: Any) -> str:
    table = app.query_one("#positions", LiveTable)
    assert table.row_keys, "the seeded simulator opens a demo trade at start"
    table.focus()
    table.move_cursor(row=0)
    await pilot.pause()
    assert table.selected_key is not None
    return table.selected_key


async def _after_action(app: OperatorConsole, pilot: Any) -> None:
    await app.workers.wait_for_complete()
    await quiesce(app, pilot)
    await app.refresh_dashboard()


async def test_x_cancels_entries_and_tps_but_keeps_the_stop_loss(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        key = await _select_first_position(app, pilot)
        account, symbol, _ = key.split(":")
        await pilot.press("x", "y")  # x asks first (issue 16 item 11)
        await _after_action(app, pilot)
        assert f"{fmt_key(key)}: entries and TPs cancelled (SL kept)" in toasts(app)
        assert app.latest is not None
        orders = app.latest["orders"]
        left = [o["purpose"] for o in orders if (o["account"], o["symbol"]) == (account, symbol)]
        assert left == ["sl"]


async def test_c_closes_the_selected_position_after_confirmation(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        key = await _select_first_position(app, pilot)
        await pilot.press("c")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # no: nothing happens
        await _after_action(app, pilot)
        assert key in app.query_one("#positions", LiveTable).row_keys
        await pilot.press("c", "y")
        await _after_action(app, pilot)
        assert f"{fmt_key(key)}: closing at market" in toasts(app)
        assert key not in app.query_one("#positions", LiveTable).row_keys


async def test_e_reports_the_engine_answer_for_breakeven(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        key = await _select_first_position(app, pilot)
        await pilot.press("e")
        await _after_action(app, pilot)
        # The price has not moved (frozen clock): whatever the engine answers, the console shows it.
        answer = [t for t in toasts(app) if "breakeven" in t.lower()]
        assert answer and (answer[0].startswith("Moving the SL to breakeven refused") or key in answer[0])
        assert answer[0] in log_text(app)


async def test_position_keys_need_a_selected_position(tmp_path: Path) -> None:
    app = make_console(tmp_path, **{"sim.demo_trades": 0})
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        assert app.query_one("#positions", LiveTable).row_keys == []
        for key in ("c", "e", "x"):
            await pilot.press(key)
        await pilot.pause()
        assert toasts(app).count("Select a position in the positions table first.") >= 1
        assert not isinstance(app.screen, ConfirmScreen)


async def test_kill_switch_asks_and_y_confirms(tmp_path: Path) -> None:
    # Issue 16 item 5/11: the kill switch asks a y/n question like every confirmation (it used to
    # want the typed word KILL); it reduces risk and must be quick to reach under stress.
    app = make_console(tmp_path)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("k", "y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any(t.startswith("kill switch: main: closing 1 position(s)") for t in toasts(app))
        await quiesce(app, pilot)
        await app.refresh_dashboard()
        assert app.query_one("#positions", LiveTable).row_keys == []


async def test_p_pauses_entries_and_close_and_kill_stay_available(tmp_path: Path) -> None:
    # Issue 16 item 5: pausing stops new entries only; closing and the kill switch reduce risk, so
    # they are never dimmed (they used to be, which made p then k do nothing).
    app = make_console(tmp_path)
    async with app.run_test(notifications=True) as pilot:
        await settle(app, pilot)
        assert app.link.engine_state() == "running" and app.check_action("kill", ()) is True
        await pilot.press("p")
        await _after_action(app, pilot)
        assert app.link.is_paused() and app.link.engine_state() == "paused"
        assert str(app.query_one("#sb-state").content) == " PAUSED "
        assert "new entries paused (protection keeps running)" in toasts(app)
        assert app.check_action("kill", ()) is True and app.check_action("close_position", ()) is True
        assert app.check_action("breakeven", ()) is True
        await pilot.press("k")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.press("p")
        await _after_action(app, pilot)
        assert not app.link.is_paused() and app.check_action("kill", ()) is True


async def test_a_adds_lists_and_deletes_price_alerts(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50), notifications=True) as pilot:
        await settle(app, pilot)
        assert app.latest is not None and app.latest["price_alerts"] == ()
        last = app.latest["market"]["BTCUSDT"]["last"]
        await pilot.press("a")
        assert isinstance(app.screen, PriceAlertsScreen)
        screen = app.screen
        field = screen.query_one("#pa-input", Input)
        assert field.has_focus  # always opens ready to type
        # An "above" level under the current price could never fire: refused inline, nothing added.
        await pilot.press(*f"BTCUSDT above {last * 0.9:.1f}", "enter")
        await pilot.pause()
        errors = screen.query_one("#pa-errors", Label)
        assert errors.display and "needs a price above it" in str(errors.content)
        assert screen.rows == [] and any("price alert refused" in t for t in toasts(app))
        field.value = ""
        level = f"{last * 1.05:.1f}"
        await pilot.press(*f"btcusdt above {level}", "enter")
        await pilot.pause()
        assert not errors.display and field.value == ""
        assert [(r["symbol"], r["condition"], r["armed"]) for r in screen.rows] == [
            ("BTCUSDT", "above", True)
        ]
        table = screen.query_one("#pa-table", DataTable)
        assert table.row_count == 1 and table.get_row_at(0)[:4] == [
            "1",
            "BTCUSDT",
            "above",
            f"{float(level):,.10g}",  # 0.7.0: thousands separators
        ]
        added = f"price alert #1 added: BTCUSDT above {float(level):,.10g}"
        assert added in toasts(app) and added in log_text(app)
        assert app.runtime.store is not None and "price_alerts" in app.runtime.store.state
        # Delete it from the table: it asks first (issue 16 item 6).
        table.focus()
        await pilot.press("d", "y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.rows == [] and table.row_count == 0
        assert f"price alert #1 deleted: BTCUSDT above {float(level):,.10g}" in toasts(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, PriceAlertsScreen)
        await app.workers.wait_for_complete()
        assert app.latest is not None and app.latest["price_alerts"] == ()


async def test_l_enlarges_the_log_and_slash_filters_it(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        pane = app.query_one(LogPane)
        await pilot.press("l")
        assert app.screen.maximized is pane and app.focused is pane.log_widget
        await pilot.press("l")
        assert app.screen.maximized is None
        logging_lines = app.query_one("#log", Log).lines
        assert any("engine started" in line for line in logging_lines)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"engine started", "enter")
        await pilot.pause()
        shown = list(app.query_one("#log", Log).lines)
        assert shown and all("engine started" in line for line in shown)
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.query_one("#log", Log).lines) > len(shown)


async def test_ctrl_t_switches_theme_and_remembers_it(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        assert app.theme == "opconsole-dark"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.theme == "opconsole-light"
        assert overrides(app)["ui"]["theme"] == "opconsole-light"
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert app.theme == "opconsole-contrast"
    again = make_console(tmp_path)  # the next start picks the remembered theme
    async with again.run_test() as pilot:
        await settle(again, pilot)
        assert again.theme == "opconsole-contrast"


async def test_help_lists_every_key_and_the_palette_has_every_action(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(str(s.content) for s in app.screen.query(".help-keys"))
        for binding in app.BINDINGS:
            assert binding.tooltip in text  # type: ignore[union-attr]
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for action in MAIN_SCREEN_ACTIONS | {"next_theme", "help"}:
            description = next(b.description for b in app.BINDINGS if b.action == action)  # type: ignore[union-attr]
            assert any(t.startswith(description) for t in titles), action
        assert "Quit" in titles
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_compact_layout_at_80x24_uses_tabs(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.screen.has_class("-compact")
        assert app.query_one("#trading").display and not app.query_one("#metrics").display
        app.show_section("metrics")
        await pilot.pause()
        assert app.query_one("#metrics").display and not app.query_one("#trading").display
        footer_keys = {k.key for k in app.query("FooterKey")}
        assert {"f", "t", "r", "n", "c", "e", "x", "k", "p", "a", "l", "slash", "ctrl+t", "q"} <= footer_keys


async def test_q_flushes_stops_the_engine_and_says_positions_stay_protected(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press("q", "y")  # with positions open, q asks once (issue 16 item 11)
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert app.return_code == 0
    assert app._engine_stopped and not app.runtime._tasks
    assert app.exit_text == (
        # the demo trade and its mirror
        "opconsole stopped; store flushed. 2 open positions stay protected by exchange-side stop-losses."
    )


async def test_sighup_flushes_and_exits_cleanly(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    app._handle_signals = True
    async with app.run_test() as pilot:
        await settle(app, pilot)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(50):
            await pilot.pause(0.02)
            if app._engine_stopped:
                break
    assert app._engine_stopped and app.return_code == 0
    assert app.exit_text.startswith("opconsole stopped; store flushed.")
