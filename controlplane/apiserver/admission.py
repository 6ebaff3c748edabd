"""Admission: plugins that see every write after it is decoded (and defaulted) and before it is
stored, as kube-apiserver's admission chain. Mutating plugins run first and may change the
object; the strategy then prepares and validates it; validating plugins run last and may only
refuse. On by default: NamespaceLifecycle; NodeRestriction and the like come as entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controlplane.registry import Registry
from controlplane.storage import Store
from ketch.api import errors

from .request import Attributes

CREATE, UPDATE, DELETE = "CREATE", "UPDATE", "DELETE"


@dataclass(slots=True)
class AdmissionRequest:
    operation: str
    attrs: Attributes
    obj: Any  # the object to be stored (None for a delete)
    old: Any  # the stored object (None for a create)


class MutatingPlugin(Protocol):
    def admit(self, request: AdmissionRequest) -> None:
        """Change request.obj in place, or raise a StatusError to refuse."""
        ...


class ValidatingPlugin(Protocol):
    def validate(self, request: AdmissionRequest) -> None:
        """Raise a StatusError to refuse; never change the object."""
        ...


class Admission:
    def __init__(self, mutating: Sequence[MutatingPlugin] = (), validating: Sequence[ValidatingPlugin] = ()) -> None:
        self.mutating = list(mutating)
        self.validating = list(validating)

    def mutate(self, request: AdmissionRequest) -> None:
        for plugin in self.mutating:
            plugin.admit(request)

    def validate(self, request: AdmissionRequest) -> None:
        for plugin in self.validating:
            plugin.validate(request)


class NamespaceLifecycle:
    """Kubernetes' NamespaceLifecycle plugin: nothing is created in a namespace that does not
    exist, nor in one being deleted (except what its strategy allows there: Events)."""

    def __init__(self, namespace_of: Callable[[str], Any], registry: Registry) -> None:
        self.namespace_of = namespace_of  # the stored Namespace by name, or None
        self.registry = registry

    def admit(self, request: AdmissionRequest) -> None:
        attrs = request.attrs
        if request.operation != CREATE or not attrs.namespace:
            return
        ns = self.namespace_of(attrs.namespace)
        if ns is None:
            raise errors.NotFound(f'namespaces "{attrs.namespace}" not found')
        if ns.metadata.deletion_timestamp and not self.registry[attrs.kind].creatable_in_terminating_namespace:
            raise errors.Forbidden(
                f"{attrs.resource} is forbidden: unable to create new content in namespace {attrs.namespace} "
                "because it is being terminated")


def default_admission(store: Store, registry: Registry) -> Admission:
    """The plugins on by default, as kube-apiserver's --enable-admission-plugins defaults."""

    def namespace_of(name: str) -> Any:
        entry = store.latest("Namespace", name)
        return entry.obj if entry is not None else None

    return Admission(mutating=[NamespaceLifecycle(namespace_of, registry)])
