"""Scenario files and demo trades: trades to open at given times after the engine starts.

A scenario is TOML (``opconsole run --headless --scenario FILE``)::

    seed = 7
    [[trade]]
    at = 0                      # seconds after start
    symbol = "BTCUSDT"
    side = "Buy"
    approach = "conservative"   # or "fast"
    margin = 100                # USDT
    leverage = 10
    entry_offsets_pct = [0.0, -0.5, -1.0]   # fast: one value
    tp_offsets_pct = [1.0, 2.0, 3.0, 4.0]
    sl_offset_pct = -2.0

Offsets are percent from the mark at placement, signed in the trade's favour (+ is the profit side),
so the same numbers serve both sides. ``[sim] demo_trades = N`` opens N seeded trades of this kind on
an empty state so a newcomer sees a living dashboard at once.
"""

from __future__ import annotations

import logging
import math
import random
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.alerts.model import Severity
from engine.core.clock import Clock
from engine.core.errors import BadInput
from engine.core.models import Side
from engine.core.state_keys import holds_trading
from engine.trading.approaches import Approach, TradeRejected, request_from_offsets
from engine.trading.manager import TpslManager
from engine.trading.params import TradingParams
from engine.venue.errors import VenueError

log = logging.getLogger("opconsole.scenario")

_DEFAULTS: dict[Approach, dict[str, Any]] = {
    Approach.CONSERVATIVE: {
        "entry_offsets_pct": [0.0, -0.5, -1.0],
        "tp_offsets_pct": [1.0, 2.0, 3.0, 4.0],
        "sl_offset_pct": -2.0,
    },
    Approach.FAST: {"entry_offsets_pct": [0.0], "tp_offsets_pct": [1.5], "sl_offset_pct": -1.5},
}
_KEYS = {"at", "account", "symbol", "side", "approach", "margin", "leverage", *_DEFAULTS[Approach.FAST]}


@dataclass(frozen=True, slots=True)
class ScenarioTrade:
    """One trade of a scenario."""

    at: float
    symbol: str
    side: Side
    approach: Approach
    margin: float
    leverage: float
    entry_offsets_pct: tuple[float, ...]
    tp_offsets_pct: tuple[float, ...]
    sl_offset_pct: float
    account: str = "main"


@dataclass(frozen=True, slots=True)
class Scenario:
    """A seed (informational; the market's seed comes from settings) and trades ordered by time."""

    seed: int | None
    trades: tuple[ScenarioTrade, ...]


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(where, f"must be a number, got {value!r}")
    # TOML reads nan and inf: no trade can use them (a NaN offset becomes a NaN price).
    if not math.isfinite(value):
        raise BadInput(where, f"must be a finite number, got {value!r}")
    return float(value)


