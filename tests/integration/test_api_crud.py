"""The API server's object semantics over real gRPC: CRUD, CAS, generation, subresources,
deletion with finalizers and grace periods, batches and patches."""

from __future__ import annotations

import asyncio

import pytest

from ketch.api import errors
from ketch.api.selectors import FIELDS_ON_READ
from ketch.client.clientset import Batch, pack
from ketch.v1 import api_pb2, batch_pb2, core_pb2


def namespace(name: str, **labels: str) -> core_pb2.Namespace:
    ns = core_pb2.Namespace()
    ns.metadata.name = name
    ns.metadata.labels.update(labels)
    return ns


def pod(name: str = "", node: str = "", generate: str = "", **labels: str) -> core_pb2.Pod:
    p = core_pb2.Pod()
    p.metadata.name = name
    p.metadata.generate_name = generate
    p.metadata.labels.update(labels)
    c = p.spec.containers.add()
    c.name = "main"
    c.command.extend(["sleep", "1"])
    p.spec.node_name = node
    return p


def job(name: str, parallelism: int = 1) -> batch_pb2.Job:
    j = batch_pb2.Job()
    j.metadata.name = name
    j.spec.parallelism = parallelism
    c = j.spec.template.spec.containers.add()
    c.name = "main"
    c.command.append("true")
    j.spec.template.spec.restart_policy = "Never"
    return j


async def test_create_sets_server_fields_and_get_returns_it(api) -> None:
    created = await api.client.create(job("pi"))
    md = created.metadata
    assert md.uid and md.creation_timestamp and md.resource_version
    assert md.namespace == "default"
    assert md.generation == 1
    got = await api.client.get("Job", "pi", "default")
    assert got.metadata.resource_version == md.resource_version
    assert got.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == md.uid


async def test_create_twice_is_already_exists_and_missing_namespace_is_not_found(api) -> None:
    await api.client.create(job("pi"))
    with pytest.raises(errors.AlreadyExists, match=r'jobs\.batch "pi" already exists'):
        await api.client.create(job("pi"))
    j = job("x")
    j.metadata.namespace = "nope"
    with pytest.raises(errors.NotFound, match='namespaces "nope" not found'):
        await api.client.create(j)


async def test_generate_name_appends_five_chars(api) -> None:
    created = await api.client.create(pod(generate="pi-"))
    assert created.metadata.name.startswith("pi-")
    assert len(created.metadata.name) == len("pi-") + 5


async def test_update_with_stale_resource_version_is_conflict(api) -> None:
    first = await api.client.create(job("pi"))
    first.spec.parallelism = 2
    second = await api.client.update(first)
    assert second.metadata.generation == 2
    first.spec.parallelism = 3  # still carries the old resourceVersion
    with pytest.raises(errors.Conflict):
        await api.client.update(first)


@pytest.mark.parametrize("rv", ["-1", "+5", " 5", "1_0", "\u0665", "9" * 5000])
async def test_a_resource_version_that_is_not_digits_is_a_bad_request(api, rv: str) -> None:
    # Python's int() read these ("1_0" as 10, "\u0665" as 5); a watch from "-1" answered 410 Gone
    # (too old), which makes a client relist and watch again. Kubernetes reads a resourceVersion
    # with strconv.ParseUint and refuses them.
    created = await api.client.create(job("pi"))
    created.spec.parallelism = 2
    created.metadata.resource_version = rv
    with pytest.raises(errors.BadRequest, match=r"^invalid resourceVersion"):
        await api.client.update(created)
    assert (await api.client.get("Job", "pi")).spec.parallelism == 1

    async def watch() -> None:
        async for _ in api.client.watch("Job", resource_version=rv):
            pass

    with pytest.raises(errors.BadRequest, match=r"^invalid resourceVersion"):
        await watch()


async def test_noop_update_keeps_resource_version(api) -> None:
    created = await api.client.create(job("pi"))
    again = await api.client.update(created)
    assert again.metadata.resource_version == created.metadata.resource_version


