"""Authorization: may this user do this (kube-apiserver's authorizer union: the first authorizer
that allows or denies decides; with no opinion from any, the request is Forbidden).

Entries, as kube-apiserver builds them: the privileged group system:masters first (always allowed,
so no RBAC change can lock the control plane's own clients or the admin out), then one per
--authorization-mode in the order given: AlwaysAllow, AlwaysDeny, Node, RBAC (rbac/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ketch.api import errors

from .request import Attributes

ALLOW, DENY, NO_OPINION = "allow", "deny", "no-opinion"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: str
    reason: str = ""


class Authorizer(Protocol):
    def authorize(self, attrs: Attributes) -> Decision: ...


class AlwaysAllow:
    def authorize(self, attrs: Attributes) -> Decision:
        return Decision(ALLOW)


class AlwaysDeny:
    def authorize(self, attrs: Attributes) -> Decision:
        return Decision(DENY, "Everything is forbidden.")


PRIVILEGED_GROUP = "system:masters"


class PrivilegedGroups:
    """Members of system:masters may do anything (kube-apiserver's superuser authorizer)."""

    def __init__(self, groups: tuple[str, ...] = (PRIVILEGED_GROUP,)) -> None:
        self.groups = groups

    def authorize(self, attrs: Attributes) -> Decision:
        for group in attrs.user.groups:
            if group in self.groups:
                return Decision(ALLOW)
        return Decision(NO_OPINION)


class Authorizers:
    def __init__(self, chain: Sequence[Authorizer]) -> None:
        self.chain = list(chain)

    def authorize(self, attrs: Attributes) -> Decision:
        """The first allow or deny; else no opinion, with every authorizer's reason, a line each."""
        reasons = []
        for authorizer in self.chain:
            decision = authorizer.authorize(attrs)
            if decision.verdict != NO_OPINION:
                return decision
            if decision.reason:
                reasons.append(decision.reason)
        return Decision(NO_OPINION, "\n".join(reasons))

    def check(self, attrs: Attributes) -> None:
        """Raise Forbidden, in Kubernetes' words, unless some authorizer allows the request."""
        decision = self.authorize(attrs)
        if decision.verdict != ALLOW:
            raise errors.Forbidden(forbidden_message(attrs, decision.reason))


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """`jobs.batch is forbidden: User "x" cannot create resource "jobs" in API group "batch" in
    the namespace "default"`: responsewriters.Forbidden's words (the resource, and the name when
    the request names an object, then why)."""
    user = attrs.user.name
    if not attrs.resource_request:
        text = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        text = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}"'
        text += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    text = f"{text}: {reason}" if reason else text
    return f"{forbidden_prefix(attrs)}{text}"


def forbidden_prefix(attrs: Attributes) -> str:
    """apierrors.NewForbidden's start: `jobs.batch "pi" is forbidden: ` (`forbidden: ` for a path)."""
    if not attrs.resource_request:
        return "forbidden: "
    what = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    # A create names no object in Kubernetes' URL (POST .../jobs), a subresource's does.
    named = attrs.name and (attrs.verb != "create" or attrs.subresource)
    return f'{what} "{attrs.name}" is forbidden: ' if named else f"{what} is forbidden: "


def default_authorizers() -> Authorizers:
    return Authorizers([AlwaysAllow()])
