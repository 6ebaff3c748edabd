"""The Job controller across several syncs and events: expectations against a lagging cache,
the exactly-once finalizer protocol across a cache lag and a crash, orphan release, and
timed requeues (back-off, deadline)."""

from __future__ import annotations

import pytest

from controlplane.controllers.job.podcontrol import FakePodControl
from controlplane.controllers.job.pods import TRACKING_FINALIZER
from ketch.api import errors, meta
from ketch.client.cache import copy_of
from ketch.v1 import core_pb2

from .builders import NOW, Harness, harness, new_job, new_pod, ts


def _delayed(h: Harness) -> dict[str, float]:
    loop_now = __import__("asyncio").get_running_loop().time()
    return {k: at - loop_now for k, (at, _) in h.controller.queue._delayed.items()}


def _without_finalizer(pod: core_pb2.Pod) -> core_pb2.Pod:
    new = copy_of(pod)
    new.metadata.finalizers.remove(TRACKING_FINALIZER)
    new.metadata.resource_version = str(int(pod.metadata.resource_version) + 1000)
    return new  # type: ignore[no-any-return]


async def test_observed_pods_satisfy_creation_expectations() -> None:
    h = harness()
    job = new_job(2, 4)
    h.add(job)
    await h.controller.sync_job(h.key)
    assert len(h.pod_control.created) == 2
    assert not h.controller.expectations.satisfied(h.key)
    # The cache has not shown the new pods yet: no duplicates are created.
    h.add(h.client.status_updates[-1])
    await h.controller.sync_job(h.key)
    assert len(h.pod_control.created) == 2
    for i, template in enumerate(h.pod_control.created):
        pod = copy_of(template)
        pod.metadata.name, pod.metadata.uid, pod.metadata.resource_version = f"p{i}", f"u{i}", "1"
        h.controller.add_pod(pod)
    assert h.controller.expectations.satisfied(h.key)
    assert h.key in _delayed(h)  # pod events are batched


async def test_created_pods_are_stamped_like_kubernetes() -> None:
    h = harness()
    job = new_job(1, 2, mode="Indexed", name="foobar")
    job.spec.template.metadata.annotations["note"] = "kept"
    h.add(job)
    await h.controller.sync_job(h.key)
    (pod,) = h.pod_control.created
    md = pod.metadata
    assert md.generate_name == "foobar-0-"
    assert md.namespace == "default"
    assert list(md.finalizers) == [TRACKING_FINALIZER]
    ref = meta.controller_ref(pod)
    assert ref is not None and (ref.kind, ref.api_version, ref.name, ref.uid) == ("Job", "batch/v1", "foobar",
                                                                                 job.metadata.uid)
    assert ref.block_owner_deletion
    assert md.labels["job-name"] == "foobar" and md.labels["batch.kubernetes.io/controller-uid"] == job.metadata.uid
    assert md.labels["batch.kubernetes.io/job-completion-index"] == "0"
    assert md.annotations["batch.kubernetes.io/job-completion-index"] == "0"
    assert md.annotations["note"] == "kept"
    assert pod.spec.hostname == "foobar-0"
    env = {e.name: e.value_from.field_ref.field_path for e in pod.spec.containers[0].env}
    assert env == {"JOB_COMPLETION_INDEX": "metadata.labels['batch.kubernetes.io/job-completion-index']"}


async def test_one_status_write_per_sync_and_counters_move_on_the_next() -> None:
    h = harness()
    job = new_job(1, 3)
    job.status.start_time = ts(NOW - 10)
    done = new_pod(job, "Succeeded")
    h.add(job, done)
    await h.controller.sync_job(h.key)
    (written,) = h.client.status_updates
    assert list(written.status.uncounted_terminated_pods.succeeded) == [done.metadata.uid]
    assert written.status.succeeded == 0
    assert h.pod_control.finalizers_removed == [done.metadata.name]
    assert h.key in _delayed(h) or len(h.controller.queue)  # the next sync is on its way
    await h.sync_again()
    assert h.status.succeeded == 1 and not h.status.uncounted_terminated_pods.succeeded
    await h.sync_again()
    assert h.status.succeeded == 1


