"""CallBudget: rolling windows on the virtual clock, priorities, batch units, refusals, the IP window."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from engine.core.clock import VirtualClock
from engine.venue.base import Endpoint
from engine.venue.budget import CallBudget, CallKind, IpWindow, WindowReport, kind_of, shared_ip_window
from engine.venue.priority import Priority, call_priority

# The queueing rules hold for each order verb's window alike; these tests use the amends'.
ORDERS, READS = CallKind.AMEND, CallKind.READS
T0 = 20_000.0


def make_budget(*, orders: int = 10, reads: int = 50, ip: IpWindow | None = None) -> CallBudget:
    clock = ip.clock if ip is not None else VirtualClock(start=T0)
    assert isinstance(clock, VirtualClock)
    return CallBudget(clock, ip or IpWindow(clock), orders_per_s=orders, reads_per_s=reads)


def vclock(budget: CallBudget) -> VirtualClock:
    assert isinstance(budget.clock, VirtualClock)
    return budget.clock


async def spend_staggered(budget: CallBudget, kind: CallKind, units: int, step: float) -> None:
    """Spend ``units`` one at a time, ``step`` seconds apart (so they expire one at a time too)."""
    for i in range(units):
        if i:
            vclock(budget).advance(step)
        await budget.acquire(kind)


async def timed(budget: CallBudget, name: str, log: list[tuple[str, float]], wait: Awaitable[None]) -> None:
    """Await ``wait`` and record when (in seconds after T0) it was granted."""
    await wait
    log.append((name, round(budget.clock.now() - T0, 6)))


async def settle(clock: VirtualClock) -> None:
    """Let every runnable task run without moving time."""
    await clock.drive(clock.now())


def test_order_endpoints_spend_the_order_budget_and_everything_else_reads() -> None:
    orders = [
        Endpoint.CREATE,
        Endpoint.AMEND,
        Endpoint.CANCEL,
        Endpoint.CANCEL_ALL,
        Endpoint.CREATE_BATCH,
        Endpoint.AMEND_BATCH,
        Endpoint.CANCEL_BATCH,
        Endpoint.SET_LEVERAGE,
    ]
    reads = [
        Endpoint.POSITIONS,
        Endpoint.OPEN_ORDERS,
        Endpoint.EXECUTIONS,
        Endpoint.WALLET,
        Endpoint.TICKERS,
        Endpoint.INSTRUMENTS,
    ]
    assert [kind_of(e) for e in orders] == [
        CallKind.PLACE,
        CallKind.AMEND,
        CallKind.CANCEL,
        CallKind.CANCEL,
        CallKind.PLACE_BATCH,
        CallKind.AMEND_BATCH,
        CallKind.CANCEL_BATCH,
        CallKind.PLACE,
    ]
    assert {kind_of(e) for e in reads} == {READS}


async def test_a_verbs_batch_endpoint_has_a_window_of_its_own() -> None:
    """Bybit limits each endpoint on its own: amend-batch's 10 items a second are not the single
    amend's 10 requests. Planned as one window, a stop's amend waited behind the take-profits'
    batched resizes although its own endpoint was idle."""
    clock = VirtualClock(T0)
    budget = CallBudget(clock, IpWindow(clock))
    await budget.acquire(CallKind.AMEND_BATCH, 10)
    assert budget.left(CallKind.AMEND_BATCH) == 0
    assert budget.left(CallKind.AMEND) == 10
    await budget.acquire(CallKind.AMEND, 1)  # at once: the single endpoint's window is untouched
    assert clock.now() == T0
    assert budget.row()["amend_batch"]["left"] == 0 and budget.row()["amend"]["left"] == 9


async def test_each_order_verb_has_its_own_window() -> None:
    """Bybit limits each order endpoint on its own (10/s each): a wave of TP1 fills moves thirty stops
    to breakeven while the entries' cancels and new take-profits queue. A stop's amend must not wait
    behind them: with one window for every order call it waited seconds at 1000 positions."""
    clock = VirtualClock(T0)
    budget = CallBudget(clock, IpWindow(clock))
    await budget.acquire(CallKind.CANCEL, 10)
    await budget.acquire(CallKind.PLACE, 10)
    waiting = asyncio.ensure_future(budget.acquire(CallKind.CANCEL, 5))  # queued: the window is spent
    await asyncio.sleep(0)
    assert not waiting.done()
    await budget.acquire(CallKind.AMEND, 3, Priority.PROTECT)  # granted at once, no clock moved
    assert clock.now() == T0
    assert (budget.left(CallKind.AMEND), budget.left(CallKind.CANCEL), budget.left(CallKind.PLACE)) == (
        7,
        0,
        0,
    )
    row = budget.row()
    assert (row["amend"]["left"], row["orders"]["left"], row["cancel"]["left"]) == (7, 0, 0)
    waiting.cancel()


async def test_the_window_rolls_unit_by_unit_on_the_clock() -> None:
    budget = make_budget()
    clock = vclock(budget)
    for _ in range(4):
        await budget.acquire(ORDERS)
    clock.advance(0.4)
    await budget.acquire(ORDERS, 6)
    assert budget.left(ORDERS) == 0
    assert budget.left(READS) == 50  # the other kind has its own window
    assert budget.row()["orders"] == {"limit": 10, "left": 0, "reset_in_s": 1.0}
    clock.advance(0.6)  # T0 + 1.0: the first four expire
    assert budget.left(ORDERS) == 4
    clock.advance(0.39)
    assert budget.left(ORDERS) == 4
    clock.advance(0.01)  # T0 + 1.4: the six expire too
    assert budget.left(ORDERS) == 10
    assert budget.row()["orders"] == {"limit": 10, "left": 10, "reset_in_s": 0.0}


async def test_a_caller_sleeps_until_the_unit_it_needs_expires() -> None:
    budget = make_budget()
    clock = vclock(budget)
    await spend_staggered(budget, ORDERS, 10, step=0.05)  # T0 .. T0 + 0.45
    log: list[tuple[str, float]] = []
    await clock.drive_while(timed(budget, "next", log, budget.acquire(ORDERS)))
    # Granted exactly when the oldest unit leaves the window, not polled for.
    assert log == [("next", 1.0)]
    await clock.drive_while(timed(budget, "two", log, budget.acquire(ORDERS, 2)))
    assert log[-1] == ("two", 1.1)  # the two oldest left: T0 + 0.05 and + 0.10


async def test_a_stop_loss_queued_after_a_trade_order_goes_first() -> None:
    budget = make_budget()
    clock = vclock(budget)
    await spend_staggered(budget, ORDERS, 10, step=0.1)  # one unit frees every 0.1 s from T0 + 1.0
    log: list[tuple[str, float]] = []
    trade = asyncio.ensure_future(
        timed(budget, "trade", log, budget.acquire(ORDERS, priority=Priority.TRADE))
    )
    await settle(clock)
    stop = asyncio.ensure_future(
        timed(budget, "stop", log, budget.acquire(ORDERS, priority=Priority.PROTECT))
    )
    await settle(clock)
    assert budget.waiting[Priority.TRADE] == 1 and budget.waiting[Priority.PROTECT] == 1
    await clock.drive_while(asyncio.gather(trade, stop))
    assert log == [("stop", 1.0), ("trade", 1.1)]
    assert sum(budget.waiting.values()) == 0


async def test_the_last_order_units_are_kept_for_stop_losses() -> None:
    """Entries and take-profits keep the window nearly spent; a stop moved to breakeven then still
    goes out at once, from the units only protective calls may take."""
    clock = VirtualClock(start=T0)
    budget = CallBudget(clock, IpWindow(clock), orders_per_s=10, protect_reserve=2)
    await spend_staggered(budget, ORDERS, 8, step=0.1)  # T0 .. T0 + 0.7; two units left
    log: list[tuple[str, float]] = []
    trade = asyncio.ensure_future(timed(budget, "tp", log, budget.acquire(ORDERS, priority=Priority.TRADE)))
    await settle(clock)
    assert budget.waiting[Priority.TRADE] == 1  # the two left are not for it
    await clock.drive_while(timed(budget, "sl", log, budget.acquire(ORDERS, priority=Priority.PROTECT)))
    assert log == [("sl", 0.7)]  # at once
    await clock.drive_while(trade)
    assert log[-1] == ("tp", 1.1)  # T0 and T0 + 0.1 left the window: 7 + 1 (the stop) used, room for it


async def test_dashboard_reads_wait_while_the_checks_are_served() -> None:
    budget = make_budget(reads=5)
    clock = vclock(budget)
    await spend_staggered(budget, READS, 5, step=0.1)
    log: list[tuple[str, float]] = []
    waiters = [
        asyncio.ensure_future(timed(budget, "dash", log, budget.acquire(READS, priority=Priority.DASHBOARD)))
    ]
    await settle(clock)
    for i in range(3):
        check = budget.acquire(READS, priority=Priority.CHECK)
        waiters.append(asyncio.ensure_future(timed(budget, f"check{i}", log, check)))
    await settle(clock)
    assert budget.waiting == {
        Priority.PROTECT: 0,
        Priority.TRADE: 0,
        Priority.OPEN: 0,
        Priority.CHECK: 3,
        Priority.DASHBOARD: 1,
    }
    await clock.drive_while(asyncio.gather(*waiters))
    assert log == [("check0", 1.0), ("check1", 1.1), ("check2", 1.2), ("dash", 1.3)]


async def test_a_less_urgent_call_never_takes_units_a_more_urgent_batch_needs() -> None:
    budget = make_budget()
    clock = vclock(budget)
    await spend_staggered(budget, ORDERS, 10, step=0.1)
    log: list[tuple[str, float]] = []
    batch = asyncio.ensure_future(timed(budget, "sl-batch", log, budget.acquire(ORDERS, 3, Priority.PROTECT)))
    await clock.drive(T0 + 1.15)  # two units are free now, but the batch needs three
    assert budget.left(ORDERS) == 2
    single = asyncio.ensure_future(timed(budget, "tp", log, budget.acquire(ORDERS, 1, Priority.TRADE)))
    await clock.drive_while(asyncio.gather(batch, single))
    # The units freed at 1.0 and 1.1 stay for the batch; the take-profit gets the next one.
    assert log == [("sl-batch", 1.2), ("tp", 1.3)]


async def test_a_batch_costs_a_unit_per_item_and_one_above_the_limit_waits_for_an_empty_window() -> None:
    budget = make_budget()
    clock = vclock(budget)
    await budget.acquire(ORDERS, 7)
    assert budget.left(ORDERS) == 3
    clock.advance(0.5)
    await budget.acquire(ORDERS, 1)
    log: list[tuple[str, float]] = []
    await clock.drive_while(timed(budget, "20 items", log, budget.acquire(ORDERS, 20)))
    assert log == [("20 items", 1.5)]  # not forever: granted once every unit has left the window
    assert budget.left(ORDERS) == 0
    await clock.drive_while(timed(budget, "after", log, budget.acquire(ORDERS)))
    assert log[-1] == ("after", 2.5)  # the 20 units count for a whole window


async def test_a_refusal_pauses_the_kind_until_its_reset() -> None:
    budget = make_budget()
    clock = vclock(budget)
    budget.refused(ORDERS, reset_at=T0 + 2.5)
    assert budget.left(ORDERS) == 0
    assert budget.left(READS) == 50
    assert budget.row()["orders"]["reset_in_s"] == 2.5
    log: list[tuple[str, float]] = []
    await clock.drive_while(timed(budget, "after reset", log, budget.acquire(ORDERS)))
    assert log == [("after reset", 2.5)]
    # Without a reset time (or a stale one) the window counts as spent for one window.
    budget.refused(READS, reset_at=None)
    budget.refused(ORDERS, reset_at=T0)
    assert (budget.left(READS), budget.left(ORDERS)) == (0, 0)
    clock.advance(1.0)
    assert budget.left(READS) == 50


async def test_the_ip_window_is_shared_by_the_accounts_on_one_host() -> None:
    clock = VirtualClock(start=T0)
    ip = IpWindow(clock, limit=12, window_s=5.0)
    main, mirror = make_budget(ip=ip), make_budget(ip=ip)
    for _ in range(8):
        await main.acquire(READS)
    assert mirror.left(READS) == 4  # its own window is full, the IP's is not
    await mirror.acquire(ORDERS, 4)
    assert (main.left(READS), mirror.left(ORDERS)) == (0, 0)
    log: list[tuple[str, float]] = []
    await clock.drive_while(timed(mirror, "mirror read", log, mirror.acquire(READS)))
    assert log == [("mirror read", 5.0)]  # when main's reads leave the 5 s window
    assert ip.row()["limit"] == 12


def test_one_ip_window_per_host_for_the_process() -> None:
    clock = VirtualClock(start=T0)
    first = shared_ip_window("api-testnet.bybit.com", clock)
    assert shared_ip_window("https://api-testnet.bybit.com", clock) is first
    assert shared_ip_window("api-demo.bybit.com", clock) is not first
    # Another clock is another engine's simulated time: its accounts get a window of their own.
    assert shared_ip_window("api-testnet.bybit.com", VirtualClock(start=T0)) is not first
    assert (first.limit, first.window_s) == (600, 5.0)


async def test_a_request_holds_its_units_until_one_window_after_its_answer() -> None:
    budget = make_budget(orders=2)
    clock = vclock(budget)
    async with budget.claim(ORDERS):
        clock.advance(3.0)  # a slow answer: the unit cannot expire while the request is out
        assert budget.left(ORDERS) == 1
    clock.advance(0.99)
    assert budget.left(ORDERS) == 1
    clock.advance(0.01)
    assert budget.left(ORDERS) == 2


async def test_a_waiter_blocked_by_requests_in_flight_wakes_when_they_are_answered() -> None:
    budget = make_budget(orders=1)
    clock = vclock(budget)
    answered = asyncio.Event()

    async def request() -> None:
        async with budget.claim(ORDERS):
            await answered.wait()

    log: list[tuple[str, float]] = []
    out = asyncio.ensure_future(request())
    await settle(clock)
    waiter = asyncio.ensure_future(timed(budget, "next", log, budget.acquire(ORDERS)))
    await settle(clock)
    clock.advance(0.3)
    answered.set()
    await clock.drive_while(asyncio.gather(out, waiter))
    assert log == [("next", 1.3)]


async def test_a_cancelled_waiter_gives_its_place_to_the_next() -> None:
    budget = make_budget()
    clock = vclock(budget)
    await spend_staggered(budget, ORDERS, 10, step=0.1)
    log: list[tuple[str, float]] = []
    big = asyncio.ensure_future(budget.acquire(ORDERS, 5, Priority.PROTECT))
    await settle(clock)
    small = asyncio.ensure_future(timed(budget, "small", log, budget.acquire(ORDERS, 1, Priority.TRADE)))
    await clock.drive(T0 + 1.05)
    assert log == []  # the unit freed at 1.0 is kept for the big one
    big.cancel()
    await clock.drive_while(small)
    assert log == [("small", 1.05)]
    assert sum(budget.waiting.values()) == 0


async def test_the_priority_defaults_to_the_callers_stated_one() -> None:
    budget = make_budget(reads=1)
    clock = vclock(budget)
    await budget.acquire(READS)
    log: list[tuple[str, float]] = []

    async def as_(priority: Priority, name: str) -> None:
        with call_priority(priority):
            await timed(budget, name, log, budget.acquire(READS))

    dash = asyncio.ensure_future(as_(Priority.DASHBOARD, "dash"))
    await settle(clock)
    check = asyncio.ensure_future(as_(Priority.CHECK, "check"))
    await settle(clock)
    assert budget.waiting[Priority.DASHBOARD] == budget.waiting[Priority.CHECK] == 1
    await clock.drive_while(asyncio.gather(dash, check))
    assert log == [("check", 1.0), ("dash", 2.0)]


async def test_units_must_be_positive() -> None:
    budget = make_budget()
    with pytest.raises(ValueError):
        await budget.acquire(ORDERS, 0)


# --- following what the venue reports (X-Bapi-Limit* headers, as WindowReports) ---------------------


def amend_report(limit: int, remaining: int, reset_in_s: float = 0.0) -> WindowReport:
    return WindowReport(ORDERS, limit, remaining, reset_in_s, source=Endpoint.AMEND)


async def test_a_reported_higher_limit_lets_more_calls_through_in_one_window_than_the_setting() -> None:
    budget = make_budget(orders=10)
    clock = vclock(budget)
    budget.observe(amend_report(limit=20, remaining=20))  # a higher VIP level
    assert budget.limit(ORDERS) == 20 and budget.limit(CallKind.PLACE) == 10  # that kind's window only
    log: list[tuple[str, float]] = []
    await clock.drive_while(
        asyncio.gather(*(timed(budget, "amend", log, budget.acquire(ORDERS)) for _ in range(20)))
    )
    assert log == [("amend", 0.0)] * 20
    assert budget.row()["amend"]["limit"] == 20
    # A lower one is followed too.
    budget.observe(amend_report(limit=5, remaining=5))
    assert budget.limit(ORDERS) == 5


async def test_a_window_over_several_endpoints_follows_the_least_of_their_reported_limits() -> None:
    budget = make_budget(orders=10)
    budget.observe(WindowReport(CallKind.PLACE, 20, 20, 0.0, source=Endpoint.CREATE))
    assert budget.limit(CallKind.PLACE) == 20
    budget.observe(WindowReport(CallKind.PLACE, 10, 10, 0.0, source=Endpoint.SET_LEVERAGE))
    assert budget.limit(CallKind.PLACE) == 10  # the merged window never plans more than either allows


async def test_the_protective_reserve_follows_a_reported_limit() -> None:
    clock = VirtualClock(start=T0)
    budget = CallBudget(clock, IpWindow(clock), orders_per_s=10, protect_reserve=2)
    budget.observe(amend_report(limit=2, remaining=2))
    assert budget.reserve(ORDERS) == 1  # never the whole window
    budget.observe(amend_report(limit=20, remaining=20))
    assert budget.reserve(ORDERS) == 2


async def test_fewer_left_than_believed_makes_the_next_claim_wait_until_the_reported_reset() -> None:
    budget = make_budget(orders=10)
    clock = vclock(budget)
    await budget.acquire(ORDERS, 2)
    assert budget.left(ORDERS) == 8
    budget.observe(amend_report(limit=10, remaining=0, reset_in_s=0.7))  # another client spent them
    assert budget.left(ORDERS) == 0
    assert budget.left(CallKind.PLACE) == 10
    log: list[tuple[str, float]] = []
    await clock.drive_while(timed(budget, "next", log, budget.acquire(ORDERS)))
    assert log == [("next", 0.7)]


async def test_a_reported_remainder_caps_the_window_and_keeps_the_protective_reserve() -> None:
    """Three left by the venue's count: a take-profit takes one (two stay for the stops), the stops
    take the other two, and the next call waits for the window (Bybit gives no reset while units are
    left, so the cap holds one window)."""
    clock = VirtualClock(start=T0)
    budget = CallBudget(clock, IpWindow(clock), orders_per_s=10, protect_reserve=2)
    budget.observe(amend_report(limit=10, remaining=3, reset_in_s=0.0))
    log: list[tuple[str, float]] = []
    tps = [
        asyncio.ensure_future(timed(budget, "tp", log, budget.acquire(ORDERS, priority=Priority.TRADE)))
        for _ in range(2)
    ]
    await settle(clock)
    assert log == [("tp", 0.0)]
    stops = [
        asyncio.ensure_future(timed(budget, "sl", log, budget.acquire(ORDERS, priority=Priority.PROTECT)))
        for _ in range(3)
    ]
    await clock.drive_while(asyncio.gather(*tps, *stops))
    assert log == [("tp", 0.0), ("sl", 0.0), ("sl", 0.0), ("sl", 1.0), ("tp", 1.0)]


async def test_more_left_than_believed_or_a_nonsense_report_changes_nothing() -> None:
    budget = make_budget(orders=10)
    await budget.acquire(ORDERS, 4)
    before = budget.row()
    budget.observe(amend_report(limit=10, remaining=10))  # the venue's window rolled sooner: ours stays
    budget.observe(amend_report(limit=0, remaining=-1, reset_in_s=0.5))
    budget.observe(amend_report(limit=10, remaining=0, reset_in_s=1e9))  # no per-second window's reset
    assert budget.row() == before
    assert budget.left(ORDERS) == 6
