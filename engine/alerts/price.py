"""Price alerts: the operator's "tell me when BTCUSDT goes above 100000".

:class:`PriceAlertBook` holds the decisions (validate an alert against the current last price, delete
one, find the alerts a new last price fires) and the JSON form the store keeps. An alert is armed until
the last price reaches its level; it then fires once and stays in the book as triggered, so the operator
sees what fired and when.

:class:`PriceAlertManager` is the thin async shell: it loads the book from the store's recovered state,
watches the tickers the TP/SL manager hands on, raises an alert on the bus for every fire, and saves
the book — at once and durably for the operator's own adds and deletes, coalesced for the fire
bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol, TypedDict, cast

from engine.alerts.bus import AlertBus
from engine.alerts.model import Severity
from engine.core.clock import Clock, iso_utc
from engine.core.models import RecordError, Ticker, VenueEvent, checked_record
from engine.core.numbers import fmt_number
from engine.core.state_keys import PRICE_ALERTS_KEY
from engine.venue.base import Venue
from engine.venue.errors import VenueError
from persistence.errors import StoreFailed
from persistence.reasons import Reason

log = logging.getLogger("opconsole.alerts.price")

CONDITIONS = ("above", "below", "crosses", "change")
Condition = Literal["above", "below", "crosses", "change"]
MAX_WINDOW_S = 86_400.0
"""The longest window a ``change`` alert may watch (its prices are kept in memory that long)."""
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


class PriceAlertRejected(Exception):
    """An add or delete that was refused (nothing changed); ``errors`` says why, one per line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class PriceAlertRow(TypedDict):
    """One ``price_alerts[]`` entry: fire when ``symbol``'s last price goes ``condition`` ``price``
    (for ``change``: moves by ``price`` percent within ``window_s`` seconds)."""

    id: int
    symbol: str
    condition: str  # "above" | "below" | "crosses" | "change"
    price: float
    window_s: float  # the ``change`` window (0 for the other conditions)
    note: str
    created_at: str
    triggered_at: str | None
    armed: bool


@dataclass(frozen=True, slots=True)
class PriceAlert:
    """One alert on ``symbol``'s last price: ``above`` / ``below`` a level, ``crosses`` it (either
    way, from the side the price was on when the alert was added: ``from_side``), or ``change``:
    moves by ``price`` percent, up or down, within ``window_s`` seconds."""

    id: int
    symbol: str
    condition: Condition
    price: float
    created_at: float
    note: str = ""
    triggered_at: float | None = None
    window_s: float = 0.0
    from_side: str = ""  # "above" | "below" for ``crosses``

    @property
    def armed(self) -> bool:
        """True until the alert has fired."""
        return self.triggered_at is None

    def crossed(self, last: float) -> bool:
        """Whether ``last`` is at or beyond this alert's level, on the side it fires on (never for
        ``change``, which :meth:`moved` decides)."""
        side = {"above": "above", "below": "below", "crosses": _opposite(self.from_side)}.get(self.condition)
        if side == "above":
            return last >= self.price
        if side == "below":
            return last <= self.price
        return False

    def moved(self, last: float, reference: float | None) -> bool:
        """``change``: whether ``last`` is ``price`` percent or more away from ``reference`` (the
        first price of the window)."""
        if self.condition != "change" or reference is None or not reference > 0:
            return False
        return abs(last / reference - 1.0) * 100.0 >= self.price - 1e-12

    def describe(self) -> str:
        """``BTCUSDT above 100,000``, ``BTCUSDT change 2% in 15m``."""
        if self.condition == "change":
            return f"{self.symbol} change {self.price:g}% in {_duration(self.window_s)}"
        return f"{self.symbol} {self.condition} {fmt_number(self.price)}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the store."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PriceAlert:
        """The inverse of :meth:`to_dict`; :class:`~engine.core.models.RecordError` (a ValueError)
        when the stored shape is wrong (a price that is not a finite number, a missing field)."""
        data = checked_record(cls, data)
        condition = str(data["condition"])
        if condition not in CONDITIONS:
            raise ValueError(f"unknown price alert condition {condition!r}")
        triggered = data.get("triggered_at")
        return cls(
            id=int(data["id"]),
            symbol=str(data["symbol"]),
            condition=cast(Condition, condition),
            price=float(data["price"]),
            created_at=float(data["created_at"]),
            note=str(data.get("note", "")),
            triggered_at=None if triggered is None else float(triggered),
            window_s=float(data.get("window_s", 0.0)),
            from_side=str(data.get("from_side", "")),
        )

    def snapshot_row(self) -> PriceAlertRow:
        """The snapshot's ``price_alerts[]`` entry (times as ISO strings)."""
        return {
            "id": self.id,
            "symbol": self.symbol,
            "condition": self.condition,
            "price": self.price,
            "window_s": self.window_s,
            "note": self.note,
            "created_at": iso_utc(self.created_at),
            "triggered_at": None if self.triggered_at is None else iso_utc(self.triggered_at),
            "armed": self.armed,
        }


