"""The state store: one writer task owns the state directory, callers await acknowledgements.

Callers ``save(key, value, reason=...)`` and ``delete(key, reason=...)``; the store keeps the live state
in memory, and when the save policy says a change must be durable (a critical reason, ``force=True``,
or every save under the simple policy) it queues a commit for the writer task and awaits its ack. A
commit takes every pending change with it (group commit), so a critical save also makes the
non-critical changes made before it durable. Non-critical changes wait, coalesced per key, for the
flush timer, which sleeps on the injected time source. The journal is compacted into a new snapshot
past a size or record bound.

When the disk cannot be written (full, read-only, an I/O error) the store does not halt and drops
nothing: the changes it could not write stay in memory, in the order they were made (``_disk`` and
``_seq`` already hold them), every later change is kept too, and the store retries on its time source
with a backoff (:data:`RETRY_FIRST_S` doubling to :data:`RETRY_MAX_S`). The first write that succeeds
again is a whole snapshot (a failed append may have left a torn record in the journal, which is then
moved aside), so the unwritten changes reach the disk first and in order. While the disk is out,
invariant 3 (a critical change is durable before the caller acts on the next event) cannot hold: a
critical save keeps the change and raises :class:`StoreFailed` ("not durable"), and the caller decides
what to do without durability (the TP/SL manager keeps protecting open positions and refuses new
entries). Health listeners (:meth:`Store.add_health_listener`) hear the failure and the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiofiles.os

from persistence.codec import JournalRecord, Op, canonical, encode_record, snapshot_parts
from persistence.durable import IoCost, JournalAppender, rotate_journal, write_snapshot
from persistence.errors import StoreFailed, StoreNotStarted
from persistence.layout import StateFiles, check_writable, create_root, tighten_root
from persistence.lock import StateLock
from persistence.metrics import StoreMetrics
from persistence.policy import SavePolicy, policy_named
from persistence.reasons import Reason
from persistence.recovery import RecoveryReport, carry_out, plan_recovery
from persistence.timesource import TimeSource

logger = logging.getLogger("opconsole.persistence")

MARK_KEY = ""  # the key of lifecycle markers (startup, shutdown): they change no state
RETRY_FIRST_S = 1.0
"""The first retry after a failed write, on the store's time source; each failed retry doubles it."""
RETRY_MAX_S = 60.0
"""The longest wait between two retries of a disk that cannot be written."""
SNAPSHOT_PARTS_PER_TURN = 64
"""State keys encoded between two turns of the loop when the whole snapshot is written (a compaction,
or every commit under the simple policy): 64 monitors are a few milliseconds of encoding."""

HealthListener = Callable[[BaseException | None], None]
DurableListener = Callable[[int, str, str], None]
"""Called with (journal seq, key, reason) once a critical save is on disk."""
"""Called with the write error when the disk stops taking writes, and with None once it takes them again."""


