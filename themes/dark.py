"""``opconsole-dark``: the default, a calm dark theme for long sessions."""

from __future__ import annotations

from textual.theme import Theme

DARK = Theme(
    name="opconsole-dark",
    primary="#3d8fd1",
    secondary="#2d4f73",
    accent="#f0a63a",
    warning="#f0a63a",
    error="#e0556b",
    success="#4ebf71",
    foreground="#dde3ea",
    background="#12161c",
    surface="#1a2029",
    panel="#232b36",
    dark=True,
    variables={
        "pnl-positive": "#4ebf71",
        "pnl-negative": "#e0556b",
        "badge-optimized": "#4ebf71",
        "badge-baseline": "#f0a63a",
        "badge-mixed": "#d7b94c",
        "state-running": "#4ebf71",
        "state-attention": "#f0a63a",
        "state-degraded": "#e0556b",
        "mainnet-background": "#b00020",
        "mainnet-foreground": "#ffffff",
        "network-background": "#2d4f73",
        "network-foreground": "#ffffff",
        "muted-text": "#7d8794",
        "footer-key-foreground": "#f0a63a",
    },
)
