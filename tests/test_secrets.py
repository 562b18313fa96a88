"""Secrets never leak: a full console session over the fake Bybit V5 server, with Telegram alerts on,
a ``kill -9`` and a restart, run with recognisable fake secrets; then every byte the processes wrote
(to the terminal, to their logs, to every file under the test's directory) and everything the fake
Telegram received is searched for them. The Telegram token may appear in one place only: the Bot
API's request path, where Telegram wants it.

A key file that others can read is refused, with the fix (``chmod 600``) on one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from alert_fakes import FakeTelegram, Recorder

from engine.core.clock import RealClock
from engine.core.settings import OVERRIDE_FILE
from persistence.layout import StateFiles

KEYS = {
    "BYBIT_API_KEY": "SECRETKEYmain0001",
    "BYBIT_API_SECRET": "SECRETsecretmain0001xyz",
    "BYBIT_MIRROR_API_KEY": "SECRETKEYmirror0001",
    "BYBIT_MIRROR_API_SECRET": "SECRETsecretmirror0001xyz",
}
TOKEN = "123456:SECRETtelegramTOKEN"
SECRETS = [*KEYS.values(), TOKEN]
CHAT_ID = "4242"
WAIT_S = 60.0
"""A generous deadline for each step (never asserted as a speed)."""

# A position row of the dashboard: account, symbol, side (the demo trades open them on the fake server).
POSITION_ROW = re.compile(r"main\s+(BTC|ETH|SOL)USDT\s+(Buy|Sell)")
# The log pane's title, drawn in its border.
LOG_PANE = re.compile(r"─\s+Log\s+─")
# Terminal control sequences: CSI (colours, cursor moves), OSC (titles, links) and two-byte escapes.
ESCAPES = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def leak_forms(secret: str) -> list[bytes]:
    """The shapes a leaked secret takes: plain text, and URL-encoded (the token has a colon)."""
    return sorted({secret.encode(), quote(secret, safe="").encode()})


def leaks(data: bytes) -> list[str]:
    """The secrets found in ``data``, as it is and with terminal escapes removed (a styled leak)."""
    plain = ESCAPES.sub(b"", data)
    return [s for s in SECRETS if any(form in data or form in plain for form in leak_forms(s))]


def environment(tmp: Path) -> dict[str, str]:
    """The processes' environment: the fake secrets, a 100x30 xterm, and a home inside ``tmp`` so
    every file they write is under the test's directory and gets searched."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        **KEYS,
        "OPCONSOLE_TELEGRAM_TOKEN": TOKEN,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "TERM": "xterm-256color",
        "COLUMNS": "100",
        "LINES": "30",
    }


class RecordingTelegram(FakeTelegram):
    """The fake Bot API, also keeping every request whole: path, query, headers and raw body."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(recorder, TOKEN, CHAT_ID)
        self.raw: list[tuple[str, str, dict[str, str], bytes]] = []

    async def send_message(self, request: web.Request) -> web.Response:
        body = await request.read()  # cached: the handler's request.json() reads it again
        self.raw.append((request.path, request.query_string, dict(request.headers), body))
        return await super().send_message(request)


class Terminal:
    """A process on a pseudo-terminal of 30 rows x 100 columns; keeps every byte it writes there
    (Textual draws on stderr, the exit message goes to stdout: both are the terminal)."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        os.set_blocking(self.master, False)
        self.output = bytearray()
        self.process = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)  # the child holds it: its exit ends the master's reads

    def drain(self) -> None:
        """Read what the process wrote so far."""
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO: the process and its terminal are gone
                return
            if not chunk:
                return
            self.output += chunk

    def screen(self, since: int = 0) -> str:
        """What was written from byte ``since`` on, escapes replaced by spaces (cells stay apart)."""
        return ESCAPES.sub(b" ", bytes(self.output[since:])).decode(errors="replace")

    async def show_log(self) -> None:
        """Enlarge the log pane (key l) until it is drawn: its log lines are then on the terminal
        too (the 100x30 layout keeps the pane on a tab of its own otherwise)."""
        since = len(self.output)
        self.send("l")
        await self.until(lambda: LOG_PANE.search(self.screen(since)) is not None, "the log pane")

    def send(self, keys: str) -> None:
        """Type ``keys``."""
        os.write(self.master, keys.encode())

    async def until(self, done: Callable[[], bool], what: str) -> None:
        """Read until ``done()`` (checked after each read), or fail naming ``what``."""
        deadline = time.monotonic() + WAIT_S
        while True:
            self.drain()
            if done():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen tail: {self.screen()[-2000:]!r}")
            await asyncio.sleep(0.05)

    async def wait(self) -> int:
        """The exit code, reading the terminal meanwhile (a full pty would block the process)."""
        await self.until(lambda: self.process.poll() is not None, "the console to exit")
        self.drain()
        return self.process.returncode

    def close(self) -> None:
        """Kill the process if it still runs; close the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.drain()
        os.close(self.master)


def files_under(root: Path) -> Iterator[Path]:
    """Every regular file below ``root``."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


