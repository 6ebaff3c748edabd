"""The bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy) and its reconciliation at
every start (kube-apiserver's rbac/bootstrap-roles post-start hook), through the API as the
loopback user.

ClusterRoles: cluster-admin; admin, edit and view, aggregated from the system:aggregate-to-*
roles by the labels rbac.authorization.k8s.io/aggregate-to-{admin,edit,view} (edit aggregates
into admin and view into edit, so a role labelled for view reaches all three); system:discovery
and system:public-info-viewer (the version and health paths), system:monitoring (the health paths
with their checks, and /metrics), system:basic-user (self access reviews and whoami).
ClusterRoleBindings: cluster-admin to the group system:masters, system:monitoring to the group
system:monitoring, the others to system:authenticated (public-info also to system:unauthenticated).
The control plane's own components need no roles: they are the loopback user, in system:masters.

Reconciling is Kubernetes' union: a missing object is created; an existing one gets back the
rules, aggregation selectors, subjects, labels and annotations of the default that it lacks,
keeping whatever was added; a binding whose roleRef differs is recreated. An object annotated
rbac.authorization.kubernetes.io/autoupdate: "false" is left exactly as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from ketch.api import errors
from ketch.client.clientset import Client
from ketch.v1 import meta_pb2, rbac_pb2

from .rules import compact, covers

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAPPING = "kubernetes.io/bootstrapping"
AGGREGATE_TO = f"{GROUP}/aggregate-to-"

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
READ_WRITE = READ + WRITE
CORE, APPS, BATCH, AUTOSCALING, EXTENSIONS, POLICY, NETWORKING, COORDINATION, DISCOVERY = (
    "", "apps", "batch", "autoscaling", "extensions", "policy", "networking.k8s.io", "coordination.k8s.io",
    "discovery.k8s.io")
AUTHORIZATION, AUTHENTICATION = "authorization.k8s.io", "authentication.k8s.io"


def rule(verbs: Sequence[str], groups: Sequence[str] = (), resources: Sequence[str] = (),
         urls: Sequence[str] = ()) -> rbac_pb2.PolicyRule:
    return rbac_pb2.PolicyRule(verbs=verbs, api_groups=groups, resources=resources, non_resource_urls=urls)


def _metadata(md: meta_pb2.ObjectMeta, name: str, labels: dict[str, str] | None = None) -> None:
    md.name = name
    md.labels[BOOTSTRAPPING] = "rbac-defaults"
    md.labels.update(labels or {})
    md.annotations[AUTOUPDATE] = "true"


def cluster_role(name: str, rules: Iterable[rbac_pb2.PolicyRule] = (), labels: dict[str, str] | None = None,
                 aggregate: str = "") -> rbac_pb2.ClusterRole:
    role = rbac_pb2.ClusterRole(api_version=f"{GROUP}/v1", kind="ClusterRole", rules=list(rules))
    _metadata(role.metadata, name, labels)
    if aggregate:
        role.aggregation_rule.cluster_role_selectors.add().match_labels[AGGREGATE_TO + aggregate] = "true"
    return role


def cluster_role_binding(name: str, role: str, *groups: str) -> rbac_pb2.ClusterRoleBinding:
    b = rbac_pb2.ClusterRoleBinding(api_version=f"{GROUP}/v1", kind="ClusterRoleBinding")
    _metadata(b.metadata, name)
    b.role_ref.api_group, b.role_ref.kind, b.role_ref.name = GROUP, "ClusterRole", role
    for g in groups:
        b.subjects.add(kind="Group", api_group=GROUP, name=g)
    return b


def _aggregate_to_view() -> list[rbac_pb2.PolicyRule]:
    return [
        rule(READ, [CORE], ["pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
                            "services", "services/status", "endpoints", "persistentvolumeclaims",
                            "persistentvolumeclaims/status", "configmaps"]),
        rule(READ, [CORE], ["limitranges", "resourcequotas", "bindings", "events", "pods/status",
                            "resourcequotas/status", "namespaces/status", "replicationcontrollers/status",
                            "pods/log"]),
        # Reading namespaces in a namespace means reading that namespace.
        rule(READ, [CORE], ["namespaces"]),
        rule(READ, [DISCOVERY], ["endpointslices"]),
        rule(READ, [APPS], ["controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale",
                            "daemonsets", "daemonsets/status", "deployments", "deployments/status",
                            "deployments/scale", "replicasets", "replicasets/status", "replicasets/scale"]),
        rule(READ, [AUTOSCALING], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
        rule(READ, [BATCH], ["jobs", "cronjobs", "cronjobs/status", "jobs/status"]),
        rule(READ, [EXTENSIONS], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                                  "deployments/status", "ingresses", "ingresses/status", "replicasets",
                                  "replicasets/scale", "replicasets/status", "replicationcontrollers/scale",
                                  "networkpolicies"]),
        rule(READ, [POLICY], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
        rule(READ, [NETWORKING], ["networkpolicies", "ingresses", "ingresses/status"]),
    ]


def _aggregate_to_edit() -> list[rbac_pb2.PolicyRule]:
    return [
        rule(READ, [CORE], ["pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets",
                            "services/proxy"]),
        rule(["impersonate"], [CORE], ["serviceaccounts"]),
        rule(WRITE, [CORE], ["pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"]),
        rule(["create"], [CORE], ["pods/eviction"]),
        rule(WRITE, [CORE], ["replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                             "services/proxy", "persistentvolumeclaims", "configmaps", "secrets", "events"]),
        rule(["create"], [CORE], ["serviceaccounts/token"]),
        rule(WRITE, [APPS], ["statefulsets", "statefulsets/scale", "daemonsets", "deployments", "deployments/scale",
                             "deployments/rollback", "replicasets", "replicasets/scale"]),
        rule(WRITE, [AUTOSCALING], ["horizontalpodautoscalers"]),
        rule(WRITE, [BATCH], ["jobs", "cronjobs"]),
        rule(WRITE, [EXTENSIONS], ["daemonsets", "deployments", "deployments/scale", "deployments/rollback",
                                   "ingresses", "replicasets", "replicasets/scale", "replicationcontrollers/scale",
                                   "networkpolicies"]),
        rule(WRITE, [POLICY], ["poddisruptionbudgets"]),
        rule(WRITE, [NETWORKING], ["networkpolicies", "ingresses"]),
        rule(READ_WRITE, [COORDINATION], ["leases"]),
    ]


DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
                  "/version", "/version/")
PUBLIC_INFO_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")
MONITORING_URLS = ("/healthz", "/healthz/*", "/livez", "/livez/*", "/readyz", "/readyz/*", "/metrics",
                   "/metrics/slis")
MONITORING = "system:monitoring"


def cluster_roles() -> list[rbac_pb2.ClusterRole]:
    agg = AGGREGATE_TO
    return [
        cluster_role("cluster-admin", [rule(["*"], ["*"], ["*"]), rule(["*"], urls=["*"])]),
        cluster_role("system:discovery", [rule(["get"], urls=DISCOVERY_URLS)]),
        cluster_role("system:public-info-viewer", [rule(["get"], urls=PUBLIC_INFO_URLS)]),
        cluster_role(MONITORING, [rule(["get"], urls=MONITORING_URLS)]),
        cluster_role("system:basic-user", [
            rule(["create"], [AUTHORIZATION], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            rule(["create"], [AUTHENTICATION], ["selfsubjectreviews"])]),
        cluster_role("admin", aggregate="admin"),
        cluster_role("edit", labels={agg + "admin": "true"}, aggregate="edit"),
        cluster_role("view", labels={agg + "edit": "true"}, aggregate="view"),
        cluster_role("system:aggregate-to-admin", [
            rule(["create"], [AUTHORIZATION], ["localsubjectaccessreviews"]),
            rule(READ_WRITE, [GROUP], ["rolebindings", "roles"])], labels={agg + "admin": "true"}),
        cluster_role("system:aggregate-to-edit", _aggregate_to_edit(), labels={agg + "edit": "true"}),
        cluster_role("system:aggregate-to-view", _aggregate_to_view(), labels={agg + "view": "true"}),
    ]


def cluster_role_bindings() -> list[rbac_pb2.ClusterRoleBinding]:
    return [
        cluster_role_binding("cluster-admin", "cluster-admin", "system:masters"),
        cluster_role_binding("system:discovery", "system:discovery", "system:authenticated"),
        cluster_role_binding("system:basic-user", "system:basic-user", "system:authenticated"),
        cluster_role_binding("system:public-info-viewer", "system:public-info-viewer", "system:authenticated",
                             "system:unauthenticated"),
        cluster_role_binding(MONITORING, MONITORING, MONITORING),
    ]


# -- reconciliation, pure ---------------------------------------------------------------------------


def _merge_metadata(result: Any, expected: Any) -> bool:
    """Labels and annotations the default has and the object lacks (the object's values win)."""
    changed = False
    for field in ("labels", "annotations"):
        have, want = getattr(result.metadata, field), getattr(expected.metadata, field)
        for k, v in want.items():
            if k not in have:
                have[k] = v
                changed = True
    return changed


def reconcile_role(existing: rbac_pb2.ClusterRole, expected: rbac_pb2.ClusterRole) -> rbac_pb2.ClusterRole | None:
    """computeReconciledRole (union): the updated role, or None when nothing is to change (or it is
    protected by autoupdate "false")."""
    if existing.metadata.annotations.get(AUTOUPDATE) == "false":
        return None
    result = rbac_pb2.ClusterRole()
    result.CopyFrom(existing)
    changed = _merge_metadata(result, expected)
    _, missing = covers(list(existing.rules), expected.rules)
    if missing:
        # Kubernetes appends the missing pieces broken down (one verb, group and resource each);
        # those differing only in verb are written as one rule here, which grants the same.
        result.rules.extend(compact(missing))
        changed = True
    if not expected.HasField("aggregation_rule") and existing.HasField("aggregation_rule"):
        result.ClearField("aggregation_rule")
        changed = True
    elif expected.HasField("aggregation_rule"):
        have = list(existing.aggregation_rule.cluster_role_selectors)
        for sel in expected.aggregation_rule.cluster_role_selectors:
            if sel not in have:
                result.aggregation_rule.cluster_role_selectors.append(sel)
                changed = True
    return result if changed else None


def reconcile_binding(existing: rbac_pb2.ClusterRoleBinding,
                      expected: rbac_pb2.ClusterRoleBinding) -> tuple[str, rbac_pb2.ClusterRoleBinding | None]:
    """computeReconciledRoleBinding (union): ("update", binding), ("recreate", default) when the
    roleRef differs, or ("", None)."""
    if existing.metadata.annotations.get(AUTOUPDATE) == "false":
        return "", None
    if existing.role_ref != expected.role_ref:
        return "recreate", expected
    result = rbac_pb2.ClusterRoleBinding()
    result.CopyFrom(existing)
    changed = _merge_metadata(result, expected)
    for s in expected.subjects:
        if s not in existing.subjects:
            result.subjects.append(s)
            changed = True
    return ("update", result) if changed else ("", None)


# -- reconciliation through the API ----------------------------------------------------------------


async def _reconcile_one(client: Client, expected: Any) -> str:
    kind, name = expected.kind, expected.metadata.name
    try:
        existing = await client.get(kind, name)
    except errors.NotFound:
        await client.create(expected)
        return "created"
    updated: Any
    if kind == "ClusterRole":
        updated = reconcile_role(existing, expected)
    else:
        how, updated = reconcile_binding(existing, expected)
        if how == "recreate":
            await client.delete(kind, name, uid=existing.metadata.uid)
            await client.create(expected)
            return "recreated"
    if updated is None:
        return ""
    await client.update(updated)
    return "updated"


async def reconcile_bootstrap_policy(client: Client, attempts: int = 5) -> dict[str, str]:
    """Create or reconcile every default ClusterRole and ClusterRoleBinding; returns what changed
    by "Kind/name". Another replica reconciling at once makes a Conflict: read again and retry."""
    done: dict[str, str] = {}
    defaults: list[Any] = [*cluster_roles(), *cluster_role_bindings()]
    for expected in defaults:
        for attempt in range(attempts):
            try:
                action = await _reconcile_one(client, expected)
                break
            except (errors.Conflict, errors.AlreadyExists, errors.NotFound):
                if attempt == attempts - 1:
                    raise
        if action:
            done[f"{expected.kind}/{expected.metadata.name}"] = action
    if done:
        log.info("bootstrap RBAC policy: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
    return done
