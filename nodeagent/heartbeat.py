"""Node heartbeats: the Lease `kube-node-lease/<node>`, renewed every heartbeat interval.

As the kubelet's node lease controller: holderIdentity is the node, leaseDurationSeconds four
heartbeat intervals (the kubelet renews every 25 % of its nodeLeaseDurationSeconds, 10 s of 40 s),
renewTime with microseconds, and an owner reference to the Node so the lease goes with it.

The control plane marks a node NotReady when no renewal arrives within its
--node-monitor-grace-period (40 s by default), which the agent is not told: so the lease
duration states what the agent promises, the node lifecycle controller warns (an Event on the
Node) when it exceeds the grace period, and the agent warns at start when its interval would
exceed a quarter of the default grace period (interval_warning).
Renewal is a compare-and-swap on the last lease written; a Conflict re-reads it, NotFound
creates it again. Failed renewals retry with a growing back-off (200 ms up to 7 s).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable

from ketch.api import errors, timeutil
from ketch.client.clientset import Client
from ketch.v1 import coordination_pb2, meta_pb2

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
DEFAULT_LEASE_SECONDS = 40
# The control plane's default --node-monitor-grace-period, and renewals per lease (kubelet: 25 %).
DEFAULT_GRACE_SECONDS = 40.0
RENEWALS_PER_LEASE = 4


def lease_duration(interval: float) -> int:
    """Four heartbeat intervals, whole seconds (the Lease field is an integer), at least 1."""
    return max(1, math.ceil(RENEWALS_PER_LEASE * interval - 1e-9))


def _seconds(value: float) -> str:
    return f"{value:g}s"


def interval_warning(interval: float, grace: float = DEFAULT_GRACE_SECONDS) -> str:
    """What to tell the operator when heartbeats this far apart will make the node flap ("" if
    they will not): the control plane waits only its grace period for the next renewal."""
    if RENEWALS_PER_LEASE * interval <= grace:
        return ""
    pair = (f"--heartbeat-interval {_seconds(interval)} is more than a quarter of the control plane's default "
            f"--node-monitor-grace-period ({_seconds(grace)})")
    if interval >= grace:
        what = "this node will turn NotReady between heartbeats and its pods will be evicted"
    else:
        what = "a late or lost heartbeat will turn this node NotReady"
    return (f"{pair}: {what}. Keep the interval at most {_seconds(grace / RENEWALS_PER_LEASE)}, or run the "
            f"control plane with --node-monitor-grace-period {_seconds(lease_duration(interval))} or more")


def new_lease(node: str, node_uid: str, duration: int, now: float) -> coordination_pb2.Lease:
    lease = coordination_pb2.Lease(api_version="coordination.k8s.io/v1", kind="Lease")
    lease.metadata.name = node
    lease.metadata.namespace = LEASE_NAMESPACE
    if node_uid:
        lease.metadata.owner_references.append(meta_pb2.OwnerReference(
            api_version="v1", kind="Node", name=node, uid=node_uid))
    lease.spec.holder_identity = node
    lease.spec.lease_duration_seconds = duration
    lease.spec.renew_time = timeutil.format(now, micro=True)
    return lease


class LeaseHeartbeat:
    def __init__(self, client: Client, node: str, interval: float, node_uid: Callable[[], str],
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.node = node
        self.interval = interval
        self.duration = lease_duration(interval)
        self.node_uid = node_uid
        self.clock = clock
        self.lease: coordination_pb2.Lease | None = None
        self.renewals = 0

    async def renew(self) -> None:
        """Renew (or create) the lease once; raises StatusError when the API cannot be reached."""
        now = self.clock()
        uid = self.node_uid()
        if self.lease is None or (uid and self._owner_uid(self.lease) != uid):
            await self._ensure(now, uid)
            return
        lease = coordination_pb2.Lease()
        lease.CopyFrom(self.lease)
        lease.spec.renew_time = timeutil.format(now, micro=True)
        lease.spec.holder_identity = self.node
        lease.spec.lease_duration_seconds = self.duration
        try:
            self.lease = await self.client.update(lease)
            self.renewals += 1
        except errors.Conflict:
            self.lease = None
            await self._ensure(now, uid)
        except errors.NotFound:
            self.lease = None
            await self._ensure(now, uid)

    @staticmethod
    def _owner_uid(lease: coordination_pb2.Lease) -> str:
        for ref in lease.metadata.owner_references:
            if ref.kind == "Node":
                return ref.uid
        return ""

    async def _ensure(self, now: float, uid: str) -> None:
        try:
            current = await self.client.get("Lease", self.node, LEASE_NAMESPACE)
        except errors.NotFound:
            self.lease = await self.client.create(new_lease(self.node, uid, self.duration, now))
            self.renewals += 1
            return
        fresh = new_lease(self.node, uid, self.duration, now)
        current.spec.CopyFrom(fresh.spec)
        if uid:
            del current.metadata.owner_references[:]
            current.metadata.owner_references.extend(fresh.metadata.owner_references)
        self.lease = await self.client.update(current)
        self.renewals += 1

    async def delete(self) -> None:
        with contextlib.suppress(errors.NotFound):
            await self.client.delete("Lease", self.node, LEASE_NAMESPACE)
        self.lease = None
