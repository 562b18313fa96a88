"""round_to_step: the quotient taken in floats where it is clearly off a rounding boundary, Decimal
elsewhere; the result is the Decimal arithmetic's on the numbers as they print, to the bit.

Every price and quantity sent to the venue goes through it, so any difference, even the sign of a
zero, is a defect; the cases drawn are where floats and decimals part: multiples of the step, exact
halves, a value one ulp either side of them, tiny and huge quotients, negative values.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core.models import RoundingMode, _round_in_decimal, round_to_step

STEPS = (0.1, 0.5, 0.01, 0.05, 0.0025, 0.001, 0.0001, 1e-05, 1e-07, 1.0, 5.0, 10.0, 0.25, 0.00005)
MODES: tuple[RoundingMode, ...] = ("nearest", "down", "up")


def same_float(a: float, b: float) -> bool:
    """Equal to the bit: -0.0 and 0.0 differ, as two NaNs are the same."""
    return a.hex() == b.hex() if math.isfinite(a) else repr(a) == repr(b)


@st.composite
def value_and_step(draw: st.DrawFn) -> tuple[float, float]:
    step = draw(st.sampled_from(STEPS))
    units = draw(st.integers(min_value=-(10**13), max_value=10**13) | st.integers(-2000, 2000))
    shape = draw(st.sampled_from(("multiple", "half", "noise", "ulp", "free")))
    if shape == "multiple":
        value = units * step
    elif shape == "half":
        value = (units + 0.5) * step
    elif shape == "noise":
        value = (units + draw(st.floats(min_value=-0.999, max_value=0.999))) * step
    elif shape == "ulp":
        base = (units + draw(st.sampled_from((0.0, 0.5)))) * step
        value = math.nextafter(base, draw(st.sampled_from((math.inf, -math.inf))))
    else:
        value = draw(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False))
    return value, step


@settings(max_examples=3000, deadline=None)
@given(value_and_step(), st.sampled_from(MODES))
def test_the_float_path_gives_the_decimal_result_to_the_bit(
    case: tuple[float, float], mode: RoundingMode
) -> None:
    value, step = case
    assert same_float(round_to_step(value, step, mode), _round_in_decimal(value, step, mode))


@pytest.mark.parametrize(
    ("value", "step", "mode", "expected"),
    [
        (0.15, 0.1, "nearest", 0.2),  # 1.4999999999999998 steps in floats: Decimal says 1.5, to even
        (0.25, 0.1, "nearest", 0.2),
        (0.3, 0.1, "down", 0.3),  # 2.9999999999999996 steps in floats
        (-0.04, 0.1, "nearest", -0.0),  # Decimal's zero keeps the sign
        (-0.04, 0.1, "up", -0.0),
        (-0.04, 0.1, "down", -0.1),
        (95075.05, 0.1, "nearest", 95075.0),
        (0.1 + 0.2, 0.1, "nearest", 0.3),
        (1e300, 0.1, "nearest", 1e300),  # beyond the float path: Decimal alone
    ],
)
def test_values_where_floats_and_decimals_part(
    value: float, step: float, mode: RoundingMode, expected: float
) -> None:
    assert same_float(round_to_step(value, step, mode), expected)
    assert same_float(round_to_step(value, step, mode), _round_in_decimal(value, step, mode))


def test_a_step_that_is_not_a_positive_number_is_refused() -> None:
    for step in (0.0, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="cannot round"):
            round_to_step(1.0, step)
