"""The store's expiry (etcd's leases, which kube-apiserver puts on Events): deadlines are kept per
tick, not per object; each object goes once, at the deadline of its latest write, however many
share a tick."""

from __future__ import annotations

import time

from google.protobuf.message import Message

from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from controlplane.storage.store import EXPIRY_BATCH
from ketch.v1 import configmap_pb2
from tests.conftest import eventually

REGISTRY = Registry()


def expires(kind: str, obj: Message) -> float | None:
    value = obj.metadata.annotations.get("expires")  # type: ignore[attr-defined]
    return float(value) if value else None


def config_map(name: str, deadline: float) -> configmap_pb2.ConfigMap:
    cm = configmap_pb2.ConfigMap()
    cm.metadata.name, cm.metadata.namespace = name, "default"
    cm.metadata.annotations["expires"] = repr(deadline)
    return cm


async def test_each_object_goes_once_at_its_latest_deadline() -> None:
    store = Store(MemoryBackend(), REGISTRY.field_values, expiry_of=expires)
    await store.start()
    deleted: dict[str, list[float]] = {}  # key -> when each deletion was published

    def record(events: list) -> None:
        for e in events:
            if e.type == "DELETED":
                deleted.setdefault(e.entry.key, []).append(time.time())

    store.add_listener(record)
    soon = time.time() + 0.3
    later = soon + 2.0
    many = [f"default/cm-{i}" for i in range(EXPIRY_BATCH * 2 + 100)]  # one tick, three batches
    for key in many:
        await store.write("ConfigMap", key, config_map(key.split("/")[1], soon), create=True)
    # Written again in the same tick (a second slot for the same key), and moved to a later one.
    await store.write("ConfigMap", "default/twice", config_map("twice", soon), create=True)
    await store.write("ConfigMap", "default/twice", config_map("twice", soon))
    await store.write("ConfigMap", "default/moved", config_map("moved", soon), create=True)
    await store.write("ConfigMap", "default/moved", config_map("moved", later))
    await store.write("ConfigMap", "default/gone", config_map("gone", soon), create=True)
    await store.write("ConfigMap", "default/gone", None)
    await store.write("ConfigMap", "default/kept", config_map("kept", time.time() + 3600), create=True)

    await eventually(lambda: "default/moved" in deleted, timeout=15, what="the moved object to go")
    assert sorted(deleted) == sorted([*many, "default/twice", "default/gone", "default/moved"])
    assert all(len(times) == 1 for times in deleted.values())  # each once
    assert all(deleted[key][0] >= soon for key in [*many, "default/twice"])  # none before its deadline
    assert deleted["default/moved"][0] >= later  # its first deadline was not its last
    assert store.get("ConfigMap", "default/kept") is not None
    assert len(store._expiry_ticks) == 1  # only the kept object's tick is left
    await store.stop()
