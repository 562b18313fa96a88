"""The order-action layer rides out the account's rate limit: a 10006 is sent again after the reset,
stop-losses first, and never reaches the decisions as a refused order."""

from __future__ import annotations

from collections.abc import Sequence

from tpsl_harness import SYMBOL, Harness, stop_orders

from engine.core.clock import VirtualClock
from engine.core.link_ids import purpose_of
from engine.core.models import CancelRequest, OrderAck, OrderRequest, OrderType, Side
from engine.runtime.scenario import ScenarioTrade, run_trades
from engine.trading.approaches import Approach
from engine.trading.orders import (
    Action,
    CancelOrder,
    PlaceOrder,
    execute_actions,
    protection_rank,
    resend_order,
)
from engine.venue.errors import RateLimited

KEY = "main:BTCUSDT:Buy"


def place(slot: str) -> PlaceOrder:
    return PlaceOrder(
        KEY, slot, OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, 0.01, price=1.0, link_id=slot)
    )


def cancel(slot: str) -> CancelOrder:
    return CancelOrder(KEY, slot, CancelRequest(SYMBOL, link_id=f"old-{slot}"))


def test_resend_order_puts_the_stop_loss_first_then_the_close_and_keeps_the_rest_in_order() -> None:
    actions: list[Action] = [place("e2"), place("e3"), cancel("tp1"), place("tp1"), place("cl"), place("sl")]
    assert [protection_rank(a) for a in actions] == [2, 2, 2, 2, 1, 0]
    order = resend_order(actions, [1, 2, 3, 4, 5])
    assert [actions[i].slot for i in order] == ["sl", "cl", "e3", "tp1", "tp1"]
    assert order[3:] == [2, 3]  # a slot's cancel stays ahead of its replacement
    assert resend_order(actions, []) == []


class LimitedVenue:
    """A venue whose order budget holds ``budget`` creates until ``reset_at``, then refills."""

    def __init__(self, clock: VirtualClock, budget: int, reset_at: float) -> None:
        self.clock = clock
        self.budget = budget
        self.reset_at = reset_at
        self.sent: list[tuple[str, float, bool]] = []

    async def place(self, request: OrderRequest) -> OrderAck:
        now = self.clock.now()
        if now >= self.reset_at:
            self.budget, self.reset_at = 10, now + 1.0
        admitted = self.budget > 0
        self.sent.append((request.link_id, now, admitted))
        if not admitted:
            raise RateLimited("Too many visits!", 10006, reset_at=self.reset_at)
        self.budget -= 1
        return OrderAck(order_id=f"id-{request.link_id}", link_id=request.link_id)


async def test_rate_limited_actions_are_sent_again_at_the_reset_stop_loss_first() -> None:
    clock = VirtualClock(start=100.0)
    venue = LimitedVenue(clock, budget=1, reset_at=100.5)
    actions: Sequence[Action] = [place("e2"), place("e3"), place("sl"), place("tp1")]
    results = await clock.drive_while(execute_actions(venue, actions, clock))  # type: ignore[arg-type]
    assert [r.action for r in results] == list(actions)  # one result per action, in the order given
    assert all(r.ok for r in results), results
    assert [r.ack.order_id for r in results if r.ack] == ["id-e2", "id-e3", "id-sl", "id-tp1"]
    # e2 fits; e3 is refused and nothing after it is sent before the reset; then the stop goes first
    assert [(link, admitted) for link, _, admitted in venue.sent] == [
        ("e2", True),
        ("e3", False),
        ("sl", True),
        ("e3", True),
        ("tp1", True),
    ]
    assert venue.sent[2][1] >= 100.5  # the wait is on the engine's clock, until the reset time


async def test_three_conservative_trades_at_once_get_every_entry_placed() -> None:
    """Twenty-four creates in the same simulated second (three trades' three entries, stop and four
    TPs each) exceed the simulator's 10 per second: the refused ones go out after the reset, stop
    first, instead of being lost as refused entries."""
    h = Harness()
    await h.start()
    trades = [
        ScenarioTrade(
            at=0.0,
            symbol=symbol,
            side=side,
            approach=Approach.CONSERVATIVE,
            margin=1000.0,  # 0.1 BTC at 10x: enough for four TPs
            leverage=10.0,
            entry_offsets_pct=(0.0, -0.5, -1.0),
            tp_offsets_pct=(1.0, 2.0, 3.0, 4.0),
            sl_offset_pct=-2.0,
        )
        for symbol, side in ((SYMBOL, Side.BUY), ("ETHUSDT", Side.BUY), ("SOLUSDT", Side.SELL))
    ]
    assert await run_trades(h.manager, trades, h.clock) == 3
    await h.settle(5.0)
    assert not [a for a in h.alerts if a[1] in ("entry_refused", "sl_retry")], h.alerts
    for symbol in (SYMBOL, "ETHUSDT", "SOLUSDT"):
        orders = h.exchange.open_orders("main", symbol)
        resting = sorted(purpose_of(o.link_id) or "" for o in orders if o.trigger_price is None)
        assert [p for p in resting if p == "entry"] == ["entry", "entry"], (symbol, resting)
        assert len(stop_orders(orders)) == 1, (symbol, orders)
        assert sum(1 for p in resting if p.startswith("tp")) == 4, (symbol, resting)
        assert h.exchange.positions("main", symbol)[0].is_open  # the market entry filled
    await h.close()
