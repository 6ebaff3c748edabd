"""When a finished Job expires (controlplane.controllers.ttlafterfinished), table-driven."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from controlplane.controllers.ttlafterfinished import time_left
from ketch.api import timeutil
from ketch.v1 import batch_pb2

NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Case:
    name: str
    ttl: int | None
    conditions: tuple[tuple[str, str, float], ...]  # (type, status, seconds before NOW)
    deleting: bool = False
    left: float | None = None


CASES = [
    Case("no TTL never expires", None, (("Complete", "True", 100),)),
    Case("unfinished never expires", 10, (("SuccessCriteriaMet", "True", 5),)),
    Case("a False Complete is not finished", 10, (("Complete", "False", 5),)),
    Case("complete: finish plus TTL", 10, (("Complete", "True", 4),), left=6),
    Case("failed counts as finished", 10, (("Failed", "True", 15),), left=-5),
    Case("TTL zero expires at once", 0, (("Complete", "True", 0),), left=0),
    Case("a job being deleted is left alone", 10, (("Complete", "True", 100),), deleting=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_time_left(case: Case) -> None:
    job = batch_pb2.Job()
    if case.ttl is not None:
        job.spec.ttl_seconds_after_finished = case.ttl
    for ctype, status, ago in case.conditions:
        c = job.status.conditions.add()
        c.type, c.status, c.last_transition_time = ctype, status, timeutil.format(NOW - ago)
    if case.deleting:
        job.metadata.deletion_timestamp = timeutil.format(NOW)
    assert time_left(job, NOW) == case.left
