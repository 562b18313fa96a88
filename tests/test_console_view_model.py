"""The console's pure parts: badges, rows, derived statistics, rates, log queue, TTL steps, form parsing."""

from __future__ import annotations

import logging

import pytest

from console.engine_link import describe_flush
from console.logging_queue import LogBuffer, QueueLogHandler, filter_lines
from console.screens.trade_form import parse_trade_form
from console.screens.ttl import parse_ttl, ttl_step
from console.view_model import (
    NEGATIVE,
    POSITION_COLUMNS,
    POSITIVE,
    RateTracker,
    cache_rows,
    cache_summary,
    ledger_stats,
    order_rows,
    position_rows,
    profile_badge,
    streak_text,
    tp_ladder,
    trade_stats,
    venue_badge,
)
from engine.core.models import Side, Trade
from engine.trading.approaches import Approach
from engine.trading.ledger import Ledger
from persistence.store import FlushResult
from themes import ALL_THEMES, CONSOLE_VARIABLE_NAMES, next_theme


def test_venue_badge_makes_mainnet_unmistakable() -> None:
    assert venue_badge("sim") == (" SIM ", "network")
    assert venue_badge("testnet") == (" TESTNET ", "network")
    text, tone = venue_badge("mainnet")
    assert "MAINNET" in text and "REAL MONEY" in text and tone == "mainnet"


def test_profile_badge_ignores_pending_toggles() -> None:
    assert profile_badge({"a": "optimized", "b": "pending"}) == "OPTIMIZED"
    assert profile_badge({"a": "baseline", "b": "baseline"}) == "BASELINE"
    assert profile_badge({"a": "baseline", "b": "optimized"}) == "MIXED"
    assert profile_badge({"a": "pending"}) == "PENDING"


def test_tp_ladder_shows_filled_then_working() -> None:
    assert tp_ladder(2, 4) == "●●○○"
    assert tp_ladder(0, 1) == "○"
    assert tp_ladder(3, 1) == "●●●"  # never fewer slots than fills
    assert tp_ladder(0, 0) == "—"


SNAPSHOT = {
    "time": "2026-01-01T00:00:00.000Z",
    "profile": {"cache_metrics": "optimized"},
    "positions": [
        {
            "account": "main",
            "symbol": "BTCUSDT",
            "side": "Buy",
            "size": 0.01,
            "entry_price": 100000.0,
            "mark_price": 101000.0,
            "upnl": 10.0,
        },
    ],
    "monitors": [
        {
            "key": "main:BTCUSDT:Buy",
            "tps_filled": 1,
            "sl_price": 100050.0,
            "breakeven": True,
            "phase": "PROFIT_TAKING",
            "urgency": "active",
        },
    ],
    "orders": [
        {
            "account": "main",
            "symbol": "BTCUSDT",
            "side": "Sell",
            "order_type": "Limit",
            "qty": 0.001,
            "price": 102000.0,
            "trigger_price": None,
            "link_id": "oc-1-tp2",
            "purpose": "tp2",
            "status": "New",
        },
        {
            "account": "main",
            "symbol": "BTCUSDT",
            "side": "Sell",
            "order_type": "Limit",
            "qty": 0.001,
            "price": 103000.0,
            "trigger_price": None,
            "link_id": "oc-1-tp3",
            "purpose": "tp3",
            "status": "New",
        },
        {
            "account": "main",
            "symbol": "ETHUSDT",
            "side": "Buy",
            "order_type": "Limit",
            "qty": 1.0,
            "price": 3000.0,
            "trigger_price": None,
            "link_id": "",
            "purpose": None,
            "status": "New",
        },
        {
            "account": "main",
            "symbol": "ETHUSDT",
            "side": "Buy",
            "order_type": "Limit",
            "qty": 1.0,
            "price": 3000.0,
            "trigger_price": None,
            "link_id": "",
            "purpose": None,
            "status": "New",
        },
    ],
    "cache": {
        "enabled": True,
        "hit_rate": 0.75,
        "categories": {
            "positions": {
                "ttl": 15.0,
                "hits": 3,
                "misses": 1,
                "hit_rate": 0.75,
                "mean_load_ms": 2.5,
                "oldest_age_s": 4.0,
            }
        },
    },
}


