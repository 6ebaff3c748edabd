"""Writing a Job's status with the finalizer protocol (tracking.py), and its conditions.

A collaborator of JobController, given the client, the event recorder, pod control, the
back-off and finalizer records it updates and a way to re-queue a Job. Newly finished pods are
recorded (uncounted UIDs, completed indexes) and the status written before any finalizer is
removed; released pods then move into the counters; the terminal condition (Complete/Failed) is
added only once nothing is uncounted and no pod is terminating, as Kubernetes 1.31 does. It also
remembers our last status write per Job, for as long as the informer cache lags behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controlplane import metrics
from ketch.api import errors, meta, timeutil
from ketch.client.cache import LastWrites, copy_of
from ketch.client.clientset import Client
from ketch.client.events import EventRecorder
from ketch.v1 import batch_pb2

from . import decisions, indexed, spec, tracking
from .backoff import BackoffStore
from .decisions import SyncContext, ensure_condition, is_pod_failed, new_condition
from .podcontrol import PodControl
from .pods import TRACKING_FINALIZER

MAX_UNCOUNTED_PODS = 500
_FINISHED = frozenset({"Succeeded", "Failed"})


class StatusWriter:
    """track_status_and_remove_finalizers, the condition helpers, and our last status writes."""

    def __init__(self, client: Client, recorder: EventRecorder, pod_control: PodControl,
                 backoff_store: BackoffStore, finalizer_expectations: tracking.FinalizerExpectations,
                 requeue_after: Callable[[str, float], None]) -> None:
        self.client = client
        self.recorder = recorder
        self.pod_control = pod_control
        self.backoff_store = backoff_store
        self.finalizer_expectations = finalizer_expectations
        self.requeue_after = requeue_after
        self._written: LastWrites[batch_pb2.Job] = LastWrites()  # for latest_job

    def forget(self, key: str) -> None:
        self._written.forget(key)

    def latest_job(self, key: str, cached: Any | None) -> Any | None:
        """The cached Job, or the one our own last status write returned if the cache has not
        caught up with it yet. Without this, pods whose finalizer removal the cache already
        shows (so they no longer count as new) next to a Job whose counters do not include them
        yet would look like missing completions, and extra pods would be started."""
        return self._written.latest(key, cached)

    def update_suspended_condition(self, job: batch_pb2.Job, now: float) -> bool:
        if spec.suspended(job):
            changed = ensure_condition(job.status, spec.SUSPENDED, "True", "JobSuspended", "Job suspended", now)
            if changed:
                self.recorder.event(job, "Normal", "Suspended", "Job suspended")
            return changed
        changed = ensure_condition(job.status, spec.SUSPENDED, "False", "JobResumed", "Job resumed", now)
        if changed:
            self.recorder.event(job, "Normal", "Resumed", "Job resumed")
            # ActiveDeadlineSeconds counts the time the Job is continuously active.
            job.status.start_time = timeutil.format(now)
        return changed


    async def track_status_and_remove_finalizers(self, job_ctx: SyncContext, needs_flush: bool) -> None:
        """Record newly finished pods (uncounted UIDs / completed indexes), write the status,
        strip their finalizers, move them into the counters, and finish the Job if it can."""
        job = job_ctx.job
        status = job.status
        is_idx = spec.is_indexed(job)
        completions = spec.indexed_completions(job) if is_idx else 0
        policy = spec.pod_failure_policy(job)
        expected = job_ctx.expected_rm_finalizers
        uncounted = status.uncounted_terminated_pods
        # Of the pods still holding the finalizer, only the uncounted UIDs are ever looked up
        # (clean_uncounted): those already uncounted, found here, and those this sync releases,
        # added below. Not a pass over every pod of a 20,000-pod Job each sync.
        was_uncounted = {*uncounted.succeeded, *uncounted.failed}
        uids_with_finalizer = {uid for p in job_ctx.pods
                               if (uid := p.metadata.uid) in was_uncounted
                               and TRACKING_FINALIZER in p.metadata.finalizers and uid not in expected
                               } if was_uncounted else set()
        if tracking.clean_uncounted(status, uids_with_finalizer):
            needs_flush = True
        finishing = job_ctx.finished_condition
        failing = finishing is not None and finishing.type != spec.SUCCESS_CRITERIA_MET
        # Unless the Job is finishing or deleted, only a finished or deleted pod can be released
        # (can_remove_finalizer): the running majority is passed over without looking further.
        releasing_any = bool(job.metadata.deletion_timestamp) or finishing is not None
        pods_to_release: list[Any] = []
        new_succeeded_ix: list[int] = []
        reached_max = False
        for pod in job_ctx.pods:
            if not releasing_any and pod.status.phase not in _FINISHED and not pod.metadata.deletion_timestamp:
                continue
            md = pod.metadata
            if TRACKING_FINALIZER not in md.finalizers or md.uid in expected:
                continue
            considered_failed = is_pod_failed(pod, job)
            if not decisions.can_remove_finalizer(job_ctx, pod, considered_failed):
                continue
            pods_to_release.append(pod)
            if pod.status.phase == "Succeeded" and md.uid not in job_ctx.uncounted_failed:
                if is_idx:
                    index = indexed.completion_index(pod)
                    if (index != indexed.UNKNOWN_INDEX and index < completions
                            and not job_ctx.prev_succeeded_indexes.has(index)):
                        new_succeeded_ix.append(index)
                        needs_flush = True
                elif md.uid not in job_ctx.uncounted_succeeded:
                    uncounted.succeeded.append(md.uid)
                    needs_flush = True
            elif considered_failed or failing:
                # A failing Job counts every pod that did not succeed as failed.
                index = indexed.completion_index(pod)
                valid = not is_idx or (index != indexed.UNKNOWN_INDEX and index < completions)
                if (md.uid not in job_ctx.uncounted_failed and valid
                        and (policy is None or job_ctx.policy_match(pod).count_failed)):
                    uncounted.failed.append(md.uid)
                    needs_flush = True
            if len(new_succeeded_ix) + len(uncounted.succeeded) + len(uncounted.failed) >= MAX_UNCOUNTED_PODS:
                # Keep status small and let other Jobs have a turn; the status write requeues us.
                reached_max = True
                break
        if is_idx:
            job_ctx.succeeded_indexes = job_ctx.succeeded_indexes.with_indexes(sorted(set(new_succeeded_ix)))
            text = str(job_ctx.succeeded_indexes)
            if text != status.completed_indexes:
                needs_flush = True
            status.succeeded = job_ctx.succeeded_indexes.total()
            status.completed_indexes = text
            failed_text = str(job_ctx.failed_indexes) if job_ctx.failed_indexes is not None else None
            current = status.failed_indexes if status.HasField("failed_indexes") else None
            if current != failed_text:
                if failed_text is None:
                    status.ClearField("failed_indexes")
                else:
                    status.failed_indexes = failed_text
                needs_flush = True
        condition = job_ctx.finished_condition
        if condition is not None and condition.type == spec.FAILURE_TARGET:
            # The interim condition is written before any finalizer is removed.
            status.conditions.append(condition)
            needs_flush = True
            job_ctx.finished_condition = new_condition(spec.FAILED, "True", condition.reason, condition.message,
                                                       job_ctx.now)
        elif condition is not None and condition.type == spec.SUCCESS_CRITERIA_MET:
            if not spec.condition_true(job, spec.SUCCESS_CRITERIA_MET):
                status.conditions.append(condition)
                needs_flush = True
            job_ctx.finished_condition = new_condition(spec.COMPLETE, "True", condition.reason, condition.message,
                                                       job_ctx.now)

        uids_with_finalizer.update(p.metadata.uid for p in pods_to_release)
        counters_moved = await self._flush_and_release(job_ctx, pods_to_release, uids_with_finalizer, needs_flush)
        finished = not reached_max and self._enact_finished(job_ctx)
        if finished:
            await self._write_status(job_ctx)
            if job_ctx.finished_condition is not None:
                self._record_finished(job_ctx.job, job_ctx.finished_condition)
        elif counters_moved:
            # Released pods move from uncountedTerminatedPods into the counters with the next
            # sync's (single) status write; the pod updates enqueue it anyway, this makes sure.
            self.requeue_after(job_ctx.key, 0)

    async def _flush_and_release(self, job_ctx: SyncContext, pods: list[Any], uids_with_finalizer: set[str],
                                 needs_flush: bool) -> bool:
        """Write the status holding the new uncounted UIDs, then strip those pods' finalizers,
        then move the released ones into the counters in memory (written at once if some
        removals failed, else by the next sync or with the terminal condition). Returns whether
        counters moved that are not written yet."""
        if needs_flush:
            await self._write_status(job_ctx)
            if job_ctx.new_backoff_record is not None:
                self.backoff_store.update(job_ctx.new_backoff_record)
            needs_flush = False
        rm_err: errors.StatusError | None = None
        if pods:
            uids = [p.metadata.uid for p in pods]
            self.finalizer_expectations.expect_removed(job_ctx.key, uids)
            for pod, err in zip(pods, await self.pod_control.remove_finalizers(pods), strict=True):
                uid = pod.metadata.uid
                if err is None:
                    uids_with_finalizer.discard(uid)
                    continue
                self.finalizer_expectations.observed(job_ctx.key, uid)  # no update will come for it
                if isinstance(err, errors.NotFound):
                    uids_with_finalizer.discard(uid)
                elif rm_err is None:
                    rm_err = err
        if tracking.clean_uncounted(job_ctx.job.status, uids_with_finalizer):
            needs_flush = True
        if rm_err is not None:
            if needs_flush:
                await self._write_status(job_ctx)
            raise rm_err
        return needs_flush

    def _enact_finished(self, job_ctx: SyncContext) -> bool:
        """Add the terminal condition once nothing is uncounted and no pod is terminating."""
        condition = job_ctx.finished_condition
        if condition is None:
            return False
        status = job_ctx.job.status
        uncounted = status.uncounted_terminated_pods
        if len(uncounted.succeeded) or len(uncounted.failed) or job_ctx.terminating > 0:
            return False
        ensure_condition(status, condition.type, condition.status, condition.reason, condition.message, job_ctx.now)
        if condition.type == spec.COMPLETE:
            c = spec.find_condition(job_ctx.job, spec.COMPLETE)
            status.completion_time = c.last_transition_time if c is not None else timeutil.format(job_ctx.now)
        return True

    def _record_finished(self, job: batch_pb2.Job, cond: batch_pb2.JobCondition) -> None:
        metrics.job_finished(spec.completion_mode(job), "succeeded" if cond.type == spec.COMPLETE else "failed",
                             cond.reason)
        if cond.type == spec.COMPLETE:
            completions = spec.completions(job)
            if completions is not None and job.status.succeeded > completions:
                self.recorder.event(job, "Warning", "TooManySucceededPods",
                                    "Too many succeeded pods running after completion count reached")
            self.recorder.event(job, "Normal", "Completed", "Job completed")
        else:
            self.recorder.event(job, "Warning", cond.reason, cond.message)

    async def _write_status(self, job_ctx: SyncContext) -> None:
        """Write the sync's status; count the pods it moved into the counters, as Kubernetes'
        recordJobPodFinished does after each status write."""
        job_ctx.job = job = await self.update_status(job_ctx.job)
        succeeded, failed = job.status.succeeded, job.status.failed
        metrics.job_pods_finished(spec.completion_mode(job), succeeded - job_ctx.counted[0],
                                  failed - job_ctx.counted[1])
        job_ctx.counted = (succeeded, failed)

    async def update_status(self, job: batch_pb2.Job) -> batch_pb2.Job:
        updated: batch_pb2.Job = await self.client.update_status(job)
        # Remembered (exactly as written: a copy, as the sync goes on changing its own) until
        # the cache catches up: see latest_job.
        self._written.remember(meta.key_of(updated), copy_of(updated))
        return updated
