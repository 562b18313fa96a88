"""The daily summary (its figures, text and timing), the delivery settings, and delivery wired into
the engine: a whole EngineRuntime with Telegram pointed at a fake on 127.0.0.1, across a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from alert_fakes import FakeTelegram, Recorder
from tpsl_harness import MemoryStore

from engine.alerts.bus import AlertBus
from engine.alerts.model import Severity
from engine.alerts.summary import summary_due, summary_text, utc_day
from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.models import Monitor, Phase, Side, Trade
from engine.core.settings import SettingsError, load_settings
from engine.core.state_keys import ALERT_OUTBOX_KEY, ALERT_SUMMARY_KEY
from engine.runtime.assembly import EngineRuntime
from engine.runtime.daily_summary import DailySummary, day_figures
from engine.trading.ledger import Ledger

DAY = parse_iso_utc("2026-03-10T00:00:00Z")
TOKEN = "987654321:ZZqTcvCH1vGWJxfSeofSAs0K5PALDsawXY"


def trade(account: str, pnl: float, closed_at: float, fees: float = 0.5, funding: float = 0.0) -> Trade:
    return Trade(
        account=account,
        symbol="BTCUSDT",
        side=Side.BUY,
        approach="fast",
        reason="tp" if pnl > 0 else "sl",
        entry_price=100.0,
        exit_price=101.0,
        qty=1.0,
        pnl=pnl,
        fees=fees,
        opened_at=closed_at - 600,
        closed_at=closed_at,
        monitor_id=f"{account}-{closed_at}",
        funding=funding,
    )


def monitor(account: str, size: float, entry: float, sl: float, phase: Phase = Phase.MONITORING) -> Monitor:
    return Monitor(
        monitor_id=f"m-{account}-{entry}",
        account=account,
        symbol="ETHUSDT",
        side=Side.BUY,
        approach="fast",
        created_at=DAY,
        sl_price=sl,
        phase=phase,
        size=size,
        entry_qty=size,
        entry_cost=size * entry,
    )


TRADES = [
    trade("main", 50.0, DAY - 60),  # yesterday: not in today's summary
    trade("main", 20.0, DAY + 3600, fees=1.0, funding=0.25),
    trade("main", -10.0, DAY + 7200, fees=1.0),
    trade("main", 0.0, DAY + 9000, fees=0.0),  # breakeven: neither win nor loss, counted
    trade("mirror", 5.0, DAY + 3600, fees=0.5),
]
MONITORS = [
    monitor("main", 2.0, 100.0, 95.0),  # risk 10
    monitor("mirror", 1.0, 100.0, 95.0),  # risk 5
    monitor("main", 3.0, 100.0, 90.0, phase=Phase.CLOSED),  # closed: no risk
]


def test_day_figures_per_account_and_together() -> None:
    rows = {row.account: row for row in day_figures(["main", "mirror"], TRADES, MONITORS, DAY + 80_000)}
    main, mirror, both = rows["main"], rows["mirror"], rows["all"]
    assert (main.trades, main.wins, main.losses, main.win_rate) == (3, 1, 1, 0.3333)
    assert (main.pnl, main.fees, main.funding) == (10.0, 2.0, 0.25)
    assert (main.open_positions, main.open_risk) == (1, 10.0)
    assert (mirror.trades, mirror.pnl, mirror.open_risk) == (1, 5.0, 5.0)
    assert (both.trades, both.wins, both.pnl, both.open_risk) == (4, 2, 15.0, 15.0)
    # one account only: no "all" line; an account that closed a trade today is never left out
    main_only = [t for t in TRADES if t.account == "main"]
    assert [r.account for r in day_figures(["main"], main_only, MONITORS, DAY + 80_000)] == ["main"]
    assert [r.account for r in day_figures(["main"], TRADES, [], DAY + 80_000)] == ["main", "mirror", "all"]
    # the day so far: a trade closed after ``now`` is not in it
    assert rows["main"].trades == 3 and day_figures(["main"], TRADES, [], DAY + 5000)[0].trades == 1


def test_summary_text_reads_well() -> None:
    rows = day_figures(["main", "mirror"], TRADES, MONITORS, DAY + 80_000)
    text = summary_text(utc_day(DAY), rows)
    assert text.splitlines() == [
        "Daily summary 2026-03-10 (UTC)",
        "main: 3 trades (1 won, 1 lost, win rate 33.3%), PnL +10.00 USDT, fees 2.00, funding 0.25;"
        " 1 open position, open risk 10.00 USDT",
        "mirror: 1 trade (1 won, 0 lost, win rate 100.0%), PnL +5.00 USDT, fees 0.50, funding 0.00;"
        " 1 open position, open risk 5.00 USDT",
        "all: 4 trades (2 won, 1 lost, win rate 50.0%), PnL +15.00 USDT, fees 2.50, funding 0.25;"
        " 2 open positions, open risk 15.00 USDT",
    ]
    empty = summary_text("2026-03-11", day_figures(["main"], [], [], DAY + 86_400), on_demand=True)
    assert empty.splitlines()[1] == "main: no trades closed; 0 open positions, open risk 0.00 USDT"


def test_the_summary_is_due_once_a_day_from_its_time() -> None:
    at = "23:55"
    assert not summary_due(DAY + 23 * 3600 + 54 * 60, at, None)
    assert summary_due(DAY + 23 * 3600 + 55 * 60, at, None)
    assert not summary_due(DAY + 23 * 3600 + 58 * 60, at, "2026-03-10")  # sent today
    assert summary_due(DAY + 23 * 3600 + 58 * 60, at, "2026-03-09")  # started late: catches up
    assert not summary_due(DAY + 86_400 + 60, at, "2026-03-10")  # the next day, before its time
    assert summary_due(DAY + 60, "00:00", "2026-03-09")


async def test_the_summary_job_raises_it_once_and_remembers_across_a_restart() -> None:
    clock = VirtualClock(start=DAY + 23 * 3600)
    bus = AlertBus(clock)
    store = MemoryStore()
    manager = SimpleNamespace(ledger=Ledger(TRADES), monitors={m.key: m for m in MONITORS})
    summary = DailySummary(
        manager=manager, alerts=bus, store=store, clock=clock, at_utc="23:55", accounts=["main", "mirror"]
    )
    summary.load()
    await summary.tick()
    assert [a for a in bus.recent() if a.type == "daily_summary"] == []
    clock.advance(55 * 60)
    await summary.tick()
    clock.advance(60)
    await summary.tick()
    [sent] = [a for a in bus.recent() if a.type == "daily_summary"]
    assert sent.severity is Severity.INFO and sent.key == "daily"
    assert sent.message.startswith("Daily summary 2026-03-10 (UTC)\nmain: 3 trades")
    assert store.crash_copy().state[ALERT_SUMMARY_KEY] == {"last_day": "2026-03-10"}
    again = DailySummary(
        manager=manager, alerts=bus, store=store.crash_copy(), clock=clock, at_utc="23:55", accounts=["main"]
    )
    again.load()
    await again.tick()
    assert len([a for a in bus.recent() if a.type == "daily_summary"]) == 1
    # on demand: any time, raised and returned
    text = again.publish_now()
    assert text.startswith("Summary of 2026-03-10 (UTC) so far")
    assert bus.recent()[-1].type == "daily_summary" and bus.recent()[-1].key == "on_demand"


def test_delivery_settings_are_validated(tmp_path: Path) -> None:
    base = load_settings(state_dir=tmp_path)
    assert base.get("alerts.telegram.min_severity") == "warning"
    assert base.get("alerts.webhook.secret_env") == "OPCONSOLE_WEBHOOK_SECRET"
    assert base.with_values({"alerts.cooldown_s": 0.0}).get("alerts.cooldown_s") == 0.0
    for bad, what in [
        ({"alerts.telegram.min_severity": "loud"}, "must be one of info, warning, critical"),
        ({"alerts.telegram.per_minute": 31}, "must be <= 30"),
        ({"alerts.outbox_max": 0}, "must be > 0"),
        ({"alerts.retry_first_s": 600.0}, "retry_first_s <= retry_max_s"),
        ({"alerts.webhook.secret_env": "abc:DEF123xyz"}, "does not look like an environment variable"),
    ]:
        with pytest.raises(SettingsError) as refused:
            base.with_values(bad)
        assert what in str(refused.value), bad


# --- delivery in the assembled engine ------------------------------------------------------------


def _runtime(state_dir: Path, url: str) -> EngineRuntime:
    settings = load_settings(state_dir=state_dir).with_values(
        {
            "sim.demo_trades": 0,
            "alerts.telegram.enabled": True,
            "alerts.telegram.chat_id": "4242",
            "alerts.telegram.base_url": url,
            "alerts.daily_summary_utc": "00:02",
        }
    )
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    return EngineRuntime(settings, state_dir, clock)


async def _until(condition: object, what: str) -> None:
    """Let the loop run (real time: the fake server is a socket) until ``condition()`` holds."""
    for _ in range(500):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_the_engine_delivers_to_telegram_and_not_again_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPCONSOLE_TELEGRAM_TOKEN", TOKEN)
    state = tmp_path / "state"
    runtime = _runtime(state, "http://127.0.0.1:9")  # set below, once the fake server has a port
    recorder = Recorder(runtime.clock)
    server = await FakeTelegram(recorder, TOKEN).start()
    try:
        runtime = _runtime(state, server.url)
        recorder.clock = runtime.clock
        engine = await runtime.start()
        assert engine.delivery is not None and engine.summary is not None
        runtime.alerts.raise_alert(Severity.CRITICAL, "sl_hit", "BTCUSDT stop hit", key="main:BTCUSDT:Buy")
        await _until(lambda: recorder.ids, "the alert reached the fake Telegram")
        assert "BTCUSDT stop hit" in recorder.messages[0][1]
        # the daily summary (an info alert, below the sink's threshold) is delivered all the same
        clock = runtime.clock
        assert isinstance(clock, VirtualClock)
        await clock.drive(until=clock.now() + 180)
        await _until(lambda: any("Daily summary" in text for _, text in recorder.messages), "the summary")
        assert runtime.dashboard is not None
        snapshot = await runtime.dashboard.snapshot()
        section = snapshot["alert_delivery"]
        assert section["enabled"] is True and section["sinks"]["telegram"]["delivered"] == 2
        assert {"alert-delivery", "daily-summary"} <= set(snapshot["scheduler"])
        assert TOKEN not in json.dumps(snapshot, default=str)
        await runtime.stop()

        restarted = _runtime(state, server.url)
        recorder.clock = restarted.clock
        await restarted.start()
        assert restarted.store is not None
        outbox = restarted.store.state[ALERT_OUTBOX_KEY]
        assert TOKEN not in json.dumps(outbox)
        assert all(item["sinks"]["telegram"] == "delivered" for item in outbox["items"])
        restarted.alerts.raise_alert(Severity.WARNING, "stream_down", "main stream down", key="main")
        await _until(lambda: len(recorder.ids) == 3, "the alert after the restart")
        assert recorder.duplicates == []
        await restarted.stop()
    finally:
        await server.stop()


async def test_an_enabled_sink_without_its_token_is_a_warning_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPCONSOLE_TELEGRAM_TOKEN", raising=False)
    runtime = _runtime(tmp_path, "http://127.0.0.1:9")
    engine = await runtime.start()
    try:
        assert engine.delivery is None
        [warning] = [a for a in runtime.alerts.recent() if a.type == "alert_delivery_config"]
        assert "$OPCONSOLE_TELEGRAM_TOKEN is not set" in warning.message
        assert runtime.dashboard is not None
        assert (await runtime.dashboard.snapshot())["alert_delivery"]["enabled"] is False
    finally:
        await runtime.stop()
