"""Processes and signals: a state directory has one writer, every stop signal ends a run cleanly, and
the console exits when it loses its terminal. Each test runs the real command line in a subprocess."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from persistence.layout import StateFiles
from persistence.lock import StateLock

ROOT = Path(__file__).resolve().parents[1]


KEYS = {"BYBIT_API_KEY": "k" * 18, "BYBIT_API_SECRET": "s" * 36}


def opconsole(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args], capture_output=True, text=True, cwd=cwd,
        timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **KEYS},
    )  # fmt: skip


def seeded_state(tmp: Path, name: str = "state") -> Path:
    """A state directory holding a simulated market and monitors (a short virtual run)."""
    state = tmp / name
    result = opconsole(
        "run", "--headless", "--clock", "virtual", "--duration", "30", "--state-dir", str(state), cwd=tmp
    )
    assert result.returncode == 0, result.stderr
    return state


def contents(state: Path) -> dict[str, bytes]:
    """Every file of the state directory but the lock file (whose content is the holder's pid)."""
    lock = StateFiles(state).lock
    return {p.name: p.read_bytes() for p in sorted(state.iterdir()) if p.is_file() and p != lock}


def locked_message(state: Path, pid: int | None = None) -> str:
    return (
        f"opconsole: {state}: state directory {state} is in use by another opconsole process "
        f"(pid {pid or os.getpid()}); stop it or choose another --state-dir"
    )


def test_a_second_console_on_a_locked_state_dir_is_refused_before_its_ui(tmp_path: Path) -> None:
    state = seeded_state(tmp_path)
    before = contents(state)
    lock = StateLock(StateFiles(state).lock)
    lock.acquire()  # this test process is "the other instance"
    try:
        result = opconsole("--state-dir", str(state), cwd=tmp_path, timeout=60)
    finally:
        lock.release()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [locked_message(state)]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # no UI was drawn
    assert contents(state) == before


def test_sim_server_on_a_locked_state_dir_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    state = seeded_state(tmp_path)
    before = contents(state)
    lock = StateLock(StateFiles(state).lock)
    lock.acquire()  # an engine runs on this directory
    try:
        result = opconsole("sim-server", "--state-dir", str(state), cwd=tmp_path, timeout=60)
    finally:
        lock.release()
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [locked_message(state)]
    assert contents(state) == before


def test_sim_server_whose_lock_file_is_a_directory_is_one_line(tmp_path: Path) -> None:
    state = seeded_state(tmp_path)
    StateFiles(state).lock.unlink(missing_ok=True)
    StateFiles(state).lock.mkdir()
    before = contents(state)
    result = opconsole("sim-server", "--state-dir", str(state), cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"opconsole: {StateFiles(state).lock}: ")
    assert contents(state) == before


def test_an_engine_on_a_sim_servers_state_dir_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    server = subprocess.Popen(
        [sys.executable, "-m", "console", "sim-server", "--state-dir", str(state)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, **KEYS},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("opconsole sim-server: REST http://127.0.0.1:")
        before = contents(state)
        result = opconsole("run", "--headless", "--state-dir", str(state), "--duration", "1", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == locked_message(state, server.pid)
        assert contents(state) == before
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("where", ["port in use", "bad host", "address not ours"])
def test_sim_server_on_an_address_it_cannot_use_is_one_line(tmp_path: Path, where: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        host, port = {
            "port in use": ("127.0.0.1", taken.getsockname()[1]),
            "bad host": ("no-such-host.invalid", 0),
            "address not ours": ("192.0.2.1", 0),  # TEST-NET-1: never a local address
        }[where]
        result = opconsole(
            "sim-server", "--state-dir", str(tmp_path / "state"), "--host", host, "--port", str(port),
            cwd=tmp_path, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"opconsole: {host}:{port}: cannot listen there: ")
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_sim_server_port_out_of_range_is_one_line(tmp_path: Path, port: str) -> None:
    result = opconsole("sim-server", "--port", port, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("opconsole: sim-server: argument --port: ")


def journal_reasons(state: Path) -> list[str]:
    """The reasons of the journal's records, oldest first (none before the store wrote one)."""
    path = StateFiles(state).journal
    if not path.exists():
        return []
    return [json.loads(line)["reason"] for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("sig", "clock"),
    [
        (signal.SIGHUP, "real"),
        (signal.SIGHUP, "virtual"),
        (signal.SIGTERM, "real"),
        (signal.SIGINT, "virtual"),
    ],
)
def test_a_stop_signal_ends_a_headless_run_cleanly(tmp_path: Path, sig: signal.Signals, clock: str) -> None:
    """HUP (a closed terminal), INT and TERM: exit 0, the store's shutdown recorded, the snapshot
    written, on either clock (a virtual run of a simulated year is still going when the signal comes)."""
    state, out = tmp_path / "state", tmp_path / "out.json"
    args = ["--clock", clock, "--duration", str(365 * 86400)] if clock == "virtual" else ["--clock", "real"]
    run = subprocess.Popen(
        [sys.executable, "-m", "console", "run", "--headless", "--state-dir", str(state),
         "--snapshot-out", str(out), *args],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "startup" not in journal_reasons(state) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "startup" in journal_reasons(state), "the engine did not start"
        run.send_signal(sig)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert journal_reasons(state)[-1] == "shutdown"
    assert json.loads(out.read_text())["engine_state"] in ("running", "reconciling")


def test_a_console_that_loses_its_terminal_stops_its_engine_and_exits(tmp_path: Path) -> None:
    """The console runs in a pseudo-terminal whose master side is then closed (the ssh session
    drops): the process gets SIGHUP, stops its engine (shutdown recorded, lock released) and exits,
    instead of lingering on a screen writer that died on the closed terminal."""
    state = tmp_path / "state"
    pid, master = pty.fork()
    if pid == 0:  # the child: the console on the pty's slave side
        os.chdir(tmp_path)
        os.environ.update(TERM="xterm-256color", COLUMNS="160", LINES="50")
        os.execv(sys.executable, [sys.executable, "-m", "console", "--state-dir", str(state)])
    status = None
    try:
        drawn = 0
        deadline = time.monotonic() + 60
        # wait until the engine runs (its startup is on disk) and the UI has drawn a few frames
        while time.monotonic() < deadline and ("startup" not in journal_reasons(state) or drawn < 20_000):
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                drawn += len(os.read(master, 65536))
        assert "startup" in journal_reasons(state), "the console's engine did not start"
        os.close(master)  # the terminal goes away
        deadline = time.monotonic() + 60
        while status is None and time.monotonic() < deadline:
            done, code = os.waitpid(pid, os.WNOHANG)
            status = code if done else None
            time.sleep(0.05)
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert status is not None, "the console lingered after losing its terminal"
    assert os.waitstatus_to_exitcode(status) == 0
    assert journal_reasons(state)[-1] == "shutdown"
    lock = StateLock(StateFiles(state).lock)
    lock.acquire()  # released: another console can start here now
    lock.release()


def test_a_snapshot_when_the_venue_cannot_be_read_holds_what_the_engine_knows(tmp_path: Path) -> None:
    """Bybit on a closed loopback port (the server is down): the run still writes its snapshot (the
    engine state, monitors, ledger, alerts; no venue section made up) and exits 1 with one line."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nobody listens there
    config = tmp_path / "settings.toml"
    config.write_text(
        f'[venue]\nkind = "bybit"\nbase_url = "http://127.0.0.1:{port}"\nws_url = "ws://127.0.0.1:{port}"\n'
        "[mirror]\nenabled = false\n"
    )
    out = tmp_path / "out.json"
    result = opconsole(
        "run", "--headless", "--config", str(config), "--state-dir", str(tmp_path / "state"),
        "--duration", "1", "--snapshot-out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    # nothing escaped the command (the manager may log its stream's connect failures with their cause)
    assert 'console/__main__.py", line' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"opconsole: {out}: the venue could not be read (")
    assert last.endswith("); the snapshot holds only what the engine knows")
    snapshot = json.loads(out.read_text())
    assert snapshot["engine_state"] == "reconciling"  # it never agreed with a venue it cannot read
    assert snapshot["venue"] == "testnet"
    assert (snapshot["accounts"], snapshot["positions"], snapshot["market"]) == ({}, [], {})
    assert snapshot["ledger"]["totals"]["count"] == 0
    assert any(
        a["severity"] == "critical" and a["message"].startswith("exit snapshot: the venue could not be read")
        for a in snapshot["alerts"]
    )
    assert journal_reasons(tmp_path / "state")[-1] == "shutdown"


@pytest.mark.parametrize("command", ["snapshot-out", "export-trades"])
@pytest.mark.parametrize("target", ["a directory", "under a file"])
def test_an_output_file_that_cannot_be_written_is_one_line(tmp_path: Path, command: str, target: str) -> None:
    state = seeded_state(tmp_path) if command == "export-trades" else tmp_path / "state"
    before = contents(state) if state.exists() else None
    (tmp_path / "file").write_text("x")
    out, problem = {
        "a directory": (tmp_path, "is a directory; give a file name"),
        "under a file": (tmp_path / "file" / "out", f"{tmp_path / 'file'} is not a directory"),
    }[target]
    if command == "snapshot-out":
        args = ["run", "--headless", "--clock", "virtual", "--duration", "10", "--snapshot-out", str(out)]
    else:
        args = ["export-trades", str(out)]
    result = opconsole(*args, "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"opconsole: {out}: {problem}"]
    assert (contents(state) if state.exists() else None) == before  # refused before the run


def test_a_key_file_that_is_a_directory_is_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.mkdir(mode=0o700)
    config = tmp_path / "settings.toml"
    config.write_text(
        f'[venue]\nkind = "bybit"\n[accounts.main]\nkey_file = "{keys}"\n[mirror]\nenabled = false\n'
    )
    result = opconsole(
        "run", "--headless", "--config", str(config), "--state-dir", str(tmp_path / "state"),
        "--duration", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"opconsole: accounts.main.key_file: key file {keys} is not a regular file"
    )
    assert "Traceback" not in result.stderr
