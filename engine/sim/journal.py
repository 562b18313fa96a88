"""The simulated exchange's journal: whatever the exchange acknowledges is on disk first.

The market lives in two files of the state directory, as the engine's own state does
(:mod:`persistence`): the snapshot ``sim-exchange.json`` (:mod:`engine.sim.state`), rewritten every
``sim.save_interval_s`` and on exit, and this journal, ``sim-exchange.journal.jsonl``, appended and
fsync'd *before* the exchange acknowledges a change: before an order action returns its reply, and
before a fill, trigger or cancel is pushed to the account's stream. A restart replays the records
newer than the snapshot, so it finds the accounts exactly as the engine last saw them, even after a
``kill -9``; without it the market rolled back up to a save interval behind the engine's journal, and
the restarted engine booked phantom trades.

Cheap by construction: a record holds only what changed. Per changed account: its balance and
leverage, the positions and open orders that differ from what the journal last wrote, and the new
tail of its executions and finished orders; plus the id counter and the prices of the symbols the
change touches (:func:`touched_symbols`: a few numbers, however many symbols the market lists; a
symbol's last journaled price was current when its last change was made, so its orders and positions
agree with it after a replay). One record (one write, one fsync) per acknowledged request and per
price tick that changed an account; ticks that change no account write nothing, and the random
generators' states (the bulky part) wait for the next snapshot. The write is synchronous, like the
snapshot's: the record and the acknowledgement are one step, and a virtual clock cannot run ahead of
a write it cannot see.

The line format is the store's (:mod:`persistence.codec`: seq, ts, reason, CRC) and so is the torn-tail
rule (:func:`persistence.recovery.scan_journal`): a half-written last line was never acknowledged and
is dropped; damage before the last line is an error (:class:`SimStateError`), never a silently older
market. A record is one change set (key :data:`RECORD_KEY`), not a line per key, so a torn write can
never leave half of an action applied.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from engine.core.files import PRIVATE_MODE, temp_path
from engine.core.models import Execution
from engine.sim.account import PositionState, SimAccount, execution_from_state, execution_to_state
from engine.sim.orders import WorkingOrder
from engine.sim.state import IN_THE_WAY, SimStateError, read_state, values_problem
from persistence.codec import JournalRecord, Op, encode_record
from persistence.durable import append_durably_sync, fsync_dir_sync
from persistence.recovery import scan_journal

log = logging.getLogger("opconsole.sim")

JOURNAL_SUFFIX = ".journal.jsonl"
"""The journal sits beside the snapshot: ``sim-exchange.json`` -> ``sim-exchange.journal.jsonl``."""
RECORD_KEY = "exchange"
"""The key of every record: its value is one change set of the whole exchange."""

T = TypeVar("T")


def journal_path(state_path: Path) -> Path:
    """The journal of the snapshot at ``state_path``."""
    return state_path.with_name(state_path.stem + JOURNAL_SUFFIX)


# --- change sets (pure) ----------------------------------------------------------------------


OrderImage = tuple[Any, ...]
"""An order as the journal last wrote it: the values of its record, in the record's key order."""


@dataclass(slots=True)
class AccountImage:
    """What the journal last wrote of one account: the parts the next record is diffed against."""

    balance: str = ""
    leverage: dict[str, str] = field(default_factory=dict)
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, OrderImage]] = field(default_factory=dict)
    """Open orders by symbol, then by order id (:func:`order_image`)."""
    last_execution: Execution | None = None
    last_finished: WorkingOrder | None = None


def order_image(raw: Mapping[str, Any]) -> OrderImage:
    """The image of an order record (:meth:`~engine.sim.orders.WorkingOrder.to_state`): only compared
    for equality, so the values alone: a tuple is under half the record's dict (260 bytes less an
    order), and the images hold every open order of the market (14,000 at a thousand positions)."""
    return tuple(raw.values())


def image_of(account: SimAccount) -> AccountImage:
    """The account as a record would write it (histories by their last item)."""
    orders: dict[str, dict[str, OrderImage]] = {}
    for order in account.orders.values():
        orders.setdefault(order.symbol, {})[order.order_id] = order_image(order.to_state())
    return AccountImage(
        balance=str(account.balance),
        leverage={s: str(v) for s, v in account.leverage.items()},
        positions={s: p.to_state() for s, p in account.positions.items()},
        orders=orders,
        last_execution=account.executions[-1] if account.executions else None,
        last_finished=account.finished[-1] if account.finished else None,
    )


def _appended(items: deque[T], last: T | None) -> list[T]:
    """The items of a bounded history appended after ``last`` (all, when ``last`` is None or gone)."""
    if last is None:
        return list(items)
    newer: list[T] = []
    for item in reversed(items):
        if item is last:
            newer.reverse()
            return newer
        newer.append(item)
    return list(items)


