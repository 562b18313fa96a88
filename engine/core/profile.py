"""The optimization profile: one switch per optimization, each flipped live between the optimized
behaviour and the original bot's ("baseline"), so the operator can compare both on live data.

A subsystem that implements a toggle registers an *apply* callback for it; flipping the toggle calls
the callbacks at once (no restart, no state lost), logs the change and records it in the settings
override file so it survives a restart. A toggle that no subsystem has registered yet is still
accepted and remembered, and reported as ``pending`` rather than silently ignored. Subsystems that
only need to *read* a toggle at each use (e.g. the dashboard's read strategy) call :meth:`mode`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from engine.core.settings import Settings, SettingsError, save_override

log = logging.getLogger("opconsole.profile")

TOGGLES = (
    "cache_ttls",
    "cache_metrics",
    "smart_persistence",
    "adaptive_intervals",
    "api_batching",
    "push_streams",
)
"""Every toggle, in display order (the keys of the ``[profile]`` settings table)."""


class Mode(StrEnum):
    """A toggle's position."""

    OPTIMIZED = "optimized"
    BASELINE = "baseline"


PENDING = "pending"
"""What :meth:`Profile.states` reports for a toggle whose subsystem has not registered."""

ApplyFn = Callable[[Mode], Awaitable[None] | None]
"""Puts a subsystem in the given mode; may be sync or async."""


def parse_mode(value: Mode | str | bool) -> Mode:
    """``optimized`` / ``baseline`` (or True / False for optimized / baseline) as a :class:`Mode`."""
    if isinstance(value, bool):
        return Mode.OPTIMIZED if value else Mode.BASELINE
    try:
        return Mode(value)
    except ValueError:
        raise ValueError(f"a toggle is 'optimized' or 'baseline', got {value!r}") from None


def profile_badge(modes: Mapping[str, Mode]) -> str:
    """``optimized`` or ``baseline`` when every toggle agrees, else ``mixed`` (the header badge)."""
    distinct = set(modes.values())
    return next(iter(distinct)).value if len(distinct) == 1 else "mixed"


class Profile:
    """The live toggles: their modes, the subsystems applying them, and their persistence."""

    def __init__(self, modes: Mapping[str, Mode | str] | None = None, state_dir: Path | None = None) -> None:
        given = dict(modes or {})
        unknown = sorted(set(given) - set(TOGGLES))
        if unknown:
            raise ValueError(f"unknown profile toggles: {', '.join(unknown)}")
        self._modes: dict[str, Mode] = {t: parse_mode(given.get(t, Mode.OPTIMIZED)) for t in TOGGLES}
        self._appliers: dict[str, list[ApplyFn]] = {t: [] for t in TOGGLES}
        self._state_dir = state_dir
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, state_dir: Path | None) -> Profile:
        """The modes of the ``[profile]`` table; changes are saved to ``state_dir``'s override file."""
        table = settings.section("profile")
        return cls({t: table[t] for t in TOGGLES if t in table}, state_dir)

    # --- reading -----------------------------------------------------------------------------
    def mode(self, toggle: str) -> Mode:
        """The toggle's current mode (whether or not a subsystem applies it)."""
        return self._modes[_checked(toggle)]

    def is_optimized(self, toggle: str) -> bool:
        return self.mode(toggle) is Mode.OPTIMIZED

    @property
    def modes(self) -> dict[str, Mode]:
        return dict(self._modes)

    def is_registered(self, toggle: str) -> bool:
        return bool(self._appliers[_checked(toggle)])

    def states(self) -> dict[str, str]:
        """The snapshot's ``profile`` section: toggle -> ``optimized`` | ``baseline`` | ``pending``."""
        return {t: self._modes[t].value if self._appliers[t] else PENDING for t in TOGGLES}

    @property
    def badge(self) -> str:
        return profile_badge(self._modes)

    # --- changing ----------------------------------------------------------------------------
    async def register(self, toggle: str, apply: ApplyFn) -> None:
        """Attach a subsystem to a toggle; it is put in the toggle's current mode at once."""
        _checked(toggle)
        async with self._lock:
            await _call(apply, self._modes[toggle])
            self._appliers[toggle].append(apply)

    async def set(self, toggle: str, value: Mode | str | bool) -> bool:
        """Flip one toggle live; returns False when it already was in that mode."""
        changed = await self._set_many({_checked(toggle): parse_mode(value)})
        return bool(changed)

    async def rollback_all(self) -> list[str]:
        """Every toggle to baseline (the original bot); returns the toggles that changed."""
        return await self._set_many(dict.fromkeys(TOGGLES, Mode.BASELINE))

    async def restore_all(self) -> list[str]:
        """Every toggle to optimized; returns the toggles that changed."""
        return await self._set_many(dict.fromkeys(TOGGLES, Mode.OPTIMIZED))

    async def _set_many(self, wanted: Mapping[str, Mode]) -> list[str]:
        async with self._lock:
            changed: list[str] = []
            try:
                for toggle, mode in wanted.items():
                    if self._modes[toggle] is mode:
                        continue
                    await self._apply(toggle, mode)
                    changed.append(toggle)
                    note = "" if self._appliers[toggle] else " (pending: no subsystem applies it yet)"
                    log.info("profile: %s -> %s%s", toggle, mode.value, note)
            finally:
                # What did switch is saved even when a later toggle failed to.
                if changed:
                    self.persist({f"profile.{t}": self._modes[t].value for t in changed})
            return changed

    async def _apply(self, toggle: str, mode: Mode) -> None:
        previous = self._modes[toggle]
        self._modes[toggle] = mode
        done: list[ApplyFn] = []
        try:
            for apply in self._appliers[toggle]:
                await _call(apply, mode)
                done.append(apply)
        except Exception:
            # Put back what already switched, so the toggle never reports a half-applied mode.
            self._modes[toggle] = previous
            for apply in done:
                try:
                    await _call(apply, previous)
                except Exception:
                    log.exception("profile: could not put %s back to %s", toggle, previous.value)
            log.exception("profile: %s -> %s failed; it stays %s", toggle, mode.value, previous.value)
            raise

    def persist(self, values: Mapping[str, Any]) -> None:
        """Record dotted settings in the override file (kept across restarts); a failure is logged."""
        if self._state_dir is None:
            return
        try:
            save_override(self._state_dir, values)
        except (OSError, SettingsError) as exc:
            log.error("profile: could not save %s to the override file: %s", ", ".join(values), exc)


async def _call(apply: ApplyFn, mode: Mode) -> None:
    result = apply(mode)
    if inspect.isawaitable(result):
        await result


def _checked(toggle: str) -> str:
    if toggle not in TOGGLES:
        raise ValueError(f"unknown profile toggle {toggle!r}; expected one of {', '.join(TOGGLES)}")
    return toggle
