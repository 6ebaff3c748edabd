"""The Node authorizer and NodeRestriction: what an agent (system:node:NAME in system:nodes) may
do, each refusal in Kubernetes' words; and that cached decisions about a pod go when the pod is
created, deleted or bound."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from controlplane.apiserver.admission import CREATE, DELETE, UPDATE, AdmissionRequest
from controlplane.apiserver.authz import ALLOW, NO_OPINION
from controlplane.apiserver.rbac.cache import DecisionCache
from controlplane.apiserver.rbac.node import NodeAuthorizer, node_identity
from controlplane.apiserver.rbac.noderestriction import NodeRestriction, forbidden_labels
from controlplane.apiserver.request import Attributes, UserInfo
from ketch.api import errors, manifest

from .objects import memory_store, put

N1 = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
NOT_A_NODE = UserInfo("system:node:n1", ("system:authenticated",))  # the name without the group
NAMELESS = UserInfo("system:node:", ("system:nodes",))


def req(verb: str, resource: str, ns: str = "", name: str = "", group: str = "", sub: str = "",
        user: UserInfo = N1) -> Attributes:
    return Attributes(user, verb, group, resource, sub, ns, name)


def pod(name: str, node: str = "", ns: str = "default", **labels: str) -> Any:
    return manifest.from_dict({"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": name, "namespace": ns, "labels": labels},
                               "spec": {"nodeName": node, "containers": [{"name": "c", "command": ["true"]}]}})


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None) -> Any:
    return manifest.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels or {}},
                               "spec": {"taints": taints or []}})


LEASE = "coordination.k8s.io"
NO_RELATION = "no relationship found between node 'n1' and this object"


@dataclass(frozen=True)
class Case:
    name: str
    attrs: Attributes
    allowed: bool
    reason: str = ""


CASES = [
    Case("reads every node", req("list", "nodes"), True),
    Case("reads every pod (Kubernetes 1.31)", req("watch", "pods", "default"), True),
    Case("creates its own node", req("create", "nodes", name="n1"), True),
    Case("updates its own node", req("update", "nodes", name="n1"), True),
    Case("patches its own node's status", req("patch", "nodes", name="n1", sub="status"), True),
    Case("deletes its own node (drain on exit)", req("delete", "nodes", name="n1"), True),
    Case("may not create another node", req("create", "nodes", name="n2"), False,
         "node 'n1' cannot modify node 'n2', only its own Node object"),
    Case("may not update another node's status", req("update", "nodes", name="n2", sub="status"), False,
         "node 'n1' cannot modify node 'n2', only its own Node object"),
    Case("may not delete another node", req("delete", "nodes", name="n2"), False,
         "node 'n1' cannot modify node 'n2', only its own Node object"),
    Case("may not read node stats (the control plane's)", req("get", "nodes", name="n1", sub="stats"), False),
    Case("gets, creates and updates its own lease", req("update", "leases", "kube-node-lease", "n1", LEASE), True),
    Case("creates its own lease (the name is known on create)", req("create", "leases", "kube-node-lease", "n1",
                                                                     LEASE), True),
    Case("not another node's lease", req("update", "leases", "kube-node-lease", "n2", LEASE), False,
         "can only access node lease with the same name as the requesting node"),
    Case("not a lease elsewhere", req("get", "leases", "kube-system", "n1", LEASE), False,
         'can only access leases in the "kube-node-lease" system namespace'),
    Case("never lists leases", req("list", "leases", "kube-node-lease", group=LEASE), False,
         "can only get, create, update, patch, or delete a node lease"),
    Case("updates the status of a pod bound to it", req("update", "pods", "default", "mine", sub="status"), True),
    Case("patches the status of a pod bound to it", req("patch", "pods", "default", "mine", sub="status"), True),
    Case("deletes a pod bound to it", req("delete", "pods", "default", "mine"), True),
    Case("not the status of another node's pod", req("update", "pods", "default", "theirs", sub="status"), False,
         NO_RELATION),
    Case("not the status of an unbound pod", req("update", "pods", "default", "pending", sub="status"), False,
         NO_RELATION),
    Case("does not delete another node's pod", req("delete", "pods", "default", "theirs"), False, NO_RELATION),
    Case("hears NotFound for a pod that is gone", req("delete", "pods", "default", "gone"), True),
    Case("never creates a pod", req("create", "pods", "default", "mine"), False),
    Case("never updates a pod's spec", req("update", "pods", "default", "mine"), False),
    Case("never binds a pod", req("create", "pods", "default", "pending", sub="binding"), False),
    Case("creates and patches events", req("patch", "events", "default", "e"), True),
    Case("does not delete events", req("delete", "events", "default", "e"), False),
    Case("nothing else: jobs", req("list", "jobs", "default", group="batch"), False),
    Case("nothing else: RBAC", req("create", "clusterrolebindings", name="x", group="rbac.authorization.k8s.io"),
         False),
    Case("no opinion on users who are not nodes", req("list", "nodes", user=NOT_A_NODE), False),
    Case("a node user without a name", req("list", "nodes", user=NAMELESS), False,
         'unknown node for user "system:node:"'),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_node_authorizer(case: Case) -> None:
    store = await memory_store()
    try:
        await put(store, pod("mine", "n1"), pod("theirs", "n2"), pod("pending"))
        decision = NodeAuthorizer(store).authorize(case.attrs)
        assert decision.verdict == (ALLOW if case.allowed else NO_OPINION)
        assert decision.reason == case.reason
    finally:
        await store.stop()


def test_node_identity_needs_the_prefix_and_the_group() -> None:
    assert node_identity(N1) == ("n1", True)
    assert node_identity(NOT_A_NODE) == ("", False)
    assert node_identity(UserInfo("n1", ("system:nodes",))) == ("", False)


async def test_cached_decisions_about_a_pod_go_when_it_is_bound_or_deleted() -> None:
    store = await memory_store()
    try:
        cache = DecisionCache()
        authz = NodeAuthorizer(store, cache)
        status = req("update", "pods", "default", "p", sub="status")
        assert authz.authorize(status).verdict == ALLOW  # no such pod yet: NotFound follows
        await put(store, pod("p", "n2"))
        assert authz.authorize(status).verdict == NO_OPINION
        assert authz.authorize(status).verdict == NO_OPINION and cache.hits == 1
        await put(store, pod("p", "n2", app="x"))  # a change that binds nothing keeps the decision
        assert authz.authorize(status).verdict == NO_OPINION and cache.hits == 2
        await store.write("Pod", "default/p", None)
        await put(store, pod("p", "n1"))
        assert authz.authorize(status).verdict == ALLOW
    finally:
        await store.stop()



def referencing_pod(name: str, node: str, ns: str = "default") -> Any:
    """A pod naming Secrets and ConfigMaps in each of the ways Kubernetes' graph follows."""
    return manifest.from_dict({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
                               "spec": {"nodeName": node, "imagePullSecrets": [{"name": "pull"}],
                                        "volumes": [{"name": "v", "secret": {"secretName": "vol-secret"}},
                                                    {"name": "w", "configMap": {"name": "vol-cm"}},
                                                    {"name": "x", "projected": {"sources": [
                                                        {"configMap": {"name": "proj-cm"}}]}}],
                                        "containers": [{"name": "c", "command": ["true"],
                                                        "envFrom": [{"configMapRef": {"name": "from-cm"}}],
                                                        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {
                                                            "name": "key-secret", "key": "k"}}}]}]}})


