"""RowMemo: a long section's rows, each rebuilt only when what it is made of changed.

A snapshot lists every position, order and monitor. At a thousand positions, building each row again
at every refresh (dicts, rounding to the tick, read-only wrapping) was most of a build's cost, while
between two refreshes only a few rows change. A section is built as one *pass* over its items: each
item gives its key, the values its row is made of (``inputs``, compared with ``==``) and a function that
builds the row; the row built in the last pass is reused when its inputs are equal. Rows of items not
seen in a pass are forgotten, so the memo never outgrows the section.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from itertools import compress
from operator import eq, is_not, not_
from typing import Any, Generic, TypeVar

from engine.core.revision import Change, Revision

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")
T = TypeVar("T")


class RowMemo(Generic[K, R]):
    """The rows of the last pass, by key, with the inputs each was built from.

    Rows must be immutable (read-only mappings, tuples): the same object is handed out again.
    """

    def __init__(self) -> None:
        self._last: dict[K, tuple[object, R]] = {}
        self._next: dict[K, tuple[object, R]] = {}
        self.built = 0
        """Rows built (not reused) since the memo was made: what a test or a profile looks at."""

    def row(self, key: K, inputs: object, build: Callable[[], R]) -> R:
        """The row of ``key``: the last pass's when its inputs equal ``inputs``, else ``build()``."""
        last = self._last.get(key)
        # Identity first: a dataclass's == compares field by field even with itself.
        if last is not None and (last[0] is inputs or last[0] == inputs):
            self._next[key] = last  # the same pair: nothing allocated for a row reused
            return last[1]
        row = build()
        self.built += 1
        self._next[key] = (inputs, row)
        return row

    def rows_of(self, items: Iterable[T], key: Callable[[T], K], build: Callable[[T], R]) -> list[R]:
        """:meth:`row` for each of ``items`` whose row is made of the item alone (an immutable
        record): its inputs are the item itself. One call for a whole section: at thousands of
        rows, a call and a closure per row cost more than the rows reused."""
        last, following = self._last, self._next
        rows: list[R] = []
        for item in items:
            item_key = key(item)
            hit = last.get(item_key)
            if hit is None or (hit[0] is not item and hit[0] != item):
                hit = (item, build(item))
                self.built += 1
            following[item_key] = hit
            rows.append(hit[1])
        return rows

    def hold(self, keys: Iterable[K], inputs: Iterable[object], rows: Iterable[R]) -> None:
        """Make these rows, by key, with the inputs each was built from, the last pass's (what
        the next pass reuses), in place of those the memo had."""
        self._last = dict(zip(keys, zip(inputs, rows, strict=True), strict=True))

    def end_pass(self) -> None:
        """Close a pass: the rows asked for in it are the ones the next pass may reuse."""
        self._last, self._next = self._next, {}


