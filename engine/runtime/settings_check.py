"""The settings checks that core cannot make because they need a layer above it.

Core validates every key against the schema (types, ranges, formats) without knowing the simulator,
which it must not import. What depends on the simulator's catalog is checked here, by every command
before it starts anything (and by ``check-config``).
"""

from __future__ import annotations

from engine.core.settings import Settings
from engine.sim.instruments import check_symbols


def check_settings(settings: Settings) -> Settings:
    """``settings``, once the simulator-dependent checks pass; raises :class:`BadInput` otherwise.

    With the embedded simulator as the venue, every ``sim.symbols`` entry must be one it lists (a
    synthetic one within ``sim.synthetic_symbols``). With ``venue.kind = "bybit"`` the same key
    lists real symbols to watch, which the catalog need not hold (``sim-server``, whose market is
    always the simulator, checks them itself).
    """
    if settings.get("venue.kind") == "sim":
        check_symbols(list(settings.get("sim.symbols")), int(settings.get("sim.synthetic_symbols")))
    return settings
