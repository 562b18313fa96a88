"""RowMemo: a row is reused while its inputs are equal, rebuilt when they change, forgotten when
its item leaves the section."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, replace
from operator import attrgetter

from engine.core.revision import Change, Revision
from engine.core.row_memo import RowMemo, SortedRows


class Record:
    """A record whose == counts its calls (a dataclass compares field by field, even with itself)."""

    compared = 0

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        Record.compared += 1
        return isinstance(other, Record) and other.value == self.value

    __hash__ = object.__hash__


def test_rows_are_reused_while_their_inputs_are_equal_and_rebuilt_when_they_change() -> None:
    memo: RowMemo[str, dict[str, int]] = RowMemo()
    first = {key: memo.row(key, (key, 1), lambda key=key: {key: 1}) for key in ("a", "b")}
    memo.end_pass()
    second = {
        "a": memo.row("a", ("a", 1), lambda: {"a": 1}),
        "b": memo.row("b", ("b", 2), lambda: {"b": 2}),
    }
    memo.end_pass()
    assert second["a"] is first["a"]
    assert second["b"] == {"b": 2} and second["b"] is not first["b"]
    assert memo.built == 3


def test_an_item_missing_from_a_pass_is_forgotten() -> None:
    memo: RowMemo[str, list[int]] = RowMemo()
    kept = memo.row("a", 1, lambda: [1])
    memo.end_pass()
    memo.end_pass()  # a pass without "a": the section no longer lists it
    again = memo.row("a", 1, lambda: [1])
    assert again == kept and again is not kept


def test_the_same_input_object_is_not_compared_field_by_field() -> None:
    memo: RowMemo[str, str] = RowMemo()
    record = Record(1)
    memo.row("a", record, lambda: "row")
    memo.end_pass()
    Record.compared = 0
    assert memo.row("a", record, lambda: "rebuilt") == "row"
    assert Record.compared == 0
    assert memo.row("a", Record(1), lambda: "rebuilt") == "row"  # an equal copy: compared, reused
    assert Record.compared == 1


def test_rows_of_records_reuse_the_row_of_the_same_or_an_equal_record() -> None:
    memo: RowMemo[int, tuple[int, str]] = RowMemo()
    built: list[int] = []

    def build(record: Record) -> tuple[int, str]:
        built.append(record.value)
        return (record.value, "row")

    first, second = Record(1), Record(2)
    rows = memo.rows_of([first, second], lambda r: r.value % 10, build)
    memo.end_pass()
    changed = Record(12)  # the key of ``second``, another record: its row is built again
    again = memo.rows_of([first, changed, Record(1)], lambda r: r.value % 10, build)
    assert again[0] is rows[0] and again[1] == (12, "row") and built == [1, 2, 12]
    assert again[2] is rows[0]  # an equal record under the same key: the row is reused


@dataclass(frozen=True)
class Item:
    """An immutable record, as the venue's orders are: a change makes a new one under the same id."""

    ident: int
    group: str
    rank: int
    qty: float
    live: bool = True


def item_key(item: Item) -> tuple[str, int]:
    return item.group, item.rank


def item_row(item: Item) -> tuple[int, str, int, float]:
    return item.ident, item.group, item.rank, item.qty


def item_ident(item: Item) -> int:
    return item.ident


def item_group(item: Item) -> str:
    return item.group


def is_live(item: Item) -> bool:
    return item.live


def shuffled_step(
    rng: random.Random, items: list[Item], next_id: int, unique: bool
) -> tuple[list[Item], int]:
    """The next list, as a cache hands it: the same records in a new list, but a few added, amended
    (a new record of the same id), removed or made not live, in whatever order."""
    items = list(items)
    for _ in range(rng.choice((0, 1, 1, 2, 5, 40))):
        action = rng.random()
        if action < 0.35 or not items:
            rank = next_id if unique else rng.randrange(30)
            items.insert(rng.randrange(len(items) + 1), Item(next_id, rng.choice("abc"), rank, 1.0))
            next_id += 1
        elif action < 0.7:
            at = rng.randrange(len(items))
            items[at] = replace(items[at], qty=items[at].qty + 1.0)
        elif action < 0.85:
            items.pop(rng.randrange(len(items)))
        else:
            at = rng.randrange(len(items))
            items[at] = replace(items[at], live=not items[at].live)
    if rng.random() < 0.2:
        rng.shuffle(items)
    return items, next_id


def test_a_sorted_section_kept_across_passes_is_the_one_sorted_from_scratch() -> None:
    for unique in (True, False):  # unique keys, and ties (which sorted() leaves in input order)
        rng = random.Random(17)
        section = SortedRows(item_key, item_ident, item_row, is_live, tally=item_group)
        items: list[Item] = []
        next_id = 0
        for _ in range(300):
            items, next_id = shuffled_step(rng, items, next_id, unique)
            ordered, rows = section.update(items)
            expected = sorted((i for i in items if i.live), key=item_key)
            assert ordered == expected  # a record equal to the last pass's may stand for it
            assert rows == [item_row(i) for i in expected]
            assert section.tallies == Counter(map(item_group, expected))


