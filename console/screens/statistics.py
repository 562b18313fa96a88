"""The statistics screen (``s``): the snapshot's ``statistics`` section for one account at a time.

The equity curve and the daily PnL as zero-axis charts (:class:`~console.widgets.zero_chart.ZeroChart`),
the account's figures, and its figures per approach and per symbol. ``1`` / ``2`` / ``3`` show main,
the mirror, or every account together (``tab`` goes round them); ``R`` resets the statistics after a
confirmation (a new period starts; the ledger keeps every trade). The screen follows the console's
snapshots: it repaints when a newer one arrives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label

from console.engine_link import EngineLink, Outcome
from console.screens.confirm import ConfirmScreen
from console.view_model import Cell, Row, fmt_money, fmt_pct, sign_tone, streak_text
from console.widgets.live_table import LiveTable
from console.widgets.zero_chart import ZeroChart
from engine.dashboard.statistics import ALL_ACCOUNTS, GroupStats, StatisticsSection

ACCOUNT_CHOICES = ("main", "mirror", ALL_ACCOUNTS)
"""The accounts the keys 1, 2, 3 show (one the snapshot does not have is skipped by ``tab``)."""
SUMMARY_COLUMNS = (("label1", "Figure"), ("value1", "Value"), ("label2", "Figure"), ("value2", "Value"))
GROUP_COLUMNS = (
    ("name", "Name"),
    ("trades", "Trades"),
    ("wl", "W/L"),
    ("win_rate", "Win %"),
    ("net", "Net PnL"),
    ("expectancy", "Exp."),
    ("pf", "PF"),
    ("drawdown", "Max DD"),
)
REFRESH_S = 0.5
"""How often the screen looks for a newer snapshot (it repaints only when there is one)."""


def hold_text(seconds: float | None) -> str:
    """``45s``, ``12m 30s``, ``3h 05m``, ``2d 04h`` — an average holding time, or an em dash."""
    if seconds is None:
        return "—"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60:02d}m"
    return f"{total // 86400}d {total % 86400 // 3600:02d}h"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def figure_lines(stats: GroupStats) -> list[tuple[str, str, str | None]]:
    """(label, value, tone) of every figure of one account, in reading order."""
    money = fmt_money
    drawdown = -stats["max_drawdown"] if stats["max_drawdown"] else 0.0
    win_rate = None if stats["win_rate"] is None else stats["win_rate"] * 100
    return [
        ("Trades", str(stats["trades"]), None),
        ("Wins / losses", f"{stats['wins']} / {stats['losses']}", None),
        ("Win rate", fmt_pct(win_rate), None),
        ("Net PnL", money(stats["net_pnl"], signed=True), sign_tone(stats["net_pnl"])),
        ("Gross PnL", money(stats["gross_pnl"], signed=True), sign_tone(stats["gross_pnl"])),
        ("Fees", money(stats["fees"]), None),
        ("Funding paid", money(stats["funding"]), None),
        ("Expectancy", money(stats["expectancy"], signed=True), sign_tone(stats["expectancy"])),
        ("Average win", money(stats["avg_win"], signed=True), sign_tone(stats["avg_win"])),
        ("Average loss", money(stats["avg_loss"], signed=True), sign_tone(stats["avg_loss"])),
        ("Profit factor", _ratio(stats["profit_factor"]), None),
        ("Best trade", money(stats["best"], signed=True), sign_tone(stats["best"])),
        ("Worst trade", money(stats["worst"], signed=True), sign_tone(stats["worst"])),
        ("Max drawdown", money(drawdown), sign_tone(drawdown)),
        ("Current streak", streak_text(stats["current_streak"]), sign_tone(stats["current_streak"])),
        ("Longest wins", str(stats["longest_win_streak"]), None),
        ("Longest losses", str(stats["longest_loss_streak"]), None),
        ("TP1/2/3/4 hit", " / ".join(str(n) for n in stats["tp_hits"]), None),
        ("SL exits", str(stats["sl_exits"]), None),
        ("Breakeven exits", str(stats["breakeven_exits"]), None),
        ("Avg holding", hold_text(stats["avg_hold_s"]), None),
    ]


def summary_rows(stats: GroupStats) -> dict[str, Row]:
    """The figures two by two (the first half down the left, the rest down the right)."""
    lines = figure_lines(stats)
    half = (len(lines) + 1) // 2
    rows: dict[str, Row] = {}
    for n in range(half):
        left = lines[n]
        right = lines[half + n] if half + n < len(lines) else ("", "", None)
        rows[left[0]] = (
            Cell(left[0]),
            Cell(left[1], left[2], right=True),
            Cell(right[0]),
            Cell(right[1], right[2], right=True),
        )
    return rows


def group_rows(groups: Mapping[str, GroupStats]) -> dict[str, Row]:
    """One row per approach or symbol."""
    rows: dict[str, Row] = {}
    for name, stats in groups.items():
        win_rate = None if stats["win_rate"] is None else stats["win_rate"] * 100
        drawdown = -stats["max_drawdown"] if stats["max_drawdown"] else 0.0
        rows[name] = (
            Cell(name),
            Cell(str(stats["trades"]), right=True),
            Cell(f"{stats['wins']}/{stats['losses']}", right=True),
            Cell(fmt_pct(win_rate), right=True),
            Cell(fmt_money(stats["net_pnl"], signed=True), sign_tone(stats["net_pnl"]), right=True),
            Cell(fmt_money(stats["expectancy"], signed=True), sign_tone(stats["expectancy"]), right=True),
            Cell(_ratio(stats["profit_factor"]), right=True),
            Cell(fmt_money(drawdown), sign_tone(drawdown), right=True),
        )
    return rows


def equity_caption(points: Sequence[Mapping[str, Any]], stats: GroupStats | None) -> str:
    """The equity chart's title: where the curve ends and how far it fell from a peak."""
    now = float(points[-1]["equity"]) if points else 0.0
    drawdown = stats["max_drawdown"] if stats else 0.0
    return f"Equity (USDT) {fmt_money(now, signed=True)} · max DD {fmt_money(drawdown)}"


