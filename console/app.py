"""The Textual operator console: the engine embedded as workers, a dashboard, and every control on a key.

Shape (after Harlequin and Dolphie): the engine is a headless core that never imports Textual; the app
starts it on a thread and event loop of its own (:mod:`console.engine_host`), so no frame, however
slow, stands between an execution and the order it calls for. The app reads the engine only through
:class:`~console.engine_link.EngineLink` (never a venue), which hands work to the engine's loop and
brings back immutable answers, and renders the DashboardSnapshot with widgets that repaint only the
cells that changed. One
refresh runs at a time: the loop awaits a refresh before it sleeps, and a refresh asked for while one
is running is skipped, never queued behind it. Log records reach the log pane through a queue drained
once per tick.

:func:`run_console` is what the bare ``opconsole`` command runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.theme import Theme
from textual.widgets import Tab, Tabs

from console.engine_host import make_host
from console.engine_link import EngineLink, Outcome
from console.logging_queue import QueueLogHandler, attach, detach
from console.refresh_gate import RefreshGate, pause_after
from console.screens.confirm import ConfirmScreen
from console.screens.help import HelpScreen
from console.screens.pause import PauseScreen
from console.screens.price_alerts import PriceAlertsScreen
from console.screens.rollback import RollbackScreen
from console.screens.statistics import StatisticsScreen
from console.screens.trade_form import TradeFormScreen
from console.screens.ttl import TtlScreen
from console.terminal import ConsoleDriver, TerminalLost
from console.textual_cycles import break_textual_cycles
from console.view_model import (
    ACCOUNT_COLUMNS,
    ORDER_COLUMNS,
    POSITION_COLUMNS,
    AlertNotices,
    RateTracker,
    account_rows,
    api_budget_per_minute,
    api_text,
    events_tab_label,
    mirror_header,
    mirror_view,
    order_source,
    position_source,
    position_words,
    stats_view,
    total_api_calls,
)
from console.widgets.alerts_pane import AlertsPane
from console.widgets.cache_panel import CachePanel
from console.widgets.key_footer import KeyFooter
from console.widgets.live_table import LiveTable, TableStack
from console.widgets.log_pane import LogPane
from console.widgets.stats_panel import StatsPanel
from console.widgets.status_bar import HeaderValues, StatusBar
from engine.alerts.model import AlertRow
from engine.core.clock import Clock, RealClock, parse_iso_utc
from engine.core.errors import BadInput
from engine.core.settings import Settings
from engine.dashboard.snapshot import DashboardSnapshot
from engine.runtime.assembly import EngineNotStarted, EngineRuntime, check_state_free
from themes import ALL_THEMES, CONSOLE_VARIABLES, DEFAULT_THEME, next_theme

log = logging.getLogger("opconsole.console")

COMPACT_WIDTH = 120
COMPACT_HEIGHT = 36
SECTIONS = ("trading", "metrics", "events")
SECTION_FOCUS = {"trading": "#positions", "metrics": "#metrics", "events": "#log"}  # focus per tab
# Keys of the main screen; a modal screen on top owns the keyboard except for help, theme and quit.
MAIN_SCREEN_ACTIONS = frozenset(
    {
        "flush",
        "ttl",
        "rollback",
        "new_trade",
        "close_position",
        "breakeven",
        "cancel_orders",
        "kill",
        "pause",
        "pause_accounts",
        "alerts",
        "statistics",
        "log",
        "filter_log",
    }
)
SECTION_ACTIONS = ("section", "section_at")  # the compact layout's tab keys: `[`, `]`, 1, 2, 3
TERMINAL_LOST = "terminal lost"  # the shutdown reason when the driver could not read the terminal


def exit_message(open_positions: int) -> str:
    """What the terminal shows after quitting: the store is flushed and the positions stay protected."""
    if open_positions:
        return (
            f"opconsole stopped; store flushed. {open_positions} open position"
            f"{'s stay' if open_positions != 1 else ' stays'} protected by exchange-side stop-losses."
        )
    return "opconsole stopped; store flushed. No open positions."


class QuitQuestion(ConfirmScreen):
    """The question ``q`` asks with positions open (``ui.confirm_quit``); asked once at a time."""


class OperatorConsole(App[int]):
    """The operator console over one :class:`~engine.runtime.assembly.EngineRuntime`.

    ``clock`` and ``runtime`` can be injected (tests use a frozen virtual clock so snapshots are
    stable); ``auto_refresh=False`` leaves refreshing to the caller (:meth:`refresh_dashboard`);
    ``handle_signals`` installs the SIGHUP/SIGTERM handlers (the real console does, tests do not);
    ``engine_thread`` (default: the ``ui.engine_thread`` setting) runs the engine on its own thread
    and loop, False on the app's loop (tests that drive a frozen virtual clock themselves).
    """

    CSS_PATH = "console.tcss"
    TITLE = "opconsole"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "flush", "Flush", tooltip="Flush persistence now and show what was written"),
        Binding("t", "ttl", "TTLs", tooltip="Tune the cache TTLs (live, saved to the override file)"),
        Binding("r", "rollback", "Rollback", tooltip="Rollback panel: optimized vs baseline toggles"),
        Binding("n", "new_trade", "Trade", tooltip="Open a new trade (form with validation)"),
        Binding("c", "close_position", "Close", tooltip="Close the selected position at market (confirm)"),
        Binding("e", "breakeven", "BE", tooltip="Move the selected position's stop-loss to breakeven"),
        Binding("x", "cancel_orders", "Cancel", tooltip="Cancel the selected position's monitor orders"),
        Binding("k", "kill", "Kill", tooltip="Kill switch: cancel everything, close every position"),
        Binding("p", "pause", "Pause", tooltip="Pause / resume new entries (protection keeps running)"),
        Binding(
            "P",
            "pause_accounts",
            "Acct…",  # 7 cells: the compact footer's nine columns fill the 80 columns exactly
            tooltip="Pause / resume new entries per account: main, mirror or both (shows each one's state)",
        ),
        Binding("a", "alerts", "Alerts", tooltip="Price alerts: list, add, delete"),
        Binding("s", "statistics", "Stats", tooltip="Statistics: equity curve, daily PnL, figures"),
        Binding("l", "log", "Log", tooltip="Focus and enlarge the log pane (again: restore)"),
        Binding("slash", "filter_log", "Filter", key_display="/", tooltip="Filter the log pane"),
        Binding("ctrl+t", "next_theme", "Theme", tooltip="Switch to the next console theme"),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="Help: every key"),
        Binding("q", "quit", "Quit", tooltip="Quit: flush the store; positions keep their stop-losses"),
        # Compact layout only (check_action hides them otherwise); the pause and statistics screens'
        # own 1/2/3 win there, as those screens are modal and the main screen's keys are off under them.
        # "Prev" / "Next" (right under the tab bar): short enough for the compact footer's columns
        Binding("left_square_bracket", "section(-1)", "Prev", tooltip="Compact layout: the previous tab"),
        Binding("right_square_bracket", "section(1)", "Next", tooltip="Compact layout: the next tab"),
        Binding("1", "section_at(0)", "Trading", show=False, tooltip="Compact layout: the Trading tab"),
        Binding("2", "section_at(1)", "Metrics", show=False, tooltip="Compact layout: the Metrics tab"),
        Binding("3", "section_at(2)", "Alerts", show=False, tooltip="Compact layout: the Alerts + log tab"),
    ]

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        *,
        clock: Clock | None = None,
        runtime: EngineRuntime | None = None,
        auto_refresh: bool = True,
        handle_signals: bool = False,
        engine_thread: bool | None = None,
    ) -> None:
        break_textual_cycles()  # what Textual drops is freed at once (see console.textual_cycles)
        super().__init__()
        self.settings = settings
        self.state_dir = state_dir
        self.runtime = runtime or EngineRuntime(settings, state_dir, clock or RealClock())
        separate = bool(settings.get("ui.engine_thread")) if engine_thread is None else engine_thread
        self.link = EngineLink(self.runtime, make_host(separate))
        self.latest: DashboardSnapshot | None = None
        self.refreshes = 0
        self.skipped_refreshes = 0
        self.quiet_periods = 0  # refresh periods skipped because the engine's data had not changed
        self._gate = RefreshGate()
        self.engine_ready = asyncio.Event()
        self._self_refresh = auto_refresh
        self._handle_signals = handle_signals
        self._period_s = 1.0 / float(settings.get("ui.refresh_hz"))
        self._log_handler = QueueLogHandler(self.runtime.clock.now)
        self._log_pane: LogPane | None = None  # where drain_log writes, found once
        self._refreshing = False
        self._stopping = False
        self._engine_stopped = False
        self._engine_start: asyncio.Task[None] | None = None
        self._engine_stop: asyncio.Task[None] | None = None
        self._last_error: str | None = None
        self._api_rate = RateTracker()
        self._shown_state: str | None = None
        # which alerts were toasted, and how many arrived out of sight
        self.notices = AlertNotices(float(settings.get("alerts.cooldown_s")))
        self._bell = bool(settings.get("ui.bell_on_critical"))
        self._saved_theme: str | None = None
        self.exit_text = ""  # what the terminal shows after the console exits
        self.bad_input: BadInput | None = None  # why the engine refused to start, if it did
        for theme in ALL_THEMES:
            self.register_theme(theme)

    # --- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(stale_after_s=float(self.settings.get("ui.stale_after_s")), id="status")
        yield Tabs(
            Tab("Trading", id="tab-trading"),
            Tab("Metrics", id="tab-metrics"),
            Tab("Alerts + log", id="tab-events"),
            id="sections",
        )
        with Grid(id="body", classes="-show-trading"):
            with TableStack(id="trading"):
                accounts = LiveTable(ACCOUNT_COLUMNS, cursor=False, id="accounts")
                accounts.border_title = "Accounts"
                yield accounts
                positions = LiveTable(POSITION_COLUMNS, id="positions")
                positions.border_title = "Positions"
                yield positions
                orders = LiveTable(ORDER_COLUMNS, id="orders")
                orders.border_title = "Orders"
                yield orders
            # scrolls when the compact layout's one tab cannot show the stats and every cache row
            with VerticalScroll(id="metrics"):
                yield StatsPanel(id="stats")
                yield CachePanel(id="cache")
            with Horizontal(id="events"):
                yield AlertsPane(id="alerts")
                yield LogPane(int(self.settings.get("ui.log_max_lines")), id="logpane")
        yield KeyFooter(id="footer", compact=True)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(CONSOLE_VARIABLES)

    # --- life cycle ---------------------------------------------------------------------------

    def on_mount(self) -> None:
        wanted = str(self.settings.get("ui.theme"))
        if wanted not in self.available_themes:
            log.warning("ui.theme %r is not a known theme; using %s", wanted, DEFAULT_THEME)
            wanted = DEFAULT_THEME
        self.theme = wanted
        self._saved_theme = wanted
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        attach(self._log_handler)
        self._apply_size(self.size.width, self.size.height)
        self.query_one("#positions", LiveTable).focus()
        if self._handle_signals:
            self._install_signal_handlers()
        if not self._self_refresh:  # else the refresh loop drains the log, in the same frame
            self.set_interval(self._period_s, self.drain_log, name="log-drain")
        # A task of the app's, not a Textual worker: Textual cancels its workers when the app exits,
        # and a start cancelled half-way leaves the store open; a stop waits for the start instead.
        self._engine_start = asyncio.create_task(self._start_engine(), name="engine-start")
        if self._self_refresh:
            self.run_worker(self._refresh_loop(), name="refresh", group="refresh", exclusive=True)

    async def _start_engine(self) -> None:
        try:
            await self.link.start()
            log.info("engine started on %s", self.runtime.venue_label)
        except BadInput as exc:
            # e.g. the state directory was locked between the check in run_console and now: the
            # console refuses like the command line does, it does not linger on a dead engine
            self.bad_input = exc
            self.exit(2)
        except Exception as exc:
            log.critical("the engine could not start: %s", exc, exc_info=exc)
            self.notify(f"The engine could not start: {exc}", severity="error", timeout=15)
        finally:
            self.engine_ready.set()

    async def _refresh_loop(self) -> None:
        """Refresh, then sleep what is left of the period: refreshes never overlap (Dolphie's way).

        A period whose data did not change is skipped (:class:`~console.refresh_gate.RefreshGate`),
        except once a second for the clock. The first refresh runs as soon as the engine started
        (or failed to)."""
        await self.engine_ready.wait()
        while not self._stopping:
            started = time.monotonic()
            mark = self.link.changes()
            if self._gate.due(mark, started):
                self._gate.refreshed(mark, started)
                await self.refresh_dashboard(routine=True)
            else:
                self.quiet_periods += 1
            self.drain_log()  # with the paint: one frame for both
            await asyncio.sleep(pause_after(self._period_s, time.monotonic() - started))

    async def on_unmount(self) -> None:
        detach(self._log_handler)
        await self._stop_engine()
        # Only now: without its handler a SIGHUP or SIGTERM would kill the process mid-stop.
        self._remove_signal_handlers()

    # --- refresh ------------------------------------------------------------------------------

    async def refresh_dashboard(self, *, routine: bool = False) -> bool:
        """Build one snapshot and paint it; False when skipped (one is running) or it failed.
        ``routine``: the refresh loop's, which repaints the cache-efficiency panel only every
        :data:`~console.refresh_gate.METRICS_PERIOD_S` (an action's refresh always does)."""
        if self._refreshing:
            self.skipped_refreshes += 1
            return False
        self._refreshing = True
        try:
            try:
                view = await self.link.view()
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if problem != self._last_error:  # once per distinct problem, not twice a second
                    log.error("dashboard refresh failed: %s", problem)
                    self._last_error = problem
                return False
            self._last_error = None
            self.latest = view.snapshot
            metrics = not routine or self._gate.metrics_due(time.monotonic())
            self.paint(view.snapshot, view.engine_state, view.paused, metrics=metrics)
            self.refreshes += 1
            return True
        finally:
            self._refreshing = False

    def paint(
        self,
        snapshot: DashboardSnapshot,
        engine_state: str | None = None,
        paused: Collection[str] | None = None,
        *,
        metrics: bool = True,
    ) -> None:
        """Show a snapshot: every widget updates only what changed, in one batch. The engine state
        and the paused accounts come with the snapshot (an :class:`~console.engine_link.EngineView`);
        they are read now when not given. ``metrics``: repaint the cache-efficiency panel too."""
        data = snapshot.data
        if engine_state is None:
            engine_state = self.link.engine_state()
        if paused is None:
            paused = [name for name, flag in self.link.paused_accounts().items() if flag]
        now = parse_iso_utc(data["time"])
        calls = total_api_calls(data.get("api_calls", {}))
        self._api_rate.add(now, calls)
        per_min = self._api_rate.per_minute()
        budget = api_budget_per_minute(len(data.get("accounts", {})) or 1)
        api = api_text(per_min, budget)
        state = engine_state
        with self.batch_update():
            self.query_one(StatusBar).show(
                HeaderValues(
                    venue=str(data.get("venue", "sim")),
                    engine_state=state,
                    profile=dict(data.get("profile", {})),
                    streams=streams_text(data),
                    api_per_min=per_min,
                    api_budget_per_min=budget,
                    time=data["time"],
                    data_age_s=data.get("data_age", {}).get("oldest"),
                    mirror=mirror_header(mirror_view(data)),
                )
            )
            self.query_one("#accounts", LiveTable).sync(account_rows(data, paused))
            self.query_one("#positions", LiveTable).sync(position_source(data))
            self.query_one("#orders", LiveTable).sync(order_source(data))
            self.query_one(StatsPanel).show(stats_view(data))
            if metrics:
                api_line = f"API calls: {calls:,} total · {api.removeprefix('API ')}"
                self.query_one(CachePanel).show(data, api_line)
            self.query_one(AlertsPane).show(data.get("alerts", ()))
            self._notice(data.get("alerts", ()))
        if state != self._shown_state:
            self._shown_state = state
            self.refresh_bindings()  # the footer's Pause entry follows the engine state

    def _alerts_in_sight(self) -> bool:
        return not self.screen.has_class("-compact") or self.query_one("#body").has_class("-show-events")

    def _notice(self, alerts: Iterable[AlertRow]) -> None:
        """Every new warning and critical alert is a toast (critical ones ring the bell when
        ``ui.bell_on_critical``); the alerts tab counts what arrived out of sight."""
        for notice in self.notices.take(alerts, in_sight=self._alerts_in_sight()):
            self.notify(notice.text, severity=notice.severity, timeout=notice.timeout)  # type: ignore[arg-type]
            if notice.critical and self._bell:
                self.bell()
        self._label_events_tab(self.notices.unseen)

    def _label_events_tab(self, unseen: int) -> None:
        # relabelling a tab, even to the same text, costs the whole screen a layout pass
        tab = self.query_one("#tab-events", Tab)
        label = events_tab_label(unseen)
        if tab.label_text != label:
            tab.label = label

    def drain_log(self) -> None:
        """Move queued log lines into the log pane: one write per tick."""
        pane = self._log_pane
        if pane is None or not pane.accepting:
            # looked up again only when gone: a query walks the whole DOM, and at two ticks a
            # second that walk cost more than the rest of an idle tick
            pane = self._log_pane = next(iter(self.query(LogPane)), None)
            if pane is None or not pane.accepting:
                return  # the screen is being torn down (a timer can still fire then): the lines wait
        lines = self._log_handler.drain()
        if lines:
            pane.append(lines)

    # --- layout switching ---------------------------------------------------------------------

    def on_resize(self, event: Any) -> None:
        self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int, height: int) -> None:
        compact = width < COMPACT_WIDTH or height < COMPACT_HEIGHT
        if compact != self.screen.has_class("-compact"):
            self.screen.set_class(compact, "-compact")
            self.refresh_bindings()  # `[` and `]` exist in the compact layout only

    @on(Tabs.TabActivated, "#sections")
    def _section_chosen(self, event: Tabs.TabActivated) -> None:
        if event.tab.id:
            self.show_section(event.tab.id.removeprefix("tab-"))

    def show_section(self, name: str) -> None:
        """Which section the compact layout shows (the wide layout shows them all)."""
        body = self.query_one("#body")
        for section in SECTIONS:
            body.set_class(section == name, f"-show-{section}")
        tabs = self.query_one("#sections", Tabs)
        if tabs.active != f"tab-{name}":
            tabs.active = f"tab-{name}"
        if name == "events":
            self.notices.seen_all()
            self._label_events_tab(0)
        focused, shown = self.focused, self.query_one(f"#{name}")
        hidden = focused is None or (focused is not tabs and shown not in focused.ancestors_with_self)
        if self.screen.has_class("-compact") and hidden:
            # the keyboard follows the tab: a table on a hidden tab would take the arrows unseen
            self.query_one(SECTION_FOCUS[name]).focus()

    def action_section(self, step: int) -> None:
        """The previous (-1) or next (+1) tab of the compact layout, wrapping round."""
        active = self.query_one("#sections", Tabs).active or "tab-trading"
        index = SECTIONS.index(active.removeprefix("tab-"))
        self.show_section(SECTIONS[(index + step) % len(SECTIONS)])

    def action_section_at(self, index: int) -> None:
        """Tab number ``index`` (0-based) of the compact layout."""
        self.show_section(SECTIONS[index])

    # --- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Nothing is dimmed by the engine state: closing and the kill switch reduce risk, so they work
        # while paused (pausing stops new entries only) and while reconciling (the engine queues the
        # close behind the reconciliation pass on the account's lock and decides it on the reconciled
        # monitor; a reduce-only market close cannot open exposure). Before the engine has started,
        # the action says so (EngineNotStarted) rather than doing nothing.
        if action in MAIN_SCREEN_ACTIONS and isinstance(self.screen, ModalScreen):
            return False
        if action in SECTION_ACTIONS:
            # the wide layout shows every section: no tabs to switch, so `[` and `]` are not offered;
            # under a modal screen its own keys (the pause and statistics screens' 1/2/3) win
            return self.screen.has_class("-compact") and not isinstance(self.screen, ModalScreen)
        return True

    def report(self, outcome: Outcome) -> None:
        """Every action's outcome: a toast and one log line (the subsystem's own, when it wrote one)."""
        if outcome.ok:
            if not outcome.logged:
                log.info("action: %s", outcome.message)
            self.notify(outcome.message, timeout=6)
        else:
            log.warning("action failed: %s", outcome.message)
            self.notify(outcome.message, severity="error", timeout=10)

    async def _perform(self, action: Callable[[], Awaitable[Outcome]]) -> None:
        try:
            outcome = await action()
        except EngineNotStarted as exc:
            outcome = Outcome(False, str(exc))
        except Exception as exc:  # an engine error must reach the operator, not kill the app
            log.exception("action failed")
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        self.report(outcome)
        await self.refresh_dashboard()

    def _in_background(self, action: Callable[[], Awaitable[Outcome]], name: str) -> None:
        self.run_worker(self._perform(action), name=name, group="actions", exit_on_error=False)

    def action_flush(self) -> None:
        self._in_background(self.link.flush, "flush")

    def action_ttl(self) -> None:
        profile = self.link.profile_states()["cache_ttls"]
        if profile not in ("optimized", "baseline"):
            profile = str(self.settings.get("profile.cache_ttls"))
        ttls = self.link.live_ttls() or {
            name: float(seconds) for name, seconds in self.settings.section(f"cache.ttl.{profile}").items()
        }
        self.push_screen(TtlScreen(self.link, ttls, profile, self.report))

    def action_rollback(self) -> None:
        self.push_screen(
            RollbackScreen(
                self.link,
                states=self.link.profile_states,
                report=self.report,
                after_change=self._refresh_quietly,
            )
        )

    async def _refresh_quietly(self) -> None:
        await self.refresh_dashboard()

    def action_new_trade(self) -> None:
        symbols = list(self.settings.get("sim.symbols"))
        if self.latest is not None:
            symbols = sorted({*symbols, *self.latest["market"].keys()})
        self.push_screen(
            TradeFormScreen(
                self.link,
                symbols=symbols,
                accounts=["main"],
                defaults={
                    "approach": self.settings.get("trading.default_approach"),
                    "leverage": self.settings.get("trading.default_leverage"),
                    "margin": 100,
                },
                context=lambda: None if self.latest is None else self.latest.data,
                report=self.report,
            )
        )

    def _selected_position(self) -> str | None:
        key = self.query_one("#positions", LiveTable).selected_key
        if key is None:
            self.notify("Select a position in the positions table first.", severity="warning")
        return key

    def action_close_position(self) -> None:
        key = self._selected_position()
        if key is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._in_background(lambda: self.link.close_position(key), "close")

        words = position_words(self._latest_data(), key)
        prompt = f"Close {words} at market (reduce-only)?"
        self.push_screen(ConfirmScreen("Close position", prompt), confirmed)

    def _latest_data(self) -> Mapping[str, Any]:
        return {} if self.latest is None else self.latest.data

    def action_breakeven(self) -> None:
        key = self._selected_position()
        if key is not None:
            self._in_background(lambda: self.link.move_to_breakeven(key), "breakeven")

    def action_cancel_orders(self) -> None:
        key = self._selected_position()
        if key is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._in_background(lambda: self.link.cancel_monitor_orders(key), "cancel")

        words = position_words(self._latest_data(), key)
        prompt = f"Cancel the entries and TPs of {words}? The stop-loss stays."
        self.push_screen(ConfirmScreen("Cancel orders", prompt), confirmed)

    def action_kill(self) -> None:
        count = len(self.latest["positions"]) if self.latest is not None else 0

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._in_background(self.link.kill_switch, "kill")

        # y confirms (no typed word): the kill switch reduces risk and must be quick to reach under
        # stress; the dialog says exactly what it does and that p resumes afterwards.
        self.push_screen(
            ConfirmScreen(
                "KILL SWITCH",
                f"Pause new entries, cancel every order and close all {count} open position(s) at "
                "market (reduce-only), on every account? Afterwards p resumes new entries.",
            ),
            confirmed,
        )

    def action_pause(self) -> None:
        paused = self.link.is_paused()
        self._in_background(lambda: self.link.set_paused(not paused), "pause")

    def action_pause_accounts(self) -> None:
        self.push_screen(PauseScreen(self.link, self.report, after_change=self._refresh_quietly))

    def action_alerts(self) -> None:
        self.push_screen(PriceAlertsScreen(self.link, self.report), lambda _: self._refresh_after_alerts())

    def action_statistics(self) -> None:
        self.push_screen(
            StatisticsScreen(
                self.link, lambda: None if self.latest is None else self.latest.data, self._in_background
            )
        )

    def _refresh_after_alerts(self) -> None:
        self.run_worker(self.refresh_dashboard(), name="refresh-after-alerts", exit_on_error=False)

    def action_log(self) -> None:
        pane = self.query_one(LogPane)
        if self.screen.maximized is not None:
            self.screen.minimize()
            self.query_one("#positions", LiveTable).focus()
            return
        self.show_section("events")
        pane.log_widget.focus()
        self.screen.maximize(pane, container=False)

    def action_filter_log(self) -> None:
        self.show_section("events")
        self.query_one(LogPane).open_filter()

    def action_next_theme(self) -> None:
        self.theme = next_theme(self.theme)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        sections = [
            ("Main screen", [b for b in _bindings(self.BINDINGS)]),
            ("Rollback panel (r)", list(_bindings(RollbackScreen.BINDINGS))),
            ("Pause per account (P)", list(_bindings(PauseScreen.BINDINGS))),
            ("TTL screen (t)", list(_bindings(TtlScreen.BINDINGS))),
            ("Trade form (n)", list(_bindings(TradeFormScreen.BINDINGS))),
            ("Price alerts (a)", list(_bindings(PriceAlertsScreen.BINDINGS))),
            ("Statistics (s)", list(_bindings(StatisticsScreen.BINDINGS))),
            ("Anywhere", [Binding("ctrl+p", "command_palette", "Command palette: every action by name")]),
        ]
        self.push_screen(HelpScreen(sections))

    async def action_quit(self) -> None:
        open_positions = len(self.latest["positions"]) if self.latest is not None else 0
        if not open_positions or not bool(self.settings.get("ui.confirm_quit")):
            await self.shutdown("quit")
            return
        if isinstance(self.screen, QuitQuestion):
            return  # asked once: the question is on screen already

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._request_shutdown("quit")

        self.push_screen(QuitQuestion("Quit", quit_question(open_positions)), confirmed)

    # --- command palette ----------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Every key's action, by name, plus Textual's own (theme picker, keys panel …)."""
        for binding in _bindings(self.BINDINGS):
            if binding.action == "quit":
                continue  # Textual's own "Quit" entry below runs the same action
            yield SystemCommand(
                f"{binding.description} ({self.get_key_display(binding)})",
                binding.tooltip or binding.description,
                _runner(self, binding.action),
            )
        yield from super().get_system_commands(screen)

    # --- theme --------------------------------------------------------------------------------

    def _theme_changed(self, theme: Theme) -> None:
        for table in self.query(LiveTable):
            table.repaint()
        if theme.name == self._saved_theme:
            return
        self._saved_theme = theme.name
        outcome = self.link.remember({"ui.theme": theme.name})
        if not outcome.ok:
            log.warning("could not remember the theme: %s", outcome.message)

    # --- shutdown -----------------------------------------------------------------------------

    async def shutdown(self, reason: str) -> None:
        """Flush the store, stop the engine, exit; positions keep their exchange-side stop-losses."""
        if self._stopping:
            return
        self._stopping = True
        open_positions = len(self.latest["positions"]) if self.latest is not None else 0
        log.info("shutting down (%s)", reason)
        await self._stop_engine()
        self.exit_text = exit_message(open_positions)
        # After a hang-up there is no terminal to print on (Textual would fail writing to it).
        self.exit(0, message=None if self._terminal_gone(reason) else self.exit_text)

    def _terminal_gone(self, reason: str) -> bool:
        driver = getattr(self, "_driver", None)
        return reason in (signal.SIGHUP.name, TERMINAL_LOST) or (
            isinstance(driver, ConsoleDriver) and driver.terminal_lost
        )

    async def _stop_engine(self) -> None:
        """Flush the store and stop the engine, once; every caller waits for that one stop.

        The stop is a task of its own that no caller's cancellation interrupts: when the app's
        message loop ends, Textual cancels the app's workers (a shutdown under way among them), and
        ``on_unmount`` then waits here for the same stop to finish, so the store always writes its
        shutdown record and releases the state lock before the process exits.
        """
        if self._engine_stop is None:
            self._engine_stop = asyncio.create_task(self._flush_and_stop(), name="engine-stop")
        await asyncio.shield(self._engine_stop)

    async def _flush_and_stop(self) -> None:
        if self._engine_start is not None:
            # Stopping while the engine starts: let the start end (started or failed) first; the
            # runtime cannot stop a store it is still opening.
            await asyncio.wait({self._engine_start})
        try:
            outcome = await self.link.flush()
            log.info(outcome.message)
        except EngineNotStarted:
            pass  # nothing was opened, nothing to flush
        except Exception:
            log.exception("flushing the store at shutdown failed")
        try:
            await self.link.stop()
        except Exception:
            log.exception("stopping the engine failed")
        # the engine's loop ends with the engine (a thread of its own: joined off the UI's loop)
        await asyncio.to_thread(self.link.host.close)
        self._engine_stopped = True

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signal_handlers(self) -> None:
        if not self._handle_signals:
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._request_shutdown(sig.name)

    def on_terminal_lost(self, event: TerminalLost) -> None:
        """The driver could not read the terminal: shut down as on SIGHUP (which may come first)."""
        log.warning("the terminal went away (%s)", event.problem)
        self._request_shutdown(TERMINAL_LOST)

    def _request_shutdown(self, reason: str) -> None:
        self.run_worker(self.shutdown(reason), name="shutdown", exit_on_error=False)


def quit_question(open_positions: int) -> str:
    """What ``q`` asks when positions are open: they stay protected once the console is gone."""
    which = "position stays" if open_positions == 1 else "positions stay"
    return (
        f"Quit opconsole? {open_positions} open {which} protected by exchange-side stop-losses "
        "(the engine stops managing them until it runs again)."
    )


def streams_text(data: Mapping[str, Any]) -> str:
    """Stream health for the header: connected streams and the age of the last event, when reported."""
    streams = data.get("streams")
    if not streams:
        return "streams —"
    up = sum(1 for s in streams.values() if s.get("connected"))
    ages = [s.get("last_event_age_s") for s in streams.values() if s.get("last_event_age_s") is not None]
    age = f" · {min(ages):.0f}s" if ages else ""
    return f"streams {up}/{len(streams)}{age}"


def _bindings(bindings: Iterable[BindingType]) -> Iterable[Binding]:
    for item in bindings:
        if isinstance(item, Binding):
            yield item
        else:
            yield Binding(*item)


def _runner(app: App[Any], action: str) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        await app.run_action(action)

    return run


def run_console(settings: Settings, state_dir: Path) -> int:
    """Run the console until the operator quits (or SIGHUP / SIGTERM); returns the exit code.

    A state directory in use by another process is refused (``BadInput``) before the UI opens.
    """
    check_state_free(state_dir)
    app = OperatorConsole(settings, state_dir, handle_signals=True)
    app.driver_class = ConsoleDriver  # exits even after the terminal went away
    try:
        result = app.run()
    finally:
        app.link.host.close()  # already closed by an orderly shutdown; a crashed app's thread too
    if app.bad_input is not None:
        raise app.bad_input
    return int(app.return_code or 0) if result is None else int(result)
