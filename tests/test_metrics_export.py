"""The Prometheus metrics export: an engine on the simulator serves its counters on ``metrics.port``,
a port in use is one critical alert (the engine trades on), and with the default settings nothing is
served. The endpoint is scraped over real HTTP on loopback; time is the virtual clock's."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tpsl_harness import SYMBOL, Harness

from engine.alerts.model import Severity
from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.link_ids import make_link_id
from engine.core.profile import TOGGLES
from engine.core.settings import SettingsError, load_settings
from engine.dashboard.cache import CATEGORIES
from engine.observability.metrics_export import MetricsServer
from engine.runtime.assembly import EngineRuntime
from engine.trading.reaction import REACTION_BUCKETS_S, ReactionRecorder, fill_kind
from engine.venue.base import Endpoint
from persistence.reasons import Reason
from persistence.store import Store

HOST = "127.0.0.1"


def free_port() -> int:
    """A port free on loopback now (the engine binds it a moment later; nothing else here races)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another listener holds for the whole test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def engine_settings(tmp_path: Path, **values: Any) -> Any:
    return load_settings(state_dir=tmp_path).with_values(
        {"sim.demo_trades": 1, "mirror.enabled": False, **values}, source="test"
    )


async def started(tmp_path: Path, **values: Any) -> tuple[EngineRuntime, VirtualClock]:
    """An engine on the simulator with one demo trade opened and settled (a minute of virtual time)."""
    settings = engine_settings(tmp_path, **values)
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, tmp_path, clock)
    await runtime.start()
    await clock.drive(clock.now() + 60.0)
    return runtime, clock


@pytest.fixture
async def engine_with_metrics(tmp_path: Path) -> AsyncIterator[EngineRuntime]:
    runtime, _clock = await started(tmp_path, **{"metrics.port": free_port(), "metrics.host": HOST})
    try:
        yield runtime
    finally:
        await runtime.stop()


