"""The trade ledger: totals, the win rate's breakeven rule, chunked persistence, idempotent recording,
snapshot and CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from engine.core.models import Side, Trade
from engine.core.state_keys import ledger_key as chunk_key
from engine.trading.ledger import CHUNK, Ledger, tally


def trade(i: int, pnl: float, reason: str = "tp", account: str = "main") -> Trade:
    return Trade(
        account=account,
        symbol="BTCUSDT",
        side=Side.BUY,
        approach="conservative",
        reason=reason,
        entry_price=100_000.0,
        exit_price=100_000.0 + pnl,
        qty=0.01,
        pnl=pnl,
        fees=0.5,
        opened_at=1767225600.0 + i,
        closed_at=1767225700.0 + i,
        tps_hit=1,
        monitor_id=f"{i:08x}",
    )


def test_totals() -> None:
    ledger = Ledger()
    for i, pnl in enumerate([10.0, -4.0, 0.0, 2.5]):
        ledger.record(trade(i, pnl))
    assert ledger.totals() == {
        "count": 4,
        "wins": 2,
        "losses": 1,
        "win_rate": 0.5,
        "pnl": 8.5,
        "fees": 2.0,
        "funding": 0.0,  # added by issue 11 (funding shown apart)
    }
    assert Ledger().totals()["win_rate"] is None


def test_each_account_has_its_own_totals_and_they_add_up_to_the_combined_ones() -> None:
    ledger = Ledger()
    for i, (pnl, account) in enumerate([(10.0, "main"), (0.6, "mirror"), (-4.0, "main"), (-0.2, "mirror")]):
        ledger.record(trade(i, pnl, account=account))
    ledger.record(trade(9, 0.0, account="mirror"))
    by_account = ledger.totals_by_account()
    assert list(by_account) == ["main", "mirror"]
    assert by_account["main"] == tally([10.0, -4.0], [0.5, 0.5])
    assert by_account["mirror"] == tally([0.6, -0.2, 0.0], [0.5, 0.5, 0.5])
    assert by_account["mirror"]["win_rate"] == round(1 / 3, 4)  # the same breakeven rule per account
    combined = ledger.totals()  # the snapshot's totals (and stats) stay every account together
    assert combined["count"] == sum(t["count"] for t in by_account.values()) == 5
    assert combined["pnl"] == round(sum(t["pnl"] for t in by_account.values()), 4)
    section = ledger.snapshot()
    assert section["totals"] == combined and section["by_account"] == by_account


def test_main_has_totals_before_any_trade_and_mirror_only_once_it_traded() -> None:
    assert Ledger().snapshot()["by_account"] == {"main": tally([], [])}
    only_mirror = Ledger([trade(0, 1.0, account="mirror")]).totals_by_account()
    assert list(only_mirror) == ["main", "mirror"] and only_mirror["main"]["count"] == 0


def test_a_breakeven_trade_is_neither_win_nor_loss_but_counts_in_the_win_rate() -> None:
    ledger = Ledger([trade(0, 5.0), trade(1, 0.0)])
    totals = ledger.totals()
    assert (totals["count"], totals["wins"], totals["losses"]) == (2, 1, 0)
    assert totals["win_rate"] == 0.5  # wins / every closed trade; wins / decided trades would be 1.0
    assert ledger.snapshot()["totals"] == totals
    assert tally([5.0, 0.0], [0.5, 0.5]) == totals  # the console's figures use the same definition


def test_recording_the_same_monitor_twice_counts_once() -> None:
    ledger = Ledger()
    assert ledger.record(trade(1, 5.0)) is not None
    assert ledger.record(trade(1, 5.0)) is None
    assert len(ledger) == 1


def test_a_trade_is_turned_into_its_stored_form_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each trade recorded saves its whole chunk: the chunk's other trades are not made again."""
    made: list[str] = []
    to_dict = Trade.to_dict

    def counted(self: Trade) -> dict[str, Any]:
        made.append(self.monitor_id)
        return to_dict(self)

    monkeypatch.setattr(Trade, "to_dict", counted)
    ledger = Ledger()
    chunks = [ledger.record(trade(i, 1.0)) for i in range(5)]
    assert len(made) == 5  # 15 before: the chunk's trades made again at each trade
    assert chunks[-1] == (chunk_key(0), {"trades": [to_dict(trade(i, 1.0)) for i in range(5)]})
    assert ledger.chunks() == [chunks[-1]]


def test_chunks_round_trip_through_the_store_state() -> None:
    ledger = Ledger()
    state: dict = {}
    for i in range(CHUNK + 5):
        key, value = ledger.record(trade(i, float(i % 7 - 3)))  # type: ignore[misc]
        state[key] = json.loads(json.dumps(value))
    assert set(state) == {chunk_key(0), chunk_key(1)}
    assert len(state[chunk_key(1)]["trades"]) == 5
    again = Ledger.from_state(state)
    assert again.trades == ledger.trades
    assert again.monitor_ids() == {f"{i:08x}" for i in range(CHUNK + 5)}


def test_snapshot_rows_have_the_contract_keys_and_iso_times() -> None:
    ledger = Ledger([trade(0, 3.0, "breakeven")])
    snap = ledger.snapshot()
    (row,) = snap["trades"]
    contract = {
        "account",
        "symbol",
        "side",
        "approach",
        "reason",
        "entry_price",
        "exit_price",
        "qty",
        "pnl",
        "fees",
        "opened_at",
        "closed_at",
    }
    assert contract <= set(row)
    assert row["opened_at"] == "2026-01-01T00:00:00.000Z" and row["side"] == "Buy"
    assert {"count", "wins", "losses", "pnl", "fees"} <= set(snap["totals"])


def test_csv_export() -> None:
    text = Ledger([trade(0, 3.0), trade(1, -1.0, "sl")]).to_csv()
    lines = text.splitlines()
    assert lines[0].startswith("account,symbol,side,approach,reason")
    assert len(lines) == 3 and ",sl," in lines[2]


def test_csv_export_names_each_trades_account() -> None:
    text = Ledger([trade(0, 3.0), trade(1, 0.15, account="mirror")]).to_csv()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["account"], float(r["pnl"])) for r in rows] == [("main", 3.0), ("mirror", 0.15)]
