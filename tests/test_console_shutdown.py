"""The console's shutdown when its terminal goes away, step by step and in process.

A closed terminal brings SIGHUP, the kernel's SIGCONT and (sometimes, before or after the SIGHUP is
handled) an EIO on the input thread's read; the engine may still be starting. Whatever comes first,
the engine stops once and completely (the store's shutdown record written, the state lock released)
and the app exits 0. The real thing, in a pseudo-terminal, is
``test_processes.py::test_a_console_that_loses_its_terminal_stops_its_engine_and_exits``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_console_support import make_console, settle
from test_processes import journal_reasons
from textual.app import App
from textual.drivers.linux_driver import LinuxDriver

from console.app import OperatorConsole
from console.terminal import ConsoleDriver
from engine.runtime import assembly
from persistence.layout import StateFiles
from persistence.lock import StateLock


@pytest.fixture
def driver_signals() -> Iterator[None]:
    """A ConsoleDriver installs SIGTSTP / SIGCONT handlers for the process: put the old ones back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTSTP, signal.SIGCONT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


async def wait_until(condition: Callable[[], bool], rounds: int = 250) -> None:
    """Let the app (on this loop) run until ``condition`` holds, for a bounded number of short sleeps.

    Plain sleeps, not ``pilot.pause()``: that one fails on an app whose screen has gone away."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.02)


def input_thread_read_fails(app: App[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The console driver's input thread, in a thread of its own, over a terminal whose read fails
    with EIO (the terminal went away); returns when that thread has ended."""
    driver = ConsoleDriver(app)

    def read_fails(self: LinuxDriver) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(LinuxDriver, "run_input_thread", read_fails)
    thread = threading.Thread(target=driver._run_input_thread, name="textual-input")
    thread.start()
    thread.join()


def assert_engine_stopped(app: OperatorConsole, state: Path) -> None:
    assert journal_reasons(state)[-1] == "shutdown"
    assert not app.runtime._tasks
    lock = StateLock(StateFiles(state).lock)
    lock.acquire()  # released: another console can start here now
    lock.release()


def assert_stopped_for_good(app: OperatorConsole, state: Path) -> None:
    assert_engine_stopped(app, state)
    assert app.return_code == 0
    assert app.exit_text.startswith("opconsole stopped; store flushed.")  # the orderly shutdown ran


def hold_the_stop(
    app: OperatorConsole, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the runtime's stop wait: (set once it is waiting, set to let it go on)."""
    stopping, go_on = asyncio.Event(), asyncio.Event()
    real_stop = app.runtime.stop

    async def held_stop() -> None:
        stopping.set()
        await go_on.wait()
        await real_stop()

    monkeypatch.setattr(app.runtime, "stop", held_stop)
    return stopping, go_on


async def test_the_terminal_lost_while_the_engine_stops_does_not_cut_the_stop_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver_signals: None
) -> None:
    """SIGHUP first, then the input thread's EIO while the engine is stopping: the stop finishes
    (Textual's panic used to end the app there, cancelling the stop before the store closed)."""
    app = make_console(tmp_path)
    app._handle_signals = True
    stopping, go_on = hold_the_stop(app, monkeypatch)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_until(stopping.is_set)
        assert stopping.is_set()
        input_thread_read_fails(app, monkeypatch)
        # the input thread's report is handled while the stop is held
        await wait_until(lambda: False, rounds=5)
        go_on.set()
        await wait_until(lambda: app.return_code is not None)
    assert_stopped_for_good(app, tmp_path / "state")


async def test_an_app_that_ends_while_its_engine_stops_still_finishes_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown under way, then the app's message loop ends for another reason (a panic, as any
    unhandled error in Textual makes): Textual cancels the shutdown worker, yet the stop finishes."""
    app = make_console(tmp_path)
    app._handle_signals = True
    stopping, go_on = hold_the_stop(app, monkeypatch)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_until(stopping.is_set)
        assert stopping.is_set()
        app.panic("an unexpected error")
        await wait_until(lambda: not app.is_running)
        go_on.set()
        await wait_until(lambda: app._engine_stopped)
    assert_engine_stopped(app, tmp_path / "state")


async def test_an_input_thread_that_cannot_read_the_terminal_shuts_the_console_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver_signals: None
) -> None:
    """The input thread's EIO before any SIGHUP: the same orderly shutdown as SIGHUP, not a panic."""
    app = make_console(tmp_path)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        input_thread_read_fails(app, monkeypatch)
        await wait_until(lambda: app.return_code is not None)
    assert_stopped_for_good(app, tmp_path / "state")


async def test_a_hang_up_while_the_engine_starts_waits_for_the_start_then_stops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGHUP after the store wrote its startup record but before the engine finished starting: the
    stop waits for the start, then stops it all (the start used to be cancelled half-way, the store
    left open: no shutdown record)."""
    opened, go_on = asyncio.Event(), asyncio.Event()
    real_open_state = assembly.open_state

    async def held_open_state(*args: Any, **kwargs: Any) -> Any:
        result = await real_open_state(*args, **kwargs)
        opened.set()
        await go_on.wait()
        return result

    monkeypatch.setattr(assembly, "open_state", held_open_state)
    app = make_console(tmp_path)
    app._handle_signals = True
    async with app.run_test():
        await wait_until(opened.is_set)
        assert journal_reasons(tmp_path / "state") == ["startup"]
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_until(lambda: app._stopping)
        go_on.set()
        await wait_until(lambda: app.return_code is not None)
    assert_stopped_for_good(app, tmp_path / "state")


async def test_a_sigcont_restarts_the_terminal_only_after_the_drivers_own_suspension(
    monkeypatch: pytest.MonkeyPatch, driver_signals: None
) -> None:
    """A hang-up sends SIGCONT too: it must not start application mode a second time (a second
    writer thread, a second non-daemon input thread, on a terminal that is gone). After a Ctrl+Z
    suspension it does, once."""
    driver = ConsoleDriver(App())
    calls: list[str] = []
    monkeypatch.setattr(driver, "start_application_mode", lambda: calls.append("start"))
    monkeypatch.setattr(driver, "stop_application_mode", lambda: calls.append("stop"))
    monkeypatch.setattr(driver, "close", lambda: None)
    driver._sigcont_application(signal.SIGCONT, None)  # the kernel's, on a hang-up
    assert calls == []
    driver.suspend_application_mode()  # what SIGTSTP (Ctrl+Z) does before stopping the process
    driver._sigcont_application(signal.SIGCONT, None)  # `fg`
    driver._sigcont_application(signal.SIGCONT, None)  # a second one resumes nothing
    assert calls == ["stop", "start"]
