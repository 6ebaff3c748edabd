"""Authorization: may this user do this (kube-apiserver's authorizer union; the first authorizer
with an opinion decides). Today's entry allows everything (--authorization-mode AlwaysAllow); the
RBAC and Node authorizers come as entries."""

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


class Authorizers:
    def __init__(self, chain: Sequence[Authorizer]) -> None:
        self.chain = list(chain)

    def check(self, attrs: Attributes) -> None:
        """Raise Forbidden, in Kubernetes' words, unless some authorizer allows the request."""
        reason = ""
        for authorizer in self.chain:
            decision = authorizer.authorize(attrs)
            if decision.verdict == ALLOW:
                return
            reason = decision.reason or reason
            if decision.verdict == DENY:
                break
        raise errors.Forbidden(forbidden_message(attrs, reason))


def forbidden_message(attrs: Attributes, reason: str = "") -> str:
    """`User "x" cannot create resource "jobs" in API group "batch" in the namespace "default"`."""
    user = attrs.user.name
    if not attrs.resource_request:
        text = f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        text = f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}"'
        text += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    return f"{text}: {reason}" if reason else text


def default_authorizers() -> Authorizers:
    return Authorizers([AlwaysAllow()])
