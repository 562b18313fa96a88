"""A snapshot's prices and sizes rounded to the instrument once per value (engine.dashboard.snapshot).

Rounding to a tick is Decimal arithmetic; at a thousand positions a build rounded a few thousand
values, most of them rounded at the last build already (a record sent again with a new mark keeps
its entry price and size; a mirror position has its main's mark). The figures are the instrument's.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest

from engine.core import models
from engine.core.models import Instrument, Position, Side
from engine.dashboard.snapshot import marked_to, position_row

INSTRUMENT = Instrument("XUSDT", 0.01, 0.001, 0.001, 1e6)


def position(mark: float, entry: float = 100.123456, size: float = 1.23456) -> Position:
    return Position("main", "XUSDT", Side.BUY, size, entry, mark, 0.5, 0.0, 10.0, 1.0)


def test_a_value_rounded_before_is_not_rounded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    first = position_row(position(101.987654), INSTRUMENT)
    rounded: list[float] = []
    original = models.round_to_step

    def counted(value: float, step: float, mode: models.RoundingMode = "nearest") -> float:
        rounded.append(value)
        return original(value, step, mode)

    monkeypatch.setattr(models, "round_to_step", counted)  # what Instrument.round_price calls
    again = position_row(position(101.987654), INSTRUMENT)
    assert rounded == [] and again == first
    mirror = replace(position(101.987654), account="mirror")
    assert marked_to(position_row(mirror, INSTRUMENT), 101.987654, INSTRUMENT)["mark_price"] == 101.99
    assert rounded == []


def test_the_figures_are_the_instruments_roundings() -> None:
    rng = random.Random(5)
    for _ in range(500):
        tick = rng.choice((0.01, 0.5, 0.0001, 1.0))
        instrument = Instrument("XUSDT", tick, rng.choice((0.001, 0.1, 1.0)), 0.001, 1e6)
        mark = rng.choice((rng.uniform(0.0001, 5000.0), 0.0, -0.0))
        entry, size = rng.uniform(0.0001, 5000.0), rng.choice((rng.uniform(0.0, 50.0), 0.0, -0.0))
        row = position_row(position(mark, entry, size), instrument)
        for value, expected in (
            (row["mark_price"], instrument.round_price(mark)),
            (row["entry_price"], instrument.round_price(entry)),
            (row["size"], instrument.round_qty(size)),
        ):
            assert value == expected and math.copysign(1.0, value) == math.copysign(1.0, expected)
