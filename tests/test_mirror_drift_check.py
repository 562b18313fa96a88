"""The mirror's follower at scale: the drift check's one pass over each account's records and its turns
for the loop, and the queue worked off a slice per run.

At a thousand mirrored trades the check scanned every position and stop order once per link, and
compared the links without an await between them: the engine's loop was held 170 ms at every check.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from test_snapshot_rows import monitor, new_follower, new_manager

from engine.core.models import Instrument, Order, OrderStatus, OrderType, Position, Side
from engine.core.state_keys import MIRROR_KEY
from engine.mirror.drift import held_sizes, stop_cover, stop_covers
from engine.mirror.follower import (
    LINKS_PER_TURN,
    QUEUE_TICK_S,
    LinkState,
    MirrorFollower,
    MirrorLink,
    MirrorTask,
    Verb,
)

SYMBOLS = [f"S{i:03d}USDT" for i in range(3 * LINKS_PER_TURN + 7)]


def stop(symbol: str, side: Side, qty: float, *, filled: float = 0.0, reduce_only: bool = True) -> Order:
    return Order(
        "mirror",
        f"id-{symbol}-{side}-{qty}",
        "",
        symbol,
        side,
        OrderType.MARKET,
        qty,
        None,
        OrderStatus.UNTRIGGERED,
        filled_qty=filled,
        trigger_price=90.0,
        reduce_only=reduce_only,
    )


def position(account: str, symbol: str, side: Side | None, size: float) -> Position:
    return Position(account, symbol, side, size, 100.0, 100.0, 0.0, 0.0, 1.0, 0.0)


def test_one_pass_covers_and_sizes_equal_a_scan_per_symbol_and_side() -> None:
    rng = random.Random(11)
    symbols = ["AUSDT", "BUSDT", "CUSDT"]
    for _ in range(200):
        orders = [
            stop(
                rng.choice(symbols),
                rng.choice(list(Side)),
                rng.choice([0.1, 0.25, 1.0]),
                filled=rng.choice([0.0, 0.05]),
                reduce_only=rng.random() < 0.8,
            )
            for _ in range(rng.randrange(0, 12))
        ]
        positions = [
            position("mirror", rng.choice(symbols), rng.choice([*Side, None]), rng.choice([0.0, 0.5]))
            for _ in range(rng.randrange(0, 6))
        ]
        covers, held = stop_covers(orders), held_sizes(positions)
        for symbol in symbols:
            for side in Side:
                protecting = [
                    o.remaining_qty
                    for o in orders
                    if o.symbol == symbol and o.side is side.opposite and o.reduce_only
                ]
                assert covers.get((symbol, side), 0.0) == sum(protecting)
                assert stop_cover(orders, symbol, side) == sum(protecting)
                assert held.get((symbol, side), 0.0) == sum(
                    p.size for p in positions if p.symbol == symbol and p.side is side and p.size > 0
                )


class Books:
    """Both accounts' positions and the mirror's stops, as a venue answers for the whole account."""

    def __init__(self, account: str, positions: Sequence[Position], orders: Sequence[Order]) -> None:
        self.account, self._positions, self._orders = account, list(positions), list(orders)

    async def positions(self, symbol: str | None = None) -> list[Position]:
        return list(self._positions)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        return list(self._orders)


def follower_of(symbols: Sequence[str], uncovered: str) -> MirrorFollower:
    """A link per symbol, both legs held and in line; the mirror's stop on ``uncovered`` is missing."""
    manager = new_manager()
    for symbol in symbols:
        for account in ("main", "mirror"):
            m = monitor(account, symbol)
            m.size = 1.0 if account == "main" else 0.5
            manager.monitors[m.key] = m
        manager.instruments[symbol] = Instrument(symbol, 0.01, 0.5, 0.5, 1e6)
    manager._ready.update({"main": True, "mirror": True})
    follower = new_follower(manager)
    follower.venues = {
        "main": Books("main", [position("main", s, Side.BUY, 1.0) for s in symbols], []),
        "mirror": Books(
            "mirror",
            [position("mirror", s, Side.BUY, 0.5) for s in symbols],
            [stop(s, Side.SELL, 0.5) for s in symbols if s != uncovered],
        ),
    }
    for symbol in symbols:
        main = manager.monitors[f"main:{symbol}:Buy"]
        mirror = manager.monitors[f"mirror:{symbol}:Buy"]
        follower.links[main.key] = MirrorLink(
            main.key, main.monitor_id, symbol, "Buy", LinkState.OPEN, 0.5, 0.5, mirror.monitor_id
        )
    return follower


