"""Rows built read-only where they are built, so a snapshot can keep them without copying.

A snapshot crosses from the engine's thread to the console's as a deep read-only copy
(:func:`engine.dashboard.snapshot.freeze`). At a thousand positions the long sections (thousands of
orders, positions and monitors) made that copy most of a refresh's cost, so their rows are built as
read-only mappings instead and the freeze passes them through as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar, cast

R = TypeVar("R", bound=Mapping[str, Any])


def read_only(row: R) -> R:
    """``row`` as a read-only mapping. Only for a dict nothing else holds (the view would follow a
    change to it), and whose values are themselves immutable."""
    return cast(R, MappingProxyType(row))