@contextlib.asynccontextmanager
async def sim_server(tmp: Path, env: dict[str, str]) -> AsyncIterator[tuple[str, str]]:
    """``opconsole sim-server`` on 127.0.0.1 and a free port for the block, its output in files
    under ``tmp``; yields its REST and WebSocket URLs, and stops it with SIGINT (it saves its market)."""
    out, err = tmp / "server.out", tmp / "server.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "console", "sim-server", "--state-dir", str(tmp / "server-state"),
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        while (found := re.search(r"REST (\S+)\s+WebSocket (\S+)", out.read_text())) is None:
            assert server.returncode is None, err.read_text()
            assert time.monotonic() < deadline, "the sim-server did not start"
            await asyncio.sleep(0.05)
        yield found.group(1), found.group(2)
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(server.wait(), WAIT_S)
            except TimeoutError:
                server.kill()
                await server.wait()


async def console_session(
    config: Path, state: Path, env: dict[str, str], telegram: FakeTelegram
) -> list[bytes]:
    """Two console runs on ``state``, the first ended by ``kill -9``, the second quit by the
    operator; returns what each wrote to its terminal."""
    command = [sys.executable, "-m", "console", "--config", str(config), "--state-dir", str(state)]
    cwd = config.parent
    screens: list[bytes] = []
    first = Terminal(command, cwd, env)
    try:
        await first.until(lambda: POSITION_ROW.search(first.screen()) is not None, "the dashboard")
        # an operator change: the rollback panel flips a toggle, which writes the override file
        first.send("r")
        await first.until(lambda: "Rollback panel" in first.screen(), "the rollback panel")
        first.send(" ")
        first.send("\x1b")
        await first.until((state / OVERRIDE_FILE).exists, "the override file")
        await first.until(lambda: bool(telegram.recorder.messages), "a Telegram message")
        await first.show_log()
        first.process.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    finally:
        first.close()
        screens.append(bytes(first.output))
    second = Terminal(command, cwd, env)
    try:
        await second.until(lambda: POSITION_ROW.search(second.screen()) is not None, "the dashboard again")
        await second.show_log()
        second.send("q")  # with positions open it asks first
        await second.until(lambda: "Quit opconsole?" in second.screen(), "the quit question")
        second.send("y")
        assert await second.wait() == 0, second.screen()[-2000:]
    finally:
        second.close()
        screens.append(bytes(second.output))
    return screens


async def test_a_full_session_never_leaks_a_key_or_the_telegram_token(tmp_path: Path) -> None:
    env = environment(tmp_path)
    config_dir, state = tmp_path / "config", tmp_path / "state"
    config_dir.mkdir()
    config = config_dir / "settings.toml"
    telegram = await RecordingTelegram(Recorder(RealClock())).start()
    # The first send fails with a careless server's error that echoes the URL, token and all: the
    # sink's error (logged, shown, kept in the outbox) must not carry it on. The retry delivers.
    telegram.answer(502, {"ok": False, "description": f"Bad Gateway: {telegram.url}/bot{TOKEN}/sendMessage"})
    try:
        async with sim_server(tmp_path, env) as (base_url, ws_url):
            config.write_text(
                f'[venue]\nkind = "bybit"\nbase_url = "{base_url}"\nws_url = "{ws_url}"\n'
                "[mirror]\nenabled = true\n"
                f'[alerts.telegram]\nenabled = true\nchat_id = "{CHAT_ID}"\nbase_url = "{telegram.url}"\n'
                'min_severity = "info"\n'
            )
            screens = await console_session(config, state, env, telegram)
    finally:
        await telegram.stop()

    # The session was real: both runs drew the dashboard, the state was written, Telegram was used.
    assert all(POSITION_ROW.search(ESCAPES.sub(b" ", s).decode(errors="replace")) for s in screens)
    assert StateFiles(state).journal.is_file() and StateFiles(state).snapshot.is_file()
    assert (state / OVERRIDE_FILE).is_file()
    assert telegram.recorder.messages and telegram.raw

    found: dict[str, list[str]] = {}
    for number, screen in enumerate(screens, 1):
        found[f"terminal of run {number}"] = leaks(screen)
    for path in files_under(tmp_path):
        found[str(path.relative_to(tmp_path))] = leaks(path.read_bytes())
    # Telegram: the token belongs in the request path and nowhere else (query, headers, body).
    for number, (path, query, headers, body) in enumerate(telegram.raw):
        assert path == f"/bot{TOKEN}/sendMessage"
        found[f"telegram request {number}"] = leaks(query.encode() + repr(headers).encode() + body)
    assert {where: what for where, what in found.items() if what} == {}
    assert any(name.startswith("state/") for name in found), "the state directory was searched"


def test_a_key_file_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    """One line naming the file and ``chmod 600``, exit 2, and nothing of the file's content shown."""
    keys = tmp_path / "keys.toml"
    keys.write_text(f'api_key = "{KEYS["BYBIT_API_KEY"]}"\napi_secret = "{KEYS["BYBIT_API_SECRET"]}"\n')
    keys.chmod(0o644)
    config = tmp_path / "settings.toml"
    config.write_text(
        f'[venue]\nkind = "bybit"\n[accounts.main]\nkey_file = "{keys}"\n[mirror]\nenabled = false\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "console", "run", "--headless", "--config", str(config),
         "--state-dir", str(tmp_path / "state"), "--duration", "1"],
        capture_output=True, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k not in KEYS},
    )  # fmt: skip
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr
    # the last line is the refusal (the store may log its recovery of the new directory before it)
    assert stderr.strip().splitlines()[-1] == (
        f"opconsole: accounts.main.key_file: key file {keys} must be readable by its owner only (chmod 600)"
    )
    assert leaks(result.stdout + result.stderr) == []
