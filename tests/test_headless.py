"""`opconsole run --headless`: deterministic virtual runs, restarts, and refusals that change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from engine.core.clock import VirtualClock
from engine.core.settings import load_settings
from engine.sim.exchange import SimExchange

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
    assert snapshot["monitors"], "the seeded demo trades should be monitored"
    # every demo trade on main is mirrored: a mirror monitor of its own, linked in the mirror section
    main = {m["key"] for m in snapshot["monitors"] if m["account"] == "main"}
    mirrored = {
        m["key"].replace("mirror:", "main:", 1) for m in snapshot["monitors"] if m["account"] == "mirror"
    }
    assert main and mirrored == main
    assert {link["main_key"] for link in snapshot["mirror"]["links"]} == main


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


def test_a_virtual_run_with_realistic_latency_ends_and_writes_its_snapshot(tmp_path: Path) -> None:
    """The exit snapshot's venue reads sleep on the virtual clock (30-120 ms each): they are driven
    after the duration too, so the run ends (a hang fails on the timeout instead)."""
    config = tmp_path / "settings.toml"
    config.write_text('[sim]\nlatency = "realistic"\n')
    out = tmp_path / "out.json"
    result = subprocess.run(
        [sys.executable, "-m", "console", "run", "--headless", "--clock", "virtual", "--duration", "60",
         "--snapshot-out", str(out), "--config", str(config), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(out.read_text())
    assert snapshot["time"].startswith("2026-01-01T00:01:00")  # the duration, plus the reads' latency
    assert snapshot["monitors"], "the demo trades ran with simulated latency"


def _stop_sent(state: Path) -> str | None:
    """The link id of the stop-loss once the engine's journal holds it (written ahead of sending it,
    after the market entry filled); None until then."""
    try:
        lines = (state / "journal.jsonl").read_bytes().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written
        orders = (record.get("value") or {}).get("orders") if record["key"].startswith("monitor:") else None
        if orders and orders.get("e1", {}).get("status") == "filled" and "sl" in orders:
            return str(orders["sl"]["link_id"])
    return None


def test_a_killed_console_finds_the_exchange_as_the_engine_last_saw_it(tmp_path: Path) -> None:
    """kill -9 between two saves of the simulated market (sim.save_interval_s is 60 s): the restart
    finds the filled entry, the stop-loss the exchange acknowledged and the fee-paid balance, so the
    engine keeps its monitor instead of booking a phantom ``manual`` trade."""
    config = tmp_path / "settings.toml"
    config.write_text("[sim]\ndemo_trades = 0\n[persistence]\nflush_interval_s = 0.1\n")
    scenario = tmp_path / "trade.toml"
    scenario.write_text('[[trade]]\nsymbol = "BTCUSDT"\nside = "Buy"\napproach = "fast"\nmargin = 100\n')
    state = tmp_path / "state"
    common = ["--config", str(config), "--state-dir", str(state)]
    engine = subprocess.Popen(
        [sys.executable, "-m", "console", "run", "--headless", "--duration", "60",
         "--scenario", str(scenario), *common],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while (stop := _stop_sent(state)) is None and time.monotonic() < deadline and engine.poll() is None:
            time.sleep(0.05)
        assert stop is not None, "the engine never sent its stop-loss"
        # The exchange journals an order before it acknowledges it: once the stop is there, the
        # engine has (or is about to have) its acknowledgement. Kill then; the bound only keeps a
        # market that journals nothing from waiting forever (the checks below then fail).
        sim_journal = state / "sim-exchange.journal.jsonl"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (
            sim_journal.exists() and stop.encode() in sim_journal.read_bytes()
        ):
            time.sleep(0.05)
    finally:
        engine.kill()  # SIGKILL: no save, no goodbye
        engine.wait(timeout=30)
    assert engine.returncode == -9

    out = tmp_path / "after.json"
    restarted = opconsole("run", "--headless", "--clock", "virtual", "--duration", "5",
                          "--snapshot-out", str(out), *common, cwd=tmp_path)  # fmt: skip
    assert restarted.returncode == 0, restarted.stderr
    snapshot = json.loads(out.read_text())
    assert snapshot["ledger"]["trades"] == []  # no phantom trade
    (monitor,) = [m for m in snapshot["monitors"] if m["account"] == "main"]  # (the mirror has its own)
    (position,) = [p for p in snapshot["positions"] if p["account"] == "main"]
    assert (position["symbol"], position["side"], position["size"]) == ("BTCUSDT", "Buy", monitor["size"])
    stops = [o for o in snapshot["orders"] if o["purpose"] == "sl" and o["account"] == "main"]
    assert [o["link_id"] for o in stops] == [stop]

    settings = load_settings(config, state)
    exchange = SimExchange.from_settings(settings, VirtualClock(0.0), state)
    assert stop in {o.link_id for o in exchange.open_orders("main")}
    (entry,) = exchange.executions("main", since=0.0)
    assert exchange.wallet("main").wallet_balance == round(settings.get("sim.balances.main") - entry.fee, 8)


async def test_a_virtual_restart_starts_no_earlier_than_the_engines_last_record(tmp_path: Path) -> None:
    # The market may have been saved (and journaled) before the engine's own last record; a clock
    # restarted behind that record would let an execution cursor run ahead of time.
    from engine.core.clock import parse_iso_utc
    from engine.runtime.assembly import make_clock
    from persistence.reasons import Reason
    from persistence.store import Store

    settings = load_settings(None, None)
    epoch = parse_iso_utc(settings.get("sim.epoch"))
    state = tmp_path / "state"
    written_at = epoch + 3600.0
    store = Store(state, clock=VirtualClock(start=written_at))
    store.load()
    await store.start()
    await store.save("engine:tpsl", {"tag": "abcd"}, reason=Reason.MONITOR_CREATED, force=True)
    await store.close()
    assert SimExchange.saved_time(state) is None  # no market saved: only the engine's records
    assert make_clock("virtual", settings, state).now() >= written_at
