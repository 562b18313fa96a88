"""Textual's strips freed by reference counting once the console is made (console/strip_cycles.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rich.segment import Segment
from rich.style import Style
from test_console_support import make_console
from textual.strip import Strip

from console import strip_cycles


@pytest.fixture
def textual_as_shipped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strip's own methods for the test (the ones installed by an earlier console put back after)."""
    monkeypatch.setattr(Strip, "crop_extend", strip_cycles._original_crop_extend)
    monkeypatch.setattr(Strip, "divide", strip_cycles._original_divide)


def _references_kept(strip: Strip) -> int:
    """References to ``strip`` that its own caches took when it was cropped and divided to itself."""
    before = sys.getrefcount(strip)
    strip.crop_extend(0, strip.cell_length, None)
    strip.divide([strip.cell_length])
    return sys.getrefcount(strip) - before


def test_a_console_makes_the_strips_cropped_or_divided_to_themselves_free_when_dropped(
    tmp_path: Path, textual_as_shipped: None
) -> None:
    assert strip_cycles.strips_refer_to_themselves()  # the installed Textual makes the cycle
    assert _references_kept(Strip([Segment("abc")], 3)) == 2
    make_console(tmp_path)
    assert _references_kept(Strip([Segment("abc")], 3)) == 0
    assert strip_cycles.keep_strips_acyclic()  # again: already installed


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
        assert list(strip_cycles._crop_extend(ours, start, end, style)) == list(
            strip_cycles._original_crop_extend(theirs, start, end, style)
        )
    for cuts in ([length], [1, length], [length + 3], [0, length]):
        got = [list(s) for s in strip_cycles._divide(ours, cuts)]
        assert got == [list(s) for s in strip_cycles._original_divide(theirs, cuts)]
