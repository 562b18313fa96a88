"""scripts/monitoring_cost.py at a tiny size: both profiles run and the report holds their figures."""

from __future__ import annotations

import json

import pytest
from monitoring_cost import main, percentile


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def test_tiny_run_reports_both_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--positions", "2", "--minutes", "3", "--seed", "7", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for profile in ("optimized", "baseline"):
        figures = doc[profile]
        # every trade was opened: its leverage set and its orders placed, each counted once per hour
        assert figures["calls_per_hour"]["/v5/position/set-leverage"] == 2 * 20.0
        assert figures["calls_per_hour_total"] > 0
        assert figures["task_failures"] == []
    assert doc["baseline"]["checks_per_hour"].get("baseline", 0) > 0
    assert "baseline" not in doc["optimized"]["checks_per_hour"]
    assert doc["call_ratio_baseline_over_optimized"] > 1
