"""Leader election over a coordination.k8s.io/v1 Lease, as client-go's leaderelection package.

Several replicas run `LeaderElector.run()`; at most one leads at a time. The algorithm is
client-go's:

* Every `retry_period` (jittered while acquiring) a candidate tries to acquire or renew: it GETs
  the Lease (creating it if missing); a Lease held by someone else is respected while it is
  valid — valid meaning that less than its leaseDurationSeconds has passed since *this*
  candidate last saw the record change (the observed time, on the local monotonic clock, so
  clocks need not agree across machines) — and otherwise taken over by an update that
  compare-and-swaps on resourceVersion, so two candidates can never both win.
* The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it stops
  leading. Since `lease_duration` > `renew_deadline`, a leader gives up before anyone else may
  take over.
* On stop (cancellation of `run()`) a leader releases the Lease (holder cleared, duration 1 s)
  so another candidate takes over at once instead of waiting for expiry.

Callbacks: `on_started_leading()` is a coroutine function run as a task while leading and
cancelled when leadership ends; `on_stopped_leading()` is called when `run()` returns (as in
client-go, also when this candidate never led); `on_new_leader(identity)` when the observed
leader changes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ketch.api import errors, timeutil
from ketch.cancelsafe import wait_for
from ketch.v1 import coordination_pb2

from .clientset import Client

log = logging.getLogger(__name__)

JITTER_FACTOR = 1.2


@dataclass
class LeaderElectionRecord:
    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str = ""
    renew_time: str = ""
    leader_transitions: int = 0


def record_of(lease: coordination_pb2.Lease) -> LeaderElectionRecord:
    spec = lease.spec
    return LeaderElectionRecord(
        holder_identity=spec.holder_identity if spec.HasField("holder_identity") else "",
        lease_duration_seconds=spec.lease_duration_seconds if spec.HasField("lease_duration_seconds") else 0,
        acquire_time=spec.acquire_time, renew_time=spec.renew_time,
        leader_transitions=spec.lease_transitions if spec.HasField("lease_transitions") else 0)


def apply_record(lease: coordination_pb2.Lease, rec: LeaderElectionRecord) -> None:
    spec = lease.spec
    spec.holder_identity = rec.holder_identity
    spec.lease_duration_seconds = rec.lease_duration_seconds
    spec.acquire_time = rec.acquire_time
    spec.renew_time = rec.renew_time
    spec.lease_transitions = rec.leader_transitions


class LeaseLock:
    """The Lease that holds the election record; remembers the version it last read or wrote."""

    def __init__(self, client: Client, namespace: str, name: str, identity: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease: coordination_pb2.Lease | None = None

    async def get(self) -> tuple[LeaderElectionRecord, bytes]:
        lease = await self.client.get("Lease", self.name, self.namespace)
        self.lease = lease
        return record_of(lease), lease.spec.SerializeToString(deterministic=True)

    async def create(self, rec: LeaderElectionRecord) -> None:
        lease = coordination_pb2.Lease()
        lease.metadata.name, lease.metadata.namespace = self.name, self.namespace
        apply_record(lease, rec)
        self.lease = await self.client.create(lease)

    async def update(self, rec: LeaderElectionRecord) -> None:
        if self.lease is None:
            raise errors.BadRequest("the lease has not been read yet")
        lease = coordination_pb2.Lease()
        lease.CopyFrom(self.lease)
        apply_record(lease, rec)
        self.lease = await self.client.update(lease)  # compare-and-swap on resourceVersion


Callback = Callable[[], Any]


class LeaderElector:
    def __init__(self, client: Client, namespace: str, name: str, identity: str, *,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 on_started_leading: Callable[[], Coroutine[Any, Any, None]] | None = None,
                 on_stopped_leading: Callback | None = None,
                 on_new_leader: Callable[[str], Any] | None = None,
                 release_on_cancel: bool = True,
                 wall_clock: Callable[[], float] = time.time) -> None:
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if renew_deadline <= JITTER_FACTOR * retry_period:
            raise ValueError("renew_deadline must be greater than retry_period*1.2")
        if lease_duration < 1 or retry_period <= 0:
            raise ValueError("lease_duration must be at least 1s and retry_period positive")
        if not identity:
            raise ValueError("identity may not be empty")
        self.lock = LeaseLock(client, namespace, name, identity)
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self.on_new_leader = on_new_leader
        self.release_on_cancel = release_on_cancel
        self.wall_clock = wall_clock
        self.observed = LeaderElectionRecord()
        self.observed_raw = b""
        self.observed_time = 0.0  # monotonic
        self.reported_leader = ""

    # -- state ------------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.observed.holder_identity == self.identity

    def get_leader(self) -> str:
        return self.observed.holder_identity

    def _now(self) -> float:
        return time.monotonic()

    def _lease_valid(self) -> bool:
        return self.observed_time + self.observed.lease_duration_seconds > self._now()

    def _observe(self, rec: LeaderElectionRecord, raw: bytes | None = None) -> None:
        self.observed = rec
        self.observed_time = self._now()
        if raw is not None:
            self.observed_raw = raw

    def _report_transition(self) -> None:
        leader = self.observed.holder_identity
        if leader == self.reported_leader:
            return
        self.reported_leader = leader
        if self.on_new_leader is not None and leader:
            try:
                self.on_new_leader(leader)
            except Exception:
                log.exception("leaderelection: on_new_leader failed")

    # -- one attempt ------------------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        stamp = timeutil.format(self.wall_clock(), micro=True)
        rec = LeaderElectionRecord(holder_identity=self.identity,
                                   lease_duration_seconds=max(1, int(self.lease_duration)),
                                   acquire_time=stamp, renew_time=stamp)
        # 1. Fast path: the leader renews on the version it last wrote.
        if self.is_leader() and self._lease_valid():
            rec.acquire_time = self.observed.acquire_time
            rec.leader_transitions = self.observed.leader_transitions
            try:
                await self.lock.update(rec)
                self._observe(rec)
                return True
            except errors.StatusError as err:
                log.debug("leaderelection: optimistic renew failed (%s); reading the lease", err)
        # 2. Read (or create) the record.
        try:
            old, raw = await self.lock.get()
        except errors.NotFound:
            try:
                await self.lock.create(rec)
            except errors.StatusError as err:
                log.debug("leaderelection: creating the lease failed: %s", err)
                return False
            self._observe(rec)
            return True
        except errors.StatusError as err:
            log.debug("leaderelection: reading the lease failed: %s", err)
            return False
        # 3. Someone else holds a valid lease: wait.
        if raw != self.observed_raw:
            self._observe(old, raw)
        if old.holder_identity and self._lease_valid() and not self.is_leader():
            return False
        # 4. Take it (or renew it) with a compare-and-swap.
        if self.is_leader():
            rec.acquire_time = old.acquire_time
            rec.leader_transitions = old.leader_transitions
        else:
            rec.leader_transitions = old.leader_transitions + 1
        try:
            await self.lock.update(rec)
        except errors.StatusError as err:
            log.debug("leaderelection: updating the lease failed: %s", err)
            return False
        self._observe(rec)
        return True

    async def release(self) -> bool:
        """Give the lease up (holder cleared, 1 s duration) so another candidate takes it now."""
        if not self.is_leader():
            return True
        stamp = timeutil.format(self.wall_clock(), micro=True)
        rec = LeaderElectionRecord(lease_duration_seconds=1, acquire_time=stamp, renew_time=stamp,
                                   leader_transitions=self.observed.leader_transitions)
        try:
            await self.lock.update(rec)
        except errors.StatusError as err:
            log.info("leaderelection: releasing the lease failed: %s", err)
            return False
        self._observe(rec)
        return True

    # -- the loops --------------------------------------------------------------------------------

    async def _acquire(self) -> None:
        while True:
            acquired = await self.try_acquire_or_renew()
            self._report_transition()
            if acquired:
                log.info("leaderelection: %s acquired lease %s/%s", self.identity, self.lock.namespace,
                         self.lock.name)
                return
            await asyncio.sleep(self.retry_period * (1 + random.random() * JITTER_FACTOR))

    async def _renew(self) -> None:
        """Renew every retry_period; return when a renewal has not succeeded for renew_deadline."""
        while True:
            deadline = self._now() + self.renew_deadline
            renewed = False
            while True:
                try:
                    renewed = await wait_for(self.try_acquire_or_renew(),
                                                     max(0.001, deadline - self._now()))
                except TimeoutError:
                    renewed = False
                self._report_transition()
                if renewed or self._now() + self.retry_period >= deadline:
                    break
                await asyncio.sleep(self.retry_period)
            if not renewed:
                log.info("leaderelection: %s failed to renew lease %s/%s: leadership lost", self.identity,
                         self.lock.namespace, self.lock.name)
                return
            await asyncio.sleep(self.retry_period)

    async def run(self) -> None:
        """Campaign, lead while the lease is renewed, and return when leadership is lost.

        Cancelling run() stops it; a leader then releases the lease (release_on_cancel).
        """
        leading: asyncio.Task[None] | None = None
        try:
            await self._acquire()
            if self.on_started_leading is not None:
                leading = asyncio.create_task(self.on_started_leading(), name=f"leading-{self.identity}")
            await self._renew()
        finally:
            if leading is not None and not leading.done():
                leading.cancel()
                try:
                    await leading
                except (asyncio.CancelledError, Exception):
                    pass
            if self.release_on_cancel and self.is_leader():
                await asyncio.shield(self.release())
            if self.on_stopped_leading is not None:
                result = self.on_stopped_leading()
                if inspect.isawaitable(result):
                    await result
