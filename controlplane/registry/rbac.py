"""Strategies of rbac.authorization.k8s.io/v1 (pkg/registry/rbac/*): Role, ClusterRole, RoleBinding,
ClusterRoleBinding. No status, no generation; a binding's roleRef never changes.

Escalation prevention (a user may only grant what it holds) is not here: it needs the authorizer,
so it is an admission step of the API server (controlplane/apiserver/rbac/escalation.py).
"""

from __future__ import annotations

from typing import Any

from ketch.api.defaults import rbac as rbac_defaults
from ketch.api.errors import FieldError
from ketch.api.validation import rbac
from ketch.v1 import rbac_pb2

from .strategy import Strategy


class _RBACStrategy(Strategy):
    def name_rule(self, name: str, prefix: bool) -> tuple[str, ...]:
        return rbac.rbac_name(name, prefix)


class RoleStrategy(_RBACStrategy):
    kind = "Role"

    def validate(self, obj: rbac_pb2.Role) -> list[FieldError]:
        return rbac.validate_role(obj)


class ClusterRoleStrategy(_RBACStrategy):
    kind = "ClusterRole"

    def validate(self, obj: rbac_pb2.ClusterRole) -> list[FieldError]:
        return rbac.validate_cluster_role(obj)


class _BindingStrategy(_RBACStrategy):
    def default(self, obj: Any) -> None:
        rbac_defaults.binding(obj)

    def validate_update(self, new: Any, old: Any) -> list[FieldError]:
        return super().validate_update(new, old) + rbac.validate_binding_update(new, old)


class RoleBindingStrategy(_BindingStrategy):
    kind = "RoleBinding"

    def validate(self, obj: rbac_pb2.RoleBinding) -> list[FieldError]:
        return rbac.validate_role_binding(obj)


class ClusterRoleBindingStrategy(_BindingStrategy):
    kind = "ClusterRoleBinding"

    def validate(self, obj: rbac_pb2.ClusterRoleBinding) -> list[FieldError]:
        return rbac.validate_cluster_role_binding(obj)
