"""Deterministic orderLinkIds: ``opc-<tag>-<monitor>-<slot>-<generation>``, at most 36 characters.

The same (monitor, slot, generation) always gives the same id, so a retry or a restart that sends an
order again is refused by the venue as a duplicate instead of doubling it. ``tag`` names the engine
instance (one per state directory): an id with our prefix but another tag means another process is
trading the account.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
import string
from dataclasses import dataclass

PREFIX = "opc"
MAX_LEN = 36
_TAG_ALPHABET = string.ascii_lowercase + string.digits
_PATTERN = re.compile(r"^opc-([a-z0-9]{4})-([0-9a-f]{8})-(e\d|tp\d|sl|cl)-(\d{1,6})$")


@dataclass(frozen=True, slots=True)
class LinkId:
    """A parsed link id of ours."""

    tag: str
    monitor_id: str
    slot: str
    generation: int

    def __str__(self) -> str:
        return make_link_id(self.tag, self.monitor_id, self.slot, self.generation)


def make_link_id(tag: str, monitor_id: str, slot: str, generation: int) -> str:
    """The orderLinkId of a monitor's order slot in a generation."""
    text = f"{PREFIX}-{tag}-{monitor_id}-{slot}-{generation}"
    if len(text) > MAX_LEN or not _PATTERN.match(text):
        raise ValueError(f"bad link id parts: {text!r}")
    return text


@functools.lru_cache(maxsize=1 << 15)
def parse_link_id(text: str) -> LinkId | None:
    """The parts of one of our link ids, or None for anything else (manual orders, other tools).

    Cached: every reconciliation pass reads the same few thousand open orders' ids again (the
    result is immutable; the bound holds the ids of a thousand positions' orders several times)."""
    match = _PATTERN.match(text or "")
    if match is None:
        return None
    return LinkId(match[1], match[2], match[3], int(match[4]))


def other_instance_tag(link_id: str, tag: str) -> str | None:
    """The tag of the other engine instance an order or fill belongs to, or None.

    An id with our prefix and a tag other than ``tag`` (this instance's) is another process trading
    the account with this same code: its orders are never ours to cancel, its fills never ours to
    apply, its positions never ours to adopt. None for our own ids and for ids of no engine (manual
    orders, other tools: those are still ours to adopt and account)."""
    parsed = parse_link_id(link_id)
    return parsed.tag if parsed is not None and parsed.tag != tag else None


def new_monitor_id(key: str, created_at: float, seq: int) -> str:
    """An 8-hex-digit id for a new monitor: a hash of its key, creation time and a counter."""
    material = f"{key}|{round(created_at * 1000)}|{seq}".encode()
    return hashlib.blake2b(material, digest_size=4).hexdigest()


def new_instance_tag(rng: random.Random) -> str:
    """A 4-character instance tag drawn from the given (seeded in simulation) generator."""
    return "".join(rng.choice(_TAG_ALPHABET) for _ in range(4))


def purpose_of(link_id: str) -> str | None:
    """The snapshot's ``purpose`` of an order: entry, tp1..tpN, sl, close, or None if not ours."""
    parsed = parse_link_id(link_id)
    if parsed is None:
        return None
    if parsed.slot.startswith("e"):
        return "entry"
    if parsed.slot == "cl":
        return "close"
    return parsed.slot