async def scrape(url: str) -> tuple[str, dict[str, list[Sample]]]:
    """The endpoint's content type and its samples by family name."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
        content_type = response.headers["Content-Type"]
    return content_type, {f.name: f.samples for f in text_string_to_metric_families(text)}


def values(samples: list[Sample], label: str, name: str | None = None) -> dict[str, float]:
    """``label`` value -> sample value (only samples named ``name``, when given)."""
    return {s.labels[label]: s.value for s in samples if name is None or s.name == name}


async def test_a_scrape_shows_the_engines_counters(engine_with_metrics: EngineRuntime) -> None:
    runtime = engine_with_metrics
    assert runtime.metrics is not None and runtime.metrics.url is not None
    assert len(runtime.started().manager.monitors) == 1
    content_type, families = await scrape(runtime.metrics.url)
    assert content_type.startswith("text/plain; version=")  # Prometheus' text format

    assert values(families["opconsole_open_positions"], "account") == {"main": 1.0}
    calls = values(families["opconsole_api_calls"], "endpoint", "opconsole_api_calls_total")
    # the market entry alone, then the stop-loss, TP and other entries in one batch (api_batching)
    assert calls[Endpoint.CREATE] >= 1 and calls[Endpoint.CREATE_BATCH] >= 1
    assert calls == runtime.gateways["main"].calls.as_dict()
    left = {(s.labels["account"], s.labels["window"]) for s in families["opconsole_api_budget_left"]}
    verbs = ("place", "amend", "cancel")
    windows = ("orders", *verbs, *(f"{verb}_batch" for verb in verbs), "reads", "ip")
    assert left == {("main", window) for window in windows}

    assert values(families["opconsole_profile_optimized"], "toggle") == dict.fromkeys(TOGGLES, 1.0)
    assert set(values(families["opconsole_cache_entries"], "category")) == set(CATEGORIES)
    hits = values(families["opconsole_cache_hits"], "category", "opconsole_cache_hits_total")
    assert set(hits) == set(CATEGORIES)

    monitors = values(families["opconsole_monitors"], "tier")
    assert set(monitors) == {"critical", "active", "standard", "inactive", "idle"}
    assert sum(monitors.values()) == 1

    writes = values(families["opconsole_persistence_writes"], "reason", "opconsole_persistence_writes_total")
    assert writes["startup"] >= 1 and writes["monitor_created"] >= 1
    fsyncs = values(families["opconsole_persistence_fsyncs"], "reason", "opconsole_persistence_fsyncs_total")
    assert fsyncs["monitor_created"] >= 1

    # The entry fill called for the stop-loss: one reaction timed into the histogram.
    reaction = families["opconsole_reaction_seconds"]
    counts = values(reaction, "fill", "opconsole_reaction_seconds_count")
    assert counts.get("entry", 0) >= 1
    inf = [s for s in reaction if s.name == "opconsole_reaction_seconds_bucket" and s.labels["le"] == "+Inf"]
    assert {s.labels["fill"]: s.value for s in inf} == counts

    jobs = values(
        families["opconsole_scheduler_job_duration_seconds"],
        "job",
        "opconsole_scheduler_job_duration_seconds_count",
    )
    assert jobs["store-flush"] >= 1
    state = {s.labels["opconsole_engine_state"]: s.value for s in families["opconsole_engine_state"]}
    assert state["running"] == 1.0 and sum(state.values()) == 1.0


async def test_a_toggle_switched_shows_in_the_next_scrape(engine_with_metrics: EngineRuntime) -> None:
    runtime = engine_with_metrics
    assert runtime.metrics is not None and runtime.metrics.url is not None
    await runtime.profile.set("cache_metrics", "baseline")
    _, families = await scrape(runtime.metrics.url)
    assert values(families["opconsole_profile_optimized"], "toggle")["cache_metrics"] == 0.0
    assert families["opconsole_cache_hits"] == []  # nothing is counted while the toggle is off
    assert set(values(families["opconsole_cache_entries"], "category")) == set(CATEGORIES)


async def test_the_endpoint_stops_with_the_engine(tmp_path: Path) -> None:
    runtime, _clock = await started(tmp_path, **{"metrics.port": free_port(), "metrics.host": HOST})
    assert runtime.metrics is not None
    url = runtime.metrics.url
    assert url is not None
    await runtime.stop()
    assert runtime.metrics is None
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url)


async def test_a_port_in_use_is_one_critical_alert_and_the_engine_trades_on(
    tmp_path: Path, held_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    runtime, _clock = await started(tmp_path, **{"metrics.port": held_port, "metrics.host": HOST})
    try:
        assert runtime.metrics is None
        alerts = [a for a in runtime.alerts.recent() if a.type == "metrics_export"]
        assert len(alerts) == 1
        alert = alerts[0]
        assert alert.severity is Severity.CRITICAL
        assert f"{HOST}:{held_port}" in alert.message and "\n" not in alert.message
        assert "in use" in alert.message
        logged = [r for r in caplog.records if r.name == "opconsole.runtime" and "metrics" in r.getMessage()]
        assert [r.getMessage() for r in logged] == [alert.message]
        assert all(r.exc_info is None for r in caplog.records if r.name.startswith("opconsole"))
        # The position is opened and protected all the same.
        manager = runtime.started().manager
        assert runtime.state.value == "running"
        (monitor,) = manager.monitors.values()
        assert monitor.size > 0 and monitor.orders["sl"].order_id
    finally:
        await runtime.stop()


async def test_off_by_default_nothing_is_served(tmp_path: Path) -> None:
    assert load_settings(state_dir=tmp_path).get("metrics.port") == 0
    runtime, _clock = await started(tmp_path)
    try:
        assert runtime.metrics is None
        assert not [a for a in runtime.alerts.recent() if a.type == "metrics_export"]
    finally:
        await runtime.stop()


async def test_two_exporters_in_one_process_keep_their_own_registries(
    engine_with_metrics: EngineRuntime,
) -> None:
    runtime = engine_with_metrics
    assert runtime.metrics is not None
    sources = runtime.metrics.registry  # the running one's registry holds only its own collector
    other = MetricsServer(runtime.metrics.sources, HOST, 0)
    await other.start()
    try:
        assert other.registry is not sources and other.port not in (None, runtime.metrics.port)
        assert other.url is not None and runtime.metrics.url is not None
        _, mine = await scrape(runtime.metrics.url)
        _, theirs = await scrape(other.url)
        assert mine["opconsole_open_positions"] == theirs["opconsole_open_positions"]
    finally:
        await other.stop()


def test_fill_kinds_and_histogram_buckets() -> None:
    assert fill_kind(make_link_id("abcd", "0123abcd", "tp2", 1)) == "tp"
    assert fill_kind(make_link_id("abcd", "0123abcd", "sl", 3)) == "sl"
    assert fill_kind(make_link_id("abcd", "0123abcd", "e1", 0)) == "entry"
    assert fill_kind("someone-else") == "external"
    recorder = ReactionRecorder()
    for seconds in (0.001, 0.004, 0.004, 100.0, -0.5):  # -0.5: a venue clock ahead counts as 0
        recorder.observe("sl", seconds)
    histogram = recorder.histograms()["sl"]
    cumulative = dict(histogram.cumulative())
    assert cumulative[REACTION_BUCKETS_S[0]] == 2  # 0 and 0.001 (le is inclusive)
    assert cumulative[0.005] == 4
    assert cumulative[REACTION_BUCKETS_S[-1]] == 4 and cumulative[float("inf")] == 5
    assert histogram.count == 5 and histogram.sum_s == pytest.approx(100.009)


async def test_store_counts_writes_and_fsyncs_by_what_made_them(tmp_path: Path) -> None:
    clock = VirtualClock(start=parse_iso_utc("2026-01-01T00:00:00Z"))
    store = Store(tmp_path, clock=clock, flush_timer=False)
    store.load()
    await store.start()
    try:
        await store.save("a", 1, reason=Reason.TP_HIT)  # critical: written at once
        await store.save("b", 2, reason=Reason.MONITORING_UPDATE)  # coalesced ...
        await store.flush()  # ... and written by the flush
        metrics = store.metrics()
    finally:
        await store.close()
    assert metrics["writes_by_reason"]["tp_hit"] >= 1 and metrics["fsyncs_by_reason"]["tp_hit"] >= 1
    assert metrics["writes_by_reason"]["flush"] >= 1
    assert "monitoring_update" not in metrics["writes_by_reason"]
    assert sum(metrics["writes_by_reason"].values()) == metrics["writes"]
    assert sum(metrics["fsyncs_by_reason"].values()) == metrics["fsyncs"]


async def test_a_polled_fill_reacts_within_one_poll_and_a_streamed_one_at_once() -> None:
    """What the reaction histogram measures: from the fill's venue time to the request handed to
    the sender. Streamed (no latency in the simulator) that is no time at all; without streams,
    it is the wait for the next read that finds the fill (a poll or a check), never over a poll."""
    h = Harness()
    await h.start()
    await h.manager.open_trade(h.request(margin=1000.0))
    await h.settle()
    streamed = h.manager.reactions.histograms()["entry"]
    assert streamed.count >= 1 and streamed.sum_s == 0.0
    await h.manager.set_push_streams(False)  # the fills of TP1 come from the poll from now on
    await h.price(98_900.0)  # e2
    await h.price(101_100.0)  # TP1: the stop goes to breakeven once the poll finds the fill
    await h.settle(10.0)
    assert h.manager.monitors[f"main:{SYMBOL}:Buy"].breakeven
    tp = h.manager.reactions.histograms()["tp"]
    assert tp.count == 1
    assert 0.0 < tp.sum_s <= h.manager.timing.execution_poll_s
    await h.stop()


BAD_SETTINGS = [
    ("metrics.port", 70_000),
    ("metrics.port", -1),
    ("metrics.host", "127.0.0.1:9100"),
    ("metrics.host", ""),
]


@pytest.mark.parametrize(("key", "value"), BAD_SETTINGS)
def test_metrics_settings_are_checked(tmp_path: Path, key: str, value: Any) -> None:
    defaults = load_settings(state_dir=tmp_path)
    with pytest.raises(SettingsError, match=key):
        defaults.with_values({key: value}, source="test")
    for host in ("::1", "0.0.0.0", "localhost"):  # what is fine
        assert defaults.with_values({"metrics.host": host}).get("metrics.host") == host