async def test_status_and_spec_are_separate_subresources(api) -> None:
    created = await api.client.create(job("pi"))
    created.status.active = 5
    created.spec.parallelism = 7
    after_status = await api.client.update_status(created)
    assert after_status.status.active == 5
    assert after_status.spec.parallelism == 1, "a status write must not change spec"
    assert after_status.metadata.generation == 1, "a status write must not bump generation"
    after_status.spec.parallelism = 4
    after_status.status.active = 0
    after_spec = await api.client.update(after_status)
    assert after_spec.spec.parallelism == 4
    assert after_spec.status.active == 5, "a spec write must not change status"
    assert after_spec.metadata.generation == 2


async def test_finalizers_hold_deletion_until_removed(api) -> None:
    ns = namespace("held")
    ns.metadata.finalizers.append("example.com/hold")
    await api.client.create(ns)
    obj, gone = await api.client.delete("Namespace", "held")
    assert not gone
    assert obj.metadata.deletion_timestamp
    current = await api.client.get("Namespace", "held")
    del current.metadata.finalizers[:]
    await api.client.update(current)
    # A Namespace also waits for its spec finalizer "kubernetes" (the namespace controller's).
    current = await api.client.get("Namespace", "held")
    assert current.status.phase == "Terminating"
    del current.spec.finalizers[:]
    await api.client.transport.unary("Update", api_pb2.UpdateRequest(object=pack(current), subresource="finalize"))
    with pytest.raises(errors.NotFound):
        await api.client.get("Namespace", "held")


async def test_no_new_finalizers_on_a_deleting_object(api) -> None:
    ns = namespace("held")
    ns.metadata.finalizers.append("a/b")
    await api.client.create(ns)
    await api.client.delete("Namespace", "held")
    current = await api.client.get("Namespace", "held")
    current.metadata.finalizers.append("c/d")
    with pytest.raises(errors.Invalid, match=r"metadata\.finalizers"):
        await api.client.update(current)


async def test_bound_pod_deletion_is_graceful_and_unbound_is_immediate(api) -> None:
    await api.client.create(pod("bound", node="n1"))
    await api.client.create(pod("unbound"))
    obj, gone = await api.client.delete("Pod", "bound", "default")
    assert not gone
    assert obj.metadata.deletion_grace_period_seconds == 30
    assert obj.metadata.deletion_timestamp
    _, gone = await api.client.delete("Pod", "unbound", "default")
    assert gone
    # The agent finishes a graceful deletion with grace 0.
    _, gone = await api.client.delete("Pod", "bound", "default", grace_period_seconds=0)
    assert gone


async def test_default_tolerations_are_added_to_pods(api) -> None:
    created = await api.client.create(pod("p"))
    keys = {(t.key, t.effect, t.toleration_seconds) for t in created.spec.tolerations}
    assert ("node.kubernetes.io/not-ready", "NoExecute", 300) in keys
    assert ("node.kubernetes.io/unreachable", "NoExecute", 300) in keys


async def test_job_delete_without_policy_orphans_with_a_warning(api) -> None:
    warnings: list[str] = []
    api.client.on_warning = warnings.append
    await api.client.create(job("pi"))
    obj, gone = await api.client.delete("Job", "pi")
    assert not gone and "orphan" in obj.metadata.finalizers
    assert any("propagationPolicy=Background" in w for w in warnings)


async def test_foreground_delete_adds_the_foreground_finalizer(api) -> None:
    await api.client.create(job("pi"))
    obj, gone = await api.client.delete("Job", "pi", propagation_policy="Foreground")
    assert not gone and list(obj.metadata.finalizers) == ["foregroundDeletion"]


async def test_list_filters_by_label_and_field_selectors(api) -> None:
    await api.client.create(pod("a", node="n1", app="web", tier="fe"))
    await api.client.create(pod("b", node="n2", app="web", tier="be"))
    await api.client.create(pod("c", app="db"))
    names = lambda items: sorted(p.metadata.name for p in items)  # noqa: E731
    assert names((await api.client.list("Pod", "default", "app=web"))[0]) == ["a", "b"]
    assert names((await api.client.list("Pod", "default", "app in (web,db),tier!=fe"))[0]) == ["b", "c"]
    assert names((await api.client.list("Pod", "default", "!tier"))[0]) == ["c"]
    assert names((await api.client.list("Pod", "", "", "spec.nodeName=n2"))[0]) == ["b"]
    assert names((await api.client.list("Pod", "", "", "status.phase=Pending,metadata.name!=a"))[0]) == ["b", "c"]
    with pytest.raises(errors.BadRequest, match="field label not supported"):
        await api.client.list("Pod", "", "", "spec.bogus=1")