def account_change(
    account: SimAccount, before: AccountImage, symbols: Iterable[str] | None = None
) -> tuple[dict[str, Any], AccountImage]:
    """What changed in ``account`` since ``before`` (an empty dict when nothing did), and its image
    now. Against an empty :class:`AccountImage` the change is the whole account.

    ``symbols`` limits the diff to those symbols' leverage, positions and orders (the account's
    :attr:`~engine.sim.account.SimAccount.dirty` set: every change to a symbol marks it), so a record
    costs what the action touched, not what the account holds; None diffs every symbol.
    """
    if symbols is None:
        scope: set[str] = {*account.leverage, *account.positions, *before.leverage, *before.positions}
        scope |= {o.symbol for o in account.orders.values()} | set(before.orders)
    else:
        scope = set(symbols)
    now = AccountImage(
        balance=str(account.balance),
        leverage=dict(before.leverage),
        positions=dict(before.positions),
        orders=dict(before.orders),
        last_execution=account.executions[-1] if account.executions else None,
        last_finished=account.finished[-1] if account.finished else None,
    )
    change: dict[str, Any] = {}
    if now.balance != before.balance:
        change["balance"] = now.balance
    leverage: dict[str, str] = {}
    positions: dict[str, dict[str, Any]] = {}
    changed: list[tuple[int, str, dict[str, Any]]] = []
    closed: list[str] = []
    for symbol in sorted(scope):
        value = account.leverage.get(symbol)
        if value is not None and before.leverage.get(symbol) != str(value):
            leverage[symbol] = now.leverage[symbol] = str(value)
        state = account.positions.get(symbol)
        if state is not None:
            raw = state.to_state()
            if before.positions.get(symbol) != raw:
                positions[symbol] = now.positions[symbol] = raw
        was = before.orders.get(symbol, {})
        current = {o.order_id: o.to_state() for o in account.open_orders(symbol)}
        images = {i: order_image(raw) for i, raw in current.items()}
        if images:
            now.orders[symbol] = images
        else:
            now.orders.pop(symbol, None)
        changed += [(account.order_rank(i), i, current[i]) for i, o in images.items() if was.get(i) != o]
        closed += [i for i in was if i not in current]
    if leverage:
        change["leverage"] = leverage
    if positions:
        change["positions"] = positions
    # New orders come in creation order (the order they are matched in); changed ones keep their place.
    if changed:
        change["orders"] = {i: o for _rank, i, o in sorted(changed, key=lambda c: c[0])}
    if closed:
        change["closed"] = closed
    finished = _appended(account.finished, before.last_finished)
    if finished:
        change["finished"] = [o.to_state() for o in finished]
    executions = _appended(account.executions, before.last_execution)
    if executions:
        change["executions"] = [execution_to_state(e) for e in executions]
    return change, now


def touched_symbols(change: Mapping[str, Any], before: AccountImage) -> set[str]:
    """The symbols an :func:`account_change` set touches: its positions, changed leverage, new,
    changed and closed orders, finished orders and executions."""
    symbols = set(change.get("positions", {}))
    symbols.update(s for s, v in change.get("leverage", {}).items() if before.leverage.get(s) != v)
    symbols.update(raw["symbol"] for raw in change.get("orders", {}).values())
    closed = set(change.get("closed", []))
    symbols.update(s for s, orders in before.orders.items() if not closed.isdisjoint(orders))
    for key in ("finished", "executions"):
        symbols.update(raw["symbol"] for raw in change.get(key, []))
    return symbols


def apply_account_change(accounts: dict[str, SimAccount], name: str, change: Mapping[str, Any]) -> None:
    """Replay one account's change onto ``accounts`` (opening the account when it is new)."""
    account = accounts.get(name)
    if account is None:
        account = accounts[name] = SimAccount(name=name, balance=Decimal(change["balance"]))
    if "balance" in change:
        account.balance = Decimal(change["balance"])
    # A record holds the leverage of the symbols it touched (older records: every symbol's).
    for symbol, value in change.get("leverage", {}).items():
        account.set_leverage(symbol, Decimal(value))
    for symbol, raw in change.get("positions", {}).items():
        account.positions[symbol] = PositionState.from_state(raw)
        account.touch(symbol)
    for order_id in change.get("closed", []):
        account.drop_order(order_id)
    for raw in change.get("orders", {}).values():
        account.put_order(WorkingOrder.from_state(raw))
    account.finished.extend(WorkingOrder.from_state(raw) for raw in change.get("finished", []))
    account.executions.extend(execution_from_state(raw) for raw in change.get("executions", []))