def parse_alert_spec(text: str) -> tuple[str, Condition, float, str, float]:
    """What the operator typed as (symbol, condition, price, note, window_s):
    ``BTCUSDT above|below|crosses 100000 [note]`` or ``BTCUSDT change 2% 15m [note]`` (a move of 2 %
    either way within 15 minutes; the window in s, m or h).

    Raises :class:`PriceAlertRejected` with a sentence saying what the text should look like.
    """
    parts = text.split()
    usage = (
        "write SYMBOL above|below|crosses PRICE [note], e.g. 'BTCUSDT above 100000', "
        "or SYMBOL change PCT% WINDOW [note], e.g. 'BTCUSDT change 2% 15m'"
    )
    if len(parts) < 3:
        raise PriceAlertRejected([f"{usage}; got {text.strip()!r}" if text.strip() else usage])
    symbol, condition = parts[0].upper(), parts[1].lower()
    if condition not in CONDITIONS:
        raise PriceAlertRejected([f"condition must be above, below, crosses or change, got {parts[1]!r}"])
    if condition == "change":
        if len(parts) < 4:
            raise PriceAlertRejected([f"a change alert needs a window: {usage}"])
        pct = _number(parts[2].rstrip("%"), "percent")
        return symbol, "change", pct, " ".join(parts[4:]), _window(parts[3])
    return symbol, cast(Condition, condition), _number(parts[2], "price"), " ".join(parts[3:]), 0.0


def _number(raw: str, what: str) -> float:
    try:
        return float(raw.replace(",", ""))
    except ValueError:
        raise PriceAlertRejected([f"{what}: not a number: {raw!r}"]) from None


def _window(raw: str) -> float:
    """``15m`` / ``1h`` / ``90s`` / ``90`` (seconds) as seconds."""
    unit = raw[-1:].lower()
    seconds = _number(raw[:-1], "window") * _UNITS[unit] if unit in _UNITS else _number(raw, "window")
    return seconds


def _duration(seconds: float) -> str:
    """``15m``, ``1h``, ``90s``: the window as the operator would type it."""
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _opposite(side: str) -> str:
    return {"above": "below", "below": "above"}.get(side, "")


