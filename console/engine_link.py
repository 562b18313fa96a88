"""The console's one door into the engine: the runtime's operator APIs and the dashboard snapshot.

The console never calls a venue. Every key goes through :class:`EngineLink`, which finds the engine
component that owns the action (the store, the profile, the cache, the TP/SL engine) on the runtime
and turns its result or error into an :class:`Outcome` the UI shows as a toast and a log line. A
component that does not exist in this build raises :class:`NotAvailable` with a message that says so,
instead of pretending the action happened.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.alerts.price import PriceAlertRejected
from engine.core.errors import BadInput
from engine.core.profile import TOGGLES
from engine.dashboard.snapshot import DashboardSnapshot
from engine.trading.approaches import TradeRejected, TradeRequest, validate_request
from engine.trading.operator import ActionRefused, OperatorActions
from engine.trading.params import TradingParams

if TYPE_CHECKING:
    from engine.runtime.assembly import EngineRuntime

log = logging.getLogger("opconsole.console")


class NotAvailable(Exception):
    """The engine component behind an action is not part of this build yet."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an operator action did, in words: shown as a toast and written to the log."""

    ok: bool
    message: str


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class EngineLink:
    """Operator actions and snapshot reads over an :class:`~engine.runtime.assembly.EngineRuntime`."""

    def __init__(self, runtime: EngineRuntime) -> None:
        self.runtime = runtime

    # --- lookup -------------------------------------------------------------------------------

    def _component(self, attr: str, what: str) -> Any:
        component = getattr(self.runtime, attr, None)
        if component is None:
            raise NotAvailable(f"{what} is not available yet in this build")
        return component

    def _call(self, attr: str, method: str, what: str) -> Any:
        component = self._component(attr, what)
        fn = getattr(component, method, None)
        if fn is None:
            raise NotAvailable(f"{what} is not available yet in this build")
        return fn

    def has(self, attr: str, method: str | None = None) -> bool:
        """Whether the runtime exposes ``attr`` (and its ``method``) in this build."""
        component = getattr(self.runtime, attr, None)
        return component is not None and (method is None or hasattr(component, method))

    # --- snapshot -----------------------------------------------------------------------------

    async def snapshot(self) -> DashboardSnapshot:
        """The dashboard snapshot, through the runtime's cache-backed dashboard when it has one."""
        dashboard = getattr(self.runtime, "dashboard", None)
        if dashboard is not None and hasattr(dashboard, "snapshot"):
            return await _resolve(dashboard.snapshot())
        from engine.dashboard.snapshot import build_snapshot

        return await build_snapshot(self.runtime)

    # --- persistence --------------------------------------------------------------------------

    async def flush(self) -> Outcome:
        """Flush the store now and say what was written."""
        written = await _resolve(self._call("store", "flush", "Flushing the store")())
        return Outcome(True, f"store flushed: {describe_flush(written)}")

    # --- profile ------------------------------------------------------------------------------

    def profile_states(self, snapshot: DashboardSnapshot | None) -> dict[str, str]:
        """Each toggle's state: from the live profile when it exists, else from the last snapshot."""
        profile = getattr(self.runtime, "profile", None)
        if profile is not None:
            return dict(profile.states())
        if snapshot is not None:
            return dict(snapshot["profile"])
        return {name: "pending" for name in TOGGLES}

    async def set_toggle(self, toggle: str, value: str) -> Outcome:
        """Switch one toggle to ``optimized`` or ``baseline``."""
        try:
            switch = self._call("profile", "set", "Switching a profile toggle")
            changed = await _resolve(switch(toggle, value))
        except ValueError as exc:
            return Outcome(False, f"profile: {exc}")
        return Outcome(True, f"profile: {toggle} -> {value}" + ("" if changed else " (already)"))

    async def rollback_all(self) -> Outcome:
        """Every toggle to its baseline behaviour."""
        changed = await _resolve(self._call("profile", "rollback_all", "Rolling back the profile")())
        return Outcome(True, f"profile: every toggle at baseline ({_count_changed(changed)})")

    async def restore_all(self) -> Outcome:
        """Every toggle to its optimized behaviour."""
        changed = await _resolve(self._call("profile", "restore_all", "Restoring the profile")())
        return Outcome(True, f"profile: every toggle optimized ({_count_changed(changed)})")

    # --- cache --------------------------------------------------------------------------------

    def live_ttls(self) -> dict[str, float] | None:
        """The cache's current TTL per category, or None when there is no live cache."""
        cache = getattr(self.runtime, "cache", None)
        return None if cache is None else dict(cache.ttls)

    async def set_ttl(self, category: str, seconds: float) -> Outcome:
        """Change one category's TTL on the live cache."""
        await _resolve(self._call("cache", "set_ttl", "Live TTL tuning")(category, seconds))
        return Outcome(True, f"cache: {category} TTL {seconds:g}s (live)")

    # --- trading ----------------------------------------------------------------------------

    def _actions(self, what: str) -> Any:
        """The runtime's :class:`~engine.trading.operator.OperatorActions` (or one over its TP/SL manager)."""
        actions = getattr(self.runtime, "actions", None)
        if actions is None:
            actions = getattr(getattr(self.runtime, "trading", None), "actions", None)
        if actions is None:
            manager = getattr(self.runtime, "tpsl", None)
            if manager is None:
                raise NotAvailable(f"{what} is not available yet in this build (no TP/SL engine)")
            actions = OperatorActions(manager)
        return actions

    async def _trading(self, method: str, what: str, *args: Any) -> Any:
        fn = getattr(self._actions(what), method, None)
        if fn is None:
            raise NotAvailable(f"{what} is not available yet in this build")
        try:
            return await _resolve(fn(*args))
        except TradeRejected as exc:
            return Outcome(False, f"{what} refused: {'; '.join(exc.errors)}")
        except BadInput as exc:
            return Outcome(False, f"{what} refused: {exc.what}")
        except ActionRefused as exc:
            return Outcome(False, f"{what} refused: {exc}")

    async def validate_trade(self, request: TradeRequest, snapshot: Mapping[str, Any] | None) -> list[str]:
        """Every problem the engine finds with ``request`` (empty when it can be sent).

        The engine's own pure validation, over the instruments its TP/SL manager loaded and the
        snapshot's last price and available balance (the manager checks again with fresh venue
        reads when the trade is sent).
        """
        manager = getattr(self.runtime, "tpsl", None)
        instruments = getattr(manager, "instruments", None)
        if not instruments or snapshot is None:
            raise NotAvailable("Trade validation is not available yet in this build")
        market = snapshot.get("market", {}).get(request.symbol, {})
        last = market.get("last") or market.get("mark") or 0.0
        available = snapshot.get("accounts", {}).get(request.account, {}).get("available") or 0.0
        params = getattr(manager, "params", None) or TradingParams.from_settings(self.runtime.settings)
        return validate_request(request, instruments.get(request.symbol), last, available, params)

    async def open_trade(self, request: TradeRequest) -> Outcome:
        """Validate and open a trade; a refused request sends nothing and says why."""
        result = await self._trading("open_trade", "Opening a trade", request)
        key = getattr(result, "key", None)
        return as_outcome(result, f"trade opened: {key or request.symbol}")

    async def close_position(self, key: str) -> Outcome:
        """Close the position of monitor ``key`` at market (reduce-only)."""
        result = await self._trading("close_position", "Closing a position", key)
        return as_outcome(result, f"{key}: closing at market")

    async def move_to_breakeven(self, key: str) -> Outcome:
        """Move monitor ``key``'s stop-loss to breakeven now."""
        result = await self._trading("breakeven_now", "Moving the SL to breakeven", key)
        return as_outcome(result, f"{key}: SL moved to breakeven")

    async def cancel_monitor_orders(self, key: str) -> Outcome:
        """Cancel the working entries and take-profits of monitor ``key`` (its SL stays)."""
        result = await self._trading("cancel_orders", "Cancelling a monitor's orders", key)
        return as_outcome(result, f"{key}: entries and TPs cancelled (SL kept)")

    async def kill_switch(self) -> Outcome:
        """Cancel every order and close every position, on every account."""
        result = await self._trading("kill_switch", "The kill switch")
        if isinstance(result, list):
            return Outcome(True, "kill switch: " + "; ".join(describe_kill(r) for r in result))
        return as_outcome(result, "kill switch done")

    async def set_paused(self, paused: bool) -> Outcome:
        """Pause or resume new entries on every account (protection keeps running)."""
        method = "pause_entries" if paused else "resume_entries"
        what = "Pausing new entries" if paused else "Resuming new entries"
        result = await self._trading(method, what)
        done = "new entries paused (protection keeps running)" if paused else "new entries resumed"
        return as_outcome(result, done)

    # --- price alerts -------------------------------------------------------------------------

    def price_alerts(self) -> list[dict[str, Any]]:
        """Every price alert (armed and triggered), as the snapshot's ``price_alerts`` rows."""
        return list(self._call("price_alerts", "snapshot", "Price alerts")())

    async def add_price_alert(self, text: str) -> Outcome:
        """Add the alert the operator typed (``BTCUSDT above 100000 [note]``); a refusal says why."""
        add = self._call("price_alerts", "add_spec", "Price alerts")
        try:
            alert = await _resolve(add(text))
        except PriceAlertRejected as exc:
            return Outcome(False, f"price alert refused: {'; '.join(exc.errors)}")
        return Outcome(True, f"price alert #{alert.id} added: {alert.describe()}")

    async def delete_price_alert(self, alert_id: int) -> Outcome:
        """Delete price alert ``alert_id``."""
        delete = self._call("price_alerts", "delete", "Price alerts")
        try:
            alert = await _resolve(delete(alert_id))
        except PriceAlertRejected as exc:
            return Outcome(False, f"price alert not deleted: {'; '.join(exc.errors)}")
        return Outcome(True, f"price alert #{alert.id} deleted: {alert.describe()}")

    def engine_state(self) -> str:
        """``running`` / ``reconciling`` / ``paused`` / ``degraded``: the TP/SL manager's view when it
        has one (it knows about reconciliation and pauses), else the runtime's."""
        runtime_state = str(getattr(self.runtime.state, "value", self.runtime.state))
        manager = getattr(self.runtime, "tpsl", None)
        if runtime_state == "degraded" or manager is None:
            return runtime_state
        return str(manager.engine_state)

    def is_paused(self) -> bool:
        """Whether new entries are paused (on every account)."""
        manager = getattr(self.runtime, "tpsl", None)
        if manager is not None and hasattr(manager, "is_paused"):
            return all(manager.is_paused(a) for a in getattr(manager, "venues", {}))
        return str(getattr(self.runtime.state, "value", self.runtime.state)) == "paused"


