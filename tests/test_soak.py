"""Issue 18, ``opconsole soak``: the seeded plan, the invariant checks, the protection watch, and a
small soak run end to end (a simulated hour, engine over pybit against the fake V5 server, killed
with SIGKILL and restarted).

The checks are tested on hand-made exchange states first: each must find the violation it exists
for, so a soak that reports none has looked.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.commands.soak.invariants import (
    StateView,
    duplicate_link_ids,
    exchange_trades,
    ledger_mismatches,
    lost_acks,
    orphan_orders,
)
from engine.commands.soak.plan import make_plan
from engine.commands.soak.process import Ack
from engine.commands.soak.watch import ProtectionWatch
from engine.core.clock import VirtualClock
from engine.core.link_ids import make_link_id
from engine.core.models import Execution, OrderRequest, OrderType, Side, Trade, TriggerDirection
from engine.core.state_keys import MANAGER_KEY, ledger_key, monitor_key
from engine.sim.exchange import SimExchange
from persistence.recovery import RecoveryReport

TAG = "soak"
T0 = 1_767_225_600.0


# --- the plan ---------------------------------------------------------------------------------------


def test_the_plan_is_the_same_for_a_seed_and_covers_every_fault_of_the_issue() -> None:
    plan = make_plan(24.0, 7)
    assert plan == make_plan(24.0, 7)
    assert plan != make_plan(24.0, 8)
    assert 20 <= len(plan.trades) <= 50
    assert {t.approach for t in plan.trades} == {"fast", "conservative"}
    gaps = [b - a for a, b in zip((0.0, *plan.kills), plan.kills, strict=False)]
    assert all(600.0 <= g <= 1200.0 for g in gaps)
    kinds = {f.kind for f in plan.faults}
    assert kinds == {
        "rate_limit_burst",
        "stream_drop",
        "stream_silent",
        "mirror_outage",
        "disk_full",
        "intruder",
    }
    drops = [f.at for f in plan.faults if f.kind == "stream_drop"]
    assert drops == [1800.0 * k for k in range(1, len(drops) + 1)]
    assert plan.windows("mirror_outage") == [(w[0], w[0] + 600.0) for w in plan.windows("mirror_outage")]
    assert all(t.symbol != plan.intruder_symbol for t in plan.trades)
    assert plan.flaky_rate == pytest.approx(0.01)


def test_a_small_plan_still_has_a_few_kills_and_each_fault() -> None:
    plan = make_plan(1.0, 7)
    assert 2 <= len(plan.kills) <= 6
    assert len(plan.trades) >= 4
    assert {"mirror_outage", "disk_full", "intruder", "stream_drop"} <= {f.kind for f in plan.faults}
    assert all(0 < f.at < plan.seconds for f in plan.faults)


# --- the checks -------------------------------------------------------------------------------------


def _exchange() -> SimExchange:
    return SimExchange(
        clock=VirtualClock(T0),
        seed=3,
        symbols=["BTCUSDT", "ETHUSDT"],
        balances={"main": 100_000.0, "mirror": 50_000.0},
    )


def _view(
    state: dict[str, object], last_seq: int = 10, gaps: list[tuple[int, int]] | None = None
) -> StateView:
    report = RecoveryReport(source="snapshot", last_seq=last_seq, missing_seqs=list(gaps or []))
    return StateView(state, report)


def test_an_acknowledged_critical_save_missing_from_the_recovered_state_is_reported() -> None:
    acks = [
        Ack(8, "monitor:a", "tp_hit"),
        Ack(12, "monitor:b", "sl_hit"),
        Ack(5, "monitor:c", "phase_change"),
    ]
    lost = lost_acks(acks, _view({}, last_seq=10, gaps=[(5, 6)]))
    assert len(lost) == 2
    assert any("seq 12" in line for line in lost) and any("seq 5" in line for line in lost)
    assert lost_acks(acks[:1], _view({}, last_seq=10)) == []


def test_an_order_placed_twice_and_an_orphan_are_found_on_the_exchange() -> None:
    ex = _exchange()
    link = make_link_id(TAG, "0000abcd", "e1", 0)
    price = ex.ticker("BTCUSDT").last * 0.9
    first = OrderRequest("BTCUSDT", Side.BUY, OrderType.LIMIT, 0.01, price=price, link_id=link)
    ex.place("main", first)
    ex.cancel_all("main", "BTCUSDT")
    ex.place("main", first)  # the same id again, after the first left the book
    assert duplicate_link_ids(ex, ["main"]) == [f"main: {link} placed 2 times"]
    assert duplicate_link_ids(ex, ["mirror"]) == []
    live = {
        MANAGER_KEY: {"instance_tag": TAG},
        monitor_key("main:BTCUSDT:Buy"): {"monitor_id": "0000abcd", "phase": "BUILDING"},
    }
    assert orphan_orders(ex, ["main"], _view(live)) == []
    closed = {**live, monitor_key("main:BTCUSDT:Buy"): {"monitor_id": "0000abcd", "phase": "CLOSED"}}
    assert orphan_orders(ex, ["main"], _view(closed)) == [f"main: orphan order {link} on BTCUSDT"]
    other = {**closed, MANAGER_KEY: {"instance_tag": "othr"}}
    assert orphan_orders(ex, ["main"], _view(other)) == []  # another engine's order is not ours


def _fill(
    monitor: str, slot: str, side: Side, qty: float, price: float, fee: float, ts: float, n: int
) -> Execution:
    return Execution(
        account="mirror",
        exec_id=f"x{n}",
        order_id=f"o{n}",
        link_id=make_link_id(TAG, monitor, slot, 0),
        symbol="BTCUSDT",
        side=side,
        price=price,
        qty=qty,
        fee=fee,
        is_maker=False,
        closed_size=0.0,
        order_type=OrderType.MARKET,
        ts=ts,
    )


def test_a_trade_flat_twice_is_one_trade_and_its_pnl_is_checked_against_the_ledger() -> None:
    """The mirror's TP1 closed its position during an outage, an entry it could not cancel filled
    afterwards, and the trade closed later: one trade of the engine, two flat moments."""
    fills = [
        _fill("7621f053", "e1", Side.BUY, 0.001, 94903.0, 0.0522, T0 + 1, 1),
        _fill("7621f053", "tp1", Side.SELL, 0.001, 95356.0, 0.01907, T0 + 2, 2),
        _fill("7621f053", "e2", Side.BUY, 0.001, 94691.2, 0.01894, T0 + 3, 3),
        _fill("7621f053", "cl", Side.SELL, 0.001, 94712.5, 0.05209, T0 + 4, 4),
    ]
    (trade,) = exchange_trades("mirror", fills)
    assert trade.flat and trade.pnl == pytest.approx(0.4743 - 0.1423, abs=1e-6)

    class Fills:
        instruments = _exchange().instruments

        def executions(self, account: str, since: float) -> list[Execution]:
            return fills if account == "mirror" else []

        def positions(self, account: str, symbol: str) -> list[object]:
            return []  # flat at the end

    def ledger(pnl: float, estimated: bool = False) -> dict[str, object]:
        booked = Trade(
            "mirror",
            "BTCUSDT",
            Side.BUY,
            "conservative",
            "main_closed",
            94797.1,
            95034.25,
            0.002,
            pnl,
            0.14229797,
            T0 + 1,
            T0 + 4,
            monitor_id="7621f053",
            exit_estimated=estimated,
        )
        return {ledger_key(0): {"trades": [booked.to_dict()]}}

    check = lambda state: ledger_mismatches(Fills(), ["main", "mirror"], _view(state), T0, ["BTCUSDT"])  # type: ignore[arg-type]  # noqa: E731
    assert check(ledger(0.33200203)) == []
    assert any("ledger PnL 0.300000" in line for line in check(ledger(0.3)))
    assert any("estimate" in line for line in check(ledger(0.33200203, estimated=True)))
    assert any("not in the ledger" in line for line in check({}))


def _trade(monitor: str, pnl: float) -> dict[str, object]:
    return Trade(
        "mirror",
        "BTCUSDT",
        Side.BUY,
        "conservative",
        "sl",
        100.0,
        100.0,
        0.001,
        pnl,
        0.0,
        T0,
        T0 + 9,
        monitor_id=monitor,
    ).to_dict()


def test_a_late_fill_no_trade_booked_is_found_by_the_symbols_total() -> None:
    """Trade A closed at its TP; its entry 2 filled afterwards (its cancel could not go out) and the
    position it left was adopted as trade B and stopped out. A's and B's fill groups are each
    unbalanced, so only the symbol's total shows whether every fill was booked."""
    fills = [
        _fill("0000000a", "e1", Side.BUY, 0.001, 100_000.0, 0.0, T0 + 1, 1),
        _fill("0000000a", "tp1", Side.SELL, 0.001, 110_000.0, 0.0, T0 + 2, 2),
        _fill("0000000a", "e2", Side.BUY, 0.001, 105_000.0, 0.0, T0 + 3, 3),
        _fill("0000000b", "sl", Side.SELL, 0.001, 100_000.0, 0.0, T0 + 4, 4),
    ]

    class Fills:
        def executions(self, account: str, since: float) -> list[Execution]:
            return fills if account == "mirror" else []

        def positions(self, account: str, symbol: str) -> list[object]:
            return []

    def check(*trades: dict[str, object]) -> list[str]:
        state = {ledger_key(0): {"trades": list(trades)}}
        return ledger_mismatches(Fills(), ["mirror"], _view(state), T0, ["BTCUSDT"])  # type: ignore[arg-type]

    assert check(_trade("0000000a", 10.0), _trade("0000000b", -5.0)) == []
    (problem,) = check(_trade("0000000a", 10.0))
    assert "with 5.000000 realised" in problem and "add up to 10.000000" in problem


