"""Waiters are told in the order they began waiting, never in the order of their addresses.

A set (or a WeakSet) of futures or objects hashed by identity iterates in an order that follows their
memory addresses, which differ from one process to the next: the order sender woke its plans waiting
for room, and the IP window told the accounts' budgets of landed units, in that order. Two requests
at the same simulated instant then left in either order and met different latencies: the benchmark's
300-position workload closed 99 trades in one run and 96 in the next. With ordered containers two
runs of a seed send the same requests in the same order.
"""

from __future__ import annotations

import asyncio

from tpsl_harness import EPOCH, new_exchange

from engine.core.clock import VirtualClock
from engine.sim.venue import SimVenue
from engine.trading.orders import OrderSender
from engine.venue.budget import IpWindow

WAITERS = 64


async def test_plans_waiting_for_room_are_woken_in_the_order_they_began_to_wait() -> None:
    clock = VirtualClock(start=EPOCH)
    sender = OrderSender(SimVenue(new_exchange(clock), "main"), clock, batching=True)
    resumed: list[int] = []

    async def plan(n: int) -> None:
        await sender._poll()
        resumed.append(n)

    plans = [asyncio.ensure_future(plan(n)) for n in range(WAITERS)]
    for _ in range(3):
        await asyncio.sleep(0)  # every plan is waiting now
    sender.supersede([])  # a new fill: the plans waiting for room look again
    await asyncio.gather(*plans)
    assert resumed == list(range(WAITERS))
    assert clock.now() == EPOCH  # woken, not timed out


class Told:
    """Stands in for an account's budget: records when the IP window tells it units landed."""

    def __init__(self, name: int, log: list[int]) -> None:
        self.name, self.log = name, log

    def _dispatch(self) -> None:
        self.log.append(self.name)


def test_the_ip_window_tells_the_budgets_in_the_order_they_attached() -> None:
    window = IpWindow(VirtualClock(start=EPOCH), limit=600)
    told: list[int] = []
    budgets = [Told(n, told) for n in range(WAITERS)]
    for budget in budgets:
        window.attach(budget)  # type: ignore[arg-type]
    window.land(1)
    assert told == list(range(WAITERS))
    del budgets[: WAITERS // 2]  # a budget gone with its engine is no longer told
    told.clear()
    window.land(1)
    assert told == list(range(WAITERS // 2, WAITERS))