def describe_kill(report: Any) -> str:
    """One account's kill-switch report in words."""
    closing = len(report.monitors_closing) + len(report.positions_closed)
    text = f"{report.account}: closing {closing} position(s), cancelled {report.orders_cancelled} order(s)"
    return text + (f", errors: {', '.join(report.errors)}" if report.errors else "")


def as_outcome(result: Any, done: str) -> Outcome:
    """An engine action's return value as an :class:`Outcome` (a refusal already is one)."""
    return result if isinstance(result, Outcome) else Outcome(True, done)


def describe_flush(written: Any) -> str:
    """Say what a flush wrote, whatever shape the store reports it in."""
    if written is None:
        return "done"
    records = getattr(written, "records", None)
    if records is not None:
        if not records:
            return "nothing pending"
        size = getattr(written, "bytes", None)
        kind = "full snapshot" if getattr(written, "full_write", False) else "journal append"
        seq = getattr(written, "seq", None)
        detail = ", ".join(p for p in (kind, None if seq is None else f"seq {seq}") if p)
        size_text = f", {size} bytes" if size is not None else ""
        return f"{_plural(records, 'record')}{size_text} ({detail})"
    if isinstance(written, int):
        return f"{_plural(written, 'record')} written"
    if isinstance(written, Mapping):
        return ", ".join(f"{k}={v}" for k, v in written.items()) or "nothing pending"
    return str(written)


def _count_changed(changed: Any) -> str:
    if isinstance(changed, list | tuple):
        return f"{len(changed)} changed" if changed else "no change"
    return "applied"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
