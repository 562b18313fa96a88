"""One engine process of the soak: start it, read what it reports, kill it with SIGKILL, stop it.

What the child reports (see :mod:`engine.commands.soak.child`) is collected here: acknowledged
critical saves (checked against the state after a kill), alerts by type, trades opened, readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 120.0
"""Real seconds a started engine may take to reconcile and say it is ready."""
STOP_TIMEOUT_S = 60.0
"""Real seconds a SIGTERM'd engine may take to stop cleanly before it is killed."""


@dataclass(slots=True)
class Ack:
    """A critical save the engine said was on disk."""

    seq: int
    key: str
    reason: str


@dataclass(slots=True)
class Reports:
    """What an engine reported over all its lives."""

    alerts: Counter[str] = field(default_factory=Counter)
    critical_alerts: Counter[str] = field(default_factory=Counter)
    trades_opened: int = 0
    trades_refused: int = 0


class EngineProcess:
    """A soaked engine (``role`` main or intruder) as a child process, restartable."""

    def __init__(
        self, role: str, spec_path: Path, state_dir: Path, env: dict[str, str], log_path: Path
    ) -> None:
        self.role = role
        self.spec_path = spec_path
        self.state_dir = state_dir
        self.env = env
        self.log_path = log_path
        self.reports = Reports()
        self.acks: list[Ack] = []
        """This life's acknowledged critical saves (cleared by :meth:`start`)."""
        self.lives = 0
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._exited = asyncio.Event()

    @property
    def running(self) -> bool:
        """A life is under way (started, not yet seen to exit)."""
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start a new life on the same state directory."""
        self.acks = []
        self._ready = asyncio.Event()
        self.lives += 1
        with self.log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "engine.commands.soak.child",
                str(self.spec_path),
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                env=self.env,
            )
        self._reader = asyncio.create_task(self._read(self._process))

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Wait (real seconds) until the engine is reconciled; False if it died or took too long."""
        ready = asyncio.ensure_future(self._ready.wait())
        reader = self._reader
        waits: set[asyncio.Future[Any]] = {ready}
        if reader is not None:
            waits.add(reader)
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        return self._ready.is_set()

    async def kill(self) -> None:
        """SIGKILL the engine (no chance to save anything) and collect what it said before."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await self._finish(process)

    async def stop(self) -> None:
        """SIGTERM: a clean stop (killed if it takes too long)."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await self._finish(process)

    async def _finish(self, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        stream = process.stdout
        if stream is None:
            return
        while line := await stream.readline():
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # a half line written as the process was killed
            if isinstance(message, dict):
                self._take(message)

    def _take(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "ack":
            self.acks.append(Ack(int(message["seq"]), str(message["key"]), str(message["reason"])))
        elif event == "alert":
            self.reports.alerts[str(message["type"])] += 1
            if message.get("severity") == "critical":
                self.reports.critical_alerts[str(message["type"])] += 1
        elif event == "ready":
            self._ready.set()
        elif event == "trade":
            if message.get("opened"):
                self.reports.trades_opened += 1
            else:
                self.reports.trades_refused += 1
