"""The pure CronJob arithmetic: most recent due time, missed count, requeue time, names, history."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from controlplane.controllers.cronjob import schedule as S
from ketch.api import cron, timeutil
from ketch.v1 import batch_pb2

T0 = 28_333_334 * 60.0  # a whole minute (2023-11-14T22:14:00Z)


@dataclass(frozen=True)
class Case:
    name: str
    expr: str
    earliest: float
    now: float
    deadline: int | None = None
    # expectations
    most_recent: float | None = None
    missed: int = 0


CASES = [
    Case("nothing is due before the first time", "*/1 * * * *", T0, T0 + 59, most_recent=None, missed=0),
    Case("the first time is due at that time", "*/1 * * * *", T0, T0 + 60, most_recent=T0 + 60, missed=1),
    Case("one time due, the next not yet", "*/1 * * * *", T0, T0 + 90, most_recent=T0 + 60, missed=1),
    Case("of several missed times only the latest", "*/1 * * * *", T0, T0 + 305, most_recent=T0 + 300, missed=5),
    Case("more than 100 missed still gives the latest", "*/1 * * * * *", T0, T0 + 1000.5,
         most_recent=T0 + 1000, missed=1000),
    Case("a deadline hides older missed times", "*/1 * * * *", T0, T0 + 3600 + 30, deadline=60,
         most_recent=T0 + 3600, missed=1),
    Case("a deadline shorter than the time since the last due time: none", "0 * * * *", T0 - 14 * 60,
         T0 + 46 * 60 + 700, deadline=600, most_recent=None, missed=0),
    Case("an irregular schedule whose jump overshoots still finds the latest", "0 6,10 * * *",
         T0 - 22 * 3600 - 14 * 60 + 6 * 3600 - 60,  # just before 06:00 on the day before T0
         T0 + 10 * 3600, most_recent=None, missed=-1),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_most_recent_schedule_time(case: Case) -> None:
    sched = cron.parse(case.expr, "UTC")
    found = S.most_recent_schedule_time(sched, case.earliest, case.now, case.deadline)
    if case.missed == -1:
        # The real most recent time, computed by walking every time.
        last = None
        for t in sched.times_after(case.earliest):
            if t > case.now:
                break
            last = t
        assert found.time == last
        return
    assert found.time == case.most_recent
    assert found.missed == case.missed


def test_invalid_gap_is_an_error() -> None:
    with pytest.raises(cron.ScheduleError):
        S.most_recent_schedule_time(cron.parse("0 0 31 2 *", "UTC"), T0, T0 + 10)


@pytest.mark.parametrize(("expr", "earliest", "now", "expected"), [
    ("*/1 * * * *", T0, T0 + 10, T0 + 60),            # nothing missed: next after earliest
    ("*/1 * * * *", T0, T0 + 130, T0 + 180),          # missed: next after the most recent
    ("*/1 * * * * *", T0, T0 + 0.2, T0 + 1),
    ("*/1 * * * * *", T0 + 5, T0 + 5.001, T0 + 6),    # just ran: the next second
], ids=["nothing-missed", "missed", "seconds", "just-ran"])
def test_next_requeue_time(expr: str, earliest: float, now: float, expected: float) -> None:
    at = S.next_requeue_time(cron.parse(expr, "UTC"), earliest, now)
    assert at == pytest.approx(expected + S.NEXT_SCHEDULE_DELTA)


def test_job_names_are_deterministic_and_unique_per_time() -> None:
    assert S.job_name("hello", T0 + 59, by_seconds=False) == f"hello-{int(T0 // 60)}"
    assert S.job_name("hello", T0 + 5, by_seconds=True) == f"hello-{int(T0) + 5}"
    names = {S.job_name("tick", T0 + i, by_seconds=True) for i in range(120)}
    assert len(names) == 120
    assert len(S.job_name("x" * 52, T0, by_seconds=True)) <= 63


def _job(name: str, cond: str | None, start: str = "") -> batch_pb2.Job:
    j = batch_pb2.Job()
    j.metadata.name = name
    j.status.start_time = start
    if cond:
        c = j.status.conditions.add()
        c.type, c.status = cond, "True"
    return j


def test_history_keeps_the_newest_of_each_kind() -> None:
    jobs = [
        _job("a", "Complete", "2026-01-01T00:00:01Z"),
        _job("b", "Complete", "2026-01-01T00:00:03Z"),
        _job("c", "Complete", "2026-01-01T00:00:02Z"),
        _job("d", "Failed", "2026-01-01T00:00:01Z"),
        _job("e", "Failed", ""),                      # no start time: counts as newest
        _job("f", None, "2026-01-01T00:00:00Z"),      # running: never deleted
    ]
    assert [j.metadata.name for j in S.history_to_delete(jobs, 2, 1)] == ["a", "d"]
    assert [j.metadata.name for j in S.history_to_delete(jobs, 0, 0)] == ["a", "c", "b", "d", "e"]
    assert S.history_to_delete(jobs, 3, 2) == []


def test_scheduled_time_round_trips_through_the_annotation() -> None:
    j = batch_pb2.Job()
    j.metadata.annotations[S.SCHEDULED_TIMESTAMP_ANNOTATION] = cron.format_in_zone(T0, "Asia/Tokyo")
    assert S.scheduled_time_of(j) == T0
    assert S.scheduled_time_of(batch_pb2.Job()) is None
    assert timeutil.format(T0) == "2023-11-14T22:14:00Z"


def test_miss_schedule_time_format() -> None:
    assert S.format_rfc1123z(T0) == "Tue, 14 Nov 2023 22:14:00 +0000"
