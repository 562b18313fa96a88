"""Sizing a trade by risk (pure): the loss at the stop, fees included, never exceeds the risk, and one
more qty step would; sizes the venue refuses are flagged with the figures still given."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tpsl_builders import BTC

from engine.core.models import Instrument, Side
from engine.trading.approaches import Approach, TradeRequest, validate_request
from engine.trading.params import TradingParams
from engine.trading.risk_sizing import RiskSize, size_by_risk

TAKER = TradingParams().taker_fee_rate


def independent_loss(side: Side, q: float, entries: tuple[float, ...], sl: float, fee: float) -> float:
    """The loss at the stop written out: the move of each entry to the stop, its entry fee, and the
    exit fee of the whole position at the stop price."""
    move = sum(q * abs(e - sl) for e in entries)
    entry_fees = sum(q * e * fee for e in entries)
    exit_fee = q * len(entries) * sl * fee
    return move + entry_fees + exit_fee


def test_one_percent_of_equity_on_a_fast_long() -> None:
    # 10,000 equity, 1% = 100 USDT; entry 100,000, stop 99,000: 1,000 of move + 0.00055 x 199,000 of
    # fees = 1,109.45 per BTC -> 0.0901 BTC, down to the step: 0.090 (99.85 USDT at the stop).
    size = size_by_risk(
        side=Side.BUY,
        equity=10_000.0,
        risk_pct=1.0,
        entry_prices=(100_000.0,),
        sl_price=99_000.0,
        leverage=10.0,
        available=10_000.0,
        instrument=BTC,
        taker_fee_rate=TAKER,
    )
    assert size.ok
    assert size.risk_amount == pytest.approx(100.0)
    assert size.per_entry_qty == pytest.approx(0.090)
    assert size.total_qty == pytest.approx(0.090)
    assert size.notional == pytest.approx(9_000.0)
    assert size.margin == pytest.approx(900.0)
    assert size.fees == pytest.approx(0.090 * 199_000 * TAKER)
    assert size.loss_at_stop == pytest.approx(90.0 + 0.090 * 199_000 * TAKER)
    assert size.loss_at_stop <= 100.0


def test_conservative_short_splits_the_risk_over_three_equal_entries() -> None:
    entries = (100_000.0, 101_000.0, 102_000.0)
    size = size_by_risk(
        side=Side.SELL,
        equity=50_000.0,
        risk_pct=2.0,
        entry_prices=entries,
        sl_price=104_000.0,
        leverage=20.0,
        available=50_000.0,
        instrument=BTC,
        taker_fee_rate=TAKER,
    )
    assert size.ok
    assert size.total_qty == pytest.approx(3 * size.per_entry_qty)
    assert size.loss_at_stop == pytest.approx(
        independent_loss(Side.SELL, size.per_entry_qty, entries, 104_000.0, TAKER)
    )
    assert size.loss_at_stop <= 1_000.0
    bigger = size.per_entry_qty + BTC.qty_step
    assert independent_loss(Side.SELL, bigger, entries, 104_000.0, TAKER) > 1_000.0


@given(
    side=st.sampled_from([Side.BUY, Side.SELL]),
    equity=st.floats(10.0, 1e7),
    risk_pct=st.floats(0.01, 10.0),
    entry=st.floats(1.0, 200_000.0),
    stop_pct=st.floats(0.05, 30.0),
    ladder_pct=st.lists(st.floats(0.0, 5.0), max_size=3),
    step=st.sampled_from([0.001, 0.01, 0.1, 1.0, 10.0]),
    fee=st.sampled_from([0.0, 0.0002, 0.00055, 0.001]),
)
def test_the_loss_at_the_stop_stays_within_the_risk_and_one_more_step_exceeds_it(
    side: Side,
    equity: float,
    risk_pct: float,
    entry: float,
    stop_pct: float,
    ladder_pct: list[float],
    step: float,
    fee: float,
) -> None:
    # the ladder goes from the market entry toward the stop, which lies beyond the furthest entry
    entries = tuple(entry * (1 - side.sign * pct / 100) for pct in (0.0, *ladder_pct))
    furthest = min(entries) if side is Side.BUY else max(entries)
    sl = furthest * (1 - side.sign * stop_pct / 100)
    instrument = Instrument(
        "XUSDT", tick_size=0.0001, qty_step=step, min_qty=step, max_qty=1e12, min_notional=0.0
    )
    size = size_by_risk(
        side=side,
        equity=equity,
        risk_pct=risk_pct,
        entry_prices=entries,
        sl_price=sl,
        leverage=10.0,
        available=float("inf"),
        instrument=instrument,
        taker_fee_rate=fee,
    )
    risk = equity * risk_pct / 100
    q = size.per_entry_qty
    assert q >= 0 and instrument.round_qty(q) == pytest.approx(q)  # on the qty grid
    assert independent_loss(side, q, entries, sl, fee) <= risk * (1 + 1e-12)
    assert independent_loss(side, q + step, entries, sl, fee) > risk * (1 - 1e-12)
    assert size.loss_at_stop <= risk


def _size(**overrides: object) -> RiskSize:
    args: dict[str, object] = {
        "side": Side.BUY,
        "equity": 10_000.0,
        "risk_pct": 1.0,
        "entry_prices": (100_000.0,),
        "sl_price": 99_000.0,
        "leverage": 10.0,
        "available": 10_000.0,
        "instrument": BTC,
        "taker_fee_rate": TAKER,
    }
    return size_by_risk(**{**args, **overrides})  # type: ignore[arg-type]


def test_a_risk_too_small_for_one_step_is_refused_not_rounded_up() -> None:
    size = _size(equity=100.0)  # 1 USDT of risk, 1,109.45 per BTC: 0.0009 BTC, under one step
    assert size.per_entry_qty == 0.0 and size.loss_at_stop == 0.0
    assert size.problems == (
        "risking 1.00 USDT buys less than one qty step (0.001 BTCUSDT) per entry: raise the risk "
        "or bring the stop closer",
    )


def test_under_the_minimum_qty_or_value_is_flagged_with_the_figures() -> None:
    coarse_min = Instrument("BTCUSDT", tick_size=0.1, qty_step=0.001, min_qty=0.1, max_qty=100.0)
    size = _size(instrument=coarse_min)
    assert size.per_entry_qty == pytest.approx(0.090)
    assert size.problems == (
        "risking 100.00 USDT gives 0.090 BTCUSDT per entry, under the minimum order qty 0.1: raise "
        "the risk or bring the stop closer",
    )
    worthy = Instrument(
        "BTCUSDT", tick_size=0.1, qty_step=0.001, min_qty=0.001, max_qty=100.0, min_notional=10_000
    )
    assert "worth under the minimum order value 10,000.00 USDT" in _size(instrument=worthy).problems[0]


def test_margin_over_the_available_balance_is_flagged() -> None:
    # 0.090 BTC at 100,000 = 9,000 notional: 900 margin at 10x (+ 4.95 entry fee), 9,000 at 1x
    size = _size(leverage=1.0, available=5_000.0)
    assert size.margin == pytest.approx(9_000.0)
    assert size.problems == (
        "0.090 BTCUSDT needs 9,004.95 USDT of margin and fees at 1x, available 5,000.00: raise the "
        "leverage or lower the risk",
    )
    assert _size(leverage=10.0, available=5_000.0).ok


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"sl_price": 100_500.0}, "SL 100500 must be beyond every entry on the loss side to size by risk"),
        ({"risk_pct": 0.0}, "risk must be within 0..100% of equity, got 0"),
        ({"risk_pct": float("nan")}, "risk must be within 0..100% of equity, got nan"),
        ({"equity": 0.0}, "no equity to risk (0 USDT)"),
        ({"entry_prices": (0.0,)}, "every entry needs a price (the market one too) to size by risk"),
    ],
)
def test_inputs_that_cannot_be_sized(overrides: dict[str, object], problem: str) -> None:
    size = _size(**overrides)
    assert size.problems == (problem,) and size.per_entry_qty == 0.0


def test_the_engine_accepts_the_request_a_risk_size_describes() -> None:
    # what the trade form sends: qty per entry and the margin it needs
    size = _size()
    request = TradeRequest(
        account="main",
        symbol="BTCUSDT",
        side=Side.BUY,
        approach=Approach.FAST,
        margin=size.margin,
        leverage=10.0,
        entry_prices=(None,),
        tp_prices=(102_000.0,),
        sl_price=99_000.0,
        qty=size.per_entry_qty,
    )
    assert validate_request(request, BTC, 100_000.0, 10_000.0, TradingParams()) == []
