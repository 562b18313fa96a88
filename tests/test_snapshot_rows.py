"""The monitors and mirror sections rebuilt only where something changed (engine.core.row_memo).

Between two refreshes only a few of a thousand monitors change: a row whose values are all unchanged
is the last build's (the very object), a changed one shows the change, a removed one is gone, and the
whole section equals what a build from scratch gives.
"""

from __future__ import annotations

import random
from dataclasses import replace
from types import MappingProxyType

import pytest
from tpsl_harness import EPOCH, MemoryStore, new_exchange

from engine.alerts.bus import AlertBus
from engine.core.clock import VirtualClock
from engine.core.models import Instrument, ManagedOrder, Monitor, OrderType, Phase, Side, SlotStatus
from engine.core.read_only import read_only
from engine.mirror.follower import LinkState, MirrorFollower, MirrorLink, MirrorParams
from engine.mirror.sizing import MirrorSizing
from engine.scheduler.urgency import Tier
from engine.sim.venue import SimVenue
from engine.trading.manager import TpslManager
from engine.trading.params import TradingParams

SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT", "FFFUSDT")


def new_manager() -> TpslManager:
    clock = VirtualClock(start=EPOCH)
    venue = SimVenue(new_exchange(clock), "main")
    alerts = AlertBus(clock)
    return TpslManager(
        venues={"main": venue}, store=MemoryStore(), clock=clock, params=TradingParams(), alerts=alerts
    )


def order(slot: str, status: SlotStatus = SlotStatus.OPEN) -> ManagedOrder:
    return ManagedOrder(slot, f"link-{slot}", 0, Side.SELL, OrderType.LIMIT, 0.25, status=status)


def monitor(account: str, symbol: str, monitor_id: str = "") -> Monitor:
    m = Monitor(
        monitor_id or f"{account}-{symbol}",
        account,
        symbol,
        Side.BUY,
        "fast",
        0.0,
        90.0,
        tp_prices=[101.0, 102.0, 103.0],
        phase=Phase.MONITORING,
        size=1.0,
        entry_qty=1.0,
        entry_cost=100.123456,
    )
    m.orders = {slot: order(slot) for slot in ("tp1", "tp2", "tp3", "sl")}
    return m


def populated() -> TpslManager:
    manager = new_manager()
    for account in ("main", "mirror"):
        for symbol in SYMBOLS:
            m = monitor(account, symbol)
            manager.monitors[m.key] = m
    manager.instruments.update({s: Instrument(s, 0.01, 0.001, 0.001, 1e6) for s in SYMBOLS if s != "DDDUSDT"})
    return manager


def from_scratch(manager: TpslManager) -> list[object]:
    """The section as a manager that never built it makes it (no row to reuse, no change feed)."""
    fresh = new_manager()
    fresh.monitors, fresh.instruments = dict(manager.monitors), dict(manager.instruments)
    fresh.tiers = dict(manager.tiers)
    return list(fresh.snapshot_monitors())


def by_key(rows: list[object]) -> dict[str, object]:
    return {row["key"]: row for row in rows}  # type: ignore[index]


def changed_copy(manager: TpslManager, key: str) -> Monitor:
    """The monitor of ``key`` replaced by a copy, returned for the caller to change, as the engine
    changes a monitor: a decision works on a copy, which replaces the monitor (never in place)."""
    twin = manager.monitors[key] = manager.monitors[key].copy()
    return twin


