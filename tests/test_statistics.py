"""The statistics views over the ledger (engine/dashboard/statistics.py), their period (reset), the
snapshot's ``statistics`` section and the export's columns.

The expected figures are worked out by hand in the comments, never by calling the code under test.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import pytest

from engine.core.clock import VirtualClock, iso_utc, parse_iso_utc
from engine.core.models import Side, Trade
from engine.core.settings import load_settings
from engine.core.state_keys import STATS_PERIOD_KEY
from engine.dashboard.statistics import statistics
from engine.dashboard.stats_period import period_start_of
from engine.runtime.assembly import EngineRuntime
from engine.trading.ledger import CSV_FIELDS, Ledger
from persistence.reasons import Reason

T0 = parse_iso_utc("2026-01-01T00:00:00Z")
DAY = 86_400.0


def trade(
    account: str,
    symbol: str,
    approach: str,
    reason: str,
    pnl: float,
    fees: float,
    funding: float,
    opened: float,
    closed: float,
    tps_hit: int = 0,
    exit_price: float = 100.0,
) -> Trade:
    return Trade(
        account=account,
        symbol=symbol,
        side=Side.BUY,
        approach=approach,
        reason=reason,
        entry_price=100.0,
        exit_price=exit_price,
        qty=1.0,
        pnl=pnl,
        fees=fees,
        opened_at=T0 + opened,
        closed_at=T0 + closed,
        tps_hit=tps_hit,
        monitor_id=f"{account}-{symbol}-{closed:.0f}",
        funding=funding,
    )


# The ledger in the order recorded (not the order closed: #4 closed before #2 was recorded).
LEDGER = [
    # 1: main, TP1 then closed at TP: +20 net, fees 2, funding 1 paid; held 3600 s; day 1
    trade("main", "BTCUSDT", "fast", "tp", 20.0, 2.0, 1.0, 0, 3600, tps_hit=1),
    # 2: main, closed by hand at the execution's price 90 (a real loss, not 0); held 6200 s; day 1
    trade("main", "ETHUSDT", "conservative", "manual", -10.0, 1.0, 0.0, 1000, 7200, exit_price=90.0),
    # 4: the mirror's trade: +8 net, fees 0.8, funding 0.4; held 3601 s; day 1
    trade("mirror", "BTCUSDT", "fast", "tp", 8.0, 0.8, 0.4, 0, 3601, tps_hit=1),
    # 3: main, TP1 and TP2, then the breakeven stop: +5 net, fees 1.5, funding received 0.5; day 2
    trade("main", "BTCUSDT", "conservative", "breakeven", 5.0, 1.5, -0.5, 3600, DAY + 600, tps_hit=2),
    # 5: main, the stop-loss: -30 net, fees 1; held 7200 s; day 2
    trade("main", "SOLUSDT", "fast", "sl", -30.0, 1.0, 0.0, DAY, DAY + 7200),
    # 6: main, every TP: +40 net, fees 3, funding 2; held 1800 s; day 3
    trade("main", "ETHUSDT", "conservative", "tp", 40.0, 3.0, 2.0, 2 * DAY, 2 * DAY + 1800, tps_hit=4),
]


def test_the_figures_of_each_account_match_the_hand_computed_ones() -> None:
    section = statistics(LEDGER, None, ["main", "mirror"])
    main = section["by_account"]["main"]
    # main in close order: +20, -10, +5, -30, +40
    assert main["trades"] == 5 and main["wins"] == 3 and main["losses"] == 2
    assert main["win_rate"] == 0.6
    assert main["net_pnl"] == 25.0
    assert main["fees"] == 8.5  # 2 + 1 + 1.5 + 1 + 3
    assert main["funding"] == 2.5  # 1 + 0 - 0.5 + 0 + 2
    assert main["gross_pnl"] == 36.0  # net + fees + funding
    assert main["avg_win"] == 21.6667  # 65 / 3
    assert main["avg_loss"] == -20.0  # -40 / 2
    assert main["expectancy"] == 5.0  # 25 / 5
    assert main["profit_factor"] == 1.625  # 65 / 40
    assert (main["best"], main["worst"]) == (40.0, -30.0)
    # W L W L W
    assert (main["longest_win_streak"], main["longest_loss_streak"], main["current_streak"]) == (1, 1, 1)
    # equity 20, 10, 15, -15, 25: from the peak 20 down to -15
    assert main["max_drawdown"] == 35.0
    assert list(main["tp_hits"]) == [3, 2, 1, 1]  # tps_hit 1, 2, 4 reach TP1; 2, 4 TP2; 4 TP3 and TP4
    assert (main["sl_exits"], main["breakeven_exits"]) == (1, 1)
    assert main["avg_hold_s"] == 20440.0  # (3600 + 6200 + 83400 + 7200 + 1800) / 5

    mirror = section["by_account"]["mirror"]
    assert (mirror["trades"], mirror["wins"], mirror["net_pnl"], mirror["fees"]) == (1, 1, 8.0, 0.8)
    assert mirror["gross_pnl"] == 9.2 and mirror["funding"] == 0.4
    assert mirror["profit_factor"] is None  # no loss
    assert (mirror["max_drawdown"], mirror["current_streak"], mirror["avg_loss"]) == (0.0, 1, None)

    every = section["by_account"]["all"]
    # all in close order: +20 (main), +8 (mirror, 1 s later), -10, +5, -30, +40
    assert (every["trades"], every["wins"], every["losses"], every["win_rate"]) == (6, 4, 2, 0.6667)
    assert (every["net_pnl"], every["fees"], every["funding"]) == (33.0, 9.3, 2.9)
    assert every["gross_pnl"] == 45.2
    assert every["profit_factor"] == 1.825  # 73 / 40
    assert (every["longest_win_streak"], every["longest_loss_streak"], every["current_streak"]) == (2, 1, 1)
    assert every["max_drawdown"] == 35.0  # equity 20, 28, 18, 23, -7, 33: 28 down to -7
    assert section["trades"] == 6
    assert list(section["by_account"]) == ["main", "mirror", "all"]


def test_by_approach_by_symbol_daily_pnl_and_the_equity_curve() -> None:
    section = statistics(LEDGER, None, ["main", "mirror"])
    approach = section["by_approach"]["all"]
    assert approach["fast"]["net_pnl"] == -2.0  # 20 + 8 - 30
    assert approach["conservative"]["net_pnl"] == 35.0  # -10 + 5 + 40
    assert approach["fast"]["trades"] == 3 and approach["conservative"]["wins"] == 2
    symbols = section["by_symbol"]["main"]
    assert list(symbols) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert [symbols[s]["net_pnl"] for s in symbols] == [25.0, 30.0, -30.0]
    assert list(section["by_symbol"]["mirror"]) == ["BTCUSDT"]
    # main: day 1 20 - 10, day 2 5 - 30, day 3 40
    assert list(section["daily_pnl"]["main"]) == [
        {"day": "2026-01-01", "pnl": 10.0},
        {"day": "2026-01-02", "pnl": -25.0},
        {"day": "2026-01-03", "pnl": 40.0},
    ]
    assert [p["equity"] for p in section["equity_curve"]["all"]] == [20.0, 28.0, 18.0, 23.0, -7.0, 33.0]
    assert section["equity_curve"]["main"][0]["time"] == "2026-01-01T01:00:00.000Z"
    # bounded: the latest points only, the drawdown still over the whole curve
    short = statistics(LEDGER, None, points=2)
    assert [p["equity"] for p in short["equity_curve"]["all"]] == [-7.0, 33.0]
    assert short["by_account"]["all"]["max_drawdown"] == 35.0


def test_a_period_covers_the_trades_closed_at_or_after_its_start() -> None:
    section = statistics(LEDGER, T0 + DAY + 600, ["main", "mirror"])
    main = section["by_account"]["main"]
    # trades 3, 5, 6: +5, -30, +40; equity 5, -25, 15: from 5 down to -25
    assert (main["trades"], main["net_pnl"], main["max_drawdown"]) == (3, 15.0, 30.0)
    assert section["by_account"]["mirror"]["trades"] == 0  # still listed, as the runtime has it
    assert section["period_start"] == "2026-01-02T00:10:00.000Z"
    assert [d["day"] for d in section["daily_pnl"]["all"]] == ["2026-01-02", "2026-01-03"]


def test_daily_pnl_fills_quiet_days_with_zero() -> None:
    quiet = [
        trade("main", "BTCUSDT", "fast", "tp", 3.0, 0.1, 0.0, 0, 60),
        trade("main", "BTCUSDT", "fast", "sl", -1.0, 0.1, 0.0, 2 * DAY, 2 * DAY + 60),
    ]
    days = statistics(quiet)["daily_pnl"]["main"]
    assert [(d["day"], d["pnl"]) for d in days] == [
        ("2026-01-01", 3.0),
        ("2026-01-02", 0.0),
        ("2026-01-03", -1.0),
    ]


def test_an_unreadable_period_shows_every_trade() -> None:
    assert period_start_of({"start": 12.5}) == 12.5
    assert period_start_of(None) is None
    assert period_start_of({"start": "yesterday"}) is None
    assert period_start_of({"start": True}) is None


def test_the_export_writes_every_column_of_a_trade_in_the_pinned_order() -> None:
    text = Ledger(LEDGER).to_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    # the columns the command had, in their order, then what was added at the end
    assert header[:15] == [
        "account", "symbol", "side", "approach", "reason", "entry_price", "exit_price", "qty",
        "pnl", "fees", "funding", "opened_at", "closed_at", "tps_hit", "exit_estimated",
    ]  # fmt: skip
    assert set(header) == {f.name for f in dataclasses.fields(Trade)} == set(CSV_FIELDS)
    manual = rows[1]
    assert (manual["reason"], manual["exit_price"], manual["pnl"]) == ("manual", "90.0", "-10.0")
    assert (manual["funding"], manual["monitor_id"]) == ("0.0", "main-ETHUSDT-7200")


# --- the engine: reset, persisted and honoured -------------------------------------------------


def _runtime(state_dir: Path) -> EngineRuntime:
    settings = load_settings(state_dir=state_dir).with_values({"sim.demo_trades": 0})
    return EngineRuntime(settings, state_dir, VirtualClock(start=parse_iso_utc(settings.get("sim.epoch"))))


async def _record(runtime: EngineRuntime, closed: Trade) -> None:
    manager, store = runtime.tpsl, runtime.store
    assert manager is not None and store is not None
    saved = manager.ledger.record(closed)
    assert saved is not None
    await store.save(*saved, reason=Reason.TRADE_RECORDED, force=True)


async def test_a_reset_starts_a_new_period_that_survives_a_restart(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    await runtime.start()
    try:
        now = runtime.clock.now()
        before = dataclasses.replace(LEDGER[0], opened_at=now - 7200, closed_at=now - 60)
        await _record(runtime, before)
        assert runtime.dashboard is not None and runtime.store is not None
        first = await runtime.dashboard.snapshot()
        assert first["statistics"]["period_start"] is None
        assert first["statistics"]["by_account"]["main"]["trades"] == 1

        records = runtime.store.metrics()["journal_records"]
        start = await runtime.dashboard.reset_statistics()
        assert runtime.store.metrics()["journal_records"] > records  # on disk when the reset returns
        assert start == now
        after = dataclasses.replace(LEDGER[4], opened_at=now, closed_at=now + 30)
        await _record(runtime, after)
        snap = await runtime.dashboard.snapshot()
        assert snap["statistics"]["period_start"] == iso_utc(now)
        assert snap["statistics"]["by_account"]["main"]["trades"] == 1
        assert snap["statistics"]["by_account"]["main"]["net_pnl"] == -30.0  # only the trade after it
        assert snap["ledger"]["totals"]["count"] == 2 and snap["stats"]["count"] == 2  # the ledger is kept
    finally:
        await runtime.stop()

    again = _runtime(tmp_path)
    await again.start()
    try:
        assert again.store is not None and again.dashboard is not None
        assert again.store.state[STATS_PERIOD_KEY] == {"start": now}
        snap = await again.dashboard.snapshot()
        assert snap["statistics"]["period_start"] == iso_utc(now)
        assert snap["statistics"]["by_account"]["main"]["net_pnl"] == -30.0
        assert snap["ledger"]["totals"]["count"] == 2
    finally:
        await again.stop()


@pytest.mark.parametrize("optimized", [True, False], ids=["optimized", "baseline"])
async def test_a_reset_shows_at_once_whatever_the_stats_ttl(tmp_path: Path, optimized: bool) -> None:
    runtime = _runtime(tmp_path)
    await runtime.start()
    try:
        assert runtime.dashboard is not None
        if not optimized:
            await runtime.profile.set("cache_ttls", "baseline")
        now = runtime.clock.now()
        await _record(runtime, dataclasses.replace(LEDGER[0], opened_at=now - 7200, closed_at=now - 60))
        assert (await runtime.dashboard.snapshot())["statistics"]["by_account"]["main"]["trades"] == 1
        await runtime.dashboard.reset_statistics()
        assert (await runtime.dashboard.snapshot())["statistics"]["by_account"]["main"]["trades"] == 0
    finally:
        await runtime.stop()
