"""The watch window's older events, packed: a record each in anonymous memory maps, no Python
object per event.

The window keeps 75 s of history (kube-apiserver's eventFreshDuration) for watches that resume
from a resourceVersion. Held as objects, each version there costs a WatchEvent, a Version, a
revision int and its bytes: four allocations, three of them small. Under a load of tens of
thousands of pods those small objects are what pymalloc grows its arenas for, and afterwards a
thousand nodes' lease renewals keep every arena the load made (docs/scale.md). Packed, a version
is a marshalled record in a 1 MiB map that goes back to the system whole once all its records
have left the window. Only a replay reads the pack, and it builds the events it needs again;
live watchers are handed the objects at commit, before anything is packed.

What a replayed event keeps of its previous version is what a watcher's filter reads of it (its
labels and fields, and its bytes only for a kind whose fields are read off them): the previous
version says whether the object entered or left the watcher's selection, nothing more.
"""

from __future__ import annotations

import bisect
import marshal
import mmap
from array import array
from collections import deque
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any

from controlplane.storage import WatchEvent
from controlplane.storage.store import Version
from ketch.api.selectors import FIELDS_ON_READ

CHUNK_BYTES = 1 << 20  # one map's size; a larger record gets a map of its own


# A map as a record holds it: None (fields read off the bytes), (number of its key set, values),
# or its items.
Written = tuple[Any, ...] | None
KEY_SETS = 4096  # distinct key sets of labels and fields written once and named by a number


class _Codec:
    """Records and back. A map is written as the number of its key set and its values: a Job's
    pods carry the same label keys and a kind the same field names, so a record does not repeat
    them. The key sets are bounded (an object's labels may use keys no other has); beyond
    KEY_SETS a map is written whole."""

    def __init__(self) -> None:
        self._numbers: dict[tuple[str, ...], int] = {}
        self._key_sets: list[tuple[str, ...]] = []

    def _map(self, m: Mapping[str, str]) -> Written:
        if m is FIELDS_ON_READ:
            return None
        keys = tuple(m)
        number = self._numbers.get(keys)
        if number is None:
            if len(self._key_sets) >= KEY_SETS:
                return tuple(m.items())
            number = self._numbers[keys] = len(self._key_sets)
            self._key_sets.append(keys)
        return number, tuple(m.values())

    def _unmap(self, written: Written) -> Mapping[str, str]:
        if written is None:
            return FIELDS_ON_READ
        if written and isinstance(written[0], int):
            return dict(zip(self._key_sets[written[0]], written[1], strict=True))
        return dict(written)

    def pack(self, event: WatchEvent) -> bytes:
        e, p = event.entry, event.prev
        prev = None
        if p is not None:  # its maps are most often the entry's own (shared while unchanged): True then
            prev = (p.rv, p.data if p.fields is FIELDS_ON_READ else b"",
                    True if p.labels is e.labels else self._map(p.labels),
                    True if p.fields is e.fields else self._map(p.fields))
        return marshal.dumps((event.rev, event.type, e.kind, e.key, e.namespace, e.name, e.rv, e.data,
                              self._map(e.labels), self._map(e.fields), prev))

    def unpack(self, record: bytes) -> WatchEvent:
        rev, type_, kind, key, namespace, name, rv, data, labels, fields, prev = marshal.loads(record)
        labels, fields = self._unmap(labels), self._unmap(fields)
        entry = Version(kind, key, namespace, name, rv, data, labels, fields)
        before = None
        if prev is not None:
            prv, pdata, plabels, pfields = prev
            before = Version(kind, key, namespace, name, prv, pdata,
                             labels if plabels is True else self._unmap(plabels),
                             fields if pfields is True else self._unmap(pfields))
        return WatchEvent(rev, type_, entry, before)