def daily_caption(days: Sequence[Mapping[str, Any]]) -> str:
    """The daily chart's title: the best and the worst day."""
    if not days:
        return "Daily PnL (UTC) · no trade closed"
    pnls = [float(d["pnl"]) for d in days]
    return f"Daily PnL · best {fmt_money(max(pnls), signed=True)} · worst {fmt_money(min(pnls), signed=True)}"


def title_text(section: StatisticsSection | None, account: str) -> str:
    """The screen's title: the account shown and the period."""
    name = "All accounts" if account == ALL_ACCOUNTS else account.capitalize()
    if section is None:
        return f"Statistics · {name} · waiting for the engine"
    start = section.get("period_start")
    period = f"since {str(start)[:16].replace('T', ' ')} UTC" if start else "since the first trade"
    return f"Statistics · {name} · {period}"


class StatisticsScreen(ModalScreen[None]):
    """The statistics of one account at a time; see the module docstring for the keys."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "account('main')", "Show main"),
        Binding("2", "account('mirror')", "Show the mirror account"),
        Binding("3", "account('all')", "Show every account together"),
        Binding("tab", "next_account", "Next account"),
        Binding("R", "reset", "Reset the statistics: a new period starts (asks first; the ledger is kept)"),
        Binding("d", "daily_summary", "The daily summary now (also sent to Telegram / the webhook)"),
        Binding("escape,s", "close", "Close"),
    ]

    def __init__(
        self,
        link: EngineLink,
        snapshot: Callable[[], Mapping[str, Any] | None],
        perform: Callable[[Callable[[], Awaitable[Outcome]], str], None],
    ) -> None:
        """``snapshot``: the console's latest snapshot data (None before the first); ``perform``:
        the console's way to run an operator action (reported, then a new snapshot is built)."""
        super().__init__(classes="dialog")
        self._link = link
        self._snapshot = snapshot
        self._perform = perform
        self.account = "main"
        self._shown: tuple[Mapping[str, Any] | None, str] | None = None  # (snapshot, account) painted

    def compose(self) -> ComposeResult:
        with Vertical(id="stats-screen"):
            yield Label("Statistics", id="stats-title")
            with VerticalScroll(id="stats-body"):
                with Horizontal(id="stats-charts"):
                    with Vertical(classes="stats-chart"):
                        yield Label("", id="equity-caption", classes="chart-caption")
                        yield ZeroChart(sampled=True, id="equity-chart")
                    with Vertical(classes="stats-chart"):
                        yield Label("", id="daily-caption", classes="chart-caption")
                        yield ZeroChart(sampled=False, id="daily-chart")
                yield LiveTable(SUMMARY_COLUMNS, cursor=False, id="stats-summary")
                yield Label("By approach", classes="stats-heading")
                yield LiveTable(GROUP_COLUMNS, cursor=False, id="stats-approach")
                yield Label("By symbol", classes="stats-heading")
                yield LiveTable(GROUP_COLUMNS, cursor=False, id="stats-symbol")
            yield Label(
                "1 main · 2 mirror · 3 all · tab next · R reset · d summary · ↑↓ · esc", id="stats-hint"
            )

    def on_mount(self) -> None:
        self.show()
        self.query_one("#stats-body").focus()
        self.set_interval(REFRESH_S, self.show, name="statistics-refresh")

    def section(self) -> StatisticsSection | None:
        """The latest snapshot's ``statistics`` section (None before the first snapshot)."""
        data = self._snapshot()
        section = data.get("statistics") if data is not None else None
        # the snapshot's data is read untyped here (the console keeps the frozen mapping it got)
        return cast(StatisticsSection, section) if isinstance(section, Mapping) else None

    def accounts(self) -> list[str]:
        """The accounts the latest snapshot has figures for, in the keys' order."""
        section = self.section()
        names = section["by_account"] if section is not None else {}
        return [name for name in ACCOUNT_CHOICES if name in names] or ["main"]

    def show(self, force: bool = False) -> None:
        """Paint the chosen account's figures from the latest snapshot, when it or the account changed."""
        data = self._snapshot()
        if (
            not force
            and self._shown is not None
            and self._shown[0] is data
            and self._shown[1] == self.account
        ):
            return
        marker = (data, self.account)
        self._shown = marker
        section = self.section()
        account = self.account
        self.query_one("#stats-title", Label).update(title_text(section, account))
        stats = section["by_account"].get(account) if section is not None else None
        points = section["equity_curve"].get(account, ()) if section is not None else ()
        days = section["daily_pnl"].get(account, ()) if section is not None else ()
        # the curve starts at 0, the period start: a first trade that lost shows as a fall
        self.query_one("#equity-chart", ZeroChart).plot([0.0, *(float(p["equity"]) for p in points)])
        self.query_one("#daily-chart", ZeroChart).plot([float(d["pnl"]) for d in days])
        self.query_one("#equity-caption", Label).update(equity_caption(points, stats))
        self.query_one("#daily-caption", Label).update(daily_caption(days))
        with self.app.batch_update():
            self.query_one("#stats-summary", LiveTable).sync(summary_rows(stats) if stats else {})
            approach = section["by_approach"].get(account, {}) if section is not None else {}
            symbol = section["by_symbol"].get(account, {}) if section is not None else {}
            self.query_one("#stats-approach", LiveTable).sync(group_rows(approach))
            self.query_one("#stats-symbol", LiveTable).sync(group_rows(symbol))

    def action_account(self, account: str) -> None:
        if account not in self.accounts():
            self.notify(f"No {account} account in this engine.", severity="warning")
            return
        self.account = account
        self.show()

    def action_next_account(self) -> None:
        names = self.accounts()
        position = names.index(self.account) if self.account in names else -1
        self.account = names[(position + 1) % len(names)]
        self.show()

    def action_reset(self) -> None:
        def confirmed(yes: bool | None) -> None:
            if yes:
                self._perform(self._link.reset_statistics, "reset-statistics")

        self.app.push_screen(
            ConfirmScreen(
                "Reset statistics",
                "Start a new statistics period now? The figures start again from zero; "
                "the ledger keeps every trade (export-trades).",
            ),
            confirmed,
        )

    def action_daily_summary(self) -> None:
        self._perform(self._link.daily_summary, "daily-summary")

    def action_close(self) -> None:
        self.dismiss(None)