def test_position_row_joins_its_monitor() -> None:
    rows = position_rows(SNAPSHOT)
    row = rows["main:BTCUSDT:Buy"]
    # by column key: issue 14 put the mirror badge column after the side
    cells = dict(zip((c.key for c in POSITION_COLUMNS), row, strict=True))
    texts = {key: cell.text for key, cell in cells.items()}
    assert texts["upnl"] == "+10.00" and cells["upnl"].tone == POSITIVE
    assert texts["upnl_pct"] == "+1.0%"  # 10 USDT on a 1000 USDT notional
    assert texts["tps"] == "●○○"  # one TP filled, two TP orders still working
    assert texts["sl"] == "100,050 BE"
    assert texts["phase"] == "taking profit" and texts["urgency"] == "active"
    assert texts["mirror"] == "—"  # the snapshot has no mirror section: mirroring is off


def test_orders_without_link_id_get_distinct_keys() -> None:
    rows = order_rows(SNAPSHOT)
    assert len(rows) == 4
    assert "main:oc-1-tp2" in rows
    foreign = [row for key, row in rows.items() if "oc-1" not in key]
    assert [row[2].text for row in foreign] == ["foreign", "foreign"]
    assert rows["main:oc-1-tp2"][2].text == "TP2"


def test_cache_panel_says_metrics_off_when_rolled_back() -> None:
    assert cache_summary(SNAPSHOT) == "hit rate 75.0% overall"  # 0.7.0: no category is below it
    assert cache_rows(SNAPSHOT)["positions"][4].text == "75.0%"
    off = {**SNAPSHOT, "profile": {"cache_metrics": "baseline"}}
    assert cache_summary(off) == "metrics off (rollback)"
    assert {cell.text for cell in cache_rows(off)["positions"][2:6]} == {"off"}


def test_trade_stats_from_the_ledger() -> None:
    trades = [
        {"pnl": 10.0, "fees": 1.0, "closed_at": "2026-01-01T00:01:00Z"},
        {"pnl": -4.0, "fees": 1.0, "closed_at": "2026-01-01T00:02:00Z"},
        {"pnl": -6.0, "fees": 1.0, "closed_at": "2026-01-01T00:03:00Z"},
        {"pnl": 20.0, "fees": 1.0, "closed_at": "2026-01-01T00:04:00Z"},
        {"pnl": 5.0, "fees": 1.0, "closed_at": "2026-01-01T00:05:00Z"},
    ]
    stats = trade_stats(list(reversed(trades)))  # closing order, whatever order they come in
    assert (stats.trades, stats.wins, stats.losses) == (5, 3, 2)
    assert stats.win_rate == pytest.approx(60.0)
    assert stats.pnl == pytest.approx(25.0) and stats.fees == pytest.approx(5.0)
    assert stats.profit_factor == pytest.approx(35.0 / 10.0)
    assert stats.max_drawdown == pytest.approx(10.0)  # from +10 down to 0
    assert stats.streak == 2 and streak_text(stats.streak) == "2 wins"
    assert stats.cumulative == (10.0, 6.0, 0.0, 20.0, 25.0)
    assert streak_text(-1) == "1 loss" and streak_text(-3) == "3 losses" and streak_text(0) == "—"
    empty = trade_stats([])
    assert empty.win_rate is None and empty.profit_factor is None and empty.cumulative == ()


def test_the_statistics_panel_shows_the_win_rate_of_the_snapshot() -> None:
    def closed(i: int, pnl: float) -> Trade:
        return Trade(
            "main", "BTCUSDT", Side.BUY, "fast", "tp", 100.0, 100.0 + pnl, 1.0, pnl, 0.1, i, i + 60.0
        )

    section = Ledger([closed(0, 5.0), closed(1, 0.0), closed(2, -2.0)]).snapshot()  # one breakeven
    stats = ledger_stats(section)
    assert (stats.trades, stats.wins, stats.losses) == (3, 1, 1)
    assert stats.win_rate == pytest.approx(section["totals"]["win_rate"] * 100.0)  # the snapshot's
    assert stats.win_rate == pytest.approx(100.0 / 3, abs=0.01)  # 1 of 3 trades won (not 1 of 2 decided)
    assert trade_stats(section["trades"]).win_rate == stats.win_rate  # the same rule without the totals


