"""Synthetic listings (``sim.synthetic_symbols``): many realistic perpetuals beside the named catalog.

The listings are a pure function of the symbol's number, the catalog's price paths do not depend on
how many are listed, trades fill on them (in-process and through pybit and the fake V5 server), a
saved market lists them again after a restart (also with a lower count), and the settings refuse a
count or a symbol out of range in one line.
"""

from __future__ import annotations

import math
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from tpsl_harness import EPOCH, Harness, assert_protected, server_venue

from engine.core.clock import RealClock, VirtualClock
from engine.core.models import Instrument, OrderRequest, OrderType, Side, TriggerBy, TriggerDirection
from engine.core.settings import load_settings
from engine.sim.exchange import STATE_FILE, SimExchange
from engine.sim.instruments import (
    CATALOG,
    MAX_SYNTHETIC,
    synthetic_listing,
    synthetic_number,
    synthetic_symbol,
    synthetic_symbols,
)
from engine.sim.server.app import BybitServer
from engine.sim.venue import SimVenue
from engine.trading.approaches import Approach
from engine.venue.base import Endpoint
from engine.venue.bybit.keys import ApiKeys
from engine.venue.bybit.retry import RetryPolicy

N = 1000
"""What the benchmark lists."""


def exchange(synthetic: int, symbols: list[str] | None = None, **kwargs: object) -> SimExchange:
    return SimExchange(
        clock=VirtualClock(0.0),
        seed=42,
        symbols=list(CATALOG) if symbols is None else symbols,
        balances={"main": 100_000.0, "mirror": 50_000.0},
        synthetic=synthetic,
        **kwargs,  # type: ignore[arg-type]
    )


def is_power_of_ten(value: float) -> bool:
    digits = Decimal(repr(value)).normalize().as_tuple().digits
    return digits == (1,)


def min_order_qty(instrument: Instrument, price: float) -> float:
    """The smallest quantity reaching the 5 USDT minimum order value at ``price``."""
    return instrument.round_qty(instrument.min_notional / price, "up")


def test_n_synthetic_symbols_are_listed_with_realistic_consistent_filters() -> None:
    ex = exchange(N)
    names = synthetic_symbols(N)
    assert names[0] == "SYN0001USDT" and names[-1] == "SYN1000USDT"
    assert list(ex.instruments) == [*CATALOG, *names]
    prices = []
    for name in names:
        instrument, price = ex.instruments[name], ex.ticker(name).last
        prices.append(price)
        tick, step = instrument.tick_size, instrument.qty_step
        # The price is a whole number of ticks, and the tick about 1e-4 of it (a power of ten).
        assert Decimal(repr(price)) % Decimal(repr(tick)) == 0, name
        assert is_power_of_ten(tick) and 1e-5 < tick / price <= 1e-4, name
        # One qty step is worth well under the 5 USDT minimum, and the minimum is reachable.
        assert is_power_of_ten(step) and instrument.min_qty == step, name
        assert step * price < 1.0, name
        assert instrument.min_notional == 5.0
        assert min_order_qty(instrument, price) * price >= 5.0
        assert min_order_qty(instrument, price) <= instrument.max_qty, name
        assert Decimal(repr(instrument.max_qty)) % Decimal(repr(step)) == 0, name
        assert 500_000.0 <= instrument.max_qty * price <= 10_000_000.0, name
        assert instrument.max_leverage in (25.0, 50.0, 75.0, 100.0)
        assert instrument.min_leverage == 1.0
    # Start prices spread over several orders of magnitude (the range is 0.001 to 50 000).
    assert min(prices) < 0.01 and max(prices) > 10_000.0
    assert len({math.floor(math.log10(p)) for p in prices}) >= 7
    assert len({i.max_leverage for i in ex.instruments.values()}) == 4


def test_a_synthetic_listing_depends_on_its_number_only() -> None:
    small, large = exchange(7), exchange(N)
    assert small.instruments["SYN0007USDT"] == large.instruments["SYN0007USDT"]
    assert small.ticker("SYN0007USDT") == large.ticker("SYN0007USDT")
    # Pinned: a saved market stores prices, not filters, so a number must keep its listing for good.
    first = synthetic_listing(1)
    assert (first.start_price, first.instrument.tick_size, first.instrument.qty_step) == (60.897, 0.001, 0.01)
    assert (first.instrument.max_qty, first.instrument.max_leverage) == (100_000.0, 75.0)
    last = synthetic_listing(MAX_SYNTHETIC)
    assert (last.instrument.symbol, last.instrument.tick_size, last.instrument.qty_step) == (
        "SYN10000USDT",
        1e-7,
        100.0,
    )
    # One number, one name.
    assert synthetic_number("SYN0007USDT") == 7 and synthetic_symbol(10_000) == "SYN10000USDT"
    assert synthetic_number("SYN007USDT") is None and synthetic_number("SYN00007USDT") is None
    assert synthetic_number("SYN0000USDT") is None and synthetic_number("SYN10001USDT") is None
    with pytest.raises(ValueError):
        synthetic_listing(MAX_SYNTHETIC + 1)


