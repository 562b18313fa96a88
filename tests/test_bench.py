"""`opconsole bench`: a tiny run through the real command line, bad input, and the trade comparison."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from console.__main__ import main
from engine.alerts.model import Alert, Severity
from engine.commands.bench import command
from engine.commands.bench.alert_log import CRITICAL_KEPT, AlertLog
from engine.commands.bench.outcome import PNL_TOLERANCE_BPS, TradeOutcome, first_difference, outcomes
from engine.commands.bench.progress import ProgressBar
from engine.commands.bench.report import RATIOS, render
from engine.commands.bench.workload import Workload
from engine.core.models import Side, Trade

PROFILE_KEYS = {
    # the keys
    "dashboard_refresh_ms", "persistence_writes_per_hour", "persistence_fsyncs_per_hour",
    "cache_hit_rate", "api_calls_per_hour", "api_calls_by_endpoint", "reaction_ms",
    "monitor_checks_per_hour", "peak_rss_mb", "cpu_seconds", "critical_events", "trades_closed", "pnl",
    # the warm-up, the scale figures and the detail behind them
    "positions_opened", "warmup_s", "snapshot_build_ms", "dashboard_reads_per_refresh",
    "persistence_saves_per_hour", "tp1_to_orders_ms", "sl_to_cancel_ms", "monitor_checks_by_tier",
    "monitors", "rss_per_monitor_kb", "cpu_seconds_per_sim_minute", "trades", "task_failures",
    "critical_messages", "decision_ms", "budget_waits", "snapshot_build_cpu_ms",
}  # fmt: skip
TINY = ["bench", "--positions", "2", "--minutes", "2", "--seed", "7", "--json"]


def test_a_tiny_bench_reports_every_figure_for_both_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(TINY) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # only the JSON on stdout
    assert doc["workload"] | {"cpu": "-"} == {
        "positions": 2, "minutes": 2.0, "seed": 7, "cpu": "-", "profiles": ["baseline", "optimized"],
        "sim_latency": "realistic", "mirror": True, "volatility": 0.8,
    }  # fmt: skip
    assert doc["workload"]["cpu"]
    for profile in ("baseline", "optimized"):
        figures = doc[profile]
        assert set(figures) == PROFILE_KEYS, profile
        assert set(figures["dashboard_refresh_ms"]) >= {"mean", "p50", "p99"}
        assert set(figures["reaction_ms"]) >= {"p50", "p99"}
        assert figures["dashboard_refresh_ms"]["refreshes"] > 0
        # the build's own CPU is a part of its real time, counted for every build
        builds, own = figures["snapshot_build_ms"], figures["snapshot_build_cpu_ms"]
        assert own["refreshes"] == builds["refreshes"] == figures["dashboard_refresh_ms"]["refreshes"]
        assert 0 < own["p50"] <= builds["p50"] and own["max"] <= builds["max"]
        assert figures["cache_hit_rate"] is not None  # counted in the baseline too
        assert figures["persistence_writes_per_hour"] > 0
        assert figures["peak_rss_mb"] > 0 and figures["cpu_seconds"] > 0
        assert figures["critical_events"] == 0 and figures["critical_messages"] == []
        assert figures["positions_opened"] == 2  # measured with every position open
        assert figures["task_failures"] == []
        # every trade was opened before the measured window, on both accounts, and monitored
        assert figures["monitors"] == 2 * 2
        assert figures["api_calls_per_hour"] > 0
        # the engine's own share of the reactions (fill -> order sender), per kind of fill
        assert set(figures["decision_ms"]) == {"tp", "sl"}
        assert all(set(v) == {"p50", "p99", "samples"} for v in figures["decision_ms"].values())
        assert figures["budget_waits"] >= 0
    # the baseline checks every position at a fixed interval, the optimized one by urgency tier
    assert doc["baseline"]["monitor_checks_by_tier"].get("baseline", 0) > 0
    assert "baseline" not in doc["optimized"]["monitor_checks_by_tier"]
    assert set(doc["ratios"]) == set(RATIOS)
    assert doc["ratios"]["api_calls"] > 1
    assert doc["original"]["dashboard_refresh_ms_mean"] == 2100.0
    # the optimizations change the cost, never the trades
    assert doc["comparison"]["same_trades"] is True
    assert doc["comparison"]["first_difference"] is None
    decided = ("account", "symbol", "side", "reason", "tps_hit", "qty")
    baseline, optimized = (
        [{k: t[k] for k in decided} for t in doc[p]["trades"]] for p in ("baseline", "optimized")
    )
    assert baseline == optimized
    assert doc["baseline"]["trades_closed"] == doc["optimized"]["trades_closed"]
    table = render(doc)
    assert "seed's original" in table and "2,100" in table and "same trades in both profiles: yes" in table
    assert "critical alert" not in table  # none to list
    # a run with critical alerts lists them under the table, with how many there were
    doc["optimized"]["critical_events"] = 21
    doc["optimized"]["critical_messages"] = [{"type": "sl_unplaceable", "message": "main:SYN0001USDT:Buy"}]
    listed = "optimized: 21 critical alerts, the first 1:\n  sl_unplaceable: main:SYN0001USDT:Buy\n"
    assert listed in render(doc)


def test_one_profile_alone_leaves_the_other_and_the_ratios_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--positions", "1", "--minutes", "1", "--profile", "optimized", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["baseline"] is None
    assert set(doc["optimized"]) == PROFILE_KEYS
    assert set(doc["ratios"].values()) == {None}
    assert doc["comparison"]["same_trades"] is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--positions", "0"], "--positions: must be > 0, got 0"),
        (["--minutes", "-1"], "--minutes: must be > 0, got -1"),
        (["--profile", "x"], "--profile: invalid choice: 'x'"),
        (["--seed", "abc"], "--seed: invalid int value: 'abc'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("opconsole: bench: argument ")
    assert said in err
    assert "Traceback" not in err


def _trade(symbol: str = "SYN0001USDT", **changes: Any) -> TradeOutcome:
    row: dict[str, Any] = {
        "account": "main", "symbol": symbol, "side": "Buy", "reason": "breakeven", "tps_hit": 1,
        "qty": 10.0, "pnl": 1.7, "notional": 2000.0,
    }  # fmt: skip
    row |= changes
    return TradeOutcome.from_dict({"decided": row["reason"]} | row)


def _ledger_trade(account: str, reason: str, pnl: float) -> Trade:
    return Trade(
        account, "SYN0009USDT", Side.BUY, "conservative", reason, 100.0, 100.0, 2.0, pnl, 0.1, 0.0, 60.0, 1
    )


def test_a_mirror_that_closed_with_main_is_compared_by_mains_reason() -> None:
    """Seen at the default size: in the baseline the mirror's stop moved to breakeven late (its 5 s
    checks), main's breakeven stop filled first and the follower closed the mirror (main_closed); in
    the optimized profile the mirror's own breakeven stop closed it. The same decision, a race of
    their costs: not a difference. A mirror closed for another reason than main's still is."""
    leader = _ledger_trade("main", "breakeven", 0.5)
    baseline = outcomes([leader, _ledger_trade("mirror", "main_closed", 0.2)])
    optimized = outcomes([leader, _ledger_trade("mirror", "breakeven", 0.25)])
    assert [o.decided for o in baseline] == ["breakeven", "breakeven"]
    assert first_difference(("baseline", "optimized"), baseline, optimized) is None
    stopped = outcomes([leader, _ledger_trade("mirror", "sl", -1.0)])
    assert first_difference(("baseline", "optimized"), baseline, stopped) == (
        "mirror SYN0009USDT Buy: reason breakeven (baseline) vs sl (optimized)"
    )


