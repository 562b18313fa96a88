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


def _plain(value: object) -> str:
    if isinstance(value, Content | Text):
        return value.plain
    return str(value)


def show_text(widget: Static, text: str | Content | Text) -> bool:
    """Show ``text`` in ``widget``; False when it was already shown (nothing repainted).

    Without a layout pass when the new text has the same lines of the same lengths as the old (so
    the widget keeps its size), or when the widget's size does not follow its content at all.
    """
    old = _plain(widget.content)
    new = _plain(text)
    if new == old and type(text) is not Content and type(text) is not Text:
        return False
    same_shape = [len(line) for line in old.split("\n")] == [len(line) for line in new.split("\n")]
    fixed = not widget.styles.width or not widget.styles.width.is_auto
    fixed = fixed and (not widget.styles.height or not widget.styles.height.is_auto)
    widget.update(text, layout=not (same_shape or fixed))
    return True
