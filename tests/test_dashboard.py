"""The dashboard snapshot on the simulator: its pinned JSON schema, how it reads the venues in each
profile, freshness after a fill, and profile switches in both directions in the middle of a run."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from engine.alerts.bus import AlertBus
from engine.alerts.price import PriceAlertManager
from engine.commands.headless import HeadlessOptions, run_engine
from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.models import OrderRequest, OrderType, Side, Ticker, Trade, TriggerDirection
from engine.core.profile import TOGGLES, Profile
from engine.core.settings import Settings, load_settings
from engine.dashboard.cache import CATEGORIES
from engine.dashboard.insights import NotesDue
from engine.dashboard.schema import SNAPSHOT_KEYS, Snapshot
from engine.dashboard.snapshot import Dashboard, DashboardSnapshot, DashboardSources
from engine.runtime.assembly import EngineRuntime, EngineState
from engine.scheduler.jobs import Scheduler
from engine.scheduler.urgency import Tier
from engine.sim.exchange import SimExchange
from engine.sim.venue import SimVenue
from engine.trading.ledger import Ledger
from engine.trading.manager import TpslManager
from engine.venue.base import Endpoint, Venue
from persistence.store import Store

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


def make_settings(state_dir: Path) -> Settings:
    return load_settings(state_dir=state_dir).with_values({"sim.demo_trades": 0, "sim.symbols": SYMBOLS})


class FakeTpsl:
    """The slice of the TpslManager the dashboard reads (its monitors, ledger and stream health):
    nothing managed until :meth:`manage` is called."""

    def __init__(self) -> None:
        self.monitors: dict[str, SimpleNamespace] = {}
        self.ledger = Ledger()
        self.streams: dict[str, Any] = {}
        self.sl_price = 0.0

    def manage(self, sl_price: float) -> None:
        """One monitored BTC position with its stop at ``sl_price``, one closed trade, one stream."""
        self.monitors = {
            "main:BTCUSDT:Buy": SimpleNamespace(account="main", symbol="BTCUSDT", sl_price=sl_price)
        }
        trade = Trade("main", "ETHUSDT", Side.BUY, "fast", "tp", 100.0, 110.0, 1.0, 9.9, 0.1, 0.0, 60.0)
        self.ledger = Ledger([trade])
        self.streams = {"main": {"push": True, "connected": True, "last_event_age_s": 0.5}}
        self.sl_price = sl_price

    def snapshot_monitors(self) -> list[dict[str, Any]]:
        return [
            {
                "key": key,
                "account": "main",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "approach": "fast",
                "phase": "MONITORING",
                "avg_entry": 95000.0,
                "size": 0.01,
                "tps_filled": 0,
                "sl_price": self.sl_price,
                "breakeven": False,
                "urgency": None,
            }
            for key in self.monitors
        ]

    def snapshot_streams(self) -> dict[str, Any]:
        return self.streams

    def snapshot_monitoring(self) -> dict[str, Any]:
        return {"adaptive": True, "batching": True, "tiers": {}, "checks": {}, "intervals": {}}

    @property
    def scheduler(self) -> Scheduler:
        return Scheduler(VirtualClock())  # no jobs: the bare simulator runs none of the engine's


class FakeStore:
    """A store that has written nothing (the persistence section of a bare simulator)."""

    def metrics(self) -> dict[str, Any]:
        return {}


class NoPriceAlerts:
    """An empty price-alert book."""

    def snapshot(self) -> list[dict[str, Any]]:
        return []


@dataclass
class SimHost:
    """The dashboard over a bare simulator, without the TP/SL engine (so only the dashboard reads):
    stand-ins for the manager, the store and the price alerts, and a real alert bus."""

    settings: Settings
    clock: VirtualClock
    exchange: SimExchange
    venues: dict[str, Venue]
    profile: Profile
    alerts: AlertBus
    tpsl: FakeTpsl = field(default_factory=FakeTpsl)
    state: EngineState = EngineState.RUNNING
    venue_label: str = "sim"
    dashboard: Dashboard | None = None

    def sources(self) -> DashboardSources:
        return DashboardSources(
            settings=self.settings,
            clock=self.clock,
            venues=self.venues,
            manager=cast(TpslManager, self.tpsl),
            store=cast(Store, FakeStore()),
            price_alerts=cast(PriceAlertManager, NoPriceAlerts()),
            alerts=self.alerts,
            engine_state=lambda: self.state.value,
            venue_label=self.venue_label,
        )


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimHost]:
    settings = make_settings(tmp_path)
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    exchange = SimExchange.from_settings(settings, clock, tmp_path)
    venues: dict[str, Venue] = {name: SimVenue(exchange, name) for name in ("main", "mirror")}
    profile = Profile.from_settings(settings, tmp_path)
    host = SimHost(settings, clock, exchange, venues, profile, AlertBus(clock))
    host.dashboard = dashboard = await Dashboard.create(host.sources(), host.profile)
    tasks = [asyncio.ensure_future(exchange.run())]
    tasks += [asyncio.ensure_future(dashboard.follow(venue)) for venue in venues.values()]
    await clock.drive(until=clock.now())  # the feeds subscribe
    yield host
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await dashboard.close()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[EngineRuntime]:
    """The whole engine (TP/SL manager and store included), as the console runs it."""
    settings = make_settings(tmp_path)
    runtime = EngineRuntime(settings, tmp_path, VirtualClock(start=parse_iso_utc(settings.get("sim.epoch"))))
    await runtime.start()
    yield runtime
    await runtime.stop()


def clock_of(host: Any) -> VirtualClock:
    assert isinstance(host.clock, VirtualClock)
    return host.clock


async def open_position(runtime: Any, account: str, symbol: str, qty: float, stop: bool = True) -> None:
    """A market entry and (optionally) its reduce-only stop 5 % below, straight on the exchange."""
    exchange = runtime.exchange
    exchange.place(account, OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty))
    if stop:
        trigger = exchange.instruments[symbol].round_price(exchange.ticker(symbol).last * 0.95)
        request = OrderRequest(
            symbol,
            Side.SELL,
            OrderType.MARKET,
            qty,
            trigger_price=trigger,
            trigger_direction=TriggerDirection.FALL,
            reduce_only=True,
            close_on_trigger=True,
        )
        exchange.place(account, request)
    await clock_of(runtime).drive(until=runtime.clock.now())  # let the event feed run


async def snapshot(runtime: Any) -> DashboardSnapshot:
    assert runtime.dashboard is not None
    return await runtime.dashboard.snapshot()


def calls(snap: DashboardSnapshot, account: str, endpoint: str) -> int:
    return int(snap["api_calls"][account].get(endpoint, 0))


async def test_the_snapshot_keys_the_console_and_the_benchmark_rely_on(sim: SimHost) -> None:
    await open_position(sim, "main", "BTCUSDT", 0.01)
    data: dict[str, Any] = json.loads((await snapshot(sim)).to_json())
    assert list(data) == sorted(SNAPSHOT_KEYS) and set(data) == set(SNAPSHOT_KEYS)
    contract = {
        "time",
        "venue",
        "engine_state",
        "profile",
        "accounts",
        "positions",
        "orders",
        "monitors",
        "ledger",
        "stats",
        "market",
        "insights",
        "cache",
        "persistence",
        "api_calls",
        "alerts",
        "streams",
        "price_alerts",
        "scheduler",
    }  # shared/CONTRACTS.md: keys may be added, never removed or renamed
    # added since, and read by the console (monitoring, mirror, statistics, data_age), the benchmark
    # and the soak (mirror, api_budget), or the alert panel (alert_delivery)
    later = {"monitoring", "api_budget", "mirror", "statistics", "alert_delivery", "data_age"}
    assert contract | later <= set(data)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["time"])
    assert data["venue"] == "sim"
    assert data["engine_state"] in ("running", "reconciling", "paused", "degraded")
    assert set(data["profile"]) == set(TOGGLES)
    assert set(data["profile"].values()) <= {"optimized", "baseline", "pending"}
    assert set(data["accounts"]) == {"main", "mirror"}
    for row in data["accounts"].values():
        assert {"equity", "available", "upnl", "positions", "orders"} <= set(row)
    position_keys = {"account", "symbol", "side", "size", "entry_price", "mark_price", "upnl"}
    [position] = data["positions"]
    assert position_keys <= set(position)
    assert (position["account"], position["symbol"], position["side"], position["size"]) == (
        "main",
        "BTCUSDT",
        "Buy",
        0.01,
    )
    order_keys = {"account", "symbol", "side", "order_type", "qty", "price", "trigger_price", "reduce_only"}
    [order] = data["orders"]
    assert order_keys | {"link_id", "purpose", "status"} <= set(order)
    assert set(data["market"]) == set(SYMBOLS)
    # 0.7.0 added the instrument's tick size and qty step (the console's column decimals)
    assert all(set(row) == {"last", "mark", "tick_size", "qty_step"} for row in data["market"].values())
    assert {"trades", "totals"} <= set(data["ledger"])
    assert {"count", "wins", "losses", "pnl", "fees"} <= set(data["ledger"]["totals"])
    assert isinstance(data["monitors"], list) and isinstance(data["insights"], list)
    assert {"enabled", "hit_rate", "categories"} <= set(data["cache"])
    assert set(data["cache"]["categories"]) == set(CATEGORIES)
    for row in data["cache"]["categories"].values():
        assert {"ttl", "hits", "misses", "hit_rate", "mean_load_ms", "entries"} <= set(row)
    assert isinstance(data["persistence"], dict) and isinstance(data["alerts"], list)
    assert set(data["api_calls"]) == {"main", "mirror"}
    assert data["price_alerts"] == []
    assert {"adaptive", "batching", "tiers", "checks", "intervals"} <= set(data["monitoring"])
    assert {"enabled", "links", "queue", "counts"} <= set(data["mirror"])
    assert "all" in data["statistics"]["by_account"]
    assert {"enabled", "outbox", "sinks"} <= set(data["alert_delivery"])
    assert set(data["data_age"]) == {"account_data", "positions", "orders", "market_data", "oldest"}
    # streams, scheduler and api_budget come from the engine (empty over the bare dashboard): see
    # test_the_engines_own_sections_have_their_rows


async def test_the_engines_own_sections_have_their_rows(engine: EngineRuntime) -> None:
    data: dict[str, Any] = json.loads((await snapshot(engine)).to_json())
    assert set(data["streams"]) == {"main", "mirror"}
    assert all({"connected", "push", "last_event_age_s"} <= set(row) for row in data["streams"].values())
    assert {"store-flush", "price-alerts"} <= set(data["scheduler"])
    job_keys = {"interval_s", "runs", "mean_ms", "max_ms", "overruns", "next_due"}  # CONTRACTS.md
    assert all(job_keys <= set(row) for row in data["scheduler"].values())
    assert set(data["monitoring"]["tiers"]) == set(data["monitoring"]["intervals"]) == {t.value for t in Tier}
    assert set(data["api_budget"]) == {"main", "mirror"}
    for row in data["api_budget"].values():
        assert {"orders", "amend", "amend_batch", "reads", "ip"} <= set(row)
        assert all({"left", "limit", "reset_in_s"} <= set(window) for window in row.values())


def test_the_snapshot_keys_are_the_keys_of_its_type() -> None:
    assert tuple(Snapshot.__annotations__) == SNAPSHOT_KEYS


async def test_the_snapshot_is_immutable(sim: SimHost) -> None:
    snap = await snapshot(sim)
    with pytest.raises(TypeError):
        snap.data["accounts"]["main"]["equity"] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.data["time"] = "now"  # type: ignore[index]


async def test_the_long_sections_rows_are_built_read_only_and_kept_not_copied(sim: SimHost) -> None:
    """At a thousand positions the deep copy of every row on every refresh was most of a snapshot's
    cost. The rows of the long sections are built read-only, so the freeze keeps them as they are,
    and an order's row is built once while the order is unchanged."""
    await open_position(sim, "main", "BTCUSDT", 0.01)
    await open_position(sim, "main", "ETHUSDT", 0.1)
    first, second = await snapshot(sim), await snapshot(sim)
    assert len(first["orders"]) == 2 and len(first["positions"]) == 2 and first["market"]
    assert all(a is b for a, b in zip(first["orders"], second["orders"], strict=True))
    for row in (
        first["orders"][0],
        first["positions"][0],
        first["monitors"][0] if first["monitors"] else None,
    ):
        if row is not None:
            with pytest.raises(TypeError):
                row["symbol"] = "X"
    with pytest.raises(TypeError):
        first["market"]["BTCUSDT"]["last"] = 0.0  # type: ignore[index]


