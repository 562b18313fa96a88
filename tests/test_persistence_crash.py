"""Crash test: SIGKILL a writing process at random moments and inside compactions, then recover.

Runs ``scripts/crash_test.py`` (which asserts every invariant itself and exits non-zero on a
violation) with 50 kills by default; ``OPCONSOLE_CRASH_KILLS`` runs more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "crash_test.py"
KILLS = int(os.environ.get("OPCONSOLE_CRASH_KILLS", "50"))


@pytest.mark.slow
def test_sigkill_never_loses_an_acknowledged_critical_save(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--kills", str(KILLS), "--seed", "3", "--json", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    totals = json.loads(result.stdout)
    print("\n" + json.dumps({k: v for k, v in totals.items() if k != "violations"}))
    assert totals["violations"] == []
    assert totals["kills"] == KILLS and totals["recoveries"] == KILLS
    assert totals["kills_in_compaction"] >= KILLS // 5  # a good share lands inside a compaction
    assert len(totals["kills_by_step"]) >= 4  # at several different steps of it
    assert totals["acked_critical_saves"] > KILLS  # the children did real work before dying
    assert totals["acked_critical_deletes"] > 0 and totals["acked_counter_saves"] > 0
    assert totals["compactions_completed"] > 0 and totals["journal_records_checked"] > 0
