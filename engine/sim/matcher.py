"""The order lifecycle of the simulated exchange: admission, triggers, fills, cancels, and their events.

Every method takes the account it acts on and a list to which it appends the events the change
causes (order updates, executions, position updates), in the order a subscriber should see them; the
exchange facade publishes them and adds the wallet update. The rules of *when* and *at what price*
something fills are the pure functions of :mod:`engine.sim.fills`.

Semantics follow Bybit's linear perpetuals in one-way mode:

- Reduce-only (or closeOnTrigger) orders never open or grow a position. Placed against a flat or
  same-side position they are refused (110017); their quantity is truncated to the position size when
  placed and when triggered, a fill never exceeds the position, and a resting reduce-only limit is
  cancelled (``CancelByReduceOnly``) as soon as the position it would reduce is gone.
- Orders that may open a position must fit the available balance: initial margin at the account's
  leverage for the symbol plus the taker fee of the opening part (110007), and be worth at least the
  minimum order value (110094).
- Conditional orders wait ``Untriggered`` (holding no margin) until their watched price (last or
  mark) reaches the trigger, then become ``Triggered`` and are executed as a new market or limit
  order. A trigger already reached when placing is refused like Bybit does (110092 rise / 110093
  fall). A triggered reduce-only order with nothing left to reduce is cancelled; a triggered opening
  order that no longer fits the balance is rejected. Untriggered orders are not cancelled when the
  position closes (the engine cleans its own up).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal

from engine.core.models import (
    AmendRequest,
    CancelRequest,
    ExecType,
    Execution,
    Instrument,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TriggerBy,
    TriggerDirection,
    VenueEvent,
)
from engine.sim.account import SimAccount
from engine.sim.feed import PriceFeed
from engine.sim.fills import (
    dec,
    fee,
    is_through,
    market_fill_price,
    money,
    resting_fill_qty,
    taker_limit_price,
    trigger_hit,
)
from engine.sim.ids import IdFactory
from engine.sim.ledger import ZERO, apply_fill, closable_qty, initial_margin, opening_qty
from engine.sim.orders import (
    WorkingOrder,
    check_price,
    check_qty,
    required_trigger_direction,
    validate_request,
)
from engine.venue.errors import (
    DuplicateOrder,
    InsufficientBalance,
    InvalidRequest,
    NothingToReduce,
    NotModified,
    OrderNotFound,
)

TAKER_FEE_RATE = 0.00055
MAKER_FEE_RATE = 0.0002


ReachBand = dict[TriggerBy | None, tuple[float, float]]
"""Per price an order watches (a trigger's reference; None: the last price of resting limits), the
band (lowest, highest): an order may be reached only at or below ``lowest`` or at or above ``highest``."""


def reach_band(orders: Iterable[WorkingOrder]) -> ReachBand:
    """The band of these orders' prices within which :meth:`Matcher.match` reaches none of them: a
    rising trigger fires at or above its level, a falling one at or below; a resting buy limit fills
    at or below its price, a sell at or above. Bounds only: a price outside is checked order by order."""
    band: ReachBand = {}
    for order in orders:
        if order.status is OrderStatus.UNTRIGGERED:
            direction, level = order.trigger
            watched: TriggerBy | None = order.trigger_by
            rises = direction is TriggerDirection.RISE
        elif order.is_resting_limit and order.price is not None:
            level, watched, rises = order.price, None, order.side is Side.SELL
        else:
            continue
        lowest, highest = band.get(watched, (-math.inf, math.inf))
        band[watched] = (lowest, min(highest, level)) if rises else (max(lowest, level), highest)
    return band


class Matcher:
    """Applies order actions and price changes to accounts."""

    def __init__(
        self,
        *,
        instruments: Mapping[str, Instrument],
        feed: PriceFeed,
        ids: IdFactory,
        now: Callable[[], float],
        slippage_bps: float,
        taker_fee_rate: float = TAKER_FEE_RATE,
        maker_fee_rate: float = MAKER_FEE_RATE,
    ) -> None:
        self._instruments = instruments
        self._feed = feed
        self._ids = ids
        self._now = now
        self.slippage_bps = slippage_bps
        self.taker_fee_rate = dec(taker_fee_rate)
        self.maker_fee_rate = dec(maker_fee_rate)

    def instrument(self, symbol: str) -> Instrument:
        """The listed instrument, or 10001 ``symbol invalid``."""
        try:
            return self._instruments[symbol]
        except KeyError:
            raise InvalidRequest(f"params error: symbol invalid: {symbol!r}", 10001) from None

    # --- order entry -------------------------------------------------------------------------
    def place(self, account: SimAccount, request: OrderRequest, events: list[VenueEvent]) -> WorkingOrder:
        """Admit a new order and execute what is executable at once."""
        instrument = self.instrument(request.symbol)
        qty = validate_request(request, instrument)
        if account.link_in_use(request.link_id):
            raise DuplicateOrder(f"OrderLinkedID is duplicate: {request.link_id}", 110072)
        closes_only = request.reduce_only or request.close_on_trigger
        position = account.position(request.symbol)
        if request.trigger_price is not None:
            direction = required_trigger_direction(request)
            self._check_trigger(request.symbol, direction, request.trigger_price, request.trigger_by)
            if not closes_only:
                self._check_notional(instrument, qty, request.price or request.trigger_price)
            status = OrderStatus.UNTRIGGERED
        else:
            if closes_only:
                allowed = closable_qty(position.size, request.side)
                if allowed == 0:
                    raise NothingToReduce(
                        f"{request.symbol}: reduce-only {request.side.value} order has no position to reduce",
                        110017,
                    )
                qty = min(qty, allowed)
            else:
                reference = self._reference_price(instrument, request.side, request.order_type, request.price)
                self._check_notional(instrument, qty, reference)
                self._check_margin(account, request.symbol, request.side, qty, reference)
            status = OrderStatus.NEW
        now = self._now()
        order = WorkingOrder(
            order_id=self._ids.next("order"),
            link_id=request.link_id,
            symbol=request.symbol,
            side=request.side,
            order_type=request.order_type,
            qty=qty,
            price=request.price if request.order_type is OrderType.LIMIT else None,
            trigger_price=request.trigger_price,
            trigger_direction=request.trigger_direction,
            trigger_by=(request.trigger_by or TriggerBy.LAST_PRICE)
            if request.trigger_price is not None
            else None,
            reduce_only=request.reduce_only,
            close_on_trigger=request.close_on_trigger,
            time_in_force=request.time_in_force,
            status=status,
            created=now,
            updated=now,
        )
        account.add_order(order)
        if status is OrderStatus.UNTRIGGERED:
            events.append(order.snapshot(account.name))
        else:
            self._execute(account, order, events)
        return order

    def amend(self, account: SimAccount, request: AmendRequest, events: list[VenueEvent]) -> WorkingOrder:
        """Change qty, price or trigger price of an open order in place."""
        instrument = self.instrument(request.symbol)
        order = self._find(account, request.symbol, request.order_id, request.link_id)
        qty = order.qty if request.qty is None else check_qty(request.qty, instrument)
        price = order.price
        if request.price is not None:
            if order.order_type is not OrderType.LIMIT:
                raise InvalidRequest("only a limit order's price can be amended", 10001)
            price = check_price(request.price, instrument)
        trigger = order.trigger_price
        if request.trigger_price is not None:
            if order.status is not OrderStatus.UNTRIGGERED or order.trigger_direction is None:
                raise InvalidRequest("triggerPrice can only be amended before the order triggers", 10001)
            trigger = check_price(request.trigger_price, instrument, "triggerPrice")
            self._check_trigger(order.symbol, order.trigger_direction, trigger, order.trigger_by)
        if (qty, price, trigger) == (order.qty, order.price, order.trigger_price):
            raise NotModified(
                "The order remains unchanged as the parameters entered match the existing ones", 10001
            )
        if qty <= order.filled:
            raise InvalidRequest(f"qty {qty} must exceed the filled qty {order.filled}", 10001)
        if order.is_resting_limit and not order.closes_only and price is not None and order.price is not None:
            leverage = account.leverage_of(order.symbol)
            before = initial_margin(order.remaining, dec(order.price), leverage)
            after = initial_margin(qty - order.filled, dec(price), leverage)
            available = account.available(self._feed.marks())
            if after - before > available:
                raise InsufficientBalance(
                    f"ab not enough for amended order: needs {after - before} more, available {available}",
                    110007,
                )
        order.qty, order.price, order.trigger_price = qty, price, trigger
        order.updated = self._now()
        account.touch(order.symbol)
        events.append(order.snapshot(account.name))
        if order.is_resting_limit:
            self._take_if_marketable(account, order, events)
        return order

    def cancel(self, account: SimAccount, request: CancelRequest, events: list[VenueEvent]) -> WorkingOrder:
        """Cancel one open order (an untriggered conditional ends ``Deactivated``)."""
        self.instrument(request.symbol)
        order = self._find(account, request.symbol, request.order_id, request.link_id)
        self._finish(account, order, _cancelled_status(order), "EC_PerCancelRequest", events)
        return order

    def cancel_all(self, account: SimAccount, symbol: str, events: list[VenueEvent]) -> list[WorkingOrder]:
        """Cancel every open order of ``symbol``, conditionals included, oldest first."""
        self.instrument(symbol)
        cancelled = list(account.open_orders(symbol))
        for order in cancelled:
            self._finish(account, order, _cancelled_status(order), "EC_PerCancelRequest", events)
        return cancelled

    def set_leverage(
        self, account: SimAccount, symbol: str, leverage: float, events: list[VenueEvent]
    ) -> None:
        """Set the symbol's leverage; a no-op when unchanged; refused when margin would not suffice."""
        instrument = self.instrument(symbol)
        value = dec(leverage)
        if not dec(instrument.min_leverage) <= value <= dec(instrument.max_leverage) or value % Decimal(
            "0.01"
        ):
            raise InvalidRequest(
                f"{symbol}: leverage {leverage} must be {instrument.min_leverage}-{instrument.max_leverage} "
                "in steps of 0.01",
                10001,
            )
        previous = account.leverage_of(symbol)
        if value == previous:
            return
        marks = self._feed.marks()
        before = account.available(marks)
        account.set_leverage(symbol, value)
        after = account.available(marks)
        if after < 0 and after < before:
            account.set_leverage(symbol, previous)
            raise InsufficientBalance(
                f"{symbol}: not enough available balance for leverage {leverage}", 110007
            )
        events.append(account.position_view(symbol, self._feed.mark(symbol), self._now()))

    # --- the exchange's own executions ----------------------------------------------------------
    def force_close(
        self, account: SimAccount, symbol: str, qty: Decimal | None, exec_type: str, events: list[VenueEvent]
    ) -> None:
        """The exchange closes (part of) a position itself, as Bybit's ADL (``AdlTrade``), liquidation
        (``BustTrade``) or delivery (``Delivery``) do: a system order with no orderLinkId, taker, at
        the mark, whose execution carries ``exec_type`` and the orderType ``UNKNOWN``. All of the
        position when ``qty`` is None."""
        position = account.position(symbol)
        if position.size == 0:
            raise NothingToReduce(f"{symbol}: no position to close", 110017)
        amount = abs(position.size) if qty is None else min(qty, abs(position.size))
        now = self._now()
        order = WorkingOrder(
            order_id=self._ids.next("order"),
            link_id="",
            symbol=symbol,
            side=Side.SELL if position.size > 0 else Side.BUY,
            order_type=OrderType.UNKNOWN,
            qty=amount,
            price=None,
            trigger_price=None,
            trigger_direction=None,
            trigger_by=None,
            reduce_only=True,
            close_on_trigger=False,
            time_in_force=TimeInForce.IOC,
            status=OrderStatus.NEW,
            created=now,
            updated=now,
        )
        account.add_order(order)
        mark = self._feed.mark(symbol)
        self._fill(account, order, amount, mark, is_maker=False, events=events, exec_type=exec_type)

    def charge_funding(self, account: SimAccount, symbol: str, rate: float, events: list[VenueEvent]) -> None:
        """One funding settlement of ``account``'s position in ``symbol`` at ``rate``: a long pays
        size x mark x rate (a short receives it; the opposite for a negative rate), as a ``Funding``
        execution shaped like Bybit's (execQty the position size, execFee what was paid, negative
        when received, orderType ``UNKNOWN``). Nothing happens without a position."""
        position = account.position(symbol)
        if position.size == 0:
            return
        mark = self._feed.mark(symbol)
        paid = money(position.size * dec(mark) * dec(rate))
        account.balance -= paid
        position.realised -= paid  # Bybit's cumRealisedPnl counts funding as well
        account.touch(symbol)
        now = self._now()
        execution = Execution(
            account=account.name,
            exec_id=self._ids.next("exec"),
            order_id="",
            link_id="",
            symbol=symbol,
            side=Side.BUY if position.size > 0 else Side.SELL,
            price=mark,
            qty=float(abs(position.size)),
            fee=float(paid),
            is_maker=False,
            closed_size=0.0,
            order_type=OrderType.UNKNOWN,
            ts=now,
            exec_type=ExecType.FUNDING.value,
            fee_rate=rate,
        )
        account.executions.append(execution)
        events += [execution, account.position_view(symbol, mark, now)]

    # --- market moves ------------------------------------------------------------------------
    def match(self, account: SimAccount, events: list[VenueEvent]) -> None:
        """Trigger conditionals and fill resting limits of ``account`` at the current prices.

        A move that crosses several orders' levels at once (a gap) executes them in the order the
        path reached them: the level farthest from the price it arrived at first (ties in creation
        order), as a market falling through a buy limit and then a stop fills the limit first.
        """
        # Only the orders the price reached are ordered and run (a tick crosses a few of thousands;
        # the prices stay put during the pass, so no other order can come to fill in it). A symbol
        # whose prices are inside its orders' band (kept until its orders change) has none reached.
        reached: list[WorkingOrder] = []
        for symbol, orders in account.orders_by_symbol():
            band: ReachBand = account.reach_of(symbol, reach_band)
            if any(
                (price := self._watched(symbol, watched)) <= lowest or price >= highest
                for watched, (lowest, highest) in band.items()
            ):
                reached += [order for order in orders.values() if self._reached(order)]
        # Farthest crossed first; ties in creation order (as the book's order, before the band).
        for order in sorted(reached, key=lambda o: (self._crossed_first(o), account.order_rank(o.order_id))):
            if order.order_id not in account.orders:
                continue  # finished earlier in this pass (e.g. a reduce-only swept by a fill)
            if order.status is OrderStatus.UNTRIGGERED:
                direction, trigger_price = order.trigger
                watched = self._feed.reference(order.symbol, order.trigger_by)
                if trigger_hit(direction, trigger_price, watched):
                    self._trigger(account, order, events)
            elif order.is_resting_limit and order.price is not None:
                qty = resting_fill_qty(
                    order.side,
                    order.price,
                    self._feed.last(order.symbol),
                    order.remaining,
                    self.instrument(order.symbol),
                )
                if qty > 0:
                    self._fill(account, order, qty, order.price, is_maker=True, events=events)

    def _watched(self, symbol: str, watched: TriggerBy | None) -> float:
        """The price a band watches: a trigger's reference, or the last price (None: resting limits)."""
        return self._feed.last(symbol) if watched is None else self._feed.reference(symbol, watched)

    def _reached(self, order: WorkingOrder) -> bool:
        """Whether the current price triggers ``order`` (a conditional) or fills some of it (a
        resting limit): what :meth:`match` would act on."""
        if order.status is OrderStatus.UNTRIGGERED:
            direction, trigger_price = order.trigger
            return trigger_hit(direction, trigger_price, self._feed.reference(order.symbol, order.trigger_by))
        if order.is_resting_limit and order.price is not None:
            last = self._feed.last(order.symbol)
            return last == order.price or is_through(order.side, order.price, last)
        return False

    def _crossed_first(self, order: WorkingOrder) -> float:
        """Sort key of :meth:`match`: minus the distance from the order's level to the price it watches."""
        if order.status is OrderStatus.UNTRIGGERED and order.trigger_price is not None:
            level, watched = order.trigger_price, self._feed.reference(order.symbol, order.trigger_by)
        elif order.is_resting_limit and order.price is not None:
            level, watched = order.price, self._feed.last(order.symbol)
        else:
            return 0.0
        return -abs(level - watched)

    # --- internals ---------------------------------------------------------------------------
    def _find(self, account: SimAccount, symbol: str, order_id: str, link_id: str) -> WorkingOrder:
        if not order_id and not link_id:
            raise InvalidRequest("orderId or orderLinkId is required", 10001)
        order = account.find_open(symbol, order_id, link_id)
        if order is None:
            raise OrderNotFound(f"order not exists or too late to cancel: {order_id or link_id}", 110001)
        return order

    def _reference_price(
        self, instrument: Instrument, side: Side, order_type: OrderType, price: float | None
    ) -> float:
        """The price an opening order is sized at: its limit, or where a market order would fill."""
        if order_type is OrderType.LIMIT and price is not None:
            return price
        return market_fill_price(side, self._feed.last(instrument.symbol), self.slippage_bps, instrument)

    def _check_trigger(
        self, symbol: str, direction: TriggerDirection, trigger_price: float, trigger_by: TriggerBy | None
    ) -> None:
        current = self._feed.reference(symbol, trigger_by)
        if trigger_hit(direction, trigger_price, current):
            if direction is TriggerDirection.RISE:
                raise InvalidRequest(
                    f"expect Rising, but trigger_price[{trigger_price}] <= current[{current}]", 110092
                )
            raise InvalidRequest(
                f"expect Falling, but trigger_price[{trigger_price}] >= current[{current}]", 110093
            )

    @staticmethod
    def _check_notional(instrument: Instrument, qty: Decimal, price: float) -> None:
        value = qty * dec(price)
        if value < dec(instrument.min_notional):
            raise InvalidRequest(
                f"{instrument.symbol}: order value {value} is below {instrument.min_notional} USDT", 110094
            )

    def _check_margin(self, account: SimAccount, symbol: str, side: Side, qty: Decimal, price: float) -> None:
        opening = opening_qty(account.position(symbol).size, side, qty)
        if opening == 0:
            return
        cost = initial_margin(opening, dec(price), account.leverage_of(symbol)) + fee(
            price, opening, self.taker_fee_rate
        )
        available = account.available(self._feed.marks())
        if cost > available:
            raise InsufficientBalance(
                f"ab not enough for new order: cost {cost}, available {available}", 110007
            )

    def _execute(self, account: SimAccount, order: WorkingOrder, events: list[VenueEvent]) -> None:
        """Run a newly admitted (or just triggered) order: fill it, rest it, or cancel it per its TIF."""
        instrument = self.instrument(order.symbol)
        last = self._feed.last(order.symbol)
        if order.order_type is OrderType.MARKET:
            price = market_fill_price(order.side, last, self.slippage_bps, instrument)
            self._fill(account, order, order.remaining, price, is_maker=False, events=events)
            return
        order.status = OrderStatus.NEW
        account.touch(order.symbol)
        if is_through(order.side, order.limit_price, last):
            self._take_if_marketable(account, order, events)
        elif order.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            self._finish(account, order, OrderStatus.CANCELLED, "EC_CancelForNoFullFill", events)
        else:
            events.append(order.snapshot(account.name))

    def _take_if_marketable(self, account: SimAccount, order: WorkingOrder, events: list[VenueEvent]) -> None:
        """A limit whose price the market is through fills at once as taker (a PostOnly is cancelled)."""
        limit = order.limit_price
        last = self._feed.last(order.symbol)
        if not is_through(order.side, limit, last):
            return
        if order.time_in_force is TimeInForce.POST_ONLY:
            self._finish(account, order, _cancelled_status(order), "EC_PostOnlyWillTakeLiquidity", events)
            return
        price = taker_limit_price(order.side, limit, last, self.slippage_bps, self.instrument(order.symbol))
        self._fill(account, order, order.remaining, price, is_maker=False, events=events)

    def _trigger(self, account: SimAccount, order: WorkingOrder, events: list[VenueEvent]) -> None:
        order.status = OrderStatus.TRIGGERED
        order.updated = self._now()
        account.touch(order.symbol)
        events.append(order.snapshot(account.name))
        if order.closes_only:
            allowed = closable_qty(account.position(order.symbol).size, order.side)
            if allowed == 0:
                self._finish(account, order, OrderStatus.CANCELLED, "CancelByReduceOnly", events)
                return
            order.qty = order.filled + min(order.remaining, allowed)
            account.touch(order.symbol)
        else:
            instrument = self.instrument(order.symbol)
            reference = self._reference_price(instrument, order.side, order.order_type, order.price)
            try:
                self._check_margin(account, order.symbol, order.side, order.remaining, reference)
            except InsufficientBalance:
                self._finish(account, order, OrderStatus.REJECTED, "EC_InsufficientAvailableBalance", events)
                return
        self._execute(account, order, events)

    def _fill(
        self,
        account: SimAccount,
        order: WorkingOrder,
        qty: Decimal,
        price: float,
        *,
        is_maker: bool,
        events: list[VenueEvent],
        exec_type: str = ExecType.TRADE.value,
    ) -> None:
        """Execute ``qty`` of ``order`` at ``price``: position, balance, fee, execution, events."""
        position = account.position(order.symbol)
        if order.closes_only:
            qty = min(qty, closable_qty(position.size, order.side))
            if qty == 0:
                self._finish(account, order, _cancelled_status(order), "CancelByReduceOnly", events)
                return
        now = self._now()
        rate = self.maker_fee_rate if is_maker else self.taker_fee_rate
        paid = fee(price, qty, rate)
        outcome = apply_fill(position.size, position.entry, order.side, qty, dec(price))
        account.balance += outcome.realised - paid
        position.realised = -paid if outcome.reopened else position.realised + outcome.realised - paid
        position.size, position.entry, position.updated = outcome.size, outcome.entry, now
        order.filled += qty
        order.filled_value += dec(price) * qty
        order.status = OrderStatus.FILLED if order.remaining == 0 else OrderStatus.PARTIALLY_FILLED
        order.updated = now
        account.touch(order.symbol)
        execution = Execution(
            account=account.name,
            exec_id=self._ids.next("exec"),
            order_id=order.order_id,
            link_id=order.link_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            qty=float(qty),
            fee=float(paid),
            is_maker=is_maker,
            closed_size=float(outcome.closed),
            order_type=order.order_type,
            ts=now,
            exec_type=exec_type,
            fee_rate=float(rate),
        )
        account.executions.append(execution)
        events += [execution, order.snapshot(account.name)]
        events.append(account.position_view(order.symbol, self._feed.mark(order.symbol), now))
        if order.status is OrderStatus.FILLED:
            account.finish(order)
        self._sweep_reduce_only(account, order.symbol, events)

    def _sweep_reduce_only(self, account: SimAccount, symbol: str, events: list[VenueEvent]) -> None:
        """Cancel resting reduce-only limits that have no position left to reduce."""
        size = account.position(symbol).size
        for order in list(account.open_orders(symbol)):
            if order.closes_only and order.is_resting_limit and closable_qty(size, order.side) == ZERO:
                self._finish(account, order, _cancelled_status(order), "CancelByReduceOnly", events)

    def _finish(
        self,
        account: SimAccount,
        order: WorkingOrder,
        status: OrderStatus,
        reason: str,
        events: list[VenueEvent],
    ) -> None:
        order.status = status
        order.reject_reason = reason
        order.updated = self._now()
        account.finish(order)
        events.append(order.snapshot(account.name))


def _cancelled_status(order: WorkingOrder) -> OrderStatus:
    """Bybit's final status of a cancelled order."""
    if order.status is OrderStatus.UNTRIGGERED:
        return OrderStatus.DEACTIVATED
    return OrderStatus.PARTIALLY_FILLED_CANCELED if order.filled else OrderStatus.CANCELLED
