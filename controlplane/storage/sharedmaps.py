"""One read-only labels or fields map per distinct content, shared by every stored version that
has it.

The watch window keeps every version of every object for 75 s, and each version carries the
maps selectors read (its labels, its selectable fields). Most are the same across objects: a
Job's thousands of pods carry the same four labels, and the pods on one node in one phase the
same fields. Kept once per content instead of once per object, they stop being a large share of
what a big Job costs in memory (and of the allocator's arenas that stay after it is gone).
"""

from __future__ import annotations

import itertools
import sys
import weakref
from collections.abc import Iterable, Mapping


class SharedMap(dict[str, str]):
    """A map the pool hands out: never mutated, as every holder sees the same one."""

    __slots__ = ("__weakref__",)


EMPTY: Mapping[str, str] = SharedMap()


class MapPool:
    """Maps by content, held weakly: one goes when the last version holding it does."""

    def __init__(self) -> None:
        self._maps: weakref.WeakValueDictionary[tuple[str, ...], SharedMap] = weakref.WeakValueDictionary()

    def get(self, items: Iterable[tuple[str, str]]) -> Mapping[str, str]:
        """The shared map of these items (keys and values interned: they repeat across maps)."""
        pairs = sorted((sys.intern(k), sys.intern(v)) for k, v in items)
        if not pairs:
            return EMPTY
        content = tuple(itertools.chain.from_iterable(pairs))
        shared = self._maps.get(content)
        if shared is None:
            shared = SharedMap(pairs)
            self._maps[content] = shared
        return shared

    def __len__(self) -> int:
        return len(self._maps)