def test_the_first_difference_between_two_runs_is_named() -> None:
    names = ("baseline", "optimized")
    same = [_trade(), _trade("SYN0002USDT")]
    assert first_difference(names, same, list(same)) is None
    # a market fill a moment later moves the PnL a little: the same trade
    near = 2000.0 * PNL_TOLERANCE_BPS / 10_000.0 * 0.9
    assert first_difference(names, same, [_trade(pnl=1.7 + near), same[1]]) is None
    assert (
        first_difference(names, same, [_trade(), _trade("SYN0002USDT", reason="sl", tps_hit=0)])
        == "main SYN0002USDT Buy: reason breakeven (baseline) vs sl (optimized)"
    )
    far = first_difference(names, same, [_trade(pnl=-20.0), same[1]])
    assert far is not None and far.startswith("main SYN0001USDT Buy: pnl +1.7000 (baseline) vs -20.0000")
    assert (
        first_difference(names, same, same[:1])
        == "baseline closed 2 trades, optimized 1: only baseline closed main SYN0002USDT Buy"
    )
    assert (
        first_difference(names, same, [_trade(side="Sell"), same[1]])
        == "trade 1: baseline closed main SYN0001USDT Buy, optimized closed main SYN0001USDT Sell"
    )


def _figures(trades: list[TradeOutcome]) -> dict[str, Any]:
    """A profile's figures as far as the document reads them (the JSON output renders no table)."""
    return {
        "dashboard_refresh_ms": {"mean": 1.0, "p50": 1.0},
        "persistence_writes_per_hour": 1.0,
        "persistence_fsyncs_per_hour": 1.0,
        "api_calls_per_hour": 1.0,
        "monitor_checks_per_hour": 1.0,
        "reaction_ms": {"p99": 1.0},
        "trades": [t.as_dict() for t in trades],
    }


