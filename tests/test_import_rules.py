"""The layers hold: the core never needs the UI, the store knows no trading, the engine's
subpackages import only downwards, and the TP/SL decisions stay pure (the import-linter contracts in
pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_engine_and_persistence_import_without_textual_or_rich() -> None:
    modules = _modules("engine") + _modules("persistence")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"UI modules imported by the core: {result.stdout}"


def test_persistence_does_not_import_engine() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {_modules('persistence')!r}:\n"
        "    importlib.import_module(name)\n"
        "print(','.join(sorted(m for m in sys.modules if m == 'engine' or m.startswith('engine.'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_engine_never_reads_wall_time_or_sleeps_outside_the_clock() -> None:
    offenders = []
    for path in (ROOT / "engine").rglob("*.py"):
        if path.name in ("clock.py", "shared_clock.py"):  # the time sources themselves
            continue
        text = path.read_text()
        for needle in ("time.time()", "asyncio.sleep(", "time.monotonic()"):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


def test_import_linter_contracts_hold() -> None:
    # In a child process: import-linter sets up its own logging, which must not leak into other tests.
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
