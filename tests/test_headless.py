"""`opconsole run --headless`: deterministic virtual runs, restarts, and refusals that change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def opconsole(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def run_virtual(tmp: Path, name: str, duration: str = "900") -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp / f"{name}.json"
    result = opconsole(
        "run", "--headless", "--clock", "virtual", "--duration", duration,
        "--state-dir", str(tmp / name), "--snapshot-out", str(out), cwd=tmp,
    )  # fmt: skip
    return result, out


def test_same_seed_gives_byte_identical_snapshots(tmp_path: Path) -> None:
    first, out1 = run_virtual(tmp_path, "a")
    second, out2 = run_virtual(tmp_path, "b")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert out1.read_bytes() == out2.read_bytes()
    snapshot = json.loads(out1.read_text())
    assert snapshot["time"] == "2026-01-01T00:15:00.000Z"  # sim.epoch + 900 simulated seconds
    assert set(snapshot["market"]) >= {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
    assert all(row["last"] > 0 and row["mark"] > 0 for row in snapshot["market"].values())
    assert set(snapshot["accounts"]) == {"main", "mirror"}
    assert snapshot["accounts"]["mirror"]["equity"] == 5000.0
    assert snapshot["monitors"], "the seeded demo trades should be monitored"


def test_a_restart_continues_the_same_market_and_state(tmp_path: Path) -> None:
    first, out1 = run_virtual(tmp_path, "s", duration="300")
    assert first.returncode == 0, first.stderr
    second, out2 = run_virtual(tmp_path, "s", duration="300")
    assert second.returncode == 0, second.stderr
    before, after = json.loads(out1.read_text()), json.loads(out2.read_text())
    assert after["time"] == "2026-01-01T00:10:00.000Z"  # time resumed where the market stopped
    assert {m["key"] for m in after["monitors"]} == {m["key"] for m in before["monitors"]}
    assert after["persistence"]["recovery"]["source"] != "fresh"


def test_a_second_engine_on_the_same_state_dir_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    seeded, _ = run_virtual(tmp_path, "state", duration="60")  # a market and a state to protect
    assert seeded.returncode == 0, seeded.stderr
    state = tmp_path / "state"
    market_before = (state / "sim-exchange.json").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-m", "console", "run", "--headless", "--state-dir", str(state), "--duration", "30"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _lock_text(state).strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        result = opconsole("run", "--headless", "--state-dir", str(state), "--duration", "1", cwd=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert lines[-1] == (
            f"opconsole: {state}: state directory {state} is in use by another opconsole process "
            f"(pid {holder.pid}); stop it or choose another --state-dir"
        )
        assert "Traceback" not in result.stderr
        assert (state / "sim-exchange.json").read_bytes() == market_before
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    assert holder.returncode == 0


def _lock_text(state: Path) -> bytes:
    try:
        return (state / "opconsole.lock").read_bytes()
    except FileNotFoundError:
        return b""


def test_a_corrupt_simulated_market_is_one_line_and_left_alone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "sim-exchange.json").write_text("{not json")
    result = opconsole("run", "--headless", "--clock", "virtual", "--duration", "10",
                       "--state-dir", str(state), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"opconsole: {state / 'sim-exchange.json'}: ")
    assert (state / "sim-exchange.json").read_text() == "{not json"


def test_snapshot_times_are_iso_strings(tmp_path: Path) -> None:
    result, out = run_virtual(tmp_path, "iso", duration="120")
    assert result.returncode == 0, result.stderr
    persistence = json.loads(out.read_text())["persistence"]
    assert {"policy", "writes", "fsyncs", "writes_per_hour", "pending", "last_flush"} <= set(persistence)
    assert persistence["last_flush"].endswith("Z") and persistence["last_flush"].startswith("2026-01-01T00:0")