def test_only_the_changed_monitors_rows_are_made_again() -> None:
    manager = populated()
    first = by_key(list(manager.snapshot_monitors()))
    main = {s: f"main:{s}:Buy" for s in SYMBOLS}
    changed_copy(manager, main["AAAUSDT"]).sl_price = 99.5
    changed_copy(manager, main["BBBUSDT"]).orders["tp2"].status = SlotStatus.FILLED
    changed_copy(manager, main["CCCUSDT"]).phase = Phase.PROFIT_TAKING
    manager.tiers[main["EEEUSDT"]] = Tier.CRITICAL
    changed_copy(manager, "mirror:AAAUSDT:Buy").entry_cost = 201.0  # a second entry fill
    changed_copy(manager, "mirror:BBBUSDT:Buy").entry_qty = 2.0
    del manager.monitors["mirror:CCCUSDT:Buy"]
    manager.instruments["DDDUSDT"] = Instrument("DDDUSDT", 0.1, 0.001, 0.001, 1e6)  # now known: rounds
    rows = list(manager.snapshot_monitors())
    assert rows == from_scratch(manager)
    second = by_key(rows)
    changed = {
        main["AAAUSDT"]: ("sl_price", 99.5),
        main["BBBUSDT"]: ("tps_filled", 1),
        main["CCCUSDT"]: ("phase", "PROFIT_TAKING"),
        main["DDDUSDT"]: ("avg_entry", 100.1),
        main["EEEUSDT"]: ("urgency", "critical"),
        "mirror:AAAUSDT:Buy": ("avg_entry", 201.0),
        "mirror:BBBUSDT:Buy": ("avg_entry", 50.06),
        "mirror:DDDUSDT:Buy": ("avg_entry", 100.1),
    }
    for key, (field, value) in changed.items():
        assert second[key][field] == value and second[key] is not first[key], key  # type: ignore[index]
    assert "mirror:CCCUSDT:Buy" not in second
    assert set(second) == set(first) - {"mirror:CCCUSDT:Buy"}
    unchanged = set(second) - set(changed)
    assert len(unchanged) == 3 and all(second[k] is first[k] for k in unchanged)  # reused, not rebuilt
    # A monitor opened again under a key, gone from the last build or not, gets its own row.
    manager.monitors["mirror:CCCUSDT:Buy"] = monitor("mirror", "CCCUSDT", monitor_id="again")
    manager.monitors[main["FFFUSDT"]] = monitor("main", "FFFUSDT", monitor_id="again")
    third = by_key(list(manager.snapshot_monitors()))
    assert third["mirror:CCCUSDT:Buy"]["monitor_id"] == "again"  # type: ignore[index]
    assert third[main["FFFUSDT"]]["monitor_id"] == "again"  # type: ignore[index]
    assert all(third[k] is second[k] for k in second if k != main["FFFUSDT"])


def test_tps_filled_counts_the_tp_slots_finished_by_fills() -> None:
    m = monitor("main", "AAAUSDT")
    assert m.tps_filled() == 0
    m.orders["tp1"].status = SlotStatus.FILLED
    m.orders["sl"].status = SlotStatus.FILLED  # not a TP
    m.orders["tp2"].status = SlotStatus.GONE
    assert m.tps_filled() == 1
    m.orders["tp4"] = order("tp4", SlotStatus.FILLED)  # beyond the TP prices: not counted
    m.orders["e1"] = order("e1", SlotStatus.FILLED)
    assert m.tps_filled() == 1
    m.tp_prices.append(104.0)
    assert m.tps_filled() == 2
    del m.orders["tp1"]
    assert m.tps_filled() == 1
    # Whatever the orders, the count of TP slots (tp1..tpN) whose order is filled.
    rng = random.Random(7)
    slots = ["tp1", "tp2", "tp3", "tp4", "tp5", "tp10", "sl", "e1", "cl", "tp0"]
    for _ in range(300):
        m.tp_prices = [100.0 + i for i in range(rng.randrange(0, 6))]
        m.orders = {s: order(s, rng.choice(list(SlotStatus))) for s in rng.sample(slots, rng.randrange(0, 8))}
        expected = sum(1 for s in m.tp_slots() if s in m.orders and m.orders[s].status is SlotStatus.FILLED)
        assert m.tps_filled() == expected