def catalog_path(ex: SimExchange, steps: int) -> list[tuple[str, float, float, float, float]]:
    """``steps`` ticks of the market; the tickers of the catalog symbols it lists, tick by tick."""
    listed = [s for s in CATALOG if s in ex.instruments]
    path = []
    for _ in range(steps):
        ex.step()
        ex.clock.advance(1.0)  # type: ignore[attr-defined]
        path += [(s, t.last, t.mark, t.bid, t.ask) for s, t in ex.tickers(listed).items()]
    return path


def test_the_catalog_price_paths_do_not_depend_on_the_synthetic_count() -> None:
    expected = catalog_path(exchange(0), 300)
    assert catalog_path(exchange(N), 300) == expected
    # A synthetic symbol named in sim.symbols, between catalog ones, shifts nothing either.
    mixed = [*list(CATALOG)[:4], "SYN0003USDT", *list(CATALOG)[4:]]
    assert catalog_path(exchange(3, mixed), 300) == expected
    # And the synthetic symbols move, on the tick grid.
    ex = exchange(N)
    start = ex.tickers(synthetic_symbols(N))
    catalog_path(ex, 5)
    moved = ex.tickers(synthetic_symbols(N))
    assert sum(moved[s].last != start[s].last for s in start) > N // 2
    for symbol, ticker in moved.items():
        tick = Decimal(repr(ex.instruments[symbol].tick_size))
        assert all(Decimal(repr(p)) % tick == 0 for p in (ticker.last, ticker.mark, ticker.bid, ticker.ask))
        assert ticker.bid < ticker.last < ticker.ask


async def test_orders_on_a_synthetic_symbol_fill_through_sim_venue() -> None:
    ex = exchange(N, ["BTCUSDT"], slippage_bps=0.0)
    venue = SimVenue(ex, "main")
    symbol = "SYN0444USDT"  # 0.0010822 USDT: tick 1e-7, qty step 100
    instrument = (await venue.instruments([symbol]))[symbol]
    price = (await venue.tickers([symbol]))[symbol].last
    qty = min_order_qty(instrument, price)
    await venue.place(OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty, link_id="syn-entry"))
    (position,) = await venue.positions(symbol)
    assert position.size == qty and position.entry_price == price
    stop = instrument.round_price(price * 0.99)
    await venue.place(
        OrderRequest(
            symbol,
            Side.SELL,
            OrderType.MARKET,
            qty,
            trigger_price=stop,
            trigger_direction=TriggerDirection.FALL,
            trigger_by=TriggerBy.LAST_PRICE,
            reduce_only=True,
            link_id="syn-stop",
        )
    )
    ex.set_price(symbol, instrument.round_price(price * 0.98))
    assert (await venue.positions(symbol))[0].size == 0.0
    fills = await venue.executions(since=0.0, symbol=symbol)
    assert [f.link_id for f in fills] == ["syn-entry", "syn-stop"]


async def test_the_engine_trades_a_synthetic_symbol_with_its_filters() -> None:
    clock = VirtualClock(start=EPOCH)
    market = SimExchange(
        clock=clock, seed=7, symbols=["BTCUSDT"], balances={"main": 10_000.0}, slippage_bps=0.0, synthetic=50
    )
    symbol = "SYN0003USDT"  # 0.39588 USDT: tick 1e-5, qty step 1
    instrument = market.instruments[symbol]
    price = market.ticker(symbol).last
    h = Harness(exchange=market, clock=clock)
    await h.start()
    try:
        request = h.request(
            Approach.FAST,
            symbol=symbol,
            margin=100.0,
            entries=(None,),
            tps=(instrument.round_price(price * 1.02),),
            sl=instrument.round_price(price * 0.97),
        )
        await h.manager.open_trade(request)
        await h.settle()
        assert_protected(h)
        size = h.position(symbol).size
        assert size > 0 and size == instrument.round_qty(size)
        await h.price(instrument.round_price(price * 1.03), symbol)  # through the TP
        assert h.position(symbol).size == 0.0
        (trade,) = h.manager.ledger.trades
        assert trade.symbol == symbol and trade.reason == "tp"
    finally:
        await h.close()


