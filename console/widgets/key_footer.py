"""Textual's Footer, allowed to wrap onto more rows (three) when the screen is compact.

The stock Footer pins its grid to one column per key (an inline style); clearing that rule lets the
stylesheet lay the keys out as a grid at 80 columns, so every key stays visible instead of scrolling
off the right edge.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer


class KeyFooter(Footer):
    """A Footer whose column count comes from the stylesheet."""

    def compose(self) -> ComposeResult:
        yield from super().compose()
        self.styles.clear_rule("grid_size_columns")
