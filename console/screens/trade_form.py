"""The new-trade form: symbol, side, approach, margin, leverage, entries, TPs and SL.

Typing is checked as you go: first the form's own parsing (numbers, lists), then the engine's
validation of the whole request (TPs on the profit side, SL on the loss side, sizes, balance), whose
sentences appear under the form. Nothing is sent while a problem is shown; the engine validates again
when the trade is sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from console.engine_link import EngineLink, Outcome
from engine.core.models import Side
from engine.runtime.assembly import EngineNotStarted
from engine.trading.approaches import Approach, TradeRequest

NUMBER_FIELDS = ("margin", "leverage", "sl")
LIST_FIELDS = ("entries", "tps")


def _number(name: str, text: str, errors: list[str]) -> float | None:
    try:
        value = float(text.strip().replace(",", ""))
    except ValueError:
        errors.append(f"{name}: not a number: {text.strip()!r}" if text.strip() else f"{name}: required")
        return None
    # float() reads "nan", "inf" and "1e999" (= inf): numbers no trade can use.
    if not math.isfinite(value):
        errors.append(f"{name}: must be a finite number, got {text.strip()!r}")
        return None
    return value


def _numbers(name: str, text: str, errors: list[str]) -> tuple[float, ...] | None:
    parts = [p for p in text.replace(";", " ").replace(",", " ").split() if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        errors.append(f"{name}: a list of prices separated by spaces or commas, got {text.strip()!r}")
        return None
    bad = [p for p, v in zip(parts, values, strict=True) if not math.isfinite(v)]
    if bad:
        errors.append(f"{name}: every price must be a finite number, got {', '.join(bad)}")
        return None
    return values


def parse_trade_form(values: Mapping[str, Any]) -> tuple[TradeRequest | None, list[str]]:
    """The request the form describes, or the reasons it cannot be read (one sentence each).

    ``entries`` are the limit prices of the entries after the first (which is at market); ``tps`` are
    the take-profit prices, nearest first.
    """
    errors: list[str] = []
    margin = _number("margin", str(values.get("margin", "")), errors)
    leverage = _number("leverage", str(values.get("leverage", "")), errors)
    sl = _number("SL", str(values.get("sl", "")), errors)
    entries = _numbers("entries", str(values.get("entries", "")), errors)
    tps = _numbers("TPs", str(values.get("tps", "")), errors)
    if tps == ():
        errors.append("TPs: at least one take-profit price")
    if errors or margin is None or leverage is None or sl is None or entries is None or tps is None:
        return None, errors
    request = TradeRequest(
        account=str(values.get("account") or "main"),
        symbol=str(values["symbol"]),
        side=Side(values["side"]),
        approach=Approach(values["approach"]),
        margin=margin,
        leverage=leverage,
        entry_prices=(None, *entries),
        tp_prices=tps,
        sl_price=sl,
    )
    return request, []


class TradeFormScreen(ModalScreen[None]):
    """Fill in a trade; ctrl+s (or the Place button) sends it once it is valid."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Place trade"),
        Binding("escape", "close", "Cancel"),
    ]

    def __init__(
        self,
        link: EngineLink,
        *,
        symbols: Sequence[str],
        accounts: Sequence[str],
        defaults: Mapping[str, Any],
        context: Callable[[], Mapping[str, Any] | None],
        report: Callable[[Outcome], None],
    ) -> None:
        super().__init__(classes="dialog")
        self._link = link
        self._symbols = list(symbols)
        self._accounts = list(accounts)
        self._defaults = dict(defaults)
        self._snapshot_now = context
        self._report = report
        self.problems: list[str] = []

    def compose(self) -> ComposeResult:
        d = self._defaults
        with Vertical(id="dialog", classes="-wide"):
            yield Label("New trade", id="dialog-title")
            with Grid(id="trade-grid"):
                yield Label("Account")
                yield Select(
                    [(a, a) for a in self._accounts],
                    value=self._accounts[0],
                    allow_blank=False,
                    id="tf-account",
                    compact=True,
                )
                yield Label("Symbol")
                yield Select(
                    [(s, s) for s in self._symbols],
                    value=self._symbols[0],
                    allow_blank=False,
                    id="tf-symbol",
                    compact=True,
                )
                yield Label("Side")
                yield Select(
                    [("Buy (long)", "Buy"), ("Sell (short)", "Sell")],
                    value="Buy",
                    allow_blank=False,
                    id="tf-side",
                    compact=True,
                )
                yield Label("Approach")
                yield Select(
                    [("conservative", "conservative"), ("fast", "fast")],
                    value=d.get("approach", "conservative"),
                    allow_blank=False,
                    id="tf-approach",
                    compact=True,
                )
                yield Label("Margin USDT")
                yield Input(str(d.get("margin", "100")), id="tf-margin", compact=True)
                yield Label("Leverage")
                yield Input(str(d.get("leverage", "10")), id="tf-leverage", compact=True)
                yield Label("Limit entries")
                yield Input(
                    placeholder="entries after the market one, e.g. 96500 96000",
                    id="tf-entries",
                    compact=True,
                )
                yield Label("TPs")
                yield Input(
                    placeholder="nearest first, e.g. 98000 98500 99000 99500", id="tf-tps", compact=True
                )
                yield Label("Stop-loss")
                yield Input(placeholder="SL trigger price", id="tf-sl", compact=True)
            yield Label("", id="tf-context")
            yield Label("", id="tf-errors")
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="tf-cancel", compact=True)
                yield Button("Place (ctrl+s)", id="tf-place", variant="success", compact=True)

    def on_mount(self) -> None:
        self.query_one("#tf-margin", Input).focus()
        self._show_context()

    def form_values(self) -> dict[str, Any]:
        """The raw field values."""
        values: dict[str, Any] = {}
        for name in ("account", "symbol", "side", "approach"):
            values[name] = self.query_one(f"#tf-{name}", Select).value
        for name in (*NUMBER_FIELDS, *LIST_FIELDS):
            values[name] = self.query_one(f"#tf-{name}", Input).value
        return values

    def _show_context(self) -> None:
        snapshot = self._snapshot_now() or {}
        symbol = self.query_one("#tf-symbol", Select).value
        mark = snapshot.get("market", {}).get(symbol, {}).get("last")
        account = self.query_one("#tf-account", Select).value
        available = snapshot.get("accounts", {}).get(account, {}).get("available")
        mark_text = "—" if mark is None else f"{mark:,.10g}"
        avail_text = "—" if available is None else f"{available:,.2f}"
        context = f"{symbol} last {mark_text} · available {avail_text} USDT"
        self.query_one("#tf-context", Label).update(context)

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        self._show_context()
        self.check()

    @work(exclusive=True, group="trade-check")
    async def check(self) -> list[str]:
        """Parse and validate; show every problem (or nothing) under the form."""
        request, problems = parse_trade_form(self.form_values())
        if request is not None:
            try:
                problems = self._link.validate_trade(request, self._snapshot_now())
            except EngineNotStarted:
                problems = []  # the engine validates when the trade is sent
        self.show_problems(problems)
        return problems

    def show_problems(self, problems: list[str]) -> None:
        self.problems = problems
        label = self.query_one("#tf-errors", Label)
        label.update("\n".join(f"✗ {p}" for p in problems))
        label.set_class(bool(problems), "-visible")

    async def action_submit(self) -> None:
        request, problems = parse_trade_form(self.form_values())
        if request is None:
            self.show_problems(problems)
            return
        try:
            problems = self._link.validate_trade(request, self._snapshot_now())
        except EngineNotStarted:
            problems = []
        if problems:
            self.show_problems(problems)
            return
        try:
            outcome = await self._link.open_trade(request)
        except EngineNotStarted as exc:
            outcome = Outcome(False, str(exc))
        self._report(outcome)
        if outcome.ok:
            self.dismiss(None)
        else:
            self.show_problems([outcome.message])

    @on(Button.Pressed, "#tf-place")
    async def _place(self) -> None:
        await self.action_submit()

    @on(Button.Pressed, "#tf-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
