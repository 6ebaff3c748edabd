"""The CronJob controller: Jobs from a CronJob's template at its scheduled times, as Kubernetes 1.31.

Handlers only enqueue. `sync(key)` follows Kubernetes' order: mirror the children (finished,
unexpected and missing Jobs) into status; stop there if the CronJob is being deleted, suspended or
unschedulable; find the most recent due time (`schedule.py`); apply concurrencyPolicy; create the
Job; trim the history; write status once; requeue at the next scheduled time with `add_after`.

Never twice for one scheduled time: the Job's name is derived from the time, so a second create
fails with AlreadyExists (then the Job is adopted into status.active if it is ours), and
status.lastScheduleTime is persisted with the run. The status this controller last wrote is kept
until the informer catches up (`LastWrites`), so a sync right after a write never acts on the older
status.

Punctuality: the requeue is computed from the injected clock (`ctx.clock`) and set a few
milliseconds after the scheduled time; the path from there to the Job is one create RPC (deletes
for Replace go before it in one batch; history trimming, status and events come after it).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from controlplane import metrics
from ketch.api import cron, errors, meta, timeutil
from ketch.api.cron import Schedule, ScheduleError
from ketch.client.cache import DeletedFinalStateUnknown, LastWrites, copy_of, resource_version_of
from ketch.client.clientset import Batch
from ketch.client.workqueue import RateLimiter
from ketch.v1 import batch_pb2

from ..base import Controller, ControllerContext
from .schedule import (
    DEFAULT_FAILED_HISTORY,
    DEFAULT_SUCCESSFUL_HISTORY,
    SCHEDULED_TIMESTAMP_ANNOTATION,
    TOO_MANY_MISSED,
    earliest_time,
    finished_condition,
    format_rfc1123z,
    history_to_delete,
    job_name,
    most_recent_schedule_time,
    next_requeue_time,
    scheduled_time_of,
)

log = logging.getLogger(__name__)

COMPONENT = "cronjob-controller"


@functools.lru_cache(maxsize=1024)
def parse_schedule(expr: str, tz: str | None) -> Schedule:
    """Parsed schedules, memoised: a sub-minute CronJob is synced every second."""
    return cron.parse(expr, tz)


def time_zone_of(cj: batch_pb2.CronJob) -> str | None:
    return cj.spec.time_zone if cj.spec.HasField("time_zone") else None


def job_from_template(cj: batch_pb2.CronJob, scheduled: float, by_seconds: bool) -> batch_pb2.Job:
    """The Job for one scheduled time: the template's metadata and spec, the scheduled-timestamp
    annotation (in the CronJob's zone; UTC without one, as Kubernetes), a controller reference."""
    tmpl = cj.spec.job_template
    job = batch_pb2.Job(api_version="batch/v1", kind="Job")
    md = job.metadata
    md.name = job_name(cj.metadata.name, scheduled, by_seconds)
    md.namespace = cj.metadata.namespace
    for k, v in tmpl.metadata.labels.items():
        md.labels[k] = v
    for k, v in tmpl.metadata.annotations.items():
        md.annotations[k] = v
    md.annotations[SCHEDULED_TIMESTAMP_ANNOTATION] = cron.format_in_zone(scheduled, time_zone_of(cj))
    md.owner_references.append(meta.owner_ref_for(cj, controller=True, block=True))
    job.spec.CopyFrom(tmpl.spec)
    return job


class _NoRequeue(Exception):
    """The schedule cannot produce times: report, write status, and wait for a spec change."""


def _remove_active(cj: batch_pb2.CronJob, uid: str) -> bool:
    kept = [r for r in cj.status.active if r.uid != uid]
    if len(kept) == len(cj.status.active):
        return False
    del cj.status.active[:]
    cj.status.active.extend(kept)
    return True


class CronJobController(Controller):
    name = "cronjob"
    workers = 4

    def __init__(self, ctx: ControllerContext, rate_limiter: RateLimiter | None = None) -> None:
        super().__init__(ctx, rate_limiter)
        self.recorder = ctx.recorder(COMPONENT)
        self.cronjobs = ctx.informers.informer(batch_pb2.CronJob)
        self.jobs = ctx.informers.informer(batch_pb2.Job)
        # The status this controller wrote last, per key, until the informer has caught up.
        self._written: LastWrites[batch_pb2.CronJob] = LastWrites()
        self.cronjobs.add_handler(self.add_cronjob, self.update_cronjob, self.delete_cronjob)
        self.jobs.add_handler(self.add_job, self.update_job, self.delete_job)

    # -- handlers: enqueue only ------------------------------------------------------------------

    def add_cronjob(self, cj: batch_pb2.CronJob) -> None:
        self.enqueue(meta.key_of(cj))

    def update_cronjob(self, old: Any, new: Any) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        key = meta.key_of(new)
        if old.spec.schedule != new.spec.schedule or time_zone_of(old) != time_zone_of(new):
            # A new schedule takes effect from its next time, not from missed times under it.
            try:
                sched = parse_schedule(new.spec.schedule, time_zone_of(new))
            except ScheduleError:
                self.enqueue(key)  # the sync reports it
                return
            last = timeutil.parse_or_none(new.status.last_schedule_time)
            earliest = earliest_time(timeutil.parse(new.metadata.creation_timestamp), last)
            now = self.clock.now()
            at = next_requeue_time(sched, earliest, now)
            if at is not None:
                self.queue.add_after(key, at - now)
            return
        self.enqueue(key)

    def delete_cronjob(self, obj: Any) -> None:
        cj = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if cj is None:
            return
        key = meta.key_of(cj)
        self._written.forget(key)
        self.recorder.forget(cj.metadata.uid)
        self.enqueue(key)

    def _owner_key(self, job: batch_pb2.Job) -> str | None:
        """The key of the CronJob that controls a Job, if it exists with that uid."""
        ref = meta.controller_ref(job)
        if ref is None or ref.kind != "CronJob":
            return None
        cj = self.cronjobs.get(job.metadata.namespace, ref.name)
        if cj is None or cj.metadata.uid != ref.uid:
            return None
        return meta.key(job.metadata.namespace, ref.name)

    def add_job(self, job: batch_pb2.Job) -> None:
        key = self._owner_key(job)
        if key is not None:
            self.enqueue(key)

    def update_job(self, old: Any, new: Any) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        old_key, new_key = self._owner_key(old), self._owner_key(new)
        if old_key is not None and old_key != new_key:
            self.enqueue(old_key)
        if new_key is not None:
            self.enqueue(new_key)

    def delete_job(self, obj: Any) -> None:
        job = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if job is None:
            return
        key = self._owner_key(job)
        if key is not None:
            self.enqueue(key)

    # -- sync --------------------------------------------------------------------------------------

    def _freshest(self, key: str) -> Any | None:
        return self._written.latest(key, self.cronjobs.store.get(key))

    async def sync(self, key: str) -> None:
        cached = self._freshest(key)
        if cached is None:
            return  # deleted: nothing to schedule, and no requeue
        ns = cached.metadata.namespace
        children = [j for j in self.jobs.by_index("controller", cached.metadata.uid)
                    if j.metadata.namespace == ns]
        cj = copy_of(cached)

        # 1. Children into status: finished ones leave active, unexpected ones are reported (or
        #    adopted if this controller made them), vanished ones leave active.
        cj = await self._reconcile_children(cj, children)
        await self._drop_missing(cj, children)

        # 2. Run the most recent due time, if any and if allowed: not for a CronJob being
        #    deleted, in an unknown zone, suspended or unschedulable (and then no requeue).
        sched = self._schedulable(cj)
        if sched is not None:
            try:
                await self._run_due(cj, sched)
            except _NoRequeue:
                sched = None

        # 3. History limits (even when suspended), then status (once), then the next look.
        await self._trim_history(cj, children)
        await self._write_status(key, cached, cj)
        if sched is not None:
            self._requeue(key, cj, sched)

    async def _reconcile_children(self, cj: batch_pb2.CronJob, children: list[Any]) -> Any:
        unexpected, completed = self._mirror_children(cj, children)
        if unexpected:
            # The cache may lag our own status: look at the stored CronJob before complaining.
            fresh = await self.client.get("CronJob", cj.metadata.name, cj.metadata.namespace)
            if fresh.metadata.uid == cj.metadata.uid and resource_version_of(fresh) > resource_version_of(cj):
                cj = fresh
                unexpected, completed = self._mirror_children(cj, children)
        for name, cond in completed:
            self.recorder.event(cj, "Normal", "SawCompletedJob", f"Saw completed job: {name}, condition: {cond}")
        for job in unexpected:
            scheduled = scheduled_time_of(job)
            if scheduled is not None:
                # Ours (it carries the scheduled time): the status write after creating it was
                # lost. Track it, so Forbid and Replace see it and the time is not run again.
                cj.status.active.append(meta.object_ref(job))
                last = timeutil.parse_or_none(cj.status.last_schedule_time)
                if last is None or scheduled > last:
                    cj.status.last_schedule_time = timeutil.format(scheduled)
                continue
            self.recorder.event(cj, "Warning", "UnexpectedJob",
                                f"Saw a job that the controller did not create or forgot: {job.metadata.name}")
        return cj

    def _mirror_children(self, cj: batch_pb2.CronJob, children: list[Any]) -> tuple[list[Any], list[tuple[str, str]]]:
        """Finished children leave active; lastSuccessfulTime follows the latest completion.
        Returns the unfinished children not in active, and (name, condition) of those that left."""
        active = {r.uid for r in cj.status.active}
        unexpected: list[Any] = []
        completed: list[tuple[str, str]] = []
        for job in children:
            cond = finished_condition(job)
            if cond is None:
                if job.metadata.uid not in active:
                    unexpected.append(job)
                continue
            if job.metadata.uid in active:
                _remove_active(cj, job.metadata.uid)
                completed.append((job.metadata.name, cond))
            if cond == "Complete" and job.status.completion_time:
                done = timeutil.parse(job.status.completion_time)
                last = timeutil.parse_or_none(cj.status.last_successful_time)
                if last is None or done > last:
                    cj.status.last_successful_time = job.status.completion_time
        return unexpected, completed

    async def _drop_missing(self, cj: batch_pb2.CronJob, children: list[Any]) -> None:
        """Active references whose Job is gone (asked of the API, not the cache) leave active."""
        present = {j.metadata.uid for j in children}
        for ref in list(cj.status.active):
            if ref.uid in present:
                continue
            try:
                await self.client.get("Job", ref.name, ref.namespace or cj.metadata.namespace)
            except errors.NotFound:
                self.recorder.event(cj, "Normal", "MissingJob", f"Active job went missing: {ref.name}")
                _remove_active(cj, ref.uid)

    def _schedulable(self, cj: batch_pb2.CronJob) -> Schedule | None:
        """The schedule to run on, or None (with the event Kubernetes gives) if nothing may run."""
        if cj.metadata.deletion_timestamp:
            return None
        tz = time_zone_of(cj)
        if tz is not None and cron.time_zone_error(tz, strict=False):
            self.recorder.event(cj, "Warning", "UnknownTimeZone",
                                f'invalid timeZone: "{tz}": unknown time zone {tz}')
            return None
        if cj.spec.HasField("suspend") and cj.spec.suspend:
            return None
        expr = cj.spec.schedule
        try:
            sched = parse_schedule(expr, tz)
        except ScheduleError as err:
            self.recorder.event(cj, "Warning", "UnparseableSchedule", f'unparseable schedule: "{expr}" : {err}')
            return None
        if "TZ" in expr:
            self.recorder.event(cj, "Warning", "UnsupportedSchedule",
                                f'CRON_TZ or TZ used in schedule "{expr}" is not officially supported, see '
                                "https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details")
        return sched

    async def _run_due(self, cj: batch_pb2.CronJob, sched: Schedule) -> None:
        now = self.clock.now()
        spec, status = cj.spec, cj.status
        deadline = spec.starting_deadline_seconds if spec.HasField("starting_deadline_seconds") else None
        earliest = earliest_time(timeutil.parse(cj.metadata.creation_timestamp),
                                 timeutil.parse_or_none(status.last_schedule_time))
        try:
            found = most_recent_schedule_time(sched, earliest, now, deadline)
        except ScheduleError as err:
            self.recorder.event(cj, "Warning", "InvalidSchedule", f"invalid schedule: {spec.schedule} : {err}")
            raise _NoRequeue from None
        scheduled = found.time
        if scheduled is None:
            if deadline is not None:
                self._report_missed(cj, sched, earliest, now, deadline)
            return
        if found.missed > TOO_MANY_MISSED:
            self.recorder.event(cj, "Warning", "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds "
                                "or check clock skew")
        if deadline is not None and scheduled + deadline < now:
            self.recorder.event(cj, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {format_rfc1123z(scheduled)}")
            return
        name = job_name(cj.metadata.name, scheduled, sched.has_seconds)
        if any(r.name == name for r in status.active) or \
                timeutil.parse_or_none(status.last_schedule_time) == scheduled:
            return
        policy = spec.concurrency_policy or "Allow"
        if policy == "Forbid" and status.active:
            self.recorder.event(cj, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and concurrency policy is Forbid")
            return
        if policy == "Replace" and status.active:
            await self._delete_jobs(cj, list(status.active), replacing=True)
        await self._create(cj, job_from_template(cj, scheduled, sched.has_seconds), scheduled)

    def _report_missed(self, cj: batch_pb2.CronJob, sched: Schedule, earliest: float, now: float,
                       deadline: int) -> None:
        """A due time left unrun because it is older than startingDeadlineSeconds (after downtime,
        say) gets the MissSchedule warning. (Kubernetes 1.31 words this event but, as it looks for
        due times only inside the deadline, never reaches it; Ketch tells the user.)"""
        try:
            latest = most_recent_schedule_time(sched, earliest, now).time
        except ScheduleError:
            return
        if latest is not None and latest + deadline < now:
            self.recorder.event(cj, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {format_rfc1123z(latest)}")

    async def _create(self, cj: batch_pb2.CronJob, job: batch_pb2.Job, scheduled: float) -> None:
        try:
            created = await self.client.create(job)
        except errors.AlreadyExists:
            # Made before (its status write was lost), or by someone else: adopt only our own.
            try:
                created = await self.client.get("Job", job.metadata.name, job.metadata.namespace)
            except errors.NotFound:
                raise errors.Conflict(f"job {job.metadata.name} vanished after AlreadyExists") from None
            ref = meta.controller_ref(created)
            if ref is None or ref.uid != cj.metadata.uid:
                return
            if any(r.uid == created.metadata.uid for r in cj.status.active):
                return
            log.info("cronjob %s/%s: job %s already exists; adopting it", cj.metadata.namespace,
                     cj.metadata.name, job.metadata.name)
        except errors.StatusError as err:
            self.recorder.event(cj, "Warning", "FailedCreate", f"Error creating job: {err}")
            raise
        else:
            self.recorder.event(cj, "Normal", "SuccessfulCreate", f"Created job {created.metadata.name}")
            # Kubernetes measures from the scheduled time to the Job's creation.
            metrics.cronjob_creation_skew(self.clock.now() - scheduled)
        cj.status.active.append(meta.object_ref(created))
        cj.status.last_schedule_time = timeutil.format(scheduled)

    async def _delete_jobs(self, cj: batch_pb2.CronJob, targets: list[Any], replacing: bool = False) -> None:
        """Delete Jobs (references or objects) with their pods, in one batch; each leaves active."""
        batch = Batch()
        for t in targets:
            md = getattr(t, "metadata", t)
            batch.delete("Job", md.name, md.namespace or cj.metadata.namespace, propagation_policy="Background")
        results = await self.client.batch(batch)
        failed: errors.StatusError | None = None
        for t, res in zip(targets, results, strict=True):
            md = getattr(t, "metadata", t)
            if res.error is None:
                self.recorder.event(cj, "Normal", "SuccessfulDelete", f"Deleted job {md.name}")
            elif not isinstance(res.error, errors.NotFound):
                self.recorder.event(cj, "Warning", "FailedDelete", f"Deleted job: {res.error}")
                failed = failed or res.error
                continue
            _remove_active(cj, md.uid)
        if failed is not None and replacing:
            raise failed  # do not start the new run next to one that could not be replaced

    async def _trim_history(self, cj: batch_pb2.CronJob, children: list[Any]) -> None:
        spec = cj.spec
        ok = spec.successful_jobs_history_limit if spec.HasField("successful_jobs_history_limit") \
            else DEFAULT_SUCCESSFUL_HISTORY
        failed = spec.failed_jobs_history_limit if spec.HasField("failed_jobs_history_limit") \
            else DEFAULT_FAILED_HISTORY
        doomed = history_to_delete(children, ok, failed)
        if doomed:
            await self._delete_jobs(cj, doomed)

    async def _write_status(self, key: str, original: Any, cj: batch_pb2.CronJob) -> None:
        if cj.status.SerializeToString(deterministic=True) == original.status.SerializeToString(deterministic=True):
            return
        updated = await self.client.update_status(cj)
        self._written.remember(key, updated)

    def _requeue(self, key: str, cj: batch_pb2.CronJob, sched: Schedule) -> None:
        earliest = earliest_time(timeutil.parse(cj.metadata.creation_timestamp),
                                 timeutil.parse_or_none(cj.status.last_schedule_time))
        now = self.clock.now()
        at = next_requeue_time(sched, earliest, now)
        if at is not None:
            self.queue.add_after(key, at - now)
