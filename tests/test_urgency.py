"""Urgency tiers: the pure decisions that time each monitor's check against the venue."""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import pytest
from test_snapshot_rows import new_manager
from tpsl_builders import BTC, P, opened, position_at

from engine.core.models import Instrument, Monitor, Phase, Side, SlotStatus, Ticker
from engine.core.settings import SettingsError, load_settings
from engine.scheduler.urgency import (
    MAX_WIDENING,
    TIERS,
    Tier,
    UrgencyParams,
    VolatilityTracker,
    check_interval,
    nearest_trigger_pct,
    tier_for,
    tier_for_distance,
    trigger_prices,
)
from engine.sim.feed import gbm_step
from engine.trading.approaches import Approach
from engine.trading.monitor import request_close

PARAMS = UrgencyParams()
LONG_AGO = 1_000_000.0
"""An engine time long after every builder's fill: no recent-fill floor."""
CALM = 0.05
"""A move per minute below ``calm_move_pct``."""

ETH = Instrument("ETHUSDT", tick_size=0.01, qty_step=0.01, min_qty=0.01, max_qty=1_000.0)
SOL = Instrument("SOLUSDT", tick_size=0.01, qty_step=0.1, min_qty=0.1, max_qty=100_000.0)
XRP = Instrument("XRPUSDT", tick_size=0.0001, qty_step=1.0, min_qty=1.0, max_qty=1e7)
DOGE = Instrument("DOGEUSDT", tick_size=0.00001, qty_step=1.0, min_qty=1.0, max_qty=1e8)
MARKS = {BTC: 100_000.0, ETH: 3_000.0, SOL: 150.0, XRP: 0.6, DOGE: 0.15}


def far_long() -> Monitor:
    """A long at 100 000 with its stop 10% below and its one TP 12% above (nothing else)."""
    return position_at(BTC, Side.BUY, 100_000.0, sl_pct=10.0, tp_pcts=[12.0])


def tier(m: Monitor, price: float | None, move: float | None = CALM, now: float = LONG_AGO) -> Tier:
    return tier_for(m, price, move_pct_per_min=move, now=now, params=PARAMS)


# --- tiers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        (0.0, Tier.CRITICAL),
        (0.3, Tier.CRITICAL),  # on a threshold: the more urgent tier
        (0.31, Tier.ACTIVE),
        (1.0, Tier.ACTIVE),
        (1.01, Tier.STANDARD),
        (3.0, Tier.STANDARD),
        (3.01, Tier.INACTIVE),
        (8.0, Tier.INACTIVE),
        (8.01, Tier.IDLE),
    ],
)
def test_tier_boundaries(distance: float, expected: Tier) -> None:
    assert tier_for_distance(distance, 1.0, PARAMS) is expected


def test_tier_of_a_monitor_follows_its_nearest_trigger() -> None:
    m = far_long()  # stop 90 000, TP 112 000
    assert tier(m, 100_000.0) is Tier.IDLE  # 10% from the stop
    assert tier(m, 95_000.0) is Tier.INACTIVE  # 5.3%
    assert tier(m, 92_000.0) is Tier.STANDARD  # 2.2%
    assert tier(m, 90_500.0) is Tier.ACTIVE  # 0.55%
    assert tier(m, 90_200.0) is Tier.CRITICAL  # 0.22%
    assert tier(m, 111_500.0) is Tier.ACTIVE  # 0.45% below the TP


def test_a_price_through_a_trigger_is_critical() -> None:
    """A long below its stop, or above its TP, is at distance 0 (the order should have fired), not
    far from it: the absolute distance would call it idle at the very moment to look."""
    m = far_long()
    assert nearest_trigger_pct(m, 80_000.0) == 0.0
    assert tier(m, 80_000.0) is Tier.CRITICAL
    assert tier(m, 125_000.0) is Tier.CRITICAL
    short = position_at(BTC, Side.SELL, 100_000.0, sl_pct=10.0, tp_pcts=[12.0])  # stop 110 000
    assert tier(short, 100_000.0) is Tier.IDLE
    assert tier(short, 120_000.0) is Tier.CRITICAL
    assert tier(short, 109_800.0) is Tier.CRITICAL
    assert tier(short, 87_000.0) is Tier.CRITICAL  # past its TP at 88 000