async def test_optimized_reads_once_per_account_and_then_serves_from_the_cache(sim: SimHost) -> None:
    await open_position(sim, "main", "BTCUSDT", 0.01)
    await open_position(sim, "main", "ETHUSDT", 0.1)
    first = await snapshot(sim)
    for account in ("main", "mirror"):
        assert calls(first, account, Endpoint.POSITIONS) == 1
        assert calls(first, account, Endpoint.OPEN_ORDERS) == 1
    assert calls(first, "mirror", Endpoint.WALLET) == 1
    assert calls(first, "main", Endpoint.WALLET) == 0  # written through by the wallet events of the fills
    assert calls(first, "main", Endpoint.TICKERS) == 1  # one read for every symbol
    second = await snapshot(sim)
    assert second["api_calls"] == first["api_calls"]  # no venue read at all
    assert second["cache"]["categories"]["full_dashboard"]["hits"] == 1
    assert [p["symbol"] for p in second["positions"]] == ["BTCUSDT", "ETHUSDT"]


async def test_baseline_reads_one_symbol_at_a_time_as_the_original(sim: SimHost) -> None:
    await sim.profile.rollback_all()
    await open_position(sim, "main", "SOLUSDT", 1.0)
    snap = await snapshot(sim)
    for account in ("main", "mirror"):
        assert calls(snap, account, Endpoint.POSITIONS) == len(SYMBOLS)
        assert calls(snap, account, Endpoint.OPEN_ORDERS) == len(SYMBOLS)
    assert calls(snap, "main", Endpoint.TICKERS) == len(SYMBOLS)
    assert [p["symbol"] for p in snap["positions"]] == ["SOLUSDT"]
    assert snap["cache"]["enabled"] is False


