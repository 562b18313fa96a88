"""Typed records the engine trades with: instruments, market data, wallets, positions, orders,
executions, and the requests and acknowledgements that cross the Venue contract.

Prices and quantities are floats that are always rounded to the instrument's tickSize / qtyStep
through :func:`round_to_step`, which does the arithmetic in Decimal so that 0.1 + 0.2 never leaks
into an order. Every record is a slotted dataclass; the frozen ones are values, the others are
owned and mutated by exactly one component (the simulator's book, a monitor).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from enum import IntEnum, StrEnum
from functools import cache
from typing import Any, Literal

RoundingMode = Literal["nearest", "down", "up"]
_ROUNDING = {"nearest": ROUND_HALF_EVEN, "down": ROUND_FLOOR, "up": ROUND_CEILING}


_FLOAT_UNITS_MAX = 1e9
"""Below this many steps, a value's multiple of its step may be told and made in floats (see
:func:`round_to_step`): the product's error is then far inside half the step's last decimal (and
beyond it the margin below is wider than the boundaries' spacing anyway)."""

_BOUNDARY_MARGIN = 1e-9
"""How close (relative to the quotient, at least absolute) to a rounding boundary a quotient in
floats is handed to Decimal: the float quotient's error is ~1e-15 relative, this is a million times it."""

_FLOOR_CEIL: dict[RoundingMode, Callable[[float], int]] = {"down": math.floor, "up": math.ceil}


def round_to_step(value: float, step: float, mode: RoundingMode = "nearest") -> float:
    """Round ``value`` to a multiple of ``step`` ("down" and "up" are toward -inf / +inf).

    The result is the one of the arithmetic in Decimal on the two numbers as they print
    (:func:`_round_in_decimal`), to the bit. That costs microseconds a value, and a thousand
    positions' marks are rounded at every refresh: so the quotient is first taken in floats, and
    when it is clearly away from a rounding boundary (a half for "nearest", an integer for "down"
    and "up"), the multiple is made there and rounded to the step's decimals, which gives the float
    nearest that decimal, as Decimal's does. Near a boundary, or far too many steps, Decimal decides.

    A step that is not a positive finite number is refused (ValueError): rounding to it would leave
    the value as it is, and an unrounded quantity must never reach an order.
    """
    if not math.isfinite(step) or step <= 0:
        raise ValueError(f"cannot round to a step of {step!r}")
    units = value / step
    size = abs(units)
    if size < _FLOAT_UNITS_MAX:  # also False for nan and inf, which Decimal handles (or refuses)
        margin = _BOUNDARY_MARGIN * max(1.0, size)
        whole = math.floor(units)
        if mode == "nearest":
            clear = abs(units - whole - 0.5) > margin
            multiple = round(units)
        else:
            clear = margin < units - whole < 1.0 - margin
            multiple = _FLOOR_CEIL[mode](units)
        if clear:
            if multiple == 0:  # Decimal's zero keeps the quotient's sign
                return math.copysign(0.0, value)
            return round(multiple * step, step_decimals(step))
    return _round_in_decimal(value, step, mode)


def _round_in_decimal(value: float, step: float, mode: RoundingMode) -> float:
    """:func:`round_to_step` in Decimal, on ``value`` and ``step`` as they print: the reference."""
    d_step = Decimal(str(step))
    units = (Decimal(str(value)) / d_step).to_integral_value(rounding=_ROUNDING[mode])
    return float(units * d_step)


@cache
def step_decimals(step: float) -> int:
    """How many decimals a step has (0.001 -> 3), for formatting on the wire (remembered: an
    instrument has two steps, asked for at every rounding)."""
    exponent = Decimal(str(step)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def format_step(value: float, step: float) -> str:
    """Format a value with exactly the decimals of ``step`` (Bybit sends numbers as such strings)."""
    return f"{value:.{step_decimals(step)}f}"


class Side(StrEnum):
    """Order or position side, spelled as Bybit spells it."""

    BUY = "Buy"
    SELL = "Sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        """+1 for Buy (long), -1 for Sell (short)."""
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    """Bybit's orderType. ``UNKNOWN`` is Bybit's own spelling on rows no order made (funding, ADL,
    liquidation executions), and stands for any value this code does not know: kept, not rejected."""

    MARKET = "Market"
    LIMIT = "Limit"
    UNKNOWN = "UNKNOWN"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    POST_ONLY = "PostOnly"


class TriggerBy(StrEnum):
    LAST_PRICE = "LastPrice"
    MARK_PRICE = "MarkPrice"
    INDEX_PRICE = "IndexPrice"


class TriggerDirection(IntEnum):
    """Bybit's triggerDirection: 1 fires when price rises to the trigger, 2 when it falls to it."""

    RISE = 1
    FALL = 2


class OrderStatus(StrEnum):
    """Bybit V5 orderStatus values (linear)."""

    NEW = "New"
    PARTIALLY_FILLED = "PartiallyFilled"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"
    UNTRIGGERED = "Untriggered"
    TRIGGERED = "Triggered"
    DEACTIVATED = "Deactivated"
    PARTIALLY_FILLED_CANCELED = "PartiallyFilledCanceled"
    UNKNOWN = "UNKNOWN"
    """A status this code does not know (kept, not rejected). Counted as open: taking an order that
    may still work for gone would place a second one beside it; reconciliation sees it leave."""

    @property
    def is_open(self) -> bool:
        """Still working on the book (or waiting for its trigger)."""
        return self in _OPEN_STATUSES


_OPEN_STATUSES = frozenset(
    {
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.UNTRIGGERED,
        OrderStatus.TRIGGERED,
        OrderStatus.UNKNOWN,
    }
)


@dataclass(frozen=True, slots=True)
class Instrument:
    """A linear USDT perpetual's trading filters (from /v5/market/instruments-info)."""

    symbol: str
    tick_size: float
    qty_step: float
    min_qty: float
    max_qty: float
    min_notional: float = 5.0
    max_leverage: float = 100.0
    min_leverage: float = 1.0

    def __post_init__(self) -> None:
        # A zero step would make every rounding a no-op: such an instrument cannot be traded.
        for name in ("tick_size", "qty_step"):
            step = getattr(self, name)
            if not math.isfinite(step) or step <= 0:
                raise ValueError(f"{self.symbol}: {name} must be a positive number, not {step!r}")

    def round_price(self, price: float, mode: RoundingMode = "nearest") -> float:
        return round_to_step(price, self.tick_size, mode)

    def round_qty(self, qty: float, mode: RoundingMode = "down") -> float:
        return round_to_step(qty, self.qty_step, mode)


@dataclass(frozen=True, slots=True)
class Ticker:
    """Last, mark and best prices of one symbol at a moment."""

    symbol: str
    last: float
    mark: float
    bid: float
    ask: float
    ts: float

    def trigger_reference(self, trigger_by: TriggerBy) -> float | None:
        """The price a conditional order with ``trigger_by`` watches, None when it is not known.

        A ticker carries no index price: the mark stands in for it (Bybit's mark follows the index,
        and the simulator serves IndexPrice triggers by the mark as well)."""
        price = self.last if trigger_by is TriggerBy.LAST_PRICE else self.mark
        return price if price > 0 else None


@dataclass(frozen=True, slots=True)
class Wallet:
    """One account's balance for USDT perpetuals: the USDT coin's row of a UNIFIED account, or the
    account-level totals (in USD) when the money is in other coins or the row's fields are empty."""

    account: str
    equity: float
    wallet_balance: float
    available: float
    upnl: float
    ts: float


@dataclass(frozen=True, slots=True)
class Position:
    """A one-way (positionIdx 0) linear position. ``side`` is None when flat, as Bybit's ``""``.

    A row with size 0 is never a position, in any mode. ``position_idx`` 1 / 2 (the Buy / Sell side)
    comes from an account in hedge mode, which the engine refuses to trade (:attr:`hedge_mode`).
    """

    account: str
    symbol: str
    side: Side | None
    size: float
    entry_price: float
    mark_price: float
    upnl: float
    realised_pnl: float
    leverage: float
    ts: float
    position_idx: int = 0

    @property
    def is_open(self) -> bool:
        return self.side is not None and self.size > 0

    @property
    def hedge_mode(self) -> bool:
        """The row is one side of a hedge-mode account (positionIdx 1 = Buy side, 2 = Sell side)."""
        return self.position_idx in (1, 2)


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the venue reports it (open or just finished)."""

    account: str
    order_id: str
    link_id: str
    symbol: str
    side: Side
    order_type: OrderType
    qty: float
    price: float | None
    status: OrderStatus
    filled_qty: float = 0.0
    avg_fill_price: float | None = None
    trigger_price: float | None = None
    trigger_direction: TriggerDirection | None = None
    trigger_by: TriggerBy | None = None
    reduce_only: bool = False
    close_on_trigger: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    created: float = 0.0
    updated: float = 0.0
    reject_reason: str = ""

    @property
    def remaining_qty(self) -> float:
        return max(0.0, self.qty - self.filled_qty)

    @property
    def is_conditional(self) -> bool:
        return self.trigger_price is not None


class ExecType(StrEnum):
    """Bybit's ``execType``: what an execution row is. Only some are fills of orders."""

    TRADE = "Trade"
    BLOCK_TRADE = "BlockTrade"
    MOVE_POSITION = "MovePosition"
    FUNDING = "Funding"
    ADL = "AdlTrade"
    BUST = "BustTrade"
    SETTLE = "Settle"
    DELIVERY = "Delivery"


FORCED_EXIT_REASONS = {
    ExecType.ADL.value: "adl",
    ExecType.BUST.value: "liquidation",
    ExecType.SETTLE.value: "delivery",
    ExecType.DELIVERY.value: "delivery",
}
"""Executions the exchange makes itself to close (part of) a position, and the ledger reason of each."""

POSITION_FILLS = frozenset({ExecType.TRADE.value, ExecType.BLOCK_TRADE.value, ExecType.MOVE_POSITION.value})
"""Executions that change a position as a trade does (ours when the orderLinkId is ours)."""


@dataclass(frozen=True, slots=True)
class Execution:
    """One execution row. Fills are authoritative: the engine decides from these, never from size
    changes. ``exec_type`` keeps Bybit's raw string, so a type this code does not know is kept, not
    rejected; funding rows (``Funding``) are money, never a fill."""

    account: str
    exec_id: str
    order_id: str
    link_id: str
    symbol: str
    side: Side
    price: float
    qty: float
    fee: float
    is_maker: bool
    closed_size: float
    order_type: OrderType
    ts: float
    exec_type: str = "Trade"
    fee_rate: float = 0.0

    @property
    def notional(self) -> float:
        return self.price * self.qty

    @property
    def is_funding(self) -> bool:
        """A funding payment (``fee`` is what was paid; negative when received)."""
        return self.exec_type == ExecType.FUNDING.value

    @property
    def is_position_fill(self) -> bool:
        """A fill that moves the position like a trade (an order's fill, a block trade, a move)."""
        return self.exec_type in POSITION_FILLS

    @property
    def forced_exit_reason(self) -> str | None:
        """``adl``, ``liquidation`` or ``delivery`` when the exchange itself closed (part of) the
        position with this execution, else None."""
        return FORCED_EXIT_REASONS.get(self.exec_type)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order. ``link_id`` (orderLinkId, at most 36 chars) makes a retry idempotent."""

    symbol: str
    side: Side
    order_type: OrderType
    qty: float
    price: float | None = None
    trigger_price: float | None = None
    trigger_direction: TriggerDirection | None = None
    trigger_by: TriggerBy | None = None
    reduce_only: bool = False
    close_on_trigger: bool = False
    time_in_force: TimeInForce = TimeInForce.GTC
    link_id: str = ""


@dataclass(frozen=True, slots=True)
class AmendRequest:
    """Change an open order in place, addressed by order_id or link_id; None leaves a field as is."""

    symbol: str
    order_id: str = ""
    link_id: str = ""
    qty: float | None = None
    price: float | None = None
    trigger_price: float | None = None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Cancel an open order, addressed by order_id or link_id."""

    symbol: str
    order_id: str = ""
    link_id: str = ""


@dataclass(frozen=True, slots=True)
class OrderAck:
    """The venue accepted a create / amend / cancel."""

    order_id: str
    link_id: str


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """The venue's event stream connected, dropped or resumed (``gap`` means events may be lost)."""

    account: str
    connected: bool
    gap: bool
    reason: str
    ts: float


VenueEvent = Execution | Order | Position | Wallet | Ticker | StreamStatus
"""Everything ``Venue.stream()`` yields."""


@dataclass(slots=True)
class CallCounter:
    """Calls per endpoint path (e.g. ``/v5/order/create``), read by the benchmark and the dashboard."""

    counts: dict[str, int] = field(default_factory=dict)

    def hit(self, endpoint: str, n: int = 1) -> None:
        self.counts[endpoint] = self.counts.get(endpoint, 0) + n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


# --- TP/SL engine state (owned by engine.trading.manager; persisted as JSON through the store) ---


class Phase(StrEnum):
    """A monitor's life: entries working, protected position, after TP1, done."""

    BUILDING = "BUILDING"
    MONITORING = "MONITORING"
    PROFIT_TAKING = "PROFIT_TAKING"
    CLOSED = "CLOSED"


class SlotStatus(StrEnum):
    """Where one of a monitor's orders stands, as far as the engine knows.

    ``new`` is planned but not sent; ``pending`` is sent (its link id is durable) without an answer
    yet; ``cancelling`` is a cancel in flight; ``filled`` is finished by fills (executions may still be
    on their way); ``gone`` is cancelled, rejected or deactivated — re-placed with the next generation
    when still wanted.
    """

    NEW = "new"
    PENDING = "pending"
    OPEN = "open"
    CANCELLING = "cancelling"
    FILLED = "filled"
    GONE = "gone"

    @property
    def live(self) -> bool:
        """The order is (or may be) working on the venue."""
        return self in (SlotStatus.PENDING, SlotStatus.OPEN, SlotStatus.CANCELLING)


class RecordError(ValueError):
    """A stored record (monitor, order slot, trade) that does not have the shape its class needs."""


def _field_problem(annotation: str, value: Any) -> str | None:
    """Why ``value`` does not fit a field annotated ``annotation`` (the string form), or None."""
    kind, _, rest = annotation.partition(" | ")
    if value is None:
        return None if rest == "None" else "must not be null"
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be a number, got {value!r}"
        return None if math.isfinite(value) else f"must be finite, got {value!r}"
    if kind == "int":
        return (
            None
            if isinstance(value, int) and not isinstance(value, bool)
            else f"must be an integer, got {value!r}"
        )
    if kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if kind == "str":
        return None if isinstance(value, str) else f"must be a string, got {value!r}"
    if kind.startswith("list["):
        if not isinstance(value, list):
            return f"must be a list, got {type(value).__name__}"
        return next(filter(None, (_field_problem(kind[5:-1], v) for v in value)), None)
    return None  # enums and nested records are converted (and checked) by their own constructor


def checked_record(cls: Any, data: Any) -> dict[str, Any]:
    """A copy of ``data`` whose keys are ``cls``'s dataclass fields, each of its annotated type
    (finite numbers); raises :class:`RecordError` naming the field. A checksum only proves a record
    was written whole: a crafted or damaged one must fail here, at decoding, not later in a decision."""
    if not isinstance(data, dict):
        raise RecordError(f"{cls.__name__} record must be an object, got {type(data).__name__}")
    known = {f.name: str(f.type) for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RecordError(f"{cls.__name__} record has unknown field(s) {', '.join(unknown)}")
    missing = sorted(
        f.name
        for f in fields(cls)
        if f.name not in data and f.default is MISSING and f.default_factory is MISSING
    )
    if missing:
        raise RecordError(f"{cls.__name__} record lacks {', '.join(missing)}")
    for name, value in data.items():
        problem = _field_problem(known[name], value)
        if problem:
            raise RecordError(f"{cls.__name__}.{name} {problem}")
    return dict(data)


@dataclass(slots=True)
class ManagedOrder:
    """One of a monitor's orders (slot ``e1``.., ``tp1``.., ``sl`` or ``cl``) in its current generation.

    ``filled_qty`` counts fills of the current generation; ``prior_filled`` those of earlier ones,
    so a TP re-placed after an outside cancel keeps what it already took.
    """

    slot: str
    link_id: str
    generation: int
    side: Side
    order_type: OrderType
    qty: float
    price: float | None = None
    trigger_price: float | None = None
    reduce_only: bool = False
    status: SlotStatus = SlotStatus.NEW
    order_id: str = ""
    filled_qty: float = 0.0
    prior_filled: float = 0.0
    failures: int = 0

    @property
    def total_filled(self) -> float:
        return self.prior_filled + self.filled_qty

    def to_dict(self) -> dict[str, object]:
        return {
            "slot": self.slot,
            "link_id": self.link_id,
            "generation": self.generation,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "qty": self.qty,
            "price": self.price,
            "trigger_price": self.trigger_price,
            "reduce_only": self.reduce_only,
            "status": self.status.value,
            "order_id": self.order_id,
            "filled_qty": self.filled_qty,
            "prior_filled": self.prior_filled,
            "failures": self.failures,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManagedOrder:
        """Decode a stored slot; :class:`RecordError` (a ValueError) when its shape is wrong."""
        values = checked_record(cls, data)
        values["side"] = Side(values["side"])
        values["order_type"] = OrderType(values["order_type"])
        values["status"] = SlotStatus(values["status"])
        return cls(**values)


@dataclass(slots=True)
class Monitor:
    """The TP/SL state machine's state for one position (key ``account:symbol:side``).

    Sizes and prices come from executions only: ``entry_qty``/``entry_cost`` sum the entry fills,
    ``exit_qty``/``exit_value`` the exits, ``size`` is what is still open.
    """

    monitor_id: str
    account: str
    symbol: str
    side: Side
    approach: str
    created_at: float
    sl_price: float
    tp_prices: list[float] = field(default_factory=list)
    tp_split: list[float] = field(default_factory=list)
    phase: Phase = Phase.BUILDING
    size: float = 0.0
    entry_qty: float = 0.0
    entry_cost: float = 0.0
    exit_qty: float = 0.0
    exit_value: float = 0.0
    gross_pnl: float = 0.0
    fees: float = 0.0
    funding: float = 0.0
    """Funding paid while the position was open (negative when received); not a fill."""
    position_entry: float = 0.0
    """The average entry of what is held, as the exchange computes it: entries average in, exits
    leave it as it is (0 when flat, or in state saved before it was kept)."""
    breakeven: bool = False
    """The venue accepted the stop at (or beyond) breakeven."""
    breakeven_at: float | None = None
    """A breakeven stop price that waits for the price to pass it, or for the venue to accept it."""
    trail_best: float | None = None
    close_intent: str | None = None
    tps_enabled: bool = True
    entries_closed: bool = False
    tag: str = ""
    opened_at: float | None = None
    last_fill_at: float | None = None
    exit_estimated: bool = False
    """Reconciliation booked part of the exit at an estimated price (no execution explained it)."""
    trim_to: float | None = None
    """A size to reduce the position to at market (a mirror holding more than main x ratio)."""
    orders: dict[str, ManagedOrder] = field(default_factory=dict)
    exec_ids: list[str] = field(default_factory=list)

    def copy(self) -> Monitor:
        """A deep copy, as ``copy.deepcopy`` makes, at a fraction of its cost (reconciliation
        copies a thousand monitors per pass). Every field is immutable but the containers copied
        here; a new mutable field must be copied here too (a test compares with deepcopy)."""
        twin = replace(self, tp_prices=list(self.tp_prices), tp_split=list(self.tp_split))
        twin.orders = {slot: replace(order) for slot, order in self.orders.items()}
        twin.exec_ids = list(self.exec_ids)
        return twin

    @property
    def key(self) -> str:
        return monitor_key(self.account, self.symbol, self.side)

    @property
    def avg_entry(self) -> float:
        return self.entry_cost / self.entry_qty if self.entry_qty > 0 else 0.0

    @property
    def avg_exit(self) -> float:
        return self.exit_value / self.exit_qty if self.exit_qty > 0 else 0.0

    def tp_slots(self) -> list[str]:
        return [f"tp{i + 1}" for i in range(len(self.tp_prices))]

    def tps_filled(self) -> int:
        """TPs whose order finished by fills."""
        # One pass over the orders, building no slot name: every snapshot asks it of every monitor.
        filled = 0
        for slot, order in self.orders.items():
            if order.status is _FILLED and slot in _tp_slot_names(len(self.tp_prices)):
                filled += 1
        return filled

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data (enums as their values, orders by slot)."""
        data: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["side"] = self.side.value
        data["phase"] = self.phase.value
        data["tp_prices"] = list(self.tp_prices)
        data["tp_split"] = list(self.tp_split)
        data["exec_ids"] = list(self.exec_ids)
        data["orders"] = {slot: order.to_dict() for slot, order in self.orders.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Monitor:
        """Decode a stored monitor; :class:`RecordError` (a ValueError) when its shape is wrong (a
        ``size`` that is a string would otherwise pass here and fail in a TP/SL decision)."""
        values = checked_record(cls, data)
        values["side"] = Side(values["side"])
        values["phase"] = Phase(values["phase"])
        orders = values.pop("orders", {})
        if not isinstance(orders, dict):
            raise ValueError(
                f"monitor {values.get('key')!r}: orders must be a mapping, not {type(orders).__name__}"
            )
        monitor = cls(**values)
        monitor.orders = {slot: ManagedOrder.from_dict(o) for slot, o in orders.items()}
        return monitor


_FILLED = SlotStatus.FILLED
"""Read once: an enum member looked up on its class costs more than the rest of a test on it."""


@cache
def _tp_slot_names(count: int) -> frozenset[str]:
    """The slot names of ``count`` TPs (what :meth:`Monitor.tp_slots` lists), made once per count."""
    return frozenset(f"tp{i + 1}" for i in range(count))


def monitor_key(account: str, symbol: str, side: Side) -> str:
    """The registry key of a monitored position: ``account:symbol:side``."""
    return f"{account}:{symbol}:{side.value}"


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed trade in the ledger. ``pnl`` is realised PnL net of ``fees`` and ``funding`` (USDT):
    gross - fees - funding, where ``funding`` is what the position paid (negative when received).

    ``reason`` is one of tp, sl, breakeven, manual, emergency, kill_switch, and adl, liquidation,
    delivery when the exchange itself closed the position.
    """

    account: str
    symbol: str
    side: Side
    approach: str
    reason: str
    entry_price: float
    exit_price: float
    qty: float
    pnl: float
    fees: float
    opened_at: float
    closed_at: float
    tps_hit: int = 0
    monitor_id: str = ""
    funding: float = 0.0
    exit_estimated: bool = False
    """Part of the exit is an estimate (no execution explained it): the PnL is not the venue's."""

    def to_dict(self) -> dict[str, object]:
        return {
            "account": self.account,
            "symbol": self.symbol,
            "side": self.side.value,
            "approach": self.approach,
            "reason": self.reason,
            "entry_price": self.entry_price,
            "exit_price": self.exit_price,
            "qty": self.qty,
            "pnl": self.pnl,
            "fees": self.fees,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "tps_hit": self.tps_hit,
            "monitor_id": self.monitor_id,
            "funding": self.funding,
            "exit_estimated": self.exit_estimated,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trade:
        """Decode a stored trade; :class:`RecordError` (a ValueError) when its shape is wrong."""
        values = checked_record(cls, data)
        values["side"] = Side(values["side"])
        return cls(**values)
