"""Control-plane replicas contending for kube-system/ketch-controller-manager over one API server:
exactly one runs its controllers at a time; a leader that cannot renew stops its controllers
(nothing of its written after that) before its lease could expire, and another takes over within
the lease duration; a leader that shuts down hands over at once; a leader whose controllers
cannot stop in time gives up the process (on_stop_overrun) before the lease expires.

Each replica is a LeaderElectedControllers with real controllers plus a probe that writes all the
time through the replica's controller client, so "no write after stopping" is checked on real
writes. Knobs are short (lease 3 s, renew deadline 2 s, retry 0.3 s) so this takes seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.apiserver.testing import TestAPIServer
from controlplane.controllers.leader import (
    LEASE_NAME,
    LEASE_NAMESPACE,
    LeaderElectedControllers,
    LeaderElectionConfig,
    holder_identity,
)
from controlplane.controllers.manager import ControllerManager
from controlplane.controllers.options import ControllerOptions
from ketch.api import errors, timeutil
from ketch.client.clientset import Client
from ketch.client.transport import Transport
from ketch.v1 import coordination_pb2
from tests.conftest import eventually

CONFIG = LeaderElectionConfig(lease_duration=3, renew_deadline=2, retry_period=0.3)


class Partition:
    """A transport that hangs every call while cut (a replica that cannot reach the store)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.healed = asyncio.Event()
        self.healed.set()

    def cut(self) -> None:
        self.healed.clear()

    def heal(self) -> None:
        self.healed.set()

    async def unary(self, method: str, request: Any, timeout: float | None = None) -> Any:
        await self.healed.wait()
        return await self.inner.unary(method, request, timeout)

    async def stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        async for item in self.inner.stream(method, request):
            yield item

    async def close(self) -> None:
        return None


@dataclass
class Write:
    replica: str
    sent: float
    answered: float


class ProbedManager(ControllerManager):
    """Real controllers, plus a probe writing a Lease in `default` every few ms through the
    replica's (fenced) controller client, recording each write that succeeded."""

    def __init__(self, client: Client, replica: Replica) -> None:
        super().__init__(client, ControllerOptions(), ["scheduler", "job", "podgc", "garbagecollector"])
        self.client = client
        self.replica = replica

    async def start(self) -> None:
        await super().start()
        self._tasks.append(asyncio.create_task(self._probe(), name=f"probe-{self.replica.name}"))

    async def _probe(self) -> None:
        n = 0
        while True:
            n += 1
            lease = coordination_pb2.Lease()
            lease.metadata.name, lease.metadata.namespace = f"probe-{self.replica.name}-{n}", "default"
            sent = time.time()
            try:
                await self.client.create(lease)
            except errors.Unavailable:
                pass  # fenced: refused, nothing written
            else:
                self.replica.writes.append(Write(self.replica.name, sent, time.time()))
            await asyncio.sleep(0.01)


@dataclass
class Replica:
    name: str
    elected: LeaderElectedControllers
    lease_link: Partition
    task: asyncio.Task[None] | None = None
    writes: list[Write] = field(default_factory=list)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def replica(api: TestAPIServer, name: str, config: LeaderElectionConfig = CONFIG, **kwargs: Any) -> Replica:
    assert api.local is not None
    transport = api.local.transport
    link = Partition(transport)
    r = Replica(name, None, link)  # type: ignore[arg-type]
    r.elected = LeaderElectedControllers(transport, lambda client: ProbedManager(client, r),
                                         holder_identity(f"10.0.0.{name[-1]}", hostname=name), config,
                                         lease_transport=link, **kwargs)
    r.task = asyncio.create_task(r.elected.run())
    return r


@pytest.fixture
async def api() -> AsyncIterator[TestAPIServer]:
    async with TestAPIServer(grpc=False) as server:
        yield server


def leaders(*replicas: Replica) -> list[Replica]:
    return [r for r in replicas if r.elected.leading]


def assert_terms_never_overlap(*replicas: Replica) -> None:
    terms = sorted((t.started, t.stopped or float("inf"), r.name) for r in replicas for t in r.elected.terms)
    for (_, stopped, who), (started, _, next_who) in itertools.pairwise(terms):
        assert stopped < started, f"{who} still led when {next_who} started"


