"""A state directory the engine cannot use as it is (issue 12, items 4, 13, 14).

Bad input (a file in the way, a read-only directory, a newer snapshot, an impossible path) is
refused through the real command line with one line ``opconsole: <path>: <what>``, exit 2, no
traceback, and the directory exactly as it was. Crafted state whose checksums are valid but whose
shape is wrong is refused (the simulator's market) or quarantined and rebuilt from the exchange (the
engine's records), never a traceback or a hang.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from engine.core.clock import VirtualClock
from engine.core.models import Monitor, RecordError, Side
from engine.runtime.repair import undecodable_records
from engine.trading.ledger import Ledger
from persistence import Store, codec
from persistence.codec import JournalRecord, Op, encode_record, encode_snapshot
from persistence.recovery import scan_journal

ROOT = Path(__file__).resolve().parents[1]
RUN = ("run", "--headless", "--clock", "virtual", "--duration", "1")


def opconsole(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def tree(root: Path) -> dict[str, Any]:
    """Every entry under ``root``: file bytes, directory marker, and the root's mode."""
    entries: dict[str, Any] = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in sorted(root.rglob("*")):
        entries[str(path.relative_to(root))] = "<dir>" if path.is_dir() else path.read_bytes()
    return entries


def assert_refused(result: subprocess.CompletedProcess[str], where: str, what: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"opconsole: {where}: {what}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory after a short run: monitors, a ledger, a market with open positions."""
    base = tmp_path_factory.mktemp("seed")
    result = opconsole(*RUN[:-1], "60", "--state-dir", str(base / "state"), cwd=base)
    assert result.returncode == 0, result.stderr
    return base / "state"


@pytest.fixture
def state(seeded: Path, tmp_path: Path) -> Path:
    target = tmp_path / "state"
    shutil.copytree(seeded, target)
    return target


# --- 4: a file in the way, an unusable directory, a newer snapshot, an impossible path ----------------

STORE_FILES = ["snapshot.json", "journal.jsonl", "opconsole.lock", "snapshot.json.tmp", "snapshot.prev.json"]


@pytest.mark.parametrize("name", STORE_FILES)
@pytest.mark.parametrize("command", ["run", "export", "console"])
def test_a_directory_in_place_of_a_state_file_is_refused_and_changes_nothing(
    state: Path, tmp_path: Path, name: str, command: str
) -> None:
    target = state / name
    target.unlink(missing_ok=True)
    target.mkdir()
    (target / "inside").write_text("keep me")
    before = tree(state)
    args = {
        "run": (*RUN, "--state-dir", str(state)),
        "export": ("export-trades", "--state-dir", str(state), str(tmp_path / "out.csv")),
        "console": ("--state-dir", str(state)),  # refused before its UI opens
    }[command]
    result = opconsole(*args, cwd=tmp_path)
    if name == "opconsole.lock" and command != "export":
        assert_refused(result, str(target), "is a directory, not the lock file")
    else:
        assert_refused(result, str(target), "is a directory, not a file; move it out of the state directory")
    assert tree(state) == before
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    "name", ["sim-exchange.json", "sim-exchange.journal.jsonl", ".sim-exchange.json.tmp"]
)
@pytest.mark.parametrize("clock", ["virtual", "real"])
def test_a_directory_in_place_of_the_markets_files_is_refused_and_changes_nothing(
    state: Path, tmp_path: Path, name: str, clock: str
) -> None:
    target = state / name
    target.unlink(missing_ok=True)
    target.mkdir()
    before = tree(state)
    result = opconsole(
        "run", "--headless", "--clock", clock, "--duration", "1", "--state-dir", str(state), cwd=tmp_path
    )
    assert_refused(result, str(target), "is a directory, not a file; move it out of the state directory")
    assert tree(state) == before  # refused before the store wrote its startup mark


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    for args in [(*RUN, "--state-dir", str(path)), ("export-trades", "--state-dir", str(path), "-")]:
        assert_refused(opconsole(*args, cwd=tmp_path), "--state-dir", f"{path} is a file, not a directory")
    assert path.read_text() == "x"


