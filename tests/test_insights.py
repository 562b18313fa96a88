"""The local insights provider: exposure, stop distance in volatility units, concentration, drawdown."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import replace

import pytest

from engine.core.models import Order, OrderStatus, OrderType, Position, Side, Ticker, Wallet
from engine.dashboard.insights import (
    InsightsProvider,
    PriceHistory,
    Thresholds,
    adverse_distance,
    concentration_note,
    drawdown_pct,
    exposure_by_symbol,
    hourly_sigma,
    risk_notes,
    stop_prices,
)


def position(symbol: str, side: Side, size: float, mark: float, account: str = "main") -> Position:
    return Position(account, symbol, side, size, mark, mark, 0.0, 0.0, 10.0, 0.0)


def stop_order(
    symbol: str, side: Side, trigger: float, account: str = "main", reduce_only: bool = True
) -> Order:
    return Order(
        account=account,
        order_id=f"{symbol}-{trigger}",
        link_id="",
        symbol=symbol,
        side=side,
        order_type=OrderType.MARKET,
        qty=1.0,
        price=None,
        status=OrderStatus.UNTRIGGERED,
        trigger_price=trigger,
        reduce_only=reduce_only,
    )


def test_hourly_sigma_recovers_a_known_volatility() -> None:
    rng = random.Random(7)
    sigma_per_s = 0.001
    price, t, samples = 100.0, 0.0, []
    for _ in range(3000):
        samples.append((t, price))
        price *= math.exp(rng.gauss(0.0, sigma_per_s))
        t += 1.0
    assert hourly_sigma(samples) == pytest.approx(sigma_per_s * math.sqrt(3600), rel=0.05)
    assert hourly_sigma(samples[:5]) is None  # too few returns to say
    assert hourly_sigma([(float(i), 100.0) for i in range(50)]) is None  # no movement


def test_the_stop_is_the_nearest_reduce_only_trigger_on_the_losing_side() -> None:
    long = position("BTCUSDT", Side.BUY, 1.0, 100.0)
    short = position("ETHUSDT", Side.SELL, 2.0, 50.0)
    orders = [
        stop_order("BTCUSDT", Side.SELL, 95.0),
        stop_order("BTCUSDT", Side.SELL, 97.0),  # the nearer stop
        stop_order("BTCUSDT", Side.SELL, 110.0),  # a conditional take-profit, not a stop
        stop_order("BTCUSDT", Side.SELL, 99.0, reduce_only=False),  # would open a short: not a stop
        stop_order("BTCUSDT", Side.SELL, 98.0, account="mirror"),  # another account's
        stop_order("ETHUSDT", Side.BUY, 52.0),
    ]
    assert stop_prices([long, short], orders) == {("main", "BTCUSDT"): 97.0, ("main", "ETHUSDT"): 52.0}
    assert adverse_distance(Side.BUY, 100.0, 97.0) == pytest.approx(math.log(100 / 97))
    assert adverse_distance(Side.SELL, 50.0, 52.0) == pytest.approx(math.log(52 / 50))


def test_exposure_nets_longs_and_shorts_per_symbol() -> None:
    positions = [
        position("BTCUSDT", Side.BUY, 1.0, 100.0),
        position("BTCUSDT", Side.SELL, 0.5, 100.0, account="mirror"),
        position("ETHUSDT", Side.SELL, 2.0, 10.0),
    ]
    assert exposure_by_symbol(positions) == {"BTCUSDT": (50.0, 150.0), "ETHUSDT": (-20.0, 20.0)}


def test_drawdown_from_the_peak() -> None:
    assert drawdown_pct(10_000.0, 9_000.0) == pytest.approx(10.0)
    assert drawdown_pct(10_000.0, 11_000.0) == 0.0
    assert drawdown_pct(0.0, 5.0) == 0.0


def test_notes_are_graded_and_ordered_most_severe_first() -> None:
    positions = [
        position("BTCUSDT", Side.BUY, 1.0, 100.0),  # stop 0.3 % away at 1 % hourly sigma: critical
        position("ETHUSDT", Side.SELL, 1.0, 10.0),  # no stop at all: critical
        position("SOLUSDT", Side.BUY, 1.0, 10.0),  # stop 5 % away: info
    ]
    stops = {("main", "BTCUSDT"): 99.7, ("main", "SOLUSDT"): 9.5}
    sigmas = {"BTCUSDT": 0.01, "SOLUSDT": 0.01, "ETHUSDT": None}
    notes = risk_notes(positions, stops, sigmas, equity=900.0, peak_equity=1000.0)
    kinds = [(n.kind, n.severity, n.symbol) for n in notes]
    assert kinds[0] == ("drawdown", "critical", None)  # 10 % below the peak
    assert ("no_stop", "critical", "ETHUSDT") in kinds
    btc = next(n for n in notes if n.kind == "stop_distance" and n.symbol == "BTCUSDT")
    assert btc.severity == "critical" and btc.value == pytest.approx(math.log(100 / 99.7) / 0.01, abs=1e-3)
    sol = next(n for n in notes if n.kind == "stop_distance" and n.symbol == "SOLUSDT")
    assert sol.severity == "info"
    concentration = next(n for n in notes if n.kind == "concentration")
    assert concentration.symbol == "BTCUSDT" and concentration.value == pytest.approx(100 / 120, abs=1e-4)
    ranks = [{"critical": 0, "warn": 1, "info": 2}[n.severity] for n in notes]
    assert ranks == sorted(ranks)


def test_the_provider_keeps_history_and_the_equity_peak() -> None:
    provider = InsightsProvider(history=100)
    rng = random.Random(3)
    price = 100.0
    for t in range(200):
        provider.observe(Ticker("BTCUSDT", price, price, price, price, float(t)))
        provider.observe(Ticker("BTCUSDT", price, price, price, price, float(t)))  # repeats ignored
        price *= math.exp(rng.gauss(0.0, 0.002))
    assert provider.sigma("BTCUSDT") is not None
    wallets = {"main": Wallet("main", 1000.0, 1000.0, 1000.0, 0.0, 0.0)}
    provider.compute([], [], wallets)
    wallets = {"main": Wallet("main", 950.0, 950.0, 950.0, 0.0, 0.0)}
    notes = provider.compute([position("BTCUSDT", Side.BUY, 1.0, price)], [], wallets)
    assert provider.peak_equity == 1000.0
    drawdown = next(n for n in notes if n["kind"] == "drawdown")
    assert drawdown["value"] == pytest.approx(5.0) and drawdown["severity"] == "warn"
    assert notes == provider.compute(
        [position("BTCUSDT", Side.BUY, 1.0, price)], [], wallets
    )  # deterministic


# --- the provider's memo: notes rebuilt only when what they show changed -------------------------


class _Unreadable(list[Order]):
    """Orders that fail the test if anything reads them."""

    def __iter__(self) -> Iterator[Order]:
        raise AssertionError("the orders were read")


def _observed(provider: InsightsProvider, tickers: list[Ticker]) -> InsightsProvider:
    for ticker in tickers:
        provider.observe(ticker)
    return provider


def _price_walk(symbols: list[str], rng: random.Random, samples: int = 30) -> list[Ticker]:
    tickers = []
    for symbol in symbols:
        price = rng.uniform(10.0, 100.0)
        for t in range(samples):
            tickers.append(Ticker(symbol, price, price, price, price, float(t)))
            price *= math.exp(rng.gauss(0.0, 0.002))
    return tickers


def test_only_the_rows_whose_note_changed_are_rebuilt() -> None:
    rng = random.Random(11)
    symbols = ["AUSDT", "BUSDT", "CUSDT", "DUSDT"]
    tickers = _price_walk(symbols, rng)
    provider = _observed(InsightsProvider(), tickers)
    positions = [position(s, Side.BUY, 1.0, 50.0 + i) for i, s in enumerate(symbols)]
    positions += [position(s, Side.SELL, 2.0, 50.0 + i, account="mirror") for i, s in enumerate(symbols)]
    stops = {(p.account, p.symbol): p.mark_price * (0.98 if p.side is Side.BUY else 1.02) for p in positions}
    wallets = {"main": Wallet("main", 1000.0, 1000.0, 1000.0, 0.0, 0.0)}
    first = provider.compute(positions, [], wallets, stops)

    moved = position("CUSDT", Side.BUY, 1.0, 55.0)  # main's CUSDT long, nearer its stop now
    positions[2] = moved
    second = provider.compute(positions, [], wallets, stops)

    def key(row: object) -> tuple[object, ...]:
        assert isinstance(row, Mapping)
        return (row["kind"], row["account"], row["symbol"])

    before = {key(row): row for row in first}
    changed = {key(row) for row in second if row != before[key(row)]}
    assert ("stop_distance", "main", "CUSDT") in changed and ("exposure", None, "CUSDT") in changed
    for row in second:  # a row is the same object exactly when it shows the same
        assert (row is before[key(row)]) is (key(row) not in changed)
    assert len(changed) <= 3  # the position's stop note, its symbol's exposure, maybe the concentration
    fresh = _observed(InsightsProvider(), tickers)
    assert second == fresh.compute(positions, [], wallets, stops)


def test_the_memoized_notes_equal_a_fresh_providers_through_random_changes() -> None:
    rng = random.Random(5)
    symbols = [f"S{i}USDT" for i in range(6)]
    tickers = _price_walk(symbols[:5], rng)  # the last symbol's volatility stays unknown
    provider = _observed(InsightsProvider(), tickers)
    positions = {
        (account, s): position(s, rng.choice([Side.BUY, Side.SELL]), 1.0, rng.uniform(10.0, 100.0), account)
        for account in ("main", "mirror")
        for s in symbols
    }
    known: dict[tuple[str, str], float] = {}
    orders: list[Order] = []
    equities = [1000.0]
    previous: list[object] = []
    reused = 0
    for step in range(60):
        change = rng.randrange(7)
        key = rng.choice(sorted(positions))
        p = positions[key]
        if change == 0:  # the mark moves
            positions[key] = position(
                p.symbol, p.side or Side.BUY, p.size, p.mark_price * rng.uniform(0.99, 1.01), p.account
            )
        elif change == 1:  # a monitor's stop is set or moved
            known[key] = p.mark_price * (0.97 if p.side is Side.BUY else 1.03)
        elif change == 2:  # a stop order, found among the orders when no monitor knows it
            known.pop(key, None)
            trigger = p.mark_price * (0.96 if p.side is Side.BUY else 1.04)
            orders.append(stop_order(p.symbol, (p.side or Side.BUY).opposite, trigger, p.account))
        elif change == 3:  # the position is closed, or opened again
            positions[key] = position(
                p.symbol, p.side or Side.BUY, 0.0 if p.size else 1.0, p.mark_price, p.account
            )
        elif change == 4:  # a new price: the symbol's volatility changes
            last = max(t.ts for t in tickers) + 1.0
            price = (
                next(t.last for t in reversed(tickers) if t.symbol == p.symbol)
                if p.symbol != symbols[-1]
                else 50.0
            )
            ticker = Ticker(p.symbol, price * 1.001, price, price, price, last)
            tickers.append(ticker)
            provider.observe(ticker)
        elif change == 5:  # the equity moves (the peak with it, or not)
            equities.append(equities[-1] * rng.uniform(0.95, 1.04))
        elif step > 30:  # the thresholds change (once past the middle, then stay)
            provider.thresholds = Thresholds(stop_sigma_warn=2.0, leverage_warn=0.05)
        wallets = {"main": Wallet("main", equities[-1], 0.0, 0.0, 0.0, 0.0)}
        state = (list(positions.values()), orders, wallets, dict(known))
        rows = provider.compute(*state)
        fresh = _observed(InsightsProvider(thresholds=provider.thresholds), tickers)
        fresh.observe_equity([Wallet("main", max(equities), 0.0, 0.0, 0.0, 0.0)])
        assert rows == fresh.compute(*state), f"step {step}"
        reused += sum(1 for row in rows if any(row is old for old in previous))
        previous = list(rows)
    assert reused > 0


def test_the_orders_are_not_read_when_every_position_has_a_monitor_stop() -> None:
    positions = [position("BTCUSDT", Side.BUY, 1.0, 100.0), position("ETHUSDT", Side.SELL, 1.0, 10.0)]
    known = {("main", "BTCUSDT"): 95.0, ("main", "ETHUSDT"): 11.0}
    wallets = {"main": Wallet("main", 1000.0, 1000.0, 1000.0, 0.0, 0.0)}
    notes = InsightsProvider().compute(positions, _Unreadable(), wallets, known)
    assert {n["kind"] for n in notes} == {"exposure", "concentration", "stop_distance", "drawdown"}
    assert stop_prices([], _Unreadable()) == {}


# --- the provider's reuse: the pure functions are the reference ------------------------------------


def _reference_rows(
    provider: InsightsProvider,
    state: tuple[list[Position], list[Order], dict[str, Wallet], dict[tuple[str, str], float]],
    samples: Mapping[str, list[tuple[float, float]]],
    peak: float,
) -> list[object]:
    """The rows of the pure risk_notes for this state (the volatility from the samples themselves)."""
    positions, orders, wallets, known = state
    unknown = [p for p in positions if (p.account, p.symbol) not in known]
    sigmas = {symbol: hourly_sigma(prices) for symbol, prices in samples.items()}
    equity = sum(w.equity for w in wallets.values())
    notes = risk_notes(
        positions, stop_prices(unknown, orders) | known, sigmas, equity, peak, provider.thresholds
    )
    return [note.as_dict() for note in notes]


def test_the_rows_equal_the_pure_notes_through_a_long_random_session() -> None:
    rng = random.Random(2024)
    symbols = [f"R{i}USDT" for i in range(8)]
    provider = InsightsProvider()
    samples: dict[str, list[tuple[float, float]]] = {}
    clock = 0.0

    def observe(symbol: str, price: float) -> None:
        nonlocal clock
        clock += 1.0
        samples.setdefault(symbol, []).append((clock, price))
        provider.observe(Ticker(symbol, price, price, price, price, clock))

    for ticker in _price_walk(symbols[:4], rng, samples=20):  # the others' volatility arrives later
        observe(ticker.symbol, ticker.last)
    marks = {s: rng.uniform(10.0, 100.0) for s in symbols}
    positions = [
        position(s, rng.choice([Side.BUY, Side.SELL]), rng.uniform(0.5, 3.0), marks[s], account)
        for account in ("main", "mirror")
        for s in symbols
    ]
    known = {
        (p.account, p.symbol): p.mark_price * (0.97 if p.side is Side.BUY else 1.03) for p in positions[:10]
    }
    orders: list[Order] = []
    equities = [10_000.0]
    previous: list[object] = []
    kinds_of_step: set[int] = set()
    for step in range(400):
        change = rng.randrange(11)
        kinds_of_step.add(change)
        i = rng.randrange(len(positions))
        p = positions[i]
        side = p.side or Side.BUY
        if change == 0:  # a third of the marks move (in place: the very same list)
            for j in rng.sample(range(len(positions)), len(positions) // 3):
                q = positions[j]
                mark = q.mark_price * rng.uniform(0.995, 1.005)
                positions[j] = position(q.symbol, q.side or Side.BUY, q.size, mark, q.account)
        elif change == 1:  # a mark moves too little to change a printed figure
            positions[i] = position(p.symbol, side, p.size, p.mark_price * (1 + 1e-12), p.account)
        elif change == 2:  # the position is closed or opened again (a new list)
            positions = list(positions)
            positions[i] = position(p.symbol, side, 0.0 if p.size else 1.0, p.mark_price, p.account)
        elif change == 3:  # a monitor's stop is set, moved or dropped
            if rng.random() < 0.3:
                known.pop((p.account, p.symbol), None)
            else:
                known[(p.account, p.symbol)] = p.mark_price * rng.choice([0.9, 0.98, 0.995, 1.005, 1.02])
        elif change == 4:  # stop orders (and a take-profit, and an entry) come and go
            orders = [o for o in orders if rng.random() < 0.8]
            for trigger in (0.96, 0.99, 1.04):
                factor = trigger if side is Side.BUY else 2.0 - trigger
                orders.append(stop_order(p.symbol, side.opposite, p.mark_price * factor, p.account))
            orders.append(
                stop_order(p.symbol, side.opposite, p.mark_price * 0.5, p.account, reduce_only=False)
            )
        elif change == 5:  # new prices: a volatility changes, or becomes known
            for symbol in rng.sample(symbols, 3):
                last = samples[symbol][-1][1] if symbol in samples else marks[symbol]
                for _ in range(rng.choice([1, 1, 6])):
                    last *= math.exp(rng.gauss(0.0, 0.003))
                    observe(symbol, last)
        elif change == 6:  # the equity moves: the peak with it, or not
            equities.append(equities[-1] * rng.uniform(0.9, 1.08))
        elif change == 7 and step > 200:  # the thresholds change (once past the middle)
            provider.thresholds = Thresholds(stop_sigma_warn=2.0, leverage_warn=0.01)
        elif change == 8:  # a hedge-mode pair: the same account and symbol twice
            positions = [*positions, position(p.symbol, side.opposite, 1.0, p.mark_price, p.account)]
        elif change == 9:  # the position flips side
            positions[i] = position(p.symbol, side.opposite, p.size, p.mark_price, p.account)
        # else: nothing changed since the last compute
        wallets = {"main": Wallet("main", equities[-1], 0.0, 0.0, 0.0, 0.0)}
        state = (positions, orders, wallets, dict(known))
        rows = provider.compute(*state)
        assert rows == _reference_rows(provider, state, samples, max(equities)), f"step {step}"
        if change == 10:  # the same state again: the same rows, in a list of its own
            assert rows is not previous and len(rows) == len(previous)
            assert all(row is old for row, old in zip(rows, previous, strict=True))
        previous = rows
    assert kinds_of_step == set(range(11))


def test_rows_of_notes_that_show_the_same_are_kept_and_no_volatility_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(8)
    symbols = ["AUSDT", "BUSDT", "CUSDT"]
    provider = _observed(InsightsProvider(), _price_walk(symbols, rng))
    positions = [position(s, Side.BUY, 1.0, 50.0 + i) for i, s in enumerate(symbols)]
    positions += [position(s, Side.SELL, 2.0, 50.0 + i, account="mirror") for i, s in enumerate(symbols)]
    known = {(p.account, p.symbol): p.mark_price * (0.98 if p.side is Side.BUY else 1.02) for p in positions}
    wallets = {"main": Wallet("main", 1000.0, 1000.0, 1000.0, 0.0, 0.0)}
    first = provider.compute(positions, [], wallets, known)
    reads: list[PriceHistory] = []
    sigma = PriceHistory.sigma

    def counted(history: PriceHistory) -> float | None:
        reads.append(history)
        return sigma(history)

    monkeypatch.setattr(PriceHistory, "sigma", counted)

    # The very same state, nothing observed since: the same rows, no volatility read again.
    again = provider.compute(positions, [], wallets, dict(known))
    assert again == first and again is not first
    assert all(row is old for row, old in zip(again, first, strict=True))
    assert reads == []

    # Every mark moves by too little to change a figure the notes print: every row is kept.
    nudged = [
        position(p.symbol, p.side or Side.BUY, p.size, p.mark_price * (1 + 1e-12), p.account)
        for p in positions
    ]
    assert all(
        row is old for row, old in zip(provider.compute(nudged, [], wallets, known), first, strict=True)
    )

    # A new price of one symbol: its volatility alone is read again, and only its stop notes change.
    provider.observe(Ticker("BUSDT", 51.5, 51.5, 51.5, 51.5, 1000.0))
    moved = provider.compute(nudged, [], wallets, known)
    assert len(reads) == 1
    before = {(r["kind"], r["account"], r["symbol"]): r for r in first}
    for row in moved:
        key = (row["kind"], row["account"], row["symbol"])
        assert (row is before[key]) is (key[0] != "stop_distance" or key[2] != "BUSDT"), key


def _note_key(row: object) -> tuple[object, ...]:
    assert isinstance(row, Mapping)
    return (row["kind"], row["account"], row["symbol"])


def test_a_refresh_of_some_symbols_makes_their_notes_at_the_current_state_and_keeps_the_others() -> None:
    """An order event on one symbol of a thousand made every note again at the new marks; now the
    event's symbols are made again, the others keep their last figures until a full computation."""
    rng = random.Random(23)
    symbols = ["AUSDT", "BUSDT", "CUSDT"]
    tickers = _price_walk(symbols, rng)
    provider = _observed(InsightsProvider(), tickers)
    positions = [position(s, Side.BUY, 1.0, 50.0 + i) for i, s in enumerate(symbols)]
    positions += [position(s, Side.SELL, 2.0, 50.0 + i, account="mirror") for i, s in enumerate(symbols)]
    stops = {(p.account, p.symbol): p.mark_price * (0.98 if p.side is Side.BUY else 1.02) for p in positions}
    first = {_note_key(row): row for row in provider.compute(positions, [], {"main": wallet(1000.0)}, stops)}

    def current(state: list[Position], equity: float) -> dict[tuple[object, ...], object]:
        fresh = _observed(InsightsProvider(), tickers)
        fresh.observe_equity([wallet(1000.0)])
        return {_note_key(row): row for row in fresh.compute(state, [], {"main": wallet(equity)}, stops)}

    moved = [
        position(p.symbol, p.side or Side.BUY, p.size, p.mark_price * 1.01, p.account) for p in positions
    ]
    for symbol in ("AUSDT", "BUSDT"):  # new prices: their volatility moves (BUSDT's shows only later)
        ticker = Ticker(symbol, 60.0, 60.0, 60.0, 60.0, 1000.0)
        tickers.append(ticker)
        provider.observe(ticker)
    rows = provider.compute(moved, [], {"main": wallet(990.0)}, stops, refresh={"AUSDT"})
    now = current(moved, 990.0)
    assert {_note_key(row) for row in rows} == now.keys()
    for row in rows:
        kind, _, symbol = _note_key(row)
        if symbol == "AUSDT" or kind == "drawdown":
            assert row == now[_note_key(row)]  # made at the current marks and equity
        elif kind != "concentration":
            assert row is first[_note_key(row)]  # kept, at the marks of the last computation
    assert rows != list(now.values())
    # The concentration is made of the exposures shown: AUSDT's at the new marks, the others' before.
    noted = [p for p in moved if p.symbol == "AUSDT"] + [p for p in positions if p.symbol != "AUSDT"]
    concentration = concentration_note(exposure_by_symbol(noted), Thresholds())
    assert concentration is not None
    [shown] = [row for row in rows if row["kind"] == "concentration"]
    assert shown == concentration.as_dict()

    resized = [replace(p, size=3.0) if (p.account, p.symbol) == ("main", "CUSDT") else p for p in moved]
    rows = provider.compute(resized, [], {"main": wallet(990.0)}, stops, refresh=set())
    by_key = {_note_key(row): row for row in rows}
    # Its size changed with no event said: its note and exposure are made again all the same.
    assert (
        by_key[("stop_distance", "main", "CUSDT")]
        == current(resized, 990.0)[("stop_distance", "main", "CUSDT")]
    )
    assert by_key[("exposure", None, "CUSDT")] == current(resized, 990.0)[("exposure", None, "CUSDT")]
    assert by_key[("stop_distance", "main", "BUSDT")] is first[("stop_distance", "main", "BUSDT")]

    closed = [replace(p, size=0.0) if (p.account, p.symbol) == ("mirror", "BUSDT") else p for p in resized]
    rows = provider.compute(closed, [], {"main": wallet(990.0)}, stops, refresh=set())
    by_key = {_note_key(row): row for row in rows}
    now = current(closed, 990.0)
    # Closed with no event said: its symbol's notes are made again, at the positions left.
    assert ("stop_distance", "mirror", "BUSDT") not in by_key
    assert by_key[("exposure", None, "BUSDT")] == now[("exposure", None, "BUSDT")]
    assert by_key[("stop_distance", "main", "BUSDT")] == now[("stop_distance", "main", "BUSDT")]

    assert provider.compute(closed, [], {"main": wallet(990.0)}, stops) == list(now.values())