def test_a_pass_that_changed_a_few_items_sorts_nothing_and_builds_their_rows_only() -> None:
    section = SortedRows(item_key, item_ident, item_row)
    items = [Item(n, "ab"[n % 2], n, 1.0) for n in range(200)]
    random.Random(3).shuffle(items)
    _, first = section.update(items)
    assert section.sorts == 1 and section.built == 200
    _, same = section.update(list(items))  # a new list of the same records
    assert same == first and section.sorts == 1 and section.built == 200
    changed = [replace(i, qty=2.0) if i.ident == 7 else i for i in items if i.ident != 9]
    changed.append(Item(500, "a", 500, 1.0))
    ordered, rows = section.update(changed)
    assert section.sorts == 1 and section.built == 202  # the amended and the added one
    assert ordered == sorted(changed, key=item_key)
    by_ident = {row[0]: row for row in first}
    kept = [row for row in rows if row[0] not in (7, 500)]
    assert all(row is by_ident[row[0]] for row in kept)  # the same objects


def test_a_read_of_equal_records_and_moves_in_place_sort_nothing() -> None:
    """After a read every record is a new object, most equal to the last ones; at 1000 positions each
    such read sorted 2,900 orders again (most of the slowest snapshot builds). An equal record keeps
    its row; one changed where its key did not (a position's mark) is replaced where it stands."""
    section = SortedRows(item_key, item_ident, item_row)
    items = [Item(n, "ab"[n % 2], n, 1.0) for n in range(200)]
    _, first = section.update(items)
    assert (section.sorts, section.built) == (1, 200)
    read = [replace(i) for i in reversed(items)]  # new objects, equal, in another order
    ordered, rows = section.update(read)
    assert (section.sorts, section.built) == (1, 200)
    assert ordered == sorted(read, key=item_key) and all(a is b for a, b in zip(rows, first, strict=True))
    moved = [replace(i, qty=i.qty + 1.0) if i.ident % 2 else i for i in read]  # half of them
    ordered, rows = section.update(moved)
    assert (section.sorts, section.built) == (1, 300)  # the hundred moved rows only
    assert ordered == sorted(moved, key=item_key) and rows == [item_row(i) for i in ordered]
    gone = [i for i in moved if i.ident != 4] + [Item(4, "a", 4, 9.0)]  # removed and put back changed
    assert section.update(gone)[0] == sorted(gone, key=item_key)


@dataclass(frozen=True, eq=False)
class Counted:
    """An item whose == counts its calls (a record compared field by field)."""

    ident: int
    rank: int
    compared = 0

    def __eq__(self, other: object) -> bool:
        Counted.compared += 1
        return isinstance(other, Counted) and (other.ident, other.rank) == (self.ident, self.rank)

    __hash__ = object.__hash__


def test_after_a_read_the_records_handed_are_told_by_identity_not_compared_again() -> None:
    """A read hands new records, equal to the last ones: each is compared once. The next pass (an
    order added: the lists no longer line up place by place) hands those same objects again: at
    1000 positions each such pass compared every one of an account's 5,000 orders field by field
    with the record read before, at every order event until the next read."""
    section = SortedRows(attrgetter("rank"), attrgetter("ident"), attrgetter("rank"))
    section.update([Counted(n, n) for n in range(200)])
    read = [Counted(n, n) for n in reversed(range(200))]  # new objects, equal, in another order
    Counted.compared = 0
    ordered, _ = section.update(read)
    assert Counted.compared == 200 and (section.sorts, section.built) == (1, 200)
    Counted.compared = 0
    grown = [*read[:50], *read[51:], Counted(500, 500)]  # one went, one came
    ordered, rows = section.update(grown)
    assert Counted.compared <= 1  # the new record, against nothing
    assert (section.sorts, section.built) == (1, 201)
    assert rows == sorted(item.rank for item in grown) and [i.ident for i in ordered] == rows
    twice = [*grown, Counted(7, 999)]  # a record of a row still in place: listed twice, as sorted() does
    assert [i.rank for i in section.update(twice)[0]] == sorted(i.rank for i in twice)


def test_a_whole_sort_reuses_the_rows_kept_since_the_last_one() -> None:
    """A pass with many rows come or gone sorts the section whole. At 1000 positions it built again
    every row whose record had changed since the last whole sort (thousands of orders, 50-200 ms
    snapshot builds), though each had its row kept, built when it changed."""
    section = SortedRows(item_key, item_ident, item_row)
    items = [Item(n, "ab"[n % 2], n, 1.0) for n in range(200)]
    section.update(items)
    amended = [replace(i, qty=2.0) if i.ident < 10 else i for i in items]
    section.update(amended)
    assert (section.sorts, section.built) == (1, 210)  # the ten amended rows, placed
    grown = amended + [Item(n, "a", n, 1.0) for n in range(1000, 1050)]  # more than it places
    ordered, rows = section.update(grown)
    assert section.sorts == 2 and section.built == 260  # the fifty new rows only
    assert ordered == sorted(grown, key=item_key) and rows == [item_row(i) for i in ordered]