def new_follower(manager: TpslManager) -> MirrorFollower:
    return MirrorFollower(
        manager=manager,
        venues={},
        store=MemoryStore(),
        clock=manager.clock,
        scheduler=manager.scheduler,
        alerts=manager.alerts,
        params=MirrorParams(MirrorSizing("fixed_ratio", 0.5)),
    )


def linked() -> MirrorFollower:
    manager = populated()
    follower = new_follower(manager)
    for symbol in SYMBOLS:
        main, mirror = manager.monitors[f"main:{symbol}:Buy"], manager.monitors[f"mirror:{symbol}:Buy"]
        mirror.size = 0.5
        follower.links[main.key] = MirrorLink(
            main.key, main.monitor_id, symbol, "Buy", LinkState.OPEN, 0.5, 0.5, mirror.monitor_id
        )
    return follower


def links_from_scratch(follower: MirrorFollower) -> list[object]:
    fresh = new_follower(follower.manager)
    fresh.links = follower.links
    return list(fresh.snapshot()["links"])


def by_main_key(rows: list[object]) -> dict[str, object]:
    return {row["main_key"]: row for row in rows}  # type: ignore[index]


def test_only_the_changed_links_rows_are_made_again() -> None:
    follower = linked()
    monitors = follower.manager.monitors
    first = by_main_key(list(follower.snapshot()["links"]))
    assert first["main:AAAUSDT:Buy"] == {
        "main_key": "main:AAAUSDT:Buy",
        "mirror_key": "mirror:AAAUSDT:Buy",
        "state": "open",
        "ratio": 0.5,
        "qty_ratio": 0.5,
        "main_size": 1.0,
        "mirror_size": 0.5,
        "expected_size": 0.5,
        "drift": (),
        "note": "",
    }
    monitors["main:AAAUSDT:Buy"] = replace(monitors["main:AAAUSDT:Buy"], size=0.4)  # main took a profit
    follower.links["main:BBBUSDT:Buy"].drift = ("excess",)  # as the drift check sets it
    monitors["mirror:CCCUSDT:Buy"] = monitor("mirror", "CCCUSDT", monitor_id="not-the-linked-one")
    del follower.links["main:DDDUSDT:Buy"]
    links = follower.snapshot()["links"]
    assert links == links_from_scratch(follower)
    second = by_main_key(list(links))
    assert second["main:AAAUSDT:Buy"]["main_size"] == 0.4  # type: ignore[index]
    assert second["main:AAAUSDT:Buy"]["expected_size"] == 0.2  # type: ignore[index]
    assert list(second["main:BBBUSDT:Buy"]["drift"]) == ["excess"]  # type: ignore[index]
    assert second["main:CCCUSDT:Buy"]["mirror_size"] == 0.0  # type: ignore[index]
    changed = {"main:AAAUSDT:Buy", "main:BBBUSDT:Buy", "main:CCCUSDT:Buy"}
    assert all(second[k] is not first[k] for k in changed)
    assert set(second) == changed | {"main:EEEUSDT:Buy", "main:FFFUSDT:Buy"}  # DDD's link is gone
    assert all(second[k] is first[k] for k in set(second) - changed)  # reused, not rebuilt
    # Nothing changed since: every row is the last build's.
    third = by_main_key(list(follower.snapshot()["links"]))
    assert all(third[k] is second[k] for k in second)
    follower.links["main:AAAUSDT:Buy"].state = LinkState.CLOSING
    fourth = by_main_key(list(follower.snapshot()["links"]))
    assert fourth["main:AAAUSDT:Buy"]["state"] == "closing"  # type: ignore[index]
    assert fourth["main:BBBUSDT:Buy"] is third["main:BBBUSDT:Buy"]


