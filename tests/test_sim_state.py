"""The simulated exchange is deterministic for a seed and continues its market across restarts."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from engine.core.clock import VirtualClock
from engine.core.models import OrderRequest, OrderType, Side, TriggerBy, TriggerDirection
from engine.core.settings import load_settings
from engine.sim.exchange import STATE_FILE, SimExchange
from engine.sim.feed import BASIS_CAP
from engine.sim.state import SimStateError
from engine.sim.venue import SimVenue

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def make_exchange(clock: VirtualClock, path: Path | None = None, seed: int = 42) -> SimExchange:
    return SimExchange(
        clock=clock,
        seed=seed,
        symbols=SYMBOLS,
        balances={"main": 10_000.0, "mirror": 5_000.0},
        state_path=path,
    )


def trade(exchange: SimExchange) -> None:
    """Some activity whose outcome depends on the price path: an entry, a resting TP and a stop."""
    exchange.place("main", OrderRequest("ETHUSDT", Side.BUY, OrderType.MARKET, 1.0, link_id="e1"))
    last = exchange.ticker("ETHUSDT").last
    exchange.place(
        "main",
        OrderRequest(
            "ETHUSDT", Side.SELL, OrderType.LIMIT, 0.5, price=round(last + 3.0, 2), reduce_only=True
        ),
    )
    exchange.place(
        "main",
        OrderRequest(
            "ETHUSDT",
            Side.SELL,
            OrderType.MARKET,
            0.5,
            trigger_price=round(last - 3.0, 2),
            trigger_direction=TriggerDirection.FALL,
            trigger_by=TriggerBy.MARK_PRICE,
            reduce_only=True,
        ),
    )


def run_steps(exchange: SimExchange, n: int) -> list[tuple[float, float]]:
    path = []
    for _ in range(n):
        exchange.step()
        exchange.clock.advance(1.0)  # type: ignore[attr-defined]
        path += [(t.last, t.mark) for t in exchange.tickers().values()]
    return path


def test_same_seed_gives_identical_price_paths_and_executions() -> None:
    a, b = make_exchange(VirtualClock(0.0)), make_exchange(VirtualClock(0.0))
    trade(a), trade(b)
    assert run_steps(a, 600) == run_steps(b, 600)
    fills_a, fills_b = a.executions("main", since=0.0), b.executions("main", since=0.0)
    assert fills_a == fills_b and len(fills_a) >= 2  # the entry plus the TP or the stop
    assert a.wallet("main") == b.wallet("main")
    other = make_exchange(VirtualClock(0.0), seed=43)
    assert run_steps(other, 10) != run_steps(make_exchange(VirtualClock(0.0)), 10)


def test_feed_moves_with_volatility_and_mark_stays_near_last() -> None:
    ex = make_exchange(VirtualClock(0.0))
    path = run_steps(ex, 3600)
    btc = path[0::3]
    assert len({last for last, _ in btc}) > 1000  # it moves
    assert all(abs(mark / last - 1) <= BASIS_CAP + 1e-6 for last, mark in path)
    assert any(mark != last for last, mark in path)
    assert 0.8 * 95_000 < btc[-1][0] < 1.2 * 95_000  # 0.8 annualised over an hour: ~1 % moves


def test_save_and_load_continue_the_same_market(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    first = make_exchange(VirtualClock(0.0), path)
    trade(first)
    run_steps(first, 120)
    first.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    restarted = make_exchange(VirtualClock(first.clock.now()), path, seed=999)  # the saved seed wins
    assert restarted.seed == 42
    assert restarted.to_state(0.0) == first.to_state(0.0)
    assert restarted.saved_at == first.clock.now()

    # An uninterrupted twin shows the restart changed nothing.
    twin = make_exchange(VirtualClock(0.0))
    trade(twin)
    run_steps(twin, 120)
    continued = run_steps(restarted, 300)
    assert continued == run_steps(twin, 300)
    assert restarted.executions("main", since=0.0) == twin.executions("main", since=0.0)
    request = OrderRequest("SOLUSDT", Side.BUY, OrderType.MARKET, 1.0)
    assert restarted.place("main", request) == twin.place("main", request)  # ids continue too


def test_corrupt_state_file_is_an_error_not_an_empty_market(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    path.write_text('{"format": "opconsole-sim-exchange", "version": 1, "seed": 1, "accou')
    with pytest.raises(SimStateError, match="corrupt"):
        make_exchange(VirtualClock(0.0), path)
    path.write_text(json.dumps({"something": "else"}))
    with pytest.raises(SimStateError, match="not a simulated exchange state"):
        make_exchange(VirtualClock(0.0), path)
    good = make_exchange(VirtualClock(0.0), tmp_path / "good.json")
    good.save()
    data = json.loads((tmp_path / "good.json").read_text())
    del data["accounts"][0]["balance"]
    path.write_text(json.dumps(data))
    with pytest.raises(SimStateError, match="balance"):
        make_exchange(VirtualClock(0.0), path)


async def test_run_ticks_on_the_clock_and_saves_periodically_and_on_cancel(tmp_path: Path) -> None:
    clock = VirtualClock(1_000.0)
    ex = make_exchange(clock, tmp_path / STATE_FILE)
    queue = ex.subscribe("main")
    task = asyncio.create_task(ex.run())
    await clock.drive(until=1_125.0)
    assert queue.events == 125 * 3  # one ticker per symbol per second
    assert queue.qsize() == 125  # one push a tick
    assert ex.saved_at == 1_120.0  # saved at 1060 and 1120
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ex.saved_at == 1_125.0
    assert SimExchange.saved_time(tmp_path) == 1_125.0
    # The ticks run() made are the ticks step() makes.
    manual = make_exchange(VirtualClock(1_000.0))
    for _ in range(125):
        manual.step()
    assert [t.last for t in manual.tickers().values()] == [t.last for t in ex.tickers().values()]


async def test_a_due_save_goes_before_its_ticks_prices_and_fills(tmp_path: Path) -> None:
    """The periodic save (a tenth of a second at a thousand positions, on the engine's loop) runs
    before the tick it is due at, so that tick's prices and fills are pushed without waiting for it."""
    clock = VirtualClock(1_000.0)
    ex = make_exchange(clock, tmp_path / STATE_FILE)
    queue = ex.subscribe("main")
    pushed_at_save: list[int] = []
    real_save = ex.save

    def save() -> None:
        pushed_at_save.append(queue.events)
        real_save()

    ex.save = save  # type: ignore[method-assign]
    task = asyncio.create_task(ex.run())
    await clock.drive(until=1_125.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # saves due at 1060 and 1120 came after 59 and 119 ticks of 3 tickers; the last one on cancel
    assert pushed_at_save == [59 * 3, 119 * 3, 125 * 3]


def test_from_settings_reads_sim_keys_and_the_state_dir(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path, env={})
    ex = SimExchange.from_settings(settings, VirtualClock(0.0), tmp_path)
    assert list(ex.instruments) == settings.get("sim.symbols")
    assert ex.accounts == ["main", "mirror"]
    assert ex.wallet("mirror").wallet_balance == settings.get("sim.balances.mirror")
    assert ex.state_path == tmp_path / STATE_FILE
    ex.place("main", OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.01))
    ex.save()
    again = SimExchange.from_settings(settings, VirtualClock(0.0), tmp_path)
    assert again.positions("main")[0].size == 0.01
    assert SimExchange.saved_time(tmp_path / "empty") is None


def accounts_of(exchange: SimExchange) -> list[dict[str, object]]:
    return exchange.to_state(0.0)["accounts"]  # type: ignore[no-any-return]


def journal_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def test_a_restart_without_a_save_finds_every_acknowledged_change(tmp_path: Path) -> None:
    """A kill -9 between two saves: the journal has every order, fill and balance the exchange
    acknowledged, and only what changed went into it (one small record per change, none per tick)."""
    path = tmp_path / STATE_FILE
    clock = VirtualClock(0.0)
    first = make_exchange(clock, path)
    journal = tmp_path / "sim-exchange.journal.jsonl"
    assert journal_lines(journal) == []  # the new market was saved whole; the journal holds changes only
    trade(first)  # an entry (filled at once), a resting TP, a stop: three records
    assert len(journal_lines(journal)) == 3
    clock.advance(1.0)
    first.step()
    quiet = journal.stat().st_size
    run_steps(first, 600)  # the TP or the stop fills on the way
    records = journal_lines(journal)
    assert 4 <= len(records) <= 6 and all(len(line) < 4_000 for line in records)
    assert journal.stat().st_size > quiet

    # A restarted virtual clock starts no earlier than the last change (a fill), not the last save.
    assert SimExchange.saved_time(tmp_path) == json.loads(records[-1])["ts"] > 0.0

    restarted = make_exchange(VirtualClock(clock.now()), path)  # no save(): what a kill -9 leaves
    assert journal_lines(journal) == []  # the restart saved what it replayed
    assert accounts_of(restarted) == accounts_of(first)
    assert restarted.executions("main", since=0.0) == first.executions("main", since=0.0)
    assert restarted.wallet("main").wallet_balance == first.wallet("main").wallet_balance
    request = OrderRequest("SOLUSDT", Side.BUY, OrderType.MARKET, 1.0)
    assert restarted.place("main", request) == first.place("main", request)  # ids continue too


async def test_a_batch_request_is_one_journal_record_and_one_push_closed_by_one_wallet(
    tmp_path: Path,
) -> None:
    """A batch request is acknowledged as one action: one record (one fsync) for its items and one
    push of their events closed by one wallet, not one of each per item; a restart finds every item."""
    path = tmp_path / STATE_FILE
    clock = VirtualClock(0.0)
    exchange = make_exchange(clock, path)
    journal = tmp_path / "sim-exchange.journal.jsonl"
    events = exchange.subscribe("main")
    last = exchange.ticker("ETHUSDT").last

    def bid(link: str, below: float, qty: float = 0.1) -> OrderRequest:
        return OrderRequest(
            "ETHUSDT", Side.BUY, OrderType.LIMIT, qty, price=round(last - below, 2), link_id=link
        )

    requests = [bid("b1", 50.0), bid("b2", 60.0), bid("bad", 70.0, qty=0.0001), bid("b3", 80.0)]
    results = await SimVenue(exchange, "main").place_batch(requests)
    assert [r.ok for r in results] == [True, True, False, True]
    assert len(journal_lines(journal)) == 1
    assert events.qsize() == 1  # one push
    pushed = events.drain()
    assert [type(e).__name__ for e in pushed] == ["Order", "Order", "Order", "Wallet"]
    restarted = make_exchange(VirtualClock(clock.now()), path)  # no save(): what a kill -9 leaves
    assert {o.link_id for o in restarted.open_orders("main")} == {"b1", "b2", "b3"}


def test_a_torn_last_record_is_dropped_and_damage_before_it_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    clock = VirtualClock(0.0)
    first = make_exchange(clock, path)
    trade(first)
    journal = tmp_path / "sim-exchange.journal.jsonl"
    intact = journal.read_bytes()
    expected = accounts_of(first)
    journal.write_bytes(intact + b'{"key":"exchange","op":"set","reas')  # a write cut by a crash
    assert accounts_of(make_exchange(VirtualClock(0.0), path)) == expected

    second = make_exchange(VirtualClock(0.0), tmp_path / "b" / STATE_FILE)
    trade(second)
    lines = (tmp_path / "b" / "sim-exchange.journal.jsonl").read_bytes().splitlines(keepends=True)
    damaged = lines[0] + lines[1].replace(b"order_action", b"order_acti0n") + lines[2]
    (tmp_path / "b" / "sim-exchange.journal.jsonl").write_bytes(damaged)
    with pytest.raises(SimStateError, match="corrupt simulated exchange journal"):
        make_exchange(VirtualClock(0.0), tmp_path / "b" / STATE_FILE)
    assert (tmp_path / "b" / "sim-exchange.journal.jsonl").read_bytes() == damaged  # left for the operator
