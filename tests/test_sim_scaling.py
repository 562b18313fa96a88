"""The simulated exchange's cost per action follows what the action touched, not what the account holds.

With a thousand synthetic symbols the market holds thousands of open orders. Every acknowledged action
is journaled and closed by a wallet push, so a cost proportional to the whole book per action made
the embedded exchange the busiest thing on the engine's loop. The account marks each symbol it
changes (``SimAccount.touch``); the journal diffs the marked symbols only and the wallet's sums are
cached per symbol. These tests pin both halves: the cost (counted, not timed) and that the shortcuts
never change an answer — the cached sums equal a fresh computation after every step of any script,
and a restart that replays the journal finds exactly the market that was acknowledged.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.clock import VirtualClock
from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Execution,
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
    TriggerBy,
    TriggerDirection,
)
from engine.sim.exchange import STATE_FILE, SimExchange
from engine.sim.instruments import synthetic_symbols
from engine.sim.matcher import Matcher
from engine.sim.orders import WorkingOrder
from engine.venue.errors import VenueError

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def make_exchange(
    clock: VirtualClock, path: Path | None, symbols: list[str], synthetic: int = 0
) -> SimExchange:
    return SimExchange(
        clock=clock,
        seed=5,
        symbols=symbols,
        balances={"main": 1_000_000.0},
        state_path=path,
        synthetic=synthetic,
    )


def check_sums(exchange: SimExchange) -> None:
    """The account's cached uPnL and margins equal the same sums computed afresh."""
    account = exchange._account("main")
    marks = exchange._feed.marks()
    fresh = account.uncached_sums(marks)
    assert (account.upnl(marks), account.position_margin(), account.order_margin()) == fresh
    assert account.sums(marks) == fresh  # the figures kept between two changes too


def check_views(exchange: SimExchange) -> None:
    """The open orders read (views kept until their symbol is touched) are the orders made afresh."""
    account = exchange._account("main")
    assert exchange.open_orders("main") == [o.snapshot("main") for o in account.open_orders()]


def accounts_of(exchange: SimExchange) -> list[dict[str, object]]:
    """The accounts as saved, without never-traded flat positions (a read of a symbol's position
    makes one; a missing position is the same flat one)."""
    accounts = exchange.to_state(0.0)["accounts"]
    for account in accounts:
        account["positions"] = {
            s: p
            for s, p in account["positions"].items()
            if p != {"size": "0", "entry": "0", "realised": "0", "updated": 0.0}
        }
    return accounts  # type: ignore[no-any-return]


symbols = st.integers(min_value=0, max_value=len(SYMBOLS) - 1)
offsets = st.integers(min_value=-40, max_value=40)  # tenths of a percent from the last price
units = st.integers(min_value=1, max_value=30)
sides = st.sampled_from([Side.BUY, Side.SELL])
actions = st.one_of(
    st.tuples(st.just("market"), symbols, sides, units),
    st.tuples(st.just("limit"), symbols, sides, offsets, units, st.booleans()),
    st.tuples(st.just("stop"), symbols, sides, offsets, units, st.booleans()),
    st.tuples(st.just("amend"), st.integers(min_value=0, max_value=20), offsets, units),
    st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=20)),
    st.tuples(st.just("cancel_all"), symbols),
    st.tuples(st.just("leverage"), symbols, st.sampled_from([1, 5, 10, 25])),
    st.tuples(st.just("funding"), symbols, st.sampled_from([0.0001, -0.0003])),
    st.tuples(st.just("steps"), st.integers(min_value=1, max_value=30)),
)


def qty_of(exchange: SimExchange, symbol: str, n: int) -> float:
    step = exchange.instruments[symbol].qty_step
    return round(step * n * (10 if symbol != "BTCUSDT" else 1), 6)