def test_a_snapshot_looks_only_at_the_links_that_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    follower = linked()
    follower.snapshot()
    looked: list[str] = []
    real = follower._link_inputs
    monkeypatch.setattr(follower._link_rows, "_inputs", lambda key: looked.append(key) or real(key))
    follower.snapshot()
    assert looked == []  # nothing changed: not one link looked at
    monitors = follower.manager.monitors
    monitors["mirror:EEEUSDT:Buy"] = replace(monitors["mirror:EEEUSDT:Buy"], size=0.4)
    follower.links["main:FFFUSDT:Buy"].note = "breakeven not moved yet"
    links = follower.snapshot()["links"]
    assert sorted(looked) == ["main:EEEUSDT:Buy", "main:FFFUSDT:Buy"]
    assert links == links_from_scratch(follower)
    # a link saved and loaded again is the same link (the flag is not part of its saved form)
    saved = follower.links["main:FFFUSDT:Buy"].to_dict()
    assert "changed" not in saved and MirrorLink.from_dict(saved) == follower.links["main:FFFUSDT:Buy"]


@pytest.mark.parametrize("seed", range(20))
def test_the_links_section_after_any_changes_is_the_one_made_from_scratch(seed: int) -> None:
    rng = random.Random(seed)
    follower = linked()
    manager = follower.manager
    for _ in range(12):
        follower.snapshot()
        for _ in range(rng.randrange(1, 4)):
            symbol = rng.choice(SYMBOLS)
            main_key, mirror_key = f"main:{symbol}:Buy", f"mirror:{symbol}:Buy"
            change = rng.randrange(7)
            if change == 0 and mirror_key in manager.monitors:  # the mirror's fill
                manager.monitors[mirror_key] = replace(manager.monitors[mirror_key], size=rng.random())
            elif change == 1 and main_key in manager.monitors:  # main closed
                del manager.monitors[main_key]
            elif change == 2:  # main opened again
                manager.monitors[main_key] = replace(monitor("main", symbol, f"m{rng.random()}"), size=0.3)
            elif change == 3 and main_key in follower.links:
                follower.links[main_key].state = rng.choice(list(LinkState))
                follower.links[main_key].drift = tuple(rng.sample(["excess", "deficit", "breakeven"], 2))
            elif change == 4:
                follower.links.pop(main_key, None)
            elif change == 5:
                main = manager.monitors.get(main_key) or monitor("main", symbol)
                follower.links[main_key] = MirrorLink(main_key, main.monitor_id, symbol, "Buy", ratio=0.25)
            else:  # an instrument learnt: its step rounds the expected size
                manager.instruments[symbol] = Instrument(symbol, 0.01, 0.01, 0.01, 1e6)
        assert follower.snapshot()["links"] == links_from_scratch(follower)


