"""Events packed into one buffer (controlplane/storage/packed.py): the mapping behaves as a dict
through writes, deletes, index growth and compaction; expiry hands out each due record once,
in deadline order, an out-of-order one included; and the store keeps no object per Event."""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable

import pytest

from controlplane.registry import Registry
from controlplane.storage import Entry, Store
from controlplane.storage.backend import MemoryBackend
from controlplane.storage.packed import COMPACT_MIN, DISORDER, PackedObjects
from ketch.api import timeutil
from ketch.api.selectors import FIELDS_ON_READ
from ketch.v1 import core_pb2
from tests.conftest import eventually

REGISTRY = Registry()


def _entry(key: str, rv: int, data: bytes, labelled: bool = False) -> Entry:
    namespace, _, name = key.rpartition("/")
    return Entry("Event", key, namespace, name, rv, data, {"a": "b"} if labelled else {}, FIELDS_ON_READ)


class _Packed(PackedObjects):
    """Written as a dict, each key's deadline looked up as the store computes it on a write."""

    def __init__(self, deadlines: dict[str, float | None],
                 make: Callable[[str, int, bytes, bool], Entry] | None = None) -> None:
        super().__init__(make or (lambda key, rv, data, labelled: _entry(key, rv, data, labelled)))
        self.deadlines = deadlines

    def __setitem__(self, key: str, entry: Entry) -> None:
        self.put(key, entry, self.deadlines.get(key))


def _packed(deadlines: dict[str, float | None]) -> _Packed:
    return _Packed(deadlines)


def test_the_buffer_is_a_dict_through_writes_deletes_growth_and_compaction() -> None:
    rng = random.Random(7)
    packed = _packed({})
    model: dict[str, tuple[int, bytes]] = {}
    rv = 0
    for _ in range(20_000):
        key = f"ns-{rng.randrange(3)}/ev-{rng.randrange(2_000)}"
        if key in model and rng.random() < 0.4:
            del packed[key]
            del model[key]
        else:
            rv += 1
            data = rng.randbytes(rng.randrange(0, 700))
            packed[key] = _entry(key, rv, data)
            model[key] = (rv, data)
    assert len(packed) == len(model)
    for key, (want_rv, want_data) in model.items():
        got = packed.get(key)
        assert got is not None and (got.rv, got.data, got.key) == (want_rv, want_data, key)
        assert got.namespace == key.split("/")[0] and got.name == key.split("/")[1]
    assert packed.get("ns-0/never") is None and "ns-0/never" not in packed
    assert {k: (e.rv, e.data) for k, e in packed.items()} == model
    assert sorted(e.key for e in packed.values("ns-1/")) == sorted(k for k in model if k.startswith("ns-1/"))
    # Dead records were compacted away as they came to outweigh live ones.
    live = sum(25 + len(k.encode()) + len(d) for k, (_, d) in model.items())
    assert packed.buffer_bytes <= max(2 * live, live + COMPACT_MIN)
    with pytest.raises(KeyError):
        del packed["ns-0/never"]


def test_labels_are_flagged_for_the_reader() -> None:
    seen: list[bool] = []

    def make(key: str, rv: int, data: bytes, labelled: bool) -> Entry:
        seen.append(labelled)
        return _entry(key, rv, data)

    packed = _Packed({}, make)
    packed["d/a"] = _entry("d/a", 1, b"x", labelled=True)
    packed["d/b"] = _entry("d/b", 2, b"y")
    packed.get("d/a")
    packed.get("d/b")
    assert seen == [True, False]


def test_expiry_hands_out_each_due_record_once_in_deadline_order() -> None:
    deadlines: dict[str, float | None] = {}
    packed = _packed(deadlines)

    def write(key: str, rv: int, deadline: float | None) -> None:
        deadlines[key] = deadline
        packed[key] = _entry(key, rv, b"data")

    def expire(now: float, limit: int = 10) -> list[tuple[int, str]]:
        """As the store does: what is due is deleted before the next call."""
        due = packed.due(now, limit)
        for _, key in due:
            del packed[key]
        return due

    write("d/forever", 1, None)  # never due, and does not hold back the ones after it
    write("d/a", 2, 100.0)
    write("d/b", 3, 100.5)
    write("d/c", 4, 101.0)
    write("d/late-writer", 5, 101.0 - DISORDER / 2)  # slightly out of order: waits for the head
    write("d/gone", 6, 101.0)
    del packed["d/gone"]
    write("d/old", 7, 50.0)  # far out of order (an old lastTimestamp): not held back
    write("d/b", 8, 200.0)  # written again: its first deadline is gone
    assert packed.next_deadline() == 50.0
    assert expire(60.0) == [(7, "d/old")]
    assert packed.next_deadline() == 100.0
    assert expire(100.9) == [(2, "d/a")]
    assert expire(101.0, 1) == [(4, "d/c")]  # the limit holds
    assert expire(101.0) == [(5, "d/late-writer")]
    assert expire(150.0) == []
    assert packed.next_deadline() == 200.0
    assert expire(1e9) == [(8, "d/b")]
    assert packed.next_deadline() is None
    assert len(packed) == 1 and packed.get("d/forever") is not None


