"""Position alerts: uPnL beyond an amount or a percent, the price near the stop or the next TP; each
raised once when it becomes true and again only after it cleared."""

from __future__ import annotations

from pathlib import Path

from test_mirror import running
from tpsl_builders import with_position

from engine.alerts.bus import AlertBus
from engine.alerts.position import PositionAlertParams, PositionAlerts, position_conditions
from engine.core.clock import VirtualClock
from engine.core.models import Side
from engine.trading.approaches import Approach, TradeRequest


def test_conditions_at_a_price() -> None:
    m = with_position(Approach.FAST)  # 0.1 BTC bought at 100,000; stop 97,000; TP 101,000
    params = PositionAlertParams(loss_usdt=100.0, gain_usdt=50.0, move_pct=1.0, near_pct=0.5)
    assert position_conditions(m, 100_000.0, params) == {}
    losing = position_conditions(m, 97_400.0, params)  # -260 USDT, -2.6 %, 0.41 % from the stop
    assert set(losing) == {"position_loss", "position_move", "near_sl"}
    assert "uPnL -260.00 USDT" in losing["position_loss"]
    winning = position_conditions(m, 100_700.0, params)  # +70 USDT, 0.30 % from TP1
    assert set(winning) == {"position_gain", "near_tp"}
    assert position_conditions(m, 97_400.0, PositionAlertParams()) == {}  # all off


def test_a_condition_is_raised_once_and_again_only_after_it_cleared() -> None:
    m = with_position(Approach.FAST)  # 0.1 BTC bought at 100,000; stop 97,000; TP 101,000
    bus = AlertBus(VirtualClock(start=0.0))
    alerts = PositionAlerts(PositionAlertParams(near_pct=0.5), bus)
    assert alerts.check([m], {m.symbol: 97_300.0}) == 1
    assert alerts.check([m], {m.symbol: 97_250.0}) == 0  # still near: no second alert
    assert alerts.check([m], {m.symbol: 99_000.0}) == 0  # cleared
    assert alerts.check([m], {m.symbol: 97_200.0}) == 1  # near again
    rows = bus.snapshot(10)
    assert [r["type"] for r in rows] == ["near_sl", "near_sl"] and rows[0]["key"] == m.key


async def test_the_engine_checks_its_positions_against_the_settings(tmp_path: Path) -> None:
    async with running(tmp_path, **{"alerts.position.near_pct": 0.5}) as here:
        fast = TradeRequest(
            "main", "BTCUSDT", Side.BUY, Approach.FAST, 1000.0, 10.0, (None,), (103_000.0,), 97_000.0
        )
        await here.engine.actions.open_trade(fast)
        await here.price(97_300.0, seconds=20.0)
        near = [a for a in here.engine.alerts.snapshot(200) if a["type"] == "near_sl"]
        assert {a["key"] for a in near} == {"main:BTCUSDT:Buy", "mirror:BTCUSDT:Buy"}
