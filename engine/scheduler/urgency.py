"""Urgency tiers: how often each monitor is checked against the venue, decided from risk.

A check verifies a monitor's orders and position on the venue and polls its executions: the safety
net for a silent stream. Checking every monitor every few seconds costs the same for a position a
hair from its stop as for one far from everything; the tier makes the cost follow the risk.

Each monitor gets a :class:`Tier`, recomputed on every price of the series its stop triggers on:

* **Distance.** The nearest of its triggers — the stop-loss's trigger price, the take-profits not yet
  filled, the unfilled limit entries (:func:`trigger_prices`) — in percent of the price
  (:func:`nearest_trigger_pct`). A trigger the price has already reached or passed (a long below its
  stop, above a TP) is at distance 0: its order should have fired, which is the moment to look.
* **Thresholds scaled by volatility.** The ``[monitor.urgency]`` percent thresholds
  (``critical_pct`` .. ``inactive_pct``) are the distances for a *calm* market, one whose typical
  absolute move per minute is ``calm_move_pct``. When a symbol moves faster than that (measured by
  :class:`VolatilityTracker`), every threshold widens in proportion —
  ``factor = clamp(move / calm_move_pct, 1, MAX_WIDENING)`` — so the same distance is a more urgent
  tier in a fast market: what matters is how soon the price can get there, not how far it is. The
  thresholds never shrink below the configured values (a quiet market does not relax them), and the
  widening is capped so one wild print cannot turn every monitor critical. This was chosen over pure
  volatility units (distance / move) because the operator's percent settings keep their meaning and
  stay the floor; with no volatility known yet the configured thresholds apply as they are.
* **Recent fills.** A monitor whose last fill is within ``recent_fill_s`` is at least ACTIVE: the
  orders a fill calls for (the stop's new size, the TPs, a breakeven move) are just being placed.
* **Unknowns are risky.** No price yet, or no trigger to measure against while the monitor is open:
  ACTIVE. A market order in flight (the entry at market, a close) is CRITICAL: its fill calls for
  immediate action (the stop goes out at once after an entry fill), so a missed one must be found fast.
* A CLOSED monitor, or one beyond ``inactive_pct`` (scaled) from every trigger, is IDLE.

The tier sets the check interval (:func:`check_interval`): ``[monitor.intervals]`` per tier while
push streams are down or off; with them healthy the stream drives every decision at once and the
checks are only the safety net, so the intervals are stretched by ``monitor.stream_stretch``.
Without adaptive intervals (the baseline profile) every monitor is checked every
``monitor.baseline_interval_s``, as the original bot did.

Everything here is pure: the caller hands in the price, the volatility and ``now`` (engine time).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from engine.core.models import Monitor, OrderType, Phase, SlotStatus

if TYPE_CHECKING:  # read once by the runtime; the decisions that take these records never see it
    from engine.core.settings import Settings


class Tier(StrEnum):
    """How urgently a monitor needs checking, most urgent first."""

    CRITICAL = "critical"
    ACTIVE = "active"
    STANDARD = "standard"
    INACTIVE = "inactive"
    IDLE = "idle"


TIERS: tuple[Tier, ...] = (Tier.CRITICAL, Tier.ACTIVE, Tier.STANDARD, Tier.INACTIVE, Tier.IDLE)
"""The tiers in urgency order (the most urgent first)."""

MAX_WIDENING = 10.0
"""The most a fast market widens the thresholds: beyond ten times the calm move the estimate is
dominated by a few prints, and every monitor of the symbol would be critical for it."""

_DEFAULT_INTERVALS = MappingProxyType(
    {Tier.CRITICAL: 1.0, Tier.ACTIVE: 3.0, Tier.STANDARD: 10.0, Tier.INACTIVE: 30.0, Tier.IDLE: 60.0}
)


def more_urgent(a: Tier, b: Tier) -> Tier:
    """The more urgent of two tiers."""
    return a if TIERS.index(a) <= TIERS.index(b) else b


@dataclass(frozen=True, slots=True)
class UrgencyParams:
    """``[monitor.urgency]``, ``[monitor.intervals]`` and the check timing of ``[monitor]``.

    The defaults are those of settings.toml.
    """

    critical_pct: float = 0.3
    active_pct: float = 1.0
    standard_pct: float = 3.0
    inactive_pct: float = 8.0
    recent_fill_s: float = 60.0
    calm_move_pct: float = 0.1
    intervals: Mapping[Tier, float] = field(default_factory=lambda: _DEFAULT_INTERVALS)
    stream_stretch: float = 10.0
    baseline_interval_s: float = 5.0

    @property
    def thresholds(self) -> tuple[tuple[Tier, float], ...]:
        """The calm-market distance (percent) up to which each tier but IDLE applies, in order."""
        return (
            (Tier.CRITICAL, self.critical_pct),
            (Tier.ACTIVE, self.active_pct),
            (Tier.STANDARD, self.standard_pct),
            (Tier.INACTIVE, self.inactive_pct),
        )

    @classmethod
    def defaults(cls) -> UrgencyParams:
        """The values of the shipped settings.toml (for a manager built without settings)."""
        return cls()

    @classmethod
    def from_settings(cls, settings: Settings) -> UrgencyParams:
        """The ``[monitor]`` check timing, ``[monitor.urgency]`` and ``[monitor.intervals]``.

        The settings loader has refused thresholds that do not increase and intervals that decrease
        from one tier to the next (:class:`~engine.core.settings.SettingsError`, a rule across keys
        kept with the other value rules, so ``check-config`` and the console's overrides see it too).
        """
        monitor = settings.section("monitor")
        urgency = monitor["urgency"]
        return cls(
            critical_pct=float(urgency["critical_pct"]),
            active_pct=float(urgency["active_pct"]),
            standard_pct=float(urgency["standard_pct"]),
            inactive_pct=float(urgency["inactive_pct"]),
            recent_fill_s=float(urgency["recent_fill_s"]),
            calm_move_pct=float(urgency["calm_move_pct"]),
            intervals=MappingProxyType({tier: float(monitor["intervals"][tier.value]) for tier in TIERS}),
            stream_stretch=float(monitor["stream_stretch"]),
            baseline_interval_s=float(monitor["baseline_interval_s"]),
        )


# --- triggers -----------------------------------------------------------------------------------

_WORKING = (SlotStatus.NEW, SlotStatus.PENDING, SlotStatus.OPEN, SlotStatus.CANCELLING)
"""Statuses of an order that may still execute: planned, sent, working, or not yet cancelled."""


def _is_entry(slot: str) -> bool:
    # engine.trading.slots.is_entry spells the same rule; the scheduler sits below the trading layer
    # (the manager uses it), so it reads the slot name itself rather than import trading.
    return slot.startswith("e")


def _triggers(m: Monitor) -> list[tuple[float, int]]:
    """(level, direction) of each trigger: direction +1 when the price reaches the level by falling
    (a long's stop and entries), -1 when by rising (a long's TPs); a short's are the other way."""
    out: list[tuple[float, int]] = []
    sign = m.side.sign
    tp_slots = set(m.tp_slots())
    stop_working = False
    for slot, order in m.orders.items():
        if order.status not in _WORKING:
            continue  # filled or gone: nothing left there to trigger
        if slot == "sl" and order.trigger_price:
            out.append((order.trigger_price, sign))
            stop_working = True
        elif slot in tp_slots and order.price:
            out.append((order.price, -sign))
        elif _is_entry(slot) and order.order_type is OrderType.LIMIT and order.price:
            out.append((order.price, sign))
    if not stop_working and m.size > 0 and m.sl_price > 0:
        # An open position whose stop is being (re)placed: its level is still where the monitor
        # must act, and the moment the order is missing is the riskiest one.
        out.append((m.sl_price, sign))
    return out


def trigger_prices(monitor: Monitor) -> list[float]:
    """The price levels at which something happens to ``monitor``: its stop-loss trigger, its
    take-profits not yet filled and its unfilled limit entries (the stop level alone while an open
    position's stop order is being placed)."""
    return [level for level, _ in _triggers(monitor)]


def nearest_trigger_pct(monitor: Monitor, price: float) -> float | None:
    """Percent of ``price`` to the nearest trigger; 0 when the price is at or past one (a stop that
    should have fired). None when there is no trigger or ``price`` is not a positive number."""
    return _nearest_pct(_triggers(monitor), price)


def _nearest_pct(triggers: Sequence[tuple[float, int]], price: float) -> float | None:
    if not (math.isfinite(price) and price > 0) or not triggers:
        return None
    return min(max(0.0, direction * (price - level)) for level, direction in triggers) / price * 100.0


def _market_order_in_flight(m: Monitor) -> bool:
    """An entry at market or a close is out, or about to be: the stop conditional (also a market
    order, but with a trigger price) is not one of them."""
    return any(
        order.order_type is OrderType.MARKET
        and order.trigger_price is None
        and slot != "sl"
        and order.status in _WORKING
        for slot, order in m.orders.items()
    )


def widening(move_pct_per_min: float | None, params: UrgencyParams) -> float:
    """How much the thresholds widen for a symbol moving ``move_pct_per_min``: 1 in a calm market
    (or when the move is not known yet), in proportion beyond, at most :data:`MAX_WIDENING`."""
    if move_pct_per_min is None or not math.isfinite(move_pct_per_min):
        return 1.0
    return min(MAX_WIDENING, max(1.0, move_pct_per_min / params.calm_move_pct))


def tier_for_distance(distance_pct: float, factor: float, params: UrgencyParams) -> Tier:
    """The tier of a monitor ``distance_pct`` from its nearest trigger with the thresholds widened by
    ``factor``; a distance equal to a threshold belongs to the more urgent tier."""
    for tier, pct in params.thresholds:
        if distance_pct <= pct * factor:
            return tier
    return Tier.IDLE


@dataclass(frozen=True, slots=True)
class Reach:
    """What of a monitor its tier depends on besides the price and the time, taken once per version
    of the monitor (the engine replaces a monitor to change it) rather than at each of its symbol's
    prices: a thousand symbols tick every second."""

    closed: bool
    market_order_in_flight: bool
    triggers: tuple[tuple[float, int], ...]
    last_fill_at: float | None

    @classmethod
    def of(cls, monitor: Monitor) -> Reach:
        """``monitor``'s reach as it is now."""
        return cls(
            monitor.phase is Phase.CLOSED,
            _market_order_in_flight(monitor),
            tuple(_triggers(monitor)),
            monitor.last_fill_at,
        )


def tier_for(
    monitor: Monitor | Reach,
    price: float | None,
    *,
    move_pct_per_min: float | None,
    now: float,
    params: UrgencyParams,
) -> Tier:
    """The monitor's tier at ``price`` (of the series its stop triggers on), for a symbol moving
    ``move_pct_per_min`` (see :class:`VolatilityTracker`), at engine time ``now``; from the monitor
    or its :class:`Reach`."""
    reach = monitor if isinstance(monitor, Reach) else Reach.of(monitor)
    if reach.closed:
        return Tier.IDLE
    if reach.market_order_in_flight:
        return Tier.CRITICAL
    distance = None if price is None else _nearest_pct(reach.triggers, price)
    if distance is None:
        tier = Tier.ACTIVE  # no price or nothing to measure against yet: treated as risky
    else:
        tier = tier_for_distance(distance, widening(move_pct_per_min, params), params)
    if reach.last_fill_at is not None and now - reach.last_fill_at <= params.recent_fill_s:
        tier = more_urgent(tier, Tier.ACTIVE)
    return tier


def check_interval(tier: Tier, params: UrgencyParams, *, streaming: bool, adaptive: bool = True) -> float:
    """Seconds between two checks of a monitor in ``tier``.

    ``streaming``: push streams are healthy, so the checks are only the safety net and stretch by
    ``stream_stretch``. ``adaptive`` False is the baseline profile: every monitor every
    ``baseline_interval_s``, whatever its tier or the streams, as the original bot.
    """
    if not adaptive:
        return params.baseline_interval_s
    interval = params.intervals[tier]
    return interval * params.stream_stretch if streaming else interval


# --- volatility ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _Series:
    anchor_ts: float
    anchor_price: float
    last_ts: float
    moves: deque[float]


class VolatilityTracker:
    """A short rolling mean of absolute log returns per symbol, normalised for irregular sampling.

    Under a random walk the typical absolute return grows with the square root of the time between
    two prices, so each return is divided by ``sqrt(dt)`` before it is averaged and the mean is
    scaled to one minute: ticks one second or one minute apart measure the same volatility. Prices
    closer than ``min_dt_s`` to the previous kept one do not make a return of their own (the next
    price measures from that one): over a few milliseconds a one-tick move divided by ``sqrt(dt)``
    would read as a storm.
    """

    def __init__(self, window: int = 30, min_dt_s: float = 1.0) -> None:
        self._window = max(1, window)
        self._min_dt_s = min_dt_s
        self._series: dict[str, _Series] = {}

    def observe(self, symbol: str, price: float, ts: float) -> None:
        """Take a price of ``symbol`` at ``ts`` (seconds). Non-positive (or non-finite) prices and
        samples not later than the last one seen are ignored."""
        if not (math.isfinite(price) and price > 0 and math.isfinite(ts)):
            return
        series = self._series.get(symbol)
        if series is None:
            self._series[symbol] = _Series(ts, price, ts, deque(maxlen=self._window))
            return
        if ts <= series.last_ts:
            return  # a repeat or a late delivery: its return would be against the wrong price
        series.last_ts = ts
        dt = ts - series.anchor_ts
        if dt < self._min_dt_s:
            return
        series.moves.append(abs(math.log(price / series.anchor_price)) / math.sqrt(dt))
        series.anchor_ts, series.anchor_price = ts, price

    def move_pct_per_min(self, symbol: str) -> float | None:
        """The typical absolute move per minute, in percent:
        ``mean(|ln(p / p_prev)| / sqrt(dt)) * sqrt(60) * 100``; None before the first return."""
        series = self._series.get(symbol)
        if series is None or not series.moves:
            return None
        return sum(series.moves) / len(series.moves) * math.sqrt(60.0) * 100.0
