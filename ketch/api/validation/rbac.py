"""rbac.authorization.k8s.io/v1 validation (pkg/apis/rbac/validation/validation.go): names are
path segments, rules name verbs and (groups and resources) or non-resource URLs, an aggregated
ClusterRole selects at least one label set, a binding's roleRef names a Role or ClusterRole of
this group and never changes, subjects are Users, Groups or ServiceAccounts."""

from __future__ import annotations

from ketch.api.errors import FieldError, invalid, not_supported, required
from ketch.v1 import rbac_pb2

from . import field, meta
from .field import Errors, Shown

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ["ServiceAccount", "User", "Group"]


def rbac_name(name: str, prefix: bool) -> tuple[str, ...]:
    """ValidateRBACName: any path segment (so `system:masters` is a name): not `.` or `..`, no
    `/` or `%`."""
    if name in (".", ".."):
        return (f"may not be '{name}'",)
    return tuple(f"may not contain '{c}'" for c in ("/", "%") if c in name)


def policy_rule(errs: Errors, rule: rbac_pb2.PolicyRule, namespaced: bool, path: str) -> None:
    if not rule.verbs:
        errs.append(required(path + ".verbs", "verbs must contain at least one value"))
    if rule.non_resource_urls:
        shown = field.go_list(rule.non_resource_urls)
        if namespaced:
            errs.append(invalid(path + ".nonResourceURLs", shown,
                                "namespaced rules cannot apply to non-resource URLs"))
        if rule.api_groups or rule.resources or rule.resource_names:
            errs.append(invalid(path + ".nonResourceURLs", shown,
                                "rules cannot apply to both regular resources and non-resource URLs"))
        return
    if not rule.api_groups:
        errs.append(required(path + ".apiGroups", "resource rules must supply at least one api group"))
    if not rule.resources:
        errs.append(required(path + ".resources", "resource rules must supply at least one resource"))


def validate_role(obj: rbac_pb2.Role) -> list[FieldError]:
    errs: list[FieldError] = []
    meta.object_meta(errs, obj.metadata, True, rbac_name)
    for i, rule in enumerate(obj.rules):
        policy_rule(errs, rule, True, field.idx("rules", i))
    return errs


def validate_cluster_role(obj: rbac_pb2.ClusterRole) -> list[FieldError]:
    errs: list[FieldError] = []
    meta.object_meta(errs, obj.metadata, False, rbac_name)
    for i, rule in enumerate(obj.rules):
        policy_rule(errs, rule, False, field.idx("rules", i))
    if obj.HasField("aggregation_rule"):
        selectors = obj.aggregation_rule.cluster_role_selectors
        if not selectors:
            errs.append(required("aggregationRule.clusterRoleSelectors",
                                 "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, sel in enumerate(selectors):
            field.label_selector(errs, sel, field.idx("aggregationRule.clusterRoleSelectors", i))
    return errs


def subject(errs: Errors, s: rbac_pb2.Subject, namespaced: bool, path: str) -> None:
    if not s.name:
        errs.append(required(path + ".name"))
    if s.kind == "ServiceAccount":
        if s.name:
            errs.extend(invalid(path + ".name", s.name, m) for m in field.dns1123_subdomain(s.name))
        if s.api_group:
            errs.append(not_supported(path + ".apiGroup", s.api_group, [""]))
        if not namespaced and not s.namespace:
            errs.append(required(path + ".namespace"))
    elif s.kind in ("User", "Group"):
        if s.api_group != GROUP:
            errs.append(not_supported(path + ".apiGroup", s.api_group, [GROUP]))
    else:
        errs.append(not_supported(path + ".kind", s.kind, SUBJECT_KINDS))


def _binding(errs: Errors, obj: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding, namespaced: bool) -> None:
    meta.object_meta(errs, obj.metadata, namespaced, rbac_name)
    ref = obj.role_ref
    if ref.api_group != GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.api_group, [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.kind not in kinds:
        errs.append(not_supported("roleRef.kind", ref.kind, kinds))
    if not ref.name:
        errs.append(required("roleRef.name"))
    else:
        errs.extend(invalid("roleRef.name", ref.name, m) for m in rbac_name(ref.name, False))
    for i, s in enumerate(obj.subjects):
        subject(errs, s, namespaced, field.idx("subjects", i))


def validate_role_binding(obj: rbac_pb2.RoleBinding) -> list[FieldError]:
    errs: list[FieldError] = []
    _binding(errs, obj, True)
    return errs


def validate_cluster_role_binding(obj: rbac_pb2.ClusterRoleBinding) -> list[FieldError]:
    errs: list[FieldError] = []
    _binding(errs, obj, False)
    return errs


def role_ref_shown(ref: rbac_pb2.RoleRef) -> Shown:
    return Shown(f'rbac.RoleRef{{APIGroup:"{ref.api_group}", Kind:"{ref.kind}", Name:"{ref.name}"}}')


def validate_binding_update(new: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding,
                            old: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding) -> list[FieldError]:
    """ValidateRoleBindingUpdate's own rule (the create rules and ObjectMeta's run besides)."""
    if new.role_ref != old.role_ref:
        return [invalid("roleRef", role_ref_shown(new.role_ref), "cannot change roleRef")]
    return []
