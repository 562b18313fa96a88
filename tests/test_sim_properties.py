"""Property tests: for any sequence of orders and prices, the simulator's books stay consistent.

An independent oracle replays the executions with exact rational arithmetic (average entry,
realised PnL, closed size) and checks the exchange against it:

- the wallet balance changes by exactly the realised PnL minus the fees (to the 8-decimal rounding
  the exchange applies per fill);
- a position's signed size equals the signed sum of its executions;
- no reduce-only fill ever grows or flips a position;
- what stays open is consistent: only limits rest, only conditionals wait untriggered, and a resting
  reduce-only limit always has a position to reduce.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.core.clock import VirtualClock
from engine.core.models import (
    CancelRequest,
    Execution,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    TriggerBy,
    TriggerDirection,
)
from engine.sim.exchange import SimExchange
from engine.sim.matcher import reach_band
from engine.venue.errors import VenueError

SYMBOL = "ETHUSDT"

moves = st.integers(min_value=-20_00, max_value=20_00)  # cents the last price jumps by
offsets = st.integers(min_value=-10_00, max_value=10_00)  # cents from the current price to an order
qty_units = st.integers(min_value=1, max_value=200)  # x 0.01 ETH
sides = st.sampled_from([Side.BUY, Side.SELL])
triggers = st.sampled_from([TriggerBy.LAST_PRICE, TriggerBy.MARK_PRICE])

# "close_*" actions act on the side that reduces the current position (the interesting case for
# reduce-only); when flat they are refused, which is part of the game too.
# Hypothesis leans toward the first branches when it simplifies, so trading comes first.
actions = st.one_of(
    st.tuples(st.just("open"), sides, qty_units),
    st.tuples(st.just("close_limit"), offsets, qty_units),
    st.tuples(st.just("price"), moves, st.integers(min_value=-300, max_value=300)),
    st.tuples(st.just("limit"), sides, offsets, qty_units, st.sampled_from(list(TimeInForce))),
    st.tuples(st.just("close_market"), qty_units),
    st.tuples(st.just("close_stop"), offsets, qty_units, triggers),
    st.tuples(st.just("stop"), sides, offsets, qty_units, triggers),
    st.tuples(st.just("step")),
    st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=10)),
)


def request_for(action: tuple, n: int, exchange: SimExchange) -> OrderRequest:
    """The order an action sends; reduce-only orders carry link ids starting with ``ro``."""
    kind, *args = action
    ticker = exchange.ticker(SYMBOL)
    held = exchange.positions("main", SYMBOL)[0]
    closing = Side.BUY if held.side is None else held.side.opposite
    if kind == "open":
        side, units = args
        return OrderRequest(SYMBOL, side, OrderType.MARKET, units / 100, link_id=f"op{n}")
    if kind == "limit":
        side, offset, units, tif = args
        price = round(ticker.last + offset / 100, 2)
        return OrderRequest(
            SYMBOL, side, OrderType.LIMIT, units / 100, price=price, time_in_force=tif, link_id=f"op{n}"
        )
    if kind == "close_market":
        (units,) = args
        return OrderRequest(
            SYMBOL, closing, OrderType.MARKET, units / 100, reduce_only=True, link_id=f"ro{n}"
        )
    if kind == "close_limit":
        offset, units = args
        price = round(ticker.last + offset / 100, 2)
        return OrderRequest(
            SYMBOL, closing, OrderType.LIMIT, units / 100, price=price, reduce_only=True, link_id=f"ro{n}"
        )
    side, offset, units, by = (closing, *args) if kind == "close_stop" else args
    watched = ticker.last if by is TriggerBy.LAST_PRICE else ticker.mark
    return OrderRequest(
        SYMBOL,
        side,
        OrderType.MARKET,
        units / 100,
        trigger_price=max(0.01, round(watched + offset / 100, 2)),
        trigger_direction=TriggerDirection.RISE if offset > 0 else TriggerDirection.FALL,
        trigger_by=by,
        close_on_trigger=kind == "close_stop",
        link_id=f"{'ro' if kind == 'close_stop' else 'op'}{n}",
    )


def run(
    balance: int, leverage: int, script: list[tuple], slippage_bps: float
) -> tuple[SimExchange, list[str]]:
    """Play the script; refused requests are part of the game (their error names are returned)."""
    refused: list[str] = []
    exchange = SimExchange(
        clock=VirtualClock(0.0),
        seed=11,
        symbols=[SYMBOL],
        balances={"main": float(balance)},
        slippage_bps=slippage_bps,
    )
    exchange.set_leverage("main", SYMBOL, leverage)
    for n, action in enumerate(script):
        kind = action[0]
        try:
            if kind == "price":
                last = max(100.0, round(exchange.ticker(SYMBOL).last + action[1] / 100, 2))
                exchange.set_price(SYMBOL, last, round(last + action[2] / 100, 2))
            elif kind == "step":
                exchange.step()
            elif kind == "cancel":
                orders = exchange.open_orders("main")
                if orders:
                    target = orders[action[1] % len(orders)]
                    exchange.cancel("main", CancelRequest(SYMBOL, order_id=target.order_id))
            else:
                exchange.place("main", request_for(action, n, exchange))
        except VenueError as exc:
            refused.append(type(exc).__name__)
    return exchange, refused


@dataclass
class Replay:
    """The oracle's view of the position after replaying fills exactly."""

    size: Fraction = Fraction(0)
    entry: Fraction = Fraction(0)
    realised: Fraction = Fraction(0)
    fees: Fraction = Fraction(0)


