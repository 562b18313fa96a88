"""Alert delivery: cooldown, the persisted outbox, Telegram and webhook sinks against local fakes.

The fake servers (tests/alert_fakes.py) listen on 127.0.0.1 on an ephemeral port and are stopped at
the end of each test; nothing else is a network target. Time is a VirtualClock moved by hand: the
delivery job is run explicitly (``run_once``), so every retry time is checked on the engine clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from alert_fakes import FakeServer, FakeTelegram, FakeWebhook, Recorder
from tpsl_harness import MemoryStore

from engine.alerts.bus import AlertBus
from engine.alerts.cooldown import Cooldown
from engine.alerts.delivery import AlertDelivery, DeliveryParams, retry_delay
from engine.alerts.model import Alert, Severity
from engine.alerts.outbox import DONE_KEPT, Outbox, OutboxItem
from engine.alerts.sink import Sink
from engine.alerts.telegram import TelegramSink, format_batch, plan_messages
from engine.alerts.webhook import WebhookSink, signature
from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.state_keys import ALERT_OUTBOX_KEY

START = parse_iso_utc("2026-01-01T00:00:00Z")
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
PARAMS = DeliveryParams(cooldown_s=60.0, interval_s=2.0, retry_first_s=2.0, retry_max_s=300.0, outbox_max=200)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=START)


@pytest.fixture
async def servers() -> AsyncIterator[list[FakeServer]]:
    """Every fake server a test starts goes here, and is stopped at the end."""
    started: list[FakeServer] = []
    yield started
    for server in started:
        await server.stop()


async def telegram(servers: list[FakeServer], recorder: Recorder) -> FakeTelegram:
    server = await FakeTelegram(recorder, TOKEN).start()
    servers.append(server)
    return server


def telegram_sink(
    url: str, *, per_minute: int = 20, min_severity: Severity = Severity.WARNING
) -> TelegramSink:
    return TelegramSink(
        token=TOKEN,
        chat_id="4242",
        base_url=url,
        timeout_s=5.0,
        min_severity=min_severity,
        per_minute=per_minute,
    )


def delivery(
    store: MemoryStore, clock: VirtualClock, sinks: list[Sink], params: DeliveryParams = PARAMS
) -> tuple[AlertBus, AlertDelivery]:
    bus = AlertBus(clock)
    out = AlertDelivery(store=store, clock=clock, sinks=sinks, prefix="t3st", params=params)
    out.load()
    out.install(bus)
    return bus, out


async def closed_port_url(servers: list[FakeServer], recorder: Recorder) -> str:
    """The URL of a server that was started and stopped: nothing listens there (connection refused)."""
    server = await FakeTelegram(recorder, TOKEN).start()
    url = server.url
    await server.stop()
    return url


# --- cooldown --------------------------------------------------------------------------------------


def test_cooldown_admits_one_per_type_and_key_and_never_holds_back_a_critical() -> None:
    cooldown = Cooldown(60.0)
    assert cooldown.admit("warning", "sl_move_refused", "main:BTCUSDT:Buy", 0.0) == 0
    assert cooldown.admit("warning", "sl_move_refused", "main:BTCUSDT:Buy", 10.0) is None
    assert cooldown.admit("warning", "sl_move_refused", "main:BTCUSDT:Buy", 59.9) is None
    # another key, another type: their own cooldowns
    assert cooldown.admit("warning", "sl_move_refused", "main:ETHUSDT:Buy", 10.0) == 0
    assert cooldown.admit("warning", "rate_limit", "main:BTCUSDT:Buy", 10.0) == 0
    # critical: never suppressed, even right after one of its pair went out
    assert cooldown.admit("critical", "sl_move_refused", "main:BTCUSDT:Buy", 20.0) == 2
    assert cooldown.admit("critical", "sl_move_refused", "main:BTCUSDT:Buy", 20.5) == 0
    # the window counts from the last admitted one (the critical at 20.5): held back until 80.5
    assert cooldown.admit("warning", "sl_move_refused", "main:BTCUSDT:Buy", 80.0) is None
    assert cooldown.admit("warning", "sl_move_refused", "main:BTCUSDT:Buy", 80.5) == 1
    assert cooldown.suppressed == 3
    assert cooldown.suppressed_by_type == {"sl_move_refused": 3}
    assert (
        Cooldown(0.0).admit("warning", "x", "", 1.0) == 0
        and Cooldown(0.0).admit("warning", "x", "", 1.0) == 0
    )


async def test_the_cooldown_holds_back_deliveries_while_the_bus_keeps_every_alert(
    clock: VirtualClock, servers: list[FakeServer]
) -> None:
    recorder = Recorder(clock)
    server = await telegram(servers, recorder)
    store = MemoryStore()
    bus, out = delivery(store, clock, [telegram_sink(server.url)])
    for _ in range(5):
        bus.raise_alert(Severity.WARNING, "rate_limit", "main: the venue refused requests", key="main")
        clock.advance(1.0)
    bus.raise_alert(Severity.CRITICAL, "emergency_close", "closed at market", key="main:BTCUSDT:Buy")
    bus.raise_alert(Severity.CRITICAL, "emergency_close", "closed at market", key="main:BTCUSDT:Buy")
    bus.raise_alert(Severity.INFO, "tp_hit", "below the sink's threshold", key="main:BTCUSDT:Buy")
    await out.run_once()

    assert [a.type for a in bus.recent()].count("rate_limit") == 5  # the console sees them all
    assert len(recorder.messages) == 3  # one rate_limit, both criticals; the info is below threshold
    section = out.snapshot()
    assert section["suppressed"] == 4 and section["suppressed_by_type"] == {"rate_limit": 4}
    # after the cooldown, the next one goes out and says how many were held back
    clock.advance(60.0)
    bus.raise_alert(Severity.WARNING, "rate_limit", "main: the venue refused requests", key="main")
    await out.run_once()
    assert "+4 more like it" in recorder.messages[-1][1]
    assert recorder.duplicates == []
    await out.close()


# --- flood folding ---------------------------------------------------------------------------------


async def test_a_burst_of_30_alerts_is_folded_and_each_id_is_delivered_once(
    clock: VirtualClock, servers: list[FakeServer]
) -> None:
    recorder = Recorder(clock)
    server = await telegram(servers, recorder)
    bus, out = delivery(MemoryStore(), clock, [telegram_sink(server.url)])
    ids = [
        bus.raise_alert(Severity.WARNING, "sl_hit", f"stop {n} hit", key=f"main:SYN{n:04d}USDT:Buy")
        for n in range(30)
    ]
    await out.run_once()
    assert len(recorder.messages) == 1  # 30 > the 20 a minute allows: one folded message
    assert recorder.messages[0][1].startswith("30 alerts:")
    assert sorted(recorder.ids) == [f"t3st-{seq:06d}" for seq in range(1, 31)]
    assert recorder.duplicates == []
    await out.run_once()
    assert len(recorder.messages) == 1 and len(ids) == 30
    await out.close()


async def test_a_steady_stream_stays_under_the_flood_limit(
    clock: VirtualClock, servers: list[FakeServer]
) -> None:
    """Alerts one by one: each is a message until the minute's budget is spent, then they wait and
    go out folded; no sliding minute ever holds more than 20 messages."""
    recorder = Recorder(clock)
    server = await telegram(servers, recorder)
    bus, out = delivery(MemoryStore(), clock, [telegram_sink(server.url)])
    for n in range(90):  # 90 alerts, 2 s apart: three minutes
        bus.raise_alert(Severity.WARNING, "mirror_retry", f"retry {n}", key=f"k{n}")
        await out.run_once()
        clock.advance(2.0)
    for _ in range(40):  # let the last ones out
        await out.run_once()
        clock.advance(2.0)
    times = [t for t, _ in recorder.messages]
    assert max(sum(1 for t in times if start <= t < start + 60) for start in times) <= 20
    assert any(text.startswith(tuple(f"{n} alerts:" for n in range(2, 90))) for _, text in recorder.messages)
    assert len(recorder.ids) == 90 and recorder.duplicates == []
    await out.close()


def test_plan_messages_folds_only_when_the_budget_is_short() -> None:
    items = [_item(n) for n in range(5)]
    assert plan_messages(items, 0) == []
    assert plan_messages(items, 5) == [[i] for i in items]  # each its own message
    assert plan_messages(items, 4) == [items]  # one short: all folded into one
    long = [_item(n, "x" * 1000) for n in range(40)]  # lines cut to 400 chars: ~10 per message
    planned = plan_messages(long, 2)
    assert len(planned) == 2 and all(len(format_batch(batch)) <= 4096 for batch in planned)
    assert [i.id for batch in planned for i in batch] == [i.id for i in long[: sum(map(len, planned))]]


def _item(n: int, message: str = "m") -> OutboxItem:
    return OutboxItem(f"t-{n:06d}", n, START, "warning", "x", "", message, sinks={"telegram": "pending"})


# --- failures, backoff and retry_after --------------------------------------------------------------


async def test_a_sink_that_fails_twice_then_succeeds(clock: VirtualClock, servers: list[FakeServer]) -> None:
    recorder = Recorder(clock)
    server = await telegram(servers, recorder)
    server.answer(500, {"ok": False, "description": "Internal Server Error"}, times=2)
    bus, out = delivery(MemoryStore(), clock, [telegram_sink(server.url)])
    bus.raise_alert(
        Severity.CRITICAL, "protection_failure", "no stop could be placed", key="main:BTCUSDT:Buy"
    )

    await out.run_once()  # fails: next try after retry_first_s = 2 s
    assert len(recorder.requests) == 1
    row = out.snapshot()["sinks"]["telegram"]
    assert row["failed_in_a_row"] == 1 and row["pending"] == 1 and row["next_attempt_in_s"] == 2.0
    assert row["last_error"] is not None and "HTTP 500" in row["last_error"]
    clock.advance(1.9)
    await out.run_once()
    assert len(recorder.requests) == 1  # still backing off
    clock.advance(0.1)
    await out.run_once()  # fails again: 4 s now
    assert len(recorder.requests) == 2 and out.snapshot()["sinks"]["telegram"]["next_attempt_in_s"] == 4.0
    clock.advance(3.9)
    await out.run_once()
    assert len(recorder.requests) == 2
    clock.advance(0.1)
    await out.run_once()  # succeeds
    assert len(recorder.requests) == 3 and len(recorder.ids) == 1 and recorder.duplicates == []
    row = out.snapshot()["sinks"]["telegram"]
    assert (row["failed"], row["failed_in_a_row"], row["delivered"], row["pending"]) == (2, 0, 1, 0)
    assert row["last_error"] is None
    await out.close()


def test_retry_delay_doubles_to_its_cap_and_honours_retry_after() -> None:
    assert [retry_delay(n, 2.0, 30.0) for n in (1, 2, 3, 4, 5, 6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert retry_delay(1, 2.0, 30.0, retry_after=45.0) == 45.0
    assert retry_delay(5, 2.0, 30.0, retry_after=1.0) == 30.0


async def test_a_429_retry_after_is_honoured(clock: VirtualClock, servers: list[FakeServer]) -> None:
    recorder = Recorder(clock)
    server = await telegram(servers, recorder)
    too_many = {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 37",
        "parameters": {"retry_after": 37},
    }
    server.answer(429, too_many)
    bus, out = delivery(MemoryStore(), clock, [telegram_sink(server.url)])
    bus.raise_alert(Severity.WARNING, "sl_hit", "stop hit", key="main:BTCUSDT:Buy")
    await out.run_once()
    first_try = recorder.requests[0][0]
    for step in (2.0, 4.0, 30.0, 0.9):  # the backoff alone would have tried at +2
        clock.advance(step)
        await out.run_once()
    assert len(recorder.requests) == 1
    clock.advance(0.1)
    await out.run_once()
    assert [t - first_try for t, _ in recorder.requests] == [0.0, pytest.approx(37.0)]
    assert len(recorder.ids) == 1
    await out.close()


async def test_a_dead_sink_costs_only_the_delivery_job(
    clock: VirtualClock, servers: list[FakeServer]
) -> None:
    """Raising an alert never waits for a sink: the bus hands it over synchronously; the job, not the
    caller, meets the dead server, and the third failure in a row is told once on the bus."""
    recorder = Recorder(clock)
    url = await closed_port_url(servers, recorder)
    bus, out = delivery(MemoryStore(), clock, [telegram_sink(url)])
    alert = bus.raise_alert(
        Severity.CRITICAL, "liquidation", "main BTCUSDT liquidated", key="main:BTCUSDT:Buy"
    )
    assert alert.time == START and out.snapshot()["sinks"]["telegram"]["pending"] == 1
    for _ in range(4):
        await out.run_once()
        clock.advance(600.0)
    failed = [a for a in bus.recent() if a.type == "alert_delivery_failed"]
    assert len(failed) == 1 and failed[0].key == "telegram"
    assert out.snapshot()["sinks"]["telegram"]["failed_in_a_row"] == 4
    await out.close()


async def test_a_hanging_sink_times_out_and_never_holds_up_the_bus(
    clock: VirtualClock, servers: list[FakeServer]
) -> None:
    recorder = Recorder(clock)
    server = await telegram(servers, recorder)
    server.hold = asyncio.Event()  # never set: the server takes the request and never answers
    sink = TelegramSink(token=TOKEN, chat_id="4242", base_url=server.url, timeout_s=0.2)
    bus, out = delivery(MemoryStore(), clock, [sink])
    bus.raise_alert(Severity.CRITICAL, "sl_hit", "stop hit", key="main:BTCUSDT:Buy")
    job = asyncio.create_task(out.run_once())
    await _until(lambda: len(server_requests(server)) == 1)
    # while the delivery job waits on the server, raising alerts goes on as ever
    later = bus.raise_alert(Severity.CRITICAL, "emergency_close", "closed at market", key="main:ETHUSDT:Buy")
    assert later in bus.recent() and out.snapshot()["sinks"]["telegram"]["pending"] == 2
    await job  # ends by the sink's own timeout, as a failure to retry
    row = out.snapshot()["sinks"]["telegram"]
    assert row["failed_in_a_row"] == 1 and "no answer within 0.2 s" in str(row["last_error"])
    assert recorder.ids == []
    server.hold.set()
    await out.close()


def server_requests(server: FakeServer) -> list[str]:
    return server.recorder.paths


async def _until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition()`` holds (a socket is real I/O: it takes loop turns)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


# --- the persisted outbox across a restart ----------------------------------------------------------


async def test_a_sink_down_across_a_restart_gets_the_alert_once_after_it(
    clock: VirtualClock, servers: list[FakeServer]
) -> None:
    recorder = Recorder(clock)
    down = await closed_port_url(servers, recorder)
    store = MemoryStore()
    bus, out = delivery(store, clock, [telegram_sink(down)])
    first = bus.raise_alert(Severity.CRITICAL, "sl_hit", "stop hit before the crash", key="main:BTCUSDT:Buy")
    await out.run_once()  # the sink is down
    second = bus.raise_alert(Severity.WARNING, "rate_limit", "raised just before the crash", key="main")
    await out.saved()  # the bus's sink saved it by itself (forced): no delivery run in between
    assert [item.type for item in out.outbox.pending("telegram")] == [first.type, second.type]

    # kill -9: only what was durable survives; the sink comes back at a new address
    survivor = store.crash_copy()
    clock.advance(300.0)
    server = await telegram(servers, recorder)
    _, out2 = delivery(survivor, clock, [telegram_sink(server.url)])
    await out2.run_once()
    assert len(recorder.ids) == 2 and recorder.duplicates == []
    # delivered is durable: a second crash and restart sends nothing again
    bus3, out3 = delivery(survivor.crash_copy(), clock, [telegram_sink(server.url)])
    await out3.run_once()
    clock.advance(3600.0)
    await out3.run_once()
    assert len(recorder.ids) == 2
    # and a new alert after the restarts gets a new id (the sequence is never reused)
    bus3.raise_alert(Severity.WARNING, "stream_down", "main stream down", key="main")
    await out3.run_once()
    assert len(recorder.ids) == 3 and recorder.duplicates == []
    await out.close()
    await out2.close()
    await out3.close()


async def test_an_alert_raised_right_before_a_crash_is_sent_after_the_restart(
    clock: VirtualClock, servers: list[FakeServer]
) -> None:
    recorder = Recorder(clock)
    server = await telegram(servers, recorder)
    store = MemoryStore()
    bus, out = delivery(store, clock, [telegram_sink(server.url)])
    bus.raise_alert(Severity.CRITICAL, "emergency_close", "closed at market", key="main:ETHUSDT:Sell")
    await out.saved()
    survivor = store.crash_copy()  # the delivery job never ran
    assert recorder.ids == []
    _, out2 = delivery(survivor, clock, [telegram_sink(server.url)])
    await out2.run_once()
    assert len(recorder.ids) == 1 and "closed at market" in recorder.messages[0][1]
    await out.close()
    await out2.close()


async def test_only_saved_items_are_given_to_a_sink(clock: VirtualClock) -> None:
    """An id goes out only once the sequence number it used is on disk: a crash can never hand the
    same id to a second alert."""
    store = MemoryStore()
    outbox = Outbox(store, "t3st", ["telegram"])
    outbox.add(Alert(Severity.WARNING, "x", "m", time=START), ["telegram"])
    assert outbox.pending("telegram") and outbox.deliverable("telegram") == []
    await outbox.persist()
    assert [i.id for i in outbox.deliverable("telegram")] == ["t3st-000001"]
    assert store.crash_copy().state[ALERT_OUTBOX_KEY]["next_seq"] == 2


async def test_the_outbox_is_bounded(clock: VirtualClock, servers: list[FakeServer], caplog: Any) -> None:
    recorder = Recorder(clock)
    down = await closed_port_url(servers, recorder)
    params = DeliveryParams(cooldown_s=0.0, outbox_max=10)
    bus, out = delivery(MemoryStore(), clock, [telegram_sink(down)], params)
    with caplog.at_level(logging.WARNING, logger="opconsole.alerts.outbox"):
        for n in range(15):
            bus.raise_alert(Severity.WARNING, "x", f"alert {n}")
    pending = out.outbox.pending("telegram")
    assert [i.message for i in pending] == [f"alert {n}" for n in range(5, 15)]
    assert out.snapshot()["overflow_dropped"] == 5 and out.snapshot()["sinks"]["telegram"]["dropped"] == 5
    assert "alert outbox full" in caplog.text
    assert len(out.outbox.items) <= 10 + DONE_KEPT
    await out.close()


# --- secrets ----------------------------------------------------------------------------------------


async def test_the_token_never_appears_in_logs_errors_the_snapshot_or_the_outbox(
    clock: VirtualClock, servers: list[FakeServer], caplog: Any
) -> None:
    recorder = Recorder(clock)
    wrong = await FakeTelegram(recorder, "999:another-token-entirely").start()  # answers 401 with the URL
    servers.append(wrong)
    down = await closed_port_url(servers, recorder)
    store = MemoryStore()
    caplog.set_level(logging.DEBUG)
    bus, out = delivery(store, clock, [telegram_sink(wrong.url)])
    bus2, out2 = delivery(MemoryStore(), clock, [telegram_sink(down)])
    for b in (bus, bus2):
        b.raise_alert(Severity.CRITICAL, "sl_hit", "stop hit", key="main:BTCUSDT:Buy")
    for _ in range(4):
        await out.run_once()
        await out2.run_once()
        clock.advance(600.0)
    assert any(TOKEN in path for path in recorder.paths)  # the token did go to the server, in the URL
    errors = [o.snapshot()["sinks"]["telegram"]["last_error"] for o in (out, out2)]
    assert all(errors) and "HTTP 401" in str(errors[0])
    assert "***" in str(errors[0])  # the echoed URL is there, masked
    texts = [
        caplog.text,
        json.dumps(out.snapshot()),
        json.dumps(out2.snapshot()),
        json.dumps(store.state),
        json.dumps([a.message for a in bus.recent() + bus2.recent()]),
    ]
    for text in texts:
        assert TOKEN not in text and TOKEN.split(":")[1] not in text
    assert "alert delivery to telegram failed" in caplog.text
    await out.close()
    await out2.close()


# --- the webhook ------------------------------------------------------------------------------------


async def test_the_webhook_posts_signed_json(clock: VirtualClock, servers: list[FakeServer]) -> None:
    secret = "s3cr3t-for-hmac"
    recorder = Recorder(clock)
    server = await FakeWebhook(recorder, secret=secret).start()
    servers.append(server)
    url = f"{server.url}/hook/T000SECRETPATH"
    sink = WebhookSink(url=url, timeout_s=5.0, secret=secret)
    bus, out = delivery(MemoryStore(), clock, [sink])
    alert = bus.raise_alert(Severity.WARNING, "mirror_desync", "mirror out of sync", key="mirror")
    await out.run_once()
    [body] = server.bodies
    assert body == {
        "id": out.outbox.items[0].id,
        "time": "2026-01-01T00:00:00.000Z",
        "severity": "warning",
        "type": "mirror_desync",
        "key": "mirror",
        "message": alert.message,
        "folded": 0,
    }
    assert server.headers[0]["X-Opconsole-Alert-Id"] == body["id"]
    assert recorder.duplicates == []
    # a sender with the wrong secret is refused by the receiver, and that is a failure to retry
    wrong = WebhookSink(url=url, timeout_s=5.0, secret="not-the-secret")
    bus2, out2 = delivery(MemoryStore(), clock, [wrong])
    bus2.raise_alert(Severity.WARNING, "mirror_desync", "mirror out of sync", key="mirror")
    await out2.run_once()
    row = out2.snapshot()["sinks"]["webhook"]
    assert row["pending"] == 1 and "HTTP 401" in str(row["last_error"])
    assert "SECRETPATH" not in str(row["last_error"])
    await out.close()
    await out2.close()


async def test_the_webhook_is_unsigned_without_a_secret_and_honours_retry_after(
    clock: VirtualClock, servers: list[FakeServer]
) -> None:
    recorder = Recorder(clock)
    server = await FakeWebhook(recorder).start()
    servers.append(server)
    server.answer(503, {"error": "busy"}, headers={"Retry-After": "120"})
    bus, out = delivery(MemoryStore(), clock, [WebhookSink(url=f"{server.url}/hook/x", timeout_s=5.0)])
    bus.raise_alert(Severity.CRITICAL, "adl", "ADL on main", key="main:BTCUSDT:Buy")
    await out.run_once()
    clock.advance(119.0)
    await out.run_once()
    assert len(recorder.requests) == 1
    clock.advance(1.0)
    await out.run_once()
    assert len(recorder.requests) == 2 and len(server.bodies) == 1
    assert all("X-Opconsole-Signature" not in h for h in server.headers)
    await out.close()


def test_signature_is_hmac_sha256_of_the_body() -> None:
    # echo -n '{"a":1}' | openssl dgst -sha256 -hmac key
    expected = "88a67f24bbcdaed0e6c997404bb79a743baf44c6bab2f4c27328e3009d22e342"
    assert signature("key", b'{"a":1}') == f"sha256={expected}"
