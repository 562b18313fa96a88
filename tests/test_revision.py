"""Revision: a list that tells what changed since the lists it was made from, holding none of them
alive but the root."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Collection, Hashable, Sequence
from operator import attrgetter

from engine.core.revision import MAX_AGE, MAX_CHANGES, Change, Revision
from engine.core.row_memo import SortedRows


class Rec:
    """A record (weakly referable, to see what a chain keeps alive)."""

    def __init__(self, ident: int, version: int = 0) -> None:
        self.ident, self.version = ident, version

    def __repr__(self) -> str:
        return f"Rec({self.ident}, {self.version})"


def revise(
    base: list[Rec],
    replace: dict[int, Rec] | None = None,
    add: Sequence[Rec] = (),
    drop: Collection[int] = (),
) -> Revision[Rec]:
    """``base`` with records replaced, added and dropped, as the dashboard's cache patches a list."""
    replace = replace or {}
    changes: dict[Hashable, Change[Rec]] = {}
    out: list[Rec] = []
    for rec in base:
        if rec.ident in drop:
            changes[rec.ident] = (rec, None)
        elif rec.ident in replace:
            changes[rec.ident] = (rec, replace[rec.ident])
            out.append(replace[rec.ident])
        else:
            out.append(rec)
    for rec in add:
        changes[rec.ident] = (None, rec)
        out.append(rec)
    return Revision(out, base, changes)


def test_a_revision_is_its_list_and_tells_its_changes_since_its_base() -> None:
    root = [Rec(n) for n in range(5)]
    amended = Rec(2, 1)
    first = revise(root, {2: amended}, add=[Rec(9)], drop={4})
    assert first == [root[0], root[1], amended, root[3], first[-1]] and isinstance(first, list)
    assert sorted(first.changes_since(root), key=lambda c: (c[0] or c[1]).ident) == [
        (root[2], amended),
        (root[4], None),
        (None, first[-1]),
    ]
    assert first.changes_since([*root]) is None  # an equal list is not the list it was made from


def test_changes_since_an_older_list_are_collapsed_per_record() -> None:
    root = [Rec(n) for n in range(3)]
    one = revise(root, {0: Rec(0, 1)}, add=[Rec(7)])
    two = revise(one, {0: Rec(0, 2)}, drop={7})
    assert two.changes_since(one) is not None and len(two.changes_since(one)) == 2
    # since the root: record 0 from its first version to its third; 7 came and went: no change
    assert two.changes_since(root) == [(root[0], two[0])]


def test_a_chain_keeps_no_revision_alive_only_the_root() -> None:
    root = [Rec(n) for n in range(3)]
    current: list[Rec] = root
    dropped: list[weakref.ref[list[Rec]]] = []
    for version in range(1, MAX_AGE):
        current = revise(current, {1: Rec(1, version)})
        dropped.append(weakref.ref(current))
    gc.collect()
    assert [ref() is not None for ref in dropped] == [False] * (MAX_AGE - 2) + [True]  # the latest only
    assert isinstance(current, Revision) and current.changes_since(root) == [(root[1], current[1])]


def test_how_far_back_a_revision_knows_is_bounded() -> None:
    root = [Rec(n) for n in range(3)]
    held: list[list[Rec]] = [root]
    for version in range(1, MAX_AGE + 3):
        held.append(revise(held[-1], {0: Rec(0, version)}))
    latest = held[-1]
    known = [latest.changes_since(earlier) is not None for earlier in held[:-1]]
    assert known[-MAX_AGE:] == [True] * MAX_AGE and not any(known[:-MAX_AGE])

    many = revise(root, add=[Rec(100 + n) for n in range(MAX_CHANGES)])
    more = revise(many, add=[Rec(10_000)])
    assert more.changes_since(many) is not None
    assert more.changes_since(root) is None  # past MAX_CHANGES: a reader compares the lists


def test_a_revision_whose_earlier_list_died_is_made_from_nothing_a_reader_holds() -> None:
    """A reader that was never handed a list holds None; a dead weak reference also gives None. A
    revision must not take the one for the other: a new section handed it would apply its changes
    to nothing and lose every other record."""
    root = [Rec(n) for n in range(3)]
    middle = revise(root, {0: Rec(0, 1)})
    latest = revise(middle, {1: Rec(1, 1)})
    del middle
    gc.collect()
    assert latest.changes_since(None) is None
    section = SortedRows(attrgetter("ident"), attrgetter("ident"), attrgetter("version"))
    ordered, _ = section.update(latest)
    assert ordered == list(latest)
