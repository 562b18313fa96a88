"""The new-trade form: symbol, side, approach, size (margin, or risk % of equity), leverage,
entries, TPs and SL.

Typing is checked as you go: first the form's own parsing (numbers, lists), then the engine's
validation of the whole request (TPs on the profit side, SL on the loss side, sizes, balance), whose
sentences appear under the form. Nothing is sent while a problem is shown; the engine validates again
when the trade is sent. A symbol that already has a position (or a monitored trade) on the account is
flagged under the symbol as soon as it is chosen. The size is shown in figures before placing: the
quantity, notional, margin and the loss at the stop with fees; sized by risk, the quantity is the one
whose loss at the stop is the chosen share of the account's equity (see
:mod:`engine.trading.risk_sizing`), and the request carries it as an explicit per-entry quantity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from console.engine_link import EngineLink, Outcome
from engine.core.models import Side
from engine.core.numbers import fmt_number, fmt_position, fmt_usdt
from engine.runtime.assembly import EngineNotStarted
from engine.trading.approaches import Approach, TradeRequest
from engine.trading.risk_sizing import RiskSize

NUMBER_FIELDS = ("margin", "risk", "leverage", "sl")
LIST_FIELDS = ("entries", "tps")

RiskSizer = Callable[[TradeRequest, float], RiskSize | None]
"""Sizes a request to lose the given % of equity at its stop (None: nothing to size against yet)."""


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


def parse_trade_form(
    values: Mapping[str, Any], risk_size: RiskSizer | None = None
) -> tuple[TradeRequest | None, list[str]]:
    """The request the form describes, or the reasons it cannot be read (one sentence each).

    ``entries`` are the limit prices of the entries after the first (which is at market); ``tps`` are
    the take-profit prices, nearest first. With ``sizing`` = ``risk`` the ``risk`` field (percent of
    equity) replaces the margin: ``risk_size`` turns it into a per-entry quantity and the margin it
    needs, and the request carries both (the engine then takes the quantity as given).
    """
    errors: list[str] = []
    by_risk = values.get("sizing") == "risk"
    if by_risk:
        risk_pct = _number("risk %", str(values.get("risk", "")), errors)
        margin: float | None = 0.0  # replaced by what the risk sizing needs
    else:
        risk_pct = None
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
    if risk_pct is None:
        return request, []
    size = None if risk_size is None else risk_size(request, risk_pct)
    if size is None:
        return None, [f"risk %: no market price or instrument for {request.symbol} yet to size by risk"]
    if size.problems:
        return None, list(size.problems)
    return replace(request, margin=size.margin, qty=size.per_entry_qty), []


def held_warning(snapshot: Mapping[str, Any] | None, account: str, symbol: str) -> str:
    """A warning when ``account`` already holds ``symbol`` (a position or a monitored trade), which
    the engine refuses to open again; empty otherwise."""
    if not snapshot:
        return ""
    market = snapshot.get("market", {}).get(symbol, {})
    for p in snapshot.get("positions", ()):
        if p.get("account") == account and p.get("symbol") == symbol:
            held = fmt_position(
                str(p.get("side", "")), symbol, account, p.get("size"), market.get("qty_step")
            )
            entry = fmt_number(p.get("entry_price") or 0.0, market.get("tick_size"))
            return f"⚠ already open: {held} at {entry}; a new {symbol} trade will be refused"
    for m in snapshot.get("monitors", ()):
        if m.get("account") == account and m.get("symbol") == symbol:
            return f"⚠ {account} already has a monitored {symbol} trade; a new one will be refused"
    return ""


def size_text(
    size: RiskSize, symbol: str, n_entries: int, equity: float | None, by_risk: bool, step: float | None
) -> str:
    """The size of a trade in words (``step``: the qty step): what the form shows before it is placed."""
    qty = f"{fmt_number(size.total_qty, step)} {symbol}"
    if n_entries > 1:
        qty += f" ({n_entries} x {fmt_number(size.per_entry_qty, step)})"
    of_equity = ""
    if equity and equity > 0:
        of_equity = f" = {size.loss_at_stop / equity * 100:.2f}% of equity"
    head = f"risk {fmt_usdt(size.risk_amount)} USDT → " if by_risk else ""
    return (
        f"{head}size {qty} · notional {fmt_usdt(size.notional)} · margin {fmt_usdt(size.margin)} USDT · "
        f"loss at stop {fmt_usdt(size.loss_at_stop)} USDT incl. {fmt_usdt(size.fees)} fees{of_equity}"
    )


class TradeFormScreen(ModalScreen[None]):
    """Fill in a trade; ctrl+s (or the Place button) sends it once it is valid.

    The fields scroll inside the dialog while the Place and Cancel buttons stay docked at its
    bottom, so a long list of problems never pushes them off a small screen.
    """

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
        self.sizing: RiskSize | None = None
        """The size last shown (None while the form cannot be sized)."""
        self._risk_figures: RiskSize | None = None
        # a submit was refused and nothing edited since: a check that finishes late keeps the
        # problems in view rather than the focused field
        self._submitted = False

    def compose(self) -> ComposeResult:
        d = self._defaults
        with Vertical(id="dialog", classes="-wide -trade"):
            yield Label("New trade", id="dialog-title")
            with VerticalScroll(id="tf-body"):
                with Grid(id="trade-grid"):
                    yield Label("Account", id="tfl-account")
                    yield Select(
                        [(a, a) for a in self._accounts],
                        value=self._accounts[0],
                        allow_blank=False,
                        id="tf-account",
                        compact=True,
                    )
                    yield Label("Symbol", id="tfl-symbol")
                    yield Select(
                        [(s, s) for s in self._symbols],
                        value=self._symbols[0],
                        allow_blank=False,
                        id="tf-symbol",
                        compact=True,
                    )
                    # the row under the symbol: shown only when the symbol is already held
                    yield Label("", id="tfl-held", classes="tf-held")
                    yield Label("", id="tf-held", classes="tf-held")
                    yield Label("Side", id="tfl-side")
                    yield Select(
                        [("Buy (long)", "Buy"), ("Sell (short)", "Sell")],
                        value="Buy",
                        allow_blank=False,
                        id="tf-side",
                        compact=True,
                    )
                    yield Label("Approach", id="tfl-approach")
                    yield Select(
                        [("conservative", "conservative"), ("fast", "fast")],
                        value=d.get("approach", "conservative"),
                        allow_blank=False,
                        id="tf-approach",
                        compact=True,
                    )
                    yield Label("Size by", id="tfl-sizing")
                    yield Select(
                        [("margin USDT", "margin"), ("risk % of equity", "risk")],
                        value=d.get("sizing", "margin"),
                        allow_blank=False,
                        id="tf-sizing",
                        compact=True,
                    )
                    yield Label("Margin USDT", id="tfl-margin", classes="tf-by-margin")
                    yield Input(
                        str(d.get("margin", "100")), id="tf-margin", compact=True, classes="tf-by-margin"
                    )
                    yield Label("Risk % equity", id="tfl-risk", classes="tf-by-risk")
                    yield Input(str(d.get("risk", "1")), id="tf-risk", compact=True, classes="tf-by-risk")
                    yield Label("Leverage", id="tfl-leverage")
                    yield Input(str(d.get("leverage", "10")), id="tf-leverage", compact=True)
                    yield Label("Limit entries", id="tfl-entries")
                    yield Input(
                        placeholder="entries after the market one, e.g. 96500 96000",
                        id="tf-entries",
                        compact=True,
                    )
                    yield Label("TPs", id="tfl-tps")
                    yield Input(
                        placeholder="nearest first, e.g. 98000 98500 99000 99500", id="tf-tps", compact=True
                    )
                    yield Label("Stop-loss", id="tfl-sl")
                    yield Input(placeholder="SL trigger price", id="tf-sl", compact=True)
                yield Label("", id="tf-context")
                yield Label("", id="tf-size")
                yield Label("", id="tf-errors")
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="tf-cancel", compact=True)
                yield Button("Place (ctrl+s)", id="tf-place", variant="success", compact=True)

    def on_mount(self) -> None:
        self._show_sizing_fields()
        self.query_one("#tf-risk" if self._by_risk() else "#tf-margin", Input).focus()
        self._show_context()

    def _by_risk(self) -> bool:
        return self.query_one("#tf-sizing", Select).value == "risk"

    def _show_sizing_fields(self) -> None:
        """Show the margin field or the risk field, as the "Size by" choice says."""
        by_risk = self._by_risk()
        for widget in self.query(".tf-by-risk"):
            widget.display = by_risk
        for widget in self.query(".tf-by-margin"):
            widget.display = not by_risk

    def form_values(self) -> dict[str, Any]:
        """The raw field values."""
        values: dict[str, Any] = {}
        for name in ("account", "symbol", "side", "approach", "sizing"):
            values[name] = self.query_one(f"#tf-{name}", Select).value
        for name in (*NUMBER_FIELDS, *LIST_FIELDS):
            values[name] = self.query_one(f"#tf-{name}", Input).value
        return values

    def _show_context(self) -> None:
        snapshot = self._snapshot_now() or {}
        symbol = str(self.query_one("#tf-symbol", Select).value)
        market = snapshot.get("market", {}).get(symbol, {})
        mark = market.get("last")
        account = str(self.query_one("#tf-account", Select).value)
        row = snapshot.get("accounts", {}).get(account, {})
        available, equity = row.get("available"), row.get("equity")
        mark_text = "—" if mark is None else fmt_number(mark, market.get("tick_size"))
        avail_text = "—" if available is None else fmt_usdt(available)
        equity_text = "—" if equity is None else fmt_usdt(equity)
        context = f"{symbol} last {mark_text} · equity {equity_text} · available {avail_text} USDT"
        self.query_one("#tf-context", Label).update(context)
        warning = held_warning(snapshot, account, symbol)
        self.query_one("#tf-held", Label).update(warning)
        for widget in self.query(".tf-held"):
            widget.display = bool(warning)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # compact fields have no border: the focused one is marked on its label as well
        for label in self.query("#trade-grid > Label.-focused"):
            label.remove_class("-focused")
        name = (event.widget.id or "").removeprefix("tf-")
        for label in self.query(f"#tfl-{name}"):
            label.add_class("-focused")

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        self._submitted = False  # an edit after a refused submit: follow the field being edited
        self._show_sizing_fields()
        self._show_context()
        self.check()

    def _risk_size(self, request: TradeRequest, risk_pct: float) -> RiskSize | None:
        self._risk_figures = self._link.size_trade(request, risk_pct, self._snapshot_now())
        return self._risk_figures

    def _parse(self) -> tuple[TradeRequest | None, list[str]]:
        """The request the fields describe (sized, when by risk) and its problems, engine's included."""
        self._risk_figures = None
        try:
            request, problems = parse_trade_form(self.form_values(), self._risk_size)
        except EngineNotStarted:
            return None, ["risk %: the engine has not started yet: nothing to size against"]
        if request is not None:
            try:
                problems = self._link.validate_trade(request, self._snapshot_now())
            except EngineNotStarted:
                problems = []  # the engine validates when the trade is sent
        return request, problems

    @work(exclusive=True, group="trade-check")
    async def check(self) -> list[str]:
        """Parse, size and validate; show the size and every problem (or nothing) under the form."""
        request, problems = self._parse()
        self.show_size(None if problems else request)
        self.show_problems(problems, submitted=self._submitted)
        return problems

    def show_size(self, request: TradeRequest | None) -> None:
        """The figures of the size of ``request`` (None: one with problems), or nothing; by risk, also
        the figures of a size that is refused (they say how far off it is)."""
        by_risk = self._by_risk()
        size = self._risk_figures if by_risk else None
        if request is not None and not by_risk:
            try:
                size = self._link.size_trade(request, None, self._snapshot_now())
            except EngineNotStarted:
                size = None
        self.sizing = size
        label = self.query_one("#tf-size", Label)
        shown = size is not None and size.total_qty > 0
        label.set_class(shown, "-visible")
        if size is None or not shown:
            label.update("")
            return
        symbol = str(self.query_one("#tf-symbol", Select).value)
        n_entries = 1 if self.query_one("#tf-approach", Select).value == "fast" else self._entries_now()
        step = ((self._snapshot_now() or {}).get("market", {}).get(symbol) or {}).get("qty_step")
        label.update(size_text(size, symbol, n_entries, self._equity_now(), by_risk, step))

    def _equity_now(self) -> float | None:
        snapshot = self._snapshot_now() or {}
        account = str(self.query_one("#tf-account", Select).value)
        equity = snapshot.get("accounts", {}).get(account, {}).get("equity")
        return float(equity) if equity is not None else None

    def _entries_now(self) -> int:
        return 1 + len(_numbers("entries", self.query_one("#tf-entries", Input).value, []) or ())

    def show_problems(self, problems: list[str], *, submitted: bool = False) -> None:
        """Show ``problems`` under the form (none: hide them); ``submitted``: after a refused submit,
        scroll them into view even if the focused field goes out of it."""
        self.problems = problems
        label = self.query_one("#tf-errors", Label)
        label.update("\n".join(f"✗ {p}" for p in problems))
        label.set_class(bool(problems), "-visible")
        # after the refresh: the scroll height grows only once the new text is laid out
        self.call_after_refresh(self._reveal_bottom, submitted)

    def _reveal_bottom(self, submitted: bool) -> None:
        """Scroll the body down to the problems; while typing, only as far as the focused field
        allows (the size and the problems come into view, the field being typed into stays)."""
        body = self.query_one("#tf-body", VerticalScroll)
        body.scroll_end(animate=False, immediate=True)
        focused = self.focused
        if not submitted and focused is not None and body in focused.ancestors:
            focused.scroll_visible(animate=False, immediate=True)

    async def action_submit(self) -> None:
        request, problems = self._parse()
        self._submitted = True
        if request is None or problems:
            self.show_problems(problems, submitted=True)
            return
        try:
            outcome = await self._link.open_trade(request)
        except EngineNotStarted as exc:
            outcome = Outcome(False, str(exc))
        self._report(outcome)
        if outcome.ok:
            self.dismiss(None)
        else:
            self.show_problems([outcome.message], submitted=True)

    @on(Button.Pressed, "#tf-place")
    async def _place(self) -> None:
        await self.action_submit()

    @on(Button.Pressed, "#tf-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