def play(exchange: SimExchange, clock: VirtualClock, action: tuple, n: int) -> None:
    kind, *args = action
    if kind == "steps":
        for _ in range(args[0]):
            clock.advance(1.0)
            exchange.step()
        return
    if kind in ("amend", "cancel"):
        orders = exchange.open_orders("main")
        if not orders:
            return
        target = orders[args[0] % len(orders)]
        if kind == "cancel":
            exchange.cancel("main", CancelRequest(target.symbol, order_id=target.order_id))
            return
        last = exchange.ticker(target.symbol).last
        level = exchange.instruments[target.symbol].round_price(last * (1 + args[1] / 1000))
        if target.trigger_price is not None:
            exchange.amend("main", AmendRequest(target.symbol, order_id=target.order_id, trigger_price=level))
        else:
            qty = qty_of(exchange, target.symbol, args[2])
            exchange.amend(
                "main", AmendRequest(target.symbol, order_id=target.order_id, qty=qty, price=level)
            )
        return
    symbol = SYMBOLS[args[0]]
    if kind == "cancel_all":
        exchange.cancel_all("main", symbol)
    elif kind == "leverage":
        exchange.set_leverage("main", symbol, args[1])
    elif kind == "funding":
        exchange.settle_funding(symbol, args[1])
    else:
        side, rest = args[1], args[2:]
        last = exchange.ticker(symbol).last
        if kind == "market":
            request = OrderRequest(symbol, side, OrderType.MARKET, qty_of(exchange, symbol, rest[0]))
        elif kind == "limit":
            offset, count, reduce = rest
            request = OrderRequest(
                symbol,
                side,
                OrderType.LIMIT,
                qty_of(exchange, symbol, count),
                price=exchange.instruments[symbol].round_price(last * (1 + offset / 1000)),
                reduce_only=reduce,
                time_in_force=TimeInForce.GTC,
                link_id=f"l{n}",
            )
        else:
            offset, count, reduce = rest
            request = OrderRequest(
                symbol,
                side,
                OrderType.MARKET,
                qty_of(exchange, symbol, count),
                trigger_price=exchange.instruments[symbol].round_price(last * (1 + offset / 1000)),
                trigger_direction=TriggerDirection.RISE if offset > 0 else TriggerDirection.FALL,
                trigger_by=TriggerBy.MARK_PRICE,
                close_on_trigger=reduce,
                link_id=f"s{n}",
            )
        exchange.place("main", request)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(script=st.lists(actions, min_size=5, max_size=40))
