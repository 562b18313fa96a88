"""Exits and money the engine did not order: funding, the exchange's forced exits (ADL, liquidation,
delivery), execution types it does not know, a stop-out's alert, and the realised PnL of a position
that grew after a partial take-profit (issue 11, items 1, 5 and 12).

Rows are shaped like Bybit's (numbers as strings, ``orderType`` "UNKNOWN" on funding and forced
exits, ``execQty`` the position size and ``execFee`` the funding on a funding row) and go through
the Bybit parser. End to end, the simulated exchange charges funding and closes positions itself,
over the in-process venue and over the fake V5 server (real pybit).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from tpsl_builders import BTC, P, ack_all, fill, with_position
from tpsl_harness import SYMBOL, Market, assert_protected, on_both_venues

from console.view_model import ledger_stats, stats_lines, trade_stats
from engine.core.models import Execution, Monitor, Side, Trade
from engine.sim import ledger as sim_ledger
from engine.trading.approaches import Approach
from engine.trading.ledger import Ledger
from engine.trading.monitor import apply_execution
from engine.trading.orders import AmendOrder, CancelOrder, PlaceOrder
from engine.venue.bybit.parse import parse_execution
from persistence.reasons import Reason

BIG = {"margin": 1000.0}


def bybit_row(
    exec_type: str,
    *,
    side: str,
    qty: str,
    price: str,
    fee: str,
    exec_id: str,
    order_type: str = "UNKNOWN",
    order_id: str = "",
    closed_size: str = "0",
    fee_rate: str = "0.0001",
) -> dict[str, Any]:
    """One ``/v5/execution/list`` entry as Bybit sends it (see shared/fixtures/bybit-v5)."""
    return {
        "symbol": "BTCUSDT",
        "orderId": order_id,
        "orderLinkId": "",
        "side": side,
        "orderPrice": "0",
        "orderQty": "0",
        "leavesQty": "0",
        "createType": "",
        "orderType": order_type,
        "stopOrderType": "UNKNOWN",
        "execFee": fee,
        "execId": exec_id,
        "execPrice": price,
        "execQty": qty,
        "execType": exec_type,
        "execValue": str(Decimal(price) * Decimal(qty)),
        "execTime": "1767225700000",
        "isMaker": False,
        "feeRate": fee_rate,
        "tradeIv": "",
        "markIv": "",
        "markPrice": price,
        "indexPrice": "",
        "underlyingPrice": "",
        "blockTradeId": "",
        "closedSize": closed_size,
        "seq": 4688002127,
    }


def row(exec_type: str, **fields: Any) -> Execution:
    """A Bybit-shaped row through the Bybit venue's own parser."""
    return parse_execution("main", bybit_row(exec_type, **fields))


# --- funding ---------------------------------------------------------------------------------------


def test_funding_is_recorded_against_the_trade_never_as_a_fill() -> None:
    m = with_position()  # long 0.033 at 100 000
    paid = row("Funding", side="Buy", qty="0.033", price="100000", fee="0.33", exec_id="fund-1")
    t = apply_execution(m, paid, BTC, P)
    assert t.actions == [] and t.alerts == []
    assert t.monitor.size == m.size and t.monitor.entry_qty == m.entry_qty
    assert t.monitor.fees == m.fees and t.monitor.funding == pytest.approx(0.33)
    received = row("Funding", side="Buy", qty="0.033", price="100500", fee="-0.12", exec_id="fund-2")
    m = ack_all(apply_execution(t.monitor, received, BTC, P)).monitor
    assert m.funding == pytest.approx(0.21)
    again = apply_execution(m, received, BTC, P)  # the same row twice (stream and poll) counts once
    assert again.monitor.funding == pytest.approx(0.21)
    closed = apply_execution(m, fill(m, "sl", 0.033, 97_000.0), BTC, P)
    trade = closed.trade
    assert trade is not None and trade.funding == pytest.approx(0.21)
    gross = (97_000.0 - 100_000.0) * 0.033
    assert trade.pnl == pytest.approx(gross - trade.fees - 0.21)


def test_the_ledger_csv_and_statistics_show_funding_apart() -> None:
    def closed(i: int, pnl: float, funding: float) -> Trade:
        return Trade(
            "main", "BTCUSDT", Side.BUY, "fast", "tp", 100.0, 101.0, 1.0, pnl, 0.1, i, i + 60.0,
            monitor_id=f"m{i}", funding=funding,
        )  # fmt: skip

    ledger = Ledger([closed(0, 5.0, 1.5), closed(1, -2.0, -0.5)])
    section = ledger.snapshot()
    assert [t["funding"] for t in section["trades"]] == [1.5, -0.5]
    assert section["totals"]["funding"] == 1.0 and section["totals"]["pnl"] == 3.0
    header, first, _ = ledger.to_csv().splitlines()
    columns = header.split(",")
    assert columns[columns.index("fees") + 1] == "funding"
    assert first.split(",")[columns.index("funding")] == "1.5"
    assert ("Funding paid", "1.00", None) in stats_lines(ledger_stats(section))
    assert trade_stats(section["trades"]).funding == 1.0  # the same without the totals
    no_funding = Ledger([closed(0, 5.0, 0.0)]).snapshot()
    assert "Funding paid" not in [label for label, _, _ in stats_lines(ledger_stats(no_funding))]
    old = closed(2, 1.0, 0.0).to_dict()
    del old["funding"]  # a ledger written before funding was kept
    assert Trade.from_dict(old).funding == 0.0


