"""TrackedDict: a dict that tells each of its readers which keys were set or removed since it last asked.

A snapshot lists every monitor. At a thousand positions, a pass over two thousand monitors to find the
few that changed since the last refresh cost milliseconds of every build, though the engine knows
which it changed: it replaces a monitor (never changes one in place) by setting its key. A reader
subscribes once (:meth:`TrackedDict.feed`) and takes the keys changed since its last take; the dict's
reads stay the built-in dict's.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING: Any = object()


class KeyFeed(set[K]):
    """The keys of a :class:`TrackedDict` set or removed since the reader last took them (a set the
    dict adds to)."""

    def take(self) -> set[K]:
        """The keys changed since the last take; the feed starts empty again."""
        taken = set(self)
        self.clear()
        return taken


class TrackedDict(dict[K, V]):
    """A dict whose every change (set, delete, pop, clear, update, setdefault) is told to its feeds.

    Only what goes through the dict is seen: a value changed in place is not a change of the dict.
    """

    __slots__ = ("_feeds",)

    def __init__(self, *args: Any, **kwargs: V) -> None:
        super().__init__(*args, **kwargs)
        self._feeds: list[KeyFeed[K]] = []

    def feed(self) -> KeyFeed[K]:
        """A new feed of this dict's changes from now on (the reader reads the dict whole first)."""
        feed: KeyFeed[K] = KeyFeed()
        self._feeds.append(feed)
        return feed

    def _changed(self, key: K) -> None:
        for feed in self._feeds:
            feed.add(key)

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self._changed(key)

    def __delitem__(self, key: K) -> None:
        super().__delitem__(key)
        self._changed(key)

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, default: V, /) -> V: ...
    @overload
    def pop(self, key: K, default: Any, /) -> Any: ...
    def pop(self, key: K, default: Any = _MISSING, /) -> Any:
        if key in self:
            self._changed(key)
            return super().pop(key)
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[K, V]:
        key, value = super().popitem()
        self._changed(key)
        return key, value

    def clear(self) -> None:
        for key in self:
            self._changed(key)
        super().clear()

    def setdefault(self, key: K, default: V = None, /) -> V:  # type: ignore[assignment]
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: V) -> None:
        for key, value in dict(*args, **kwargs).items():  # what dict.update takes, as it takes it
            self[key] = value

    def __ior__(self, other: Any) -> TrackedDict[K, V]:  # type: ignore[override, misc]
        self.update(other)
        return self