def wallet(equity: float) -> Wallet:
    return Wallet("main", equity, equity, equity, 0.0, 0.0)


def test_a_refresh_of_the_due_symbols_alone_equals_the_whole_pass_through_a_random_session() -> None:
    """At a thousand positions a refresh of a few symbols passed over every position three times to
    find them; the positions new since the last computation are told by identity and only those
    looked at, and the due symbols' notes made in place. Through random changes, re-reads (every
    position a new object) and refreshes, the rows are the whole pass's."""
    rng = random.Random(41)
    symbols = [f"F{i}USDT" for i in range(10)]
    tickers = _price_walk(symbols, rng)
    quick, whole = _observed(InsightsProvider(), tickers), _observed(InsightsProvider(), tickers)
    passes = {"due": 0}
    changes_since = quick._changes_since

    def counted(*args: object) -> set[str] | None:
        found = changes_since(*args)  # type: ignore[arg-type]
        passes["due"] += found is not None
        return found

    quick._changes_since = counted  # type: ignore[method-assign]
    whole._changes_since = lambda *args: None  # type: ignore[method-assign]
    positions = [
        position(
            s, rng.choice([Side.BUY, Side.SELL]), float(rng.randint(1, 3)), rng.uniform(10, 100), account
        )
        for account in ("main", "mirror")
        for s in symbols
    ]
    stops = {(p.account, p.symbol): p.mark_price * 0.97 for p in positions if rng.random() < 0.8}
    orders = [
        stop_order(p.symbol, (p.side or Side.BUY).opposite, p.mark_price * 1.05, p.account) for p in positions
    ]
    equity = 10_000.0
    gone: list[Position] = []
    for step in range(300):
        positions = [replace(p, size=1.0) if not p.size and rng.random() < 0.5 else p for p in positions]
        for _ in range(rng.randrange(0, 4)):
            at = rng.randrange(len(positions))
            p = positions[at]
            roll = rng.random()
            if roll < 0.5:  # the mark moves
                positions[at] = replace(p, mark_price=p.mark_price * rng.uniform(0.99, 1.01))
            elif roll < 0.65:  # resized
                positions[at] = replace(p, size=float(rng.randint(1, 4)))
            elif roll < 0.7:  # turned
                positions[at] = replace(p, side=(p.side or Side.BUY).opposite)
            elif roll < 0.72:  # closed in place (a list with a position not open: the whole pass)
                positions[at] = replace(p, size=0.0)
            elif roll < 0.75:  # closed and gone from the list, or one opened
                if rng.random() < 0.5 and len(positions) > 1:
                    gone.append(positions.pop(at))
                elif gone:
                    positions.insert(at, gone.pop())
            elif roll < 0.9:  # its stop moves, or is known no more
                key = (p.account, p.symbol)
                stops[key] = p.mark_price * rng.uniform(0.9, 0.99)
                if rng.random() < 0.2:
                    del stops[key]
            else:  # a new price: the symbol's volatility moves
                ticker = Ticker(
                    p.symbol, p.mark_price, p.mark_price, p.mark_price, p.mark_price, 100.0 + step
                )
                quick.observe(ticker)
                whole.observe(ticker)
        if rng.random() < 0.05:  # read again: equal positions at new marks, every one a new object
            positions = [replace(p, mark_price=p.mark_price * rng.uniform(0.99, 1.01)) for p in positions]
        if rng.random() < 0.1:
            equity *= rng.uniform(0.97, 1.03)
        refresh = None if rng.random() < 0.05 else set(rng.sample(symbols, rng.randrange(0, 3)))
        state = (list(positions), orders, {"main": wallet(equity)}, dict(stops))
        assert quick.compute(*state, refresh=refresh) == whole.compute(*state, refresh=refresh), (
            f"step {step}"
        )
    assert passes["due"] > 100  # the due symbols' way was taken, not only the whole pass