def revised(rng: random.Random, items: list[Item], next_id: int, unique: bool) -> tuple[list[Item], int]:
    """The next list as the dashboard's cache patches it: a Revision of ``items`` (records replaced
    where they stand, removed, or added at the end), telling what changed."""
    out = list(items)
    changes: dict[Hashable, Change[Item]] = {}
    for _ in range(rng.choice((0, 1, 1, 2, 5, 40))):
        action = rng.random()
        if action < 0.35 or not out:
            rank = next_id if unique else rng.randrange(30)
            added = Item(next_id, rng.choice("abc"), rank, 1.0)
            out.append(added)
            changes[added.ident] = (None, added)
            next_id += 1
            continue
        at = rng.randrange(len(out))
        was = out[at]
        first = changes.get(was.ident, (was, was))[0]
        if action < 0.6:
            out[at] = replace(was, qty=was.qty + 1.0)
        elif action < 0.7:
            out[at] = replace(was, rank=was.rank + 100 if unique else rng.randrange(30))  # its key moves
        elif action < 0.85:
            out.pop(at)
            changes[was.ident] = (first, None)
            continue
        else:
            out[at] = replace(was, live=not was.live)
        changes[was.ident] = (first, out[at])
    return Revision(out, items, changes), next_id


def test_a_section_handed_revisions_is_the_one_sorted_from_scratch() -> None:
    """Revisions of the list handed last (or of one it never saw), equal copies of it (a read), in
    any mix: the section is always the list sorted, its rows those of its records."""
    for unique in (True, False):
        rng = random.Random(23)
        section = SortedRows(item_key, item_ident, item_row, is_live, tally=item_group)
        items: list[Item] = []
        next_id = 0
        for _ in range(400):
            choice = rng.random()
            if choice < 0.1:
                items = [replace(i) for i in items]  # a read: equal records, new objects
            else:
                items, next_id = revised(rng, items, next_id, unique)
                if choice < 0.25:  # a revision the section is never handed
                    continue
            ordered, rows = section.update(items)
            expected = sorted((i for i in items if i.live), key=item_key)
            assert ordered == expected
            assert rows == [item_row(i) for i in expected]
            assert section.tallies == Counter(map(item_group, expected))
            assert all(section.tallies.values())  # a value no longer held is not listed


def test_a_revision_of_the_list_handed_last_is_applied_without_comparing_the_lists() -> None:
    """An order added or finished changes the list's length: the lists no longer line up place by
    place, and the section found what changed by looking at each of thousands of records (3-4 ms
    of a snapshot build at a thousand positions, at every order event). A Revision says it."""
    looked_at = Counter[int]()

    def ident(item: Item) -> int:
        looked_at[item.ident] += 1
        return item.ident

    section = SortedRows(item_key, ident, item_row)
    items = [Item(n, "ab"[n % 2], n, 1.0) for n in range(2000)]
    section.update(items)
    gone, amended, added = items[10], replace(items[20], qty=5.0), Item(5000, "a", 5000, 1.0)
    rest = [amended if i is items[20] else i for i in items if i is not gone]
    revision = Revision(
        [*rest, added], items, {10: (gone, None), 20: (items[20], amended), 5000: (None, added)}
    )
    looked_at.clear()
    ordered, rows = section.update(revision)
    assert sum(looked_at.values()) <= 10  # the changed records only
    assert (section.sorts, section.built) == (1, 2002)
    assert ordered == sorted(revision, key=item_key) and rows == [item_row(i) for i in ordered]


@dataclass(frozen=True, eq=False)
class Marked:
    """A position-like record whose == counts its calls: a re-read brings it at a new mark."""

    ident: int
    rank: int
    mark: float
    compared = 0

    def __eq__(self, other: object) -> bool:
        Marked.compared += 1
        return isinstance(other, Marked) and (other.ident, other.rank, other.mark) == (
            self.ident,
            self.rank,
            self.mark,
        )

    __hash__ = object.__hash__


def test_a_re_read_of_records_that_all_changed_compares_each_once() -> None:
    """A TTL re-read of a thousand positions brings each at a new mark: told unequal in C, each
    record was compared field by field a second time in the pass that placed it (1-2 ms a build)."""
    section = SortedRows(attrgetter("rank"), attrgetter("ident"), attrgetter("mark"))
    section.update([Marked(n, n, 1.0) for n in range(200)])
    sorts = section.sorts
    Marked.compared = 0
    read = [Marked(n, n, 2.0) for n in range(200)]
    ordered, rows = section.update(read)
    assert Marked.compared == 200
    assert rows == [2.0] * 200 and ordered == read and section.sorts == sorts  # placed, not sorted