# --- forced exits and unknown types ----------------------------------------------------------------


def test_adl_closes_part_and_a_liquidation_the_rest_with_critical_alerts() -> None:
    m = with_position(Approach.FAST)  # long 0.1 at 100 000
    adl = row(
        "AdlTrade", side="Sell", qty="0.04", price="99000", fee="0", exec_id="adl-1", order_id="sys-1",
        closed_size="0.04",
    )  # fmt: skip
    t = apply_execution(m, adl, BTC, P)
    assert t.monitor.size == pytest.approx(0.06) and t.trade is None
    assert [(a.severity, a.type) for a in t.alerts] == [("critical", "adl")]
    assert t.reason is Reason.EMERGENCY  # durable at once
    amends = {a.slot: a.request.qty for a in t.actions if isinstance(a, AmendOrder)}
    assert amends == {"sl": 0.06, "tp1": 0.06}  # the stop and the TP follow the smaller position
    bust = row(
        "BustTrade", side="Sell", qty="0.06", price="95000", fee="3.135", exec_id="bust-1",
        order_id="sys-2", closed_size="0.06",
    )  # fmt: skip
    closed = apply_execution(ack_all(t).monitor, bust, BTC, P)
    assert closed.trade is not None and closed.trade.reason == "liquidation"
    assert ("critical", "liquidation") in [(a.severity, a.type) for a in closed.alerts]
    assert not any(a.type in ("manual_close", "sl_hit") for a in closed.alerts)
    assert {a.slot for a in closed.actions if isinstance(a, CancelOrder)} == {"sl", "tp1"}
    gross = (99_000.0 - 100_000.0) * 0.04 + (95_000.0 - 100_000.0) * 0.06
    assert closed.trade.pnl == pytest.approx(gross - closed.trade.fees)


def test_a_delivery_settlement_is_recorded_as_delivery() -> None:
    m = with_position(Approach.FAST)
    settle = row(
        "Delivery", side="Sell", qty="0.1", price="100200", fee="0", exec_id="dlv-1", order_id="sys-3",
        closed_size="0.1",
    )  # fmt: skip
    t = apply_execution(m, settle, BTC, P)
    assert t.trade is not None and t.trade.reason == "delivery"
    assert ("critical", "delivery") in [(a.severity, a.type) for a in t.alerts]


def test_an_execution_type_the_engine_does_not_know_changes_nothing_but_warns() -> None:
    m = with_position()
    odd = row(
        "SomethingNew", side="Sell", qty="0.01", price="100000", fee="0.55", exec_id="odd-1",
        order_type="Market", order_id="sys-4",
    )  # fmt: skip
    t = apply_execution(m, odd, BTC, P)
    assert t.actions == [] and t.trade is None
    assert (t.monitor.size, t.monitor.exit_qty, t.monitor.fees) == (m.size, m.exit_qty, m.fees)
    assert [(a.severity, a.type) for a in t.alerts] == [("warning", "unknown_execution")]


# --- a stop-out is said out loud -------------------------------------------------------------------


def test_a_stop_out_raises_an_sl_hit_alert_with_the_exit_price_and_the_pnl() -> None:
    m = with_position()
    t = apply_execution(m, fill(m, "sl", 0.033, 96_990.0), BTC, P)
    assert t.trade is not None and t.trade.reason == "sl"
    (alert,) = [a for a in t.alerts if a.type == "sl_hit"]
    assert alert.severity == "warning" and "SL hit" in alert.message
    assert "96,990.0" in alert.message and f"{t.trade.pnl:+.2f}" in alert.message


@on_both_venues
async def test_a_stop_out_on_the_exchange_is_alerted(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, **BIG))
    await h.settle()
    await h.price(96_900.0)  # through the stop at 97 000
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "sl"
    (message,) = [text for severity, kind, text in h.alerts if (severity, kind) == ("warning", "sl_hit")]
    assert "SL hit" in message and "96,900.0" in message and f"{trade.pnl:+.2f} USDT" in message
    await h.stop()


# --- realised PnL against what was held ------------------------------------------------------------


def _exchange_realised(m: Monitor, fills: list[Execution]) -> float:
    """What the exchange realises for these fills (the simulator's Bybit arithmetic), net of fees."""
    size, entry, realised = Decimal(0), Decimal(0), Decimal(0)
    for exe in fills:
        out = sim_ledger.apply_fill(size, entry, exe.side, Decimal(str(exe.qty)), Decimal(str(exe.price)))
        size, entry = out.size, out.entry
        realised += out.realised - Decimal(str(exe.fee))
    assert size == 0
    return float(realised)


