"""RowMemo: a row is reused while its inputs are equal, rebuilt when they change, forgotten when
its item leaves the section."""

from __future__ import annotations

from engine.core.row_memo import RowMemo


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
