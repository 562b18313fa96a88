"""TP sizing: the split of a position into take-profits (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.core.models import Instrument
from engine.trading.params import TradingParams
from engine.trading.tp_sizing import split_tp_quantities

BTC = Instrument("BTCUSDT", tick_size=0.1, qty_step=0.001, min_qty=0.001, max_qty=100.0)
SOL = Instrument("SOLUSDT", tick_size=0.01, qty_step=0.1, min_qty=0.1, max_qty=80_000.0)
P = TradingParams()
TPS = (101_000.0, 102_000.0, 103_000.0, 104_000.0)


def test_split_85_5_5_5_exact() -> None:
    assert split_tp_quantities(1.0, P.tp_split, TPS, BTC, 5.0) == [0.85, 0.05, 0.05, 0.05]


def test_split_puts_the_rounding_remainder_on_the_last_tp() -> None:
    # 0.033: 0.02805 -> 0.028, 0.00165 -> 0.001 (x3) = 0.031; the 0.002 left goes to TP4
    assert split_tp_quantities(0.033, P.tp_split, TPS, BTC, 5.0) == [0.028, 0.001, 0.001, 0.003]


def test_small_tps_fold_into_tp1() -> None:
    # 0.01 BTC: each 5 % is 0.0005, below minOrderQty: everything folds into TP1
    assert split_tp_quantities(0.01, P.tp_split, TPS, BTC, 5.0) == [0.01, 0.0, 0.0, 0.0]
    # 1.0 SOL at ~180: 5 % is 0.05 (< 0.1 step) -> folds; a 9 USDT TP under a 10 USDT minimum folds too
    prices = (181.0, 182.0, 183.0, 184.0)
    assert split_tp_quantities(1.0, P.tp_split, prices, SOL, 5.0) == [1.0, 0.0, 0.0, 0.0]
    assert split_tp_quantities(2.0, P.tp_split, prices, SOL, 5.0) == [1.7, 0.1, 0.1, 0.1]
    assert split_tp_quantities(2.0, P.tp_split, prices, SOL, 20.0) == [2.0, 0.0, 0.0, 0.0]


@given(
    size_units=st.integers(1, 200_000),
    split=st.lists(st.integers(1, 100), min_size=1, max_size=6),
)
def test_split_always_sums_exactly_to_the_size(size_units: int, split: list[int]) -> None:
    total = sum(split)
    parts = [100.0 * s / total for s in split]
    size = size_units * BTC.qty_step
    prices = [100_000.0 + 1000.0 * i for i in range(len(parts))]
    qtys = split_tp_quantities(size, parts, prices, BTC, 5.0)
    assert round(sum(qtys), 9) == pytest.approx(round(size, 9), abs=1e-9)
    assert all(q == BTC.round_qty(q, "nearest") for q in qtys)
    assert all(q == 0 or q >= BTC.min_qty for q in qtys[1:])
