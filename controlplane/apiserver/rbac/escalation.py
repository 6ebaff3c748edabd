"""Escalation prevention (pkg/registry/rbac/*/policybased): a user may create or update a Role or
ClusterRole only with rules it already holds, and a binding only to a role whose rules it already
holds, unless it is in system:masters, or may `escalate` that role (for roles) or `bind` the role
the binding names (for bindings). A write that changes only what the garbage collector needs
(ownerReferences, finalizers) is not checked.

Kubernetes does this in the RBAC kinds' storage; here it is a validating admission step, since it
needs the authorizers and the rules the user holds (RBAC's own rules only, as Kubernetes' rule
resolver). A refusal is Forbidden: `clusterroles.rbac.authorization.k8s.io "x" is forbidden: user
"bob" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently
held:` and the missing rules, one a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ketch.api import errors
from ketch.v1 import rbac_pb2

from ..admission import CREATE, UPDATE, AdmissionRequest
from ..authz import ALLOW, PRIVILEGED_GROUP, Authorizer
from ..request import Attributes
from .index import GROUP, RBACIndex, RoleNotFound
from .rules import compact, compact_string, covers

ROLE_KINDS = {"roles": "Role", "clusterroles": "ClusterRole"}
BINDING_KINDS = {"rolebindings": "RoleBinding", "clusterrolebindings": "ClusterRoleBinding"}


def _go_strings(values: Sequence[str]) -> str:
    return "[" + " ".join(f'"{v}"' for v in values) + "]"


def only_gc_fields_changed(new: Any, old: Any) -> bool:
    """IsOnlyMutatingGCFields: the same object but for ownerReferences and finalizers."""
    a, b = type(new)(), type(old)()
    a.CopyFrom(new)
    b.CopyFrom(old)
    for obj in (a, b):
        del obj.metadata.owner_references[:]
        del obj.metadata.finalizers[:]
        obj.metadata.resource_version = ""
    return bool(a == b)


class RBACEscalationCheck:
    def __init__(self, index: RBACIndex, authorizer: Authorizer) -> None:
        self.index = index
        self.authorizer = authorizer

    def validate(self, request: AdmissionRequest) -> None:
        attrs = request.attrs
        if attrs.api_group != GROUP or request.operation not in (CREATE, UPDATE) or attrs.subresource:
            return
        if attrs.resource not in ROLE_KINDS and attrs.resource not in BINDING_KINDS:
            return
        if PRIVILEGED_GROUP in attrs.user.groups:
            return
        if request.operation == UPDATE and only_gc_fields_changed(request.obj, request.old):
            return
        if attrs.resource in ROLE_KINDS:
            self._role(attrs, request.obj)
        else:
            self._binding(attrs, request.obj)

    def _allowed(self, attrs: Attributes, verb: str, resource: str, name: str) -> bool:
        check = Attributes(attrs.user, verb, GROUP, resource, "", attrs.namespace, name)
        return self.authorizer.authorize(check).verdict == ALLOW

    def _role(self, attrs: Attributes, role: rbac_pb2.Role | rbac_pb2.ClusterRole) -> None:
        if self._allowed(attrs, "escalate", attrs.resource, attrs.name):
            return
        self._confirm_no_escalation(attrs, role.rules)

    def _binding(self, attrs: Attributes, binding: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding) -> None:
        ref = binding.role_ref
        plural = "clusterroles" if ref.kind == "ClusterRole" else "roles"
        if ref.kind in ("Role", "ClusterRole") and self._allowed(attrs, "bind", plural, ref.name):
            return
        try:
            rules = self.index.role_rules(ref.kind, ref.name, attrs.namespace)
        except RoleNotFound:
            raise errors.NotFound(f'{plural}.{GROUP} "{ref.name}" not found') from None
        self._confirm_no_escalation(attrs, [r.source for r in rules])

    def _confirm_no_escalation(self, attrs: Attributes, wanted: Sequence[rbac_pb2.PolicyRule]) -> None:
        held, errs = self.index.rules_for(attrs.user, attrs.namespace)
        ok, missing = covers([r.source for r in held], wanted)
        if ok:
            return
        user = attrs.user
        lines = sorted({compact_string(r) for r in compact(missing)})
        msg = (f'user "{user.name}" (groups={_go_strings(user.groups)}) is attempting to grant RBAC permissions '
               "not currently held:\n" + "\n".join(lines))
        if errs:
            msg += "; resolution errors: [" + " ".join(str(e) for e in errs) + "]"
        raise errors.Forbidden(f'{attrs.resource}.{GROUP} "{attrs.name}" is forbidden: {msg}')
