"""Mirror trading on the assembled engine over the simulated exchange (virtual clock): a main trade
followed on the mirror account at its own size, through TP1, breakeven and a close; failures retried
from the queue and a mirror outage that never touches main; drift found and repaired; a mirror closed
by hand left closed; the kill switch; and a crash in the middle of a mirrored trade."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.models import CancelRequest, OrderRequest, OrderType, Phase, Side, TimeInForce
from engine.core.settings import load_settings
from engine.mirror.follower import LinkState, MirrorFollower
from engine.runtime.assembly import Engine, EngineRuntime
from engine.sim.exchange import SimExchange
from engine.sim.venue import SimVenue
from engine.trading.approaches import Approach, TradeRequest
from engine.venue.errors import TransientError

SYMBOL = "BTCUSDT"
MAIN_KEY, MIRROR_KEY = f"main:{SYMBOL}:Buy", f"mirror:{SYMBOL}:Buy"


@dataclass
class Running:
    """One engine on the simulator, with what the tests reach for."""

    runtime: EngineRuntime
    engine: Engine
    clock: VirtualClock
    state_dir: Path

    @property
    def exchange(self) -> SimExchange:
        assert self.runtime.exchange is not None
        return self.runtime.exchange

    @property
    def follower(self) -> MirrorFollower:
        assert self.engine.mirror is not None
        return self.engine.mirror

    async def run(self, seconds: float) -> None:
        await self.clock.drive(self.clock.now() + seconds)

    async def price(self, last: float, seconds: float = 5.0) -> None:
        self.exchange.set_price(SYMBOL, last)
        await self.run(seconds)

    def size(self, account: str) -> float:
        return sum(p.size for p in self.exchange.positions(account, SYMBOL) if p.is_open)

    def stop_qty(self, account: str) -> float:
        return sum(
            o.qty for o in self.exchange.open_orders(account, SYMBOL) if o.trigger_price and o.reduce_only
        )

    def alerts(self, type_: str) -> list[Any]:
        return [a for a in self.engine.alerts.snapshot(500) if a["type"] == type_]

    def link_state(self) -> str:
        return self.follower.links[MAIN_KEY].state.value


def _settings(state_dir: Path, **values: Any) -> Any:
    base = {
        "sim.demo_trades": 0,
        "sim.volatility": 0.0,
        "sim.slippage_bps": 0.0,
        "mirror.sync_interval_s": 10.0,
        "mirror.max_failures": 3,
    }
    return load_settings(state_dir=state_dir).with_values({**base, **values}, source="test")


@asynccontextmanager
async def running(
    state_dir: Path,
    *,
    clock: VirtualClock | None = None,
    exchange: SimExchange | None = None,
    **values: Any,
) -> AsyncIterator[Running]:
    """An engine on ``state_dir``; on an ``exchange`` that outlives it when one is given."""
    settings = _settings(state_dir, **values)
    clock = clock or VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, state_dir, clock)
    if exchange is not None:
        runtime.exchange = exchange
        runtime.venues = {name: SimVenue(exchange, name) for name in ("main", "mirror")}
    engine = await runtime.start()
    here = Running(runtime, engine, clock, state_dir)
    try:
        if exchange is None:
            here.exchange.set_price(SYMBOL, 100_000.0)
        await here.run(5.0)
        yield here
    finally:
        await runtime.stop()


def conservative_request() -> TradeRequest:
    # 1,000 USDT x 10 at 100,000: three entries of 0.033 BTC on main
    return TradeRequest(
        "main",
        SYMBOL,
        Side.BUY,
        Approach.CONSERVATIVE,
        1000.0,
        10.0,
        (None, 99_000.0, 98_000.0),
        (101_000.0, 102_000.0, 103_000.0, 104_000.0),
        97_000.0,
    )


def _fast() -> TradeRequest:
    return TradeRequest(
        "main", SYMBOL, Side.BUY, Approach.FAST, 1000.0, 10.0, (None,), (103_000.0,), 97_000.0
    )


def _by_hand(here: Running, account: str, side: Side, qty: float, reduce_only: bool = False) -> None:
    """An order placed on the venue directly, as the operator would on Bybit's site."""
    request = OrderRequest(
        SYMBOL, side, OrderType.MARKET, qty, reduce_only=reduce_only, time_in_force=TimeInForce.IOC
    )
    here.exchange.place(account, request)


