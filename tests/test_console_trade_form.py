"""Pilot tests of the trade form (issue 16, items 9 and 10), at 80x24 and 160x50.

A symbol the account already holds is flagged while choosing it, before any submit; with six and
more problems the error text wraps and the Place button stays on the screen (the body scrolls, the
buttons are docked); the focused field is marked; sized by risk, the form shows and places the
quantity whose loss at the stop, fees included, is the chosen share of equity.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from test_console_support import make_console, quiesce, settle
from textual.geometry import Region
from textual.widgets import Button, Input, Label, Select

from console.app import OperatorConsole
from console.screens.trade_form import TradeFormScreen
from themes import ALL_THEMES

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 50), id="160x50")]


async def open_form(app: OperatorConsole, pilot: Any) -> TradeFormScreen:
    await settle(app, pilot)
    await pilot.press("n")
    await pilot.pause()
    assert isinstance(app.screen, TradeFormScreen)
    return app.screen


async def typed(app: OperatorConsole, pilot: Any) -> None:
    """Let the form's checks (a worker per change) finish and the screen repaint."""
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


def fill(form: TradeFormScreen, **fields: str) -> None:
    for name, value in fields.items():
        widget = form.query_one(f"#tf-{name}")
        if isinstance(widget, Select):
            widget.value = value
        else:
            assert isinstance(widget, Input)
            widget.value = value


def shown_text(label: Label) -> str:
    """What ``label`` paints over its whole size, lines joined and whitespace collapsed: a text cut
    at the label's edge is missing from it."""
    width, height = label.size
    strips = label.render_lines(Region(0, 0, width, height))
    return " ".join(" ".join(strip.text for strip in strips).split())