async def test_a_fill_shows_at_once_when_optimized_but_after_the_ttls_in_baseline(sim: SimHost) -> None:
    clock = clock_of(sim)
    assert (await snapshot(sim))["positions"] == ()
    await open_position(sim, "main", "BTCUSDT", 0.01)
    assert len((await snapshot(sim))["positions"]) == 1  # the execution invalidated the entries

    await sim.profile.rollback_all()
    await clock.drive(until=clock.now() + 61.0)  # every baseline entry but ai_insights expired
    assert len((await snapshot(sim))["positions"]) == 1
    await open_position(sim, "main", "ETHUSDT", 0.1)
    assert len((await snapshot(sim))["positions"]) == 1  # stale: no invalidation in the original
    await clock.drive(until=clock.now() + 21.0)  # past positions (10 s) and full_dashboard (20 s)
    assert len((await snapshot(sim))["positions"]) == 2


async def test_profile_switches_both_ways_in_the_middle_of_a_run(engine: EngineRuntime) -> None:
    clock = clock_of(engine)
    assert engine.store is not None
    await open_position(engine, "main", "BTCUSDT", 0.01)
    await open_position(engine, "mirror", "ETHUSDT", 0.1, stop=False)
    await clock.drive(until=clock.now() + 5.0)
    before = await snapshot(engine)
    assert before["profile"]["cache_ttls"] == "optimized" and before["cache"]["enabled"] is True
    assert before["cache"]["categories"]["positions"]["ttl"] == 15.0
    assert before["persistence"]["policy"] == "smart"

    assert sorted(await engine.profile.rollback_all()) == sorted(TOGGLES)
    await clock.drive(until=clock.now() + 5.0)
    during = await snapshot(engine)
    assert during["profile"]["cache_ttls"] == "baseline" and during["profile"]["cache_metrics"] == "baseline"
    assert during["profile"]["smart_persistence"] == "baseline"
    assert during["profile"]["api_batching"] == "baseline"  # the TP/SL manager applies both
    assert during["profile"]["adaptive_intervals"] == "baseline"
    assert during["monitoring"]["adaptive"] is False and during["monitoring"]["batching"] is False
    assert during["cache"]["enabled"] is False and during["cache"]["hit_rate"] is None
    assert during["cache"]["categories"]["positions"]["ttl"] == 10.0
    assert during["persistence"]["policy"] == "simple"
    assert [(p["account"], p["symbol"]) for p in during["positions"]] == [
        ("main", "BTCUSDT"),
        ("mirror", "ETHUSDT"),
    ]

    await engine.profile.restore_all()
    await clock.drive(until=clock.now() + 5.0)
    after = await snapshot(engine)
    assert after["profile"]["cache_ttls"] == "optimized" and after["cache"]["enabled"] is True
    assert after["cache"]["categories"]["positions"]["ttl"] == 15.0
    assert after["cache"]["totals"]["hits"] + after["cache"]["totals"]["misses"] > 0  # counting again
    assert after["persistence"]["policy"] == "smart"
    assert after["monitoring"]["adaptive"] is True and after["monitoring"]["batching"] is True
    assert [(p["account"], p["symbol"]) for p in after["positions"]] == [
        ("main", "BTCUSDT"),
        ("mirror", "ETHUSDT"),
    ]


