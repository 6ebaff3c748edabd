"""The RBAC authorizer, as a table: which requests the roles and bindings of a case allow, with
Kubernetes' matching of wildcards, subresources, resourceNames, non-resource URLs, namespaces and
subjects; and that the index follows the store's changes (read-your-writes, no stale grants)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controlplane.apiserver.authz import ALLOW, NO_OPINION
from controlplane.apiserver.rbac.authorizer import RBACAuthorizer
from controlplane.apiserver.rbac.cache import CachedAuthorizer, DecisionCache
from controlplane.apiserver.rbac.index import RBACIndex
from controlplane.apiserver.request import Attributes, UserInfo

from .objects import binding, memory_store, put, remove, role, rule

ALICE = UserInfo("alice", ("dev", "system:authenticated"))
BOB = UserInfo("bob", ("system:authenticated",))
SA = UserInfo("system:serviceaccount:ci:builder", ("system:serviceaccounts", "system:authenticated"))


def req(verb: str, resource: str = "", ns: str = "", name: str = "", group: str = "", sub: str = "",
        path: str = "", user: UserInfo = ALICE) -> Attributes:
    return Attributes(user, verb, group, resource, sub, ns, name, path)


@dataclass(frozen=True)
class Case:
    name: str
    objects: tuple[Any, ...]
    allowed: tuple[Attributes, ...] = ()
    denied: tuple[Attributes, ...] = ()
    reasons: dict[int, str] = field(default_factory=dict)  # index into denied -> reason


READ_PODS = role("pod-reader", rule(["get", "list", "watch"], [""], ["pods"]))

CASES = [
    Case("a cluster binding to a user grants its rules in every namespace and cluster-wide",
         (READ_PODS, binding("b", "ClusterRole/pod-reader", "User:alice")),
         allowed=(req("get", "pods", "default", "p"), req("list", "pods", "team"), req("watch", "pods")),
         denied=(req("delete", "pods", "default", "p"), req("get", "pods", "default", "p", user=BOB),
                 req("get", "jobs", "default", "j", group="batch"))),
    Case("a group subject matches every member",
         (READ_PODS, binding("b", "ClusterRole/pod-reader", "Group:dev")),
         allowed=(req("get", "pods", "default", "p"),),
         denied=(req("get", "pods", "default", "p", user=BOB),)),
    Case("a role binding grants a Role in its namespace only",
         (role("r", rule(["get"], [""], ["pods"]), namespace="team"),
          binding("b", "Role/r", "User:alice", namespace="team")),
         allowed=(req("get", "pods", "team", "p"),),
         denied=(req("get", "pods", "default", "p"), req("list", "pods"))),
    Case("a role binding grants a ClusterRole's rules in its namespace only",
         (READ_PODS, binding("b", "ClusterRole/pod-reader", "User:alice", namespace="team")),
         allowed=(req("list", "pods", "team"),),
         denied=(req("list", "pods", "default"), req("list", "pods"))),
    Case("a Role of another namespace is not found through a binding",
         (role("r", rule(["get"], [""], ["pods"]), namespace="other"),
          binding("b", "Role/r", "User:alice", namespace="team")),
         denied=(req("get", "pods", "team", "p"),),
         reasons={0: 'RBAC: role.rbac.authorization.k8s.io "r" not found'}),
    Case("a binding to a missing ClusterRole grants nothing and says why",
         (binding("b", "ClusterRole/nope", "User:alice"),),
         denied=(req("get", "pods", "default", "p"),),
         reasons={0: 'RBAC: clusterrole.rbac.authorization.k8s.io "nope" not found'}),
    Case("wildcards: every verb, group and resource, subresources included",
         (role("all", rule(["*"], ["*"], ["*"])), binding("b", "ClusterRole/all", "User:alice")),
         allowed=(req("delete", "jobs", "x", "j", group="batch"), req("update", "pods", "x", "p", sub="status"),
                  req("impersonate", "users", name="bob")),
         denied=(req("get", path="/version"),)),
    Case("a resource rule matches its group only",
         (role("r", rule(["get"], [""], ["jobs"])), binding("b", "ClusterRole/r", "User:alice")),
         denied=(req("get", "jobs", "default", "j", group="batch"),)),
    Case("subresources: named exactly or as */sub; the resource alone grants none",
         (role("r", rule(["get"], [""], ["pods/log", "pods"]), rule(["update"], ["*"], ["*/status"])),
          binding("b", "ClusterRole/r", "User:alice")),
         allowed=(req("get", "pods", "d", "p", sub="log"), req("get", "pods", "d", "p"),
                  req("update", "jobs", "d", "j", group="batch", sub="status")),
         denied=(req("get", "pods", "d", "p", sub="exec"), req("update", "jobs", "d", "j", group="batch"),
                 req("update", "pods", "d", "p", sub="binding"))),
    Case("resourceNames: only the named objects, never a list or a create",
         (role("r", rule(["get", "create", "update"], [""], ["pods"], names=["a"])),
          binding("b", "ClusterRole/r", "User:alice")),
         allowed=(req("get", "pods", "d", "a"), req("update", "pods", "d", "a")),
         denied=(req("get", "pods", "d", "b"), req("list", "pods", "d"), req("create", "pods", "d", "a"))),
    Case("non-resource URLs: exact, prefix*, and never a resource",
         (role("r", rule(["get"], urls=["/version", "/healthz/*"])), binding("b", "ClusterRole/r", "User:alice")),
         allowed=(req("get", path="/version"), req("get", path="/healthz/ping")),
         denied=(req("get", path="/versions"), req("post", path="/version"), req("get", "version"))),
    Case("a service account subject is its user, its namespace the binding's when left out",
         (READ_PODS, binding("b", "ClusterRole/pod-reader", "ServiceAccount:builder", namespace="ci"),
          binding("c", "ClusterRole/pod-reader", "ServiceAccount:ci/builder", namespace="other")),
         allowed=(req("get", "pods", "ci", "p", user=SA), req("get", "pods", "other", "p", user=SA)),
         denied=(req("get", "pods", "default", "p", user=SA),)),
    Case("bindings add up: cluster rules everywhere, namespace rules where bound",
         (READ_PODS, role("w", rule(["delete"], [""], ["pods"]), namespace="team"),
          binding("b", "ClusterRole/pod-reader", "Group:system:authenticated"),
          binding("c", "Role/w", "User:bob", namespace="team")),
         allowed=(req("get", "pods", "team", "p", user=BOB), req("delete", "pods", "team", "p", user=BOB)),
         denied=(req("delete", "pods", "default", "p", user=BOB), req("delete", "pods", "team", "p"))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_rbac_evaluation(case: Case) -> None:
    store = await memory_store()
    try:
        await put(store, *case.objects)
        index = RBACIndex()
        index.load(store)
        authz = RBACAuthorizer(index)
        for attrs in case.allowed:
            assert authz.authorize(attrs).verdict == ALLOW, attrs
        for i, attrs in enumerate(case.denied):
            decision = authz.authorize(attrs)
            assert decision.verdict == NO_OPINION, attrs
            assert decision.reason == case.reasons.get(i, ""), attrs
    finally:
        await store.stop()


async def test_the_reason_names_the_binding_that_allowed() -> None:
    store = await memory_store()
    try:
        await put(store, READ_PODS, binding("devs", "ClusterRole/pod-reader", "Group:dev", namespace="team"))
        index = RBACIndex()
        index.load(store)
        decision = RBACAuthorizer(index).authorize(req("get", "pods", "team", "p"))
        assert decision.reason == 'RBAC: allowed by RoleBinding "devs/team" of ClusterRole "pod-reader" to Group "dev"'
    finally:
        await store.stop()


async def test_the_index_follows_the_store_and_the_cache_forgets_on_every_rbac_change() -> None:
    """Loaded before anything exists; grants appear, change and go with the store's commits, and
    cached decisions never outlive the change that made them wrong."""
    store = await memory_store()
    try:
        index = RBACIndex()
        index.load(store)
        cache = DecisionCache()
        index.listeners.append(cache.clear)
        authz = CachedAuthorizer(RBACAuthorizer(index), cache)
        get_pod = req("get", "pods", "default", "p")
        assert authz.authorize(get_pod).verdict == NO_OPINION

        await put(store, READ_PODS, binding("b", "ClusterRole/pod-reader", "User:alice"))
        assert authz.authorize(get_pod).verdict == ALLOW
        assert authz.authorize(get_pod).verdict == ALLOW
        assert cache.hits >= 1

        # The binding now names bob only: alice's cached allow must go.
        await put(store, binding("b", "ClusterRole/pod-reader", "User:bob"))
        assert authz.authorize(get_pod).verdict == NO_OPINION
        assert authz.authorize(req("get", "pods", "default", "p", user=BOB)).verdict == ALLOW

        # The role loses the verb.
        await put(store, role("pod-reader", rule(["list"], [""], ["pods"])))
        assert authz.authorize(req("get", "pods", "default", "p", user=BOB)).verdict == NO_OPINION

        await remove(store, "ClusterRoleBinding", "b")
        assert authz.authorize(req("list", "pods", "default", user=BOB)).verdict == NO_OPINION
        assert not index.by_subject[""]
    finally:
        await store.stop()
