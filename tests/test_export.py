"""`opconsole export-trades`: the ledger as CSV, readable while the engine holds the state."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path


def opconsole(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_export_matches_the_snapshot_ledger(tmp_path: Path) -> None:
    state, snap = tmp_path / "state", tmp_path / "s.json"
    run = opconsole("run", "--headless", "--clock", "virtual", "--duration", "3600",
                    "--state-dir", str(state), "--snapshot-out", str(snap), cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    import json

    ledger = json.loads(snap.read_text())["ledger"]
    assert ledger["totals"]["count"] >= 1, "the demo hour closes at least one trade"
    before = sorted(p.name for p in state.iterdir())
    result = opconsole("export-trades", "-", "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == ledger["totals"]["count"]
    for row, trade in zip(rows, ledger["trades"], strict=True):
        assert (row["symbol"], row["side"], row["reason"]) == (
            trade["symbol"],
            trade["side"],
            trade["reason"],
        )
        assert float(row["pnl"]) == trade["pnl"]
    assert sorted(p.name for p in state.iterdir()) == before  # read-only

    out = tmp_path / "trades.csv"
    assert opconsole("export-trades", str(out), "--state-dir", str(state), cwd=tmp_path).returncode == 0
    assert out.read_text() == result.stdout


def test_export_of_a_missing_state_dir_is_one_line(tmp_path: Path) -> None:
    result = opconsole("export-trades", "-", "--state-dir", str(tmp_path / "nope"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"opconsole: {tmp_path / 'nope'}: no such state directory"
