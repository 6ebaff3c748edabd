"""TTL-after-finished: a finished Job with ttlSecondsAfterFinished is deleted when its TTL expires.

The expiry is the finish time (lastTransitionTime of the Complete or Failed condition that is
True) plus the TTL. The handlers enqueue finished Jobs that have a TTL; sync re-queues a key
with add_after until the expiry, then re-reads the Job from the API (the TTL may have been
changed, or the Job replaced by another of the same name) and deletes it with propagation
Foreground and a UID precondition, so its pods go first. Nothing polls.
"""

from __future__ import annotations

import logging
from typing import Any

from ketch.api import errors, timeutil
from ketch.api.meta import key_of, split_key
from ketch.client.cache import DeletedFinalStateUnknown
from ketch.v1 import batch_pb2

from .base import Controller, ControllerContext

log = logging.getLogger(__name__)


# -- pure ----------------------------------------------------------------------------------------


def needs_cleanup(job: batch_pb2.Job) -> bool:
    """A Job with a TTL, finished, and not already being deleted."""
    return (job.spec.HasField("ttl_seconds_after_finished") and not job.metadata.deletion_timestamp
            and finish_time(job) is not None)


def finish_time(job: batch_pb2.Job) -> float | None:
    """When the Job finished (its True Complete or Failed condition's transition), or None."""
    for c in job.status.conditions:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return timeutil.parse(c.last_transition_time) if c.last_transition_time else None
    return None


def time_left(job: batch_pb2.Job, now: float) -> float | None:
    """Seconds until the Job expires (≤ 0: expired now), or None when it does not expire."""
    if not needs_cleanup(job):
        return None
    finished = finish_time(job)
    assert finished is not None
    return finished + job.spec.ttl_seconds_after_finished - now


# -- the controller ------------------------------------------------------------------------------


class TTLAfterFinishedController(Controller):
    name = "ttl-after-finished"
    queue_name = "ttl_jobs_to_delete"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.jobs = ctx.informers.informer(batch_pb2.Job)
        self.jobs.add_handler(self.add_job, self.update_job, self.delete_job)

    def add_job(self, job: batch_pb2.Job) -> None:
        if needs_cleanup(job):
            self.queue.add(key_of(job))

    def update_job(self, old: Any, new: Any) -> None:
        self.add_job(new)

    def delete_job(self, obj: Any) -> None:
        job = obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj
        if job is not None:
            self.queue.forget(key_of(job))

    async def sync(self, key: str) -> None:
        cached = self.jobs.get(*split_key(key))
        if cached is None:
            return
        left = time_left(cached, self.clock.now())
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        # Expired by the cache: confirm on the latest object before deleting.
        ns, name = split_key(key)
        try:
            fresh = await self.client.get("Job", name, ns)
        except errors.NotFound:
            return
        left = time_left(fresh, self.clock.now())
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left)
            return
        log.info("ttl-after-finished: deleting job %s (finished %s, ttl %ss)", key,
                 _finished_text(fresh), fresh.spec.ttl_seconds_after_finished)
        try:
            await self.client.delete("Job", name, ns, propagation_policy="Foreground", uid=fresh.metadata.uid)
        except errors.Conflict:
            return  # another Job of the same name now: its own events bring it here


def _finished_text(job: batch_pb2.Job) -> str:
    for c in job.status.conditions:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c.last_transition_time
    return ""
