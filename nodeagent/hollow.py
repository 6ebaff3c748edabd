"""Hollow nodes (Kubernetes' kubemark idea): `ketch-agent --hollow N` registers N simulated
nodes from one process and "runs" their pods without processes, so that the control plane can be
measured against hundreds of nodes on one machine (bench/daemonset.py).

Each hollow node is a real Node with a real Lease: leases are renewed every heartbeat interval,
all N in one Batch call; node status is written at registration and again whenever the API
shows a node not Ready while we are alive (after the node lifecycle controller marked it
Unknown). Pods come from one watch of all pods, filtered to our nodes: a bound pod becomes
Running and Ready at once; a pod whose restartPolicy is not Always succeeds after the seconds of
a `sleep N` command (at once otherwise); a pod being deleted is removed (grace 0). Status writes
and deletes are gathered for 50 ms and sent in Batch calls of 100, four at a time. Killing the
process (SIGKILL) is losing N nodes at once; SIGTERM with --drain-on-exit deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from ketch.api import errors, meta, timeutil
from ketch.cancelsafe import wait_for
from ketch.client.cache import copy_of
from ketch.client.clientset import Batch, Client, connect
from ketch.client.config import connect_with_kubeconfig
from ketch.client.informer import Informer
from ketch.client.transport import TLSConfig
from ketch.v1 import core_pb2

from .heartbeat import LEASE_NAMESPACE, lease_duration, new_lease
from .registration import CONDITIONS, arch

log = logging.getLogger(__name__)

HOLLOW_LABEL = "ketch.dev/hollow"
FLUSH_DELAY = 0.05
# Writes per Batch call. The API server stages a Batch's writes in one turn of its event loop:
# 500 pod status writes held it 0.5-0.8 s (asyncio debug, under load), which every other client
# waited out. Kubelets write one pod at a time; 100 per call still sends far fewer calls.
MAX_BATCH = 100
# Batch calls of one flush in flight at once. A thousand kubelets write their pods' statuses side
# by side; one call at a time had one request in flight against the controllers' hundreds, and
# while a big Job's pods were created and bound (500-700 a second) the statuses got through at
# 100-300 a second, 1,000 and more once creation ended: how fast pods turned Ready measured the
# simulator's pipeline, not the control plane.
MAX_INFLIGHT = 4
CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}


def hollow_names(prefix: str, count: int) -> list[str]:
    width = max(4, len(str(count - 1)))
    return [f"{prefix}-{i:0{width}d}" for i in range(count)]


def hollow_node(name: str, labels: dict[str, str], now: float) -> core_pb2.Node:
    node = core_pb2.Node(api_version="v1", kind="Node")
    node.metadata.name = name
    node.metadata.labels.update({"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                 "kubernetes.io/arch": arch(), HOLLOW_LABEL: "true",
                                 **labels})
    set_ready_status(node.status, now)
    return node


def set_ready_status(status: core_pb2.NodeStatus, now: float) -> None:
    status.capacity.clear()
    status.capacity.update(CAPACITY)
    status.allocatable.clear()
    status.allocatable.update(CAPACITY)
    if not status.addresses:
        status.addresses.add(type="InternalIP", address="127.0.0.1")
    for ctype, (reason, message, _, _) in CONDITIONS.items():
        meta.set_condition(status.conditions, ctype, "False", reason, message, now=now, heartbeat=True)
    meta.set_condition(status.conditions, "Ready", "True", "KubeletReady", "kubelet is posting ready status (hollow)",
                       now=now, heartbeat=True)


def run_seconds(pod: core_pb2.Pod) -> float | None:
    """How long a hollow pod runs: forever (None) under restartPolicy Always, else the seconds of
    a `sleep N` command, else 0."""
    if pod.spec.restart_policy in ("", "Always"):
        return None
    longest = 0.0
    for c in pod.spec.containers:
        words = [*c.command, *c.args]
        for i, w in enumerate(words[:-1]):
            if w.endswith("sleep"):
                with contextlib.suppress(ValueError):
                    longest = max(longest, float(words[i + 1]))
    return longest


def running_status(pod: core_pb2.Pod, now: float) -> Any:
    """A copy of pod as a kubelet reports it once every container runs."""
    upd = copy_of(pod)
    st = upd.status
    stamp = timeutil.format(now)
    st.phase = "Running"
    st.host_ip = st.host_ip or "127.0.0.1"
    st.pod_ip = st.pod_ip or "127.0.0.1"
    st.start_time = st.start_time or stamp
    del st.container_statuses[:]
    for c in pod.spec.containers:
        cs = st.container_statuses.add(name=c.name, image=c.image, ready=True, restart_count=0, started=True)
        cs.state.running.started_at = stamp
        cs.container_id = f"hollow://{pod.spec.node_name}/{pod.metadata.uid}/{c.name}"
    for ctype in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"):
        meta.set_condition(st.conditions, ctype, "True", now=now)
    return upd


def ready_again(pod: core_pb2.Pod, now: float) -> Any | None:
    """A copy of a running pod with Ready (and ContainersReady) True again, or None if they are.

    The node lifecycle controller sets Ready False on every pod of a node whose heartbeats
    stopped (MarkPodsNotReady); once the node is back, the kubelet's status manager finds the
    API's status differing from its own and writes its own again."""
    if all(meta.condition_true(pod.status.conditions, t) for t in ("ContainersReady", "Ready")):
        return None
    upd = copy_of(pod)
    for ctype in ("ContainersReady", "Ready"):
        meta.set_condition(upd.status.conditions, ctype, "True", now=now)
    return upd