def replay(executions: list[Execution]) -> Replay:
    book = Replay()
    for fill in executions:
        qty, price, sign = Fraction(str(fill.qty)), Fraction(str(fill.price)), fill.side.sign
        book.fees += Fraction(str(fill.fee))
        before = book.size
        if before == 0 or (before > 0) == (sign > 0):
            book.entry = (abs(before) * book.entry + qty * price) / (abs(before) + qty)
            closed = Fraction(0)
        else:
            closed = min(abs(before), qty)
            book.realised += closed * (price - book.entry) * (1 if before > 0 else -1)
        book.size = before + sign * qty
        if book.size == 0:
            book.entry = Fraction(0)
        elif closed and (book.size > 0) != (before > 0):
            book.entry = price
        assert Fraction(str(fill.closed_size)) == closed, fill
        if fill.link_id.startswith("ro"):
            # Reduce-only: strictly shrinks the position toward zero, never past it.
            assert before != 0 and (before > 0) != (sign > 0), fill
            assert abs(book.size) < abs(before) and (book.size == 0 or (book.size > 0) == (before > 0)), fill
    return book


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    balance=st.sampled_from([3_000, 50_000, 1_000_000]),
    leverage=st.sampled_from([1, 3, 10, 50]),
    slippage_bps=st.sampled_from([0.0, 2.0, 7.5]),
    opening=st.tuples(st.just("open"), sides, qty_units),
    script=st.lists(actions, min_size=10, max_size=40),
)
def test_books_agree_with_an_exact_replay_of_the_executions(
    balance: int, leverage: int, slippage_bps: float, opening: tuple, script: list[tuple]
) -> None:
    exchange, refused = run(balance, leverage, [opening, *script], slippage_bps)
    for name in sorted(set(refused)):
        event(f"refused: {name}")
    executions = exchange.executions("main", since=0.0)
    book = replay(executions)
    event(f"fills: {min(len(executions), 10)}+")
    event(f"reduce-only fills: {sum(e.link_id.startswith('ro') for e in executions) > 0}")
    event(f"maker fills: {any(e.is_maker for e in executions)}")
    event(f"closing fills: {any(e.closed_size for e in executions)}")

    wallet = exchange.wallet("main")
    change = Fraction(str(wallet.wallet_balance)) - balance
    # Exchange rounds each fill's PnL to 1e-8, hence the tiny tolerance; the fees are exact.
    assert abs(change - (book.realised - book.fees)) <= Fraction(1, 10**6) * (1 + len(executions))

    position = exchange.positions("main", SYMBOL)[0]
    signed = Decimal(str(position.size)) * (0 if position.side is None else position.side.sign)
    assert signed == sum((Decimal(str(e.qty)) * e.side.sign for e in executions), Decimal(0))
    assert Fraction(signed) == book.size
    if book.size:
        assert abs(Fraction(str(position.entry_price)) - book.entry) < Fraction(1, 10**6)

    for order in exchange.open_orders("main"):
        # Only limits rest and only conditionals wait; a resting reduce-only limit has something to reduce.
        assert order.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.UNTRIGGERED), order
        assert order.order_type is OrderType.LIMIT or order.status is OrderStatus.UNTRIGGERED, order
        if order.reduce_only and order.status is not OrderStatus.UNTRIGGERED:
            assert book.size != 0 and (book.size > 0) != (order.side is Side.BUY), order


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    opening=st.tuples(st.just("open"), sides, qty_units),
    script=st.lists(actions, min_size=5, max_size=30),
    probes=st.lists(st.tuples(moves, st.integers(min_value=-300, max_value=300)), min_size=1, max_size=8),
)
def test_the_matchers_price_band_never_hides_an_order_the_price_reached(
    opening: tuple, script: list[tuple], probes: list[tuple[int, int]]
) -> None:
    """The matcher skips a symbol whose prices are inside its orders' band (kept until the symbol's
    orders change): at any price, an order the price reached is never inside the band, and the band
    kept after any sequence of actions is the band of the orders open now."""
    exchange, _ = run(1_000_000, 10, [opening, *script], 0.0)
    matcher, account = exchange._matcher, exchange._accounts["main"]
    kept = account.reach_of(SYMBOL, reach_band)
    assert kept == reach_band(account.open_orders(SYMBOL))
    base = exchange.ticker(SYMBOL).last
    for move, basis in probes:
        last = max(100.0, round(base + move / 100, 2))
        exchange._feed.set_price(SYMBOL, last, round(last + basis / 100, 2))  # moved, not matched
        outside = any(
            (price := matcher._watched(SYMBOL, watched)) <= lowest or price >= highest
            for watched, (lowest, highest) in kept.items()
        )
        reached = [order for order in account.open_orders(SYMBOL) if matcher._reached(order)]
        event(f"reached: {bool(reached)}, outside the band: {outside}")
        assert outside or not reached, reached
