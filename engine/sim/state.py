"""The simulated exchange's own state file: atomic JSON writes, strict reads, RNG state as JSON.

The exchange is the world, not the engine: its file (``sim-exchange.json`` in the state directory)
holds accounts, positions, orders, recent executions, prices and the generators' states, so a restart
continues the same market; ``journal_seq`` names the last record of :mod:`engine.sim.journal` it holds
(the changes after it are replayed from the journal). A file that cannot be read back is an error
(:class:`SimStateError`), never a silently empty exchange. JSON only: nothing that runs code on load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, cast

from engine.core.errors import BadInput
from engine.core.files import write_atomic

STATE_FORMAT = "opconsole-sim-exchange"
STATE_VERSION = 1

IN_THE_WAY = "is a directory, not a file; move it out of the state directory"
"""What a directory where one of the market's files belongs is told (the store says the same)."""
MAX_TIME = 4102444800.0
"""2100-01-01 UTC: a clock time past it (``saved_at: 1e308``) is damage, not a market to continue
(a virtual clock started there never reaches its end)."""
MAX_MAGNITUDE = 1e15
"""No price, size, balance or fee of the simulator comes near it; beyond it the file was crafted."""
MAX_INT = 2**64
"""The random generators' state words are 32-bit; no integer of the file needs more than 64 bits."""
DECIMAL_KEYS = frozenset(
    {"balance", "leverage", "size", "entry", "realised", "qty", "filled", "filled_value"}
)
"""Keys whose strings are Decimals (names and ids are strings too, and may look like numbers)."""
TIME_KEYS = frozenset({"saved_at", "created", "updated", "ts"})
"""Keys that hold a clock time, wherever they are in the file."""


class SimStateError(BadInput):
    """The exchange's state file exists but cannot be used (unreadable, corrupt, wrong format).

    The operator can fix it (move the file away to start a new simulated market), so it is reported
    as bad input, in one line, and the file is left as it is.
    """

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(str(path), what)
        self.path = path


class JsonArray:
    """A JSON array :func:`write_state` writes item by item, taking the items from an iterable as it
    goes: the market's records (thousands of orders at a thousand positions) are made one at a time
    and dropped once written, never held as one tree of dicts beside the text (the tree was four
    times the file's size, and the allocator kept the peak)."""

    __slots__ = ("items",)

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = items


def _chunks(value: Any) -> Iterator[str]:
    """``value`` as compact JSON text in pieces: a :class:`JsonArray` item by item, a dict holding one
    key by key, anything else in one piece."""
    if isinstance(value, JsonArray):
        yield "["
        for n, item in enumerate(value.items):
            if n:
                yield ","
            yield from _chunks(item)
        yield "]"
    elif isinstance(value, dict) and any(isinstance(v, JsonArray) for v in value.values()):
        yield "{"
        for n, (key, item) in enumerate(value.items()):
            yield ("," if n else "") + json.dumps(str(key)) + ":"
            yield from _chunks(item)
        yield "}"
    else:
        yield json.dumps(value, separators=(",", ":"))