async def test_headless_snapshot_out_is_this_snapshot(tmp_path: Path) -> None:
    out = tmp_path / "snap.json"
    options = HeadlessOptions(clock="virtual", duration_s=3.0, snapshot_out=out)
    await run_engine(make_settings(tmp_path), tmp_path / "state", options)
    data = json.loads(out.read_text())
    assert set(data) == set(SNAPSHOT_KEYS)
    assert data["cache"]["enabled"] is True and set(data["market"]) == set(SYMBOLS)


async def test_monitors_ledger_stats_and_alerts_come_from_the_tpsl_manager(sim: SimHost) -> None:
    await open_position(sim, "main", "BTCUSDT", 0.01, stop=False)
    sl_price = sim.exchange.ticker("BTCUSDT").last * 0.98
    sim.tpsl.manage(sl_price)
    sim.alerts.raise_alert("info", "a", "first")
    sim.alerts.raise_alert("warning", "b", "second")
    snap = await snapshot(sim)
    [position] = snap["positions"]
    assert (position["phase"], position["tps_filled"], position["sl_price"]) == ("MONITORING", 0, sl_price)
    assert position["breakeven"] is False and position["urgency"] is None
    assert [m["key"] for m in snap["monitors"]] == ["main:BTCUSDT:Buy"]
    assert snap["ledger"]["totals"]["count"] == 1 and snap["stats"]["wins"] == 1
    assert snap["ledger"]["by_account"] == {"main": snap["ledger"]["totals"]}  # one account traded
    assert [a["message"] for a in snap["alerts"]] == ["second", "first"]  # newest first
    assert snap["streams"] == {"main": {"push": True, "connected": True, "last_event_age_s": 0.5}}
    assert snap["engine_state"] == "running"
    sim.state = EngineState.RECONCILING  # the runtime's state (derived from the manager) is shown
    assert (await snapshot(sim))["engine_state"] == "reconciling"
    kinds = {(n["kind"], n["symbol"]) for n in snap["insights"]}
    assert ("stop_distance", "BTCUSDT") in kinds  # the monitor's SL, though no stop order is open
    assert ("no_stop", "BTCUSDT") not in kinds


