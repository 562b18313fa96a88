"""Shared fixtures: an isolated environment so no test reads the user's settings or state."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run every test in an empty directory with no $OPCONSOLE_CONFIG, so the lookup order is pure."""
    monkeypatch.delenv("OPCONSOLE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
