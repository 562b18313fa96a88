"""The header (issue 16): the age of the oldest venue data on screen, amber past ``ui.stale_after_s``
and red far past it; everything, the clock included, fits at 80x24."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_console_support import make_console, settle
from textual.widgets import Label

from console.app import OperatorConsole
from engine.core.clock import VirtualClock


def header(app: OperatorConsole, field: str) -> Label:
    return app.query_one(f"#sb-{field}", Label)


async def fully_shown(app: OperatorConsole, field: str) -> bool:
    """The label's whole text is on screen: as wide as its text, inside the terminal."""
    label = header(app, field)
    return label.region.width >= len(str(label.content)) and label.region.right <= app.size.width


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
async def test_the_header_shows_the_data_age_and_turns_amber_then_red(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    # No demo trades: a fill polled after the streams went down rightly makes the wallet read
    # again, and how soon one is polled depends on the engine's timing, not on what this tests.
    app = make_console(tmp_path, **{"ui.stale_after_s": 3.0, "sim.demo_trades": 0})
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        clock = app.runtime.clock
        assert isinstance(clock, VirtualClock)
        age = header(app, "age")
        assert str(age.content) == "data 0.0s" and age.has_class("-fresh")

        # The streams go down: nothing writes the cached data through any more, so it ages.
        await app.runtime.profile.set("push_streams", "baseline")
        await clock.drive(until=clock.now() + 5.0)
        await app.refresh_dashboard()
        await pilot.pause()
        assert str(age.content) == "data 5.0s"
        assert age.has_class("-state-attention") and not age.has_class("-fresh")

        await clock.drive(until=clock.now() + 30.0)  # 35 s > 10 x 3 s
        await app.refresh_dashboard()
        await pilot.pause()
        assert str(age.content) == "data 35s" and age.has_class("-state-degraded")
        for field in ("venue", "state", "profile", "streams", "api", "age", "clock"):
            assert await fully_shown(app, field), field


async def test_the_header_uses_short_forms_at_80_columns(tmp_path: Path) -> None:
    app = make_console(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert str(header(app, "clock").content) == "00:00:00 UTC"  # the date goes first
        assert str(header(app, "profile").content) == " OPT "
        for field in ("venue", "state", "profile", "streams", "api", "age", "clock"):
            assert await fully_shown(app, field), field
        await pilot.resize_terminal(160, 50)
        await pilot.pause()
        assert str(header(app, "clock").content) == "2026-01-01 00:00:00 UTC"
        assert str(header(app, "profile").content) == " OPTIMIZED "