SECRET_CASES = [
    Case("gets a secret its pod's env names", req("get", "secrets", "default", "key-secret"), True),
    Case("gets a configmap its pod's envFrom names", req("get", "configmaps", "default", "from-cm"), True),
    Case("watches one secret by name", req("watch", "secrets", "default", "vol-secret"), True),
    Case("gets a volume's configmap", req("get", "configmaps", "default", "vol-cm"), True),
    Case("gets a projected configmap", req("get", "configmaps", "default", "proj-cm"), True),
    Case("gets an image pull secret", req("get", "secrets", "default", "pull"), True),
    Case("not a secret only another node's pod names", req("get", "secrets", "default", "other-secret"), False,
         NO_RELATION),
    Case("not the same name as another kind", req("get", "secrets", "default", "from-cm"), False, NO_RELATION),
    Case("not the same name in another namespace", req("get", "secrets", "team", "key-secret"), False, NO_RELATION),
    Case("never lists every secret", req("list", "secrets", "default"), False, "No Object name found"),
    Case("never writes one", req("update", "secrets", "default", "key-secret"), False,
         "can only read resources of this type"),
    Case("never cluster-wide", req("get", "configmaps", "", "from-cm"), False,
         "can only read namespaced object of this type"),
]


@pytest.mark.parametrize("case", SECRET_CASES, ids=[c.name for c in SECRET_CASES])
async def test_node_reads_only_the_secrets_and_configmaps_its_pods_reference(case: Case) -> None:
    store = await memory_store()
    try:
        other = referencing_pod("theirs", "n2")
        other.spec.containers[0].env[0].value_from.secret_key_ref["name"] = "other-secret"
        await put(store, referencing_pod("mine", "n1"), other, referencing_pod("pending", ""))
        decision = NodeAuthorizer(store).authorize(case.attrs)
        assert (decision.verdict, decision.reason) == (ALLOW if case.allowed else NO_OPINION, case.reason)
    finally:
        await store.stop()