@dataclass(slots=True)
class PriceAlertBook:
    """Every price alert, by id (ids increase from 1 and are never reused)."""

    alerts: dict[int, PriceAlert] = field(default_factory=dict)
    next_id: int = 1
    history: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)
    """Recent (time, last) of the symbols a ``change`` alert watches: in memory only (a restart
    starts its windows afresh)."""

    def add(
        self,
        symbol: str,
        condition: str,
        price: float,
        *,
        last: float | None,
        now: float,
        note: str = "",
        window_s: float = 0.0,
    ) -> PriceAlert:
        """Add an armed alert; ``last`` is the symbol's current last price, None for an unknown symbol.

        An alert must be able to fire later: ``above`` needs a level above the current last, ``below``
        one below it, ``crosses`` one the price is not at; ``change`` a percent in (0, 100] and a
        window of up to a day. Raises :class:`PriceAlertRejected` (the book unchanged) otherwise.
        """
        errors: list[str] = []
        if last is None:
            errors.append(f"unknown symbol {symbol!r}")
        if condition not in CONDITIONS:
            errors.append(f"condition must be above, below, crosses or change, got {condition!r}")
        if condition == "change":
            if not 0 < price <= 100:
                errors.append(f"a change must be a percent above 0 and at most 100, got {price:g}")
            if not 0 < window_s <= MAX_WINDOW_S:
                errors.append(f"the window must be above 0 and at most 24h, got {window_s:g} s")
        elif not price > 0:
            errors.append(f"price must be above 0, got {fmt_number(price)}")
        if not errors and last is not None:
            if condition == "above" and not price > last:
                errors.append(
                    f"{symbol} is already at {fmt_number(last)}: an 'above' alert needs a price above it"
                )
            if condition == "below" and not price < last:
                errors.append(
                    f"{symbol} is already at {fmt_number(last)}: a 'below' alert needs a price below it"
                )
            if condition == "crosses" and price == last:
                errors.append(f"{symbol} is at {fmt_number(last)} now: a 'crosses' alert needs another price")
        if errors:
            raise PriceAlertRejected(errors)
        side = "" if condition != "crosses" or last is None else ("below" if last < price else "above")
        alert = PriceAlert(
            self.next_id,
            symbol,
            cast(Condition, condition),
            price,
            now,
            note,
            window_s=window_s if condition == "change" else 0.0,
            from_side=side,
        )
        self.alerts[alert.id] = alert
        self.next_id += 1
        return alert

    def delete(self, alert_id: int) -> PriceAlert:
        """Remove alert ``alert_id`` (armed or triggered); raises :class:`PriceAlertRejected` if absent."""
        alert = self.alerts.pop(alert_id, None)
        if alert is None:
            raise PriceAlertRejected([f"there is no price alert #{alert_id}"])
        return alert

    def on_price(self, symbol: str, last: float, now: float) -> list[PriceAlert]:
        """Fire the armed alerts of ``symbol`` that ``last`` reaches; each is kept, as triggered."""
        armed = [a for a in self.alerts.values() if a.symbol == symbol and a.armed]
        windows = [a.window_s for a in armed if a.condition == "change"]
        fired = [replace(a, triggered_at=now) for a in armed if a.crossed(last)]
        if windows:
            seen = self.history.setdefault(symbol, deque())
            seen.append((now, last))
            while seen and seen[0][0] < now - max(windows):
                seen.popleft()
            for a in armed:
                if a.condition == "change" and a.moved(last, self.reference(symbol, now - a.window_s)):
                    fired.append(replace(a, triggered_at=now))
        else:
            self.history.pop(symbol, None)
        for alert in fired:
            self.alerts[alert.id] = alert
        return fired

    def reference(self, symbol: str, since: float) -> float | None:
        """The first price of ``symbol`` seen at or after ``since`` (the start of a change window)."""
        for ts, last in self.history.get(symbol, ()):
            if ts >= since:
                return last
        return None

    def armed_symbols(self) -> set[str]:
        """The symbols that have an armed alert."""
        return {a.symbol for a in self.alerts.values() if a.armed}

    def to_json(self) -> dict[str, Any]:
        """The JSON value kept in the store."""
        return {"next_id": self.next_id, "alerts": [a.to_dict() for a in self.alerts.values()]}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> PriceAlertBook:
        """The inverse of :meth:`to_json`; None (nothing saved yet) is an empty book."""
        if not value:
            return cls()
        if not isinstance(value, Mapping) or not isinstance(value.get("alerts", []), list):
            raise RecordError("the price-alert book must be {'next_id': n, 'alerts': [...]}")
        if not isinstance(value.get("next_id", 1), int) or isinstance(value.get("next_id"), bool):
            raise RecordError("the price-alert book's next_id must be an integer")
        alerts = [PriceAlert.from_dict(a) for a in value.get("alerts", ())]
        next_id = max([int(value.get("next_id", 1)), *(a.id + 1 for a in alerts)])
        return cls({a.id: a for a in sorted(alerts, key=lambda a: a.id)}, next_id)


def fire_message(alert: PriceAlert, last: float, reference: float | None = None) -> str:
    """What the alert pane and the log say when ``alert`` fires (``reference``: where a ``change``
    window started)."""
    note = f" — {alert.note}" if alert.note else ""
    if alert.condition == "change" and reference:
        move = (last / reference - 1.0) * 100.0
        return (
            f"{alert.symbol} moved {move:+.2f}% within {_duration(alert.window_s)} "
            f"({fmt_number(reference)} -> {fmt_number(last)}){note}"
        )
    if alert.condition == "crosses":
        return (
            f"{alert.symbol} crossed {fmt_number(alert.price)} going {_opposite(alert.from_side)} "
            f"(last {fmt_number(last)}){note}"
        )
    at, now = fmt_number(alert.price), fmt_number(last)
    return f"{alert.symbol} crossed {alert.condition} {at} (last {now}){note}"


class AlertStore(Protocol):
    """What the price-alert manager needs from :class:`persistence.store.Store`."""

    @property
    def state(self) -> Mapping[str, Any]:
        """The recovered state, by store key."""
        ...

    async def save(self, key: str, value: Any, *, reason: Reason, force: bool = False) -> Any:
        """Store ``value`` under ``key``; durable on return when ``reason`` is critical or ``force``."""
        ...


