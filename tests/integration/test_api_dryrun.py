"""Server-side dry run (kubectl --dry-run=server) over real gRPC: the request is decided as a real
one (defaults, admission, validation, the store's own checks) and answered with the object as it
would be stored, but nothing is stored, no revision is used and no watch event is sent."""

from __future__ import annotations

import asyncio

import pytest

from ketch.api import errors
from ketch.client.clientset import Batch, pack
from ketch.v1 import api_pb2, batch_pb2

from .rbac_helpers import clients, secured
from .test_api_crud import job


async def _unchanged(api, before: int) -> None:
    """Nothing was stored or staged, and watchers hear nothing: the first event after `before`
    is a real write made now."""
    store = api.service.store
    assert store.revision == before
    assert not store._staged
    marker = await api.client.create(job("marker"))
    async with asyncio.timeout(10):
        async for ev in api.client.watch("Job", resource_version=str(before), allow_bookmarks=False):
            assert (ev.type, ev.object.metadata.name) == ("ADDED", "marker")
            assert ev.resource_version == marker.metadata.resource_version
            break


async def test_dry_run_create_returns_the_defaulted_job_and_stores_nothing(api) -> None:
    before = api.service.store.revision
    got = await api.client.create(job("pi"), dry_run=True)
    md = got.metadata
    assert md.uid and md.creation_timestamp and md.generation == 1 and md.namespace == "default"
    assert md.resource_version == ""  # as kube-apiserver: a dry-run create has no version
    assert got.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == md.uid
    assert got.spec.backoff_limit == 6 and got.spec.completion_mode == "NonIndexed"  # defaults applied
    with pytest.raises(errors.NotFound):
        await api.client.get("Job", "pi")
    await _unchanged(api, before)
    # The real create afterwards is not refused as AlreadyExists: the dry run left no trace.
    await api.client.create(job("pi"))


async def test_dry_run_update_patch_and_delete_change_nothing(api) -> None:
    stored = await api.client.create(job("pi"))
    rv = stored.metadata.resource_version
    before = api.service.store.revision

    changed = batch_pb2.Job()
    changed.CopyFrom(stored)
    changed.spec.parallelism = 3
    updated = await api.client.update(changed, dry_run=True)
    assert updated.spec.parallelism == 3 and updated.metadata.generation == 2
    assert updated.metadata.resource_version == rv

    patched = await api.client.patch("Job", "pi", {"metadata": {"labels": {"tier": "x"}}}, dry_run=True)
    assert patched.metadata.labels["tier"] == "x" and patched.metadata.resource_version == rv

    last, gone = await api.client.delete("Job", "pi", propagation_policy="Background", dry_run=True)
    assert gone and last.metadata.name == "pi"

    got = await api.client.get("Job", "pi")
    assert got == stored
    await _unchanged(api, before)


async def test_dry_run_errors_are_the_real_requests_errors(api) -> None:
    bad = job("pi")
    bad.spec.parallelism = -1
    bad.spec.template.spec.restart_policy = "Always"
    with pytest.raises(errors.Invalid) as real:
        await api.client.create(bad)
    with pytest.raises(errors.Invalid) as dry:
        await api.client.create(bad, dry_run=True)
    assert str(dry.value) == str(real.value)
    assert "spec.parallelism" in str(dry.value)

    stored = await api.client.create(job("pi"))
    before = api.service.store.revision
    with pytest.raises(errors.AlreadyExists, match=r'jobs\.batch "pi" already exists'):
        await api.client.create(job("pi"), dry_run=True)
    with pytest.raises(errors.NotFound, match=r'jobs\.batch "nope" not found'):
        await api.client.delete("Job", "nope", dry_run=True)
    stale = batch_pb2.Job()
    stale.CopyFrom(stored)
    stale.metadata.resource_version = str(int(stored.metadata.resource_version) - 1)
    stale.spec.parallelism = 2
    with pytest.raises(errors.Conflict):
        await api.client.update(stale, dry_run=True)
    with pytest.raises(errors.Invalid, match=r"spec\.template"):
        await api.client.patch("Job", "pi", {"spec": {"template": {"spec": {"restartPolicy": "Always"}}}},
                               dry_run=True)
    await _unchanged(api, before)


async def test_a_dry_run_op_in_a_batch_is_not_committed(api) -> None:
    before = api.service.store.revision
    ops = [api_pb2.BatchOp(create=api_pb2.CreateRequest(object=pack(job("dry")), dry_run=True))]
    ops += Batch().create(job("real")).ops
    dry, real = await api.client.batch(ops)
    assert dry.error is None and dry.object.metadata.name == "dry" and not dry.object.metadata.resource_version
    assert real.error is None
    with pytest.raises(errors.NotFound):
        await api.client.get("Job", "dry")
    assert api.service.store.revision == before + 1


async def test_a_dry_run_needs_the_real_verbs_permission() -> None:
    async with secured() as api, clients(api, "admin", "bob") as (admin, bob):
        stored = await admin.create(job("pi"))
        with pytest.raises(errors.Forbidden, match='User "bob" cannot create resource "jobs"'):
            await bob.create(job("other"), dry_run=True)
        with pytest.raises(errors.Forbidden, match='User "bob" cannot patch resource "jobs"'):
            await bob.patch("Job", "pi", {"spec": {"parallelism": 2}}, namespace="default", dry_run=True)
        with pytest.raises(errors.Forbidden, match='User "bob" cannot delete resource "jobs"'):
            await bob.delete("Job", "pi", "default", dry_run=True)
        # The admin may: the dry run is decided and answered, and changes nothing.
        assert (await admin.delete("Job", "pi", "default", dry_run=True))[0].metadata.uid == stored.metadata.uid
        assert await admin.get("Job", "pi", "default") == stored