def encode_state(state: Mapping[str, Any]) -> bytearray:
    """The state file's bytes: ``state`` with its format and version, as compact JSON (its
    :class:`JsonArray` values as JSON arrays). Each piece is encoded into one buffer as it comes: no
    list of pieces, no whole text beside the bytes."""
    data = bytearray()
    for chunk in _chunks({"format": STATE_FORMAT, "version": STATE_VERSION, **state}):
        data += chunk.encode("utf-8")
    return data


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` (:func:`encode_state`) through :func:`~engine.core.files.write_atomic` (mode
    0600). A reader sees either the previous file or the new one.
    """
    # A bytearray is bytes to write_atomic (it hands it to file.write): bytes(...) would copy the file.
    write_atomic(path, cast(bytes, encode_state(state)))


def read_state(path: Path) -> dict[str, Any]:
    """Read a state file written by :func:`write_state`; raises :class:`SimStateError` when unusable."""
    try:
        raw = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise SimStateError(path, IN_THE_WAY) from None
    except OSError as exc:
        raise SimStateError(path, f"cannot read the simulated exchange's state: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise SimStateError(path, "corrupt simulated exchange state: not UTF-8 text") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SimStateError(path, f"corrupt simulated exchange state: {exc}") from exc
    except RecursionError:
        raise SimStateError(path, "corrupt simulated exchange state: nested too deeply") from None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise SimStateError(path, "not a simulated exchange state file")
    if data.get("version") != STATE_VERSION:
        raise SimStateError(
            path, f"unsupported state version {data.get('version')!r}, expected {STATE_VERSION}"
        )
    problem = state_shape_problem(data)
    if problem:
        raise SimStateError(path, f"corrupt simulated exchange state: {problem}")
    return data


def state_shape_problem(data: Mapping[str, Any]) -> str | None:
    """What is wrong with the shape of a decoded state file, or None (pure).

    The restore code parses the details (and refuses what it cannot parse); this catches what would
    parse and still be absurd: times past :data:`MAX_TIME`, numbers that are not finite or beyond
    :data:`MAX_MAGNITUDE`, containers of the wrong kind.
    """
    expected: dict[str, type | tuple[type, ...]] = {
        "saved_at": (int, float),
        "seed": int,
        "ids": int,
        "rng": list,
        "latency_rng": list,
        "feed": dict,
        "accounts": list,
    }
    for key, kind in expected.items():
        if key not in data:
            return f"{key} is missing"
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            return f"{key} has the wrong type ({type(data[key]).__name__})"
    if not isinstance(data.get("journal_seq", 0), int) or data.get("journal_seq", 0) < 0:
        return "journal_seq is not a sequence number"
    if data["ids"] < 0:
        return "ids is negative"
    if not all(isinstance(raw, dict) for raw in data["feed"].values()):
        return "feed holds an entry that is not an object"
    if not all(isinstance(raw, dict) for raw in data["accounts"]):
        return "accounts holds an entry that is not an object"
    return values_problem(data)


def values_problem(value: Any, key: str = "") -> str | None:
    """The first number (or decimal string under a :data:`DECIMAL_KEYS` key) in ``value`` that is
    not finite, beyond :data:`MAX_MAGNITUDE`, or, under a :data:`TIME_KEYS` key, outside
    [0, :data:`MAX_TIME`] (pure, iterative: a crafted file cannot exhaust the stack)."""
    stack: list[tuple[str, Any]] = [(key, value)]
    while stack:
        name, item = stack.pop()
        if isinstance(item, dict):
            # leverage maps symbols to decimal strings: its values are checked under its own name
            stack.extend((name if name == "leverage" else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((name, v) for v in item)
        elif name in TIME_KEYS and item is not None:
            if isinstance(item, bool) or not isinstance(item, int | float):
                return f"{name} is not a time ({item!r})"
            if not (math.isfinite(item) and 0 <= item <= MAX_TIME):
                return f"{name} is out of range ({item!r})"
        elif isinstance(item, float) and not (math.isfinite(item) and abs(item) <= MAX_MAGNITUDE):
            return f"{name} is out of range ({item!r})"
        elif isinstance(item, int) and abs(item) > MAX_INT:  # float(10**400) would overflow
            return f"{name} is out of range (an integer of {item.bit_length()} bits)"
        elif isinstance(item, str) and name in DECIMAL_KEYS and not _sane_decimal_text(item):
            return f"{name} is out of range ({item!r})"
    return None


def _sane_decimal_text(text: str) -> bool:
    """False for a decimal string that is not finite or absurdly large (what does not parse is
    left to the restore code, which refuses it)."""
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return True
    return number.is_finite() and abs(number) <= Decimal(MAX_MAGNITUDE)


def rng_state_to_json(state: tuple[Any, ...]) -> list[Any]:
    """``random.Random.getstate()`` as JSON: [version, [625 ints], gauss_next]."""
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def rng_state_from_json(data: Any) -> tuple[Any, ...]:
    """Inverse of :func:`rng_state_to_json`, ready for ``random.Random.setstate``."""
    version, internal, gauss_next = data
    return (int(version), tuple(int(x) for x in internal), None if gauss_next is None else float(gauss_next))