def test_fast_market_widens_the_thresholds_never_narrows_them() -> None:
    m = far_long()
    price = 91_800.0  # ~1.96% from the stop: standard in a calm market
    assert tier(m, price, move=None) is Tier.STANDARD
    assert tier(m, price, move=0.01) is Tier.STANDARD  # quieter than calm: thresholds stay
    assert tier(m, price, move=0.5) is Tier.ACTIVE  # 5x calm: active up to 5%
    assert tier(m, price, move=1.0) is Tier.CRITICAL  # 10x: critical up to 3%
    # The widening is capped: at 5% from the stop even a wild market stays ACTIVE (10x), not critical.
    assert tier(m, 94_750.0, move=1_000.0) is Tier.ACTIVE
    assert MAX_WIDENING == 10.0

    # Over a grid of prices and moves: a faster market never makes a monitor less urgent.
    for step in range(1, 120):
        p = 90_000.0 + step * 100.0
        calm = TIERS.index(tier(m, p, move=None))
        for move in (0.0, 0.05, 0.1, 0.2, 0.5, 2.0, 50.0):
            assert TIERS.index(tier(m, p, move=move)) <= calm, (p, move)


def test_a_recent_fill_keeps_a_monitor_at_least_active() -> None:
    m = far_long()
    assert m.last_fill_at is not None
    just_filled = m.last_fill_at + PARAMS.recent_fill_s
    assert tier(m, 100_000.0, now=just_filled) is Tier.ACTIVE
    assert tier(m, 100_000.0, now=just_filled + 1.0) is Tier.IDLE
    assert tier(m, 90_100.0, now=just_filled) is Tier.CRITICAL  # the floor never lowers a tier


def test_no_price_is_active_and_closed_is_idle() -> None:
    m = far_long()
    assert tier(m, None) is Tier.ACTIVE
    assert tier(m, 0.0) is Tier.ACTIVE
    assert tier(m, math.nan) is Tier.ACTIVE
    closed = copy.deepcopy(m)
    closed.phase = Phase.CLOSED
    assert tier(closed, 90_000.0, now=m.last_fill_at or 0.0) is Tier.IDLE
    assert tier(closed, None) is Tier.IDLE


def test_a_market_order_in_flight_is_critical() -> None:
    """The entry at market (its fill calls for the stop at once) and a close are one round trip from
    needing action: the check must find a fill the stream missed fast."""
    entering = opened(Approach.FAST).monitor
    assert entering.orders["e1"].status is SlotStatus.OPEN
    assert tier(entering, 100_000.0) is Tier.CRITICAL
    closing = request_close(far_long(), "manual", BTC, P).monitor
    assert tier(closing, 100_000.0) is Tier.CRITICAL


# --- triggers -----------------------------------------------------------------------------------


def conservative_long() -> Monitor:
    """Long at 100 000: limit entries at 99 000 / 98 000, stop 96 000, TPs 101 000 .. 104 000."""
    return position_at(
        BTC, Side.BUY, 100_000.0, sl_pct=4.0, tp_pcts=[1.0, 2.0, 3.0, 4.0], entry_pcts=[1.0, 2.0]
    )


def test_entries_tps_and_stop_are_triggers() -> None:
    m = conservative_long()
    assert m.orders["e1"].status is SlotStatus.FILLED  # the market entry: done, no level
    assert sorted(trigger_prices(m)) == [
        96_000.0,
        98_000.0,
        99_000.0,
        101_000.0,
        102_000.0,
        103_000.0,
        104_000.0,
    ]
    assert nearest_trigger_pct(m, 99_500.0) == pytest.approx(500 / 99_500 * 100)  # e2 below


