"""The trading and monitoring settings the TP/SL engine decides with, as one frozen value.

Decisions are pure functions of (state, event, instrument, params); reading ``[trading]`` and
``[monitor]`` once into these records keeps them free of the settings tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.core.models import TriggerBy

if TYPE_CHECKING:  # read once by the runtime; the decisions that take these records never see it
    from engine.core.settings import Settings


@dataclass(frozen=True, slots=True)
class TradingParams:
    """``[trading]``: how trades are planned and protected."""

    tp_split: tuple[float, ...] = (85.0, 5.0, 5.0, 5.0)
    entries: int = 3
    min_tp_notional: float = 5.0
    taker_fee_rate: float = 0.00055
    maker_fee_rate: float = 0.0002
    breakeven_buffer_pct: float = 0.02
    cancel_entries_after_tp1: bool = True
    trailing_stop_after_tp1: bool = False
    trailing_stop_pct: float = 1.0
    adopt_stop_loss_pct: float = 2.0
    sl_retry_attempts: int = 3
    trigger_by: TriggerBy = TriggerBy.LAST_PRICE
    max_leverage: float = 50.0
    default_leverage: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> TradingParams:
        """The ``[trading]`` section of ``settings``."""
        t = settings.section("trading")
        return cls(
            tp_split=tuple(float(p) for p in t["tp_split"]),
            entries=int(t["entries"]),
            min_tp_notional=float(t["min_tp_notional"]),
            taker_fee_rate=float(t["taker_fee_rate"]),
            maker_fee_rate=float(t["maker_fee_rate"]),
            breakeven_buffer_pct=float(t["breakeven_buffer_pct"]),
            cancel_entries_after_tp1=bool(t["cancel_entries_after_tp1"]),
            trailing_stop_after_tp1=bool(t["trailing_stop_after_tp1"]),
            trailing_stop_pct=float(t["trailing_stop_pct"]),
            adopt_stop_loss_pct=float(t["adopt_stop_loss_pct"]),
            sl_retry_attempts=int(t["sl_retry_attempts"]),
            trigger_by=TriggerBy(t["trigger_by"]),
            max_leverage=float(t["max_leverage"]),
            default_leverage=float(t["default_leverage"]),
        )


@dataclass(frozen=True, slots=True)
class MonitorTiming:
    """``[monitor]``: how often the safety nets run (seconds)."""

    reconcile_positions_s: float = 30.0
    reconcile_orders_s: float = 10.0
    execution_poll_s: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitorTiming:
        """The ``[monitor]`` section of ``settings``."""
        m = settings.section("monitor")
        return cls(
            reconcile_positions_s=float(m["reconcile_positions_s"]),
            reconcile_orders_s=float(m["reconcile_orders_s"]),
            execution_poll_s=float(m["execution_poll_s"]),
        )