async def test_jobs_are_selected_by_status_successful(api) -> None:
    # Kubernetes' JobToSelectableFields: `kubectl delete jobs --field-selector status.successful=1`.
    await api.client.create(job("done"))
    await api.client.create(job("running"))
    await api.client.patch("Job", "done", {"status": {"succeeded": 1}}, namespace="default", patch_type="merge",
                           subresource="status")
    names = lambda items: sorted(j.metadata.name for j in items)  # noqa: E731
    assert names((await api.client.list("Job", "default", "", "status.successful=1"))[0]) == ["done"]
    assert names((await api.client.list("Job", "", "", "status.successful=0"))[0]) == ["running"]
    assert names((await api.client.list("Job", "", "", "status.successful!=1"))[0]) == ["running"]


def event(name: str, about: str, reason: str) -> core_pb2.Event:
    ev = core_pb2.Event(type="Normal", reason=reason, message=f"{reason} {about}")
    ev.metadata.name, ev.metadata.namespace = name, "default"
    ev.involved_object.kind, ev.involved_object.name, ev.involved_object.namespace = "Pod", about, "default"
    ev.involved_object.uid = f"uid-{about}"
    ev.source.component = "default-scheduler"
    return ev


async def test_events_are_selected_by_the_fields_the_store_does_not_keep(api) -> None:
    """The store keeps no field values for Events; lists and watches (the initial listing and
    live events) read them off the stored bytes, and match as for any other kind."""
    await api.client.create(event("a.1", "a", "Scheduled"))
    await api.client.create(event("b.1", "b", "Scheduled"))
    await api.client.create(event("a.2", "a", "Started"))
    assert api.store.get("Event", "default/a.1").fields is FIELDS_ON_READ
    names = lambda items: sorted(e.metadata.name for e in items)  # noqa: E731
    assert names((await api.client.list("Event", "default", "", "involvedObject.name=a"))[0]) == ["a.1", "a.2"]
    assert names((await api.client.list("Event", "", "", "involvedObject.uid=uid-b"))[0]) == ["b.1"]
    assert names((await api.client.list("Event", "", "", "reason=Scheduled,involvedObject.name!=b"))[0]) == ["a.1"]
    assert names((await api.client.list("Event", "", "", "source=default-scheduler,type=Warning"))[0]) == []
    seen: list[tuple[str, str]] = []
    async with asyncio.timeout(10):
        async for ev in api.client.watch("Event", "default", field_selector="involvedObject.name=a",
                                         allow_bookmarks=False):
            seen.append((ev.type, ev.object.metadata.name))
            if len(seen) == 2:  # the initial listing: a's two events
                await api.client.create(event("b.2", "b", "Started"))
                await api.client.create(event("a.3", "a", "Killing"))
            if len(seen) == 3:
                break
    assert sorted(seen[:2]) == [("ADDED", "a.1"), ("ADDED", "a.2")]
    assert seen[2] == ("ADDED", "a.3")  # b.2, written first, did not match


