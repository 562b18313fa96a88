"""The keys of the engine's state in the store: one place, so every reader and writer agrees.

The store knows no trading; it holds JSON values under string keys. The engine names them here:
one for the TP/SL manager itself, one per monitor, one per chunk of recorded trades, one for the
price-alert book and one for the mirror follower.
"""

from __future__ import annotations

from collections.abc import Iterable

MANAGER_KEY = "engine:tpsl"
"""The TP/SL manager's own state: the instance tag, the execution cursors and the paused accounts."""

MONITOR_PREFIX = "monitor:"
"""``monitor:<account>:<symbol>:<side>``: one TP/SL monitor."""

LEDGER_PREFIX = "ledger:"
"""``ledger:<index, 6 digits>``: one chunk of the ledger's closed trades, in the order recorded."""

PRICE_ALERTS_KEY = "price_alerts"
"""The operator's price-alert book."""

MIRROR_KEY = "engine:mirror"
"""The mirror follower's state: its links (main trade -> mirror trade) and its retry queue."""

ALERT_OUTBOX_KEY = "alerts:outbox"
"""The alert outbox: alerts waiting for (or recently given to) Telegram and the webhook, per sink."""

ALERT_SUMMARY_KEY = "alerts:summary"
"""The daily summary's bookkeeping: ``{"last_day": "YYYY-MM-DD"}``, the UTC day last summarised."""

STATS_PERIOD_KEY = "stats:period"
"""The statistics' period: ``{"start": epoch seconds}`` of the last reset (absent: since the first trade)."""


def monitor_key(monitor_key_: str) -> str:
    """The store key of the monitor keyed ``account:symbol:side``."""
    return MONITOR_PREFIX + monitor_key_


def ledger_key(index: int) -> str:
    """The store key of the ledger's ``index``-th chunk (zero-padded, so keys sort in order)."""
    return f"{LEDGER_PREFIX}{index:06d}"


def holds_trading(keys: Iterable[str]) -> bool:
    """Whether a state holds any monitor or recorded trade (an empty state gets the demo trades)."""
    return any(k.startswith((MONITOR_PREFIX, LEDGER_PREFIX)) for k in keys)
