"""The typed alerts a trade and the engine raise, each with its key (what it is about): entry n of
m filled, TP hit with the PnL realised so far, the closed position's summary, a stream down and back,
and rate-limit pressure."""

from __future__ import annotations

from pathlib import Path

from test_mirror import SYMBOL, conservative_request, running
from tpsl_harness import Harness

from engine.alerts.bus import AlertBus
from engine.core.clock import VirtualClock
from engine.core.models import Side
from engine.trading.approaches import Approach
from engine.venue.errors import RateLimited

KEY = f"main:{SYMBOL}:Buy"


def _alerts(h: Harness, type_: str) -> list[tuple[str, str, str]]:
    return [a for a in h.alerts if a[1] == type_]


async def test_a_trade_raises_entry_filled_tp_hit_and_a_closing_summary() -> None:
    h = Harness()
    keyed: list[tuple[str, str]] = []
    h.manager.alerts.subscribe(lambda alert: keyed.append((alert.type, alert.key)))
    await h.start()
    try:
        await h.manager.open_trade(h.request(Approach.CONSERVATIVE, Side.BUY, margin=1000.0))
        await h.settle()
        (first,) = _alerts(h, "entry_filled")
        assert first[0] == "info" and "entry 1 of 3 filled at 100,000.0" in first[2]
        await h.price(98_900.0)  # through entry 2 (a touch only part-fills)
        await h.settle(30.0)
        assert any("entry 2 of 3" in a[2] for a in _alerts(h, "entry_filled"))
        await h.price(101_100.0)
        await h.settle(30.0)
        (tp1,) = _alerts(h, "tp_hit")
        assert "TP1 filled at 101,000.0" in tp1[2] and "realised so far +" in tp1[2]
        await h.price(96_000.0)  # the breakeven stop closes the rest
        await h.settle(30.0)
        (closed,) = _alerts(h, "position_closed")
        # 0.7.0: the message names the position in a trader's words; the alert's key stays KEY
        assert closed[2].startswith("BUY ") and " BTCUSDT on main: closed (breakeven) net PnL +" in closed[2]
        assert "fees" in closed[2] and "funding +0.00" in closed[2] and "held " in closed[2]
        for type_ in ("entry_filled", "tp_hit", "position_closed", "breakeven"):
            assert (type_, KEY) in keyed, type_
    finally:
        await h.close()


async def test_a_dropped_stream_raises_stream_down_then_stream_up(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        here.exchange.drop_stream("main")
        await here.run(15.0)
        (down,) = [a for a in here.engine.alerts.snapshot(100) if a["type"] == "stream_down"]
        assert down["key"] == "main" and down["severity"] == "warning"
        (up,) = [a for a in here.engine.alerts.snapshot(100) if a["type"] == "stream_up"]
        assert up["key"] == "main" and up["severity"] == "info"


async def test_requests_refused_for_the_rate_limit_raise_rate_limit_pressure(tmp_path: Path) -> None:
    async with running(tmp_path) as here:
        await here.engine.actions.open_trade(conservative_request())
        await here.run(5.0)
        reset = here.clock.now() + 1.0
        here.exchange.inject_errors("main", 3, RateLimited("too many visits", reset_at=reset))
        await here.run(40.0)
        pressure = [a for a in here.engine.alerts.snapshot(200) if a["type"] == "rate_limit"]
        assert pressure and pressure[0]["key"] == "main"
        assert "refused" in pressure[0]["message"]
        assert here.size("main") > 0 and here.stop_qty("main") == here.size("main")


def test_an_alert_row_carries_its_key() -> None:
    bus = AlertBus(VirtualClock(start=0.0))
    bus.raise_alert("warning", "mirror_desync", "mirror down", key="mirror")
    (row,) = bus.snapshot(1)
    assert row["key"] == "mirror"