def test_filled_and_gone_slots_are_not_triggers() -> None:
    m = conservative_long()
    m.orders["tp1"].status = SlotStatus.FILLED
    m.orders["e2"].status = SlotStatus.GONE
    assert sorted(trigger_prices(m)) == [96_000.0, 98_000.0, 102_000.0, 103_000.0, 104_000.0]
    assert nearest_trigger_pct(m, 100_000.0) == pytest.approx(2.0)
    no_triggers = far_long()
    no_triggers.orders = {}
    no_triggers.size = 0.0
    assert nearest_trigger_pct(no_triggers, 100_000.0) is None
    assert tier(no_triggers, 100_000.0) is Tier.ACTIVE  # open with nothing to measure: risky


def test_an_open_position_whose_stop_is_being_replaced_still_counts_its_stop() -> None:
    m = far_long()
    m.orders["sl"].status = SlotStatus.GONE  # cancelled outside; the next generation is on its way
    assert trigger_prices(m) == [112_000.0, 90_000.0]
    assert tier(m, 90_200.0) is Tier.CRITICAL


# --- check intervals and settings ---------------------------------------------------------------


def test_check_interval_by_tier_streams_and_profile() -> None:
    assert [check_interval(t, PARAMS, streaming=False) for t in TIERS] == [1.0, 3.0, 10.0, 30.0, 60.0]
    assert [check_interval(t, PARAMS, streaming=True) for t in TIERS] == [10.0, 30.0, 100.0, 300.0, 600.0]
    for t in TIERS:  # the baseline checks every monitor alike, streams or not
        assert check_interval(t, PARAMS, streaming=True, adaptive=False) == 5.0


def test_params_from_the_default_settings() -> None:
    params = UrgencyParams.from_settings(load_settings(apply_override=False))
    assert params == UrgencyParams()
    assert dict(params.intervals) == {t: check_interval(t, PARAMS, streaming=False) for t in TIERS}


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("[monitor.urgency]\ncritical_pct = 1.0\n", "monitor.urgency", "must increase"),
        ("[monitor.urgency]\ninactive_pct = 2.5\n", "monitor.urgency", "got 0.3, 1, 3, 2.5"),
        ("[monitor.intervals]\nidle = 20\n", "monitor.intervals", "must not decrease"),
    ],
)
def test_thresholds_and_intervals_out_of_order_are_refused(
    tmp_path: Path, text: str, where: str, what: str
) -> None:
    user = tmp_path / "mine.toml"
    user.write_text(text)
    with pytest.raises(SettingsError) as caught:
        load_settings(user, apply_override=False)
    assert caught.value.where == f"{user}: {where}"
    assert what in caught.value.what
    assert "\n" not in str(caught.value)


def test_order_is_checked_on_console_overrides_too() -> None:
    settings = load_settings(apply_override=False)
    with pytest.raises(SettingsError, match=r"monitor\.intervals: must not decrease"):
        settings.with_values({"monitor.intervals.critical": 5.0})
    # Several keys changed together are judged together.
    wider = settings.with_values({"monitor.urgency.critical_pct": 2.0, "monitor.urgency.active_pct": 2.5})
    assert UrgencyParams.from_settings(wider).active_pct == 2.5
    assert settings.with_values({"monitor.intervals.active": 1.0}).get("monitor.intervals.active") == 1.0


# --- volatility ---------------------------------------------------------------------------------


def test_volatility_on_a_known_series() -> None:
    vt = VolatilityTracker()
    vt.observe("X", 100.0, 0.0)
    assert vt.move_pct_per_min("X") is None  # one sample: no return yet
    assert vt.move_pct_per_min("Y") is None
    vt.observe("X", 101.0, 60.0)
    assert vt.move_pct_per_min("X") == pytest.approx(math.log(1.01) * 100)
    vt.observe("X", 100.0, 120.0)  # same size back down: the mean of absolute returns is unchanged
    assert vt.move_pct_per_min("X") == pytest.approx(math.log(1.01) * 100)


