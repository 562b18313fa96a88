"""Fuzz the console's trade form through the engine: a bad number is refused with a reason, and
nothing reaches the venue (not even the leverage call that goes out first)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tpsl_harness import SYMBOL, Harness

from console.screens.trade_form import parse_trade_form
from engine.core.models import OrderAck, OrderRequest
from engine.sim.venue import SimVenue
from engine.trading.approaches import TradeRejected, TradeRequest, validate_request

GOOD = {
    "account": "main",
    "symbol": SYMBOL,
    "side": "Buy",
    "approach": "conservative",
    "margin": "100",
    "leverage": "10",
    "entries": "99000 98000",
    "tps": "101000 102000 103000 104000",
    "sl": "97000",
}
"""A form the engine accepts at the harness's mark of 100 000 and balance of 10 000."""

BAD_TEXT = st.one_of(
    st.sampled_from(
        ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e999", "-1e999", "1e308", "1e300", "9" * 400]
    ),
    st.sampled_from(["-1", "-100000", "0", "0.0", "-0", "", "   ", "abc", "1..2", "1e", "0x10"]),
    st.text(st.characters(blacklist_categories=("Nd",)), min_size=1).filter(lambda t: t.strip() != ""),
)
"""Texts no field may accept: not finite, absurdly large, negative, zero, empty or not a number."""


class RecordingVenue(SimVenue):
    """The simulated venue, recording every call that would change something on the exchange."""

    sent: list[str]

    async def set_leverage(self, symbol: str, leverage: float) -> None:
        self.sent.append(f"set_leverage {symbol} {leverage}")
        await super().set_leverage(symbol, leverage)

    async def place(self, request: OrderRequest) -> OrderAck:
        self.sent.append(f"place {request}")
        return await super().place(request)


class RecordingHarness(Harness):
    def _make_venue(self) -> RecordingVenue:
        venue = RecordingVenue(self.exchange, "main")
        venue.sent = []
        return venue


def _form(field: str, text: str) -> dict[str, Any]:
    """The good form with one field's text replaced; in a list field, the bad text is one price."""
    if field in ("entries", "tps") and text.strip():
        prices = GOOD[field].split()
        prices[-1] = text
        return {**GOOD, field: " ".join(prices)}
    return {**GOOD, field: text}


def _raw_request(good: TradeRequest, field: str, text: str) -> TradeRequest | None:
    """``good`` with ``field`` set to ``float(text)`` unchecked, or None when it is not a float."""
    try:
        value = float(text)
    except ValueError:
        return None
    if field == "entries":
        return replace(good, entry_prices=(*good.entry_prices[:-1], value))
    if field == "tps":
        return replace(good, tp_prices=(*good.tp_prices[:-1], value))
    return replace(good, **{{"margin": "margin", "leverage": "leverage", "sl": "sl_price"}[field]: value})


@pytest.fixture
def engine() -> Any:
    loop = asyncio.new_event_loop()
    harness = RecordingHarness()
    loop.run_until_complete(harness.start())
    yield loop, harness
    loop.run_until_complete(harness.close())
    loop.close()


def test_fuzzed_trade_form_is_refused_with_a_reason_and_sends_nothing(engine: Any) -> None:
    loop, h = engine
    venue: RecordingVenue = h.venue
    mark = h.exchange.ticker(SYMBOL).last
    available = loop.run_until_complete(venue.wallet()).available
    instrument = h.manager.instruments[SYMBOL]
    good, problems = parse_trade_form(GOOD)
    assert problems == [] and good is not None
    assert validate_request(good, instrument, mark, available, h.params) == []  # the baseline is valid

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(field=st.sampled_from(["margin", "leverage", "entries", "tps", "sl"]), text=BAD_TEXT)
    def refused(field: str, text: str) -> None:
        values = _form(field, text)
        request, problems = parse_trade_form(values)
        if request is None:  # the form's own parsing refused it
            assert problems and all(p.strip() for p in problems), values
        else:
            _refused_by_the_engine(request, values)
        # The same number straight to the engine (a scenario, a future API): it must refuse too.
        raw = _raw_request(good, field, text)
        if raw is not None:
            _refused_by_the_engine(raw, values)

    def _refused_by_the_engine(request: TradeRequest, values: dict[str, Any]) -> None:
        problems = validate_request(request, instrument, mark, available, h.params)
        assert problems and all(p.strip() for p in problems), values
        with pytest.raises(TradeRejected) as refusal:  # the engine's own check, at send time
            loop.run_until_complete(h.manager.open_trade(request))
        assert refusal.value.errors and all(e.strip() for e in refusal.value.errors), values
        assert venue.sent == [], values

    refused()
