"""Textual's reference cycles broken, so what it drops is freed at once, not by the garbage collector.

A young-generation pass of the collector walks every young object: with the console open at a
thousand positions the cyclic garbage below set one off every 10-20 s, 52-120 ms on whichever thread
allocated last, the engine's included, in the middle of a fill's decision as often as not
(docs/console.md). Two sources, both in Textual 8.2:

- **Strips** (``textual/strip.py``): :meth:`Strip.crop_extend` and :meth:`Strip.divide` keep their
  result in the strip's own caches. When there is nothing to crop, extend or divide, which is what
  the compositor asks of most lines of every frame, that result is the strip itself (or a list
  holding it), so the strip refers to itself: reference counting never frees it, its caches,
  segments and styles (about 1,200 objects a second).
- **Layout maps** (``textual/_compositor.py``): ``Compositor._arrange_root`` places the widgets with
  a recursive closure, which refers to itself and holds the map it fills. Each layout pass (a table
  growing, an alert, a log line) left its whole map of regions in that cycle once the next one
  replaced it (about 320 objects a pass).

:func:`break_textual_cycles` installs replacements that return the same strips and maps without the
cycle. Each is installed only when the installed Textual still has the method it wraps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual._compositor import Compositor
from textual.strip import Strip

_original_crop_extend = Strip.crop_extend
_original_divide = Strip.divide
_original_arrange_root = getattr(Compositor, "_arrange_root", None)


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


def _arrange_root(self: Compositor, root: Any, size: Any, visible_only: bool = True) -> Any:
    """``Compositor._arrange_root``, its map and widgets handed out as copies: the originals, held
    by the closure that filled them, are emptied, so the cycle left behind holds nothing else."""
    assert _original_arrange_root is not None  # installed only when there is one
    placed, widgets = _original_arrange_root(self, root, size, visible_only)
    kept_map, kept_widgets = dict(placed), set(widgets)
    placed.clear()
    widgets.clear()
    return kept_map, kept_widgets


def break_textual_cycles() -> bool:
    """Install the replacements above when the installed Textual needs them (once; later calls do
    nothing). Returns whether the strips' are installed (the layout maps' go with them)."""
    if Strip.crop_extend is _crop_extend:
        return True
    try:
        needed = strips_refer_to_themselves()
    except AttributeError:  # caches renamed or gone: a Textual this was not written for
        return False
    if needed:
        Strip.crop_extend = _crop_extend  # type: ignore[method-assign]
        Strip.divide = _divide  # type: ignore[method-assign]
        if _original_arrange_root is not None:
            Compositor._arrange_root = _arrange_root  # type: ignore[method-assign]
    return needed