def test_rate_tracker_uses_engine_time_and_tolerates_a_frozen_clock() -> None:
    rates = RateTracker(window_s=60)
    rates.add(0.0, 100)
    rates.add(0.0, 110)  # frozen clock: no rate yet
    assert rates.per_minute() is None
    rates.add(30.0, 140)
    assert rates.per_minute() == pytest.approx(60.0)  # 30 calls (110 -> 140) in 30 s
    assert POSITIVE != NEGATIVE


def test_log_queue_drains_in_order_and_filters() -> None:
    handler = QueueLogHandler(lambda: 1_767_225_600.0)  # 2026-01-01T00:00:00Z
    # one of our own loggers: its multi-line records stay whole (a third party's fold to one line)
    logger = logging.getLogger("opconsole.test.queue")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("first")
        logger.warning("second\nwith a second line")
    finally:
        logger.removeHandler(handler)
    lines = handler.drain()
    assert lines[0] == "00:00:00 INFO    opconsole.test.queue: first"
    assert lines[1].endswith("second") and lines[2] == "with a second line"
    assert handler.drain() == []
    buffer = LogBuffer(max_lines=2)
    buffer.extend(lines)
    assert len(buffer) == 2
    assert buffer.matching("SECOND") == lines[1:3]
    assert buffer.matching("first") == []  # dropped: the buffer keeps the last two lines
    assert filter_lines(["a", "b"], "") == ["a", "b"]


def test_ttl_steps_and_typing() -> None:
    assert ttl_step(60, 1) == 90 and ttl_step(60, -1) == 55
    assert ttl_step(10, -1) == 9 and ttl_step(1, -1) == 1
    assert parse_ttl("45") == 45 and parse_ttl("5m") == 300 and parse_ttl(" 30s ") == 30
    with pytest.raises(ValueError):
        parse_ttl("0")
    with pytest.raises(ValueError):
        parse_ttl("soon")


def test_trade_form_parsing() -> None:
    values = {
        "account": "main",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "approach": "conservative",
        "margin": "100",
        "leverage": "10",
        "entries": "96500, 96000",
        "tps": "98000 99000",
        "sl": "95000",
    }
    request, errors = parse_trade_form(values)
    assert errors == [] and request is not None
    assert request.side is Side.BUY and request.approach is Approach.CONSERVATIVE
    assert request.entry_prices == (None, 96500.0, 96000.0) and request.tp_prices == (98000.0, 99000.0)
    bad, errors = parse_trade_form({**values, "margin": "lots", "tps": "", "sl": ""})
    assert bad is None
    assert errors == ["margin: not a number: 'lots'", "SL: required", "TPs: at least one take-profit price"]
    # float() reads nan, inf and 1e999: the form refuses them before the engine sees a request.
    odd, errors = parse_trade_form({**values, "margin": "nan", "leverage": "1e999", "tps": "98000 inf"})
    assert odd is None
    assert errors == [
        "margin: must be a finite number, got 'nan'",
        "leverage: must be a finite number, got '1e999'",
        "TPs: every price must be a finite number, got inf",
    ]


def test_flush_result_in_words() -> None:
    written = FlushResult(records=3, bytes=412, full_write=False, seq=17)
    assert describe_flush(written) == "3 records, 412 bytes (journal append, seq 17)"
    assert describe_flush(FlushResult(records=0, bytes=0, full_write=False, seq=17)) == "nothing pending"


def test_every_theme_defines_every_console_variable() -> None:
    names = [theme.name for theme in ALL_THEMES]
    assert names == ["opconsole-dark", "opconsole-light", "opconsole-contrast"]
    for theme in ALL_THEMES:
        assert set(CONSOLE_VARIABLE_NAMES) <= set(theme.variables), theme.name
    assert [next_theme(n) for n in names] == names[1:] + names[:1]
    assert next_theme("textual-dark") == "opconsole-dark"
