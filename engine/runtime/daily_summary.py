"""The daily summary job: gathers the day's figures from the ledger and the monitors, raises the alert.

The scheduler runs :meth:`DailySummary.tick` every :data:`CHECK_S`; the pure
:func:`~engine.alerts.summary.summary_due` decides when the day's summary is due, and the UTC day
last summarised is saved (``alerts:summary``), so a restart after the summary time does not send it
twice. :meth:`DailySummary.publish_now` is the on-demand summary (the console's key): the same text
for the day so far, raised as a ``daily_summary`` info alert keyed ``on_demand``, and returned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from engine.alerts.bus import AlertBus
from engine.alerts.model import Severity
from engine.alerts.outbox import OutboxStore
from engine.alerts.summary import ALERT_TYPE, AccountDay, day_start, summary_due, summary_text, utc_day
from engine.core.clock import Clock
from engine.core.models import Monitor, Phase, Trade
from engine.core.state_keys import ALERT_SUMMARY_KEY
from engine.trading.ledger import Ledger, tally
from persistence.errors import StoreFailed
from persistence.reasons import Reason

log = logging.getLogger("opconsole.runtime.summary")

CHECK_S = 60.0
"""How often the job looks whether the summary is due (it goes out within this of its time)."""
JOB_NAME = "daily-summary"
ALL = "all"


def open_risk(monitors: Iterable[Monitor]) -> float:
    """What the open positions lose if every stop fills at its price: sum of size x |avg entry - SL|."""
    return sum(
        m.size * abs(m.avg_entry - m.sl_price)
        for m in monitors
        if m.phase is not Phase.CLOSED and m.size > 0 and m.sl_price > 0
    )


def account_day(account: str, trades: Sequence[Trade], monitors: Sequence[Monitor]) -> AccountDay:
    """One account's (or every account's) figures: the ledger's :func:`tally` of ``trades`` and the
    open risk of ``monitors``."""
    totals = tally([t.pnl for t in trades], (t.fees for t in trades), (t.funding for t in trades))
    held = [m for m in monitors if m.phase is not Phase.CLOSED and m.size > 0]
    return AccountDay(
        account=account,
        trades=totals["count"],
        wins=totals["wins"],
        losses=totals["losses"],
        win_rate=totals["win_rate"],
        pnl=totals["pnl"],
        fees=totals["fees"],
        funding=totals["funding"],
        open_positions=len(held),
        open_risk=round(open_risk(held), 4),
    )


def day_figures(
    accounts: Sequence[str], trades: Iterable[Trade], monitors: Iterable[Monitor], now: float
) -> list[AccountDay]:
    """Per account, the trades closed in ``now``'s UTC day up to ``now`` and the open risk; plus the
    accounts together (``all``) when there are several."""
    start = day_start(now)
    today = [t for t in trades if start <= t.closed_at <= now]
    held = list(monitors)
    names = list(accounts) + sorted({t.account for t in today} - set(accounts))
    rows = [
        account_day(name, [t for t in today if t.account == name], [m for m in held if m.account == name])
        for name in names
    ]
    if len(names) > 1:
        rows.append(account_day(ALL, today, held))
    return rows


class SummarySource(Protocol):
    """What the summary reads of the TP/SL manager."""

    @property
    def ledger(self) -> Ledger:
        """The closed trades."""
        ...

    @property
    def monitors(self) -> Mapping[str, Monitor]:
        """The open monitors, by key."""
        ...


class DailySummary:
    """The daily summary of one engine (see the module doc)."""

    def __init__(
        self,
        *,
        manager: SummarySource,
        alerts: AlertBus,
        store: OutboxStore,
        clock: Clock,
        at_utc: str,
        accounts: Sequence[str],
    ) -> None:
        self._manager = manager
        self._alerts = alerts
        self._store = store
        self._clock = clock
        self.at_utc = at_utc
        self.accounts = list(accounts)
        self.last_day: str | None = None

    def load(self) -> None:
        """The UTC day last summarised, from the store."""
        saved = self._store.state.get(ALERT_SUMMARY_KEY)
        day = saved.get("last_day") if isinstance(saved, dict) else None
        self.last_day = day if isinstance(day, str) else None

    def figures(self, now: float | None = None) -> list[AccountDay]:
        """The figures of the UTC day up to ``now`` (default: the clock's now)."""
        moment = self._clock.now() if now is None else now
        manager = self._manager
        return day_figures(self.accounts, manager.ledger.trades, manager.monitors.values(), moment)

    def text(self, now: float | None = None, *, on_demand: bool = False) -> str:
        """The summary's text for the UTC day up to ``now``."""
        moment = self._clock.now() if now is None else now
        return summary_text(utc_day(moment), self.figures(moment), on_demand=on_demand)

    def publish_now(self) -> str:
        """The on-demand summary: raised as an info ``daily_summary`` alert (key ``on_demand``), so it
        reaches the console and the delivery sinks; returns its text."""
        text = self.text(on_demand=True)
        self._alerts.raise_alert(Severity.INFO, ALERT_TYPE, text, key="on_demand")
        return text

    async def tick(self) -> None:
        """The scheduler job: raise the day's summary once, when it is due."""
        now = self._clock.now()
        if not summary_due(now, self.at_utc, self.last_day):
            return
        self._alerts.raise_alert(Severity.INFO, ALERT_TYPE, self.text(now), key="daily")
        self.last_day = utc_day(now)
        try:
            await self._store.save(
                ALERT_SUMMARY_KEY, {"last_day": self.last_day}, reason=Reason.ALERT, force=True
            )
        except StoreFailed:  # kept by the store and written later; the alert went out anyway
            log.warning("the daily summary's day could not be saved now")
