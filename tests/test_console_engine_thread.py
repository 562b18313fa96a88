"""The engine on its own thread and loop (issue 16, item 15): painting never stands between an
execution and the order it calls for.

The host's contract first (work runs on the engine thread, errors come back, a caller that stops
waiting does not cancel the work, reads answer or time out), then the real console with the engine
threaded on the simulator: the UI thread blocked in a frame while a close handed to the engine
completes on the exchange, and a shutdown that stops the engine and its thread.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.app import OperatorConsole
from console.engine_host import SWITCH_INTERVAL_S, EngineGone, EngineThread, SharedLoop
from engine.core.clock import RealClock
from engine.core.settings import load_settings


@pytest.fixture
def host() -> Iterator[EngineThread]:
    thread = EngineThread(name="test-engine", read_timeout_s=0.5)
    yield thread
    thread.close()


async def test_work_runs_on_the_engine_thread_and_returns_its_result(host: EngineThread) -> None:
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert await host.run(where) == "test-engine"
    assert host.read(lambda: threading.current_thread().name) == "test-engine"
    assert host.separate and not SharedLoop.separate


async def test_an_engine_error_reaches_the_caller(host: EngineThread) -> None:
    async def refuse() -> None:
        raise ValueError("refused by the engine")

    with pytest.raises(ValueError, match="refused by the engine"):
        await host.run(refuse)
    empty: dict[str, int] = {}
    with pytest.raises(KeyError):
        host.read(lambda: empty["missing"])


async def test_work_handed_over_finishes_when_the_caller_stops_waiting(host: EngineThread) -> None:
    """A close or a kill switch handed to the engine completes even if the UI's worker is cancelled
    (the app exiting cancels its workers)."""
    release = threading.Event()
    finished = threading.Event()

    async def close_at_market() -> None:
        while not release.is_set():  # noqa: ASYNC110 (a threading.Event, set from the test's thread)
            await asyncio.sleep(0.001)
        finished.set()

    waiter = asyncio.create_task(host.run(close_at_market))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    assert await asyncio.to_thread(finished.wait, 5.0)


def test_a_read_times_out_when_the_engine_loop_does_not_answer(host: EngineThread) -> None:
    busy = threading.Event()
    unblock = threading.Event()

    async def block_the_loop() -> None:
        busy.set()
        unblock.wait(5.0)  # deliberately blocking: the loop cannot run the read meanwhile

    asyncio.run_coroutine_threadsafe(block_the_loop(), host.loop)
    assert busy.wait(5.0)
    try:
        with pytest.raises(TimeoutError, match="did not answer"):
            host.read(lambda: "late")
    finally:
        unblock.set()
    assert host.read(lambda: "answered") == "answered"


async def test_after_close_nothing_runs_and_the_thread_has_ended() -> None:
    host = EngineThread()
    host.close()
    host.close()  # idempotent
    assert not host.thread.is_alive()

    async def anything() -> None:
        return None

    with pytest.raises(EngineGone):
        await host.run(anything)
    with pytest.raises(EngineGone):
        host.read(lambda: None)


def test_the_engine_thread_gets_the_interpreter_back_within_a_millisecond_while_it_runs() -> None:
    """The UI building a frame held the interpreter's lock for CPython's 5 ms switch interval at a
    time: an engine step of 5 ms CPU took 15-60 ms. The interval is the process's own again at close."""
    before = sys.getswitchinterval()
    host = EngineThread()
    try:
        assert sys.getswitchinterval() == SWITCH_INTERVAL_S < before
    finally:
        host.close()
    assert sys.getswitchinterval() == before


def _threaded_console(tmp_path: Path) -> OperatorConsole:
    settings = load_settings(None, tmp_path / "state").with_values(
        {"ui.engine_thread": True, "sim.latency": "none"}, source="test"
    )
    return OperatorConsole(settings, tmp_path / "state", clock=RealClock(), auto_refresh=False)


def _open_positions(app: OperatorConsole) -> list[tuple[str, str]]:
    exchange = app.runtime.exchange
    assert exchange is not None
    return app.link.host.read(
        lambda: [
            (account, p.symbol)
            for account in app.runtime.venues
            for p in exchange.positions(account)
            if p.is_open
        ]
    )


async def _wait_for(predicate: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the engine did not get there"
        await asyncio.sleep(0.05)


async def test_the_engine_acts_while_the_ui_thread_is_stuck_in_a_frame(tmp_path: Path) -> None:
    """With the UI's thread blocked (a frame that takes seconds), a close handed to the engine still
    reaches the exchange: the engine's loop does not wait on painting. On a shared loop the close
    could not even start until the frame ended."""
    app = _threaded_console(tmp_path)
    async with app.run_test(size=(160, 50)) as pilot:
        await app.engine_ready.wait()
        await _wait_for(lambda: len(_open_positions(app)) >= 2)
        assert await app.refresh_dashboard()
        assert app.runtime.engine is not None
        engine_loop = app.link.host.loop  # type: ignore[attr-defined]
        account, symbol = _open_positions(app)[0]
        key = next(k for k in app.runtime.engine.manager.monitors if k.startswith(f"{account}:{symbol}:"))

        # The UI thread is now busy (as in a slow frame) and polls the exchange from that same thread.
        asyncio.run_coroutine_threadsafe(app.runtime.engine.actions.close_position(key), engine_loop)
        deadline = time.monotonic() + 20.0
        while (account, symbol) in _open_positions(app) and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 (deliberately blocking the UI's loop)
        assert (account, symbol) not in _open_positions(app)

        # The close's position update reaches the dashboard through the engine's stream, a few turns
        # of its loop after the exchange: the next refreshes show it gone (a refresh may race it).
        def shown() -> set[tuple[str, str]]:
            return {(p["account"], p["symbol"]) for p in app.latest["positions"]} if app.latest else set()

        deadline = time.monotonic() + 5.0
        await app.refresh_dashboard()
        while (account, symbol) in shown() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            await app.refresh_dashboard()
        assert (account, symbol) not in shown()
        await pilot.pause()


async def test_a_threaded_console_stops_its_engine_and_thread_on_quit(tmp_path: Path) -> None:
    app = _threaded_console(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await app.engine_ready.wait()
        assert app.link.engine_state() in ("running", "reconciling")
        host = app.link.host
        assert isinstance(host, EngineThread) and host.thread.is_alive()
        await app.shutdown("quit")
        await pilot.pause()
    assert app._engine_stopped and not host.thread.is_alive()
    assert app.runtime.store is None and _lock_is_free(tmp_path / "state")


def _lock_is_free(state_dir: Path) -> bool:
    from engine.runtime.assembly import check_state_free

    check_state_free(state_dir)  # raises BadInput while another process (or this one) holds it
    return True
