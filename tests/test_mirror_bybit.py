"""Mirror trading over the real pybit client: the engine's two accounts, each with its own key pair
from the environment, against the fake Bybit V5 server on 127.0.0.1 (wall clock). A conservative
trade goes through TP1 and breakeven on both accounts and the operator's close on main closes both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from test_mirror import conservative_request

from engine.core.clock import RealClock
from engine.core.models import Phase
from engine.core.settings import load_settings
from engine.runtime.assembly import EngineRuntime
from engine.sim.exchange import SimExchange
from engine.sim.server.app import BybitServer

SYMBOL = "BTCUSDT"
KEYS = {
    "main": ("MIRRORTESTMAINKEY01", "MIRRORTESTMAINSECRET0123456789ab"),
    "mirror": ("MIRRORTESTMIRRORKEY1", "MIRRORTESTMIRRORSECRET0123456789"),
}
WAIT_S = 30.0


async def _until(done: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not done():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_trade_is_mirrored_through_tp1_breakeven_and_close_over_pybit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = RealClock()
    exchange = SimExchange(
        clock=clock,
        seed=11,
        symbols=[SYMBOL, "ETHUSDT", "SOLUSDT"],
        balances={"main": 10_000.0, "mirror": 5_000.0},
        slippage_bps=0.0,
        volatility=0.0,
    )
    exchange.set_price(SYMBOL, 100_000.0)
    server = BybitServer(exchange, {key: (secret, name) for name, (key, secret) in KEYS.items()}, clock)
    await server.start()
    monkeypatch.setenv("BYBIT_API_KEY", KEYS["main"][0])
    monkeypatch.setenv("BYBIT_API_SECRET", KEYS["main"][1])
    monkeypatch.setenv("BYBIT_MIRROR_API_KEY", KEYS["mirror"][0])
    monkeypatch.setenv("BYBIT_MIRROR_API_SECRET", KEYS["mirror"][1])
    settings = load_settings(state_dir=tmp_path).with_values(
        {
            "venue.kind": "bybit",
            "venue.base_url": server.base_url,
            "venue.ws_url": server.ws_url,
            "mirror.sync_interval_s": 1.0,
            "sim.symbols": [SYMBOL],
            "sim.demo_trades": 0,
        },
        source="test",
    )
    runtime = EngineRuntime(settings, tmp_path, clock)
    try:
        engine = await runtime.start()
        manager = engine.manager
        await _until(lambda: manager.ready, "both accounts reconciled")
        await engine.actions.open_trade(conservative_request())  # 0.033 BTC x 3 on main

        def size(account: str) -> float:
            return sum(p.size for p in exchange.positions(account, SYMBOL) if p.is_open)

        def covered(account: str) -> bool:
            stops = [o for o in exchange.open_orders(account, SYMBOL) if o.trigger_price and o.reduce_only]
            return size(account) > 0 and sum(o.qty for o in stops) == pytest.approx(size(account))

        await _until(lambda: covered("main") and covered("mirror"), "both legs open and protected")
        assert size("main") == pytest.approx(0.033) and size("mirror") == pytest.approx(0.016)
        exchange.set_price(SYMBOL, 98_900.0)  # through entry 2's limit: it fills whole
        await _until(lambda: size("mirror") == pytest.approx(0.032), "the mirror's entry 2")

        def tps_cover(account: str) -> bool:
            tps = [o for o in exchange.open_orders(account, SYMBOL) if o.price and o.reduce_only]
            return sum(o.qty for o in tps) == pytest.approx(size(account))

        await _until(lambda: tps_cover("main") and tps_cover("mirror"), "the TPs resized to both sizes")
        exchange.set_price(SYMBOL, 101_050.0)  # through TP1 only

        def took_profit(key: str) -> bool:
            monitor = manager.monitors.get(key)
            return monitor is not None and monitor.phase is Phase.PROFIT_TAKING and monitor.breakeven

        await _until(
            lambda: took_profit(f"main:{SYMBOL}:Buy") and took_profit(f"mirror:{SYMBOL}:Buy"),
            "TP1 and breakeven on both accounts",
        )
        await engine.actions.close_position(f"main:{SYMBOL}:Buy")
        await _until(lambda: size("main") == 0 and size("mirror") == 0, "both legs closed")
        await _until(lambda: len(manager.ledger.trades) == 2, "both trades in the ledger")
        assert sorted(t.account for t in manager.ledger.trades) == ["main", "mirror"]
        assert engine.mirror is not None and engine.mirror.failures_in_a_row == 0
    finally:
        await runtime.stop()
        await server.stop()
