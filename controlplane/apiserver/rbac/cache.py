"""Authorization decisions, remembered: a request's attributes (user, groups, verb, API group,
resource, subresource, namespace, name, path) decide it entirely, given the RBAC objects (and,
for the Node authorizer, which pods are bound where), so a decision is kept until one of those
changes. The owner drops everything on an RBAC change, or the entries tagged with one object
(a pod) when only that object changed.

Bounded: past max_entries the cache starts again empty (a burst of distinct requests costs one
evaluation each, as with no cache).
"""

from __future__ import annotations

from collections.abc import Hashable

from ..authz import Authorizer, Decision
from ..request import Attributes

DEFAULT_MAX_ENTRIES = 20_000


class DecisionCache:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._decisions: dict[Attributes, Decision] = {}
        self._tagged: dict[Hashable, list[Attributes]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._decisions)

    def get(self, attrs: Attributes) -> Decision | None:
        decision = self._decisions.get(attrs)
        if decision is None:
            self.misses += 1
        else:
            self.hits += 1
        return decision

    def put(self, attrs: Attributes, decision: Decision, tag: Hashable = None) -> None:
        if len(self._decisions) >= self.max_entries:
            self.clear()
        self._decisions[attrs] = decision
        if tag is not None:
            self._tagged.setdefault(tag, []).append(attrs)

    def clear(self) -> None:
        self._decisions.clear()
        self._tagged.clear()

    def drop(self, tag: Hashable) -> None:
        """Forget the decisions that depended on one object."""
        for attrs in self._tagged.pop(tag, ()):
            self._decisions.pop(attrs, None)


class CachedAuthorizer:
    """An authorizer with its decisions remembered; whoever feeds the authorizer's data calls
    cache.clear() when it changes."""

    def __init__(self, inner: Authorizer, cache: DecisionCache | None = None) -> None:
        self.inner = inner
        self.cache = cache if cache is not None else DecisionCache()

    def authorize(self, attrs: Attributes) -> Decision:
        decision = self.cache.get(attrs)
        if decision is None:
            decision = self.inner.authorize(attrs)
            self.cache.put(attrs, decision)
        return decision
