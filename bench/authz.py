#!/usr/bin/env python3
"""Authorization benchmark: what deciding one request costs, with and without the decision cache,
beside AlwaysAllow measured in the same run.

In this process, over a memory store filled like a busy cluster (NAMESPACES namespaces, each with
its own Role and RoleBindings for several users, a few hundred ClusterRoleBindings, the
bootstrap policy, PODS pods bound to NODES nodes), it times the request chain's authorization
step (Authorizers.check, what every request pays after authentication) for:

  admin      a system:masters user (the fast path, before any authorizer)
  user get   a user bound by a RoleBinding in its namespace, getting a pod there (allowed)
  user deny  the same user listing pods in another namespace (refused: every binding is visited)
  node       an agent writing the status of a pod bound to it (the Node authorizer)

Each scenario repeats a working set of distinct requests (different pod names), so a cached run
hits after the first pass, as a real server does between RBAC changes.

    .venv/bin/python bench/authz.py [--namespaces 200] [--pods 20000] [--nodes 100] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from controlplane.apiserver.authz import AlwaysAllow, Authorizers, PrivilegedGroups
from controlplane.apiserver.rbac import Authorization
from controlplane.apiserver.rbac.bootstrap import cluster_role_bindings, cluster_roles
from controlplane.apiserver.request import Attributes, UserInfo
from controlplane.registry import Registry
from controlplane.storage import Store
from controlplane.storage.backend import MemoryBackend
from ketch.api import errors, manifest

G = "rbac.authorization.k8s.io"
AUTH = "system:authenticated"


def role(ns: str) -> object:
    return manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "Role", "metadata": {"name": "dev", "namespace": ns},
                               "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"],
                                          "verbs": ["get", "list", "watch"]},
                                         {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"],
                                          "verbs": ["get", "list", "watch", "create", "delete"]}]})


def binding(name: str, ns: str, role_kind: str, role_name: str, *users: str) -> object:
    md = {"name": name, "namespace": ns} if ns else {"name": name}
    return manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "RoleBinding" if ns else "ClusterRoleBinding",
                               "metadata": md, "subjects": [{"kind": "User", "name": u} for u in users],
                               "roleRef": {"kind": role_kind, "name": role_name}})


def pod(name: str, ns: str, node: str) -> object:
    return manifest.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                               "spec": {"nodeName": node, "containers": [{"name": "c", "command": ["true"]}]}})


async def fill(store: Store, namespaces: int, pods: int, nodes: int) -> None:
    staged = []
    for obj in [*cluster_roles(), *cluster_role_bindings()]:
        staged.append(store.stage(obj.kind, obj.metadata.name, obj, create=True))
    for i in range(300):  # cluster-wide grants to other users
        b = binding(f"viewer-{i}", "", "ClusterRole", "view", f"viewer-{i}")
        staged.append(store.stage("ClusterRoleBinding", b.metadata.name, b, create=True))
    for n in range(namespaces):
        ns = f"team-{n}"
        r = role(ns)
        staged.append(store.stage("Role", f"{ns}/dev", r, create=True))
        for j in range(5):
            b = binding(f"dev-{j}", ns, "Role", "dev", f"user-{n}-{j}")
            staged.append(store.stage("RoleBinding", f"{ns}/dev-{j}", b, create=True))
        b = binding("admins", ns, "ClusterRole", "admin", f"lead-{n}")
        staged.append(store.stage("RoleBinding", f"{ns}/admins", b, create=True))
    for i in range(pods):
        p = pod(f"p{i}", "team-0", f"n{i % nodes}")
        staged.append(store.stage("Pod", f"team-0/p{i}", p, create=True))
    await store.commit(staged)


def timed(check: Callable[[Attributes], None], requests: list[Attributes], rounds: int) -> float:
    """Microseconds per request, over rounds passes of the working set."""
    start = time.perf_counter()
    for _ in range(rounds):
        for attrs in requests:
            try:
                check(attrs)
            except errors.Forbidden:
                pass
    return (time.perf_counter() - start) / (rounds * len(requests)) * 1e6


async def main(args: argparse.Namespace) -> None:
    registry = Registry()
    store = Store(MemoryBackend(), registry.field_values, parsed_on_read=registry.parsed_on_read())
    await store.start()
    await fill(store, args.namespaces, args.pods, args.nodes)
    cached = Authorization(store, ("Node", "RBAC"), cache=True)
    uncached = Authorization(store, ("Node", "RBAC"), cache=False)
    allow_all = Authorizers([PrivilegedGroups(), AlwaysAllow()])

    admin = UserInfo("admin", ("system:masters", AUTH))
    user = UserInfo("user-0-0", (AUTH,))
    node = UserInfo("system:node:n0", ("system:nodes", AUTH))
    working = range(args.working_set)
    scenarios = {
        "admin get pod": [Attributes(admin, "get", "", "pods", "", "team-0", f"p{i}") for i in working],
        "user get pod (allowed)": [Attributes(user, "get", "", "pods", "", "team-0", f"p{i}") for i in working],
        "user list pods elsewhere (denied)": [Attributes(user, "list", "", "pods", "", f"team-{1 + i % 50}")
                                              for i in working],
        "node writes its pod's status": [Attributes(node, "update", "", "pods", "status", "team-0",
                                                    f"p{i * args.nodes}") for i in working],
    }
    print(f"{args.namespaces} namespaces, {len(cached.index.bindings[''])} ClusterRoleBindings, "
          f"{sum(len(v) for k, v in cached.index.bindings.items() if k)} RoleBindings, {args.pods} pods on "
          f"{args.nodes} nodes; {args.working_set} distinct requests per scenario, {args.rounds} rounds\n")
    print(f"{'scenario':<36} {'AlwaysAllow':>12} {'no cache':>12} {'cache':>12}  speed-up")
    for name, requests in scenarios.items():
        base = timed(allow_all.check, requests, args.rounds)
        slow = timed(uncached.authorizers.check, requests, args.rounds)
        fast = timed(cached.authorizers.check, requests, args.rounds)
        print(f"{name:<36} {base:>10.2f}µs {slow:>10.2f}µs {fast:>10.2f}µs  {slow / fast:6.1f}x")
    assert cached.rbac_cache is not None and cached.node_cache is not None
    print(f"\ncache: RBAC {cached.rbac_cache.hits} hits / {cached.rbac_cache.misses} misses, "
          f"Node {cached.node_cache.hits} hits / {cached.node_cache.misses} misses")
    await store.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--namespaces", type=int, default=200)
    p.add_argument("--pods", type=int, default=20000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--working-set", type=int, default=200)
    p.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(p.parse_args()))