def test_cached_sums_and_views_and_the_journal_replay_agree_with_the_live_market(script: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / STATE_FILE
        clock = VirtualClock(1_000.0)
        exchange = make_exchange(clock, path, SYMBOLS)
        for n, action in enumerate(script):
            with contextlib.suppress(VenueError):  # refused requests are part of the game
                play(exchange, clock, action, n)
            check_sums(exchange)
            check_views(exchange)
        # What a kill -9 leaves (no save): the restart replays the journal onto the last snapshot.
        restarted = make_exchange(VirtualClock(clock.now()), path, SYMBOLS)
        assert accounts_of(restarted) == accounts_of(exchange)
        check_sums(restarted)


def resting_book(path: Path, below_pct: tuple[int, ...]) -> tuple[VirtualClock, SimExchange, list[str]]:
    """300 synthetic symbols, each with a resting buy limit ``k`` % below the market for each ``k``."""
    listed = synthetic_symbols(300)
    clock = VirtualClock(1_000.0)
    exchange = make_exchange(clock, path / STATE_FILE, [], synthetic=300)
    for symbol in listed:
        last = exchange.ticker(symbol).last
        step = exchange.instruments[symbol].qty_step
        qty = round(step * math.ceil(6.0 / last / step), 8)  # above the 5 USDT minimum order value
        for k in below_pct:
            price = exchange.instruments[symbol].round_price(last * (1 - k / 100))
            request = OrderRequest(
                symbol, Side.BUY, OrderType.LIMIT, qty, price=price, link_id=f"{symbol}-{k}"
            )
            exchange.place("main", request)
    return clock, exchange, listed


@pytest.fixture
def counted_to_state(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the order records the exchange renders (the journal diffs rendered records)."""
    calls = [0]
    original = WorkingOrder.to_state

    def counting(self: WorkingOrder) -> dict[str, object]:
        calls[0] += 1
        return original(self)

    monkeypatch.setattr(WorkingOrder, "to_state", counting)
    return calls


def test_an_action_journals_what_it_touched_not_the_whole_book(
    tmp_path: Path, counted_to_state: list[int]
) -> None:
    """300 symbols with three resting orders each: amending one order renders that symbol's orders for
    the journal, not the 900 on the book (before, every acknowledged action rendered them all)."""
    _clock, exchange, listed = resting_book(tmp_path, (1, 2, 3))
    assert len(exchange.open_orders("main")) == 900
    target = exchange.open_orders("main", listed[150])[0]
    counted_to_state[0] = 0
    exchange.amend(
        "main",
        AmendRequest(
            target.symbol,
            order_id=target.order_id,
            price=exchange.instruments[target.symbol].round_price(target.price * 0.99),
        ),
    )
    assert counted_to_state[0] <= 3 + 1  # the symbol's three orders (and the event's own record)
    check_sums(exchange)


def test_a_tick_orders_only_the_orders_it_reached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick used to sort every open order of the account by how far the price crossed it (900 here,
    7000 at a thousand positions: ~10 ms a second on the engine's loop); only the reached ones need
    an order, and the fill order among them is the same."""
    clock, exchange, listed = resting_book(tmp_path, (5, 6, 7))  # far below: a calm tick reaches none
    ordered: list[str] = []
    original = Matcher._crossed_first

    def counting(self: Matcher, order: WorkingOrder) -> float:
        ordered.append(order.order_id)
        return original(self, order)

    monkeypatch.setattr(Matcher, "_crossed_first", counting)
    clock.advance(1.0)
    exchange.step()
    assert ordered == []
    # a gap through two of one symbol's limits: both fill, the farthest crossed first
    target = listed[7]
    orders = exchange.open_orders("main", target)
    exchange.set_price(target, exchange.instruments[target].round_price(orders[1].price * 0.995))
    assert len(ordered) == 2
    fills = [e for e in exchange.executions("main", since=0.0) if e.symbol == target]
    assert [f.order_id for f in fills] == [orders[0].order_id, orders[1].order_id]


class Passes(dict[str, Any]):
    """A dict that counts the passes over all of it (iterations, ``items()``, ``values()``)."""

    passes = 0

    def __iter__(self) -> Iterator[str]:
        self.passes += 1
        return super().__iter__()

    def items(self) -> Any:
        self.passes += 1
        return super().items()

    def values(self) -> Any:
        self.passes += 1
        return super().values()


def test_wallet_pushes_between_two_price_moves_work_out_the_touched_symbols_only(tmp_path: Path) -> None:
    """Every acknowledged action checks the margin and pushes the account's wallet. Between two price
    moves, that works out the figures of the symbols the action touched, never a pass over every
    position or every symbol's orders (at a thousand positions, most of what an action cost); a
    tick marks every position. The figures are always the fresh ones."""
    clock, exchange, listed = resting_book(tmp_path, (5,))
    for symbol in listed[:30]:  # open positions too, for the uPnL
        step = exchange.instruments[symbol].qty_step
        qty = round(step * math.ceil(6.0 / exchange.ticker(symbol).last / step), 8)
        exchange.place("main", OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty))
    account = exchange._account("main")
    account.positions = Passes(account.positions)
    account._by_symbol = Passes(account._by_symbol)
    positions, books = account.positions, account._by_symbol
    clock.advance(1.0)
    exchange.step()  # new marks (the tick's matching passes over the books)
    check_sums(exchange)
    passes = (positions.passes, books.passes)
    exchange.wallet("main")  # the new marks, worked out by check_sums already
    for symbol in (listed[3], listed[100]):  # one with a position, one with only its order
        target = exchange.open_orders("main", symbol)[0]
        exchange.cancel("main", CancelRequest(target.symbol, order_id=target.order_id))
        for _ in range(3):
            exchange.wallet("main")
    assert (positions.passes, books.passes) == passes
    check_sums(exchange)  # a touched symbol: the figures are the fresh ones
    clock.advance(1.0)
    before = positions.passes
    exchange.step()  # new marks: every position marked, by the tick
    assert positions.passes > before
    before = positions.passes
    exchange.wallet("main")
    exchange.wallet("main")
    assert positions.passes == before
    check_sums(exchange)


def test_a_fill_reaches_its_push_without_a_pass_over_the_accounts_positions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick marks every account to market before it matches: the push a fill ends with adds only
    the filled symbol's change to the wallet, so nothing proportional to the account's positions
    stands between the fill and the engine hearing of it (at a thousand positions, 3 ms of every
    reaction to a fill)."""
    _clock, exchange, listed = resting_book(tmp_path, (5,))
    for symbol in listed[:30]:
        step = exchange.instruments[symbol].qty_step
        qty = round(step * math.ceil(6.0 / exchange.ticker(symbol).last / step), 8)
        exchange.place("main", OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty))
    exchange.subscribe("main")
    account = exchange._account("main")
    account.positions = Passes(account.positions)
    positions = account.positions
    at_match: list[int] = []
    at_push: list[int] = []
    match, publish = Matcher.match, exchange._hub.publish

    def matching(self: Matcher, *args: Any) -> None:
        at_match.append(positions.passes)
        match(self, *args)

    def pushing(name: str, events: Any, ts: float) -> None:
        if any(isinstance(e, Execution) for e in events):
            at_push.append(positions.passes)
        publish(name, events, ts)

    monkeypatch.setattr(Matcher, "match", matching)
    monkeypatch.setattr(exchange._hub, "publish", pushing)
    target = exchange.open_orders("main", listed[3])[0]
    assert target.price is not None
    exchange.set_price(listed[3], target.price * 0.99)  # through the resting buy
    assert at_push, "the resting buy filled"
    assert at_push == at_match[-1:]
    check_sums(exchange)


def test_a_read_of_the_open_orders_makes_again_only_the_touched_symbols_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The simulator answers on the engine's loop: a read of a thousand positions' three thousand
    orders made every view again (15-45 ms); now only those of the symbols touched since."""
    _clock, exchange, listed = resting_book(tmp_path, (5, 7))
    made = [0]
    snapshot = WorkingOrder.snapshot

    def counting(self: WorkingOrder, account: str) -> Any:
        made[0] += 1
        return snapshot(self, account)

    monkeypatch.setattr(WorkingOrder, "snapshot", counting)
    first = exchange.open_orders("main")
    assert made[0] == len(first) == 600
    target = exchange.open_orders("main", listed[3])[0]
    exchange.cancel("main", CancelRequest(target.symbol, order_id=target.order_id))
    made[0] = 0
    again = exchange.open_orders("main")
    assert len(again) == 599 and made[0] == 1  # the symbol's other order, made again
    check_views(exchange)
