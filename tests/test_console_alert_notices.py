"""Alerts reach the operator on every layout: a toast for each new warning and critical alert, a
count of unseen alerts on the compact layout's alerts tab, and the bell for critical ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_console_support import make_console, settle
from textual.widgets import Tab

from console.view_model import AlertNotices, events_tab_label


def _row(time: str, severity: str, type_: str, message: str, key: str = "") -> Any:
    return {"time": time, "severity": severity, "type": type_, "message": message, "key": key}


def test_each_new_warning_or_critical_alert_is_one_toast_and_info_is_not() -> None:
    notices = AlertNotices()
    first = [
        _row("2026-01-01T00:00:01.000Z", "info", "tp_hit", "TP1"),
        _row("2026-01-01T00:00:02.000Z", "warning", "stream_down", "main: stream down", "main"),
    ]
    (toast,) = notices.take(first, in_sight=False)
    assert (toast.text, toast.severity, toast.critical) == (
        "stream_down: main: stream down",
        "warning",
        False,
    )
    assert notices.unseen == 2
    later = [*first, _row("2026-01-01T00:00:03.000Z", "critical", "sl_failed", "closing", "main:X:Buy")]
    (again,) = notices.take(later, in_sight=False)  # the first two are not toasted twice
    assert again.severity == "error" and again.critical
    assert notices.unseen == 3
    assert notices.take(later, in_sight=True) == [] and notices.unseen == 0
    assert events_tab_label(3) == "Alerts + log (3)" and events_tab_label(0) == "Alerts + log"


def test_a_repeated_warning_is_toasted_once_per_cooldown_and_a_critical_always() -> None:
    notices = AlertNotices(cooldown_s=60.0)
    rows = [
        _row(f"2026-01-01T00:00:{second:02d}.000Z", "warning", "poll_failed", f"poll {second}", "mirror")
        for second in (0, 10, 20)
    ]
    assert len(notices.take(rows, in_sight=True)) == 1  # the pane lists all three; one toast
    later = _row("2026-01-01T00:01:05.000Z", "warning", "poll_failed", "poll 65", "mirror")
    assert len(notices.take([*rows, later], in_sight=True)) == 1  # the cooldown has passed
    other = _row("2026-01-01T00:01:06.000Z", "warning", "poll_failed", "main too", "main")
    assert len(notices.take([other], in_sight=True)) == 1  # another key is another alert
    critical = [
        _row(f"2026-01-01T00:02:0{second}.000Z", "critical", "sl_failed", f"x{second}", "main:X:Buy")
        for second in (1, 2)
    ]
    assert len(notices.take(critical, in_sight=True)) == 2


async def test_the_compact_layout_toasts_counts_and_rings_for_a_critical_alert(tmp_path: Path) -> None:
    app = make_console(tmp_path, **{"ui.bell_on_critical": True})
    rings: list[bool] = []
    app.bell = lambda: rings.append(True)  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert app.screen.has_class("-compact")
        before = len(app._notifications)
        engine = app.runtime.started()
        engine.alerts.raise_alert(
            "critical", "sl_failed", "main:BTCUSDT:Buy: stop refused", key="main:BTCUSDT:Buy"
        )
        await app.refresh_dashboard()
        await pilot.pause()
        texts = [n.message for n in list(app._notifications)[before:]]
        assert "sl_failed: main:BTCUSDT:Buy: stop refused" in texts
        assert rings == [True]
        label = str(app.query_one("#tab-events", Tab).label)
        assert label.startswith("Alerts + log (") and label != "Alerts + log (0)"
        app.show_section("events")
        await pilot.pause()
        assert str(app.query_one("#tab-events", Tab).label) == "Alerts + log"