def test_an_entry_after_a_partial_tp_is_realised_against_the_held_entry() -> None:
    m = with_position()  # e1: 0.033 at 100 000
    fills = [fill(m, "e1", 0.033, 100_000.0)]  # the fill with_position applied (same price, qty, fee)
    steps: list[tuple[str, float, float]] = [
        ("tp1", 0.014, 101_000.0),  # half of TP1
        ("e2", 0.033, 99_000.0),  # then the second entry: the held entry is 99 365.38, not 99 500
    ]
    for slot, qty, price in steps:
        exe = fill(m, slot, qty, price)
        fills.append(exe)
        m = ack_all(apply_execution(m, exe, BTC, P)).monitor
    trade = None
    for slot in ("tp1", "tp2", "tp3", "tp4"):
        order = m.orders[slot]
        exe = fill(m, slot, round(order.qty - order.filled_qty, 3), m.tp_prices[int(slot[2:]) - 1])
        fills.append(exe)
        t = apply_execution(m, exe, BTC, P)
        m, trade = ack_all(t).monitor, t.trade or trade
    assert trade is not None and trade.reason == "tp" and trade.qty == pytest.approx(0.066)
    assert trade.pnl == pytest.approx(_exchange_realised(m, fills), abs=1e-6)


@on_both_venues
async def test_pnl_of_an_entry_filled_after_a_partial_tp_equals_the_exchanges(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(**BIG))
    await h.settle()
    await h.price(101_000.0)  # TP1 touched: half of it fills
    m = h.manager.monitors["main:BTCUSDT:Buy"]
    assert 0 < m.orders["tp1"].filled_qty < m.orders["tp1"].qty
    await h.price(98_900.0)  # e2 fills after the partial TP1
    assert h.position().size == pytest.approx(0.052)
    assert_protected(h)
    await h.price(104_100.0)  # every TP
    assert not h.position().is_open
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "tp" and trade.tps_hit == 4
    # invariant 6: the ledger's PnL is what the exchange realised (net of fees)
    assert trade.pnl == pytest.approx(h.position().realised_pnl, abs=1e-6)
    await h.stop()


# --- end to end: the exchange charges funding and closes positions itself -------------------------


@on_both_venues
async def test_funding_adl_and_liquidation_end_to_end(market: Market) -> None:
    h = market.harness()
    await h.start()
    await h.manager.open_trade(h.request(Approach.FAST, **BIG))  # long 0.1 at 100 000
    await h.settle()
    h.exchange.settle_funding(SYMBOL, 0.0001)  # the long pays 0.1 x 100 000 x 0.01 % = 1
    await h.settle()
    await h.price(100_500.0)
    h.exchange.settle_funding(SYMBOL, -0.00005)  # and receives 0.1 x 100 500 x 0.005 % = 0.5025
    await h.settle()
    m = h.manager.monitors["main:BTCUSDT:Buy"]
    assert m.size == pytest.approx(0.1) and m.funding == pytest.approx(1.0 - 0.5025)
    assert_protected(h)
    await h.price(99_000.0)
    h.exchange.force_close("main", SYMBOL, 0.04, "AdlTrade")
    await h.settle()
    assert h.position().size == pytest.approx(0.06)
    assert_protected(h)  # the stop follows the smaller position
    h.exchange.force_close("main", SYMBOL, None, "BustTrade")
    await h.settle()
    assert not h.position().is_open and h.open_orders() == []
    (trade,) = h.manager.ledger.trades
    assert trade.reason == "liquidation" and trade.funding == pytest.approx(0.4975)
    # invariant 6 with funding: the ledger's PnL is what the exchange realised
    assert trade.pnl == pytest.approx(h.position().realised_pnl, abs=1e-6)
    kinds = [(severity, kind) for severity, kind, _ in h.alerts]
    assert ("critical", "adl") in kinds and ("critical", "liquidation") in kinds
    row_ = h.manager.ledger.snapshot()
    assert row_["trades"][0]["funding"] == pytest.approx(0.4975)
    assert row_["totals"]["funding"] == pytest.approx(0.4975)
    assert ",funding," in h.manager.ledger.to_csv().splitlines()[0]
    await h.stop()


def test_a_funding_row_never_moves_the_position_whatever_its_side() -> None:
    """A funding row's ``side`` is the position's; it never grows or shrinks the position."""
    m = with_position()
    for i, side in enumerate(("Buy", "Sell")):
        exe = row("Funding", side=side, qty="0.033", price="100000", fee="0.1", exec_id=f"f{i}")
        assert exe.side is Side(side)
        t = apply_execution(m, exe, BTC, P)
        assert t.monitor.size == m.size and not any(isinstance(a, PlaceOrder) for a in t.actions)
