"""The console's one door into the engine: the started engine's operator APIs and its snapshot.

The console never calls a venue, and no screen touches an engine component or a settings file
itself. Every key goes through :class:`EngineLink`, which calls the typed component that owns the
action (the store, the profile, the cache, the operator actions, the price alerts) on the
:class:`~engine.runtime.assembly.Engine` that the runtime started, and turns its result or refusal
into an :class:`Outcome` the UI shows as a toast and a log line. Before the engine has started, an
action raises :class:`~engine.runtime.assembly.EngineNotStarted`, which says so.

Every call that touches an engine object runs on the engine's own loop through the
:class:`~console.engine_host.EngineHost` (its own thread in the real console), so the UI's thread
only ever holds immutable answers: a frozen snapshot, strings, tuples.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from console.engine_host import EngineHost, SharedLoop
from engine.alerts.price import PriceAlertRejected, PriceAlertRow
from engine.core.clock import iso_utc
from engine.core.errors import BadInput
from engine.core.numbers import fmt_key
from engine.core.profile import TOGGLES
from engine.core.settings import SettingsError, save_override
from engine.dashboard.snapshot import DashboardSnapshot
from engine.runtime.assembly import Engine, EngineRuntime
from engine.trading.approaches import TradeRejected, TradeRequest, per_entry_qty, validate_request
from engine.trading.operator import ActionRefused, KillReport
from engine.trading.risk_sizing import RiskSize, size_by_risk, trade_size
from persistence.errors import StoreFailed
from persistence.store import FlushResult

log = logging.getLogger("opconsole.console")

__all__ = [
    "TOGGLES",
    "EngineLink",
    "EngineView",
    "Outcome",
    "describe_flush",
    "describe_kill",
    "describe_pause",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operator action did, in words: shown as a toast and written to the log."""

    ok: bool
    message: str
    # True when the subsystem that did the work already wrote its own log line for it: the console
    # then only toasts, so every action reaches the log once
    logged: bool = False


@dataclass(frozen=True, slots=True)
class EngineView:
    """One refresh's worth of engine state, read on the engine loop in one step: the snapshot, the
    engine state and the paused accounts agree with each other."""

    snapshot: DashboardSnapshot
    engine_state: str
    paused: tuple[str, ...]


