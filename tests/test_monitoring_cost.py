"""scripts/monitoring_cost.py at a tiny size: both profiles run and the report holds their figures."""

from __future__ import annotations

import json

import pytest
from monitoring_cost import Sent, main, percentile, reactions

from engine.core.link_ids import make_link_id
from engine.core.models import Execution, OrderType, Side


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


def _fill(link_id: str, ts: float) -> Execution:
    return Execution(
        account="main",
        exec_id=f"x-{link_id}",
        order_id=f"o-{link_id}",
        link_id=link_id,
        symbol="BTCUSDT",
        side=Side.SELL,
        price=100.0,
        qty=1.0,
        fee=0.0,
        is_maker=True,
        closed_size=1.0,
        order_type=OrderType.LIMIT,
        ts=ts,
    )


def test_a_tp1_that_closes_the_position_is_answered_by_the_stops_cancel() -> None:
    """The smaller TPs fold into TP1 on a small position: TP1 closes it all, and the engine's answer
    is to cancel the stop (there is no breakeven to move). That cancel is the reaction."""
    tp1, sl = (make_link_id("ab12", "0123abcd", slot, 0) for slot in ("tp1", "sl"))
    other_sl = make_link_id("ab12", "89abcdef", "sl", 0)
    sent = [
        Sent(10.2, "cancel_batch", (("ETHUSDT", other_sl, "", False),)),  # another monitor's
        Sent(10.5, "cancel_batch", (("BTCUSDT", sl, "", False),)),
    ]
    found, n_tp1, n_sl = reactions([_fill(tp1, 10.0)], sent, {})
    assert (n_tp1, n_sl) == (1, 0)
    assert [(ts, round(seconds, 6)) for ts, seconds, _symbol in found["tp1"]] == [(10.0, 0.5)]


def test_a_tp1_reaction_is_still_the_stops_move_to_breakeven() -> None:
    tp1, sl = (make_link_id("ab12", "0123abcd", slot, 0) for slot in ("tp1", "sl"))
    sent = [
        Sent(10.1, "amend_batch", (("BTCUSDT", sl, "", False),)),  # a resize, not a move
        Sent(10.3, "amend_batch", (("BTCUSDT", "", "o-sl", True),)),  # named by order id only
    ]
    found, _n_tp1, _n_sl = reactions([_fill(tp1, 10.0)], sent, {"o-sl": sl})
    assert [round(seconds, 6) for _ts, seconds, _symbol in found["tp1"]] == [0.3]