def _numbers(where: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise BadInput(where, f"must be a non-empty list of numbers, got {value!r}")
    return tuple(_number(f"{where}[{i}]", v) for i, v in enumerate(value))


def parse_trade(raw: Mapping[str, Any], where: str, params: TradingParams) -> ScenarioTrade:
    """One ``[[trade]]`` table, checked for everything that does not need a price."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise BadInput(f"{where}.{unknown[0]}", "unknown key")
    for key in ("symbol", "side", "approach", "margin"):
        if key not in raw:
            raise BadInput(f"{where}.{key}", "missing")
    try:
        side = Side(raw["side"])
    except ValueError:
        raise BadInput(f"{where}.side", f"must be Buy or Sell, got {raw['side']!r}") from None
    try:
        approach = Approach(raw["approach"])
        if approach is Approach.ADOPTED:
            raise ValueError
    except ValueError:
        got = raw["approach"]
        raise BadInput(f"{where}.approach", f"must be fast or conservative, got {got!r}") from None
    values = {**_DEFAULTS[approach], **raw}
    entries = _numbers(f"{where}.entry_offsets_pct", values["entry_offsets_pct"])
    tps = _numbers(f"{where}.tp_offsets_pct", values["tp_offsets_pct"])
    sl = _number(f"{where}.sl_offset_pct", values["sl_offset_pct"])
    n_entries, n_tps = (1, 1) if approach is Approach.FAST else (params.entries, len(params.tp_split))
    if len(entries) != n_entries:
        raise BadInput(f"{where}.entry_offsets_pct", f"{approach.value} takes {n_entries} value(s)")
    if len(tps) != n_tps:
        raise BadInput(f"{where}.tp_offsets_pct", f"{approach.value} takes {n_tps} value(s)")
    if any(e >= 0 for e in entries[1:]):
        raise BadInput(f"{where}.entry_offsets_pct", "entries after the first must be < 0 (the loss side)")
    if any(t <= 0 for t in tps) or list(tps) != sorted(set(tps)):
        raise BadInput(f"{where}.tp_offsets_pct", "must be > 0 and increasing")
    if sl >= min(0.0, *entries):
        raise BadInput(f"{where}.sl_offset_pct", "must be below every entry offset (the loss side)")
    at = _number(f"{where}.at", values.get("at", 0.0))
    margin = _number(f"{where}.margin", values["margin"])
    leverage = _number(f"{where}.leverage", values.get("leverage", params.default_leverage))
    if at < 0:
        raise BadInput(f"{where}.at", "must be >= 0")
    if margin <= 0:
        raise BadInput(f"{where}.margin", "must be > 0")
    if not isinstance(values["symbol"], str):
        raise BadInput(f"{where}.symbol", "must be a string")
    return ScenarioTrade(
        at=at,
        symbol=values["symbol"],
        side=side,
        approach=approach,
        margin=margin,
        leverage=leverage,
        entry_offsets_pct=entries,
        tp_offsets_pct=tps,
        sl_offset_pct=sl,
        account=str(values.get("account", "main")),
    )


def parse_scenario(data: Mapping[str, Any], where: str, params: TradingParams) -> Scenario:
    """A whole scenario document; raises :class:`BadInput` naming the file and key."""
    unknown = sorted(set(data) - {"seed", "trade"})
    if unknown:
        raise BadInput(f"{where}: {unknown[0]}", "unknown key")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise BadInput(f"{where}: seed", "must be an integer")
    raw_trades = data.get("trade", [])
    if not isinstance(raw_trades, list) or not all(isinstance(t, dict) for t in raw_trades):
        raise BadInput(f"{where}: trade", "must be an array of tables ([[trade]])")
    trades = [parse_trade(t, f"{where}: trade[{i}]", params) for i, t in enumerate(raw_trades)]
    return Scenario(seed, tuple(sorted(trades, key=lambda t: t.at)))


def load_scenario(path: Path, params: TradingParams) -> Scenario:
    """Read and check a scenario file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInput(str(path), exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise BadInput(str(path), f"not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(str(path), f"not valid TOML: {exc}") from None
    return parse_scenario(data, str(path), params)


def demo_trades(count: int, symbols: Sequence[str], seed: int) -> list[ScenarioTrade]:
    """``count`` seeded trades over ``symbols``, a few seconds apart, with offsets small enough for
    the simulated market to reach entries, TPs and stops within the first hour."""
    rng = random.Random(f"demo:{seed}")
    trades = []
    for i in range(count):
        approach = Approach.CONSERVATIVE if i % 2 == 0 else Approach.FAST
        entries: tuple[float, ...]
        tps: tuple[float, ...]
        if approach is Approach.CONSERVATIVE:
            entries, tps, sl = (0.0, -0.3, -0.6), (0.4, 0.8, 1.2, 1.6), -1.2
        else:
            entries, tps, sl = (0.0,), (0.8,), -0.8
        trades.append(
            ScenarioTrade(
                at=5.0 * i,
                symbol=symbols[i % len(symbols)],
                side=rng.choice([Side.BUY, Side.SELL]),
                approach=approach,
                margin=float(rng.choice([150, 200, 250, 300])),
                leverage=10.0,
                entry_offsets_pct=entries,
                tp_offsets_pct=tps,
                sl_offset_pct=sl,
            )
        )
    return trades


async def open_scenario_trade(manager: TpslManager, trade: ScenarioTrade) -> bool:
    """Open one trade at the current mark; a refusal is raised as a warning alert (False)."""
    venue = manager.venues.get(trade.account)
    try:
        if venue is None:
            raise TradeRejected([f"unknown account {trade.account!r}"])
        if trade.symbol not in manager.instruments:
            manager.instruments.update(await venue.instruments([trade.symbol]))
        instrument = manager.instruments[trade.symbol]
        ticker = (await venue.tickers([trade.symbol]))[trade.symbol]
        request = request_from_offsets(
            account=trade.account,
            symbol=trade.symbol,
            side=trade.side,
            approach=trade.approach,
            margin=trade.margin,
            leverage=trade.leverage,
            mark=ticker.last,
            instrument=instrument,
            entry_offsets_pct=list(trade.entry_offsets_pct),
            tp_offsets_pct=list(trade.tp_offsets_pct),
            sl_offset_pct=trade.sl_offset_pct,
        )
        await manager.open_trade(request)
    except (TradeRejected, VenueError) as exc:
        manager.alerts.raise_alert(
            Severity.WARNING, "scenario_trade", f"{trade.symbol} {trade.side.value}: {exc}", key=trade.symbol
        )
        return False
    return True


async def run_trades(manager: TpslManager, trades: Sequence[ScenarioTrade], clock: Clock) -> int:
    """Wait until the engine is ready, then open each trade ``at`` seconds after that; returns how
    many were opened."""
    await manager.wait_ready()
    start = clock.now()
    opened = 0
    for trade in sorted(trades, key=lambda t: t.at):
        delay = start + trade.at - clock.now()
        if delay > 0:
            await clock.sleep(delay)
        opened += await open_scenario_trade(manager, trade)
    log.info("scenario: %d of %d trade(s) opened", opened, len(trades))
    return opened


def state_is_empty(state: Mapping[str, Any]) -> bool:
    """No monitor and no trade in the store: a first start (demo trades are welcome)."""
    return not holds_trading(state)