def test_persistence_dir_with_a_nul_byte_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "nul.toml"
    config.write_text('[persistence]\ndir = "state\\u0000x"\n')
    result = opconsole(*RUN, "--config", str(config), cwd=tmp_path)
    assert_refused(result, f"{config}: persistence.dir", "contains a NUL byte")
    result = opconsole("check-config", str(config), cwd=tmp_path)
    assert_refused(result, f"{config}: persistence.dir", "contains a NUL byte")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nul.toml"]


def test_state_dir_over_the_path_limits_is_refused(tmp_path: Path) -> None:
    long_name = "x" * 300
    assert_refused(
        opconsole(*RUN, "--state-dir", long_name, cwd=tmp_path),
        "--state-dir",
        "a path component is 300 bytes long, over the limit of 255 (NAME_MAX)",
    )
    deep = "/".join(["abcdefgh"] * 500)
    result = opconsole(*RUN, "--state-dir", deep, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("opconsole: --state-dir: the path is ") and line.endswith("(PATH_MAX)")
    config = tmp_path / "long.toml"
    config.write_text(f'[persistence]\ndir = "{long_name}"\n')
    assert_refused(
        opconsole(*RUN, "--config", str(config), cwd=tmp_path),
        f"{config}: persistence.dir",
        "a path component is 300 bytes long, over the limit of 255 (NAME_MAX)",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.toml"]


@pytest.fixture
def read_only() -> Iterator[Any]:
    """Makes a directory read-only for this process: mode 0500, or (as root, who ignores modes) the
    immutable flag; skips when neither can be had here."""
    made: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o500)
        elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode:
            pytest.skip("cannot make a directory read-only for root here (no chattr +i)")
        made.append(path)

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=False)
        else:
            path.chmod(0o700)


