"""The on-disk formats: round trips, and any damaged byte is caught by the checksum."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persistence.codec import (
    SNAPSHOT_FORMAT,
    SNAPSHOT_VERSION,
    CorruptData,
    JournalRecord,
    Op,
    decode_record,
    decode_snapshot,
    encode_record,
    encode_snapshot,
    snapshot_parts,
)
from persistence.reasons import CRITICAL_REASONS, Reason
from persistence.recovery import scan_journal

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def test_reasons_match_the_issue() -> None:
    assert {r.value for r in CRITICAL_REASONS} >= {
        "tp_hit", "sl_hit", "position_closed", "monitor_created", "monitor_removed", "breakeven_moved",
        "phase_change", "emergency", "startup", "shutdown", "trade_recorded",
    }  # fmt: skip
    assert Reason.TP_HIT.critical and not Reason.MONITORING_UPDATE.critical
    assert not any(r.critical for r in (Reason.POSITION_UPDATE, Reason.ORDER_UPDATE, Reason.STATS_UPDATE))


@settings(max_examples=60, deadline=None)
@given(value=json_values, key=st.text(max_size=30), seq=st.integers(1, 2**40))
def test_record_round_trip(value: Any, key: str, seq: int) -> None:
    record = JournalRecord(seq=seq, ts=1.5, reason="tp_hit", key=key, op=Op.SET, value=value)
    line = encode_record(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_record(line) == record


@settings(max_examples=150, deadline=None)
@given(value=json_values, position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_any_changed_byte_is_detected(value: Any, position: int, flip: int) -> None:
    line = encode_record(JournalRecord(seq=7, ts=2.0, reason="sl_hit", key="k", op=Op.SET, value=value))
    damaged = bytearray(line[:-1])
    damaged[position % len(damaged)] ^= flip
    try:
        decoded = decode_record(bytes(damaged))
    except CorruptData:
        return
    # The only way through is a change that decodes to the same record (e.g. \u00e9 vs \u00E9).
    assert decoded == decode_record(line)


def test_snapshot_round_trip_and_damage() -> None:
    data = encode_snapshot({"ledger": {"trades": [1, 2]}, "k": None}, seq=42, ts=3.0)
    snapshot = decode_snapshot(data)
    assert (snapshot.seq, snapshot.state) == (42, {"ledger": {"trades": [1, 2]}, "k": None})
    with pytest.raises(CorruptData):
        decode_snapshot(data[: len(data) // 2])
    with pytest.raises(CorruptData):
        decode_snapshot(data.replace(b'"seq":42', b'"seq":43'))


def test_a_snapshot_made_in_parts_is_the_canonical_sealed_file() -> None:
    """The parts a writer yields between make the file one canonical JSON call would: sorted keys,
    no spaces, the checksum of that text in place of its closing brace."""
    state = {"z\u00e9": [1, {"b": 2, "a": None}], 'q"uote': "\u2603", "a": {"y": -0.5, "x": True}, "m": 3}
    body = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "seq": 7, "ts": 1.5, "state": state}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    expected = (text[:-1] + f',"crc":{zlib.crc32(text.encode())}}}\n').encode()
    parts = list(snapshot_parts(state, seq=7, ts=1.5))
    assert len(parts) == len(state) + 2  # the head, a part per key, the tail and seal
    assert b"".join(parts) == encode_snapshot(state, seq=7, ts=1.5) == expected
    assert decode_snapshot(expected).state == state
    assert b"".join(snapshot_parts({}, seq=1, ts=0.0)) == encode_snapshot({}, seq=1, ts=0.0)


def test_scan_journal_stops_at_the_first_bad_line() -> None:
    lines = [
        encode_record(JournalRecord(seq=n, ts=0.0, reason="tp_hit", key=f"k{n}", op=Op.SET, value=n))
        for n in (1, 2, 3)
    ]
    scan = scan_journal(b"".join(lines))
    assert [r.seq for r in scan.records] == [1, 2, 3] and not scan.damaged
    repeated = scan_journal(lines[0] + lines[1] + lines[1] + lines[2])
    assert [r.seq for r in repeated.records] == [1, 2] and repeated.dropped_lines == 2
    torn = scan_journal(lines[0] + lines[1][:10])
    assert torn.torn_tail_only and torn.valid_bytes == len(lines[0])