# --- the file --------------------------------------------------------------------------------


class SimJournal:
    """The append-only journal file; :attr:`seq` is the last record's sequence number."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seq = 0

    def recover(self, after_seq: int) -> list[JournalRecord]:
        """The records newer than the snapshot's ``after_seq``, oldest first.

        A torn last line (a write a crash interrupted, never acknowledged) is cut off the file;
        damage before it raises :class:`SimStateError` and leaves the file as it is.
        """
        self.seq = after_seq
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except IsADirectoryError:
            raise SimStateError(self.path, IN_THE_WAY) from None
        except OSError as exc:
            raise SimStateError(
                self.path, f"cannot read the simulated exchange's journal: {exc.strerror}"
            ) from exc
        scan = scan_journal(data)
        _check_records(self.path, scan.records)
        if scan.damaged:
            if not scan.torn_tail_only:
                raise SimStateError(
                    self.path,
                    f"corrupt simulated exchange journal ({scan.problem}; {scan.dropped_lines} lines "
                    "after it); move the file away to continue from the last snapshot",
                )
            log.warning(
                "simulated exchange journal %s: dropped a torn last record (%d bytes: %s); it was never "
                "acknowledged",
                self.path,
                scan.total_bytes - scan.valid_bytes,
                scan.problem,
            )
            _truncate(self.path, scan.valid_bytes)
        if scan.records:
            self.seq = max(after_seq, scan.records[-1].seq)
        return [r for r in scan.records if r.seq > after_seq]

    def append(self, ts: float, reason: str, value: Any) -> None:
        """Append one record and return once it is on disk (write + fsync). On an OSError the file is
        cut back to where it was, so a failed write never leaves a torn line under later records."""
        record = JournalRecord(self.seq + 1, ts, reason, RECORD_KEY, Op.SET, value)
        data = encode_record(record)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
        try:
            start = os.fstat(fd).st_size
            try:
                append_durably_sync(fd, data)
            except OSError:
                os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)
        if created:
            fsync_dir_sync(self.path.parent)
        self.seq = record.seq

    def reset(self) -> None:
        """Empty the file once a snapshot holds every record (the sequence keeps counting)."""
        if self.path.exists():
            _truncate(self.path, 0)


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)
        handle.flush()
        os.fsync(handle.fileno())


def last_record_time(path: Path) -> float | None:
    """The time of the journal's last intact record (None without one)."""
    try:
        records = scan_journal(path.read_bytes()).records
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise SimStateError(path, IN_THE_WAY) from None
    except OSError as exc:
        raise SimStateError(path, f"cannot read the simulated exchange's journal: {exc.strerror}") from exc
    _check_records(path, records)
    return records[-1].ts if records else None


def check_state_files(state_path: Path) -> None:
    """Read and check the saved market and its journal without changing anything (the engine does
    it before it opens its own state, so a refusal leaves the whole directory as it was): raises
    :class:`SimStateError` for a file that cannot be used, a directory in the way of one included."""
    for path in (state_path, journal_path(state_path), temp_path(state_path)):
        if path.is_dir():
            raise SimStateError(path, IN_THE_WAY)
    if state_path.exists():
        read_state(state_path)
    last_record_time(journal_path(state_path))


def change_set_problem(value: Any) -> str | None:
    """What is wrong with the shape of one record's change set, or None (pure): a checksum only
    proves the line was written whole, not that what was written can be replayed."""
    if not isinstance(value, dict):
        return "the change set is not an object"
    if not isinstance(value.get("ids"), int) or isinstance(value.get("ids"), bool):
        return "ids is not an integer"
    if not isinstance(value.get("feed"), dict) or not all(
        isinstance(v, dict) for v in value["feed"].values()
    ):
        return "feed is not an object of objects"
    accounts = value.get("accounts")
    if not isinstance(accounts, dict) or not all(isinstance(v, dict) for v in accounts.values()):
        return "accounts is not an object of objects"
    for change in accounts.values():
        for key, kind in (("positions", dict), ("orders", dict), ("leverage", dict), ("closed", list),
                          ("finished", list), ("executions", list)):  # fmt: skip
            if key in change and not isinstance(change[key], kind):
                return f"{key} is not {'an object' if kind is dict else 'a list'}"
    return values_problem(value)


def _check_records(path: Path, records: list[JournalRecord]) -> None:
    """Refuse (:class:`SimStateError`) a record whose time or change set is absurd."""
    for record in records:
        problem = values_problem(record.ts, "ts") or change_set_problem(record.value)
        if problem:
            raise SimStateError(path, f"corrupt simulated exchange journal: record {record.seq}: {problem}")
