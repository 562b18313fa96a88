"""The dashboard snapshot: one immutable, JSON-serialisable picture of the engine.

The console renders it, ``run --headless --snapshot-out`` writes it, the benchmark measures how long
it takes to build. Its keys are pinned in ``shared/CONTRACTS.md``; sections whose subsystem is not
built yet are present and empty, so scripts can rely on every key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from engine.clock import iso_utc
from engine.models import Instrument, Order, Position, Ticker, Wallet

if TYPE_CHECKING:
    from engine.runtime import EngineRuntime

SNAPSHOT_KEYS = (
    "time",
    "venue",
    "engine_state",
    "profile",
    "accounts",
    "positions",
    "orders",
    "monitors",
    "ledger",
    "stats",
    "market",
    "insights",
    "cache",
    "persistence",
    "api_calls",
    "alerts",
)
CACHE_CATEGORIES = (
    "account_data",
    "positions",
    "orders",
    "stats",
    "market_data",
    "ai_insights",
    "full_dashboard",
)
_MONEY_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class DashboardSnapshot:
    """An immutable snapshot; ``data`` is a read-only mapping with exactly :data:`SNAPSHOT_KEYS`."""

    data: Mapping[str, Any]

    def to_json(self, indent: int | None = 2) -> str:
        """Canonical JSON (sorted keys) so identical states give byte-identical files."""
        return json.dumps(self.data, indent=indent, sort_keys=True, default=_frozen_default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def _frozen_default(value: Any) -> Any:
    if isinstance(value, MappingProxyType):
        return dict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _money(value: float) -> float:
    return round(value, _MONEY_DECIMALS)


def account_row(wallet: Wallet, positions: int, orders: int) -> dict[str, Any]:
    """The ``accounts.<name>`` entry."""
    return {
        "equity": _money(wallet.equity),
        "available": _money(wallet.available),
        "upnl": _money(wallet.upnl),
        "positions": positions,
        "orders": orders,
    }


def position_row(position: Position, instrument: Instrument | None) -> dict[str, Any]:
    """One ``positions[]`` entry, prices rounded to the instrument's tick and sizes to its step."""
    tick = instrument.round_price if instrument else (lambda p: p)
    step = instrument.round_qty if instrument else (lambda q: q)
    return {
        "account": position.account,
        "symbol": position.symbol,
        "side": position.side.value if position.side else None,
        "size": step(position.size),
        "entry_price": tick(position.entry_price),
        "mark_price": tick(position.mark_price),
        "upnl": _money(position.upnl),
    }


def order_row(order: Order, purpose: str | None) -> dict[str, Any]:
    """One ``orders[]`` entry; ``purpose`` is None for orders that are not ours."""
    return {
        "account": order.account,
        "symbol": order.symbol,
        "side": order.side.value,
        "order_type": order.order_type.value,
        "qty": order.qty,
        "price": order.price,
        "trigger_price": order.trigger_price,
        "reduce_only": order.reduce_only,
        "link_id": order.link_id,
        "purpose": purpose,
        "status": order.status.value,
    }


def market_row(ticker: Ticker) -> dict[str, Any]:
    """The ``market.<symbol>`` entry."""
    return {"last": ticker.last, "mark": ticker.mark}


def _idle_cache_category() -> dict[str, Any]:
    return {"ttl": None, "hits": 0, "misses": 0, "hit_rate": None, "mean_load_ms": None, "entries": 0}


def empty_ledger() -> dict[str, Any]:
    """The ``ledger`` section before any trade closed."""
    return {"trades": [], "totals": {"count": 0, "wins": 0, "losses": 0, "pnl": 0.0, "fees": 0.0}}


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def freeze(data: dict[str, Any]) -> DashboardSnapshot:
    """Wrap a plain snapshot dict as an immutable :class:`DashboardSnapshot`."""
    missing = [k for k in SNAPSHOT_KEYS if k not in data]
    if missing:
        raise ValueError(f"snapshot lacks keys: {', '.join(missing)}")
    return DashboardSnapshot(_freeze(data))


async def build_snapshot(runtime: EngineRuntime) -> DashboardSnapshot:
    """Read every account through its venue and assemble the snapshot."""
    accounts: dict[str, Any] = {}
    positions: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    api_calls: dict[str, Any] = {}
    market: dict[str, Any] = {}
    symbols: list[str] = list(runtime.settings.get("sim.symbols"))
    instruments: dict[str, Instrument] = {}
    for name, venue in runtime.venues.items():
        if not instruments:
            instruments = await venue.instruments(symbols)
        wallet = await venue.wallet()
        account_positions = [p for p in await venue.positions() if p.is_open]
        account_orders = await venue.open_orders()
        accounts[name] = account_row(wallet, len(account_positions), len(account_orders))
        positions += [position_row(p, instruments.get(p.symbol)) for p in account_positions]
        orders += [order_row(o, None) for o in account_orders]
    if runtime.venues:
        first = next(iter(runtime.venues.values()))
        held = sorted({*symbols, *(p["symbol"] for p in positions)})
        market = {s: market_row(t) for s, t in sorted((await first.tickers(held)).items())}
        api_calls = {name: venue.calls.as_dict() for name, venue in runtime.venues.items()}
    positions.sort(key=lambda p: (p["account"], p["symbol"], p["side"] or ""))
    orders.sort(key=lambda o: (o["account"], o["symbol"], o["link_id"], o["side"]))
    return freeze(
        {
            "time": iso_utc(runtime.clock.now()),
            "venue": runtime.venue_label,
            "engine_state": runtime.state.value,
            "profile": {name: "pending" for name in runtime.settings.section("profile")},
            "accounts": accounts,
            "positions": positions,
            "orders": orders,
            "monitors": [],
            "ledger": empty_ledger(),
            "stats": {},
            "market": market,
            "insights": [],
            "cache": {
                "enabled": False,
                "hit_rate": None,
                "categories": {c: _idle_cache_category() for c in CACHE_CATEGORIES},
            },
            "persistence": {},
            "api_calls": api_calls,
            "alerts": [],
        }
    )