def test_volatility_is_the_same_for_irregular_sampling() -> None:
    """Returns that grow with sqrt(dt), as a random walk's do, read as one volatility whatever the
    spacing: 0.1% per minute sampled 1, 4, 9, 16, 25 s apart."""
    k = 0.001 / math.sqrt(60.0)  # |log return| per sqrt(second)
    vt = VolatilityTracker()
    ts, price = 0.0, 50.0
    vt.observe("X", price, ts)
    for i, dt in enumerate([1.0, 4.0, 9.0, 16.0, 25.0]):
        ts += dt
        price *= math.exp((-1) ** i * k * math.sqrt(dt))
        vt.observe("X", price, ts)
    assert vt.move_pct_per_min("X") == pytest.approx(0.1)


def test_volatility_ignores_bad_repeated_and_late_samples() -> None:
    vt = VolatilityTracker()
    vt.observe("X", 0.0, 0.0)
    vt.observe("X", -5.0, 1.0)
    vt.observe("X", math.inf, 2.0)
    assert vt.move_pct_per_min("X") is None  # nothing usable yet
    vt.observe("X", 100.0, 10.0)
    vt.observe("X", 120.0, 10.0)  # the same timestamp
    vt.observe("X", 120.0, 5.0)  # out of order
    assert vt.move_pct_per_min("X") is None
    vt.observe("X", 101.0, 70.0)
    assert vt.move_pct_per_min("X") == pytest.approx(math.log(1.01) * 100)


def test_volatility_window_rolls_and_close_samples_merge() -> None:
    vt = VolatilityTracker(window=2)
    for i, price in enumerate([100.0, 110.0, 110.0, 110.0]):  # one big move, then two flat minutes
        vt.observe("X", price, 60.0 * i)
    assert vt.move_pct_per_min("X") == 0.0  # the big move has left the window
    # A sample a few milliseconds after the previous one makes no return of its own: the next one
    # measures from the last kept price.
    vt.observe("X", 110.1, 180.002)
    assert vt.move_pct_per_min("X") == 0.0
    vt.observe("X", 111.1, 240.0)
    assert vt.move_pct_per_min("X") == pytest.approx(math.log(111.1 / 110.0) * 100 / 2)


# --- the scenarios ----------------------------------------------------------------------


def calm_walk(
    vt: VolatilityTracker, instrument: Instrument, start: float, rng: random.Random, minutes: int
) -> float:
    """The simulator's default market (volatility 0.8 annualised, one tick a second) for ``minutes``;
    feeds ``vt`` and returns the last price."""
    price = start
    for second in range(minutes * 60 + 1):
        vt.observe(instrument.symbol, instrument.round_price(price), float(second))
        price = gbm_step(price, 0.8, 1.0, rng.gauss(0.0, 1.0))
    return instrument.round_price(price)


