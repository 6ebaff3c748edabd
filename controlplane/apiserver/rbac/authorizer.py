"""The RBAC authorizer (plugin/pkg/auth/authorizer/rbac): a request is allowed when some rule
reaches its user, through a ClusterRoleBinding or a RoleBinding of the request's namespace, and
allows its verb, group, resource (or subresource) and name, or its path. Otherwise it has no
opinion (the next authorizer may still allow), with the missing roles it met as the reason.

It reads the in-memory index (index.py) only.
"""

from __future__ import annotations

from ..authz import ALLOW, NO_OPINION, Decision
from ..request import Attributes
from .index import Grant, RBACIndex, RoleNotFound
from .rules import allows


def describe(grant: Grant) -> str:
    """What allowed a request, as Kubernetes' reason says it."""
    b = grant.binding
    subject = b.obj.subjects[grant.subject]
    who = subject.name
    if subject.kind == "ServiceAccount":
        who = f"{subject.name}/{subject.namespace or b.namespace}"
    if b.kind == "ClusterRoleBinding":
        return f'ClusterRoleBinding "{b.name}" of {b.role_kind} "{b.role_name}" to {subject.kind} "{who}"'
    return f'RoleBinding "{b.name}/{b.namespace}" of {b.role_kind} "{b.role_name}" to {subject.kind} "{who}"'


def aggregate(errs: list[RoleNotFound]) -> str:
    """utilerrors.NewAggregate's text: one error alone, several in brackets."""
    texts = [str(e) for e in errs]
    return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"


class RBACAuthorizer:
    def __init__(self, index: RBACIndex) -> None:
        self.index = index

    def authorize(self, attrs: Attributes) -> Decision:
        errs: list[RoleNotFound] = []
        for grant in self.index.grants(attrs.user, attrs.namespace):
            if isinstance(grant, RoleNotFound):
                errs.append(grant)
            elif allows(grant.rule, attrs):
                return Decision(ALLOW, "RBAC: allowed by " + describe(grant))
        return Decision(NO_OPINION, "RBAC: " + aggregate(errs) if errs else "")
