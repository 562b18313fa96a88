"""The optimization profile: toggles applied live through registered subsystems, reported as pending
without one, logged, and saved to the override file so a restart keeps them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engine.core.profile import PENDING, TOGGLES, Mode, Profile, profile_badge
from engine.core.settings import OVERRIDE_FILE, load_settings


async def test_toggles_without_a_subsystem_are_pending_and_still_remembered(tmp_path: Path) -> None:
    profile = Profile(state_dir=tmp_path)
    assert profile.states() == dict.fromkeys(TOGGLES, PENDING)
    assert await profile.set("api_batching", "baseline") is True
    assert profile.mode("api_batching") is Mode.BASELINE
    assert profile.states()["api_batching"] == PENDING


async def test_register_applies_the_current_mode_at_once() -> None:
    profile = Profile({"cache_metrics": "baseline"})
    seen: list[Mode] = []
    await profile.register("cache_metrics", seen.append)
    assert seen == [Mode.BASELINE]
    assert profile.states()["cache_metrics"] == "baseline"


async def test_set_applies_live_logs_and_survives_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(state_dir=tmp_path)
    profile = Profile.from_settings(settings, tmp_path)
    seen: list[Mode] = []

    async def apply(mode: Mode) -> None:  # async callbacks (e.g. the store's policy) are awaited
        seen.append(mode)

    await profile.register("smart_persistence", apply)
    with caplog.at_level(logging.INFO, logger="opconsole.profile"):
        assert await profile.set("smart_persistence", Mode.BASELINE) is True
        assert await profile.set("smart_persistence", "baseline") is False  # already there: no call
    assert seen == [Mode.OPTIMIZED, Mode.BASELINE]
    assert any("smart_persistence -> baseline" in r.getMessage() for r in caplog.records)
    assert (tmp_path / OVERRIDE_FILE).is_file()
    restarted = Profile.from_settings(load_settings(state_dir=tmp_path), tmp_path)
    assert restarted.mode("smart_persistence") is Mode.BASELINE
    assert restarted.mode("cache_ttls") is Mode.OPTIMIZED


async def test_rollback_all_then_restore_all(tmp_path: Path) -> None:
    profile = Profile(state_dir=tmp_path)
    seen: dict[str, list[Mode]] = {}
    for toggle in ("cache_ttls", "cache_metrics"):
        seen[toggle] = []
        await profile.register(toggle, seen[toggle].append)
    assert sorted(await profile.rollback_all()) == sorted(TOGGLES)
    assert profile.badge == "baseline"
    assert profile.states() == {t: "baseline" if t in seen else PENDING for t in TOGGLES}
    assert seen["cache_ttls"] == [Mode.OPTIMIZED, Mode.BASELINE]
    after_restart = Profile.from_settings(load_settings(state_dir=tmp_path), tmp_path)
    assert all(after_restart.mode(t) is Mode.BASELINE for t in TOGGLES)
    await profile.set("push_streams", "optimized")
    assert profile.badge == "mixed"
    assert sorted(await profile.restore_all()) == sorted(set(TOGGLES) - {"push_streams"})
    assert seen["cache_metrics"][-1] is Mode.OPTIMIZED
    after_restart = Profile.from_settings(load_settings(state_dir=tmp_path), tmp_path)
    assert all(after_restart.mode(t) is Mode.OPTIMIZED for t in TOGGLES)


async def test_a_failing_subsystem_leaves_the_toggle_where_it_was(tmp_path: Path) -> None:
    profile = Profile(state_dir=tmp_path)
    first: list[Mode] = []

    def broken(mode: Mode) -> None:
        if mode is Mode.BASELINE:
            raise RuntimeError("cannot switch")

    await profile.register("cache_ttls", first.append)
    await profile.register("cache_ttls", broken)
    with pytest.raises(RuntimeError):
        await profile.set("cache_ttls", "baseline")
    assert profile.mode("cache_ttls") is Mode.OPTIMIZED
    assert first == [Mode.OPTIMIZED, Mode.BASELINE, Mode.OPTIMIZED]  # switched, then put back
    assert not (tmp_path / OVERRIDE_FILE).exists()


async def test_unknown_toggles_and_values_are_refused() -> None:
    profile = Profile()
    with pytest.raises(ValueError, match="unknown profile toggle"):
        await profile.set("turbo", "optimized")
    with pytest.raises(ValueError, match="'optimized' or 'baseline'"):
        await profile.set("cache_ttls", "fast")
    with pytest.raises(ValueError):
        Profile({"turbo": "optimized"})


def test_profile_badge() -> None:
    assert profile_badge(dict.fromkeys(TOGGLES, Mode.OPTIMIZED)) == "optimized"
    assert profile_badge({"a": Mode.OPTIMIZED, "b": Mode.BASELINE}) == "mixed"