def test_forty_positions_at_typical_distances_spread_over_the_tiers() -> None:
    """The original bot called 38 of its 39 positions critical. At typical distances in a calm
    market the tiers are spread, and only a small minority is critical."""
    rng = random.Random(13)
    vt = VolatilityTracker()
    instruments = list(MARKS)
    last = {i.symbol: calm_walk(vt, i, MARKS[i], rng, minutes=10) for i in instruments}
    for symbol in last:  # the sim's default market is calm: ~0.09%/min, thresholds as configured
        move = vt.move_pct_per_min(symbol)
        assert move is not None and 0.05 < move < PARAMS.calm_move_pct * 1.3, (symbol, move)

    tiers: list[Tier] = []
    for n in range(40):
        instrument = instruments[n % len(instruments)]
        sl = rng.uniform(1.5, 4.0)
        side = Side.BUY if n % 2 == 0 else Side.SELL
        if n % 4 < 2:  # fast: one TP
            m = position_at(instrument, side, MARKS[instrument], sl_pct=sl, tp_pcts=[rng.uniform(1.0, 6.0)])
        else:  # conservative: limit entries between the fill and the stop, four TPs
            tp1 = rng.uniform(1.0, 3.0)
            m = position_at(
                instrument,
                side,
                MARKS[instrument],
                sl_pct=sl,
                tp_pcts=[tp1, tp1 + 1.0, tp1 + 2.0, tp1 + 3.0],
                entry_pcts=[sl * 0.4, sl * 0.7],
            )
        price = last[instrument.symbol]
        tiers.append(
            tier_for(m, price, move_pct_per_min=vt.move_pct_per_min(m.symbol), now=LONG_AGO, params=PARAMS)
        )
    counts = {t: tiers.count(t) for t in TIERS}
    assert len([t for t in TIERS if counts[t]]) >= 3, counts
    assert counts[Tier.CRITICAL] <= 4, counts  # at most 10%


def test_a_price_walking_to_the_stop_moves_the_monitor_up_step_by_step() -> None:
    m = far_long()  # stop 90 000, TP 112 000
    vt = VolatilityTracker()
    seen: list[Tier] = []
    price, minute = 100_000.0, 0
    while price > 90_050.0:  # a calm 0.1% a minute, straight at the stop
        vt.observe(m.symbol, price, 60.0 * minute)
        seen.append(
            tier_for(m, price, move_pct_per_min=vt.move_pct_per_min(m.symbol), now=LONG_AGO, params=PARAMS)
        )
        price, minute = BTC.round_price(price * 0.999), minute + 1
    ranks = [TIERS.index(t) for t in seen]
    assert ranks == sorted(ranks, reverse=True)  # never less urgent on the way
    steps = [t for i, t in enumerate(seen) if i == 0 or t is not seen[i - 1]]
    assert steps == [Tier.IDLE, Tier.INACTIVE, Tier.STANDARD, Tier.ACTIVE, Tier.CRITICAL]


def test_the_managers_tier_follows_every_new_version_of_a_monitor_as_from_scratch() -> None:
    """The manager takes a monitor's triggers once per version of it (a decision replaces the
    monitor, never changes it in place), not at each price: whatever the versions and prices, its
    tier is the one computed from the monitor as it is."""
    manager = new_manager()
    rng = random.Random(5)
    m = position_at(BTC, Side.BUY, 100_000.0, sl_pct=4.0, tp_pcts=[1.0, 2.0, 3.0, 4.0], entry_pcts=[1.0, 2.0])
    manager.monitors[m.key] = m
    for step in range(400):
        if rng.random() < 0.4:  # a decision: a new version of the monitor
            m = manager.monitors[m.key] = copy.deepcopy(m)
            change = rng.randrange(4)
            if change == 0:
                m.orders["sl"].trigger_price = round(100_000.0 * rng.uniform(0.95, 0.999), 1)
            elif change == 1:
                slot = rng.choice([s for s in m.orders if s != "sl"])
                m.orders[slot].status = rng.choice([SlotStatus.OPEN, SlotStatus.FILLED, SlotStatus.GONE])
            elif change == 2:
                m.last_fill_at = manager.clock.now() - rng.choice([0.0, 1e6])
            else:
                m.phase = rng.choice([Phase.MONITORING, Phase.PROFIT_TAKING, Phase.CLOSED])
        price = round(100_000.0 * rng.uniform(0.96, 1.04), 1)
        manager.tickers[BTC.symbol] = Ticker(BTC.symbol, price, price, price, price, float(step + 1))
        manager._update_tier(m)
        expected = tier_for(
            m,
            price,
            move_pct_per_min=manager.volatility.move_pct_per_min(BTC.symbol),
            now=manager.clock.now(),
            params=manager.urgency,
        )
        assert manager.tiers[m.key] is expected, step
