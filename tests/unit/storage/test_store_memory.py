"""What the store and the watch window keep alive under churn: bytes, not parsed messages.

A parsed message costs several KB (ten times its bytes). The watch window holds the last
50,000 events; before, each held the full Entries of the new and previous version, so a
create+delete churn kept three parsed pods alive per pair until the events left the window,
and every Event object (one per unschedulable pod, kept an hour) stayed parsed in the store.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable

import pytest
from google.protobuf.message import Message

from controlplane.apiserver.watch import WatchHub
from controlplane.registry import Registry
from controlplane.storage import Entry, Store
from controlplane.storage.backend import MemoryBackend
from ketch.api.selectors import FIELDS_ON_READ
from ketch.v1 import core_pb2
from tests.conftest import eventually

REGISTRY = Registry()


def _pod(name: str) -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.metadata.labels["app"] = "churn"
    pod.spec.containers.add(name="c", command=["true"])
    return pod


async def test_the_watch_window_keeps_no_parsed_objects_of_churned_pods() -> None:
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    hub = WatchHub(store)
    for i in range(200):
        key = f"default/p-{i}"
        await store.write("Pod", key, _pod(f"p-{i}"), create=True)
        pod = _pod(f"p-{i}")
        pod.status.phase = "Pending"
        await store.write("Pod", key, pod)
        await store.write("Pod", key, None)
    assert len(hub.window) == 600
    holding = [ev for ev in hub.window
               if any(isinstance(v, Entry) and v.holds_parsed for v in (ev.entry, ev.prev))]
    assert not holding, f"{len(holding)} window events hold parsed objects"
    # What a watcher needs is all there: replay from the start sees every change, filtered.
    from controlplane.apiserver.watch import Filter
    from ketch.api.selectors import parse_label_selector

    w = hub.watch("Pod", Filter("default", parse_label_selector("app=churn"), ()), 0)
    batch = await w.next_batch(0)
    assert batch is not None
    assert [t for t, _, _ in batch] == ["ADDED", "MODIFIED", "DELETED"] * 200
    assert core_pb2.Pod.FromString(batch[-1][1].data).metadata.name == "p-199"
    await store.stop()


async def test_events_are_kept_as_bytes_and_parsed_when_read() -> None:
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    ev = core_pb2.Event(type="Warning", reason="FailedScheduling", message="no nodes")
    ev.metadata.name, ev.metadata.namespace = "p.1", "default"
    ev.involved_object.kind, ev.involved_object.name = "Pod", "p"
    await store.write("Event", "default/p.1", ev, create=True)
    entry = store.get("Event", "default/p.1")
    assert entry is not None
    assert entry._obj is None  # no parsed message held between writes
    assert entry.fields is FIELDS_ON_READ  # no field values held either
    assert REGISTRY.selected_fields("Event", entry.data)["involvedObject.name"] == "p"  # read off the bytes
    assert entry._obj is None
    assert entry.obj.reason == "FailedScheduling"  # parsed on read
    assert entry.obj.metadata.resource_version == str(entry.rv)
    await store.stop()


async def test_the_window_lets_deleted_pods_go_after_the_fresh_period() -> None:
    """10,000 deleted pods' versions stayed in memory until 50,000 newer events pushed them out;
    as kube-apiserver's watch cache, the window keeps a bounded age of history beyond a floor."""
    import pytest

    from controlplane.apiserver.watch import Filter
    from ketch.api import errors
    from ketch.api.selectors import parse_label_selector

    now = [1000.0]
    dropped: list[int] = []
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    hub = WatchHub(store, clock=lambda: now[0], fresh=75.0, min_window=10, on_dropped=dropped.append)
    for i in range(100):  # a burst: create and delete
        await store.write("Pod", f"default/p-{i}", _pod(f"p-{i}"), create=True)
        await store.write("Pod", f"default/p-{i}", None)
    burst_end = store.revision
    assert len(hub.window) == 200
    now[0] += 60.0  # still fresh: a later commit keeps it all
    await store.write("Pod", "default/late-0", _pod("late-0"), create=True)
    assert len(hub.window) == 201 and not dropped
    now[0] += 20.0  # the burst is 80 s old: it leaves at the next commit, the recent one stays
    await store.write("Pod", "default/late-1", _pod("late-1"), create=True)
    assert len(hub.window) == 10 and sum(dropped) == 192  # the floor keeps 10 of the 202
    match = Filter("default", parse_label_selector("app=churn"), ())
    with pytest.raises(errors.Gone, match="too old resource version"):
        hub.watch("Pod", match, 0)
    w = hub.watch("Pod", match, burst_end)  # from after the burst: the late pods, no gap
    batch = await w.next_batch(0)
    assert batch is not None
    assert [core_pb2.Pod.FromString(v.data).metadata.name for _, v, _ in batch] == ["late-0", "late-1"]
    await store.stop()


async def test_versions_share_unchanged_labels_and_fields_but_see_changes() -> None:
    """Each of a pod's versions in the window kept its own labels and fields dicts (a third of
    its cost); unchanged ones are now shared, and a change is still seen by selectors."""
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    hub = WatchHub(store)
    await store.write("Pod", "default/p", _pod("p"), create=True)
    pod = _pod("p")
    pod.status.phase = "Running"
    await store.write("Pod", "default/p", pod)
    relabelled = _pod("p")
    relabelled.status.phase = "Running"
    relabelled.metadata.labels["app"] = "other"
    await store.write("Pod", "default/p", relabelled)
    await store.write("Pod", "default/p", None)
    created, running, other, deleted = (ev.entry for ev in hub.window)
    assert running.labels is created.labels and running.fields is not created.fields  # the phase changed
    assert other.labels == {"app": "other"} and created.labels == {"app": "churn"}
    assert other.fields is running.fields and deleted.labels is other.labels and deleted.fields is other.fields
    await store.stop()


