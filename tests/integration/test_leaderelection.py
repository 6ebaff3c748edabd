"""Leader election over a Lease against a real API server: one of two candidates leads; when the
leader stops, the other takes over (at once after a release, after expiry after a crash); a
leader that loses its lease stops leading."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from controlplane.apiserver.testing import TestAPIServer
from ketch.client.clientset import Client
from ketch.client.leaderelection import LeaderElector
from tests.conftest import eventually

NS, NAME = "kube-system", "ketch-controlplane"


@dataclass
class Candidate:
    identity: str
    elector: LeaderElector
    task: asyncio.Task[None] | None = None
    leading: bool = False
    started: int = 0
    stopped: int = 0
    leaders_seen: list[str] = field(default_factory=list)

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass


def candidate(client: Client, identity: str, release: bool = True) -> Candidate:
    c = Candidate(identity, None)  # type: ignore[arg-type]

    async def lead() -> None:
        c.leading = True
        c.started += 1
        try:
            await asyncio.Event().wait()
        finally:
            c.leading = False

    def stopped() -> None:
        c.stopped += 1

    c.elector = LeaderElector(client, NS, NAME, identity, lease_duration=2, renew_deadline=1.5, retry_period=0.2,
                              on_started_leading=lead, on_stopped_leading=stopped,
                              on_new_leader=c.leaders_seen.append, release_on_cancel=release)
    c.task = asyncio.create_task(c.elector.run())
    return c


async def test_one_leads_and_the_other_takes_over_after_a_release(api: TestAPIServer) -> None:
    a, b = candidate(api.client, "a"), candidate(api.client, "b")
    try:
        first = await eventually(lambda: [c for c in (a, b) if c.leading], timeout=10, what="a leader")
        leader = first[0]
        follower = b if leader is a else a
        await asyncio.sleep(0.6)  # several renewals later, still exactly one leader
        assert leader.leading and not follower.leading
        lease = await api.client.get("Lease", NAME, NS)
        assert lease.spec.holder_identity == leader.identity
        assert lease.spec.lease_duration_seconds == 2
        assert follower.leaders_seen == [leader.identity]

        released_at = time.monotonic()
        await leader.stop()
        assert leader.stopped == 1 and not leader.leading
        await eventually(lambda: follower.leading, timeout=5, what="the follower to take over")
        # A released lease is taken at the next retry, well before the 2 s lease would expire.
        assert time.monotonic() - released_at < 1.5
        lease = await api.client.get("Lease", NAME, NS)
        assert lease.spec.holder_identity == follower.identity
        assert lease.spec.lease_transitions == 1
    finally:
        for c in (a, b):
            await c.stop()


async def test_a_crashed_leader_is_replaced_after_its_lease_expires(api: TestAPIServer) -> None:
    a = candidate(api.local, "a", release=False)
    await eventually(lambda: a.leading, timeout=10, what="a to lead")
    b = candidate(api.local, "b")
    try:
        await a.stop()  # gone without releasing: b must wait for the lease to expire
        stopped_at = time.monotonic()
        await eventually(lambda: b.leading, timeout=10, what="b to take over")
        assert time.monotonic() - stopped_at >= 1.0
    finally:
        await b.stop()


async def test_a_leader_that_cannot_renew_stops_leading(api: TestAPIServer) -> None:
    a = candidate(api.local, "a")
    try:
        await eventually(lambda: a.leading, timeout=10, what="a to lead")
        # Someone else takes the lease over (as after a long pause of a): a must notice and stop.
        lease = await api.local.get("Lease", NAME, NS)
        lease.spec.holder_identity = "intruder"
        lease.spec.lease_duration_seconds = 3600
        await api.local.update(lease)
        await eventually(lambda: not a.leading and a.task.done(), timeout=10, what="a to stop leading")
        assert a.stopped == 1
    finally:
        await a.stop()


def test_durations_must_leave_room_to_renew() -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        LeaderElector(None, NS, NAME, "x", lease_duration=10, renew_deadline=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_period"):
        LeaderElector(None, NS, NAME, "x", lease_duration=15, renew_deadline=2, retry_period=2)  # type: ignore[arg-type]
