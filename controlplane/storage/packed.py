"""One kind's objects packed into one buffer: how the store keeps Events.

An hour of Events is the most numerous thing the store holds, and kept as Python objects (an
entry, its key, name, bytes and revision: five small allocations each) they outlive the pods
they tell of, scattered through pymalloc's pools among the pods' freed objects (80 s after a
10,000-pod Job was deleted, they alone held hundreds of pools). Packed, an object costs
its bytes and a 25-byte header in one growing buffer, and 16 to 32 bytes of index; a read builds
its Entry when asked (kube-apiserver keeps no cache of Events at all: it reads them from etcd).

Records are appended in write order. One written over or deleted is marked dead in place, and
the buffer is compacted when its dead bytes outweigh the live ones. Expiry walks the buffer from
its head, since deadlines follow write order (an Event goes --event-ttl after its last write);
a record whose deadline is more than DISORDER before the latest one yet is also put in a small
heap, so that it is not held back behind records that expire later.
"""

from __future__ import annotations

import heapq
import math
import struct
from array import array
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Entry

# rv (0: dead), deadline (NaN: none), key length, data length, labelled (the object has labels)
_HEADER = struct.Struct("<qdIIB")
_RV = struct.Struct("<q")
_EMPTY = -1  # an index slot never used
_GONE = -2  # an index slot whose record was deleted (probing goes on past it)
DISORDER = 1.0  # seconds a deadline may be out of write order and still wait for the head
COMPACT_MIN = 256 * 1024  # dead bytes below this are never worth a compaction

MakeEntry = Callable[[str, int, bytes, bool], "Entry"]  # (key, rv, data, labelled)


