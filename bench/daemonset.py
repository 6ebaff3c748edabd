#!/usr/bin/env python3
"""DaemonSet at scale on hollow nodes: rollout to N nodes, a rolling update across them, and
node-loss detection, beside a baseline measured in the same run.

Starts a control plane (SQLite store) and two `ketch-agent --hollow` processes (kubemark-style
simulated nodes: real Nodes and Leases, pods marked running without processes), N nodes in all,
LOST of them in the second process. Then, each timed through watches:

  baseline   N pods created directly (one Batch per 500, bound to every node) until all Running
  rollout    a DaemonSet created until status.numberReady == N
  update     its template changed (maxUnavailable 10%) until updated == available == N
  node loss  the second agent SIGKILLed until its LOST nodes are Unknown and tainted NoExecute
             (due one grace period after the last renewal: grace - heartbeat .. grace)

    .venv/bin/python bench/daemonset.py [--nodes 500] [--lost 50] [--grace 10s]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster import BenchCluster

from ketch.api import durations, manifest, meta
from ketch.client.clientset import Batch, Client
from ketch.client.config import connect_with_kubeconfig
from ketch.v1 import core_pb2


async def wait_for(client: Client, kind: str, done: Callable[[dict[str, Any]], bool], timeout: float,
                   label_selector: str = "") -> float:
    """Watch kind (from a fresh list) until done(objects by key) holds; the time it took."""
    start = time.perf_counter()
    items, rv = await client.list(kind, label_selector=label_selector)
    objs = {meta.key_of(o): o for o in items}
    if done(objs):
        return time.perf_counter() - start

    async def watch() -> None:
        nonlocal rv
        while True:
            try:
                async for ev in client.watch(kind, label_selector=label_selector, resource_version=rv):
                    rv = ev.resource_version or rv
                    if ev.object is None:
                        continue
                    if ev.type == "DELETED":
                        objs.pop(meta.key_of(ev.object), None)
                    else:
                        objs[meta.key_of(ev.object)] = ev.object
                    if done(objs):
                        return
            except Exception:
                await asyncio.sleep(0.2)

    await asyncio.wait_for(watch(), timeout)
    return time.perf_counter() - start


def ready(node: Any) -> str:
    c = meta.find_condition(node.status.conditions, "Ready")
    return c.status if c is not None else ""


def daemonset(version: str) -> Any:
    return manifest.from_dict({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "bench"}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
                 "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {
                     "containers": [{"name": "d", "image": "x", "command": ["sleep", "infinity"],
                                     "env": [{"name": "VERSION", "value": version}]}]}}}})


async def scenario(server: str, n: int, lost_prefix: str, lost: int, grace: float,
                   kill_lost: Callable[[], None]) -> dict[str, float]:
    client = connect_with_kubeconfig(server=server, wait_for_ready=True)
    out: dict[str, float] = {}
    out["register"] = await wait_for(client, "Node", lambda o: sum(ready(x) == "True" for x in o.values()) == n, 120)
    nodes = sorted(o.metadata.name for o in (await client.list("Node"))[0])

    # Baseline: the same number of pods, created and bound directly.
    def all_running(objs: dict[str, Any]) -> bool:
        return sum(1 for p in objs.values() if p.status.phase == "Running") == n

    start = time.perf_counter()
    for first in range(0, n, 500):
        batch = Batch()
        for name in nodes[first:first + 500]:
            pod = core_pb2.Pod()
            pod.metadata.generate_name, pod.metadata.namespace = "raw-", "default"
            pod.metadata.labels["bench"] = "raw"
            pod.spec.node_name = name
            pod.spec.containers.add(name="c", image="x", command=["sleep", "infinity"])
            batch.create(pod)
        await client.batch(batch)
    await wait_for(client, "Pod", all_running, 300, label_selector="bench=raw")
    out["baseline"] = time.perf_counter() - start
    raw, _ = await client.list("Pod", label_selector="bench=raw")
    for first in range(0, len(raw), 500):
        batch = Batch()
        for p in raw[first:first + 500]:
            batch.delete("Pod", p.metadata.name, namespace="default")
        await client.batch(batch)
    await wait_for(client, "Pod", lambda o: not o, 120, label_selector="bench=raw")

    def ds_status(check: Callable[[Any], bool]) -> Callable[[dict[str, Any]], bool]:
        return lambda objs: any(o.metadata.name == "bench" and check(o.status) for o in objs.values())

    start = time.perf_counter()
    await client.create(daemonset("1"))
    await wait_for(client, "DaemonSet", ds_status(lambda s: s.number_ready == n), 600)
    out["rollout"] = time.perf_counter() - start

    ds = await client.get("DaemonSet", "bench", "default")
    ds.spec.template.spec.containers[0].env[0].value = "2"
    start = time.perf_counter()
    ds = await client.update(ds)
    gen = ds.metadata.generation
    await wait_for(client, "DaemonSet", ds_status(
        lambda s: s.observed_generation >= gen and s.updated_number_scheduled == n and s.number_available == n), 900)
    out["update"] = time.perf_counter() - start

    lost_names = {x for x in nodes if x.startswith(lost_prefix)}
    assert len(lost_names) == lost

    def detected(objs: dict[str, Any]) -> bool:
        gone = [o for o in objs.values() if o.metadata.name in lost_names]
        return len(gone) == lost and all(
            ready(o) == "Unknown" and any(t.key == "node.kubernetes.io/unreachable" and t.effect == "NoExecute"
                                          for t in o.spec.taints) for o in gone)

    start = time.perf_counter()
    kill_lost()
    await wait_for(client, "Node", detected, grace * 3 + 60)
    out["node loss"] = time.perf_counter() - start
    out["grace"] = grace
    await client.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--lost", type=int, default=50, help="nodes in the agent that is killed")
    p.add_argument("--grace", default="10s", help="--node-monitor-grace-period of the control plane")
    p.add_argument("--heartbeat-interval", default="2s")
    p.add_argument("--log", default="", help="keep the processes' logs (control plane at INFO) in this dir")
    args = p.parse_args()
    grace = durations.parse(args.grace)
    with BenchCluster("ds", log_dir=Path(args.log) if args.log else None) as cluster:
        # Every lost node is tainted at once: at Kubernetes' 0.1 node/s the last of 50 would take
        # 490 s, and the measure is how soon the loss is noticed.
        cluster.start_controlplane("--node-monitor-grace-period", args.grace, "--node-eviction-rate", "1000",
                                   *(["--log-level", "INFO"] if args.log else []))
        for name, count in (("kept", args.nodes - args.lost), ("lost", args.lost)):
            # The simulated nodes act with the admin's credentials (without them they dial plaintext).
            cluster.start_agent(f"hollow-{name}", "--hollow", str(count), "--kubeconfig", str(cluster.admin_config),
                                "--heartbeat-interval", args.heartbeat_interval)
        results = asyncio.run(scenario(cluster.server, args.nodes, "hollow-lost-", args.lost, grace,
                                       lambda: cluster.kill("hollow-lost")))
    n = args.nodes
    base = results["baseline"]
    print(f"{'measure':<44} {'seconds':>8} {'vs baseline':>12}")
    rows = [
        (f"register {n} hollow nodes (all Ready)", results["register"], None),
        (f"baseline: {n} bound pods created, all Running", base, 1.0),
        (f"DaemonSet rollout to {n} nodes (numberReady)", results["rollout"], results["rollout"] / base),
        (f"rolling update, maxUnavailable 10% ({n} pods)", results["update"], results["update"] / base),
        (f"node loss: {args.lost} nodes Unknown + NoExecute", results["node loss"], None),
    ]
    for label, secs, ratio in rows:
        print(f"{label:<44} {secs:>8.2f} {'' if ratio is None else f'{ratio:.1f}x':>12}")
    beat = durations.parse(args.heartbeat_interval)
    print(f"node loss is due {grace - beat:.0f}-{grace:.0f}s after the kill (the grace period from the last "
          f"renewal, one heartbeat or less before it): measured {results['node loss']:.1f}s, "
          f"{results['node loss'] - grace:+.1f}s from the grace period")
    print(json.dumps({k: round(v, 3) for k, v in results.items()}))


if __name__ == "__main__":
    main()