async def test_a_long_snapshot_is_frozen_in_chunks_and_the_engine_runs_between_them() -> None:
    """The snapshot is built on the engine's loop: with a thousand positions, a fill that arrives
    meanwhile is decided between two chunks of the copy, not after all of it; the copy is the same."""
    from engine.dashboard.snapshot import FREEZE_ROWS, freeze, freeze_yielding

    rows = [
        {"symbol": f"S{i:04d}", "qty": float(i), "tags": [i, {"deep": [i]}]} for i in range(4 * FREEZE_ROWS)
    ]
    data = cast(Snapshot, {key: {} for key in SNAPSHOT_KEYS} | {"positions": rows, "orders": list(rows)})
    order: list[str] = []

    async def build() -> DashboardSnapshot:
        snapshot = await freeze_yielding(data)
        order.append("built")
        return snapshot

    async def fill() -> None:
        order.append("fill decided")

    building = asyncio.ensure_future(build())
    await asyncio.sleep(0)  # the build has started
    deciding = asyncio.ensure_future(fill())
    snapshot, _ = await asyncio.gather(building, deciding)
    assert order == ["fill decided", "built"]
    assert snapshot.to_json() == freeze(data).to_json()
    assert isinstance(snapshot["positions"], tuple) and snapshot["positions"][3]["tags"][1]["deep"] == (3,)


async def test_a_snapshot_composes_once_the_fill_being_decided_is_out(engine: EngineRuntime) -> None:
    """A snapshot's long pieces step aside for a fill being decided (the engine's precedence): the
    decision's write-ahead and first request no longer queue behind tens of ms of composing."""
    await snapshot(engine)  # the cache is warm: the next one is CPU only
    assert engine.tpsl is not None
    precedence = engine.tpsl.precedence
    urgency = precedence.urgent()
    building = asyncio.ensure_future(snapshot(engine))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not building.done()  # waiting at its first turn
    urgency.end()
    built = await clock_of(engine).drive_while(building)
    assert built["positions"] == (await snapshot(engine))["positions"]
    assert precedence.waits >= 1


