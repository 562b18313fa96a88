"""Approaches: order plans, breakeven and request validation (pure)."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from engine.core.models import Instrument, OrderType, Side
from engine.trading.approaches import (
    Approach,
    TradeRejected,
    TradeRequest,
    breakeven_price,
    offset_price,
    plan_trade,
    request_from_offsets,
    validate_request,
)
from engine.trading.params import TradingParams

BTC = Instrument("BTCUSDT", tick_size=0.1, qty_step=0.001, min_qty=0.001, max_qty=100.0)
P = TradingParams()
TPS = (101_000.0, 102_000.0, 103_000.0, 104_000.0)


def req(**kw) -> TradeRequest:
    base = dict(
        account="main",
        symbol="BTCUSDT",
        side=Side.BUY,
        approach=Approach.CONSERVATIVE,
        margin=1000.0,
        leverage=10.0,
        entry_prices=(None, 99_000.0, 98_000.0),
        tp_prices=TPS,
        sl_price=97_000.0,
    )
    base.update(kw)
    return TradeRequest(**base)


def test_conservative_plan_has_three_equal_entries_first_at_market() -> None:
    plan = plan_trade(req(), BTC, 100_000.0, 10_000.0, P)
    assert [e.order_type for e in plan.entries] == [OrderType.MARKET, OrderType.LIMIT, OrderType.LIMIT]
    assert [e.qty for e in plan.entries] == [0.033, 0.033, 0.033]
    assert [e.price for e in plan.entries] == [None, 99_000.0, 98_000.0]
    assert plan.total_qty == 0.099 and plan.tp_split == P.tp_split


def test_fast_plan_is_one_market_entry_and_one_tp() -> None:
    plan = plan_trade(
        req(approach=Approach.FAST, entry_prices=(None,), tp_prices=(101_000.0,)), BTC, 100_000.0, 10_000.0, P
    )
    assert len(plan.entries) == 1 and plan.entries[0].qty == 0.1
    assert plan.tp_split == (100.0,)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"symbol": "NOPEUSDT"}, "unknown symbol"),
        ({"margin": 0.0}, "margin must be > 0"),
        ({"leverage": 75.0}, "leverage must be within 1..50"),
        ({"tp_prices": (99_500.0, 102_000.0, 103_000.0, 104_000.0)}, "TP1 99,500 is not beyond"),
        ({"tp_prices": (102_000.0, 101_000.0, 103_000.0, 104_000.0)}, "TP2 101,000 must be further"),
        ({"sl_price": 98_500.0}, "SL 98,500 is not beyond the entries on the loss side"),
        ({"entry_prices": (None, 101_000.0, 98_000.0)}, "must be below the mark"),
        ({"entry_prices": (None, 99_000.0)}, "takes 3 entries"),
        ({"tp_prices": (101_000.0,)}, "takes 4 take-profits"),
        ({"margin": 2.0}, "below the minimum order qty"),
        ({"margin": 9_999.0}, "not enough available balance"),
    ],
)
def test_validation_errors(changes, message) -> None:
    errors = validate_request(
        req(**changes), BTC if changes.get("symbol") != "NOPEUSDT" else None, 100_000.0, 10_000.0, P
    )
    assert any(message in e for e in errors), errors
    with pytest.raises(TradeRejected):
        plan_trade(req(**changes), BTC, 100_000.0, 10_000.0, P)


def test_every_problem_is_listed_at_once() -> None:
    errors = validate_request(req(leverage=0.5, sl_price=100_500.0), BTC, 100_000.0, 10_000.0, P)
    assert len(errors) == 2


def test_short_side_mirrors_the_checks() -> None:
    short = req(
        side=Side.SELL,
        entry_prices=(None, 101_000.0, 102_000.0),
        tp_prices=(99_000.0, 98_000.0, 97_000.0, 96_000.0),
        sl_price=103_000.0,
    )
    assert validate_request(short, BTC, 100_000.0, 10_000.0, P) == []
    bad = req(side=Side.SELL)  # the long's prices are all on the wrong side for a short
    assert len(validate_request(bad, BTC, 100_000.0, 10_000.0, P)) >= 3


def test_breakeven_covers_round_trip_fees_and_buffer() -> None:
    assert breakeven_price(Side.BUY, 100_000.0, BTC, P) == pytest.approx(100_130.0)
    assert breakeven_price(Side.SELL, 100_000.0, BTC, P) == pytest.approx(99_870.0)
    assert breakeven_price(Side.BUY, 99_999.99, BTC, P) >= 99_999.99 * 1.0013


def test_offsets_are_signed_in_the_trades_favour() -> None:
    assert offset_price(Side.BUY, 100_000.0, 1.0, BTC) == 101_000.0
    assert offset_price(Side.SELL, 100_000.0, 1.0, BTC) == 99_000.0
    r = request_from_offsets(
        account="main",
        symbol="BTCUSDT",
        side=Side.SELL,
        approach=Approach.CONSERVATIVE,
        margin=100.0,
        leverage=10.0,
        mark=100_000.0,
        instrument=BTC,
        entry_offsets_pct=[0.0, -0.5, -1.0],
        tp_offsets_pct=[1.0, 2.0, 3.0, 4.0],
        sl_offset_pct=-2.0,
    )
    assert r.entry_prices == (None, 100_500.0, 101_000.0)
    assert r.tp_prices == (99_000.0, 98_000.0, 97_000.0, 96_000.0)
    assert r.sl_price == 102_000.0


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # NaN compares false with everything: every TP/SL check let it through before.
        ({"tp_prices": (101_000.0, 102_000.0, 103_000.0, NAN)}, "TP4 must be a finite number, got nan"),
        ({"tp_prices": (INF, INF, INF, INF)}, "TP1 must be a finite number, got inf"),
        ({"sl_price": -INF}, "SL must be a finite number, got -inf"),
        ({"margin": INF}, "margin must be a finite number, got inf"),
        ({"leverage": NAN}, "leverage must be a finite number, got nan"),
        ({"entry_prices": (None, NAN, 98_000.0)}, "entry 2 must be a finite number, got nan"),
        ({"margin": "100"}, "margin must be a finite number, got '100'"),
    ],
)
def test_non_finite_numbers_are_refused_with_a_reason(changes, message) -> None:
    assert message in validate_request(req(**changes), BTC, 100_000.0, 10_000.0, P)
    with pytest.raises(TradeRejected, match=message):
        plan_trade(req(**changes), BTC, 100_000.0, 10_000.0, P)


def test_a_short_with_infinite_sl_is_refused() -> None:
    # (+inf - entry) * -1 is -inf: the short's loss-side check alone accepted an infinite SL.
    tps = (99_000.0, 98_000.0, 97_000.0, 96_000.0)
    short = req(side=Side.SELL, entry_prices=(None, 101_000.0, 102_000.0), tp_prices=tps, sl_price=103_000.0)
    assert validate_request(short, BTC, 100_000.0, 10_000.0, P) == []
    infinite = replace(short, sl_price=INF)
    assert validate_request(infinite, BTC, 100_000.0, 10_000.0, P) == ["SL must be a finite number, got inf"]


def test_no_market_price_when_the_mark_is_not_finite() -> None:
    assert validate_request(req(), BTC, NAN, 10_000.0, P) == ["no market price for BTCUSDT"]
    assert validate_request(req(), BTC, INF, 10_000.0, P) == ["no market price for BTCUSDT"]


@pytest.mark.parametrize(
    ("where", "offsets"),
    [
        ("tp_offsets_pct[0]", {"tp_offsets_pct": [NAN, 2.0, 3.0, 4.0]}),
        ("sl_offset_pct", {"sl_offset_pct": -INF}),
        ("entry_offsets_pct[2]", {"entry_offsets_pct": [0.0, -0.5, NAN]}),
        ("mark", {"mark": NAN}),
    ],
)
def test_request_from_offsets_refuses_non_finite_numbers(where, offsets) -> None:
    kwargs = dict(
        account="main",
        symbol="BTCUSDT",
        side=Side.BUY,
        approach=Approach.CONSERVATIVE,
        margin=100.0,
        leverage=10.0,
        mark=100_000.0,
        instrument=BTC,
        entry_offsets_pct=[0.0, -0.5, -1.0],
        tp_offsets_pct=[1.0, 2.0, 3.0, 4.0],
        sl_offset_pct=-2.0,
    )
    with pytest.raises(TradeRejected, match=rf"^{re.escape(where)} must be a finite"):
        request_from_offsets(**{**kwargs, **offsets})


def test_a_price_over_a_hundred_times_the_mark_is_a_typo() -> None:
    errors = validate_request(req(tp_prices=(*TPS[:3], 1e308)), BTC, 100_000.0, 10_000.0, P)
    assert errors == ["TP4 1e+308 is over 100 times the mark 100,000.0"]
