"""The on-disk formats: journal records and snapshots as canonical JSON lines with a CRC-32.

Canonical means sorted keys and no whitespace, so a record re-encodes to exactly the bytes its checksum
covers. The checksum is appended as the last member (``..., "crc": N}``) and verified by removing it
and re-encoding. JSON only, so loading state never runs code.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import chain
from typing import Any

from persistence.errors import UnsupportedSnapshot

SNAPSHOT_FORMAT = "opconsole.state"
SNAPSHOT_VERSION = 1


class CorruptData(ValueError):
    """Bytes that do not decode to a well-formed record or snapshot with a matching checksum."""


class Op(StrEnum):
    """What a journal record does to its key."""

    SET = "set"
    DELETE = "del"
    MARK = "mark"  # a lifecycle marker (startup, shutdown): no state change


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One line of ``journal.jsonl``."""

    seq: int
    ts: float
    reason: str
    key: str
    op: Op
    value: Any = None

    def apply(self, state: dict[str, Any]) -> None:
        """Apply this record to ``state`` in place."""
        if self.op is Op.SET:
            state[self.key] = self.value
        elif self.op is Op.DELETE:
            state.pop(self.key, None)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A decoded ``snapshot.json``: the whole state as of journal sequence ``seq``."""

    seq: int
    ts: float
    state: dict[str, Any]


def canonical(obj: Any) -> str:
    """Canonical JSON text; raises ``TypeError``/``ValueError`` on values JSON cannot carry (NaN too)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _seal(body: dict[str, Any]) -> bytes:
    text = canonical(body)
    crc = zlib.crc32(text.encode())
    return (text[:-1] + f',"crc":{crc}}}\n').encode()


def _unseal(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptData(f"{what} is not valid JSON ({exc})") from None
    except RecursionError:  # a crafted file nested thousands deep
        raise CorruptData(f"{what} is nested too deeply") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("crc"), int):
        raise CorruptData(f"{what} has no checksum")
    crc = doc.pop("crc")
    try:
        actual = zlib.crc32(canonical(doc).encode())
    except (TypeError, ValueError, RecursionError):
        raise CorruptData(f"{what} holds values that are not canonical JSON") from None
    if actual != crc:
        raise CorruptData(f"{what} checksum mismatch")
    return doc


def encode_record(record: JournalRecord) -> bytes:
    """One journal line, newline included."""
    return _seal(
        {
            "seq": record.seq,
            "ts": record.ts,
            "reason": record.reason,
            "key": record.key,
            "op": record.op.value,
            "value": record.value,
        }
    )


def decode_record(line: bytes) -> JournalRecord:
    """Decode one journal line (with or without its newline); raises :class:`CorruptData`."""
    doc = _unseal(line, "journal record")
    try:
        seq, ts, reason, key = doc["seq"], doc["ts"], doc["reason"], doc["key"]
        op = Op(doc["op"])
        value = doc["value"]
    except (KeyError, ValueError):
        raise CorruptData("journal record lacks a field or has an unknown op") from None
    if not (isinstance(seq, int) and seq > 0 and isinstance(ts, int | float) and math.isfinite(ts)):
        raise CorruptData("journal record has a bad seq or ts")
    if not (isinstance(reason, str) and isinstance(key, str)):
        raise CorruptData("journal record has a bad reason or key")
    return JournalRecord(seq=seq, ts=float(ts), reason=reason, key=key, op=op, value=value)


def encode_snapshot(state: dict[str, Any], *, seq: int, ts: float) -> bytes:
    """The whole ``snapshot.json`` file content."""
    return b"".join(snapshot_parts(state, seq=seq, ts=ts))


def snapshot_parts(state: Mapping[str, Any], *, seq: int, ts: float) -> Iterator[bytes]:
    """:func:`encode_snapshot`'s bytes a state key at a time (the same canonical, sealed file), so a
    writer can let its loop run between parts: the state of a thousand positions is 2 MB, 95 ms of
    encoding in one call, during which nothing else on the loop (a fill's decision) could run."""
    body = canonical(
        {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "seq": seq, "ts": ts, "state": {}}
    )
    before, after = body.split('"state":{}', 1)
    crc = 0
    texts = chain(
        [before + '"state":{'],
        (
            ("," if i else "") + canonical(key) + ":" + canonical(state[key])
            for i, key in enumerate(sorted(state))
        ),
    )
    for text in texts:
        data = text.encode()
        crc = zlib.crc32(data, crc)
        yield data
    tail = ("}" + after).encode()  # the seal replaces the body's closing brace with the checksum's
    crc = zlib.crc32(tail, crc)
    yield tail[:-1] + f',"crc":{crc}}}\n'.encode()


def decode_snapshot(data: bytes) -> Snapshot:
    """Decode a snapshot file; :class:`CorruptData` when damaged, ``UnsupportedSnapshot`` when newer."""
    doc = _unseal(data, "snapshot")
    if doc.get("format") != SNAPSHOT_FORMAT:
        raise CorruptData("snapshot has an unknown format tag")
    version = doc.get("version")
    if not isinstance(version, int):
        raise CorruptData("snapshot has no version")
    if version > SNAPSHOT_VERSION:
        raise UnsupportedSnapshot(
            f"snapshot format version {version} is newer than this opconsole supports "
            f"({SNAPSHOT_VERSION}); upgrade opconsole instead of overwriting it"
        )
    seq, ts, state = doc.get("seq"), doc.get("ts"), doc.get("state")
    if not (isinstance(seq, int) and seq >= 0 and isinstance(ts, int | float) and isinstance(state, dict)):
        raise CorruptData("snapshot lacks seq, ts or state")
    if isinstance(ts, bool) or not math.isfinite(ts):
        raise CorruptData("snapshot has a bad ts")
    return Snapshot(seq=seq, ts=float(ts), state=state)