async def test_the_change_mark_moves_with_venue_events_and_alerts_not_with_snapshots(sim: SimHost) -> None:
    """The console refreshes when this mark moved (issue 16, item 13): building snapshots moves the
    cache's hit counters but no data, so it must not move the mark."""
    dashboard = sim.dashboard
    assert dashboard is not None
    clock = clock_of(sim)
    before = dashboard.changes()
    for _ in range(3):
        await snapshot(sim)  # building snapshots (cache hits and misses) changes no data
    assert dashboard.changes() == before

    await clock.drive(until=clock.now() + 2.0)  # the simulator's prices tick: ticker events
    ticked = dashboard.changes()
    assert ticked[0] > before[0] and ticked[1] == before[1]

    await open_position(sim, "main", "BTCUSDT", 0.01)  # an execution, order and position updates
    filled = dashboard.changes()
    assert filled[0] > ticked[0]

    sim.alerts.raise_alert("warning", "test", "something to show")
    assert dashboard.changes() == (filled[0], filled[1] + 1)


def stop_notes(snap: DashboardSnapshot) -> dict[str, str]:
    return {n["symbol"]: n["message"] for n in snap["insights"] if n["kind"] == "stop_distance"}


async def test_an_event_makes_its_symbols_risk_notes_again_and_the_others_wait_for_their_ttl(
    sim: SimHost,
) -> None:
    """At a thousand positions an order event on one symbol made every risk note again at the new
    marks (a third of each snapshot build). The notes of the event's symbol are made again; the
    others keep theirs until the notes' TTL, as the cached notes always did between events."""
    assert sim.dashboard is not None
    sim.dashboard.cache.set_ttl("ai_insights", 120.0)
    await open_position(sim, "main", "BTCUSDT", 0.01)
    await open_position(sim, "main", "ETHUSDT", 0.1)
    first = stop_notes(await snapshot(sim))
    await sim.clock.drive(until=sim.clock.now() + 60.0)  # the marks move
    exchange = sim.exchange
    trigger = exchange.instruments["BTCUSDT"].round_price(exchange.ticker("BTCUSDT").last * 0.97)
    exchange.place(
        "main",
        OrderRequest(
            "BTCUSDT",
            Side.SELL,
            OrderType.MARKET,
            0.01,
            trigger_price=trigger,
            trigger_direction=TriggerDirection.FALL,
            reduce_only=True,
            close_on_trigger=True,
        ),
    )  # an event about BTCUSDT alone: a nearer stop
    await sim.clock.drive(until=sim.clock.now())
    second = stop_notes(await snapshot(sim))
    assert second["BTCUSDT"] != first["BTCUSDT"] and "3.0" in second["BTCUSDT"]  # the new stop, 3 % away
    assert second["ETHUSDT"] == first["ETHUSDT"]  # kept: no event was about it
    await sim.clock.drive(until=sim.clock.now() + 121.0)  # the entry expired, the TTL since the first
    third = stop_notes(await snapshot(sim))
    assert third["ETHUSDT"] != first["ETHUSDT"]  # made at the marks of now


def test_the_notes_due_are_the_events_symbols_and_everything_at_first_after_a_gap_and_each_ttl() -> None:
    due = NotesDue()
    assert due.take(now=0.0, every_s=60.0, events_known=True) is None  # the first computation
    due.touched("BTCUSDT")
    assert due.take(now=10.0, every_s=60.0, events_known=True) == {"BTCUSDT"}
    assert due.take(now=20.0, every_s=60.0, events_known=True) == set()
    due.touched("ETHUSDT")
    assert due.take(now=20.0, every_s=60.0, events_known=False) is None  # no event freshness
    due.touched("ETHUSDT")
    due.everything()  # events were lost
    assert due.take(now=30.0, every_s=60.0, events_known=True) is None
    assert due.take(now=89.0, every_s=60.0, events_known=True) == set()
    assert due.take(now=90.0, every_s=60.0, events_known=True) is None  # the TTL since the last full one


