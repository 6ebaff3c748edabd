"""The watch window's packed history replays exactly what the published objects would, and holds
no object per event: a watch that resumes from any resourceVersion, with any selector, gets the
same events, types and bytes from a window that packed everything as from one that packed
nothing; the maps go back once their events have left the window."""

from __future__ import annotations

import gc
import random

import pytest

from controlplane.apiserver.watch import Filter, WatchHub
from controlplane.registry import Registry
from controlplane.storage import Store, WatchEvent
from controlplane.storage.backend import MemoryBackend
from ketch.api import errors
from ketch.api.selectors import parse_field_selector, parse_label_selector
from ketch.v1 import coordination_pb2, core_pb2

REGISTRY = Registry()
POD_FIELDS = frozenset({"spec.nodeName", "status.phase", "metadata.name"})
EVENT_FIELDS = frozenset({"involvedObject.name", "reason"})


def _pod(name: str, namespace: str, app: str, phase: str, node: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, namespace
    pod.metadata.labels["app"] = app
    pod.spec.containers.add(name="c", command=["sleep", "1"])
    pod.spec.node_name, pod.status.phase = node, phase
    return pod


def _event(name: str, about: str, reason: str) -> core_pb2.Event:
    ev = core_pb2.Event(type="Normal", reason=reason, message=f"{reason} {about}")
    ev.metadata.name, ev.metadata.namespace = name, "default"
    ev.involved_object.kind, ev.involved_object.name = "Pod", about
    return ev


def _lease(i: int) -> coordination_pb2.Lease:
    lease = coordination_pb2.Lease()
    lease.metadata.name, lease.metadata.namespace = "node-1", "kube-node-lease"
    lease.spec.holder_identity, lease.spec.renew_time = "node-1", f"2026-12-07T00:{i // 60:02d}:{i % 60:02d}.000000Z"
    return lease


async def _churn(store: Store, seed: int, writes: int) -> None:
    """Creates, relabels, binds, phase changes and deletes of pods in two namespaces, Events
    (whose fields are read off their bytes) and a Lease, in a random order."""
    rng = random.Random(seed)
    live: dict[str, tuple[str, str]] = {}
    events: set[str] = set()
    lease_made = False
    for i in range(writes):
        roll = rng.random()
        if roll < 0.6:
            ns, name = rng.choice(("default", "other")), f"p-{rng.randrange(15)}"
            key = f"{ns}/{name}"
            pod = _pod(name, ns, rng.choice(("a", "b")), rng.choice(("Pending", "Running", "Succeeded")),
                       rng.choice(("", "n1", "n2")))
            if key in live and rng.random() < 0.3:
                await store.write("Pod", key, None)
                del live[key]
            else:
                await store.write("Pod", key, pod, create=key not in live)
                live[key] = (ns, name)
        elif roll < 0.85:
            name = f"e-{rng.randrange(6)}"
            key = f"default/{name}"
            if key in events and rng.random() < 0.3:
                await store.write("Event", key, None)
                events.discard(key)
            else:
                about, reason = f"p-{rng.randrange(3)}", rng.choice(("Started", "Killing"))
                await store.write("Event", key, _event(name, about, reason), create=key not in events)
                events.add(key)
        else:
            await store.write("Lease", "kube-node-lease/node-1", _lease(i), create=not lease_made)
            lease_made = True


def _filters() -> list[tuple[str, Filter]]:
    def f(kind: str, ns: str, labels: str, fields: str, allowed: frozenset[str]) -> tuple[str, Filter]:
        return kind, Filter(ns, parse_label_selector(labels), parse_field_selector(fields, allowed),
                            REGISTRY.selected_fields)

    return [
        f("Pod", "", "", "", POD_FIELDS),
        f("Pod", "default", "", "", POD_FIELDS),
        f("Pod", "", "app=a", "", POD_FIELDS),
        f("Pod", "other", "app!=a", "", POD_FIELDS),
        f("Pod", "", "", "spec.nodeName=n1", POD_FIELDS),
        f("Pod", "", "app=b", "status.phase!=Succeeded", POD_FIELDS),
        f("Event", "", "", "", EVENT_FIELDS),
        f("Event", "default", "", "involvedObject.name=p-1", EVENT_FIELDS),
        f("Lease", "", "", "", frozenset()),
    ]


async def _replay(hub: WatchHub, kind: str, match: Filter, rev: int) -> list[tuple[str, str, int, bytes]]:
    w = hub.watch(kind, match, rev)
    batch = await w.next_batch(0) or []
    w.close()
    return [(t, v.key, v.rv, v.data) for t, v, _ in batch]


async def test_a_replay_from_the_pack_is_the_replay_from_the_objects() -> None:
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    start = store.revision
    objects = WatchHub(store, hot_events=1_000_000)
    packed = WatchHub(store, hot_events=0)
    mixed = WatchHub(store, hot_events=37)
    for hub in (packed, mixed):
        hub.window.packed.chunk_bytes = 8192  # many maps, each filled, taken and closed
    await _churn(store, seed=15, writes=600)
    assert len(packed.window.hot) == 0 and len(packed.window.packed) == len(objects.window) == store.revision - start
    assert len(packed.window.packed._chunks) > 10
    compared = 0
    for rev in range(start, store.revision + 1, 3):
        for kind, match in _filters():
            want = await _replay(objects, kind, match, rev)
            assert await _replay(packed, kind, match, rev) == want, (rev, kind)
            assert await _replay(mixed, kind, match, rev) == want, (rev, kind)
            compared += len(want)
    assert compared > 10_000  # the churn gave every filter something to see
    await store.stop()


async def test_the_pack_holds_no_object_per_event_and_gives_its_maps_back() -> None:
    now = [0.0]
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    hub = WatchHub(store, clock=lambda: now[0], fresh=75.0, min_window=5, hot_events=5)
    hub.window.packed.chunk_bytes = 16384
    for i in range(300):
        await store.write("Lease", "kube-node-lease/node-1", _lease(i), create=i == 0)
    gc.collect()
    alive = sum(1 for o in gc.get_objects() if type(o) is WatchEvent)
    assert len(hub.window) == 300 and alive <= 5, alive  # the hot five; the store's own event is gone
    assert hub.window.packed.nbytes() > 0
    first_kept = hub.window_start
    now[0] += 100.0  # all of it is stale: the next commit lets it go but for the floor
    await store.write("Lease", "kube-node-lease/node-1", _lease(300))
    assert len(hub.window) == 5 and hub.window.packed.nbytes() == 0 and hub.window_start > first_kept
    with pytest.raises(errors.Gone):
        hub.watch("Lease", Filter("", parse_label_selector(""), ()), first_kept)
    w = hub.watch("Lease", Filter("", parse_label_selector(""), ()), hub.window_start)
    batch = await w.next_batch(0)
    assert batch is not None and [rv for _, _, rv in batch] == list(range(hub.window_start + 1, store.revision + 1))
    await store.stop()


async def test_labels_with_keys_beyond_the_bounded_table_are_written_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """An object may carry label keys no other has: the table of key sets stays bounded, and a
    map past it is still replayed as it was."""
    from controlplane.apiserver import watchpack

    monkeypatch.setattr(watchpack, "KEY_SETS", 2)
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    hub = WatchHub(store, hot_events=0)
    for i in range(6):
        pod = _pod(f"p-{i}", "default", "a", "Pending", "")
        pod.metadata.labels[f"only-{i}"] = "yes"
        await store.write("Pod", f"default/p-{i}", pod, create=True)
    assert len(hub.window.packed._codec._key_sets) == 2
    for i in range(6):
        w = hub.watch("Pod", Filter("", parse_label_selector(f"only-{i}=yes,app=a"), ()), hub.window_start)
        batch = await w.next_batch(0)
        assert batch is not None and [v.name for _, v, _ in batch] == [f"p-{i}"]
        assert batch[0][1].labels == {"app": "a", f"only-{i}": "yes"}
    await store.stop()
