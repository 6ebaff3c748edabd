"""rbac.authorization.k8s.io/v1 defaults (pkg/apis/rbac/v1/defaults.go): a roleRef's and a User or
Group subject's apiGroup is rbac.authorization.k8s.io when left out."""

from __future__ import annotations

from collections.abc import Iterable

from ketch.v1 import rbac_pb2

GROUP = "rbac.authorization.k8s.io"


def subjects(items: Iterable[rbac_pb2.Subject]) -> None:
    for s in items:
        if not s.api_group and s.kind in ("User", "Group"):
            s.api_group = GROUP


def binding(obj: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding) -> None:
    if not obj.role_ref.api_group:
        obj.role_ref.api_group = GROUP
    subjects(obj.subjects)
