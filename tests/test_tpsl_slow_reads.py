"""A read of the venue answered late (an answer that outlives the client's timeout, a slow venue)
never holds back the decision of a fill: the account's reconciliation reads without its lock, so
a fill that lands meanwhile has its stop resized at once (soak, seed 5: a monitor check's
``/v5/position/list`` answered after the 30 s timeout kept main's ETHUSDT entry 2 without a full
stop for 19.6 s). The pass then leaves alone what changed since its reads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tpsl_harness import SYMBOL, Harness, stop_orders

from engine.trading.approaches import Approach

KEY = f"main:{SYMBOL}:Buy"


class LateRead:
    """Every call of the venue's read ``name`` is executed at once and answered only when
    :attr:`answered` is set, as a venue answers late: the caller gets the state before the wait."""

    def __init__(self, h: Harness, name: str) -> None:
        self.answered = asyncio.Event()
        self.waiting = 0
        read = getattr(h.venue, name)

        async def late(*args: Any) -> Any:
            result = await read(*args)
            self.waiting += 1
            await self.answered.wait()
            return result

        setattr(h.venue, name, late)


def stop_covers_position(h: Harness) -> bool:
    stops = stop_orders([o for o in h.open_orders() if o.symbol == SYMBOL])
    return len(stops) == 1 and stops[0].qty == h.position().size > 0


@pytest.mark.parametrize("read", ["positions", "open_orders", "executions"])
async def test_a_fill_resizes_the_stop_while_a_reconciliation_read_is_answered_late(read: str) -> None:
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=1000.0))
    await h.settle()
    assert stop_covers_position(h)
    first = h.position().size
    late = LateRead(h, read)
    checking = asyncio.create_task(h.manager.reconcile("main", full=True, scope=frozenset({SYMBOL})))
    await h.settle()
    assert late.waiting and not checking.done()

    await h.price(98_900.0)  # through entry 2's limit: it fills while the read is not answered

    assert h.position().size > first
    assert h.manager.monitors[KEY].size == h.position().size
    assert stop_covers_position(h), h.open_orders()  # resized on the engine's clock, not 30 s later
    assert not checking.done()
    late.answered.set()
    await h.settle()
    assert checking.done() and checking.exception() is None
    # The pass read the position before the fill: it left the symbol alone, repaired nothing.
    assert checking.result() == 0
    assert not [a for a in h.alerts if a[0] == "critical" or a[1] in ("drift", "orphan_orders")], h.alerts
    assert stop_covers_position(h)
    assert h.manager.monitors[KEY].size == h.position().size
    await h.close()


@pytest.mark.parametrize("read", ["tickers", "wallet", "positions"])
async def test_opening_a_trade_whose_read_is_answered_late_never_holds_back_another_positions_stop(
    read: str,
) -> None:
    """Opening a trade reads the venue (mark, balance, position) before it sends anything; a late
    answer there must not keep the account's other positions waiting for their stops."""
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.CONSERVATIVE, margin=1000.0))
    await h.settle()
    first = h.position().size
    late = LateRead(h, read)
    mark = h.exchange.ticker("ETHUSDT").mark
    eth = h.request(Approach.FAST, symbol="ETHUSDT", entries=(None,), tps=(mark * 1.02,), sl=mark * 0.98)
    opening = asyncio.create_task(h.manager.open_trade(eth))
    await h.settle()
    assert late.waiting and not opening.done()

    await h.price(98_900.0)  # BTC's entry 2 fills while the ETH opening waits for its answer

    assert h.position().size > first
    assert stop_covers_position(h), h.open_orders()
    late.answered.set()
    await h.settle()
    assert opening.done() and opening.exception() is None
    assert h.manager.monitors["main:ETHUSDT:Buy"].size > 0
    await h.close()
