"""Price alerts: the book's decisions, and the engine firing one when the price crosses, across a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.alerts.price import (
    PriceAlert,
    PriceAlertBook,
    PriceAlertRejected,
    fire_message,
    parse_alert_spec,
)
from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.models import Ticker
from engine.core.settings import load_settings
from engine.runtime.assembly import EngineRuntime

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def book_with(*specs: tuple[str, str, float], last: float = 100.0) -> PriceAlertBook:
    book = PriceAlertBook()
    for symbol, condition, price in specs:
        book.add(symbol, condition, price, last=last, now=T0)
    return book


# --- the book (pure) ----------------------------------------------------------------------------


def test_above_fires_once_when_the_price_reaches_it_and_stays_as_triggered() -> None:
    book = book_with(("BTCUSDT", "above", 110.0))
    assert book.on_price("BTCUSDT", 109.9, T0 + 1) == []
    assert book.on_price("ETHUSDT", 500.0, T0 + 1) == []  # another symbol never fires it
    [fired] = book.on_price("BTCUSDT", 110.5, T0 + 2)
    assert (fired.id, fired.triggered_at, fired.armed) == (1, T0 + 2, False)
    assert book.on_price("BTCUSDT", 120.0, T0 + 3) == []  # once only
    assert book.on_price("BTCUSDT", 100.0, T0 + 4) == []
    assert book.on_price("BTCUSDT", 111.0, T0 + 5) == []  # crossing again does not re-arm it
    assert book.alerts[1].triggered_at == T0 + 2


def test_below_fires_when_the_price_falls_to_it() -> None:
    book = book_with(("BTCUSDT", "below", 90.0), ("BTCUSDT", "above", 110.0))
    assert book.on_price("BTCUSDT", 95.0, T0 + 1) == []
    [fired] = book.on_price("BTCUSDT", 90.0, T0 + 2)  # touching the level counts
    assert (fired.id, fired.condition) == (2 - 1, "below")
    assert book.alerts[2].armed and book.armed_symbols() == {"BTCUSDT"}


def test_one_tick_can_fire_several_alerts() -> None:
    book = book_with(("BTCUSDT", "above", 105.0), ("BTCUSDT", "above", 108.0), ("BTCUSDT", "above", 120.0))
    assert [a.id for a in book.on_price("BTCUSDT", 110.0, T0 + 1)] == [1, 2]


@pytest.mark.parametrize(
    ("symbol", "condition", "price", "last", "expected"),
    [
        ("BTCUSDT", "above", 95.0, 100.0, "an 'above' alert needs a price above it"),
        ("BTCUSDT", "above", 100.0, 100.0, "an 'above' alert needs a price above it"),
        ("BTCUSDT", "below", 105.0, 100.0, "a 'below' alert needs a price below it"),
        ("BTCUSDT", "below", 0.0, 100.0, "price must be above 0"),
        ("BTCUSDT", "below", -5.0, 100.0, "price must be above 0"),
        ("NOPEUSDT", "above", 105.0, None, "unknown symbol 'NOPEUSDT'"),
        ("BTCUSDT", "sideways", 105.0, 100.0, "condition must be above, below, crosses or change"),
        ("BTCUSDT", "crosses", 100.0, 100.0, "a 'crosses' alert needs another price"),
        ("BTCUSDT", "change", 0.0, 100.0, "a change must be a percent above 0"),
    ],
)
def test_an_alert_that_could_never_fire_is_refused(
    symbol: str, condition: str, price: float, last: float | None, expected: str
) -> None:
    book = book_with(("BTCUSDT", "above", 110.0))
    with pytest.raises(PriceAlertRejected) as refused:
        book.add(symbol, condition, price, last=last, now=T0)
    assert any(expected in e for e in refused.value.errors), refused.value.errors
    assert list(book.alerts) == [1] and book.next_id == 2  # nothing changed


def test_crosses_fires_on_the_way_through_the_level_from_either_side() -> None:
    book = PriceAlertBook()
    up = book.add("BTCUSDT", "crosses", 110.0, last=100.0, now=T0)  # from below: fires going up
    down = book.add("ETHUSDT", "crosses", 90.0, last=100.0, now=T0)  # from above: fires going down
    assert book.on_price("BTCUSDT", 109.0, T0 + 1) == []
    assert [a.id for a in book.on_price("BTCUSDT", 110.5, T0 + 2)] == [up.id]
    assert book.on_price("ETHUSDT", 95.0, T0 + 1) == []
    (fired,) = book.on_price("ETHUSDT", 89.0, T0 + 2)
    assert fired.id == down.id
    assert fire_message(fired, 89.0) == "ETHUSDT crossed 90 going below (last 89)"


def test_change_fires_on_a_move_of_the_percent_within_the_window_either_way() -> None:
    book = PriceAlertBook()
    alert = book.add("BTCUSDT", "change", 2.0, last=100.0, now=T0, window_s=60.0)
    book.on_price("BTCUSDT", 100.0, T0)
    assert book.on_price("BTCUSDT", 101.5, T0 + 30) == []  # +1.5 % so far
    assert book.on_price("BTCUSDT", 101.9, T0 + 70) == []  # the window slid: from 101.5, +0.4 %
    (fired,) = book.on_price("BTCUSDT", 99.4, T0 + 100)  # 101.9 -> 99.4 within 60 s: -2.45 %
    assert fired.id == alert.id and not fired.armed
    message = fire_message(fired, 99.4, book.reference("BTCUSDT", T0 + 40))
    assert message == "BTCUSDT moved -2.45% within 1m (101.9 -> 99.4)"


def test_old_stored_alerts_without_the_new_fields_still_load() -> None:
    stored = {"id": 1, "symbol": "BTCUSDT", "condition": "above", "price": 5.0, "created_at": T0}
    alert = PriceAlert.from_dict(stored)
    assert (alert.window_s, alert.from_side) == (0.0, "")


def test_ids_increase_and_are_never_reused_after_a_delete() -> None:
    book = book_with(("BTCUSDT", "above", 110.0), ("BTCUSDT", "below", 90.0))
    assert book.delete(2).price == 90.0
    with pytest.raises(PriceAlertRejected, match="no price alert #2"):
        book.delete(2)
    assert book.add("ETHUSDT", "above", 10.0, last=5.0, now=T0).id == 3


def test_the_book_round_trips_through_json() -> None:
    book = book_with(("BTCUSDT", "above", 110.0), ("SOLUSDT", "below", 90.0))
    book.add("ETHUSDT", "above", 10.0, last=5.0, now=T0, note="take profit by hand")
    book.on_price("SOLUSDT", 80.0, T0 + 7)
    book.delete(1)
    value = json.loads(json.dumps(book.to_json()))  # what the store keeps is plain JSON
    again = PriceAlertBook.from_json(value)
    assert again == book and again.next_id == 4
    assert again.alerts[2].triggered_at == T0 + 7 and again.alerts[3].note == "take profit by hand"
    assert PriceAlertBook.from_json(None) == PriceAlertBook()


def test_the_snapshot_row_has_iso_times_and_armed() -> None:
    alert = PriceAlert(3, "BTCUSDT", "above", 100000.0, T0, triggered_at=T0 + 1.5)
    assert alert.snapshot_row() == {
        "id": 3,
        "symbol": "BTCUSDT",
        "condition": "above",
        "price": 100000.0,
        "window_s": 0.0,
        "note": "",
        "created_at": "2026-01-01T00:00:00.000Z",
        "triggered_at": "2026-01-01T00:00:01.500Z",
        "armed": False,
    }


def test_parse_alert_spec() -> None:
    assert parse_alert_spec("btcusdt ABOVE 100,000 breakout watch") == (
        "BTCUSDT",
        "above",
        100000.0,
        "breakout watch",
        0.0,
    )
    assert parse_alert_spec("ethusdt crosses 3500") == ("ETHUSDT", "crosses", 3500.0, "", 0.0)
    assert parse_alert_spec("BTCUSDT change 2% 15m news") == ("BTCUSDT", "change", 2.0, "news", 900.0)
    assert parse_alert_spec("BTCUSDT change 1.5 1h")[2:] == (1.5, "", 3600.0)
    for text, expected in [
        ("", "write SYMBOL above|below|crosses PRICE"),
        ("BTCUSDT above", "write SYMBOL above|below|crosses PRICE"),
        ("BTCUSDT over 100", "condition must be above, below, crosses or change"),
        ("BTCUSDT above lots", "price: not a number: 'lots'"),
        ("BTCUSDT change 2%", "a change alert needs a window"),
        ("BTCUSDT change 2% soon", "window: not a number"),
    ]:
        with pytest.raises(PriceAlertRejected) as refused:
            parse_alert_spec(text)
        assert expected in str(refused.value), text


# --- the engine ---------------------------------------------------------------------------------


def _runtime(state_dir: Path) -> EngineRuntime:
    settings = load_settings(state_dir=state_dir).with_values({"sim.demo_trades": 0})
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    return EngineRuntime(settings, state_dir, clock)


def _ticker(runtime: EngineRuntime, symbol: str, last: float) -> Ticker:
    now = runtime.clock.now()
    return Ticker(symbol, last, last, last, last, now)


async def test_an_alert_fires_when_the_price_crosses_and_survives_a_restart(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    await runtime.start()
    try:
        alerts, manager = runtime.price_alerts, runtime.tpsl
        assert alerts is not None and manager is not None and runtime.exchange is not None
        last = runtime.exchange.ticker("BTCUSDT").last
        up = await alerts.add_spec(f"BTCUSDT above {last * 1.01:.1f}")
        down = await alerts.add("BTCUSDT", "below", round(last * 0.99, 1))
        with pytest.raises(PriceAlertRejected, match="needs a price above"):
            await alerts.add("BTCUSDT", "above", round(last * 0.9, 1))
        with pytest.raises(PriceAlertRejected, match="unknown symbol"):
            await alerts.add("NOPEUSDT", "above", 1.0)

        # The scripted price goes through the manager, as the venue stream does, on both accounts.
        await manager.dispatch("main", _ticker(runtime, "BTCUSDT", last * 1.005))
        assert [a["type"] for a in manager.alerts if a["type"] == "price_alert"] == []
        crossing = round(last * 1.02, 1)
        await manager.dispatch("main", _ticker(runtime, "BTCUSDT", crossing))
        await manager.dispatch("mirror", _ticker(runtime, "BTCUSDT", crossing))
        fired = [a for a in manager.alerts if a["type"] == "price_alert"]
        assert [a["message"] for a in fired] == [
            f"BTCUSDT crossed above {up.price:,.10g} (last {crossing:,.10g})"  # 0.7.0: separators
        ]  # once, though both accounts saw the tick
        assert runtime.dashboard is not None
        rows = {r["id"]: r for r in (await runtime.dashboard.snapshot())["price_alerts"]}
        assert rows[up.id]["armed"] is False and rows[up.id]["triggered_at"] is not None
        assert rows[down.id]["armed"] is True and rows[down.id]["triggered_at"] is None
        [msg] = [a for a in (await runtime.dashboard.snapshot())["alerts"] if a["type"] == "price_alert"]
        assert msg["severity"] == "warning"
    finally:
        await runtime.stop()

    again = _runtime(tmp_path)
    await again.start()
    try:
        assert again.price_alerts is not None
        book = again.price_alerts.book
        assert [(a.id, a.armed) for a in book.alerts.values()] == [(up.id, False), (down.id, True)]
        assert await again.price_alerts.delete(down.id) == book.alerts.get(down.id, down)
        assert again.price_alerts.snapshot()[0]["id"] == up.id
        assert (await again.price_alerts.add("BTCUSDT", "below", 1.0)).id == 3  # ids never reused
    finally:
        await again.stop()


async def test_adds_and_deletes_are_durable_at_once(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    await runtime.start()
    try:
        alerts, store = runtime.price_alerts, runtime.store
        assert alerts is not None and store is not None
        records = store.metrics()["journal_records"]
        alert = await alerts.add("ETHUSDT", "below", 1.0)
        assert store.metrics()["journal_records"] > records  # on disk when add() returns
        records = store.metrics()["journal_records"]
        await alerts.delete(alert.id)
        assert store.metrics()["journal_records"] > records
    finally:
        await runtime.stop()
