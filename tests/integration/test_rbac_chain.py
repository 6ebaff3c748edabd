"""Authorization through the real request chain over gRPC (Node,RBAC, the bootstrap policy,
NodeRestriction, escalation prevention), with users as authentication will name them: refusals
are PERMISSION_DENIED with Kubernetes' words, a binding takes effect for the very next request,
nodes touch only what is theirs, and nobody grants what they do not hold."""

from __future__ import annotations

import grpc
import pytest

from ketch.api import errors, manifest
from ketch.client.clientset import Batch
from ketch.client.transport import TLSConfig
from ketch.v1 import api_pb2, api_pb2_grpc, core_pb2

from .rbac_helpers import clients, secured

G = "rbac.authorization.k8s.io"


def namespace(name: str) -> core_pb2.Namespace:
    ns = core_pb2.Namespace()
    ns.metadata.name = name
    return ns


def job(name: str, ns: str) -> object:
    return manifest.from_dict({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": ns},
                               "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                              "containers": [{"name": "c", "command": ["true"]}]}}}})


def role_binding(name: str, ns: str, role: str, user: str, kind: str = "ClusterRole") -> object:
    return manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "RoleBinding",
                               "metadata": {"name": name, "namespace": ns},
                               "subjects": [{"kind": "User", "name": user}],
                               "roleRef": {"kind": kind, "name": role}})


def pod(name: str, node: str = "", ns: str = "default") -> core_pb2.Pod:
    return manifest.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                               "spec": {"nodeName": node, "containers": [{"name": "c", "command": ["true"]}]}})


async def test_refusals_are_permission_denied_in_kubernetes_words() -> None:
    async with secured() as api:
        # Raw gRPC: the status code and the reason a client maps back.
        channel = grpc.aio.secure_channel(api.address, TLSConfig(api.pki.ca_pem).channel_credentials())
        stub = api_pb2_grpc.APIStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raw:
            await stub.List(api_pb2.ListRequest(kind="Pod", namespace="default"),
                            metadata=[("authorization", "Bearer bob")])
        await channel.close()
        assert raw.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert raw.value.details() == ('pods is forbidden: User "bob" cannot list resource "pods" in API group "" '
                                       'in the namespace "default"')
        assert ("ketch-reason", "Forbidden") in tuple(raw.value.trailing_metadata())
        async with clients(api, "bob") as (bob,):
            with pytest.raises(errors.Forbidden) as refused:
                await bob.create(job("pi", "default"))
            assert refused.value.message == ('jobs.batch is forbidden: User "bob" cannot create resource "jobs" in API '
                                             'group "batch" in the namespace "default"')
            with pytest.raises(errors.NotFound):  # nothing was stored
                await api.local.get("Job", "pi", "default")


async def test_a_binding_grants_at_once_in_its_namespace_only_and_masters_may_do_anything() -> None:
    async with secured() as api, clients(api, "admin", "alice") as (admin, alice):
        await admin.create(namespace("team"))
        with pytest.raises(errors.Forbidden):
            await alice.create(job("pi", "team"))
        await admin.create(role_binding("alice-edits", "team", "edit", "alice"))
        # edit is aggregated by the controller, which this server does not run: give it its rules here.
        edit = await api.local.get("ClusterRole", "system:aggregate-to-edit")
        view = await api.local.get("ClusterRole", "system:aggregate-to-view")
        current = await api.local.get("ClusterRole", "edit")
        current.rules.extend([*edit.rules, *view.rules])
        await api.local.update(current)

        await alice.create(job("pi", "team"))  # the very next request sees both changes
        items, _ = await alice.list("Pod", "team")
        assert items == []
        with pytest.raises(errors.Forbidden, match='in the namespace "default"'):
            await alice.create(job("pi", "default"))
        with pytest.raises(errors.Forbidden, match="at the cluster scope"):
            await alice.list("Node")
        await admin.delete("RoleBinding", "alice-edits", "team")
        with pytest.raises(errors.Forbidden):
            await alice.get("Job", "pi", "team")
        # Anyone authenticated may read the version (system:discovery); masters need no binding at all.
        await alice.version()
        await admin.delete("ClusterRoleBinding", "cluster-admin")
        assert (await admin.list("Node"))[0] == []


