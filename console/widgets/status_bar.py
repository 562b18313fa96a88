"""The header bar: venue and network, engine state, profile badge, a red MIRROR DESYNC badge while the
mirror account is out of sync, stream health, API budget, clock.

Each field is its own Label whose CSS classes pick the colours (``-mainnet``, ``-degraded`` …), so the
theme decides what MAINNET looks like; the text says it too, for monochrome terminals.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from console.view_model import profile_badge, state_tone, venue_badge


class StatusBar(Horizontal):
    """One line at the top of the screen, docked."""

    def compose(self) -> ComposeResult:
        yield Label(" SIM ", id="sb-venue", classes="-network")
        yield Label(" starting ", id="sb-state", classes="-state-attention")
        yield Label(" PENDING ", id="sb-profile", classes="-pending")
        yield Label("", id="sb-mirror", classes="-desync")  # shown only while the mirror is out of sync
        yield Label("streams —", id="sb-streams")
        yield Label("API —", id="sb-api")
        yield Label("", id="sb-clock")

    def show(
        self,
        *,
        venue: str,
        engine_state: str,
        profile: dict[str, str],
        streams: str,
        api: str,
        clock: str,
        mirror: str | None = None,
    ) -> None:
        """Update every field (a Label repaints only when its text or classes change); ``mirror`` is
        the desync badge's text, None to hide it."""
        text, tone = venue_badge(venue)
        self._set("#sb-venue", text, f"-{tone}")
        self._set("#sb-state", f" {engine_state.upper()} ", f"-{state_tone(engine_state)}")
        badge = profile_badge(profile)
        self._set("#sb-profile", f" {badge} ", f"-{badge.lower()}")
        desync = self.query_one("#sb-mirror", Label)
        desync.display = mirror is not None
        self._set("#sb-mirror", mirror or "")
        self._set("#sb-streams", streams)
        self._set("#sb-api", api)
        self._set("#sb-clock", clock)

    def _set(self, selector: str, text: str, tone_class: str | None = None) -> None:
        label = self.query_one(selector, Label)
        if str(label.content) != text:
            label.update(text)
        if tone_class is not None and not label.has_class(tone_class):
            label.set_classes(tone_class)
