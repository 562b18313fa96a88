"""The soak's invariants, checked against the state directory and the exchange's own records.

Each check returns the violations it found, one line each (empty: it held):

- :func:`lost_acks`: every critical save the engine acknowledged before a kill is in the state a
  recovery reads (0 lost);
- :func:`unclean_store`: the store's files load with no quarantine, no dropped or missing record;
- :func:`duplicate_link_ids`: no orderLinkId of ours was placed twice (every id is unique per slot
  and generation, so one seen twice in the exchange's order history is a double placement);
- :func:`orphan_orders`: no open order of ours belongs to no live monitor;
- :func:`mirror_disagreements`: each open mirrored trade holds main's size x its ratio (one qty step);
- :func:`ledger_mismatches`: the ledger has every trade the exchange's fills show closed (grouped by
  the monitor id in their link ids: a trade whose position went flat and filled again while its
  entries could not be cancelled is one trade, as the engine books it), with the exchange's realised
  PnL (fees and funding included) and a real (not estimated) exit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.core.link_ids import parse_link_id
from engine.core.models import Execution, Phase, Side, Trade
from engine.core.state_keys import MANAGER_KEY, MIRROR_KEY, MONITOR_PREFIX
from engine.mirror.drift import DriftKind, Leg, find_drift
from engine.mirror.follower import MirrorLink
from engine.trading.ledger import Ledger
from persistence.recovery import RecoveryReport, read_state

from .process import Ack

if TYPE_CHECKING:
    from engine.sim.exchange import SimExchange

PNL_TOLERANCE = 1e-4
"""USDT: a trade's PnL may differ from the exchange's by rounding, never by more."""
AGREEMENT_KINDS = frozenset({DriftKind.EXCESS, DriftKind.DEFICIT, DriftKind.ORPHAN})


@dataclass(frozen=True, slots=True)
class StateView:
    """A state directory as a recovery reads it (read-only; the engine may be running)."""

    state: Mapping[str, Any]
    report: RecoveryReport

    @classmethod
    def read(cls, state_dir: Path) -> StateView:
        """Read ``state_dir`` without the lock and without changing it."""
        state, report = read_state(state_dir)
        return cls(state, report)

    @property
    def tag(self) -> str:
        """The engine instance's tag (every link id of its orders carries it)."""
        return str((self.state.get(MANAGER_KEY) or {}).get("instance_tag", ""))

    def live_monitor_ids(self) -> set[str]:
        """The monitors that still manage a position or orders."""
        return {
            str(value["monitor_id"])
            for key, value in self.state.items()
            if key.startswith(MONITOR_PREFIX) and value.get("phase") != Phase.CLOSED.value
        }

    def mirror_links(self) -> list[MirrorLink]:
        """The mirror follower's links (main trade -> mirror trade)."""
        links = (self.state.get(MIRROR_KEY) or {}).get("links") or {}
        return [MirrorLink.from_dict(v) for v in links.values()]


def lost_acks(acks: Iterable[Ack], view: StateView) -> list[str]:
    """Acknowledged critical saves a recovery of the state does not hold."""
    report = view.report
    lost = []
    for ack in acks:
        missing = ack.seq > report.last_seq or any(lo <= ack.seq <= hi for lo, hi in report.missing_seqs)
        if missing:
            lost.append(f"critical save seq {ack.seq} ({ack.reason}, {ack.key}) acknowledged, not recovered")
    return lost


def unclean_store(view: StateView) -> list[str]:
    """What a recovery of the state had to repair or set aside (a torn tail is normal after a kill)."""
    report = view.report
    problems = []
    if report.quarantine_dir is not None:
        problems.append(f"state quarantined to {report.quarantine_dir}: {report.message}")
    if report.critical:
        problems.append(f"state recovery was critical: {report.message}")
    if report.dropped_records:
        problems.append(f"{report.dropped_records} journal record(s) dropped: {report.message}")
    return problems


def duplicate_link_ids(exchange: SimExchange, accounts: Sequence[str]) -> list[str]:
    """Link ids of ours that more than one of the exchange's orders (open or finished) carries."""
    problems = []
    for account in accounts:
        placed = {o.order_id: o for o in [*exchange.order_history(account), *exchange.open_orders(account)]}
        counts = Counter(o.link_id for o in placed.values() if parse_link_id(o.link_id) is not None)
        problems += [f"{account}: {link} placed {n} times" for link, n in sorted(counts.items()) if n > 1]
    return problems


def orphan_orders(exchange: SimExchange, accounts: Sequence[str], view: StateView) -> list[str]:
    """Open orders of this engine (its tag) that belong to no live monitor."""
    tag, live = view.tag, view.live_monitor_ids()
    problems = []
    for account in accounts:
        for order in exchange.open_orders(account):
            link = parse_link_id(order.link_id)
            if link is not None and link.tag == tag and link.monitor_id not in live:
                problems.append(f"{account}: orphan order {order.link_id} on {order.symbol}")
    return problems


def mirror_disagreements(exchange: SimExchange, view: StateView) -> list[str]:
    """Open mirrored trades whose mirror does not hold main's size x the trade's ratio."""
    problems = []
    for link in view.mirror_links():
        ratio = link.reference_ratio
        if not link.state.checked or ratio is None:
            continue
        side = Side(link.side)
        main = _size(exchange.positions("main", link.symbol), side)
        mirror = _size(exchange.positions("mirror", link.symbol), side)
        instrument = exchange.instruments[link.symbol]
        found = find_drift(Leg(main) if main > 0 else None, Leg(mirror, stop_qty=mirror), ratio, instrument)
        problems += [f"{link.symbol}: {d.kind.value}: {d.detail}" for d in found if d.kind in AGREEMENT_KINDS]
    return problems


