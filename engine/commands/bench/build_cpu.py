"""The CPU a snapshot build itself takes on the engine's loop, apart from the engine work around it.

A build takes turns of the loop (its reads, and the engine's precedence between its long pieces), and
the engine's own work runs in those turns: under the benchmark's virtual clock, which runs the market
as fast as the CPU allows, the engine always has work ready, so a build's real time is mostly that
work (an upper bound of the build's cost, which the bench reports too). This counts only the steps
of the build's task and of the tasks it starts (the cache's loads), each timed with the thread's CPU
clock (the store's fsync thread and the console's thread are not in it).

The build's tasks are told apart by a context variable they inherit (a task copies its creator's
context), and timed by wrapping their coroutines as the loop's task factory makes them: nothing is
added to the engine's own steps, which a wrapper around every callback of the loop would slow down.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Coroutine, Generator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_IN_BUILD: ContextVar[bool] = ContextVar("bench_in_build", default=False)
"""Set in a timed build's task; the tasks it starts inherit it."""


async def in_build(build: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``build`` marked as a build's work: in a task of its own whose context has the mark from
    its first step on (the caller's context is left as it was)."""
    context = contextvars.copy_context()
    context.run(_IN_BUILD.set, True)
    return await asyncio.get_running_loop().create_task(build(), context=context)


class _TimedSteps(Coroutine[Any, Any, T]):
    """A coroutine that runs ``inner`` step by step, adding each step's thread CPU to ``counter``."""

    __slots__ = ("_counter", "_inner")

    def __init__(self, inner: Coroutine[Any, Any, T], counter: BuildCpu) -> None:
        self._inner, self._counter = inner, counter

    def send(self, value: Any) -> Any:
        started = time.thread_time()
        try:
            return self._inner.send(value)
        finally:
            self._counter.seconds += time.thread_time() - started

    def throw(self, *args: Any) -> Any:
        started = time.thread_time()
        try:
            return self._inner.throw(*args)
        finally:
            self._counter.seconds += time.thread_time() - started

    def close(self) -> None:
        self._inner.close()

    def __await__(self) -> Generator[Any, None, T]:
        return self._inner.__await__()


class BuildCpu:
    """While entered (on the running loop), adds up in :attr:`seconds` the thread CPU time of the
    steps of every task made in a build's context (:func:`in_build`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._factory: Any = None

    def __enter__(self) -> BuildCpu:
        loop = self._loop = asyncio.get_running_loop()
        self._factory = previous = loop.get_task_factory()
        counter = self

        def make_task(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
            context = kwargs.get("context")  # else the task copies the current one: look there
            if context.get(_IN_BUILD, False) if context is not None else _IN_BUILD.get():
                coro = _TimedSteps(coro, counter)
            if previous is not None:
                return previous(loop, coro, **kwargs)
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(make_task)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.set_task_factory(self._factory)
