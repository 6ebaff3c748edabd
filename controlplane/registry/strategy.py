"""What the API server knows about one kind, in one object: Kubernetes' registry strategy.

A Strategy owns the kind's defaults, its validation (create, update, status, metadata-only), the
fields the server sets on create and keeps on update, the generation rule, the field selectors it
answers, its subresources, and what deleting it means (default propagation, protected names,
graceful deletion, finalizers in its spec). The request chain calls these hooks and knows no kind
by name. The base class is a kind with no rules beyond ObjectMeta's; a kind overrides what
Kubernetes' strategy for it overrides.

Pure functions over messages (the clock is passed in); nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from google.protobuf.message import Message

from ketch.api import errors
from ketch.api.errors import FieldError
from ketch.api.kinds import KindInfo, kind_info
from ketch.api.validation import field as field_rules
from ketch.api.validation import meta as meta_rules

# Field selectors every kind answers (cluster-scoped kinds: the name only).
NAME_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
BACKGROUND, FOREGROUND, ORPHAN = "Background", "Foreground", "Orphan"


class Strategy:
    kind: ClassVar[str]
    # Spec changes bump metadata.generation (status and metadata writes never do).
    bumps_generation: ClassVar[bool] = False
    # A client may not set status on create: the server starts it empty.
    resets_status_on_create: ClassVar[bool] = False
    # The propagation of a delete that names none, and the warning that goes with it.
    default_propagation: ClassVar[str] = BACKGROUND
    default_propagation_warning: ClassVar[str] = ""
    # May still be created in a namespace that is being deleted (Events about the deletion).
    creatable_in_terminating_namespace: ClassVar[bool] = False
    # Field selectors beyond metadata.name/namespace, with how to read them off an object.
    field_labels: ClassVar[frozenset[str]] = frozenset()
    # The store keeps the parsed message between writes (else only the bytes, parsed when read):
    # worth it for kinds read far more often than written.
    keeps_parsed: ClassVar[bool] = True
    # The store keeps no field values per object (FIELDS_ON_READ): a field selector reads them
    # off the object. For kinds that are many and rarely selected by field.
    fields_on_read: ClassVar[bool] = False
    # The store packs this kind's objects into one buffer (controlplane/storage/packed.py),
    # building an Entry on each read: for the most numerous, rarely read kinds, whose objects
    # would otherwise outlive, scattered, what a burst of other objects freed. Needs
    # fields_on_read and not keeps_parsed.
    packed: ClassVar[bool] = False

    def __init__(self) -> None:
        self.info: KindInfo = kind_info(self.kind)

    # -- create ----------------------------------------------------------------------------------

    def default(self, obj: Any) -> None:
        """Fill in Kubernetes' defaults (idempotent: only unset fields)."""

    def prepare_for_create(self, obj: Any, now: float) -> None:
        """Server-set fields of a new object, after uid, name and defaults."""
        if self.resets_status_on_create and obj.DESCRIPTOR.fields_by_name.get("status") is not None:
            obj.ClearField("status")

    def validate(self, obj: Any) -> list[FieldError]:
        """Everything wrong with the object (also run on a spec update)."""
        errs: list[FieldError] = []
        meta_rules.object_meta(errs, obj.metadata, self.info.namespaced, self.name_rule)
        return errs

    def warnings(self, obj: Any) -> list[str]:
        """What to tell the client about fields the server accepts and ignores."""
        return []

    def warnings_on_create(self, obj: Any) -> list[str]:
        """Warnings of a create: those of every write, and any that only a create gives."""
        return self.warnings(obj)

    def name_rule(self, name: str, prefix: bool) -> tuple[str, ...]:
        """What is wrong with a name (or generateName prefix) of this kind: a DNS subdomain."""
        return field_rules.name_is_dns_subdomain(name, prefix)

    def initial_generation(self) -> int:
        return 1 if self.bumps_generation else 0

    # -- update ----------------------------------------------------------------------------------

    def validate_update(self, new: Any, old: Any) -> list[FieldError]:
        """Immutable fields and allowed transitions of a spec update (create rules run besides)."""
        errs: list[FieldError] = []
        meta_rules.object_meta_update(errs, new.metadata, old.metadata)
        return errs

    def validate_status_update(self, new: Any, old: Any) -> list[FieldError]:
        """A status write (new: the stored object with the new status)."""
        return []

    def validate_metadata_update(self, new: Any, old: Any) -> list[FieldError]:
        """An update that changes only metadata: the rest was valid when stored and is unchanged."""
        errs: list[FieldError] = []
        meta_rules.object_meta(errs, new.metadata, self.info.namespaced, self.name_rule)
        meta_rules.object_meta_update(errs, new.metadata, old.metadata)
        return errs

    def spec_changed(self, new: Message, old: Message) -> bool:
        if "spec" not in new.DESCRIPTOR.fields_by_name:
            return False
        return bool(new.spec.SerializeToString(deterministic=True)  # type: ignore[attr-defined]
                    != old.spec.SerializeToString(deterministic=True))  # type: ignore[attr-defined]

    def prepare_for_update(self, new: Any, old: Any) -> None:
        """Server-side consequences of a spec write (generation already bumped)."""

    def subresource(self, name: str, new: Any, old: Any, now: float) -> Any:
        """The object after a write to a subresource other than status (finalize, binding)."""
        raise errors.BadRequest(f'unknown subresource "{name}"')

    # -- delete ----------------------------------------------------------------------------------

    def check_delete(self, obj: Any) -> None:
        """Refuse deleting objects that may never go (raise)."""

    def grace_period(self, obj: Any, requested: int | None) -> int:
        """Seconds of graceful deletion (0: none; only pods running on a node have any)."""
        return 0

    def prepare_for_delete(self, obj: Any) -> bool:
        """Changes to an object whose deletion waits for finalizers; returns whether it changed."""
        return False

    def spec_finalizers(self, obj: Any) -> Sequence[str]:
        """Finalizers kept in the spec (Namespace's "kubernetes"), which hold a deletion too."""
        return ()

    def expires_at(self, obj: Any) -> float | None:
        """When the store deletes the object by itself (etcd's lease), or None: never."""
        return None

    # -- reads -----------------------------------------------------------------------------------

    def field_values(self, obj: Any) -> Mapping[str, str]:
        """The field-selector values of an object (metadata.name/namespace are handled apart)."""
        return {}

    def selectable_fields(self) -> frozenset[str]:
        base = NAME_FIELDS if self.info.namespaced else frozenset({"metadata.name"})
        return base | self.field_labels
