"""What Textual drops is freed by reference counting once the console is made (console/textual_cycles.py)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
from rich.segment import Segment
from rich.style import Style
from test_console_support import make_console
from textual._compositor import Compositor
from textual.app import App, ComposeResult
from textual.map_geometry import MapGeometry
from textual.strip import Strip
from textual.widgets import Label, Static

from console import textual_cycles


@pytest.fixture
def textual_as_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip's own methods for the test (the ones installed by an earlier console put back after)."""
    monkeypatch.setattr(Strip, "crop_extend", textual_cycles._original_crop_extend)
    monkeypatch.setattr(Strip, "divide", textual_cycles._original_divide)
    monkeypatch.setattr(Compositor, "_arrange_root", textual_cycles._original_arrange_root)


def _references_kept(strip: Strip) -> int:
    """References to ``strip`` that its own caches took when it was cropped and divided to itself."""
    before = sys.getrefcount(strip)
    strip.crop_extend(0, strip.cell_length, None)
    strip.divide([strip.cell_length])
    return sys.getrefcount(strip) - before


def test_a_console_makes_the_strips_cropped_or_divided_to_themselves_free_when_dropped(
    tmp_path: Path, textual_as_shipped: None
) -> None:
    assert textual_cycles.strips_refer_to_themselves()  # the installed Textual makes the cycle
    assert _references_kept(Strip([Segment("abc")], 3)) == 2
    make_console(tmp_path)
    assert _references_kept(Strip([Segment("abc")], 3)) == 0
    assert textual_cycles.break_textual_cycles()  # again: already installed


CASES = [
    (segments, length, start, end, style)
    for segments, length in (
        ([Segment("abc")], 3),
        ([Segment("ab", Style(bold=True)), Segment("cdef")], 6),
        ([Segment("日本"), Segment("x")], 5),
        ([], 0),
    )
    for start, end in ((0, length), (0, length + 4), (1, length), (0, max(length - 1, 0)), (2, length + 2))
    for style in (None, Style(color="red"))
]


@pytest.mark.parametrize(("segments", "length", "start", "end", "style"), CASES)
def test_the_strips_are_the_ones_textual_makes(
    segments: list[Segment], length: int, start: int, end: int, style: Style | None
) -> None:
    ours, theirs = Strip(segments, length), Strip(segments, length)
    for _ in range(2):  # made, then from the cache
        assert list(textual_cycles._crop_extend(ours, start, end, style)) == list(
            textual_cycles._original_crop_extend(theirs, start, end, style)
        )
    for cuts in ([length], [1, length], [length + 3], [0, length]):
        got = [list(s) for s in textual_cycles._divide(ours, cuts)]
        assert got == [list(s) for s in textual_cycles._original_divide(theirs, cuts)]


class _Panels(App[None]):
    def compose(self) -> ComposeResult:
        for n in range(6):
            yield Static(f"panel {n}")
            yield Label(f"label {n}")


def _maps_left_to_the_collector(app: _Panels) -> int:
    """Regions of three layout passes of ``app``'s screen that only the collector would free."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(3):
            app.screen._compositor._arrange_root(app.screen, app.screen.size)
        gc.collect()
        return sum(1 for o in gc.garbage if isinstance(o, MapGeometry))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


async def test_a_layout_pass_leaves_no_map_of_regions_to_the_collector(textual_as_shipped: None) -> None:
    app = _Panels()
    async with app.run_test(size=(80, 24)):
        assert _maps_left_to_the_collector(app) > 0  # the installed Textual's closure cycle
        textual_cycles.break_textual_cycles()
        before = dict(app.screen._compositor._arrange_root(app.screen, app.screen.size)[0])
        assert _maps_left_to_the_collector(app) == 0
        shipped = textual_cycles._original_arrange_root
        assert shipped is not None
        assert shipped(app.screen._compositor, app.screen, app.screen.size)[0] == before  # the same map
