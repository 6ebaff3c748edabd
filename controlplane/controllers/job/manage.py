"""Creating and deleting a Job's pods: Kubernetes' manageJob and its pod-control calls.

A collaborator of JobController, given what it uses (pod control, the creation/deletion
expectations, the back-off knobs and a way to re-queue a Job later). Creates go out in
slow-start batches, one Batch RPC per batch; deletions of pods the Job no longer wants strip the
tracking finalizer first (they are not failures), while a finishing Job's pods keep it (they
will be counted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ketch.api import errors, meta
from ketch.v1 import batch_pb2, core_pb2

from ..options import JobOptions
from . import decisions, indexed, spec
from .backoff import remaining_per_index
from .decisions import SyncContext
from .expectations import ControllerExpectations
from .podcontrol import PodControl
from .pods import TRACKING_FINALIZER, is_ready, pods_for_removal

MAX_POD_CREATE_DELETE_PER_SYNC = 500


RequeueAfter = Callable[[str, float], None]


class PodManager:
    """manage_job and the pod writes behind it."""

    def __init__(self, pod_control: PodControl, expectations: ControllerExpectations, options: JobOptions,
                 requeue_after: RequeueAfter) -> None:
        self.pod_control = pod_control
        self.expectations = expectations
        self.backoff_base = options.backoff_base
        self.backoff_max = options.backoff_max
        self.requeue_after = requeue_after
        # Jobs whose last creates all succeeded: their next slow start begins with one batch of
        # everything instead of 1, 2, 4, ... (any failure starts over at 1, as Kubernetes does).
        self._creates_ok: set[str] = set()

    def forget(self, key: str) -> None:
        """The Job is gone or finished: drop what was remembered about its creates."""
        self._creates_ok.discard(key)

    async def manage_job(self, job_ctx: SyncContext) -> tuple[int, errors.StatusError | None]:
        """Create or delete pods toward the wanted number of active pods (never both)."""
        job, key = job_ctx.job, job_ctx.key
        active = len(job_ctx.active_pods)
        is_idx = spec.is_indexed(job)
        completions = spec.completions(job)
        if spec.suspended(job):
            to_delete = pods_for_removal(job_ctx.active_pods, active, completions, is_idx)
            return await self._delete_and_account(job_ctx, active, to_delete)
        want = decisions.want_active(job_ctx)
        rm_at_least = max(active - want, 0)
        to_delete = pods_for_removal(job_ctx.active_pods, rm_at_least, completions, is_idx)
        if to_delete:
            return await self._delete_and_account(job_ctx, active, to_delete[:MAX_POD_CREATE_DELETE_PER_SYNC])

        terminating = job_ctx.terminating if spec.only_replace_failed_pods(job) else 0
        diff = want - terminating - active
        if diff <= 0:
            return active, None
        if not spec.has_backoff_limit_per_index(job) and job_ctx.new_backoff_record is not None:
            remaining = job_ctx.new_backoff_record.remaining(job_ctx.now, self.backoff_base, self.backoff_max)
            if remaining > 0:
                self.requeue_after(key, remaining)
                return active, None
        diff = min(diff, MAX_POD_CREATE_DELETE_PER_SYNC)
        indexes: list[int] = []
        if is_idx:
            indexes = decisions.pending_indexes(job_ctx, diff)
            if spec.has_backoff_limit_per_index(job):
                indexes, remaining = self._indexes_ready_now(job_ctx, indexes)
                if remaining > 0:
                    self.requeue_after(key, remaining)
                    return active, None
            diff = len(indexes)
        if diff <= 0:
            return active, None
        return await self._create_pods(job_ctx, active, diff, indexes)

    def _indexes_ready_now(self, job_ctx: SyncContext, indexes: list[int]) -> tuple[list[int], float]:
        """backoffLimitPerIndex: the indexes whose own back-off has passed, or the least wait."""
        now_list: list[int] = []
        least: float | None = None
        for index in indexes:
            last_failed = job_ctx.delayed_deletion_per_index.get(index)
            r = remaining_per_index(job_ctx.now, self.backoff_base, self.backoff_max, last_failed)
            if r <= 0:
                now_list.append(index)
            elif least is None or r < least:
                least = r
        if now_list:
            return now_list, 0.0
        return now_list, least or 0.0

    def _pod_template(self, job: batch_pb2.Job) -> core_pb2.PodTemplateSpec:
        template = core_pb2.PodTemplateSpec()
        template.CopyFrom(job.spec.template)
        if spec.is_indexed(job):
            indexed.add_completion_index_env(template.spec)
        if TRACKING_FINALIZER not in template.metadata.finalizers:
            template.metadata.finalizers.append(TRACKING_FINALIZER)
        return template

    def new_pod(self, job_ctx: SyncContext, template: core_pb2.PodTemplateSpec, owner: Any,
                index: int | None) -> core_pb2.Pod:
        job = job_ctx.job
        pod = core_pb2.Pod(api_version="v1", kind="Pod")
        md = pod.metadata
        tmd = template.metadata
        md.labels.update(tmd.labels)
        md.annotations.update(tmd.annotations)
        md.finalizers.extend(tmd.finalizers)
        md.namespace = job.metadata.namespace
        md.owner_references.append(owner)
        pod.spec.CopyFrom(template.spec)
        if index is None:
            md.generate_name = f"{job.metadata.name}-"
            return pod
        index_text = str(index)
        md.annotations[indexed.COMPLETION_INDEX_KEY] = index_text
        md.labels[indexed.COMPLETION_INDEX_KEY] = index_text
        pod.spec.hostname = f"{job.metadata.name}-{index}"
        md.generate_name = indexed.generate_name_with_index(job.metadata.name, index)
        if spec.has_backoff_limit_per_index(job):
            replaced = job_ctx.delayed_deletion_per_index.get(index)
            failures, ignored = decisions.new_index_failure_counts(job_ctx, replaced)
            md.annotations[indexed.INDEX_FAILURE_COUNT_KEY] = str(failures)
            if ignored > 0:
                md.annotations[indexed.INDEX_IGNORED_FAILURE_COUNT_KEY] = str(ignored)
        return pod

    async def _create_pods(self, job_ctx: SyncContext, active: int, diff: int,
                           indexes: list[int]) -> tuple[int, errors.StatusError | None]:
        """Slow start: batches of 1, 2, 4, ...; each batch is one Batch RPC. A batch with a
        failure stops the rest (retried on a later sync). After a sync whose creates all
        succeeded, the next one sends everything in one batch."""
        job, key = job_ctx.job, job_ctx.key
        job_ctx.action = "pods_created"
        self.expectations.expect_creations(key, diff)
        active += diff
        template = self._pod_template(job)
        owner = meta.owner_ref_for(job)
        first_err: errors.StatusError | None = None
        queue = list(indexes)
        batch_size = diff if key in self._creates_ok else min(diff, 1)
        self._creates_ok.discard(key)
        while diff > 0:
            pods = [self.new_pod(job_ctx, template, owner, queue.pop(0) if queue else None) for _ in range(batch_size)]
            failures = 0
            for err in await self.pod_control.create_pods(job, pods):
                if err is None:
                    continue
                if _namespace_terminating(err):
                    continue  # every later create would fail the same way; nothing to retry
                self.expectations.creation_observed(key)
                active -= 1
                failures += 1
                if first_err is None:
                    first_err = err
            skipped = diff - batch_size
            if failures and skipped > 0:
                active -= skipped
                self.expectations.lower(key, add=skipped)
                break
            diff -= batch_size
            batch_size = min(2 * batch_size, diff)
        if first_err is None:
            self._creates_ok.add(key)
        return active, first_err

    async def _delete_and_account(self, job_ctx: SyncContext, active: int,
                                  to_delete: list[Any]) -> tuple[int, errors.StatusError | None]:
        """Delete pods the Job no longer wants (suspend, scale-down, duplicate indexes), with their
        finalizers stripped first so they are not counted as failed."""
        if not to_delete:
            return active, None
        job_ctx.action = "pods_deleted"
        self.expectations.expect_deletions(job_ctx.key, len(to_delete))
        first_err: errors.StatusError | None = None
        for pod, err in zip(to_delete, await self.pod_control.delete_pods(job_ctx.job, to_delete, True), strict=True):
            if err is not None:
                self.expectations.deletion_observed(job_ctx.key)  # the informer will not see this one
                if not isinstance(err, errors.NotFound):
                    first_err = first_err or err
                    continue
            active -= 1
            job_ctx.terminating += 1
            if is_ready(pod):
                job_ctx.ready -= 1
        return active, first_err

    async def delete_active_pods(self, job: batch_pb2.Job,
                                 pods: list[Any]) -> tuple[int, int, errors.StatusError | None]:
        """A finishing Job's remaining pods: deleted keeping their finalizers (so each is counted).
        Returns (ready deleted, deleted, first error)."""
        if not pods:
            return 0, 0, None
        deleted = deleted_ready = 0
        first_err: errors.StatusError | None = None
        for pod, err in zip(pods, await self.pod_control.delete_pods(job, pods, False), strict=True):
            if err is not None and not isinstance(err, errors.NotFound):
                first_err = first_err or err
                continue
            deleted += 1
            if is_ready(pod):
                deleted_ready += 1
        return deleted_ready, deleted, first_err


def _namespace_terminating(err: errors.StatusError) -> bool:
    return isinstance(err, errors.Forbidden) and "because it is being terminated" in err.message