class EngineLink:
    """Operator actions and snapshot reads over an :class:`~engine.runtime.assembly.EngineRuntime`,
    run on the engine's loop by ``host`` (the caller's own loop when none is given)."""

    def __init__(self, runtime: EngineRuntime, host: EngineHost | None = None) -> None:
        self.runtime = runtime
        self.host: EngineHost = host or SharedLoop()

    @property
    def state_dir(self) -> Path:
        """Where the engine keeps its state and the console's settings overrides."""
        return self.runtime.state_dir

    def _engine(self) -> Engine:
        return self.runtime.started()

    async def _on_engine(self, work: Callable[[Engine], Awaitable[T]]) -> T:
        """Run ``work`` on the started engine, on the engine's loop."""
        return await self.host.run(lambda: work(self._engine()))

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine (on its loop)."""
        await self.host.run(self.runtime.start)

    async def stop(self) -> None:
        """Stop the engine (on its loop): the store writes its shutdown record and unlocks."""
        await self.host.run(self.runtime.stop)

    # --- snapshot -----------------------------------------------------------------------------

    async def snapshot(self) -> DashboardSnapshot:
        """The dashboard snapshot, built through the engine's cache."""
        return await self._on_engine(lambda engine: engine.dashboard.snapshot())

    async def view(self) -> EngineView:
        """The snapshot with the engine state and the paused accounts, read together."""

        async def read(engine: Engine) -> EngineView:
            snapshot = await engine.dashboard.snapshot()
            paused = tuple(name for name, flag in self._paused_accounts().items() if flag)
            return EngineView(snapshot, self.runtime.state.value, paused)

        return await self._on_engine(read)

    def changes(self) -> tuple[int, ...] | None:
        """The dashboard's change mark (:meth:`~engine.dashboard.snapshot.Dashboard.changes`), read
        without a hop to the engine's loop: two integers, which CPython reads whole from any thread.
        None before the engine has started."""
        engine = self.runtime.engine
        return None if engine is None else engine.dashboard.changes()

    def engine_state(self) -> str:
        """``running`` / ``reconciling`` / ``paused`` / ``degraded``."""
        return self.host.read(lambda: self.runtime.state.value)

    def is_paused(self) -> bool:
        """Whether new entries are paused on every account."""
        return self.host.read(lambda: all(self._paused_accounts().values() or (False,)))

    def paused_accounts(self) -> dict[str, bool]:
        """Each account's pause state (account -> new entries paused), in the engine's order; empty
        before the engine has started."""
        return self.host.read(self._paused_accounts)

    def _paused_accounts(self) -> dict[str, bool]:
        engine = self.runtime.engine
        if engine is None:
            return {}
        manager = engine.manager
        return {account: manager.is_paused(account) for account in manager.venues}

    # --- persistence --------------------------------------------------------------------------

    async def flush(self) -> Outcome:
        """Flush the store now and say what was written."""
        try:
            written = await self._on_engine(lambda engine: engine.store.flush())
        except StoreFailed as exc:  # the disk is out: the store keeps the changes and retries
            return Outcome(False, f"store not flushed: {exc}")
        return Outcome(True, f"store flushed: {describe_flush(written)}")

    def remember(self, values: Mapping[str, Any]) -> Outcome:
        """Save console choices (dotted settings key -> value) to the override file."""
        try:
            save_override(self.state_dir, values)
        except (SettingsError, OSError) as exc:
            return Outcome(False, f"could not save {', '.join(values)}: {exc}")
        return Outcome(True, "saved to overrides")

    # --- profile ------------------------------------------------------------------------------

    def profile_states(self) -> dict[str, str]:
        """Each toggle's state (``optimized``, ``baseline`` or ``pending``)."""
        return self.host.read(lambda: dict(self.runtime.profile.states()))

    async def set_toggle(self, toggle: str, value: str) -> Outcome:
        """Switch one toggle to ``optimized`` or ``baseline``."""
        try:
            changed = await self.host.run(lambda: self.runtime.profile.set(toggle, value))
        except ValueError as exc:
            return Outcome(False, f"profile: {exc}")
        # the profile logs a toggle that switched; one already there logged nothing
        message = f"profile: {toggle} -> {value}" + ("" if changed else " (already)")
        return Outcome(True, message, logged=changed)

    async def rollback_all(self) -> Outcome:
        """Every toggle to its baseline behaviour."""
        changed = await self.host.run(self.runtime.profile.rollback_all)
        message = f"profile: every toggle at baseline ({_count_changed(changed)})"
        return Outcome(True, message, logged=bool(changed))  # the profile logged each toggle

    async def restore_all(self) -> Outcome:
        """Every toggle to its optimized behaviour."""
        changed = await self.host.run(self.runtime.profile.restore_all)
        message = f"profile: every toggle optimized ({_count_changed(changed)})"
        return Outcome(True, message, logged=bool(changed))  # the profile logged each toggle

    # --- cache --------------------------------------------------------------------------------

    def live_ttls(self) -> dict[str, float] | None:
        """The cache's current TTL per category, or None before the engine started."""

        def read() -> dict[str, float] | None:
            engine = self.runtime.engine
            return None if engine is None else dict(engine.cache.ttls)

        return self.host.read(read)

    async def tune_ttl(self, mode: str, category: str, seconds: float) -> Outcome:
        """Set one category's TTL on the live cache (once started) and save it as
        ``cache.ttl.<mode>.<category>``, so it also holds after a restart."""
        dotted = f"cache.ttl.{mode}.{category}"
        saved = self.remember({dotted: float(seconds)})
        if not saved.ok:
            return saved

        def apply() -> bool:
            engine = self.runtime.engine
            if engine is not None:
                engine.cache.set_ttl(category, seconds)
            return engine is not None

        if not self.host.read(apply):
            return Outcome(True, f"{dotted} = {seconds:g}s saved; it applies when the engine has started")
        return Outcome(True, f"cache: {category} TTL {seconds:g}s (live); saved to overrides", logged=True)

    # --- trading ----------------------------------------------------------------------------

    async def _refusable(self, what: str, action: Callable[[Engine], Awaitable[Any]]) -> Outcome | None:
        """Run an operator action on the engine; a refusal becomes a failed :class:`Outcome`,
        success None."""
        try:
            await self._on_engine(action)
        except TradeRejected as exc:
            return Outcome(False, f"{what} refused: {'; '.join(exc.errors)}")
        except BadInput as exc:
            return Outcome(False, f"{what} refused: {exc.what}")
        except ActionRefused as exc:
            return Outcome(False, f"{what} refused: {exc}")
        return None

    def validate_trade(self, request: TradeRequest, snapshot: Mapping[str, Any] | None) -> list[str]:
        """Every problem the engine finds with ``request`` (empty when it can be sent).

        The engine's own pure validation, over the instruments its TP/SL manager loaded and the
        snapshot's last price and available balance (the manager checks again with fresh venue
        reads when the trade is sent). Before the first snapshot there is nothing to check against:
        the manager's own check at send time is the one that counts.
        """
        if snapshot is None:
            return []
        market = snapshot.get("market", {}).get(request.symbol, {})
        last = market.get("last") or market.get("mark") or 0.0
        available = snapshot.get("accounts", {}).get(request.account, {}).get("available") or 0.0

        def check() -> list[str]:
            manager = self._engine().manager
            instrument = manager.instruments.get(request.symbol)
            return validate_request(request, instrument, last, available, manager.params)

        return self.host.read(check)

    def size_trade(
        self, request: TradeRequest, risk_pct: float | None, snapshot: Mapping[str, Any] | None
    ) -> RiskSize | None:
        """The size of ``request`` in figures (quantity, notional, margin, loss at the stop with
        fees): sized to lose ``risk_pct`` % of the account's equity at the stop, or, with
        ``risk_pct`` None, as its margin x leverage gives it. The market entry is priced at the
        snapshot's last price. None when there is nothing to size against yet (no snapshot, no
        last price, an instrument the engine has not loaded)."""
        if snapshot is None:
            return None
        market = snapshot.get("market", {}).get(request.symbol, {})
        last = market.get("last") or market.get("mark") or 0.0
        account = snapshot.get("accounts", {}).get(request.account, {})
        entries = tuple(last if p is None else p for p in request.entry_prices)

        def size() -> RiskSize | None:
            manager = self._engine().manager
            instrument = manager.instruments.get(request.symbol)
            if instrument is None or not last > 0:
                return None
            fee = manager.params.taker_fee_rate
            if risk_pct is None:
                qty = per_entry_qty(request, instrument, last, len(entries))
                return trade_size(
                    side=request.side,
                    per_entry_qty=qty,
                    entry_prices=entries,
                    sl_price=request.sl_price,
                    leverage=request.leverage,
                    instrument=instrument,
                    taker_fee_rate=fee,
                )
            return size_by_risk(
                side=request.side,
                equity=account.get("equity") or 0.0,
                risk_pct=risk_pct,
                entry_prices=entries,
                sl_price=request.sl_price,
                leverage=request.leverage,
                available=account.get("available") or 0.0,
                instrument=instrument,
                taker_fee_rate=fee,
            )

        return self.host.read(size)

    async def open_trade(self, request: TradeRequest) -> Outcome:
        """Validate and open a trade; a refused request sends nothing and says why."""
        opened: list[str] = []

        async def open_it(engine: Engine) -> None:
            opened.append((await engine.actions.open_trade(request)).key)

        refused = await self._refusable("Opening a trade", open_it)
        return refused or Outcome(True, f"trade opened: {fmt_key(opened[0])}")

    async def close_position(self, key: str) -> Outcome:
        """Close the position of monitor ``key`` at market (reduce-only)."""
        refused = await self._refusable("Closing a position", lambda e: e.actions.close_position(key))
        return refused or Outcome(True, f"{fmt_key(key)}: closing at market")

    async def move_to_breakeven(self, key: str) -> Outcome:
        """Move monitor ``key``'s stop-loss to breakeven now."""
        refused = await self._refusable("Moving the SL to breakeven", lambda e: e.actions.breakeven_now(key))
        return refused or Outcome(True, f"{fmt_key(key)}: SL moved to breakeven")

    async def cancel_monitor_orders(self, key: str) -> Outcome:
        """Cancel the working entries and take-profits of monitor ``key`` (its SL stays)."""
        action = "Cancelling a monitor's orders"
        refused = await self._refusable(action, lambda e: e.actions.cancel_orders(key))
        return refused or Outcome(True, f"{fmt_key(key)}: entries and TPs cancelled (SL kept)")

    async def kill_switch(self) -> Outcome:
        """Cancel every order and close every position, on every account."""
        reports: list[KillReport] = []

        async def kill(engine: Engine) -> None:
            reports.extend(await engine.actions.kill_switch())

        refused = await self._refusable("The kill switch", kill)
        # the kill switch pauses every account it killed: say so, and how to take entries again
        done = "; ".join(describe_kill(r) for r in reports)
        return refused or Outcome(True, f"kill switch: {done}; entries paused; p resumes")

    async def set_paused(self, paused: bool, accounts: Sequence[str] | None = None) -> Outcome:
        """Pause or resume new entries on ``accounts`` (every account when None); protection keeps
        running. The outcome names what changed and what the other accounts do now."""
        targets = list(accounts) if accounts is not None else None
        if paused:
            refused = await self._refusable("Pausing new entries", lambda e: e.actions.pause_entries(targets))
        else:
            refused = await self._refusable(
                "Resuming new entries", lambda e: e.actions.resume_entries(targets)
            )
        return refused or Outcome(True, describe_pause(paused, targets, self.paused_accounts()))

    # --- price alerts -------------------------------------------------------------------------

    def price_alerts(self) -> list[PriceAlertRow]:
        """Every price alert (armed and triggered), as the snapshot's ``price_alerts`` rows."""
        return self.host.read(lambda: self._engine().price_alerts.snapshot())

    async def add_price_alert(self, text: str) -> Outcome:
        """Add the alert the operator typed (``BTCUSDT above 100000 [note]``); a refusal says why."""
        try:
            alert = await self._on_engine(lambda engine: engine.price_alerts.add_spec(text))
        except PriceAlertRejected as exc:
            return Outcome(False, f"price alert refused: {'; '.join(exc.errors)}")
        return Outcome(True, f"price alert #{alert.id} added: {alert.describe()}", logged=True)

    async def delete_price_alert(self, alert_id: int) -> Outcome:
        """Delete price alert ``alert_id``."""
        try:
            alert = await self._on_engine(lambda engine: engine.price_alerts.delete(alert_id))
        except PriceAlertRejected as exc:
            return Outcome(False, f"price alert not deleted: {'; '.join(exc.errors)}")
        return Outcome(True, f"price alert #{alert.id} deleted: {alert.describe()}", logged=True)

    # --- statistics ---------------------------------------------------------------------------

    async def reset_statistics(self) -> Outcome:
        """Start a new statistics period now (the ledger keeps every trade); durable when it returns."""
        try:
            start = await self._on_engine(lambda engine: engine.dashboard.reset_statistics())
        except StoreFailed as exc:  # the disk is out: the store keeps the change and retries
            return Outcome(False, f"statistics reset not saved yet: {exc}")
        return Outcome(True, f"statistics reset: a new period starts {iso_utc(start)}", logged=True)

    async def daily_summary(self) -> Outcome:
        """The daily summary now (trades, PnL, win rate, fees, funding, open risk): raised as an alert,
        so it also reaches Telegram and the webhook; its text is the outcome's message."""

        def publish() -> str | None:
            summary = self._engine().summary
            return None if summary is None else summary.publish_now()

        text = self.host.read(publish)
        if text is None:
            return Outcome(False, "the daily summary is not available")
        return Outcome(True, text)