class _Chunk:
    """One map of records in revision order: where each starts, its revision and its kind's
    number (a replay for one kind skips the others' records without building them)."""

    __slots__ = ("buf", "first", "kinds", "revs", "starts", "used")

    def __init__(self, size: int) -> None:
        # Private: shared anonymous memory would be the kernel's shmem, counted apart from the heap.
        self.buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.starts = array("q")
        self.revs = array("q")
        self.kinds = array("H")
        self.used = 0
        self.first = 0  # records before this one have left the window

    def room(self) -> int:
        return len(self.buf) - self.used

    def add(self, rev: int, kind: int, record: bytes) -> None:
        self.starts.append(self.used)
        self.revs.append(rev)
        self.kinds.append(kind)
        self.buf[self.used:self.used + len(record)] = record
        self.used += len(record)

    def record(self, i: int) -> bytes:
        end = self.starts[i + 1] if i + 1 < len(self.starts) else self.used
        return self.buf[self.starts[i]:end]


class PackedEvents:
    """The oldest part of the window, in revision order: appended at the new end, taken from the
    old one."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes
        self._chunks: deque[_Chunk] = deque()
        self._count = 0
        self._codec = _Codec()
        self._kinds: dict[str, int] = {}  # the registry's kinds: a few dozen

    def __len__(self) -> int:
        return self._count

    def append(self, event: WatchEvent) -> None:
        record = self._codec.pack(event)
        chunks = self._chunks
        if not chunks or chunks[-1].room() < len(record):
            chunks.append(_Chunk(max(self.chunk_bytes, len(record))))
        kinds = self._kinds
        kind = kinds.setdefault(event.entry.kind, len(kinds))
        chunks[-1].add(event.rev, kind, record)
        self._count += 1

    def popleft(self) -> int:
        """Let the oldest event go; its revision."""
        chunk = self._chunks[0]
        rev = chunk.revs[chunk.first]
        chunk.first += 1
        self._count -= 1
        if chunk.first == len(chunk.revs):
            self._chunks.popleft()
            chunk.buf.close()  # the map goes back to the system now, not when the GC gets to it
        return rev

    def first_rev(self) -> int:
        chunk = self._chunks[0]
        return chunk.revs[chunk.first]

    def clear(self) -> None:
        for chunk in self._chunks:
            chunk.buf.close()
        self._chunks.clear()
        self._count = 0

    def since(self, rev: int, kind: str | None = None) -> Iterator[WatchEvent]:
        """The events after rev (of one kind, if given), built again from their records."""
        number = -1 if kind is None else self._kinds.get(kind)
        if number is None:
            return
        for chunk in self._chunks:
            revs = chunk.revs
            if revs[-1] <= rev:
                continue
            kinds = chunk.kinds
            for i in range(bisect.bisect_right(revs, rev, chunk.first), len(revs)):
                if number < 0 or kinds[i] == number:
                    yield self._codec.unpack(chunk.record(i))

    def __iter__(self) -> Iterator[WatchEvent]:
        if self._chunks:
            yield from self.since(self.first_rev() - 1)

    def nbytes(self) -> int:
        """The maps' size (for tests of what memory holds)."""
        return sum(len(chunk.buf) for chunk in self._chunks)


def _rev(event: WatchEvent) -> int:
    return event.rev


class Window:
    """The hub's history in revision order: the newest events as the objects the store
    published (a watch resuming after a short break replays them as they are), the older ones
    packed."""

    def __init__(self, hot_events: int) -> None:
        self.hot_events = hot_events
        self.hot: deque[WatchEvent] = deque()
        self.packed = PackedEvents()

    def __len__(self) -> int:
        return len(self.packed) + len(self.hot)

    def append(self, event: WatchEvent) -> None:
        hot = self.hot
        hot.append(event)
        if len(hot) > self.hot_events:
            self.packed.append(hot.popleft())

    def popleft(self) -> int:
        """Let the oldest event go; its revision."""
        if self.packed:
            return self.packed.popleft()
        return self.hot.popleft().rev

    def clear(self) -> None:
        self.hot.clear()
        self.packed.clear()

    def since(self, rev: int, kind: str | None = None) -> list[WatchEvent]:
        """The events after rev (of one kind, if given)."""
        hot = self.hot
        if hot and hot[0].rev <= rev:  # all of them are in the hot part
            first = bisect.bisect_right(hot, rev, key=_rev)
            return [e for e in islice(hot, first, None) if kind is None or e.entry.kind == kind]
        return [*self.packed.since(rev, kind), *(e for e in hot if kind is None or e.entry.kind == kind)]

    def __iter__(self) -> Iterator[WatchEvent]:
        yield from self.packed
        yield from self.hot
