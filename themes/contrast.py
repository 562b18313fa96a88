"""``opconsole-contrast``: maximum contrast for poor terminals, projectors and 16-colour SSH sessions.

Pure black and white with saturated primaries, chosen so they survive the downgrade to the 16 ANSI
colours (``TERM=xterm``) without two meanings collapsing into one colour.
"""

from __future__ import annotations

from textual.theme import Theme

CONTRAST = Theme(
    name="opconsole-contrast",
    primary="#00ffff",
    secondary="#0000ff",
    accent="#ffff00",
    warning="#ffff00",
    error="#ff0000",
    success="#00ff00",
    foreground="#ffffff",
    background="#000000",
    surface="#000000",
    panel="#000000",
    dark=True,
    luminosity_spread=0.0,
    text_alpha=1.0,
    variables={
        "pnl-positive": "#00ff00",
        "pnl-negative": "#ff0000",
        "badge-optimized": "#00ff00",
        "badge-baseline": "#ffff00",
        "badge-mixed": "#ff00ff",
        "state-running": "#00ff00",
        "state-attention": "#ffff00",
        "state-degraded": "#ff0000",
        "mainnet-background": "#ff0000",
        "mainnet-foreground": "#ffffff",
        "network-background": "#0000ff",
        "network-foreground": "#ffffff",
        "muted-text": "#c0c0c0",
        "footer-key-foreground": "#ffff00",
        "border": "#ffffff",
        "border-blurred": "#c0c0c0",
        "block-cursor-background": "#ffff00",
        "block-cursor-foreground": "#000000",
        "block-cursor-text-style": "bold",
    },
)
