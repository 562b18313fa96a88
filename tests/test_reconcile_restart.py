"""Reconciliation races and round trips made while the engine was down, as restart scenarios on the
simulator and over the fake V5 server (``@on_both_venues``).

A :class:`ProbeVenue` wraps the engine's venue: it can move the market right after a read (the
latency window between two reads of one reconciliation pass), and it checks, at every cancel the
engine sends, that an open position keeps a stop other than the order being cancelled (the
protection invariant holds *during* the pass, not only once it is over).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
from tpsl_harness import (
    SYMBOL,
    Crash,
    Harness,
    Market,
    MemoryStore,
    assert_protected,
    on_both_venues,
    stop_orders,
)

from engine.core.link_ids import parse_link_id
from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Execution,
    Instrument,
    Order,
    OrderAck,
    OrderRequest,
    Phase,
    Position,
    Ticker,
    VenueEvent,
    Wallet,
)
from engine.trading.approaches import Approach
from engine.venue.base import BatchResult, Venue


class ProbeVenue(Venue):
    """The harness's venue, plus a one-shot market move after the next open-orders read and a
    protection check before every cancel (violations are collected, not raised inside the engine)."""

    def __init__(self, inner: Venue, harness: Harness) -> None:
        self.inner = inner
        self.harness = harness
        self.account = inner.account
        self.calls = inner.calls
        self.after_orders_read: Callable[[], None] | None = None
        self.unprotected: list[str] = []

    def _check_cancel(self, requests: Sequence[CancelRequest]) -> None:
        """Record a cancel that would leave an open position without any stop."""
        position = self.harness.position()
        if not position.is_open:
            return
        gone = {r.order_id for r in requests if r.order_id} | {r.link_id for r in requests if r.link_id}
        left = [
            o
            for o in stop_orders(self.harness.open_orders())
            if o.order_id not in gone and o.link_id not in gone
        ]
        if not any(o.side is not position.side and o.qty >= position.size for o in left):
            self.unprotected.append(f"cancel {sorted(gone)} leaves {position.size:g} without a stop")

    async def instruments(self, symbols: Sequence[str] | None = None) -> dict[str, Instrument]:
        return await self.inner.instruments(symbols)

    async def tickers(self, symbols: Sequence[str] | None = None) -> dict[str, Ticker]:
        return await self.inner.tickers(symbols)

    async def wallet(self) -> Wallet:
        return await self.inner.wallet()

    async def positions(self, symbol: str | None = None) -> list[Position]:
        return await self.inner.positions(symbol)

    async def open_orders(self, symbol: str | None = None) -> list[Order]:
        orders = await self.inner.open_orders(symbol)
        hook, self.after_orders_read = self.after_orders_read, None
        if hook is not None:
            hook()
        return orders

    async def executions(self, since: float, symbol: str | None = None) -> list[Execution]:
        return await self.inner.executions(since, symbol)

    async def set_leverage(self, symbol: str, leverage: float) -> None:
        await self.inner.set_leverage(symbol, leverage)

    async def place(self, request: OrderRequest) -> OrderAck:
        return await self.inner.place(request)

    async def amend(self, request: AmendRequest) -> OrderAck:
        return await self.inner.amend(request)

    async def cancel(self, request: CancelRequest) -> OrderAck:
        self._check_cancel([request])
        return await self.inner.cancel(request)

    async def cancel_all(self, symbol: str) -> list[OrderAck]:
        self._check_cancel([CancelRequest(symbol, order_id=o.order_id) for o in self.harness.open_orders()])
        return await self.inner.cancel_all(symbol)

    async def place_batch(self, requests: Sequence[OrderRequest]) -> list[BatchResult]:
        return await self.inner.place_batch(requests)

    async def amend_batch(self, requests: Sequence[AmendRequest]) -> list[BatchResult]:
        return await self.inner.amend_batch(requests)

    async def cancel_batch(self, requests: Sequence[CancelRequest]) -> list[BatchResult]:
        self._check_cancel(requests)
        return await self.inner.cancel_batch(requests)

    def stream(self) -> AsyncIterator[VenueEvent]:
        return self.inner.stream()

    async def close(self) -> None:
        await self.inner.close()


def probed(h: Harness) -> ProbeVenue:
    """Put a :class:`ProbeVenue` between ``h``'s engine (not started yet) and its venue."""
    probe = ProbeVenue(h.venue, h)
    h.venue = probe
    h.manager.venues["main"] = probe
    return probe


async def restart_probed(
    h: Harness, store: MemoryStore | None = None, after_orders_read: Callable[[], None] | None = None
) -> tuple[Harness, ProbeVenue]:
    """:meth:`Harness.restart`, with the new engine's venue probed; ``store`` replaces what the old
    one made durable (an empty one: the state was lost)."""
    await h.stop()
    await h.venue.close()
    again = h._again(store if store is not None else h.store.crash_copy())
    probe = probed(again)
    probe.after_orders_read = after_orders_read
    await again.start()
    return again, probe


