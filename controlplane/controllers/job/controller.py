"""The Job controller: Kubernetes 1.31's job_controller.go on Ketch's informers and work queue.

Handlers only enqueue: Job adds, deletions and spec changes at once; pod events and status-only
Job updates after a short batching delay, so a burst of pod changes costs one sync. `sync(key)`
reads the caches, works out the Job's pods and counts with the pure modules of this package
(indexed, backoff, failure_policy, success_policy, tracking), creates or deletes pods through
PodControl (one Batch RPC per slow-start batch) and writes the status with the finalizer
protocol of tracking.py, so every finished pod is counted exactly once even across a crash.

A second queue releases orphan pods (their Job is gone or finished) from the tracking
finalizer, so deleted pods never linger. Timed work (back-off expiry, activeDeadlineSeconds)
goes through queue.add_after. State kept in memory (expectations, back-off records) may be
lost on restart; counts live in the Job status and the pods' finalizers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from controlplane import metrics
from ketch.api import errors, meta, timeutil
from ketch.api.selectors import NOTHING, Selector, from_label_selector
from ketch.client.cache import ORPHANS_BY_NAMESPACE_INDEX, DeletedFinalStateUnknown, copy_of, orphans_by_namespace
from ketch.client.workqueue import ItemExponentialFailureRateLimiter, RateLimiter, WorkQueue
from ketch.v1 import batch_pb2, core_pb2

from ..base import Controller, ControllerContext
from . import decisions, spec, tracking
from .backoff import BackoffStore
from .decisions import SyncContext, new_condition
from .expectations import ControllerExpectations
from .manage import PodManager
from .podcontrol import PodControl, RealPodControl
from .pods import TRACKING_FINALIZER, has_tracking_finalizer
from .status import StatusWriter

log = logging.getLogger(__name__)

API_BACKOFF_BASE = 1.0  # per-item back-off after an API error, as Kubernetes' DefaultJobApiBackOff
API_BACKOFF_MAX = 60.0
# A Job's batching period grows by this much per pod its sync walks (unsettled pods: finished,
# counted ones are not walked), so small Jobs keep the short period and a Job of 4,500 running
# pods syncs at most every 0.45 s, up to Kubernetes' syncJobBatchPeriod of 1 s.
SYNC_SECONDS_PER_POD = 0.0001
MAX_SYNC_BATCH_PERIOD = 1.0
# Orphan pods released at once. Kubernetes runs one orphan worker, each release a patch that
# waits for its commit: the 19,000 pods of a deleted Job then took ~50 s to release. Concurrent
# releases share the store's group commits (the work queue never hands out one pod twice).
ORPHAN_WORKERS = 8
# Controlled pods that still matter to their Job's sync, by controller uid: not finished, or
# finished but not yet counted (still holding the tracking finalizer). A big Job's finished and
# counted pods are the vast majority and change nothing, so a sync skips them.
UNSETTLED_INDEX = "job-unsettled"


def is_settled(pod: core_pb2.Pod) -> bool:
    """Finished and counted: terminal and without the tracking finalizer."""
    return pod.status.phase in ("Succeeded", "Failed") and TRACKING_FINALIZER not in pod.metadata.finalizers


def _finished_with_finalizer(pod: core_pb2.Pod) -> bool:
    """job_controller_terminated_pods_tracking_finalizer_total counts these coming and going."""
    return pod.status.phase in ("Succeeded", "Failed") and has_tracking_finalizer(pod)


class _SyncOutcome:
    __slots__ = ("action", "result")

    def __init__(self) -> None:
        self.action = "reconciling"
        self.result = "success"


def _unsettled_by_controller(pod: core_pb2.Pod) -> list[str]:
    if is_settled(pod):
        return []
    ref = meta.controller_ref(pod)
    return [ref.uid] if ref is not None else []


class JobController(Controller):
    name = "job"
    workers = 4

    def __init__(self, ctx: ControllerContext, pod_control: PodControl | None = None,
                 rate_limiter: RateLimiter | None = None) -> None:
        super().__init__(ctx, rate_limiter or ItemExponentialFailureRateLimiter(API_BACKOFF_BASE, API_BACKOFF_MAX))
        opts = ctx.options.job
        self.sync_batch_period = opts.sync_batch_period
        self.recorder = ctx.recorder("job-controller")
        self.pod_control: PodControl = pod_control or RealPodControl(ctx.client, self.recorder)
        self.expectations = ControllerExpectations(self.clock.now)
        self.finalizer_expectations = tracking.FinalizerExpectations()
        self.backoff_store = BackoffStore()
        self.pod_manager = PodManager(self.pod_control, self.expectations, opts, self.enqueue_with_delay)
        self.status_writer = StatusWriter(ctx.client, self.recorder, self.pod_control, self.backoff_store,
                                          self.finalizer_expectations, self.enqueue_with_delay)
        self.orphan_queue: WorkQueue[str] = WorkQueue(
            "job_orphan_pod", ItemExponentialFailureRateLimiter(API_BACKOFF_BASE, API_BACKOFF_MAX))
        self._conflicts: dict[str, int] = {}
        self._last_sync: dict[str, float] = {}  # loop time each Job's last sync started
        # Each Job's batching period, grown with the pods its last sync walked (period_for).
        self._period: dict[str, float] = {}
        self.jobs = ctx.informers.informer(batch_pb2.Job)
        self.pods = ctx.informers.informer(core_pb2.Pod)
        self.pods.add_indexer(ORPHANS_BY_NAMESPACE_INDEX, orphans_by_namespace)
        self.pods.add_indexer(UNSETTLED_INDEX, _unsettled_by_controller)
        # Jobs (by uid) with a settled pod whose labels changed: their next sync looks at every
        # pod, to release the ones their selector no longer matches.
        self._relabelled: set[str] = set()
        self.jobs.add_handler(self.add_job, self.update_job, self.delete_job)
        self.pods.add_handler(self.add_pod, self.update_pod, lambda obj: self.delete_pod(obj, final=True))

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        orphans = [asyncio.create_task(self._orphan_worker(), name=f"job-orphan-worker-{i}")
                   for i in range(ORPHAN_WORKERS)]
        try:
            await super().run()
        finally:
            self.orphan_queue.shutdown()
            for task in orphans:
                task.cancel()
            await asyncio.gather(*orphans, return_exceptions=True)

    async def _orphan_worker(self) -> None:
        await self.ctx.informers.wait_for_sync()
        while True:
            key = await self.orphan_queue.get()
            if key is None:
                return
            try:
                await self.sync_orphan_pod(key)
                self.orphan_queue.forget(key)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.info("job: releasing orphan pod %s failed, requeueing: %s", key, err)
                self.orphan_queue.add_rate_limited(key)
            finally:
                self.orphan_queue.done(key)

    # -- enqueueing ----------------------------------------------------------------------------

    def enqueue_now(self, job: batch_pb2.Job) -> None:
        self.queue.add(meta.key_of(job))

    def enqueue_batched(self, job: batch_pb2.Job) -> None:
        """At most one sync per batching period: at once if the last one started a period ago
        or more (the first event after a quiet spell is not delayed), else at the period's end."""
        key = meta.key_of(job)
        last = self._last_sync.get(key)
        period = self._period.get(key, self.sync_batch_period)
        if last is None:
            delay = period
        else:
            delay = last + period - asyncio.get_running_loop().time()
        self.queue.add_after(key, delay)

    def enqueue_with_delay(self, key: str, delay: float) -> None:
        self.queue.add_after(key, max(delay, self._period.get(key, self.sync_batch_period)))

    def period_for(self, pods: int) -> float:
        """The batching period of a Job whose sync walks this many pods: every sync costs the
        event loop time in proportion to them (0.1-0.5 s at 4,500), so a big Job syncs less
        often and its syncs keep a bounded share of the loop, which the API server's clients
        share; at most Kubernetes' own 1 s."""
        return max(self.sync_batch_period, min(pods * SYNC_SECONDS_PER_POD, MAX_SYNC_BATCH_PERIOD))

    def enqueue_orphan(self, pod: core_pb2.Pod) -> None:
        self.orphan_queue.add(meta.key_of(pod))

    def resolve_controller_ref(self, namespace: str, ref: Any) -> Any | None:
        if ref.kind != "Job":
            return None
        job = self.jobs.get(namespace, ref.name)
        if job is None or job.metadata.uid != ref.uid:
            return None
        return job

    def pod_jobs(self, pod: core_pb2.Pod) -> list[Any]:
        """Jobs whose (non-empty) selector matches the pod's labels: candidates to adopt it."""
        out = []
        for job in self.jobs.list(pod.metadata.namespace):
            if not job.spec.HasField("selector"):
                continue
            sel = from_label_selector(job.spec.selector)
            if not sel.empty() and sel.matches(pod.metadata.labels):
                out.append(job)
        return out

    # -- pod handlers --------------------------------------------------------------------------

    def add_pod(self, pod: core_pb2.Pod) -> None:
        metrics.terminated_pod_tracking_finalizer(False, _finished_with_finalizer(pod))
        if pod.metadata.deletion_timestamp:
            # After a restart a pod may first show up already being deleted.
            self.delete_pod(pod, final=False)
            return
        ref = meta.controller_ref(pod)
        if ref is not None:
            job = self.resolve_controller_ref(pod.metadata.namespace, ref)
            if job is None:
                if ref.kind == "Job" and has_tracking_finalizer(pod):
                    self.enqueue_orphan(pod)  # its Job is gone: release the pod
                return
            self.expectations.creation_observed(meta.key_of(job))
            self.enqueue_batched(job)
            return
        if has_tracking_finalizer(pod):
            self.enqueue_orphan(pod)
        for job in self.pod_jobs(pod):
            self.enqueue_batched(job)

    def update_pod(self, old: Any, cur: Any) -> None:
        if cur.metadata.resource_version == old.metadata.resource_version:
            return
        metrics.terminated_pod_tracking_finalizer(_finished_with_finalizer(old), _finished_with_finalizer(cur))
        if cur.metadata.deletion_timestamp:
            self.delete_pod(cur, final=False)
            return
        finalizer_removed = not has_tracking_finalizer(cur)
        cur_ref = meta.controller_ref(cur)
        old_ref = meta.controller_ref(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            job = self.resolve_controller_ref(old.metadata.namespace, old_ref)
            if job is not None:
                if finalizer_removed:
                    self.finalizer_expectations.observed(meta.key_of(job), cur.metadata.uid)
                self.enqueue_batched(job)
        if cur_ref is not None:
            job = self.resolve_controller_ref(cur.metadata.namespace, cur_ref)
            if job is None:
                return
            if is_settled(cur) and dict(cur.metadata.labels) != dict(old.metadata.labels):
                self._relabelled.add(job.metadata.uid)
            if finalizer_removed:
                self.finalizer_expectations.observed(meta.key_of(job), cur.metadata.uid)
            self.enqueue_batched(job)
            return
        if has_tracking_finalizer(cur):
            self.enqueue_orphan(cur)
        if ref_changed or dict(cur.metadata.labels) != dict(old.metadata.labels):
            for job in self.pod_jobs(cur):
                self.enqueue_batched(job)

    def delete_pod(self, obj: Any, final: bool) -> None:
        pod = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if pod is None:
            return
        if final:
            metrics.terminated_pod_tracking_finalizer(_finished_with_finalizer(pod), False)
        ref = meta.controller_ref(pod)
        has_fin = has_tracking_finalizer(pod)
        if ref is None:
            if has_fin:
                self.enqueue_orphan(pod)
            return
        job = self.resolve_controller_ref(pod.metadata.namespace, ref)
        if job is None or spec.is_finished(job):
            if has_fin:
                self.enqueue_orphan(pod)
            return
        key = meta.key_of(job)
        self.expectations.deletion_observed(key)
        if final or not has_fin:
            self.finalizer_expectations.observed(key, pod.metadata.uid)
        self.enqueue_batched(job)

    # -- job handlers --------------------------------------------------------------------------

    def add_job(self, job: batch_pb2.Job) -> None:
        self.enqueue_now(job)

    def update_job(self, old: Any, cur: Any) -> None:
        if cur.metadata.generation == old.metadata.generation:
            self.enqueue_batched(cur)
        else:
            self.enqueue_now(cur)
        if spec.is_finished(cur):
            self.cleanup_pod_finalizers(cur)
        if cur.status.start_time and cur.spec.HasField("active_deadline_seconds"):
            ads = cur.spec.active_deadline_seconds
            if not old.spec.HasField("active_deadline_seconds") or old.spec.active_deadline_seconds != ads:
                passed = self.clock.now() - timeutil.parse(cur.status.start_time)
                self.queue.add_after(meta.key_of(cur), ads - passed)

    def delete_job(self, obj: Any) -> None:
        job = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if job is None:
            if isinstance(obj, DeletedFinalStateUnknown):
                self.queue.add(obj.key)
            return
        self.recorder.forget(job.metadata.uid)
        self.enqueue_now(job)
        self.cleanup_pod_finalizers(job)

    def cleanup_pod_finalizers(self, job: batch_pb2.Job) -> None:
        """Queue every pod of the Job that still has the tracking finalizer for release."""
        for pod in self.pods.by_index(UNSETTLED_INDEX, job.metadata.uid):
            if has_tracking_finalizer(pod):
                self.enqueue_orphan(pod)

    # -- orphan pods ---------------------------------------------------------------------------

    async def sync_orphan_pod(self, key: str) -> None:
        ns, name = meta.split_key(key)
        pod = self.pods.get(ns, name)
        if pod is None or not has_tracking_finalizer(pod):
            return
        ref = meta.controller_ref(pod)
        if ref is not None:
            if ref.kind != "Job" or ref.api_version != "batch/v1":
                return  # someone else's pod: not ours to release
            job = self.resolve_controller_ref(ns, ref)
            if job is not None and spec.managed_by_external(job):
                return
            if job is not None and not spec.is_finished(job):
                return  # adopted, or its Job still counts it
        (err,) = await self.pod_control.remove_finalizers([pod])
        if err is not None and not isinstance(err, errors.NotFound):
            raise err

    # -- sync ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        """sync_job, with a quick retry for a stale cache (Conflict) instead of the 1 s back-off."""
        self._last_sync[key] = asyncio.get_running_loop().time()
        try:
            await self.sync_job(key)
        except errors.Conflict as err:
            n = self._conflicts.get(key, 0)
            self._conflicts[key] = n + 1
            log.debug("job %s: conflict, retrying: %s", key, err)
            self.queue.add_after(key, min(0.02 * 2**n, 1.0))
            return
        self._conflicts.pop(key, None)

    async def sync_job(self, key: str) -> None:
        ns, name = meta.split_key(key)
        shared = self.status_writer.latest_job(key, self.jobs.get(ns, name))
        if shared is None:
            self._last_sync.pop(key, None)
            self._period.pop(key, None)
            self.status_writer.forget(key)
            self.pod_manager.forget(key)
            self.expectations.delete(key)
            self.finalizer_expectations.delete(key)
            self.backoff_store.remove(key)
            return
        if spec.managed_by_external(shared):
            return
        if spec.is_finished(shared):
            self.backoff_store.remove(key)
            self.pod_manager.forget(key)
            self.status_writer.forget(key)
            return
        mode = spec.completion_mode(shared)
        if mode not in (spec.INDEXED, spec.NON_INDEXED):
            self.recorder.event(shared, "Warning", "UnknownCompletionMode",
                                "Skipped Job sync because completion mode is unknown")
            return
        # job_controller_job_sync_duration_seconds and _syncs_total, as Kubernetes' syncJob
        # records them: its action is reconciling until the expectations are met.
        outcome = _SyncOutcome()
        started = time.perf_counter()
        try:
            await self._sync_unfinished(key, shared, outcome)
        except Exception:
            outcome.result = "error"
            raise
        finally:
            metrics.observe_job_sync(mode, outcome.result, outcome.action, time.perf_counter() - started)

    async def _sync_unfinished(self, key: str, shared: batch_pb2.Job, outcome: _SyncOutcome) -> None:
        job: batch_pb2.Job = copy_of(shared)
        status = job.status
        status.uncounted_terminated_pods.SetInParent()
        # Expectations are read before the pods are listed: a pod arriving in between only
        # defers the decision to the next sync.
        satisfied = self.expectations.satisfied(key)
        if satisfied:
            outcome.action = "tracking"
        pods = await self.get_pods_for_job(job)
        self._period[key] = self.period_for(len(pods))
        now = self.clock.now()
        job_ctx = SyncContext(key=key, job=job, pods=pods, now=now,
                         expected_rm_finalizers=self.finalizer_expectations.expected(key))
        new_succeeded, new_failed = decisions.classify(job_ctx)
        active = len(job_ctx.active_pods)
        start_time_set = False
        if not status.start_time and not spec.suspended(job):
            status.start_time = timeutil.format(now)
            start_time_set = True
        job_ctx.new_backoff_record = self.backoff_store.new_record(key, new_succeeded, new_failed)

        deadline_in = decisions.decide_failure(job_ctx)
        if deadline_in is not None:
            self.queue.add_after(key, deadline_in)
        if spec.is_indexed(job):
            decisions.decide_indexed(job_ctx)

        suspend_changed = False
        manage_err: errors.StatusError | None = None
        if job_ctx.finished_condition is not None:
            # Finishing: every active pod goes, keeping its finalizer (it will be counted).
            deleted_ready, deleted, manage_err = await self.pod_manager.delete_active_pods(job, job_ctx.active_pods)
            if deleted != active or not satisfied:
                job_ctx.finished_condition = None  # pods the cache has not shown yet may remain
            active -= deleted
            job_ctx.terminating += deleted
            job_ctx.ready -= deleted_ready
        else:
            manage_called = False
            if satisfied and not job.metadata.deletion_timestamp:
                active, manage_err = await self.pod_manager.manage_job(job_ctx)
                manage_called = True
                outcome.action = job_ctx.action or outcome.action
            if decisions.is_complete(job_ctx, active):
                job_ctx.finished_condition = new_condition(spec.SUCCESS_CRITERIA_MET, "True",
                                                      decisions.REASON_COMPLETIONS_REACHED,
                                                      decisions.MSG_COMPLETIONS_REACHED, now)
            elif manage_called:
                suspend_changed = self.status_writer.update_suspended_condition(job, now)

        needs_flush = (suspend_changed or start_time_set or active != status.active
                       or not status.HasField("ready") or job_ctx.ready != status.ready
                       or not status.HasField("terminating") or job_ctx.terminating != status.terminating)
        status.active = active
        status.ready = job_ctx.ready
        status.terminating = job_ctx.terminating
        await self.status_writer.track_status_and_remove_finalizers(job_ctx, needs_flush)
        if manage_err is not None:
            raise manage_err

    # -- pods of a job -------------------------------------------------------------------------

    async def get_pods_for_job(self, job: batch_pb2.Job) -> list[Any]:
        """The Job's pods that matter: those it controls and whose labels still match its
        selector, plus orphans it adopts (ownerReference and tracking finalizer added); owned pods
        that no longer match are released. Finished, counted pods are left out (see
        UNSETTLED_INDEX). Returned pods are cache objects: read-only."""
        md = job.metadata
        selector: Selector = from_label_selector(job.spec.selector) if job.spec.HasField("selector") else NOTHING
        claimed: list[Any] = []
        release: list[Any] = []
        if md.uid in self._relabelled:
            self._relabelled.discard(md.uid)
            owned = self.pods.by_index("controller", md.uid)
        else:
            owned = self.pods.by_index(UNSETTLED_INDEX, md.uid)
        for p in owned:
            if selector.matches(p.metadata.labels):
                claimed.append(p)
            elif not md.deletion_timestamp:
                release.append(p)
        adopt: list[Any] = []
        if not md.deletion_timestamp and not selector.empty():
            adopt = [p for p in self.pods.by_index(ORPHANS_BY_NAMESPACE_INDEX, md.namespace)
                     if not p.metadata.deletion_timestamp and selector.matches(p.metadata.labels)]
        if release:
            patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": md.uid}]}}
            for err in await self.pod_control.patch_pods([(p, patch) for p in release]):
                if err is not None and not isinstance(err, errors.NotFound):
                    raise err
        if adopt and await self._can_adopt(job):
            claimed.extend(await self._adopt(job, adopt))
        return claimed

    async def _can_adopt(self, job: batch_pb2.Job) -> bool:
        """An uncached read: never adopt for a Job that is being deleted (or was replaced)."""
        fresh = await self.client.get("Job", job.metadata.name, job.metadata.namespace)
        if fresh.metadata.uid != job.metadata.uid:
            raise errors.Conflict(f"original Job {meta.key_of(job)} is gone: got uid {fresh.metadata.uid}, "
                                  f"wanted {job.metadata.uid}")
        return not fresh.metadata.deletion_timestamp

    async def _adopt(self, job: batch_pb2.Job, pods: list[Any]) -> list[Any]:
        ref = {"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "uid": job.metadata.uid,
               "controller": True, "blockOwnerDeletion": True}
        patch = {"metadata": {"ownerReferences": [ref], "finalizers": [TRACKING_FINALIZER]}}
        adopted = []
        first_err: errors.StatusError | None = None
        for p, err in zip(pods, await self.pod_control.patch_pods([(p, patch) for p in pods]), strict=True):
            if err is None:
                copy = copy_of(p)
                copy.metadata.owner_references.append(meta.owner_ref_for(job))
                if TRACKING_FINALIZER not in copy.metadata.finalizers:
                    copy.metadata.finalizers.append(TRACKING_FINALIZER)
                adopted.append(copy)
            elif not isinstance(err, errors.NotFound) and first_err is None:
                first_err = err
        if first_err is not None:
            raise first_err
        return adopted
