"""Store.stage(dry_run=True): every check of a real write, and nothing left behind (no staged
state, no revision taken, no watch event), so a server-side dry run can never be committed."""

from __future__ import annotations

import pytest

from controlplane.apiserver.watch import WatchHub
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from ketch.api import errors
from ketch.v1 import core_pb2


def _pod(name: str, image: str = "busybox") -> core_pb2.Pod:
    pod = core_pb2.Pod()
    pod.metadata.name, pod.metadata.namespace = name, "default"
    pod.spec.containers.add(name="c", image=image)
    return pod


async def test_a_dry_run_checks_like_stage_and_leaves_nothing_behind() -> None:
    store = Store(MemoryBackend())
    await store.start()
    try:
        hub = WatchHub(store)
        await store.write("Pod", "default/a", _pod("a"), create=True)
        rev, window = store.revision, len(hub.window)

        created = store.stage("Pod", "default/b", _pod("b"), create=True, dry_run=True)
        assert created.entry is not None and created.entry.obj.metadata.resource_version == ""
        updated = store.stage("Pod", "default/a", _pod("a", "nginx"), expect_rv=rev, dry_run=True)
        assert updated.entry is not None and updated.entry.obj.metadata.resource_version == str(rev)
        deleted = store.stage("Pod", "default/a", None, dry_run=True)
        assert deleted.entry is None and deleted.tombstone is not None

        with pytest.raises(errors.AlreadyExists):
            store.stage("Pod", "default/a", _pod("a"), create=True, dry_run=True)
        with pytest.raises(errors.NotFound):
            store.stage("Pod", "default/zz", None, dry_run=True)
        with pytest.raises(errors.Conflict):
            store.stage("Pod", "default/a", _pod("a"), expect_rv=rev - 1, dry_run=True)

        assert not store._staged
        assert store.latest("Pod", "default/b") is None
        assert store.get("Pod", "default/a").obj.spec.containers[0].image == "busybox"
        # The next real write takes the next revision: the dry runs used none.
        entry = await store.write("Pod", "default/c", _pod("c"), create=True)
        assert entry is not None and entry.rv == rev + 1
        assert store.revision == rev + 1 and len(hub.window) == window + 1
    finally:
        await store.stop()


async def test_a_dry_run_past_the_quota_is_refused_as_the_write() -> None:
    backend = MemoryBackend()
    store = Store(backend, quota_bytes=1)
    await store.start()
    try:
        backend.used_bytes = 10 * 1024 * 1024
        with pytest.raises(errors.InternalError, match="database space exceeded"):
            store.stage("Pod", "default/a", _pod("a"), create=True, dry_run=True)
        assert not store._staged
    finally:
        await store.stop()
