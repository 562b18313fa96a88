"""The simulated Bybit linear USDT-perpetual exchange: one in-process market serving many accounts.

:class:`SimExchange` is a facade over the parts in this package: the listing catalog
(:mod:`~engine.sim.instruments`), the seeded price feed (:mod:`~engine.sim.feed`), the accounts
(:mod:`~engine.sim.account`), the order lifecycle (:mod:`~engine.sim.matcher`), push subscriptions
(:mod:`~engine.sim.streams`), rate limits (:mod:`~engine.sim.ratelimit`), fault injection
(:mod:`~engine.sim.faults`) and its state file (:mod:`~engine.sim.state`). Its API speaks
:mod:`engine.core.models` records and raises :mod:`engine.venue.errors`, so the in-process venue
(:class:`engine.sim.venue.SimVenue`) and the fake Bybit V5 server both wrap it without translating
semantics.

Order entry and reads do not consume rate budget or injected faults by themselves: the layer that
plays the API (the venue, the fake server) calls :meth:`SimExchange.admit` (or :meth:`check_rate`,
:meth:`admit_batch`) once per request first, as Bybit's gateway would.

Everything is deterministic for a seed: one ``random.Random(seed)`` drives the price feed of the
catalog's symbols, a second one (seeded from the same seed) the synthetic symbols' (so their number
never shifts the others' paths), a third one draws latencies, ids are derived from the seed and a
counter, and time is the injected clock's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.core.clock import Clock
from engine.core.models import (
    AmendRequest,
    CancelRequest,
    Execution,
    Instrument,
    Order,
    OrderAck,
    OrderRequest,
    Position,
    Ticker,
    VenueEvent,
    Wallet,
)
from engine.sim.account import SimAccount
from engine.sim.faults import FaultInjector
from engine.sim.feed import PriceFeed
from engine.sim.fills import dec
from engine.sim.ids import IdFactory
from engine.sim.instruments import check_symbols, listings, synthetic_symbols
from engine.sim.journal import (
    AccountImage,
    SimJournal,
    account_change,
    apply_account_change,
    image_of,
    journal_path,
    last_record_time,
    touched_symbols,
)
from engine.sim.latency import LatencyModel
from engine.sim.matcher import MAKER_FEE_RATE, TAKER_FEE_RATE, Matcher
from engine.sim.ratelimit import RateLimiter, RateStatus
from engine.sim.save_health import SaveHealth, SaveReport
from engine.sim.state import (
    JsonArray,
    SimStateError,
    read_state,
    rng_state_from_json,
    rng_state_to_json,
    write_state,
)
from engine.sim.streams import EventHub, PushQueue
from engine.venue.base import Endpoint
from engine.venue.errors import AuthError, VenueError

if TYPE_CHECKING:
    from engine.core.settings import Settings

log = logging.getLogger("opconsole.sim")

STATE_FILE = "sim-exchange.json"


BATCH_ITEM_ENDPOINT = {
    Endpoint.CREATE_BATCH: Endpoint.CREATE,
    Endpoint.AMEND_BATCH: Endpoint.AMEND,
    Endpoint.CANCEL_BATCH: Endpoint.CANCEL,
}
"""The single endpoint each batch item stands for (where failures injected for it apply)."""


class SimExchange:
    """A deterministic simulated Bybit linear-perpetual exchange (one-way positions, USDT wallets)."""

    def __init__(
        self,
        *,
        clock: Clock,
        seed: int,
        symbols: Sequence[str],
        balances: Mapping[str, float],
        volatility: float = 0.8,
        tick_interval_s: float = 1.0,
        slippage_bps: float = 2.0,
        latency: str = "none",
        state_path: Path | None = None,
        save_interval_s: float = 60.0,
        taker_fee_rate: float = TAKER_FEE_RATE,
        maker_fee_rate: float = MAKER_FEE_RATE,
        synthetic: int = 0,
    ) -> None:
        """Open a fresh market, or continue the one saved at ``state_path`` when that file exists,
        with the changes its journal (:mod:`engine.sim.journal`) holds since.

        The market lists ``symbols`` and the first ``synthetic`` synthetic symbols
        (:func:`~engine.sim.instruments.synthetic_symbols`). A saved market keeps its own seed,
        prices, accounts and history (the exchange is the world), the symbols it listed included
        (synthetic ones beyond a lowered ``synthetic`` too); ``symbols``, ``synthetic`` and
        ``balances`` only add symbols and accounts it does not have yet. The other parameters
        (volatility, slippage, latency, intervals, fees) are configuration and apply as given. With
        a ``state_path``, every change is journaled before it is acknowledged. Raises
        :class:`~engine.sim.state.SimStateError` when the file or its journal exists but is
        unusable, and ValueError for an unknown symbol or latency profile.
        """
        if tick_interval_s <= 0 or save_interval_s <= 0:
            raise ValueError("tick_interval_s and save_interval_s must be > 0")
        self.clock = clock
        self.state_path = state_path
        self.tick_interval_s = tick_interval_s
        self.save_interval_s = save_interval_s
        saved = read_state(state_path) if state_path is not None and state_path.exists() else None
        self.seed = int(saved["seed"]) if saved is not None and "seed" in saved else seed
        saved_symbols = list(saved.get("feed", {})) if saved is not None else []
        catalog = listings([*symbols, *synthetic_symbols(synthetic), *saved_symbols])
        self.instruments: dict[str, Instrument] = {s: item.instrument for s, item in catalog.items()}
        self._rng = random.Random(self.seed)
        self._synthetic_rng = random.Random(f"synthetic:{self.seed}")
        self._latency = LatencyModel(latency, random.Random(f"latency:{self.seed}"))
        self._ids = IdFactory(self.seed)
        self._feed = PriceFeed(
            self.instruments,
            {s: item.start_price for s, item in catalog.items()},
            self._rng,
            volatility=volatility,
            tick_interval_s=tick_interval_s,
            synthetic_rng=self._synthetic_rng,
        )
        self._matcher = Matcher(
            instruments=self.instruments,
            feed=self._feed,
            ids=self._ids,
            now=clock.now,
            slippage_bps=slippage_bps,
            taker_fee_rate=taker_fee_rate,
            maker_fee_rate=maker_fee_rate,
        )
        self._accounts: dict[str, SimAccount] = {}
        self._default_balances = dict(balances)
        self._hub = EventHub()
        # Per account, the events of the actions acknowledged together so far (see acknowledged_together).
        self._together: dict[str, list[VenueEvent]] = {}
        self._limits = RateLimiter()
        self._faults = FaultInjector()
        self.saved_at: float | None = None
        """Clock time of the last save (or of the last change this market was loaded from)."""
        self.on_alert: Callable[[str, str], None] | None = None
        """Called with (severity, message) when saving the market fails, still fails, works again
        (the engine wires its alert bus here); without it those are logged."""
        self._save_health = SaveHealth()
        self._journal = SimJournal(journal_path(state_path)) if state_path is not None else None
        self._images: dict[str, AccountImage] | None = None  # None: not journaling (yet)
        if saved is not None and state_path is not None:  # a saved market came from state_path
            self._restore(saved, state_path)
        replayed = self._replay_journal(saved)
        known = set(self._accounts)
        for name, balance in balances.items():
            self.ensure_account(name, balance)
        if state_path is not None:
            # The journal only holds changes: a market it cannot be replayed onto without this start's
            # settings (new, continued from the journal, with a new account or newly listed symbols,
            # which a later start with fewer sim.symbols or sim.synthetic_symbols must still list)
            # is written out first.
            listed = set(self.instruments) != set(saved_symbols)
            if saved is None or replayed or set(self._accounts) != known or listed:
                self.save()
            self._images = {name: image_of(account) for name, account in self._accounts.items()}
            for account in self._accounts.values():
                account.dirty.clear()

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock, state_dir: Path) -> SimExchange:
        """The exchange the ``sim.*`` settings describe, continuing ``state_dir/sim-exchange.json``.

        Raises :class:`~engine.core.errors.BadInput` for a ``sim.symbols`` entry it does not list
        (a synthetic one above ``sim.synthetic_symbols`` included).
        """
        synthetic = int(settings.get("sim.synthetic_symbols"))
        check_symbols(list(settings.get("sim.symbols")), synthetic)
        return cls(
            clock=clock,
            seed=int(settings.get("sim.seed")),
            symbols=list(settings.get("sim.symbols")),
            balances={k: float(v) for k, v in settings.section("sim.balances").items()},
            volatility=float(settings.get("sim.volatility")),
            tick_interval_s=float(settings.get("sim.tick_interval_s")),
            slippage_bps=float(settings.get("sim.slippage_bps")),
            latency=str(settings.get("sim.latency")),
            state_path=state_dir / STATE_FILE,
            save_interval_s=float(settings.get("sim.save_interval_s")),
            synthetic=synthetic,
        )

    @staticmethod
    def saved_time(state_dir: Path) -> float | None:
        """Clock time at which the market in ``state_dir`` was saved (None when there is none).

        A virtual clock should start no earlier than this, so that a restarted simulation does not
        run its market backwards in time.
        """
        path = state_dir / STATE_FILE
        saved_at = read_state(path).get("saved_at") if path.exists() else None
        times = [float(saved_at)] if saved_at is not None else []
        changed_at = last_record_time(journal_path(path))
        if changed_at is not None:  # the journal's changes (fills included) are newer than the save
            times.append(changed_at)
        return max(times, default=None)

    # --- accounts ----------------------------------------------------------------------------
    @property
    def accounts(self) -> list[str]:
        """Account names, in creation order."""
        return list(self._accounts)

    def ensure_account(self, name: str, balance: float | None = None) -> None:
        """Open account ``name`` with ``balance`` USDT (default: its configured balance, else 0).

        An existing account is left exactly as it is.
        """
        if name in self._accounts:
            return
        start = balance if balance is not None else self._default_balances.get(name, 0.0)
        self._accounts[name] = SimAccount(name=name, balance=dec(float(start)))
        self._journal_changes("account_opened", [name])

    def _account(self, name: str) -> SimAccount:
        try:
            return self._accounts[name]
        except KeyError:
            raise AuthError(f"unknown account {name!r}", 10003) from None

    # --- market ------------------------------------------------------------------------------
    def step(self) -> None:
        """One feed tick: move every price, mark every account to market, publish the tickers, then
        match every account."""
        self._feed.step()
        self._mark_to_market()
        now = self.clock.now()
        self._hub.broadcast(self._feed.tickers(now), now)
        self._match_all()

    def set_price(self, symbol: str, last: float, mark: float | None = None) -> None:
        """Put ``symbol`` at a scripted price (mark = last unless given) and match at once."""
        self.set_prices({symbol: last}, {symbol: mark} if mark is not None else None)

    def set_prices(self, last: Mapping[str, float], mark: Mapping[str, float] | None = None) -> None:
        """Put several symbols at scripted prices in one tick (mark = last unless given), then match
        once: what moved together fills together, in one push per account, as a busy tick does."""
        for symbol in last:
            self._matcher.instrument(symbol)
        for symbol, price in last.items():
            self._feed.set_price(symbol, price, (mark or {}).get(symbol))
        self._mark_to_market()
        now = self.clock.now()
        self._hub.broadcast([self._feed.ticker(symbol, now) for symbol in last], now)
        self._match_all()

    def ticker(self, symbol: str) -> Ticker:
        """The symbol's current ticker."""
        self._matcher.instrument(symbol)
        return self._feed.ticker(symbol, self.clock.now())

    def tickers(self, symbols: Sequence[str] | None = None) -> dict[str, Ticker]:
        """Tickers of ``symbols`` (all listed when None)."""
        return {s: self.ticker(s) for s in (self._feed.symbols if symbols is None else symbols)}

    async def run(self) -> None:
        """Tick every ``tick_interval_s`` of the clock until cancelled; save periodically and on cancel."""
        next_tick = self.clock.now() + self.tick_interval_s
        last_save = self.clock.now()
        try:
            while True:
                await self.clock.sleep(next_tick - self.clock.now())
                # A real clock that fell far behind resynchronises instead of bursting through ticks.
                behind = self.clock.now() - next_tick
                next_tick = (
                    next_tick + self.tick_interval_s
                    if behind < 10 * self.tick_interval_s
                    else (self.clock.now() + self.tick_interval_s)
                )
                # A due save goes before the tick, not after: its ~0.1 s at a thousand positions
                # would otherwise hold the tick's fills on this loop before anyone can act on them.
                if self.state_path is not None and self.clock.now() - last_save >= self.save_interval_s:
                    last_save = self.clock.now()
                    try:
                        self.save()
                    except OSError as exc:  # the market keeps running; the next save may succeed
                        self._write_failed(self.state_path, exc)
                self.step()
        except asyncio.CancelledError:
            if self.state_path is not None:
                try:
                    self.save()
                except OSError as exc:  # still stop; the previous save is intact (atomic writes)
                    log.error("cannot save the simulated exchange to %s: %s", self.state_path, exc)
            raise

    def _write_failed(self, path: Path, exc: OSError) -> None:
        """A save or journal write failed: report it once, then as a periodic reminder (SaveHealth)."""
        report = self._save_health.failed(self.clock.now(), f"{path}: {exc.strerror or exc}")
        if report is None:
            log.debug("cannot write the simulated exchange to %s: %s", path, exc)
        else:
            self._report(report, logging.ERROR)

    def _write_worked(self) -> None:
        report = self._save_health.succeeded(self.clock.now())
        if report is not None:
            self._report(report, logging.INFO)

    def _report(self, report: SaveReport, level: int) -> None:
        if self.on_alert is not None:
            self.on_alert(report.severity, report.message)  # the alert bus logs it too
        else:
            log.log(level, "%s", report.message)

    def _mark_to_market(self) -> None:
        """Every account's uPnL at the new marks, as the prices move and before anything fills: a
        fill's push then adds only its own symbols' change to the wallet it closes with. Worked out
        after the matching instead, a thousand positions' uPnL (3 ms an account) held every fill of
        the tick from the engine."""
        marks = self._feed.marks()
        for account in self._accounts.values():
            account.upnl(marks)

    def _match_all(self) -> None:
        changed: dict[str, list[VenueEvent]] = {}
        for account in self._accounts.values():
            events: list[VenueEvent] = []
            self._matcher.match(account, events)
            if events:
                changed[account.name] = events
        # One journal record (one fsync) for every account the price move changed, then the pushes.
        self._journal_changes("market", list(changed))
        for name, events in changed.items():
            self._push(self._accounts[name], events)

    @contextmanager
    def acknowledged_together(self, account: str) -> Iterator[None]:
        """The actions on ``account`` inside are acknowledged as one, as one batch request is: what
        they changed is journaled in one record (one fsync) and their events go in one push, closed
        by one wallet, when the block ends (the caller replies after it, so every item is durable).
        Item by item, a batch of twenty cost twenty fsyncs and twenty sums of the account's margins
        before its reply, at a thousand positions 2 ms each, on the loop the engine decides on."""
        if account in self._together:  # within another: that one acknowledges
            yield
            return
        self._together[account] = []  # an unknown account is refused by each action, as before
        try:
            yield
        finally:
            events = self._together.pop(account)
            if events:
                self._journal_changes("order_action", [account])
                self._push(self._accounts[account], events)

    def _publish(self, account: SimAccount, events: list[VenueEvent]) -> None:
        """Acknowledge an action: journal what it changed (on disk before anything else), then push
        its events. The caller returns the action's reply after this, so that is durable too (within
        :meth:`acknowledged_together`, at the end of the block)."""
        if not events:
            return
        together = self._together.get(account.name)
        if together is not None:
            together.extend(events)
            return
        self._journal_changes("order_action", [account.name])
        self._push(account, events)

    def _push(self, account: SimAccount, events: list[VenueEvent]) -> None:
        """Push events to the account's subscribers, closed by the account's wallet."""
        now = self.clock.now()
        events.append(account.wallet(self._feed.marks(), now))
        self._hub.publish(account.name, events, now)

    def _journal_changes(self, reason: str, names: Sequence[str]) -> None:
        """Append what changed in these accounts since the journal last wrote them (see
        :mod:`engine.sim.journal`) as one record, and return once it is on disk.

        A failed write is logged and the market goes on, as after a failed save: the images stay as
        they were, so the next record that can be written carries these changes too.
        """
        if self._journal is None or self._images is None or not names:
            return
        changes: dict[str, Any] = {}
        images: dict[str, AccountImage] = {}
        symbols: set[str] = set()
        for name in names:
            account = self._accounts[name]
            known = self._images.get(name)
            before = known or AccountImage()
            # A new account is written whole; a known one by the symbols changed since its last record.
            scope = None if known is None else account.dirty
            change, images[name] = account_change(account, before, scope)
            if change:
                changes[name] = change
                symbols |= touched_symbols(change, before)
        if not changes:
            return
        # Only the touched symbols' prices: the whole feed is 100 bytes a symbol, too much for a record
        # fsync'd per action with a thousand synthetic symbols listed.
        feed = self._feed.to_state(symbols)
        value = {"ids": self._ids.counter, "feed": feed, "accounts": changes}
        try:
            self._journal.append(self.clock.now(), reason, value)
        except OSError as exc:
            self._write_failed(self._journal.path, exc)
            return
        self._write_worked()
        self._images.update(images)
        for name in images:
            self._accounts[name].dirty.clear()

    # --- order entry (Bybit semantics; see engine.sim.matcher) --------------------------------
    def place(self, account: str, request: OrderRequest) -> OrderAck:
        """Create an order; executes at once what is marketable."""
        acct = self._account(account)
        events: list[VenueEvent] = []
        order = self._matcher.place(acct, request, events)
        self._publish(acct, events)
        return OrderAck(order.order_id, order.link_id)

    def amend(self, account: str, request: AmendRequest) -> OrderAck:
        """Amend an open order's qty, price or trigger price."""
        acct = self._account(account)
        events: list[VenueEvent] = []
        order = self._matcher.amend(acct, request, events)
        self._publish(acct, events)
        return OrderAck(order.order_id, order.link_id)

    def cancel(self, account: str, request: CancelRequest) -> OrderAck:
        """Cancel an open order."""
        acct = self._account(account)
        events: list[VenueEvent] = []
        order = self._matcher.cancel(acct, request, events)
        self._publish(acct, events)
        return OrderAck(order.order_id, order.link_id)

    def cancel_all(self, account: str, symbol: str) -> list[OrderAck]:
        """Cancel every open order of ``symbol`` (conditionals included)."""
        acct = self._account(account)
        events: list[VenueEvent] = []
        orders = self._matcher.cancel_all(acct, symbol, events)
        self._publish(acct, events)
        return [OrderAck(o.order_id, o.link_id) for o in orders]

    def set_leverage(self, account: str, symbol: str, leverage: float) -> None:
        """Set the account's leverage for ``symbol`` (no-op when unchanged)."""
        acct = self._account(account)
        events: list[VenueEvent] = []
        self._matcher.set_leverage(acct, symbol, leverage, events)
        self._publish(acct, events)

    # --- the exchange's own executions (scripted by tests and scenarios) ---------------------
    def settle_funding(self, symbol: str, rate: float) -> None:
        """A funding time of ``symbol`` at ``rate``: every account holding it pays or receives
        (``Funding`` executions, see :meth:`~engine.sim.matcher.Matcher.charge_funding`)."""
        self._matcher.instrument(symbol)
        for acct in self._accounts.values():
            events: list[VenueEvent] = []
            self._matcher.charge_funding(acct, symbol, rate, events)
            self._publish(acct, events)

    def force_close(
        self, account: str, symbol: str, qty: float | None = None, exec_type: str = "BustTrade"
    ) -> None:
        """The exchange closes (part of) a position itself: ``AdlTrade``, ``BustTrade`` (liquidation)
        or ``Delivery``; all of it when ``qty`` is None (see
        :meth:`~engine.sim.matcher.Matcher.force_close`)."""
        acct = self._account(account)
        self._matcher.instrument(symbol)
        events: list[VenueEvent] = []
        amount = None if qty is None else dec(qty)
        self._matcher.force_close(acct, symbol, amount, exec_type, events)
        self._publish(acct, events)

    # --- reads -------------------------------------------------------------------------------
    def positions(self, account: str, symbol: str | None = None) -> list[Position]:
        """Open positions of every symbol, or the one symbol's position (flat included), as Bybit."""
        acct = self._account(account)
        now = self.clock.now()
        if symbol is not None:
            self._matcher.instrument(symbol)
            return [acct.position_view(symbol, self._feed.mark(symbol), now)]
        return [
            acct.position_view(s, self._feed.mark(s), now)
            for s in sorted(acct.positions)
            if acct.positions[s].size
        ]

    def open_orders(self, account: str, symbol: str | None = None) -> list[Order]:
        """Working orders (untriggered conditionals included), oldest first."""
        return self._account(account).order_views(symbol)

    def order_history(self, account: str, symbol: str | None = None) -> list[Order]:
        """Recently finished orders (bounded), oldest first."""
        acct = self._account(account)
        return [o.snapshot(account) for o in acct.finished if symbol is None or o.symbol == symbol]

    def get_order(self, account: str, order_id: str = "", link_id: str = "") -> Order | None:
        """An order by id or link id, open or recently finished (the newest with that link id)."""
        acct = self._account(account)
        candidates = [*acct.orders.values(), *reversed(acct.finished)]
        for order in candidates:
            if (order_id and order.order_id == order_id) or (
                not order_id and link_id and order.link_id == link_id
            ):
                return order.snapshot(account)
        return None

    def executions(self, account: str, since: float, symbol: str | None = None) -> list[Execution]:
        """Fills at or after ``since`` (bounded history), oldest first."""
        acct = self._account(account)
        return [e for e in acct.executions if e.ts >= since and (symbol is None or e.symbol == symbol)]

    def wallet(self, account: str) -> Wallet:
        """The account's USDT wallet, marked to the current mark prices."""
        return self._account(account).wallet(self._feed.marks(), self.clock.now())

    # --- the API gateway: rate limits, faults, latency, push -----------------------------------
    def check_rate(self, account: str, endpoint: str, units: int = 1) -> None:
        """Spend ``units`` of the account's budget for ``endpoint``; raises RateLimited (10006)."""
        self._limits.acquire(account, endpoint, units, self.clock.now())

    def admit_batch(self, account: str, endpoint: str, items: int) -> int:
        """Gate one batch request (unknown account, injected fault, then one rate unit per item, as many
        as the budget allows); returns how many items were admitted.

        Items beyond the returned count fail with 10006 individually; raises RateLimited when not even
        one fits.
        """
        self._account(account)
        self.check_fault(account, endpoint)
        return self._limits.acquire(account, endpoint, items, self.clock.now(), partial=True)

    def rate_status(self, account: str, endpoint: str) -> RateStatus:
        """The budget the X-Bapi-Limit / -Status / -Reset-Timestamp headers report."""
        return self._limits.status(account, endpoint, self.clock.now())

    def check_fault(self, account: str, endpoint: str) -> None:
        """Raise the next injected failure for this call, if one is pending."""
        self._faults.check(account, endpoint)

    def check_item_fault(self, account: str, batch_endpoint: str) -> None:
        """One item of a batch: a failure injected for the single endpoint it stands for (create,
        amend, cancel) fails this item alone, as Bybit fails items inside an accepted batch."""
        single = BATCH_ITEM_ENDPOINT.get(batch_endpoint)
        if single is not None:
            self._faults.check(account, single, named_only=True)

    def admit(self, account: str, endpoint: str, units: int = 1) -> None:
        """Gate one API request: unknown account (10003), injected fault, then rate limit."""
        self._account(account)
        self.check_fault(account, endpoint)
        self.check_rate(account, endpoint, units)

    def inject_errors(
        self, account: str, n: int, error: VenueError, endpoints: Collection[str] | None = None
    ) -> None:
        """Make the account's next ``n`` requests (to ``endpoints`` only, when given) fail with ``error``."""
        self._faults.inject(account, n, error, endpoints)

    def clear_errors(self, account: str | None = None) -> None:
        """Drop the injected failures still pending for ``account`` (all accounts when None)."""
        self._faults.clear(account)

    def latency_s(self) -> float:
        """Seconds the next request should take (0 with the ``none`` profile)."""
        return self._latency.draw()

    def subscribe(self, account: str) -> PushQueue:
        """A queue of the account's pushes: its events (orders, executions, positions, wallet) and
        every ticker, each item the events sent together."""
        self._account(account)
        return self._hub.subscribe(account)

    def unsubscribe(self, account: str, queue: PushQueue) -> None:
        """Stop feeding a queue from :meth:`subscribe`."""
        self._hub.unsubscribe(account, queue)

    def drop_stream(self, account: str) -> None:
        """Disconnect the account's subscribers: each gets StreamStatus(connected=False, gap=True) and
        nothing more; events until they subscribe again are lost to them."""
        self._hub.drop(account, self.clock.now())

    # --- persistence -------------------------------------------------------------------------
    def save(self) -> None:
        """Write the whole market atomically to ``state_path`` (tmp + fsync + rename, mode 0600),
        then empty the journal, whose records it now holds (``journal_seq``: replay skips them even
        if a crash comes between the two).

        Synchronous on purpose: the file is small (histories are bounded) and an off-loop write would
        let a virtual clock run ahead of the save, breaking determinism.
        """
        if self.state_path is None:
            raise ValueError("this exchange has no state_path")
        now = self.clock.now()
        seq = self._journal.seq if self._journal is not None else 0
        write_state(self.state_path, {**self.to_state(now, JsonArray), "journal_seq": seq})
        self.saved_at = now
        self._write_worked()
        if self._journal is not None:
            self._journal.reset()

    def to_state(self, saved_at: float, array: Callable[[Iterable[Any]], Any] = list) -> dict[str, Any]:
        """The market as a JSON-ready dict (what :meth:`save` writes); its accounts, and their orders
        and histories, go into ``array`` (see :meth:`SimAccount.to_state`)."""
        return {
            "saved_at": saved_at,
            "seed": self.seed,
            "ids": self._ids.counter,
            "rng": rng_state_to_json(self._rng.getstate()),
            "synthetic_rng": rng_state_to_json(self._synthetic_rng.getstate()),
            "latency_rng": rng_state_to_json(self._latency.rng.getstate()),
            "feed": self._feed.to_state(),
            "accounts": array(a.to_state(array) for a in self._accounts.values()),
        }

    def _restore(self, data: Mapping[str, Any], path: Path) -> None:
        try:
            self._ids.counter = int(data["ids"])
            self._rng.setstate(rng_state_from_json(data["rng"]))
            if "synthetic_rng" in data:  # absent in markets saved before synthetic symbols existed
                self._synthetic_rng.setstate(rng_state_from_json(data["synthetic_rng"]))
            self._latency.rng.setstate(rng_state_from_json(data["latency_rng"]))
            self._feed.load_state(data["feed"])
            for raw in data["accounts"]:
                account = SimAccount.from_state(raw)
                self._accounts[account.name] = account
            self.saved_at = float(data["saved_at"])
        except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
            self._accounts.clear()
            raise SimStateError(
                path, f"corrupt simulated exchange state: {type(exc).__name__}: {exc}"
            ) from exc
        log.info(
            "simulated exchange continues from %s (%d accounts, saved at %s)",
            path,
            len(self._accounts),
            self.saved_at,
        )

    def _replay_journal(self, saved: Mapping[str, Any] | None) -> int:
        """Apply the journal's records newer than the snapshot ``saved`` (or onto the fresh market
        when there is none); returns how many there were."""
        if self._journal is None:
            return 0
        records = self._journal.recover(int(saved.get("journal_seq", 0)) if saved is not None else 0)
        try:
            for record in records:
                value = record.value
                self._ids.counter = max(self._ids.counter, int(value["ids"]))
                self._feed.load_state(value["feed"])
                for name, change in value["accounts"].items():
                    apply_account_change(self._accounts, name, change)
                self.saved_at = record.ts
        except (KeyError, TypeError, ValueError, InvalidOperation, AttributeError) as exc:
            self._accounts.clear()
            raise SimStateError(
                self._journal.path, f"corrupt simulated exchange journal: {type(exc).__name__}: {exc}"
            ) from exc
        if records:
            log.info(
                "simulated exchange replayed %d journal record(s) from %s (up to %s)",
                len(records),
                self._journal.path,
                self.saved_at,
            )
        return len(records)


__all__ = ["STATE_FILE", "SimExchange", "SimStateError"]
