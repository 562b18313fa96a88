"""The mirror's pure decisions: sizing a mirror trade from the main one, and the drift between the
two legs of a mirrored trade (what is out of line, what is repaired and when)."""

from __future__ import annotations

import pytest

from engine.core.models import Instrument, Order, OrderStatus, OrderType, Side
from engine.mirror.drift import DriftKind, Leg, find_drift, stop_cover, to_repair
from engine.mirror.sizing import MirrorSizing, MirrorSkipped, mirror_leverage, mirror_qty, mirror_request
from engine.trading.approaches import Approach, TradeRequest

BTC = Instrument(
    symbol="BTCUSDT",
    tick_size=0.1,
    qty_step=0.001,
    min_qty=0.001,
    max_qty=100.0,
    min_notional=5.0,
    min_leverage=1.0,
    max_leverage=100.0,
)


def _request(leverage: float = 10.0) -> TradeRequest:
    return TradeRequest(
        "main",
        "BTCUSDT",
        Side.BUY,
        Approach.CONSERVATIVE,
        1000.0,
        leverage,
        (None, 99_000.0, 98_000.0),
        (101_000.0, 102_000.0, 103_000.0, 104_000.0),
        97_000.0,
    )


def test_balance_ratio_is_mirror_equity_over_main_equity() -> None:
    sizing = MirrorSizing("balance_ratio")
    assert sizing.ratio(10_000.0, 5_000.0) == pytest.approx(0.5)
    assert sizing.ratio(8_000.0, 10_000.0) == pytest.approx(1.25)


def test_fixed_ratio_ignores_the_balances() -> None:
    assert MirrorSizing("fixed_ratio", 0.3).ratio(10_000.0, 1.0) == 0.3


@pytest.mark.parametrize(("main", "mirror"), [(0.0, 5_000.0), (10_000.0, 0.0), (float("nan"), 1.0)])
def test_a_balance_ratio_without_equity_on_either_side_is_skipped(main: float, mirror: float) -> None:
    with pytest.raises(MirrorSkipped):
        MirrorSizing("balance_ratio").ratio(main, mirror)


def test_quantities_round_down_to_the_qty_step() -> None:
    assert mirror_qty(0.033, 0.5, BTC) == 0.016  # 0.0165 -> down, never more than the share
    assert mirror_qty(0.03, 0.5, BTC) == 0.015  # 0.0149999.. in floats stays 0.015


def test_the_mirror_request_copies_prices_and_sizes_each_entry() -> None:
    copy = mirror_request(_request(), 0.033, 0.5, BTC, 100_000.0, max_leverage=50.0)
    assert copy.account == "mirror"
    assert copy.qty == 0.016
    assert (copy.entry_prices, copy.tp_prices, copy.sl_price) == (
        (None, 99_000.0, 98_000.0),
        (101_000.0, 102_000.0, 103_000.0, 104_000.0),
        97_000.0,
    )
    # the margin is what that quantity needs at the mark and leverage
    assert copy.margin == pytest.approx(0.016 * 3 * 100_000.0 / 10.0)


def test_the_mirror_uses_its_maximum_leverage_when_main_is_higher() -> None:
    low = Instrument("BTCUSDT", 0.1, 0.001, 0.001, 100.0, min_notional=5.0, max_leverage=20.0)
    assert mirror_leverage(25.0, low, 50.0) == 20.0
    assert mirror_leverage(10.0, low, 50.0) == 10.0
    assert mirror_request(_request(leverage=25.0), 0.033, 0.5, low, 100_000.0, 50.0).leverage == 20.0


def test_a_quantity_under_the_minimum_order_qty_is_skipped_not_sent() -> None:
    with pytest.raises(MirrorSkipped, match="under the minimum order qty"):
        mirror_request(_request(), 0.001, 0.5, BTC, 100_000.0, 50.0)


