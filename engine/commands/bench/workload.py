"""The benchmark's seeded workload: conservative trades on the simulator's synthetic symbols.

The same workload runs under each profile: ``positions`` conservative trades, one per synthetic
symbol (``SYN0001USDT`` ...), opened a few seconds apart once the engine is ready (within
:data:`OPENING_WINDOW_S` however many there are, each opening on its own so a slow one holds no
other back), then ``minutes`` of simulated time, all on a virtual clock with
``sim.latency = "realistic"`` and the mirror on. The figures are measured over those minutes, once
every trade was opened and the mirror has copied the openings: the opening burst is the warm-up, so
1000 positions are measured while 1000 positions are open on each account.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.clock import Clock
from engine.core.models import Side
from engine.core.profile import TOGGLES
from engine.core.settings import Settings, load_settings
from engine.runtime.scenario import ScenarioTrade, open_scenario_trade
from engine.sim.instruments import synthetic_symbols
from engine.trading.approaches import Approach
from engine.trading.manager import TpslManager

PROFILES = ("baseline", "optimized")
"""The two profiles, in the order the benchmark runs them (and the table shows them)."""
VOLATILITY = 0.8
"""Annualised, the simulator's default: about 0.85 % per simulated hour, enough for several TP1s
(0.4 % away) and stops (1.2 % away, or breakeven after TP1) within the hour with 15 positions (seed 7:
8 TP1s, 12 stops). A higher value closes every trade early, and an hour of no positions measures
the engine's fixed cost rather than monitoring."""
# Conservative offsets as the demo trades': close enough for the hour to reach entries, TPs and stops.
ENTRY_OFFSETS_PCT = (0.0, -0.3, -0.6)
TP_OFFSETS_PCT = (0.4, 0.8, 1.2, 1.6)
SL_OFFSET_PCT = -1.2
MARGIN = 200.0
LEVERAGE = 10.0
DEFAULT_BALANCE = 10_000.0
"""USDT: ``sim.balances.main`` in settings.toml (the mirror's is half of it)."""
TRADE_SPACING_S = 2.0
"""Seconds between two trades' openings (after the engine is ready), up to :data:`OPENING_WINDOW_S`."""
OPENING_WINDOW_S = 60.0
"""Every trade is sent within this many seconds of the start: more than 30 positions come closer
together (the venue's rate limit, not the spacing, then paces the burst)."""


@dataclass(frozen=True, slots=True)
class Workload:
    """What one benchmark run does; picklable, so it crosses into the child process as it is."""

    positions: int = 15
    minutes: float = 60.0
    seed: int = 7
    config: str | None = None
    """The settings file the user named (``--config``); the benchmark's own values override it."""
    volatility: float = VOLATILITY
    mirror: bool = True

    @property
    def seconds(self) -> float:
        """The simulated duration in seconds."""
        return self.minutes * 60.0


def trade_spacing(positions: int) -> float:
    """Seconds between two openings: :data:`TRADE_SPACING_S`, closer for a large workload."""
    return min(TRADE_SPACING_S, OPENING_WINDOW_S / positions)


def plan(positions: int, seed: int) -> list[ScenarioTrade]:
    """One conservative trade per synthetic symbol, seeded sides, a few seconds apart."""
    rng = random.Random(f"monitoring-cost:{seed}")  # the seed string of the first measurements
    spacing = trade_spacing(positions)
    return [
        ScenarioTrade(
            at=spacing * i,
            symbol=symbol,
            side=rng.choice([Side.BUY, Side.SELL]),
            approach=Approach.CONSERVATIVE,
            margin=MARGIN,
            leverage=LEVERAGE,
            entry_offsets_pct=ENTRY_OFFSETS_PCT,
            tp_offsets_pct=TP_OFFSETS_PCT,
            sl_offset_pct=SL_OFFSET_PCT,
        )
        for i, symbol in enumerate(synthetic_symbols(positions))
    ]


def settings_values(workload: Workload, profile: str) -> dict[str, Any]:
    """The settings the workload forces, with every profile toggle set to ``profile``."""
    values: dict[str, Any] = {
        "venue.kind": "sim",
        "sim.latency": "realistic",
        "sim.seed": workload.seed,
        "sim.demo_trades": 0,
        "sim.synthetic_symbols": workload.positions,
        "sim.volatility": workload.volatility,
        "mirror.enabled": workload.mirror,
        # Enough margin for every trade at once (the defaults fit 50 trades of MARGIN), the mirror
        # keeping its default half of main's equity, so a trade's size is the same at any scale.
        "sim.balances.main": max(DEFAULT_BALANCE, workload.positions * MARGIN * 2),
        "sim.balances.mirror": max(DEFAULT_BALANCE, workload.positions * MARGIN * 2) / 2,
    }
    return values | {f"profile.{toggle}": profile for toggle in TOGGLES}


def bench_settings(workload: Workload, profile: str, state_dir: Path) -> Settings:
    """The user's settings (``--config``, or the lookup order) with the workload's values."""
    base = load_settings(workload.config, state_dir)
    return base.with_values(settings_values(workload, profile), source="bench")


class Opener:
    """Opens the plan's trades, each at its time on its own task, and counts them as they finish."""

    def __init__(self, trades: list[ScenarioTrade]) -> None:
        self.trades = trades
        self.finished = 0
        self.opened = 0

    async def run(self, manager: TpslManager, clock: Clock) -> None:
        """Wait until the engine is ready, then open every trade ``at`` seconds after that. Each
        opening is its own task: one that waits for the rate budget does not delay the next one's
        request, as an operator's trades would not wait for each other."""
        await manager.wait_ready()
        start = clock.now()

        async def one(trade: ScenarioTrade) -> None:
            await clock.sleep(start + trade.at - clock.now())
            opened = await open_scenario_trade(manager, trade)  # awaited first: see below
            # (``self.opened += int(await ...)`` would read the count before the await and lose the
            # trades that finished meanwhile.)
            self.opened += int(opened)
            self.finished += 1

        await asyncio.gather(*(one(t) for t in self.trades))
