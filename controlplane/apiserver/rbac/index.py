"""The RBAC objects in memory, for the authorizer: an informer-style cache of Roles, ClusterRoles,
RoleBindings and ClusterRoleBindings, listed from the store once and kept current from its
committed events, with the bindings indexed by subject so a user's rules are found without
scanning every binding (no store read, no decoding per request).

The store calls its listeners right after a commit, before any client hears of it, so a binding
is in force for every request its creator sends after the create returns. Listeners of this
index (the decision caches) are told after each change.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from controlplane.storage import Store
from controlplane.storage.store import WatchEvent
from ketch.api.kinds import kind_info
from ketch.v1 import rbac_pb2

from ..request import UserInfo
from .rules import Rule, compile_rules, subject_key, user_keys

log = logging.getLogger(__name__)

RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True, slots=True)
class Binding:
    """A binding as the authorizer needs it: its kind and name, the role it grants, and its
    subjects' keys in order (subject index -> key, None for a subject that matches no one)."""

    kind: str  # RoleBinding or ClusterRoleBinding
    namespace: str
    name: str
    role_kind: str
    role_name: str
    subjects: tuple[tuple[str, str] | None, ...]
    obj: rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding


@dataclass(frozen=True, slots=True)
class Grant:
    """One rule reached through one binding: what the authorizer visits."""

    binding: Binding
    subject: int  # which of the binding's subjects matched
    rule: Rule


class RoleNotFound(Exception):
    """A binding names a role that does not exist (Kubernetes' lister NotFound, in its words)."""


class RBACIndex:
    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self.cluster_roles: dict[str, tuple[Rule, ...]] = {}
        # namespace ("" for ClusterRoleBindings) -> name -> binding
        self.bindings: dict[str, dict[str, Binding]] = defaultdict(dict)
        # namespace -> subject key -> names of the bindings naming that subject
        self.by_subject: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
        self.listeners: list[Callable[[], None]] = []
        self.changes = 0  # how many RBAC writes the index has seen (tests and benchmarks read it)

    # -- feeding ---------------------------------------------------------------------------------

    def load(self, store: Store) -> None:
        """List every RBAC object from the store, then follow its commits."""
        for kind in RBAC_KINDS:
            for entry in store.list(kind):
                self._put(kind, entry.obj)
        store.add_listener(self.on_commit)

    def on_commit(self, events: list[WatchEvent]) -> None:
        changed = False
        for event in events:
            kind = event.entry.kind
            if kind not in RBAC_KINDS:
                continue
            obj = kind_info(kind).message.FromString(event.entry.data)
            if event.type == "DELETED":
                self._remove(kind, obj)
            else:
                self._put(kind, obj)
            changed = True
        if changed:
            self.changes += 1
            for listener in self.listeners:
                listener()

    def _put(self, kind: str, obj: object) -> None:
        if isinstance(obj, rbac_pb2.Role):
            self.roles[(obj.metadata.namespace, obj.metadata.name)] = compile_rules(obj.rules)
        elif isinstance(obj, rbac_pb2.ClusterRole):
            self.cluster_roles[obj.metadata.name] = compile_rules(obj.rules)
        elif isinstance(obj, rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding):
            self._remove(kind, obj)  # its earlier subjects leave the index
            ns = obj.metadata.namespace
            b = Binding(kind, ns, obj.metadata.name, obj.role_ref.kind, obj.role_ref.name,
                        tuple(subject_key(s, ns) for s in obj.subjects), obj)
            self.bindings[ns][b.name] = b
            for key in b.subjects:
                if key is not None:
                    self.by_subject[ns][key].add(b.name)

    def _remove(self, kind: str, obj: object) -> None:
        if isinstance(obj, rbac_pb2.Role):
            self.roles.pop((obj.metadata.namespace, obj.metadata.name), None)
        elif isinstance(obj, rbac_pb2.ClusterRole):
            self.cluster_roles.pop(obj.metadata.name, None)
        elif isinstance(obj, rbac_pb2.RoleBinding | rbac_pb2.ClusterRoleBinding):
            ns, name = obj.metadata.namespace, obj.metadata.name
            b = self.bindings[ns].pop(name, None)
            if b is None:
                return
            index = self.by_subject[ns]
            for key in b.subjects:
                if key is not None and key in index:
                    index[key].discard(name)
                    if not index[key]:
                        del index[key]

    # -- reading ---------------------------------------------------------------------------------

    def role_rules(self, kind: str, name: str, namespace: str) -> tuple[Rule, ...]:
        """GetRoleReferenceRules: the rules a roleRef grants in a binding's namespace."""
        if kind == "Role":
            rules = self.roles.get((namespace, name))
            if rules is None:
                raise RoleNotFound(f'role.{GROUP} "{name}" not found')
            return rules
        if kind == "ClusterRole":
            rules = self.cluster_roles.get(name)
            if rules is None:
                raise RoleNotFound(f'clusterrole.{GROUP} "{name}" not found')
            return rules
        raise RoleNotFound(f'unsupported role reference kind: "{kind}"')

    def _bindings_of(self, user: UserInfo, namespace: str) -> list[tuple[Binding, int]]:
        """The bindings in namespace ("" for cluster bindings) naming the user, with the index of
        the first subject that does, in name order."""
        index = self.by_subject.get(namespace)
        if not index:
            return []
        names: set[str] = set()
        for key in user_keys(user):
            found = index.get(key)
            if found:
                names |= found
        if not names:
            return []
        keys = set(user_keys(user))
        out = []
        for name in sorted(names):
            b = self.bindings[namespace][name]
            first = next(i for i, k in enumerate(b.subjects) if k in keys)
            out.append((b, first))
        return out

    def grants(self, user: UserInfo, namespace: str) -> Iterator[Grant | RoleNotFound]:
        """VisitRulesFor: the rules of the cluster bindings naming the user, then those of the
        bindings in the namespace; a binding whose role is missing yields the error instead."""
        scopes = ("", namespace) if namespace else ("",)
        for scope in scopes:
            for binding, subject in self._bindings_of(user, scope):
                try:
                    rules = self.role_rules(binding.role_kind, binding.role_name, scope)
                except RoleNotFound as err:
                    yield err
                    continue
                for rule in rules:
                    yield Grant(binding, subject, rule)

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[RoleNotFound]]:
        """RulesFor: every rule the user holds in namespace, and the errors met finding them."""
        rules: list[Rule] = []
        errs: list[RoleNotFound] = []
        for grant in self.grants(user, namespace):
            if isinstance(grant, RoleNotFound):
                errs.append(grant)
            else:
                rules.append(grant.rule)
        return rules, errs