async def test_the_drift_check_gives_the_loop_turns_between_its_links_and_finds_what_it_did() -> None:
    follower = follower_of(SYMBOLS, uncovered="S005USDT")
    follower._repair = _no_repair  # type: ignore[method-assign,assignment]  # what is found, not how it is repaired
    clock = follower.manager.clock
    for link in follower.links.values():
        link.changed = False
    seen_meanwhile: list[int] = []  # how many links the check had looked at, each time another task ran

    async def bystander() -> None:
        while True:
            seen_meanwhile.append(sum(1 for link in follower.links.values() if link.changed))
            await asyncio.sleep(0)

    watching = asyncio.ensure_future(bystander())
    try:
        await clock.drive_while(follower.check_drift())
    finally:
        watching.cancel()
    partly = {n for n in seen_meanwhile if 0 < n < len(SYMBOLS)}
    assert len(partly) >= 3, sorted(set(seen_meanwhile))  # it ran between the links, not only around them
    drifted = {key: link.drift for key, link in follower.links.items() if link.drift}
    assert drifted == {"main:S005USDT:Buy": ("missing_stop",)}
    assert all(link.changed for link in follower.links.values())  # every link was looked at


async def _no_repair(*_args: object) -> None:
    return None


async def test_a_link_forgotten_while_the_check_gave_the_loop_a_turn_is_skipped() -> None:
    follower = follower_of(SYMBOLS[: LINKS_PER_TURN + 2], uncovered="")
    last = follower.links[f"main:{SYMBOLS[LINKS_PER_TURN + 1]}:Buy"]
    last.state = LinkState.CLOSED  # done: the check forgets it, since its main is gone too
    del follower.manager.monitors[last.main_key]
    for link in follower.links.values():
        link.changed = False

    async def forget_it_meanwhile() -> None:
        for _ in range(1000):  # a turn at a time, until the check is under way
            if any(link.changed for link in follower.links.values()):
                break
            await asyncio.sleep(0)
        del follower.links[last.main_key]  # as the queue does when it settles a link

    forgetting = asyncio.ensure_future(forget_it_meanwhile())
    await follower.manager.clock.drive_while(follower.check_drift())  # no KeyError at the forgotten link
    await forgetting
    assert last.main_key not in follower.links
    assert len(follower.links) == LINKS_PER_TURN + 1
    assert all(link.changed and not link.drift for link in follower.links.values())


async def test_a_long_queue_is_worked_off_a_slice_per_run_with_each_slice_saved() -> None:
    """A thousand mirror tasks at the venue's rate made one queue run of minutes: overrunning its
    one-second interval all along, and with nothing of it saved until its end."""
    follower = follower_of(SYMBOLS[:12], uncovered="")
    clock = follower.manager.clock
    for link in list(follower.links.values()):
        follower._enqueue(Verb.BREAKEVEN, link)
    done: list[int] = []

    async def slow_task(task: MirrorTask) -> bool:
        await clock.sleep(0.2)  # the venue's answers, at its rate
        done.append(task.task_id)
        return True

    follower._run = slow_task  # type: ignore[method-assign]
    began = clock.now()
    await clock.drive_while(follower.run_queue())
    assert clock.now() - began < QUEUE_TICK_S  # the run ended within its interval
    assert 0 < len(done) < 12
    saved = follower.store.crash_copy().state[MIRROR_KEY]["tasks"]  # what a crash now would leave
    assert [t["task_id"] for t in saved] == [t.task_id for t in follower.tasks]
    assert len(saved) == 12 - len(done)
    for _ in range(12):
        await clock.drive_while(follower.run_queue())
    assert done == sorted(done) and len(done) == 12  # all of them, in the queue's order
    assert follower.tasks == [] and follower.store.crash_copy().state[MIRROR_KEY]["tasks"] == []