def test_a_record_handed_out_but_not_deleted_is_handed_out_again_only_from_the_heap_path() -> None:
    """due() itself deletes nothing; a walk never goes back, so a deletion that failed is not
    retried by the walk (as the tick heap drops a key it handed out)."""
    deadlines: dict[str, float | None] = {"d/a": 10.0, "d/b": 20.0}
    packed = _packed(deadlines)
    packed["d/b"] = _entry("d/b", 1, b"")
    packed["d/a"] = _entry("d/a", 2, b"")  # out of order: in the heap too
    assert packed.due(30.0, 10) == [(2, "d/a"), (1, "d/b"), (2, "d/a")]  # the store skips the repeat
    assert packed.due(30.0, 10) == []


def test_compaction_keeps_the_expiry_walk_where_it_was() -> None:
    deadlines: dict[str, float | None] = {}
    packed = _packed(deadlines)
    big = b"x" * 1000
    for i in range(600):
        deadlines[f"d/{i}"] = float(i)
        packed[f"d/{i}"] = _entry(f"d/{i}", i + 1, big)
    assert [k for _, k in packed.due(99.5, 1000)] == [f"d/{i}" for i in range(100)]
    for i in range(100, 500):  # enough dead bytes for a compaction
        del packed[f"d/{i}"]
    assert packed.buffer_bytes < 400 * 1000  # compacted (600 records of 1 KB were written)
    assert packed.due(1e9, 1000) == [(i + 1, f"d/{i}") for i in range(500, 600)]  # the first 100 not again


async def test_the_store_keeps_no_object_per_event_and_expires_them() -> None:
    """Before, each Event was an Entry with its own key, name and bytes objects, for its hour."""
    now = [time.time()]
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read(),
                  packed=REGISTRY.packed(), expiry_of=REGISTRY.expiry_of, clock=lambda: now[0])
    await store.start()
    deleted: list[str] = []
    store.add_listener(lambda events: deleted.extend(e.entry.key for e in events if e.type == "DELETED"))
    gc.collect()
    entries_before = sum(1 for o in gc.get_objects() if isinstance(o, Entry))
    for i in range(2_000):
        ev = core_pb2.Event(type="Normal", reason="Scheduled", message=f"assigned p-{i}")
        ev.metadata.name, ev.metadata.namespace = f"p-{i}.17", "default"
        ev.involved_object.kind, ev.involved_object.name = "Pod", f"p-{i}"
        ev.last_timestamp = timeutil.format(now[0] - (86_400 if i == 7 else 0))  # one a day old
        await store.write("Event", f"default/p-{i}.17", ev, create=True)
    gc.collect()
    assert sum(1 for o in gc.get_objects() if isinstance(o, Entry)) - entries_before < 100
    await eventually(lambda: deleted == ["default/p-7.17"], timeout=15, what="the day-old Event to go at once")
    got = store.get("Event", "default/p-3.17")
    assert got is not None and got.fields is FIELDS_ON_READ
    stored = core_pb2.Event.FromString(got.data)
    assert stored.message == "assigned p-3"
    assert [e.name for e in store.list("Event", "default")][:3] == ["p-0.17", "p-1.17", "p-2.17"]
    # An update is decided against the stored version (compared by rv, not identity).
    ev = core_pb2.Event()
    ev.CopyFrom(stored)
    ev.count = 2
    await store.write("Event", "default/p-3.17", ev, expect_rv=got.rv)
    now[0] += REGISTRY["Event"].ttl + 1  # type: ignore[attr-defined]
    store._expiry_wakeup.set()
    await eventually(lambda: store.count("Event") == 0, timeout=15, what="every Event to expire")
    assert sorted(deleted) == sorted(f"default/p-{i}.17" for i in range(2_000))  # each once
    await store.stop()


async def test_a_restart_packs_events_in_deadline_order_and_expires_them(tmp_path) -> None:
    """The database gives them back by key; expiry walks the buffer in order, so they are
    packed by deadline, and one due meanwhile goes at once."""
    from controlplane.storage.store import open_backend

    def store(expiring: bool) -> Store:
        return Store(open_backend("sqlite", tmp_path), REGISTRY.field_values,
                     parsed_on_read=REGISTRY.parsed_on_read(), packed=REGISTRY.packed(),
                     expiry_of=REGISTRY.expiry_of if expiring else (lambda kind, obj: None))

    ttl = REGISTRY["Event"].ttl  # type: ignore[attr-defined]
    now = time.time()
    ages = {"a": 10.0, "b": 30.0, "c": 20.0, "d": ttl + 5}  # d's hour is already over
    first = store(expiring=False)  # d is still there when it stops
    await first.start()
    for name, age in ages.items():
        ev = core_pb2.Event(type="Normal", reason="R", message=name)
        ev.metadata.name, ev.metadata.namespace = name, "default"
        ev.last_timestamp = timeutil.format(now - age)
        await first.write("Event", f"default/{name}", ev, create=True)
    assert first.count("Event") == 4
    await first.stop()
    second = store(expiring=True)
    await second.start()
    try:
        await eventually(lambda: second.get("Event", "default/d") is None, timeout=15, what="the expired Event to go")
        assert [e.name for e in second.list("Event")] == ["b", "c", "a"]  # oldest first: soonest deadline
    finally:
        await second.stop()
