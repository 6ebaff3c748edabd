"""Namespace deletion against a real API server: the namespace turns Terminating, its content is
deleted (pods gracefully), and it goes once empty; the system namespaces cannot be deleted."""

from __future__ import annotations

import pytest

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.namespace import NamespaceController
from ketch.api import errors, manifest, meta
from ketch.client.clientset import Batch
from ketch.v1 import core_pb2
from tests.conftest import eventually

from .cp_helpers import exists, job, pod, running


async def test_deleting_a_namespace_empties_it_then_removes_it(api: TestAPIServer) -> None:
    client = api.client
    ns = core_pb2.Namespace()
    ns.metadata.name = "team"
    await client.create(ns)
    batch = Batch()
    batch.create(pod("idle", namespace="team"))
    batch.create(pod("running", namespace="team", node_name="n1"))
    batch.create(job("j", namespace="team"))
    batch.create(manifest.from_dict({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                     "metadata": {"name": "l", "namespace": "team"}}))
    assert all(o.error is None for o in await client.batch(batch))
    running_pod = await client.get("Pod", "running", "team")
    running_pod.status.phase = "Running"
    await client.update_status(running_pod)
    await client.create(pod("elsewhere"))

    async with running(client, NamespaceController):
        obj, gone = await client.delete("Namespace", "team")
        assert not gone and obj.status.phase == "Terminating"
        with pytest.raises(errors.Forbidden, match="being terminated"):
            await client.create(pod("late", namespace="team"))

        async def only_the_running_pod_left():
            left = []
            for kind in ("Pod", "Job", "Lease"):
                items, _ = await client.list(kind, "team")
                left += [i.metadata.name for i in items]
            return left == ["running"]

        await eventually(only_the_running_pod_left, timeout=10, what="the namespace's content to be deleted")
        stopping = await client.get("Pod", "running", "team")
        assert stopping.metadata.deletion_timestamp, "a running pod is deleted gracefully"

        async def content_remaining():
            current = await client.get("Namespace", "team")
            c = meta.find_condition(current.status.conditions, "NamespaceContentRemaining")
            return c is not None and c.status == "True" and c.message == (
                "Some resources are remaining: pods has 1 resource instances")

        await eventually(content_remaining, timeout=10, what="the NamespaceContentRemaining condition")
        assert await exists(client, "Namespace", "team")
        # The agent finishes the pod (grace 0 delete); then the namespace goes.
        await client.delete("Pod", "running", "team", grace_period_seconds=0)

        async def namespace_gone():
            return not await exists(client, "Namespace", "team")

        await eventually(namespace_gone, timeout=10, what="the empty namespace to go")
        assert await exists(client, "Pod", "elsewhere", "default")


@pytest.mark.parametrize("name", ["default", "kube-system", "kube-public", "kube-node-lease"])
async def test_system_namespaces_cannot_be_deleted(api: TestAPIServer, name: str) -> None:
    with pytest.raises(errors.Forbidden, match="this namespace may not be deleted"):
        await api.local.delete("Namespace", name)
    assert not (await api.local.get("Namespace", name)).metadata.deletion_timestamp


async def test_spec_updates_keep_the_namespace_finalizer(api: TestAPIServer) -> None:
    ns = core_pb2.Namespace()
    ns.metadata.name = "kept"
    created = await api.local.create(ns)
    assert list(created.spec.finalizers) == ["kubernetes"]
    del created.spec.finalizers[:]
    created.metadata.labels["a"] = "b"
    updated = await api.local.update(created)
    assert list(updated.spec.finalizers) == ["kubernetes"]


async def test_the_name_label_cannot_be_removed_or_changed(api: TestAPIServer) -> None:
    # kubernetes.io/metadata.name is what a namespaceSelector trusts to name a namespace:
    # Kubernetes sets it on every write (the strategy's Canonicalize). A metadata-only write here
    # skipped defaulting, so a patch could drop it and an update could say another namespace.
    client = api.client
    assert (await client.patch("Namespace", "default", {"metadata": {"labels": None}})).metadata.labels == {
        "kubernetes.io/metadata.name": "default"}
    ns = await client.get("Namespace", "default")
    ns.metadata.labels["kubernetes.io/metadata.name"] = "kube-system"
    ns.metadata.labels["team"] = "a"
    assert (await client.update(ns)).metadata.labels == {"kubernetes.io/metadata.name": "default", "team": "a"}
    patched = await client.patch("Namespace", "default", [{"op": "remove", "path": "/metadata/labels"}],
                                 patch_type="json")
    assert patched.metadata.labels == {"kubernetes.io/metadata.name": "default"}


async def test_finalize_refuses_finalizers_that_are_not_names(api: TestAPIServer) -> None:
    # The finalize subresource stored whatever it was given ("a b", "") unchecked.
    client = api.client
    before = await client.get("Namespace", "default")
    with pytest.raises(errors.Invalid) as caught:
        await client.patch("Namespace", "default", {"spec": {"finalizers": ["kubernetes", "custom"]}},
                           subresource="finalize")
    assert str(caught.value) == ('The Namespace "default" is invalid: spec.finalizers: Invalid value: "custom": name '
                                 "is neither a standard finalizer name nor is it fully qualified")
    with pytest.raises(errors.Invalid, match=r'spec\.finalizers: Invalid value: "a b"'):
        await client.patch("Namespace", "default", {"spec": {"finalizers": ["a b"]}}, subresource="finalize")
    after = await client.get("Namespace", "default")
    assert after.metadata.resource_version == before.metadata.resource_version
    done = await client.patch("Namespace", "default", {"spec": {"finalizers": ["example.com/cleanup"]}},
                              subresource="finalize")
    assert list(done.spec.finalizers) == ["example.com/cleanup"]
