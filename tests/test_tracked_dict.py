"""TrackedDict tells each reader the keys changed since it last took them; KeyedRows makes a sorted
section's rows again for those keys alone, and equals the section made from scratch."""

from __future__ import annotations

import random

import pytest

from engine.core.row_memo import KeyedRows
from engine.core.tracked_dict import TrackedDict


def test_every_way_of_changing_the_dict_is_told_to_every_feed() -> None:
    tracked: TrackedDict[str, int] = TrackedDict(a=1, b=2)
    first, second = tracked.feed(), tracked.feed()
    tracked["c"] = 3
    del tracked["a"]
    assert tracked.pop("b") == 2 and tracked.pop("missing", 0) == 0
    assert first.take() == {"a", "b", "c"} and first.take() == set()
    tracked.update({"d": 4}, e=5)
    tracked |= {"f": 6}
    assert tracked.setdefault("g", 7) == 7 and tracked.setdefault("g", 8) == 7
    assert tracked.popitem() == ("g", 7)
    assert first.take() == {"d", "e", "f", "g"}
    tracked.clear()
    assert first.take() == {"c", "d", "e", "f"} and tracked == {}
    assert second.take() == {"a", "b", "c", "d", "e", "f", "g"}  # each feed has its own keys
    with pytest.raises(KeyError):
        tracked.pop("missing")
    with pytest.raises(KeyError):
        del tracked["missing"]
    assert first.take() == set()  # a failed change is no change


def test_reads_are_the_dicts_and_a_value_changed_in_place_is_not_a_change() -> None:
    tracked: TrackedDict[str, list[int]] = TrackedDict()
    feed = tracked.feed()
    tracked["a"] = [1]
    feed.take()
    tracked["a"].append(2)
    assert feed.take() == set() and tracked.get("a") == [1, 2] and dict(tracked) == {"a": [1, 2]}


def test_keyed_rows_equal_the_section_made_from_scratch_and_keep_unchanged_rows() -> None:
    rng = random.Random(11)
    source: TrackedDict[str, int] = TrackedDict()
    feed = source.feed()
    built: list[str] = []

    def build(key: str, value: int) -> tuple[str, int]:
        built.append(key)
        return (key, value)

    section: KeyedRows[str, int, tuple[str, int]] = KeyedRows(source.get, build)
    last: dict[str, tuple[str, int]] = {}
    for _ in range(400):
        for _ in range(rng.randrange(0, 6)):
            key = f"k{rng.randrange(40):02d}"
            if rng.random() < 0.3:
                source.pop(key, None)
            else:
                source[key] = rng.randrange(3)  # often the value it had: its row is kept
        changed = feed.take()
        built.clear()
        rows = section.rows(changed)
        assert rows == [(key, source[key]) for key in sorted(source)]
        assert section.keys() == sorted(source)
        assert set(built) <= changed  # only changed keys are made again
        for row in rows:
            if row[0] not in built:
                assert row is last[row[0]]  # a row kept is the very object
        last = {row[0]: row for row in rows}
