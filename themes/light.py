"""``opconsole-light``: a light theme for bright rooms and light terminal profiles."""

from __future__ import annotations

from textual.theme import Theme

LIGHT = Theme(
    name="opconsole-light",
    primary="#1f5f99",
    secondary="#5b8bbf",
    accent="#b25e00",
    warning="#b25e00",
    error="#b3261e",
    success="#1b7a3d",
    foreground="#1c2128",
    background="#f4f6f8",
    surface="#e8ecf0",
    panel="#d9dfe6",
    dark=False,
    variables={
        "pnl-positive": "#1b7a3d",
        "pnl-negative": "#b3261e",
        "badge-optimized": "#1b7a3d",
        "badge-baseline": "#b25e00",
        "badge-mixed": "#8a6d00",
        "state-running": "#1b7a3d",
        "state-attention": "#b25e00",
        "state-degraded": "#b3261e",
        "mainnet-background": "#b3261e",
        "mainnet-foreground": "#ffffff",
        "network-background": "#1f5f99",
        "network-foreground": "#ffffff",
        "muted-text": "#5c6670",
        "footer-key-foreground": "#1f5f99",
    },
)