async def test_merge_json_and_strategic_patches(api) -> None:
    p = pod("p")
    p.metadata.finalizers.extend(["a/keep", "b/drop"])
    await api.client.create(p)
    patched = await api.client.patch("Pod", "p", {"metadata": {"labels": {"x": "1"}}}, "default")
    assert patched.metadata.labels["x"] == "1"
    patched = await api.client.patch("Pod", "p", [{"op": "add", "path": "/metadata/labels/y", "value": "2"}],
                                     "default", patch_type="json")
    assert dict(patched.metadata.labels) == {"x": "1", "y": "2"}
    patched = await api.client.patch(
        "Pod", "p", {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b/drop"]}}, "default",
        patch_type="strategic")
    assert list(patched.metadata.finalizers) == ["a/keep"]
    with pytest.raises(errors.BadRequest, match="unknown field"):
        await api.client.patch("Pod", "p", {"spec": {"bogus": 1}}, "default")


async def test_batch_ops_succeed_or_fail_on_their_own(api) -> None:
    await api.client.create(namespace("exists"))
    outcomes = await api.client.batch(
        Batch().create(namespace("new-one")).create(namespace("exists")).delete("Namespace", "missing"))
    assert outcomes[0].error is None and outcomes[0].object.metadata.name == "new-one"
    assert isinstance(outcomes[1].error, errors.AlreadyExists)
    assert isinstance(outcomes[2].error, errors.NotFound)
    assert (await api.client.get("Namespace", "new-one")).metadata.uid


async def test_binding_assigns_an_unbound_pod_once(api) -> None:
    """pods/binding sets nodeName and PodScheduled=True, also on a pod that changed since the
    scheduler saw it (Kubernetes' Binding has no resourceVersion); a bound pod, another pod of
    the same name (uid) and a bad node name are refused and change nothing."""
    p = await api.client.create(pod("b1"))
    changed = await api.client.create(pod("b2"))
    await api.client.patch("Pod", "b2", {"metadata": {"labels": {"x": "y"}}}, namespace="default")
    bad = await api.client.create(pod("b3"))
    replaced = await api.client.create(pod("b4"))
    await api.client.delete("Pod", "b4", namespace="default")
    await api.client.create(pod("b4"))
    out = await api.client.batch(
        Batch().bind(p, "node-a").bind(changed, "node-a").bind(bad, "Not_A_Node").bind(replaced, "node-a"))
    assert out[0].error is None and out[1].error is None
    bound = await api.client.get("Pod", "b1", namespace="default")
    assert bound.spec.node_name == "node-a"
    assert [(c.type, c.status) for c in bound.status.conditions] == [("PodScheduled", "True")]
    relabelled = await api.client.get("Pod", "b2", namespace="default")
    assert relabelled.spec.node_name == "node-a" and relabelled.metadata.labels["x"] == "y"
    assert isinstance(out[2].error, errors.Invalid) and "target.name" in out[2].error.message
    assert (await api.client.get("Pod", "b3", namespace="default")).spec.node_name == ""
    assert isinstance(out[3].error, errors.Conflict)
    assert (await api.client.get("Pod", "b4", namespace="default")).spec.node_name == ""
    again = await api.client.batch(Batch().bind(bound, "node-b"))
    assert isinstance(again[0].error, errors.Conflict) and 'already assigned to node "node-a"' in again[0].error.message
    assert (await api.client.get("Pod", "b1", namespace="default")).spec.node_name == "node-a"


async def test_daemonset_template_generation_counts_template_changes_only(api) -> None:
    """Kubernetes' daemonSetStrategy: spec.templateGeneration (apps/v1's annotation
    deprecated.daemonset.template.generation) starts at 1 (or the value given, if >= 1), goes up
    by one with each template change and not with other spec changes, and an update cannot set it."""
    from tests.integration.test_daemonset_controller import daemonset

    key = "deprecated.daemonset.template.generation"
    ds = await api.client.create(daemonset())
    assert (ds.metadata.generation, ds.metadata.annotations[key]) == (1, "1")
    ds.spec.min_ready_seconds = 5
    ds = await api.client.update(ds)
    assert (ds.metadata.generation, ds.metadata.annotations[key]) == (2, "1")
    ds.spec.template.spec.containers[0].env[0].value = "2"
    ds = await api.client.update(ds)
    assert (ds.metadata.generation, ds.metadata.annotations[key]) == (3, "2")
    ds.metadata.annotations[key] = "7"
    ds = await api.client.update(ds)
    assert (ds.metadata.generation, ds.metadata.annotations[key]) == (3, "2")

    given = daemonset("given")
    given.metadata.annotations[key] = "4"
    given = await api.client.create(given)
    assert given.metadata.annotations[key] == "4"
    zero = daemonset("zero")
    zero.metadata.annotations[key] = "0"
    assert (await api.client.create(zero)).metadata.annotations[key] == "1"