CRASH_POINTS = 20


def our_monitor_ids(orders: list[Order]) -> set[str]:
    return {p.monitor_id for o in orders if (p := parse_link_id(o.link_id)) is not None}


@on_both_venues
async def test_a_stop_filled_between_the_reads_is_recorded_not_adopted(market: Market) -> None:
    """The stop fills after the positions read of the start-up pass: the older read still shows the
    position. The fill closes the trade with its real exit; nothing is adopted (no phantom trade)."""
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, margin=1000.0))
    await h.settle()
    exchange = h.exchange
    h, probe = await restart_probed(h, after_orders_read=lambda: exchange.set_price(SYMBOL, 96_500.0))
    await h.settle()
    assert not h.position().is_open
    assert h.manager.monitors == {}, h.manager.monitors
    assert not any(kind == "position_adopted" for _, kind, _ in h.alerts), h.alerts
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "sl" and trade.exit_price == pytest.approx(96_500.0) and not trade.exit_estimated
    assert h.open_orders() == []
    assert probe.unprotected == []
    await h.stop()


@on_both_venues
async def test_a_round_trip_and_a_new_position_while_down_are_both_ledgered_and_protected(
    market: Market,
) -> None:
    """While the engine is down the TPs flatten the position, then a leftover limit entry fills and
    opens a new one. On restart the old trade is recorded with its real exit, the new position is
    adopted with a stop of its own, placed before anything of the old monitor is cancelled."""
    h = market.harness()
    await h.start()
    old = await h.manager.open_trade(h.request(margin=1000.0))
    await h.settle()
    await h.stop()
    h.exchange.set_price(SYMBOL, 104_100.0)  # every TP fills: flat
    h.exchange.set_price(SYMBOL, 98_900.0)  # the leftover e2 fills: a new position
    assert h.position().is_open
    h, probe = await restart_probed(h)
    assert probe.unprotected == []
    assert_protected(h)
    (stop,) = stop_orders(h.open_orders())
    (adopted,) = h.manager.monitors.values()
    assert adopted.approach == "adopted" and adopted.monitor_id != old.monitor_id
    assert our_monitor_ids(h.open_orders()) == {adopted.monitor_id}  # the old SL and e3 are gone
    assert parse_link_id(stop.link_id) is not None and stop.link_id == adopted.orders["sl"].link_id
    (first,) = h.manager.ledger.trades
    assert first.reason == "tp" and first.tps_hit == 4 and first.monitor_id == old.monitor_id
    await h.price(96_500.0)  # the adopted position's own stop closes it
    assert not h.position().is_open and h.open_orders() == []
    assert [(t.reason, t.approach) for t in h.manager.ledger.trades] == [
        ("tp", "conservative"),
        ("sl", "adopted"),
    ]
    await h.stop()


@on_both_venues
async def test_adoption_after_lost_state_protects_before_cancelling_orphans(market: Market) -> None:
    """The state is lost with a trade open: its orders are orphans of ours. The position is adopted
    with a new stop, and the orphans (the old stop among them) are cancelled only after it."""
    h = market.harness()
    await h.start()
    old = await h.manager.open_trade(h.request(margin=1000.0))
    await h.settle()
    h, probe = await restart_probed(h, store=MemoryStore())
    await h.settle()
    assert probe.unprotected == []
    assert_protected(h)
    (adopted,) = h.manager.monitors.values()
    assert adopted.approach == "adopted" and adopted.phase is Phase.MONITORING
    assert old.monitor_id not in our_monitor_ids(h.open_orders())
    await h.stop()


async def test_a_crash_during_that_restart_never_loses_the_old_trade() -> None:
    """The restart above, killed right after each of its durable writes and restarted again: the
    old trade is in the ledger however early the kill came (it is written before the adoption, whose
    monitor takes the same key, and before any order goes out), and the new position is protected."""
    for crash_at in range(1, CRASH_POINTS + 1):
        h = Harness()
        await h.start()
        old = await h.manager.open_trade(h.request(margin=1000.0))
        await h.settle()
        await h.stop()
        h.exchange.set_price(SYMBOL, 104_100.0)
        h.exchange.set_price(SYMBOL, 98_900.0)
        store = MemoryStore(h.store.crash_copy().state, crash_at=crash_at)
        h = h._again(store)
        with contextlib.suppress(Crash, AssertionError):
            await h.start()
        if store.crashed:
            h = await h.restart()
        await h.settle()
        assert_protected(h)
        assert old.monitor_id in h.manager.ledger.monitor_ids(), crash_at
        assert [m.approach for m in h.manager.monitors.values()] == ["adopted"], crash_at
        await h.stop()
        if not store.crashed:
            return
    raise AssertionError("the restart makes more durable writes than CRASH_POINTS")