async def test_a_lagging_cache_never_counts_a_pod_twice() -> None:
    h = harness()
    job = new_job(1, 3)
    job.status.start_time = ts(NOW - 10)
    done = new_pod(job, "Succeeded")
    h.add(job, done)
    await h.controller.sync_job(h.key)
    # The Job's cache caught up, the pod's did not (it still shows the finalizer): the pending
    # finalizer expectation says it was released, so it is counted, once.
    h.add(h.client.status_updates[-1])
    h.controller.expectations.delete(h.key)
    await h.controller.sync_job(h.key)
    assert h.status.succeeded == 1 and not h.status.uncounted_terminated_pods.succeeded
    assert h.pod_control.finalizers_removed == [done.metadata.name]
    # Still lagging, another sync: nothing changes.
    h.add(h.client.status_updates[-1])
    await h.controller.sync_job(h.key)
    assert h.status.succeeded == 1
    # The pod's update arrives: the expectation is observed and the pod stays counted once.
    h.controller.update_pod(done, _without_finalizer(done))
    assert not h.controller.finalizer_expectations.expected(h.key)
    h.add(_without_finalizer(done), h.client.status_updates[-1])
    await h.controller.sync_job(h.key)
    assert h.status.succeeded == 1


async def test_a_crash_after_recording_uncounted_pods_counts_them_once() -> None:
    """The old controller wrote uncountedTerminatedPods and died before removing finalizers."""
    job = new_job(1, 2)
    job.status.start_time = ts(NOW - 10)
    a = new_pod(job, "Succeeded")
    b = new_pod(job, "Failed")
    job.status.uncounted_terminated_pods.succeeded.append(a.metadata.uid)
    job.status.uncounted_terminated_pods.failed.append(b.metadata.uid)
    h = harness()  # a fresh controller: no expectations, no back-off records
    h.add(job, a, b)
    await h.controller.sync_job(h.key)
    assert sorted(h.pod_control.finalizers_removed) == sorted([a.metadata.name, b.metadata.name])
    await h.sync_again()
    assert (h.status.succeeded, h.status.failed) == (1, 1)
    assert not h.status.uncounted_terminated_pods.succeeded and not h.status.uncounted_terminated_pods.failed
    # ... and a crash after removing the finalizers but before the counters were written.
    job2 = new_job(1, 2)
    job2.status.start_time = ts(NOW - 10)
    c = _without_finalizer(new_pod(job2, "Succeeded"))
    job2.status.uncounted_terminated_pods.succeeded.append(c.metadata.uid)
    h2 = harness()
    h2.add(job2, c)
    await h2.controller.sync_job(h2.key)
    assert h2.status.succeeded == 1 and not h2.pod_control.finalizers_removed


async def test_failed_finalizer_removal_keeps_the_uid_uncounted() -> None:
    h = harness(FakePodControl(finalizer_err=errors.Unavailable("down")))
    job = new_job(1, 3)
    job.status.start_time = ts(NOW - 10)
    done = new_pod(job, "Succeeded")
    h.add(job, done)
    try:
        await h.controller.sync_job(h.key)
    except errors.Unavailable:
        pass
    else:
        raise AssertionError("the removal error must reach the queue's retry")
    assert h.status.succeeded == 0
    assert list(h.status.uncounted_terminated_pods.succeeded) == [done.metadata.uid]
    assert not h.controller.finalizer_expectations.expected(h.key)


async def test_recreation_waits_for_the_backoff() -> None:
    h = harness(backoff_base=10, backoff_max=360)
    job = new_job(1, 3)
    job.status.start_time = ts(NOW - 10)
    h.add(job, new_pod(job, "Failed", finished_at=NOW - 3))
    await h.controller.sync_job(h.key)
    assert not h.pod_control.created
    assert len(h.status.uncounted_terminated_pods.failed) == 1
    h.catch_up()
    h.controller.queue._delayed.clear()  # the pod events' batched requeue: not what is checked
    await h.controller.sync_job(h.key)
    assert not h.pod_control.created and h.status.failed == 1
    assert 6.5 < _delayed(h)[h.key] <= 7.0  # the back-off's requeue
    h.clock.step(8)
    await h.sync_again()
    assert len(h.pod_control.created) == 1


