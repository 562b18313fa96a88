"""One simulated account: its USDT balance, positions, leverage, working orders and recent history.

The account holds state and answers questions about it (margin in use, available balance, views as
:mod:`engine.core.models` records); the order lifecycle that changes it lives in :mod:`engine.sim.matcher`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from engine.core.models import Execution, Order, OrderType, Position, Side, Wallet
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
    """The state of one account on the simulated exchange.

    Every change to a symbol's orders, position or leverage goes through :meth:`touch` (the matcher
    calls it where it changes an order in place; :meth:`add_order`, :meth:`finish`, :meth:`set_leverage`
    and a new :meth:`position` do it themselves). That one mark keeps the exchange's cost per action
    independent of how many symbols the account holds: the margin and uPnL sums are cached per symbol
    and recomputed only for touched symbols, and the journal writes only the symbols touched since its
    last record (:attr:`dirty`).
    """

    name: str
    balance: Decimal
    leverage: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[str, PositionState] = field(default_factory=dict)
    orders: dict[str, WorkingOrder] = field(default_factory=dict)
    """Open orders by order id, in creation order (the order they are matched in). Read-only outside
    this class: add and remove them with :meth:`add_order`, :meth:`finish` and :meth:`drop_order`."""
    finished: deque[WorkingOrder] = field(default_factory=lambda: deque(maxlen=ORDER_HISTORY))
    executions: deque[Execution] = field(default_factory=lambda: deque(maxlen=EXECUTION_HISTORY))
    dirty: set[str] = field(default_factory=set, compare=False)
    """Symbols touched since the journal last wrote this account (it clears them once written)."""
    _by_symbol: dict[str, dict[str, WorkingOrder]] = field(default_factory=dict, repr=False, compare=False)
    _by_link: dict[str, WorkingOrder] = field(default_factory=dict, repr=False, compare=False)
    _order_margin: dict[str, Decimal] = field(default_factory=dict, repr=False, compare=False)
    _position_margin: dict[str, Decimal] = field(default_factory=dict, repr=False, compare=False)
    _upnl: dict[str, tuple[float, Decimal]] = field(default_factory=dict, repr=False, compare=False)
    _reach: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _views: dict[str, Order] = field(default_factory=dict, repr=False, compare=False)
    """Open orders as the venue reports them, by order id, until their symbol is touched."""
    _ranks: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    _next_rank: int = field(default=0, repr=False, compare=False)
    # The sums over every symbol, kept up to date symbol by symbol: a touched symbol's cached
    # figures leave the totals at once and come back, worked out again, at the next sum.
    _position_margin_total: Decimal = field(default=ZERO, repr=False, compare=False)
    _order_margin_total: Decimal = field(default=ZERO, repr=False, compare=False)
    _upnl_total: Decimal = field(default=ZERO, repr=False, compare=False)
    _upnl_marks: Mapping[str, float] | None = field(default=None, repr=False, compare=False)
    """The marks ``_upnl_total`` is at (None: not worked out yet)."""
    _margin_stale: set[str] | None = field(default=None, repr=False, compare=False)
    """Symbols whose margins are not in the totals (None: none are; every symbol's to work out)."""
    _upnl_stale: set[str] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        for order in self.orders.values():
            self._index(order)

    # --- changes -----------------------------------------------------------------------------
    def touch(self, symbol: str) -> None:
        """``symbol``'s orders, position or leverage changed: drop its cached sums, journal it next."""
        self.dirty.add(symbol)
        if self._margin_stale is not None:
            margin = self._order_margin.pop(symbol, None)
            if margin is not None:
                self._order_margin_total -= margin
            margin = self._position_margin.pop(symbol, None)
            if margin is not None:
                self._position_margin_total -= margin
            self._margin_stale.add(symbol)
        upnl = self._upnl.pop(symbol, None)
        if self._upnl_marks is not None:
            if upnl is not None:
                self._upnl_total -= upnl[1]
            self._upnl_stale.add(symbol)
        self._reach.pop(symbol, None)
        if self._views:
            for order_id in self._by_symbol.get(symbol, ()):
                self._views.pop(order_id, None)

    def add_order(self, order: WorkingOrder) -> None:
        """Put a new order on the book."""
        self.orders[order.order_id] = order
        self._index(order)
        self.touch(order.symbol)

    def finish(self, order: WorkingOrder) -> None:
        """Move a no-longer-open order from the book to the history."""
        self.drop_order(order.order_id)
        self.finished.append(order)

    def put_order(self, order: WorkingOrder) -> None:
        """Add an order, or replace the open order with the same id where it stands (journal replay)."""
        old = self.orders.get(order.order_id)
        if old is None:
            self.add_order(order)
            return
        self.orders[order.order_id] = order
        self._by_symbol[old.symbol].pop(order.order_id, None)
        if old.link_id and self._by_link.get(old.link_id) is old:
            del self._by_link[old.link_id]
        self._by_symbol.setdefault(order.symbol, {})[order.order_id] = order
        if order.link_id:
            self._by_link[order.link_id] = order
        self.touch(old.symbol)
        self.touch(order.symbol)

    def order_rank(self, order_id: str) -> int:
        """Where an open order stands in creation order (a larger rank came later)."""
        return self._ranks[order_id]

    def drop_order(self, order_id: str) -> None:
        """Take an order off the book (no history: :meth:`finish` keeps one)."""
        order = self.orders.pop(order_id, None)
        if order is None:
            return
        self._by_symbol.get(order.symbol, {}).pop(order_id, None)
        self._ranks.pop(order_id, None)
        self._views.pop(order_id, None)
        if order.link_id and self._by_link.get(order.link_id) is order:
            del self._by_link[order.link_id]
        self.touch(order.symbol)

    def set_leverage(self, symbol: str, value: Decimal) -> None:
        self.leverage[symbol] = value
        self.touch(symbol)

    def _index(self, order: WorkingOrder) -> None:
        self._by_symbol.setdefault(order.symbol, {})[order.order_id] = order
        self._ranks[order.order_id] = self._next_rank
        self._next_rank += 1
        if order.link_id:
            self._by_link[order.link_id] = order

    # --- lookups -----------------------------------------------------------------------------
    def position(self, symbol: str) -> PositionState:
        """The symbol's position (flat when never traded)."""
        state = self.positions.get(symbol)
        if state is None:
            state = self.positions[symbol] = PositionState()
            self.touch(symbol)
        return state

    def leverage_of(self, symbol: str) -> Decimal:
        return self.leverage.get(symbol, DEFAULT_LEVERAGE)

    def find_open(self, symbol: str, order_id: str = "", link_id: str = "") -> WorkingOrder | None:
        """An open order of ``symbol`` by order id (preferred) or link id."""
        if order_id:
            order = self.orders.get(order_id)
        elif link_id:
            order = self._by_link.get(link_id)
        else:
            return None
        return order if order is not None and order.symbol == symbol else None

    def link_in_use(self, link_id: str) -> bool:
        """An open order already carries this orderLinkId."""
        return bool(link_id) and link_id in self._by_link

    def orders_by_symbol(self) -> Iterator[tuple[str, Mapping[str, WorkingOrder]]]:
        """Each symbol with open orders, and its orders by id (in creation order)."""
        return ((symbol, orders) for symbol, orders in self._by_symbol.items() if orders)

    def reach_of(self, symbol: str, compute: Callable[[Iterable[WorkingOrder]], Any]) -> Any:
        """``compute`` of the symbol's open orders, kept until the symbol is next touched (the
        matcher's price band within which none of them is reached)."""
        reach = self._reach.get(symbol)
        if reach is None:
            reach = self._reach[symbol] = compute(self._by_symbol.get(symbol, {}).values())
        return reach

    def order_views(self, symbol: str | None = None) -> list[Order]:
        """Open orders, of one symbol or all, in creation order, as the venue reports them. A view is
        made again only once its symbol was touched: a read of a thousand positions' three thousand
        orders made them all (15-45 ms on the engine's loop, where the simulator answers)."""
        views, name = self._views, self.name
        shown: list[Order] = []
        for order in self.open_orders(symbol):
            view = views.get(order.order_id)
            if view is None:
                view = views[order.order_id] = order.snapshot(name)
            shown.append(view)
        return shown

    def open_orders(self, symbol: str | None = None) -> Iterator[WorkingOrder]:
        """Open orders, of one symbol or all, in creation order."""
        if symbol is None:
            return iter(self.orders.values())
        return iter(self._by_symbol.get(symbol, {}).values())

    # --- margin ------------------------------------------------------------------------------
    def upnl(self, marks: Mapping[str, float]) -> Decimal:
        """Unrealised PnL of every position at ``marks``.

        Worked out for every position when the marks are a new mapping (the feed's, never changed once
        handed out: a price moved), else only for the positions touched since. At a thousand positions
        the first is the tick's mark-to-market; an action's wallet push is the second."""
        if marks is not self._upnl_marks:
            symbols: Iterable[str] = self.positions
            self._upnl_total, self._upnl_marks = ZERO, marks
        else:
            symbols = self._upnl_stale
        for symbol in symbols:
            state = self.positions.get(symbol)
            if state is not None and state.size:
                self._upnl_total += self._position_upnl(symbol, state, marks[symbol])
        self._upnl_stale.clear()
        return self._upnl_total

    def _position_upnl(self, symbol: str, state: PositionState, mark: float) -> Decimal:
        """The position's uPnL at ``mark``, kept until the mark moves or the symbol is touched."""
        cached = self._upnl.get(symbol)
        if cached is None or cached[0] != mark:
            cached = self._upnl[symbol] = (mark, unrealised_pnl(state.size, state.entry, dec(mark)))
        return cached[1]

    def position_margin(self) -> Decimal:
        """Initial margin of every open position."""
        self._settle_margins()
        return self._position_margin_total

    def order_margin(self) -> Decimal:
        """Margin held by resting limit orders that may open positions (reduce-only ones hold none)."""
        self._settle_margins()
        return self._order_margin_total

    def _settle_margins(self) -> None:
        """Bring the margin totals up to date: every symbol's the first time, then the touched ones'."""
        stale = self._margin_stale
        if stale is not None and not stale:
            return
        symbols: Iterable[str] = set(self.positions) | set(self._by_symbol) if stale is None else stale
        for symbol in symbols:
            state = self.positions.get(symbol)
            if state is not None and state.size:
                margin = initial_margin(state.size, state.entry, self.leverage_of(symbol))
                self._position_margin[symbol] = margin
                self._position_margin_total += margin
            orders = self._by_symbol.get(symbol)
            if orders:
                margin = self._symbol_order_margin(orders.values())
                self._order_margin[symbol] = margin
                self._order_margin_total += margin
        self._margin_stale = set()

    def _symbol_order_margin(self, orders: Iterable[WorkingOrder]) -> Decimal:
        total = ZERO
        for order in orders:
            if order.is_resting_limit and not order.closes_only and order.price is not None:
                total += initial_margin(order.remaining, dec(order.price), self.leverage_of(order.symbol))
        return total

    def uncached_sums(self, marks: Mapping[str, float]) -> tuple[Decimal, Decimal, Decimal]:
        """uPnL, position margin and order margin computed afresh (the caches' reference, for tests)."""
        positions = [(s, p) for s, p in self.positions.items() if p.size]
        return (
            sum((unrealised_pnl(p.size, p.entry, dec(marks[s])) for s, p in positions), ZERO),
            sum((initial_margin(p.size, p.entry, self.leverage_of(s)) for s, p in positions), ZERO),
            self._symbol_order_margin(self.orders.values()),
        )

    def sums(self, marks: Mapping[str, float]) -> tuple[Decimal, Decimal, Decimal]:
        """uPnL at ``marks``, position margin and order margin. Each is kept as a total that a touched
        symbol leaves and comes back to: every acknowledged action pushes the wallet and checks the
        available margin, and at a thousand positions adding up a thousand cached figures three
        times per action was most of what an action cost. (The figures are rounded to 8 decimals,
        so a total kept this way is the sum afresh to the digit: :meth:`uncached_sums`.)"""
        return self.upnl(marks), self.position_margin(), self.order_margin()

    def available(self, marks: Mapping[str, float]) -> Decimal:
        """Equity minus the initial margin of positions and resting orders (may be negative)."""
        upnl, position_margin, order_margin = self.sums(marks)
        return self.balance + upnl - position_margin - order_margin

    # --- views -------------------------------------------------------------------------------
    def wallet(self, marks: Mapping[str, float], ts: float) -> Wallet:
        upnl = self.sums(marks)[0]
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
    def to_state(self, array: Callable[[Iterable[Any]], Any] = list) -> dict[str, Any]:
        """JSON-ready record; its histories and orders go into ``array`` (a list; the state file's
        writer passes :class:`~engine.sim.state.JsonArray`, which makes each record as it writes it)."""
        return {
            "name": self.name,
            "balance": str(self.balance),
            "leverage": {s: str(v) for s, v in self.leverage.items()},
            "positions": {s: p.to_state() for s, p in self.positions.items()},
            "orders": array(o.to_state() for o in self.orders.values()),
            "finished": array(o.to_state() for o in self.finished),
            "executions": array(execution_to_state(e) for e in self.executions),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> SimAccount:
        account = cls(name=data["name"], balance=Decimal(data["balance"]))
        account.leverage = {s: Decimal(v) for s, v in data["leverage"].items()}
        account.positions = {s: PositionState.from_state(p) for s, p in data["positions"].items()}
        for raw in data["orders"]:
            account.add_order(WorkingOrder.from_state(raw))
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