def test_a_section_of_read_only_rows_is_frozen_as_a_tuple_of_them_without_a_call_per_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The long sections' rows are read-only where built: freezing the section does not walk them
    one by one (thousands of calls per snapshot); a section with a row still mutable is frozen deep."""
    import engine.dashboard.snapshot as snapshot_module

    rows = [read_only({"symbol": f"S{n}", "qty": float(n)}) for n in range(1000)]
    calls = 0
    real = snapshot_module._freeze

    def counted(value: object) -> object:
        nonlocal calls
        calls += 1
        return real(value)

    monkeypatch.setattr(snapshot_module, "_freeze", counted)
    frozen = counted(tuple(rows))
    assert calls == 1 and frozen == tuple(rows) and all(a is b for a, b in zip(frozen, rows, strict=True))
    mixed = counted([*rows[:3], {"symbol": "X", "tags": [1, 2]}])
    assert isinstance(mixed, tuple) and mixed[:3] == tuple(rows[:3])
    assert isinstance(mixed[3], MappingProxyType) and mixed[3]["tags"] == (1, 2)


def test_a_monitor_object_seen_at_the_last_build_is_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """At a thousand positions every build asked each of two thousand monitors its values and its
    TPs filled (a pass over its orders) to find the few that changed. A monitor is replaced, never
    changed in place, when it changes: the same object with the same instrument and tier is the
    same row, unread; a copy that differs is read and its row made again; an equal copy keeps it."""
    manager = populated()
    first = by_key(list(manager.snapshot_monitors()))
    asked: list[str] = []
    counted = Monitor.tps_filled

    def tps_filled(self: Monitor) -> int:
        asked.append(self.key)
        return counted(self)

    monkeypatch.setattr(Monitor, "tps_filled", tps_filled)
    again = by_key(list(manager.snapshot_monitors()))
    assert asked == [] and all(again[k] is first[k] for k in first)
    changed_copy(manager, "main:AAAUSDT:Buy").orders["tp1"].status = SlotStatus.FILLED
    changed_copy(manager, "main:BBBUSDT:Buy")  # equal: nothing shown changed
    third = by_key(list(manager.snapshot_monitors()))
    assert asked == ["main:AAAUSDT:Buy"] and third["main:AAAUSDT:Buy"]["tps_filled"] == 1  # type: ignore[index]
    assert all(third[k] is first[k] for k in first if k != "main:AAAUSDT:Buy")
    assert list(third.values()) == from_scratch(manager)


def test_a_build_looks_only_at_the_monitors_and_tiers_set_since_the_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At a thousand positions a pass over two thousand monitors to find the few that changed cost
    milliseconds of every build: the manager knows which keys it set (its monitors and tiers are
    TrackedDicts), and a build looks at those alone; an instrument learnt makes every row again."""
    manager = populated()
    looked: list[str] = []
    inputs = manager._monitor_inputs

    def counted(key: str) -> object:
        looked.append(key)
        return inputs(key)

    monkeypatch.setattr(manager._monitor_rows, "_inputs", counted)
    first = by_key(list(manager.snapshot_monitors()))
    assert sorted(looked) == sorted(manager.monitors)
    looked.clear()
    assert by_key(list(manager.snapshot_monitors())) == first and looked == []
    changed_copy(manager, "main:AAAUSDT:Buy").sl_price = 99.0
    manager.tiers["mirror:BBBUSDT:Buy"] = Tier.CRITICAL
    del manager.monitors["main:CCCUSDT:Buy"]
    rows = list(manager.snapshot_monitors())
    assert sorted(looked) == ["main:AAAUSDT:Buy", "main:CCCUSDT:Buy", "mirror:BBBUSDT:Buy"]
    assert rows == from_scratch(manager)
    looked.clear()
    manager.instruments["DDDUSDT"] = Instrument("DDDUSDT", 0.1, 0.001, 0.001, 1e6)
    assert list(manager.snapshot_monitors()) == from_scratch(manager)
    assert sorted(looked) == sorted(manager.monitors)


def test_the_monitors_section_follows_any_sequence_of_changes_as_made_from_scratch() -> None:
    rng = random.Random(5)
    manager = populated()
    keys = [f"{account}:{symbol}:Buy" for account in ("main", "mirror") for symbol in SYMBOLS]
    for step in range(300):
        for _ in range(rng.randrange(0, 4)):
            key = rng.choice(keys)
            account, symbol, _side = key.split(":")
            roll = rng.random()
            if roll < 0.2:
                manager.monitors.pop(key, None)
            elif roll < 0.4 or key not in manager.monitors:
                manager.monitors[key] = monitor(account, symbol, monitor_id=f"m{step}")
            elif roll < 0.6:
                changed_copy(manager, key).size = rng.choice([0.5, 1.0, 2.0])
            elif roll < 0.8:
                manager.tiers[key] = rng.choice(list(Tier))
            elif roll < 0.9:
                manager.tiers.pop(key, None)
            else:  # learnt again, maybe at another tick
                manager.instruments[symbol] = Instrument(symbol, rng.choice([0.01, 0.1]), 0.001, 0.001, 1e6)
        assert list(manager.snapshot_monitors()) == from_scratch(manager)
