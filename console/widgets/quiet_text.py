"""Text updates that cost only what changed.

A Static's ``update`` asks Textual for a layout pass of the whole screen by default, because the new
text might change the widget's size. On a dashboard refreshed twice a second, the header's clock and
rate figures change every time but rarely their length: a layout pass each time was most of the
console's idle CPU. :func:`show_text` skips the update when the text is the same, and repaints
without a layout when the widget's size cannot change.
"""

from __future__ import annotations

from rich.text import Text
from textual.content import Content
from textual.widgets import Static


def show_text(widget: Static, text: str) -> bool:
    """Show ``text`` in ``widget``; False when it was already shown (nothing repainted). Without a
    layout pass when the new text has the same lines of the same lengths as the old, so the widget
    keeps its size."""
    content = widget.content
    old = content.plain if isinstance(content, Content | Text) else str(content)
    if text == old:
        return False
    same_shape = [len(line) for line in old.split("\n")] == [len(line) for line in text.split("\n")]
    widget.update(text, layout=not same_shape)
    return True