async def test_cached_secret_decisions_follow_pods_bound_to_the_node() -> None:
    store = await memory_store()
    try:
        cache = DecisionCache()
        authz = NodeAuthorizer(store, cache)
        get = req("get", "secrets", "default", "key-secret")
        await put(store, referencing_pod("p", ""))
        assert authz.authorize(get).verdict == NO_OPINION  # not bound yet
        await put(store, referencing_pod("p", "n1"))
        assert authz.authorize(get).verdict == ALLOW
        assert authz.authorize(get).verdict == ALLOW and cache.hits == 1
        await store.write("Pod", "default/p", None)
        assert authz.authorize(get).verdict == NO_OPINION
    finally:
        await store.stop()

# -- NodeRestriction ---------------------------------------------------------------------------------


def admission(op: str, attrs: Attributes, obj: Any = None, old: Any = None) -> AdmissionRequest:
    return AdmissionRequest(op, attrs, obj, old)


@dataclass(frozen=True)
class Restriction:
    name: str
    request: AdmissionRequest
    refusal: str = ""  # "" when admitted


RESTRICTIONS = [
    Restriction("a node registers itself with the kubelet's labels",
                admission(CREATE, req("create", "nodes", name="n1"),
                          node("n1", {"kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux",
                                      "node.kubernetes.io/instance-type": "vm", "disk": "ssd"}))),
    Restriction("a node may not register another",
                admission(CREATE, req("create", "nodes", name="n2"), node("n2")),
                'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'),
    Restriction("a node may not delete another",
                admission(DELETE, req("delete", "nodes", name="n2"), None, node("n2")),
                'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'),
    Restriction("a node may not register with a node-restriction label",
                admission(CREATE, req("create", "nodes", name="n1"),
                          node("n1", {"node-restriction.kubernetes.io/trusted": "yes"})),
                'nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: '
                "node-restriction.kubernetes.io/trusted"),
    Restriction("a node may not give itself a role",
                admission(UPDATE, req("update", "nodes", name="n1"),
                          node("n1", {"node-role.kubernetes.io/control-plane": ""}), node("n1")),
                'nodes "n1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/control-plane'),
    Restriction("a node may not remove a label it may not set",
                admission(UPDATE, req("update", "nodes", name="n1"), node("n1"),
                          node("n1", {"example.k8s.io/pool": "gpu"})),
                'nodes "n1" is forbidden: is not allowed to modify labels: example.k8s.io/pool'),
    Restriction("a node may change its own labels outside kubernetes.io",
                admission(UPDATE, req("update", "nodes", name="n1"), node("n1", {"disk": "ssd"}), node("n1"))),
    Restriction("a node may not untaint itself",
                admission(UPDATE, req("update", "nodes", name="n1"), node("n1"),
                          node("n1", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])),
                'nodes "n1" is forbidden: node "n1" is not allowed to modify taints'),
    Restriction("a node writes the status of its own pods",
                admission(UPDATE, req("update", "pods", "default", "mine", sub="status"), pod("mine", "n1"),
                          pod("mine", "n1"))),
    Restriction("but not of another node's",
                admission(UPDATE, req("update", "pods", "default", "theirs", sub="status"), pod("theirs", "n2"),
                          pod("theirs", "n2")),
                'pods "theirs" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set '
                "to itself"),
    Restriction("with its labels as they were",
                admission(UPDATE, req("update", "pods", "default", "mine", sub="status"),
                          pod("mine", "n1", app="web", tier="a"), pod("mine", "n1", tier="a", app="web"))),
    Restriction("never changing a label through status",
                admission(UPDATE, req("update", "pods", "default", "mine", sub="status"), pod("mine", "n1", app="db"),
                          pod("mine", "n1", app="web")),
                'pods "mine" is forbidden: node "n1" cannot update labels through pod status'),
    Restriction("nor adding one",
                admission(UPDATE, req("update", "pods", "default", "mine", sub="status"),
                          pod("mine", "n1", app="web", extra="x"), pod("mine", "n1", app="web")),
                'pods "mine" is forbidden: node "n1" cannot update labels through pod status'),
    Restriction("nor swapping one for another",
                admission(UPDATE, req("update", "pods", "default", "mine", sub="status"), pod("mine", "n1", b="1"),
                          pod("mine", "n1", a="1")),
                'pods "mine" is forbidden: node "n1" cannot update labels through pod status'),
    Restriction("a node deletes its own pods",
                admission(DELETE, req("delete", "pods", "default", "mine"), None, pod("mine", "n1"))),
    Restriction("but not another node's",
                admission(DELETE, req("delete", "pods", "default", "theirs"), None, pod("theirs", "n2")),
                'pods "theirs" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself'),
    Restriction("a node never creates a pod",
                admission(CREATE, req("create", "pods", "default", "mine"), pod("mine", "n1")),
                'pods "mine" is forbidden: node "n1" may not create pods: Ketch has no mirror pods'),
    Restriction("a node never updates a pod's spec",
                admission(UPDATE, req("update", "pods", "default", "mine"), pod("mine", "n1"), pod("mine", "n1")),
                'pods "mine" is forbidden: unexpected operation "UPDATE", node "n1" can only delete pods and '
                "update their status"),
    Restriction("a node writes its own lease",
                admission(UPDATE, req("update", "leases", "kube-node-lease", "n1", LEASE))),
    Restriction("not another's",
                admission(CREATE, req("create", "leases", "kube-node-lease", "n2", LEASE)),
                'leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the '
                "requesting node"),
    Restriction("users who are not nodes pass",
                admission(CREATE, req("create", "pods", "default", "x", user=NOT_A_NODE), pod("x"))),
]


@pytest.mark.parametrize("case", RESTRICTIONS, ids=[c.name for c in RESTRICTIONS])
def test_node_restriction(case: Restriction) -> None:
    plugin = NodeRestriction()
    before = [o.SerializeToString(deterministic=True) if o is not None else None
              for o in (case.request.obj, case.request.old)]
    if not case.refusal:
        plugin.admit(case.request)
    else:
        with pytest.raises(errors.Forbidden) as err:
            plugin.admit(case.request)
        assert err.value.message == case.refusal
    # It only refuses: neither object is touched (reading a missing key of a protobuf map adds it).
    assert before == [o.SerializeToString(deterministic=True) if o is not None else None
                      for o in (case.request.obj, case.request.old)]


def test_forbidden_labels_are_kubernetes_and_restricted_ones_but_the_kubelets() -> None:
    new = {"kubernetes.io/hostname": "n1", "kubelet.kubernetes.io/x": "1", "team.node.kubernetes.io/y": "1",
           "kubernetes.io/role": "master", "sub.node-restriction.kubernetes.io/z": "1", "k8s.io/w": "1", "own": "1"}
    assert forbidden_labels(new, {}) == ["k8s.io/w", "kubernetes.io/role", "sub.node-restriction.kubernetes.io/z"]
