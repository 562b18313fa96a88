"""Pilot tests of the statistics screen (``s``): it opens, switches account, shows that account's
figures, and resets the statistics only after a confirmation. Also the zero-axis chart (pure)."""

from __future__ import annotations

from pathlib import Path

from test_console_support import make_console, settle

from console.app import OperatorConsole
from console.screens.confirm import ConfirmScreen
from console.screens.statistics import StatisticsScreen
from console.view_model import NEGATIVE, POSITIVE
from console.widgets.live_table import LiveTable
from console.widgets.zero_chart import AXIS, chart_cells, fit
from engine.core.models import Side, Trade
from engine.core.state_keys import STATS_PERIOD_KEY


async def _with_trades(app: OperatorConsole) -> None:
    """Two main trades (+12.5, -4.25) and one mirror trade (+3.75), closed before the frozen clock."""
    manager = app.runtime.tpsl
    assert manager is not None and app.runtime.dashboard is not None
    now = app.runtime.clock.now()
    for account, symbol, pnl, ago in (
        ("main", "BTCUSDT", 12.5, 300),
        ("mirror", "BTCUSDT", 3.75, 290),
        ("main", "ETHUSDT", -4.25, 200),
    ):
        manager.ledger.record(
            Trade(
                account,
                symbol,
                Side.BUY,
                "fast",
                "tp" if pnl > 0 else "sl",
                100.0,
                101.0,
                1.0,
                pnl,
                0.5,
                now - ago - 600,
                now - ago,
                tps_hit=1 if pnl > 0 else 0,
                monitor_id=account + symbol,
            )
        )
    app.runtime.dashboard.cache.invalidate("stats")
    await app.refresh_dashboard()


def figure(screen: StatisticsScreen, label: str) -> str:
    """The value shown beside ``label`` in the summary table."""
    table = screen.query_one("#stats-summary", LiveTable)
    for key in table.row_keys:
        row = table.get_row(key)
        for n in (0, 2):
            if str(row[n]) == label:
                return str(row[n + 1])
    raise AssertionError(f"no {label!r} in the summary")


async def test_the_screen_shows_the_chosen_accounts_figures(tmp_path: Path) -> None:
    app = make_console(tmp_path, **{"sim.demo_trades": 0})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await _with_trades(app)
        await pilot.press("s")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, StatisticsScreen)
        assert "Main" in str(screen.query_one("#stats-title").content)
        assert (figure(screen, "Trades"), figure(screen, "Wins / losses")) == ("2", "1 / 1")
        assert figure(screen, "Net PnL") == "+8.25"  # 12.5 - 4.25
        assert figure(screen, "Win rate") == "50.0%"
        assert screen.query_one("#stats-symbol", LiveTable).row_keys == ["BTCUSDT", "ETHUSDT"]

        await pilot.press("2")
        await pilot.pause()
        assert "Mirror" in str(screen.query_one("#stats-title").content)
        assert (figure(screen, "Trades"), figure(screen, "Net PnL")) == ("1", "+3.75")
        assert screen.query_one("#stats-symbol", LiveTable).row_keys == ["BTCUSDT"]

        await pilot.press("3")
        await pilot.pause()
        assert "All accounts" in str(screen.query_one("#stats-title").content)
        assert (figure(screen, "Trades"), figure(screen, "Net PnL")) == ("3", "+12.00")

        await pilot.press("tab")  # round to main again
        await pilot.pause()
        assert figure(screen, "Trades") == "2"

        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, StatisticsScreen)


async def test_reset_asks_first_and_then_starts_a_new_period(tmp_path: Path) -> None:
    app = make_console(tmp_path, **{"sim.demo_trades": 0})
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        await _with_trades(app)
        await pilot.press("s")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, StatisticsScreen)
        store = app.runtime.store
        assert store is not None

        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # no: nothing changes
        await pilot.pause()
        assert app.screen is screen and STATS_PERIOD_KEY not in store.state
        assert figure(screen, "Trades") == "2"

        await pilot.press("R")
        await pilot.pause()
        await pilot.press("y")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is screen
        assert store.state[STATS_PERIOD_KEY] == {"start": app.runtime.clock.now()}
        screen.show()
        assert figure(screen, "Trades") == "0"
        assert "since 2026-01-01 00:00 UTC" in str(screen.query_one("#stats-title").content)
        assert app.latest is not None and app.latest["ledger"]["totals"]["count"] == 3  # the ledger is kept


def test_the_chart_starts_at_zero_and_shows_the_sign() -> None:
    # 4 rows: 1 above (largest gain 2) ... 2 below (largest loss 4): 3 rows split 1 : 2, then the axis
    cells = chart_cells([2.0, -4.0, 1.0, 0.0], 4)
    assert [c for c, _ in cells[1]] == [AXIS] * 4  # the axis row, under one row of gains
    assert cells[0][0] == ("█", POSITIVE) and cells[0][2] == ("▄", POSITIVE)  # 1 of 2: half a row
    assert cells[2][1] == ("█", NEGATIVE) and cells[3][1] == ("█", NEGATIVE)
    assert cells[0][1][0] == " " and cells[2][0][0] == " "
    # only gains: the axis at the bottom, so a rising curve is not drawn from its own minimum
    rising = chart_cells([1.0, 2.0], 3)
    assert [c for c, _ in rising[2]] == [AXIS, AXIS]
    assert rising[1][0] == ("█", POSITIVE) and rising[0][0][0] == " " and rising[0][1] == ("█", POSITIVE)
    # only losses: the axis at the top
    falling = chart_cells([-1.0], 3)
    assert falling[0][0][0] == AXIS and falling[1][0] == ("█", NEGATIVE)
    assert fit([1.0, 2.0, 3.0, 4.0], 2, sampled=True) == [2.0, 4.0]
    assert fit([1.0, 2.0, 3.0, 4.0], 2, sampled=False) == [3.0, 4.0]


async def test_d_on_the_statistics_screen_raises_the_daily_summary_now(tmp_path: Path) -> None:
    app = make_console(tmp_path, **{"sim.demo_trades": 0})
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await _with_trades(app)
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("d")
        await app.workers.wait_for_complete()
        await pilot.pause()
        engine = app.runtime.started()
        (summary,) = [a for a in engine.alerts.snapshot(50) if a["type"] == "daily_summary"]
        assert summary["key"] == "on_demand" and "open risk" in summary["message"].lower()
        toasts = [n.message for n in app._notifications]
        assert any(summary["message"] in text or text in summary["message"] for text in toasts)