async def test_active_deadline_requeues_at_the_deadline() -> None:
    h = harness()
    job = new_job(1, 1, active_deadline_seconds=30)
    job.status.start_time = ts(NOW - 10)
    h.add(job, new_pod(job, "Running"))
    await h.controller.sync_job(h.key)
    assert 19.5 < _delayed(h)[h.key] <= 20.0


async def test_orphan_pods_lose_the_finalizer() -> None:
    h = harness()
    job = new_job(1, 1)
    running_job_pod = new_pod(job, "Running", name="mine")
    gone_job = new_job(1, 1, name="gone")
    gone_job.metadata.uid = "gone-uid"
    of_gone_job = new_pod(gone_job, "Succeeded", name="of-gone")
    no_owner = new_pod(job, "Succeeded", name="no-owner", owned=False)
    other = new_pod(job, "Succeeded", name="other-owner", owned=False)
    other.metadata.owner_references.add(api_version="apps/v1", kind="DaemonSet", name="x", uid="x", controller=True)
    h.add(job, running_job_pod, of_gone_job, no_owner, other)
    for p in (running_job_pod, of_gone_job, no_owner, other):
        await h.controller.sync_orphan_pod(meta.key_of(p))
    assert sorted(h.pod_control.finalizers_removed) == ["no-owner", "of-gone"]


async def test_a_finished_job_releases_pods_that_kept_the_finalizer() -> None:
    h = harness()
    job = new_job(1, 1)
    straggler = new_pod(job, "Running")
    h.add(job, straggler)
    finished = copy_of(job)
    finished.metadata.resource_version = "11"
    finished.status.conditions.add(type="Failed", status="True", reason="DeadlineExceeded")
    h.controller.update_job(job, finished)
    assert meta.key_of(straggler) in h.controller.orphan_queue._dirty
    h.add(finished)
    await h.controller.sync_orphan_pod(meta.key_of(straggler))
    assert h.pod_control.finalizers_removed == [straggler.metadata.name]


async def test_deleted_pod_events_observe_expectations() -> None:
    h = harness()
    job = new_job(2, 2)
    pod = new_pod(job, "Running")
    h.add(job, pod)
    h.controller.expectations.expect_deletions(h.key, 1)
    h.controller.finalizer_expectations.expect_removed(h.key, [pod.metadata.uid])
    h.controller.delete_pod(pod, final=True)
    assert h.controller.expectations.satisfied(h.key)
    assert not h.controller.finalizer_expectations.expected(h.key)


async def test_adoption_of_a_matching_orphan() -> None:
    h = harness()
    job = new_job(1, 1)
    orphan = new_pod(job, "Running", owned=False, finalizer=False, name="orphan")
    h.add(job, orphan)
    await h.controller.sync_job(h.key)
    ((name, patch),) = h.pod_control.patched
    assert name == "orphan"
    assert patch["metadata"]["finalizers"] == [TRACKING_FINALIZER]
    assert patch["metadata"]["ownerReferences"][0]["uid"] == job.metadata.uid
    assert h.status.active == 1 and not h.pod_control.created


async def test_spec_changes_sync_at_once_and_status_changes_batched() -> None:
    h = harness()
    job = new_job(1, 1)
    h.add(job)
    newer = copy_of(job)
    newer.metadata.resource_version = "11"
    h.controller.update_job(job, newer)
    assert h.key in _delayed(h) and len(h.controller.queue) == 0
    spec_change = copy_of(newer)
    spec_change.metadata.generation = 2
    h.controller.update_job(newer, spec_change)
    assert len(h.controller.queue) == 1


