"""The header bar: venue and network, engine state, profile badge, a red MIRROR DESYNC badge while the
mirror account is out of sync, stream health, API budget, the age of the oldest venue data on screen,
clock.

Each field is its own Label whose CSS classes pick the colours (``-mainnet``, ``-degraded`` …), so the
theme decides what MAINNET looks like; the text says it too, for monochrome terminals.

Below :data:`~console.view_model.HEADER_FULL_WIDTH` columns the header uses short forms (the clock
without its date, the API share without its rate, a short profile badge) so that everything, the
clock included, fits at 80 columns; a resize re-renders the last values at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from console.view_model import (
    PROFILE_SHORT,
    api_text,
    clock_text,
    data_age_text,
    data_age_tone,
    header_is_short,
    profile_badge,
    state_tone,
    venue_badge,
)
from console.widgets.quiet_text import show_text


@dataclass(frozen=True, slots=True)
class HeaderValues:
    """What the header shows, before it is fitted to a width."""

    venue: str
    engine_state: str
    profile: dict[str, str]
    streams: str
    api_per_min: float | None
    api_budget_per_min: int
    time: str  # the snapshot's ISO time
    data_age_s: float | None
    mirror: str | None = None


class StatusBar(Horizontal):
    """One line at the top of the screen, docked."""

    def __init__(self, *, stale_after_s: float = 5.0, id: str | None = None) -> None:
        """``stale_after_s``: the data age past which the age turns amber (``ui.stale_after_s``)."""
        super().__init__(id=id)
        self.stale_after_s = stale_after_s
        self._values: HeaderValues | None = None

    def compose(self) -> ComposeResult:
        yield Label(" SIM ", id="sb-venue", classes="-network")
        yield Label(" starting ", id="sb-state", classes="-state-attention")
        yield Label(" PENDING ", id="sb-profile", classes="-pending")
        yield Label("", id="sb-mirror", classes="-desync")  # shown only while the mirror is out of sync
        yield Label("streams —", id="sb-streams")
        yield Label("API —", id="sb-api")
        yield Label("data —", id="sb-age", classes="-fresh")
        yield Label("", id="sb-clock")

    def show(self, values: HeaderValues) -> None:
        """Update every field (a Label repaints only when its text or classes change)."""
        self._values = values
        short = header_is_short(self.app.size.width)
        text, tone = venue_badge(values.venue)
        self._set("#sb-venue", text, f"-{tone}")
        self._set("#sb-state", f" {values.engine_state.upper()} ", f"-{state_tone(values.engine_state)}")
        badge = profile_badge(values.profile)
        shown = PROFILE_SHORT.get(badge, badge) if short else badge
        self._set("#sb-profile", f" {shown} ", f"-{badge.lower()}")
        desync = self.query_one("#sb-mirror", Label)
        desync.display = values.mirror is not None
        self._set("#sb-mirror", values.mirror or "")
        self._set("#sb-streams", values.streams)
        self._set("#sb-api", api_text(values.api_per_min, values.api_budget_per_min, short))
        age_tone = data_age_tone(values.data_age_s, self.stale_after_s)
        self._set("#sb-age", data_age_text(values.data_age_s), f"-{age_tone or 'fresh'}")
        self._set("#sb-clock", clock_text(values.time, short))

    def on_resize(self, event: events.Resize) -> None:
        if self._values is not None:
            self.show(self._values)

    def _set(self, selector: str, text: str, tone_class: str | None = None) -> None:
        label = self.query_one(selector, Label)
        show_text(label, text)
        if tone_class is not None and not label.has_class(tone_class):
            label.set_classes(tone_class)
