"""Revision: a list made from an earlier one by known changes, which it carries.

The dashboard's cache applies an order or position event to its cached list as a new list (a cached
list is never changed in place: its readers tell by identity whether it changed). Its reader,
:class:`~engine.core.row_memo.SortedRows`, keeps the list sorted with a row per record, and had to
find out again what the cache already knew: at a thousand positions an account's orders are three
thousand records, and an order added or finished changes the list's length, so the two lists no
longer line up place by place and were compared record by record (3-4 ms of a snapshot build, at
every order event). A :class:`Revision` is the new list together with what changed since each of
the lists it was made from, so a reader that kept one of them applies the changes instead.

The earlier lists are held weakly, but for the *root* (the plain list the first revision was made
from, a venue read), held as long as revisions of it are: a chain of revisions keeps no list alive
but that one. How far back a revision knows its changes is bounded (:data:`MAX_AGE` lists,
:data:`MAX_CHANGES` records); past that a reader compares the lists as before.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Iterable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_AGE = 8
"""Earlier lists a revision knows its changes since (the one it was made from included)."""
MAX_CHANGES = 256
"""Changed records past which a revision no longer tells its changes since a list (a reader sorts
that many again anyway)."""

Change = tuple[T | None, T | None]
"""A record as it was in the earlier list and as it is in this one: (None, new) added, (old, None)
removed, (old, new) replaced."""


class _Since(Generic[T]):
    """The changes from one earlier list to a revision, collapsed per record."""

    __slots__ = ("changes", "list")

    def __init__(self, held: weakref.ref[list[T]] | list[T], changes: dict[Hashable, Change[T]]) -> None:
        self.list = held
        self.changes = changes

    @classmethod
    def of(cls, earlier: list[T], changes: dict[Hashable, Change[T]]) -> _Since[T]:
        """Since ``earlier``: a revision referred to weakly, the root (a plain list, which cannot
        be) strongly."""
        return cls(weakref.ref(earlier) if isinstance(earlier, Revision) else earlier, changes)

    def earlier(self) -> list[T] | None:
        held = self.list
        return held() if isinstance(held, weakref.ref) else held


class Revision(list[T]):
    """``items``, made from ``base`` by ``changes`` (record key -> (as in ``base``, as here)).

    Keys are whatever identifies a record across versions (an order id); a record both added and
    removed since an earlier list is no change since it."""

    __slots__ = ("__weakref__", "_since")
    _since: list[_Since[T]]

    def __init__(self, items: Iterable[T], base: list[T], changes: Mapping[Hashable, Change[T]]) -> None:
        super().__init__(items)
        since: list[_Since[T]] = [_Since.of(base, dict(changes))]
        if isinstance(base, Revision):
            for older in base._since[: MAX_AGE - 1]:
                merged = _merged(older.changes, changes)
                if merged is None:
                    break
                since.append(_Since(older.list, merged))
        self._since = since

    def changes_since(self, earlier: object) -> list[Change[T]] | None:
        """What changed from the list ``earlier`` to this one, a change per record; None when this
        revision was not made from ``earlier`` (or no longer knows)."""
        for since in self._since:
            held = since.earlier()
            # a list that died is no list: it must not match a reader that holds none (None)
            if held is not None and held is earlier:
                return [change for change in since.changes.values() if change[0] is not change[1]]
        return None


def _merged(
    first: Mapping[Hashable, Change[T]], then: Mapping[Hashable, Change[T]]
) -> dict[Hashable, Change[T]] | None:
    """The changes of ``first`` followed by ``then``, per record; None past :data:`MAX_CHANGES`."""
    merged = dict(first)
    for key, (old, new) in then.items():
        before = merged.get(key)
        merged[key] = (old if before is None else before[0], new)
    if len(merged) > MAX_CHANGES:
        return None
    return merged
