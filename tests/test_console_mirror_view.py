"""The console's pure parts for mirror trading: the positions table's mirror badge, the header's desync
badge, the statistics per account, the pause dialog's lines and the pause toasts."""

from __future__ import annotations

from typing import Any

import pytest

from console.engine_link import describe_pause
from console.view_model import (
    ALARM,
    ATTENTION,
    HEALTHY,
    MUTED,
    POSITION_COLUMNS,
    POSITIVE,
    PauseChoice,
    account_rows,
    fmt_money,
    mirror_badge,
    mirror_header,
    mirror_view,
    pause_choices,
    position_rows,
    stats_table,
    stats_view,
)
from engine.core.models import Side, Trade
from engine.trading.ledger import Ledger


def link(key: str, state: str = "open", drift: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    """One ``mirror.links[]`` row as the contract gives it, for the main trade ``main:<key>``."""
    return {
        "main_key": f"main:{key}",
        "mirror_key": f"mirror:{key}",
        "state": state,
        "ratio": 0.05,
        "main_size": 0.03,
        "mirror_size": 0.0015,
        "expected_size": 0.0015,
        "drift": list(drift),
        "note": "",
        **extra,
    }


def mirror_section(*links: dict[str, Any], desync: bool = False, pending: int = 0) -> dict[str, Any]:
    return {
        "enabled": True,
        "sizing": "balance_ratio",
        "links": list(links),
        "queue": {"pending": pending, "failures_in_a_row": 0, "desync": desync, "next_retry_in_s": None},
        "counts": {"drift_events": 0, "repairs": 0, "skipped": 0},
    }


def badge(section: dict[str, Any] | None, key: str) -> tuple[str, str | None]:
    cell = mirror_badge(mirror_view({} if section is None else {"mirror": section}), key)
    return cell.text, cell.tone


def test_the_badge_says_in_sync_drift_skipped_or_not_mirrored() -> None:
    section = mirror_section(
        link("BTCUSDT:Buy"),
        link("ETHUSDT:Sell", drift=("excess", "missing_stop")),
        link("SOLUSDT:Buy", drift=("missing_stop",)),
        link("XRPUSDT:Buy", state="skipped", expected_size=None, note="under the minimum qty"),
        link("DOGEUSDT:Buy", state="opening"),
        link("ADAUSDT:Buy", state="closed_by_hand"),
    )
    assert badge(section, "main:BTCUSDT:Buy") == ("sync", HEALTHY)
    assert badge(section, "main:ETHUSDT:Sell") == ("!excess+1", ATTENTION)  # names the first kind
    assert badge(section, "main:SOLUSDT:Buy") == ("!no SL", ATTENTION)
    assert badge(section, "main:XRPUSDT:Buy") == ("skipped", MUTED)
    assert badge(section, "main:DOGEUSDT:Buy") == ("opening", MUTED)
    assert badge(section, "main:ADAUSDT:Buy") == ("by hand", ATTENTION)
    assert badge(section, "main:LINKUSDT:Buy") == ("none", MUTED)  # a main trade with no mirror link
    # the mirror's own rows show their link's state; a mirror position no link explains shows a dash
    assert badge(section, "mirror:ETHUSDT:Sell") == ("!excess+1", ATTENTION)
    assert badge(section, "mirror:LINKUSDT:Buy") == ("—", MUTED)
    for kind in ("deficit", "orphan", "breakeven", "entries"):
        text, tone = badge(mirror_section(link("BTCUSDT:Buy", drift=(kind,))), "main:BTCUSDT:Buy")
        assert text.startswith("!") and len(text) <= 9 and tone == ATTENTION


def test_a_desync_turns_every_live_link_red_and_shows_in_the_header() -> None:
    section = mirror_section(
        link("BTCUSDT:Buy", drift=("deficit",)),
        link("XRPUSDT:Buy", state="skipped"),
        desync=True,
        pending=3,
    )
    assert badge(section, "main:BTCUSDT:Buy") == ("DESYNC", ALARM)  # worse than its drift
    assert badge(section, "main:XRPUSDT:Buy") == ("skipped", MUTED)  # nothing to keep in sync
    assert mirror_header(mirror_view({"mirror": section})) == " MIRROR DESYNC · 3 pending "
    assert mirror_header(mirror_view({"mirror": mirror_section(desync=False)})) is None


def test_mirroring_off_shows_a_dash_and_no_header_badge() -> None:
    off = {**mirror_section(link("BTCUSDT:Buy"), desync=True), "enabled": False}
    for section in (None, off):
        assert badge(section, "main:BTCUSDT:Buy") == ("—", MUTED)
        assert mirror_header(mirror_view({} if section is None else {"mirror": section})) is None


def test_a_key_with_a_closed_link_and_a_live_one_shows_the_live_one() -> None:
    section = mirror_section(link("BTCUSDT:Buy", drift=("excess",)), link("BTCUSDT:Buy", state="closed"))
    assert badge(section, "main:BTCUSDT:Buy") == ("!excess", ATTENTION)


def test_the_positions_table_has_the_badge_and_tells_mirror_rows_apart() -> None:
    position = {"symbol": "BTCUSDT", "side": "Buy", "size": 0.03, "entry_price": 100.0, "mark_price": 101.0}
    snapshot: Any = {
        "positions": [
            {**position, "account": "main", "upnl": 0.03},
            {**position, "account": "mirror", "size": 0.0015, "upnl": 0.0015},
        ],
        "mirror": mirror_section(link("BTCUSDT:Buy", drift=("breakeven",))),
    }
    rows = position_rows(snapshot)
    column = [c.key for c in POSITION_COLUMNS].index("mirror")
    assert column <= 3, "the badge must stay on screen at 80 columns"
    assert rows["main:BTCUSDT:Buy"][column].text == "!BE"
    assert rows["main:BTCUSDT:Buy"][0].tone is None and rows["mirror:BTCUSDT:Buy"][0].tone == "accent"


def closed(i: int, pnl: float, account: str) -> Trade:
    return Trade(account, "BTCUSDT", Side.BUY, "fast", "tp", 100.0, 100.0 + pnl, 1.0, pnl, 0.1, i, i + 60.0)


def test_statistics_show_main_mirror_and_all_from_the_ledger_by_account() -> None:
    ledger = Ledger([closed(0, 10.0, "main"), closed(1, 0.5, "mirror"), closed(2, -4.0, "main")])
    snapshot: Any = {"accounts": {"main": {}, "mirror": {}}, "ledger": ledger.snapshot()}
    view = stats_view(snapshot)
    assert [name for name, _ in view.columns] == ["Main", "Mirror", "All"]
    main, mirror, every = (stats for _, stats in view.columns)
    assert (main.trades, main.wins, main.losses, main.pnl) == (2, 1, 1, 6.0)
    assert (mirror.trades, mirror.wins, mirror.pnl, mirror.streak) == (1, 1, 0.5, 1)
    assert mirror.win_rate == pytest.approx(100.0)
    assert (every.trades, every.pnl) == (3, 6.5) and view.cumulative == every.cumulative
    headings, lines = stats_table(view)
    assert headings == ("Main", "Mirror", "All")
    figures = {label: [value for value, _ in values] for label, values in lines}
    assert figures["Trades"] == ["2", "1", "3"] and figures["Wins/losses"] == ["1/1", "1/0", "2/1"]
    assert figures["Total PnL"] == ["+6.00", "+0.50", "+6.50"]


def test_statistics_without_a_mirror_account_show_one_column() -> None:
    ledger = Ledger([closed(0, 10.0, "main")])
    view = stats_view({"accounts": {"main": {}}, "ledger": ledger.snapshot()})  # type: ignore[typeddict-item]
    assert [name for name, _ in view.columns] == ["All"]
    assert stats_table(view)[0] == ()  # no headings over a single column
    # the mirror account exists but has not traded yet: its column reads zero
    both = stats_view({"accounts": {"main": {}, "mirror": {}}, "ledger": ledger.snapshot()})  # type: ignore[typeddict-item]
    assert [(name, stats.trades) for name, stats in both.columns] == [("Main", 1), ("Mirror", 0), ("All", 1)]


def test_the_accounts_table_says_which_account_is_paused() -> None:
    snapshot: Any = {"accounts": {"main": {"equity": 1.0}, "mirror": {"equity": 2.0}}}
    rows = account_rows(snapshot, paused=["mirror"])
    assert (rows["main"][-1].text, rows["mirror"][-1].text) == ("on", "paused")
    assert rows["mirror"][-1].tone == ATTENTION


def test_an_account_that_cannot_be_read_shows_down_in_red() -> None:
    snapshot: Any = {
        "accounts": {"main": {"equity": 1.0}, "mirror": {"equity": 2.0, "unreachable": "timed out"}}
    }
    rows = account_rows(snapshot, paused=["mirror"])
    assert (rows["main"][-1].text, rows["mirror"][-1].text) == ("on", "down")
    assert rows["mirror"][-1].tone == ALARM


def test_the_pause_dialog_lines_resume_what_is_paused_and_both_pauses_a_mixed_state() -> None:
    assert pause_choices({"main": False, "mirror": True}) == [
        PauseChoice("main", ("main",), "taking entries", pause=True),
        PauseChoice("mirror", ("mirror",), "paused", pause=False),
        PauseChoice("both", ("main", "mirror"), "mixed", pause=True),
    ]
    assert pause_choices({"main": True, "mirror": True})[-1] == PauseChoice(
        "both", ("main", "mirror"), "paused", pause=False
    )
    assert pause_choices({"main": False}) == [PauseChoice("main", ("main",), "taking entries", pause=True)]


def test_pause_toasts_name_the_account_and_what_the_other_does() -> None:
    after = {"main": False, "mirror": True}
    assert describe_pause(True, ["mirror"], after) == (
        "new entries paused on mirror (protection keeps running); main still takes entries"
    )
    assert describe_pause(False, ["main"], {"main": False, "mirror": True}) == (
        "new entries resumed on main; mirror stays paused"
    )
    # every account: the words p has always shown
    assert describe_pause(True, None, after) == "new entries paused (protection keeps running)"
    assert describe_pause(False, ["main", "mirror"], after) == "new entries resumed"


def test_large_sums_can_be_abbreviated_for_a_narrow_statistics_panel() -> None:
    assert [fmt_money(v, signed=True, short=True) for v in (9_999.99, 12_345.67, -1_234_567.0, 2.5e9)] == [
        "+9,999.99",  # under 10,000: every digit
        "+12.3k",
        "-1.23M",
        "+2.50B",
    ]
    assert fmt_money(123_456.0, short=True) == "123k" and fmt_money(12_345.67) == "12,345.67"
    ledger = Ledger([closed(0, 1_234_567.5, "main")])
    view = stats_view({"accounts": {"main": {}, "mirror": {}}, "ledger": ledger.snapshot()})  # type: ignore[typeddict-item]
    assert dict(stats_table(view, short=True)[1])["Total PnL"][0] == ("+1.23M", POSITIVE)
