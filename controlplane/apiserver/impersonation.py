"""Impersonation (apiserver's WithImpersonation filter): a request may say to act as another user
with the gRPC metadata `impersonate-user`, `impersonate-group` (repeatable) and `impersonate-uid`,
as kubectl's --as, --as-group and --as-uid send Kubernetes' Impersonate-* headers. Each is
authorized for the real user first, as the verb `impersonate` on users, groups or uids (or on
the service account, for system:serviceaccount:NS:NAME); then the request goes on as the
impersonated user, who is in system:authenticated (a service account also in its groups) unless
groups were given for it.

Group names are read from the metadata values joined by commas (how a repeated key reads), so a
group whose name has a comma cannot be impersonated.
"""

from __future__ import annotations

from ketch.api import errors

from .authn import Credentials
from .authz import ALLOW, Authorizers, forbidden_message
from .request import ANONYMOUS_USER, Attributes, UserInfo

USER, GROUP, UID = "impersonate-user", "impersonate-group", "impersonate-uid"
AUTHENTICATED, UNAUTHENTICATED = "system:authenticated", "system:unauthenticated"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def _check(authorizers: Authorizers, attrs: Attributes) -> None:
    decision = authorizers.authorize(attrs)
    if decision.verdict != ALLOW:
        raise errors.Forbidden(forbidden_message(attrs, decision.reason))


def impersonate(user: UserInfo, credentials: Credentials, authorizers: Authorizers) -> UserInfo:
    """The user the request acts as: user itself, or whom it may and asks to impersonate."""
    if credentials.loopback:
        return user
    md = credentials.metadata
    name, group_text, uid = md.get(USER, ""), md.get(GROUP, ""), md.get(UID, "")
    if not (name or group_text or uid):
        return user
    groups = [g for g in group_text.split(",") if g] if group_text else []
    if not name:
        raise errors.BadRequest("requested impersonation of groups or a uid without impersonating a user")
    if name.startswith(SERVICE_ACCOUNT_PREFIX) and name.count(":") == 3:
        namespace, sa = name[len(SERVICE_ACCOUNT_PREFIX):].split(":")
        _check(authorizers, Attributes(user, "impersonate", "", "serviceaccounts", "", namespace, sa))
        if not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    else:
        _check(authorizers, Attributes(user, "impersonate", "", "users", "", "", name))
    for group in groups:
        _check(authorizers, Attributes(user, "impersonate", "", "groups", "", "", group))
    if uid:
        _check(authorizers, Attributes(user, "impersonate", "authentication.k8s.io", "uids", "", "", uid))
    if name == ANONYMOUS_USER.name:
        if UNAUTHENTICATED not in groups:
            groups.append(UNAUTHENTICATED)
    elif AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return UserInfo(name, tuple(groups), uid)
