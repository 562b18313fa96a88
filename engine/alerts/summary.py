"""The daily summary: when it is due, and its text (pure; the runtime gathers the figures).

Once per UTC day, at ``alerts.daily_summary_utc`` (HH:MM, UTC), the engine raises an info alert of
type ``daily_summary``: per account, the trades closed that UTC day (wins, losses, win rate by the
ledger's one definition), their net PnL, fees and funding, and the open risk, what the open
positions would lose if every stop-loss filled at its price (size x |average entry - SL price|).
The figures come from the ledger's ``tally`` and the TP/SL monitors, computed by the runtime's
summary job (:mod:`engine.runtime.daily_summary`), since this layer sits below trading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from engine.core.numbers import fmt_usdt

DAY_S = 86_400.0
ALERT_TYPE = "daily_summary"


@dataclass(frozen=True, slots=True)
class AccountDay:
    """One account's figures for the summary (``win_rate`` a 0..1 ratio, None without trades)."""

    account: str
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    pnl: float
    fees: float
    funding: float
    open_positions: int
    open_risk: float


def utc_day(now: float) -> str:
    """The UTC date of ``now`` (epoch seconds) as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(now, tz=UTC).date().isoformat()


def day_start(now: float) -> float:
    """Epoch seconds of the UTC midnight that starts ``now``'s day."""
    return (now // DAY_S) * DAY_S


def parse_hh_mm(text: str) -> tuple[int, int]:
    """``"23:55"`` -> (23, 55); ValueError when it is not a time of day."""
    hours, _, minutes = text.partition(":")
    hh, mm = int(hours), int(minutes)
    if not (0 <= hh < 24 and 0 <= mm < 60):
        raise ValueError(f"not a time of day: {text!r}")
    return hh, mm


def summary_due(now: float, at_hh_mm: str, last_day: str | None) -> bool:
    """Whether the summary of ``now``'s UTC day is due: its time has come and that day has not been
    summarised yet (an engine started after the time catches up at once, never twice a day)."""
    hh, mm = parse_hh_mm(at_hh_mm)
    at = day_start(now) + timedelta(hours=hh, minutes=mm).total_seconds()
    return now >= at and last_day != utc_day(now)


def account_line(day: AccountDay) -> str:
    """One account's line of the summary."""
    if day.trades:
        rate = f"{day.win_rate * 100:.1f}%" if day.win_rate is not None else "n/a"
        trades = (
            f"{day.trades} trade{'s' if day.trades != 1 else ''} ({day.wins} won, {day.losses} lost, "
            f"win rate {rate}), PnL {fmt_usdt(day.pnl, signed=True)} USDT, fees {fmt_usdt(day.fees)}, "
            f"funding {fmt_usdt(day.funding)}"
        )
    else:
        trades = "no trades closed"
    held = f"{day.open_positions} open position{'s' if day.open_positions != 1 else ''}"
    return f"{day.account}: {trades}; {held}, open risk {fmt_usdt(day.open_risk)} USDT"


def summary_text(day: str, accounts: Sequence[AccountDay], *, on_demand: bool = False) -> str:
    """The summary's message: a title line, then one line per account."""
    title = f"Summary of {day} (UTC) so far" if on_demand else f"Daily summary {day} (UTC)"
    return "\n".join([title, *(account_line(a) for a in accounts)])