def test_the_watch_reports_a_position_left_without_a_full_stop_longer_than_the_limit() -> None:
    ex = _exchange()
    ex.place("main", OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.02))
    outage = {"mirror"}
    watch = ProtectionWatch(ex, ["main", "mirror"], 5.0, lambda account, _t: account in outage)
    for t in range(0, 8):
        watch.sample(T0 + t)
    mark = ex.ticker("BTCUSDT").last
    stop = OrderRequest(
        "BTCUSDT",
        Side.SELL,
        OrderType.MARKET,
        0.01,
        trigger_price=mark * 0.98,
        trigger_direction=TriggerDirection.FALL,
        reduce_only=True,
        close_on_trigger=True,
    )
    ex.place("main", stop)  # half the size: still uncovered
    watch.sample(T0 + 8)
    ex.place("main", stop)  # now the whole size
    watch.sample(T0 + 9)
    ex.place("mirror", OrderRequest("BTCUSDT", Side.BUY, OrderType.MARKET, 0.01))
    for t in range(10, 30):
        watch.sample(T0 + t)
    watch.finish(T0 + 30)
    (violation,) = watch.violations()
    assert (violation.account, violation.symbol, violation.seconds) == ("main", "BTCUSDT", 9.0)
    worst_exempt = watch.worst(exempt=True)
    assert worst_exempt is not None and worst_exempt.account == "mirror" and worst_exempt.exempt