class PriceAlertManager:
    """The book, kept in the store, fed with the tickers of the venue stream."""

    def __init__(
        self,
        *,
        store: AlertStore,
        clock: Clock,
        venues: Mapping[str, Venue],
        alerts: AlertBus,
    ) -> None:
        self.store = store
        self.clock = clock
        self.venues = dict(venues)
        self.alerts = alerts
        self.book = PriceAlertBook()
        self.last: dict[str, float] = {}
        self._priced_at: dict[str, float] = {}
        self._lock = asyncio.Lock()
        self._dirty = asyncio.Event()

    def load(self) -> None:
        """Take the book from the store's recovered state."""
        self.book = PriceAlertBook.from_json(self.store.state.get(PRICE_ALERTS_KEY))

    # --- operator actions ---------------------------------------------------------------------
    async def add(
        self, symbol: str, condition: str, price: float, note: str = "", window_s: float = 0.0
    ) -> PriceAlert:
        """Validate against a fresh last price and add an alert; durable before this returns."""
        last = await self._current_last(symbol)
        async with self._lock:
            now = self.clock.now()
            alert = self.book.add(symbol, condition, price, last=last, now=now, note=note, window_s=window_s)
            if alert.condition == "change" and last is not None:
                self.book.on_price(symbol, last, now)  # the window starts at the price it was added at
            await self._save(force=True)
        log.info("price alert #%d added: %s", alert.id, alert.describe())
        return alert

    async def add_spec(self, text: str) -> PriceAlert:
        """:meth:`add` from what the operator typed (``BTCUSDT above 100000 [note]``)."""
        return await self.add(*parse_alert_spec(text))

    async def delete(self, alert_id: int) -> PriceAlert:
        """Delete an alert; durable before this returns."""
        async with self._lock:
            alert = self.book.delete(alert_id)
            await self._save(force=True)
        log.info("price alert #%d deleted: %s", alert.id, alert.describe())
        return alert

    async def _current_last(self, symbol: str) -> float | None:
        """The venue's last price of ``symbol``; None when the venue does not list it. When the venue
        cannot be read, the last price seen on the stream serves."""
        venue = next(iter(self.venues.values()), None)
        if venue is None:
            return self.last.get(symbol)
        try:
            await venue.instruments([symbol])
        except VenueError:
            return None  # not a listed symbol (or the venue is down and we cannot tell)
        try:
            ticker = (await venue.tickers([symbol])).get(symbol)
        except VenueError:
            return self.last.get(symbol)
        return self.last.get(symbol) if ticker is None else ticker.last

    # --- the price feed -----------------------------------------------------------------------
    def on_event(self, _account: str, event: VenueEvent) -> None:
        """A venue event (a :class:`~engine.trading.manager.TpslManager` observer): tickers may fire alerts.

        The alert is raised at once; the book's bookkeeping is saved by :meth:`tick`."""
        if isinstance(event, Ticker):
            self.on_price(event.symbol, event.last)

    def on_price(self, symbol: str, last: float) -> list[PriceAlert]:
        """Fire what ``last`` reaches: raise one alert each and mark the book for saving."""
        self.last[symbol] = last
        self._priced_at[symbol] = self.clock.now()
        now = self.clock.now()
        fired = self.book.on_price(symbol, last, now)
        for alert in fired:
            reference = self.book.reference(symbol, now - alert.window_s) if alert.window_s else None
            message = fire_message(alert, last, reference)
            self.alerts.raise_alert(Severity.WARNING, "price_alert", message, key=symbol)
        if fired:
            self._dirty.set()
        return fired

    async def tick(self, stale_after_s: float) -> None:
        """The price-alert job: :meth:`check` the prices no stream brought, then save the book if
        alerts fired since the last save (coalesced, non-critical)."""
        await self.check(stale_after_s)
        await self.save_fired()

    async def save_fired(self) -> None:
        """Save the book if alerts fired since the last save (also at engine stop)."""
        if not self._dirty.is_set():
            return
        async with self._lock:
            self._dirty.clear()
            await self._save(force=False)

    async def check(self, stale_after_s: float) -> int:
        """The price-alert job: armed alerts whose symbol no stream has priced for ``stale_after_s``
        (streams off or down) are checked on one tickers read; returns how many symbols were read."""
        now = self.clock.now()
        stale = sorted(
            s
            for s in self.book.armed_symbols()
            if now - self._priced_at.get(s, float("-inf")) >= stale_after_s
        )
        venue = next(iter(self.venues.values()), None)
        if not stale or venue is None:
            return 0
        try:
            tickers = await venue.tickers(stale)
        except VenueError as exc:
            log.warning("price alerts: cannot read prices (%s)", exc)
            return 0
        for symbol, ticker in tickers.items():
            self.on_price(symbol, ticker.last)
        return len(tickers)

    async def _save(self, *, force: bool) -> None:
        try:
            book = self.book.to_json()
            await self.store.save(PRICE_ALERTS_KEY, book, reason=Reason.PRICE_ALERT, force=force)
        except StoreFailed as exc:  # kept by the store and written when the disk is back (it alerts)
            log.warning("price alerts not durable yet: %s", exc)

    # --- snapshot -----------------------------------------------------------------------------
    def snapshot(self) -> list[PriceAlertRow]:
        """The snapshot's ``price_alerts`` section, by id."""
        return [a.snapshot_row() for a in self.book.alerts.values()]
