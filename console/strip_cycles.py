"""Textual's strips freed when they are dropped, not by the garbage collector.

Textual (8.2, ``textual/strip.py``) keeps what :meth:`Strip.crop_extend` and :meth:`Strip.divide`
return in the strip's own caches. When there is nothing to crop, extend or divide, which is what the
compositor asks of most lines of every frame, that result is the strip itself (or a list holding it),
so the strip refers to itself: reference counting never frees it, its caches, segments and styles. With
the console open at a thousand positions that was about 1,200 objects a second for the collector, whose
young-generation passes then took 52-73 ms every 10-20 s, on whichever thread set them off, the
engine's included (docs/console.md).

:func:`keep_strips_acyclic` makes those two methods return the same strips without caching the strip
in itself (computing "nothing to do" again is a few comparisons). It changes nothing when the installed
Textual no longer makes the cycle, or keeps its caches under other names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip

_original_crop_extend = Strip.crop_extend
_original_divide = Strip.divide


def _crop_extend(self: Strip, start: int, end: int, style: Style | None) -> Strip:
    """:meth:`Strip.crop_extend`, its own strip not cached in itself."""
    cache_key = (start, end, style)
    cached = self._crop_extend_cache.get(cache_key)
    if cached is not None:
        return cached
    strip = self.extend_cell_length(end, style).crop(start, end)
    if strip is not self:
        self._crop_extend_cache[cache_key] = strip
    return strip


def _divide(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
    """:meth:`Strip.divide`, the strip whole (one cut at its end) not cached in itself."""
    cuts = [cut for cut in cuts if cut <= self.cell_length]
    if cuts == [self.cell_length]:
        return [self]
    return _original_divide(self, cuts)


def strips_refer_to_themselves() -> bool:
    """Whether the installed Textual's strips keep themselves in their caches (the cycle above)."""
    strip = Strip([Segment("ab")], 2)
    _original_crop_extend(strip, 0, 2, None)
    return strip._crop_extend_cache.get((0, 2, None)) is strip


def keep_strips_acyclic() -> bool:
    """Install the two methods above on :class:`Strip` when the installed Textual needs them (once;
    later calls do nothing). Returns whether they are installed."""
    if Strip.crop_extend is _crop_extend:
        return True
    try:
        needed = strips_refer_to_themselves()
    except AttributeError:  # caches renamed or gone: a Textual this was not written for
        return False
    if needed:
        Strip.crop_extend = _crop_extend  # type: ignore[method-assign]
        Strip.divide = _divide  # type: ignore[method-assign]
    return needed
