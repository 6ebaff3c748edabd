"""Pure CronJob arithmetic: which scheduled time is due, when to look again, and what to name a run.

Kubernetes 1.31's rules (pkg/controller/cronjob/utils.go), on a `ketch.api.cron.Schedule`:
- the earliest time to consider is status.lastScheduleTime, else the CronJob's creation time,
  and (when a deadline is set) no earlier than `now - startingDeadlineSeconds`;
- of the times missed since then only the most recent runs; the number missed is estimated from
  the first two (`(now - t1) / (t2 - t1) + 1`), and more than 100 gives a warning but still runs
  the most recent one;
- the next look is at `next(most recent) + NEXT_SCHEDULE_DELTA`.

One deliberate improvement: Kubernetes' shortcut to the most recent time can overshoot on
irregular schedules (short first gap, long later gaps) and then reports no time at all; here the
search widens backwards until it finds the real most recent time.

Job names: `<cronjob>-<minutes since the epoch>` for minute schedules, as Kubernetes; a
sub-minute schedule (6 fields, or `@every` under a minute) uses `<cronjob>-<seconds since the
epoch>`, which stays unique per run and deterministic (10 digits now, so a 52-character CronJob
name still gives a Job name of at most 63). The two forms cannot collide (8 vs 10 digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ketch.api import timeutil
from ketch.api.cron import Schedule, ScheduleError
from ketch.v1 import batch_pb2

# Requeue a little after the scheduled time so that the sync sees it as due. Kubernetes pads by
# 100 ms for clock skew between machines; here the clock is the control plane's own, and a few
# milliseconds keep runs punctual.
NEXT_SCHEDULE_DELTA = 0.005
TOO_MANY_MISSED = 100
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
DEFAULT_SUCCESSFUL_HISTORY = 3
DEFAULT_FAILED_HISTORY = 1


@dataclass(frozen=True)
class MostRecent:
    """What mostRecentScheduleTime found: the earliest time considered, the most recent due time
    (None if nothing is due), and roughly how many times were missed."""

    earliest: float
    time: float | None
    missed: int


def earliest_time(creation: float, last_schedule: float | None) -> float:
    return last_schedule if last_schedule is not None else creation


def most_recent_schedule_time(sched: Schedule, earliest: float, now: float,
                              starting_deadline: int | None = None) -> MostRecent:
    """The most recent schedule time in (earliest, now]; raises ScheduleError when the schedule
    has no next time or two consecutive times less than a second apart."""
    if starting_deadline is not None:
        earliest = max(earliest, now - starting_deadline)
    times = sched.times_after(earliest)
    t1 = next(times)
    if now < t1:
        return MostRecent(earliest, None, 0)
    t2 = next(times)
    if now < t2:
        return MostRecent(earliest, t1, 1)
    interval = round(t2 - t1)
    if interval < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    missed = int(now - t1) // interval + 1
    # Jump close to now, a step back, and walk forward (exact for regular schedules).
    most = _last_at_or_before(sched, t1 + (missed - 2) * interval, now)
    span = float(interval)
    while most is None or most < t1:
        # The jump overshot (an irregular schedule): widen the search backwards.
        span *= 2
        start = max(earliest, now - span)
        most = _last_at_or_before(sched, start, now)
        if start <= earliest:
            break
    if most is None or most < t1:
        most = t1
    return MostRecent(earliest, most, missed)


def _last_at_or_before(sched: Schedule, start: float, now: float) -> float | None:
    last = None
    for t in sched.times_after(start):
        if t > now:
            break
        last = t
    return last


def next_requeue_time(sched: Schedule, earliest: float, now: float) -> float | None:
    """When to look at the CronJob again (nextScheduleTimeDuration, as an absolute time), or None
    if the schedule has no next time."""
    try:
        found = most_recent_schedule_time(sched, earliest, now)
        base = found.time if found.time is not None else (earliest if found.missed == 0 else now)
    except ScheduleError:
        base = now
    try:
        return sched.next_after(base) + NEXT_SCHEDULE_DELTA
    except ScheduleError:
        return None


def job_name(cronjob_name: str, scheduled: float, by_seconds: bool) -> str:
    """The deterministic name of the run for one scheduled time."""
    stamp = int(scheduled // 1) if by_seconds else int(scheduled // 60)
    return f"{cronjob_name}-{stamp}"


def scheduled_time_of(job: batch_pb2.Job) -> float | None:
    """The scheduled time a Job was created for, from its annotation (None for manual runs)."""
    text = job.metadata.annotations.get(SCHEDULED_TIMESTAMP_ANNOTATION, "")
    if not text:
        return None
    try:
        return timeutil.parse(text)
    except ValueError:
        return None


def format_rfc1123z(ts: float) -> str:
    """Go's time.RFC1123Z in UTC, as Kubernetes words the MissSchedule event."""
    return datetime.fromtimestamp(int(ts // 1), UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


# -- Jobs --------------------------------------------------------------------------------------

def finished_condition(job: batch_pb2.Job) -> str | None:
    """"Complete" or "Failed" if the Job has finished (that condition is True), else None."""
    for c in job.status.conditions:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return str(c.type)
    return None


def _start_key(job: batch_pb2.Job) -> tuple[int, float, str]:
    start = job.status.start_time
    # Jobs without a start time sort last; the name breaks ties.
    return (0, timeutil.parse(start), job.metadata.name) if start else (1, 0.0, job.metadata.name)


def jobs_beyond_history(jobs: list[Any], limit: int) -> list[Any]:
    """The oldest finished Jobs beyond the limit (by status.startTime, unset last, then name)."""
    excess = len(jobs) - max(limit, 0)
    if excess <= 0:
        return []
    return sorted(jobs, key=_start_key)[:excess]


def history_to_delete(children: list[Any], successful_limit: int | None,
                      failed_limit: int | None) -> list[Any]:
    """Finished children to delete so that at most the limits of each kind remain."""
    complete = [j for j in children if finished_condition(j) == "Complete" and not j.metadata.deletion_timestamp]
    failed = [j for j in children if finished_condition(j) == "Failed" and not j.metadata.deletion_timestamp]
    out: list[Any] = []
    if successful_limit is not None:
        out += jobs_beyond_history(complete, successful_limit)
    if failed_limit is not None:
        out += jobs_beyond_history(failed, failed_limit)
    return out
