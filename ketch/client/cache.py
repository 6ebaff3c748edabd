"""The lister cache behind an informer: objects by key, with secondary indexes.

Objects in the cache are shared by every reader: treat them as read-only and copy one before
changing it (`copy_of`).
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ketch import memtrim
from ketch.api.meta import controller_ref, key_of

IndexFunc = Callable[[Any], Iterable[str]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DeletedFinalStateUnknown:
    """Passed to on_delete when a relist found an object gone without seeing its deletion."""

    key: str
    obj: Any


def copy_of(obj: Any) -> Any:
    out = type(obj)()
    out.CopyFrom(obj)
    return out


def resource_version_of(obj: Any) -> int:
    """Ketch's resourceVersions are the store's global revision, so they order all writes."""
    try:
        return int(obj.metadata.resource_version)
    except ValueError:
        return 0


class LastWrites(Generic[T]):
    """Our own last write of each object, kept until the informer cache shows it (or newer).

    A controller that reads its cache right after writing would otherwise act on the state
    before its own write (a Job counting pods twice, a CronJob starting a run twice). Objects
    handed in and out are shared and read-only, like cached ones.
    """

    def __init__(self) -> None:
        self._written: dict[str, T] = {}

    def remember(self, key: str, obj: T) -> None:
        self._written[key] = obj

    def forget(self, key: str) -> None:
        self._written.pop(key, None)

    def latest(self, key: str, cached: T | None) -> T | None:
        """cached, or our write when it is newer than cached (the same object: same uid). An
        object gone from the cache is gone: None, and our write is forgotten."""
        written = self._written.get(key)
        if written is None:
            return cached
        if cached is None:
            del self._written[key]
            return None
        if (written.metadata.uid == cached.metadata.uid  # type: ignore[attr-defined]
                and resource_version_of(written) > resource_version_of(cached)):
            return written
        del self._written[key]  # the cache has it (or a newer object of the name)
        return cached

    def __len__(self) -> int:
        return len(self._written)


def by_namespace(obj: Any) -> list[str]:
    return [obj.metadata.namespace]


def by_controller_uid(obj: Any) -> list[str]:
    for ref in obj.metadata.owner_references:
        if ref.HasField("controller") and ref.controller:
            return [ref.uid]
    return []


def by_owner_uid(obj: Any) -> list[str]:
    return [ref.uid for ref in obj.metadata.owner_references]


NODE_NAME_INDEX = "nodeName"


def by_node_name(obj: Any) -> list[str]:
    """Pods by the node they are bound to (controllers that act per node)."""
    return [obj.spec.node_name] if obj.spec.node_name else []


ORPHANS_BY_NAMESPACE_INDEX = "orphansByNamespace"


def orphans_by_namespace(obj: Any) -> list[str]:
    """Objects no controller owns, by namespace: what a controller may adopt (Job, DaemonSet)."""
    return [obj.metadata.namespace] if controller_ref(obj) is None else []


STANDARD_INDEXERS: dict[str, IndexFunc] = {
    "namespace": by_namespace,
    "controller": by_controller_uid,
    "owner": by_owner_uid,
}


# What one index function gave for one object, as kept: () for none, the value itself for one
# (most: a namespace, a uid, a node), a tuple for several. A tuple per object and index was
# ~50 bytes each of a pod's ~seven.
_Given = tuple[str, ...] | str


def _given(values: Iterable[str]) -> _Given:
    """Interned, so that a value is one string across objects and indexes (a Job's uid on each
    of its pods, a pod's uid under several indexes), not a new one per read of the message."""
    kept = tuple(map(sys.intern, values))
    return kept[0] if len(kept) == 1 else kept


def _each(given: _Given) -> tuple[str, ...]:
    return (given,) if isinstance(given, str) else given


def _add(index: dict[str, str | set[str]], k: str, v: str) -> None:
    keys = index.get(v)
    if keys is None:
        index[v] = k
    elif isinstance(keys, str):
        if keys != k:
            index[v] = {keys, k}
    else:
        keys.add(k)


def _drop(index: dict[str, str | set[str]], k: str, values: Iterable[str]) -> None:
    for v in values:
        keys = index.get(v)
        if keys is None:
            continue
        if isinstance(keys, str):
            if keys == k:
                del index[v]
        else:
            keys.discard(k)
            if not keys:
                del index[v]


class Indexer(Generic[T]):
    """Objects of one kind by key (items shared and read-only), with secondary indexes.

    An index maps a value to the key of the one object that has it, or to the set of keys when
    several do: most values are one object's own (a uid, a node with one pod), and a set per
    object was the biggest part of what indexing cost.
    """

    def __init__(self, indexers: dict[str, IndexFunc] | None = None) -> None:
        self.indexers: dict[str, IndexFunc] = dict(indexers or {})
        self.items: dict[str, T] = {}
        self.indices: dict[str, dict[str, str | set[str]]] = {name: {} for name in self.indexers}
        self._layout()
        # key -> the values each index function gave for the cached object (in indexer order):
        # an update compares against these instead of calling the functions on the old object
        # again, and touches the indexes only where a value changed (for most updates, nowhere).
        self._values: dict[str, tuple[_Given, ...]] = {}

    def _layout(self) -> None:
        self._fns = tuple(self.indexers.values())
        self._index_list = tuple(self.indices[name] for name in self.indexers)

    def add_indexer(self, name: str, fn: IndexFunc) -> None:
        """Index the cache by fn under name. Controllers share informers, so registering the same
        function again is a no-op; another function under a taken name is refused, as client-go's
        AddIndexers refuses an indexer conflict (one would silently answer for the other)."""
        current = self.indexers.get(name)
        if current is fn:
            return
        if current is not None:
            raise ValueError(f"indexer conflict: an index named {name!r} already exists")
        self.indexers[name] = fn
        index: dict[str, str | set[str]] = {}
        for k, obj in self.items.items():
            given = _given(fn(obj))
            self._values[k] += (given,)
            for v in _each(given):
                _add(index, k, v)
        self.indices[name] = index
        self._layout()

    def upsert(self, obj: T) -> T | None:
        k = sys.intern(key_of(obj))  # one string per object however many indexes name it
        old = self.items.get(k)
        self.items[k] = obj
        current = tuple([_given(fn(obj)) for fn in self._fns])
        previous = self._values.get(k)
        if previous != current:
            for i, index in enumerate(self._index_list):
                given = current[i]
                before = previous[i] if previous is not None else ()
                if given == before:
                    continue
                _drop(index, k, _each(before))
                for v in _each(given):
                    _add(index, k, v)
        self._values[k] = current
        return old

    def remove(self, k: str) -> T | None:
        old = self.items.pop(k, None)
        previous = self._values.pop(k, None)
        if previous is not None:
            for index, given in zip(self._index_list, previous, strict=True):
                _drop(index, k, _each(given))
        memtrim.release_if_emptied(self.items)
        memtrim.release_if_emptied(self._values)
        return old

    def get(self, k: str) -> T | None:
        return self.items.get(k)

    def get_by(self, namespace: str, name: str) -> T | None:
        return self.items.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[T]:
        return list(self.items.values())

    def keys(self) -> builtins.list[str]:
        return list(self.items)

    def by_index(self, name: str, value: str) -> builtins.list[T]:
        keys = self.indices[name].get(value)
        if keys is None:
            return []
        items = self.items
        if isinstance(keys, str):
            return [items[keys]]
        return [items[k] for k in keys]

    def __len__(self) -> int:
        return len(self.items)