# --- end to end ---------------------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_simulated_hour_with_kills_and_faults_is_run_checked_and_reported(tmp_path: Path) -> None:
    """The CI size of the soak: one simulated hour at 60x, a few SIGKILLs, every fault kind, every
    check made. Whether every invariant held is the soak's verdict (exit code), not asserted here:
    the engine defects it still finds are listed in the issue's notes; this asserts the soak ran
    what it claims and that its verdict and its report agree."""
    work = tmp_path / "soak"
    options = ["--hours", "1", "--seed", "7", "--speed", "60", "--json", "--state-dir", str(work)]
    result = subprocess.run(
        [sys.executable, "-m", "console", "soak", *options],
        capture_output=True,
        text=True,
        timeout=580,
        cwd=tmp_path,
    )
    assert result.stdout, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["ok"] else 1)
    assert report["ok"] == (report["violations"] == {})
    assert sum(report["violations"].values()) >= len(report["violation_details"]) > 0 or report["ok"]
    assert report["kills"] >= 2 and report["restarts"] == report["kills"]
    assert report["boot_seconds"]["median"] is not None
    assert report["acks_checked"] > 0
    assert report["trades"]["opened"] >= 3 and report["trades"]["closed"] >= 1
    assert {"mirror_outage", "disk_full", "intruder", "stream_drop", "outage"} <= set(report["faults"])
    assert report["faults"].get("flaky_error", 0) + report["faults"].get("flaky_timeout", 0) > 0
    assert any(kind.startswith("foreign") for kind in report["critical_alerts"])
    assert report["critical_alerts"].get("store_failed", 0) >= 1  # the full disk was noticed
    assert "intruder_undetected" not in report["violations"]
    assert Path(report["work_dir"]) == work
    assert (work / "main.log").is_file() and (work / "main" / "journal.jsonl").is_file()


@pytest.mark.timeout(300)
def test_a_soak_stopped_by_sigterm_reports_what_it_saw_and_leaves_no_engine_running(tmp_path: Path) -> None:
    work = tmp_path / "soak"
    process = subprocess.Popen(
        [sys.executable, "-m", "console", "soak", "--hours", "1", "--json", "--state-dir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    spec = work / "main-spec.json"
    for _ in range(600):  # the engine child is being started once its spec is written
        if spec.exists() and (work / "main" / "journal.jsonl").exists():
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err[-2000:]
    report = json.loads(out)
    assert report["interrupted"] is True and report["ok"] is False
    leftovers = subprocess.run(["pgrep", "-f", str(spec)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""  # the engine child was killed with the soak