def succeeded_status(pod: core_pb2.Pod, now: float) -> Any:
    upd = copy_of(pod)
    st = upd.status
    stamp = timeutil.format(now)
    st.phase = "Succeeded"
    for cs in st.container_statuses:
        started = cs.state.running.started_at or stamp
        cs.ClearField("state")
        term = cs.state.terminated
        term.exit_code, term.reason, term.started_at, term.finished_at = 0, "Completed", started, stamp
        cs.ready = False
    for ctype in ("ContainersReady", "Ready"):
        meta.set_condition(st.conditions, ctype, "False", "PodCompleted", now=now)
    return upd


class HollowNodes:
    def __init__(self, server: str, names: Iterable[str], labels: dict[str, str] | None = None,
                 heartbeat_interval: float = 10.0, drain_on_exit: bool = False, kubeconfig: str = "",
                 tls: TLSConfig | None = None) -> None:
        self.server = server
        self.tls = tls  # the API credentials, given directly (tests)
        self.kubeconfig = kubeconfig  # the API credentials of every simulated node ("" for plaintext)
        self.names = list(names)
        self.mine = set(self.names)
        self.labels = labels or {}
        self.interval = heartbeat_interval
        self.drain_on_exit = drain_on_exit
        self.duration = lease_duration(heartbeat_interval)
        self.client: Client | None = None
        self.uids: dict[str, str] = {}
        self.dirty_pods: set[str] = set()
        self.dirty_nodes: set[str] = set()
        self.finished: set[str] = set()  # pod keys whose run time is over
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self._kick = asyncio.Event()

    # -- wiring --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> int:
        self.client = client = (connect_with_kubeconfig(self.kubeconfig, server=self.server) if self.kubeconfig
                                else connect(self.server, tls=self.tls))
        try:
            backoff = 0.2
            while True:  # register, retrying until the API answers (or we are told to stop)
                try:
                    await self._register()
                    break
                except errors.StatusError as err:
                    log.info("cannot register hollow nodes yet (%s); retrying in %.1fs", err, backoff)
                    with contextlib.suppress(TimeoutError):
                        await wait_for(stop.wait(), backoff)
                    if stop.is_set():
                        return 0
                    backoff = min(backoff * 2, 5.0)
            self.pods = Informer(client, core_pb2.Pod)
            self.pods.add_handler(self._on_pod, lambda _o, p: self._on_pod(p), self._on_pod_gone)
            self.nodes = Informer(client, core_pb2.Node)
            self.nodes.add_handler(self._on_node, lambda _o, n: self._on_node(n), self._on_node_gone)
            tasks = [self.pods.start(), self.nodes.start(),
                     asyncio.create_task(self._heartbeats()), asyncio.create_task(self._flusher())]
            log.info("hollow nodes registered: %d (%s .. %s)", len(self.names), self.names[0], self.names[-1])
            await stop.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.drain_on_exit:
                await self._delete_nodes()
            return 0
        finally:
            for h in self.timers.values():
                h.cancel()
            await client.close()

    async def _register(self) -> None:
        """Create every Node (taking over existing ones) and its Lease, in a few batches."""
        assert self.client is not None
        wall = time.time()
        for chunk in _chunks(self.names, MAX_BATCH):
            batch = Batch()
            for name in chunk:
                batch.create(hollow_node(name, self.labels, wall))
            for name, res in zip(chunk, await self.client.batch(batch), strict=True):
                if res.error is None and res.object is not None:
                    self.uids[name] = res.object.metadata.uid
                elif isinstance(res.error, errors.AlreadyExists):
                    existing = await self.client.get("Node", name)
                    self.uids[name] = existing.metadata.uid
                    set_ready_status(existing.status, wall)
                    await self.client.update_status(existing)
                elif res.error is not None:
                    raise res.error
            leases = Batch()
            for name in chunk:
                leases.create(new_lease(name, self.uids[name], self.duration, wall))
            for res in await self.client.batch(leases):
                if isinstance(res.error, errors.AlreadyExists):
                    continue  # renewed by the first heartbeat (a patch)
                if res.error is not None:
                    raise res.error

    async def _delete_nodes(self) -> None:
        assert self.client is not None
        for chunk in _chunks(self.names, MAX_BATCH):
            batch = Batch()
            for name in chunk:
                batch.delete("Node", name)
            with contextlib.suppress(errors.StatusError):
                await self.client.batch(batch)

    # -- heartbeats ----------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        assert self.client is not None
        while True:
            stamp = timeutil.now(micro=True)
            for chunk in _chunks(self.names, MAX_BATCH):
                batch = Batch()
                for name in chunk:
                    batch.patch("Lease", name, {"spec": {"renewTime": stamp, "holderIdentity": name,
                                                         "leaseDurationSeconds": self.duration}},
                                namespace=LEASE_NAMESPACE)
                try:
                    results = await self.client.batch(batch)
                except errors.StatusError as err:
                    log.warning("renewing %d hollow leases failed: %s", len(chunk), err)
                    continue
                missing = [n for n, r in zip(chunk, results, strict=True) if isinstance(r.error, errors.NotFound)]
                if missing:
                    again = Batch()
                    for name in missing:
                        again.create(new_lease(name, self.uids.get(name, ""), self.duration, timeutil.parse(stamp)))
                    with contextlib.suppress(errors.StatusError):
                        await self.client.batch(again)
            await asyncio.sleep(self.interval)

    # -- pods and nodes ------------------------------------------------------------------------

    def _on_pod(self, pod: core_pb2.Pod) -> None:
        if pod.spec.node_name in self.mine:
            self.dirty_pods.add(meta.key_of(pod))
            self._kick.set()

    def _on_pod_gone(self, obj: Any) -> None:
        pod = getattr(obj, "obj", obj)
        if pod is None:
            return
        key = meta.key_of(pod)
        self.finished.discard(key)
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _on_node(self, node: core_pb2.Node) -> None:
        name = node.metadata.name
        if name in self.mine and not meta.condition_true(node.status.conditions, "Ready"):
            self.dirty_nodes.add(name)
            self._kick.set()

    def _on_node_gone(self, obj: Any) -> None:
        node = getattr(obj, "obj", obj)
        if node is not None and node.metadata.name in self.mine and not self.drain_on_exit:
            self.dirty_nodes.add(node.metadata.name)  # deleted under us: register again
            self._kick.set()

    def _finish_later(self, key: str, delay: float) -> None:
        if key in self.timers or key in self.finished:
            return

        def due() -> None:
            self.timers.pop(key, None)
            self.finished.add(key)
            self.dirty_pods.add(key)
            self._kick.set()

        self.timers[key] = asyncio.get_running_loop().call_later(delay, due)

    async def _flusher(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            await asyncio.sleep(FLUSH_DELAY)  # gather a burst into one batch
            try:
                await self._flush()
            except errors.StatusError as err:  # its keys are dirty again: retry after a pause
                log.warning("hollow flush failed: %s", err)
                await asyncio.sleep(0.5)

    async def _flush(self) -> None:
        assert self.client is not None
        now = time.time()
        keys, self.dirty_pods = self.dirty_pods, set()
        nodes, self.dirty_nodes = self.dirty_nodes, set()
        batch = Batch()
        sent: list[str] = []
        for key in sorted(keys):
            ns, name = meta.split_key(key)
            pod = self.pods.get(ns, name)
            if pod is None or pod.spec.node_name not in self.mine:
                self.finished.discard(key)
                continue
            phase = pod.status.phase
            if pod.metadata.deletion_timestamp:
                batch.delete("Pod", name, namespace=ns, grace_period_seconds=0, uid=pod.metadata.uid)
            elif phase in ("", "Pending"):
                batch.update_status(running_status(pod, now))
                seconds = run_seconds(pod)
                if seconds is not None:
                    self._finish_later(key, seconds)
            elif phase == "Running" and key in self.finished:
                batch.update_status(succeeded_status(pod, now))
            elif phase == "Running" and (again := ready_again(pod, now)) is not None:
                batch.update_status(again)
            else:
                continue
            sent.append(key)
        for name in sorted(nodes):
            node = self.nodes.get("", name)
            if node is None:
                batch.create(hollow_node(name, self.labels, now))
            else:
                upd = copy_of(node)
                set_ready_status(upd.status, now)
                batch.update_status(upd)
            sent.append(f"node:{name}")
        slots = asyncio.Semaphore(MAX_INFLIGHT)
        failed: list[errors.StatusError] = []

        def dirty_again(key: str) -> None:
            if key.startswith("node:"):
                self.dirty_nodes.add(key[5:])
            else:
                self.dirty_pods.add(key)
            self._kick.set()

        async def send(start: int) -> None:
            assert self.client is not None
            call_keys = sent[start:start + MAX_BATCH]
            try:
                async with slots:
                    results = await self.client.batch(batch.ops[start:start + MAX_BATCH])
            except errors.StatusError as err:  # nothing of the call is known written: all again
                failed.append(err)
                for key in call_keys:
                    dirty_again(key)
                return
            for key, res in zip(call_keys, results, strict=True):
                if isinstance(res.error, errors.Conflict):
                    dirty_again(key)  # the cache is behind: look again at the next event or shortly

        async with asyncio.TaskGroup() as tasks:  # each key is in one call: no two calls write one object
            for start in range(0, len(batch.ops), MAX_BATCH):
                tasks.create_task(send(start))
        if failed:
            raise failed[0]


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