class SortedRows(Generic[T, R]):
    """A section kept sorted, with its rows, from one pass to the next, changed where its items did.

    Each pass is handed the section's items anew: a new list that holds the same record objects but
    for the few that changed (the cache applies an order or position event that way), or, after a
    read, new records of which most are equal to the last ones. The items seen in the last pass keep
    their place and their row; a record equal to the last one of its row (``ident``) is that one; one
    changed where its sort key did not is replaced where it stands, its row built again; those gone
    are taken out and the new ones put in at their place (bisect on their sort keys). So a pass that
    changed a few of three thousand orders sorts nothing and builds a few rows, and a read of three
    thousand equal orders builds none. What changed is found by comparing the two lists place by
    place when they are as long (a record replaced where it was), else row by row, in C, by the
    identity of each row's record, then by equality for those not the last ones handed. A
    :class:`~engine.core.revision.Revision` of the list handed last says what changed: it is applied
    as it is, nothing compared.

    The result is the one of ``sorted(items, key=key)`` with ``build`` applied to each, an item
    equal to the last pass's standing for it: when that cannot be told apart by keys alone (two items
    with equal keys, which ``sorted`` leaves in their input order) or when many rows come or go, the
    pass sorts them all, reusing the rows of equal records (by ``ident``, as :meth:`RowMemo.rows_of`).
    """

    def __init__(
        self,
        key: Callable[[T], Any],
        ident: Callable[[T], Hashable],
        build: Callable[[T], R],
        keep: Callable[[T], object] | None = None,
        tally: Callable[[T], Hashable] | None = None,
    ) -> None:
        """``key``: the sort key; ``ident``: what identifies an item's row across records (an order
        id); ``build``: an item's row (a function of the item alone, immutable); ``keep``: which of
        the items handed belong to the section (all when None); ``tally``: a value of an item whose
        occurrences in the section :attr:`tallies` counts (its symbol)."""
        self._key, self._ident, self._build, self._keep, self._tally = key, ident, build, keep, tally
        self.tallies: Counter[Hashable] = Counter()
        """How many items of the section have each ``tally`` value (only values held), kept as the
        section changes: what a pass over thousands of records would otherwise count."""
        self._memo: RowMemo[Hashable, R] = RowMemo()
        self._input: list[T] = []  # the last pass's items, in the order handed
        self._by_ident: dict[Hashable, T] = {}  # the section's items by row
        self._items: list[T] = []
        self._keys: list[Any] = []
        self._rows: list[R] = []
        self._ties = False  # two items of the last pass had equal keys: only a full sort orders them
        # A pass's items by row, and the list they were handed in (current while it is the input).
        self._handed: tuple[list[T], dict[Hashable, T]] = ([], {})
        self._handed_list: object = None  # the very list (or iterable) the last pass was handed
        self.built = 0
        """Rows built (not reused) since the section was made."""
        self.sorts = 0
        """Passes that sorted every item (the first one, and those where many rows came or went, or
        with ties)."""

    def update(self, items: Iterable[T]) -> tuple[list[T], list[R]]:
        """This pass's items, sorted, and their rows (lists the caller must not change)."""
        handed, self._handed_list = self._handed_list, items
        keep = self._keep
        new = [item for item in items if keep(item)] if keep is not None else list(items)
        last_input, limit = self._input, max(16, len(self._items) // 8)
        if self._ties:
            return self._sort(new)
        # A revision of the very list handed last time says what changed: nothing to compare.
        changes = items.changes_since(handed) if isinstance(items, Revision) else None
        if changes is not None and len(changes) <= limit:
            return self._revised(new, changes, limit)
        if len(new) == len(last_input):
            # The cache replaces a changed record where it was: compare the lists place by place (in C).
            moved = list(compress(range(len(new)), map(is_not, last_input, new)))
            if not moved:  # the same items in the same order: the same section
                return self._items, self._rows
            if len(moved) <= limit:
                gone = [last_input[i] for i in moved]
                return self._changed(new, [new[i] for i in moved], gone, limit)
        return self._changed(new, None, [], limit)

    def _revised(self, new: list[T], changes: list[Change[T]], limit: int) -> tuple[list[T], list[R]]:
        """Apply a :class:`~engine.core.revision.Revision`'s changes since the last pass (records of
        the section only: a record ``keep`` refuses is not in it)."""
        keep, key, ident, last = self._keep, self._key, self._ident, self._by_ident
        replaced: list[tuple[T, T]] = []
        removed: list[T] = []
        added: list[T] = []
        for was, item in changes:
            # The section's record of the row: an equal record handed later may stand for it.
            old = None if was is None else last.get(ident(was))
            if item is not None and keep is not None and not keep(item):
                item = None
            if item is None:
                if old is not None:
                    removed.append(old)
                continue
            row = ident(item)
            if old is not None and ident(old) == row and key(old) == key(item):
                replaced.append((old, item))
                continue
            if old is not None:
                removed.append(old)
            if row in last and (old is None or ident(old) != row):
                return self._changed(new, None, [], limit)  # a row twice: the general pass tells
            added.append(item)
        return self._apply(new, replaced, removed, added)

    def _changed(
        self, new: list[T], candidates: list[T] | None, gone: list[T], limit: int
    ) -> tuple[list[T], list[R]]:
        """Apply what changed, row by row, or sort ``new`` whole (see the class). ``candidates``: the
        items of ``new`` that may differ from the last pass, and ``gone`` the last pass's items they
        stand in place of (a place-by-place pass); or None (any other pass: every item may differ,
        and those that are the last ones handed for their row, or equal to its record, are told in C)."""
        ident, key, last = self._ident, self._key, self._by_ident
        left: set[Hashable] | None = None  # the rows no longer handed, when every item was
        gone_rows: set[Hashable] | None = None
        unequal = candidates is None  # the candidates told in C below differ from their row's record
        if candidates is None:
            # Told in C, by row (an order id's hash is kept by the string): the records that are not
            # the ones handed last time for their row (records came or went, so the lists no longer
            # line up place by place; or a read), and of those the ones that differ from their row's
            # record (==, a dataclass's field by field, called from C: a read of thousands of equal
            # records goes on below with none of them).
            idents = list(map(ident, new))
            handed = dict(zip(idents, new, strict=True))
            if len(handed) != len(idents):  # an item twice: only a sort tells where each goes
                return self._sort(new)
            last_input, before = self._handed
            if last_input is not self._input:
                before = dict(zip(map(ident, self._input), self._input, strict=True))
            since = list(compress(new, map(is_not, map(before.get, idents), new)))
            candidates = list(compress(since, map(not_, map(eq, map(last.get, map(ident, since)), since))))
            left = last.keys() - handed.keys()
            self._handed = (new, handed)  # the pass ends with ``new`` as its input, sorted or not
        else:
            # The rows the items of ``gone`` stood for: a candidate of another row, still in place,
            # would be that row twice (which only a sort lists as sorted() does).
            gone_rows = set(map(ident, gone))
        seen: set[Hashable] = set()
        replaced: list[tuple[T, T]] = []  # (last, new) of a row whose sort key stayed
        removed: list[T] = []
        added: list[T] = []
        for item in candidates:
            row = ident(item)
            if row in seen:  # an item twice: only a sort tells where each goes
                return self._sort(new)
            seen.add(row)
            old = last.get(row)
            if old is None:
                added.append(item)
            elif gone_rows is not None and row not in gone_rows:
                return self._sort(new)
            elif not unequal and (old is item or old == item):
                continue  # the same record: its row stays (== again for a thousand re-read was 1-2 ms)
            elif key(old) == key(item):
                replaced.append((old, item))
            else:
                removed.append(old)
                added.append(item)
        # The rows no longer handed: every row not handed, or those of the items replaced in place.
        if gone_rows is not None:
            left = gone_rows - seen
        removed += [last[row] for row in left or ()]
        if len(removed) + len(added) > limit:
            return self._sort(new)
        return self._apply(new, replaced, removed, added)

    def _apply(
        self, new: list[T], replaced: list[tuple[T, T]], removed: list[T], added: list[T]
    ) -> tuple[list[T], list[R]]:
        """Replace, take out and put in: ``new`` sorted, unless an item is not where its key says or
        an added one ties with another (then it is sorted whole)."""
        key, ident, build = self._key, self._ident, self._build
        items, keys, rows, by_ident = self._items, self._keys, self._rows, self._by_ident
        for old, item in replaced:
            at = bisect_left(keys, key(old))
            if at == len(items) or items[at] is not old:
                return self._sort(new)
            items[at] = item
            rows[at] = build(item)
            by_ident[ident(item)] = item
            if self._tally is not None and self._tally(old) != self._tally(item):
                self._count(old, -1)
                self._count(item, 1)
            self.built += 1
        for item in removed:
            at = bisect_left(keys, key(item))
            if at == len(items) or items[at] is not item:
                return self._sort(new)
            del items[at], keys[at], rows[at], by_ident[ident(item)]
            self._count(item, -1)
        for item in added:
            item_key = key(item)
            at = bisect_left(keys, item_key)
            if at < len(keys) and keys[at] == item_key:  # a tie: its place depends on the input order
                return self._sort(new)
            items.insert(at, item)
            keys.insert(at, item_key)
            rows.insert(at, build(item))
            by_ident[ident(item)] = item
            self._count(item, 1)
            self.built += 1
        self._input = new
        return items, rows

    def _count(self, item: T, step: int) -> None:
        if self._tally is None:
            return
        value = self._tally(item)
        held = self.tallies[value] + step
        if held:
            self.tallies[value] = held
        else:
            del self.tallies[value]

    def _sort(self, new: list[T]) -> tuple[list[T], list[R]]:
        self.sorts += 1
        key, ident, memo = self._key, self._ident, self._memo
        items = sorted(new, key=key)
        keys = list(map(key, items))
        # The rows as they stand, kept or built since the last sort: only a changed record's is built.
        memo.hold(map(ident, self._items), self._items, self._rows)
        built = memo.built
        rows = memo.rows_of(items, ident, self._build)
        memo.end_pass()
        self.built += memo.built - built
        self._items, self._keys, self._rows, self._input = items, keys, rows, new
        self._by_ident = dict(zip(map(ident, items), items, strict=True))
        if self._tally is not None:
            self.tallies = Counter(map(self._tally, items))
        # Equal keys, or one row twice: only a whole sort orders them.
        self._ties = any(map(eq, keys, keys[1:])) or len(self._by_ident) != len(items)
        return items, rows


class KeyedRows(Generic[K, T, R]):
    """A section sorted by key whose rows are made again only for the keys said to have changed.

    Where the owner of the items knows which keys it changed (a
    :class:`~engine.core.tracked_dict.TrackedDict`'s feed), a pass costs what changed, not a look at
    every item. Each key's row is kept with the inputs it was made of (compared with ``==``, identity
    first): a key said to have changed whose inputs are equal keeps its row object.
    """

    def __init__(self, inputs: Callable[[K], T | None], build: Callable[[K, T], R]) -> None:
        """``inputs``: what a key's row is made of now (None: the key is not in the section);
        ``build``: the row of a key and its inputs (immutable)."""
        self._inputs, self._build = inputs, build
        self._made: dict[K, tuple[T, R]] = {}
        self._keys: list[Any] = []  # sorted (a key of a section is comparable)
        self._rows: list[R] = []  # in the keys' order
        self.built = 0
        """Rows built (not reused) since the section was made."""

    def rows(self, changed: Iterable[K]) -> list[R]:
        """The section (a new list) after the keys ``changed`` since the last pass were looked at."""
        made, inputs_of, build = self._made, self._inputs, self._build
        keys, rows = self._keys, self._rows
        for key in changed:
            inputs = inputs_of(key)
            last = made.get(key)
            if inputs is None:
                if last is not None:
                    del made[key]
                    at = bisect_left(keys, key)
                    del keys[at], rows[at]
                continue
            if last is not None and (last[0] is inputs or last[0] == inputs):
                continue
            row = build(key, inputs)
            self.built += 1
            made[key] = (inputs, row)
            at = bisect_left(keys, key)
            if last is None:
                keys.insert(at, key)
                rows.insert(at, row)
            else:
                rows[at] = row
        return list(rows)

    def keys(self) -> list[K]:
        """The keys in the section, sorted (a new list)."""
        return list(self._keys)
