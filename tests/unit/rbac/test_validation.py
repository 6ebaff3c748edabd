"""The RBAC kinds as Kubernetes validates and defaults them (pkg/apis/rbac/validation): a manifest
as the server sees it, the errors it gets, word for word."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from ketch.api import manifest
from tests.unit.api.objects import apply_defaults, merge, server_view, validate_create, validate_update

G = "rbac.authorization.k8s.io"
ROLE = {"apiVersion": f"{G}/v1", "kind": "Role", "metadata": {"name": "reader", "namespace": "default"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
CLUSTER_ROLE = {"apiVersion": f"{G}/v1", "kind": "ClusterRole", "metadata": {"name": "system:reader"},
                "rules": [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]}
BINDING = {"apiVersion": f"{G}/v1", "kind": "RoleBinding", "metadata": {"name": "read", "namespace": "default"},
           "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "dev"},
                        {"kind": "ServiceAccount", "name": "builder", "namespace": "ci"}],
           "roleRef": {"kind": "Role", "name": "reader"}}
CLUSTER_BINDING = {"apiVersion": f"{G}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "read"},
                   "subjects": [{"kind": "Group", "name": "system:authenticated"}],
                   "roleRef": {"kind": "ClusterRole", "name": "view"}}


@dataclass(frozen=True)
class Case:
    name: str
    doc: dict[str, Any]
    changes: dict[str, Any]
    errors: tuple[str, ...] = ()


CASES = [
    Case("a role is valid", ROLE, {}),
    Case("names are path segments, so colons are fine", CLUSTER_ROLE, {}),
    Case("a name may not contain a slash or percent", ROLE, {"metadata": {"name": "a/b%"}},
         ("metadata.name: Invalid value: \"a/b%\": may not contain '/'",
          "metadata.name: Invalid value: \"a/b%\": may not contain '%'")),
    Case("a name may not be ..", ROLE, {"metadata": {"name": ".."}},
         ("metadata.name: Invalid value: \"..\": may not be '..'",)),
    Case("a rule needs verbs", ROLE, {"rules": [{"apiGroups": [""], "resources": ["pods"]}]},
         ("rules[0].verbs: Required value: verbs must contain at least one value",)),
    Case("a resource rule needs groups and resources", ROLE, {"rules": [{"verbs": ["get"]}]},
         ("rules[0].apiGroups: Required value: resource rules must supply at least one api group",
          "rules[0].resources: Required value: resource rules must supply at least one resource")),
    Case("a role may not name non-resource URLs", ROLE, {"rules": [{"nonResourceURLs": ["/version"],
                                                                    "verbs": ["get"]}]},
         ('rules[0].nonResourceURLs: Invalid value: []{"/version"}: namespaced rules cannot apply to non-resource '
          "URLs",)),
    Case("a rule is either resources or non-resource URLs", CLUSTER_ROLE,
         {"rules": [{"nonResourceURLs": ["/version"], "resources": ["pods"], "verbs": ["get"]}]},
         ('rules[0].nonResourceURLs: Invalid value: []{"/version"}: rules cannot apply to both regular resources '
          "and non-resource URLs",)),
    Case("an aggregated cluster role selects something", CLUSTER_ROLE, {"aggregationRule": {}},
         ("aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if "
          "aggregationRule is non-nil",)),
    Case("an aggregated cluster role's selector is a label selector", CLUSTER_ROLE,
         {"aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "k", "operator": "Has"}]}]}},
         ('aggregationRule.clusterRoleSelectors[0].matchExpressions[0].operator: Invalid value: "Has": not a valid '
          "selector operator",)),
    Case("a binding is valid, its groups defaulted", BINDING, {}),
    Case("a binding's role is a Role or a ClusterRole", BINDING, {"roleRef": {"kind": "User"}},
         ('roleRef.kind: Unsupported value: "User": supported values: "Role", "ClusterRole"',)),
    Case("a binding's role is of the RBAC group", BINDING, {"roleRef": {"apiGroup": "batch"}},
         ('roleRef.apiGroup: Unsupported value: "batch": supported values: "rbac.authorization.k8s.io"',)),
    Case("a binding names its role", BINDING, {"roleRef": {"name": ""}}, ("roleRef.name: Required value",)),
    Case("a cluster binding grants only a ClusterRole", CLUSTER_BINDING, {"roleRef": {"kind": "Role"}},
         ('roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',)),
    Case("subjects have a known kind and a name", BINDING, {"subjects": [{"kind": "Robot", "name": ""}]},
         ("subjects[0].name: Required value",
          'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"')),
    Case("a user subject is of the RBAC group", BINDING, {"subjects": [{"kind": "User", "name": "a",
                                                                       "apiGroup": "v1"}]},
         ('subjects[0].apiGroup: Unsupported value: "v1": supported values: "rbac.authorization.k8s.io"',)),
    Case("a service account of a cluster binding names its namespace", CLUSTER_BINDING,
         {"subjects": [{"kind": "ServiceAccount", "name": "builder"}]}, ("subjects[0].namespace: Required value",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_create(case: Case) -> None:
    errs = validate_create(server_view(case.doc, case.changes))
    assert [str(e) for e in errs] == list(case.errors)


def test_subject_and_role_ref_groups_default_as_kubernetes_defaults_them() -> None:
    binding = manifest.from_dict(BINDING)
    apply_defaults(binding)
    doc = manifest.to_dict(binding)
    assert doc["roleRef"]["apiGroup"] == G
    assert [s.get("apiGroup", "") for s in doc["subjects"]] == [G, G, ""]


def test_role_ref_is_immutable() -> None:
    old = server_view(BINDING, {})
    new = server_view(BINDING, {"roleRef": {"kind": "ClusterRole", "name": "admin"}})
    new.metadata.resource_version = old.metadata.resource_version = "1"
    assert [str(e) for e in validate_update(new, old)] == [
        'roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", '
        'Name:"admin"}: cannot change roleRef']
    same = server_view(merge(BINDING, {"subjects": []}), {})
    same.metadata.resource_version = "1"
    assert validate_update(same, old) == []


def test_manifest_round_trip_keeps_kubernetes_field_names() -> None:
    doc = merge(CLUSTER_ROLE, {"aggregationRule": {"clusterRoleSelectors": [
        {"matchLabels": {f"{G}/aggregate-to-view": "true"}}]}})
    assert manifest.to_dict(manifest.from_dict(doc)) == doc
