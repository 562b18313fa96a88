"""Text updates that cost only what changed.

A Static's ``update`` asks Textual for a layout pass of the whole screen by default, because the new
text might change the widget's size. On a dashboard refreshed twice a second, the header's clock and
rate figures change every time but rarely their length: a layout pass each time was most of the
console's idle CPU. :func:`show_text` skips the update when the text is the same, and repaints
without a layout when the widget's size cannot change (the same shape of text, or a width the
stylesheet fixes).
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.content import Content
from textual.widgets import Static


def show_text(widget: Static, text: str) -> bool:
    """Show ``text`` in ``widget``; False when it was already shown (nothing repainted). Without a
    layout pass when the widget keeps its size: the new text has the same lines of the same lengths
    as the old, or the widget's width does not follow its text (:func:`keeps_size`)."""
    content = widget.content
    old = content.plain if isinstance(content, Content | Text) else str(content)
    if text == old:
        return False
    old_lines, new_lines = old.split("\n"), text.split("\n")
    same_shape = [len(line) for line in old_lines] == [len(line) for line in new_lines]
    widget.update(text, layout=not (same_shape or keeps_size(widget, old_lines, new_lines)))
    return True


def keeps_size(widget: Static, old_lines: list[str], new_lines: list[str]) -> bool:
    """Whether ``widget`` keeps its size when its text goes from ``old_lines`` to ``new_lines``: its
    width is set by the stylesheet (not ``auto``), and its height is too, or both texts have as many
    lines and every one fits the width (no line wraps, so the height stays one per line)."""
    styles = widget.styles
    if styles.width is None or styles.width.is_auto:
        return False
    if styles.height is not None and not styles.height.is_auto:
        return True
    room = widget.content_size.width
    return len(old_lines) == len(new_lines) and all(
        cell_len(line) <= room for line in (*old_lines, *new_lines)
    )