class PackedObjects:
    """A mapping of key -> Entry (get, put, del, len, values, items) over one buffer. Entries
    read from it are built anew on each read: compare versions by rv, never by identity."""

    def __init__(self, make_entry: MakeEntry) -> None:
        self._make = make_entry
        self._buf = bytearray()
        self._slots = array("q", [_EMPTY]) * 8  # open addressing, linear probing: offsets
        self._live = 0
        self._gone_slots = 0
        self._dead_bytes = 0
        self._head = 0  # where expiry's walk goes on from (a record boundary)
        self._latest_deadline = -math.inf
        self._early: list[tuple[float, str]] = []  # out-of-order deadlines

    def __len__(self) -> int:
        return self._live

    def __contains__(self, key: str) -> bool:
        return self._find(key, key.encode())[1] >= 0

    @property
    def buffer_bytes(self) -> int:
        """Bytes the records take, dead ones included (for tests and accounting)."""
        return len(self._buf)

    # -- index -------------------------------------------------------------------------------

    def _find(self, key: str, kb: bytes) -> tuple[int, int]:
        """(slot, offset) of key's record, or (the slot a new record would take, -1)."""
        slots, buf = self._slots, self._buf
        mask = len(slots) - 1
        i = hash(key) & mask
        free = -1
        while True:
            off = slots[i]
            if off == _EMPTY:
                return (free if free >= 0 else i), -1
            if off == _GONE:
                if free < 0:
                    free = i
            else:
                _, _, klen, _, _ = _HEADER.unpack_from(buf, off)
                start = off + _HEADER.size
                if klen == len(kb) and buf[start:start + klen] == kb:
                    return i, off
            i = (i + 1) & mask

    def _reindex(self) -> None:
        """A new index, a quarter full, over the live records (after growth or compaction)."""
        size = 8
        while size < 4 * self._live:
            size *= 2
        slots = array("q", [_EMPTY]) * size
        mask = size - 1
        for off, _, _, key in self._records(0):
            i = hash(key) & mask
            while slots[i] != _EMPTY:
                i = (i + 1) & mask
            slots[i] = off
        self._slots = slots
        self._gone_slots = 0

    def _records(self, start: int, prefix: bytes = b"") -> Iterator[tuple[int, int, float, str]]:
        """(offset, rv, deadline, key) of each live record from start on whose key starts with
        prefix."""
        buf = self._buf
        off = start
        while off < len(buf):
            rv, deadline, klen, dlen, _ = _HEADER.unpack_from(buf, off)
            key_at = off + _HEADER.size
            if rv and buf.startswith(prefix, key_at, key_at + klen):
                yield off, rv, deadline, buf[key_at:key_at + klen].decode()
            off += _HEADER.size + klen + dlen

    # -- reads -------------------------------------------------------------------------------

    def _entry_at(self, off: int) -> Entry:
        buf = self._buf
        rv, _, klen, dlen, labelled = _HEADER.unpack_from(buf, off)
        key_at = off + _HEADER.size
        data_at = key_at + klen
        return self._make(buf[key_at:data_at].decode(), rv, bytes(buf[data_at:data_at + dlen]), bool(labelled))

    def get(self, key: str, default: Entry | None = None) -> Entry | None:
        off = self._find(key, key.encode())[1]
        return self._entry_at(off) if off >= 0 else default

    def values(self, prefix: str = "") -> Iterator[Entry]:
        """The entries in write order; with prefix, only those whose key starts with it (one
        namespace's: "ns/"), the others not built."""
        for off, _, _, _ in self._records(0, prefix.encode()):
            yield self._entry_at(off)

    def items(self) -> Iterator[tuple[str, Entry]]:
        for entry in self.values():
            yield entry.key, entry

    # -- writes ------------------------------------------------------------------------------

    def put(self, key: str, entry: Entry, deadline: float | None) -> None:
        """Set key to entry, which expires at deadline (None: never)."""
        kb = key.encode()
        slot, old = self._find(key, kb)
        if old >= 0:
            self._kill(old)
        else:
            if self._slots[slot] == _GONE:
                self._gone_slots -= 1
            self._live += 1
        off = len(self._buf)
        self._buf += _HEADER.pack(entry.rv, math.nan if deadline is None else deadline, len(kb), len(entry.data),
                                  bool(entry.labels))
        self._buf += kb
        self._buf += entry.data
        self._slots[slot] = off
        if deadline is not None:
            if deadline < self._latest_deadline - DISORDER:
                heapq.heappush(self._early, (deadline, key))
            else:
                self._latest_deadline = max(self._latest_deadline, deadline)
        if 2 * (self._live + self._gone_slots) > len(self._slots):
            self._reindex()
        self._maybe_compact()

    def __delitem__(self, key: str) -> None:
        slot, off = self._find(key, key.encode())
        if off < 0:
            raise KeyError(key)
        self._kill(off)
        self._slots[slot] = _GONE
        self._gone_slots += 1
        self._live -= 1
        self._maybe_compact()

    def _kill(self, off: int) -> None:
        _, _, klen, dlen, _ = _HEADER.unpack_from(self._buf, off)
        _RV.pack_into(self._buf, off, 0)
        self._dead_bytes += _HEADER.size + klen + dlen

    def _maybe_compact(self) -> None:
        if self._dead_bytes < COMPACT_MIN or 2 * self._dead_bytes < len(self._buf):
            return
        old, head = self._buf, self._head
        buf = bytearray()
        new_head = -1
        off = 0
        view = memoryview(old)
        while off < len(old):
            if off == head:
                new_head = len(buf)
            rv, _, klen, dlen, _ = _HEADER.unpack_from(old, off)
            size = _HEADER.size + klen + dlen
            if rv:
                buf += view[off:off + size]
            off += size
        view.release()
        self._buf = buf
        self._head = new_head if new_head >= 0 else len(buf)
        self._dead_bytes = 0
        self._reindex()

    # -- expiry ------------------------------------------------------------------------------

    def _skip_head(self) -> None:
        """Move the head past records that will never expire (dead, or without a deadline)."""
        buf = self._buf
        while self._head < len(buf):
            rv, deadline, klen, dlen, _ = _HEADER.unpack_from(buf, self._head)
            if rv and not math.isnan(deadline):
                return
            self._head += _HEADER.size + klen + dlen

    def next_deadline(self) -> float | None:
        """The soonest deadline not yet handed out by due(), or None."""
        self._skip_head()
        soonest = self._early[0][0] if self._early else None
        if self._head < len(self._buf):
            deadline = _HEADER.unpack_from(self._buf, self._head)[1]
            soonest = deadline if soonest is None else min(soonest, deadline)
        return soonest

    def due(self, now: float, limit: int) -> list[tuple[int, str]]:
        """Up to limit (rv, key) whose deadline has come, each handed out once (the same
        record may come twice, from the heap and the walk: the caller skips repeats)."""
        out: list[tuple[int, str]] = []
        while self._early and self._early[0][0] <= now and len(out) < limit:
            deadline, key = heapq.heappop(self._early)
            off = self._find(key, key.encode())[1]
            if off >= 0:
                rv, current, _, _, _ = _HEADER.unpack_from(self._buf, off)
                if current == deadline:
                    out.append((rv, key))
        buf = self._buf
        while self._head < len(buf) and len(out) < limit:
            rv, deadline, klen, dlen, _ = _HEADER.unpack_from(buf, self._head)
            if rv and not math.isnan(deadline):
                if deadline > now:
                    break
                key_at = self._head + _HEADER.size
                out.append((rv, buf[key_at:key_at + klen].decode()))
            self._head += _HEADER.size + klen + dlen
        return out
