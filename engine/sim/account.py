"""One simulated account: its USDT balance, positions, leverage, working orders and recent history.

The account holds state and answers questions about it (margin in use, available balance, views as
:mod:`engine.core.models` records); the order lifecycle that changes it lives in :mod:`engine.sim.matcher`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.core.models import Execution, OrderType, Position, Side, Wallet
from engine.sim.fills import dec, money
from engine.sim.ledger import ZERO, initial_margin, unrealised_pnl
from engine.sim.orders import WorkingOrder

DEFAULT_LEVERAGE = Decimal(10)
EXECUTION_HISTORY = 2000
"""Executions kept per account (Bybit's /v5/execution/list also only reaches back so far)."""
ORDER_HISTORY = 500
"""Finished orders kept per account, for lookups by id after the fact."""


@dataclass(slots=True)
class PositionState:
    """A one-way position: signed size, average entry, and the realised PnL (net of fees) since it opened."""

    size: Decimal = ZERO
    entry: Decimal = ZERO
    realised: Decimal = ZERO
    updated: float = 0.0

    def to_state(self) -> dict[str, Any]:
        """JSON-ready record (Decimals as strings)."""
        return {
            "size": str(self.size),
            "entry": str(self.entry),
            "realised": str(self.realised),
            "updated": self.updated,
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> PositionState:
        """Inverse of :meth:`to_state`."""
        return cls(
            Decimal(data["size"]), Decimal(data["entry"]), Decimal(data["realised"]), float(data["updated"])
        )


@dataclass(slots=True)
class SimAccount:
    """The state of one account on the simulated exchange."""

    name: str
    balance: Decimal
    leverage: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, PositionState] = field(default_factory=dict)
    orders: dict[str, WorkingOrder] = field(default_factory=dict)
    """Open orders by order id, in creation order (the order they are matched in)."""
    finished: deque[WorkingOrder] = field(default_factory=lambda: deque(maxlen=ORDER_HISTORY))
    executions: deque[Execution] = field(default_factory=lambda: deque(maxlen=EXECUTION_HISTORY))

    # --- lookups -----------------------------------------------------------------------------
    def position(self, symbol: str) -> PositionState:
        """The symbol's position (flat when never traded)."""
        return self.positions.setdefault(symbol, PositionState())

    def leverage_of(self, symbol: str) -> Decimal:
        return self.leverage.get(symbol, DEFAULT_LEVERAGE)

    def find_open(self, symbol: str, order_id: str = "", link_id: str = "") -> WorkingOrder | None:
        """An open order of ``symbol`` by order id (preferred) or link id."""
        if order_id:
            order = self.orders.get(order_id)
            return order if order is not None and order.symbol == symbol else None
        if link_id:
            return next(
                (o for o in self.orders.values() if o.link_id == link_id and o.symbol == symbol), None
            )
        return None

    def link_in_use(self, link_id: str) -> bool:
        """An open order already carries this orderLinkId."""
        return bool(link_id) and any(o.link_id == link_id for o in self.orders.values())

    def open_orders(self, symbol: str | None = None) -> Iterator[WorkingOrder]:
        return (o for o in self.orders.values() if symbol is None or o.symbol == symbol)

    def finish(self, order: WorkingOrder) -> None:
        """Move a no-longer-open order from the book to the history."""
        self.orders.pop(order.order_id, None)
        self.finished.append(order)

    # --- margin ------------------------------------------------------------------------------
    def upnl(self, marks: Mapping[str, float]) -> Decimal:
        return sum(
            (unrealised_pnl(p.size, p.entry, dec(marks[s])) for s, p in self.positions.items() if p.size),
            ZERO,
        )

    def position_margin(self) -> Decimal:
        return sum(
            (
                initial_margin(p.size, p.entry, self.leverage_of(s))
                for s, p in self.positions.items()
                if p.size
            ),
            ZERO,
        )

    def order_margin(self) -> Decimal:
        """Margin held by resting limit orders that may open positions (reduce-only ones hold none)."""
        total = ZERO
        for order in self.orders.values():
            if order.is_resting_limit and not order.closes_only and order.price is not None:
                total += initial_margin(order.remaining, dec(order.price), self.leverage_of(order.symbol))
        return total

    def available(self, marks: Mapping[str, float]) -> Decimal:
        """Equity minus the initial margin of positions and resting orders (may be negative)."""
        return self.balance + self.upnl(marks) - self.position_margin() - self.order_margin()

    # --- views -------------------------------------------------------------------------------
    def wallet(self, marks: Mapping[str, float], ts: float) -> Wallet:
        upnl = self.upnl(marks)
        return Wallet(
            account=self.name,
            equity=float(self.balance + upnl),
            wallet_balance=float(self.balance),
            available=float(max(ZERO, self.available(marks))),
            upnl=float(upnl),
            ts=ts,
        )

    def position_view(self, symbol: str, mark: float, ts: float) -> Position:
        state = self.position(symbol)
        side = None if state.size == 0 else (Side.BUY if state.size > 0 else Side.SELL)
        return Position(
            account=self.name,
            symbol=symbol,
            side=side,
            size=float(abs(state.size)),
            entry_price=float(state.entry),
            mark_price=mark,
            upnl=float(unrealised_pnl(state.size, state.entry, dec(mark))),
            realised_pnl=float(money(state.realised)),
            leverage=float(self.leverage_of(symbol)),
            ts=state.updated or ts,
        )

    # --- persistence -------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "balance": str(self.balance),
            "leverage": {s: str(v) for s, v in self.leverage.items()},
            "positions": {s: p.to_state() for s, p in self.positions.items()},
            "orders": [o.to_state() for o in self.orders.values()],
            "finished": [o.to_state() for o in self.finished],
            "executions": [execution_to_state(e) for e in self.executions],
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> SimAccount:
        account = cls(name=data["name"], balance=Decimal(data["balance"]))
        account.leverage = {s: Decimal(v) for s, v in data["leverage"].items()}
        account.positions = {s: PositionState.from_state(p) for s, p in data["positions"].items()}
        for raw in data["orders"]:
            order = WorkingOrder.from_state(raw)
            account.orders[order.order_id] = order
        account.finished.extend(WorkingOrder.from_state(raw) for raw in data["finished"])
        account.executions.extend(execution_from_state(raw) for raw in data["executions"])
        return account


def execution_to_state(e: Execution) -> dict[str, Any]:
    """An execution as a JSON-ready record."""
    return {
        "account": e.account,
        "exec_id": e.exec_id,
        "order_id": e.order_id,
        "link_id": e.link_id,
        "symbol": e.symbol,
        "side": e.side.value,
        "price": e.price,
        "qty": e.qty,
        "fee": e.fee,
        "is_maker": e.is_maker,
        "closed_size": e.closed_size,
        "order_type": e.order_type.value,
        "ts": e.ts,
        "exec_type": e.exec_type,
        "fee_rate": e.fee_rate,
    }


def execution_from_state(data: Mapping[str, Any]) -> Execution:
    """Inverse of :func:`execution_to_state`."""
    return Execution(
        account=data["account"],
        exec_id=data["exec_id"],
        order_id=data["order_id"],
        link_id=data["link_id"],
        symbol=data["symbol"],
        side=Side(data["side"]),
        price=float(data["price"]),
        qty=float(data["qty"]),
        fee=float(data["fee"]),
        is_maker=bool(data["is_maker"]),
        closed_size=float(data["closed_size"]),
        order_type=OrderType(data["order_type"]),
        ts=float(data["ts"]),
        exec_type=data["exec_type"],
        fee_rate=float(data["fee_rate"]),
    )