async def test_the_fake_v5_server_lists_synthetic_symbols_to_pybit() -> None:
    clock = RealClock()
    ex = SimExchange(clock=clock, seed=5, symbols=["BTCUSDT"], balances={"main": 10_000.0}, synthetic=N)
    key, secret = "SYNTHETICKEY00001", "SYNTHETICSECRET0123456789ab"
    server = BybitServer(ex, {key: (secret, "main")}, clock)
    await server.start()
    venue = server_venue(
        server,
        ApiKeys(key, secret),
        clock,
        threads=2,
        retry=RetryPolicy(max_retries=1, base_delay_s=0.02, max_delay_s=0.1),
    )
    try:
        # Every listing comes back through the wire format unchanged, in two pages of at most 1000
        # (Bybit's largest page): a client reading one page would miss some.
        assert await venue.instruments() == ex.instruments
        assert venue.calls.counts[Endpoint.INSTRUMENTS] == 2
        tickers = await venue.tickers()
        assert set(tickers) == set(ex.instruments)
        for symbol in ("SYN0001USDT", "SYN0500USDT", "SYN1000USDT"):
            assert (tickers[symbol].last, tickers[symbol].mark) == (
                ex.ticker(symbol).last,
                ex.ticker(symbol).mark,
            )
        symbol = "SYN0002USDT"  # 1762.5 USDT: tick 0.1, qty step 0.0001
        qty = min_order_qty(ex.instruments[symbol], tickers[symbol].last)
        await venue.place(OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty, link_id="syn-wire"))
        assert ex.positions("main", symbol)[0].size == qty
    finally:
        await venue.close()
        await server.stop()


def test_a_saved_market_lists_its_synthetic_symbols_again_with_a_lower_count(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    first = exchange(50, ["BTCUSDT"], state_path=path)
    symbol = "SYN0042USDT"
    qty = min_order_qty(first.instruments[symbol], first.ticker(symbol).last)
    first.place("main", OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty))
    catalog_path(first, 30)
    first.save()

    restarted = exchange(0, ["BTCUSDT"], state_path=path)
    restarted.clock.advance(30.0)  # type: ignore[attr-defined]
    assert list(restarted.instruments) == ["BTCUSDT", *synthetic_symbols(50)]
    assert restarted.to_state(0.0) == first.to_state(0.0)  # prices and both random streams included
    assert restarted.positions("main", symbol)[0].size == qty
    # It continues exactly where an uninterrupted market goes.
    twin = exchange(50, ["BTCUSDT"])
    twin.place("main", OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty))
    catalog_path(twin, 30)
    assert catalog_path(restarted, 20) == catalog_path(twin, 20)
    assert restarted.tickers(synthetic_symbols(50)) == twin.tickers(synthetic_symbols(50))


def test_a_journaled_trade_on_a_newly_listed_symbol_survives_a_crash_and_a_lower_count(
    tmp_path: Path,
) -> None:
    path = tmp_path / STATE_FILE
    exchange(0, ["BTCUSDT"], state_path=path)  # a market saved without synthetic symbols
    grown = exchange(N, ["BTCUSDT"], state_path=path)  # restarted with them: the listing is saved
    symbol = "SYN0042USDT"
    qty = min_order_qty(grown.instruments[symbol], grown.ticker(symbol).last)
    catalog_path(grown, 10)
    grown.place("main", OrderRequest(symbol, Side.BUY, OrderType.MARKET, qty))
    # One small record per action, however many symbols are listed (the prices of the touched
    # symbols only, not the whole feed).
    journal = tmp_path / "sim-exchange.journal.jsonl"
    (record,) = journal.read_bytes().splitlines()
    assert len(record) < 4_000
    # A kill -9 (no save), then a start with the count back to 0: the position and its price are back.
    crashed = exchange(0, ["BTCUSDT"], state_path=path)
    assert len(crashed.instruments) == N + 1
    assert crashed.positions("main", symbol)[0].size == qty
    assert crashed.ticker(symbol).last == grown.ticker(symbol).last
    assert crashed.wallet("main").equity == grown.wallet("main").equity


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[sim]\nsynthetic_symbols = 10001\n", "sim.synthetic_symbols: must be <= 10000, got 10001"),
        ("[sim]\nsynthetic_symbols = -1\n", "sim.synthetic_symbols: must be >= 0, got -1"),
        (
            '[sim]\nsynthetic_symbols = 10\nsymbols = ["BTCUSDT", "SYN0011USDT"]\n',
            "sim.symbols: no simulated listing for SYN0011USDT; the simulator lists BTCUSDT, ",
        ),
        (
            '[sim]\nsymbols = ["SYN0001USDT"]\n',
            "(sim.synthetic_symbols = 0; SYN0001USDT needs at least 1)",
        ),
    ],
)
def test_check_config_refuses_a_count_or_a_synthetic_symbol_out_of_range(
    tmp_path: Path, content: str, expected: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    result = run_cli("check-config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("opconsole: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_synthetic_symbols_within_the_count_are_accepted(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[sim]\nsynthetic_symbols = 10000\nsymbols = ["BTCUSDT", "SYN0010USDT", "SYN10000USDT"]\n'
    )
    result = run_cli("check-config", str(good), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    settings = load_settings(good, state_dir=tmp_path, env={})
    ex = SimExchange.from_settings(settings, VirtualClock(0.0), tmp_path)
    assert len(ex.instruments) == 10_000 + 1
    assert load_settings(state_dir=tmp_path, env={}).get("sim.synthetic_symbols") == 0  # the default
