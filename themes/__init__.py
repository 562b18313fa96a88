"""Textual themes for the console: a dark default, a light one, and a high-contrast one.

Every colour the console's stylesheet uses goes through a theme variable. Besides Textual's own
(``$primary``, ``$error`` …), the console reads the variables in :data:`CONSOLE_VARIABLES`; each theme
sets all of them, and the defaults below are the fallback for a theme that does not (a built-in
Textual theme picked from the command palette).
"""

from __future__ import annotations

from textual.theme import Theme

from themes.contrast import CONTRAST
from themes.dark import DARK
from themes.light import LIGHT

DEFAULT_THEME = DARK.name

CONSOLE_VARIABLE_NAMES: tuple[str, ...] = (
    "pnl-positive",
    "pnl-negative",
    "badge-optimized",
    "badge-baseline",
    "badge-mixed",
    "state-running",
    "state-attention",
    "state-degraded",
    "mainnet-background",
    "mainnet-foreground",
    "network-background",
    "network-foreground",
    "muted-text",
)
CONSOLE_VARIABLES: dict[str, str] = {name: DARK.variables[name] for name in CONSOLE_VARIABLE_NAMES}
"""The console's own theme variables, with the dark theme's values as the fallback."""

ALL_THEMES: tuple[Theme, ...] = (DARK, LIGHT, CONTRAST)
"""The themes the console registers, in the order ctrl+t cycles through them."""

__all__ = ["ALL_THEMES", "CONSOLE_VARIABLES", "CONSOLE_VARIABLE_NAMES", "DEFAULT_THEME", "next_theme"]


def next_theme(current: str) -> str:
    """The theme after ``current`` in :data:`ALL_THEMES` (the first one if ``current`` is not ours)."""
    names = [theme.name for theme in ALL_THEMES]
    if current not in names:
        return names[0]
    return names[(names.index(current) + 1) % len(names)]
