"""The Job controller's collaborators tested alone: PodManager (manageJob) and StatusWriter's
memory of our last status writes, each built from its explicit constructor arguments."""

from __future__ import annotations

import pytest

from controlplane.controllers.job import decisions
from controlplane.controllers.job.backoff import BackoffRecord, BackoffStore
from controlplane.controllers.job.expectations import ControllerExpectations
from controlplane.controllers.job.manage import PodManager
from controlplane.controllers.job.podcontrol import FakePodControl
from controlplane.controllers.job.status import StatusWriter
from controlplane.controllers.job.tracking import FinalizerExpectations
from controlplane.controllers.options import JobOptions
from ketch.client.cache import copy_of

from .builders import NOW, new_job

KEY = "default/foobar"


class Requeues:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def __call__(self, key: str, delay: float) -> None:
        self.calls.append((key, delay))


def _context(parallelism: int, completions: int | None = None, failures: int = 0) -> decisions.SyncContext:
    job_ctx = decisions.SyncContext(key=KEY, job=new_job(parallelism, completions), pods=[], now=NOW)
    decisions.classify(job_ctx)
    if failures:
        job_ctx.new_backoff_record = BackoffRecord(KEY, failures, NOW - 1)
    return job_ctx


def _manager(pod_control: FakePodControl, requeues: Requeues) -> tuple[PodManager, ControllerExpectations]:
    expectations = ControllerExpectations(lambda: NOW)
    return PodManager(pod_control, expectations, JobOptions(backoff_base=10, backoff_max=360), requeues), expectations


async def test_creates_start_slow_then_go_in_one_batch_after_a_clean_sync() -> None:
    pc, requeues = FakePodControl(), Requeues()
    manager, expectations = _manager(pc, requeues)
    active, err = await manager.manage_job(_context(parallelism=7))
    assert (active, err) == (7, None)
    assert pc.create_calls == 3  # batches of 1, 2 and 4
    assert not expectations.satisfied(KEY)  # seven creations expected from the informer
    pc.create_calls = 0
    expectations.delete(KEY)
    await manager.manage_job(_context(parallelism=5))
    assert pc.create_calls == 1  # the last sync's creates all succeeded
    manager.forget(KEY)
    pc.create_calls = 0
    await manager.manage_job(_context(parallelism=3))
    assert pc.create_calls == 2  # forgotten: slow start again (1, then 2)


async def test_a_failed_create_stops_the_slow_start_and_lowers_the_expectations() -> None:
    pc, requeues = FakePodControl(create_limit=2), Requeues()
    manager, expectations = _manager(pc, requeues)
    active, err = await manager.manage_job(_context(parallelism=7))
    assert err is not None
    assert len(pc.created) == 2
    assert active == 2  # the failure and the four never tried are not active
    for _ in range(2):
        expectations.creation_observed(KEY)
    assert expectations.satisfied(KEY)


@pytest.mark.parametrize(("failures", "creates"), [(0, 1), (1, 0), (3, 0)], ids=["no-failures", "one", "three"])
async def test_backoff_delays_creation_and_requeues_the_job(failures: int, creates: int) -> None:
    pc, requeues = FakePodControl(), Requeues()
    manager, _ = _manager(pc, requeues)
    await manager.manage_job(_context(parallelism=1, completions=1, failures=failures))
    assert len(pc.created) == creates
    if failures:
        # base 10 s doubling, the last failure 1 s ago
        assert requeues.calls == [(KEY, 10 * 2 ** (failures - 1) - 1)]
    else:
        assert requeues.calls == []


def _writer() -> StatusWriter:
    return StatusWriter(client=None, recorder=None, pod_control=FakePodControl(),  # type: ignore[arg-type]
                        backoff_store=BackoffStore(), finalizer_expectations=FinalizerExpectations(),
                        requeue_after=Requeues())


def _job_at(rv: int, uid: str | None = None):  # type: ignore[no-untyped-def]
    job = new_job(1, 1)
    job.metadata.resource_version = str(rv)
    if uid is not None:
        job.metadata.uid = uid
    return job


def test_latest_job_prefers_our_newer_write_until_the_cache_catches_up() -> None:
    writer = _writer()
    assert writer.latest_job(KEY, _job_at(10)) is not None
    written = _job_at(12)
    writer._written.remember(KEY, copy_of(written))
    assert writer.latest_job(KEY, _job_at(11)).metadata.resource_version == "12"
    # The cache shows our write (or something newer): the cache wins and the memory is dropped.
    assert writer.latest_job(KEY, _job_at(13)).metadata.resource_version == "13"
    assert writer.latest_job(KEY, _job_at(11)).metadata.resource_version == "11"


def test_latest_job_ignores_a_write_to_an_older_job_of_the_same_name() -> None:
    writer = _writer()
    writer._written.remember(KEY, _job_at(50))
    replaced = _job_at(20, uid="another-uid")
    assert writer.latest_job(KEY, replaced) is replaced
    assert writer.latest_job(KEY, None) is None