async def test_each_long_piece_of_a_snapshot_takes_a_turn_of_the_loop_of_its_own(
    engine: EngineRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fill that arrives while a snapshot is made waits for one piece at most. At a thousand
    positions the positions section (13 ms) ran inside the composition (24 ms with it)."""
    dashboard = engine.dashboard
    assert dashboard is not None
    steps: list[str] = []
    assert engine.tpsl is not None
    precedence = engine.tpsl.precedence
    turn = precedence.turn

    async def counted_turn() -> None:
        steps.append("turn")
        await turn()

    monkeypatch.setattr(precedence, "turn", counted_turn)
    for name in ("_market_rows", "_positions_shown_yielding", "_compose"):
        piece = getattr(dashboard, name)

        def recorded(*args: Any, _piece: Any = piece, _name: str = name, **kwargs: Any) -> Any:
            steps.append(_name)
            return _piece(*args, **kwargs)

        monkeypatch.setattr(dashboard, name, recorded)
    await clock_of(engine).drive_while(dashboard.snapshot())
    pieces = [step for step in steps if step != "turn"]
    assert pieces == ["_market_rows", "_positions_shown_yielding", "_compose"]
    for piece in pieces:  # each one right after a turn
        assert steps[steps.index(piece) - 1] == "turn"


async def test_risk_notes_that_failed_to_be_made_are_all_made_at_the_next_snapshot(
    sim: SimHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The symbols an event named are taken for a computation: if it fails, none is lost."""
    dashboard = sim.dashboard
    assert dashboard is not None
    await open_position(sim, "main", "BTCUSDT", 0.01)
    await snapshot(sim)
    compute = dashboard.insights.compute
    asked: list[object] = []

    def failing_once(*args: Any) -> Any:
        asked.append(args[4])
        if len(asked) == 1:
            raise RuntimeError("a defect in the notes")
        return compute(*args)

    monkeypatch.setattr(dashboard.insights, "compute", failing_once)
    await open_position(sim, "main", "ETHUSDT", 0.1)  # an event: ETHUSDT's notes are due
    with pytest.raises(RuntimeError, match="a defect"):
        await snapshot(sim)
    assert asked[0] is not None and "ETHUSDT" in asked[0]  # type: ignore[operator]
    await snapshot(sim)
    assert asked[1] is None  # every note, the ones taken by the failed computation included


async def test_a_market_row_is_kept_while_its_ticker_shows_the_same_last_and_mark(sim: SimHost) -> None:
    """A market row shows a ticker's last and mark: a new ticker of the symbol (every tick brings one
    for each of a thousand symbols) with the same two prices keeps the row, compared on those two
    alone; another price, or another instrument, makes it again."""
    dashboard = sim.dashboard
    assert dashboard is not None
    first = dashboard._market_rows({"BTCUSDT": Ticker("BTCUSDT", 100.0, 100.5, 99.0, 101.0, 1.0)})
    same = dashboard._market_rows({"BTCUSDT": Ticker("BTCUSDT", 100.0, 100.5, 99.5, 100.5, 2.0)})
    assert same["BTCUSDT"] is first["BTCUSDT"]
    moved = dashboard._market_rows({"BTCUSDT": Ticker("BTCUSDT", 100.0, 100.7, 99.5, 100.5, 3.0)})
    assert moved["BTCUSDT"] is not first["BTCUSDT"]
    assert dict(moved["BTCUSDT"]) == {"last": 100.0, "mark": 100.7}
    dashboard._instruments["BTCUSDT"] = sim.exchange.instruments["BTCUSDT"]
    ticked = dashboard._market_rows({"BTCUSDT": Ticker("BTCUSDT", 100.0, 100.7, 99.5, 100.5, 4.0)})
    assert ticked["BTCUSDT"]["tick_size"] == sim.exchange.instruments["BTCUSDT"].tick_size


async def test_the_insights_see_a_price_where_it_comes_in_not_each_time_the_cache_serves_it(
    sim: SimHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ticker read from the venue is seen by the insights (its price history); one the cache
    serves again was seen when it was stored: at a thousand symbols, seeing it again at every
    build was a thousand calls for nothing."""
    dashboard = sim.dashboard
    assert dashboard is not None
    seen: list[str] = []
    observe = dashboard.insights.observe

    def counted(ticker: Ticker) -> None:
        seen.append(ticker.symbol)
        observe(ticker)

    monkeypatch.setattr(dashboard.insights, "observe", counted)
    first = await snapshot(sim)
    assert sorted(seen) == sorted(first["market"]) and seen
    seen.clear()
    second = await snapshot(sim)
    assert second["market"] == first["market"] and seen == []  # served from the cache: seen already
