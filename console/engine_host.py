"""Where the engine's event loop runs, seen from the console: on a thread of its own, or shared.

The console paints on Textual's event loop. If the engine shared that loop, a slow frame (1000 rows
repainted, a burst of log lines) would sit between an execution and the stop-loss it calls for. So
the real console runs the engine on :class:`EngineThread`: a thread with its own asyncio loop. The UI
never touches an engine object from its own thread; it hands work over and awaits the answer:

* :meth:`EngineHost.run` runs a coroutine on the engine loop (operator actions, the snapshot build)
  and awaits its result on the caller's loop. The work is shielded: when the UI stops waiting (the
  app exits, a worker is cancelled), a close or a kill switch already handed over still finishes.
* :meth:`EngineHost.read` runs a quick synchronous read on the engine loop and blocks for its answer
  (a dialog opening reads the pause states); it never blocks longer than ``read_timeout_s``.

What crosses back is immutable: the frozen :class:`~engine.dashboard.snapshot.DashboardSnapshot`,
strings, tuples. :class:`SharedLoop` keeps the engine on the caller's loop: the tests that drive a
frozen virtual clock from the test's own loop use it, and ``ui.engine_thread = false`` selects it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

log = logging.getLogger("opconsole.console")

T = TypeVar("T")

READ_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 10.0
SWITCH_INTERVAL_S = 0.001
"""The interpreter's thread switch interval while the engine has a thread of its own (CPython's is
5 ms): see :class:`EngineThread`."""


class EngineGone(RuntimeError):
    """The engine's loop has stopped (the console is shutting down): nothing more can run on it."""


class EngineHost(Protocol):
    """Runs engine work on the engine's event loop, from the console's."""

    @property
    def separate(self) -> bool:
        """True when the engine has a thread and loop of its own."""
        ...

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` on the engine loop and return its result."""
        ...

    def read(self, read: Callable[[], T]) -> T:
        """Run a quick synchronous ``read()`` on the engine loop and return its result."""
        ...

    def close(self) -> None:
        """Stop the engine loop (after the engine itself has stopped)."""
        ...


class SharedLoop:
    """The engine on the caller's own loop: ``run`` awaits, ``read`` calls."""

    separate = False

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Await ``work()`` right here."""
        return await work()

    def read(self, read: Callable[[], T]) -> T:
        """Call ``read()`` right here."""
        return read()

    def close(self) -> None:
        """Nothing to stop: the loop is the caller's."""


class EngineThread:
    """A daemon thread running the engine's own asyncio event loop.

    Daemon, so a console that dies without stopping it cannot leave a headless process behind over
    SSH; critical state is durable the moment it changes, and the positions keep their exchange-side
    stops. The orderly path is the console's shutdown: stop the engine through :meth:`run`, then
    :meth:`close`.
    """

    separate = True

    def __init__(self, name: str = "opconsole-engine", read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self._loop = asyncio.new_event_loop()
        self._read_timeout_s = read_timeout_s
        self._closed = False
        # Two threads run Python now, the UI's and the engine's, and only one holds the interpreter's
        # lock at a time: the other gets it when the holder waits, or after the switch interval.
        # At CPython's 5 ms, an engine step of 5 ms CPU took 15-60 ms while the UI built a frame of
        # a thousand positions; a fill's decision is made of such steps.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The engine's event loop (for measurement scripts; the console goes through run/read)."""
        return self._loop

    @property
    def thread(self) -> threading.Thread:
        """The engine's thread."""
        return self._thread

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            # Whatever the engine left behind (it has stopped its own tasks) is cancelled and
            # awaited, so no task is destroyed pending and no async generator is left open.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def _check_open(self) -> None:
        if self._closed or not self._thread.is_alive():
            raise EngineGone("the engine has stopped")

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` as a task on the engine loop; the caller awaits it without blocking its own
        loop. Cancelling the caller does not cancel the work."""
        self._check_open()

        async def call() -> T:
            return await work()

        future = asyncio.run_coroutine_threadsafe(call(), self._loop)
        return await asyncio.shield(asyncio.wrap_future(future))

    def read(self, read: Callable[[], T]) -> T:
        """Run ``read()`` on the engine loop between two of its steps, so it sees a consistent
        state; raises ``TimeoutError`` when the engine loop does not answer in time."""
        if threading.current_thread() is self._thread:
            return read()
        self._check_open()
        answer: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            if not answer.set_running_or_notify_cancel():
                return
            try:
                answer.set_result(read())
            except BaseException as exc:  # handed to the reader, who re-raises it
                answer.set_exception(exc)

        self._loop.call_soon_threadsafe(call)
        try:
            return answer.result(timeout=self._read_timeout_s)
        except concurrent.futures.TimeoutError:
            answer.cancel()
            raise TimeoutError(f"the engine did not answer within {self._read_timeout_s:g}s") from None

    def close(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the loop and wait for the thread to end (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # the loop already closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("the engine thread did not stop within %gs", timeout_s)
        sys.setswitchinterval(self._switch_interval)


def make_host(separate: bool) -> EngineHost:
    """The engine's own thread when ``separate`` (``ui.engine_thread``), else the caller's loop."""
    return EngineThread() if separate else SharedLoop()