def describe_pause(paused: bool, accounts: Sequence[str] | None, states: Mapping[str, bool]) -> str:
    """A pause or resume in words: what it did, and what the other accounts do now (``states``:
    account -> paused, after the change). Every account: the words ``p`` has always shown."""
    if accounts is None or set(accounts) >= set(states):
        return "new entries paused (protection keeps running)" if paused else "new entries resumed"
    names = " and ".join(accounts)
    if paused:
        did = f"new entries paused on {names} (protection keeps running)"
    else:
        did = f"new entries resumed on {names}"
    others = [
        f"{name} {'stays paused' if flag else 'still takes entries'}"
        for name, flag in states.items()
        if name not in accounts
    ]
    return "; ".join([did, *others])


def describe_kill(report: KillReport) -> str:
    """One account's kill-switch report in words."""
    closing = len(report.monitors_closing) + len(report.positions_closed)
    text = f"{report.account}: closing {closing} position(s), cancelled {report.orders_cancelled} order(s)"
    return text + (f", errors: {', '.join(report.errors)}" if report.errors else "")


def describe_flush(written: FlushResult) -> str:
    """Say what a flush wrote."""
    if not written.records:
        return "nothing pending"
    kind = "full snapshot" if written.full_write else "journal append"
    return f"{_plural(written.records, 'record')}, {written.bytes} bytes ({kind}, seq {written.seq})"


def _count_changed(changed: Sequence[str]) -> str:
    return f"{len(changed)} changed" if changed else "no change"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
