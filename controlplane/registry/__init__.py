"""The API server's strategies, one per kind (Kubernetes' pkg/registry): everything the request
chain needs to know about a kind. Adding a kind is its message (with the resource option) in
proto/ketch/v1 and one Strategy here."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

from ketch.api import errors
from ketch.api.kinds import KINDS
from ketch.api.selectors import FIELDS_ON_READ

from .apps import ControllerRevisionStrategy, DaemonSetStrategy
from .batch import CronJobStrategy, JobStrategy
from .configmap import ConfigMapStrategy
from .coordination import LeaseStrategy
from .core import (
    DEFAULT_EVENT_TTL,
    DEFAULT_NAMESPACES,
    DEFAULT_TOLERATION_SECONDS,
    EventStrategy,
    NamespaceStrategy,
    NodeStrategy,
    PodStrategy,
)
from .rbac import ClusterRoleBindingStrategy, ClusterRoleStrategy, RoleBindingStrategy, RoleStrategy
from .secret import SecretStrategy
from .strategy import Strategy

__all__ = ["DEFAULT_EVENT_TTL", "DEFAULT_NAMESPACES", "DEFAULT_TOLERATION_SECONDS", "Registry", "Strategy"]


class Registry:
    """The strategies by kind name, configured with the server's options."""

    def __init__(self, default_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
                 event_ttl: float = DEFAULT_EVENT_TTL) -> None:
        strategies: list[Strategy] = [
            PodStrategy(default_toleration_seconds), NodeStrategy(), NamespaceStrategy(), EventStrategy(event_ttl),
            JobStrategy(), CronJobStrategy(), DaemonSetStrategy(), ControllerRevisionStrategy(), LeaseStrategy(),
            SecretStrategy(), ConfigMapStrategy(),
            RoleStrategy(), ClusterRoleStrategy(), RoleBindingStrategy(), ClusterRoleBindingStrategy(),
        ]
        self._by_kind: dict[str, Strategy] = {s.kind: s for s in strategies}
        missing = [k.kind for k in KINDS if k.kind not in self._by_kind]
        if missing:
            raise RuntimeError(f"kinds without a strategy: {', '.join(missing)}")

    def __getitem__(self, kind: str) -> Strategy:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise errors.NotFound(f'the server doesn\'t have a resource type "{kind}"') from None

    def parsed_on_read(self) -> frozenset[str]:
        """Kinds the store keeps as bytes only, parsing them when read (see Strategy.keeps_parsed)."""
        return frozenset(kind for kind, s in self._by_kind.items() if not s.keeps_parsed)

    def packed(self) -> frozenset[str]:
        """Kinds the store packs into one buffer each (see Strategy.packed)."""
        kinds = frozenset(kind for kind, s in self._by_kind.items() if s.packed)
        wrong = sorted(k for k in kinds if not self._by_kind[k].fields_on_read or self._by_kind[k].keeps_parsed)
        if wrong:
            raise RuntimeError(f"packed kinds must have fields_on_read and not keeps_parsed: {', '.join(wrong)}")
        return kinds

    def expiry_of(self, kind: str, obj: Message) -> float | None:
        """The store's expiry hook: when an object of kind goes by itself (Events' TTL)."""
        return self._by_kind[kind].expires_at(obj)

    def field_values(self, kind: str, obj: Message) -> Mapping[str, str]:
        """The store's field indexer: what field selectors match on (FIELDS_ON_READ for kinds
        whose values are read off the object when asked: selected_fields)."""
        strategy = self._by_kind[kind]
        return FIELDS_ON_READ if strategy.fields_on_read else strategy.field_values(obj)

    def selected_fields(self, kind: str, data: bytes) -> Mapping[str, str]:
        """The field values of a stored object of a fields_on_read kind, from its bytes (parsed
        here and let go: a cached parse would cost what not keeping the values saves)."""
        strategy = self._by_kind[kind]
        return strategy.field_values(strategy.info.message.FromString(data))
