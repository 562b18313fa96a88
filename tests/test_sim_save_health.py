"""A simulated exchange that cannot save its market (full disk, immutable directory): one critical
alert, a reminder every 10 minutes while it lasts, an info alert when saving works again, and no
error line per tick."""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import pytest

from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.settings import load_settings
from engine.runtime.assembly import EngineRuntime
from engine.sim.journal import SimJournal
from engine.sim.save_health import SaveHealth


def test_save_health_reports_once_reminds_and_reports_the_recovery() -> None:
    health = SaveHealth(remind_every_s=600.0)
    assert health.succeeded(0.0) is None  # nothing to say while all is well
    first = health.failed(10.0, "disk full")
    assert first is not None and first.severity == "critical" and "disk full" in first.message
    assert [health.failed(t, "disk full") for t in (11.0, 300.0, 609.0)] == [None, None, None]
    reminder = health.failed(610.0, "disk full")
    assert reminder is not None and reminder.severity == "critical"
    assert "still cannot save its market, for 10 min now" in reminder.message
    assert health.failed(611.0, "disk full") is None
    back = health.succeeded(700.0)
    assert back is not None and back.severity == "info" and "again (after 12 min)" in back.message
    assert health.succeeded(701.0) is None and not health.failing


def sim_alerts(runtime: EngineRuntime) -> list[tuple[str, str]]:
    return [(a.severity.value, a.message) for a in runtime.alerts.recent() if a.type == "sim_exchange"]


def _no_space(*_args: Any, **_kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


async def test_an_exchange_that_cannot_save_alerts_once_then_reminds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(state_dir=tmp_path)  # with the seeded demo trades: fills every few ticks
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, tmp_path, clock)
    await runtime.start()
    try:
        await clock.drive(clock.now() + 30.0)  # trades open, the market saved and journaled
        with monkeypatch.context() as disk_full:
            disk_full.setattr("engine.sim.exchange.write_state", _no_space)  # the periodic saves
            disk_full.setattr(SimJournal, "append", _no_space)  # the per-change journal
            with caplog.at_level(logging.DEBUG, logger="opconsole.sim"):
                await clock.drive(clock.now() + 25 * 60.0)
            # the alerts are the operator's news; the exchange logs no error line per tick
            errors = [r for r in caplog.records if r.name == "opconsole.sim" and r.levelno >= logging.ERROR]
            assert errors == []
            alerts = sim_alerts(runtime)
            assert [severity for severity, _ in alerts] == ["critical", "critical", "critical"]
            assert "cannot save its market" in alerts[0][1] and "No space left on device" in alerts[0][1]
            assert "for 10 min now" in alerts[1][1] and "for 20 min now" in alerts[2][1]
        await clock.drive(clock.now() + 120.0)  # the disk has room again: the next write works
        alerts = sim_alerts(runtime)
        assert [severity for severity, _ in alerts] == ["critical", "critical", "critical", "info"]
        assert "saves its market again" in alerts[3][1]
    finally:
        await runtime.stop()