def test_profiles_that_trade_differently_exit_1_naming_the_difference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs = {"baseline": _figures([_trade()]), "optimized": _figures([_trade(reason="sl", tps_hit=0)])}
    monkeypatch.setattr(command, "run_in_child", lambda profile, workload, progress: runs[profile])
    out, err = io.StringIO(), io.StringIO()
    assert command.run_bench(Workload(positions=1, minutes=1), as_json=True, out=out, err=err) == 1
    assert err.getvalue() == (
        "opconsole: bench: the profiles traded differently: "
        "main SYN0001USDT Buy: reason breakeven (baseline) vs sl (optimized)\n"
    )
    assert json.loads(out.getvalue())["comparison"]["same_trades"] is False


def test_the_progress_bar_rewrites_one_line() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream, enabled=True)
    bar.start("baseline")
    bar.update(0.5)
    assert stream.getvalue().count("\r") == 2 and "\n" not in stream.getvalue()
    assert "bench: baseline [###############...............]  50%" in stream.getvalue()
    bar.finish()
    assert stream.getvalue().endswith("\n")
    quiet = io.StringIO()
    ProgressBar(quiet).update(0.5)  # not a terminal: nothing
    assert quiet.getvalue() == ""


def test_the_alert_log_keeps_the_waits_the_critical_count_and_the_first_critical_messages() -> None:
    log = AlertLog()
    log.record(Alert(Severity.WARNING, "breakeven_waiting", "main:SYN0001USDT:Buy waits", time=12.0))
    log.record(Alert(Severity.INFO, "tp_hit", "main:SYN0001USDT:Buy TP1"))  # read by no figure: dropped
    for n in range(CRITICAL_KEPT + 5):
        log.record(Alert(Severity.CRITICAL, "emergency_close", f"close {n}"))
    assert log.waits == [(12.0, "main:SYN0001USDT:Buy waits")]
    assert log.critical == CRITICAL_KEPT + 5
    assert log.critical_messages == [
        {"type": "emergency_close", "message": f"close {n}"} for n in range(CRITICAL_KEPT)
    ]


def test_the_warm_up_lasts_while_the_mirror_copies_openings() -> None:
    """At 1000 positions the mirror was still placing its copies for minutes after main's last
    opening, and the measured window was mostly their requests."""
    from types import SimpleNamespace

    from engine.commands.bench.profile_run import copying
    from engine.mirror.follower import Verb

    def follower(*verbs: Verb) -> Any:
        return SimpleNamespace(tasks=[SimpleNamespace(verb=verb) for verb in verbs])

    assert copying(follower(Verb.BREAKEVEN, Verb.OPEN))
    assert not copying(follower(Verb.BREAKEVEN, Verb.CLOSE))  # upkeep, not the opening
    assert not copying(None)  # no mirror