async def test_a_conservative_trade_is_mirrored_through_tp1_breakeven_and_close(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        await here.engine.actions.open_trade(conservative_request())
        await here.run(5.0)
        # balance ratio: mirror equity 5,000 / main 10,000 -> 0.0165 per entry, rounded down
        assert here.size("main") == pytest.approx(0.033)
        assert here.size("mirror") == pytest.approx(0.016)
        assert here.stop_qty("mirror") == pytest.approx(0.016)
        assert here.link_state() == "open"
        mirror = here.engine.manager.monitors[MIRROR_KEY]
        assert mirror.account == "mirror" and mirror.orders["e1"].qty == pytest.approx(0.016)

        await here.price(99_000.0, seconds=30.0)  # entry 2 fills on both accounts (limit fills take ticks)
        assert here.size("main") == pytest.approx(0.066)
        assert here.size("mirror") == pytest.approx(0.032)
        await here.price(101_200.0, seconds=30.0)  # TP1 (85%) on both: stops to breakeven, entry 3 cancelled
        manager = here.engine.manager
        for key in (MAIN_KEY, MIRROR_KEY):
            monitor = manager.monitors[key]
            assert monitor.phase is Phase.PROFIT_TAKING and monitor.breakeven, key
        for account in ("main", "mirror"):  # entry 3 is cancelled on both
            assert [o for o in here.exchange.open_orders(account, SYMBOL) if not o.reduce_only] == []
        assert here.size("mirror") == pytest.approx(0.032 - 0.027)  # the mirror's own TP1 took 85%
        assert here.stop_qty("mirror") == pytest.approx(here.size("mirror"))

        await here.engine.actions.close_position(MAIN_KEY)
        await here.run(10.0)
        assert here.size("main") == 0 and here.size("mirror") == 0
        trades = manager.ledger.trades
        assert sorted(t.account for t in trades) == ["main", "mirror"]
        assert {t.reason for t in trades} == {"manual"}
        assert all(t.tps_hit == 1 for t in trades)
        snapshot = (await here.engine.dashboard.snapshot()).data
        assert snapshot["mirror"]["enabled"] is True
        assert [o for o in here.exchange.open_orders("mirror") if o.symbol == SYMBOL] == []


async def test_a_mirror_rejection_is_retried_and_then_succeeds(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        here.exchange.inject_errors("mirror", 2, TransientError("mirror busy"))
        await here.engine.actions.open_trade(_fast())
        await here.run(1.0)
        assert here.size("main") > 0 and here.stop_qty("main") == pytest.approx(here.size("main"))
        await here.run(30.0)
        assert here.alerts("mirror_retry"), "the failure was said"
        assert here.link_state() == "open"
        assert here.size("mirror") == pytest.approx(0.05)  # 0.1 BTC x 0.5
        assert not here.alerts("mirror_desync")
        assert here.follower.tasks == []


async def test_a_mirror_that_stays_down_raises_desync_while_main_trades_on(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        here.exchange.inject_errors("mirror", 1_000_000, TransientError("mirror unreachable"))
        await here.engine.actions.open_trade(conservative_request())
        await here.run(120.0)
        (desync,) = here.alerts("mirror_desync")
        assert desync["severity"] == "critical"
        assert here.follower.desync and here.follower.tasks
        snapshot = (await here.engine.dashboard.snapshot()).data
        assert snapshot["mirror"]["queue"]["desync"] is True
        # the dashboard stays live for main: the mirror's row says it cannot be read
        assert "mirror unreachable" in snapshot["accounts"]["mirror"]["unreachable"]
        assert "unreachable" not in snapshot["accounts"]["main"]
        assert [p["account"] for p in snapshot["positions"]] == ["main"]
        # main is unaffected: protected, and its TP1 and breakeven go through
        assert here.stop_qty("main") == pytest.approx(here.size("main"))
        await here.price(101_200.0)
        main = here.engine.manager.monitors[MAIN_KEY]
        assert main.phase is Phase.PROFIT_TAKING and main.breakeven
        assert here.size("mirror") == 0
        # the open's next retry finds main past TP1 and drops it: the mirror is still down, though
        await here.run(400.0)
        assert here.link_state() == "skipped" and here.follower.tasks == []
        assert here.follower.desync and not here.alerts("mirror_resynced")
        # the mirror comes back: the drift check reads it again and says so
        here.exchange.clear_errors("mirror")
        await here.run(400.0)
        assert here.link_state() == "skipped"
        assert here.size("mirror") == 0
        assert here.alerts("mirror_resynced")
        assert not here.follower.desync


async def test_a_mirror_closed_by_hand_is_reported_and_not_reopened(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        await here.engine.actions.open_trade(_fast())
        await here.run(5.0)
        assert here.size("mirror") == pytest.approx(0.05)
        _by_hand(here, "mirror", Side.SELL, 0.05, reduce_only=True)
        await here.run(60.0)
        assert here.size("mirror") == 0
        assert here.link_state() == "closed_by_hand"
        (alert,) = here.alerts("mirror_closed_by_hand")
        # 0.7.0: the message names the position as a trader would; the key stays for machines
        assert alert["key"] == MIRROR_KEY and "BUY BTCUSDT on mirror was closed" in alert["message"]
        await here.run(120.0)
        assert here.size("mirror") == 0, "never re-opened"
        assert here.size("main") > 0 and MAIN_KEY in here.engine.manager.monitors


async def test_an_excess_on_the_mirror_is_reduced_to_its_share(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        await here.engine.actions.open_trade(_fast())
        await here.run(5.0)
        _by_hand(here, "mirror", Side.BUY, 0.02)  # someone added to the mirror
        await here.run(35.0)  # seen by two drift checks in a row
        assert here.size("mirror") == pytest.approx(0.05)
        assert here.stop_qty("mirror") == pytest.approx(0.05)
        assert here.follower.counts["repairs"] >= 1
        assert any("excess" in a["message"] for a in here.alerts("mirror_repair"))


async def test_a_mirror_left_open_after_main_closed_is_closed(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        await here.engine.actions.open_trade(_fast())
        await here.run(5.0)
        _by_hand(here, "main", Side.SELL, 0.1, reduce_only=True)  # main closed outside the engine
        await here.run(40.0)
        assert here.size("main") == 0
        assert here.size("mirror") == 0
        (mirror_trade,) = [t for t in here.engine.manager.ledger.trades if t.account == "mirror"]
        assert mirror_trade.reason == "main_closed"
        assert MAIN_KEY not in here.follower.links


async def test_a_stop_missing_on_the_mirror_is_placed_again(tmp_path: Path) -> None:
    async with running(tmp_path, **{"monitor.reconcile_orders_s": 3600.0}) as here:
        await here.engine.actions.open_trade(_fast())
        await here.run(5.0)
        (stop,) = [o for o in here.exchange.open_orders("mirror", SYMBOL) if o.trigger_price]
        here.exchange.cancel("mirror", CancelRequest(SYMBOL, order_id=stop.order_id))
        assert here.stop_qty("mirror") == 0
        await here.run(11.0)
        assert here.stop_qty("mirror") == pytest.approx(here.size("mirror"))


async def test_the_kill_switch_closes_both_accounts(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        await here.engine.actions.open_trade(conservative_request())
        await here.run(5.0)
        assert here.size("mirror") > 0
        await here.engine.actions.kill_switch()
        await here.run(10.0)
        assert here.size("main") == 0 and here.size("mirror") == 0
        assert here.exchange.open_orders("main") == [] and here.exchange.open_orders("mirror") == []


async def test_pausing_the_mirror_alone_skips_mirroring_and_leaves_main_trading(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        await here.engine.actions.pause_entries(["mirror"])
        await here.engine.actions.open_trade(_fast())
        await here.run(5.0)
        assert here.size("main") > 0 and here.size("mirror") == 0
        assert here.link_state() == "skipped"
        assert "paused" in here.follower.links[MAIN_KEY].note


async def test_a_crash_in_a_mirrored_trade_is_reconciled_on_both_accounts(tmp_path: Path) -> None:
    """What kill -9 leaves is what is on disk: the state directory copied while the engine runs.
    The market goes on without the engine (TP1 fills on both accounts); the engine restarted on the
    copy reconciles both accounts before acting, and mirrors nothing twice."""
    first_dir, crash_dir = tmp_path / "first", tmp_path / "crash"
    sizing = {"mirror.sizing": "fixed_ratio", "mirror.ratio": 1.0}
    async with running(first_dir, **sizing) as here:
        await here.engine.actions.open_trade(conservative_request())
        await here.run(5.0)
        assert here.size("mirror") == pytest.approx(0.033)
        shutil.copytree(first_dir, crash_dir)
        exchange, clock = here.exchange, here.clock
        opened = [o.order_id for o in exchange.open_orders("mirror")]
    # the engine is gone; the market is not: TP1 fills on both accounts while it is down
    exchange.set_price(SYMBOL, 101_200.0)
    await clock.drive(clock.now() + 5.0)
    async with running(crash_dir, clock=clock, exchange=exchange, **sizing) as again:
        await again.run(20.0)
        manager = again.engine.manager
        for key in (MAIN_KEY, MIRROR_KEY):
            monitor = manager.monitors[key]
            assert monitor.phase is Phase.PROFIT_TAKING and monitor.breakeven, key
        assert again.link_state() == "open"
        assert again.size("mirror") == pytest.approx(again.size("main"))  # 0.033 less TP1's 0.028
        assert again.stop_qty("mirror") == pytest.approx(again.size("mirror"))
        assert again.follower.tasks == []
        # one market entry on the mirror: the restart did not open it again
        buys = [e for e in exchange.executions("mirror", 0.0, SYMBOL) if e.side is Side.BUY]
        assert sum(e.qty for e in buys) == pytest.approx(0.033)
        assert opened  # the mirror had its orders before the crash
        assert LinkState(again.link_state()) is LinkState.OPEN


async def test_a_mirror_open_queued_at_a_crash_is_done_once_after_the_restart(tmp_path: Path) -> None:
    """The crash comes right after main's entry: the mirror's open is on disk, not yet done. The
    restarted engine reconciles both accounts, then opens the mirror once."""
    first_dir, crash_dir = tmp_path / "first", tmp_path / "crash"
    async with running(first_dir) as here:
        await here.engine.actions.open_trade(_fast())
        assert [t.verb.value for t in here.follower.tasks] == ["open"]
        shutil.copytree(first_dir, crash_dir)  # before the queue job ran: kill -9 here
        exchange, clock = here.exchange, here.clock
        here.follower.tasks.clear()  # this engine is dead: it must not open the mirror itself
        here.runtime.scheduler.remove("mirror-queue")
    assert exchange.positions("mirror", SYMBOL)[0].size == 0
    async with running(crash_dir, clock=clock, exchange=exchange) as again:
        await again.run(30.0)
        assert again.link_state() == "open"
        assert again.size("mirror") == pytest.approx(0.05)
        assert again.stop_qty("mirror") == pytest.approx(0.05)
        await again.run(60.0)
        buys = [e for e in exchange.executions("mirror", 0.0, SYMBOL) if e.side is Side.BUY]
        assert sum(e.qty for e in buys) == pytest.approx(0.05)


async def test_a_mirror_down_at_start_never_holds_back_mains_protection(tmp_path: Path) -> None:
    """Polling only (no streams), the mirror unreachable from the first call: main still reconciles,
    its jobs run, and its trade gets its stop from the polled fill."""
    settings = _settings(tmp_path, **{"profile.push_streams": "baseline"})
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, tmp_path, clock)
    runtime.build_venues()
    assert runtime.exchange is not None
    runtime.exchange.set_price(SYMBOL, 100_000.0)
    runtime.exchange.inject_errors("mirror", 1_000_000, TransientError("mirror unreachable"))
    engine = await runtime.start()
    try:
        await clock.drive(clock.now() + 10.0)
        manager = engine.manager
        assert manager.is_ready("main") and not manager.is_ready("mirror")
        await engine.actions.open_trade(_fast())
        await clock.drive(clock.now() + 10.0)
        stops = [o for o in runtime.exchange.open_orders("main", SYMBOL) if o.trigger_price]
        assert [o.qty for o in stops] == [pytest.approx(0.1)]
        assert manager.monitors[MAIN_KEY].size == pytest.approx(0.1)
    finally:
        await runtime.stop()


async def test_breakeven_now_and_cancel_on_main_are_done_on_the_mirror(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        await here.engine.actions.open_trade(conservative_request())
        await here.run(5.0)
        await here.price(100_600.0)  # beyond breakeven, short of TP1
        await here.engine.actions.breakeven_now(MAIN_KEY)
        await here.run(5.0)
        manager = here.engine.manager
        assert manager.monitors[MAIN_KEY].breakeven and manager.monitors[MIRROR_KEY].breakeven
        await here.engine.actions.cancel_orders(MAIN_KEY)
        await here.run(5.0)
        for account in ("main", "mirror"):  # entries and TPs gone, the stop stays
            orders = here.exchange.open_orders(account, SYMBOL)
            assert [o.trigger_price is not None for o in orders] == [True], account


async def test_a_trade_opened_by_hand_on_the_mirror_alone_is_protected_not_mirrored_back(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, **{"monitor.reconcile_positions_s": 10.0}) as here:
        _by_hand(here, "mirror", Side.BUY, 0.02)
        await here.run(30.0)
        adopted = here.engine.manager.monitors[MIRROR_KEY]
        assert adopted.approach == "adopted"
        assert here.stop_qty("mirror") == pytest.approx(0.02)
        assert here.size("main") == 0 and MAIN_KEY not in here.engine.manager.monitors
        assert here.follower.links == {} and here.follower.tasks == []


async def test_a_mirror_position_left_by_its_own_late_entry_is_closed_after_main(tmp_path: Path) -> None:
    """The soak's lost mirror trade. The mirror is unreachable while every TP fills on both accounts:
    main sees it, closes and cancels its entries; the mirror's monitor does not, so its entry e2 is
    still working and fills later, opening a new position. kill -9, and a restart with the mirror
    back: the replay closes the mirror trade by its TPs, and the position e2 left is adopted and
    protected — and, being the link's (main is flat), closed, not left an orphan. e2 was sent: no
    "entry not sent" alert."""
    first_dir, crash_dir = tmp_path / "first", tmp_path / "crash"
    # polling: the mirror's fills reach the engine only through its (failing) requests
    sizing = {"mirror.sizing": "fixed_ratio", "mirror.ratio": 1.0, "profile.push_streams": "baseline"}
    async with running(first_dir, **sizing) as here:
        await here.engine.actions.open_trade(conservative_request())
        await here.run(5.0)
        assert here.size("mirror") == pytest.approx(0.033)
        here.exchange.inject_errors("mirror", 1_000_000, TransientError("mirror unreachable"))
        await here.price(104_100.0, 10.0)  # TP1-TP4 fill on both accounts
        assert here.size("main") == 0 and here.exchange.open_orders("main") == []
        assert here.size("mirror") == 0
        await here.price(98_900.0, 10.0)  # the mirror's leftover e2 fills
        assert here.size("mirror") == pytest.approx(0.033)
        shutil.copytree(first_dir, crash_dir)  # kill -9 here
        exchange, clock = here.exchange, here.clock
    exchange.clear_errors("mirror")
    async with running(crash_dir, clock=clock, exchange=exchange, **sizing) as again:
        await again.run(40.0)
        assert again.size("mirror") == 0
        assert again.exchange.open_orders("mirror") == []
        mirror_trades = [t for t in again.engine.manager.ledger.trades if t.account == "mirror"]
        assert [t.reason for t in mirror_trades] == ["tp", "main_closed"]
        assert again.alerts("entry_not_sent") == []
        assert MAIN_KEY not in again.follower.links