def test_a_quantity_under_the_minimum_order_value_is_skipped_not_sent() -> None:
    pricey = Instrument("BTCUSDT", 0.1, 0.001, 0.001, 100.0, min_notional=500.0)
    with pytest.raises(MirrorSkipped, match="minimum order value"):
        mirror_request(_request(), 0.005, 0.5, pricey, 100_000.0, 50.0)  # 0.002 x 98,000 < 500


# --- drift ---------------------------------------------------------------------------------------


def _stop(qty: float, side: Side = Side.SELL) -> Order:
    return Order(
        "mirror",
        "o1",
        "",
        "BTCUSDT",
        side,
        OrderType.MARKET,
        qty,
        None,
        OrderStatus.UNTRIGGERED,
        trigger_price=97_000.0,
        reduce_only=True,
    )


def test_stop_cover_counts_the_reduce_only_stops_of_the_symbol_and_side() -> None:
    orders = [_stop(0.01), _stop(0.005), _stop(1.0, side=Side.BUY)]
    assert stop_cover(orders, "BTCUSDT", Side.BUY) == pytest.approx(0.015)
    assert stop_cover(orders, "ETHUSDT", Side.BUY) == 0.0


def test_legs_in_line_have_no_drift() -> None:
    main = Leg(0.033, stop_qty=0.033)
    mirror = Leg(0.016, stop_qty=0.016)
    assert find_drift(main, mirror, 0.5, BTC) == []  # 0.0165 rounds down to 0.016: in line


def test_one_qty_step_of_difference_is_not_drift_but_two_are() -> None:
    main = Leg(0.03)
    assert find_drift(main, Leg(0.016, stop_qty=0.016), 0.5, BTC) == []
    (excess,) = find_drift(main, Leg(0.017, stop_qty=0.017), 0.5, BTC)
    assert excess.kind is DriftKind.EXCESS and excess.target == 0.015
    (deficit,) = find_drift(main, Leg(0.013, stop_qty=0.013), 0.5, BTC)
    assert deficit.kind is DriftKind.DEFICIT


def test_an_uncovered_mirror_position_is_missing_its_stop() -> None:
    kinds = [d.kind for d in find_drift(Leg(0.03), Leg(0.015, stop_qty=0.005), 0.5, BTC)]
    assert kinds == [DriftKind.MISSING_STOP]


def test_a_mirror_left_open_after_main_closed_is_an_orphan() -> None:
    kinds = [d.kind for d in find_drift(None, Leg(0.015, stop_qty=0.015), 0.5, BTC)]
    assert kinds == [DriftKind.ORPHAN]
    assert find_drift(None, Leg(0.0), 0.5, BTC) == []  # both flat: nothing to say


def test_breakeven_and_cancelled_entries_follow_main() -> None:
    main = Leg(0.005, breakeven=True, entries_live=False)
    mirror = Leg(0.002, stop_qty=0.002, breakeven=False, entries_live=True)
    kinds = {d.kind for d in find_drift(main, mirror, 0.5, BTC)}
    assert kinds == {DriftKind.BREAKEVEN, DriftKind.ENTRIES}
    closing = Leg(0.002, stop_qty=0.002, entries_live=True, closing=True)
    assert find_drift(main, closing, 0.5, BTC) == []  # a mirror closing anyway is left alone


def test_only_a_missing_stop_is_repaired_at_first_sight_and_a_deficit_never() -> None:
    found = find_drift(Leg(0.03), Leg(0.02, stop_qty=0.01), 0.5, BTC)
    assert {d.kind for d in found} == {DriftKind.MISSING_STOP, DriftKind.EXCESS}
    assert [d.kind for d in to_repair(found, [])] == [DriftKind.MISSING_STOP]
    assert {d.kind for d in to_repair(found, ["excess"])} == {DriftKind.MISSING_STOP, DriftKind.EXCESS}
    deficit = find_drift(Leg(0.03), Leg(0.01, stop_qty=0.01), 0.5, BTC)
    assert to_repair(deficit, ["deficit"]) == []
