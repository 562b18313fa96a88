"""Issue 16, items 2-4: charts from zero with their sign, the cache panel's per-category rates and
labelled chart, numbers with thousands separators at the instrument's tick, and positions named in a
trader's words (dialogs, toasts, alerts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_console_support import make_console, settle
from tpsl_builders import BTC, P, with_position

from console.view_model import (
    NEGATIVE,
    POSITIVE,
    StatsView,
    cache_summary,
    order_rows,
    pnl_chart_span,
    position_rows,
    position_words,
    trade_stats,
)
from console.widgets.cache_panel import CachePanel
from console.widgets.stats_panel import StatsPanel
from console.widgets.zero_chart import AXIS, ZeroChart, captioned, chart_cells
from engine.core.models import Side
from engine.core.numbers import fmt_number, fmt_usdt
from engine.trading.approaches import Approach, TradeRequest, validate_request
from engine.trading.monitor import request_close

SIZES = [(80, 24), (160, 50)]

# --- item 2: charts ----------------------------------------------------------------------------


def test_one_small_loss_is_a_small_mark_under_the_zero_axis_not_full_rows() -> None:
    # the PnL curve starts at 0; one losing trade of -0.03 USDT against a 100 USDT scale
    cells = chart_cells([0.0, -0.03], 3, min_span=100.0)
    assert [c for c, _ in cells[0]] == [AXIS, AXIS]  # the zero line on top: nothing was gained
    assert cells[1][1] == ("▀", NEGATIVE)  # the smallest mark, hanging below the axis: a loss
    assert cells[2][1][0] == " "  # not a second row of blocks
    # values that fill the span draw as before (full bars)
    assert chart_cells([0.0, -150.0], 3, min_span=100.0)[2][1] == ("█", NEGATIVE)


def test_a_caption_is_written_on_the_zero_line() -> None:
    cells = captioned(chart_cells([0.0, 50.0], 2, min_span=100.0), 12, "hit %")
    assert "".join(c for c, _ in cells[1]) == AXIS + " hit % " + AXIS * 4  # the axis, labelled
    assert cells[0][1] == ("▄", POSITIVE)  # the bar above it is untouched


def test_the_pnl_chart_span_is_a_stable_share_of_the_equity() -> None:
    assert (
        pnl_chart_span({"accounts": {"main": {"equity": 10_123.4}, "mirror": {"equity": 5_000.0}}}) == 100.0
    )
    assert pnl_chart_span({"accounts": {}}) == 1.0


@pytest.mark.parametrize("size", SIZES)
async def test_the_statistics_panel_draws_a_small_loss_from_zero_with_its_sign(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_console(tmp_path, **{"sim.demo_trades": 0})
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        panel = app.query_one(StatsPanel)
        panel.show(StatsView((("All", trade_stats(())),), (-0.03,), 100.0))
        await pilot.pause()
        chart = app.query_one("#stats-chart", ZeroChart)
        assert chart.values == (0.0, -0.03) and chart.min_span == 100.0
        assert chart.caption == "PnL curve -0.03 · scale 100 USDT"
        assert chart.size.height or size == (80, 24)  # the compact layout may keep it in a tab
        if chart.size.height:
            lines = chart.render().plain.split("\n")
            # the zero line on top, labelled; the loss a small mark below it
            assert lines[0].startswith(AXIS + " PnL curve -0.03 · scale 100 USDT " + AXIS)
            assert lines[1].startswith(" ▀")
            assert "█" not in chart.render().plain


# --- item 2: the cache panel -------------------------------------------------------------------


def test_the_cache_summary_names_the_categories_below_the_overall_rate_lowest_first() -> None:
    snapshot: Any = {
        "profile": {"cache_metrics": "optimized"},
        "cache": {
            "enabled": True,
            "hit_rate": 0.98,
            "categories": {
                "market_data": {"hit_rate": 0.995},
                "positions": {"hit_rate": 0.12},
                "orders": {"hit_rate": 0.25},
                "stats": {"hit_rate": None},  # never looked up: no rate to show
            },
        },
    }
    assert cache_summary(snapshot) == "hit rate 98.0% overall · lowest: positions 12% · orders 25%"


@pytest.mark.parametrize("size", SIZES)
async def test_the_cache_panel_labels_its_chart_and_names_each_category(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        panel = app.query_one(CachePanel)
        summary = str(panel.query_one("#cache-summary").render())
        assert summary.startswith("hit rate ") and " overall · lowest: " in summary
        chart = panel.query_one("#cache-chart", ZeroChart)
        assert chart.min_span == 100.0 and all(0.0 <= v <= 100.0 for v in chart.values)
        assert "overall hit rate" in chart.caption and "0-100%" in chart.caption
        if chart.size.height:
            assert chart.caption in chart.render().plain.split("\n")[-1]  # on its zero line


# --- item 3: numbers ---------------------------------------------------------------------------


def test_the_shared_helpers_group_thousands_at_the_step() -> None:
    assert fmt_number(95_085.3, 0.1) == "95,085.3"
    assert fmt_number(95_085.0, 0.1) == "95,085.0"  # every price of the column has the tick's decimals
    assert fmt_number(1.2, 0.0001) == "1.2000"
    assert fmt_number(95_075.5) == "95,075.5"
    assert fmt_number(1e300) == "1e+300"  # a fat finger never prints 300 digits
    assert fmt_usdt(1_010_998.987) == "1,010,998.99" and fmt_usdt(-0.03, signed=True) == "-0.03"


def test_validation_messages_group_thousands() -> None:
    request = TradeRequest(
        "main", "BTCUSDT", Side.BUY, Approach.FAST, 1_000_000.0, 10.0, (None,), (101_000.0,), 97_000.0
    )
    errors = validate_request(request, BTC, 100_000.0, 10_000.0, P)
    assert "not enough available balance: need 1,005,500.00 USDT, have 10,000.00" in errors
    low = TradeRequest(
        "main", "BTCUSDT", Side.BUY, Approach.FAST, 100.0, 10.0, (None,), (101_000.0,), 100_500.0
    )
    assert "SL 100,500 is not beyond the entries on the loss side" in validate_request(
        low, BTC, 100_000.0, 1e4, P
    )


def _snapshot() -> Any:
    position = {"account": "main", "side": "Buy", "upnl": 1.0}
    return {
        "market": {
            "BTCUSDT": {"last": 95_085.3, "mark": 95_085.3, "tick_size": 0.1, "qty_step": 0.001},
            "TINYUSDT": {"last": 1.2, "mark": 1.2, "tick_size": 0.0001, "qty_step": 1.0},
        },
        "positions": [
            {**position, "symbol": "BTCUSDT", "size": 0.45, "entry_price": 95_085.3, "mark_price": 95_075.0},
            {**position, "symbol": "TINYUSDT", "size": 12_000.0, "entry_price": 1.2345, "mark_price": 1.2},
        ],
        "orders": [
            {
                "account": "main",
                "symbol": "BTCUSDT",
                "side": "Sell",
                "order_type": "Limit",
                "qty": 0.15,
                "price": 96_000.0,
                "trigger_price": None,
                "link_id": "opc-x-tp1",
                "purpose": "tp1",
                "status": "New",
            }
        ],
        "monitors": [],
    }


def test_prices_in_a_column_share_the_symbols_tick_decimals() -> None:
    rows = position_rows(_snapshot())
    btc = [cell.text for cell in rows["main:BTCUSDT:Buy"]]
    tiny = [cell.text for cell in rows["main:TINYUSDT:Buy"]]
    assert "95,085.3" in btc and "95,075.0" in btc and "0.450" in btc  # tick 0.1, qty step 0.001
    assert "1.2345" in tiny and "1.2000" in tiny and "12,000" in tiny  # tick 0.0001, qty step 1
    (order,) = order_rows(_snapshot()).values()
    assert [c.text for c in order][5:7] == ["0.150", "96,000.0"]


# --- item 4: a trader's words ------------------------------------------------------------------


def test_a_position_is_named_in_a_traders_words() -> None:
    snapshot = {
        "market": {"ETHUSDT": {"last": 3_000.0, "mark": 3_000.0, "tick_size": 0.01, "qty_step": 0.01}},
        "positions": [{"account": "main", "symbol": "ETHUSDT", "side": "Sell", "size": 0.45}],
    }
    words = position_words(snapshot, "main:ETHUSDT:Sell")
    assert f"Close {words} at market?" == "Close SELL 0.45 ETHUSDT on main at market?"
    assert position_words({}, "mirror:BTCUSDT:Buy") == "BUY BTCUSDT on mirror"  # no size known


def test_an_operator_facing_alert_names_the_position_and_keeps_the_key_for_machines() -> None:
    (alert,) = request_close(with_position(), "manual", BTC, P).alerts
    assert alert.message == "BUY 0.033 BTCUSDT on main: closing at market (manual)"
    assert alert.key == "main:BTCUSDT:Buy"