@dataclass(slots=True)
class _Change:
    """A change waiting for the writer; ``since`` is when its key first had an unwritten change."""

    key: str
    op: Op
    value: Any
    reason: str
    since: float
    seq: int | None = None  # set when written


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one commit wrote (the console shows it after a manual flush)."""

    records: int
    bytes: int
    full_write: bool
    seq: int


@dataclass(frozen=True, slots=True)
class Write:
    """One change for :meth:`Store.write`: set ``key`` to ``value``, or remove it (``remove``)."""

    key: str
    reason: Reason
    value: Any = None
    remove: bool = False
    force: bool = False


class _Kind(Enum):
    COMMIT = "commit"
    COMPACT = "compact"
    SET_POLICY = "set_policy"
    BARRIER = "barrier"
    STOP = "stop"


@dataclass(slots=True)
class _Command:
    kind: _Kind
    future: asyncio.Future[Any]
    policy: SavePolicy | None = None
    cause: str = "flush"  # what a commit's write is counted under (StoreMetrics.writes_by_reason)


class Store:
    """Crash-safe key -> JSON value store over ``snapshot.json`` + ``journal.jsonl`` in ``state_dir``.

    Life cycle: ``load()`` (takes the lock, recovers), ``await start()``, saves, ``await close()``.
    ``trace``, when given, is called synchronously with the name of each durable step completed
    (``snapshot:tmp_synced``, ``compaction:start`` …); the crash test uses it to kill at chosen points.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        clock: TimeSource,
        flush_interval_s: float = 30.0,
        compact_max_bytes: int = 4 * 1024 * 1024,
        compact_max_records: int = 20000,
        policy: str = "smart",
        trace: Callable[[str], None] | None = None,
        flush_timer: bool = True,
    ) -> None:
        if flush_interval_s <= 0 or compact_max_bytes <= 0 or compact_max_records <= 0:
            raise ValueError("flush_interval_s and the compaction bounds must be positive")
        self._files = StateFiles(Path(state_dir))
        self._clock = clock
        self._flush_interval_s = float(flush_interval_s)
        self._max_bytes = compact_max_bytes
        self._max_records = compact_max_records
        self._policy = policy_named(policy)
        self._trace = trace
        self._own_timer = flush_timer
        self._lock = StateLock(self._files.lock)
        self._appender = JournalAppender(self._files.journal)
        self._state: dict[str, Any] = {}
        self._disk: dict[str, Any] = {}  # the state as of self._seq, what a snapshot may contain
        self._pending: dict[str, _Change] = {}
        self._marks: list[_Change] = []
        self._seq = 0
        self._journal_bytes = 0
        self._journal_records = 0
        self._report: RecoveryReport | None = None
        self._metrics = StoreMetrics(started=clock.now())
        self._queue: asyncio.Queue[_Command] | None = None
        self._pending_signal: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None  # the last write error, while writes keep failing
        self._failed_since: float | None = None
        self._needs_full = False  # a write failed: the next one is a whole snapshot (see the module doc)
        self._retry: asyncio.Task[None] | None = None
        self._listeners: list[HealthListener] = []
        self._durable_listeners: list[DurableListener] = []
        self._closed = False

    # ----------------------------------------------------------------- read side

    @property
    def state(self) -> Mapping[str, Any]:
        """The recovered + live values, read-only (do not mutate the values either)."""
        return MappingProxyType(self._state)

    @property
    def policy_name(self) -> str:
        return self._policy.name

    @property
    def recovery(self) -> RecoveryReport | None:
        """The report of :meth:`load`, or None before it ran."""
        return self._report

    @property
    def state_dir(self) -> Path:
        return self._files.root

    @property
    def failed(self) -> bool:
        """True while the disk cannot be written: changes are kept in memory and the write retried."""
        return self._failed is not None

    def add_health_listener(self, listener: HealthListener) -> None:
        """Call ``listener(error)`` when writes start failing and ``listener(None)`` when they work again."""
        self._listeners.append(listener)

    def add_durable_listener(self, listener: DurableListener) -> None:
        """Call ``listener(seq, key, reason)`` each time a save that had to be durable returns: the
        acknowledgement a caller may act on (the soak checks each one survives a kill -9)."""
        self._durable_listeners.append(listener)

    def metrics(self) -> dict[str, Any]:
        """Counters for the console and the benchmark (times on the store's time source)."""
        now = self._clock.now()
        oldest = self._oldest_pending_since()
        data = self._metrics.as_dict(now)
        data.update(
            policy=self._policy.name,
            pending=len(self._pending),
            oldest_pending_age_s=None if oldest is None else now - oldest,
            seq=self._seq,
            journal_bytes=self._journal_bytes,
            journal_records=self._journal_records,
            flush_interval_s=self._flush_interval_s,
            failed=None if self._failed is None else repr(self._failed),
            failed_since=self._failed_since,
            recovery=None if self._report is None else self._report.as_dict(),
        )
        return data

    # ----------------------------------------------------------------- life cycle

    def load(self) -> RecoveryReport:
        """Take the directory's lock and recover the state; raises ``StateLocked`` if it is in use,
        ``StateUnusable`` / ``UnsupportedSnapshot`` when the directory cannot be used as it is."""
        if self._report is not None:
            raise RuntimeError("Store.load() already ran")
        create_root(self._files)
        self._lock.acquire()
        try:
            check_writable(self._files)
            plan = plan_recovery(self._files)  # reads only: a refusal has changed nothing
            tighten_root(self._files)
            report = carry_out(plan, self._files, self._clock.now())
        except BaseException:
            self._lock.release()
            raise
        self._state = plan.state
        self._disk = dict(plan.state)
        self._seq = plan.last_seq
        self._journal_bytes = plan.journal_bytes
        self._journal_records = plan.journal_records
        self._report = report
        if report.critical:
            logger.critical("persistence recovery in %s: %s", self._files.root, report.message)
        elif report.notes:
            logger.warning("persistence recovery in %s: %s", self._files.root, report.message)
        else:
            logger.info("persistence recovery in %s: %s", self._files.root, report.message)
        return report

    async def start(self) -> None:
        """Start the writer task and the flush timer, then write the STARTUP record."""
        if self._report is None:
            raise RuntimeError("Store.load() must run before start()")
        if self._writer is not None or self._closed:
            raise RuntimeError("Store.start() may run once")
        self._queue = asyncio.Queue()
        self._pending_signal = asyncio.Event()
        self._writer = asyncio.create_task(self._run_writer(), name="persistence-writer")
        if self._own_timer:  # else the owner's scheduler calls flush_pending()
            self._timer = asyncio.create_task(self._run_flush_timer(), name="persistence-flush-timer")
        if self._report.needs_snapshot:
            await self._submit(_Kind.COMPACT)
        await self._mark(Reason.STARTUP)

    async def close(self) -> None:
        """Flush, write the SHUTDOWN record, stop the writer and release the lock (idempotent)."""
        if self._closed:
            return
        try:
            if self._writer is not None:
                # While the disk is out this is the last attempt to write what is kept in memory.
                with contextlib.suppress(StoreFailed):  # already logged by the writer
                    await self._mark(Reason.SHUTDOWN)
                if self._failed is not None:
                    logger.critical(
                        "persistence in %s closes with changes it could not write (%s)",
                        self._files.root,
                        self._failed,
                    )
            for task in (self._timer, self._retry):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self._writer is not None:
                await self._submit(_Kind.STOP)
                await self._writer
            await self._appender.close()
        finally:
            self._closed = True
            self._lock.release()

    # ----------------------------------------------------------------- write side

    async def save(self, key: str, value: Any, *, reason: Reason, force: bool = False) -> int | None:
        """Set ``key`` to ``value`` (JSON-serialisable; copied, so later mutation does not leak in).

        Returns once the change is as durable as the policy requires: for a critical reason (or
        ``force``) it is on disk and the journal seq that holds it is returned; a non-critical save
        under the smart policy returns None at once and is written by the next flush. When the disk
        cannot be written, a save that had to be durable raises :class:`StoreFailed`; the change is
        kept all the same and written, in order, when the disk takes writes again.
        """
        return await self.write([Write(key, reason, value, force=force)])

    async def delete(self, key: str, *, reason: Reason, force: bool = False) -> int | None:
        """Remove ``key``; durability as for :meth:`save`."""
        return await self.write([Write(key, reason, remove=True, force=force)])

    async def write(self, writes: Sequence[Write]) -> int | None:
        """Several saves and deletes made at once, as :meth:`save` and :meth:`delete` each: all of
        them are taken before any is awaited, so those that must be durable reach the disk in one
        commit (one write, one fsync). Made one by one, a decision's saves of a dozen fills were
        each a task and a trip to the writer, and those that came after the first commit had
        started waited for a second fsync. Every value written is checked before anything changes.

        Under the simple policy every change is still its own commit, as that many saves were: the
        original's writes are what that policy reproduces. Returns the journal seq of the last
        change that had to be durable (None when none had to be)."""
        for w in writes:
            self._check_writable(w.key)
        if not self._policy.commit_every_save:
            # a key written twice in one call (a ledger chunk, at each trade a round closes) has only
            # its last value copied and written, as the pending changes keep one per key; durable
            # at once if any of its writes had to be
            last = {w.key: w for w in writes}
            for w in writes:
                if last[w.key] is not w:
                    self._metrics.count_save(Reason(w.reason).value)
            urgent = {w.key for w in writes if w.force or Reason(w.reason).critical}
            writes = [replace(w, force=True) if w.key in urgent else w for w in last.values()]
        # every value checked (NaN and non-JSON values refused) and copied before anything changes
        made = [(w, Reason(w.reason), None if w.remove else json.loads(canonical(w.value))) for w in writes]
        if self._policy.commit_every_save:
            seq = None
            for w, reason, copy in made:
                seq = await self._record(w, reason, copy)
            return seq
        durable = [self._stage(w, reason, copy) for w, reason, copy in made]
        if any(durable):
            return await self._commit_staged([c for c, must in zip(made, durable, strict=True) if must])
        return None

    def _stage(self, write: Write, reason: Reason, copy: Any) -> bool:
        """Apply one change to the live state and the pending changes; whether it must be durable now."""
        if write.remove:
            self._state.pop(write.key, None)
        else:
            self._state[write.key] = copy
        now = self._clock.now()
        self._metrics.count_save(reason.value)
        earlier = self._pending.get(write.key)
        since = earlier.since if earlier else now
        op = Op.DELETE if write.remove else Op.SET
        self._pending[write.key] = _Change(write.key, op, copy, reason.value, since=since)
        critical = write.force or reason.critical
        if not self._policy.commits_now(critical):
            self._signal().set()
            return False
        return True

    async def _record(self, write: Write, reason: Reason, copy: Any) -> int | None:
        if not self._stage(write, reason, copy):
            return None
        return await self._commit_staged([(write, reason, copy)])

    async def _commit_staged(self, durable: Sequence[tuple[Write, Reason, Any]]) -> int:
        """Commit the pending changes, ``durable`` among them; tell the durable listeners."""
        if self._failed is not None:  # kept in ``_pending``; the retry writes it (no disk hammering)
            raise self._not_durable()
        changes = [self._pending[w.key] for w, _reason, _copy in durable]
        started = self._clock.now()
        await self._submit(_Kind.COMMIT, cause=durable[0][1].value)
        if any(w.force or reason.critical for w, reason, _copy in durable):
            delay = self._clock.now() - started
            self._metrics.max_critical_delay_s = max(self._metrics.max_critical_delay_s, delay)
        seqs = [self._seq if change.seq is None else change.seq for change in changes]
        for seq, (w, reason, _copy) in zip(seqs, durable, strict=True):
            for listener in self._durable_listeners:
                listener(seq, w.key, reason.value)
        return seqs[-1]

    async def flush(self) -> FlushResult:
        """Write every pending change now (one append + one fsync, or one snapshot under simple).

        While the disk is out this is an immediate retry; it raises :class:`StoreFailed` if it fails.
        """
        self._check_writable()
        result: FlushResult = await self._submit(_Kind.COMMIT)
        return result

    async def flush_pending(self) -> bool:
        """Write the coalesced changes if there are any (a scheduler's periodic job, in place of the
        store's own flush timer: ``flush_timer=False``). Nothing is done while the disk is out: the
        store's retry writes then. Returns whether a flush was made."""
        if not self._pending or self._failed is not None:
            return False
        with contextlib.suppress(StoreFailed):  # the writer logged it and retries
            await self.flush()
        return True

    async def compact(self) -> FlushResult:
        """Write a new snapshot of what is on disk now and start an empty journal."""
        self._check_writable()
        result: FlushResult = await self._submit(_Kind.COMPACT)
        return result

    async def barrier(self) -> None:
        """Return once the writer has finished every command queued before this call.

        A virtual-time driver calls it before moving time on, because a write in a worker thread is
        invisible to the event loop and time could otherwise jump while it is in flight.
        """
        self._check_writable()
        await self._submit(_Kind.BARRIER)

    async def set_policy(self, policy: str) -> None:
        """Switch between "smart" and "simple" at runtime; pending changes are flushed first."""
        target = policy_named(policy)
        if self._writer is None:
            self._policy = target
            return
        self._check_writable()
        if self._failed is not None:  # nothing can be written now; the next write is a snapshot anyway
            self._policy = target
            return
        await self._submit(_Kind.SET_POLICY, policy=target, cause="policy")

    # ----------------------------------------------------------------- internals (caller side)

    def _check_writable(self, key: str | None = None) -> None:
        if key is not None and (not isinstance(key, str) or key == MARK_KEY):
            raise ValueError(f"a state key must be a non-empty string, not {key!r}")
        if self._closed:
            raise RuntimeError("the store is closed")
        if self._writer is None:
            raise RuntimeError("Store.start() has not run")

    def _not_durable(self) -> StoreFailed:
        return StoreFailed(
            f"not durable: the state directory {self._files.root} cannot be written ({self._failed}); "
            "the change is kept in memory and written when the disk allows"
        )

    async def _mark(self, reason: Reason) -> None:
        self._metrics.count_save(reason.value)
        marker = {"policy": self._policy.name}
        self._marks.append(_Change(MARK_KEY, Op.MARK, marker, reason.value, since=self._clock.now()))
        await self._submit(_Kind.COMMIT, cause=reason.value)

    async def _submit(self, kind: _Kind, *, policy: SavePolicy | None = None, cause: str = "flush") -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._commands().put_nowait(_Command(kind, future, policy, cause))
        return await future

    async def _run_flush_timer(self) -> None:
        """Write coalesced non-critical changes ``flush_interval_s`` after the oldest one was made.

        The deadline follows the oldest pending change rather than the timer's own wake-ups, so a
        commit that finishes late (or a critical save that drained the batch) never stretches it.
        """
        pending = self._signal()
        while True:
            await pending.wait()
            oldest = self._oldest_pending_since()
            if oldest is None or self._failed is not None:  # while the disk is out, the retry writes
                pending.clear()
                continue
            delay = oldest + self._flush_interval_s - self._clock.now()
            if delay > 0:
                await self._clock.sleep(delay)
                continue  # look again: a critical save may have taken the batch meanwhile
            with contextlib.suppress(StoreFailed):  # the writer logged it and retries
                await self._submit(_Kind.COMMIT)

    def _commands(self) -> asyncio.Queue[_Command]:
        """The writer's command queue, created by :meth:`start`."""
        if self._queue is None:
            raise StoreNotStarted("Store.start() has not run")
        return self._queue

    def _signal(self) -> asyncio.Event:
        """Set when a change is pending for the flush timer, created by :meth:`start`."""
        if self._pending_signal is None:
            raise StoreNotStarted("Store.start() has not run")
        return self._pending_signal

    def _oldest_pending_since(self) -> float | None:
        # Keys keep their first insertion position and their first ``since``, so the first is oldest.
        first = next(iter(self._pending.values()), None)
        return None if first is None else first.since

    # ----------------------------------------------------------------- internals (the writer task)

    async def _run_writer(self) -> None:
        queue = self._commands()
        while True:
            command = await queue.get()
            if command.kind is _Kind.STOP:
                _resolve(command.future, None)
                return
            try:
                result = await self._execute(command)
                if command.kind is not _Kind.BARRIER:
                    self._write_succeeded()
                _resolve(command.future, result)
                if not self._policy.full_writes and self._over_bounds():
                    await self._compact()
            except Exception as exc:  # the disk failed: keep everything in memory and retry
                self._write_failed(exc)
                _reject(command.future, self._not_durable())

    def _write_failed(self, exc: BaseException) -> None:
        self._needs_full = True
        if self._failed is not None:
            self._failed = exc
            logger.warning("persistence write in %s failed again: %s", self._files.root, exc)
            return
        self._failed = exc
        self._failed_since = self._clock.now()
        logger.critical(
            "persistence write failed in %s; changes are kept in memory and the write retried",
            self._files.root,
            exc_info=exc,
        )
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._run_retry(), name="persistence-retry")
        self._tell_listeners(exc)

    def _write_succeeded(self) -> None:
        if self._failed is None:
            return
        since = self._failed_since if self._failed_since is not None else self._clock.now()
        logger.warning(
            "persistence writes resumed in %s after %.0f s; the kept changes are on disk",
            self._files.root,
            self._clock.now() - since,
        )
        self._failed = None
        self._failed_since = None
        self._tell_listeners(None)

    def _tell_listeners(self, error: BaseException | None) -> None:
        for listener in self._listeners:
            try:
                listener(error)
            except Exception:  # a listener must never stop the writer
                logger.exception("persistence health listener %r failed", listener)

    async def _run_retry(self) -> None:
        """While writes fail, retry a commit (a whole snapshot) with a backoff on the time source."""
        delay = RETRY_FIRST_S
        while self._failed is not None:
            await self._clock.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            if self._failed is None:  # a flush got through meanwhile
                return
            with contextlib.suppress(StoreFailed):
                await self._submit(_Kind.COMMIT, cause="retry")

    async def _execute(self, command: _Command) -> FlushResult:
        if command.kind is _Kind.COMPACT:
            return await self._compact()
        if command.kind is _Kind.BARRIER:
            return FlushResult(records=0, bytes=0, full_write=False, seq=self._seq)
        result = await self._commit(command.cause)
        if command.kind is _Kind.SET_POLICY and command.policy is not None:
            if command.policy is not self._policy:
                logger.info("persistence policy %s -> %s", self._policy.name, command.policy.name)
            self._policy = command.policy
        return result

    def _over_bounds(self) -> bool:
        return self._journal_bytes >= self._max_bytes or self._journal_records >= self._max_records

    async def _commit(self, cause: str = "flush") -> FlushResult:
        changes = [*self._pending.values(), *self._marks]
        self._pending.clear()
        self._marks.clear()
        if self._pending_signal is not None:
            self._pending_signal.clear()
        if not changes and not self._needs_full:
            return FlushResult(records=0, bytes=0, full_write=False, seq=self._seq)
        now = self._clock.now()
        records = []
        for change in changes:
            self._seq += 1
            change.seq = self._seq
            record = JournalRecord(self._seq, now, change.reason, change.key, change.op, change.value)
            record.apply(self._disk)
            records.append(record)
        oldest = min((c.since for c in changes if c.op is not Op.MARK), default=now)
        self._metrics.max_pending_age_s = max(self._metrics.max_pending_age_s, now - oldest)
        full = self._policy.full_writes or self._needs_full
        if full:
            cost = await self._write_full(now)
        else:
            data = b"".join(encode_record(record) for record in records)
            cost = await self._appender.append(data)
            self._journal_bytes += len(data)
            self._journal_records += len(records)
        self._metrics.count_write(
            now, writes=cost.writes, fsyncs=cost.fsyncs, nbytes=cost.bytes, full=full, reason=cause
        )
        self._metrics.records_written += len(records)
        self._metrics.last_flush = now
        return FlushResult(records=len(records), bytes=cost.bytes, full_write=full, seq=self._seq)

    async def _compact(self) -> FlushResult:
        now = self._clock.now()
        self._note("compaction:start")
        cost = await self._write_full(now)
        self._metrics.count_write(
            now, writes=cost.writes, fsyncs=cost.fsyncs, nbytes=cost.bytes, full=True, reason="compaction"
        )
        self._metrics.compactions += 1
        self._metrics.last_compaction = now
        self._note("compaction:done")
        logger.debug("persistence compacted %s at seq %d (%d bytes)", self._files.root, self._seq, cost.bytes)
        return FlushResult(records=0, bytes=cost.bytes, full_write=True, seq=self._seq)

    async def _write_full(self, now: float) -> IoCost:
        """Snapshot ``_disk`` (the state at ``_seq``), then move the journal it covers aside."""
        parts: list[bytes] = []
        # in parts, the loop's other work (a fill's decision) between them; nothing changes _disk
        # meanwhile: only this writer task applies commits to it
        for n, part in enumerate(snapshot_parts(self._disk, seq=self._seq, ts=now), start=1):
            parts.append(part)
            if n % SNAPSHOT_PARTS_PER_TURN == 0:
                await asyncio.sleep(0)
        data = b"".join(parts)
        cost = await write_snapshot(self._files, data, self._trace)
        # After a failed write the journal may end in a torn record of changes the snapshot now holds.
        torn = self._needs_full and await aiofiles.os.path.exists(self._files.journal)
        if self._journal_bytes > 0 or torn:
            cost += await rotate_journal(self._files, self._appender)
            self._journal_bytes = 0
            self._journal_records = 0
            self._note("compaction:journal_rotated")
        self._needs_full = False
        return cost

    def _note(self, step: str) -> None:
        if self._trace is not None:
            self._trace(step)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _reject(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
