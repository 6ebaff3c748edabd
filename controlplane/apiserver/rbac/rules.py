"""RBAC's rules, pure: whether a rule allows a request (plugin/pkg/auth/authorizer/rbac's
RuleAllows), whether a binding's subject is a user, and whether one set of rules covers another
(pkg/registry/rbac/validation's Covers, for escalation prevention).

Rules are compiled once per role version into frozensets, so evaluating one is a few set lookups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ketch.v1 import rbac_pb2

from ..request import Attributes, UserInfo

ALL = "*"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True, slots=True)
class Rule:
    """A PolicyRule as sets, for matching; `source` is the rule itself."""

    verbs: frozenset[str]
    groups: frozenset[str]
    resources: frozenset[str]
    names: frozenset[str]
    urls: tuple[str, ...]
    source: rbac_pb2.PolicyRule

    @classmethod
    def of(cls, rule: rbac_pb2.PolicyRule) -> Rule:
        return cls(frozenset(rule.verbs), frozenset(rule.api_groups), frozenset(rule.resources),
                   frozenset(rule.resource_names), tuple(rule.non_resource_urls), rule)


def compile_rules(rules: Iterable[rbac_pb2.PolicyRule]) -> tuple[Rule, ...]:
    return tuple(Rule.of(r) for r in rules)


def _resource_matches(rule: Rule, resource: str, subresource: str) -> bool:
    resources = rule.resources
    if ALL in resources:
        return True
    combined = f"{resource}/{subresource}" if subresource else resource
    if combined in resources:
        return True
    # "*/status" matches the status subresource of every resource.
    return bool(subresource) and f"*/{subresource}" in resources


def _url_matches(rule: Rule, path: str) -> bool:
    for url in rule.urls:
        if url in (ALL, path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def allows(rule: Rule, attrs: Attributes) -> bool:
    """RuleAllows: the verb, and the group, resource (or subresource) and name, or the path."""
    if ALL not in rule.verbs and attrs.verb not in rule.verbs:
        return False
    if not attrs.resource_request:
        return _url_matches(rule, attrs.path)
    if ALL not in rule.groups and attrs.api_group not in rule.groups:
        return False
    if not _resource_matches(rule, attrs.resource, attrs.subresource):
        return False
    if not rule.names:
        return True
    # Kubernetes authorizes a create before the object's name is known (POST .../pods), so rules
    # naming objects never allow one; Ketch's attributes know it, and ignore it here alike.
    return attrs.name in rule.names and (attrs.verb != "create" or bool(attrs.subresource))


def service_account_user(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def subject_key(subject: rbac_pb2.Subject, binding_namespace: str) -> tuple[str, str] | None:
    """What a subject matches, as ("User", name) or ("Group", name): a ServiceAccount is the user
    system:serviceaccount:NS:NAME, its namespace defaulting to the binding's; None when it can
    match no one."""
    if subject.kind == "User":
        return ("User", subject.name)
    if subject.kind == "Group":
        return ("Group", subject.name)
    if subject.kind == "ServiceAccount":
        namespace = subject.namespace or binding_namespace
        return ("User", service_account_user(namespace, subject.name)) if namespace else None
    return None


def user_keys(user: UserInfo) -> list[tuple[str, str]]:
    """The subject keys a user answers to: its name and each of its groups."""
    return [("User", user.name), *(("Group", g) for g in user.groups)]


# -- covering (escalation prevention) -------------------------------------------------------------


def breakdown(rule: rbac_pb2.PolicyRule) -> list[rbac_pb2.PolicyRule]:
    """BreakdownRule: one rule per (group, resource, verb[, name]) and per (URL, verb)."""
    out: list[rbac_pb2.PolicyRule] = []
    for group in rule.api_groups:
        for resource in rule.resources:
            for verb in rule.verbs:
                if rule.resource_names:
                    out.extend(rbac_pb2.PolicyRule(api_groups=[group], resources=[resource], verbs=[verb],
                                                   resource_names=[name]) for name in rule.resource_names)
                else:
                    out.append(rbac_pb2.PolicyRule(api_groups=[group], resources=[resource], verbs=[verb]))
    for url in rule.non_resource_urls:
        out.extend(rbac_pb2.PolicyRule(non_resource_urls=[url], verbs=[verb]) for verb in rule.verbs)
    return out


def _resources_cover(owner: Sequence[str], wanted: Sequence[str]) -> bool:
    if ALL in owner or set(wanted) <= set(owner):
        return True
    for path in wanted:
        if path in owner:
            continue
        if "/" not in path:
            return False
        if "*/" + path.split("/", 1)[1] not in owner:
            return False
    return True


def _url_covers(owner: str, sub: str) -> bool:
    return owner == sub or (owner.endswith("*") and sub.startswith(owner.rstrip("*")))


def rule_covers(owner: rbac_pb2.PolicyRule, sub: rbac_pb2.PolicyRule) -> bool:
    """ruleCovers: owner allows everything the (broken-down) sub rule allows."""
    verbs = ALL in owner.verbs or set(sub.verbs) <= set(owner.verbs)
    groups = ALL in owner.api_groups or set(sub.api_groups) <= set(owner.api_groups)
    resources = _resources_cover(owner.resources, sub.resources)
    urls = all(any(_url_covers(o, s) for o in owner.non_resource_urls) for s in sub.non_resource_urls)
    if not sub.resource_names:
        names = not owner.resource_names
    else:
        names = not owner.resource_names or set(sub.resource_names) <= set(owner.resource_names)
    return verbs and groups and resources and names and urls


def covers(owner: Sequence[rbac_pb2.PolicyRule],
           wanted: Iterable[rbac_pb2.PolicyRule]) -> tuple[bool, list[rbac_pb2.PolicyRule]]:
    """Covers: whether the owner's rules allow all the wanted ones, and the pieces they do not."""
    missing = [sub for rule in wanted for sub in breakdown(rule) if not any(rule_covers(o, sub) for o in owner)]
    return not missing, missing


def compact(rules: Sequence[rbac_pb2.PolicyRule]) -> list[rbac_pb2.PolicyRule]:
    """CompactRules: broken-down rules that differ only in their verb, as one rule."""
    out: list[rbac_pb2.PolicyRule] = []
    merged: dict[tuple[tuple[str, ...], ...], rbac_pb2.PolicyRule] = {}
    for rule in rules:
        key = (tuple(rule.api_groups), tuple(rule.resources), tuple(rule.resource_names),
               tuple(rule.non_resource_urls))
        if key in merged:
            merged[key].verbs.extend(v for v in rule.verbs if v not in merged[key].verbs)
            continue
        copy = rbac_pb2.PolicyRule()
        copy.CopyFrom(rule)
        merged[key] = copy
        out.append(copy)
    return out


def _go_quoted(values: Sequence[str]) -> str:
    return "[" + " ".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "]"


def compact_string(rule: rbac_pb2.PolicyRule) -> str:
    """CompactString: `{APIGroups:["batch"], Resources:["jobs"], Verbs:["create"]}`."""
    parts = []
    for label, values in (("APIGroups", rule.api_groups), ("Resources", rule.resources),
                          ("NonResourceURLs", rule.non_resource_urls), ("ResourceNames", rule.resource_names),
                          ("Verbs", rule.verbs)):
        if values:
            parts.append(f"{label}:{_go_quoted(values)}")
    return "{" + ", ".join(parts) + "}"
