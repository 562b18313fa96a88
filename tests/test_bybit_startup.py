"""Start-up against Bybit's real payloads (issue 11), through the real pybit client and the fake V5
server, which serves the rows the simulator does not make (:mod:`bybit_rows`):

- a funding row in ``/v5/execution/list`` no longer stops reconciliation: the engine becomes ready
  and protects the position it adopts;
- a hedge-mode account (pybit #367's list) is detected at start-up and refused, with a critical
  alert that names the fix, without adopting its positions or touching its orders; the other side's
  empty row is never read as the position.
"""

from __future__ import annotations

import pytest
from bybit_rows import FUNDING_ROW, hedge_rows
from tpsl_harness import SYMBOL, Market, assert_protected

from engine.core.models import OrderRequest, OrderType, Side, TriggerDirection
from engine.trading.approaches import Approach, TradeRejected
from engine.venue.base import Endpoint
from engine.venue.errors import HEDGE_MODE_FIX


async def test_a_funding_row_does_not_stop_the_adoption_of_a_position() -> None:
    async with Market("bybit") as market:
        assert market.server is not None
        exchange = market.server.exchange
        exchange.place("main", OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, 0.01, link_id="by-hand"))
        assert exchange.positions("main", SYMBOL)[0].is_open
        interval = str(round(market.server.clock.now() * 1000))
        funding = dict(FUNDING_ROW, symbol=SYMBOL, execTime=interval, execPrice="100000", execQty="0.01")
        market.server.add_raw_rows("main", Endpoint.EXECUTIONS, [funding])
        h = market.harness()
        await h.start()  # ready: the reads succeeded despite the funding row
        assert [m.approach for m in h.manager.monitors.values()] == ["adopted"]
        assert_protected(h)
        assert not [a for a in h.alerts if a[1] == "reconcile_failed"], h.alerts


async def test_a_hedge_mode_account_is_refused_and_its_positions_left_alone() -> None:
    async with Market("bybit") as market:
        assert market.server is not None
        market.server.add_raw_rows("main", Endpoint.POSITIONS, hedge_rows())
        # The account's own stop on its short: the engine must leave it where it is.
        market.server.exchange.place(
            "main",
            OrderRequest(
                "BTCUSDT",
                Side.BUY,
                OrderType.MARKET,
                0.5,
                trigger_price=150_000.0,
                trigger_direction=TriggerDirection.RISE,
                reduce_only=True,
                close_on_trigger=True,
                link_id="users-own-stop",
            ),
        )
        h = market.harness()
        await h.start()

        critical = [m for severity, kind, m in h.alerts if severity == "critical" and kind == "hedge_mode"]
        assert len(critical) == 1, h.alerts
        assert HEDGE_MODE_FIX in critical[0] and "BTCUSDT Sell 0.5" in critical[0]
        assert "NOT protected" in critical[0]
        assert h.manager.monitors == {}  # nothing adopted: its stops would be refused in hedge mode
        assert [o.link_id for o in h.open_orders()] == ["users-own-stop"]
        with pytest.raises(TradeRejected) as refused:
            await h.manager.open_trade(h.request(Approach.FAST))
        assert HEDGE_MODE_FIX in str(refused.value)
        assert [o.link_id for o in h.open_orders()] == ["users-own-stop"]

        # A later pass that sees no hedge-mode position any more lifts the refusal, once.
        market.server.rest.raw_rows.clear()
        await h.manager.reconcile("main", full=True)
        lifted = [m for severity, kind, m in h.alerts if severity == "info" and kind == "hedge_mode"]
        assert len(lifted) == 1