def _size(positions: Sequence[Any], side: Side) -> float:
    return sum(p.size for p in positions if p.is_open and p.side is side)


@dataclass(slots=True)
class ExchangeTrade:
    """One trade as the exchange's fills tell it: the fills of one monitor's orders (their link ids
    carry its id), with the funding its position paid meanwhile."""

    account: str
    symbol: str
    monitor_id: str
    net_qty: float = 0.0
    cash: float = 0.0
    fees: float = 0.0
    closed_at: float = 0.0

    @property
    def flat(self) -> bool:
        """Bought and sold the same quantity: the trade is over on the exchange."""
        return abs(self.net_qty) < 1e-9

    @property
    def pnl(self) -> float:
        """Realised PnL net of fees and funding."""
        return self.cash - self.fees


def exchange_trades(account: str, executions: Sequence[Execution]) -> list[ExchangeTrade]:
    """The trades in ``executions`` (one account), grouped by the monitor id in their link ids.

    A fill with no link id of ours (none in a soak but the other engine's, which is left out by
    symbol) and a funding payment go to the trade open on their symbol at the time.
    """
    trades: dict[str, ExchangeTrade] = {}
    open_on: dict[str, ExchangeTrade] = {}
    for e in sorted(executions, key=lambda e: e.ts):
        link = parse_link_id(e.link_id)
        if link is not None:
            trade = trades.setdefault(link.monitor_id, ExchangeTrade(account, e.symbol, link.monitor_id))
        elif e.symbol in open_on:
            trade = open_on[e.symbol]
        else:
            trade = trades.setdefault(f"unlinked:{e.exec_id}", ExchangeTrade(account, e.symbol, ""))
        if e.is_funding:
            trade.fees += e.fee  # what the position paid (negative when received)
            continue
        if not e.is_position_fill:
            continue
        trade.net_qty += e.qty * e.side.sign
        trade.cash -= e.qty * e.price * e.side.sign
        trade.fees += e.fee
        trade.closed_at = e.ts
        if trade.flat:
            open_on.pop(e.symbol, None)
        else:
            open_on[e.symbol] = trade
    return list(trades.values())


def ledger_mismatches(
    exchange: SimExchange, accounts: Sequence[str], view: StateView, since: float, symbols: Iterable[str]
) -> list[str]:
    """Trades on ``symbols`` (this engine's) that the exchange's fills show closed and the ledger
    lacks or books with another PnL, or with an estimated exit; and ledger trades the fills lack."""
    wanted = set(symbols)
    booked: dict[tuple[str, str], Trade] = {}
    for trade in Ledger.from_state(view.state).trades:
        if trade.symbol in wanted:
            booked[(trade.account, trade.monitor_id)] = trade
    problems = []
    seen: set[tuple[str, str]] = set()
    for account in accounts:
        executions = [e for e in exchange.executions(account, since) if e.symbol in wanted]
        theirs_all = exchange_trades(account, executions)
        problems += _unbooked_symbol_pnl(account, theirs_all, booked, exchange)
        for theirs in theirs_all:
            key = (account, theirs.monitor_id)
            seen.add(key)
            if not theirs.flat:
                continue  # still open on the exchange (or its rest is another trade's: see above)
            ours = booked.get(key)
            where = f"{account} {theirs.symbol} trade {theirs.monitor_id or '(no link id)'}"
            if ours is None:
                problems.append(f"{where}: closed on the exchange, not in the ledger")
            elif ours.exit_estimated:
                problems.append(f"{where}: the ledger's exit is an estimate")
            elif abs(ours.pnl - theirs.pnl) > PNL_TOLERANCE:
                problems.append(f"{where}: ledger PnL {ours.pnl:.6f}, exchange {theirs.pnl:.6f}")
    problems += [
        f"{account} {trade.symbol} trade {monitor_id}: in the ledger, no fill of it on the exchange"
        for (account, monitor_id), trade in booked.items()
        if (account, monitor_id) not in seen and account in accounts
    ]
    return problems


def _unbooked_symbol_pnl(
    account: str,
    theirs: Sequence[ExchangeTrade],
    booked: Mapping[tuple[str, str], Trade],
    exchange: SimExchange,
) -> list[str]:
    """A symbol flat on the exchange has realised all its PnL: the ledger's trades on it must add up
    to the same. This catches fills no trade booked (a closed trade's late entry, closed under an
    adopted monitor), which leave the two monitors' fill groups unbalanced, so neither is compared."""
    problems = []
    for symbol in sorted({t.symbol for t in theirs}):
        if any(p.is_open for p in exchange.positions(account, symbol)):
            continue
        realised = sum(t.pnl for t in theirs if t.symbol == symbol)
        ledger = sum(t.pnl for (a, _id), t in booked.items() if a == account and t.symbol == symbol)
        if abs(realised - ledger) > PNL_TOLERANCE:
            problems.append(
                f"{account} {symbol}: flat on the exchange with {realised:.6f} realised, "
                f"the ledger's trades add up to {ledger:.6f}"
            )
    return problems