async def test_pods_whose_labels_no_longer_match_are_released() -> None:
    h = harness()
    job = new_job(1, 2)
    job.status.start_time = ts(NOW - 10)
    job.status.succeeded = 1
    running = new_pod(job, "Running", name="running")
    counted = new_pod(job, "Succeeded", finalizer=False, name="counted")
    h.add(job, running, counted)
    relabelled_running = copy_of(running)
    relabelled_running.metadata.labels["batch.kubernetes.io/controller-uid"] = "someone-else"
    relabelled_counted = copy_of(counted)
    relabelled_counted.metadata.labels["batch.kubernetes.io/controller-uid"] = "someone-else"
    relabelled_counted.metadata.resource_version = "999"
    h.controller.update_pod(counted, relabelled_counted)  # a settled pod: the next sync looks at all pods
    h.add(relabelled_running, relabelled_counted)
    await h.controller.sync_job(h.key)
    released = sorted(name for name, patch in h.pod_control.patched
                      if patch["metadata"]["ownerReferences"][0].get("$patch") == "delete")
    assert released == ["counted", "running"]
    assert h.status.succeeded == 1


async def test_a_job_cache_lagging_behind_our_own_status_write_creates_no_extra_pods() -> None:
    """The pods' updates (finalizers gone) arrive before the Job's (counters moved)."""
    h = harness()
    job = new_job(2, 3)
    job.status.start_time = ts(NOW - 10)
    p1, p2 = new_pod(job, "Succeeded"), new_pod(job, "Succeeded")
    h.add(job, p1, p2)
    await h.controller.sync_job(h.key)
    assert len(h.pod_control.created) == 1 and len(h.status.uncounted_terminated_pods.succeeded) == 2
    created = copy_of(h.pod_control.created[0])
    created.metadata.name, created.metadata.uid, created.metadata.resource_version = "p3", "u3", "500"
    h.controller.add_pod(created)
    for p in (p1, p2):
        h.controller.update_pod(p, _without_finalizer(p))
    h.add(_without_finalizer(p1), _without_finalizer(p2), created)  # the Job in the cache is still the old one
    await h.controller.sync_job(h.key)
    assert len(h.pod_control.created) == 1
    assert h.status.succeeded == 2



@pytest.mark.parametrize("postponed_by", ["a failed delete", "unmet expectations"])
async def test_fail_job_is_not_forgotten_when_the_first_try_to_finish_is_postponed(postponed_by: str) -> None:
    """A pod matching a FailJob rule fails the Job even if the sync that first saw it could not
    finish (a delete of the other pods failed, or pods it created are not in the cache yet).
    Kubernetes' next sync finds that pod again among all the Job's pods (getFailJobMessage
    scans them, counted or not); Ketch's syncs skip counted pods, so the pod must keep its
    finalizer (stay uncounted) until the FailureTarget condition is written."""
    delete_err = errors.Unavailable("down") if postponed_by == "a failed delete" else None
    h = harness(FakePodControl(delete_err=delete_err))
    job = new_job(2, 8)
    rule = job.spec.pod_failure_policy.rules.add()
    rule.action = "FailJob"
    rule.on_exit_codes.container_name = "main"
    rule.on_exit_codes.operator = "In"
    rule.on_exit_codes.values.append(42)
    job.status.start_time = ts(NOW - 40)
    job.status.active = 2
    bug = new_pod(job, "Failed", exit_code=42, finished_at=NOW - 1)
    other = new_pod(job, "Running")
    h.add(job, bug, other)
    if delete_err is None:
        h.controller.expectations.expect_creations(h.key, 1)  # a create the cache has not shown yet
    try:
        await h.controller.sync_job(h.key)
    except errors.Unavailable:
        assert delete_err is not None
    assert not any(c.type == "FailureTarget" for u in h.client.status_updates for c in u.status.conditions)
    # The API answers again / the cache catches up (sync_again drops the expectations).
    h.pod_control.delete_err = None
    for _ in range(3):
        h.clock.step(20)  # past the back-off: a forgetful controller starts a replacement
        await h.sync_again()
    assert not h.pod_control.created, "no replacement may start once a pod matched FailJob"
    assert [(c.type, c.reason) for c in h.status.conditions][:1] == [("FailureTarget", "PodFailurePolicy")]
    assert other.metadata.name in h.pod_control.deleted
    # Both pods counted once, as failed: the one that exited 42 and the one deleted.
    counted = h.status.failed + len(h.status.uncounted_terminated_pods.failed)
    assert (h.status.succeeded, counted) == (0, 2)
