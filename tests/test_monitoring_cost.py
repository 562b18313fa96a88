"""The benchmark's reaction matching and percentiles (once scripts/monitoring_cost.py; the tiny run of
both profiles is tests/test_bench.py's, through ``opconsole bench``)."""

from __future__ import annotations

from engine.commands.bench.requests import Sent, reactions
from engine.commands.bench.stats import percentile
from engine.core.link_ids import make_link_id
from engine.core.models import Execution, OrderType, Side


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


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


def test_a_tp1_reaction_is_the_first_request_carrying_an_action_of_its_monitor() -> None:
    """Not the stop's move alone: a breakeven the price has passed waits for the price (by design),
    while the stop's resize and the entries' cancels go at once. Another monitor's request is not
    an answer; an item named by its order id only is matched through the acks."""
    tp1, sl = (make_link_id("ab12", "0123abcd", slot, 0) for slot in ("tp1", "sl"))
    other = make_link_id("ab12", "99999999", "sl", 0)
    sent = [
        Sent(10.05, "amend_batch", (("ETHUSDT", other, "", True),)),  # another monitor's stop
        Sent(10.3, "amend_batch", (("BTCUSDT", "", "o-sl", False),)),  # its stop resized, by order id
        Sent(10.4, "amend_batch", (("BTCUSDT", sl, "", True),)),  # then moved
    ]
    found, _n_tp1, _n_sl = reactions([_fill(tp1, 10.0)], sent, {"o-sl": sl})
    assert [round(seconds, 6) for _ts, seconds, _symbol in found["tp1"]] == [0.3]