async def test_nodes_touch_only_their_own_node_lease_and_pods() -> None:
    async with secured() as api, clients(api, "n1", "n2") as (n1, n2):
        local = api.local
        await local.create(pod("mine", "n1"))
        await local.create(pod("theirs", "n2"))
        # Its own Node, with the kubelet's labels; not another's, not a role label.
        node = core_pb2.Node()
        node.metadata.name = "n1"
        node.metadata.labels["kubernetes.io/hostname"] = "n1"
        await n1.create(node)
        other = core_pb2.Node()
        other.metadata.name = "n3"
        with pytest.raises(errors.Forbidden, match="node 'n1' cannot modify node 'n3'"):
            await n1.create(other)
        mine = await n1.get("Node", "n1")
        mine.metadata.labels["node-role.kubernetes.io/control-plane"] = ""
        with pytest.raises(errors.Forbidden) as refused:
            await n1.update(mine)
        assert refused.value.message == ('nodes "n1" is forbidden: is not allowed to modify labels: '
                                         "node-role.kubernetes.io/control-plane")
        # Status of its own pods only; reading any pod is allowed, as in Kubernetes 1.31.
        p = await n1.get("Pod", "mine", "default")
        p.status.phase = "Running"
        await n1.update_status(p)
        t = await n1.get("Pod", "theirs", "default")
        t.status.phase = "Failed"
        with pytest.raises(errors.Forbidden, match="no relationship found between node 'n1' and this object"):
            await n1.update_status(t)
        with pytest.raises(errors.Forbidden):
            await n1.delete("Pod", "theirs", "default")
        with pytest.raises(errors.Forbidden):
            await n1.create(pod("rogue", "n1"))
        await n1.delete("Pod", "mine", "default", grace_period_seconds=0)
        with pytest.raises(errors.NotFound):  # gone: the node hears NotFound, not Forbidden
            await n1.delete("Pod", "mine", "default", grace_period_seconds=0)
        # Bound later to n2 (by the scheduler, through pods/binding): now n2 may write it, n1 may not.
        late = await local.create(pod("late"))
        with pytest.raises(errors.Forbidden):
            await n2.delete("Pod", "late", "default")
        [bound] = await local.batch(Batch().bind(late, "n2"))
        assert bound.error is None
        late = await n2.get("Pod", "late", "default")
        late.status.phase = "Running"
        await n2.update_status(late)
        with pytest.raises(errors.Forbidden):
            await n1.update_status(late)
        with pytest.raises(errors.Forbidden):
            await n2.delete("Node", "n1")
        with pytest.raises(errors.Forbidden):
            await n1.list("Job", "default")


def cluster_role(name: str, *rules: dict) -> object:
    return manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "ClusterRole", "metadata": {"name": name},
                               "rules": list(rules)})


def role(name: str, ns: str, *rules: dict) -> object:
    return manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "Role", "metadata": {"name": name, "namespace": ns},
                               "rules": list(rules)})


async def test_nobody_grants_what_they_do_not_hold_unless_they_may_escalate_or_bind() -> None:
    async with secured() as api, clients(api, "admin", "alice") as (admin, alice):
        await admin.create(namespace("team"))
        await admin.create(cluster_role(
            "team-lead", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
            # Not "*": that would include escalate and bind.
            {"apiGroups": [G], "resources": ["roles", "rolebindings"], "verbs": ["get", "create", "update"]}))
        await admin.create(role_binding("lead", "team", "team-lead", "alice"))

        # What she holds she may grant, as a Role and through a binding.
        await alice.create(role("pod-reader", "team", {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}))
        await alice.create(role_binding("bob-reads", "team", "pod-reader", "bob", kind="Role"))
        await alice.create(role_binding("bob-leads", "team", "team-lead", "bob"))

        # Not more: a rule she lacks, a role she lacks, a role that does not exist.
        with pytest.raises(errors.Forbidden) as refused:
            await alice.create(role("node-killer", "team",
                                    {"apiGroups": ["", "batch"], "resources": ["pods", "jobs"],
                                     "verbs": ["get", "create"]}))
        assert refused.value.message == (
            'roles.rbac.authorization.k8s.io "node-killer" is forbidden: user "alice" (groups=["dev" '
            '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["jobs"], Verbs:["get" "create"]}\n'
            '{APIGroups:[""], Resources:["pods"], Verbs:["create"]}\n'
            '{APIGroups:["batch"], Resources:["jobs"], Verbs:["get" "create"]}\n'
            '{APIGroups:["batch"], Resources:["pods"], Verbs:["get" "create"]}')
        with pytest.raises(errors.NotFound):
            await api.local.get("Role", "node-killer", "team")
        with pytest.raises(errors.Forbidden, match="attempting to grant RBAC permissions not currently held"):
            await alice.create(role_binding("bob-admin", "team", "cluster-admin", "bob"))
        with pytest.raises(errors.NotFound, match=r'clusterroles\.rbac\.authorization\.k8s\.io "nope" not found'):
            await alice.create(role_binding("bob-nope", "team", "nope", "bob"))
        # An update may not add what she lacks either.
        reader = await alice.get("Role", "pod-reader", "team")
        reader.rules[0].verbs.append("deletecollection")
        with pytest.raises(errors.Forbidden, match=r'Verbs:\["deletecollection"\]'):
            await alice.update(reader)

        # `bind` on one ClusterRole lets her bind it; `escalate` on roles lets her write any Role.
        await admin.create(cluster_role("binder", {"apiGroups": [G], "resources": ["clusterroles"], "verbs": ["bind"],
                                                   "resourceNames": ["cluster-admin"]},
                                        {"apiGroups": [G], "resources": ["roles"], "verbs": ["escalate"]}))
        await admin.create(role_binding("binder", "team", "binder", "alice"))
        await alice.create(role_binding("bob-admin", "team", "cluster-admin", "bob"))
        await alice.create(role("node-killer", "team",
                                {"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}))
        # Never beyond the namespace: a ClusterRoleBinding needs bind at the cluster scope.
        crb = manifest.from_dict({"apiVersion": f"{G}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"},
                                  "subjects": [{"kind": "User", "name": "bob"}],
                                  "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}})
        with pytest.raises(errors.Forbidden, match='cannot create resource "clusterrolebindings"'):
            await alice.create(crb)