@pytest.mark.parametrize("size", SIZES)
async def test_a_symbol_already_held_is_flagged_while_choosing_it(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        form = await open_form(app, pilot)
        assert app.latest is not None
        held = [p for p in app.latest["positions"] if p["account"] == "main"]
        assert [p["symbol"] for p in held] == ["BTCUSDT"], "the seeded demo trade"
        warning = form.query_one("#tf-held", Label)
        fill(form, symbol="ETHUSDT")
        await typed(app, pilot)
        assert not warning.display
        fill(form, symbol="BTCUSDT")
        await typed(app, pilot)
        assert warning.display and warning.region.height >= 1
        text = shown_text(warning)
        assert text.startswith("⚠ already open: SELL 0.007 BTCUSDT on main at 9")
        assert text.endswith("a new BTCUSDT trade will be refused")  # wrapped, not cut, at 80 columns
        assert isinstance(app.screen, TradeFormScreen)  # nothing was submitted
        fill(form, symbol="SOLUSDT")
        await typed(app, pilot)
        assert not warning.display


@pytest.mark.parametrize("size", SIZES)
async def test_six_problems_wrap_and_the_buttons_stay_on_screen(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        form = await open_form(app, pilot)
        # a long whose limits lie above the market, TPs below it, the SL above it, leverage too high
        fill(form, leverage="500", entries="200000 300000", tps="1 2 3 4", sl="999999")
        await typed(app, pilot)
        await pilot.press("ctrl+s")
        await typed(app, pilot)
        assert isinstance(app.screen, TradeFormScreen)
        assert len(form.problems) >= 6
        errors = form.query_one("#tf-errors", Label)
        shown = shown_text(errors)
        for problem in form.problems:
            assert f"✗ {problem}" in shown
        screen = app.screen.region
        for button_id in ("#tf-place", "#tf-cancel"):
            button = form.query_one(button_id, Button)
            assert screen.contains_region(button.region), button.region
            widget, _ = app.screen.get_widget_at(button.region.x + 1, button.region.y)
            assert widget is button  # on top, not under the scrolled body
        # after a refused submit the body is scrolled to its end: the last problem shows, above
        # the buttons and not under them
        body, buttons = form.query_one("#tf-body"), form.query_one("#dialog-buttons")
        assert body.scroll_y == body.max_scroll_y
        assert body.region.bottom <= buttons.region.y and errors.region.bottom <= body.region.bottom
        # a sentence wider than the dialog wraps onto more lines instead of being cut at its edge
        fill(form, tps="98000 98500 99000 99500 100000 100500 101000 101500 102000 102500x")
        await typed(app, pilot)
        # the label is no wider than the dialog's body (wider, its end would be cut off) ...
        assert errors.region.right <= form.query_one("#dialog").content_region.right
        # ... so the sentence longer than that width takes more lines
        long = [p for p in form.problems if len(p) + 2 > errors.size.width]
        assert long, form.problems
        assert errors.size.height > len(form.problems)
        shown = shown_text(errors)
        for problem in form.problems:
            assert f"✗ {problem}" in shown
        assert screen.contains_region(form.query_one("#tf-place", Button).region)
        # the body ends above the buttons, and the last problem is scrolled into view there
        body = form.query_one("#tf-body")
        buttons = form.query_one("#dialog-buttons")
        assert body.region.bottom <= buttons.region.y
        assert body.region.y <= errors.region.bottom - 1 < body.region.bottom


@pytest.mark.parametrize("size", SIZES)
async def test_the_focused_field_is_marked_in_every_theme(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        form = await open_form(app, pilot)
        margin, leverage = form.query_one("#tf-margin", Input), form.query_one("#tf-leverage", Input)
        margin_label, leverage_label = (
            form.query_one("#tfl-margin", Label),
            form.query_one("#tfl-leverage", Label),
        )
        for theme in ALL_THEMES:
            app.theme = theme.name
            for focused, other, label, other_label in (
                (leverage, margin, leverage_label, margin_label),
                (margin, leverage, margin_label, leverage_label),
            ):
                focused.focus()
                await pilot.pause()
                assert focused.has_focus
                # a background of its own (Textual's compact field only tints it by 5%) ...
                assert focused.styles.background != other.styles.background, theme.name
                # ... and its label in another colour
                assert label.has_class("-focused") and not other_label.has_class("-focused")
                assert label.styles.color != other_label.styles.color, theme.name


@pytest.mark.parametrize("size", SIZES)
async def test_sizing_by_risk_shows_and_places_the_quantity(tmp_path: Path, size: tuple[int, int]) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        form = await open_form(app, pilot)
        assert app.latest is not None
        equity = app.latest["accounts"]["main"]["equity"]
        last = app.latest["market"]["ETHUSDT"]["last"]
        assert (equity, last) == (9999.5013, 3300.0), "the seeded simulator's snapshot"
        # 1% of 9,999.5013 = 99.995 USDT; a long at 3,300 with the stop at 3,267 loses 33 + the
        # taker fees 0.00055 x (3,300 + 3,267) = 36.61185 per ETH: 2.7312 ETH, 2.73 on the 0.01 grid
        fill(form, symbol="ETHUSDT", approach="fast", sizing="risk", tps="3400", sl="3267")
        await typed(app, pilot)
        fill(form, risk="1")
        await typed(app, pilot)
        assert form.problems == []
        assert form.sizing is not None
        assert form.sizing.per_entry_qty == pytest.approx(2.73)
        assert form.sizing.loss_at_stop == pytest.approx(2.73 * 36.61185)
        assert form.sizing.loss_at_stop <= equity / 100 < 2.74 * 36.61185
        shown = shown_text(form.query_one("#tf-size", Label))
        assert shown == (
            "risk 100.00 USDT → size 2.73 ETHUSDT · notional 9,009.00 · margin 900.90 USDT · loss at "
            "stop 99.95 USDT incl. 9.86 fees = 1.00% of equity"
        )
        assert not form.query_one("#tf-margin", Input).display
        await pilot.press("ctrl+s")
        await app.workers.wait_for_complete()
        await quiesce(app, pilot)
        exchange = app.runtime.exchange
        assert exchange is not None
        eth = [p for p in exchange.positions("main") if p.symbol == "ETHUSDT" and p.is_open]
        assert [p.size for p in eth] == [pytest.approx(2.73)]


async def test_a_risk_too_small_for_the_minimum_is_refused_with_its_figures(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(app, pilot)
        # conservative ETH long: entries 3,300 / 3,250 / 3,200, stop 3,100: 460.4775 per ETH of each
        # entry; 0.01% of equity (0.99995 USDT) buys 0.0022 ETH, under the 0.01 step
        fill(form, symbol="ETHUSDT", sizing="risk", entries="3250 3200", tps="3400 3450 3500 3550")
        fill(form, sl="3100", risk="0.01")
        await typed(app, pilot)
        assert form.problems == [
            "risking 1.00 USDT buys less than one qty step (0.01 ETHUSDT) per entry: raise the risk or "
            "bring the stop closer"
        ]
        fill(form, risk="1")
        await typed(app, pilot)
        assert form.problems == []
        assert form.sizing is not None and form.sizing.per_entry_qty == pytest.approx(0.21)
        assert math.isclose(form.sizing.total_qty, 0.63)
        assert "size 0.63 ETHUSDT (3 x 0.21)" in shown_text(form.query_one("#tf-size", Label))
