"""Reconciling the bootstrap policy, pure: Kubernetes' union (missing rules, subjects, labels and
annotations come back, additions stay), nothing when annotated autoupdate "false", a binding with
another roleRef recreated."""

from __future__ import annotations

from controlplane.apiserver.rbac import bootstrap
from ketch.api import manifest

from .objects import rule


def default_role(name: str):
    return next(r for r in bootstrap.cluster_roles() if r.metadata.name == name)


def default_binding(name: str):
    return next(b for b in bootstrap.cluster_role_bindings() if b.metadata.name == name)


def test_a_role_missing_a_default_rule_gets_it_back_and_keeps_its_own() -> None:
    existing = default_role("system:basic-user")
    del existing.rules[0]
    existing.rules.add().CopyFrom(manifest.from_dict(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"},
         "rules": [rule(["get"], [""], ["pods"])]}).rules[0])
    del existing.metadata.labels[bootstrap.BOOTSTRAPPING]
    existing.metadata.labels["mine"] = "yes"
    updated = bootstrap.reconcile_role(existing, default_role("system:basic-user"))
    assert updated is not None
    assert [(list(r.resources), list(r.verbs)) for r in updated.rules] == [
        (["selfsubjectreviews"], ["create"]), (["pods"], ["get"]), (["selfsubjectaccessreviews"], ["create"]),
        (["selfsubjectrulesreviews"], ["create"])]
    assert dict(updated.metadata.labels) == {"mine": "yes", bootstrap.BOOTSTRAPPING: "rbac-defaults"}


def test_an_up_to_date_role_is_not_written_and_a_protected_one_never() -> None:
    assert bootstrap.reconcile_role(default_role("view"), default_role("view")) is None
    protected = default_role("cluster-admin")
    del protected.rules[:]
    protected.metadata.annotations[bootstrap.AUTOUPDATE] = "false"
    assert bootstrap.reconcile_role(protected, default_role("cluster-admin")) is None


def test_bindings_get_missing_subjects_and_are_recreated_for_another_role() -> None:
    existing = default_binding("system:public-info-viewer")
    del existing.subjects[1]
    existing.subjects.add(kind="User", api_group=bootstrap.GROUP, name="carol")
    how, updated = bootstrap.reconcile_binding(existing, default_binding("system:public-info-viewer"))
    assert how == "update" and updated is not None
    assert [s.name for s in updated.subjects] == ["system:authenticated", "carol", "system:unauthenticated"]
    other = default_binding("cluster-admin")
    other.role_ref.name = "view"
    assert bootstrap.reconcile_binding(other, default_binding("cluster-admin"))[0] == "recreate"
