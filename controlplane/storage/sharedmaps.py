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
from collections.abc import Callable, Iterable, Mapping
from typing import NoReturn


class SharedMap(dict[str, str]):
    """A map the pool hands out, read-only: every holder sees the same one. Reads are a dict's
    own; writes raise (`dict(shared)` is a copy to change)."""

    __slots__ = ("__weakref__",)

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a shared labels or fields map is read-only: copy it to change it")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = __ior__ = _read_only


EMPTY: Mapping[str, str] = SharedMap()


class MapPool:
    """Maps by content, held weakly: one goes when the last version holding it does."""

    def __init__(self) -> None:
        self._refs: dict[tuple[str, ...], weakref.ref[SharedMap]] = {}

    def get(self, items: Iterable[tuple[str, str]]) -> Mapping[str, str]:
        """The shared map of these items (its keys and values interned: they repeat across maps)."""
        pairs = sorted(items)
        if not pairs:
            return EMPTY
        content = tuple(itertools.chain.from_iterable(pairs))
        ref = self._refs.get(content)
        if ref is not None:
            shared = ref()
            if shared is not None:
                return shared
        intern = sys.intern
        kept = [(intern(k), intern(v)) for k, v in pairs]
        shared = SharedMap(kept)
        content = tuple(itertools.chain.from_iterable(kept))  # the key shares the map's strings
        self._refs[content] = weakref.ref(shared, self._forget_when_gone(content))
        return shared

    def _forget_when_gone(self, content: tuple[str, ...]) -> Callable[[weakref.ref[SharedMap]], None]:
        refs = self._refs

        def forget(gone: weakref.ref[SharedMap]) -> None:
            if refs.get(content) is gone:  # not a newer map of the same content
                del refs[content]

        return forget

    def __len__(self) -> int:
        return len(self._refs)
