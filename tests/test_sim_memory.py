"""The simulated exchange's memory at scale: a save never holds the market twice over.

At a thousand positions the market holds thousands of open orders (main and mirror). Its periodic
save used to build the whole market as one tree of dicts, then one string, then its bytes: about
3.6 times the file's size at once, every ``sim.save_interval_s``, and the allocator kept that peak in
the process's resident set. The save now writes each record as it makes it (``JsonArray``): the
same bytes, from a buffer about the file's size. Memory is counted by tracemalloc (deterministic
for the same code and data), never timed.
"""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

from engine.core.clock import VirtualClock
from engine.core.models import OrderRequest, OrderType, Side
from engine.sim.exchange import STATE_FILE, SimExchange
from engine.sim.instruments import synthetic_symbols
from engine.sim.state import STATE_FORMAT, STATE_VERSION, JsonArray, encode_state, read_state

SYMBOLS = 150
ORDER_PRICES = (0.90, 0.89, 0.88, 1.10, 1.11, 1.12, 1.13)
"""Seven resting orders a symbol (three entries, four take-profits), as a bench position has."""


def busy_market(tmp_path: Path) -> SimExchange:
    """Two accounts, seven resting limit orders on each of :data:`SYMBOLS` synthetic symbols."""
    exchange = SimExchange(
        clock=VirtualClock(start=1_700_000_000.0),
        seed=3,
        symbols=[],
        balances={"main": 1e9, "mirror": 1e9},
        state_path=tmp_path / STATE_FILE,
        synthetic=SYMBOLS,
    )
    for account in ("main", "mirror"):
        for n, symbol in enumerate(synthetic_symbols(SYMBOLS)):
            last = exchange.ticker(symbol).last
            item = exchange.instruments[symbol]
            qty = float(f"{max(item.min_qty, math.ceil(20 / last / item.qty_step) * item.qty_step):.10g}")
            for k, factor in enumerate(ORDER_PRICES):
                price = float(f"{round(last * factor / item.tick_size) * item.tick_size:.10g}")
                side = Side.BUY if factor < 1 else Side.SELL
                request = OrderRequest(symbol, side, OrderType.LIMIT, qty, price=price, link_id=f"o{k}-{n}")
                exchange.place(account, request)
    return exchange


def test_the_streamed_state_file_is_the_one_piece_json_and_reads_back(tmp_path: Path) -> None:
    exchange = busy_market(tmp_path)
    streamed = encode_state(exchange.to_state(5.0, JsonArray))
    whole = {"format": STATE_FORMAT, "version": STATE_VERSION, **exchange.to_state(5.0)}
    assert bytes(streamed) == json.dumps(whole, separators=(",", ":")).encode("utf-8")
    exchange.save()
    saved = read_state(tmp_path / STATE_FILE)
    assert saved["accounts"] == exchange.to_state(0.0)["accounts"]
    assert sum(len(a["orders"]) for a in saved["accounts"]) == 2 * SYMBOLS * len(ORDER_PRICES)


def test_a_save_allocates_about_the_files_size_not_the_market_twice_over(tmp_path: Path) -> None:
    exchange = busy_market(tmp_path)
    tracemalloc.start()
    try:
        held = tracemalloc.get_traced_memory()[0]
        exchange.save()
        peak = tracemalloc.get_traced_memory()[1] - held
    finally:
        tracemalloc.stop()
    size = (tmp_path / STATE_FILE).stat().st_size
    # The buffer (with its growth margin) and one record at a time; the tree of dicts was 3.6x.
    assert peak < 1.6 * size, (peak, size)
