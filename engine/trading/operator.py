"""Operator actions: the engine API the console and the CLI call.

Open a trade, close one position at market, cancel a monitor's orders, move a stop-loss to breakeven
now, pause/resume new entries, and the kill switch. Each goes through the TP/SL manager's per-account
lock and the same pure decisions as venue events, so an operator action and a fill never interleave.
A refused action raises :class:`ActionRefused` with a sentence the console can show as is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from engine.alerts.model import Severity
from engine.core.models import CancelRequest, Monitor, OrderRequest, OrderType, TimeInForce
from engine.core.numbers import fmt_key
from engine.trading.approaches import TradeRequest
from engine.trading.manager import TpslManager
from engine.trading.monitor import breakeven_now, cancel_orders, request_close
from engine.trading.orders import CancelOrder, execute_actions
from engine.venue.errors import VenueError


class ActionRefused(Exception):
    """An operator action that could not be done; the message says why."""


@dataclass(slots=True)
class KillReport:
    """What the kill switch did on one account."""

    account: str
    monitors_closing: list[str] = field(default_factory=list)
    orders_cancelled: int = 0
    positions_closed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


Follower = Callable[[str, str, str], Awaitable[None]]
"""``follower(verb, key, intent)``, called after the operator's ``close`` / ``cancel`` / ``breakeven``
on the monitor ``key`` went through: how the mirror follows what the operator does on main."""


class OperatorActions:
    """The operator's verbs over one :class:`TpslManager`."""

    def __init__(self, manager: TpslManager, followers: Sequence[Follower] = ()) -> None:
        self.manager = manager
        self.followers = list(followers)

    async def _followed(self, verb: str, key: str, intent: str = "manual") -> None:
        for follower in self.followers:
            await follower(verb, key, intent)

    def _key(self, key: str) -> str:
        if key not in self.manager.monitors:
            raise ActionRefused(f"no monitored position {fmt_key(key)}")
        return key

    async def open_trade(self, request: TradeRequest) -> Monitor:
        """Open a trade (raises :class:`engine.trading.approaches.TradeRejected` with every problem)."""
        return await self.manager.open_trade(request)

    async def close_position(self, key: str, intent: str = "manual") -> Monitor | None:
        """Close one monitored position at market (reduce-only); the trade is recorded as ``intent``."""
        params = self.manager.params
        monitor = await self.manager.transact(
            self._key(key), lambda m, inst: request_close(m, intent, inst, params)
        )
        await self._followed("close", key, intent)
        return monitor

    async def cancel_orders(self, key: str) -> Monitor | None:
        """Cancel a monitor's entries and take-profits (its stop-loss stays while a position is open)."""
        params = self.manager.params
        monitor = await self.manager.transact(self._key(key), lambda m, inst: cancel_orders(m, inst, params))
        await self._followed("cancel", key)
        return monitor

    async def breakeven_now(self, key: str) -> Monitor | None:
        """Move the stop-loss to breakeven now. Checked against the price the stop triggers on
        (``trading.trigger_by``): refused while that price is unknown or not beyond breakeven."""
        params = self.manager.params
        monitor = self.manager.monitors[self._key(key)]
        price = self.manager.trigger_price(monitor.symbol)
        try:
            after = await self.manager.transact(key, lambda m, inst: breakeven_now(m, price, inst, params))
        except ValueError as exc:
            raise ActionRefused(str(exc)) from None
        await self._followed("breakeven", key)
        return after

    async def pause_entries(self, accounts: Sequence[str] | None = None) -> None:
        """Refuse new entries (all accounts when None); monitors keep protecting positions."""
        await self.manager.set_paused(list(accounts or self.manager.venues), True)

    async def resume_entries(self, accounts: Sequence[str] | None = None) -> None:
        """Accept new entries again."""
        await self.manager.set_paused(list(accounts or self.manager.venues), False)

    async def kill_switch(self, accounts: Sequence[str] | None = None) -> list[KillReport]:
        """Pause entries, cancel every order and close every position at market (reduce-only) on the
        given accounts (all when None). Monitored positions close through their monitors (ledger
        reason ``kill_switch``); unmonitored positions and other orders are closed/cancelled directly."""
        targets = list(accounts or self.manager.venues)
        await self.manager.set_paused(targets, True)
        reports = [await self._kill_account(account) for account in targets]
        return reports

    async def _kill_account(self, account: str) -> KillReport:
        manager = self.manager
        report = KillReport(account)
        for key in [k for k, m in manager.monitors.items() if m.account == account]:
            with contextlib.suppress(ActionRefused, KeyError):  # closed meanwhile
                await self.close_position(key, "kill_switch")
                report.monitors_closing.append(key)
        venue = manager.venues[account]
        try:
            async with manager.lock(account):
                mine = [m for m in manager.monitors.values() if m.account == account]
                ours = {o.order_id for m in mine for o in m.orders.values() if o.order_id}
                others = [o for o in await venue.open_orders() if o.order_id not in ours]
                cancels = [_cancel(o.symbol, o.order_id) for o in others]
                results = await execute_actions(venue, cancels, manager.clock)
                report.orders_cancelled = sum(1 for r in results if r.ok)
                monitored = {m.symbol for m in mine}
                for position in await venue.positions():
                    if not position.is_open or position.symbol in monitored or position.side is None:
                        continue
                    close = OrderRequest(
                        symbol=position.symbol,
                        side=position.side.opposite,
                        order_type=OrderType.MARKET,
                        qty=position.size,
                        reduce_only=True,
                        time_in_force=TimeInForce.IOC,
                    )
                    await venue.place(close)
                    report.positions_closed.append(position.symbol)
        except VenueError as exc:
            report.errors.append(str(exc))
        closing = len(report.monitors_closing) + len(report.positions_closed)
        manager.alerts.raise_alert(
            Severity.CRITICAL,
            "kill_switch",
            f"{account}: kill switch: closing {closing} position(s), cancelled {report.orders_cancelled} "
            "other order(s)",
            key=account,
        )
        return report


def _cancel(symbol: str, order_id: str) -> CancelOrder:
    """A cancel of an order that belongs to no monitor."""
    return CancelOrder("", None, CancelRequest(symbol, order_id=order_id))
