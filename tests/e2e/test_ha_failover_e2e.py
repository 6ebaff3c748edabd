"""Three control planes on one etcd, three agents that know all three, a 300-completion Job; the
leader is SIGKILLed mid-way. Another replica leads within the lease duration (plus a retry
period) and the Job ends with exactly 300 succeeded, one succeeded pod per completion index and
no index run twice; every replica then answers with the same objects."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections import Counter
from datetime import datetime
from typing import Any

import grpc

from ketch.api import errors
from ketch.testing.etcd import Etcd
from ketch.v1 import core_pb2

from .harness import Cluster, admin_client, wait_until
from .test_job_e2e import FLAGS, job_yaml

COMPLETIONS = 300
LEASE = "ketch-controller-manager"


def _replicas(cluster_factory: Any, etcd: Etcd) -> list[Cluster]:
    replicas: list[Cluster] = []
    for i in range(3):
        address = f"127.0.0.{i + 1}"  # each replica's --advertise-address names it in the Lease
        c: Cluster = cluster_factory([*FLAGS, "--store", etcd.url, "--advertise-address", address])
        if replicas:  # kubeadm's manual way: the first replica's CA, before the first start
            shutil.copytree(replicas[0].controlplane_dir / "pki", c.controlplane_dir / "pki")
        c.start_controlplane()
        replicas.append(c)
    return replicas


def _holder(c: Cluster) -> str:
    lease = c.try_get("lease", LEASE, "-n", "kube-system")
    return str(lease["spec"].get("holderIdentity", "")) if lease else ""


def test_a_sigkilled_leader_is_replaced_and_the_job_counts_each_completion_once(
        cluster_factory: Any, etcd: Etcd) -> None:
    replicas = _replicas(cluster_factory, etcd)
    first = replicas[0]
    servers = ",".join(c.server for c in replicas)
    for node in ("node-a", "node-b", "node-c"):
        first.start_agent(node, ["--server", servers])
    leader_id = wait_until(lambda: _holder(first), 60, "a leader")
    leader = next(c for i, c in enumerate(replicas) if leader_id.endswith(f"_127.0.0.{i + 1}"))
    others = [c for c in replicas if c is not leader]

    # Written through one replica, the Job is seen on every replica at once.
    others[0].apply(job_yaml("many", ["sleep", "1"], completions=COMPLETIONS, parallelism=15,
                             completionMode="Indexed"))
    assert all(c.get("job", "many")["metadata"]["name"] == "many" for c in replicas)

    def succeeded() -> int:
        n = int(others[0].get("job", "many").get("status", {}).get("succeeded", 0))
        return n if n >= 40 else 0

    before = wait_until(succeeded, 120, "40 completions before the leader is killed")
    killed_at = time.time()
    leader.send("controlplane", signal.SIGKILL)
    leader.members["controlplane"].stop(10, signal.SIGKILL)  # reap it
    assert before < COMPLETIONS, "the job finished before the leader was killed"

    new_id = wait_until(lambda: (h := _holder(others[0])) not in ("", leader_id) and h, 60, "a new leader")
    lease = others[0].get("lease", LEASE, "-n", "kube-system")["spec"]
    acquired = datetime.fromisoformat(lease["acquireTime"].replace("Z", "+00:00")).timestamp()
    took_over = acquired - killed_at
    print(f"new leader {new_id} {took_over:.1f}s after the kill, at {before} of {COMPLETIONS} completions")
    assert took_over < 15 + 2 + 8, f"the new leader took over {took_over:.1f}s after the kill"

    def complete() -> dict[str, Any] | None:
        job = others[1].get("job", "many")
        done = any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"].get("conditions", []))
        return job if done else None

    job = wait_until(complete, 240, "the job to complete after the failover")
    assert job["status"]["succeeded"] == COMPLETIONS
    assert job["status"].get("failed", 0) == 0
    pods = others[0].items("pods", "-l", "job-name=many")
    indexes = Counter(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert sorted(indexes, key=int) == [str(i) for i in range(COMPLETIONS)]
    twice = {i: n for i, n in indexes.items() if n > 1}
    assert not twice, f"indexes with more than one pod: {twice}"
    assert all(p["status"].get("phase") == "Succeeded" for p in pods)
    assert not any("batch.kubernetes.io/job-tracking" in p["metadata"].get("finalizers", []) for p in pods)
    # Both surviving replicas answer with the same objects, at the same resourceVersions.
    views = [{p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in c.items("pods")} for c in others]
    assert views[0] == views[1]


async def _load_through(servers: list[str], killed: Cluster, survivor: Cluster) -> None:
    """Creates through both replicas while `killed` is SIGKILLed and started again; a watch on
    the survivor hears each object once; afterwards both list the same objects."""
    clients = [admin_client(s) for s in servers]
    watcher_client = admin_client(survivor.server)
    acked: dict[str, str] = {}
    through_restarted = [0]  # creates the restarted replica acknowledged
    restarted = asyncio.Event()
    heard: list[tuple[str, str, str]] = []
    stop = asyncio.Event()
    try:
        _, start_rv = await watcher_client.list("Namespace")

        async def watch() -> None:
            async for ev in watcher_client.watch("Namespace", resource_version=start_rv):
                if ev.type != "BOOKMARK":
                    heard.append((ev.type, ev.object.metadata.name, ev.object.metadata.resource_version))

        async def write(n: int, client: Any) -> None:
            i = 0
            while not stop.is_set():
                obj = core_pb2.Namespace()
                obj.metadata.name = f"load-{n}-{i}"
                i += 1
                try:
                    created = await client.create(obj)
                except (errors.StatusError, grpc.RpcError, OSError):
                    await asyncio.sleep(0.05)  # down: the outcome of this create is unknown; pace the next
                    continue
                acked[created.metadata.name] = created.metadata.resource_version
                if restarted.is_set() and client is clients[0]:
                    through_restarted[0] += 1

        watching = asyncio.create_task(watch())
        writers = [asyncio.create_task(write(n, clients[n % 2])) for n in range(8)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while len(acked) < 400:
            assert loop.time() < deadline, f"only {len(acked)} creates acknowledged"
            await asyncio.sleep(0.05)
        killed.send("controlplane", signal.SIGKILL)
        await asyncio.to_thread(killed.members["controlplane"].stop, 10, signal.SIGKILL)
        at_kill = len(acked)
        while len(acked) < at_kill + 200:  # the survivor alone
            assert loop.time() < deadline, "the survivor stopped acknowledging creates"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(killed.start_controlplane)
        restarted.set()
        while through_restarted[0] < 200:  # the restarted replica writes again
            assert loop.time() < deadline + 60, f"the restarted replica acknowledged {through_restarted[0]} creates"
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*writers)

        views = []
        for client in (admin_client(killed.server), admin_client(survivor.server)):
            items, _ = await client.list("Namespace")
            views.append({o.metadata.name: o.metadata.resource_version for o in items
                          if o.metadata.name.startswith("load-")})
            await client.close()
        assert views[0] == views[1], "the replicas list different objects"
        lost = {name: rv for name, rv in acked.items() if views[0].get(name) != rv}
        assert not lost, f"{len(lost)} acknowledged creates lost or changed, e.g. {list(lost.items())[:3]}"
        # The survivor's watch heard every object once, in increasing resourceVersions.
        async with asyncio.timeout(60):
            while len({name for t, name, _ in heard if t == "ADDED"}) < len(views[0]):
                await asyncio.sleep(0.05)
        watching.cancel()
        added = Counter(name for t, name, _ in heard if t == "ADDED")
        assert set(added) == set(views[0]) and max(added.values()) == 1
        revs = [int(rv) for _, _, rv in heard]
        assert revs == sorted(revs) and len(set(revs)) == len(revs)
    finally:
        for c in (*clients, watcher_client):
            await c.close()


def test_a_replica_killed_and_restarted_under_load_loses_and_duplicates_nothing(
        cluster_factory: Any, etcd: Etcd) -> None:
    replicas = []
    for i in range(2):
        c: Cluster = cluster_factory(["--controllers", "none", "--store", etcd.url,
                                      "--advertise-address", f"127.0.0.{i + 1}"])
        if replicas:
            shutil.copytree(replicas[0].controlplane_dir / "pki", c.controlplane_dir / "pki")
        c.start_controlplane()
        replicas.append(c)
    asyncio.run(_load_through([c.server for c in replicas], replicas[0], replicas[1]))
