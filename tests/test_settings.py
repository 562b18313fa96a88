"""Settings: lookup order, layering, and one-line errors with exit code 2 from the real CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core import settings as settings_module
from engine.core.errors import BadInput
from engine.core.settings import (
    OVERRIDE_FILE,
    Settings,
    SettingsError,
    find_config,
    load_settings,
    packaged_defaults_path,
    save_override,
)
from engine.venue.bybit.keys import load_keys


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
        # Absurd numbers: every number has a range, and NaN/infinities are refused everywhere.
        ("[sim.balances]\nmain = inf\n", "bad.toml: sim.balances.main: must be a finite number, got inf"),
        ("[sim]\nvolatility = nan\n", "bad.toml: sim.volatility: must be a finite number, got nan"),
        ("[sim]\nslippage_bps = 1e308\n", "bad.toml: sim.slippage_bps: must be <= 1000, got 1e+308"),
        ("[sim]\ntick_interval_s = 1e-300\n", "bad.toml: sim.tick_interval_s: must be >= 0.01, got 1e-300"),
        (
            "[monitor.intervals]\nidle = 1e-300\n",
            "bad.toml: monitor.intervals.idle: must be >= 0.01, got 1e-300",
        ),
        (
            "[sim]\ndemo_trades = 9223372036854775807\n",
            "bad.toml: sim.demo_trades: must be <= 100, got 9223372036854775807",
        ),
        ("[trading]\ntp_split = [nan, 50.0, 50.0]\n", "bad.toml: trading.tp_split: must be a finite number"),
        ("[trading]\nmax_leverage = 100000\n", "bad.toml: trading.max_leverage: must be <= 200, got 100000"),
        ("[ui]\nrefresh_hz = -inf\n", "bad.toml: ui.refresh_hz: must be a finite number, got -inf"),
        (
            '[sim]\nsymbols = ["BTCUSDT", "FOOUSDT"]\n',
            "sim.symbols: no simulated listing for FOOUSDT; the simulator lists BTCUSDT, ETHUSDT",
        ),
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


def test_every_number_of_the_schema_has_a_range() -> None:
    """A new numeric key without a range would accept 1e308 (or 1e-300 for an interval)."""
    numeric = [
        (key, value)
        for key, value in load_settings().items()
        if not isinstance(value, bool) and isinstance(value, int | float)
    ]
    assert len(numeric) > 50
    without = [
        key for key, _ in numeric if not isinstance(settings_module._rule_for(key), settings_module._Range)
    ]
    assert without == []
    outside = [key for key, value in numeric if settings_module._check_value(key, value) is not None]
    assert outside == []  # the documented defaults lie within their own ranges


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_sim_symbols_are_checked_only_when_the_simulator_is_the_venue(tmp_path: Path) -> None:
    # With venue.kind = "bybit" the key lists real symbols to watch: the sim's catalog does not apply.
    config = tmp_path / "bybit.toml"
    config.write_text('[venue]\nkind = "bybit"\n[sim]\nsymbols = ["PEPEUSDT"]\n')
    result = run_cli("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config.write_text('[sim]\nsymbols = ["PEPEUSDT"]\n')
    state = tmp_path / "state"
    result = run_cli(
        "run",
        "--headless",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--clock",
        "virtual",
        "--duration",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("opconsole: sim.symbols: no simulated listing for PEPEUSDT;")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not state.exists()  # refused before anything was written
    # sim-server's market is always the simulator, whatever venue.kind says.
    config.write_text('[venue]\nkind = "bybit"\n[sim]\nsymbols = ["PEPEUSDT"]\n')
    keys = {"BYBIT_API_KEY": "SIMSERVERKEY0001", "BYBIT_API_SECRET": "SIMSERVERSECRET0001"}
    server = run_cli(
        "sim-server",
        "--config",
        str(config),
        "--state-dir",
        str(state),
        "--port",
        str(free_port()),
        cwd=tmp_path,
        env={**os.environ, **keys},
    )
    assert server.returncode == 2, server.stderr
    assert server.stderr.startswith("opconsole: sim.symbols: no simulated listing for PEPEUSDT;")
    assert not state.exists()


@pytest.mark.parametrize("where", ["config", "override"])
def test_a_settings_file_that_is_not_utf8_is_one_line(tmp_path: Path, where: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    bad = tmp_path / "latin1.toml" if where == "config" else state / OVERRIDE_FILE
    bad.write_bytes(b'[ui]\ntheme = "caf\xe9"\n')
    before = sorted(p.name for p in state.iterdir())
    args = [str(bad)] if where == "config" else ["--state-dir", str(state)]
    result = run_cli("check-config", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"opconsole: {bad}: not UTF-8 text (byte 17)\n"
    assert sorted(p.name for p in state.iterdir()) == before


PASTED_KEY = "aB3dE5gH7jK9mN1pQr"
PASTED_SECRET = "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0EdCbAz9"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("accounts.main.api_key_env", PASTED_KEY),
        ("accounts.main.api_secret_env", PASTED_SECRET),
        ("mirror.api_key_env", PASTED_KEY),
        ("alerts.telegram.token_env", "123456789:AAH-pasted_bot_token_here"),
    ],
)
def test_a_pasted_secret_is_never_echoed(tmp_path: Path, key: str, value: str) -> None:
    section, leaf = key.rsplit(".", 1)
    config = tmp_path / "keys.toml"
    config.write_text(f'[{section}]\n{leaf} = "{value}"\n')
    result = run_cli("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"opconsole: {config}: {key}: does not look like an environment variable name (a pasted key?)\n"
    )
    assert value not in result.stdout + result.stderr
    with pytest.raises(SettingsError) as err:
        load_settings().with_values({key: value})
    assert value not in str(err.value)


def test_a_secret_name_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    config = tmp_path / "keys.toml"
    config.write_text("[accounts.main]\napi_key_env = 918273645546372819\n")
    result = run_cli("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 2 and "918273645546372819" not in result.stderr
    assert "accounts.main.api_key_env: must be a string" in result.stderr


def test_check_config_masks_a_secret_name_that_is_not_a_name() -> None:
    # Loading refuses such a value; the printer masks it anyway (a Settings built in code).
    settings = Settings({"accounts": {"main": {"api_key_env": PASTED_KEY, "key_file": ""}}})
    printed = settings.to_toml()
    assert PASTED_KEY not in printed and 'api_key_env = "***"' in printed
    assert 'api_key_env = "BYBIT_API_KEY"' in load_settings().to_toml()  # a real name is shown


def test_a_key_file_that_is_not_utf8_names_the_file_never_its_content(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.toml"
    key_file.write_bytes(b'api_key = "k\xe9y0123456789"\napi_secret = "s3cr3t\xff0123456789"\n')
    key_file.chmod(0o600)
    settings = load_settings().with_values({"accounts.main.key_file": str(key_file)})
    with pytest.raises(BadInput) as err:
        load_keys(settings, "main", {})
    assert (err.value.where, err.value.what) == (
        "accounts.main.key_file",
        f"key file {key_file} is not UTF-8 text",
    )


def test_load_keys_never_echoes_a_secret_name_that_is_not_a_name() -> None:
    # Settings built in code skip the file checks: load_keys refuses on its own, without the value.
    data = load_settings().data
    pasted = Settings({**data, "accounts": {"main": {**data["accounts"]["main"], "api_key_env": PASTED_KEY}}})
    with pytest.raises(BadInput) as err:
        load_keys(pasted, "main", {})
    assert PASTED_KEY not in str(err.value)
    assert err.value.where == "accounts.main.api_key_env"
