"""Settings: lookup order, layering, and one-line errors with exit code 2 from the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.settings import (
    OVERRIDE_FILE,
    SettingsError,
    find_config,
    load_settings,
    packaged_defaults_path,
    save_override,
)


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def test_defaults_load_and_have_every_section() -> None:
    settings = load_settings()
    for section in (
        "venue",
        "accounts",
        "mirror",
        "profile",
        "cache",
        "persistence",
        "monitor",
        "trading",
        "alerts",
        "sim",
        "ui",
    ):
        assert isinstance(settings.get(section), dict), section
    assert settings.get("cache.ttl.baseline.positions") == 10.0
    assert settings.get("cache.ttl.optimized.ai_insights") == 1800.0
    assert settings.get("venue.kind") == "sim"


def test_user_file_overrides_only_what_it_sets(tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text("[sim]\nseed = 99\n[cache.ttl.optimized]\npositions = 20\n")
    settings = load_settings(user)
    assert settings.get("sim.seed") == 99
    assert settings.get("cache.ttl.optimized.positions") == 20.0  # int accepted where float expected
    assert settings.get("cache.ttl.optimized.orders") == 15.0
    assert settings.sources[-1] == str(user)


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "settings.toml"
    local.write_text("[sim]\nseed = 1\n")
    env_file = tmp_path / "env.toml"
    env_file.write_text("[sim]\nseed = 2\n")
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[sim]\nseed = 3\n")
    assert find_config(None, {}) == Path("settings.toml")
    assert load_settings(None, env={}).get("sim.seed") == 1
    assert load_settings(None, env={"OPCONSOLE_CONFIG": str(env_file)}).get("sim.seed") == 2
    assert load_settings(explicit, env={"OPCONSOLE_CONFIG": str(env_file)}).get("sim.seed") == 3
    local.unlink()
    assert find_config(None, {}) is None
    assert load_settings(None, env={}).sources == (str(packaged_defaults_path()),)


def test_override_file_is_layered_on_top_and_written_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = save_override(state, {"cache.ttl.optimized.positions": 42.0, "ui.theme": "light"})
    assert path.name == OVERRIDE_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    save_override(state, {"profile.cache_ttls": "baseline"})  # keeps the earlier overrides
    settings = load_settings(state_dir=state)
    assert settings.get("cache.ttl.optimized.positions") == 42.0
    assert settings.get("ui.theme") == "light"
    assert settings.get("profile.cache_ttls") == "baseline"


def test_override_refuses_bad_values_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="must be > 0"):
        save_override(tmp_path, {"cache.ttl.optimized.positions": 0})
    assert not (tmp_path / OVERRIDE_FILE).exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "[cache.ttl.optimized]\npositions = -5\n",
            "bad.toml: cache.ttl.optimized.positions: must be > 0, got -5",
        ),
        ("[monitor.intervals]\ncritical = 0\n", "bad.toml: monitor.intervals.critical: must be > 0, got 0"),
        ('[venue]\nkind = "binance"\n', "bad.toml: venue.kind: must be one of sim, bybit; got 'binance'"),
        ('[sim]\nseed = "seven"\n', "bad.toml: sim.seed: must be an integer, got 'seven'"),
        ('[sim]\nsymbols = "BTCUSDT"\n', "bad.toml: sim.symbols: must be a list"),
        ("[ui]\nrefresh_rate = 4\n", "bad.toml: ui.refresh_rate: unknown key"),
        ("[nonsense]\nx = 1\n", "bad.toml: nonsense: unknown key"),
        ("[mirror]\nenabled = 1\n", "bad.toml: mirror.enabled: must be a boolean"),
        ("[trading]\ntp_split = [80.0, 5.0]\n", "bad.toml: trading.tp_split: must add up to 100"),
        (
            '[profile]\ncache_ttls = "fast"\n',
            "bad.toml: profile.cache_ttls: must be one of optimized, baseline",
        ),
        ('[sim]\nepoch = "yesterday"\n', "bad.toml: sim.epoch: must be an ISO 8601 time"),
        ("[venue\nkind = 1\n", "bad.toml: not valid TOML"),
    ],
)
def test_cli_reports_each_bad_value_in_one_line_with_exit_2(
    tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    result = run_cli("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("opconsole: ")
    assert expected.replace("bad.toml", str(bad)) in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_missing_file_and_env_config(tmp_path: Path) -> None:
    missing = run_cli("check-config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    bad = tmp_path / "env-bad.toml"
    bad.write_text("[ui]\nrefresh_hz = -1\n")
    import os

    env = {**os.environ, "OPCONSOLE_CONFIG": str(bad)}
    result = run_cli("run", "--headless", "--clock", "virtual", "--duration", "1", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == f"opconsole: {bad}: ui.refresh_hz: must be > 0, got -1"


def test_cli_check_config_prints_effective_values(tmp_path: Path) -> None:
    user = tmp_path / "ok.toml"
    user.write_text("[sim]\nseed = 1234\n")
    result = run_cli("check-config", str(user), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "seed = 1234" in result.stdout
    assert "[cache.ttl.optimized]" in result.stdout


def test_cli_bad_options_are_one_line(tmp_path: Path) -> None:
    result = run_cli("run", "--headless", "--duration", "-3", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "must be > 0" in result.stderr