async def test_versions_of_an_object_share_its_key_and_name_strings() -> None:
    """Each version in the window held its own key and name (~140 bytes, made anew by each
    request and each read of the message); a new version now holds its predecessor's."""
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    hub = WatchHub(store)
    name = "scale-job-7x2kq"

    def key() -> str:  # as a request makes it: a new string each time
        return "/".join(["default", name])

    await store.write("Pod", key(), _pod(name), create=True)
    running = _pod(name)
    running.status.phase = "Running"
    await store.write("Pod", key(), running)
    await store.write("Pod", key(), None)
    created, *later = (ev.entry for ev in hub.window)
    assert created.key == "default/scale-job-7x2kq" and created.name == name and len(later) == 2
    assert all(v.key is created.key and v.name is created.name for v in later)
    assert sys.intern(key()) is created.key  # interned: the informers' caches share it
    await store.stop()


def _lease(i: int) -> Message:
    from ketch.v1 import coordination_pb2

    lease = coordination_pb2.Lease()
    lease.metadata.name, lease.metadata.namespace = "node-1", "kube-node-lease"
    lease.spec.holder_identity, lease.spec.renew_time = "node-1", f"2026-12-07T00:00:{i:02d}.000000Z"
    return lease


def _node(i: int) -> Message:
    node = core_pb2.Node()
    node.metadata.name = "node-1"
    node.status.conditions.add(type="Ready", status="True", last_heartbeat_time=f"2026-12-07T00:00:{i:02d}Z")
    return node


@pytest.mark.parametrize(("kind", "key", "make"),
                         [("Lease", "kube-node-lease/node-1", _lease), ("Node", "node-1", _node)])
async def test_heartbeats_leave_one_entry_each_in_the_window(kind: str, key: str,
                                                             make: Callable[[int], Message]) -> None:
    """Every node renews its Lease every 10 s and reports its status, and the window keeps 75 s
    of them: each write kept an entry with its parsed message and a second version object."""
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    hub = WatchHub(store)
    for i in range(50):
        await store.write(kind, key, make(i), create=(i == 0))
    assert len(hub.window) == 50
    assert all(isinstance(ev.entry, Entry) and not ev.entry.holds_parsed for ev in hub.window)
    assert all(ev.prev is prior.entry for prior, ev in itertools.pairwise(hub.window))  # no copies
    current = store.get(kind, key)
    assert current is not None and not current.holds_parsed
    assert current.obj == type(make(49)).FromString(current.data)  # parsed when read
    assert current.obj.metadata.resource_version == str(current.rv)  # type: ignore[attr-defined]
    await store.stop()


async def test_objects_with_the_same_labels_and_fields_share_one_map_of_each() -> None:
    """A Job's pods carry the same labels, and pods on one node in one phase the same fields:
    one map of each is kept, not one per pod and version, and a change is still seen."""
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    for i in range(3):
        pod = _pod(f"pod-{i}")
        pod.spec.node_name = "node-a"
        await store.write("Pod", f"default/pod-{i}", pod, create=True)
    entries = [store.latest("Pod", f"default/pod-{i}") for i in range(3)]
    first = entries[0]
    assert first is not None and first.labels == {"app": "churn"}
    assert all(e is not None and e.labels is first.labels and e.fields is first.fields for e in entries)
    moved = _pod("pod-2")
    moved.spec.node_name = "node-b"
    await store.write("Pod", "default/pod-2", moved)
    latest = store.latest("Pod", "default/pod-2")
    assert latest is not None and latest.labels is first.labels
    assert latest.fields is not first.fields and latest.fields["spec.nodeName"] == "node-b"
    await store.stop()


async def test_a_kind_emptied_gives_back_the_table_it_grew_to() -> None:
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    for i in range(2_000):
        await store.write("Pod", f"default/p-{i}", _pod(f"p-{i}"), create=True)
    grown = sys.getsizeof(store._objects["Pod"])
    for i in range(2_000):
        await store.write("Pod", f"default/p-{i}", None)
    assert store.count("Pod") == 0 and sys.getsizeof(store._objects["Pod"]) < grown // 100
    await store.write("Pod", "default/again", _pod("again"), create=True)
    assert [e.name for e in store.list("Pod", "default")] == ["again"]
    await store.stop()


async def test_the_window_lets_stale_history_go_when_nothing_commits() -> None:
    """Age left the window only at a commit: a cluster that went quiet after a big Job (its
    nodes gone, nothing written) kept the Job's versions until the next write: 55 MiB of them
    after 10,000 pods."""
    store = Store(MemoryBackend(), REGISTRY.field_values, parsed_on_read=REGISTRY.parsed_on_read())
    await store.start()
    dropped: list[int] = []
    hub = WatchHub(store, fresh=0.3, min_window=10, on_dropped=dropped.append, expiry_slack=0.05)
    for i in range(50):
        await store.write("Pod", f"default/p-{i}", _pod(f"p-{i}"), create=True)
        await store.write("Pod", f"default/p-{i}", None)
    assert len(hub.window) == 100
    await eventually(lambda: len(hub.window) == 10, timeout=10, what="the stale history to leave")
    assert sum(dropped) == 90
    assert [ev.rev for ev in hub.window] == list(range(store.revision - 9, store.revision + 1))
    hub.close_all()
    await store.stop()
