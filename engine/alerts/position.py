"""Position alerts: "tell me when a position is losing 50 USDT, or its price is within 0.3 % of its stop".

:func:`position_conditions` is the decision (pure): which of the configured conditions a monitored
position meets at a price. :class:`PositionAlerts` is edge-triggered: a condition raises one alert
when it becomes true, and is armed again once it has been false (so a price hovering at the line
does not raise one alert per check).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.alerts.bus import AlertBus
from engine.alerts.model import Severity
from engine.core.models import Monitor, Phase, SlotStatus
from engine.core.numbers import fmt_monitor, fmt_number, fmt_usdt
from engine.core.settings import Settings


@dataclass(frozen=True, slots=True)
class PositionAlertParams:
    """``[alerts.position]``: each threshold 0 (off) or positive."""

    loss_usdt: float = 0.0  # uPnL at or below minus this
    gain_usdt: float = 0.0  # uPnL at or above this
    move_pct: float = 0.0  # |uPnL| at or above this percent of the entry value
    near_pct: float = 0.0  # the price within this percent of the stop-loss or the next take-profit

    @classmethod
    def from_settings(cls, settings: Settings) -> PositionAlertParams:
        return cls(
            loss_usdt=float(settings.get("alerts.position.loss_usdt")),
            gain_usdt=float(settings.get("alerts.position.gain_usdt")),
            move_pct=float(settings.get("alerts.position.move_pct")),
            near_pct=float(settings.get("alerts.position.near_pct")),
        )

    @property
    def any(self) -> bool:
        return any(v > 0 for v in (self.loss_usdt, self.gain_usdt, self.move_pct, self.near_pct))


def unrealised(m: Monitor, price: float) -> float:
    """The open part's PnL at ``price`` (USDT, before fees)."""
    entry = m.position_entry or m.avg_entry
    return (price - entry) * m.size * m.side.sign


def next_tp(m: Monitor) -> float | None:
    """The nearest take-profit not filled yet."""
    for slot, price in zip(m.tp_slots(), m.tp_prices, strict=False):
        order = m.orders.get(slot)
        if order is None or order.status is not SlotStatus.FILLED:
            return price
    return None


def position_conditions(m: Monitor, price: float, params: PositionAlertParams) -> dict[str, str]:
    """The conditions ``m`` meets at ``price``: kind -> what to say (empty for a flat monitor)."""
    if m.phase is Phase.CLOSED or m.size <= 0 or not price > 0:
        return {}
    met: dict[str, str] = {}
    upnl = unrealised(m, price)
    pnl, at = fmt_usdt(upnl, signed=True), fmt_number(price)
    if params.loss_usdt > 0 and upnl <= -params.loss_usdt:
        met["position_loss"] = f"uPnL {pnl} USDT (alert at -{fmt_number(params.loss_usdt)})"
    if params.gain_usdt > 0 and upnl >= params.gain_usdt:
        met["position_gain"] = f"uPnL {pnl} USDT (alert at +{fmt_number(params.gain_usdt)})"
    value = (m.position_entry or m.avg_entry) * m.size
    if params.move_pct > 0 and value > 0 and abs(upnl) / value * 100 >= params.move_pct:
        met["position_move"] = f"uPnL {pnl} USDT is {upnl / value * 100:+.2f}% of the entry value"
    if params.near_pct > 0:
        if m.sl_price > 0 and abs(price / m.sl_price - 1) * 100 <= params.near_pct:
            met["near_sl"] = (
                f"price {at} within {params.near_pct:g}% of the stop-loss {fmt_number(m.sl_price)}"
            )
        tp = next_tp(m)
        if tp is not None and abs(price / tp - 1) * 100 <= params.near_pct:
            met["near_tp"] = f"price {at} within {params.near_pct:g}% of the take-profit {fmt_number(tp)}"
    return met


class PositionAlerts:
    """Raises each position condition once when it becomes true; again only after it cleared."""

    def __init__(self, params: PositionAlertParams, alerts: AlertBus) -> None:
        self.params = params
        self.alerts = alerts
        self._active: set[tuple[str, str]] = set()  # (monitor key, kind) met at the last check

    def check(self, monitors: Iterable[Monitor], price_of: dict[str, float]) -> int:
        """Look at every monitor at its symbol's price; returns how many alerts were raised."""
        if not self.params.any:
            return 0
        now: set[tuple[str, str]] = set()
        raised = 0
        for m in monitors:
            price = price_of.get(m.symbol)
            if price is None:
                continue
            for kind, what in position_conditions(m, price, self.params).items():
                now.add((m.key, kind))
                if (m.key, kind) not in self._active:
                    severity = Severity.WARNING if kind in ("position_loss", "near_sl") else Severity.INFO
                    self.alerts.raise_alert(severity, kind, f"{fmt_monitor(m)}: {what}", key=m.key)
                    raised += 1
        self._active = now
        return raised
