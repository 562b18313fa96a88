"""Scenario files, demo trades, and a headless run that opens trades from a scenario."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.commands.headless import HeadlessOptions, run_engine
from engine.core.errors import BadInput
from engine.core.models import Side
from engine.core.settings import load_settings
from engine.runtime.scenario import demo_trades, load_scenario, parse_scenario, state_is_empty
from engine.trading.approaches import Approach
from engine.trading.params import TradingParams

P = TradingParams()
EXAMPLE = """
seed = 7
[[trade]]
at = 0
symbol = "BTCUSDT"
side = "Buy"
approach = "conservative"
margin = 100
leverage = 10
entry_offsets_pct = [0.0, -0.5, -1.0]
tp_offsets_pct = [1.0, 2.0, 3.0, 4.0]
sl_offset_pct = -2.0

[[trade]]
at = 30
symbol = "ETHUSDT"
side = "Sell"
approach = "fast"
margin = 200
"""


def test_the_issue_example_parses_with_defaults_for_fast() -> None:
    scenario = parse_scenario(tomllib.loads(EXAMPLE), "s.toml", P)
    assert scenario.seed == 7
    first, second = scenario.trades
    assert first.approach is Approach.CONSERVATIVE and first.entry_offsets_pct == (0.0, -0.5, -1.0)
    assert second.side is Side.SELL and second.tp_offsets_pct == (1.5,) and second.leverage == 10.0


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ('side = "Long"', "trade[0].side"),
        ('approach = "yolo"', "trade[0].approach"),
        ("margin = -1", "trade[0].margin"),
        ("tp_offsets_pct = [2.0, 1.0, 3.0, 4.0]", "trade[0].tp_offsets_pct"),
        ("sl_offset_pct = 0.5", "trade[0].sl_offset_pct"),
        ("entry_offsets_pct = [0.0, 0.5, -1.0]", "trade[0].entry_offsets_pct"),
        ("entry_offsets_pct = [0.0]", "trade[0].entry_offsets_pct"),
        ("colour = 1", "trade[0].colour"),
        # TOML reads nan/inf; a NaN offset once reached the scenario task and killed it.
        ("tp_offsets_pct = [1.0, 2.0, 3.0, nan]", "trade[0].tp_offsets_pct[3]"),
        ("sl_offset_pct = -inf", "trade[0].sl_offset_pct"),
        ("margin = inf", "trade[0].margin"),
        ("leverage = nan", "trade[0].leverage"),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path: Path, patch: str, where: str) -> None:
    key = patch.split(" = ")[0]
    lines = [line for line in EXAMPLE.splitlines() if not line.startswith(f"{key} =")]
    index = lines.index("[[trade]]") + 1
    path = tmp_path / "s.toml"
    path.write_text("\n".join([*lines[:index], patch, *lines[index:]]))
    with pytest.raises(BadInput) as err:
        load_scenario(path, P)
    assert where in err.value.where and str(path) in err.value.where


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="No such file"):
        load_scenario(tmp_path / "missing.toml", P)
    bad = tmp_path / "bad.toml"
    bad.write_text("[[trade]\n")
    with pytest.raises(BadInput, match="not valid TOML"):
        load_scenario(bad, P)


def test_demo_trades_are_seeded() -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert demo_trades(3, symbols, 42) == demo_trades(3, symbols, 42)
    assert demo_trades(5, symbols, 42) != demo_trades(5, symbols, 43)
    trades = demo_trades(3, symbols, 42)
    assert [t.symbol for t in trades] == symbols
    assert [t.approach for t in trades] == [Approach.CONSERVATIVE, Approach.FAST, Approach.CONSERVATIVE]


def test_state_is_empty() -> None:
    assert state_is_empty({"engine:tpsl": {}})
    assert not state_is_empty({"monitor:main:BTCUSDT:Buy": {}})
    assert not state_is_empty({"ledger:000000": {}})


async def test_headless_scenario_run_lists_monitors_and_ledger(tmp_path: Path) -> None:
    scenario_file = tmp_path / "s.toml"
    scenario_file.write_text(EXAMPLE)
    state = tmp_path / "state"
    settings = load_settings(None, state, env={})
    scenario = load_scenario(scenario_file, TradingParams.from_settings(settings))
    out = tmp_path / "snap.json"
    options = HeadlessOptions(clock="virtual", duration_s=120.0, snapshot_out=out)
    await run_engine(settings, state, options, scenario)
    snap = json.loads(out.read_text())
    keys = {m["key"] for m in snap["monitors"]}
    closed = {(t["symbol"], t["side"]) for t in snap["ledger"]["trades"]}
    assert {"main:BTCUSDT:Buy", "main:ETHUSDT:Sell"} <= keys | {f"main:{s}:{d}" for s, d in closed}
    for row in snap["monitors"]:
        assert {
            "key",
            "account",
            "symbol",
            "side",
            "approach",
            "phase",
            "avg_entry",
            "size",
            "tps_filled",
            "sl_price",
            "breakeven",
            "urgency",
        } <= set(row)
    assert set(snap["ledger"]) == {"trades", "totals", "by_account"}  # by_account: 0.5.0
    assert snap["positions"], "the scenario trades should still be open after two minutes"
    protected = {(o["symbol"], o["account"]) for o in snap["orders"] if o["purpose"] == "sl"}
    for p in snap["positions"]:
        assert (p["symbol"], p["account"]) in protected


def test_demo_trades_only_where_the_market_is_the_simulator() -> None:
    from engine.core.settings import load_settings
    from engine.runtime.assembly import market_is_simulated

    base = load_settings()
    assert market_is_simulated(base)
    bybit = {"venue.kind": "bybit"}
    assert not market_is_simulated(base.with_values(bybit))
    for url in ("http://127.0.0.1:18555", "http://localhost:9000", "http://[::1]:9000"):
        assert market_is_simulated(base.with_values({**bybit, "venue.base_url": url}))
    for url in ("https://api-testnet.bybit.com", "https://127.0.0.1.example.com"):
        assert not market_is_simulated(base.with_values({**bybit, "venue.base_url": url}))


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("trade = [1, 2]\n", "must be an array of tables ([[trade]])"),
        ('trade = [{symbol = "BTCUSDT"}, "x"]\n', "must be an array of tables ([[trade]])"),
    ],
)
def test_trade_that_is_not_tables_is_one_bad_input(tmp_path: Path, content: str, what: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(content)
    with pytest.raises(BadInput) as err:
        load_scenario(path, P)
    assert (err.value.where, err.value.what) == (f"{path}: trade", what)


def test_scenario_that_is_not_utf8_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_bytes(b"seed = 7\n# caf\xe9\n")
    with pytest.raises(BadInput, match="not UTF-8"):
        load_scenario(path, P)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "console",
            "run",
            "--headless",
            "--clock",
            "virtual",
            "--duration",
            "1",
            "--state-dir",
            str(tmp_path / "state"),
            "--scenario",
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"opconsole: {path}: not UTF-8 text (byte 14)"
    assert "Traceback" not in result.stderr
