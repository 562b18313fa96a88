"""Records of the engine's state that passed the store's checksum but cannot be decoded.

The store knows no trading: it proves a record was written whole, not that it is a monitor, a
ledger chunk or a price-alert book. The engine decodes its records here, once, before it loads them,
and treats one it cannot decode like a corrupt state file (README, "State and crash safety"): a copy
of the state files goes to ``quarantine-<time>/``, the record is dropped with a critical alert, and
reconciliation rebuilds the dropped monitors from the exchange (an open position without a monitor is
adopted and protected first). Refusing to start instead would leave open positions without anyone
managing their stops, so it is not an option here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from engine.alerts.bus import AlertBus
from engine.alerts.model import Severity
from engine.alerts.price import PriceAlertBook
from engine.core.models import Monitor
from engine.core.state_keys import LEDGER_PREFIX, MANAGER_KEY, MONITOR_PREFIX, PRICE_ALERTS_KEY
from engine.trading.ledger import Ledger, chunk_trades
from persistence.layout import StateFiles
from persistence.reasons import Reason
from persistence.recovery import quarantine_copy
from persistence.store import Store

_DECODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError)


def manager_state_problem(value: Any) -> str | None:
    """What is wrong with the TP/SL manager's own record (``engine:tpsl``), or None (pure)."""
    if not isinstance(value, dict):
        return "must be an object"
    tag = value.get("instance_tag")
    if tag is not None and not isinstance(tag, str):
        return "instance_tag must be a string"
    cursors = value.get("cursors") or {}
    if not isinstance(cursors, dict) or not all(
        isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) for t in cursors.values()
    ):
        return "cursors must map accounts to finite times"
    paused = value.get("paused") or []
    if not isinstance(paused, list) or not all(isinstance(a, str) for a in paused):
        return "paused must be a list of account names"
    return None


def undecodable_records(state: Mapping[str, Any]) -> dict[str, str]:
    """Store key -> why, for every engine record in ``state`` that cannot be decoded (pure)."""
    damaged: dict[str, str] = {}
    for key, value in state.items():
        try:
            if key.startswith(MONITOR_PREFIX):
                Monitor.from_dict(value)
            elif key.startswith(LEDGER_PREFIX):
                chunk_trades(key, value)
            elif key == PRICE_ALERTS_KEY:
                PriceAlertBook.from_json(value)
            elif key == MANAGER_KEY:
                problem = manager_state_problem(value)
                if problem:
                    raise ValueError(problem)
        except _DECODE_ERRORS as exc:
            damaged[key] = str(exc) or type(exc).__name__
    return damaged


async def drop_undecodable(store: Store, alerts: AlertBus, now: float) -> dict[str, str]:
    """Quarantine a copy of the state files and drop the records that cannot be decoded (durably),
    with one critical alert; returns what was dropped (key -> why), empty when nothing was."""
    damaged = undecodable_records(store.state)
    if not damaged:
        return damaged
    target = quarantine_copy(StateFiles(store.state_dir), now)
    ledger_keys = sorted(k for k in store.state if k.startswith(LEDGER_PREFIX))
    if any(k in damaged for k in ledger_keys):
        # The ledger's chunks are positional: rewrite it whole from the chunks that decode, so the
        # next recorded trade lands after them and never overwrites one.
        kept = Ledger.from_state({k: store.state[k] for k in ledger_keys if k not in damaged})
        chunks = dict(kept.chunks())
        for key in ledger_keys:
            if key not in chunks:
                await store.delete(key, reason=Reason.TRADE_RECORDED, force=True)
        for key, value in chunks.items():
            await store.save(key, value, reason=Reason.TRADE_RECORDED, force=True)
    for key in damaged:
        if not key.startswith(LEDGER_PREFIX):
            await store.delete(key, reason=Reason.EMERGENCY, force=True)
    details = "; ".join(f"{key}: {why}" for key, why in sorted(damaged.items()))
    alerts.raise_alert(
        Severity.CRITICAL,
        "state_recovery",
        f"{len(damaged)} stored record(s) could not be decoded and were dropped ({details}); a copy of "
        f"the state files is in {target.name}/; reconciliation rebuilds the monitors from the exchange",
    )
    return damaged