def test_a_read_only_state_directory_is_refused_and_changes_nothing(
    state: Path, tmp_path: Path, read_only: Any
) -> None:
    state.chmod(0o700)
    read_only(state)
    before = tree(state)
    result = opconsole(*RUN, "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"opconsole: {state}: the state directory is not writable: ")
    assert tree(state) == before


def test_a_new_read_only_state_directory_is_refused(tmp_path: Path, read_only: Any) -> None:
    state = tmp_path / "empty"
    state.mkdir(mode=0o700)
    read_only(state)
    result = opconsole(*RUN, "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"opconsole: {state / 'opconsole.lock'}: cannot open the lock file: ")
    assert list(state.iterdir()) == []


def test_a_snapshot_of_a_newer_version_is_refused_untouched(
    state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "SNAPSHOT_VERSION", 99)
    (state / "snapshot.json").write_bytes(encode_snapshot({}, seq=1, ts=1.0))
    before = tree(state)
    what = (
        "snapshot format version 99 is newer than this opconsole supports (1); "
        "upgrade opconsole instead of overwriting it"
    )
    assert_refused(
        opconsole(*RUN, "--state-dir", str(state), cwd=tmp_path), str(state / "snapshot.json"), what
    )
    out = tmp_path / "out.csv"
    assert_refused(
        opconsole("export-trades", "--state-dir", str(state), str(out), cwd=tmp_path),
        str(state / "snapshot.json"),
        what,
    )
    assert tree(state) == before and not out.exists()


# --- 13: a private state directory ----------------------------------------------------------------


async def test_the_store_creates_the_state_directory_0700(tmp_path: Path) -> None:
    root = tmp_path / "a" / "state"
    store = Store(root, clock=VirtualClock(start=0.0))
    store.load()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    await store.close()


def test_a_run_creates_its_state_directory_0700(tmp_path: Path) -> None:
    result = opconsole(*RUN, "--state-dir", str(tmp_path / "new"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


async def test_an_open_state_directory_is_tightened_and_said_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "state"
    root.mkdir()
    root.chmod(0o755)
    store = Store(root, clock=VirtualClock(start=0.0))
    with caplog.at_level(logging.WARNING, logger="opconsole.persistence"):
        store.load()
    await store.close()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert f"state directory {root} was accessible to other users (mode 755): tightened to 700" in caplog.text


# --- 14: valid checksums, wrong shape ---------------------------------------------------------------


def _edit_market(state: Path, edit: Any) -> None:
    path = state / "sim-exchange.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("edit", "what"),
    [
        (lambda d: d.update(saved_at=1e308), "saved_at is out of range (1e+308)"),
        (lambda d: d.update(accounts={"main": 1}), "accounts has the wrong type (dict)"),
        (lambda d: d["accounts"][0].update(balance="Infinity"), "balance is out of range ('Infinity')"),
        (
            lambda d: d["accounts"][0].update(balance=10**400),
            "balance is out of range (an integer of 1329 bits)",
        ),
    ],
)
@pytest.mark.parametrize("clock", ["virtual", "real"])
def test_a_crafted_market_is_refused_in_one_line(
    state: Path, tmp_path: Path, edit: Any, what: str, clock: str
) -> None:
    _edit_market(state, edit)
    before = tree(state)
    result = opconsole(
        "run", "--headless", "--clock", clock, "--duration", "1", "--state-dir", str(state), cwd=tmp_path
    )
    assert_refused(result, str(state / "sim-exchange.json"), f"corrupt simulated exchange state: {what}")
    assert tree(state) == before


def test_a_crafted_market_journal_record_is_refused_in_one_line(state: Path, tmp_path: Path) -> None:
    journal = state / "sim-exchange.journal.jsonl"
    seq = json.loads((state / "sim-exchange.json").read_text())["journal_seq"]
    records = scan_journal(journal.read_bytes()).records
    last = records[-1].seq if records else seq
    bad = JournalRecord(
        last + 1, 1767225700.0, "market", "exchange", Op.SET, {"ids": 1, "feed": {}, "accounts": []}
    )
    with journal.open("ab") as handle:
        handle.write(encode_record(bad))
    before = tree(state)
    result = opconsole(*RUN, "--state-dir", str(state), cwd=tmp_path)
    assert_refused(
        result,
        str(journal),
        f"corrupt simulated exchange journal: record {last + 1}: accounts is not an object of objects",
    )
    assert tree(state) == before


def _append_store_record(state: Path, key: str, value: Any) -> None:
    """A journal record with a valid checksum, written with the store's own codec."""
    journal = state / "journal.jsonl"
    data = journal.read_bytes() if journal.exists() else b""
    records = scan_journal(data).records
    snapshot = codec.decode_snapshot((state / "snapshot.json").read_bytes())
    seq = max([snapshot.seq, *(r.seq for r in records)]) + 1
    with journal.open("ab") as handle:
        handle.write(encode_record(JournalRecord(seq, 1767225700.0, "position_update", key, Op.SET, value)))


def _stored_state(state: Path) -> dict[str, Any]:
    snapshot = codec.decode_snapshot((state / "snapshot.json").read_bytes())
    values = dict(snapshot.state)
    journal = state / "journal.jsonl"
    for record in scan_journal(journal.read_bytes() if journal.exists() else b"").records:
        if record.seq > snapshot.seq:
            record.apply(values)
    return values


def test_an_undecodable_monitor_is_quarantined_alerted_and_rebuilt_from_the_exchange(
    state: Path, tmp_path: Path
) -> None:
    stored = _stored_state(state)
    key = next(k for k in sorted(stored) if k.startswith("monitor:main:"))
    _append_store_record(state, key, {**stored[key], "size": "a lot"})
    _append_store_record(state, "ledger:000000", {"trades": "not a list"})
    crafted = {"id": 1, "symbol": "BTCUSDT", "condition": "above", "price": "high", "created_at": 1.0}
    _append_store_record(state, "price_alerts", {"next_id": 2, "alerts": [crafted]})
    out = tmp_path / "snap.json"
    result = opconsole(*RUN, "--state-dir", str(state), "--snapshot-out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    snapshot = json.loads(out.read_text())
    alert = next(a for a in snapshot["alerts"] if a["type"] == "state_recovery")
    assert alert["severity"] == "critical"
    assert f"{key}: Monitor.size must be a number, got 'a lot'" in alert["message"]
    assert "ledger:000000: a ledger chunk must be {'trades': [...]}" in alert["message"]
    assert "price_alerts: PriceAlert.price must be a number, got 'high'" in alert["message"]
    assert snapshot["price_alerts"] == []
    quarantined = [p for p in state.iterdir() if p.name.startswith("quarantine-")]
    assert len(quarantined) == 1 and (quarantined[0] / "journal.jsonl").exists()
    # the position is protected again: reconciliation adopted it under the same key
    monitor = next(m for m in snapshot["monitors"] if f"monitor:{m['key']}" == key)
    assert monitor["size"] > 0 and monitor["sl_price"] > 0
    assert undecodable_records(_stored_state(state)) == {}  # nothing crafted is left to trip on


def test_monitor_from_dict_refuses_the_wrong_shape() -> None:
    monitor = Monitor("m1", "main", "BTCUSDT", Side.BUY, "fast", 1.0, sl_price=90.0, size=1.0)
    data = monitor.to_dict()
    assert Monitor.from_dict(data) == monitor
    for bad, message in [
        ({**data, "size": "1"}, "Monitor.size must be a number, got '1'"),
        ({**data, "sl_price": float("inf")}, "Monitor.sl_price must be finite, got inf"),
        ({**data, "tp_prices": [1.0, "x"]}, "Monitor.tp_prices must be a number, got 'x'"),
        ({**data, "surprise": 1}, "Monitor record has unknown field(s) surprise"),
        ({k: v for k, v in data.items() if k != "account"}, "Monitor record lacks account"),
        ([1, 2], "Monitor record must be an object, got list"),
    ]:
        with pytest.raises(RecordError) as info:
            Monitor.from_dict(bad)  # type: ignore[arg-type]
        assert str(info.value) == message


def test_a_ledger_rewritten_after_a_bad_chunk_keeps_every_good_trade_in_order() -> None:
    from engine.core.models import Trade
    from engine.trading import ledger as ledger_module

    trade = Trade("main", "BTCUSDT", Side.BUY, "fast", "tp", 1.0, 2.0, 1.0, 1.0, 0.0, 0.0, 1.0)
    good = [replace(trade, monitor_id=f"m{i}") for i in range(3)]
    chunk = ledger_module.CHUNK
    state = {
        "ledger:000000": {"trades": "broken"},
        "ledger:000001": {"trades": [t.to_dict() for t in good]},
    }
    assert set(undecodable_records(state)) == {"ledger:000000"}
    kept = Ledger.from_state({"ledger:000001": state["ledger:000001"]})
    assert [k for k, _ in kept.chunks()] == ["ledger:000000"]  # renumbered from the start
    assert len(kept.chunks()[0][1]["trades"]) == min(3, chunk)


def test_a_snapshot_nested_too_deeply_is_corrupt_not_a_crash() -> None:
    with pytest.raises(codec.CorruptData, match="nested too deeply"):
        codec.decode_snapshot(b"[" * 100000 + b"]" * 100000)


def test_names_and_ids_that_look_like_numbers_are_not_mistaken_for_amounts() -> None:
    from engine.sim.state import values_problem

    record = {"link_id": "123456789012345678901234", "symbol": "Infinity", "leverage": {"BTCUSDT": "10"}}
    assert values_problem(record) is None
    assert values_problem({"leverage": {"BTCUSDT": "NaN"}}) == "leverage is out of range ('NaN')"