async def test_one_replica_leads_and_a_leader_that_cannot_renew_stops_before_another_starts(
        api: TestAPIServer) -> None:
    a, b = replica(api, "cp1"), replica(api, "cp2")
    try:
        (leader,) = await eventually(lambda: leaders(a, b), timeout=10, what="a leader")
        follower = b if leader is a else a
        await eventually(lambda: len(leader.writes) > 20, timeout=10, what="the leader's controllers to write")
        # Through many renewals (2 s of 0.3 s retries), still one leader and only its writes.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert leaders(a, b) == [leader]
            await asyncio.sleep(0.05)
        assert follower.writes == [] and follower.elected.terms == []
        lease = await api.local.get("Lease", LEASE_NAME, LEASE_NAMESPACE)  # type: ignore[union-attr]
        assert lease.spec.holder_identity == leader.elected.identity
        assert lease.spec.holder_identity.endswith(f"_10.0.0.{leader.name[-1]}")
        assert lease.spec.lease_duration_seconds == 3

        # The leader can no longer reach the Lease, though its controllers still can write.
        cut_at = time.time()
        leader.lease_link.cut()
        await eventually(lambda: follower.elected.leading, timeout=15, what="the follower to take over")
        took_over = follower.elected.terms[-1].started
        assert took_over - cut_at < CONFIG.lease_duration + CONFIG.renew_deadline
        lost = leader.elected.terms[-1]
        assert lost.stopped is not None and not leader.elected.leading
        # It stopped before its lease could pass on: before the last renewTime it wrote plus the
        # lease duration, and so before the follower started.
        assert lost.renewed
        assert lost.stopped < timeutil.parse(lost.renewed) + CONFIG.lease_duration
        assert lost.margin > 0
        assert lost.stopped < took_over
        # No write of the old leader was answered after it stopped; none of the new leader's was
        # sent before.
        assert leader.writes and max(w.answered for w in leader.writes) <= lost.stopped
        await eventually(lambda: follower.writes, timeout=10, what="the new leader's controllers to write")
        assert min(w.sent for w in follower.writes) >= lost.stopped
        assert leader.elected.fence is not None and leader.elected.fence.in_flight == 0

        # Healed, the old leader campaigns again and stays a follower while the lease is held.
        leader.lease_link.heal()
        await asyncio.sleep(CONFIG.retry_period * 4)
        assert leaders(a, b) == [follower]
        lease = await api.local.get("Lease", LEASE_NAME, LEASE_NAMESPACE)  # type: ignore[union-attr]
        assert lease.spec.holder_identity == follower.elected.identity
        assert lease.spec.lease_transitions == 1
        events, _ = await api.local.list("Event", LEASE_NAMESPACE)  # type: ignore[union-attr]
        messages = {e.message for e in events if e.involved_object.name == LEASE_NAME and e.reason == "LeaderElection"}
        assert messages >= {f"{leader.elected.identity} became leader", f"{leader.elected.identity} stopped leading",
                            f"{follower.elected.identity} became leader"}
        assert_terms_never_overlap(a, b)
    finally:
        for r in (a, b):
            r.lease_link.heal()
            await r.stop()


async def test_a_leader_that_shuts_down_hands_over_at_once(api: TestAPIServer) -> None:
    a = replica(api, "cp1")
    await eventually(lambda: a.elected.leading, timeout=10, what="cp1 to lead")
    b = replica(api, "cp2")
    try:
        await asyncio.sleep(CONFIG.retry_period * 3)
        assert leaders(a, b) == [a]
        stopping = time.time()
        await a.stop()
        assert a.elected.terms[-1].stopped is not None
        await eventually(lambda: b.elected.leading, timeout=10, what="cp2 to take over")
        # The lease was released: no waiting for it to expire.
        assert b.elected.terms[-1].started - stopping < CONFIG.lease_duration
        assert max(w.answered for w in a.writes) <= a.elected.terms[-1].stopped  # type: ignore[operator]
        assert_terms_never_overlap(a, b)
    finally:
        await a.stop()
        await b.stop()


class StuckWrites:
    """A transport whose creates never return once `stuck` is set (a store that stopped answering)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.unstuck = asyncio.Event()
        self.unstuck.set()

    @property
    def stuck(self) -> bool:
        return not self.unstuck.is_set()

    @stuck.setter
    def stuck(self, value: bool) -> None:
        """Unsticking lets the creates held so far go on, so the test leaves nothing hanging."""
        if value:
            self.unstuck.clear()
        else:
            self.unstuck.set()

    async def unary(self, method: str, request: Any, timeout: float | None = None) -> Any:
        if method == "Create":
            await self.unstuck.wait()
        return await self.inner.unary(method, request, timeout)

    def stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        return self.inner.stream(method, request)

    async def close(self) -> None:
        return None


async def test_controllers_that_cannot_stop_in_time_give_up_the_process_before_the_lease_expires(
        api: TestAPIServer) -> None:
    assert api.local is not None
    stuck = StuckWrites(api.local.transport)
    overruns: list[float] = []
    link = Partition(api.local.transport)
    writes: list[Write] = []
    holder = Replica("cp1", None, link, writes=writes)  # type: ignore[arg-type]
    elected = LeaderElectedControllers(stuck, lambda client: ProbedManager(client, holder),
                                       holder_identity("10.0.0.1", hostname="cp1"), CONFIG,
                                       lease_transport=link, on_stop_overrun=lambda: overruns.append(time.time()))
    holder.elected = elected
    holder.task = asyncio.create_task(elected.run())
    try:
        await eventually(lambda: len(writes) > 3, timeout=10, what="cp1's controllers to write")
        stuck.stuck = True  # a write is now in flight for good: the controllers cannot be stopped cleanly
        await asyncio.sleep(0.05)
        link.cut()
        await eventually(lambda: overruns, timeout=15, what="on_stop_overrun")
        term = elected.terms[-1]
        assert term.renewed and overruns[0] < timeutil.parse(term.renewed) + CONFIG.lease_duration
        assert elected.fence is not None and elected.fence.in_flight == 1
    finally:
        link.heal()
        stuck.stuck = False
        await holder.stop()
