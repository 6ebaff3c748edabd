"""The controllers' Prometheus metrics under kube-controller-manager's names and labels (1.31),
read from prometheus_client's default REGISTRY: client-go's workqueue_* per queue name, the Job
controller's job_controller_* after a Job completes, the CronJob controller's creation skew.

The registry is the process's: each check is a difference before and after."""

from __future__ import annotations

import asyncio
import sys

import pytest
from prometheus_client import REGISTRY

import controlplane.metrics  # (the provider the control plane installs)
from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.base import ControllerContext
from controlplane.controllers.cronjob.controller import CronJobController
from controlplane.controllers.job.pods import TRACKING_FINALIZER
from ketch.api import errors, manifest, timeutil
from ketch.client.cache import copy_of
from ketch.client.informer import InformerFactory
from ketch.client.workqueue import WorkQueue
from ketch.testing.fake_clock import FakeClock

from .job.builders import harness, new_job, new_pod


def sample(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


async def test_a_named_work_queue_reports_client_go_metrics() -> None:
    q: WorkQueue[str] = WorkQueue("metrics-test-queue")

    def read() -> dict[str, float]:
        n = {"name": "metrics-test-queue"}
        return {"depth": sample("workqueue_depth", **n), "adds": sample("workqueue_adds_total", **n),
                "queued": sample("workqueue_queue_duration_seconds_count", **n),
                "worked": sample("workqueue_work_duration_seconds_count", **n),
                "retries": sample("workqueue_retries_total", **n)}

    before = read()

    def delta() -> dict[str, float]:
        return {k: v - before[k] for k, v in read().items()}

    q.add("a")
    q.add("b")
    q.add("a")  # already queued: not an add
    assert delta() == {"depth": 2, "adds": 2, "queued": 0, "worked": 0, "retries": 0}
    item = await q.get()
    assert item == "a"
    assert delta() == {"depth": 1, "adds": 2, "queued": 1, "worked": 0, "retries": 0}
    q.done("a")
    assert delta() == {"depth": 1, "adds": 2, "queued": 1, "worked": 1, "retries": 0}
    q.add_rate_limited("a")
    assert delta()["retries"] == 1
    q.shutdown()  # what was still queued leaves the depth
    assert delta()["depth"] == 0
    # Buckets are component-base's: 10 ns to 10 s, by tens.
    assert REGISTRY.get_sample_value("workqueue_queue_duration_seconds_bucket",
                                     {"name": "metrics-test-queue", "le": "1e-08"}) is not None


async def test_a_drained_named_queue_gives_back_its_timing_tables() -> None:
    """The per-item timestamps behind queue_duration and work_duration: after a burst of
    10,000 items has been worked, their dicts are back to an empty one's size."""
    q: WorkQueue[str] = WorkQueue("metrics-burst-queue")
    timings = q.metrics
    assert isinstance(timings, controlplane.metrics.QueueMetrics)
    empty = sys.getsizeof({})
    for i in range(10_000):
        q.add(f"scale/pod-{i}")
    assert sys.getsizeof(timings._add_times) > 100 * empty
    taken = [await q.get() for _ in range(10_000)]
    assert sys.getsizeof(timings._add_times) == empty and len(timings._work_times) == 10_000
    for item in taken:
        q.done(item)
    assert sys.getsizeof(timings._work_times) == empty
    q.shutdown()


async def test_a_completed_job_is_counted_as_kubernetes_counts_it() -> None:
    h = harness()
    job = new_job(2, 2)
    h.add(job)
    pods = [new_pod(job, "Succeeded") for _ in range(2)]
    assert all(TRACKING_FINALIZER in p.metadata.finalizers for p in pods)

    def read() -> dict[str, float]:
        return {
            "pods_succeeded": sample("job_controller_job_pods_finished_total", completion_mode="NonIndexed",
                                     result="succeeded"),
            "finished": sample("job_controller_jobs_finished_total", completion_mode="NonIndexed",
                               result="succeeded", reason="CompletionsReached"),
            "syncs": sample("job_controller_job_syncs_total", completion_mode="NonIndexed", result="success",
                            action="tracking"),
            "timed": sample("job_controller_job_sync_duration_seconds_count", completion_mode="NonIndexed",
                            result="success", action="tracking"),
            "finalizer_add": sample("job_controller_terminated_pods_tracking_finalizer_total", event="add"),
            "finalizer_delete": sample("job_controller_terminated_pods_tracking_finalizer_total", event="delete"),
        }

    before = read()

    def delta() -> dict[str, float]:
        return {k: v - before[k] for k, v in read().items()}

    for pod in pods:
        h.add(pod)
        h.controller.add_pod(pod)
    await h.controller.sync_job(h.key)  # counts them, strips the finalizers, completes the Job
    assert [c.type for c in h.status.conditions] == ["SuccessCriteriaMet", "Complete"]
    assert h.status.succeeded == 2
    await h.sync_again()  # the caches see it all: a finished Job's sync is not counted
    # Its queues carry kube-controller-manager's names in workqueue_*.
    assert (h.controller.queue.name, h.controller.orphan_queue.name) == ("job", "job_orphan_pod")
    assert delta() == {"pods_succeeded": 2, "finished": 1, "syncs": 1, "timed": 1, "finalizer_add": 2,
                       "finalizer_delete": 2}


async def test_a_sync_that_creates_pods_is_labelled_pods_created() -> None:
    h = harness()
    h.add(new_job(2, 4))
    before = sample("job_controller_job_syncs_total", completion_mode="NonIndexed", result="success",
                    action="pods_created")
    await h.controller.sync_job(h.key)
    assert len(h.pod_control.created) == 2
    assert sample("job_controller_job_syncs_total", completion_mode="NonIndexed", result="success",
                  action="pods_created") - before == 1


async def test_a_failed_sync_is_counted_as_an_error() -> None:
    h = harness()
    h.add(new_job(1, 1))
    h.client.status_error = errors.InternalError("boom")
    before = sample("job_controller_job_syncs_total", completion_mode="NonIndexed", result="error",
                    action="pods_created")
    with pytest.raises(errors.InternalError):
        await h.controller.sync_job(h.key)
    assert sample("job_controller_job_syncs_total", completion_mode="NonIndexed", result="error",
                  action="pods_created") - before == 1


async def test_a_pod_losing_the_finalizer_after_finishing_counts_a_delete() -> None:
    h = harness()
    job = new_job(1, 1)
    running = new_pod(job, "Running")
    done = copy_of(running)
    done.status.phase = "Succeeded"
    done.metadata.resource_version = str(int(running.metadata.resource_version) + 1)
    released = copy_of(done)
    released.metadata.finalizers.remove(TRACKING_FINALIZER)
    released.metadata.resource_version = str(int(done.metadata.resource_version) + 1)
    add = lambda: sample("job_controller_terminated_pods_tracking_finalizer_total", event="add")  # noqa: E731
    delete = lambda: sample("job_controller_terminated_pods_tracking_finalizer_total", event="delete")  # noqa: E731
    a0, d0 = add(), delete()
    h.controller.add_pod(running)
    assert (add() - a0, delete() - d0) == (0, 0), "a running pod is not terminated"
    h.controller.update_pod(running, done)
    assert (add() - a0, delete() - d0) == (1, 0)
    h.controller.update_pod(done, released)
    assert (add() - a0, delete() - d0) == (1, 1)


async def test_a_cronjob_job_is_created_with_its_skew_observed() -> None:
    t0 = 1_699_999_200.0  # a whole hour
    clock = FakeClock(t0 - 7200)
    async with TestAPIServer(grpc=False, clock=clock.now) as api:
        client = api.local
        assert client is not None
        cj = await client.create(manifest.from_dict({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "command": ["true"]}]}}}}}}))
        cj.status.last_schedule_time = timeutil.format(t0 - 60)
        await client.update_status(cj)
        clock.set(t0 + 3.5)  # the controller comes 3.5 s after the scheduled time
        informers = InformerFactory(client)
        controller = CronJobController(ControllerContext(client=client, informers=informers, clock=clock))
        informers.start()
        try:
            assert await informers.wait_for_sync(5)
            name = "cronjob_controller_job_creation_skew_duration_seconds"
            count, total = sample(name + "_count"), sample(name + "_sum")
            le4 = sample(name + "_bucket", le="4.0")
            await controller.sync("default/hello")
            jobs, _ = await client.list("Job", "default")
            assert len(jobs) == 1
            assert sample(name + "_count") - count == 1
            assert abs(sample(name + "_sum") - total - 3.5) < 1e-6
            assert sample(name + "_bucket", le="4.0") - le4 == 1  # buckets 1, 2, 4 ... 512 s
        finally:
            controller.queue.shutdown()
            await informers.stop()
            await asyncio.sleep(0)
