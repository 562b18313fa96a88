"""RowMemo: a long section's rows, each rebuilt only when what it is made of changed.

A snapshot lists every position, order and monitor. At a thousand positions, building each row again
at every refresh (dicts, rounding to the tick, read-only wrapping) was most of a build's cost, while
between two refreshes only a few rows change. A section is built as one *pass* over its items: each
item gives its key, the values its row is made of (``inputs``, compared with ``==``) and a function that
builds the row; the row built in the last pass is reused when its inputs are equal. Rows of items not
seen in a pass are forgotten, so the memo never outgrows the section.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

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

    def end_pass(self) -> None:
        """Close a pass: the rows asked for in it are the ones the next pass may reuse."""
        self._last, self._next = self._next, {}
